//! The `audit_records` table: an append-only, hash-chained log of API calls.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError};

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub event_id: String,
    pub event_time: String,
    pub event_name: String,
    pub principal: String,
    pub record: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The chain's starting value.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// hash = SHA-256(prev_hash || record), hex.
pub fn chain_hash(prev_hash: &str, record: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(record.as_bytes());
    hex::encode(h.finalize())
}

/// Filters of a lookup; empty strings mean "any".
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    pub event_name: &'a str,
    pub principal: &'a str,
    /// RFC 3339 UTC bounds (inclusive start, exclusive end), as stored.
    pub start: &'a str,
    pub end: &'a str,
}

impl Store {
    /// Append a record to the chain (in one transaction: the caller must serialise appends, e.g. with a
    /// mutex, so two appends never read the same tail).
    pub async fn append_audit(
        &self,
        event_id: &str,
        event_time: &str,
        event_name: &str,
        principal: &str,
        record: &str,
    ) -> Result<AuditRow, StoreError> {
        let mut tx = self.pool().begin().await?;
        let tail = sqlx::query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, prev_hash) = match tail {
            Some(row) => (
                row.try_get::<i64, _>("seq")? + 1,
                row.try_get::<String, _>("hash")?,
            ),
            None => (1, GENESIS.to_owned()),
        };
        let hash = chain_hash(&prev_hash, record);
        sqlx::query(
            "INSERT INTO audit_records (seq, event_id, event_time, event_name, principal, record, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(event_id)
        .bind(event_time)
        .bind(event_name)
        .bind(principal)
        .bind(record)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AuditRow {
            seq,
            event_id: event_id.to_owned(),
            event_time: event_time.to_owned(),
            event_name: event_name.to_owned(),
            principal: principal.to_owned(),
            record: record.to_owned(),
            prev_hash,
            hash,
        })
    }

    /// Records matching the query, oldest first, after `after` (a seq), at most `limit`.
    pub async fn lookup_audit(
        &self,
        q: &AuditQuery<'_>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, event_time, event_name, principal, record, prev_hash, hash FROM audit_records \
             WHERE seq > $1 AND (CAST($2 AS TEXT) = '' OR event_name = CAST($2 AS TEXT)) \
             AND (CAST($3 AS TEXT) = '' OR principal = CAST($3 AS TEXT)) \
             AND (CAST($4 AS TEXT) = '' OR event_time >= CAST($4 AS TEXT)) \
             AND (CAST($5 AS TEXT) = '' OR event_time < CAST($5 AS TEXT)) ORDER BY seq LIMIT $6",
        )
        .bind(after)
        .bind(q.event_name)
        .bind(q.principal)
        .bind(q.start)
        .bind(q.end)
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    seq: r.try_get("seq")?,
                    event_id: r.try_get("event_id")?,
                    event_time: r.try_get("event_time")?,
                    event_name: r.try_get("event_name")?,
                    principal: r.try_get("principal")?,
                    record: r.try_get("record")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }
}
