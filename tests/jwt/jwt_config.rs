//! `JwtConfig`: parsing with durations and defaults, and start-up errors that name the field.
#![cfg(feature = "jwt")]

use crate::common::jwt_support;

use std::{sync::Arc, time::Duration};

use jwt_support::*;
use keycard::{
    ErrorKind, SessionStrategy,
    clock::SystemClock,
    events::Events,
    jwt::{Algorithm, JwtConfig, JwtStrategy},
    store::MemoryStore,
};

fn keys_dir() -> String {
    format!("{}/tests/jwt_support/keys", env!("CARGO_MANIFEST_DIR"))
}

fn parse(toml_text: &str) -> Result<JwtConfig, toml::de::Error> {
    toml::from_str(toml_text)
}

fn start(config: &JwtConfig) -> keycard::Result<JwtStrategy> {
    let store = Arc::new(MemoryStore::new());
    JwtStrategy::from_config(
        config,
        store.clone(),
        store,
        Events::default(),
        Arc::new(SystemClock),
    )
}

/// Expects a config error naming `field`.
#[track_caller]
fn names(r: keycard::Result<JwtStrategy>, field: &str) {
    match r {
        Ok(_) => panic!("expected an error naming {field}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            assert!(e.message().contains(&format!("`{field}`")), "{field}: {e}");
        }
    }
}

#[tokio::test]
async fn a_full_config_parses_and_starts() {
    let dir = keys_dir();
    let config = parse(&format!(
        r#"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
access_ttl = "5m"
leeway = "30s"
cache_size = 500
revocation_poll_interval = "250ms"

[[keys]]
kid = "old"
alg = "ES256"
pem_file = "{dir}/es256.pub.pem"

[[keys]]
kid = "current"
pem_file = "{dir}/ed25519.pem"
signing = true

[[keys]]
kid = "hmac"
alg = "HS256"
secret = "{secret}"

[[keys]]
kid = "jwk"
alg = "EdDSA"
jwk = {{ kty = "OKP", crv = "Ed25519", x = "{x}" }}

[refresh]
idle = "1d"
absolute = "7d"
grace = "5s"
"#,
        secret = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            secret_for(Algorithm::HS256)
        ),
        x = keycard::jwt::JwtKey::generate("x", Algorithm::EdDSA)
            .unwrap()
            .public_jwk()
            .unwrap()
            .x
            .clone()
            .unwrap(),
    ))
    .unwrap();
    assert_eq!(config.access_ttl, Duration::from_secs(300));
    assert_eq!(config.leeway, Duration::from_secs(30));
    assert_eq!(config.refresh.idle, Duration::from_secs(86_400));
    assert_eq!(config.refresh.grace, Duration::from_secs(5));
    assert_eq!(config.keys[1].alg, Algorithm::EdDSA, "EdDSA is the default");
    assert!(config.keys[1].signing && !config.keys[0].signing);
    let strategy = start(&config).unwrap();
    strategy.ready().await.unwrap();
    assert_eq!(strategy.access_ttl(), Duration::from_secs(300));
    let ring = strategy.key_ring().unwrap();
    assert_eq!(ring.kids(), ["old", "current", "hmac", "jwk"]);
    assert_eq!(ring.signer().unwrap().kid(), "current");
    let issued = strategy
        .login(spec("alice"), &Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(
        issued.access_token.as_ref().unwrap().expires_in,
        Duration::from_secs(300)
    );
    auth(&strategy, &access(&issued)).await.unwrap();
    // Debug never shows the secret.
    let secret_b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        secret_for(Algorithm::HS256),
    );
    assert!(!format!("{config:?}").contains(&secret_b64));
}

