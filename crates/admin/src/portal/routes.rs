//! The portal's HTTP handlers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use convene_core::{AttendeeId, ClientType, JoinClaims, MeetingId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::admission::{self, Refusal};
use super::{
    JOIN_TOKEN_LIFETIME, PortalError, PortalState, SESSION_COOKIE, SESSION_LIFETIME,
    check_display_name, passwords,
};
use crate::api::users::valid_email;
use crate::model::RegistrationStatus;
use crate::store::accounts::timestamp;
use crate::store::meetings::{Meeting, MeetingKind, NewMeeting};
use crate::store::reports::FeedbackOutcome;
use crate::store::users::{AcceptInvite, CreateUser, User};

/// Requests are small JSON objects.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most invitees on one scheduled meeting.
const MAX_INVITEES: usize = 250;
/// Longest scheduled meeting, in minutes.
const MAX_DURATION_MINUTES: i64 = 24 * 60;

pub fn router(state: Arc<PortalState>) -> Router {
    Router::new()
        .route("/v1/register", post(register))
        .route("/v1/signup", post(signup))
        .route(
            "/v1/session",
            get(current_session).post(sign_in).delete(sign_out),
        )
        .route("/v1/meetings", get(list_meetings).post(create_meeting))
        .route("/v1/meetings/{id}/join", post(join))
        .route("/v1/feedback", post(feedback))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

type Reply = Result<Response, PortalError>;

fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, PortalError> {
    // Requiring JSON also keeps plain cross-site form posts (which cannot set this type) out.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(PortalError::BadRequest(
            "send the request body as application/json".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| PortalError::BadRequest(format!("request body: {e}")))
}

fn user_json(u: &User, now: OffsetDateTime) -> Value {
    json!({
        "user_id": u.id,
        "email": u.email,
        "display_name": u.display_name,
        "license": u.license.as_str(),
        "personal_pin": u.personal_pin,
        "can_host": admission::can_host(u, now).is_ok(),
        "managed": u.account_id.is_some(),
        "trial_ends_at": u.trial_ends_at.map(timestamp),
    })
}

