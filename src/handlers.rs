//! Ready-made axum handlers.

use axum::{Json, body::Bytes, http::header, response::IntoResponse};
use serde_json::json;

use crate::{
    Auth, Rejection,
    error::{Error, ErrorKind},
};

/// `POST /refresh`: exchanges a refresh token — from a JSON body `{"refresh_token": "…"}`, or
/// else the refresh cookie — for new credentials, answering
/// `{"access_token", "refresh_token", "token_type": "Bearer", "expires_in"}` with
/// `Cache-Control: no-store` (and new cookies when cookie transport is configured). Unknown,
/// expired, revoked or reused tokens are 401 `{"error": "invalid_grant"}`; a body that is not
/// such JSON is 400.
///
/// ```
/// use axum::{Router, routing::post};
///
/// let app: Router = Router::new().route("/refresh", post(keycard::handlers::refresh));
/// ```
pub async fn refresh(auth: Auth, body: Bytes) -> Result<impl IntoResponse, Rejection> {
    #[derive(serde::Deserialize)]
    struct Body {
        refresh_token: String,
    }
    let token = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: Body = serde_json::from_slice(&body).map_err(|e| {
            Rejection::from(
                Error::with_message(
                    ErrorKind::MalformedRequest,
                    "expected a JSON body {\"refresh_token\": \"…\"}",
                )
                .with_source(e),
            )
        })?;
        Some(parsed.refresh_token)
    };
    let issued = auth.refresh(token.as_deref()).await?;
    let access = issued.access_token.as_ref();
    let body = json!({
        "access_token": access.map(|a| a.token.as_str()),
        "refresh_token": issued.refresh_token.as_ref().map(|t| t.expose_secret()),
        "token_type": "Bearer",
        "expires_in": access.map(|a| a.expires_in.as_secs()),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)))
}
