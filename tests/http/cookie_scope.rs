//! Cookie scope: the session cookie shared across subdomains (`cookie.domain`) is an explicit
//! opt-in with the `__Secure-` prefix and a `Domain` attribute, refused at start with settings
//! that make it unsafe; `__Host-` stays the default.

use std::sync::Arc;

use http::StatusCode;
use keycard::{
    ErrorKind, Keycard, KeycardConfig, dangerous,
    store::MemoryStore,
    strategy::{ServerSessions, ServerSettings},
    transport::TransportSettings,
};
use serde_json::json;

use crate::common::http_client::{get_req, post_req, send};

fn build(transport: TransportSettings) -> keycard::Result<Keycard> {
    Keycard::builder()
        .strategy(ServerSessions::new(
            Arc::new(MemoryStore::new()),
            ServerSettings::default(),
        ))
        .transport(transport)
        .build()
}

#[tokio::test]
async fn default_cookie_is_host_only() {
    let keycard = build(TransportSettings::default()).unwrap();
    let app = keycard::testing::router(&keycard);
    let r = send(&app, post_req("/login", None, json!({}))).await;
    let set = r.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].starts_with("__Host-keycard="), "{}", set[0]);
    assert!(!set[0].contains("Domain"), "{}", set[0]);
}

#[tokio::test]
async fn a_shared_cookie_carries_domain_and_the_secure_prefix() {
    let keycard = build(TransportSettings::default().shared_with("example.com")).unwrap();
    let app = keycard::testing::router(&keycard);
    let r = send(&app, post_req("/login", None, json!({}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let set = r.set_cookies()[0].to_owned();
    assert!(set.starts_with("__Secure-keycard="), "{set}");
    for attr in [
        "Domain=example.com",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    // The cookie authenticates under its new name; the `__Host-` name is not read any more.
    let pair = r.cookie_pair().unwrap();
    let me = send(&app, get_req("/me", Some(&pair))).await;
    assert_eq!(me.status, StatusCode::OK);
    let value = pair.split_once('=').unwrap().1;
    let host = format!("__Host-keycard={value}");
    assert_eq!(
        send(&app, get_req("/me", Some(&host))).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Logout removes it with the same Domain, or the browser would keep it.
    let out = send(&app, post_req("/logout", Some(&pair), json!({}))).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let removal = out.set_cookies()[0].to_owned();
    assert!(removal.starts_with("__Secure-keycard=;"), "{removal}");
    assert!(removal.contains("Domain=example.com"), "{removal}");
}

#[test]
fn unsafe_scopes_are_refused_at_build() {
    let refused = |t: TransportSettings, field: &str| {
        let err = build(t).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains(field), "{field}: {}", err.message());
    };
    // Insecure cookies (the name without a prefix, so only the domain is at fault).
    refused(
        TransportSettings {
            cookie_name: "__Secure-keycard".into(),
            cookie_domain: Some("example.com".into()),
            secure: dangerous::insecure_cookies(),
            ..TransportSettings::default()
        },
        "cookie.secure",
    );
    refused(
        TransportSettings {
            cookie_name: "keycard".into(),
            cookie_domain: Some("example.com".into()),
            secure: dangerous::insecure_cookies(),
            ..TransportSettings::default()
        },
        "cookie.domain",
    );
    // A `__Host-` name (or none of the prefixes) with a domain.
    for name in ["__Host-keycard", "keycard"] {
        refused(
            TransportSettings {
                cookie_name: name.into(),
                cookie_domain: Some("example.com".into()),
                ..TransportSettings::default()
            },
            "cookie.name",
        );
    }
    // Domains that are not a plain host name.
    for domain in [
        ".example.com",
        "example.com.",
        "com",
        "",
        "127.0.0.1",
        "[::1]",
        "example.com:443",
        "https://example.com",
        "Example.com",
        "exa mple.com",
        "-bad.example.com",
        "example.com/path",
    ] {
        refused(
            TransportSettings::default().shared_with(domain),
            "cookie.domain",
        );
    }
    // Subdomains and punycode are fine.
    for domain in ["app.example.com", "xn--bcher-kva.example", "a-b.co.uk"] {
        build(TransportSettings::default().shared_with(domain)).unwrap();
    }
}

#[test]
fn config_reads_the_domain() {
    let config = KeycardConfig::from_toml(
        r#"
        strategy = "database"
        [cookie]
        domain = "example.com"
        "#,
    )
    .unwrap();
    assert_eq!(config.cookie.domain.as_deref(), Some("example.com"));
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn config_refuses_a_shared_cookie_without_secure() {
    let config = KeycardConfig::from_toml(
        r#"
        strategy = "database"
        [database]
        url = "sqlite::memory:"
        [cookie]
        name = "keycard"
        secure = false
        domain = "example.com"
        "#,
    )
    .unwrap();
    let err = Keycard::from_config(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("cookie.domain"), "{}", err.message());

    let mut ok = config.clone();
    ok.cookie.name = "__Host-keycard".into();
    ok.cookie.secure = true;
    let keycard = Keycard::from_config(&ok).await.unwrap();
    assert_eq!(keycard.transport().cookie_name, "__Secure-keycard");
    assert_eq!(
        keycard.transport().cookie_domain.as_deref(),
        Some("example.com")
    );
}
