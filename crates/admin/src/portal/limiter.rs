//! Guess limiting: a source (IP address) that keeps failing (wrong meeting IDs, wrong passwords) is
//! refused for a while. Sans-IO: time is an argument, so it is tested without sleeping.
//!
//! Hand-written rather than `governor`: a rate limiter would also throttle a busy office's successful
//! joins behind one NAT address; this counts only failures, which is what guessing produces.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Failures allowed per source within one window.
pub const MAX_FAILURES: u32 = 10;
/// Length of the window, and of the lockout once a source exceeds it.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at most; when full, windows that have ended are dropped first.
const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Default)]
pub struct GuessLimiter {
    /// Per source: (window start in ms, failures in it).
    sources: HashMap<IpAddr, (u64, u32)>,
}

impl GuessLimiter {
    /// None if the source may try; else how long it must wait.
    pub fn check(&self, source: IpAddr, now_ms: u64) -> Option<Duration> {
        let &(start, failures) = self.sources.get(&source)?;
        let window_ms = WINDOW.as_millis() as u64;
        let elapsed = now_ms.saturating_sub(start);
        (failures >= MAX_FAILURES && elapsed < window_ms)
            .then(|| Duration::from_millis(window_ms - elapsed))
    }

    /// Count one failed attempt.
    pub fn failed(&mut self, source: IpAddr, now_ms: u64) {
        let window_ms = WINDOW.as_millis() as u64;
        if self.sources.len() >= MAX_SOURCES {
            self.sources
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < window_ms);
        }
        let entry = self.sources.entry(source).or_insert((now_ms, 0));
        if now_ms.saturating_sub(entry.0) >= window_ms {
            *entry = (now_ms, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_source_is_locked_after_too_many_failures_then_released() {
        let mut l = GuessLimiter::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.check(A, 1000 + u64::from(i)), None);
            l.failed(A, 1000 + u64::from(i));
        }
        let wait = l.check(A, 2000).expect("locked");
        assert_eq!(wait, Duration::from_millis(59_000));
        assert_eq!(l.check(B, 2000), None, "other sources are not affected");
        assert_eq!(l.check(A, 1000 + 60_000), None, "released after the window");
        l.failed(A, 1000 + 60_000);
        assert_eq!(
            l.check(A, 1000 + 60_001),
            None,
            "a new window starts afresh"
        );
    }
}
