//! Offer/answer against offers recorded from a real baresip 1.0.0 (`tests/offers/`, made by
//! `capture.py` there) and offers shaped like room systems' (audio, H.264 video with profile levels,
//! BFCP, H.224 far-end camera control, SRTP crypto lines). The room-system offers are written after
//! the devices' published behaviour, not captured from the devices (see docs/sip.md).

use std::net::IpAddr;

use base64::Engine as _;
use convene_gateway::sdp::{
    self, Codec, Direction, SRTP_KEY_LEN, SdpError, Session, SrtpKeys, SrtpSuite,
};

fn session() -> Session {
    Session {
        id: 42,
        version: 1,
        ip: "127.0.0.1".parse::<IpAddr>().unwrap(),
        port: 20000,
        srtp: None,
    }
}

/// Cisco DX80-like: Opus absent, G.722 first, video with H.264, BFCP.
const CISCO: &str = "v=0\r
o=tandberg 0 1 IN IP4 192.0.2.20\r
s=-\r
c=IN IP4 192.0.2.20\r
b=AS:6000\r
t=0 0\r
m=audio 2326 RTP/AVP 108 9 8 0 101\r
b=TIAS:64000\r
a=rtpmap:108 MP4A-LATM/90000\r
a=fmtp:108 profile-level-id=24;object=23;bitrate=64000\r
a=rtpmap:9 G722/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:101 telephone-event/8000\r
a=fmtp:101 0-15\r
a=sendrecv\r
a=rtcp:2327\r
m=video 2328 RTP/AVP 97 126\r
b=TIAS:6000000\r
a=rtpmap:97 H264/90000\r
a=fmtp:97 profile-level-id=428016;max-br=5000;max-mbps=245000;max-fs=8160;max-smbps=245000;max-fps=6000\r
a=rtpmap:126 H264/90000\r
a=fmtp:126 profile-level-id=428016;packetization-mode=1;max-br=5000;max-mbps=245000;max-fs=8160\r
a=rtcp-fb:* nack pli\r
a=rtcp-fb:* ccm fir\r
a=content:main\r
a=label:11\r
a=sendrecv\r
m=application 5070 TCP/BFCP *\r
a=floorctrl:c-s\r
a=confid:1\r
a=floorid:2 mstrm:12\r
a=userid:2\r
a=setup:actpass\r
a=connection:new\r
m=application 2330 RTP/AVP 107\r
a=rtpmap:107 H224/4800\r
a=sendrecv\r
";

/// Polycom HDX-like: SIREN14 and G.722.1 before G.722, SRTP crypto with a 2^48 lifetime
/// (which made a crate we tried panic).
const POLYCOM: &str = "v=0\r
o=GroupSeries 1 0 IN IP4 192.0.2.30\r
s=-\r
c=IN IP4 192.0.2.30\r
b=AS:1024\r
t=0 0\r
a=sendrecv\r
m=audio 49204 RTP/AVP 115 102 9 15 0 8 18 101\r
a=rtpmap:115 G7221/32000\r
a=fmtp:115 bitrate=48000\r
a=rtpmap:102 G7221/16000\r
a=fmtp:102 bitrate=32000\r
a=rtpmap:9 G722/8000\r
a=rtpmap:15 G728/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:18 G729/8000\r
a=fmtp:18 annexb=no\r
a=rtpmap:101 telephone-event/8000\r
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^48\r
a=sendrecv\r
m=video 49206 RTP/AVP 109 96 34 31\r
a=rtpmap:109 H264/90000\r
a=fmtp:109 profile-level-id=42e016;max-mbps=108000;max-fs=3600\r
a=rtpmap:96 H263-1998/90000\r
a=rtpmap:34 H263/90000\r
a=rtpmap:31 H261/90000\r
a=sendrecv\r
";

/// baresip with Opus first (what our e2e test dials with).
const BARESIP: &str = "v=0\r
o=- 1403666706 1824884195 IN IP4 127.0.0.1\r
s=-\r
c=IN IP4 127.0.0.1\r
t=0 0\r
m=audio 10104 RTP/AVP 96 9 0 8 101\r
a=rtpmap:96 opus/48000/2\r
a=fmtp:96 stereo=1;sprop-stereo=1\r
a=rtpmap:9 G722/8000/1\r
a=rtpmap:0 PCMU/8000/1\r
a=rtpmap:8 PCMA/8000/1\r
a=rtpmap:101 telephone-event/8000\r
a=fmtp:101 0-15\r
a=rtcpmux\r
a=sendrecv\r
";

