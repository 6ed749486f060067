//! The `principals` table: API callers and their (sealed) access keys.

use sqlx::Row;
use time::OffsetDateTime;

use super::accounts::timestamp;
use super::{Store, StoreError};

/// One stored principal. `secret_sealed` is opened with the master key (see `secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrincipal {
    pub name: String,
    pub access_key_id: String,
    pub secret_sealed: String,
    /// JSON array of policy references (managed names) or documents.
    pub policies: String,
}

impl Store {
    /// False if a principal of that name exists already.
    pub async fn create_principal(
        &self,
        p: &StoredPrincipal,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO principals (name, access_key_id, secret_sealed, policies, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&p.name)
        .bind(&p.access_key_id)
        .bind(&p.secret_sealed)
        .bind(&p.policies)
        .bind(timestamp(now))
        .execute(self.pool())
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn principal_by_key(
        &self,
        access_key_id: &str,
    ) -> Result<Option<StoredPrincipal>, StoreError> {
        let row = sqlx::query("SELECT name, access_key_id, secret_sealed, policies FROM principals WHERE access_key_id = $1")
            .bind(access_key_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(StoredPrincipal {
                name: r.try_get("name")?,
                access_key_id: r.try_get("access_key_id")?,
                secret_sealed: r.try_get("secret_sealed")?,
                policies: r.try_get("policies")?,
            })
        })
        .transpose()
    }

    pub async fn principal_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM principals")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?)
    }
}

impl Store {
    /// Every principal, by name.
    pub async fn list_principals(&self) -> Result<Vec<StoredPrincipal>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, access_key_id, secret_sealed, policies FROM principals ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredPrincipal {
                    name: r.try_get("name")?,
                    access_key_id: r.try_get("access_key_id")?,
                    secret_sealed: r.try_get("secret_sealed")?,
                    policies: r.try_get("policies")?,
                })
            })
            .collect()
    }

    /// True if it existed.
    pub async fn delete_principal(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM principals WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replace a principal's policy list (JSON array); false if no such principal.
    pub async fn set_principal_policies(
        &self,
        name: &str,
        policies: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE principals SET policies = $1 WHERE name = $2")
            .bind(policies)
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn principal_by_name(
        &self,
        name: &str,
    ) -> Result<Option<StoredPrincipal>, StoreError> {
        Ok(self
            .list_principals()
            .await?
            .into_iter()
            .find(|p| p.name == name))
    }
}
