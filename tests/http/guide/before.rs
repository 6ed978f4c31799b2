//! The "before" app of `docs/migrating-from-tower-sessions-axum-login.md`: tower-sessions 0.14 +
//! axum-login 0.18. Everything below this header is the guide's code block, word for word
//! (`mod.rs` checks it).

use axum::{
    Form, Router,
    http::StatusCode,
    routing::{get, post},
};
use axum_login::{AuthManagerLayerBuilder, AuthUser, AuthnBackend, UserId, login_required};
use serde::Deserialize;
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer, cookie::time::Duration};

#[derive(Clone, Debug)]
pub struct User {
    id: i64,
    name: String,
    pw_hash: Vec<u8>,
}

impl AuthUser for User {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
    // Changing it (e.g. a new password hash) invalidates the user's sessions.
    fn session_auth_hash(&self) -> &[u8] {
        &self.pw_hash
    }
}

#[derive(Clone, Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

#[derive(Clone)]
pub struct Backend;

fn alice() -> User {
    User {
        id: 1,
        name: "alice".into(),
        pw_hash: b"hash".to_vec(),
    }
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, c: Credentials) -> Result<Option<User>, Self::Error> {
        Ok((c.username == "alice" && c.password == "wonderland").then(alice))
    }
    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
        Ok((*id == 1).then(alice))
    }
}

type AuthSession = axum_login::AuthSession<Backend>;

fn internal<E>(_: E) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn login(mut auth: AuthSession, Form(creds): Form<Credentials>) -> StatusCode {
    let Ok(Some(user)) = auth.authenticate(creds).await else {
        return StatusCode::UNAUTHORIZED;
    };
    // Cycles the session id and stores the user id in the session.
    match auth.login(&user).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn me(auth: AuthSession, session: Session) -> Result<String, StatusCode> {
    let user = auth.user.ok_or(StatusCode::UNAUTHORIZED)?; // set: login_required! ran first
    let visits: u64 = session.get("visits").await.map_err(internal)?.unwrap_or(0) + 1;
    session.insert("visits", visits).await.map_err(internal)?;
    Ok(format!("{}, visit {visits}", user.name))
}

async fn logout(mut auth: AuthSession) -> StatusCode {
    match auth.logout().await {
        // Removes the user and flushes the session: its data goes with it.
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

// `main`: `axum::serve(TcpListener::bind("127.0.0.1:3000").await?, app()).await?`
pub fn app() -> Router {
    let sessions = SessionManagerLayer::new(MemoryStore::default())
        .with_secure(false) // plain HTTP in development
        .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
    let auth_layer = AuthManagerLayerBuilder::new(Backend, sessions).build();
    Router::new()
        .route("/me", get(me))
        .route_layer(login_required!(Backend)) // 401 without a login
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(auth_layer)
}
