//! How long the datagrams a worker sends waited since what caused them arrived.
//!
//! The kernel dates each received datagram ([`crate::udp::enable_arrival_times`]); the worker notes which
//! outbox datagrams handling it queued ([`SendDelays::caused`]) and, as each `sendmmsg` that carried some
//! of them returns, observes each one's delay ([`SendDelays::sent`]). That is the latency the server
//! adds to a forwarded packet: its wait in the socket, the work on the packets ahead of it and on
//! itself, and the send; the network and the clients' stacks are not in it, which is what the
//! benchmark's end-to-end latency cannot tell apart.

use std::ops::Range;
use std::time::Duration;

/// Received datagrams whose consequences wait in the outbox: the outbox positions of the datagrams
/// each queued, and when it arrived.
#[derive(Debug)]
pub struct SendDelays {
    waiting: Vec<(Range<usize>, Duration)>,
}

impl SendDelays {
    /// Room for `datagrams` received datagrams between two sends without allocating.
    pub fn with_capacity(datagrams: usize) -> Self {
        Self {
            waiting: Vec::with_capacity(datagrams),
        }
    }

    /// Handling a datagram that arrived at `arrived` (if the kernel said) queued the outbox's
    /// datagrams at `queued` (positions).
    pub fn caused(&mut self, queued: Range<usize>, arrived: Option<Duration>) {
        if let Some(arrived) = arrived
            && !queued.is_empty()
        {
            self.waiting.push((queued, arrived));
        }
    }

    /// The outbox's datagrams at `sent` (positions) were handed to the kernel at `now`:
    /// `observe(delay)` once for each one a received datagram caused.
    pub fn sent(&self, sent: &[usize], now: Duration, mut observe: impl FnMut(Duration)) {
        for &position in sent {
            // Entries are in outbox order (each datagram's copies follow the last's).
            let i = self
                .waiting
                .partition_point(|(queued, _)| queued.end <= position);
            if let Some((queued, arrived)) = self.waiting.get(i)
                && queued.contains(&position)
            {
                observe(crate::udp::delay_until_now(*arrived, now));
            }
        }
    }

    /// The outbox was emptied: forget what it held.
    pub fn clear(&mut self) {
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each sent datagram is dated by what caused it and by the send call that carried it; one
    /// caused by nothing received (a timer's) is not dated.
    #[test]
    fn each_sent_datagram_is_dated_by_its_cause_and_its_send() {
        let ms = Duration::from_millis;
        let mut delays = SendDelays::with_capacity(4);
        // Position 0 is a timer's; 1-3 one packet's copies; 4 nothing; 5 another's copy.
        delays.caused(1..4, Some(ms(100)));
        delays.caused(4..4, Some(ms(101)));
        delays.caused(4..5, None);
        delays.caused(5..6, Some(ms(104)));
        let mut seen = Vec::new();
        // Two send calls, grouped by destination: positions 0, 3, 1 at 105 ms, 5, 2, 4 at 107 ms.
        delays.sent(&[0, 3, 1], ms(105), |d| seen.push(d));
        delays.sent(&[5, 2, 4], ms(107), |d| seen.push(d));
        assert_eq!(seen, vec![ms(5), ms(5), ms(3), ms(7)]);
        delays.clear();
        delays.sent(&[0, 1, 2, 3, 4, 5], ms(110), |d| seen.push(d));
        assert_eq!(seen.len(), 4, "sent once only");
        // A wall clock stepped back is no delay, not a panic.
        delays.caused(0..1, Some(ms(200)));
        delays.sent(&[0], ms(150), |d| seen.push(d));
        assert_eq!(seen[4], Duration::ZERO);
    }
}
