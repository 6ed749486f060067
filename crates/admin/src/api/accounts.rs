//! Account operations: create, list, get, update (rename, default licence), delete.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::query::ListQuery;
use super::{AdminState, Reply};
use crate::model::{AccountId, AccountType, License};
use crate::store::accounts::{Account, timestamp};

/// The public API's `AccountName`: 1-100 characters with at least one that is not white space.
fn check_name(name: &str) -> Result<&str, ApiError> {
    let len = name.chars().count();
    if len == 0 || len > 100 || name.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "Name must be 1-100 characters and not only white space".into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "Name must not contain control characters".into(),
        ));
    }
    Ok(name)
}

pub(super) fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.is_empty() {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
}

pub fn account_json(state: &AdminState, a: &Account) -> Value {
    json!({
        "AwsAccountId": state.aws_account_id,
        "AccountId": a.id.as_str(),
        "Name": a.name,
        "AccountType": a.account_type.as_str(),
        "CreatedTimestamp": timestamp(a.created_at),
        "DefaultLicense": a.default_license.as_str(),
        "SupportedLicenses": [License::Basic.as_str(), License::Pro.as_str()],
        "AccountStatus": a.status.as_str(),
        "SigninDelegateGroups": [],
    })
}

/// The account, or `NotFoundException`: every operation under `/accounts/{id}` starts here.
pub(super) async fn existing(state: &AdminState, id: &AccountId) -> Result<Account, ApiError> {
    state
        .store
        .account(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {id} does not exist")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    #[serde(rename = "Name")]
    name: String,
}

pub async fn create(state: &AdminState, bytes: &[u8]) -> Result<Reply, ApiError> {
    let req: CreateAccount = body(bytes)?;
    let name = check_name(&req.name)?;
    let account = state
        .store
        .create_account(name, AccountType::Team, License::Pro, (state.now)())
        .await?;
    Ok(Reply::json(
        StatusCode::CREATED,
        json!({ "Account": account_json(state, &account) }),
    ))
}

pub async fn get(state: &AdminState, id: &AccountId) -> Result<Reply, ApiError> {
    let account = existing(state, id).await?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "Account": account_json(state, &account) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAccount {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "DefaultLicense")]
    default_license: Option<String>,
}

pub async fn update(state: &AdminState, id: &AccountId, bytes: &[u8]) -> Result<Reply, ApiError> {
    let req: UpdateAccount = body(bytes)?;
    let name = req.name.as_deref().map(check_name).transpose()?;
    let license = req
        .default_license
        .as_deref()
        .map(|l| {
            l.parse::<License>()
                .map_err(|e| ApiError::BadRequest(format!("DefaultLicense: {e}")))
        })
        .transpose()?;
    let account = state
        .store
        .update_account(id, name, license)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {id} does not exist")))?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "Account": account_json(state, &account) }),
    ))
}

pub async fn delete(state: &AdminState, id: &AccountId) -> Result<Reply, ApiError> {
    existing(state, id).await?;
    // The guide: an account is deleted only once its users are removed.
    let users = state.store.user_count(id).await?;
    if users > 0 {
        return Err(ApiError::UnprocessableEntity(format!(
            "account {id} still has {users} user(s); remove them first"
        )));
    }
    if !state.store.delete_account(id).await? {
        return Err(ApiError::NotFound(format!("account {id} does not exist")));
    }
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// Query parameters of ListAccounts.
pub async fn list(state: &AdminState, query: &str) -> Result<Reply, ApiError> {
    let q = ListQuery::parse(query, 100)?;
    let (name, user_email) = (q.get("name").map(str::to_owned), q.get("user-email"));
    let (after, max) = (q.after, q.max);
    if let Some(email) = user_email {
        // The account that user belongs to (an address belongs to at most one user).
        let accounts = match state.store.user_by_email(email).await? {
            Some(crate::store::users::User {
                account_id: Some(account_id),
                ..
            }) => match state.store.account(&account_id).await? {
                Some(a) if name.as_deref().is_none_or(|n| a.name.starts_with(n)) => {
                    vec![account_json(state, &a)]
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        return Ok(Reply::json(StatusCode::OK, json!({ "Accounts": accounts })));
    }
    let page = state
        .store
        .list_accounts(name.as_deref(), after, max)
        .await?;
    let accounts: Vec<Value> = page.items.iter().map(|a| account_json(state, a)).collect();
    let mut out = json!({ "Accounts": accounts });
    if let Some(next) = page.next_after {
        out["NextToken"] = json!(next.to_string());
    }
    Ok(Reply::json(StatusCode::OK, out))
}

pub async fn get_settings(state: &AdminState, id: &AccountId) -> Result<Reply, ApiError> {
    let settings = state
        .store
        .account_settings(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {id} does not exist")))?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "AccountSettings": {
            "DisableRemoteControl": settings.disable_remote_control,
            "EnableDialOut": settings.enable_dial_out,
        }}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAccountSettings {
    #[serde(rename = "AccountSettings")]
    settings: SettingsFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFields {
    #[serde(rename = "DisableRemoteControl")]
    disable_remote_control: Option<bool>,
    #[serde(rename = "EnableDialOut")]
    enable_dial_out: Option<bool>,
}

pub async fn update_settings(
    state: &AdminState,
    id: &AccountId,
    bytes: &[u8],
) -> Result<Reply, ApiError> {
    let req: UpdateAccountSettings = body(bytes)?;
    let s = req.settings;
    if !state
        .store
        .update_account_settings(id, s.disable_remote_control, s.enable_dial_out)
        .await?
    {
        return Err(ApiError::NotFound(format!("account {id} does not exist")));
    }
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
