//! Who is this: login, authentication, missing and bad credentials, role guards.

use http::{StatusCode, header};

use super::{
    StrategyHarness,
    client::{App, subject},
};

/// A login hands out a credential (on a response that is never cached) that authenticates as
/// the subject with its roles, for `Principal` and `Option<Principal>` alike, with an
/// authentication time of the login; a second login of the same subject is a second, independent
/// session.
pub async fn login_then_authenticate(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let reply = app.post_login(&user, &["user", "reader"]).await;
    assert_eq!(reply.status, StatusCode::OK, "login");
    assert_eq!(
        reply
            .headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "a response that carries a credential is never cached"
    );
    let cred = app
        .credentials(&reply)
        .expect("a login hands out a credential where the transport reads it");
    if app.refreshes {
        assert!(
            cred.refresh.is_some(),
            "a token strategy issues a refresh token"
        );
    }
    let at_login = app.now_ms();
    let me = app.me(&cred).await;
    assert_eq!(me["subject"], user.as_str());
    assert_eq!(me["roles"], serde_json::json!(["user", "reader"]));
    assert_eq!(
        me["session"],
        reply.json()["session"],
        "the credential belongs to the session the login started"
    );
    let authenticated = me["authenticated_at"].as_i64().unwrap_or_default();
    assert!(
        authenticated <= at_login && authenticated >= at_login - 1000,
        "authenticated at the login ({authenticated} vs {at_login})"
    );

    let maybe = app.get("/maybe", Some(&cred)).await;
    assert_eq!(maybe.status, StatusCode::OK);
    assert_eq!(
        maybe.text(),
        user,
        "Option<Principal> is the same principal"
    );

    let second = app.login(&user, &["user"]).await;
    assert!(
        second.value != cred.value,
        "every login issues a new credential"
    );
    let other = app.me(&second).await;
    assert!(other["session"] != me["session"], "a second session");
    assert_eq!(other["roles"], serde_json::json!(["user"]));
    assert_eq!(app.me(&cred).await["subject"], user.as_str());
}

/// Without a credential `Principal` is a 401 with a challenge, `Option<Principal>` is `None`, and
/// the routes that act on a session are 401.
pub async fn missing_credential_is_401_and_anonymous(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let reply = app.get("/me", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.headers.contains_key(header::WWW_AUTHENTICATE),
        "a 401 carries a challenge"
    );
    assert_eq!(reply.error(), "unauthenticated");
    let maybe = app.get("/maybe", None).await;
    assert_eq!(maybe.status, StatusCode::OK);
    assert_eq!(
        maybe.text(),
        "anonymous",
        "no credential: Option<Principal> is None"
    );
    for path in ["/admin", "/sessions"] {
        let status = app.get(path, None).await.status;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "GET {path}");
    }
    for path in ["/logout", "/logout-all", "/rotate", "/step-up"] {
        let status = app.post(path, None, serde_json::json!({})).await.status;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "POST {path}");
    }
}

/// A made-up, malformed or tampered credential is a 401 for `Principal` and for
/// `Option<Principal>` alike (never anonymous), and does not harm the genuine one.
pub async fn bad_credential_is_401_never_anonymous(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let cred = app.login(&user, &[]).await;
    let mut tampered = cred.value.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("an ASCII credential");
    let made_up = [
        ("made up", "A".repeat(43)),
        ("made up, longer", "A".repeat(200)),
        ("too short", "abc".to_owned()),
        ("tampered", tampered),
    ];
    for (what, value) in made_up {
        let bad = cred.with_value(value);
        let me = app.get("/me", Some(&bad)).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{what} credential");
        assert!(
            me.headers.contains_key(header::WWW_AUTHENTICATE),
            "{what} credential: a 401 carries a challenge"
        );
        let maybe = app.get("/maybe", Some(&bad)).await;
        assert_eq!(
            maybe.status,
            StatusCode::UNAUTHORIZED,
            "{what} credential: Option<Principal> is a 401, not None"
        );
    }
    assert_eq!(app.me(&cred).await["subject"], user.as_str());
}

/// A `RequireRole` route is 401 without a credential, 403 without the role and 200 with it.
pub async fn require_role_guards_the_route(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let (plain, boss) = (subject(), subject());
    let user = app.login(&plain, &["user"]).await;
    let admin = app.login(&boss, &["user", "admin"]).await;
    assert_eq!(
        app.get("/admin", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refused = app.get("/admin", Some(&user)).await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "a principal without the role"
    );
    assert_eq!(refused.error(), "insufficient_scope");
    let allowed = app.get("/admin", Some(&admin)).await;
    assert_eq!(allowed.status, StatusCode::OK, "a principal with the role");
    assert_eq!(allowed.text(), boss);
}
