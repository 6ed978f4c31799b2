//! A subject's sessions: log out, log out everywhere, list, revoke one.

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    StrategyHarness,
    client::{App, Cred, subject},
};

/// `true` when the refresh token of `cred` is refused with `invalid_grant`.
async fn refresh_refused(app: &App, cred: &Cred) -> bool {
    let reply = app.refresh(cred).await;
    reply.status == StatusCode::UNAUTHORIZED && reply.error() == "invalid_grant"
}

/// The session handle `cred` authenticates with.
async fn handle(app: &App, cred: &Cred) -> String {
    app.me(cred).await["session"]
        .as_str()
        .expect("/me names the session")
        .to_owned()
}

/// Logging out ends the caller's session (the cookie is removed where there is one; the refresh
/// token dies with it): the credential is refused by `Principal` and `Option<Principal>` alike,
/// logging out again is a 401, and the subject's other session lives on.
pub async fn logout_refuses_the_credential(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let user = subject();
    let cred = app.login(&user, &[]).await;
    let other = app.login(&user, &[]).await;
    app.me(&cred).await;

    let reply = app.post("/logout", Some(&cred), json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "logout");
    if cred.cookie.is_some() {
        assert!(
            app.clears_cookie(&reply),
            "logout removes the session cookie"
        );
    }
    assert_eq!(app.status("/me", &cred).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.status("/maybe", &cred).await,
        StatusCode::UNAUTHORIZED,
        "a logged-out credential is a 401, not anonymous"
    );
    let again = app.post("/logout", Some(&cred), json!({})).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a second logout");
    if app.refreshes {
        assert!(
            refresh_refused(&app, &cred).await,
            "the refresh token of a logged-out session is refused"
        );
    }
    assert_eq!(
        app.me(&other).await["subject"],
        user.as_str(),
        "other sessions live on"
    );
}

/// Logging out everywhere ends every session of the subject (refresh tokens included) and no
/// session of another subject; the subject can log in again at once.
pub async fn logout_all_ends_every_session_of_the_subject(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let (user, bystander) = (subject(), subject());
    let a = app.login(&user, &[]).await;
    let b = app.login(&user, &[]).await;
    let c = app.login(&bystander, &[]).await;

    let reply = app.post("/logout-all", Some(&a), json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "logout-all");
    if a.cookie.is_some() {
        assert!(
            app.clears_cookie(&reply),
            "logout-all removes the session cookie"
        );
    }
    for (name, cred) in [("the caller's", &a), ("another", &b)] {
        let status = app.status("/me", cred).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name} session of the subject"
        );
        if app.refreshes {
            assert!(refresh_refused(&app, cred).await, "{name} refresh token");
        }
    }
    assert_eq!(
        app.me(&c).await["subject"],
        bystander.as_str(),
        "another subject"
    );
    if app.refreshes {
        app.refreshed(&c).await;
    }
    let d = app.login(&user, &[]).await;
    assert_eq!(
        app.me(&d).await["subject"],
        user.as_str(),
        "a new login works at once"
    );
}

/// Logging out the other sessions ends every other session of the subject (refresh tokens
/// included) and keeps the caller's (its credential keeps working, no cookie is removed), and no
/// session of another subject; without a credential it is a 401.
pub async fn logout_others_keeps_the_current_session(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let (user, bystander) = (subject(), subject());
    let a = app.login(&user, &[]).await;
    let b = app.login(&user, &[]).await;
    let c = app.login(&user, &[]).await;
    let x = app.login(&bystander, &[]).await;

    let anonymous = app.post("/logout-others", None, json!({})).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "logout-others without a credential"
    );
    let reply = app.post("/logout-others", Some(&a), json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "logout-others");
    assert!(
        !app.clears_cookie(&reply),
        "logout-others keeps the caller's cookie"
    );
    for (name, cred) in [("a second", &b), ("a third", &c)] {
        assert_eq!(
            app.status("/me", cred).await,
            StatusCode::UNAUTHORIZED,
            "{name} session of the subject"
        );
        if app.refreshes {
            assert!(refresh_refused(&app, cred).await, "{name} refresh token");
        }
    }
    assert_eq!(
        app.me(&a).await["subject"],
        user.as_str(),
        "the caller's session lives on"
    );
    let listed = app.get("/sessions", Some(&a)).await.json();
    let listed = listed.as_array().expect("a list of sessions");
    assert_eq!(listed.len(), 1, "only the caller's session is left");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(
        app.me(&x).await["subject"],
        bystander.as_str(),
        "another subject"
    );
    if app.refreshes {
        let renewed = app.refreshed(&a).await;
        assert_eq!(app.me(&renewed).await["subject"], user.as_str());
    }
}

