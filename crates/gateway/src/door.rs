//! The gateway's door into meetings: one question, asked of the same admission rule the web join
//! endpoint uses (`crates/admin/src/portal/admission.rs`), answered by whoever wires the gateway up
//! (`crates/server`). The gateway never sees the admin plane's store.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use convene_core::port::{AttendeePort, PortPublication};
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

/// What an answered call brings into its meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMedia {
    /// Its publications: audio always, a camera when H.264 video was agreed.
    pub publishes: Vec<PortPublication>,
    /// It shows the meeting's active speaker (H.264 video agreed).
    pub takes_video: bool,
    /// The most it wants to receive (kbps, its audio included), from its offer; None: no limit said.
    pub downlink_kbps: Option<u32>,
}

/// Room for the meeting's voices in a room's downlink (the loudest three at the guide's audio rate).
const AUDIO_KBPS: u32 = 3 * 54;

impl CallMedia {
    pub fn of(negotiated: &crate::sdp::Negotiated) -> Self {
        let mut publishes = vec![PortPublication::Audio];
        if let Some(video) = &negotiated.video {
            publishes.push(PortPublication::H264Camera {
                profile_level_id: video.profile_level_id(),
            });
        }
        Self {
            publishes,
            takes_video: negotiated.video.is_some(),
            downlink_kbps: negotiated
                .video
                .as_ref()
                .and_then(|v| v.max_kbps)
                .map(|video| video.saturating_add(AUDIO_KBPS)),
        }
    }
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
    /// counts it and the meeting does not end while it is there. The returned port carries its media
    /// both ways (`media` says what the call publishes and whether it takes video); None leaves the
    /// call in the meeting without media (a door without a media plane).
    fn arrived(&self, _grant: &JoinGrant, _media: &CallMedia) -> Option<AttendeePort> {
        None
    }

    /// That call ended: the attendee leaves.
    fn departed(&self, _grant: &JoinGrant) {}
}
