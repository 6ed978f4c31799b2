//! Per-session data with `SessionData`: string keys (`get`/`insert`/`remove`/`entries`), typed
//! `DataKey<T>` (`get_key`/`insert_key`), anonymous sessions (`[session.anonymous]`) whose data
//! moves into the session at login, and "remember me" (`Auth::login_with`): the keycard app of
//! `docs/migrating-from-tower-sessions-axum-login.md`, extended.
//!
//! ```sh
//! cargo run --example session_data
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/cart/apple     # anonymous session
//! curl -c jar -b jar http://127.0.0.1:3000/data                   # {"cart":["apple"]}
//! curl -c jar -b jar -d 'username=alice&password=wonderland&remember=true' \
//!      http://127.0.0.1:3000/login                               # fresh ID, cart kept
//! curl -c jar -b jar http://127.0.0.1:3000/me                     # alice, cart: ["apple"]
//! curl -c jar -b jar -X DELETE http://127.0.0.1:3000/cart         # remove a key
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout         # data gone with the session
//! ```
//!
//! Changes are saved once, after the handler, as a per-key patch: two concurrent requests of
//! one session that change different keys both take effect.

use axum::{
    Form, Json, Router,
    extract::Path,
    http::StatusCode,
    routing::{get, post},
};
use keycard::{Auth, DataKey, Keycard, KeycardConfig, Login, Principal, Rejection, SessionData};
use serde::Deserialize;
use serde_json::{Map, Value};

const CONFIG: &str = r#"
strategy = "database"

[database]
url = "sqlite://keycard-example-data.db"

[session.anonymous]             # opt-in: data for callers who have not logged in
idle_timeout = "30m"

[cookie]
name = "keycard"  # development only: a plain-HTTP cookie
secure = false
"#;

/// A typed key: the name and the value type in one constant.
const CART: DataKey<Vec<String>> = DataKey::new("cart");

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    remember: bool,
}

async fn add_to_cart(data: SessionData, Path(item): Path<String>) -> Result<StatusCode, Rejection> {
    let mut cart = data.get_key(&CART).await?.unwrap_or_default();
    cart.push(item);
    data.insert_key(&CART, &cart).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_cart(data: SessionData) -> Result<StatusCode, Rejection> {
    data.remove(CART.name()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn all(data: SessionData) -> Result<Json<Map<String, Value>>, Rejection> {
    Ok(Json(data.entries().await?))
}

async fn login(auth: Auth, Form(form): Form<LoginForm>) -> Result<StatusCode, Rejection> {
    if form.username != "alice" || form.password != "wonderland" {
        return Ok(StatusCode::UNAUTHORIZED);
    }
    // Persistent cookie when `remember`, else a browser-session cookie.
    auth.login_with(
        Principal::builder(form.username),
        Login::remember(form.remember),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(user: Principal, data: SessionData) -> Result<String, Rejection> {
    let visits: u64 = data.get("visits").await?.unwrap_or(0) + 1;
    data.insert("visits", &visits).await?;
    let cart = data.get_key(&CART).await?.unwrap_or_default();
    Ok(format!(
        "{}, visit {visits}, cart: {cart:?}\n",
        user.subject()
    ))
}

async fn logout(auth: Auth) -> Result<StatusCode, Rejection> {
    auth.logout().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keycard = Keycard::from_config(&KeycardConfig::from_toml(CONFIG)?).await?;
    let app = Router::new()
        .route("/cart/{item}", post(add_to_cart))
        .route("/cart", axum::routing::delete(clear_cart))
        .route("/data", get(all))
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
