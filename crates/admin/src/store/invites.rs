//! The `invites` table.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::accounts::timestamp;
use super::{Store, StoreError};
use crate::model::{AccountId, EmailStatus, InviteStatus};

/// A stored invitation (the token itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: String,
    pub account_id: AccountId,
    pub user_id: String,
    pub email: String,
    pub status: InviteStatus,
    pub email_status: EmailStatus,
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Record an invitation for `token` (whose link was, or was not, e-mailed).
    pub async fn create_invite(
        &self,
        invite: &Invite,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO invites (id, account_id, user_id, email, token_sha256, status, email_status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&invite.id)
        .bind(invite.account_id.as_str())
        .bind(&invite.user_id)
        .bind(&invite.email)
        .bind(token_hash(token))
        .bind(invite.status.as_str())
        .bind(invite.email_status.as_str())
        .bind(timestamp(now))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn invite_count(&self, user_id: &str) -> Result<i64, StoreError> {
        use sqlx::Row;
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM invites WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(self.pool())
                .await?
                .try_get("n")?,
        )
    }
}