/// Listing shows the subject's live sessions (and no one else's), with handles that are not the
/// credential, and `current` marking exactly the caller's.
pub async fn listing_marks_the_current_session(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let (user, bystander) = (subject(), subject());
    let a = app.login(&user, &[]).await;
    app.clock.advance(std::time::Duration::from_secs(1));
    let b = app.login(&user, &[]).await;
    let c = app.login(&bystander, &[]).await;
    let (a_id, b_id, c_id) = (
        handle(&app, &a).await,
        handle(&app, &b).await,
        handle(&app, &c).await,
    );
    for (caller, current) in [(&a, &a_id), (&b, &b_id)] {
        let reply = app.get("/sessions", Some(caller)).await;
        assert_eq!(reply.status, StatusCode::OK, "list sessions");
        let listed = reply.json();
        let listed = listed.as_array().expect("a list of sessions");
        let ids: Vec<&str> = listed.iter().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids.len(), 2, "the subject's two sessions: {ids:?}");
        assert!(ids.contains(&a_id.as_str()) && ids.contains(&b_id.as_str()));
        assert!(
            !ids.contains(&c_id.as_str()),
            "never another subject's session"
        );
        let marked: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(marked.len(), 1, "exactly one session is the caller's");
        assert_eq!(
            marked[0]["id"],
            current.as_str(),
            "`current` marks the caller's"
        );
        for session in listed {
            for field in ["id", "created_at", "last_seen_at", "current"] {
                assert!(
                    session.get(field).is_some(),
                    "a listed session has `{field}`"
                );
            }
            let id = session["id"].as_str().unwrap_or_default();
            assert!(
                !id.is_empty() && !a.value.contains(id) && !b.value.contains(id),
                "a session handle is not the credential"
            );
        }
    }
}

/// Revoking one session by its handle ends it (refresh token included) and leaves the caller's;
/// another subject's handle, or one that names nothing, is a 404 and changes nothing.
pub async fn revoking_one_session(harness: &dyn StrategyHarness) {
    let app = App::new(harness).await;
    let (user, bystander) = (subject(), subject());
    let a = app.login(&user, &[]).await;
    let b = app.login(&user, &[]).await;
    let x = app.login(&bystander, &[]).await;
    let (a_id, b_id, x_id) = (
        handle(&app, &a).await,
        handle(&app, &b).await,
        handle(&app, &x).await,
    );

    let foreign = app.delete(&format!("/sessions/{x_id}"), Some(&a)).await;
    assert_eq!(
        foreign.status,
        StatusCode::NOT_FOUND,
        "another subject's session"
    );
    assert_eq!(
        app.me(&x).await["subject"],
        bystander.as_str(),
        "and it lives on"
    );
    let nothing = app.delete("/sessions/not-a-session", Some(&a)).await;
    assert_eq!(
        nothing.status,
        StatusCode::NOT_FOUND,
        "a handle that names nothing"
    );

    let revoked = app.delete(&format!("/sessions/{b_id}"), Some(&a)).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "revoke one session");
    assert_eq!(
        app.status("/me", &b).await,
        StatusCode::UNAUTHORIZED,
        "revoked"
    );
    if app.refreshes {
        assert!(refresh_refused(&app, &b).await, "the revoked refresh token");
        app.refreshed(&x).await;
    }
    assert_eq!(
        handle(&app, &a).await,
        a_id,
        "the caller's session lives on"
    );
    let listed = app.get("/sessions", Some(&a)).await.json();
    let ids: Vec<&str> = listed
        .as_array()
        .map(|l| l.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        vec![a_id.as_str()],
        "only the caller's session is left"
    );
    let again = app.delete(&format!("/sessions/{b_id}"), Some(&a)).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "revoking it again");
}
