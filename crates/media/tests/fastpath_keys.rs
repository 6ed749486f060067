//! The fast path's keys and transform, proven against str0m itself.
//!
//! Two in-memory str0m peers, as in the SFU: an ICE-lite, RTP-mode "server" (built like the shard's
//! peers) that offers one send-only audio m-line, and a full-ICE "client" that answers. Both are built
//! through `fastpath::keys::build_rtc`, so each captures its DTLS-SRTP keying material. After ICE and
//! DTLS complete:
//! (a) the captured keys mirror each other (what the server sends with is what the client receives
//!     with, and the other way round), from opposite DTLS roles;
//! (b) RTP the server sends through str0m's normal path (`StreamTx::write_rtp`) is decrypted by OUR
//!     inbound context built from the client's captured keys;
//! (c) RTP that OUR outbound context (server keys) protects, continuing the server's stream, is
//!     accepted by the client str0m and surfaces as an `Event::RtpPacket` with our payload.
//! Together these show the capture, the KDF (including the AEAD master-salt reading) and the packet
//! transform agree with what str0m negotiated and runs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convene_media::fastpath::keys::{DtlsKeys, KeySlot, build_rtc};
use convene_media::fastpath::srtp::{OutboundStream, SrtpContext, TAG_LEN, rtp_header_len};
use str0m::crypto::dtls::SrtpProfile;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

const STEP: Duration = Duration::from_millis(5);

struct Side {
    rtc: Rtc,
    addr: SocketAddr,
    keys: KeySlot,
    connected: bool,
    /// RTP packets str0m handed up (client side).
    received: Vec<RtpPacket>,
}

struct Pair {
    now: Instant,
    server: Side,
    client: Side,
    mid: Mid,
    /// Every datagram the server sent to the client, as it went on the wire.
    server_to_client: Vec<Vec<u8>>,
}

/// Is this datagram (S)RTP rather than (S)RTCP, STUN or DTLS? RFC 7983 demultiplexing by the first
/// byte (128..=191 is RTP/RTCP), then RFC 5761 by the payload-type byte (RTCP uses 192..=223).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

impl Pair {
    /// Both peers built through `build_rtc`, each capturing its keys.
    fn new() -> Self {
        let now = Instant::now();
        let (server, server_keys) =
            build_rtc(Rtc::builder().set_ice_lite(true).set_rtp_mode(true), now);
        let (client, client_keys) = build_rtc(Rtc::builder().set_rtp_mode(true), now);
        Self::with(now, (server, server_keys), (client, client_keys))
    }

