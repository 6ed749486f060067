//! Meeting events and the bus they travel on.
//!
//! The media plane (and later the gateway) reports what happens in each meeting as [`MeetingEvent`]s;
//! consumers such as billing and reports subscribe. Every event carries an [`EventId`] so a consumer can
//! process it exactly once even when delivery is at-least-once.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::ids::{AttendeeId, ClientType, EventId, MeetingId};
use crate::join_token::AttendeeRole;

/// One thing that happened in one meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingEvent {
    pub id: EventId,
    /// Milliseconds since the Unix epoch (UTC) when it happened.
    pub at_unix_ms: u64,
    pub meeting: MeetingId,
    #[serde(flatten)]
    pub kind: MeetingEventKind,
}

impl MeetingEvent {
    /// An event that happens now, with a fresh id.
    pub fn now(meeting: MeetingId, kind: MeetingEventKind) -> Self {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            id: EventId::new(),
            at_unix_ms,
            meeting,
            kind,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeetingEventKind {
    /// The first attendee arrived.
    MeetingStarted,
    AttendeeJoined {
        attendee: AttendeeId,
        name: String,
        client: ClientType,
        /// What the join token granted.
        role: AttendeeRole,
        /// The signed-in user behind the attendee (None for guests and dial-ins).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    AttendeeLeft {
        attendee: AttendeeId,
        reason: LeaveReason,
    },
    ScreenShareStarted {
        attendee: AttendeeId,
    },
    ScreenShareStopped {
        attendee: AttendeeId,
    },
    /// The host started recording (billing counts it; media recording itself comes later).
    RecordingStarted {
        attendee: AttendeeId,
    },
    RecordingStopped {
        attendee: AttendeeId,
    },
    /// The last attendee left.
    MeetingEnded,
}

/// Why an attendee is no longer in the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The attendee left (or closed its signaling connection).
    Left,
    /// No media traffic for too long, or the connection never came up.
    Timeout,
    /// The attendee's connection failed.
    Error,
    /// The server is shutting down.
    Shutdown,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Where meeting events go. Publishing never blocks: the media plane calls it from its shard threads.
pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: MeetingEvent);

    /// A new subscription that sees every event published after this call.
    fn subscribe(&self) -> broadcast::Receiver<MeetingEvent>;
}

/// The single-process bus: a bounded broadcast channel. A subscriber that falls more than
/// `capacity` events behind loses the oldest ones (it is told so by `RecvError::Lagged`); the durable
/// outbox of the billing issue is what makes delivery at-least-once across crashes.
pub struct InProcessBus {
    tx: broadcast::Sender<MeetingEvent>,
}

impl InProcessBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl EventBus for InProcessBus {
    fn publish(&self, event: MeetingEvent) {
        tracing::debug!(meeting = %event.meeting, kind = ?event.kind, "meeting event");
        // No subscriber is not an error: events nobody listens to are simply gone.
        let _ = self.tx.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<MeetingEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_see_events_in_order_with_distinct_ids() {
        let bus = InProcessBus::new(8);
        let mut rx = bus.subscribe();
        let m: MeetingId = "m1".parse().unwrap();
        bus.publish(MeetingEvent::now(
            m.clone(),
            MeetingEventKind::MeetingStarted,
        ));
        bus.publish(MeetingEvent::now(m.clone(), MeetingEventKind::MeetingEnded));
        let a = rx.try_recv().unwrap();
        let b = rx.try_recv().unwrap();
        assert_eq!(a.kind, MeetingEventKind::MeetingStarted);
        assert_eq!(b.kind, MeetingEventKind::MeetingEnded);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let m: MeetingId = "m1".parse().unwrap();
        let e = MeetingEvent::now(
            m,
            MeetingEventKind::AttendeeJoined {
                attendee: AttendeeId::from_raw(1),
                name: "Ada".into(),
                client: ClientType::Sip,
                role: AttendeeRole::Attendee,
                user: None,
            },
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["role"], "attendee");
        assert!(v.get("user").is_none(), "guests carry no user");
        assert_eq!(v["event"], "attendee_joined");
        assert_eq!(v["client"], "sip");
        assert_eq!(v["attendee"], "a-00000001");
        let back: MeetingEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