fn m_lines(answer: &str) -> Vec<&str> {
    answer.lines().filter(|l| l.starts_with("m=")).collect()
}

#[test]
fn cisco_gets_g722_and_h264_video_with_bfcp_and_h224_declined() {
    let offer = sdp::parse(CISCO.as_bytes()).unwrap();
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    assert_eq!(n.codec, Codec::G722);
    assert_eq!(n.format.pt, 9);
    assert_eq!(n.telephone_event, Some(101));
    assert_eq!(n.remote, Some(("192.0.2.20".parse().unwrap(), 2326)));
    assert_eq!(
        m_lines(&answer),
        vec![
            "m=audio 20000 RTP/AVP 9 101",
            // Its packetization-mode 1 format (126), not the mode 0 one (97), two ports above audio.
            "m=video 20002 RTP/AVP 126",
            "m=application 0 TCP/BFCP *",
            "m=application 0 RTP/AVP 107",
        ]
    );
    let video = n.video.expect("video negotiated");
    assert_eq!(video.format.pt, 126);
    // b=TIAS:6000000 and max-br=5000 (max-fs=8160 is 1080p, no limit): the least, 5000 kbps.
    assert_eq!(video.max_kbps, Some(5000));
    assert_eq!(video.profile_level_id().as_deref(), Some("428016"));
    assert_eq!(video.remote, Some(("192.0.2.20".parse().unwrap(), 2328)));
    // The fmtp is echoed exactly, and keyframe requests are offered both ways.
    assert!(answer.contains(
        "a=fmtp:126 profile-level-id=428016;packetization-mode=1;max-br=5000;max-mbps=245000;max-fs=8160\r\n"
    ));
    assert!(answer.contains("a=rtcp-fb:126 nack pli\r\na=rtcp-fb:126 ccm fir\r\n"));
    assert!(answer.contains("a=rtpmap:9 G722/8000\r\n"));
    assert!(answer.contains("a=fmtp:101 0-15\r\n"));
    assert!(answer.contains("a=sendrecv\r\n"));
    assert!(answer.starts_with("v=0\r\no=convene 42 1 IN IP4 127.0.0.1\r\n"));
}

#[test]
fn polycom_with_a_large_crypto_lifetime_parses_and_gets_g722() {
    let offer = sdp::parse(POLYCOM.as_bytes()).unwrap();
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    assert_eq!(n.codec, Codec::G722);
    assert_eq!(n.telephone_event, Some(101));
    // Its H.264 has no packetization-mode (mode 0 only): video is declined, audio goes on.
    assert_eq!(m_lines(&answer)[1], "m=video 0 RTP/AVP 109 96 34 31");
}

#[test]
fn content_video_is_declined_and_the_main_camera_taken() {
    let offer = "v=0\r\nc=IN IP4 192.0.2.9\r\nm=audio 4000 RTP/AVP 0\r\n\
        m=video 4002 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\na=fmtp:99 packetization-mode=1\r\n\
        a=content:slides\r\na=sendonly\r\n\
        m=video 4004 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\na=fmtp:98 packetization-mode=1\r\n\
        a=content:main\r\na=sendonly\r\n";
    let (answer, n) = sdp::answer(&sdp::parse(offer.as_bytes()).unwrap(), &session()).unwrap();
    assert_eq!(
        m_lines(&answer),
        vec![
            "m=audio 20000 RTP/AVP 0",
            "m=video 0 RTP/AVP 99",
            "m=video 20002 RTP/AVP 98"
        ]
    );
    // The device only sends its camera: we only receive it.
    assert!(answer.ends_with("a=content:main\r\na=recvonly\r\n"));
    let video = n.video.unwrap();
    assert_eq!((video.index, video.direction), (2, Direction::SendOnly));
    assert_eq!(video.remote, Some(("192.0.2.9".parse().unwrap(), 4004)));
}

#[test]
fn opus_is_preferred_and_its_fmtp_and_payload_type_echoed() {
    let offer = sdp::parse(BARESIP.as_bytes()).unwrap();
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    assert_eq!(n.codec, Codec::Opus);
    assert_eq!(m_lines(&answer), vec!["m=audio 20000 RTP/AVP 96 101"]);
    assert!(answer.contains("a=rtpmap:96 opus/48000/2\r\n"));
    assert!(answer.contains("a=fmtp:96 stereo=1;sprop-stereo=1\r\n"));
}

