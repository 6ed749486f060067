//! Offer/answer against SDP offers that real room systems (and one Tandberg soft client) sent, found
//! in public test data and kept byte for byte in `tests/offers/` (addresses moved to documentation
//! ranges; `tests/offers/SOURCES.md` says where each comes from). Each test states the whole answer
//! we must send, then what the call takes from it.

use std::net::IpAddr;

use convene_gateway::sdp::{self, Codec, Direction, Session};

fn session() -> Session {
    Session {
        id: 42,
        version: 1,
        ip: "127.0.0.1".parse::<IpAddr>().unwrap(),
        port: 20000,
        srtp: None,
    }
}

fn offer_text(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/offers/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap()
}

fn offer(name: &str) -> sdp::Offer {
    sdp::parse(&offer_text(name)).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Our session lines, the same for every answer here.
const HEAD: &str =
    "v=0\r\no=convene 42 1 IN IP4 127.0.0.1\r\ns=Convene\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";

const DEVICE_OFFERS: [&str; 4] = [
    "tandberg-c20-tc3.1.3.sdp",
    "cisco-e20-te4.1.1.sdp",
    "polycom-hdx8000-2.5.0.8.sdp",
    "tandberg-movi-4.3.12.sdp",
];

/// Tandberg C20, TC3.1.3: AAC-LD and G.722.1 first, G.722 taken (no telephone-event offered: its
/// DTMF comes as SIP INFO); H.264 mode 1 (PT 98, level 2.2 `428016`) taken on the camera line;
/// BFCP over UDP, the slides line and H.224 declined.
#[test]
fn tandberg_c20_tc3_gets_g722_and_h264_mode_1_with_bfcp_slides_and_h224_declined() {
    let offer = offer("tandberg-c20-tc3.1.3.sdp");
    assert_eq!(offer.media.len(), 5);
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    let expected = [
        HEAD,
        "m=audio 20000 RTP/AVP 9\r\n",
        "a=rtpmap:9 G722/8000\r\n",
        "a=ptime:20\r\n",
        "a=sendrecv\r\n",
        "m=video 20002 RTP/AVP 98\r\n",
        "a=rtpmap:98 H264/90000\r\n",
        "a=fmtp:98 profile-level-id=428016;max-mbps=245000;max-fs=9000;max-smbps=245000;packetization-mode=1\r\n",
        "a=rtcp-fb:98 nack pli\r\n",
        "a=rtcp-fb:98 ccm fir\r\n",
        "a=content:main\r\n",
        "a=sendrecv\r\n",
        "m=application 0 UDP/BFCP *\r\n",
        "m=video 0 RTP/AVP 97 98 99 34 31\r\n",
        "m=application 0 RTP/AVP 105\r\n",
    ]
    .concat();
    assert_eq!(answer, expected);

    assert_eq!((n.codec, n.format.pt), (Codec::G722, 9));
    assert_eq!(n.format.fmtp, None);
    assert_eq!(n.telephone_event, None);
    assert_eq!(n.remote, Some((ip("192.0.2.24"), 2406)));
    assert_eq!(n.direction, Direction::SendRecv);
    let video = n.video.expect("the C20's camera line is taken");
    assert_eq!(video.index, 1);
    assert_eq!(video.format.pt, 98);
    assert_eq!(video.profile_level_id().as_deref(), Some("428016"));
    assert_eq!(video.remote, Some((ip("192.0.2.24"), 2408)));
    assert_eq!(video.direction, Direction::SendRecv);
}

/// Cisco E20, TE4.1.1: SDES keys on RTP/AVP lines (best-effort SRTP), which a plain-RTP answer
/// ignores; G.722 and telephone-event 101 taken; H.264 mode 1 (PT 98, level 1.3 `42800d`, with
/// `max-br`/`max-fps` after the packetization mode) on the camera line; the rest declined.
#[test]
fn cisco_e20_te4_best_effort_srtp_gets_plain_rtp_g722_and_h264_mode_1() {
    let offer = offer("cisco-e20-te4.1.1.sdp");
    assert_eq!(offer.media.len(), 5);
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    let expected = [
        HEAD,
        "m=audio 20000 RTP/AVP 9 101\r\n",
        "a=rtpmap:9 G722/8000\r\n",
        "a=rtpmap:101 telephone-event/8000\r\n",
        "a=fmtp:101 0-15\r\n",
        "a=ptime:20\r\n",
        "a=sendrecv\r\n",
        "m=video 20002 RTP/AVP 98\r\n",
        "a=rtpmap:98 H264/90000\r\n",
        "a=fmtp:98 profile-level-id=42800d;max-br=906;max-mbps=40500;max-fs=1344;max-smbps=40500;packetization-mode=1;max-fps=3000\r\n",
        "a=rtcp-fb:98 nack pli\r\n",
        "a=rtcp-fb:98 ccm fir\r\n",
        "a=content:main\r\n",
        "a=sendrecv\r\n",
        "m=application 0 UDP/BFCP *\r\n",
        "m=video 0 RTP/AVP 97 98 99 34 31\r\n",
        "m=application 0 RTP/AVP 104\r\n",
    ]
    .concat();
    assert_eq!(answer, expected);
    assert!(
        !answer.contains("a=crypto"),
        "no keys in a plain-RTP answer"
    );

    assert_eq!((n.codec, n.format.pt), (Codec::G722, 9));
    assert_eq!(n.telephone_event, Some(101));
    assert_eq!(n.remote, Some((ip("192.0.2.2"), 2326)));
    let video = n.video.expect("the E20's camera line is taken");
    assert_eq!((video.index, video.format.pt), (1, 98));
    assert_eq!(video.profile_level_id().as_deref(), Some("42800d"));
    assert_eq!(video.remote, Some((ip("192.0.2.2"), 2328)));
}

/// Polycom HDX 8000, 2.5.0.8, over IPv6: G.722.1C/G.722.1 first, G.722 taken, no telephone-event;
/// its only H.264 has no packetization-mode (mode 0), so the call is audio only and the video line
/// is declined with the BFCP (TCP) line.
#[test]
fn polycom_hdx8000_ipv6_gets_g722_and_no_video_for_h264_mode_0() {
    let offer = offer("polycom-hdx8000-2.5.0.8.sdp");
    assert_eq!(offer.connection, Some(ip("2001:db8:7:495::80")));
    assert_eq!(offer.media.len(), 3);
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    let expected = [
        HEAD,
        "m=audio 20000 RTP/AVP 9\r\n",
        "a=rtpmap:9 G722/8000\r\n",
        "a=ptime:20\r\n",
        "a=sendrecv\r\n",
        "m=video 0 RTP/AVP 109 96 34 31\r\n",
        "m=application 0 TCP/BFCP *\r\n",
    ]
    .concat();
    assert_eq!(answer, expected);

    assert_eq!((n.codec, n.format.pt), (Codec::G722, 9));
    assert_eq!(n.telephone_event, None);
    assert_eq!(n.remote, Some((ip("2001:db8:7:495::80"), 3230)));
    assert_eq!(n.video, None);
    // The H.264 format was read (with its "; "-separated fmtp), it just is not mode 1.
    let h264 = &offer.media[1].formats[0];
    assert_eq!((h264.pt, h264.name.as_str()), (109, "H264"));
    assert_eq!(
        h264.fmtp.as_deref(),
        Some("profile-level-id=42800d; max-mbps=108000; max-fs=3600; max-br=1600; sar=13")
    );
}

/// Jabber Video (Movi) 4.3.12 behind a VCS: no G.722 offered, so PCMU (our preference over the
/// PCMA it lists first) with telephone-event 100; audio sent to the session `c=` (the VCS's public
/// address), not the `o=` address; H.264 mode 1 (PT 123, level 3.1) taken on the camera line, chosen
/// by `a=content:main` and order, not by port (its slides line has the lower port, 52128).
#[test]
fn movi_behind_vcs_gets_pcmu_and_h264_mode_1_at_the_session_address() {
    let offer = offer("tandberg-movi-4.3.12.sdp");
    assert_eq!(offer.media.len(), 5);
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    let expected = [
        HEAD,
        "m=audio 20000 RTP/AVP 0 100\r\n",
        "a=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:100 telephone-event/8000\r\n",
        "a=fmtp:100 0-15\r\n",
        "a=ptime:20\r\n",
        "a=sendrecv\r\n",
        "m=video 20002 RTP/AVP 123\r\n",
        "a=rtpmap:123 H264/90000\r\n",
        "a=fmtp:123 profile-level-id=42801f;max-mbps=108000;max-fs=3600;max-smbps=323500;packetization-mode=1\r\n",
        "a=rtcp-fb:123 nack pli\r\n",
        "a=rtcp-fb:123 ccm fir\r\n",
        "a=content:main\r\n",
        "a=sendrecv\r\n",
        "m=video 0 RTP/AVP 123 122 97 34\r\n",
        "m=application 0 UDP/BFCP *\r\n",
        "m=application 0 RTP/AVP 105\r\n",
    ]
    .concat();
    assert_eq!(answer, expected);

    assert_eq!((n.codec, n.format.pt), (Codec::Pcmu, 0));
    assert_eq!(n.telephone_event, Some(100));
    assert_eq!(n.remote, Some((ip("198.51.100.150"), 52120)));
    let video = n.video.expect("Movi's camera line is taken");
    assert_eq!((video.index, video.format.pt), (1, 123));
    assert_eq!(video.profile_level_id().as_deref(), Some("42801f"));
    assert_eq!(video.remote, Some((ip("198.51.100.150"), 52130)));
}

/// RFC 3264 §6 for every device offer: one answer m-line per offered m-line, in order, same media
/// and transport; only the audio line and the camera line have a port; the answer reads back.
#[test]
fn every_device_offer_is_answered_line_for_line() {
    for name in DEVICE_OFFERS {
        let offer = offer(name);
        let (answer, n) = sdp::answer(&offer, &session()).unwrap();
        let lines: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(lines.len(), offer.media.len(), "{name}");
        let video_index = n.video.as_ref().map(|v| v.index);
        for (i, (line, m)) in lines.iter().zip(&offer.media).enumerate() {
            let mut parts = line[2..].split_whitespace();
            let (kind, port, proto) = (parts.next(), parts.next(), parts.next());
            assert_eq!(kind, Some(m.kind.as_str()), "{name} m-line {i}");
            assert_eq!(proto, Some(m.proto.as_str()), "{name} m-line {i}");
            let taken = (m.kind == "audio" && i == 0) || Some(i) == video_index;
            assert_eq!(port != Some("0"), taken, "{name} m-line {i}: {line}");
        }
        // Nothing but the main camera line is ever taken: not slides, not BFCP, not H.224.
        for (i, m) in offer.media.iter().enumerate() {
            if m.content.as_deref() == Some("slides") || m.kind == "application" {
                assert_ne!(Some(i), video_index, "{name} m-line {i}");
            }
        }
        let back = sdp::parse(answer.as_bytes()).unwrap();
        assert_eq!(back.media.len(), offer.media.len(), "{name}");
    }
}

#[test]
fn cisco_e20_over_tls_gets_srtp_on_both_lines_from_its_plain_crypto_lines() {
    let keys = sdp::SrtpKeys {
        audio: [1; sdp::SRTP_KEY_LEN],
        video: [2; sdp::SRTP_KEY_LEN],
    };
    let tls = Session {
        srtp: Some(keys),
        ..session()
    };
    let (answer, n) = sdp::answer(&offer("cisco-e20-te4.1.1.sdp"), &tls).unwrap();
    // Best-effort SRTP (crypto on RTP/AVP): tag 0, the first _80 line without session parameters
    // (tag 1 asks for UNENCRYPTED_SRTCP, which we do not apply).
    let audio = n.srtp.expect("audio SRTP");
    assert_eq!(
        (audio.tag, audio.suite),
        (0, sdp::SrtpSuite::AesCm128HmacSha1_80)
    );
    let video = n.video.expect("video").srtp.expect("video SRTP");
    assert_eq!((video.tag, video.local_key), (0, [2; sdp::SRTP_KEY_LEN]));
    assert_eq!(
        answer
            .matches("a=crypto:0 AES_CM_128_HMAC_SHA1_80 inline:")
            .count(),
        2
    );
    assert!(answer.contains("m=audio 20000 RTP/AVP "));
}
