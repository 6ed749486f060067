//! How long the datagrams a worker sends waited since what caused them arrived.
//!
//! The kernel dates each received datagram ([`crate::udp::enable_arrival_times`]); the worker notes how
//! many outbox datagrams handling it queued ([`SendDelays::caused`]) and, once the send call that
//! carried them returned, observes each one's delay ([`SendDelays::sent`]). That is the latency the
//! server adds to a forwarded packet: its wait in the socket, the work on the packets ahead of it and
//! on itself, and the send; the network and the clients' stacks are not in it, which is what the
//! benchmark's end-to-end latency cannot tell apart.

use std::time::Duration;

/// Received datagrams whose consequences wait in the outbox: how many datagrams each queued, and
/// when it arrived.
#[derive(Debug)]
pub struct SendDelays {
    waiting: Vec<(usize, Duration)>,
}

impl SendDelays {
    /// Room for `datagrams` received datagrams between two sends without allocating.
    pub fn with_capacity(datagrams: usize) -> Self {
        Self {
            waiting: Vec::with_capacity(datagrams),
        }
    }

    /// Handling a datagram that arrived at `arrived` (if the kernel said) queued `queued` datagrams.
    pub fn caused(&mut self, queued: usize, arrived: Option<Duration>) {
        if let (Some(arrived), true) = (arrived, queued > 0) {
            self.waiting.push((queued, arrived));
        }
    }

    /// Everything noted so far was handed to the kernel at `now`: `observe(delay)` once per datagram.
    pub fn sent(&mut self, now: Duration, mut observe: impl FnMut(Duration)) {
        for &(queued, arrived) in &self.waiting {
            let delay = crate::udp::delay_until_now(arrived, now);
            for _ in 0..queued {
                observe(delay);
            }
        }
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sent_datagram_is_dated_by_what_caused_it() {
        let ms = Duration::from_millis;
        let mut delays = SendDelays::with_capacity(4);
        delays.caused(3, Some(ms(100)));
        delays.caused(0, Some(ms(101)));
        delays.caused(2, None);
        delays.caused(1, Some(ms(104)));
        let mut seen = Vec::new();
        delays.sent(ms(105), |d| seen.push(d));
        assert_eq!(seen, vec![ms(5), ms(5), ms(5), ms(1)]);
        // Sent once only.
        delays.sent(ms(110), |d| seen.push(d));
        assert_eq!(seen.len(), 4);
        // A wall clock stepped back is no delay, not a panic.
        delays.caused(1, Some(ms(200)));
        delays.sent(ms(150), |d| seen.push(d));
        assert_eq!(seen[4], Duration::ZERO);
    }
}
