//! Writing a forwarded RTP packet ourselves: the fixed header, the header extensions a subscriber's
//! connection negotiated (one-byte form, RFC 8285), the payload; [`super::srtp`] then protects it in
//! place.
//!
//! Which extensions: the transport-wide sequence number (the fast path's congestion control needs
//! feedback on every packet it sends), the audio level (RFC 6464: browsers show who speaks from it),
//! the video orientation (phones signal rotation instead of rotating frames) and the content type
//! (a screen share is played out as one). Each only where the subscriber's SDP mapped it to an id.

use str0m::rtp::{Extension, ExtensionMap};

/// RTP fixed header.
pub const RTP_HEADER_LEN: usize = 12;
/// The one-byte header extension profile (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: [u8; 2] = [0xBE, 0xDE];

/// The ids a subscriber's connection negotiated for the extensions we write (`None`: not offered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtIds {
    pub transport_cc: Option<u8>,
    pub audio_level: Option<u8>,
    pub video_orientation: Option<u8>,
    pub video_content_type: Option<u8>,
}

impl ExtIds {
    /// From the extension map str0m negotiated for the connection. Ids beyond the one-byte form's
    /// 1..=14 are left out (a browser uses the one-byte range first).
    pub fn from_map(map: &ExtensionMap) -> Self {
        let id = |e: Extension| map.id_of(e).filter(|id| (1..=14).contains(id));
        Self {
            transport_cc: id(Extension::TransportSequenceNumber),
            audio_level: id(Extension::AudioLevel),
            video_orientation: id(Extension::VideoOrientation),
            video_content_type: id(Extension::VideoContentType),
        }
    }
}

/// One packet to write.
#[derive(Debug, Clone, Copy)]
pub struct RtpOut<'a> {
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub transport_seq: Option<u16>,
    /// RFC 6464: the level in -dBov as str0m reads it (0 loudest, -127 silence) and the voice flag.
    pub audio_level: Option<(i8, bool)>,
    /// The 3GPP coordination of video orientation byte (its low bits: rotation, flip, camera).
    pub video_orientation: Option<u8>,
    pub video_content_type: Option<u8>,
    pub payload: &'a [u8],
    /// Bytes of RTP padding after the payload (RFC 3550 §5.1: the last one counts them); 0: none.
    pub padding: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    #[error("packet of {need} bytes does not fit a {have}-byte buffer")]
    TooLong { need: usize, have: usize },
}

/// Writes `p` as plain RTP at the start of `buf` (which must also leave room for the SRTP tag the
/// caller adds); returns its length.
pub fn write_rtp(buf: &mut [u8], p: &RtpOut, ids: &ExtIds) -> Result<usize, EgressError> {
    // At most four one-byte elements of at most three bytes each: 16 bytes.
    let mut ext = [0u8; 16];
    let mut ext_len = 0;
    let mut element = |id: Option<u8>, data: &[u8]| {
        if let Some(id) = id {
            ext[ext_len] = id << 4 | (data.len() as u8 - 1);
            ext[ext_len + 1..ext_len + 1 + data.len()].copy_from_slice(data);
            ext_len += 1 + data.len();
        }
    };
    if let Some(seq) = p.transport_seq {
        element(ids.transport_cc, &seq.to_be_bytes());
    }
    if let Some((level, voice)) = p.audio_level {
        let level = level.unsigned_abs().min(127);
        element(ids.audio_level, &[u8::from(voice) << 7 | level]);
    }
    if let Some(orientation) = p.video_orientation {
        element(ids.video_orientation, &[orientation]);
    }
    if let Some(content_type) = p.video_content_type {
        element(ids.video_content_type, &[content_type]);
    }
    // The extension block is padded to whole 32-bit words.
    let ext_words = ext_len.div_ceil(4);
    let ext_block = if ext_len > 0 { 4 + 4 * ext_words } else { 0 };
    let padding = usize::from(p.padding);
    let len = RTP_HEADER_LEN + ext_block + p.payload.len() + padding;
    if len > buf.len() {
        return Err(EgressError::TooLong {
            need: len,
            have: buf.len(),
        });
    }
    buf[0] = 0x80 | if ext_len > 0 { 0x10 } else { 0 } | if padding > 0 { 0x20 } else { 0 };
    buf[1] = u8::from(p.marker) << 7 | (p.pt & 0x7f);
    buf[2..4].copy_from_slice(&p.seq.to_be_bytes());
    buf[4..8].copy_from_slice(&p.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&p.ssrc.to_be_bytes());
    let mut at = RTP_HEADER_LEN;
    if ext_len > 0 {
        buf[at..at + 2].copy_from_slice(&ONE_BYTE_PROFILE);
        buf[at + 2..at + 4].copy_from_slice(&(ext_words as u16).to_be_bytes());
        at += 4;
        buf[at..at + ext_len].copy_from_slice(&ext[..ext_len]);
        buf[at + ext_len..at + 4 * ext_words].fill(0);
        at += 4 * ext_words;
    }
    buf[at..at + p.payload.len()].copy_from_slice(p.payload);
    at += p.payload.len();
    if padding > 0 {
        buf[at..len - 1].fill(0);
        buf[len - 1] = p.padding;
    }
    Ok(len)
}

/// Bytes of an RTCP sender report without report blocks.
pub const SENDER_REPORT_LEN: usize = 28;

/// What a sender report says about one stream (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    /// Wallclock as a 64-bit NTP timestamp (seconds since 1900 in the high half).
    pub ntp: u64,
    /// The stream's RTP time at that wallclock.
    pub rtp_time: u32,
    pub packets: u32,
    pub octets: u32,
}

