//! The fast path's congestion control (`fastpath::cc`) through a simulated bottleneck: a sender of
//! 30 fps video paced at 2.5x the estimate, probe clusters of padding, a drop-tail link whose capacity
//! changes (in front of it, optionally, a token bucket as `tc tbf` has), a receiver sending
//! transport-wide feedback every 50 ms. Simulated time, 1 ms steps: every
//! run is the same.
//!
//! The scenario is issue 6's: 2 Mbit/s, then 300 kbit/s, then 2 Mbit/s again, 12 s each, with the
//! sender wanting 1.2 Mbit/s. The estimate must follow each change within 5 s, without sustained loss
//! over 2 % and without a standing queue; and a sender that wants more than the link carries must fill
//! it without loss.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use convene_media::fastpath::cc::{
    BweConfig, PROBE_PACKET_BYTES, PacketResult, ProbeCluster, SendSideBwe,
};

const STEP: Duration = Duration::from_millis(1);
const FRAME: Duration = Duration::from_millis(33);
const PACKET: usize = 1200;
const FEEDBACK_EVERY: Duration = Duration::from_millis(50);
const PACING_FACTOR: f64 = 2.5;
/// The bottleneck's queue: packets that would wait longer are dropped (a 2 Mbit/s link with netem's
/// default 1000-packet limit holds ~5 s; routers hold far less. 400 ms is in between).
const MAX_QUEUE: Duration = Duration::from_millis(400);

struct Sent {
    departure: Instant,
    size: usize,
    probe: Option<u32>,
    arrival: Option<Instant>,
}

/// Per simulated second.
#[derive(Debug, Default, Clone, Copy)]
struct Second {
    target_kbps: f64,
    /// The highest the estimate was during the second.
    max_target_kbps: f64,
    sent_kbps: f64,
    delivered_kbps: f64,
    lost: usize,
    sent: usize,
    max_queue_ms: f64,
}

impl Second {
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 / self.sent as f64
        }
    }
}

struct Sim {
    t0: Instant,
    now: Instant,
    one_way: Duration,
    bwe: SendSideBwe,
    packets: Vec<Sent>,
    link_free: Instant,
    /// A token bucket in front of the link (`tc tbf`): up to `burst` bytes pass at once when the link
    /// has been idle (0: a plain drop-tail link); its tokens and when they were counted.
    burst: f64,
    tokens: f64,
    tokens_at: Instant,
    max_queue: Duration,
    /// A sender of simulcast layers (an SFU): media at this rate whatever the estimate.
    fixed_media_bps: Option<f64>,
    /// Media waiting in the pacer (sizes), and the pacer's byte budget.
    queue: VecDeque<usize>,
    budget: f64,
    /// The probe cluster being sent: it, packets left, its budget.
    probe: Option<(ProbeCluster, usize, f64)>,
    next_frame: Instant,
    last_feedback: Instant,
    reported_up_to: usize,
    feedback_in_flight: VecDeque<(Instant, usize, usize)>,
    seconds: Vec<Second>,
    current: Second,
}

