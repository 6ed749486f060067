//! The `accounts` table.

use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Store, StoreError};
use crate::model::{AccountId, AccountStatus, AccountType, License};

/// One stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub account_type: AccountType,
    pub default_license: License,
    pub status: AccountStatus,
    pub created_at: OffsetDateTime,
    /// Creation order; pagination continues after it.
    pub seq: i64,
}

/// One page of a listing, and where the next one starts (None on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<i64>,
}

impl<T> Page<T> {
    /// From rows fetched with `LIMIT limit + 1`: keep `limit` of them, and continue after the last one
    /// kept if there were more.
    pub(crate) fn from_overfetch(mut items: Vec<T>, limit: i64, seq: impl Fn(&T) -> i64) -> Self {
        let next_after = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(seq)
        } else {
            None
        };
        Self { items, next_after }
    }
}

const COLUMNS: &str = "id, name, account_type, default_license, status, created_at, seq";

fn parse<T: std::str::FromStr<Err = String>>(value: String) -> Result<T, StoreError> {
    value.parse().map_err(StoreError::Corrupt)
}

fn from_row(row: &AnyRow) -> Result<Account, StoreError> {
    let id: String = row.try_get("id")?;
    let created: String = row.try_get("created_at")?;
    Ok(Account {
        id: id
            .parse()
            .map_err(|()| StoreError::Corrupt(format!("account id {id:?}")))?,
        name: row.try_get("name")?,
        account_type: parse(row.try_get("account_type")?)?,
        default_license: parse(row.try_get("default_license")?)?,
        status: parse(row.try_get("status")?)?,
        created_at: OffsetDateTime::parse(&created, &Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("created_at {created:?}: {e}")))?,
        seq: row.try_get("seq")?,
    })
}

/// Timestamps are stored as RFC 3339 UTC with fixed millisecond precision, so text order is time order.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl Store {
    pub async fn create_account(
        &self,
        name: &str,
        account_type: AccountType,
        default_license: License,
        now: OffsetDateTime,
    ) -> Result<Account, StoreError> {
        let id = AccountId::new();
        let created = timestamp(now);
        // `seq` is the next number after the largest; two concurrent creators can collide on the
        // UNIQUE constraint, and the loser simply tries again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = sqlx::query(
                "INSERT INTO accounts (id, name, account_type, default_license, status, created_at, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, (SELECT COALESCE(MAX(seq), 0) + 1 FROM accounts))",
            )
            .bind(id.as_str())
            .bind(name)
            .bind(account_type.as_str())
            .bind(default_license.as_str())
            .bind(AccountStatus::Active.as_str())
            .bind(&created)
            .execute(self.pool())
            .await;
            match result {
                Ok(_) => break,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempts < 5 => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.account(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("account vanished after insert".into()))
    }

    pub async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Accounts in creation order, optionally only those whose name starts with `name_prefix`.
    pub async fn list_accounts(
        &self,
        name_prefix: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<Account>, StoreError> {
        let limit = i64::from(limit.max(1));
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM accounts WHERE seq > $1 \
             AND substr(name, 1, length(CAST($2 AS TEXT))) = CAST($2 AS TEXT) ORDER BY seq LIMIT $3"
        ))
        .bind(after.unwrap_or(0))
        .bind(name_prefix.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, limit, |x| x.seq))
    }

    /// Change name and/or default licence. None if there is no such account.
    pub async fn update_account(
        &self,
        id: &AccountId,
        name: Option<&str>,
        default_license: Option<License>,
    ) -> Result<Option<Account>, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET name = COALESCE($1, name), default_license = COALESCE($2, default_license) \
             WHERE id = $3",
        )
        .bind(name)
        .bind(default_license.map(License::as_str))
        .bind(id.as_str())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.account(id).await
    }

    /// True if it existed.
    pub async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        // With what belongs to it: its invitations and settings.
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM invites WHERE account_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM settings WHERE scope = 'retention' AND owner = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The account-wide settings of the guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountSettings {
    /// Attendees may not take remote control of shared screens.
    pub disable_remote_control: bool,
    /// Attendees may have the meeting call them on a phone number.
    pub enable_dial_out: bool,
}

impl Store {
    pub async fn account_settings(
        &self,
        id: &AccountId,
    ) -> Result<Option<AccountSettings>, StoreError> {
        let row = sqlx::query(
            "SELECT disable_remote_control, enable_dial_out FROM accounts WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(AccountSettings {
                disable_remote_control: r.try_get::<i64, _>("disable_remote_control")? != 0,
                enable_dial_out: r.try_get::<i64, _>("enable_dial_out")? != 0,
            })
        })
        .transpose()
    }

    /// Change the settings given; false if there is no such account.
    pub async fn update_account_settings(
        &self,
        id: &AccountId,
        disable_remote_control: Option<bool>,
        enable_dial_out: Option<bool>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET disable_remote_control = COALESCE($1, disable_remote_control), \
             enable_dial_out = COALESCE($2, enable_dial_out) WHERE id = $3",
        )
        .bind(disable_remote_control.map(i64::from))
        .bind(enable_dial_out.map(i64::from))
        .bind(id.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
