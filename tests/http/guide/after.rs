//! The "after" app of `docs/migrating-from-tower-sessions-axum-login.md`: the same app on
//! keycard. Everything below this header is the guide's code block, word for word (`mod.rs`
//! checks it).

use axum::{
    Form, Router,
    http::StatusCode,
    routing::{get, post},
};
use keycard::{Auth, Keycard, KeycardConfig, Principal, Rejection, SessionData};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

async fn login(auth: Auth, Form(c): Form<Credentials>) -> Result<StatusCode, Rejection> {
    if c.username != "alice" || c.password != "wonderland" {
        return Ok(StatusCode::UNAUTHORIZED);
    }
    auth.login(Principal::builder(c.username).role("user"))
        .await?; // fresh session id
    Ok(StatusCode::NO_CONTENT)
}

// The `Principal` extractor answers 401 without a live session.
async fn me(user: Principal, data: SessionData) -> Result<String, Rejection> {
    let visits: u64 = data.get("visits").await?.unwrap_or(0) + 1;
    data.insert("visits", &visits).await?;
    Ok(format!("{}, visit {visits}", user.subject()))
}

async fn logout(auth: Auth) -> Result<StatusCode, Rejection> {
    auth.logout().await?; // deletes the session and its data, clears the cookie
    Ok(StatusCode::NO_CONTENT)
}

// `main`: `let app = app("sqlite://app.db").await?;` then
// `axum::serve(TcpListener::bind("127.0.0.1:3000").await?, app).await?`
pub async fn app(database_url: &str) -> keycard::Result<Router> {
    let config = KeycardConfig::from_toml(&format!(
        r#"
        strategy = "database"
        [database]
        url = "{database_url}"
        [session]
        idle_timeout = "30m"
        [cookie]
        name = "keycard"  # plain HTTP in development (the default is __Host-keycard, Secure)
        secure = false
        "#
    ))?;
    let keycard = Keycard::from_config(&config).await?;
    Ok(Router::new()
        .route("/me", get(me))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(keycard.layer()))
}
