//! The `settings` table: small JSON documents keyed by scope and owner.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    pub async fn settings(
        &self,
        scope: &str,
        owner: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE scope = $1 AND owner = $2")
            .bind(scope)
            .bind(owner)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("value")?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("settings {scope}/{owner}: {e}")))
    }

    /// Insert or replace.
    pub async fn put_settings(
        &self,
        scope: &str,
        owner: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        // Portable upsert: both SQLite (3.24+) and PostgreSQL speak ON CONFLICT ... DO UPDATE.
        sqlx::query(
            "INSERT INTO settings (scope, owner, value) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, owner) DO UPDATE SET value = excluded.value",
        )
        .bind(scope)
        .bind(owner)
        .bind(value.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
