//! Rate control: additive increase, multiplicative decrease, driven by the delay detector's usage.
//!
//! Overuse cuts the rate to [`BETA`] of what the receiver acknowledged; normal usage climbs, by 8 % a
//! second while far from the capacity last found, and by about a packet per response time once near
//! it; underuse holds (a queue is draining, let it). An increase never takes the rate past 1.5x the
//! acknowledged rate (+10 kbit/s): above what it actually sends, a sender learns nothing.

use std::time::{Duration, Instant};

use super::Usage;

const BETA: f64 = 0.85;
const MULTIPLICATIVE_PER_SECOND: f64 = 1.08;
/// The additive step assumes packets of this size.
const PACKET_BITS: f64 = 1200.0 * 8.0;
const MIN_ADDITIVE_BPS_PER_SECOND: f64 = 4_000.0;
/// Weight of a new sample in the link capacity average.
const CAPACITY_ALPHA: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateState {
    Hold,
    Increase,
    Decrease,
}

/// Where the link's capacity was found last (the acknowledged rate at decreases), with its spread.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    mean: f64,
    /// Variance normalised by the mean (bits/s), as libwebrtc keeps it.
    variance: f64,
}

impl Capacity {
    fn deviation(&self) -> f64 {
        (self.variance * self.mean).sqrt()
    }
}

#[derive(Debug)]
pub struct RateControl {
    rate: f64,
    min: f64,
    max: f64,
    state: RateState,
    capacity: Option<Capacity>,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
}

impl RateControl {
    pub fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            rate: initial.clamp(min, max),
            min,
            max,
            state: RateState::Hold,
            capacity: None,
            last_update: None,
            last_decrease: None,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn state(&self) -> RateState {
        self.state
    }

    /// Sets the rate outright (a probe measured it) and forgets the old capacity, which it disproved.
    pub fn jump_to(&mut self, now: Instant, rate: f64) -> f64 {
        self.rate = rate.clamp(self.min, self.max);
        self.capacity = None;
        self.last_update = Some(now);
        self.rate
    }

    /// Folds in one feedback's usage and the acknowledged rate; returns the new rate.
    pub fn update(&mut self, now: Instant, usage: Usage, acked: Option<f64>, rtt: Duration) -> f64 {
        self.state = match (usage, self.state) {
            (Usage::Over, _) => RateState::Decrease,
            (Usage::Under, _) => RateState::Hold,
            (Usage::Normal, RateState::Hold) => RateState::Increase,
            (Usage::Normal, state) => state,
        };
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        match self.state {
            RateState::Hold => {}
            RateState::Increase => self.increase(elapsed, acked, rtt),
            RateState::Decrease => self.decrease(now, acked, rtt),
        }
        self.rate = self.rate.clamp(self.min, self.max);
        self.rate
    }

    fn increase(&mut self, elapsed: Duration, acked: Option<f64>, rtt: Duration) {
        if let (Some(acked), Some(capacity)) = (acked, self.capacity)
            && acked > capacity.mean + 3.0 * capacity.deviation()
        {
            // Carried more than the capacity found before: that capacity is gone.
            self.capacity = None;
        }
        let seconds = elapsed.as_secs_f64();
        let increased = match self.capacity {
            Some(capacity) if self.rate > capacity.mean - 3.0 * capacity.deviation() => {
                // Near the capacity found last: about one packet per response time.
                let response = rtt.as_secs_f64() + 0.1;
                let per_second = (PACKET_BITS / response).max(MIN_ADDITIVE_BPS_PER_SECOND);
                self.rate + per_second * seconds
            }
            _ => self.rate * MULTIPLICATIVE_PER_SECOND.powf(seconds) + 1000.0 * seconds,
        };
        let limit = acked.map_or(f64::INFINITY, |a| 1.5 * a + 10_000.0);
        // Never lowered by the limit: that is a decrease's job.
        self.rate = self.rate.max(increased.min(limit));
    }

