//! The JSON messages of the `/v1/signal` WebSocket, exactly as `docs/signaling.md` documents them.

use convene_core::{AttendeeId, ClientType, MediaSource};
use serde::{Deserialize, Serialize};

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Join {
        meeting: String,
        /// The signed join token (required): it names the attendee, their display name, role and
        /// client type. A missing one gets `error` `unauthorized`.
        #[serde(default)]
        token: Option<String>,
        /// Ignored (the token carries the name); kept so older clients still parse.
        #[serde(default)]
        name: Option<String>,
        /// Ignored (the token carries the client type).
        #[serde(default)]
        client: Option<String>,
    },
    PublishOffer {
        sdp: String,
        #[serde(default)]
        tracks: Vec<PublishTrack>,
    },
    SubscribeAnswer {
        sdp: String,
    },
    Mute {
        source: String,
        muted: bool,
    },
    /// Start (`on: true`) or stop recording; hosts only.
    Recording {
        on: bool,
    },
    /// Turn the meeting's HD mode on or off; hosts only.
    HdMode {
        on: bool,
    },
    /// Cap the attendee's downlink (kbps; null lifts the cap): a "low bandwidth" setting the server's
    /// allocation honours on top of its own estimate.
    DownlinkCap {
        kbps: Option<u32>,
    },
    /// Ask for control of `attendee_id`'s shared screen.
    RemoteControlRequest {
        attendee_id: AttendeeId,
    },
    /// The sharer's answer to a request from `attendee_id`.
    RemoteControlAnswer {
        attendee_id: AttendeeId,
        granted: bool,
    },
    /// End the remote control session the sender is part of (sharer or controller).
    RemoteControlStop,
    Leave,
    Ping,
}

impl ClientMessage {
    /// The names of every message type, for telling "unknown type" from "bad fields".
    pub const TYPES: [&'static str; 12] = [
        "join",
        "publish_offer",
        "subscribe_answer",
        "mute",
        "recording",
        "hd_mode",
        "downlink_cap",
        "remote_control_request",
        "remote_control_answer",
        "remote_control_stop",
        "leave",
        "ping",
    ];
}

/// One entry of `publish_offer.tracks`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PublishTrack {
    pub mid: String,
    pub source: String,
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        meeting: String,
        attendee_id: AttendeeId,
        attendees: Vec<AttendeeInfo>,
        /// Whether the meeting is being recorded right now (late joiners learn it here).
        recording: bool,
        /// Whether the meeting is in HD mode.
        #[serde(default)]
        hd_mode: bool,
    },
    PublishAnswer {
        sdp: String,
    },
    SubscribeOffer {
        sdp: String,
        tracks: Vec<SubscribeTrack>,
    },
    AttendeeJoined {
        attendee: AttendeeInfo,
    },
    AttendeeUpdated {
        attendee: AttendeeInfo,
    },
    AttendeeLeft {
        attendee_id: AttendeeId,
        reason: String,
    },
    Speaking {
        attendee_ids: Vec<AttendeeId>,
    },
    /// The meeting's recording state: after a host changed it (to everyone), or as the answer to a
    /// `recording` request that changed nothing (to the sender).
    Recording {
        on: bool,
        /// The host who put the meeting in this state; absent if nobody has changed it yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<AttendeeId>,
    },
    /// The meeting's HD mode changed (to everyone), or the answer to an `hd_mode` request that changed
    /// nothing (to the sender).
    HdMode {
        on: bool,
    },
    /// What to send on each published video track: the meeting tier's bitrate, and which simulcast
    /// layers anyone receives (the others can be switched off). Sent when it changes.
    PublishTargets {
        tracks: Vec<TrackTarget>,
    },
    /// `attendee_id` asks for control of your shared screen (to the sharer only).
    RemoteControlRequest {
        attendee_id: AttendeeId,
        name: String,
    },
    /// The sharer declined your request (to the requester only).
    RemoteControlDeclined {
        attendee_id: AttendeeId,
    },
    /// A remote control session started (`active`) or ended (to everyone in the meeting). While it is
    /// active, what the controller writes on its `convene` data channel reaches the sharer's.
    RemoteControl {
        active: bool,
        sharer_id: AttendeeId,
        controller_id: AttendeeId,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong,
}

/// One entry of `publish_targets.tracks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackTarget {
    /// The m-line on the publisher's publish connection.
    pub mid: String,
    /// Upper bound for the track's total bitrate (kbps).
    pub max_kbps: u32,
    /// Simulcast only: the rids to keep sending; absent without simulcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_rids: Option<Vec<String>>,
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

/// What the others know about an attendee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendeeInfo {
    pub attendee_id: AttendeeId,
    pub name: String,
    pub client: ClientType,
    pub audio_muted: bool,
    pub camera_off: bool,
}

/// One m-line of the subscribe connection and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeTrack {
    pub mid: String,
    pub attendee_id: AttendeeId,
    pub source: MediaSource,
}

/// The `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadMessage,
    UnknownType,
    NotJoined,
    AlreadyJoined,
    InvalidField,
    BadSdp,
    NoOfferOutstanding,
    Unauthorized,
    /// The join token's role does not allow it (host controls).
    Forbidden,
    Unavailable,
    /// Remote control cannot happen: the sharer's organisation does not allow it, nobody with that id
    /// is sharing, or their screen is already under someone's control.
    RemoteControlUnavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_as_documented() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"join","meeting":"m","name":"Ada","client":"web","token":null,"future":1}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::Join { ref meeting, .. } if meeting == "m"));
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"publish_offer","sdp":"v=0","tracks":[{"mid":"0","source":"audio"}]}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::PublishOffer { ref tracks, .. } if tracks.len() == 1));
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"leave"}"#).unwrap(),
            ClientMessage::Leave
        );
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"recording","on":true}"#).unwrap(),
            ClientMessage::Recording { on: true }
        );
    }

    #[test]
    fn server_messages_render_as_documented() {
        let v = serde_json::to_value(ServerMessage::error(ErrorCode::BadSdp, "no fingerprint"))
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"bad_sdp","message":"no fingerprint"})
        );
        let v = serde_json::to_value(ServerMessage::Speaking {
            attendee_ids: vec![AttendeeId::from_raw(2)],
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"speaking","attendee_ids":["a-00000002"]})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::Pong).unwrap(),
            serde_json::json!({"type":"pong"})
        );
        let v = serde_json::to_value(ServerMessage::Recording {
            on: true,
            by: Some(AttendeeId::from_raw(3)),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"recording","on":true,"by":"a-00000003"})
        );
        let v = serde_json::to_value(ServerMessage::Recording {
            on: false,
            by: None,
        })
        .unwrap();
        assert_eq!(v, serde_json::json!({"type":"recording","on":false}));
        let v =
            serde_json::to_value(ServerMessage::error(ErrorCode::Forbidden, "hosts only")).unwrap();
        assert_eq!(v["code"], "forbidden");
        let v = serde_json::to_value(ServerMessage::Joined {
            meeting: "m".into(),
            attendee_id: AttendeeId::from_raw(1),
            attendees: vec![],
            recording: true,
            hd_mode: false,
        })
        .unwrap();
        assert_eq!(v["recording"], true);
        assert_eq!(v["hd_mode"], false);
        let m: ClientMessage = serde_json::from_str(r#"{"type":"hd_mode","on":true}"#).unwrap();
        assert_eq!(m, ClientMessage::HdMode { on: true });
    }
}
