//! Transport-wide sequence numbers for what the fast path sends, and the send history that joins the
//! receiver's feedback (draft-holmer-rmcat-transport-wide-cc-extensions) with what was sent, for
//! [`super::cc`].
//!
//! One sequence space per transport: on a connection whose media the fast path sends, str0m sends no
//! RTP at all (its estimator is off), so these numbers are the only ones on the wire.

use std::time::{Duration, Instant};

use super::cc::PacketResult;
use super::feedback::TransportCc;
use super::ingress::extend_seq;
use super::prefetch::prefetch;

/// Packets remembered: a second at 2000 packets a second (a subscriber receiving 20 Mbit/s).
/// Feedback comes every 50-100 ms; a packet older than this is not reported on any more.
const CAPACITY: usize = 1 << 11;

/// 24 bytes: every subscriber connection holds [`CAPACITY`] of them.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Extended sequence number, `u64::MAX` when the slot is empty.
    seq: u64,
    /// Microseconds since the history began.
    departure_us: u64,
    size: u32,
    /// Probe cluster id + 1 (cluster ids are small and wrap: 16 bits tell the few in flight apart);
    /// 0: not a probe.
    probe: u16,
    reported: bool,
}

/// How much of the newest history [`SendHistory::prefetch_recent`] fetches.
const RECENT_BYTES: u64 = 256;

/// See the module docs.
#[derive(Debug)]
pub struct SendHistory {
    entries: Box<[Entry]>,
    next: u64,
    start: Instant,
}

impl SendHistory {
    pub fn new(now: Instant) -> Self {
        let empty = Entry {
            seq: u64::MAX,
            departure_us: 0,
            size: 0,
            probe: 0,
            reported: false,
        };
        Self {
            entries: vec![empty; CAPACITY].into_boxed_slice(),
            next: 0,
            start: now,
        }
    }

    /// Starts fetching the entry the next packet is recorded in (`fastpath::prefetch`).
    pub fn prefetch_next(&self) {
        prefetch(&self.entries[self.next as usize % CAPACITY]);
    }

    /// Starts fetching the entries of the last packets sent: what the next feedback reports (at 20
    /// reports a second a receiver of one video stream reports a handful at a time).
    pub fn prefetch_recent(&self) {
        let entry = size_of::<Entry>() as u64;
        for back in (1..=RECENT_BYTES / entry).step_by((64 / entry).max(1) as usize) {
            if let Some(seq) = self.next.checked_sub(back) {
                prefetch(&self.entries[seq as usize % CAPACITY]);
            }
        }
    }

    /// The sequence number the next packet gets (extended).
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Numbers a packet of `size` bytes leaving at `now` (a probe cluster's, or not) and returns the
    /// 16 bits that go on the wire.
    pub fn record(&mut self, now: Instant, size: usize, probe: Option<u32>) -> u16 {
        let seq = self.next;
        self.next += 1;
        self.entries[seq as usize % CAPACITY] = Entry {
            seq,
            departure_us: now.saturating_duration_since(self.start).as_micros() as u64,
            size: size as u32,
            probe: probe.map_or(0, |id| (id % u32::from(u16::MAX)) as u16 + 1),
            reported: false,
        };
        seq as u16
    }

    /// Joins feedback (extended sequence number, arrival on the receiver's clock or `None` if lost)
    /// with the history, into `out` (cleared first), in send order. Numbers never sent, forgotten, or
    /// already reported are skipped.
    pub fn join(
        &mut self,
        feedback: impl IntoIterator<Item = (u64, Option<Instant>)>,
        out: &mut Vec<PacketResult>,
    ) {
        out.clear();
        for (seq, arrival) in feedback {
            let entry = &mut self.entries[seq as usize % CAPACITY];
            if entry.seq != seq || entry.reported {
                continue;
            }
            entry.reported = true;
            out.push(PacketResult {
                seq,
                size: entry.size as usize,
                departure: self.start + Duration::from_micros(entry.departure_us),
                arrival,
                probe: (entry.probe != 0).then(|| u32::from(entry.probe - 1)),
            });
        }
        out.sort_unstable_by_key(|r| r.seq);
    }

    /// Reads a feedback report: sequence numbers extended against what we sent last, arrivals on a
    /// clock starting at `time_zero` (any fixed instant: only differences matter).
    pub fn feedback_of<'a>(
        &self,
        report: &TransportCc<'a>,
        time_zero: Instant,
    ) -> impl Iterator<Item = (u64, Option<Instant>)> + use<'a> {
        let last = self.next.saturating_sub(1);
        let base = extend_seq(last, report.base_seq);
        let reference = time_zero + report.reference();
        report
            .arrivals()
            .filter_map(Result::ok)
            .enumerate()
            .map(move |(i, (_, arrival_us))| {
                let arrival = arrival_us.and_then(|us| {
                    let d = Duration::from_micros(us.unsigned_abs());
                    if us >= 0 {
                        reference.checked_add(d)
                    } else {
                        reference.checked_sub(d)
                    }
                });
                (base + i as u64, arrival)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_joins_what_was_sent_once_in_send_order() {
        let t0 = Instant::now();
        let mut history = SendHistory::new(t0);
        let wire: Vec<u16> = (0..5)
            .map(|i| {
                history.record(
                    t0 + Duration::from_millis(i * 10),
                    100 + i as usize,
                    (i == 2).then_some(7),
                )
            })
            .collect();
        assert_eq!(wire, vec![0, 1, 2, 3, 4]);
        let mut out = Vec::new();
        let arrival = |ms| Some(t0 + Duration::from_millis(ms));
        // Out of order, one lost, one never sent.
        history.join(
            [
                (3, arrival(60)),
                (1, None),
                (0, arrival(40)),
                (2, arrival(55)),
                (99, arrival(1)),
            ],
            &mut out,
        );
        let seqs: Vec<u64> = out.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3]);
        assert_eq!(out[1].arrival, None);
        assert_eq!(out[2].probe, Some(7));
        assert_eq!(out[3].size, 103);
        assert_eq!(out[3].departure, t0 + Duration::from_millis(30));
        // Reported again: nothing new.
        history.join([(3, arrival(60)), (4, arrival(70))], &mut out);
        assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn prefetching_reaches_only_slots_of_the_ring() {
        let t0 = Instant::now();
        let mut history = SendHistory::new(t0);
        // Nothing sent yet: no "recent" slot before the first.
        history.prefetch_recent();
        history.prefetch_next();
        // Past a wrap of the ring, the recent slots straddle its end.
        for _ in 0..CAPACITY + 3 {
            history.prefetch_next();
            history.record(t0, 1200, None);
            history.prefetch_recent();
        }
        let mut out = Vec::new();
        let newest = (CAPACITY + 2) as u64;
        history.join([(newest, Some(t0))], &mut out);
        assert_eq!(out.len(), 1, "a hint changed nothing");
    }

    #[test]
    fn the_wire_number_wraps_and_old_packets_are_forgotten() {
        let t0 = Instant::now();
        let mut history = SendHistory::new(t0);
        let mut last = 0;
        for _ in 0..70_000 {
            last = history.record(t0, 1200, None);
        }
        assert_eq!(last, (69_999u64 % 65_536) as u16);
        let mut out = Vec::new();
        // Overwritten long ago.
        history.join([(10, Some(t0))], &mut out);
        assert!(out.is_empty());
        history.join([(69_999, Some(t0))], &mut out);
        assert_eq!(out.len(), 1);
    }
}