#[test]
fn each_codec_is_chosen_when_it_is_the_best_offered() {
    for (fmts, maps, want) in [
        ("0 8", "", Codec::Pcmu),
        ("8", "", Codec::Pcma),
        ("8 0", "", Codec::Pcmu),
        ("9 0", "", Codec::G722),
        ("111 0", "a=rtpmap:111 OPUS/48000/2\r\n", Codec::Opus),
    ] {
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {fmts}\r\n{maps}"
        );
        let (_, n) = sdp::answer(&sdp::parse(offer.as_bytes()).unwrap(), &session()).unwrap();
        assert_eq!(n.codec, want, "{fmts}");
        assert_eq!(n.telephone_event, None);
    }
}

#[test]
fn directions_are_answered() {
    for (offered, answered) in [
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
        ("sendrecv", "sendrecv"),
    ] {
        let offer = BARESIP.replace("a=sendrecv", &format!("a={offered}"));
        let (answer, n) = sdp::answer(&sdp::parse(offer.as_bytes()).unwrap(), &session()).unwrap();
        assert!(answer.contains(&format!("a={answered}\r\n")), "{offered}");
        let expected = match offered {
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => Direction::SendRecv,
        };
        assert_eq!(n.direction, expected);
    }
}

#[test]
fn offers_we_cannot_take_are_refused_not_panicked_on() {
    let srtp_only = BARESIP.replace("RTP/AVP", "RTP/SAVP");
    assert_eq!(
        sdp::answer(&sdp::parse(srtp_only.as_bytes()).unwrap(), &session()).unwrap_err(),
        SdpError::NoCommonCodec
    );
    let no_media = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    assert_eq!(
        sdp::parse(no_media.as_bytes()).unwrap_err(),
        SdpError::NoMedia
    );
    assert_eq!(sdp::parse(b"hello").unwrap_err(), SdpError::NoVersion);
    assert_eq!(sdp::parse(&[0xff, 0xfe]).unwrap_err(), SdpError::NotText);
    let only_video =
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n";
    assert!(sdp::answer(&sdp::parse(only_video.as_bytes()).unwrap(), &session()).is_err());
    let g729_only = "v=0\r\nm=audio 5000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    assert!(sdp::answer(&sdp::parse(g729_only.as_bytes()).unwrap(), &session()).is_err());
    // Garbage lines and attributes are skipped.
    let odd = "v=0\r\nc=IN IP4 nonsense\r\nm=audio x RTP/AVP 0\r\na=rtpmap:zz\r\na=fmtp\r\nq\r\nm=audio\r\n";
    let offer = sdp::parse(odd.as_bytes()).unwrap();
    assert!(
        sdp::answer(&offer, &session()).is_err(),
        "port 0 audio is not taken"
    );
}

#[test]
fn mutated_offers_never_panic() {
    let seeds = [CISCO, POLYCOM, BARESIP];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let mut v = seeds[rng.usize(..seeds.len())].as_bytes().to_vec();
        for _ in 0..rng.usize(1..6) {
            let i = rng.usize(..v.len().max(1));
            match rng.u8(..4) {
                0 if !v.is_empty() => {
                    let at = i.min(v.len() - 1);
                    v[at] = rng.u8(..);
                }
                1 => {
                    let at = i.min(v.len());
                    v.insert(at, b"\r\n:/ =0123456789"[rng.usize(..16)])
                }
                2 if v.len() > 1 => {
                    v.remove(i.min(v.len() - 1));
                }
                _ => v.truncate(i),
            }
        }
        if let Ok(offer) = sdp::parse(&v) {
            let _ = sdp::answer(&offer, &session());
        }
    }
}

