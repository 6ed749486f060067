//! The attendee port: how an attendee that is not a WebRTC client takes part in a meeting's media.
//!
//! A SIP or H.323 call bridged by the gateway (and later a node cascading to another) has no ICE,
//! DTLS or SDP toward the media plane. It joins a meeting like any attendee, and its media crosses an
//! in-process port instead: plain RTP packets in ([`PortMedia`]: the attendee's own publications) and
//! out ([`PortDelivery`]: what the meeting forwards to it, one stream per publication, each with
//! continuous sequence numbers and timestamps), plus keyframe requests. The media plane keeps its
//! forwarding rules (who hears whom, the loudest voices of a large meeting, layer choice) and the gateway
//! keeps codecs and mixing: neither crate depends on the other, both on this vocabulary.
//!
//! What a port publishes is fixed by [`PORT_AUDIO`]: Opus at 48 kHz, 20 ms frames, the format every
//! WebRTC client receives without renegotiation.

use std::sync::Arc;

use crate::{AttendeeId, MediaSource};

/// The RTP format of a port's audio publication and of the audio it receives: Opus, 48 kHz clock,
/// `opus/48000/2` in SDP terms (RFC 7587: always "2" channels in SDP, mono content is fine).
pub const PORT_AUDIO: PortFormat = PortFormat {
    codec: "opus",
    clock_rate: 48_000,
};

/// A codec and its RTP clock, as the port speaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortFormat {
    pub codec: &'static str,
    pub clock_rate: u32,
}

/// What a port attendee publishes, and in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortPublication {
    /// Its microphone, as [`PORT_AUDIO`].
    Audio,
    /// Its camera, H.264 with packetization mode 1 (RFC 6184), passed through as the device sends it;
    /// `profile_level_id` is the device's (six hex digits), so receivers are told what it really is.
    H264Camera { profile_level_id: Option<String> },
}

impl PortPublication {
    pub fn source(&self) -> MediaSource {
        match self {
            Self::Audio => MediaSource::Audio,
            Self::H264Camera { .. } => MediaSource::Camera,
        }
    }
}

/// One RTP packet's worth of media crossing the port, in the clear. The header fields the forwarding
/// needs are fields; the payload is shared, not copied, when the meeting forwards one packet to many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// RFC 6464 audio level as -dBov (0 loudest, 127 silence); audio only. The meeting's speaking
    /// indicator and loudest-speaker choice read it, as they read a browser's header extension.
    pub audio_level: Option<u8>,
    pub payload: Arc<[u8]>,
}

/// Media a port attendee sends into its meeting: a packet of one of its publications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMedia {
    pub source: MediaSource,
    pub packet: PortPacket,
}

/// What the meeting sends a port attendee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortDelivery {
    /// A packet of another attendee's publication `source`. Each (from, source) pair is one stream
    /// with continuous sequence numbers and timestamps, across the publisher's layer switches.
    Media {
        from: AttendeeId,
        source: MediaSource,
        packet: PortPacket,
    },
    /// Someone needs a keyframe of the port attendee's publication `source` (video only).
    KeyframeRequest { source: MediaSource },
}

/// The sending half of a port, held by the port attendee (the gateway's call): media into the meeting.
/// `false` means the meeting side is gone (the attendee left or the server is stopping).
pub trait PortSink: Send + Sync {
    fn send(&self, media: PortMedia) -> bool;

    /// Ask `from`'s publication `source` for a keyframe (the port attendee starts showing it, or its
    /// device lost the picture). Throttled by the meeting side like any subscriber's request.
    fn request_keyframe(&self, from: AttendeeId, source: MediaSource) -> bool;
}

/// A port as the port attendee holds it: where its media goes, and what the meeting sends it.
/// Dropping it does not leave the meeting; leaving is the owner's separate, explicit step.
pub struct AttendeePort {
    pub sink: Box<dyn PortSink>,
    pub deliveries: tokio::sync::mpsc::Receiver<PortDelivery>,
}

impl std::fmt::Debug for AttendeePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttendeePort").finish_non_exhaustive()
    }
}

/// How many deliveries a port buffers before the meeting drops (and counts) what does not fit: a
/// second of audio from the loudest few voices, with room for bursts.
pub const PORT_DELIVERY_QUEUE: usize = 512;

/// Extends 16-bit RTP sequence numbers to a monotonic 64-bit count (the nearest value to the last
/// one seen), as forwarding needs across wraps.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            // Start well above zero so a reordered packet before the first one cannot underflow.
            let first = (1u64 << 16) + u64::from(seq);
            self.last = Some(first);
            return first;
        };
        let delta = seq.wrapping_sub(last as u16) as i16;
        let extended = last.saturating_add_signed(i64::from(delta));
        if extended > last {
            self.last = Some(extended);
        }
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_extend_across_wraps_and_reordering() {
        let mut ext = SeqExtender::default();
        let a = ext.extend(65_534);
        assert_eq!(ext.extend(65_535), a + 1);
        assert_eq!(ext.extend(0), a + 2);
        assert_eq!(ext.extend(1), a + 3);
        // A late packet from before the wrap maps back, and does not move the high-water mark.
        assert_eq!(ext.extend(65_535), a + 1);
        assert_eq!(ext.extend(2), a + 4);
        // A reordered packet before the very first one does not underflow.
        let mut ext = SeqExtender::default();
        let first = ext.extend(5);
        assert_eq!(ext.extend(3), first - 2);
    }
}
