//! A call's video, passed through without transcoding (sans-IO).
//!
//! **Device to meeting**: the device's H.264 packets become its camera publication's packets (payload
//! untouched; the meeting's forwarding rewrites sequence numbers per subscriber).
//!
//! **Meeting to device**: a room system shows one picture, the active speaker's. The port delivers
//! every camera of the meeting; the relay follows who speaks from the audio levels the port also
//! delivers (the loudest voice, held for a while so the picture does not flicker between speakers),
//! asks the new speaker for a keyframe and switches only when one arrives, rewriting SSRC, sequence
//! numbers and timestamps so the device sees one continuous stream, in its payload type.
//!
//! Keyframe requests: the meeting's for the device's camera and the device's for its picture come as
//! RTCP PLI/FIR (or SIP INFO, which the signaling core surfaces); [`VideoRelay::keyframe_request`]
//! builds the RTCP the device gets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use convene_core::AttendeeId;
use convene_core::keyframe::{VideoCodec, starts_keyframe};
use convene_core::port::{PortPacket, SeqExtender};
use convene_core::rewrite::Rewriter;
use rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc_util::{Marshal as _, Unmarshal as _};

/// A voice must stay the loudest this long before the picture follows it...
const SPEAKER_HOLD: Duration = Duration::from_millis(1500);
/// ...and a louder voice must beat the shown speaker by this many dB (RFC 6464 levels are -dBov).
const SPEAKER_MARGIN_DB: u8 = 6;
/// Levels older than this do not count (the speaker stopped, or its voice is not forwarded).
const LEVEL_STALE: Duration = Duration::from_millis(1000);
/// A camera without packets this long is not shown.
const CAMERA_STALE: Duration = Duration::from_secs(2);
/// Timestamp step put between the last frame of one speaker and the first of the next (one frame at
/// 30 fps, 90 kHz clock), as the SFU does across a layer switch.
const SWITCH_GAP: u32 = 3000;

/// What the relay asks of the call's media task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoAction {
    /// Ask this attendee's camera for a keyframe (through the port).
    RequestKeyframe(AttendeeId),
}

#[derive(Debug, Clone, Copy)]
struct Heard {
    attendee: AttendeeId,
    /// The smoothed level, -dBov (0 loudest, 127 silence).
    level: u8,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Camera {
    attendee: AttendeeId,
    last_packet: Instant,
    /// Its 16-bit sequence numbers, extended for the rewriter.
    seq: SeqExtender,
}

/// Counters of one call's video.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VideoStats {
    pub device_packets: u64,
    /// Packets from the device that are not RTP of its video payload type.
    pub device_dropped: u64,
    pub packets_to_device: u64,
    pub speaker_switches: u64,
    pub keyframe_requests_to_device: u64,
}

/// One call's video relay.
pub struct VideoRelay {
    /// The device's H.264 payload type (what it sends and what it receives).
    pt: u8,
    /// Our SSRC toward the device.
    ssrc: u32,
    /// The device's SSRC, once seen (RTCP feedback names it).
    device_ssrc: Option<u32>,
    fir_sequence: u8,
    heard: Vec<Heard>,
    cameras: Vec<Camera>,
    /// Whose picture the device gets, and who it is switching to (waiting for a keyframe).
    shown: Option<AttendeeId>,
    pending: Option<AttendeeId>,
    /// Since when `pending`'s voice has been the one to show (the hold).
    candidate: Option<(AttendeeId, Instant)>,
    /// One continuous stream toward the device across speakers (the SFU's rewriter).
    rewriter: Rewriter,
    stats: VideoStats,
}

impl VideoRelay {
    pub fn new(pt: u8, ssrc: u32) -> Self {
        Self {
            pt,
            ssrc,
            device_ssrc: None,
            fir_sequence: 0,
            heard: Vec::new(),
            cameras: Vec::new(),
            shown: None,
            pending: None,
            candidate: None,
            rewriter: Rewriter::new(),
            stats: VideoStats::default(),
        }
    }

    pub fn stats(&self) -> &VideoStats {
        &self.stats
    }

    /// Whose picture the device is getting.
    pub fn shown(&self) -> Option<AttendeeId> {
        self.shown
    }

    /// A packet the device sent on its video port: its camera's packet for the meeting, if it is one.
    pub fn device_rtp(&mut self, packet: &[u8]) -> Option<PortPacket> {
        self.stats.device_packets += 1;
        let mut buf = packet;
        let Ok(parsed) = rtp::packet::Packet::unmarshal(&mut buf) else {
            self.stats.device_dropped += 1;
            return None;
        };
        let h = &parsed.header;
        if h.payload_type != self.pt || parsed.payload.is_empty() {
            self.stats.device_dropped += 1;
            return None;
        }
        self.device_ssrc = Some(h.ssrc);
        Some(PortPacket {
            seq: h.sequence_number,
            timestamp: h.timestamp,
            marker: h.marker,
            audio_level: None,
            payload: parsed.payload.to_vec().into(),
        })
    }

