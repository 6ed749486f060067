//! Identifiers and small enums shared by every plane.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("meeting id must be 1-64 characters of A-Z a-z 0-9 _ -")]
    BadMeetingId,
    #[error("unknown client type {0:?} (expected web, native, sip or h323)")]
    UnknownClientType(String),
    #[error("unknown media source {0:?} (expected audio, camera or screen)")]
    UnknownMediaSource(String),
}

/// A meeting's identifier as people type it: 1-64 characters of `A-Z a-z 0-9 _ -`.
///
/// The restriction keeps ids safe in URLs, SIP URIs, log lines and metric labels without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MeetingId(String);

impl MeetingId {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MeetingId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadMeetingId)
        }
    }
}

impl TryFrom<String> for MeetingId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MeetingId> for String {
    fn from(id: MeetingId) -> String {
        id.0
    }
}

impl fmt::Display for MeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attendee's presence in one meeting: `a-` and 8 hex digits, random, unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttendeeId(u32);

impl AttendeeId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(fastrand::u32(..))
    }

    pub fn from_raw(raw: u32) -> Self {
        Self(raw)
    }
}

impl fmt::Display for AttendeeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a-{:08x}", self.0)
    }
}

impl FromStr for AttendeeId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let hex = s.strip_prefix("a-").ok_or(())?;
        if hex.len() != 8 {
            return Err(());
        }
        u32::from_str_radix(hex, 16).map(Self).map_err(|_| ())
    }
}

impl Serialize for AttendeeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AttendeeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("attendee id must look like a-0123abcd"))
    }
}

/// A unique event id (UUID v4): consumers use it to process each event once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub uuid::Uuid);

impl EventId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How an attendee takes part: the billing rules and reports distinguish these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    /// A browser running the web app.
    #[default]
    Web,
    /// The native client.
    Native,
    /// A SIP room system through the gateway.
    Sip,
    /// An H.323 room system through the gateway.
    H323,
    /// A telephone dialing in (PSTN through the gateway's SIP trunk): counts as "dialed in" for billing.
    Phone,
}

impl ClientType {
    pub const ALL: [ClientType; 5] = [Self::Web, Self::Native, Self::Sip, Self::H323, Self::Phone];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Native => "native",
            Self::Sip => "sip",
            Self::H323 => "h323",
            Self::Phone => "phone",
        }
    }
}

impl FromStr for ClientType {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| IdError::UnknownClientType(s.to_owned()))
    }
}

/// What a publication carries. An attendee publishes at most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaSource {
    Audio,
    Camera,
    Screen,
}

impl MediaSource {
    pub const ALL: [MediaSource; 3] = [Self::Audio, Self::Camera, Self::Screen];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Camera => "camera",
            Self::Screen => "screen",
        }
    }

    /// Index into per-source arrays (`[T; 3]`).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_video(self) -> bool {
        !matches!(self, Self::Audio)
    }
}

impl FromStr for MediaSource {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| IdError::UnknownMediaSource(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_ids_are_checked() {
        assert!("standup-42".parse::<MeetingId>().is_ok());
        assert!("A_b-9".parse::<MeetingId>().is_ok());
        for bad in ["", "has space", "semi;colon", "ünï", &"x".repeat(65)] {
            assert_eq!(
                bad.parse::<MeetingId>(),
                Err(IdError::BadMeetingId),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<MeetingId>("\"../etc\"").is_err());
    }

    #[test]
    fn attendee_ids_round_trip() {
        let id = AttendeeId::from_raw(0x00ab_cdef);
        assert_eq!(id.to_string(), "a-00abcdef");
        assert_eq!("a-00abcdef".parse::<AttendeeId>(), Ok(id));
        assert!("a-xyz".parse::<AttendeeId>().is_err());
        assert!("b-00abcdef".parse::<AttendeeId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<AttendeeId>(&json).unwrap(), id);
    }

    #[test]
    fn enums_parse_their_wire_names() {
        for c in ClientType::ALL {
            assert_eq!(c.as_str().parse::<ClientType>(), Ok(c));
        }
        for s in MediaSource::ALL {
            assert_eq!(s.as_str().parse::<MediaSource>(), Ok(s));
        }
        assert!("fax".parse::<ClientType>().is_err());
        assert!("hologram".parse::<MediaSource>().is_err());
    }
}
