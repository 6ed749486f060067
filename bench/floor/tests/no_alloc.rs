//! The floor's packet path allocates nothing: a counting global allocator watches the forwarding of
//! packets to several receivers once streams and subscriptions exist.
//!
//! (aws-lc's own C code does not go through Rust's allocator; its AEAD seal/open on an initialised key
//! does not allocate either, but this test can only vouch for our side.)

use std::net::UdpSocket;

use convene_floor::Floor;
use convene_floor::forwarder::subscribe_datagram;
use convene_floor::keys;
use convene_floor::srtp::{Profile, SrtpContext, TAG_LEN};

#[path = "../../../crates/media/tests/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, allocations};

#[global_allocator]
static GLOBAL: Counting = Counting::new(|| true);

#[test]
fn forwarding_allocates_nothing() {
    let profile = Profile::AeadAes256Gcm;
    let mut floor = Floor::bind("127.0.0.1:0".parse().unwrap(), profile).unwrap();
    let addr = floor.local_addr().unwrap();
    let ssrc = 0x4242_4242;
    let receivers: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, r) in receivers.iter().enumerate() {
        r.send_to(&subscribe_datagram(ssrc, i as u32), addr)
            .unwrap();
        assert!(floor.poll_once().unwrap());
    }
    let (key, salt) = keys::stream_key(profile, ssrc);
    let ctx = SrtpContext::new(profile, &key, salt).unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut packets = Vec::new();
    for seq in 0..100u16 {
        let mut buf = vec![0u8; 12 + 1000 + TAG_LEN];
        buf[0] = 0x80;
        buf[1] = 96;
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let n = ctx.protect(&mut buf, 1012, 0).unwrap();
        buf.truncate(n);
        packets.push(buf);
    }
    // The first packet creates the stream (an allocation we accept once); the rest must not allocate.
    sender.send_to(&packets[0], addr).unwrap();
    assert!(floor.poll_once().unwrap());
    for p in &packets[1..] {
        sender.send_to(p, addr).unwrap();
    }
    let before = allocations();
    // Batched receive: a call takes whatever is queued, so count packets rather than calls.
    while floor.counters.received < packets.len() as u64 {
        assert!(floor.poll_once().unwrap());
    }
    let after = allocations();
    assert_eq!(floor.counters.forwarded, 300, "{:?}", floor.counters);
    assert_eq!(floor.counters.dropped, 0);
    assert_eq!(after - before, 0, "allocations on the packet path");
}