fn meeting_json(m: &Meeting) -> Value {
    json!({
        "meeting_id": m.id,
        "kind": m.kind.as_str(),
        "title": m.title,
        "starts_at": m.starts_at.map(timestamp),
        "duration_minutes": m.duration_minutes,
        "invitees": m.invitees,
        "join_link": format!("/?meeting={}", m.id),
    })
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

fn cookie(state: &PortalState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    );
    // Built only from hex tokens and fixed text.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The signed-in user, if the request carries a good session cookie.
async fn signed_in(state: &PortalState, headers: &HeaderMap) -> Result<Option<User>, PortalError> {
    match session_token(headers) {
        Some(token) => Ok(state.store.session_user(token, (state.now)()).await?),
        None => Ok(None),
    }
}

async fn require_user(state: &PortalState, headers: &HeaderMap) -> Result<User, PortalError> {
    signed_in(state, headers)
        .await?
        .ok_or_else(|| PortalError::Unauthorized("sign in first".into()))
}

fn now_ms(state: &PortalState) -> u64 {
    ((state.now)().unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

fn check_guesses(state: &PortalState, source: IpAddr) -> Result<(), PortalError> {
    let guesses = state.guesses.lock().map_err(|_| PortalError::Internal)?;
    match guesses.check(source, now_ms(state)) {
        Some(wait) => Err(PortalError::RateLimited(wait.as_secs().max(1))),
        None => Ok(()),
    }
}

fn count_failure(state: &PortalState, source: IpAddr) {
    if let Ok(mut guesses) = state.guesses.lock() {
        guesses.failed(source, now_ms(state));
    }
}

/// Start a session for `user` and answer with it as a cookie.
async fn start_session(state: &PortalState, user: &User) -> Reply {
    let token = crate::secrets::random_hex(32);
    let now = (state.now)();
    state
        .store
        .create_session(&user.id, &token, now, now + SESSION_LIFETIME)
        .await?;
    let mut response = Json(json!({ "user": user_json(user, (state.now)()) })).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(state, &token, SESSION_LIFETIME.as_secs()),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct RegisterBody {
    #[serde(default)]
    invite: Option<String>,
    #[serde(default)]
    signup: Option<String>,
    name: String,
    password: String,
}

/// Accept an invitation (or confirm a self sign-up): choose a display name and a password, become
/// Registered, stay signed in.
async fn register(State(state): State<Arc<PortalState>>, headers: HeaderMap, body: Bytes) -> Reply {
    let req: RegisterBody = parse(&headers, &body)?;
    if req.invite.is_some() == req.signup.is_some() {
        return Err(PortalError::BadRequest(
            "give exactly one of invite and signup (the token from the link)".into(),
        ));
    }
    let name = check_display_name(&req.name)?;
    passwords::check_policy(&req.password).map_err(|e| PortalError::BadRequest(e.to_string()))?;
    let password = req.password;
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|_| PortalError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            PortalError::Internal
        })?;
    let now = (state.now)();
    let accepted = match (&req.invite, &req.signup) {
        (Some(invite), _) => state.store.accept_invite(invite, &name, &hash, now).await?,
        (None, Some(signup)) => {
            state
                .store
                .accept_signup(signup, &name, &hash, now, now + super::TRIAL_LENGTH)
                .await?
        }
        (None, None) => return Err(PortalError::Internal),
    };
    match accepted {
        AcceptInvite::Registered(user) => {
            tracing::info!(user = %user.id, managed = user.account_id.is_some(), "user registered");
            start_session(&state, &user).await
        }
        AcceptInvite::Unknown => Err(PortalError::NotFound(
            "this link is not valid any more: ask your administrator for a new invitation, or sign up again"
                .into(),
        )),
        AcceptInvite::Suspended => Err(PortalError::Forbidden(
            "your user is suspended; ask your administrator".into(),
        )),
    }
}

#[derive(Deserialize)]
struct SignupBody {
    email: String,
}

/// Self sign-up: an address nobody uses yet becomes an unmanaged user on a 30-day Pro trial once they
/// confirm it through the link e-mailed to them. The answer is the same whether or not the address is
/// known, so it tells nobody who has an account; a known address gets a "you can sign in" e-mail instead.
async fn signup(
    State(state): State<Arc<PortalState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let req: SignupBody = parse(&headers, &body)?;
    let email = req.email.trim().to_lowercase();
    if !valid_email(&email) {
        return Err(PortalError::BadRequest(format!(
            "{email:?} is not an e-mail address"
        )));
    }
    check_guesses(&state, peer.ip())?;
    // Every sign-up counts against the source's budget: it sends mail.
    count_failure(&state, peer.ip());
    let now = (state.now)();
    let user = match state.store.user_by_email(&email).await? {
        Some(u)
            if u.account_id.is_none()
                && u.registration_status == RegistrationStatus::Unregistered =>
        {
            Some(u)
        }
        Some(_) => None,
        None => match state.store.create_unmanaged_user(&email, now).await? {
            CreateUser::Created(u) => Some(*u),
            _ => None,
        },
    };
    let mail_id = uuid::Uuid::new_v4().to_string();
    let (subject, text) = match &user {
        Some(u) => {
            let token = crate::secrets::random_hex(32);
            state
                .store
                .create_signup(&u.id, &token, now, now + super::SIGNUP_LINK_LIFETIME)
                .await?;
            let link = format!("{}/register?signup={token}", state.public_url);
            (
                "Confirm your Convene sign-up",
                format!(
                    "Hello,\n\nOpen this link within 24 hours to choose your display name and password and \
                     start your 30-day Pro trial:\n\n{link}\n\nIf you did not sign up, ignore this message.\n"
                ),
            )
        }
        None => (
            "Your Convene sign-up",
            format!(
                "Hello,\n\nSomeone (perhaps you) tried to sign up with this address, which already has a \
                 Convene user. Sign in at {}/ instead.\n",
                state.public_url
            ),
        ),
    };
    if let Err(e) = state.mailer.send(&mail_id, &email, subject, text).await {
        tracing::warn!(error = %e, "sign-up e-mail not sent");
        return Err(PortalError::Internal);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message": "check your inbox for a link to finish signing up" })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct SignInBody {
    email: String,
    password: String,
}

async fn sign_in(
    State(state): State<Arc<PortalState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let req: SignInBody = parse(&headers, &body)?;
    check_guesses(&state, peer.ip())?;
    let wrong = || PortalError::Unauthorized("the e-mail address or the password is wrong".into());
    let user = state.store.user_by_email(&req.email).await?;
    let stored = match &user {
        Some(u) => state.store.password_hash(&u.id).await?,
        None => None,
    };
    let password = req.password;
    // Verify even when there is no such user, so timing does not tell which addresses exist.
    let stored_or_dummy = stored.clone().unwrap_or_else(|| DUMMY_HASH.to_owned());
    let matches =
        tokio::task::spawn_blocking(move || passwords::verify(&password, &stored_or_dummy))
            .await
            .map_err(|_| PortalError::Internal)?;
    let (Some(user), Some(_), true) = (user, stored, matches) else {
        count_failure(&state, peer.ip());
        return Err(wrong());
    };
    match user.registration_status {
        crate::model::RegistrationStatus::Registered => start_session(&state, &user).await,
        crate::model::RegistrationStatus::Suspended => Err(PortalError::Forbidden(
            "your user is suspended; ask your administrator".into(),
        )),
        crate::model::RegistrationStatus::Unregistered => Err(wrong()),
    }
}

/// A valid Argon2id hash of a random password nobody knows (for constant-work failed sign-ins).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J3vwP0AIJ9Fq5NSr5bZ0jIIpN0jMcKd4mS1hHeO4eUs";

async fn current_session(State(state): State<Arc<PortalState>>, headers: HeaderMap) -> Reply {
    let user = require_user(&state, &headers).await?;
    Ok(Json(json!({ "user": user_json(&user, (state.now)()) })).into_response())
}

async fn sign_out(State(state): State<Arc<PortalState>>, headers: HeaderMap) -> Reply {
    if let Some(token) = session_token(&headers) {
        state.store.delete_session(token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum NewKind {
    Instant,
    Scheduled,
}

#[derive(Deserialize)]
struct CreateMeetingBody {
    kind: NewKind,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    duration_minutes: Option<i64>,
    #[serde(default)]
    invitees: Vec<String>,
}

/// Start an instant meeting or schedule one. Only users who may host (Pro) can.
async fn create_meeting(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let host = require_user(&state, &headers).await?;
    let req: CreateMeetingBody = parse(&headers, &body)?;
    admission::can_host(&host, (state.now)()).map_err(|r| PortalError::Forbidden(r.to_string()))?;
    let title = match req.title.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => {
            if t.chars().count() > 200 || t.chars().any(char::is_control) {
                return Err(PortalError::BadRequest(
                    "the title must be at most 200 characters without control characters".into(),
                ));
            }
            t.to_owned()
        }
        _ => format!("{}'s meeting", host.display_name),
    };
    let (kind, starts_at, duration) = match req.kind {
        NewKind::Instant => (MeetingKind::Instant, None, None),
        NewKind::Scheduled => {
            let starts = req.starts_at.as_deref().ok_or_else(|| {
                PortalError::BadRequest("a scheduled meeting needs starts_at (RFC 3339)".into())
            })?;
            let starts = OffsetDateTime::parse(starts, &Rfc3339).map_err(|e| {
                PortalError::BadRequest(format!("starts_at {starts:?} is not RFC 3339: {e}"))
            })?;
            let duration = req.duration_minutes.unwrap_or(30);
            if !(1..=MAX_DURATION_MINUTES).contains(&duration) {
                return Err(PortalError::BadRequest(format!(
                    "duration_minutes must be 1-{MAX_DURATION_MINUTES}"
                )));
            }
            (MeetingKind::Scheduled, Some(starts), Some(duration))
        }
    };
    if req.invitees.len() > MAX_INVITEES || req.invitees.iter().any(|e| !valid_email(e)) {
        return Err(PortalError::BadRequest(format!(
            "invitees must be at most {MAX_INVITEES} e-mail addresses"
        )));
    }
    let meeting = state
        .store
        .create_meeting(
            &NewMeeting {
                host,
                kind,
                title,
                starts_at,
                duration_minutes: duration,
                invitees: req.invitees,
            },
            (state.now)(),
        )
        .await?;
    tracing::info!(meeting = %meeting.id, kind = meeting.kind.as_str(), "meeting created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "meeting": meeting_json(&meeting) })),
    )
        .into_response())
}

/// The signed-in user's meetings, and their personal meeting room.
async fn list_meetings(State(state): State<Arc<PortalState>>, headers: HeaderMap) -> Reply {
    let user = require_user(&state, &headers).await?;
    let meetings = state.store.meetings_hosted_by(&user.id, 100).await?;
    let personal = state.store.meeting(&user.personal_pin).await?;
    Ok(Json(json!({
        "meetings": meetings.iter().map(meeting_json).collect::<Vec<_>>(),
        "personal": personal.as_ref().map(meeting_json),
    }))
    .into_response())
}

#[derive(Deserialize, Default)]
struct JoinBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    client: Option<String>,
}

/// Ask to join: apply the admission rule and hand out a join token for the signaling socket.
async fn join(
    State(state): State<Arc<PortalState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(meeting_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let req: JoinBody = if body.is_empty() {
        JoinBody::default()
    } else {
        parse(&headers, &body)?
    };
    check_guesses(&state, peer.ip())?;
    let user = signed_in(&state, &headers).await?;
    let name = match (req.name.as_deref(), &user) {
        (Some(n), _) => check_display_name(n)?,
        (None, Some(u)) => check_display_name(&u.display_name)?,
        (None, None) => {
            return Err(PortalError::BadRequest(
                "guests must give a name to join".into(),
            ));
        }
    };
    let client = match req.client.as_deref() {
        None | Some("web") => ClientType::Web,
        Some("native") => ClientType::Native,
        Some(other) => {
            return Err(PortalError::BadRequest(format!(
                "client {other:?} cannot join here; use web or native"
            )));
        }
    };
    let admission =
        match admission::admit(&state.store, &meeting_id, user.as_ref(), (state.now)()).await {
            Ok(a) => a,
            Err(e) => {
                if matches!(e, admission::AdmitError::Refused(Refusal::UnknownMeeting)) {
                    count_failure(&state, peer.ip());
                }
                return Err(e.into());
            }
        };
    let meeting: MeetingId = admission
        .meeting
        .id
        .parse()
        .map_err(|_| PortalError::Internal)?;
    let expires_at = (state.now)() + JOIN_TOKEN_LIFETIME;
    let claims = JoinClaims {
        meeting,
        attendee: AttendeeId::random(),
        name,
        role: admission.role,
        client,
        user: user.map(|u| u.id),
        remote_control: admission.remote_control,
        expires_at: expires_at.unix_timestamp().max(0) as u64,
    };
    let token = state.tokens.issue(&claims);
    Ok(Json(json!({
        "token": token,
        "meeting_id": admission.meeting.id,
        "title": admission.meeting.title,
        "host": admission.host.display_name,
        "attendee_id": claims.attendee,
        "name": claims.name,
        "role": claims.role,
        "expires_at": timestamp(expires_at),
    }))
    .into_response())
}

/// How long after its join token expired an attendee may still answer the end-of-meeting survey.
const FEEDBACK_GRACE_SECS: u64 = 24 * 3600;

#[derive(Deserialize)]
struct FeedbackBody {
    token: String,
    rating: String,
}

/// The end-of-meeting survey: thumbs up or down, authenticated by the join token the attendee used.
async fn feedback(State(state): State<Arc<PortalState>>, headers: HeaderMap, body: Bytes) -> Reply {
    let req: FeedbackBody = parse(&headers, &body)?;
    let positive = match req.rating.as_str() {
        "up" => true,
        "down" => false,
        other => {
            return Err(PortalError::BadRequest(format!(
                "rating must be \"up\" or \"down\", not {other:?}"
            )));
        }
    };
    let now = (state.now)().unix_timestamp().max(0) as u64;
    let claims = state
        .tokens
        .verifier()
        .verify_with_grace(&req.token, now, FEEDBACK_GRACE_SECS)
        .map_err(|e| PortalError::Unauthorized(e.to_string()))?;
    let outcome = state
        .store
        .record_feedback(
            claims.meeting.as_str(),
            &claims.attendee.to_string(),
            claims.user.as_deref(),
            positive,
            (state.now)(),
        )
        .await?;
    match outcome {
        FeedbackOutcome::Recorded => Ok(StatusCode::NO_CONTENT.into_response()),
        FeedbackOutcome::UnknownAttendee => Err(PortalError::NotFound(
            "no meeting attendance matches this token (yet); try again in a moment".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; convene_session=abc; b=2"),
        );
        assert_eq!(session_token(&h), Some("abc"));
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn the_dummy_hash_is_well_formed() {
        assert!(!passwords::verify("anything at all", DUMMY_HASH));
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