    /// An audio packet's level from the meeting: who is speaking, for the picture.
    pub fn heard(
        &mut self,
        now: Instant,
        from: AttendeeId,
        level: Option<u8>,
    ) -> Option<VideoAction> {
        let level = level.unwrap_or(127).min(127);
        match self.heard.iter_mut().find(|h| h.attendee == from) {
            // Smoothed over a few packets: one loud syllable is not a new speaker.
            Some(h) => {
                h.level = ((u16::from(h.level) * 3 + u16::from(level)) / 4) as u8;
                h.at = now;
            }
            None => self.heard.push(Heard {
                attendee: from,
                level,
                at: now,
            }),
        }
        self.choose_speaker(now)
    }

    /// Pick the speaker to show: the loudest recent voice with a camera, once it has led for the hold
    /// time by the margin (or at once when nothing is shown).
    fn choose_speaker(&mut self, now: Instant) -> Option<VideoAction> {
        let has_camera = |a: AttendeeId, cameras: &[Camera]| {
            cameras.iter().any(|c| {
                c.attendee == a && now.saturating_duration_since(c.last_packet) < CAMERA_STALE
            })
        };
        let loudest = self
            .heard
            .iter()
            .filter(|h| now.saturating_duration_since(h.at) < LEVEL_STALE)
            .filter(|h| has_camera(h.attendee, &self.cameras))
            .min_by_key(|h| h.level)?;
        let target = self.pending.or(self.shown);
        if target == Some(loudest.attendee) {
            self.candidate = None;
            return None;
        }
        if let Some(current) = target {
            let current_level = self
                .heard
                .iter()
                .find(|h| {
                    h.attendee == current && now.saturating_duration_since(h.at) < LEVEL_STALE
                })
                .map_or(127, |h| h.level);
            if loudest.level.saturating_add(SPEAKER_MARGIN_DB) > current_level
                && has_camera(current, &self.cameras)
            {
                self.candidate = None;
                return None;
            }
            match self.candidate {
                Some((a, since)) if a == loudest.attendee => {
                    if now.saturating_duration_since(since) < SPEAKER_HOLD {
                        return None;
                    }
                }
                _ => {
                    self.candidate = Some((loudest.attendee, now));
                    return None;
                }
            }
        }
        self.candidate = None;
        self.pending = Some(loudest.attendee);
        Some(VideoAction::RequestKeyframe(loudest.attendee))
    }

    /// A camera packet from the meeting: the RTP packet for the device, when it is the shown speaker's
    /// (or the keyframe that completes a switch).
    pub fn meeting_rtp(
        &mut self,
        now: Instant,
        from: AttendeeId,
        packet: &PortPacket,
    ) -> (Option<Vec<u8>>, Option<VideoAction>) {
        let camera = match self.cameras.iter().position(|c| c.attendee == from) {
            Some(i) => &mut self.cameras[i],
            None => {
                self.cameras.push(Camera {
                    attendee: from,
                    last_packet: now,
                    seq: SeqExtender::default(),
                });
                let last = self.cameras.len() - 1;
                &mut self.cameras[last]
            }
        };
        camera.last_packet = now;
        let in_seq = camera.seq.extend(packet.seq);
        let mut action = None;
        if self.shown.is_none() && self.pending.is_none() {
            // Nobody spoke yet: show the first camera there is.
            self.pending = Some(from);
            action = Some(VideoAction::RequestKeyframe(from));
        } else if self.shown.is_some_and(|s| {
            !self.cameras.iter().any(|c| {
                c.attendee == s && now.saturating_duration_since(c.last_packet) < CAMERA_STALE
            })
        }) && self.pending.is_none()
        {
            // The shown camera stopped: move to this one.
            self.pending = Some(from);
            action = Some(VideoAction::RequestKeyframe(from));
        }
        if self.pending == Some(from) && starts_keyframe(VideoCodec::H264, &packet.payload) {
            if self.shown.is_some() {
                self.stats.speaker_switches += 1;
                self.rewriter.switch_source();
            }
            self.shown = Some(from);
            self.pending = None;
        }
        if self.shown != Some(from) {
            return (None, action);
        }
        // Older than the shown speaker's first packet: its number went to the previous speaker.
        let Some(out) = self.rewriter.rewrite(in_seq, packet.timestamp, SWITCH_GAP) else {
            return (None, action);
        };
        let (seq, ts) = (out.seq as u16, out.ts);
        let header = rtp::header::Header {
            version: 2,
            marker: packet.marker,
            payload_type: self.pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: self.ssrc,
            ..Default::default()
        };
        let out = rtp::packet::Packet {
            header,
            payload: Bytes::copy_from_slice(&packet.payload),
        };
        match out.marshal() {
            Ok(bytes) => {
                self.stats.packets_to_device += 1;
                (Some(bytes.to_vec()), action)
            }
            Err(_) => (None, action),
        }
    }

