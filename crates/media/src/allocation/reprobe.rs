//! Re-arming the estimator's allocation probe while a subscriber's estimate stays under what its
//! allocation wants (issue 6: climbing back after a link recovers or a meeting shrinks).
//!
//! str0m's estimator (GCC) raises its estimate at most to 1.5x what it saw acknowledged, so a subscriber
//! held on a lower layer cannot earn the higher one by traffic alone: it needs a probe. str0m probes on
//! its own at start, in exponential steps after a probe that succeeded, periodically while the sender is
//! application-limited (which a subscriber on a layer that fills its estimate is not), after 15 s of a
//! stagnant estimate, and when the *desired* rate rises above the estimate ("allocation probe"). Once the
//! desired rate is set, repeating it probes no more. So while the estimate is the binding limit and below
//! the wanted rate, this state machine dips the desired rate to the estimate for one tick and restores
//! it: the restore is a rise, and str0m probes at the wanted rate (capped at twice the estimate).
//!
//! Probes on a link that really is full cost a short burst of queueing, so the wait between attempts
//! doubles from [`FIRST_WAIT`] up to [`MAX_WAIT`] while the estimate does not rise between them; it is
//! back to the first wait after a rise, and starts over when the wanted rate rises a lot.

use std::time::{Duration, Instant};

/// The wait before the first re-probe once the estimate falls short: longer than a layer switch and the
/// estimator's own reaction to it, shorter than the 15 s after which str0m's stagnation probe fires.
pub const FIRST_WAIT: Duration = Duration::from_secs(3);
/// The longest wait between re-probes on a link that stays full. It is also how long a link that
/// recovers may wait for the next probe: an e2e run whose link came back 3 s after a re-probe climbed only
/// at the next one, 9 s later, with a 12 s cap. WebRTC probes an application-limited link every 5 s.
pub const MAX_WAIT: Duration = Duration::from_secs(6);
/// The estimate must fall short of the wanted rate by more than this share to count as unmet demand
/// (an estimate wobbling a few percent under a converged allocation is not worth a probe).
const SHORT_BY: f64 = 0.05;
/// A rise of the wanted rate by more than this share starts over (the meeting shrank, a screen share
/// began). Smaller moves are the measured layer rates breathing (the allocation recomputes every second).
const WANT_RISE: f64 = 0.25;
/// A rise of the estimate by this share since the last re-probe counts as progress (the next wait is the
/// first one again).
const PROGRESS: f64 = 0.10;

/// What the shard should set as the estimator's desired rate now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Set the desired rate to this (kbps), the current estimate, for one tick.
    Dip(u32),
    /// Set the desired rate back to the wanted rate: the rise makes str0m probe.
    Restore,
}

/// One subscriber's re-probe state.
#[derive(Debug, Clone, Default)]
pub struct Reprobe {
    /// When demand went unmet (or the last re-probe happened), the wait from then, and the estimate then
    /// (kbps).
    pending: Option<Pending>,
    /// The desired rate is dipped: restore it at the next tick.
    dipped: bool,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    since: Instant,
    wait: Duration,
    estimate: u32,
    /// The wanted rate when demand went unmet (kbps): a much higher one starts over.
    wanted: u32,
}