#[test]
fn defaults_and_unknown_fields() {
    let c = parse(&format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n"
    ))
    .unwrap();
    assert_eq!(c.access_ttl, Duration::from_secs(600));
    assert_eq!(c.leeway, Duration::from_secs(60));
    assert_eq!(c.cache_size, 10_000);
    assert_eq!(c.revocation_poll_interval, Duration::from_secs(1));
    assert_eq!(c.refresh.idle, Duration::from_secs(7 * 86_400));
    assert_eq!(c.refresh.absolute, Duration::from_secs(30 * 86_400));
    assert_eq!(c.refresh.grace, Duration::from_secs(30));
    assert_eq!(c, JwtConfig::new(ISSUER, AUDIENCE));
    for bad in [
        "issuer = \"a\"\naudience = \"b\"\nalgorithm = \"none\"\n",
        "issuer = \"a\"\naudience = \"b\"\n[refresh]\nidle_timeout = \"1d\"\n",
        "issuer = \"a\"\naudience = \"b\"\n[[keys]]\nkid = \"k\"\nalg = \"none\"\npem = \"x\"\n",
        "issuer = \"a\"\naudience = \"b\"\n[[keys]]\nkid = \"k\"\npem = \"x\"\nsign = true\n",
        "issuer = \"a\"\naudience = \"b\"\naccess_ttl = \"ten minutes\"\n",
        "issuer = \"a\"\naudience = \"b\"\naccess_ttl = 600\n",
        "audience = \"b\"\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn errors_name_the_field() {
    let dir = keys_dir();
    let signing = |kid: &str| -> String {
        format!("[[keys]]\nkid = \"{kid}\"\npem_file = \"{dir}/ed25519.pem\"\nsigning = true\n")
    };
    let base = format!("issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n");
    let with = |extra: &str| parse(&format!("{base}{extra}")).unwrap();

    names(start(&with("").clone()), "jwt.keys");
    let mut c = with(&signing("k"));
    c.issuer = " ".into();
    names(start(&c), "jwt.issuer");
    let mut c = with(&signing("k"));
    c.audience = String::new();
    names(start(&c), "jwt.audience");
    names(
        start(&with(&format!("access_ttl = \"61m\"\n{}", signing("k")))),
        "jwt.access_ttl",
    );
    names(
        start(&with(&format!("access_ttl = \"1500ms\"\n{}", signing("k")))),
        "jwt.access_ttl",
    );
    names(
        start(&with(&format!("leeway = \"301s\"\n{}", signing("k")))),
        "jwt.leeway",
    );
    names(
        start(&with(&format!(
            "max_token_lifetime = \"5m\"\n{}",
            signing("k")
        ))),
        "jwt.max_token_lifetime",
    );
    names(
        start(&with(&format!("cache_size = 2000000\n{}", signing("k")))),
        "jwt.cache_size",
    );
    names(
        start(&with(&format!(
            "revocation_poll_interval = \"1ms\"\n{}",
            signing("k")
        ))),
        "jwt.revocation_poll_interval",
    );
    names(
        start(&with(&format!(
            "{}[refresh]\ngrace = \"61s\"\n",
            signing("k")
        ))),
        "jwt.refresh.grace",
    );
    names(
        start(&with(&format!(
            "{}[refresh]\nidle = \"0s\"\n",
            signing("k")
        ))),
        "jwt.refresh.idle",
    );
    names(
        start(&with(
            "[[keys]]\nkid = \"k\"\npem = \"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n\"\nsigning = true\n",
        )),
        "jwt.keys[0].pem",
    );
    names(
        start(&with(&format!(
            "{}[[keys]]\nkid = \"b\"\npem_file = \"{dir}/missing.pem\"\n",
            signing("a")
        ))),
        "jwt.keys[1].pem_file",
    );
    names(
        start(&with("[[keys]]\nkid = \"k\"\nsigning = true\n")),
        "jwt.keys[0]",
    );
    names(
        start(&with(&format!(
            "[[keys]]\nkid = \"k\"\npem_file = \"{dir}/ed25519.pem\"\npem = \"x\"\nsigning = true\n"
        ))),
        "jwt.keys[0]",
    );
    names(
        start(&with(&format!(
            "[[keys]]\nkid = \"k\"\npem_file = \"{dir}/ed25519.pem\"\n"
        ))),
        "jwt.keys",
    );
    names(
        start(&with(&format!("{}{}", signing("a"), signing("b")))),
        "jwt.keys[1].signing",
    );
    names(
        start(&with(&format!(
            "{}{}",
            signing("a"),
            signing("a").replace("signing = true", "")
        ))),
        "jwt.keys[1].kid",
    );
    names(
        start(&with(&format!(
            "[[keys]]\nkid = \"k\"\npem_file = \"{dir}/ed25519.pub.pem\"\nsigning = true\n"
        ))),
        "jwt.keys[0].signing",
    );
    names(
        start(&with(
            "[[keys]]\nkid = \"k\"\nalg = \"HS256\"\nsecret = \"c2hvcnQ=\"\nsigning = true\n",
        )),
        "jwt.keys[0].secret",
    );
    names(
        start(&with(
            "[[keys]]\nkid = \"k\"\nalg = \"HS256\"\nsecret = \"%%%\"\nsigning = true\n",
        )),
        "jwt.keys[0].secret",
    );
    names(
        start(&with(&format!(
            "[[keys]]\nkid = \"k\"\nalg = \"RS256\"\npem_file = \"{dir}/rsa1024.pem\"\nsigning = true\n"
        ))),
        "jwt.keys[0].pem_file",
    );
    names(
        start(&with(
            "[[keys]]\nkid = \"k\"\njwk = { kty = \"OKP\", crv = \"Ed25519\" }\nsigning = true\n",
        )),
        "jwt.keys[0].jwk",
    );
    names(
        start(&with(
            "[jwks]\nurl = \"http://auth.example.com/jwks.json\"\n",
        )),
        "jwt.jwks.url",
    );
    names(
        start(&with("[jwks]\nurl = \"ftp://127.0.0.1/jwks.json\"\n")),
        "jwt.jwks.url",
    );
    names(
        start(&with("[jwks]\nurl = \"not a url\"\n")),
        "jwt.jwks.url",
    );
    names(
        start(&with(
            "[jwks]\nurl = \"https://auth.example.com/jwks.json\"\nrefetch_cooldown = \"5s\"\n",
        )),
        "jwt.jwks.refetch_cooldown",
    );
    names(
        start(&with(
            "[jwks]\nurl = \"https://auth.example.com/jwks.json\"\nmax_stale = \"1m\"\n",
        )),
        "jwt.jwks.max_stale",
    );
    names(
        start(&with(&format!(
            "{}[jwks]\nurl = \"https://auth.example.com/jwks.json\"\n",
            signing("k")
        ))),
        "jwt.jwks",
    );
    // A secret never appears in an error message.
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
    let e = start(&with(&format!(
        "[[keys]]\nkid = \"k\"\nalg = \"HS256\"\nsecret = \"{secret}\"\nsigning = true\n"
    )))
    .unwrap_err();
    assert!(!e.message().contains(secret), "{e}");
}

#[tokio::test]
async fn ephemeral_key_on_request_only() {
    let mut c = JwtConfig::new(ISSUER, AUDIENCE);
    names(start(&c), "jwt.keys");
    c.ephemeral_key = true;
    let s = start(&c).unwrap();
    s.ready().await.unwrap();
    let issued = s
        .login(spec("alice"), &Default::default(), Default::default())
        .await
        .unwrap();
    auth(&s, &access(&issued)).await.unwrap();
    assert_eq!(s.jwks().keys.len(), 1);
}

#[test]
fn building_outside_a_runtime_is_a_config_error() {
    let mut c = JwtConfig::new(ISSUER, AUDIENCE);
    c.ephemeral_key = true;
    names(start(&c), "jwt");
}