    /// The device asked for a keyframe (RTCP PLI/FIR, or SIP INFO): ask whoever it is shown.
    pub fn device_wants_keyframe(&self) -> Option<VideoAction> {
        self.pending
            .or(self.shown)
            .map(VideoAction::RequestKeyframe)
    }

    /// Read the device's RTCP: true if it asks for a keyframe (PLI or FIR).
    pub fn device_rtcp(&self, packet: &[u8]) -> bool {
        let mut buf = Bytes::copy_from_slice(packet);
        let Ok(packets) = rtcp::packet::unmarshal(&mut buf) else {
            return false;
        };
        packets.iter().any(|p| {
            let any = p.as_any();
            any.downcast_ref::<PictureLossIndication>().is_some()
                || any.downcast_ref::<FullIntraRequest>().is_some()
        })
    }

    /// RTCP for the device asking it for a keyframe of its camera: PLI and FIR together (room systems
    /// honour one or the other). None before its SSRC is known (nothing to name).
    pub fn keyframe_request(&mut self) -> Option<Vec<u8>> {
        let media_ssrc = self.device_ssrc?;
        self.fir_sequence = self.fir_sequence.wrapping_add(1);
        let pli = PictureLossIndication {
            sender_ssrc: self.ssrc,
            media_ssrc,
        };
        let fir = FullIntraRequest {
            sender_ssrc: self.ssrc,
            media_ssrc,
            fir: vec![FirEntry {
                ssrc: media_ssrc,
                sequence_number: self.fir_sequence,
            }],
        };
        let packets: [Box<dyn rtcp::packet::Packet + Send + Sync>; 2] =
            [Box::new(pli), Box::new(fir)];
        let bytes = rtcp::packet::marshal(&packets).ok()?;
        self.stats.keyframe_requests_to_device += 1;
        Some(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT: u8 = 97;

    fn camera_packet(seq: u16, ts: u32, keyframe: bool) -> PortPacket {
        // An H.264 IDR slice (NAL type 5) or a non-IDR slice (type 1), single NAL unit packets.
        let nal = if keyframe { 0x65 } else { 0x41 };
        PortPacket {
            seq,
            timestamp: ts,
            marker: true,
            audio_level: None,
            payload: vec![nal, 0x88, 0x84, 0x00].into(),
        }
    }

    fn device_packet(pt: u8, seq: u16) -> Vec<u8> {
        let p = rtp::packet::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: pt,
                sequence_number: seq,
                timestamp: 9000,
                ssrc: 0xdead_beef,
                ..Default::default()
            },
            payload: Bytes::from_static(&[0x65, 1, 2, 3]),
        };
        p.marshal().unwrap().to_vec()
    }

    fn parse(bytes: &[u8]) -> rtp::packet::Packet {
        let mut b = bytes;
        rtp::packet::Packet::unmarshal(&mut b).unwrap()
    }

    #[test]
    fn the_devices_video_becomes_camera_packets() {
        let mut relay = VideoRelay::new(PT, 1);
        let p = relay.device_rtp(&device_packet(PT, 7)).unwrap();
        assert_eq!((p.seq, p.timestamp), (7, 9000));
        assert_eq!(&p.payload[..], &[0x65, 1, 2, 3]);
        // Other payload types and junk are dropped and counted.
        assert!(relay.device_rtp(&device_packet(96, 8)).is_none());
        assert!(relay.device_rtp(&[0x80, 1]).is_none());
        assert!(relay.device_rtp(&[]).is_none());
        assert_eq!(relay.stats().device_dropped, 3);
        // Its SSRC is now known: a keyframe request for it is PLI + FIR naming it.
        let rtcp = relay.keyframe_request().unwrap();
        let mut buf = Bytes::from(rtcp);
        let packets = rtcp::packet::unmarshal(&mut buf).unwrap();
        let pli = packets[0]
            .as_any()
            .downcast_ref::<PictureLossIndication>()
            .unwrap();
        assert_eq!(pli.media_ssrc, 0xdead_beef);
        let fir = packets[1]
            .as_any()
            .downcast_ref::<FullIntraRequest>()
            .unwrap();
        assert_eq!(fir.fir[0].ssrc, 0xdead_beef);
        // And our own RTCP, read back, is a keyframe request.
        assert!(relay.device_rtcp(&relay.clone_request()));
        assert!(!relay.device_rtcp(&[1, 2, 3]));
    }