    /// Negotiates between two built peers (the server offers, as on a subscribe connection).
    fn with(now: Instant, server: (Rtc, KeySlot), client: (Rtc, KeySlot)) -> Self {
        let server_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let client_addr: SocketAddr = "10.0.1.1:4000".parse().unwrap();
        let ((mut server, server_keys), (mut client, client_keys)) = (server, client);
        server.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());
        client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());

        let mut api = server.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let answer = client.sdp_api().accept_offer(offer).expect("answer");
        server
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");

        let side = |rtc, addr, keys| Side {
            rtc,
            addr,
            keys,
            connected: false,
            received: Vec::new(),
        };
        Self {
            now,
            server: side(server, server_addr, server_keys),
            client: side(client, client_addr, client_keys),
            mid,
            server_to_client: Vec::new(),
        }
    }

    /// Polls both peers and delivers their datagrams to each other until neither has anything to say.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for from_server in [true, false] {
                let (from, to) = if from_server {
                    (&mut self.server, &mut self.client)
                } else {
                    (&mut self.client, &mut self.server)
                };
                loop {
                    match from.rtc.poll_output().expect("poll_output") {
                        Output::Timeout(_) => break,
                        Output::Event(Event::Connected) => from.connected = true,
                        Output::Event(Event::RtpPacket(p)) => from.received.push(p),
                        Output::Event(_) => {}
                        Output::Transmit(t) => {
                            moved = true;
                            let bytes = t.contents.to_vec();
                            if from_server {
                                self.server_to_client.push(bytes.clone());
                            }
                            deliver(to, self.now, t.source, &bytes);
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn tick(&mut self) {
        self.now += STEP;
        let now = self.now;
        self.server.rtc.handle_input(Input::Timeout(now)).unwrap();
        self.client.rtc.handle_input(Input::Timeout(now)).unwrap();
        self.pump();
    }

    fn connect(&mut self) {
        self.pump();
        for _ in 0..2000 {
            if self.server.connected && self.client.connected {
                return;
            }
            self.tick();
        }
        panic!("ICE + DTLS did not complete in 10 s of simulated time");
    }

    /// The SSRC of the server's send stream.
    fn server_ssrc(&mut self) -> u32 {
        let mut api = self.server.rtc.direct_api();
        *api.stream_tx_by_mid(self.mid, None)
            .expect("send stream")
            .ssrc()
    }

    /// The server writes one Opus packet through str0m's normal path (`StreamTx::write_rtp`); returns
    /// the SRTP datagram that went to the client for it.
    fn server_writes(&mut self, seq: u64, time: u32, payload: &[u8]) -> Vec<u8> {
        let (pt, ssrc, now) = (self.opus_pt(), self.server_ssrc(), self.now);
        self.server_to_client.clear();
        self.server
            .rtc
            .direct_api()
            .stream_tx_by_mid(self.mid, None)
            .expect("send stream")
            .write_rtp(RtpWrite::new(pt, seq.into(), time, now, payload.to_vec()));
        self.server.rtc.handle_input(Input::Timeout(now)).unwrap();
        self.pump();
        let mut rtp = self
            .server_to_client
            .iter()
            .filter(|d| is_rtp(d) && d[8..12] == ssrc.to_be_bytes());
        let datagram = rtp.next().expect("an SRTP datagram").clone();
        assert!(rtp.next().is_none(), "one datagram per packet");
        datagram
    }

    fn opus_pt(&self) -> Pt {
        self.server
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
            .expect("opus negotiated")
    }
}

fn deliver(to: &mut Side, now: Instant, source: SocketAddr, bytes: &[u8]) {
    let input = Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source,
            destination: to.addr,
            contents: bytes.try_into().expect("a datagram str0m accepts"),
        },
    );
    to.rtc.handle_input(input).expect("handle_input");
}

fn captured(slot: &KeySlot, who: &str) -> DtlsKeys {
    slot.get()
        .unwrap_or_else(|| panic!("{who}: no keying material captured"))
}

