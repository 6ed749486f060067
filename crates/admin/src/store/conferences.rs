//! Conferences (occurrences of meetings) as the event consumer builds them, Active Pro days, feedback,
//! and the consumer's offset. [`Store::apply_event`] is the one write path: one transaction per event,
//! deduplicated by event id, so replaying the log never counts anything twice.

use convene_core::{ClientType, MeetingEvent, MeetingEventKind};
use sqlx::any::Any;
use sqlx::{Row, Transaction};
use time::OffsetDateTime;

use super::accounts::timestamp;
use super::{Store, StoreError};
use crate::billing::rules::{self, ConferenceFacts};
use crate::store::meetings::MeetingKind;

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Seen before (a replay after a crash): nothing changed.
    Duplicate,
    Recorded,
    /// A conference ended; its host became Active Pro for the day (reason) or not (None).
    Ended {
        billed: Option<String>,
    },
}

/// The time of an event.
pub fn event_time(event: &MeetingEvent) -> OffsetDateTime {
    let nanos = i128::from(event.at_unix_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn kind_name(kind: &MeetingEventKind) -> &'static str {
    match kind {
        MeetingEventKind::MeetingStarted => "meeting_started",
        MeetingEventKind::AttendeeJoined { .. } => "attendee_joined",
        MeetingEventKind::AttendeeLeft { .. } => "attendee_left",
        MeetingEventKind::ScreenShareStarted { .. } => "screen_share_started",
        MeetingEventKind::ScreenShareStopped { .. } => "screen_share_stopped",
        MeetingEventKind::RecordingStarted { .. } => "recording_started",
        MeetingEventKind::RecordingStopped { .. } => "recording_stopped",
        MeetingEventKind::MeetingEnded => "meeting_ended",
        _ => "other",
    }
}

async fn open_conference(
    tx: &mut Transaction<'_, Any>,
    meeting: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT id FROM conferences WHERE meeting_id = $1 AND ended_at IS NULL \
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(meeting)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

impl Store {
    /// The consumer's saved position in the event log.
    pub async fn consumer_offset(&self, consumer: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT position FROM consumer_offsets WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(self.pool())
            .await?;
        let position: i64 = match row {
            Some(r) => r.try_get("position")?,
            None => 0,
        };
        Ok(position.max(0) as u64)
    }

    /// Move the consumer's offset without applying anything (past unreadable log lines).
    pub async fn set_consumer_offset(&self, consumer: &str, offset: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consumer_offsets (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
        )
        .bind(consumer)
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Apply one event and move `consumer`'s offset to `next_offset`, atomically.
    pub async fn apply_event(
        &self,
        event: &MeetingEvent,
        consumer: &str,
        next_offset: u64,
    ) -> Result<Applied, StoreError> {
        let meeting = event.meeting.as_str();
        // Read outside the transaction: the meeting's host and kind (SQLite has one connection).
        let known = if matches!(event.kind, MeetingEventKind::MeetingStarted) {
            self.meeting(meeting).await?
        } else {
            None
        };
        let at = timestamp(event_time(event));
        let mut tx = self.pool().begin().await?;
        let conference = match event.kind {
            MeetingEventKind::MeetingStarted => Some(event.id.to_string()),
            _ => open_conference(&mut tx, meeting).await?,
        };
        let body = serde_json::to_string(event)
            .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", event.id)))?;
        let inserted = sqlx::query(
            "INSERT INTO meeting_events (id, meeting_id, conference_id, at, kind, body, log_offset) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(event.id.to_string())
        .bind(meeting)
        .bind(conference.clone())
        .bind(&at)
        .bind(kind_name(&event.kind))
        .bind(&body)
        .bind(i64::try_from(next_offset).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        let mut applied = Applied::Recorded;
        if inserted.rows_affected() == 0 {
            applied = Applied::Duplicate;
        } else {
            match (&event.kind, conference.as_deref()) {
                (MeetingEventKind::MeetingStarted, Some(id)) => {
                    // A conference left open (the server died before its end) ends where this one starts.
                    if let Some(stale) = open_conference(&mut tx, meeting).await? {
                        end_conference(&mut tx, &stale, &at).await?;
                    }
                    let (host, account, kind) = match &known {
                        Some(m) => {
                            let account = sqlx::query("SELECT account_id FROM users WHERE id = $1")
                                .bind(&m.host_user_id)
                                .fetch_optional(&mut *tx)
                                .await?
                                .map(|r| r.try_get::<String, _>("account_id"))
                                .transpose()?;
                            (Some(m.host_user_id.clone()), account, m.kind.as_str())
                        }
                        None => (None, None, "unknown"),
                    };
                    sqlx::query(
                        "INSERT INTO conferences (id, meeting_id, account_id, host_user_id, kind, started_at, \
                         recorded, dialed_in, room_system) VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0)",
                    )
                    .bind(id)
                    .bind(meeting)
                    .bind(account)
                    .bind(host)
                    .bind(kind)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
                }
                (
                    MeetingEventKind::AttendeeJoined {
                        attendee,
                        name,
                        client,
                        role,
                        user,
                    },
                    Some(id),
                ) => {
                    let role = match role {
                        convene_core::AttendeeRole::Host => "host",
                        convene_core::AttendeeRole::Attendee => "attendee",
                    };
                    sqlx::query(
                        "INSERT INTO conference_attendees (conference_id, attendee_id, user_id, name, client, role, \
                         joined_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (conference_id, attendee_id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(attendee.to_string())
                    .bind(user.clone())
                    .bind(name)
                    .bind(client.as_str())
                    .bind(role)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
                    let flag = match client {
                        ClientType::Phone => Some("dialed_in"),
                        ClientType::Sip | ClientType::H323 => Some("room_system"),
                        ClientType::Web | ClientType::Native => None,
                    };
                    if let Some(flag) = flag {
                        sqlx::query(&format!("UPDATE conferences SET {flag} = 1 WHERE id = $1"))
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                (MeetingEventKind::AttendeeLeft { attendee, reason }, Some(id)) => {
                    sqlx::query(
                        "UPDATE conference_attendees SET left_at = $1, leave_reason = $2 \
                         WHERE conference_id = $3 AND attendee_id = $4",
                    )
                    .bind(&at)
                    .bind(reason.as_str())
                    .bind(id)
                    .bind(attendee.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                (MeetingEventKind::RecordingStarted { .. }, Some(id)) => {
                    sqlx::query("UPDATE conferences SET recorded = 1 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                (MeetingEventKind::MeetingEnded, Some(id)) => {
                    let billed = end_conference(&mut tx, id, &at).await?;
                    applied = Applied::Ended { billed };
                }
                _ => {}
            }
        }
        sqlx::query(
            "INSERT INTO consumer_offsets (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
        )
        .bind(consumer)
        .bind(i64::try_from(next_offset).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(applied)
    }
}

/// Close a conference at `at` and bill its host if it qualifies; returns the billed reason.
async fn end_conference(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    at: &str,
) -> Result<Option<String>, StoreError> {
    sqlx::query("UPDATE conferences SET ended_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(
        "SELECT c.kind AS kind, c.recorded AS recorded, c.dialed_in AS dialed_in, \
         c.room_system AS room_system, c.host_user_id AS host, c.account_id AS account, u.license AS license, \
         (SELECT COUNT(*) FROM conference_attendees a WHERE a.conference_id = c.id) AS attendees \
         FROM conferences c LEFT JOIN users u ON u.id = c.host_user_id WHERE c.id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let flag = |name: &str| -> Result<bool, StoreError> {
        Ok(row
            .try_get::<i32, _>(name)
            .map(|v| v != 0)
            .or_else(|_| row.try_get::<i64, _>(name).map(|v| v != 0))?)
    };
    let license: Option<String> = row.try_get("license")?;
    let facts = ConferenceFacts {
        host_license: license.and_then(|l| l.parse().ok()),
        scheduled: row.try_get::<String, _>("kind")? == MeetingKind::Scheduled.as_str(),
        attendees: row.try_get::<i64, _>("attendees")?.max(0) as usize,
        recorded: flag("recorded")?,
        dialed_in: flag("dialed_in")?,
        room_system: flag("room_system")?,
    };
    let criteria = rules::active_pro(&facts);
    let (Some(host), Some(account)) = (
        row.try_get::<Option<String>, _>("host")?,
        row.try_get::<Option<String>, _>("account")?,
    ) else {
        return Ok(None);
    };
    if criteria.is_empty() {
        return Ok(None);
    }
    let ended = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("ended_at {at:?}: {e}")))?;
    let reason = rules::reason_text(&criteria);
    // Once per user and day: a second qualifying meeting the same day changes nothing.
    sqlx::query(
        "INSERT INTO active_pro_days (user_id, day, account_id, conference_id, reason) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, day) DO NOTHING",
    )
    .bind(&host)
    .bind(rules::billing_day(ended).to_string())
    .bind(&account)
    .bind(id)
    .bind(&reason)
    .execute(&mut **tx)
    .await?;
    Ok(Some(reason))
}
