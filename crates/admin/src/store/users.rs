//! The `users` table.

use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::accounts::{Page, timestamp};
use super::{Store, StoreError};
use crate::model::{AccountId, License, RegistrationStatus, UserType};

/// One stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// None for an unmanaged user (self sign-up, no account has added them yet).
    pub account_id: Option<AccountId>,
    pub email: String,
    pub display_name: String,
    pub license: License,
    pub user_type: UserType,
    pub registration_status: RegistrationStatus,
    pub personal_pin: String,
    pub created_at: OffsetDateTime,
    pub seq: i64,
    /// When a ProTrial ends (unmanaged users); None otherwise.
    pub trial_ends_at: Option<OffsetDateTime>,
}

/// What accepting an invitation can run into besides storage failures.
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptInvite {
    /// The user is registered now.
    Registered(Box<User>),
    /// No pending invitation has this token (unknown, already used, or its user was removed).
    Unknown,
    /// The user is suspended; the account must unsuspend them first.
    Suspended,
}

/// What creating a user can run into besides storage failures.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateUser {
    Created(Box<User>),
    EmailTaken,
    NoSuchAccount,
}

const COLUMNS: &str = "id, account_id, email, display_name, license, user_type, registration_status, personal_pin, created_at, seq, trial_ends_at";

fn parse<T: std::str::FromStr<Err = String>>(value: String) -> Result<T, StoreError> {
    value.parse().map_err(StoreError::Corrupt)
}

fn from_row(row: &AnyRow) -> Result<User, StoreError> {
    let account: Option<String> = row.try_get("account_id")?;
    let created: String = row.try_get("created_at")?;
    let trial: Option<String> = row.try_get("trial_ends_at")?;
    let time_of = |v: &str| {
        OffsetDateTime::parse(v, &Rfc3339).map_err(|e| StoreError::Corrupt(format!("{v:?}: {e}")))
    };
    Ok(User {
        id: row.try_get("id")?,
        account_id: account
            .map(|a| {
                a.parse()
                    .map_err(|()| StoreError::Corrupt(format!("account id {a:?}")))
            })
            .transpose()?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        license: parse(row.try_get("license")?)?,
        user_type: parse(row.try_get("user_type")?)?,
        registration_status: parse(row.try_get("registration_status")?)?,
        personal_pin: row.try_get("personal_pin")?,
        created_at: OffsetDateTime::parse(&created, &Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("created_at {created:?}: {e}")))?,
        seq: row.try_get("seq")?,
        trial_ends_at: trial.as_deref().map(time_of).transpose()?,
    })
}

/// A personal meeting PIN: 10 random digits, never starting with 0 (people drop leading zeros).
pub fn new_pin() -> String {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let n = 1_000_000_000 + OsRng.next_u64() % 9_000_000_000;
    n.to_string()
}

impl Store {
    /// Add a user with a fresh unique PIN. The e-mail is stored lower-case.
    pub async fn create_user(
        &self,
        account: &AccountId,
        email: &str,
        display_name: &str,
        license: License,
        user_type: UserType,
        now: OffsetDateTime,
    ) -> Result<CreateUser, StoreError> {
        if self.account(account).await?.is_none() {
            return Ok(CreateUser::NoSuchAccount);
        }
        self.insert_user(Some(account), email, display_name, license, user_type, now)
            .await
    }

    /// Add an unmanaged user (self sign-up): no account, a ProTrial licence, Unregistered until they
    /// confirm their address.
    pub async fn create_unmanaged_user(
        &self,
        email: &str,
        now: OffsetDateTime,
    ) -> Result<CreateUser, StoreError> {
        let name = email.split('@').next().unwrap_or(email).to_owned();
        self.insert_user(
            None,
            email,
            &name,
            License::ProTrial,
            UserType::PrivateUser,
            now,
        )
        .await
    }

