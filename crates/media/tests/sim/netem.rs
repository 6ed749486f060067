//! A network emulator for the sim, in the spirit of Linux netem + tbf: a link toward one address with a
//! rate limit (packets leave one after another at that rate), a FIFO queue that holds at most so much
//! delay (tail drop beyond it, like a router's buffer), a propagation delay, and random loss from a seeded
//! generator so runs repeat exactly.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a link behaves.
#[derive(Debug, Clone, Copy)]
pub struct LinkSpec {
    pub rate_kbps: u32,
    /// One-way propagation delay, added after the packet has left the queue.
    pub delay: Duration,
    /// The queue drops a packet that would wait longer than this (a buffer of rate x this).
    pub max_queue_delay: Duration,
    /// Random loss on top of queue drops, in packets per thousand.
    pub loss_per_mille: u32,
}

/// What a link did so far; tests difference two readings for a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub offered: u64,
    pub dropped: u64,
    pub delivered_bytes: u64,
}

impl LinkCounters {
    /// Share of packets lost between `earlier` and this reading (0 when nothing was offered).
    pub fn loss_since(&self, earlier: &LinkCounters) -> f64 {
        let offered = self.offered - earlier.offered;
        if offered == 0 {
            return 0.0;
        }
        (self.dropped - earlier.dropped) as f64 / offered as f64
    }
}

pub struct Link {
    spec: LinkSpec,
    /// When the last accepted packet finishes leaving the queue.
    busy_until: Instant,
    in_flight: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    rng: u64,
    pub counters: LinkCounters,
}

impl Link {
    pub fn new(spec: LinkSpec, now: Instant) -> Self {
        Self {
            spec,
            busy_until: now,
            in_flight: VecDeque::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            counters: LinkCounters::default(),
        }
    }

    /// Change the rate from now on; packets already queued keep their departure times.
    pub fn set_rate(&mut self, kbps: u32) {
        self.spec.rate_kbps = kbps;
    }

    /// A packet enters the link at `now`. Returns false if it was dropped.
    pub fn offer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    ) -> bool {
        self.counters.offered += 1;
        let start = self.busy_until.max(now);
        if start - now > self.spec.max_queue_delay || self.random_loss() {
            self.counters.dropped += 1;
            return false;
        }
        // Serialisation time on the wire, including IP + UDP headers.
        let bits = (bytes.len() as u64 + 28) * 8;
        let nanos = bits * 1_000_000 / u64::from(self.spec.rate_kbps.max(1));
        self.busy_until = start + Duration::from_nanos(nanos);
        self.in_flight
            .push_back((self.busy_until + self.spec.delay, from, to, bytes));
        true
    }

    /// The next packet that has arrived by `now`, with its arrival time (FIFO, so in time order).
    pub fn poll_arrival(
        &mut self,
        now: Instant,
    ) -> Option<(Instant, SocketAddr, SocketAddr, Vec<u8>)> {
        if self.in_flight.front().is_some_and(|p| p.0 <= now) {
            let packet = self.in_flight.pop_front()?;
            self.counters.delivered_bytes += packet.3.len() as u64;
            return Some(packet);
        }
        None
    }

    /// xorshift64: deterministic, good enough to spread losses.
    fn random_loss(&mut self) -> bool {
        if self.spec.loss_per_mille == 0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1000) < u64::from(self.spec.loss_per_mille)
    }
}
