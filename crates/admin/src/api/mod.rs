//! The admin HTTP API (rest-json, SigV4), wire-compatible with the public Chime admin API.
//!
//! Every request takes the same path: read the body (at most 1 MiB) -> authenticate (SigV4 against
//! the principal's sealed secret) -> resolve the operation ([`routes::resolve`]) -> authorize its one
//! `chime:` action against the principal's policies -> run it -> answer, errors in the AWS shape
//! ([`error::ApiError`]).

pub mod accounts;
pub mod audit;
pub mod error;
pub mod query;
pub mod reports;
pub mod routes;
pub mod settings;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::iam::policy::{Decision, ManagedPolicy, PolicyDocument, RequestContext, evaluate};
use crate::iam::sigv4::{self, SignedRequest};
use crate::secrets::MasterKey;
use crate::store::Store;
use crate::store::principals::StoredPrincipal;
use error::ApiError;
use routes::{NoRoute, Operation, Route, resolve};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The SigV4 service name clients sign for.
pub const SERVICE: &str = "chime";

/// What the admin API needs to answer requests.
pub struct AdminState {
    pub store: Store,
    pub master: MasterKey,
    /// Shown as `AwsAccountId` in account descriptions: the deployment's own 12-digit id.
    pub aws_account_id: String,
    /// The clock (a function so tests can fix it).
    pub now: fn() -> OffsetDateTime,
    /// Where invitation e-mails go.
    pub mailer: crate::mail::Mailer,
    /// The base URL users open (registration links point here), without a trailing slash.
    pub public_url: String,
    /// Serialises audit appends (each reads the chain's tail).
    pub audit_lock: tokio::sync::Mutex<()>,
}

/// A successful answer.
pub struct Reply {
    status: StatusCode,
    body: Option<serde_json::Value>,
}

impl Reply {
    pub fn json(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            body: Some(body),
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self { status, body: None }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.body {
            Some(body) => (self.status, axum::Json(body)).into_response(),
            None => self.status.into_response(),
        }
    }
}

/// The admin API's routes, to merge into the server's router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/accounts", axum::routing::any(handle))
        .route("/accounts/{*rest}", axum::routing::any(handle))
        .route("/settings", axum::routing::any(handle))
        .route("/audit/events", axum::routing::any(handle))
        .with_state(state)
}

async fn handle(State(state): State<Arc<AdminState>>, request: Request) -> Response {
    let now = (state.now)();
    // Built in its own scope: the borrow of `request` (whose body is not Sync) must end before any await.
    let mut info = {
        let header = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        audit::CallInfo {
            source_ip: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            user_agent: header(header::USER_AGENT),
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
            ..Default::default()
        }
    };
    let (parts, body) = request.into_parts();
    let (bytes, outcome) = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(bytes) => {
            let outcome = serve(&state, &parts, &bytes, now, &mut info).await;
            (bytes, outcome)
        }
        Err(_) => (
            Default::default(),
            Err(ApiError::BadRequest(
                "request body is larger than 1 MiB".into(),
            )),
        ),
    };
    // The record is committed before anyone hears the outcome.
    if let Err(e) = audit::record(&state, &info, &bytes, &outcome, now).await {
        return e.into_response();
    }
    match outcome {
        Ok(reply) => reply.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn serve(
    state: &AdminState,
    parts: &axum::http::request::Parts,
    bytes: &[u8],
    now: OffsetDateTime,
    info: &mut audit::CallInfo,
) -> Result<Reply, ApiError> {
    let source_ip = info.source_ip.as_deref().and_then(|ip| ip.parse().ok());
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    info.access_key_id = access_key_of(&parts.headers).map(str::to_owned);
    info.region = region_of(&parts.headers).map(str::to_owned);
    if let Ok(route) = resolve(&parts.method, path, query) {
        info.operation = Some(route.operation.action());
    }

    let principal = authenticate(
        state,
        &parts.method,
        path,
        query,
        &parts.headers,
        bytes,
        now,
    )
    .await?;
    info.principal = Some(principal.name.clone());
    let route = resolve(&parts.method, path, query).map_err(|e| match e {
        NoRoute::UnknownPath => ApiError::NotFound(format!("no such resource: {path}")),
        NoRoute::UnknownOperation => {
            ApiError::BadRequest(format!("no operation {} {path}?{query}", parts.method))
        }
        NoRoute::BadId => ApiError::NotFound(format!("no such resource: {path}")),
    })?;
    authorize(&principal, route.operation, source_ip, now)?;
    execute(state, &route, query, bytes).await
}

/// The region in `Credential=AKID/DATE/REGION/...`.
fn region_of(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth
        .split(['\x20', ','])
        .find_map(|p| p.trim().strip_prefix("Credential="))?;
    credential.split('/').nth(2)
}

async fn execute(
    state: &AdminState,
    route: &Route,
    query: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let account = || {
        route
            .account
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("account id missing".into()))
    };
    let user = || {
        route
            .user
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("user id missing".into()))
    };
    let conference = || {
        route
            .conference
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("meeting id missing".into()))
    };
    match route.operation {
        Operation::CreateAccount => accounts::create(state, body).await,
        Operation::ListAccounts => accounts::list(state, query).await,
        Operation::GetAccount => accounts::get(state, account()?).await,
        Operation::UpdateAccount => accounts::update(state, account()?, body).await,
        Operation::DeleteAccount => accounts::delete(state, account()?).await,
        Operation::GetAccountSettings => accounts::get_settings(state, account()?).await,
        Operation::UpdateAccountSettings => {
            accounts::update_settings(state, account()?, body).await
        }
        Operation::ListUsers => users::list(state, account()?, query).await,
        Operation::CreateUser => users::create(state, account()?, body).await,
        Operation::GetUser => users::get(state, account()?, user()?).await,
        Operation::UpdateUser => users::update(state, account()?, user()?, body).await,
        Operation::ResetPersonalPIN => users::reset_pin(state, account()?, user()?).await,
        Operation::LogoutUser => users::logout(state, account()?, user()?).await,
        Operation::BatchSuspendUser => {
            users::batch(state, account()?, body, users::Batch::Suspend).await
        }
        Operation::BatchUnsuspendUser => {
            users::batch(state, account()?, body, users::Batch::Unsuspend).await
        }
        Operation::RemoveUsers => users::batch(state, account()?, body, users::Batch::Remove).await,
        Operation::InviteUsers => users::invite(state, account()?, body).await,
        Operation::BatchUpdateUser => users::batch_update(state, account()?, body).await,
        Operation::GetUserSettings => settings::get_user(state, account()?, user()?).await,
        Operation::UpdateUserSettings => {
            settings::update_user(state, account()?, user()?, body).await
        }
        Operation::GetRetentionSettings => settings::get_retention(state, account()?).await,
        Operation::PutRetentionSettings => settings::put_retention(state, account()?, body).await,
        Operation::GetGlobalSettings => settings::get_global(state).await,
        Operation::UpdateGlobalSettings => settings::update_global(state, body).await,
        Operation::LookupEvents => audit::lookup(state, query).await,
        Operation::ListAccountUsageReportData => reports::usage(state, account()?, query).await,
        Operation::ListMeetingReports => reports::meetings(state, account()?, query).await,
        Operation::GetMeetingDetails => reports::details(state, account()?, conference()?).await,
        Operation::ListMeetingEvents => reports::events(state, account()?, conference()?).await,
        Operation::GetUserActivityReportData => {
            reports::user_activity(state, account()?, user()?, query).await
        }
        Operation::ListActiveProUsers => reports::active_pro(state, account()?, query).await,
    }
}

