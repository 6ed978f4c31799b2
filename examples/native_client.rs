//! Server sessions for native and API clients: `transport = "bearer"` carries the opaque
//! session token in `Authorization: Bearer` instead of a cookie. Login sets no cookie; the
//! handler returns `Issued::session_token` in its JSON and the client sends it back.
//!
//! ```sh
//! cargo run --example native_client
//! curl -d 'username=alice&password=wonderland' http://127.0.0.1:3000/login
//! # {"session_token":"…","token_type":"Bearer"}
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/me
//! curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/logout
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/me      # 401
//! ```
//!
//! The token is a database session like any other (revocable at once, listed by
//! `Auth::sessions`); CSRF checks do not apply to Bearer requests. `transport = "both"` serves
//! browsers (cookie) and native clients (Bearer) from one deployment.

use axum::{
    Form, Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use keycard::{Auth, Keycard, KeycardConfig, Principal, Rejection};
use serde::Deserialize;
use serde_json::json;

const CONFIG: &str = r#"
strategy = "database"
transport = "bearer"

[database]
url = "sqlite://keycard-example-native.db"
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
        "session_token": issued.session_token.as_ref().map(|t| t.expose_secret()),
        "token_type": "Bearer",
    });
    Ok(Json(body).into_response())
}

async fn me(user: Principal) -> String {
    format!("{}\n", user.subject())
}

async fn logout(auth: Auth) -> Result<StatusCode, Rejection> {
    auth.logout().await?; // the token stops working at once
    Ok(StatusCode::NO_CONTENT)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keycard = Keycard::from_config(&KeycardConfig::from_toml(CONFIG)?).await?;
    let app = Router::new()
        .route("/login", post(login))
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
