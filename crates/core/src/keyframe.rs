//! Does this RTP payload start a keyframe?
//!
//! The SFU needs this on every video packet to start a new subscription (or a layer switch) cleanly,
//! and the gateway to switch a room system's picture between speakers; both planes share it here.
//! str0m's RTP mode hands us payloads without depacketizing them, and its depacketizers are built to
//! assemble frames, not to answer this one question cheaply; so the two checks are written here from the
//! payload formats (RFC 7741 for VP8, RFC 6184 for H.264). They read a few bytes and never allocate.

/// Video codecs the SFU forwards (and the gateway passes through: H.264).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

/// True when `payload` is the first packet of a keyframe (or carries a parameter set that precedes one).
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::H264 => h264_starts_keyframe(payload),
    }
}

/// RFC 7741 §4.2 payload descriptor, then the VP8 frame tag (RFC 6386 §9.1: P bit 0 = key frame).
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x0f;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    matches!(p.get(i), Some(tag) if tag & 0x01 == 0)
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// RFC 6184: single NAL unit, STAP-A aggregate or the first FU-A fragment of an IDR/SPS.
fn h264_starts_keyframe(p: &[u8]) -> bool {
    let Some(&header) = p.first() else {
        return false;
    };
    match header & 0x1f {
        NAL_IDR | NAL_SPS => true,
        NAL_STAP_A => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let nal = p[i + 2] & 0x1f;
                if nal == NAL_IDR || nal == NAL_SPS {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        NAL_FU_A => match p.get(1) {
            Some(fu) => fu & 0x80 != 0 && matches!(fu & 0x1f, NAL_IDR | NAL_SPS),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_and_delta_frames() {
        // S=1, PID=0, no extension; frame tag with P=0.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x50, 0x01, 0x00]));
        // Same but P=1 (inter frame).
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x10, 0x51, 0x01, 0x00]));
        // Not the start of a partition.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x50]));
        // Extended: I bit with 15-bit picture id, L and T/K bytes, then a key frame tag.
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x10]
        ));
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x11]
        ));
        // Truncated descriptors are not keyframes and do not panic.
        for n in 0..6 {
            let _ = starts_keyframe(VideoCodec::Vp8, &[0x90, 0xe0, 0x81, 0x23, 0x05, 0x20][..n]);
        }
    }

    #[test]
    fn h264_idr_sps_stap_and_fu() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a]));
        // STAP-A with SPS inside.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]
        ));
        // STAP-A with only a non-IDR slice.
        assert!(!starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x41, 0x42]
        ));
        // FU-A start of IDR vs middle fragment.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
        // Garbage sizes inside STAP-A do not panic.
        assert!(!starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0xff, 0xff, 0x41]
        ));
        assert!(!starts_keyframe(VideoCodec::H264, &[]));
    }
}
