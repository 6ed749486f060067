//! A publisher's RTP after the fast path decrypted it: any bytes inside valid SRTP reach the header,
//! padding and header-extension readers (both RFC 8285 forms, every extension the SFU reads).
#![no_main]

use convene_media::fastpath::ingress::{IngressExtIds, payload_range, read_extensions, read_header};
use libfuzzer_sys::fuzz_target;
use str0m::rtp::ExtensionValues;

fuzz_target!(|packet: &[u8]| {
    let Ok(header) = read_header(packet) else {
        return;
    };
    if let Ok(payload) = payload_range(packet, &header) {
        let _ = &packet[payload];
    }
    // The ids a browser negotiates, in both extension forms' ranges.
    let ids = IngressExtIds {
        mid: Some(1),
        rid: Some(2),
        repaired_rid: Some(3),
        transport_cc: Some(4),
        audio_level: Some(5),
        video_orientation: Some(13),
        video_content_type: Some(15),
    };
    let mut ev = ExtensionValues::default();
    read_extensions(packet, header.header_len, &ids, &mut ev);
    read_extensions(packet, header.header_len, &ids.without_identifiers(), &mut ev);
});
