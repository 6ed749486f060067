//! The rate the receiver acknowledged: bytes that arrived over the last [`WINDOW`] of arrival time.
//!
//! A decrease sets the estimate below this (what the path demonstrably carried), and an increase never
//! runs more than half again above it: a sender that is application-limited (sends less than the
//! estimate) learns nothing about the path above its own rate, which is what probes are for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_millis(500);
/// Below this span of arrivals the rate is not yet meaningful.
const MIN_SPAN: Duration = Duration::from_millis(150);
/// Packets remembered at most: a 500 ms window at 2000 packets a second (about 20 Mbit/s); above that
/// the window shortens, which changes nothing the rate says.
const CAPACITY: usize = 1024;

#[derive(Debug)]
pub struct AckedRate {
    arrivals: VecDeque<(Instant, usize)>,
    bytes: usize,
    newest: Option<Instant>,
}

impl Default for AckedRate {
    fn default() -> Self {
        Self::new()
    }
}

impl AckedRate {
    pub fn new() -> Self {
        Self {
            arrivals: VecDeque::with_capacity(CAPACITY),
            bytes: 0,
            newest: None,
        }
    }

    /// A packet of `size` bytes that arrived at `arrival` (receiver clock).
    pub fn add(&mut self, arrival: Instant, size: usize) {
        if self.arrivals.len() == CAPACITY
            && let Some((_, old)) = self.arrivals.pop_front()
        {
            self.bytes -= old;
        }
        // Feedback lists packets in send order; a reordered arrival still belongs to the window.
        self.arrivals.push_back((arrival, size));
        self.bytes += size;
        let newest = self.newest.map_or(arrival, |n| n.max(arrival));
        self.newest = Some(newest);
        while let Some(&(t, old)) = self.arrivals.front() {
            if newest.saturating_duration_since(t) <= WINDOW {
                break;
            }
            self.arrivals.pop_front();
            self.bytes -= old;
        }
    }

    /// Bits per second over the window, once it spans at least [`MIN_SPAN`].
    pub fn rate_bps(&self) -> Option<f64> {
        let &(first, first_size) = self.arrivals.front()?;
        let span = self.newest?.saturating_duration_since(first);
        // The first packet's bytes arrived before the span began.
        (span >= MIN_SPAN).then(|| (self.bytes - first_size) as f64 * 8.0 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_flow_reads_its_rate() {
        let mut acked = AckedRate::new();
        let t0 = Instant::now();
        assert_eq!(acked.rate_bps(), None);
        // 1000 bytes every 10 ms = 800 kbit/s, for 2 s.
        for i in 0..200u64 {
            acked.add(t0 + Duration::from_millis(i * 10), 1000);
        }
        let rate = acked.rate_bps().expect("rate");
        assert!((rate - 800_000.0).abs() < 20_000.0, "{rate}");
        // The window forgets: a slower second phase reads slow.
        for i in 200..400u64 {
            acked.add(t0 + Duration::from_millis(i * 20), 1000);
        }
        let rate = acked.rate_bps().expect("rate");
        assert!((rate - 400_000.0).abs() < 20_000.0, "{rate}");
    }
}
