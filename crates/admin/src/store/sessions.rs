//! Sign-in sessions of users (the web app's cookie). Only the token's SHA-256 is stored, so a database
//! leak does not hand out live sessions.

use sqlx::Row;
use time::OffsetDateTime;

use super::accounts::timestamp;
use super::invites::token_hash;
use super::users::User;
use super::{Store, StoreError};
use crate::model::RegistrationStatus;

impl Store {
    /// Record a new session for `token`, valid until `expires_at`.
    pub async fn create_session(
        &self,
        user_id: &str,
        token: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash(token))
        .bind(user_id)
        .bind(timestamp(now))
        .bind(timestamp(expires_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The user a session token belongs to, if the session is still good: not expired, issued after
    /// the user's last LogoutUser, and the user registered (a suspended user's sessions stop working
    /// at once).
    pub async fn session_user(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StoreError> {
        // Timestamps are fixed-width UTC text, so string comparison is time comparison.
        let row = sqlx::query(
            "SELECT s.user_id AS user_id FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_sha256 = $1 AND s.expires_at > $2 \
             AND (u.sessions_revoked_at IS NULL OR s.created_at >= u.sessions_revoked_at)",
        )
        .bind(token_hash(token))
        .bind(timestamp(now))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user_id: String = row.try_get("user_id")?;
        Ok(self
            .user_by_id(&user_id)
            .await?
            .filter(|u| u.registration_status == RegistrationStatus::Registered))
    }

    /// Sign out one session (unknown tokens are fine).
    pub async fn delete_session(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_hash(token))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