/// The access key id in `Credential=AKID/...` of an `Authorization` header.
fn access_key_of(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth
        .split(['\x20', ','])
        .find_map(|p| p.trim().strip_prefix("Credential="))?;
    credential.split('/').next().filter(|k| !k.is_empty())
}

async fn authenticate(
    state: &AdminState,
    method: &axum::http::Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<StoredPrincipal, ApiError> {
    let Some(akid) = access_key_of(headers) else {
        return Err(ApiError::UnauthorizedClient(
            "Missing or malformed Authorization header (AWS Signature Version 4)".into(),
        ));
    };
    let principal = state.store.principal_by_key(akid).await?;
    let secret = match &principal {
        Some(p) => Some(state.master.unseal(&p.secret_sealed).map_err(|e| {
            tracing::error!(error = %e, "cannot unseal a principal's secret");
            ApiError::ServiceFailure("credentials store is unreadable; see the server log".into())
        })?),
        None => None,
    };
    let header_list: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let request = SignedRequest {
        method: method.as_str(),
        raw_path: path,
        raw_query: query,
        headers: &header_list,
        body,
    };
    match sigv4::verify(&request, now, SERVICE, |key| {
        if key == akid { secret } else { None }
    }) {
        Ok(_) => principal.ok_or_else(|| ApiError::UnauthorizedClient("unknown access key".into())),
        Err(e) => {
            let (name, _) = e.chime_error();
            Err(if name == "ForbiddenException" {
                ApiError::Forbidden(e.to_string())
            } else {
                ApiError::UnauthorizedClient(e.to_string())
            })
        }
    }
}

/// A principal's policies: managed policy names or whole policy documents, as a JSON array.
pub fn principal_policies(principal: &StoredPrincipal) -> Result<Vec<PolicyDocument>, ApiError> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&principal.policies).map_err(|e| {
            tracing::error!(principal = %principal.name, error = %e, "stored policies unreadable");
            ApiError::ServiceFailure("stored policies are unreadable; see the server log".into())
        })?;
    entries
        .into_iter()
        .map(|entry| match entry {
            serde_json::Value::String(name) => name
                .parse::<ManagedPolicy>()
                .map(ManagedPolicy::document)
                .map_err(|_| ApiError::ServiceFailure(format!("unknown managed policy {name:?}"))),
            document => serde_json::from_value::<PolicyDocument>(document)
                .map_err(|e| ApiError::ServiceFailure(format!("stored policy document: {e}"))),
        })
        .collect()
}

fn authorize(
    principal: &StoredPrincipal,
    operation: Operation,
    source_ip: Option<std::net::IpAddr>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let documents = principal_policies(principal)?;
    let refs: Vec<&PolicyDocument> = documents.iter().collect();
    let action = format!("chime:{}", operation.action());
    let context = RequestContext {
        action: &action,
        resource: "*",
        source_ip,
        current_time: now,
        secure_transport: false,
    };
    match evaluate(&refs, &context) {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny | Decision::ImplicitDeny => Err(ApiError::AccessDenied(format!(
            "User: {} is not authorized to perform: {action}",
            principal.name
        ))),
    }
}
