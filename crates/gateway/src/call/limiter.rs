//! Per-source token buckets for INVITE and OPTIONS outside dialogs: a flood from one address is
//! answered 503 (Retry-After) and counted, and does not starve other callers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Burst and sustained rate per source address.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub burst: f64,
    pub per_second: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        // A room system sends an INVITE per call and an OPTIONS every 30-60 s; a PBX trunk more.
        Self {
            burst: 20.0,
            per_second: 5.0,
        }
    }
}

const CLEANUP_EVERY: Duration = Duration::from_secs(60);
/// Most sources tracked at once. When a flood from many (spoofed) addresses fills the table, new
/// sources are refused until the cleanup frees room: memory stays bounded, known callers keep their
/// buckets.
const MAX_SOURCES: usize = 65_536;

pub(super) struct Limiter {
    rate: RateLimit,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    next_cleanup: Option<Instant>,
}

impl Limiter {
    pub fn new(rate: RateLimit) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
            next_cleanup: None,
        }
    }

    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let rate = self.rate;
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            return false;
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((rate.burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate.per_second).min(rate.burst);
        *at = now;
        if self.next_cleanup.is_none() {
            self.next_cleanup = Some(now + CLEANUP_EVERY);
        }
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn next_cleanup(&self) -> Option<Instant> {
        self.next_cleanup
    }

    /// Forget sources whose bucket is full again.
    pub fn cleanup(&mut self, now: Instant) {
        if self.next_cleanup.is_none_or(|t| t > now) {
            return;
        }
        let rate = self.rate;
        self.buckets.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate.per_second
                < rate.burst
        });
        self.next_cleanup = (!self.buckets.is_empty()).then(|| now + CLEANUP_EVERY);
    }
}
