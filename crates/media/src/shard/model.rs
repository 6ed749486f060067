//! What a shard owns: meetings, attendees, publications and subscriptions.
//!
//! Entities live in slabs and refer to each other by slab index. An index is only followed while the
//! entity is known to exist: removal always unlinks every reference first (see `Shard::remove_*`).

use crate::allocation::policy::Choice;
use crate::allocation::speakers::SpeakerSelector;
use crate::signal::messages::TrackTarget;
use std::time::Instant;

use convene_core::{AttendeeId, AttendeeRole, ClientType, MediaSource, MeetingId};
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::Pt;
use str0m::media::{Mid, Rid};
use str0m::rtp::Ssrc;

use crate::forward::{Rewriter, VideoCodec};
use crate::signal::messages::{AttendeeInfo, ServerMessage};

/// Where the shard sends an attendee's signaling messages (the front end drains it).
pub type SignalTx = tokio::sync::mpsc::UnboundedSender<ServerMessage>;

pub struct Meeting {
    pub attendees: Vec<usize>,
    /// The speaking set last announced.
    pub speaking: Vec<AttendeeId>,
    /// Whether the meeting is being recorded (a per-meeting flag only hosts change).
    pub recording: bool,
    /// The host who put `recording` in its current state (None until someone first changes it).
    /// When the meeting ends while recording, the closing `RecordingStopped` names this host, the
    /// one who started it, even if they left earlier.
    pub recording_by: Option<AttendeeId>,
    /// The loudest few voices, whose audio is all that is forwarded in a large meeting.
    pub speakers: SpeakerSelector,
    /// HD mode (a host control): the 1:1 video tier becomes 1400 kbps.
    pub hd: bool,
    /// The remote control session in progress, if any (one per meeting: one screen is shared).
    pub remote_control: Option<super::remote_control::Session>,
    /// Requests for control awaiting the sharer's answer: (controller, sharer).
    pub control_requests: Vec<(usize, usize)>,
}

pub struct Attendee {
    pub id: AttendeeId,
    pub name: String,
    pub client: ClientType,
    /// What the join token granted; host controls check it.
    pub role: AttendeeRole,
    /// The join token lets it grant others control of its shared screen (its organisation's policy).
    pub may_grant_control: bool,
    /// It takes part in remote control, so its subscribe connection must exist (for the data channel)
    /// even when it receives no media.
    pub needs_channel: bool,
    pub meeting: MeetingId,
    pub signal: SignalTx,
    pub audio_muted: bool,
    pub camera_off: bool,
    /// The connection the attendee publishes on (it offers).
    pub publish_peer: Option<usize>,
    /// The connection the attendee receives on (we offer).
    pub subscribe_peer: Option<usize>,
    /// Its publications by source.
    pub publications: [Option<usize>; 3],
    /// Subscriptions in which it is the receiver.
    pub subscriptions: Vec<usize>,
    /// Our subscribe offer awaiting the attendee's answer, and when it was made.
    pub pending_offer: Option<(SdpPendingOffer, Instant)>,
    /// m-lines of the subscribe connection to turn inactive at the next offer.
    pub mids_to_close: Vec<Mid>,
    /// Something changed that the subscribe connection does not reflect yet.
    pub subscribe_dirty: bool,
    /// The send-side bandwidth estimate of its subscribe connection (kbps).
    pub downlink_estimate_kbps: Option<u32>,
    /// A cap the attendee set ("low bandwidth"), in kbps.
    pub downlink_cap_kbps: Option<u32>,
    /// The last REMB its subscribe connection reported (kbps): a cap, never an estimate.
    pub downlink_remb_kbps: Option<u32>,
    /// The (allocated, wanted) kbps last given to the subscriber's estimator (see `Shard::aim_estimator`).
    pub estimator_aim: Option<(u32, u32)>,
    /// Re-arms the estimator's probe while the estimate falls short of the wanted rate.
    pub reprobe: crate::allocation::reprobe::Reprobe,
    /// The `publish_targets` last sent, to send only changes.
    pub publish_targets_sent: Vec<TrackTarget>,
    /// Set for an attendee whose media crosses an attendee port (a bridged call) instead of WebRTC
    /// connections: it has no peers, and what it receives goes into this port.
    pub port: Option<super::port::PortLink>,
}

impl Attendee {
    pub fn info(&self) -> AttendeeInfo {
        AttendeeInfo {
            attendee_id: self.id,
            name: self.name.clone(),
            client: self.client,
            audio_muted: self.audio_muted,
            camera_off: self.camera_off,
        }
    }

    pub fn send(&self, msg: ServerMessage) {
        // A closed front end is fine: the attendee is on its way out and the consent timer removes it.
        let _ = self.signal.send(msg);
    }
}

