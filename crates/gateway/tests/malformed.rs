//! Bad input: each kind of malformed SIP gets its error response (or a counted drop when it says
//! nowhere to answer), never a panic, and the gateway keeps serving.

mod common;

use common::*;

const GOOD: &str = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKgood\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: good\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

fn answer(h: &mut Harness, msg: &[u8]) -> Vec<String> {
    h.recv_bytes(udp_peer(5090), msg);
    h.take_sent()
}

#[test]
fn each_malformation_gets_its_answer() {
    let mut h = Harness::new();
    let cases: Vec<(String, Option<u16>)> = vec![
        (GOOD.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"), Some(505)),
        (
            GOOD.replace("sip:127.0.0.1:5060", "tel:+15551234"),
            Some(416),
        ),
        (GOOD.replace("CSeq: 1 OPTIONS\r\n", ""), Some(400)),
        (
            GOOD.replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS"),
            Some(400),
        ),
        (GOOD.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"), Some(400)),
        (GOOD.replace("Call-ID: good\r\n", ""), Some(400)),
        (
            GOOD.replace("From: <sip:a@127.0.0.1>;tag=1\r\n", ""),
            Some(400),
        ),
        (
            GOOD.replace("Content-Length: 0", "Content-Length: 500"),
            Some(400),
        ),
        (
            GOOD.replace("Content-Length: 0", "Content-Length: -1"),
            Some(400),
        ),
        (GOOD.replace(";branch=z9hG4bKgood", ""), Some(400)),
        (
            GOOD.replace("OPTIONS sip", "FROB sip")
                .replace("1 OPTIONS", "1 FROB"),
            Some(501),
        ),
        (
            GOOD.replace("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n"),
            Some(400),
        ),
        // Truncated: no blank line after the headers.
        (GOOD.trim_end().to_owned(), Some(400)),
        // No Via: nowhere to answer, dropped and counted.
        (
            GOOD.replace("Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKgood\r\n", ""),
            None,
        ),
        // Huge headers: 513.
        (
            GOOD.replace(
                "Max-Forwards: 70\r\n",
                &format!("X-Big: {}\r\n", "a".repeat(40_000)),
            ),
            Some(513),
        ),
        // An ACK is never answered.
        (
            GOOD.replace("OPTIONS sip", "ACK sip")
                .replace("1 OPTIONS", "1 INVITE"),
            None,
        ),
        ("\r\n\r\n".into(), None),
        ("".into(), None),
        ("garbage".into(), None),
    ];
    for (msg, want) in cases {
        let sent = answer(&mut h, msg.as_bytes());
        match want {
            Some(code) => {
                assert_eq!(sent.len(), 1, "{msg:?}");
                assert_eq!(status(&sent[0]), code, "{msg:.200?} -> {}", sent[0]);
                assert!(header(&sent[0], "Via").is_some());
            }
            None => assert!(sent.is_empty(), "{msg:.200?} -> {sent:?}"),
        }
    }
    assert!(h.metrics.refused.with_label_values(&["unanswerable"]).get() >= 3);
    assert!(h.metrics.refused.with_label_values(&["too_large"]).get() == 1);
    // Still serving.
    let sent = answer(&mut h, GOOD.as_bytes());
    assert_eq!(status(&sent[0]), 200);
}

#[test]
fn an_invite_with_sdp_without_media_gets_488_and_other_bodies_415() {
    let mut h = Harness::new();
    let empty = Req::invite("1234567890", "nomedia").body(
        "application/sdp",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
    );
    h.recv(udp_peer(5090), &empty.text());
    let sent = h.take_sent();
    assert_eq!(status(&sent[0]), 488);
    assert!(header(&sent[0], "Warning").unwrap().contains("no media"));
    let other = Req::invite("1234567890", "text").body("text/plain", "hello");
    h.recv(udp_peer(5090), &other.text());
    assert_eq!(h.statuses(), vec![415]);
    assert_eq!(h.gw.calls(), 0);
}

#[test]
fn mutated_messages_never_panic_and_the_gateway_keeps_serving() {
    let invite = Req::invite("1234567890", "fuzz")
        .with("Session-Expires: 1800;refresher=uac")
        .with("Supported: timer, 100rel")
        .with("Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
        .text();
    let info = "INFO sip:convene@127.0.0.1:5060 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK1\r\nf: <sip:r@h>;tag=1\r\nt: <sip:c@h>;tag=2\r\ni: abc\r\nCSeq: 3 INFO\r\nc: application/dtmf-relay\r\nl: 23\r\n\r\nSignal=5\r\nDuration=160\r\n";
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let seeds = [invite.as_str(), info, response, GOOD];
    let tokens: &[&[u8]] = &[
        b"\r\n",
        b";",
        b":",
        b"<",
        b">",
        b"\"",
        b"\\",
        b"=",
        b",",
        b"@",
        b"[",
        b"]",
        b"%",
        b"2^",
        b"99999999999999999999",
        b"-1",
        b"4294967296",
        b" ",
        b"\t",
        b"\r\n ",
        b"\xff",
        b"\0",
        b"sip:",
        b"sips:",
        b"tel:",
        b"SIP/2.0",
        b"z9hG4bK",
    ];
    let mut h = Harness::new();
    let mut rng = fastrand::Rng::with_seed(3261);
    for round in 0..30_000 {
        let mut v = seeds[rng.usize(..seeds.len())].as_bytes().to_vec();
        for _ in 0..rng.usize(1..6) {
            let len = v.len();
            match rng.u8(..5) {
                0 if len > 0 => v[rng.usize(..len)] = rng.u8(..),
                1 => {
                    let t = tokens[rng.usize(..tokens.len())];
                    let i = rng.usize(..=len);
                    v.splice(i..i, t.iter().copied());
                }
                2 if len > 2 => {
                    let i = rng.usize(..len);
                    let n = rng.usize(..(len - i).min(40));
                    v.drain(i..i + n);
                }
                3 => v.truncate(rng.usize(..=len)),
                _ if len > 0 => {
                    let i = rng.usize(..len);
                    let j = (i + rng.usize(..60)).min(len);
                    let chunk = v[i..j].to_vec();
                    let k = rng.usize(..=v.len());
                    v.splice(k..k, chunk);
                }
                _ => {}
            }
        }
        h.recv_bytes(udp_peer(5090 + (round % 50) as u16), &v);
        if round % 1000 == 0 {
            // Let timers run too, and admission answer whatever got through.
            h.advance(std::time::Duration::from_secs(1));
            for e in h.take_events() {
                if let convene_gateway::Event::Incoming { call, .. } = e {
                    h.accept(call, 20000, None);
                }
            }
        }
        h.sent.clear();
    }
    h.advance(std::time::Duration::from_secs(120));
    h.sent.clear();
    let other = convene_gateway::sip::Peer {
        addr: "127.0.0.9:5090".parse().unwrap(),
        ..udp_peer(5090)
    };
    h.recv(other, GOOD);
    assert_eq!(h.statuses(), vec![200]);
}
