//! Hybrid: JWT access tokens for ordinary routes (no store round trip) and a `HighRisk` route
//! that also checks the server-side session (the refresh family) and a recent authentication.
//!
//! ```sh
//! cargo run --example hybrid --features jwt
//! curl -d 'username=alice&password=wonderland' http://127.0.0.1:3000/login   # {"access_token":…}
//! curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:3000/me           # token only
//! curl -X POST -H "Authorization: Bearer $ACCESS" http://127.0.0.1:3000/transfer
//! curl -X POST -H "Authorization: Bearer $ACCESS" http://127.0.0.1:3000/logout
//! curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:3000/me           # 401 (denied jti)
//! ```
//!
//! `/transfer` answers 401 with `WWW-Authenticate: Bearer error="insufficient_user_authentication"`
//! once the login is older than five minutes (RFC 9470): re-check the password, then call
//! `Auth::step_up` for a fresh authentication time.

use axum::{
    Form, Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use keycard::{Auth, FiveMinutes, HighRisk, Keycard, KeycardConfig, Principal, Rejection};
use serde::Deserialize;
use serde_json::json;

const CONFIG: &str = r#"
strategy = "hybrid"

[database]
url = "sqlite://keycard-example-hybrid.db"

[jwt]
issuer = "keycard-example"
audience = "keycard-example"
access_ttl = "5m"
ephemeral_key = true
"#;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(auth: Auth, Form(form): Form<Credentials>) -> Result<Response, Rejection> {
    if form.username != "alice" || form.password != "wonderland" {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    }
    let issued = auth.login(Principal::builder(form.username)).await?;
    let body = json!({
        "access_token": issued.access_token.as_ref().map(|t| &t.token),
        "refresh_token": issued.refresh_token.as_ref().map(|t| t.expose_secret()),
    });
    Ok(Json(body).into_response())
}

/// Verifies the access token only.
async fn me(user: Principal) -> String {
    format!("{}\n", user.subject())
}

/// Asks the store that the session is live and that the login is under five minutes old.
async fn transfer(HighRisk(user, _): HighRisk<FiveMinutes>) -> String {
    format!("transfer approved for {}\n", user.subject())
}

async fn logout(auth: Auth) -> Result<StatusCode, Rejection> {
    auth.logout().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keycard = Keycard::from_config(&KeycardConfig::from_toml(CONFIG)?).await?;
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/transfer", post(transfer))
        .route("/logout", post(logout))
        .layer(keycard.layer());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
