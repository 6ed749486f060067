//! Report operations (the guide's "View Reports" / "View User Details") and the Active Pro listing.
//! Every report takes `from` and `to` (UTC dates, `YYYY-MM-DD`, both included; default: the 30 days
//! ending today) and selects conferences by the day they ended.

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::macros::format_description;
use time::{Date, Duration};

use super::accounts::existing;
use super::error::ApiError;
use super::query::ListQuery;
use super::{AdminState, Reply};
use crate::model::AccountId;
use crate::store::reports::ConferenceReport;

/// Longest range one report covers.
const MAX_RANGE_DAYS: i64 = 366;

fn date(name: &str, value: &str) -> Result<Date, ApiError> {
    Date::parse(value, format_description!("[year]-[month]-[day]"))
        .map_err(|_| ApiError::BadRequest(format!("{name} must be a date written YYYY-MM-DD")))
}

/// The `from`/`to` pair of a report query.
pub fn range(state: &AdminState, query: &str) -> Result<(Date, Date), ApiError> {
    let q = ListQuery::parse(query, 100)?;
    let today = (state.now)().date();
    let to = q
        .get("to")
        .map(|v| date("to", v))
        .transpose()?
        .unwrap_or(today);
    let from = q
        .get("from")
        .map(|v| date("from", v))
        .transpose()?
        .unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    if (to - from).whole_days() >= MAX_RANGE_DAYS {
        return Err(ApiError::BadRequest(format!(
            "a report covers at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok((from, to))
}

fn seconds_between(start: &str, end: Option<&str>) -> Option<i64> {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let start = OffsetDateTime::parse(start, &Rfc3339).ok()?;
    let end = OffsetDateTime::parse(end?, &Rfc3339).ok()?;
    Some((end - start).whole_seconds())
}

fn meeting_json(c: &ConferenceReport) -> Value {
    json!({
        "ConferenceId": c.conference_id,
        "MeetingId": c.meeting_id,
        "Type": c.kind,
        "StartTime": c.started_at,
        "EndTime": c.ended_at,
        "DurationSeconds": seconds_between(&c.started_at, c.ended_at.as_deref()),
        "Organizer": c.organizer,
        "OrganizerUserId": c.organizer_user_id,
        "Attendees": c.attendees,
        "Recorded": c.recorded,
    })
}

/// The share of thumbs-up answers in percent; None without answers.
fn satisfaction(positive: i64, negative: i64) -> Option<f64> {
    let answers = positive + negative;
    (answers > 0).then(|| (positive * 100) as f64 / answers as f64)
}

fn range_json(from: Date, to: Date) -> Value {
    json!({ "From": from.to_string(), "To": to.to_string() })
}

/// ListAccountUsageReportData: the usage and feedback dashboard.
pub async fn usage(
    state: &AdminState,
    account: &AccountId,
    query: &str,
) -> Result<Reply, ApiError> {
    let (from, to) = range(state, query)?;
    existing(state, account).await?;
    let u = state.store.usage(account, from, to).await?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "UsageReport": {
            "DateRange": range_json(from, to),
            "RegisteredUsers": u.registered_users,
            "ActiveUsers": u.active_users,
            "MeetingsHeld": u.meetings_held,
            "MeetingSatisfactionPercent": satisfaction(u.positive_feedback, u.negative_feedback),
            "PositiveFeedback": u.positive_feedback,
            "NegativeFeedback": u.negative_feedback,
            "ChatMessagesSent": u.chat_messages_sent,
        }}),
    ))
}

/// ListMeetingReports: meetings that ended in the range.
pub async fn meetings(
    state: &AdminState,
    account: &AccountId,
    query: &str,
) -> Result<Reply, ApiError> {
    let (from, to) = range(state, query)?;
    existing(state, account).await?;
    let list = state.store.conferences_ended(account, from, to).await?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "DateRange": range_json(from, to), "Meetings": list.iter().map(meeting_json).collect::<Vec<_>>() }),
    ))
}

async fn conference(
    state: &AdminState,
    account: &AccountId,
    id: &str,
) -> Result<ConferenceReport, ApiError> {
    existing(state, account).await?;
    state
        .store
        .conference(account, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("meeting {id} is not a meeting of this account")))
}

/// GetMeetingDetails: attendees (client type, role, times), feedback.
pub async fn details(state: &AdminState, account: &AccountId, id: &str) -> Result<Reply, ApiError> {
    let c = conference(state, account, id).await?;
    let attendees = state.store.conference_attendees(id).await?;
    let mut meeting = meeting_json(&c);
    meeting["AttendeeList"] = attendees
        .iter()
        .map(|a| {
            json!({
                "AttendeeId": a.attendee_id,
                "UserId": a.user_id,
                "Name": a.name,
                "ClientType": a.client,
                "Role": a.role,
                "JoinTime": a.joined_at,
                "LeaveTime": a.left_at,
                "LeaveReason": a.leave_reason,
                "Feedback": a.feedback.map(|p| if p { "positive" } else { "negative" }),
            })
        })
        .collect();
    Ok(Reply::json(StatusCode::OK, json!({ "Meeting": meeting })))
}

/// ListMeetingEvents: the roster and other events of one meeting, in order.
pub async fn events(state: &AdminState, account: &AccountId, id: &str) -> Result<Reply, ApiError> {
    conference(state, account, id).await?;
    let events = state.store.conference_events(id).await?;
    let list: Vec<Value> = events
        .iter()
        .map(|e| json!({ "EventId": e.event_id, "Time": e.at, "EventType": e.kind, "Detail": e.detail }))
        .collect();
    Ok(Reply::json(StatusCode::OK, json!({ "Events": list })))
}

/// GetUserActivityReportData: one user's meetings attended/organized, satisfaction, last active.
pub async fn user_activity(
    state: &AdminState,
    account: &AccountId,
    user: &str,
    query: &str,
) -> Result<Reply, ApiError> {
    let (from, to) = range(state, query)?;
    existing(state, account).await?;
    state
        .store
        .user(account, user)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {user} does not exist in this account")))?;
    let a = state.store.user_activity(user, from, to).await?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "UserActivity": {
            "UserId": user,
            "DateRange": range_json(from, to),
            "MeetingsAttended": a.meetings_attended,
            "MeetingsOrganized": a.meetings_organized,
            "MeetingSatisfactionPercent": satisfaction(a.positive_feedback, a.negative_feedback),
            "LastActive": a.last_active,
        }}),
    ))
}

/// ListActiveProUsers: who was billed Active Pro on which day, and why.
pub async fn active_pro(
    state: &AdminState,
    account: &AccountId,
    query: &str,
) -> Result<Reply, ApiError> {
    let (from, to) = range(state, query)?;
    existing(state, account).await?;
    let days = state.store.active_pro_days(Some(account), from, to).await?;
    let list: Vec<Value> = days
        .iter()
        .map(|d| {
            json!({
                "UserId": d.user_id,
                "PrimaryEmail": d.email,
                "Day": d.day,
                "Reason": d.reason,
                "ConferenceId": d.conference_id,
            })
        })
        .collect();
    Ok(Reply::json(
        StatusCode::OK,
        json!({ "DateRange": range_json(from, to), "ActiveProUsers": list }),
    ))
}
