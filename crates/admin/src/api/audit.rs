//! The audit trail of the admin API: every call, allowed or denied, success or error, becomes a
//! CloudTrail-format record, appended to the hash-chained log before the response is sent.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::ApiError;
use super::query::ListQuery;
use super::{AdminState, Reply};
use crate::store::accounts::timestamp;
use crate::store::audit::AuditQuery;

/// The `eventSource` of our records (CloudTrail uses the service's DNS name; this is the deployment's).
pub const EVENT_SOURCE: &str = "chime.convene";

/// What is known about a call by the time it is answered.
#[derive(Debug, Default)]
pub struct CallInfo {
    pub operation: Option<&'static str>,
    pub principal: Option<String>,
    pub access_key_id: Option<String>,
    pub region: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub method: String,
    pub path: String,
    pub query: String,
}

fn request_parameters(info: &CallInfo, body: &[u8]) -> Value {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    json!({ "method": info.method, "path": info.path, "query": info.query, "body": body })
}

/// Build the record for one call and append it to the chain. An error here means the call must not be
/// reported as done: the caller answers `ServiceFailure` instead.
pub async fn record(
    state: &AdminState,
    info: &CallInfo,
    body: &[u8],
    outcome: &Result<Reply, ApiError>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let event_id = uuid::Uuid::new_v4().to_string();
    let event_time = timestamp(now);
    let event_name = info.operation.unwrap_or("Unknown");
    let principal = info.principal.clone().unwrap_or_default();
    let (error_code, error_message, response) = match outcome {
        Ok(reply) => (
            Value::Null,
            Value::Null,
            reply.body.clone().unwrap_or(Value::Null),
        ),
        Err(e) => (json!(e.parts().0), json!(e.to_string()), Value::Null),
    };
    let read_only = ["Get", "List", "Lookup"]
        .iter()
        .any(|p| event_name.starts_with(p));
    let record = json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": if info.principal.is_some() { "IAMUser" } else { "Unknown" },
            "principalId": principal,
            "arn": info.principal.as_ref().map(|p| format!("arn:convene:iam::{}:user/{p}", state.aws_account_id)),
            "accountId": state.aws_account_id,
            "accessKeyId": info.access_key_id,
            "userName": info.principal,
        },
        "eventTime": event_time,
        "eventSource": EVENT_SOURCE,
        "eventName": event_name,
        "awsRegion": info.region,
        "sourceIPAddress": info.source_ip,
        "userAgent": info.user_agent,
        "errorCode": error_code,
        "errorMessage": error_message,
        "requestParameters": request_parameters(info, body),
        "responseElements": response,
        "requestID": uuid::Uuid::new_v4().to_string(),
        "eventID": event_id,
        "eventType": "AwsApiCall",
        "readOnly": read_only,
        "recipientAccountId": state.aws_account_id,
    });
    // One append at a time: each reads the chain's tail.
    let _guard = state.audit_lock.lock().await;
    state
        .store
        .append_audit(
            &event_id,
            &event_time,
            event_name,
            &principal,
            &record.to_string(),
        )
        .await?;
    Ok(())
}

/// LookupEvents (our extension): `GET /audit/events?event-name=&principal=&start-time=&end-time=&max-results=&next-token=`.
pub async fn lookup(state: &AdminState, query: &str) -> Result<Reply, ApiError> {
    let params = ListQuery::parse(query, 50)?;
    let time = |key: &str| -> Result<String, ApiError> {
        match params.get(key) {
            None => Ok(String::new()),
            Some(v) => OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(timestamp)
                .map_err(|_| ApiError::BadRequest(format!("{key} must be an RFC 3339 time"))),
        }
    };
    let (start, end) = (time("start-time")?, time("end-time")?);
    let event_name = params.get("event-name").unwrap_or("").to_owned();
    let principal = params.get("principal").unwrap_or("").to_owned();
    let (after, max) = (params.after.unwrap_or(0), params.max);
    let q = AuditQuery {
        event_name: &event_name,
        principal: &principal,
        start: &start,
        end: &end,
    };
    let mut rows = state.store.lookup_audit(&q, after, max + 1).await?;
    let next = if rows.len() > max as usize {
        rows.truncate(max as usize);
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    let events: Vec<Value> = rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.record).ok())
        .collect();
    let mut out = json!({ "Events": events });
    if let Some(next) = next {
        out["NextToken"] = json!(next);
    }
    Ok(Reply::json(axum::http::StatusCode::OK, out))
}