    async fn insert_user(
        &self,
        account: Option<&AccountId>,
        email: &str,
        display_name: &str,
        license: License,
        user_type: UserType,
        now: OffsetDateTime,
    ) -> Result<CreateUser, StoreError> {
        let email = email.to_lowercase();
        if self.user_by_email(&email).await?.is_some() {
            return Ok(CreateUser::EmailTaken);
        }
        let id = uuid::Uuid::new_v4().to_string();
        // A PIN or seq collision (or a concurrent creator of the same e-mail) trips a UNIQUE
        // constraint; try again with fresh values and let the e-mail check decide.
        for _ in 0..8 {
            let result = sqlx::query(
                "INSERT INTO users (id, account_id, email, display_name, license, user_type, registration_status, \
                 personal_pin, created_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM users))",
            )
            .bind(&id)
            .bind(account.map(|a| a.as_str().to_owned()))
            .bind(&email)
            .bind(display_name)
            .bind(license.as_str())
            .bind(user_type.as_str())
            .bind(RegistrationStatus::Unregistered.as_str())
            .bind(new_pin())
            .bind(timestamp(now))
            .execute(self.pool())
            .await;
            match result {
                Ok(_) => {
                    let user = self.user_by_id(&id).await?;
                    return user
                        .map(|u| CreateUser::Created(Box::new(u)))
                        .ok_or_else(|| StoreError::Corrupt("user vanished after insert".into()));
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    if self.user_by_email(&email).await?.is_some() {
                        return Ok(CreateUser::EmailTaken);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Corrupt(
            "could not allocate a unique PIN".into(),
        ))
    }

    /// A user of this account (a user id of another account is not found).
    pub async fn user(&self, account: &AccountId, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
            .bind(email.to_lowercase())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Users of an account in creation order, optionally filtered by exact e-mail and type.
    pub async fn list_users(
        &self,
        account: &AccountId,
        email: Option<&str>,
        user_type: Option<UserType>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<User>, StoreError> {
        let limit = i64::from(limit.max(1));
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE account_id = $1 AND seq > $2 \
             AND (CAST($3 AS TEXT) = '' OR email = CAST($3 AS TEXT)) \
             AND (CAST($4 AS TEXT) = '' OR user_type = CAST($4 AS TEXT)) ORDER BY seq LIMIT $5"
        ))
        .bind(account.as_str())
        .bind(after.unwrap_or(0))
        .bind(email.map(str::to_lowercase).unwrap_or_default())
        .bind(user_type.map(UserType::as_str).unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, limit, |x| x.seq))
    }

    /// Change licence and/or type; None if no such user in this account.
    pub async fn update_user(
        &self,
        account: &AccountId,
        id: &str,
        license: Option<License>,
        user_type: Option<UserType>,
    ) -> Result<Option<User>, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET license = COALESCE($1, license), user_type = COALESCE($2, user_type) \
             WHERE id = $3 AND account_id = $4",
        )
        .bind(license.map(License::as_str))
        .bind(user_type.map(UserType::as_str))
        .bind(id)
        .bind(account.as_str())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.user(account, id).await
    }

    /// Give the user a new personal PIN (unique in the deployment); None if no such user.
    pub async fn reset_pin(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<User>, StoreError> {
        for _ in 0..8 {
            let result =
                sqlx::query("UPDATE users SET personal_pin = $1 WHERE id = $2 AND account_id = $3")
                    .bind(new_pin())
                    .bind(id)
                    .bind(account.as_str())
                    .execute(self.pool())
                    .await;
            match result {
                Ok(done) if done.rows_affected() == 0 => return Ok(None),
                Ok(_) => return self.user(account, id).await,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Corrupt(
            "could not allocate a unique PIN".into(),
        ))
    }

    pub async fn user_count(&self, account: &AccountId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM users WHERE account_id = $1")
                .bind(account.as_str())
                .fetch_one(self.pool())
                .await?
                .try_get("n")?,
        )
    }
}

impl Store {
    /// Record a revocation point: every session of the user issued before `now` is invalid.
    /// False if no such user in this account.
    pub async fn revoke_sessions(
        &self,
        account: &AccountId,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET sessions_revoked_at = $1 WHERE id = $2 AND account_id = $3",
        )
        .bind(timestamp(now))
        .bind(id)
        .bind(account.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// When the user's sessions were last revoked (sessions issued before are invalid).
    pub async fn sessions_revoked_at(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let row =
            sqlx::query("SELECT sessions_revoked_at FROM users WHERE id = $1 AND account_id = $2")
                .bind(id)
                .bind(account.as_str())
                .fetch_optional(self.pool())
                .await?;
        let Some(row) = row else { return Ok(None) };
        let value: Option<String> = row.try_get("sessions_revoked_at")?;
        value
            .map(|v| {
                OffsetDateTime::parse(&v, &Rfc3339)
                    .map_err(|e| StoreError::Corrupt(format!("{v:?}: {e}")))
            })
            .transpose()
    }

    /// Set the registration status (suspend / unsuspend); false if no such user in this account.
    pub async fn set_registration_status(
        &self,
        account: &AccountId,
        id: &str,
        status: RegistrationStatus,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET registration_status = $1 WHERE id = $2 AND account_id = $3",
        )
        .bind(status.as_str())
        .bind(id)
        .bind(account.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Remove a user and everything stored for them; false if no such user in this account.
    pub async fn remove_user(&self, account: &AccountId, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM invites WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM settings WHERE scope = 'user' AND owner = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// A user of any account.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The user whose personal meeting PIN this is.
    pub async fn user_by_pin(&self, pin: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE personal_pin = $1"
        ))
        .bind(pin)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The user's password hash (PHC string), if they have registered.
    pub async fn password_hash(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(row) => row.try_get("password_hash")?,
            None => None,
        })
    }

