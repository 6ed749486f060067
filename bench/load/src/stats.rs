//! What receivers measure: latency histograms, loss per stream, jitter, keyframe waits.
//!
//! Every driver thread keeps its own [`Stats`] (no sharing on the packet path) and the run merges them at
//! the end. The histogram is log-linear (64 sub-buckets per power of two, so about 1.5 % resolution) over
//! microseconds: fixed memory, O(1) record, exact enough for p50/p99.

use std::collections::HashMap;

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^40 us (about 12 days) are recorded; larger ones land in the last bucket.
const MAX_EXP: u32 = 40;

/// A log-linear histogram of non-negative integers (we record microseconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; Self::index(u64::MAX) + 1],
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = (63 - v.leading_zeros()).min(MAX_EXP);
        let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
        let shift = exp - SUB_BITS;
        let sub = (v >> shift) & (SUB - 1);
        ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
    }

    /// The smallest value that falls in bucket `i`.
    fn lower_bound(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let exp = i / SUB + u64::from(SUB_BITS) - 1;
        let sub = i % SUB;
        (1u64 << exp) + (sub << (exp - u64::from(SUB_BITS)))
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value below which a fraction `q` (0..=1) of the records fall (the bucket's lower bound, never
    /// more than the maximum seen); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower_bound(i).min(self.max);
            }
        }
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }
}

/// One receiver's view of one incoming RTP stream: which of the SFU's sequence numbers arrived.
#[derive(Debug, Clone, Default)]
pub struct StreamRecv {
    first: u32,
    highest: u32,
    /// Packets at or below `highest` seen, in a 64-packet window, for telling duplicates (RTX) apart.
    window: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// RFC 3550 interarrival jitter, in microseconds (floating, as the RFC's estimator).
    pub jitter_us: f64,
    last_transit: Option<i64>,
    started: bool,
}

impl StreamRecv {
    /// Records packet `seq` sent at `sent_us` and received at `recv_us`.
    pub fn record(&mut self, seq: u32, sent_us: u64, recv_us: u64) {
        if !self.started {
            self.started = true;
            self.first = seq;
            self.highest = seq;
            self.window = 1;
            self.unique = 1;
        } else if seq > self.highest {
            let shift = seq - self.highest;
            self.window = if shift >= 64 { 0 } else { self.window << shift } | 1;
            self.highest = seq;
            self.unique += 1;
        } else {
            let back = self.highest - seq;
            if seq < self.first {
                // Older than what we started counting at: a reordered packet from before the window
                // opened; count it by extending the range, as it was sent in the window of interest.
                self.first = seq;
                self.unique += 1;
            } else if back < 64 {
                let bit = 1u64 << back;
                if self.window & bit != 0 {
                    self.duplicates += 1;
                    return;
                }
                self.window |= bit;
                self.unique += 1;
            } else {
                // Too old to tell: assume it is new (it is rare on loopback).
                self.unique += 1;
            }
        }
        let transit = recv_us as i64 - sent_us as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Packets sent in the range this receiver saw (first..=highest).
    pub fn expected(&self) -> u64 {
        if self.started {
            u64::from(self.highest - self.first) + 1
        } else {
            0
        }
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }
}

/// Key of a received stream: (receiving connection, SSRC the SFU sends it on).
///
/// Loss is counted on the SFU's own sequence numbers, not on the publisher's: an SFU that deliberately
/// leaves packets out (a voice not among the loudest, a layer above the receiver's budget, a switch
/// between simulcast layers) numbers what it does send continuously, so only packets it sent and the
/// receiver never got count as lost.
pub type StreamKey = (u32, u32);

/// Everything one driver thread measured during the measurement window.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub received_packets: u64,
    pub received_bytes: u64,
    /// One-way latency sender -> SFU -> receiver, microseconds.
    pub latency_us: Histogram,
    /// From a video track's subscription becoming usable to its first packet, microseconds.
    pub keyframe_wait_us: Histogram,
    pub streams: HashMap<StreamKey, StreamRecv>,
    /// PLI/FIR the SFU sent our publishers (whole run), and those naming no track or layer we send.
    pub keyframe_requests: u64,
    pub keyframe_requests_unmatched: u64,
    /// Video tracks of connected subscribers that never received a packet (no keyframe came).
    pub keyframe_never: u64,
    /// Packets whose payload had no trailer of ours.
    pub foreign_packets: u64,
    /// Datagrams the kernel refused to send (socket buffer full).
    pub send_errors: u64,
}