/// Offers recorded from a real baresip 1.0.0 (tests/offers/capture.py).
fn recorded(name: &str) -> sdp::Offer {
    let path = format!("{}/tests/offers/{name}", env!("CARGO_MANIFEST_DIR"));
    sdp::parse(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn recorded_baresip_offers() {
    let (answer, n) = sdp::answer(&recorded("baresip-1.0.0-audio.sdp"), &session()).unwrap();
    assert_eq!(n.codec, Codec::Opus);
    assert_eq!(m_lines(&answer), vec!["m=audio 20000 RTP/AVP 96 101"]);
    assert!(answer.contains("a=fmtp:96 stereo=1;sprop-stereo=1\r\n"));
    assert!(answer.contains("a=fmtp:101 0-15\r\n"));

    // With video, baresip reuses payload type 96 for H.264 (mode 0) on its own m-line; we take 97
    // (mode 1), whatever its other formats.
    let (answer, n) = sdp::answer(&recorded("baresip-1.0.0-video.sdp"), &session()).unwrap();
    assert_eq!((n.codec, n.format.pt), (Codec::Opus, 96));
    assert_eq!(
        m_lines(&answer),
        vec!["m=audio 20000 RTP/AVP 96 101", "m=video 20002 RTP/AVP 97"]
    );
    assert!(answer.contains("a=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\n"));
    assert_eq!(n.video.map(|v| v.format.pt), Some(97));

    // SDES-SRTP only: refused without keys (a call not over TLS gets 488)...
    assert_eq!(
        sdp::answer(&recorded("baresip-1.0.0-srtp.sdp"), &session()).unwrap_err(),
        SdpError::NoCommonCodec
    );
    // ...and over TLS answered with its crypto tag and suite and our key.
    let keys = SrtpKeys {
        audio: [0x11; SRTP_KEY_LEN],
        video: [0x22; SRTP_KEY_LEN],
    };
    let tls = Session {
        srtp: Some(keys),
        ..session()
    };
    let (answer, n) = sdp::answer(&recorded("baresip-1.0.0-srtp.sdp"), &tls).unwrap();
    assert_eq!(m_lines(&answer), vec!["m=audio 20000 RTP/SAVP 96 101"]);
    let ours = base64::engine::general_purpose::STANDARD.encode([0x11; SRTP_KEY_LEN]);
    assert!(answer.contains(&format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{ours}\r\n"
    )));
    let srtp = n.srtp.expect("SRTP agreed");
    assert_eq!((srtp.tag, srtp.suite), (1, SrtpSuite::AesCm128HmacSha1_80));
    // The device's key as it offered it (base64 of 30 bytes).
    let theirs = base64::engine::general_purpose::STANDARD
        .decode("YdYNTdAaDmOX1FnLEa3cwxicZq3UO4PcReMHc7EK")
        .unwrap();
    assert_eq!(srtp.remote_key.to_vec(), theirs);
    assert_eq!(srtp.local_key, [0x11; SRTP_KEY_LEN]);
}

#[test]
fn sdes_suites_lines_and_best_effort_srtp() {
    let keys = SrtpKeys {
        audio: [0x33; SRTP_KEY_LEN],
        video: [0x44; SRTP_KEY_LEN],
    };
    let tls = Session {
        srtp: Some(keys),
        ..session()
    };
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; SRTP_KEY_LEN]);
    // An unknown suite, one with an MKI, then the 32-bit tag: the last is taken; video gets its own key.
    let offer = format!(
        "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/SAVP 0\r\n\
         a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{key}\r\n\
         a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:4\r\n\
         a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{key}|2^31\r\n\
         m=video 4002 RTP/SAVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\n\
         a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
    );
    let (answer, n) = sdp::answer(&sdp::parse(offer.as_bytes()).unwrap(), &tls).unwrap();
    assert_eq!(
        m_lines(&answer),
        vec!["m=audio 20000 RTP/SAVP 0", "m=video 20002 RTP/SAVP 97"]
    );
    let audio = n.srtp.unwrap();
    assert_eq!(
        (audio.tag, audio.suite),
        (3, SrtpSuite::AesCm128HmacSha1_32)
    );
    let video = n.video.unwrap().srtp.unwrap();
    assert_eq!((video.tag, video.local_key), (5, [0x44; SRTP_KEY_LEN]));
    assert!(answer.contains("a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:"));
    assert!(answer.contains("a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:"));

    // Best effort (RTP/AVP with crypto lines): SRTP over TLS, plain RTP without keys.
    let best_effort = format!(
        "v=0\r\nm=audio 4000 RTP/AVP 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
    );
    let offer = sdp::parse(best_effort.as_bytes()).unwrap();
    let (answer, n) = sdp::answer(&offer, &tls).unwrap();
    assert!(
        n.srtp.is_some()
            && answer.contains("m=audio 20000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=crypto:1 ")
    );
    let (answer, n) = sdp::answer(&offer, &session()).unwrap();
    assert!(n.srtp.is_none() && !answer.contains("a=crypto"));

    // A key of the wrong length, or not base64: no usable crypto, so SAVP is refused.
    for bad in ["inline:c2hvcnQ=", "inline:!!!!", "inline:", "nothing"] {
        let offer = format!(
            "v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {bad}\r\n"
        );
        assert_eq!(
            sdp::answer(&sdp::parse(offer.as_bytes()).unwrap(), &tls).unwrap_err(),
            SdpError::NoCommonCodec,
            "{bad}"
        );
    }
}

