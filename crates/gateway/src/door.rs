//! The gateway's door into meetings: one question, asked of the same admission rule the web join
//! endpoint uses (`crates/admin/src/portal/admission.rs`), answered by whoever wires the gateway up
//! (`crates/server`). The gateway never sees the admin plane's store.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use convene_core::port::AttendeePort;
use convene_core::{AttendeeId, MeetingId};

/// What admission hands a caller it lets in: the join token a signaling front end checks, and who
/// the caller will be in the meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGrant {
    pub token: String,
    pub meeting: MeetingId,
    pub attendee: AttendeeId,
    pub name: String,
}

/// Why a caller was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No meeting has this ID.
    UnknownMeeting,
    /// The meeting exists but cannot take place or take this caller; the text is for people.
    NotAllowed(String),
    /// Admission could not be decided (storage down, or too slow): try again later.
    Unavailable,
    /// This source guessed too many wrong meeting IDs (counted with the web's guesses); it may try
    /// again after this long.
    TooManyGuesses(Duration),
}

/// A boxed future, so the door can be a trait object.
pub type DoorFuture<'a> = Pin<Box<dyn Future<Output = Result<JoinGrant, Refused>> + Send + 'a>>;

/// May a caller named `caller`, calling from `source`, join meeting `meeting_id`, and as whom? The
/// source lets wrong guesses of meeting IDs be limited per address, as on the web.
pub trait MeetingDoor: Send + Sync {
    fn admit<'a>(&'a self, meeting_id: &'a str, caller: &'a str, source: IpAddr) -> DoorFuture<'a>;

    /// The caller `grant` admitted is in its meeting (the call is answered): it takes its place in the
    /// meeting's roster and events as an attendee (client type `sip`), so the others see it, billing
    /// counts it and the meeting does not end while it is there. The returned port carries its audio
    /// both ways; None leaves the call in the meeting without media (a door without a media plane).
    fn arrived(&self, _grant: &JoinGrant) -> Option<AttendeePort> {
        None
    }

    /// That call ended: the attendee leaves.
    fn departed(&self, _grant: &JoinGrant) {}
}
