//! Read side of the conference data: the guide's "View Reports" and "View User Details", the Active
//! Pro days billing exports, and recording the end-of-meeting survey. Date ranges are whole UTC days,
//! both ends included, and select conferences by the day they ended (as billing does).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::{Date, OffsetDateTime};

use super::accounts::timestamp;
use super::{Store, StoreError};
use crate::model::AccountId;

/// `[from 00:00, to+1 00:00)` as stored-timestamp bounds.
fn bounds(from: Date, to: Date) -> (String, String) {
    let end = to.next_day().unwrap_or(to);
    (from.to_string(), end.to_string())
}

fn flag(row: &AnyRow, name: &str) -> Result<bool, StoreError> {
    Ok(row
        .try_get::<i32, _>(name)
        .map(|v| v != 0)
        .or_else(|_| row.try_get::<i64, _>(name).map(|v| v != 0))?)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveProDay {
    pub account_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub day: String,
    pub reason: String,
    pub conference_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConferenceReport {
    pub conference_id: String,
    pub meeting_id: String,
    pub kind: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub organizer_user_id: Option<String>,
    pub organizer: Option<String>,
    pub attendees: i64,
    pub recorded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttendeeReport {
    pub attendee_id: String,
    pub user_id: Option<String>,
    pub name: String,
    pub client: String,
    pub role: String,
    pub joined_at: String,
    pub left_at: Option<String>,
    pub leave_reason: Option<String>,
    /// The attendee's survey answer: true thumbs up, false down.
    pub feedback: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventReport {
    pub event_id: String,
    pub at: String,
    pub kind: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageSummary {
    pub registered_users: i64,
    pub active_users: i64,
    pub meetings_held: i64,
    pub positive_feedback: i64,
    pub negative_feedback: i64,
    /// Chat does not exist yet.
    pub chat_messages_sent: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserActivity {
    pub meetings_attended: i64,
    pub meetings_organized: i64,
    pub positive_feedback: i64,
    pub negative_feedback: i64,
    pub last_active: Option<String>,
}

/// What recording a survey answer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    Recorded,
    /// The attendee was never in a conference of this meeting (or its events are not consumed yet).
    UnknownAttendee,
}

const CONFERENCE_COLUMNS: &str = "c.id AS id, c.meeting_id AS meeting_id, c.kind AS kind, \
    c.started_at AS started_at, c.ended_at AS ended_at, c.host_user_id AS host, c.recorded AS recorded, \
    u.display_name AS organizer, \
    (SELECT COUNT(*) FROM conference_attendees a WHERE a.conference_id = c.id) AS attendees";

fn conference_row(row: &AnyRow) -> Result<ConferenceReport, StoreError> {
    Ok(ConferenceReport {
        conference_id: row.try_get("id")?,
        meeting_id: row.try_get("meeting_id")?,
        kind: row.try_get("kind")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        organizer_user_id: row.try_get("host")?,
        organizer: row.try_get("organizer")?,
        attendees: row.try_get("attendees")?,
        recorded: flag(row, "recorded")?,
    })
}

impl Store {
    /// Active Pro days in a date range, for one account or (None) the whole deployment, ordered by
    /// account, day, user.
    pub async fn active_pro_days(
        &self,
        account: Option<&AccountId>,
        from: Date,
        to: Date,
    ) -> Result<Vec<ActiveProDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.account_id AS account_id, d.user_id AS user_id, u.email AS email, d.day AS day, \
             d.reason AS reason, d.conference_id AS conference_id \
             FROM active_pro_days d LEFT JOIN users u ON u.id = d.user_id \
             WHERE d.day >= $1 AND d.day <= $2 AND (CAST($3 AS TEXT) = '' OR d.account_id = CAST($3 AS TEXT)) \
             ORDER BY d.account_id, d.day, d.user_id",
        )
        .bind(from.to_string())
        .bind(to.to_string())
        .bind(account.map(AccountId::as_str).unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ActiveProDay {
                    account_id: r.try_get("account_id")?,
                    user_id: r.try_get("user_id")?,
                    email: r.try_get("email")?,
                    day: r.try_get("day")?,
                    reason: r.try_get("reason")?,
                    conference_id: r.try_get("conference_id")?,
                })
            })
            .collect()
    }

    /// Conferences of an account that ended in the range, newest first.
    pub async fn conferences_ended(
        &self,
        account: &AccountId,
        from: Date,
        to: Date,
    ) -> Result<Vec<ConferenceReport>, StoreError> {
        let (lo, hi) = bounds(from, to);
        let rows = sqlx::query(&format!(
            "SELECT {CONFERENCE_COLUMNS} FROM conferences c LEFT JOIN users u ON u.id = c.host_user_id \
             WHERE c.account_id = $1 AND c.ended_at >= $2 AND c.ended_at < $3 ORDER BY c.ended_at DESC"
        ))
        .bind(account.as_str())
        .bind(lo)
        .bind(hi)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(conference_row).collect()
    }

    /// One conference of an account.
    pub async fn conference(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<ConferenceReport>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONFERENCE_COLUMNS} FROM conferences c LEFT JOIN users u ON u.id = c.host_user_id \
             WHERE c.account_id = $1 AND c.id = $2"
        ))
        .bind(account.as_str())
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(conference_row).transpose()
    }

    pub async fn conference_attendees(&self, id: &str) -> Result<Vec<AttendeeReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.attendee_id AS attendee_id, a.user_id AS user_id, a.name AS name, a.client AS client, \
             a.role AS role, a.joined_at AS joined_at, a.left_at AS left_at, a.leave_reason AS leave_reason, \
             f.positive AS positive FROM conference_attendees a LEFT JOIN feedback f \
             ON f.conference_id = a.conference_id AND f.attendee_id = a.attendee_id \
             WHERE a.conference_id = $1 ORDER BY a.joined_at, a.attendee_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let positive: Option<i64> =
                    r.try_get::<Option<i64>, _>("positive").or_else(|_| {
                        r.try_get::<Option<i32>, _>("positive")
                            .map(|v| v.map(i64::from))
                    })?;
                Ok(AttendeeReport {
                    attendee_id: r.try_get("attendee_id")?,
                    user_id: r.try_get("user_id")?,
                    name: r.try_get("name")?,
                    client: r.try_get("client")?,
                    role: r.try_get("role")?,
                    joined_at: r.try_get("joined_at")?,
                    left_at: r.try_get("left_at")?,
                    leave_reason: r.try_get("leave_reason")?,
                    feedback: positive.map(|p| p != 0),
                })
            })
            .collect()
    }

    /// The roster and other events of a conference, in order.
    pub async fn conference_events(&self, id: &str) -> Result<Vec<EventReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, kind, body FROM meeting_events WHERE conference_id = $1 ORDER BY log_offset, at",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                Ok(EventReport {
                    event_id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    detail: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// The usage dashboard of an account for a date range.
    pub async fn usage(
        &self,
        account: &AccountId,
        from: Date,
        to: Date,
    ) -> Result<UsageSummary, StoreError> {
        let (lo, hi) = bounds(from, to);
        let count = |sql: &'static str| {
            let lo = lo.clone();
            let hi = hi.clone();
            async move {
                let n: i64 = sqlx::query(sql)
                    .bind(account.as_str())
                    .bind(lo)
                    .bind(hi)
                    .fetch_one(self.pool())
                    .await?
                    .try_get("n")?;
                Ok::<i64, StoreError>(n)
            }
        };
        Ok(UsageSummary {
            registered_users: count(
                "SELECT COUNT(*) AS n FROM users WHERE account_id = $1 AND registration_status = 'Registered' \
                 AND registered_at < $3 AND CAST($2 AS TEXT) = CAST($2 AS TEXT)",
            )
            .await?,
            active_users: count(
                "SELECT COUNT(DISTINCT a.user_id) AS n FROM conference_attendees a \
                 JOIN users u ON u.id = a.user_id JOIN conferences c ON c.id = a.conference_id \
                 WHERE u.account_id = $1 AND c.ended_at >= $2 AND c.ended_at < $3",
            )
            .await?,
            meetings_held: count(
                "SELECT COUNT(*) AS n FROM conferences WHERE account_id = $1 AND ended_at >= $2 AND ended_at < $3",
            )
            .await?,
            positive_feedback: count(
                "SELECT COUNT(*) AS n FROM feedback f JOIN conferences c ON c.id = f.conference_id \
                 WHERE c.account_id = $1 AND c.ended_at >= $2 AND c.ended_at < $3 AND f.positive = 1",
            )
            .await?,
            negative_feedback: count(
                "SELECT COUNT(*) AS n FROM feedback f JOIN conferences c ON c.id = f.conference_id \
                 WHERE c.account_id = $1 AND c.ended_at >= $2 AND c.ended_at < $3 AND f.positive = 0",
            )
            .await?,
            chat_messages_sent: 0,
        })
    }

    /// One user's activity in a date range (conferences that ended in it).
    pub async fn user_activity(
        &self,
        user: &str,
        from: Date,
        to: Date,
    ) -> Result<UserActivity, StoreError> {
        let (lo, hi) = bounds(from, to);
        let one = |sql: &'static str| {
            let lo = lo.clone();
            let hi = hi.clone();
            async move {
                sqlx::query(sql)
                    .bind(user)
                    .bind(lo)
                    .bind(hi)
                    .fetch_one(self.pool())
                    .await
            }
        };
        let attended = one(
            "SELECT COUNT(DISTINCT a.conference_id) AS n, MAX(a.joined_at) AS last FROM conference_attendees a \
             JOIN conferences c ON c.id = a.conference_id \
             WHERE a.user_id = $1 AND c.ended_at >= $2 AND c.ended_at < $3",
        )
        .await?;
        let organized = one(
            "SELECT COUNT(*) AS n FROM conferences WHERE host_user_id = $1 AND ended_at >= $2 AND ended_at < $3",
        )
        .await?;
        let positive = one(
            "SELECT COUNT(*) AS n FROM feedback f JOIN conferences c ON c.id = f.conference_id \
             WHERE f.user_id = $1 AND c.ended_at >= $2 AND c.ended_at < $3 AND f.positive = 1",
        )
        .await?;
        let negative = one(
            "SELECT COUNT(*) AS n FROM feedback f JOIN conferences c ON c.id = f.conference_id \
             WHERE f.user_id = $1 AND c.ended_at >= $2 AND c.ended_at < $3 AND f.positive = 0",
        )
        .await?;
        Ok(UserActivity {
            meetings_attended: attended.try_get("n")?,
            meetings_organized: organized.try_get("n")?,
            positive_feedback: positive.try_get("n")?,
            negative_feedback: negative.try_get("n")?,
            last_active: attended.try_get("last")?,
        })
    }

    /// Record (or replace) an attendee's survey answer for the latest conference of the meeting they
    /// were in.
    pub async fn record_feedback(
        &self,
        meeting: &str,
        attendee: &str,
        user: Option<&str>,
        positive: bool,
        now: OffsetDateTime,
    ) -> Result<FeedbackOutcome, StoreError> {
        let row = sqlx::query(
            "SELECT a.conference_id AS conference_id FROM conference_attendees a \
             JOIN conferences c ON c.id = a.conference_id \
             WHERE c.meeting_id = $1 AND a.attendee_id = $2 ORDER BY c.started_at DESC LIMIT 1",
        )
        .bind(meeting)
        .bind(attendee)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(FeedbackOutcome::UnknownAttendee);
        };
        let conference: String = row.try_get("conference_id")?;
        sqlx::query(
            "INSERT INTO feedback (conference_id, attendee_id, user_id, positive, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (conference_id, attendee_id) DO UPDATE SET positive = excluded.positive, at = excluded.at",
        )
        .bind(&conference)
        .bind(attendee)
        .bind(user)
        .bind(i32::from(positive))
        .bind(timestamp(now))
        .execute(self.pool())
        .await?;
        Ok(FeedbackOutcome::Recorded)
    }
}
