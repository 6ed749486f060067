//! What a synthetic packet carries: a codec-valid prefix, filler, and a [`Stamp`] trailer.
//!
//! The SFU only looks at the first bytes of a payload (the Opus TOC, the VP8 payload descriptor and frame tag
//! that `convene_core::keyframe` reads), so the measurement data rides at the *end* of the payload,
//! where it can be found without knowing the codec. The trailer is fixed-size and written in place, so
//! building a packet costs one buffer and no parsing.

/// Marks a trailer as ours; a packet without it (someone else's traffic) is ignored by the receiver.
const MAGIC: [u8; 2] = *b"CV";
const VERSION: u8 = 1;

/// Bytes taken by the trailer at the end of every payload.
pub const STAMP_LEN: usize = 24;

/// What kind of publication a packet belongs to (one byte in the trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Audio = 0,
    Camera = 1,
    Screen = 2,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Audio),
            1 => Some(Self::Camera),
            2 => Some(Self::Screen),
            _ => None,
        }
    }
}

/// The measurement trailer of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub kind: Kind,
    /// Simulcast layer index (0 = lowest); 0 for audio and screen.
    pub layer: u8,
    /// Set on every packet of a keyframe, so receivers can tell keyframe waits from plain gaps.
    pub keyframe: bool,
    /// Identifies the publication (unique in the run), so receivers count loss per stream.
    pub stream: u32,
    /// Per (stream, layer) packet counter, independent of the RTP sequence numbers the SFU rewrites.
    pub seq: u32,
    /// Sender's clock when the packet was handed to its WebRTC stack, in microseconds since the run's epoch.
    pub sent_us: u64,
}

impl Stamp {
    /// Writes the trailer into the last [`STAMP_LEN`] bytes of `payload`; false if it is too short.
    pub fn write(&self, payload: &mut [u8]) -> bool {
        let Some(start) = payload.len().checked_sub(STAMP_LEN) else {
            return false;
        };
        let t = &mut payload[start..];
        t[0..2].copy_from_slice(&MAGIC);
        t[2] = VERSION;
        t[3] = self.kind as u8;
        t[4] = self.layer;
        t[5] = u8::from(self.keyframe);
        t[6..8].fill(0);
        t[8..12].copy_from_slice(&self.stream.to_be_bytes());
        t[12..16].copy_from_slice(&self.seq.to_be_bytes());
        t[16..24].copy_from_slice(&self.sent_us.to_be_bytes());
        true
    }

    /// Reads the trailer of a received payload; None for payloads that are not ours.
    pub fn read(payload: &[u8]) -> Option<Self> {
        let start = payload.len().checked_sub(STAMP_LEN)?;
        let t = &payload[start..];
        if t[0..2] != MAGIC || t[2] != VERSION {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&t[16..24]);
        Some(Self {
            kind: Kind::from_u8(t[3])?,
            layer: t[4],
            keyframe: t[5] != 0,
            stream: u32_at(8),
            seq: u32_at(12),
            sent_us: u64::from_be_bytes(sent),
        })
    }
}

/// Opus TOC byte: config 15 (hybrid fullband, 20 ms), mono, one frame. Real decoders would choke on the
/// filler, but the SFU forwards Opus opaquely and only the header extension carries the audio level.
pub const OPUS_TOC: u8 = 0x78;

/// Builds the payload of one Opus packet of `len` bytes (at least the TOC and the trailer).
pub fn opus_payload(len: usize, stamp: &Stamp) -> Vec<u8> {
    let mut p = vec![0u8; len.max(1 + STAMP_LEN)];
    p[0] = OPUS_TOC;
    stamp.write(&mut p);
    p
}

