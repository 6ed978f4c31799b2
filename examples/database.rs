//! Server sessions on SQLite: `KeycardConfig` → `Keycard::from_config`, a login route, `/me`
//! with the `Principal` extractor, and logout.
//!
//! ```sh
//! cargo run --example database            # SQLite is a default feature
//! curl -c jar -d 'username=alice&password=wonderland' http://127.0.0.1:3000/login
//! curl -b jar http://127.0.0.1:3000/me     # alice
//! curl -b jar -c jar -X POST http://127.0.0.1:3000/logout
//! curl -b jar http://127.0.0.1:3000/me     # 401
//! ```
//!
//! The password check is hard-coded: use a real user table and a password hash (argon2) in an
//! application. `cookie.secure = false` lets curl send the cookie over plain HTTP on 127.0.0.1;
//! keep the default (`__Host-keycard`, `Secure`) behind HTTPS.

use axum::{
    Form, Router,
    http::StatusCode,
    routing::{get, post},
};
use keycard::{Auth, Keycard, KeycardConfig, Principal, Rejection};
use serde::Deserialize;

const CONFIG: &str = r#"
strategy = "database"

[database]
url = "sqlite://keycard-example.db"

[session]
idle_timeout = "30m"
absolute_timeout = "12h"

[cookie]
name = "keycard"  # development only: a plain-HTTP cookie
secure = false
"#;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(auth: Auth, Form(form): Form<Credentials>) -> Result<StatusCode, Rejection> {
    if form.username != "alice" || form.password != "wonderland" {
        return Ok(StatusCode::UNAUTHORIZED);
    }
    // A fresh session ID every time: no session fixation.
    auth.login(Principal::builder(form.username).role("user"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 401 without a live session: `Principal` is the "login required" check.
async fn me(user: Principal) -> String {
    format!("{} (roles: {:?})\n", user.subject(), user.roles())
}

async fn logout(auth: Auth) -> Result<StatusCode, Rejection> {
    auth.logout().await?; // deletes the session record and clears the cookie
    Ok(StatusCode::NO_CONTENT)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = KeycardConfig::from_toml(CONFIG)?;
    let keycard = Keycard::from_config(&config).await?;
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