#[test]
fn captured_keys_interoperate_with_str0m_both_ways() {
    let mut pair = Pair::new();
    assert!(!pair.server.keys.is_filled(), "nothing before DTLS");
    pair.connect();

    // (a) The two sides captured the same exporter output, from opposite roles, and the derived
    // session keys mirror each other.
    let server_dtls = captured(&pair.server.keys, "server");
    let client_dtls = captured(&pair.client.keys, "client");
    assert_eq!(server_dtls.profile, client_dtls.profile);
    assert_eq!(server_dtls.material, client_dtls.material);
    assert_ne!(server_dtls.dtls_client, client_dtls.dtls_client);
    // str0m's DTLS lists AEAD_AES_256_GCM first; if that changes this test says so.
    assert_eq!(server_dtls.profile, SrtpProfile::AEAD_AES_256_GCM);
    assert_eq!(server_dtls.material.len(), 2 * (32 + 12));
    let server_keys = server_dtls.srtp_keys().expect("server keys");
    let client_keys = client_dtls.srtp_keys().expect("client keys");
    assert_eq!(server_keys.local, client_keys.remote);
    assert_eq!(server_keys.remote, client_keys.local);
    assert_ne!(server_keys.local, server_keys.remote);

    // (b) str0m's own SRTP from the server, decrypted by our inbound context from the client's keys.
    let inbound: SrtpContext = client_keys.remote.context().unwrap();
    let ssrc = pair.server_ssrc();
    let first_seq = 4000u64;
    let mut last_plain = Vec::new();
    for i in 0..3u64 {
        let payload = vec![0xfc, i as u8, 0x5a, 0xa5, 0x42];
        let datagram = pair.server_writes(first_seq + i, 48_000 + 960 * i as u32, &payload);
        // The other direction's key does not open it: the match below is not luck.
        let mut other = datagram.clone();
        assert!(
            client_keys
                .local
                .context()
                .unwrap()
                .unprotect(&mut other, 0)
                .is_err()
        );
        let mut wire = datagram;
        let len = inbound
            .unprotect(&mut wire, 0)
            .expect("our context decrypts str0m's SRTP");
        let header = rtp_header_len(&wire[..len]).unwrap();
        assert_eq!(&wire[header..len], &payload[..], "packet {i}");
        assert_eq!(
            u16::from_be_bytes([wire[2], wire[3]]),
            (first_seq + i) as u16
        );
        // And str0m's client got it too (the capture changed nothing for str0m).
        let got = pair.client.received.last().expect("client received it");
        assert_eq!(&got.payload[..], &payload[..]);
        last_plain = wire[..len].to_vec();
    }
    assert_eq!(pair.client.received.len(), 3);

    // (c) Our outbound context continues the server's stream: same header (SSRC, payload type,
    // extensions), the next sequence number, our payload. The client's str0m must accept it.
    let outbound = server_keys.local.context().unwrap();
    let mut stream = OutboundStream::new(ssrc);
    let header = rtp_header_len(&last_plain).unwrap();
    let ours = b"forwarded by convene's fast path";
    let mut buf = [0u8; 1500];
    buf[..header].copy_from_slice(&last_plain[..header]);
    let seq = (first_seq + 3) as u16;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]).wrapping_add(960);
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[header..header + ours.len()].copy_from_slice(ours);
    let n = outbound
        .protect_in_place(&mut stream, &mut buf, header + ours.len())
        .expect("protects");
    assert_eq!(n, header + ours.len() + TAG_LEN);
    let server_addr = pair.server.addr;
    let now = pair.now;
    deliver(&mut pair.client, now, server_addr, &buf[..n]);
    pair.pump();
    assert_eq!(
        pair.client.received.len(),
        4,
        "the client accepted our packet"
    );
    let got = pair.client.received.last().unwrap();
    assert_eq!(&got.payload[..], &ours[..]);
    assert_eq!(*got.seq_no, first_seq + 3);
    assert_eq!(*got.header.ssrc, ssrc);

    // A packet protected with the wrong direction's key is refused by str0m (no event).
    let wrong = server_keys.remote.context().unwrap();
    let mut stream = OutboundStream::new(ssrc);
    buf[..header].copy_from_slice(&last_plain[..header]);
    buf[2..4].copy_from_slice(&(seq + 1).to_be_bytes());
    buf[header..header + ours.len()].copy_from_slice(ours);
    let n = wrong
        .protect_in_place(&mut stream, &mut buf, header + ours.len())
        .unwrap();
    deliver(&mut pair.client, now, server_addr, &buf[..n]);
    pair.pump();
    assert_eq!(pair.client.received.len(), 4, "wrong key: dropped by str0m");
}

#[test]
fn an_rtc_built_with_the_provider_outside_build_rtc_just_works() {
    // The capturing provider passes everything through. An Rtc built with it but outside `build_rtc`
    // (on the same thread, right after a `build_rtc`) gets no slot, must not take the previous one,
    // and must still connect.
    let now = Instant::now();
    let server = build_rtc(Rtc::builder().set_ice_lite(true).set_rtp_mode(true), now);
    let client = Rtc::builder()
        .set_rtp_mode(true)
        .set_crypto_provider(convene_media::fastpath::keys::capturing_provider())
        .build(now);
    let mut pair = Pair::with(now, server, (client, KeySlot::default()));
    pair.connect();
    // The slot holds the server's own keys (not the client's, had the client's DTLS instance taken
    // it): the server's local key opens what the server sends.
    let server_keys = captured(&pair.server.keys, "server")
        .srtp_keys()
        .expect("server keys");
    let mut wire = pair.server_writes(1, 0, b"hello");
    let len = server_keys
        .local
        .context()
        .unwrap()
        .unprotect(&mut wire, 0)
        .expect("server's key");
    assert!(wire[..len].ends_with(b"hello"));
    assert_eq!(pair.client.received.len(), 1, "the plain client got it");
}
