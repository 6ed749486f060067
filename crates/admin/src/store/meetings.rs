//! Meetings hosts create (instant and scheduled), and the lookup of any meeting ID, personal PINs
//! included, to the user who hosts it.

use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::accounts::timestamp;
use super::users::{User, new_pin};
use super::{Store, StoreError};

/// How a meeting came to be (the reports' "type").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingKind {
    /// Started on the spot by its host.
    Instant,
    /// Planned ahead with a title, a start and invitees.
    Scheduled,
    /// The host's personal meeting PIN.
    Personal,
}

impl MeetingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instant => "instant",
            Self::Scheduled => "scheduled",
            Self::Personal => "personal",
        }
    }
}

/// A stored (or personal-PIN) meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    pub id: String,
    pub host_user_id: String,
    pub kind: MeetingKind,
    pub title: String,
    pub starts_at: Option<OffsetDateTime>,
    pub duration_minutes: Option<i64>,
    pub invitees: Vec<String>,
    pub created_at: OffsetDateTime,
}

/// What a host asks for.
#[derive(Debug, Clone)]
pub struct NewMeeting {
    pub host: User,
    pub kind: MeetingKind,
    pub title: String,
    pub starts_at: Option<OffsetDateTime>,
    pub duration_minutes: Option<i64>,
    pub invitees: Vec<String>,
}

fn time_of(value: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {value:?}: {e}")))
}

fn from_row(row: &AnyRow) -> Result<Meeting, StoreError> {
    let kind: String = row.try_get("kind")?;
    let starts: Option<String> = row.try_get("starts_at")?;
    let invitees: String = row.try_get("invitees")?;
    let created: String = row.try_get("created_at")?;
    Ok(Meeting {
        id: row.try_get("id")?,
        host_user_id: row.try_get("host_user_id")?,
        kind: match kind.as_str() {
            "instant" => MeetingKind::Instant,
            "scheduled" => MeetingKind::Scheduled,
            other => return Err(StoreError::Corrupt(format!("meeting kind {other:?}"))),
        },
        title: row.try_get("title")?,
        starts_at: starts.as_deref().map(time_of).transpose()?,
        duration_minutes: row.try_get("duration_minutes")?,
        invitees: serde_json::from_str(&invitees)
            .map_err(|e| StoreError::Corrupt(format!("invitees {invitees:?}: {e}")))?,
        created_at: time_of(&created)?,
    })
}

const COLUMNS: &str =
    "id, host_user_id, kind, title, starts_at, duration_minutes, invitees, created_at";

impl Store {
    /// Store a new meeting under a fresh 10-digit ID that is neither another meeting's nor anyone's
    /// personal PIN.
    pub async fn create_meeting(
        &self,
        new: &NewMeeting,
        now: OffsetDateTime,
    ) -> Result<Meeting, StoreError> {
        let invitees = serde_json::to_string(&new.invitees)
            .map_err(|e| StoreError::Corrupt(format!("invitees: {e}")))?;
        for _ in 0..8 {
            let id = new_pin();
            if self.user_by_pin(&id).await?.is_some() {
                continue;
            }
            let result = sqlx::query(
                "INSERT INTO meetings (id, host_user_id, account_id, kind, title, starts_at, duration_minutes, \
                 invitees, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&id)
            .bind(&new.host.id)
            .bind(new.host.account_id.as_ref().map(|a| a.as_str().to_owned()))
            .bind(new.kind.as_str())
            .bind(&new.title)
            .bind(new.starts_at.map(timestamp))
            .bind(new.duration_minutes)
            .bind(&invitees)
            .bind(timestamp(now))
            .execute(self.pool())
            .await;
            match result {
                Ok(_) => {
                    return self.stored_meeting(&id).await?.ok_or_else(|| {
                        StoreError::Corrupt("meeting vanished after insert".into())
                    });
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Corrupt(
            "could not allocate a unique meeting ID".into(),
        ))
    }

    async fn stored_meeting(&self, id: &str) -> Result<Option<Meeting>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM meetings WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Any meeting ID: a stored meeting, or a user's personal PIN (a personal meeting).
    pub async fn meeting(&self, id: &str) -> Result<Option<Meeting>, StoreError> {
        if let Some(m) = self.stored_meeting(id).await? {
            return Ok(Some(m));
        }
        Ok(self.user_by_pin(id).await?.map(|host| Meeting {
            id: id.to_owned(),
            host_user_id: host.id,
            kind: MeetingKind::Personal,
            title: format!("{}'s meeting room", host.display_name),
            starts_at: None,
            duration_minutes: None,
            invitees: Vec::new(),
            created_at: host.created_at,
        }))
    }

    /// Meetings a user created, newest first (at most `limit`).
    pub async fn meetings_hosted_by(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<Meeting>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM meetings WHERE host_user_id = $1 ORDER BY created_at DESC LIMIT $2"
        ))
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}
