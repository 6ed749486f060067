//! The fast path's SRTP transform allocates nothing per packet (issue 3: no heap allocation per
//! forwarded packet): a counting global allocator watches `protect_in_place` and `unprotect` once the
//! session's key exists, and congestion control's handling of feedback.
//!
//! (aws-lc's C code does not go through Rust's allocator; this test vouches for our side only.)

use convene_media::fastpath::srtp::{OutboundStream, Profile, RocTracker, SrtpContext, TAG_LEN};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, allocations};

#[global_allocator]
static GLOBAL: Counting = Counting::new(|| true);

#[test]
fn protect_and_unprotect_allocate_nothing() {
    let ctx = SrtpContext::new(Profile::AeadAes256Gcm, &[9; 32], [5; 12]).unwrap();
    let ssrc = 0x1234_5678u32;
    let mut stream = OutboundStream::new(ssrc);
    let mut rx = RocTracker::default();
    let mut buf = [0u8; 1200 + TAG_LEN];
    let before = allocations();
    // 70 000 packets: the sequence number wraps once, so the ROC path is covered too.
    for i in 0..70_000u32 {
        let seq = (60_000 + i) as u16;
        buf[0] = 0x80;
        buf[1] = 96;
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
        buf[12..1200].fill(i as u8);
        let n = ctx.protect_in_place(&mut stream, &mut buf, 1200).unwrap();
        let roc = rx.roc_for(seq);
        let m = ctx.unprotect(&mut buf[..n], roc).unwrap();
        assert_eq!(m, 1200);
    }
    let after = allocations();
    assert_eq!(stream.roc(), 1);
    assert_eq!(after - before, 0, "allocations on the packet path");
}

/// Congestion control folds in feedback without allocating: its windows are bounded and preallocated.
#[test]
fn congestion_control_feedback_allocates_nothing() {
    use convene_media::fastpath::cc::{BweConfig, PacketResult, SendSideBwe};
    use std::time::{Duration, Instant};

    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(BweConfig::default());
    bwe.set_wanted(t0, 2_000_000.0);
    let mut results = Vec::with_capacity(64);
    let mut seq = 0u64;
    let mut feedback = |bwe: &mut SendSideBwe, round: u64, results: &mut Vec<PacketResult>| {
        results.clear();
        let at = t0 + Duration::from_millis(round * 50);
        // 40 packets per 50 ms, one in twenty lost, the rest 30 ms later.
        for i in 0..40u64 {
            let departure = at + Duration::from_micros(i * 1250);
            results.push(PacketResult {
                seq,
                size: 1200,
                departure,
                arrival: (!seq.is_multiple_of(20)).then(|| departure + Duration::from_millis(30)),
                probe: None,
            });
            seq += 1;
        }
        let now = at + Duration::from_millis(80);
        bwe.on_feedback(now, results);
        bwe.poll_probe(now);
    };
    // Warm up: windows fill to their steady size.
    for round in 0..200 {
        feedback(&mut bwe, round, &mut results);
    }
    let before = allocations();
    for round in 200..400 {
        feedback(&mut bwe, round, &mut results);
    }
    let after = allocations();
    assert!(bwe.target_bps() > 0.0);
    assert_eq!(after - before, 0, "allocations folding in feedback");
}