    fn decrease(&mut self, now: Instant, acked: Option<f64>, rtt: Duration) {
        let Some(acked) = acked else {
            // Nothing to base a cut on yet: hold until the window fills.
            self.state = RateState::Hold;
            return;
        };
        // One cut per response time, unless the path now carries less than half the rate.
        let settled = self
            .last_decrease
            .is_none_or(|t| now.saturating_duration_since(t) >= rtt + Duration::from_millis(100));
        if settled || acked < 0.5 * self.rate {
            let cut = BETA * acked;
            if cut < self.rate {
                self.rate = cut;
            }
            self.capacity = Some(match self.capacity {
                None => Capacity {
                    mean: acked,
                    variance: 0.4,
                },
                Some(c) => {
                    let mean = (1.0 - CAPACITY_ALPHA) * c.mean + CAPACITY_ALPHA * acked;
                    let error = c.mean - acked;
                    let variance = ((1.0 - CAPACITY_ALPHA) * c.variance
                        + CAPACITY_ALPHA * error * error / c.mean.max(1.0))
                    .clamp(0.4, 2.5);
                    Capacity { mean, variance }
                }
            });
            self.last_decrease = Some(now);
        }
        self.state = RateState::Hold;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(50);

    #[test]
    fn normal_usage_climbs_eight_percent_a_second_far_from_capacity() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(500_000.0, 10_000.0, 10_000_000.0);
        for i in 0..=10u64 {
            rc.update(
                t0 + Duration::from_millis(i * 100),
                Usage::Normal,
                Some(1_000_000.0),
                RTT,
            );
        }
        // First update only enters Increase; then 1 s of 8 %/s.
        let expected = 500_000.0 * 1.08 + 1000.0;
        assert!((rc.rate() - expected).abs() < 2_000.0, "{}", rc.rate());
    }

    #[test]
    fn overuse_cuts_to_beta_of_the_acknowledged_rate_once_per_response_time() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(1_000_000.0, 10_000.0, 10_000_000.0);
        rc.update(t0, Usage::Over, Some(800_000.0), RTT);
        assert_eq!(rc.rate(), 0.85 * 800_000.0);
        assert_eq!(rc.state(), RateState::Hold);
        // Again 20 ms later: too soon for another cut.
        rc.update(
            t0 + Duration::from_millis(20),
            Usage::Over,
            Some(700_000.0),
            RTT,
        );
        assert_eq!(rc.rate(), 0.85 * 800_000.0);
        rc.update(
            t0 + Duration::from_millis(200),
            Usage::Over,
            Some(700_000.0),
            RTT,
        );
        assert_eq!(rc.rate(), 0.85 * 700_000.0);
    }

    #[test]
    fn near_the_capacity_found_it_climbs_additively() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(1_000_000.0, 10_000.0, 10_000_000.0);
        rc.update(t0, Usage::Over, Some(1_000_000.0), RTT);
        let after_cut = rc.rate();
        for i in 1..=11u64 {
            rc.update(
                t0 + Duration::from_millis(i * 100),
                Usage::Normal,
                Some(1_000_000.0),
                RTT,
            );
        }
        // One second of one 1200-byte packet per 150 ms: 64 kbit/s, far below 8 %.
        let climbed = rc.rate() - after_cut;
        assert!((40_000.0..80_000.0).contains(&climbed), "{climbed}");
    }

    #[test]
    fn an_application_limited_sender_does_not_run_away() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(300_000.0, 10_000.0, 10_000_000.0);
        for i in 0..600u64 {
            rc.update(
                t0 + Duration::from_millis(i * 100),
                Usage::Normal,
                Some(200_000.0),
                RTT,
            );
        }
        assert!(
            rc.rate() <= 1.5 * 200_000.0 + 10_000.0 + 1.0,
            "{}",
            rc.rate()
        );
    }

    #[test]
    fn underuse_holds() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(500_000.0, 10_000.0, 10_000_000.0);
        for i in 0..20u64 {
            rc.update(
                t0 + Duration::from_millis(i * 100),
                Usage::Under,
                Some(500_000.0),
                RTT,
            );
        }
        assert_eq!(rc.rate(), 500_000.0);
    }
}