    impl VideoRelay {
        fn clone_request(&self) -> Vec<u8> {
            let mut copy = VideoRelay::new(self.pt, self.ssrc);
            copy.device_ssrc = self.device_ssrc;
            copy.keyframe_request().unwrap()
        }
    }

    #[test]
    fn the_first_camera_is_shown_from_its_keyframe_in_one_continuous_stream() {
        let t0 = Instant::now();
        let mut relay = VideoRelay::new(PT, 0x1234);
        let a = AttendeeId::random();
        let (out, action) = relay.meeting_rtp(t0, a, &camera_packet(100, 1000, false));
        assert!(out.is_none(), "nothing before a keyframe");
        assert_eq!(action, Some(VideoAction::RequestKeyframe(a)));
        let (out, _) = relay.meeting_rtp(t0, a, &camera_packet(101, 4000, true));
        let first = parse(&out.unwrap());
        assert_eq!(first.header.payload_type, PT);
        assert_eq!(first.header.ssrc, 0x1234);
        let (out, _) = relay.meeting_rtp(t0, a, &camera_packet(102, 7000, false));
        let second = parse(&out.unwrap());
        assert_eq!(
            second.header.sequence_number,
            first.header.sequence_number.wrapping_add(1)
        );
        assert_eq!(
            second.header.timestamp,
            first.header.timestamp.wrapping_add(3000)
        );
        assert_eq!(relay.shown(), Some(a));
    }

    #[test]
    fn the_picture_follows_a_speaker_who_keeps_talking_and_switches_on_a_keyframe() {
        let t0 = Instant::now();
        let mut relay = VideoRelay::new(PT, 9);
        let (a, b) = (AttendeeId::random(), AttendeeId::random());
        let mut seq_a = 0u16;
        let mut seq_b = 500u16;
        let mut shown_seq = Vec::new();
        let mut requests = Vec::new();
        let mut now = t0;
        // A speaks first and is shown; then B talks loudly for three seconds.
        for i in 0..150u32 {
            now = t0 + Duration::from_millis(u64::from(i) * 33);
            let a_loud = i < 30;
            if let Some(r) = relay.heard(now, a, Some(if a_loud { 20 } else { 90 })) {
                requests.push(r);
            }
            if let Some(r) = relay.heard(now, b, Some(if a_loud { 90 } else { 15 })) {
                requests.push(r);
            }
            seq_a = seq_a.wrapping_add(1);
            seq_b = seq_b.wrapping_add(1);
            // Keyframes only every 60 packets, so switches must wait for them.
            let (out, r) = relay.meeting_rtp(now, a, &camera_packet(seq_a, i * 3000, i % 60 == 1));
            requests.extend(r);
            if let Some(out) = out {
                shown_seq.push((a, parse(&out).header.sequence_number));
            }
            let (out, r) = relay.meeting_rtp(now, b, &camera_packet(seq_b, i * 3000, i % 60 == 50));
            requests.extend(r);
            if let Some(out) = out {
                shown_seq.push((b, parse(&out).header.sequence_number));
            }
        }
        assert_eq!(relay.shown(), Some(b), "requests: {requests:?}");
        assert_eq!(relay.stats().speaker_switches, 1);
        assert!(requests.contains(&VideoAction::RequestKeyframe(b)));
        // Once B is shown, A is not forwarded again; the device's sequence numbers never jump.
        let first_b = shown_seq.iter().position(|(who, _)| *who == b).unwrap();
        assert!(shown_seq[first_b..].iter().all(|(who, _)| *who == b));
        assert!(
            shown_seq
                .windows(2)
                .all(|w| w[1].1 == w[0].1.wrapping_add(1))
        );
        // A short burst from A does not move the picture back (hold and margin).
        let (_, _) = (relay.heard(now, a, Some(10)), relay.heard(now, a, Some(10)));
        assert_eq!(relay.pending, None);
        assert_eq!(relay.shown(), Some(b));
        assert_eq!(
            relay.device_wants_keyframe(),
            Some(VideoAction::RequestKeyframe(b))
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut relay = VideoRelay::new(PT, 1);
        let a = AttendeeId::random();
        let now = Instant::now();
        for _ in 0..5000 {
            let len = fastrand::usize(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
            let _ = relay.device_rtp(&bytes);
            let _ = relay.device_rtcp(&bytes);
            let packet = PortPacket {
                seq: fastrand::u16(..),
                timestamp: fastrand::u32(..),
                marker: fastrand::bool(),
                audio_level: None,
                payload: bytes.into(),
            };
            let _ = relay.meeting_rtp(now, a, &packet);
        }
    }
}