impl Sim {
    fn new(one_way: Duration) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            one_way,
            bwe: SendSideBwe::new(BweConfig::default()),
            packets: Vec::new(),
            link_free: t0,
            burst: 0.0,
            tokens: 0.0,
            tokens_at: t0,
            max_queue: MAX_QUEUE,
            fixed_media_bps: None,
            queue: VecDeque::new(),
            budget: 0.0,
            probe: None,
            next_frame: t0,
            last_feedback: t0,
            reported_up_to: 0,
            feedback_in_flight: VecDeque::new(),
            seconds: Vec::new(),
            current: Second::default(),
        }
    }

    fn send(&mut self, size: usize, probe: Option<u32>, capacity_bps: f64) {
        // FIFO behind the packets before it; then it waits for the tokens it lacks (a plain link:
        // none saved, so for its whole serialisation time).
        let start = self.link_free.max(self.now);
        let saved = (self.tokens + (start - self.tokens_at).as_secs_f64() * capacity_bps / 8.0)
            .min(self.burst);
        let lacking = (size as f64 - saved).max(0.0);
        let leaves = start + Duration::from_secs_f64(lacking * 8.0 / capacity_bps);
        let waited = leaves.saturating_duration_since(self.now);
        let arrival = if waited > self.max_queue {
            self.current.lost += 1;
            None
        } else {
            self.tokens = (saved - size as f64).max(0.0);
            self.tokens_at = leaves;
            self.link_free = leaves;
            self.current.delivered_kbps += size as f64 * 8.0 / 1000.0;
            Some(leaves + self.one_way)
        };
        self.bwe.on_sent(self.now, size);
        self.current.max_queue_ms = self.current.max_queue_ms.max(waited.as_secs_f64() * 1e3);
        self.current.sent += 1;
        self.current.sent_kbps += size as f64 * 8.0 / 1000.0;
        self.packets.push(Sent {
            departure: self.now,
            size,
            probe,
            arrival,
        });
    }

    /// Runs until `until` (since start) with the link at `capacity_bps` and the sender wanting
    /// `wanted_bps`.
    fn run(&mut self, until: Duration, capacity_bps: f64, wanted_bps: f64) {
        while self.now < self.t0 + until {
            self.bwe.set_wanted(self.now, wanted_bps);
            let target = self.bwe.target_bps();
            // The encoder follows the estimate: a frame every 33 ms of min(wanted, target).
            if self.now >= self.next_frame {
                self.next_frame += FRAME;
                let rate = self.fixed_media_bps.unwrap_or(wanted_bps.min(target));
                let frame = (rate * FRAME.as_secs_f64() / 8.0) as usize;
                let mut left = frame;
                while left > 0 {
                    let size = left.min(PACKET);
                    self.queue.push_back(size);
                    left -= size;
                }
            }
            // Pacer: media at 2.5x the estimate, probe padding at the cluster's rate.
            self.budget = (self.budget + PACING_FACTOR * target * STEP.as_secs_f64() / 8.0)
                .min(4.0 * PACKET as f64);
            while let Some(&size) = self.queue.front() {
                if self.budget < size as f64 {
                    break;
                }
                self.budget -= size as f64;
                self.queue.pop_front();
                self.send(size, None, capacity_bps);
            }
            if self.probe.is_none() {
                self.probe = self.bwe.poll_probe(self.now).map(|c| (c, c.packets, 0.0));
            }
            if let Some((cluster, left, budget)) = self.probe.as_mut() {
                let size = cluster.bytes / cluster.packets;
                *budget += cluster.rate_bps * STEP.as_secs_f64() / 8.0;
                let mut to_send = 0;
                while *left > 0 && *budget >= size as f64 {
                    *budget -= size as f64;
                    *left -= 1;
                    to_send += 1;
                }
                let (id, done) = (cluster.id, *left == 0);
                for _ in 0..to_send {
                    self.send(size, Some(id), capacity_bps);
                }
                if done {
                    self.probe = None;
                }
            }
            // A probe on trial: padding fills the connection up to the probed rate.
            while self.bwe.poll_fill(self.now) {
                self.send(PROBE_PACKET_BYTES, None, capacity_bps);
            }
            self.feedback();
            self.step();
        }
    }

    /// The receiver reports every packet up to the highest that has arrived; the report reaches the
    /// sender one one-way delay later.
    fn feedback(&mut self) {
        if self.now - self.last_feedback >= FEEDBACK_EVERY {
            self.last_feedback = self.now;
            let now = self.now;
            let highest = self
                .packets
                .iter()
                .rposition(|p| p.arrival.is_some_and(|a| a <= now));
            if let Some(highest) = highest
                && highest >= self.reported_up_to
            {
                self.feedback_in_flight.push_back((
                    now + self.one_way,
                    self.reported_up_to,
                    highest + 1,
                ));
                self.reported_up_to = highest + 1;
            }
        }
        while let Some(&(at, from, to)) = self.feedback_in_flight.front() {
            if at > self.now {
                break;
            }
            self.feedback_in_flight.pop_front();
            let results: Vec<PacketResult> = (from..to)
                .map(|seq| {
                    let p = &self.packets[seq];
                    PacketResult {
                        seq: seq as u64,
                        size: p.size,
                        departure: p.departure,
                        arrival: p.arrival,
                        probe: p.probe,
                    }
                })
                .collect();
            self.bwe.set_rtt(2 * self.one_way);
            self.bwe.on_feedback(self.now, &results);
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        self.current.max_target_kbps = self
            .current
            .max_target_kbps
            .max(self.bwe.target_bps() / 1000.0);
        if (self.now - self.t0).as_millis().is_multiple_of(1000) {
            self.current.target_kbps = self.bwe.target_bps() / 1000.0;
            self.seconds.push(self.current);
            self.current = Second::default();
        }
    }

    fn print(&self, label: &str) {
        eprintln!("{label}:");
        for (i, s) in self.seconds.iter().enumerate() {
            eprintln!(
                "  t={:>2}s target {:>6.0} (max {:>6.0}) sent {:>6.0} delivered {:>6.0} kbit/s, loss {:>5.1} %, queue <= {:>4.0} ms",
                i + 1,
                s.target_kbps,
                s.max_target_kbps,
                s.sent_kbps,
                s.delivered_kbps,
                s.loss() * 100.0,
                s.max_queue_ms
            );
        }
    }
}

