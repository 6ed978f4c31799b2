//! JWT with refresh tokens: login answers an access token and a refresh token, `/refresh`
//! rotates the refresh token, `/me` takes `Authorization: Bearer`.
//!
//! ```sh
//! cargo run --example jwt --features jwt
//! curl -d 'username=alice&password=wonderland' http://127.0.0.1:3000/login
//! # {"access_token":"eyJ…","refresh_token":"…"}
//! curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:3000/me
//! curl -H 'Content-Type: application/json' -d "{\"refresh_token\":\"$REFRESH\"}" \
//!      http://127.0.0.1:3000/refresh   # a new pair: the old refresh token is spent (a retry
//!                                      # within `jwt.refresh.grace`, 30 s, is allowed)
//! curl -X POST -H "Authorization: Bearer $ACCESS" http://127.0.0.1:3000/logout
//! ```
//!
//! Refresh families live in SQLite (`[database]`); `ephemeral_key = true` signs with an Ed25519
//! key generated at start, so tokens end with the process. Configure `jwt.keys` in production.

use axum::{
    Form, Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use keycard::{Auth, Keycard, KeycardConfig, Principal, Rejection, strategy::Issued};
use serde::Deserialize;
use serde_json::json;

const CONFIG: &str = r#"
strategy = "jwt"

[database]
url = "sqlite://keycard-example-jwt.db"

[jwt]
issuer = "keycard-example"
audience = "keycard-example"
access_ttl = "10m"
ephemeral_key = true
refresh = { idle = "7d", absolute = "30d" }
"#;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

fn tokens(issued: &Issued) -> Json<serde_json::Value> {
    Json(json!({
        "access_token": issued.access_token.as_ref().map(|t| &t.token),
        "refresh_token": issued.refresh_token.as_ref().map(|t| t.expose_secret()),
    }))
}

async fn login(auth: Auth, Form(form): Form<Credentials>) -> Result<Response, Rejection> {
    if form.username != "alice" || form.password != "wonderland" {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    }
    let issued = auth
        .login(Principal::builder(form.username).role("user"))
        .await?;
    Ok(tokens(&issued).into_response())
}

async fn refresh(auth: Auth, Json(body): Json<RefreshBody>) -> Result<Response, Rejection> {
    // A spent refresh token presented again (after the grace window) revokes its whole family.
    let issued = auth.refresh(Some(&body.refresh_token)).await?;
    Ok(tokens(&issued).into_response())
}

async fn me(user: Principal) -> String {
    format!("{}\n", user.subject())
}

async fn logout(auth: Auth) -> Result<StatusCode, Rejection> {
    auth.logout().await?; // ends the refresh family and denies the access token
    Ok(StatusCode::NO_CONTENT)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keycard = Keycard::from_config(&KeycardConfig::from_toml(CONFIG)?).await?;
    let app = Router::new()
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/me", get(me))
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
