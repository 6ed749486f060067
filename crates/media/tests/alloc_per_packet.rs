//! How many heap allocations the shard makes per forwarded packet in steady state (issues 3 and 8: the
//! goal is none). A counting global allocator counts only while the shard itself runs
//! (`sim::in_shard`), not the simulated clients or network; one publisher (camera and audio) sends to
//! four subscribers for a few seconds of simulated time, and the count over the last seconds is
//! divided by the packets the shard forwarded meanwhile.
//!
//! Today each forwarded packet goes through str0m's `write_rtp`, which takes its payload as a `Vec`
//! and allocates more inside (send queue, retransmission history, the encrypted datagram): the number
//! printed is the measurement the fast path (`fastpath/`) has to bring to zero. The assertion only
//! guards against it growing.

mod sim;

use std::time::Duration;

use sim::Sim;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, allocations};

/// Counts only what the shard allocates, not the simulated clients and network.
#[global_allocator]
static GLOBAL: Counting = Counting::new(sim::in_shard);

/// Measured 2026-12-06: 5.3 allocations per forwarded packet (the simulation is deterministic). The
/// bound leaves room for str0m's internals to move a little; one more allocation per packet on our
/// side would still trip it.
const MAX_ALLOCATIONS_PER_PACKET: f64 = 6.0;

#[test]
fn allocations_per_forwarded_packet_are_measured_and_do_not_grow() {
    let mut s = Sim::new();
    let ada = s.join("alloc", "Ada");
    for name in ["Bob", "Cy", "Di", "Ed"] {
        s.join("alloc", name);
    }
    s.publish(ada);
    s.connect_all();
    s.send_video(ada, true);
    let media = |s: &mut Sim| {
        let t = s.ms();
        if t.is_multiple_of(35) {
            s.send_video(ada, false);
        }
        if t.is_multiple_of(20) {
            s.send_audio(ada, -30);
        }
    };
    // Warm up: connections, first keyframes, send queues and histories at their working size.
    s.run(Duration::from_secs(3), media);

    let packets_before = s.metrics.video_out.get() + s.metrics.audio_out.get();
    let allocations_before = allocations();
    s.run(Duration::from_secs(3), media);
    let forwarded = s.metrics.video_out.get() + s.metrics.audio_out.get() - packets_before;
    let made = allocations() - allocations_before;

    // 4 subscribers x (about 28 video + 50 audio packets a second) x 3 s.
    assert!(forwarded > 600, "only {forwarded} packets forwarded");
    let per_packet = made as f64 / forwarded as f64;
    eprintln!(
        "the shard made {made} allocations for {forwarded} forwarded packets: {per_packet:.2} per packet"
    );
    assert!(
        per_packet <= MAX_ALLOCATIONS_PER_PACKET,
        "{per_packet:.2} allocations per forwarded packet (was 5.3)"
    );
}
