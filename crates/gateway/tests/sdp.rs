//! Offer/answer against offers recorded from a real baresip 1.0.0 (`tests/offers/`, made by
//! `capture.py` there) and offers shaped like room systems' (audio, H.264 video with profile levels,
//! BFCP, H.224 far-end camera control, SRTP crypto lines). The room-system offers are written after
//! the devices' published behaviour, not captured from the devices (see docs/sip.md).

use std::net::IpAddr;

use convene_gateway::sdp::{self, Codec, Direction, SdpError, Session};

fn session() -> Session {
    Session {
        id: 42,
        version: 1,
        ip: "127.0.0.1".parse::<IpAddr>().unwrap(),
        port: 20000,
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

    // SDES-SRTP only: refused until SRTP lands (the call gets 488).
    assert_eq!(
        sdp::answer(&recorded("baresip-1.0.0-srtp.sdp"), &session()).unwrap_err(),
        SdpError::NoCommonCodec
    );
}