const HIGH: f64 = 2_000_000.0;
const LOW: f64 = 300_000.0;
const WANTED: f64 = 1_200_000.0;
const PHASE: u64 = 12;
const FOLLOW: usize = 5;

fn drop_and_recover(one_way_ms: u64) {
    let mut sim = Sim::new(Duration::from_millis(one_way_ms));
    sim.run(Duration::from_secs(PHASE), HIGH, WANTED);
    sim.run(Duration::from_secs(2 * PHASE), LOW, WANTED);
    sim.run(Duration::from_secs(3 * PHASE), HIGH, WANTED);
    sim.print(&format!("one-way {one_way_ms} ms"));
    let s = &sim.seconds;
    let phase = PHASE as usize;

    // Up to what is wanted within 5 s of the start, and held there.
    for (i, second) in s.iter().enumerate().take(phase).skip(FOLLOW) {
        assert!(
            second.sent_kbps >= 0.85 * WANTED / 1000.0,
            "t={}s: {second:?}",
            i + 1
        );
    }
    // Down to the link within 5 s of the drop; then no standing queue and no sustained loss, while
    // still using most of the link.
    for (i, second) in s.iter().enumerate().take(2 * phase).skip(phase + FOLLOW) {
        assert!(
            second.target_kbps <= 1.15 * LOW / 1000.0,
            "t={}s: {second:?}",
            i + 1
        );
        assert!(second.loss() <= 0.02, "t={}s: {second:?}", i + 1);
        assert!(second.max_queue_ms <= 250.0, "t={}s: {second:?}", i + 1);
        assert!(
            second.delivered_kbps >= 0.6 * LOW / 1000.0,
            "t={}s: {second:?}",
            i + 1
        );
    }
    // Back up to what is wanted within 5 s of the recovery.
    for (i, second) in s.iter().enumerate().skip(2 * phase + FOLLOW) {
        assert!(
            second.sent_kbps >= 0.85 * WANTED / 1000.0,
            "t={}s: {second:?}",
            i + 1
        );
        assert!(second.loss() <= 0.02, "t={}s: {second:?}", i + 1);
    }
}

#[test]
fn the_estimate_follows_a_drop_and_a_recovery_at_10_ms() {
    drop_and_recover(10);
}

#[test]
fn the_estimate_follows_a_drop_and_a_recovery_at_40_ms() {
    drop_and_recover(40);
}

#[test]
fn the_estimate_follows_a_drop_and_a_recovery_at_100_ms() {
    drop_and_recover(100);
}

/// A sender that wants more than the link carries settles near the link's rate, without loss or a
/// standing queue.
#[test]
fn a_greedy_sender_fills_a_1_mbit_link_without_loss() {
    let link = 1_000_000.0;
    let mut sim = Sim::new(Duration::from_millis(25));
    sim.run(Duration::from_secs(30), link, 5_000_000.0);
    sim.print("greedy into 1 Mbit/s");
    for (i, second) in sim.seconds.iter().enumerate().skip(10) {
        assert!(
            second.delivered_kbps >= 0.7 * link / 1000.0,
            "t={}s: {second:?}",
            i + 1
        );
        assert!(second.loss() <= 0.02, "t={}s: {second:?}", i + 1);
        assert!(second.max_queue_ms <= 250.0, "t={}s: {second:?}", i + 1);
    }
}

/// An SFU forwarding a lower layer (230 kbit/s) over a 300 kbit/s link shaped by a token bucket of
/// 4 KB with a 1 s queue (the constrained-link end-to-end test's `tc tbf`), wanting 740 kbit/s for the
/// top layer. A probe cluster (a few KB) can cross such a link as a burst at any rate when the bucket
/// is full: the estimate must not believe it, or the allocation switches to a layer the link cannot
/// carry (the top layer came back for a moment in that test, about one run in three).
#[test]
fn a_token_bucket_burst_does_not_pass_for_capacity() {
    let link = 300_000.0;
    let mut sim = Sim::new(Duration::from_millis(1));
    sim.burst = 4096.0;
    sim.max_queue = Duration::from_secs(1);
    sim.fixed_media_bps = Some(230_000.0);
    sim.run(Duration::from_secs(30), link, 740_000.0);
    sim.print("a layer under a 300 kbit/s token bucket");
    for (i, second) in sim.seconds.iter().enumerate().skip(3) {
        assert!(
            second.max_target_kbps <= 1.5 * link / 1000.0,
            "t={}s: {second:?}",
            i + 1
        );
    }
}
