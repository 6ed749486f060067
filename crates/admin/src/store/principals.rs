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
