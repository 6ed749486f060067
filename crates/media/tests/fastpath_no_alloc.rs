//! The fast path's SRTP transform allocates nothing per packet (issue 3: no heap allocation per
//! forwarded packet): a counting global allocator watches `protect_in_place` and `unprotect` once the
//! session's key exists.
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
