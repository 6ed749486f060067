//! User operations: create, list, get, update (licence, type), reset the personal PIN.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::{body, existing};
use super::error::ApiError;
use super::query::ListQuery;
use super::{AdminState, Reply};
use crate::model::{
    AccountId, AccountType, EmailStatus, InviteStatus, License, RegistrationStatus, UserType,
};
use crate::store::accounts::timestamp;
use crate::store::invites::Invite;
use crate::store::users::{CreateUser, User};

/// The model's `EmailAddress` pattern (`.+@.+\..+`), plus sane limits: no spaces or control characters,
/// at most 254 characters.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn user_json(u: &User) -> Value {
    json!({
        "UserId": u.id,
        "AccountId": u.account_id.as_ref().map(AccountId::as_str),
        "PrimaryEmail": u.email,
        "DisplayName": u.display_name,
        "LicenseType": u.license.as_str(),
        "UserType": u.user_type.as_str(),
        "UserRegistrationStatus": u.registration_status.as_str(),
        "PersonalPIN": u.personal_pin,
        "InvitedOn": timestamp(u.created_at),
    })
}

fn not_found(user: &str) -> ApiError {
    ApiError::NotFound(format!("user {user} does not exist in this account"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    #[serde(rename = "Username")]
    username: Option<String>,
    #[serde(rename = "Email")]
    email: Option<String>,
    #[serde(rename = "UserType")]
    user_type: Option<String>,
}

fn parse_type(value: Option<&str>) -> Result<Option<UserType>, ApiError> {
    value
        .map(|t| {
            t.parse::<UserType>()
                .map_err(|e| ApiError::BadRequest(format!("UserType: {e}")))
        })
        .transpose()
}

pub async fn create(
    state: &AdminState,
    account: &AccountId,
    bytes: &[u8],
) -> Result<Reply, ApiError> {
    let req: CreateUserBody = body(bytes)?;
    let email = req
        .email
        .ok_or_else(|| ApiError::BadRequest("Email is required".into()))?;
    if !valid_email(&email) {
        return Err(ApiError::BadRequest(format!(
            "{email:?} is not an e-mail address"
        )));
    }
    let name = req
        .username
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "Username must be at most 100 characters, no control characters".into(),
        ));
    }
    let user_type = parse_type(req.user_type.as_deref())?.unwrap_or(UserType::PrivateUser);
    let account_row = existing(state, account).await?;
    let created = state
        .store
        .create_user(
            account,
            &email,
            &name,
            account_row.default_license,
            user_type,
            (state.now)(),
        )
        .await?;
    match created {
        CreateUser::Created(user) => Ok(Reply::json(
            StatusCode::CREATED,
            json!({ "User": user_json(&user) }),
        )),
        CreateUser::EmailTaken => Err(ApiError::Conflict(format!(
            "a user with e-mail {email} exists already"
        ))),
        CreateUser::NoSuchAccount => Err(ApiError::NotFound(format!(
            "account {account} does not exist"
        ))),
    }
}

pub async fn get(state: &AdminState, account: &AccountId, user: &str) -> Result<Reply, ApiError> {
    let u = state
        .store
        .user(account, user)
        .await?
        .ok_or_else(|| not_found(user))?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "User": user_json(&u) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserBody {
    #[serde(rename = "LicenseType")]
    license: Option<String>,
    #[serde(rename = "UserType")]
    user_type: Option<String>,
}

pub async fn update(
    state: &AdminState,
    account: &AccountId,
    user: &str,
    bytes: &[u8],
) -> Result<Reply, ApiError> {
    let req: UpdateUserBody = body(bytes)?;
    let license = req
        .license
        .as_deref()
        .map(|l| {
            l.parse::<License>()
                .map_err(|e| ApiError::BadRequest(format!("LicenseType: {e}")))
        })
        .transpose()?;
    let user_type = parse_type(req.user_type.as_deref())?;
    let u = state
        .store
        .update_user(account, user, license, user_type)
        .await?
        .ok_or_else(|| not_found(user))?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "User": user_json(&u) }),
    ))
}

pub async fn reset_pin(
    state: &AdminState,
    account: &AccountId,
    user: &str,
) -> Result<Reply, ApiError> {
    let u = state
        .store
        .reset_pin(account, user)
        .await?
        .ok_or_else(|| not_found(user))?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "User": user_json(&u) }),
    ))
}