    /// Accept the pending invitation holding `token`: the user takes the display name and password
    /// hash, becomes Registered with the account's default licence (which ends a trial), and every
    /// pending invitation of theirs is used up. One transaction, so a token works exactly once.
    pub async fn accept_invite(
        &self,
        token: &str,
        display_name: &str,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<AcceptInvite, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT i.user_id AS user_id, i.account_id AS account_id, u.registration_status AS status, \
             a.default_license AS license \
             FROM invites i JOIN users u ON u.id = i.user_id JOIN accounts a ON a.id = i.account_id \
             WHERE i.token_sha256 = $1 AND i.status = $2 \
             AND (u.account_id IS NULL OR u.account_id = i.account_id)",
        )
        .bind(super::invites::token_hash(token))
        .bind(crate::model::InviteStatus::Pending.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(AcceptInvite::Unknown);
        };
        let user_id: String = row.try_get("user_id")?;
        let account_id: String = row.try_get("account_id")?;
        let status: RegistrationStatus = parse(row.try_get("status")?)?;
        if status == RegistrationStatus::Suspended {
            return Ok(AcceptInvite::Suspended);
        }
        let license: License = parse(row.try_get("license")?)?;
        sqlx::query(
            // An unmanaged user joins the inviting account here, which ends their trial.
            "UPDATE users SET display_name = $1, password_hash = $2, registration_status = $3, \
             license = $4, registered_at = $5, account_id = $6, trial_ends_at = NULL WHERE id = $7",
        )
        .bind(display_name)
        .bind(password_hash)
        .bind(RegistrationStatus::Registered.as_str())
        .bind(license.as_str())
        .bind(timestamp(now))
        .bind(&account_id)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE invites SET status = $1 WHERE user_id = $2 AND status = $3")
            .bind(crate::model::InviteStatus::Accepted.as_str())
            .bind(&user_id)
            .bind(crate::model::InviteStatus::Pending.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        match self.user_by_id(&user_id).await? {
            Some(u) => Ok(AcceptInvite::Registered(Box::new(u))),
            None => Ok(AcceptInvite::Unknown),
        }
    }
}

impl Store {
    /// Record a sign-up confirmation link for an unmanaged user.
    pub async fn create_signup(
        &self,
        user_id: &str,
        token: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signups (token_sha256, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(super::invites::token_hash(token))
        .bind(user_id)
        .bind(timestamp(now))
        .bind(timestamp(expires_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Confirm a self sign-up: the (still unmanaged) user takes the name and password hash, becomes
    /// Registered on a ProTrial ending at `trial_ends_at`, and their sign-up links are used up.
    pub async fn accept_signup(
        &self,
        token: &str,
        display_name: &str,
        password_hash: &str,
        now: OffsetDateTime,
        trial_ends_at: OffsetDateTime,
    ) -> Result<AcceptInvite, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT s.user_id AS user_id, u.registration_status AS status FROM signups s \
             JOIN users u ON u.id = s.user_id \
             WHERE s.token_sha256 = $1 AND s.expires_at > $2 AND u.account_id IS NULL",
        )
        .bind(super::invites::token_hash(token))
        .bind(timestamp(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(AcceptInvite::Unknown);
        };
        let user_id: String = row.try_get("user_id")?;
        if parse::<RegistrationStatus>(row.try_get("status")?)? == RegistrationStatus::Suspended {
            return Ok(AcceptInvite::Suspended);
        }
        sqlx::query(
            "UPDATE users SET display_name = $1, password_hash = $2, registration_status = $3, \
             license = $4, registered_at = $5, trial_ends_at = $6 WHERE id = $7 AND account_id IS NULL",
        )
        .bind(display_name)
        .bind(password_hash)
        .bind(RegistrationStatus::Registered.as_str())
        .bind(License::ProTrial.as_str())
        .bind(timestamp(now))
        .bind(timestamp(trial_ends_at))
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM signups WHERE user_id = $1")
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        match self.user_by_id(&user_id).await? {
            Some(u) => Ok(AcceptInvite::Registered(Box::new(u))),
            None => Ok(AcceptInvite::Unknown),
        }
    }
}
