//! Keyframe detection reads RTP payloads straight off the wire.
#![no_main]

use convene_media::forward::{VideoCodec, starts_keyframe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let _ = starts_keyframe(VideoCodec::Vp8, payload);
    let _ = starts_keyframe(VideoCodec::H264, payload);
});