pub async fn list(state: &AdminState, account: &AccountId, query: &str) -> Result<Reply, ApiError> {
    existing(state, account).await?;
    let q = ListQuery::parse(query, 100)?;
    let email = q.get("user-email");
    let user_type = parse_type(q.get("user-type"))?;
    let (after, max) = (q.after, q.max);
    let page = state
        .store
        .list_users(account, email, user_type, after, max)
        .await?;
    let users: Vec<Value> = page.items.iter().map(user_json).collect();
    let mut out = json!({ "Users": users });
    if let Some(next) = page.next_after {
        out["NextToken"] = json!(next.to_string());
    }
    Ok(Reply::json(StatusCode::OK, out))
}

pub async fn logout(
    state: &AdminState,
    account: &AccountId,
    user: &str,
) -> Result<Reply, ApiError> {
    if !state
        .store
        .revoke_sessions(account, user, (state.now)())
        .await?
    {
        return Err(not_found(user));
    }
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// One entry of a batch's `UserErrors`.
fn user_error(user_id: &str, code: &str, message: &str) -> Value {
    json!({ "UserId": user_id, "ErrorCode": code, "ErrorMessage": message })
}

/// The user batch operations, which answer per-user errors rather than failing the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Suspend,
    Unsuspend,
    Remove,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIdList {
    #[serde(rename = "UserIdList")]
    user_ids: Vec<String>,
}

/// At most this many user ids per batch, as the public model allows.
const MAX_BATCH: usize = 50;

pub async fn batch(
    state: &AdminState,
    account: &AccountId,
    bytes: &[u8],
    kind: Batch,
) -> Result<Reply, ApiError> {
    let req: UserIdList = body(bytes)?;
    if req.user_ids.is_empty() || req.user_ids.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "UserIdList must hold 1-{MAX_BATCH} user ids"
        )));
    }
    let account_row = existing(state, account).await?;
    let team = account_row.account_type == AccountType::Team;
    // The guide: suspension is for enterprise accounts (a team account's users are removed instead),
    // and removal is for team accounts (an enterprise directory owns its users).
    let refused = match kind {
        Batch::Suspend | Batch::Unsuspend if team => {
            Some("users of a team account cannot be suspended; remove them")
        }
        Batch::Remove if !team => {
            Some("users of an enterprise account are managed by its directory")
        }
        _ => None,
    };
    let mut errors = Vec::new();
    for id in &req.user_ids {
        let error = |code: &str, message: &str| user_error(id, code, message);
        if let Some(message) = refused {
            errors.push(error("BadRequest", message));
            continue;
        }
        let Ok(id) = uuid::Uuid::parse_str(id).map(|u| u.to_string()) else {
            errors.push(error("NotFound", "no such user"));
            continue;
        };
        let done = match kind {
            Batch::Suspend => {
                state
                    .store
                    .set_registration_status(account, &id, RegistrationStatus::Suspended)
                    .await?
            }
            Batch::Unsuspend => {
                state
                    .store
                    .set_registration_status(account, &id, RegistrationStatus::Registered)
                    .await?
            }
            Batch::Remove => state.store.remove_user(account, &id).await?,
        };
        if !done {
            errors.push(error("NotFound", "no such user in this account"));
        }
    }
    Ok(Reply::json(StatusCode::OK, json!({ "UserErrors": errors })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchUpdateBody {
    #[serde(rename = "UpdateUserRequestItems")]
    items: Vec<UpdateItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateItem {
    #[serde(rename = "UserId")]
    user_id: String,
    #[serde(rename = "LicenseType")]
    license: Option<String>,
    #[serde(rename = "UserType")]
    user_type: Option<String>,
    #[serde(rename = "AlexaForBusinessMetadata")]
    _alexa: Option<serde_json::Value>,
}

/// BatchUpdateUser: up to 20 licence/type changes; each bad item is a user error, not a failed batch.
pub async fn batch_update(
    state: &AdminState,
    account: &AccountId,
    bytes: &[u8],
) -> Result<Reply, ApiError> {
    let req: BatchUpdateBody = body(bytes)?;
    if req.items.is_empty() || req.items.len() > 20 {
        return Err(ApiError::BadRequest(
            "UpdateUserRequestItems must hold 1-20 items".into(),
        ));
    }
    existing(state, account).await?;
    let mut errors = Vec::new();
    for item in &req.items {
        let error = |code: &str, message: String| user_error(&item.user_id, code, &message);
        let license = match item
            .license
            .as_deref()
            .map(str::parse::<License>)
            .transpose()
        {
            Ok(l) => l,
            Err(e) => {
                errors.push(error("BadRequest", format!("LicenseType: {e}")));
                continue;
            }
        };
        let user_type = match item
            .user_type
            .as_deref()
            .map(str::parse::<UserType>)
            .transpose()
        {
            Ok(t) => t,
            Err(e) => {
                errors.push(error("BadRequest", format!("UserType: {e}")));
                continue;
            }
        };
        let Ok(id) = uuid::Uuid::parse_str(&item.user_id).map(|u| u.to_string()) else {
            errors.push(error("NotFound", "no such user".into()));
            continue;
        };
        if state
            .store
            .update_user(account, &id, license, user_type)
            .await?
            .is_none()
        {
            errors.push(error("NotFound", "no such user in this account".into()));
        }
    }
    Ok(Reply::json(StatusCode::OK, json!({ "UserErrors": errors })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteUsersBody {
    #[serde(rename = "UserEmailList")]
    emails: Vec<String>,
    #[serde(rename = "UserType")]
    user_type: Option<String>,
}

/// InviteUsers: each address becomes (or stays) a user of the account and gets an e-mail with a
/// registration link. A bad address fails its own invite, never the batch.
pub async fn invite(
    state: &AdminState,
    account: &AccountId,
    bytes: &[u8],
) -> Result<Reply, ApiError> {
    let req: InviteUsersBody = body(bytes)?;
    if req.emails.is_empty() || req.emails.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "UserEmailList must hold 1-{MAX_BATCH} addresses"
        )));
    }
    let user_type = parse_type(req.user_type.as_deref())?.unwrap_or(UserType::PrivateUser);
    let account_row = existing(state, account).await?;
    let now = (state.now)();
    let mut invites = Vec::with_capacity(req.emails.len());
    for email in &req.emails {
        let failed = || json!({ "Status": InviteStatus::Failed.as_str(), "EmailAddress": email, "EmailStatus": EmailStatus::NotSent.as_str() });
        if !valid_email(email) {
            invites.push(failed());
            continue;
        }
        let user = match state.store.user_by_email(email).await? {
            // Ours, or unmanaged (self-signed-up): accepting the invitation brings them into the account.
            Some(u) if u.account_id.as_ref().is_none_or(|a| a == account) => u,
            // The address belongs to a user of another account.
            Some(_) => {
                invites.push(failed());
                continue;
            }
            None => {
                let name = email.split('@').next().unwrap_or_default();
                match state
                    .store
                    .create_user(
                        account,
                        email,
                        name,
                        account_row.default_license,
                        user_type,
                        now,
                    )
                    .await?
                {
                    CreateUser::Created(u) => *u,
                    _ => {
                        invites.push(failed());
                        continue;
                    }
                }
            }
        };
        let id = uuid::Uuid::new_v4().to_string();
        // A random registration token (256 bits, URL-safe hex).
        let token = crate::secrets::random_hex(32);
        let link = format!("{}/register?invite={token}", state.public_url);
        let body = format!(
            "Hello,\n\nYou have been invited to join {account} on Convene.\n\nOpen this link to choose your \
             display name and password:\n\n{link}\n\nIf you did not expect this invitation, ignore this message.\n",
            account = account_row.name
        );
        let subject = format!("Join {} on Convene", account_row.name);
        let email_status = match state.mailer.send(&id, &user.email, &subject, body).await {
            Ok(_) => EmailStatus::Sent,
            Err(e) => {
                tracing::warn!(error = %e, "invitation e-mail not sent");
                EmailStatus::Failed
            }
        };
        let invite = Invite {
            id: id.clone(),
            account_id: account.clone(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            status: InviteStatus::Pending,
            email_status,
        };
        state.store.create_invite(&invite, &token, now).await?;
        invites.push(json!({
            "InviteId": id,
            "Status": InviteStatus::Pending.as_str(),
            "EmailAddress": user.email,
            "EmailStatus": email_status.as_str(),
        }));
    }
    Ok(Reply::json(
        StatusCode::CREATED,
        json!({ "Invites": invites }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        for ok in ["ada@example.com", "a.b+c@sub.example.org"] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
            "ada@example.",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(!valid_email(&format!("{}@example.com", "x".repeat(250))));
    }
}
