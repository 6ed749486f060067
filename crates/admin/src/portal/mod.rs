//! The user-facing HTTP API the web app calls (`/v1/...`, JSON, cookie sessions): accepting an
//! invitation, signing in and out, creating meetings, and asking to join one, which returns the signed
//! join token the media plane's signaling requires. Documented in `docs/web-api.md`.
//!
//! Distinct from [`crate::api`] (the administrators' SigV4 API): different callers, credentials and
//! error shapes.

pub mod admission;
pub mod limiter;
pub mod passwords;
mod routes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use convene_core::JoinTokenIssuer;
use time::OffsetDateTime;

use crate::store::Store;
pub use routes::router;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "convene_session";
/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a join token is good for: it is used once, right after it is issued.
pub const JOIN_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// How long a self sign-up's trial lasts.
pub const TRIAL_LENGTH: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a sign-up confirmation link works.
pub const SIGNUP_LINK_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Longest display name, in characters (the signaling protocol's limit).
pub const MAX_NAME_CHARS: usize = 64;

/// What the portal needs.
pub struct PortalState {
    pub store: Store,
    pub tokens: JoinTokenIssuer,
    pub now: fn() -> OffsetDateTime,
    /// Mark cookies `Secure` (set when users reach Convene over HTTPS).
    pub secure_cookies: bool,
    /// Failed sign-ins, unknown meeting IDs and sign-ups per source address.
    pub guesses: Mutex<limiter::GuessLimiter>,
    /// Sign-up confirmation e-mails.
    pub mailer: crate::mail::Mailer,
    /// The base URL people open (links in e-mails), without a trailing slash.
    pub public_url: String,
}

impl PortalState {
    pub fn new(
        store: Store,
        tokens: JoinTokenIssuer,
        mailer: crate::mail::Mailer,
        public_url: &str,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            tokens,
            now: OffsetDateTime::now_utc,
            secure_cookies: public_url.starts_with("https://"),
            guesses: Mutex::new(limiter::GuessLimiter::default()),
            mailer,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }
}

/// An error as the web app sees it: a status, a stable `error` code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("too many failed attempts from your address; try again in {0} s")]
    RateLimited(u64),
    #[error("the service could not complete the request; see the server log")]
    Internal,
}

impl PortalError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<crate::store::StoreError> for PortalError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::Internal
    }
}

impl From<admission::AdmitError> for PortalError {
    fn from(e: admission::AdmitError) -> Self {
        match e {
            admission::AdmitError::Refused(r @ admission::Refusal::UnknownMeeting) => {
                Self::NotFound(r.to_string())
            }
            admission::AdmitError::Refused(r) => Self::Forbidden(r.to_string()),
            admission::AdmitError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let mut response = (
            status,
            Json(serde_json::json!({ "error": code, "message": self.to_string() })),
        )
            .into_response();
        if let Self::RateLimited(secs) = self
            && let Ok(v) = secs.to_string().parse()
        {
            response.headers_mut().insert("retry-after", v);
        }
        response
    }
}

/// A display name as people typed it: trimmed, 1-64 characters, no control characters.
pub fn check_display_name(name: &str) -> Result<String, PortalError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(PortalError::BadRequest(format!(
            "the name must be 1-{MAX_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(name.to_owned())
}
