//! The loss cap: heavy loss caps the estimate even where delay did not rise (a shallow buffer drops
//! before it queues).
//!
//! Over windows of at least [`MIN_PACKETS`] packets and [`MIN_WINDOW`]: more than 10 % lost caps the
//! rate at `(1 - loss / 2)` of the acknowledged rate (at most once per response time); under 2 % the
//! cap rises 8 % a second and disappears once it no longer binds. Between the two it holds. This is
//! the loss controller of the GCC draft (section 6), as a cap beside the delay-based rate.

use std::time::{Duration, Instant};

const MIN_PACKETS: usize = 20;
const MIN_WINDOW: Duration = Duration::from_millis(200);
const HIGH_LOSS: f64 = 0.10;
const LOW_LOSS: f64 = 0.02;

#[derive(Debug, Default)]
pub struct LossCap {
    cap: Option<f64>,
    lost: usize,
    total: usize,
    window_start: Option<Instant>,
    last_cut: Option<Instant>,
    last_raise: Option<Instant>,
    last_loss: Option<f64>,
}

impl LossCap {
    pub fn new() -> Self {
        Self::default()
    }

    /// The loss fraction of the last complete window.
    pub fn loss(&self) -> Option<f64> {
        self.last_loss
    }

    /// A probe carried `rate`: a cap below it is stale.
    pub fn raise_to(&mut self, rate: f64) {
        if let Some(cap) = self.cap.as_mut() {
            *cap = cap.max(rate);
        }
    }

    /// Folds in one feedback (`lost` of `total` packets) and returns the cap, if one binds.
    pub fn update(
        &mut self,
        now: Instant,
        lost: usize,
        total: usize,
        acked: Option<f64>,
        rtt: Duration,
    ) -> Option<f64> {
        self.lost += lost;
        self.total += total;
        let start = *self.window_start.get_or_insert(now);
        if self.total < MIN_PACKETS || now.saturating_duration_since(start) < MIN_WINDOW {
            return self.cap;
        }
        let loss = self.lost as f64 / self.total as f64;
        self.last_loss = Some(loss);
        self.lost = 0;
        self.total = 0;
        self.window_start = Some(now);
        if loss > HIGH_LOSS {
            let settled = self.last_cut.is_none_or(|t| {
                now.saturating_duration_since(t) >= rtt + Duration::from_millis(300)
            });
            if let (true, Some(acked)) = (settled, acked) {
                let cut = acked * (1.0 - loss / 2.0);
                self.cap = Some(self.cap.map_or(cut, |c| c.min(cut)));
                self.last_cut = Some(now);
            }
        } else if loss < LOW_LOSS
            && let Some(cap) = self.cap
        {
            let seconds = self.last_raise.map_or(0.0, |t| {
                now.saturating_duration_since(t).as_secs_f64().min(1.0)
            });
            let raised = cap * 1.08f64.powf(seconds) + 1000.0 * seconds;
            // Once the cap is well above what is acknowledged it no longer says anything.
            self.cap = match acked {
                Some(acked) if raised > 2.0 * acked => None,
                _ => Some(raised),
            };
        }
        self.last_raise = Some(now);
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(50);

    #[test]
    fn heavy_loss_caps_and_light_loss_lifts_the_cap() {
        let t0 = Instant::now();
        let mut loss = LossCap::new();
        assert_eq!(loss.update(t0, 0, 10, Some(1e6), RTT), None);
        // 30 % of 40 packets over 250 ms: cap at 85 % of the acknowledged rate.
        let cap = loss.update(t0 + Duration::from_millis(250), 12, 30, Some(1e6), RTT);
        assert_eq!(cap, Some(1e6 * (1.0 - 0.3 / 2.0)));
        // Clean windows: the cap rises and, far above the acknowledged rate, goes.
        let mut t = t0 + Duration::from_millis(250);
        let mut caps = Vec::new();
        for _ in 0..40 {
            t += Duration::from_millis(250);
            caps.push(loss.update(t, 0, 30, Some(500_000.0), RTT));
        }
        assert!(caps.windows(2).all(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => b >= a,
            (_, None) => true,
            (None, Some(_)) => false,
        }));
        assert_eq!(caps.last(), Some(&None));
    }

    #[test]
    fn moderate_loss_holds() {
        let t0 = Instant::now();
        let mut loss = LossCap::new();
        loss.update(t0, 0, 1, Some(1e6), RTT);
        let cap = loss.update(t0 + Duration::from_millis(250), 10, 30, Some(1e6), RTT);
        for i in 2..10u64 {
            // 5 % loss: neither cut nor raise.
            assert_eq!(
                loss.update(t0 + Duration::from_millis(250 * i), 2, 40, Some(1e6), RTT),
                cap
            );
        }
    }
}
