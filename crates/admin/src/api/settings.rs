//! Settings operations: per-user telephony settings, per-account retention, deployment-wide settings.
//! Each request body is checked against the API model's shape before it is stored.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accounts::{body, existing};
use super::error::ApiError;
use super::{AdminState, Reply};
use crate::model::AccountId;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Telephony {
    #[serde(rename = "InboundCalling")]
    inbound_calling: bool,
    #[serde(rename = "OutboundCalling")]
    outbound_calling: bool,
    #[serde(rename = "SMS")]
    sms: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct UserSettings {
    #[serde(rename = "Telephony")]
    telephony: Telephony,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserSettings {
    #[serde(rename = "UserSettings")]
    settings: UserSettings,
}

async fn require_user(state: &AdminState, account: &AccountId, user: &str) -> Result<(), ApiError> {
    match state.store.user(account, user).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!(
            "user {user} does not exist in this account"
        ))),
    }
}

pub async fn get_user(
    state: &AdminState,
    account: &AccountId,
    user: &str,
) -> Result<Reply, ApiError> {
    require_user(state, account, user).await?;
    // Convene has no telephony: everything off until a setting says otherwise.
    let value = state.store.settings("user", user).await?.unwrap_or_else(
        || json!({ "Telephony": { "InboundCalling": false, "OutboundCalling": false, "SMS": false } }),
    );
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "UserSettings": value }),
    ))
}

pub async fn update_user(
    state: &AdminState,
    account: &AccountId,
    user: &str,
    bytes: &[u8],
) -> Result<Reply, ApiError> {
    let req: UpdateUserSettings = body(bytes)?;
    require_user(state, account, user).await?;
    let value =
        serde_json::to_value(&req.settings).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state.store.put_settings("user", user, &value).await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Retention {
    #[serde(rename = "RetentionDays")]
    days: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RetentionSettings {
    #[serde(
        rename = "RoomRetentionSettings",
        skip_serializing_if = "Option::is_none"
    )]
    room: Option<Retention>,
    #[serde(
        rename = "ConversationRetentionSettings",
        skip_serializing_if = "Option::is_none"
    )]
    conversation: Option<Retention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRetention {
    #[serde(rename = "RetentionSettings")]
    settings: RetentionSettings,
}

pub async fn get_retention(state: &AdminState, account: &AccountId) -> Result<Reply, ApiError> {
    existing(state, account).await?;
    let value = state
        .store
        .settings("retention", account.as_str())
        .await?
        .unwrap_or_else(|| json!({}));
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "RetentionSettings": value }),
    ))
}

pub async fn put_retention(
    state: &AdminState,
    account: &AccountId,
    bytes: &[u8],
) -> Result<Reply, ApiError> {
    let req: PutRetention = body(bytes)?;
    for days in [&req.settings.room, &req.settings.conversation]
        .into_iter()
        .flatten()
        .filter_map(|r| r.days)
    {
        if !(1..=5475).contains(&days) {
            return Err(ApiError::BadRequest("RetentionDays must be 1-5475".into()));
        }
    }
    existing(state, account).await?;
    let value =
        serde_json::to_value(&req.settings).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store
        .put_settings("retention", account.as_str(), &value)
        .await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CdrBucket {
    #[serde(rename = "CdrBucket", skip_serializing_if = "Option::is_none")]
    cdr_bucket: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct GlobalSettings {
    #[serde(rename = "BusinessCalling", skip_serializing_if = "Option::is_none")]
    business_calling: Option<CdrBucket>,
    #[serde(rename = "VoiceConnector", skip_serializing_if = "Option::is_none")]
    voice_connector: Option<CdrBucket>,
}

pub async fn get_global(state: &AdminState) -> Result<Reply, ApiError> {
    let value = state
        .store
        .settings("global", "")
        .await?
        .unwrap_or_else(|| json!({}));
    Ok(Reply::json(StatusCode::OK, value))
}

pub async fn update_global(state: &AdminState, bytes: &[u8]) -> Result<Reply, ApiError> {
    let req: GlobalSettings = body(bytes)?;
    let value = serde_json::to_value(&req).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state.store.put_settings("global", "", &value).await?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