/// One simulcast encoding (or the only encoding) of a video publication; audio has exactly one.
pub struct Layer {
    pub rid: Option<Rid>,
    pub ssrc: Ssrc,
    pub last_packet: Instant,
    /// Bytes seen since the last rate update, and the rate then computed (bytes/s).
    pub bytes_window: u64,
    pub rate: u64,
    /// The rate (bytes/s) the layer carried when it last arrived steadily, kept after it stops.
    pub nominal: u64,
    /// The previous rate window's bytes/s (0: nothing arrived in it).
    pub last_sample: u64,
    /// Left out of the publisher's last `publish_targets` (nobody received it), so it may have stopped
    /// because we said so: the allocation still offers it at its nominal rate, and choosing it lists
    /// it again, which turns it back on. A layer that stopped on its own is not offered.
    pub switched_off: bool,
    /// When a keyframe of this layer was last asked for (requests are throttled per layer).
    pub last_keyframe_request: Option<Instant>,
    /// When somebody last received it (or a higher layer): it stays switched on for a while after.
    pub last_in_use: Option<Instant>,
    /// Recent packets, for the fast path's retransmissions (empty unless it is on).
    pub history: crate::fastpath::rtx::PacketHistory,
}

impl Layer {
    /// A layer first seen at `now`, nothing measured yet.
    pub fn new(rid: Option<Rid>, ssrc: Ssrc, now: Instant) -> Self {
        Self {
            rid,
            ssrc,
            last_packet: now,
            bytes_window: 0,
            rate: 0,
            nominal: 0,
            last_sample: 0,
            switched_off: false,
            last_in_use: Some(now),
            last_keyframe_request: None,
            history: Default::default(),
        }
    }
}

/// One incoming track: an attendee's microphone, camera or screen.
pub struct Publication {
    /// Unique on this shard for its lifetime: names the track in subscribers' SDP (`a=msid`), which
    /// must differ from any earlier publication of the same source (browsers refuse duplicates).
    pub serial: u64,
    pub attendee: usize,
    pub attendee_id: AttendeeId,
    pub source: MediaSource,
    /// Its m-line on the publisher's publish connection.
    pub mid: Mid,
    pub layers: Vec<Layer>,
    /// The layer subscribers should receive (the best one arriving); `None` until media arrives.
    pub best_layer: Option<usize>,
    pub subscriptions: Vec<usize>,
    pub last_keyframe_request: Option<Instant>,
    /// Cache of the last payload type seen and its codec parameters on the publisher's connection.
    pub params: Option<(Pt, PayloadParams)>,
    pub video_codec: Option<VideoCodec>,
    /// Until when the attendee counts as speaking (audio only).
    pub speaking_until: Option<Instant>,
    /// Audio only: forwarded to subscribers (false for voices that are not among the loudest few of a
    /// large meeting). Updated each tick, read per packet.
    pub audible: bool,
    /// Forwarded to subscribers at all: false for a camera beyond the meeting's camera limit, which
    /// waits for a free slot.
    pub admitted: bool,
    /// Audio only: RFC 6464 levels (dBov) summed since the last tick, and how many packets.
    pub level_sum: u32,
    pub level_packets: u32,
    /// A port attendee's publication: its 16-bit sequence numbers extended here (str0m does that for
    /// WebRTC publications).
    pub port_seq: Option<convene_core::port::SeqExtender>,
}

/// What the fast path needs of a subscription's negotiation, read once at its first packet.
#[derive(Debug, Clone, Copy)]
pub struct FastSubscription {
    /// The header extension ids of its m-line.
    pub ids: crate::fastpath::egress::ExtIds,
    /// Its RTX stream (SSRC, payload type), if it negotiated one.
    pub rtx: Option<(u32, u8)>,
    /// Its media stream's index in the connection's fast egress (`FastEgress::stream`), known from
    /// its first packet.
    pub stream: Option<usize>,
}

/// One attendee receiving one publication.
pub struct Subscription {
    pub publication: usize,
    pub subscriber: usize,
    /// Its m-line on the subscriber's subscribe connection; set when the offer is made.
    pub mid: Option<Mid>,
    /// The answer that includes this m-line has been accepted.
    pub negotiated: bool,
    /// The publication layer now forwarded; `None` until a keyframe (video) or first packet (audio).
    pub layer: Option<usize>,
    /// What the bandwidth allocation chose for it; `None` until the subscriber has a downlink estimate
    /// (then the best arriving layer is forwarded).
    pub target: Option<Choice>,
    pub rewriter: Rewriter,
    /// Payload type mapping cache: publisher's pt -> subscriber's pt.
    pub pt_map: Option<(Pt, Pt)>,
    /// The SSRC str0m sends this subscription on, known once negotiated (a hash lookup per packet
    /// instead of a scan by mid).
    pub tx_ssrc: Option<Ssrc>,
    /// The header extension ids of its m-line, for the fast path (read once from the negotiation).
    pub fast: Option<FastSubscription>,
    /// Egress statistics last seen, for turning str0m's running totals into counter increments.
    pub nacks_seen: u64,
    pub plis_seen: u64,
}