impl Reprobe {
    /// Called every tick with the subscriber's estimate (kbps), the wanted rate its estimator is aimed
    /// at (kbps), and whether something other than the estimate (the attendee's own cap, a REMB) limits
    /// it more: then probing cannot help.
    pub fn on_tick(
        &mut self,
        now: Instant,
        estimate: u32,
        wanted: u32,
        capped_below_estimate: bool,
    ) -> Option<Action> {
        if self.dipped {
            self.dipped = false;
            return Some(Action::Restore);
        }
        let short = f64::from(estimate) * (1.0 + SHORT_BY) < f64::from(wanted);
        if !short || capped_below_estimate {
            self.pending = None;
            return None;
        }
        let Some(p) = self
            .pending
            .filter(|p| f64::from(wanted) <= f64::from(p.wanted) * (1.0 + WANT_RISE))
        else {
            // Demand just went unmet, or rose a lot (the meeting shrank): str0m probes once by itself
            // (the rise), and if that did not help, the first wait starts now.
            self.pending = Some(Pending {
                since: now,
                wait: FIRST_WAIT,
                estimate,
                wanted,
            });
            return None;
        };
        if now.saturating_duration_since(p.since) < p.wait {
            return None;
        }
        // The estimate rose since the last attempt (the probe worked, or it climbs): try again soon.
        // Otherwise the link is likely full: wait twice as long. (A rise does not restart the wait: an
        // estimate that wobbles by 10 % would then never be probed.)
        let progressed = f64::from(estimate) >= f64::from(p.estimate) * (1.0 + PROGRESS);
        self.pending = Some(Pending {
            since: now,
            wait: if progressed {
                FIRST_WAIT
            } else {
                (p.wait * 2).min(MAX_WAIT)
            },
            estimate,
            wanted: p.wanted,
        });
        self.dipped = true;
        Some(Action::Dip(estimate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(200);

    /// Runs `r` for `secs` seconds of ticks at a fixed estimate and wanted rate; returns the instants
    /// (seconds from `start`) of each dip and checks every dip is restored on the next tick.
    fn run(
        r: &mut Reprobe,
        start: Instant,
        from: f64,
        secs: f64,
        est: u32,
        wanted: u32,
    ) -> Vec<f64> {
        let mut dips = Vec::new();
        let mut t = from;
        let mut expect_restore = false;
        while t < from + secs {
            let now = start + Duration::from_secs_f64(t);
            let action = r.on_tick(now, est, wanted, false);
            if expect_restore {
                assert_eq!(action, Some(Action::Restore), "at {t}");
                expect_restore = false;
            } else if let Some(a) = action {
                assert_eq!(a, Action::Dip(est), "at {t}");
                dips.push((t * 10.0).round() / 10.0);
                expect_restore = true;
            }
            t += TICK.as_secs_f64();
        }
        dips
    }

    #[test]
    fn a_short_estimate_is_reprobed_with_a_doubling_wait() {
        let start = Instant::now();
        let mut r = Reprobe::default();
        let dips = run(&mut r, start, 0.0, 30.0, 400, 800);
        // 3 s, then +6, +6, ... (the wait doubles from 3 s and is capped at 6)
        assert_eq!(dips, vec![3.0, 9.0, 15.0, 21.0, 27.0]);
    }

    #[test]
    fn an_estimate_that_meets_the_want_is_left_alone() {
        let start = Instant::now();
        let mut r = Reprobe::default();
        assert!(run(&mut r, start, 0.0, 30.0, 800, 800).is_empty());
        // Within 5 %: converged, not short.
        assert!(run(&mut r, start, 30.0, 30.0, 770, 800).is_empty());
    }

    #[test]
    fn a_cap_below_the_estimate_means_no_probe() {
        let start = Instant::now();
        let mut r = Reprobe::default();
        for i in 0..300 {
            let now = start + TICK * i;
            assert_eq!(r.on_tick(now, 400, 800, true), None);
        }
    }

    #[test]
    fn progress_shortens_the_next_wait_and_a_new_want_starts_over() {
        let start = Instant::now();
        let mut r = Reprobe::default();
        assert_eq!(run(&mut r, start, 0.0, 10.0, 400, 800), vec![3.0, 9.0]);
        // The estimate rose 25 % after the probe at 9 s: that one still waits its 6 s, the next only 3.
        assert_eq!(run(&mut r, start, 10.0, 9.0, 500, 800), vec![15.0, 18.0]);
        // A much higher wanted rate (the meeting shrank): 3 s from when it was seen.
        assert_eq!(run(&mut r, start, 19.0, 4.0, 500, 1500), vec![22.0]);
    }

    #[test]
    fn a_breathing_wanted_rate_does_not_restart_the_wait() {
        let start = Instant::now();
        let mut r = Reprobe::default();
        let mut dips = Vec::new();
        for i in 0..50u32 {
            // 620-690 kbps wanted, recomputed every second from measured layer rates; estimate 260.
            let wanted = 620 + (i * 37) % 70;
            if let Some(Action::Dip(_)) = r.on_tick(start + TICK * i, 260, wanted, false) {
                dips.push(i);
            }
        }
        assert_eq!(
            dips,
            vec![15, 45],
            "dips at these ticks (3 s, then 6 s later)"
        );
    }

    #[test]
    fn a_wobbling_estimate_is_still_probed() {
        let start = Instant::now();
        let mut r = Reprobe::default();
        let mut dips = 0;
        for i in 0..100 {
            // 250, 290, 250, 290, ... kbps: 16 % swings around a link that is full.
            let est = if i % 2 == 0 { 250 } else { 290 };
            if let Some(Action::Dip(_)) = r.on_tick(start + TICK * i, est, 800, false) {
                dips += 1;
            }
        }
        // 20 s: at 3 s, then 6 or 3 s later depending on the wobble's phase: at least three attempts.
        assert!(dips >= 3, "{dips} re-probes in 20 s");
    }

    #[test]
    fn demand_met_in_between_resets_the_wait() {
        let start = Instant::now();
        let mut r = Reprobe::default();
        assert_eq!(run(&mut r, start, 0.0, 10.0, 400, 800), vec![3.0, 9.0]);
        assert!(run(&mut r, start, 10.0, 2.0, 900, 800).is_empty());
        assert_eq!(run(&mut r, start, 12.0, 4.0, 400, 800), vec![15.0]);
    }
}