/// Builds the payload of one VP8 packet (RFC 7741): `first` marks the packet that starts the frame.
///
/// The first packet of a frame carries the payload descriptor with S=1, PID=0, then the 3-byte frame tag
/// (RFC 6386 §9.1) whose P bit is 0 for a keyframe; keyframes also carry the start code and a 640x360 size
/// so the frame header is valid. Later packets of a frame carry a descriptor with S=0.
pub fn vp8_payload(len: usize, first: bool, keyframe: bool, stamp: &Stamp) -> Vec<u8> {
    let mut p = vec![0u8; len.max(11 + STAMP_LEN)];
    if first {
        p[0] = 0x10; // X=0, N=0, S=1, PID=0
        // Frame tag: bit 0 is P (0 = key frame), bits 1-3 version 0, bit 4 show_frame.
        p[1] = if keyframe { 0x10 } else { 0x11 };
        if keyframe {
            // Start code 9d 01 2a, then width 640 and height 360 (little endian, no scaling).
            p[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            p[7..9].copy_from_slice(&640u16.to_le_bytes());
            p[9..11].copy_from_slice(&360u16.to_le_bytes());
        }
    } else {
        p[0] = 0x00;
    }
    stamp.write(&mut p);
    p
}

/// Largest RTP payload we write: leaves room for the RTP header, extensions and the SRTP tag in a
/// 1200-byte datagram, like browsers do.
pub const MAX_VIDEO_PAYLOAD: usize = 1100;

/// Sizes of the packets a frame of `frame_bytes` is split into (each at most [`MAX_VIDEO_PAYLOAD`],
/// as even as possible, as browsers' packetizers do).
pub fn split_frame(frame_bytes: usize) -> impl Iterator<Item = usize> {
    let frame_bytes = frame_bytes.max(1);
    let n = frame_bytes.div_ceil(MAX_VIDEO_PAYLOAD);
    let base = frame_bytes / n;
    let extra = frame_bytes % n;
    (0..n).map(move |i| base + usize::from(i < extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            kind: Kind::Camera,
            layer: 2,
            keyframe: true,
            stream: 0xdead_beef,
            seq: 77,
            sent_us: 1_234_567_890_123,
        }
    }

    #[test]
    fn stamp_round_trips_at_the_end_of_any_payload() {
        let s = stamp();
        for len in [STAMP_LEN, STAMP_LEN + 1, 1100] {
            let mut p = vec![0xab; len];
            assert!(s.write(&mut p));
            assert_eq!(Stamp::read(&p), Some(s));
        }
        let mut short = [0u8; STAMP_LEN - 1];
        assert!(!s.write(&mut short));
        assert_eq!(Stamp::read(&short), None);
    }

    #[test]
    fn foreign_payloads_are_not_stamps() {
        assert_eq!(Stamp::read(&[0u8; 100]), None);
        let mut p = vec![0u8; 40];
        stamp().write(&mut p);
        let at = p.len() - STAMP_LEN + 3;
        p[at] = 9; // unknown kind
        assert_eq!(Stamp::read(&p), None);
    }

    #[test]
    fn vp8_prefix_is_what_the_sfu_calls_a_keyframe() {
        use convene_media::forward::{VideoCodec, starts_keyframe};
        let s = stamp();
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &vp8_payload(900, true, true, &s)
        ));
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &vp8_payload(900, true, false, &s)
        ));
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &vp8_payload(900, false, true, &s)
        ));
        assert_eq!(
            Stamp::read(&vp8_payload(900, true, true, &s)),
            Some(s),
            "the trailer survives the prefix"
        );
        let opus = opus_payload(3, &s);
        assert_eq!(opus[0], OPUS_TOC);
        assert_eq!(Stamp::read(&opus), Some(s));
    }

    #[test]
    fn frames_split_into_even_packets_under_the_limit() {
        let sizes: Vec<usize> = split_frame(2500).collect();
        assert_eq!(sizes, vec![834, 833, 833]);
        assert_eq!(split_frame(1100).count(), 1);
        assert_eq!(split_frame(0).collect::<Vec<_>>(), vec![1]);
        for total in [1, 999, 1101, 54_321] {
            let v: Vec<usize> = split_frame(total).collect();
            assert_eq!(v.iter().sum::<usize>(), total);
            assert!(v.iter().all(|&n| n <= MAX_VIDEO_PAYLOAD));
        }
    }
}