/// Writes a sender report without report blocks at the start of `buf`; returns its length.
pub fn write_sender_report(buf: &mut [u8], info: &SenderInfo) -> Result<usize, EgressError> {
    if buf.len() < SENDER_REPORT_LEN {
        return Err(EgressError::TooLong {
            need: SENDER_REPORT_LEN,
            have: buf.len(),
        });
    }
    buf[0] = 0x80;
    buf[1] = 200;
    // Length in 32-bit words minus one.
    buf[2..4].copy_from_slice(&((SENDER_REPORT_LEN / 4 - 1) as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&info.ssrc.to_be_bytes());
    buf[8..16].copy_from_slice(&info.ntp.to_be_bytes());
    buf[16..20].copy_from_slice(&info.rtp_time.to_be_bytes());
    buf[20..24].copy_from_slice(&info.packets.to_be_bytes());
    buf[24..28].copy_from_slice(&info.octets.to_be_bytes());
    Ok(SENDER_REPORT_LEN)
}

/// A wallclock time as a 64-bit NTP timestamp.
pub fn ntp_of(time: std::time::SystemTime) -> u64 {
    // Seconds from 1900 (NTP's era) to 1970 (Unix's).
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let since_unix = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    seconds << 32 | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> ExtIds {
        ExtIds {
            transport_cc: Some(3),
            audio_level: Some(1),
            video_orientation: Some(13),
            video_content_type: None,
        }
    }

    fn packet(payload: &[u8]) -> RtpOut<'_> {
        RtpOut {
            ssrc: 0x1122_3344,
            pt: 111,
            seq: 0xfffe,
            timestamp: 0xdead_beef,
            marker: true,
            transport_seq: Some(0x0102),
            audio_level: Some((-42, true)),
            video_orientation: None,
            video_content_type: Some(1),
            payload,
            padding: 0,
        }
    }

    #[test]
    fn writes_header_extensions_and_payload() {
        let mut buf = [0u8; 64];
        let n = write_rtp(&mut buf, &packet(&[9, 8, 7]), &ids()).unwrap();
        // 12 header + 4 extension header + 8 (two elements of 3 and 2 bytes, padded) + 3 payload.
        assert_eq!(n, 27);
        assert_eq!(
            &buf[..12],
            &[
                0x90,
                0x80 | 111,
                0xff,
                0xfe,
                0xde,
                0xad,
                0xbe,
                0xef,
                0x11,
                0x22,
                0x33,
                0x44
            ]
        );
        assert_eq!(&buf[12..16], &[0xBE, 0xDE, 0, 2]);
        // Transport-wide seq (id 3, 2 bytes), audio level (id 1, 1 byte: voice, 42), no content type
        // (not negotiated), padding.
        assert_eq!(&buf[16..24], &[0x31, 0x01, 0x02, 0x10, 0x80 | 42, 0, 0, 0]);
        assert_eq!(&buf[24..27], &[9, 8, 7]);
    }

    #[test]
    fn no_extension_means_no_extension_block() {
        let mut buf = [0u8; 32];
        let mut p = packet(&[1]);
        p.transport_seq = None;
        p.audio_level = None;
        p.video_content_type = None;
        let n = write_rtp(&mut buf, &p, &ids()).unwrap();
        assert_eq!(n, 13);
        assert_eq!(buf[0], 0x80);
    }

    #[test]
    fn padding_sets_the_p_bit_and_ends_with_its_count() {
        let mut buf = [0xffu8; 64];
        let mut p = packet(&[]);
        p.transport_seq = None;
        p.audio_level = None;
        p.video_content_type = None;
        p.padding = 20;
        let n = write_rtp(&mut buf, &p, &ids()).unwrap();
        assert_eq!(n, 32);
        assert_eq!(buf[0], 0xa0);
        assert!(buf[12..31].iter().all(|&b| b == 0));
        assert_eq!(buf[31], 20);
    }

    #[test]
    fn a_buffer_too_small_is_an_error() {
        let mut buf = [0u8; 20];
        assert_eq!(
            write_rtp(&mut buf, &packet(&[0; 10]), &ids()),
            Err(EgressError::TooLong { need: 34, have: 20 })
        );
    }

    #[test]
    fn a_sender_report_is_28_bytes_in_rfc_3550_order() {
        let mut buf = [0u8; 32];
        let info = SenderInfo {
            ssrc: 0x0102_0304,
            ntp: 0x1112_1314_1516_1718,
            rtp_time: 0x2122_2324,
            packets: 7,
            octets: 0x3132_3334,
        };
        assert_eq!(write_sender_report(&mut buf, &info), Ok(28));
        assert_eq!(
            &buf[..28],
            &[
                0x80, 200, 0, 6, 1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x21,
                0x22, 0x23, 0x24, 0, 0, 0, 7, 0x31, 0x32, 0x33, 0x34
            ]
        );
    }

    #[test]
    fn ntp_time_counts_from_1900_with_a_binary_fraction() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        assert_eq!(ntp_of(t), (2_208_988_801u64 << 32) | (1u64 << 31));
    }

    #[test]
    fn ids_come_from_the_negotiated_map_within_the_one_byte_range() {
        let mut map = ExtensionMap::empty();
        map.set(5, Extension::TransportSequenceNumber);
        map.set(1, Extension::AudioLevel);
        let ids = ExtIds::from_map(&map);
        assert_eq!(ids.transport_cc, Some(5));
        assert_eq!(ids.audio_level, Some(1));
        assert_eq!(ids.video_orientation, None);
    }
}