#[test]
fn a_small_screen_or_a_slow_line_limits_the_video_a_room_receives() {
    let offer = |lines: &str| {
        let text = format!(
            "v=0\r\nc=IN IP4 192.0.2.9\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 98\r\n{lines}\
             a=rtpmap:98 H264/90000\r\n"
        );
        let (_, n) = sdp::answer(&sdp::parse(text.as_bytes()).unwrap(), &session()).unwrap();
        n.video.map(|v| v.max_kbps)
    };
    // CIF (396 macroblocks) is worth about 384 kbps; b=AS is kbps, b=TIAS bit/s; the least wins.
    // An fmtp before its rtpmap counts too (SDP does not order attributes).
    assert_eq!(
        offer("a=fmtp:98 packetization-mode=1;max-fs=396\r\n"),
        Some(Some(384))
    );
    let fmtp = |extra: &str| {
        format!("a=rtpmap:98 H264/90000\r\na=fmtp:98 packetization-mode=1{extra}\r\n")
    };
    assert_eq!(offer(&fmtp(";max-fs=396")), Some(Some(384)));
    assert_eq!(
        offer(&format!("b=AS:256\r\n{}", fmtp(";max-fs=3600"))),
        Some(Some(256))
    );
    assert_eq!(
        offer(&format!("b=TIAS:1500000\r\n{}", fmtp(""))),
        Some(Some(1500))
    );
    assert_eq!(offer(&fmtp(";max-br=900")), Some(Some(900)));
    assert_eq!(offer(&fmtp("")), Some(None));
    // Without max-fs, the profile's level says the largest frame: level 1.3 (0d) is CIF, 3.1 (1f) 720p,
    // 4.0 (28) more than we cap; an explicit max-fs overrides it.
    assert_eq!(offer(&fmtp(";profile-level-id=42e00d")), Some(Some(384)));
    assert_eq!(offer(&fmtp(";profile-level-id=42e01f")), Some(Some(2000)));
    assert_eq!(offer(&fmtp(";profile-level-id=640028")), Some(None));
    assert_eq!(
        offer(&fmtp(";profile-level-id=42e00d;max-fs=3600")),
        Some(Some(2000))
    );
    assert_eq!(offer(&fmtp(";profile-level-id=zz")), Some(None));
}

#[test]
fn comfort_noise_is_echoed_beside_g711_and_g722_only() {
    let answer =
        |offer: &str| sdp::answer(&sdp::parse(offer.as_bytes()).unwrap(), &session()).unwrap();
    let (text, n) = answer(
        "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0 13 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    assert_eq!(n.comfort_noise, Some(13));
    assert_eq!(m_lines(&text), vec!["m=audio 20000 RTP/AVP 0 101 13"]);
    assert!(text.contains("a=rtpmap:13 CN/8000\r\n"));
    // A dynamic CN/8000 is found by its rtpmap; CN/16000 does not go with G.722's 8000 Hz RTP clock.
    let (_, n) = answer("v=0\r\nm=audio 4000 RTP/AVP 9 118\r\na=rtpmap:118 CN/8000\r\n");
    assert_eq!(n.comfort_noise, Some(118));
    let (_, n) = answer("v=0\r\nm=audio 4000 RTP/AVP 9 119\r\na=rtpmap:119 CN/16000\r\n");
    assert_eq!(n.comfort_noise, None);
    // Opus has its own comfort noise.
    let (text, n) = answer("v=0\r\nm=audio 4000 RTP/AVP 96 13\r\na=rtpmap:96 opus/48000/2\r\n");
    assert_eq!((n.codec, n.comfort_noise), (Codec::Opus, None));
    assert_eq!(m_lines(&text), vec!["m=audio 20000 RTP/AVP 96"]);
}