impl Stats {
    pub fn merge(&mut self, other: Stats) {
        self.sent_packets += other.sent_packets;
        self.sent_bytes += other.sent_bytes;
        self.received_packets += other.received_packets;
        self.received_bytes += other.received_bytes;
        self.latency_us.merge(&other.latency_us);
        self.keyframe_wait_us.merge(&other.keyframe_wait_us);
        self.foreign_packets += other.foreign_packets;
        self.keyframe_never += other.keyframe_never;
        self.keyframe_requests += other.keyframe_requests;
        self.keyframe_requests_unmatched += other.keyframe_requests_unmatched;
        self.send_errors += other.send_errors;
        self.streams.extend(other.streams);
    }

    pub fn expected(&self) -> u64 {
        self.streams.values().map(StreamRecv::expected).sum()
    }

    pub fn lost(&self) -> u64 {
        self.streams.values().map(StreamRecv::lost).sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.streams.values().map(|s| s.duplicates).sum()
    }

    /// Loss in percent of the packets receivers should have seen.
    pub fn loss_pct(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 {
            0.0
        } else {
            self.lost() as f64 * 100.0 / expected as f64
        }
    }

    /// Mean of the streams' RFC 3550 jitter, milliseconds.
    pub fn mean_jitter_ms(&self) -> f64 {
        if self.streams.is_empty() {
            return 0.0;
        }
        self.streams.values().map(|s| s.jitter_us).sum::<f64>() / self.streams.len() as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, (1 << 33) + 12_345, u64::MAX / 2]) {
            let i = Histogram::index(v);
            assert!(i >= last || v > 100_000, "index not monotonic at {v}");
            last = i;
            let lb = Histogram::lower_bound(i);
            assert!(lb <= v, "lower bound {lb} above {v}");
            if v < 1 << 40 {
                // Within 1/64 of the value.
                assert!(v - lb <= v / 64 + 1, "{v} in bucket from {lb}");
            }
        }
    }

    #[test]
    fn quantiles_of_a_uniform_distribution() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((5000.0 * 0.98..=5000.0).contains(&p50), "{p50}");
        assert!((9900.0 * 0.98..=9900.0).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 10_000.min(h.quantile(1.0)));
        assert_eq!(h.max(), 10_000);
        assert_eq!(h.count(), 10_000);
        assert!((h.mean() - 5000.5).abs() < 1e-9);
        assert_eq!(Histogram::new().quantile(0.99), 0);

        let mut other = Histogram::new();
        other.record(1_000_000);
        h.merge(&other);
        assert_eq!(h.count(), 10_001);
        assert_eq!(h.max(), 1_000_000);
    }

    #[test]
    fn loss_duplicates_and_reordering() {
        let mut s = StreamRecv::default();
        for seq in [10, 11, 13, 14, 12, 12, 17] {
            s.record(seq, 0, 100);
        }
        assert_eq!(s.expected(), 8); // 10..=17
        assert_eq!(s.unique, 6); // 10-14, 17
        assert_eq!(s.lost(), 2); // 15, 16
        assert_eq!(s.duplicates, 1);

        // A jump of more than the window clears it without counting phantom duplicates.
        s.record(1000, 0, 100);
        s.record(999, 0, 100);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.expected(), 991);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = StreamRecv::default();
        // Constant transit: no jitter.
        for i in 0..100u32 {
            s.record(i, u64::from(i) * 20_000, u64::from(i) * 20_000 + 500);
        }
        assert!(s.jitter_us.abs() < 1e-9);
        // Alternating transit of 500/1500 us: jitter converges to 1000 us.
        for i in 100..2000u32 {
            let extra = if i % 2 == 0 { 500 } else { 1500 };
            s.record(i, u64::from(i) * 20_000, u64::from(i) * 20_000 + extra);
        }
        assert!((s.jitter_us - 1000.0).abs() < 1.0, "{}", s.jitter_us);
    }

    #[test]
    fn merged_stats_add_up() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.streams.entry((0, 1)).or_default().record(1, 0, 0);
        a.streams.entry((0, 1)).or_default().record(3, 0, 0);
        b.streams.entry((1, 1)).or_default().record(1, 0, 0);
        b.sent_packets = 5;
        a.merge(b);
        assert_eq!(a.expected(), 4);
        assert_eq!(a.lost(), 1);
        assert!((a.loss_pct() - 25.0).abs() < 1e-9);
        assert_eq!(a.sent_packets, 5);
    }
}
