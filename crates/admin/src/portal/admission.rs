//! Who may join a meeting, and in which role: the one admission rule every way in uses (the web app's
//! join endpoint now; the SIP and H.323 gateway's dial-ins when they land).

use convene_core::AttendeeRole;
use time::OffsetDateTime;

use crate::model::{License, RegistrationStatus};
use crate::store::meetings::Meeting;
use crate::store::users::User;
use crate::store::{Store, StoreError};

/// Why a join (or starting a meeting) is refused. The messages are shown to people as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("there is no meeting with this ID; check the number and try again")]
    UnknownMeeting,
    #[error(
        "Basic users can attend meetings but cannot start or schedule them; ask your administrator for a Pro licence"
    )]
    BasicCannotHost,
    #[error("this meeting's host is suspended, so the meeting cannot take place")]
    HostSuspended,
    #[error("this meeting's host has not finished registering yet")]
    HostNotRegistered,
    #[error(
        "the 30-day Pro trial has ended: join an account (ask its administrator to invite you) to host meetings again"
    )]
    TrialEnded,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `user` may host (start, schedule, own a meeting others join) at `now`.
pub fn can_host(user: &User, now: OffsetDateTime) -> Result<(), Refusal> {
    match user.registration_status {
        RegistrationStatus::Suspended => return Err(Refusal::HostSuspended),
        RegistrationStatus::Unregistered => return Err(Refusal::HostNotRegistered),
        RegistrationStatus::Registered => {}
    }
    match user.license {
        License::Basic => Err(Refusal::BasicCannotHost),
        License::ProTrial if user.trial_ends_at.is_some_and(|end| end <= now) => {
            Err(Refusal::TrialEnded)
        }
        License::Plus | License::Pro | License::ProTrial => Ok(()),
    }
}

/// The role of `joiner` (None: a guest) in a meeting hosted by `host`. Anyone with the meeting ID may
/// join as long as the host may host; the host joins as host.
pub fn decide(
    host: &User,
    joiner: Option<&User>,
    now: OffsetDateTime,
) -> Result<AttendeeRole, Refusal> {
    can_host(host, now)?;
    Ok(match joiner {
        Some(u) if u.id == host.id => AttendeeRole::Host,
        _ => AttendeeRole::Attendee,
    })
}

/// A granted join.
#[derive(Debug, Clone)]
pub struct Admission {
    pub meeting: Meeting,
    pub host: User,
    pub role: AttendeeRole,
    /// May the joiner grant others control of their shared screen? Their account's policy decides
    /// (`DisableRemoteControl`); guests belong to no organisation whose policy could forbid it.
    pub remote_control: bool,
}

/// Look the meeting ID up (stored meetings and personal PINs) and apply [`decide`].
pub async fn admit(
    store: &Store,
    meeting_id: &str,
    joiner: Option<&User>,
    now: OffsetDateTime,
) -> Result<Admission, AdmitError> {
    // Meeting IDs are 10 digits; anything else cannot name one, so it never reaches storage.
    if meeting_id.len() != 10 || !meeting_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::UnknownMeeting.into());
    }
    let meeting = store
        .meeting(meeting_id)
        .await?
        .ok_or(Refusal::UnknownMeeting)?;
    let host = store
        .user_by_id(&meeting.host_user_id)
        .await?
        .ok_or(Refusal::UnknownMeeting)?;
    let role = decide(&host, joiner, now)?;
    let remote_control = match joiner.and_then(|u| u.account_id.as_ref()) {
        Some(account) => store
            .account_settings(account)
            .await?
            .is_none_or(|s| !s.disable_remote_control),
        None => true,
    };
    Ok(Admission {
        meeting,
        host,
        role,
        remote_control,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserType;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-24 12:00 UTC);

    fn user(id: &str, license: License, status: RegistrationStatus) -> User {
        User {
            id: id.into(),
            account_id: Some(crate::model::AccountId::new()),
            email: format!("{id}@example.com"),
            display_name: id.into(),
            license,
            user_type: UserType::PrivateUser,
            registration_status: status,
            personal_pin: "1234567890".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            seq: 1,
            trial_ends_at: None,
        }
    }

    #[test]
    fn the_host_hosts_everyone_else_attends() {
        let host = user("h", License::Pro, RegistrationStatus::Registered);
        let other = user("o", License::Basic, RegistrationStatus::Registered);
        assert_eq!(decide(&host, Some(&host), NOW), Ok(AttendeeRole::Host));
        assert_eq!(decide(&host, Some(&other), NOW), Ok(AttendeeRole::Attendee));
        assert_eq!(decide(&host, None, NOW), Ok(AttendeeRole::Attendee));
    }

    #[test]
    fn only_registered_non_basic_users_host() {
        let basic = user("b", License::Basic, RegistrationStatus::Registered);
        assert_eq!(
            decide(&basic, Some(&basic), NOW),
            Err(Refusal::BasicCannotHost)
        );
        let suspended = user("s", License::Pro, RegistrationStatus::Suspended);
        assert_eq!(decide(&suspended, None, NOW), Err(Refusal::HostSuspended));
        let unregistered = user("u", License::Pro, RegistrationStatus::Unregistered);
        assert_eq!(
            decide(&unregistered, None, NOW),
            Err(Refusal::HostNotRegistered)
        );
        let mut trial = user("t", License::ProTrial, RegistrationStatus::Registered);
        trial.trial_ends_at = Some(NOW + time::Duration::days(1));
        assert_eq!(can_host(&trial, NOW), Ok(()));
        trial.trial_ends_at = Some(NOW);
        assert_eq!(can_host(&trial, NOW), Err(Refusal::TrialEnded));
        for license in [License::Pro, License::ProTrial, License::Plus] {
            assert!(can_host(&user("p", license, RegistrationStatus::Registered), NOW).is_ok());
        }
    }
}
