//! Confirming a probe before the estimate believes it.
//!
//! A probe cluster is a few kilobytes sent in 40 ms. A token-bucket shaper (an access link's policer,
//! `tc tbf`) lets its bucket's worth through at any rate after a quiet moment, so a cluster can cross
//! a 300 kbit/s link "at" 700 kbit/s: measured, that passes for capacity, the allocation switches a
//! subscriber to a layer the link cannot carry, and the next second shows it (the constrained-link
//! end-to-end test saw the top layer come back this way; `tests/cc_link.rs` reproduces it).
//!
//! So a probe that would raise the estimate starts a [`Trial`] instead: for [`DURATION`] the sender
//! fills the connection (media, and padding for the rest) up to the probed rate, and the estimate rises
//! only if the receiver got that at close to the rate while the delay detector saw no queue grow. A
//! bucket cannot hide a sustained rate: its burst is spent in the first few tens of milliseconds and
//! the excess queues. libwebrtc has no such step (an encoder ramps toward a new estimate over seconds
//! and its delay detector catches an overshoot on the way); an SFU switches layers in one step, so it
//! has to know before.

use std::time::{Duration, Instant};

use super::{PROBE_PACKET_BYTES, PacketResult};

/// How long the connection is filled to the probed rate.
pub const DURATION: Duration = Duration::from_millis(300);
/// What arrived must come to this share of the probed rate.
const PASS: f64 = 0.9;
/// A sender that comes back late (a timer that fired late) fills at most this much at once: what it
/// owes beyond is forgiven, or the catch-up burst would itself queue up on the path and fail the trial.
const MAX_CATCH_UP_BYTES: usize = 4 * PROBE_PACKET_BYTES;
/// Feedback on the trial's packets not in by this long after it: failed.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What a trial came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Its feedback is not all in yet.
    Pending,
    /// The path carried the rate.
    Passed(f64),
    /// It did not; the rate that arrived, if measured (0 when a queue grew).
    Failed(f64),
}

/// One probe result on trial: see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Trial {
    /// The probe cluster whose result this is, and the rate it measured.
    pub cluster: u32,
    pub rate: f64,
    started: Instant,
    until: Instant,
    /// Bytes sent since it started (media and padding).
    sent_bytes: usize,
    /// Of the packets sent during it: bytes that arrived, the first's arrival and size, the last
    /// arrival, and the latest departure reported.
    arrived_bytes: usize,
    first_arrival: Option<(Instant, usize)>,
    last_arrival: Option<Instant>,
    reported_until: Option<Instant>,
    overuse: bool,
    /// The sender asked for padding at or after `until`: nothing more is owed, whatever it missed.
    fill_over: bool,
}

impl Trial {
    pub fn new(now: Instant, cluster: u32, rate: f64) -> Self {
        Self {
            cluster,
            rate,
            started: now,
            until: now + DURATION,
            sent_bytes: 0,
            arrived_bytes: 0,
            first_arrival: None,
            last_arrival: None,
            reported_until: None,
            overuse: false,
            fill_over: false,
        }
    }

    /// A packet of `size` bytes left at `now`. (Also counted when late for the trial: a sender that
    /// fills until [`next_fill`](Self::next_fill) moves past now must see it move.)
    pub fn on_sent(&mut self, now: Instant, size: usize) {
        if now >= self.started {
            self.sent_bytes += size;
        }
    }

    /// Whether a padding packet is due now to keep the connection at the rate (see
    /// [`MAX_CATCH_UP_BYTES`]); the caller sends it and reports it through [`on_sent`](Self::on_sent).
    pub fn fill_due(&mut self, now: Instant) -> bool {
        if now >= self.until {
            self.fill_over = true;
            return false;
        }
        if now < self.started {
            return false;
        }
        let owed = (self.rate * (now - self.started).as_secs_f64() / 8.0) as usize;
        let behind = owed.saturating_sub(self.sent_bytes);
        if behind > MAX_CATCH_UP_BYTES {
            self.sent_bytes += behind - MAX_CATCH_UP_BYTES;
        }
        self.next_fill().is_some_and(|at| at <= now)
    }

    /// When the next padding packet is due to keep the connection at the rate; `None` once it is over.
    pub fn next_fill(&self) -> Option<Instant> {
        if self.fill_over {
            return None;
        }
        let bits = (self.sent_bytes + PROBE_PACKET_BYTES) as f64 * 8.0;
        let at = self.started + Duration::from_secs_f64(bits / self.rate);
        (at < self.until).then_some(at)
    }

    /// One reported packet (any: only those sent during the trial count).
    pub fn add(&mut self, r: &PacketResult) {
        if r.departure < self.started {
            return;
        }
        self.reported_until = Some(
            self.reported_until
                .map_or(r.departure, |t| t.max(r.departure)),
        );
        if r.departure >= self.until {
            return;
        }
        if let Some(arrival) = r.arrival {
            self.arrived_bytes += r.size;
            if self.first_arrival.is_none_or(|(t, _)| arrival < t) {
                self.first_arrival = Some((arrival, r.size));
            }
            self.last_arrival = Some(self.last_arrival.map_or(arrival, |t| t.max(arrival)));
        }
    }

    /// The delay detector saw the queue grow while the trial's packets were reported.
    pub fn on_overuse(&mut self) {
        self.overuse = true;
    }

    /// What the trial came to, as of `now`.
    pub fn verdict(&self, now: Instant) -> Verdict {
        if self.overuse {
            return Verdict::Failed(0.0);
        }
        if self.reported_until.is_none_or(|t| t < self.until) {
            return if now.saturating_duration_since(self.until) > TIMEOUT {
                Verdict::Failed(0.0)
            } else {
                Verdict::Pending
            };
        }
        let arrived = match (self.first_arrival, self.last_arrival) {
            (Some((first, first_size)), Some(last)) if last > first => {
                // The first packet's bytes arrived before the span began.
                (self.arrived_bytes - first_size) as f64 * 8.0 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        };
        if arrived >= PASS * self.rate {
            Verdict::Passed(self.rate)
        } else {
            Verdict::Failed(arrived)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a trial at `rate` over a link of `link_bps` with a token bucket of `burst` bytes that starts
    /// full; every packet is reported.
    fn run(rate: f64, link_bps: f64, burst: f64) -> Verdict {
        let t0 = Instant::now();
        let mut trial = Trial::new(t0, 1, rate);
        let mut tokens = burst;
        let mut link_free = t0;
        let mut last_token_time = t0;
        let mut seq = 0;
        while let Some(at) = trial.next_fill() {
            trial.on_sent(at, PROBE_PACKET_BYTES);
            let start = link_free.max(at);
            let saved =
                (tokens + (start - last_token_time).as_secs_f64() * link_bps / 8.0).min(burst);
            let lacking = (PROBE_PACKET_BYTES as f64 - saved).max(0.0);
            let leaves = start + Duration::from_secs_f64(lacking * 8.0 / link_bps);
            tokens = (saved - PROBE_PACKET_BYTES as f64).max(0.0);
            last_token_time = leaves;
            link_free = leaves;
            trial.add(&PacketResult {
                seq,
                size: PROBE_PACKET_BYTES,
                departure: at,
                arrival: Some(leaves + Duration::from_millis(5)),
                probe: None,
            });
            seq += 1;
        }
        assert_eq!(
            trial.verdict(t0),
            Verdict::Pending,
            "not yet reported past its end"
        );
        trial.add(&PacketResult {
            seq,
            size: 100,
            departure: t0 + DURATION,
            arrival: None,
            probe: None,
        });
        trial.verdict(t0 + DURATION)
    }

    #[test]
    fn a_path_that_carries_the_rate_passes() {
        assert_eq!(run(700_000.0, 1_000_000.0, 0.0), Verdict::Passed(700_000.0));
        assert_eq!(
            run(700_000.0, 1_000_000.0, 4096.0),
            Verdict::Passed(700_000.0)
        );
    }

    #[test]
    fn a_token_bucket_cannot_pass_a_sustained_rate_off_as_its_own() {
        match run(700_000.0, 300_000.0, 4096.0) {
            Verdict::Failed(arrived) => assert!(arrived < 400_000.0, "{arrived}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overuse_fails_it_at_once() {
        let t0 = Instant::now();
        let mut trial = Trial::new(t0, 1, 500_000.0);
        assert_eq!(trial.verdict(t0), Verdict::Pending);
        trial.on_overuse();
        assert_eq!(trial.verdict(t0), Verdict::Failed(0.0));
    }

    #[test]
    fn feedback_that_never_comes_fails_it() {
        let t0 = Instant::now();
        let trial = Trial::new(t0, 1, 500_000.0);
        assert_eq!(trial.verdict(t0 + DURATION + TIMEOUT / 2), Verdict::Pending);
        assert_eq!(
            trial.verdict(t0 + DURATION + TIMEOUT + Duration::from_millis(1)),
            Verdict::Failed(0.0)
        );
    }

    /// A sender that comes back only after the trial ended is told nothing more is due: the padding it
    /// missed is not owed (a deadline left in the past woke its worker without pause until the
    /// trial's feedback was in, ~100 ms later: thousands of empty wake-ups a second under load).
    #[test]
    fn a_sender_back_after_the_end_is_not_woken_again() {
        let t0 = Instant::now();
        let mut trial = Trial::new(t0, 1, 1_000_000.0);
        // Filled on time until 10 ms before the end, then the worker comes back late.
        let mut now = t0;
        while now < t0 + DURATION - Duration::from_millis(10) {
            while trial.fill_due(now) {
                trial.on_sent(now, PROBE_PACKET_BYTES);
            }
            now += Duration::from_millis(1);
        }
        let before_end = trial.next_fill().expect("still filling");
        assert!(before_end < t0 + DURATION);
        let late = t0 + DURATION + Duration::from_millis(2);
        assert!(!trial.fill_due(late), "over");
        assert_eq!(trial.next_fill(), None, "no deadline in the past");
    }

    /// A sender back 200 ms late fills a few packets at once, not 200 ms worth.
    #[test]
    fn a_late_sender_does_not_catch_up_in_one_burst() {
        let t0 = Instant::now();
        let mut trial = Trial::new(t0, 1, 1_000_000.0);
        let late = t0 + Duration::from_millis(200);
        let mut burst = 0;
        while trial.fill_due(late) {
            trial.on_sent(late, PROBE_PACKET_BYTES);
            burst += 1;
            assert!(burst < 100, "no end to the burst");
        }
        assert_eq!(burst, MAX_CATCH_UP_BYTES / PROBE_PACKET_BYTES);
        // From there on, at the rate again.
        let next = trial.next_fill().expect("due");
        assert!(
            next > late && next - late < Duration::from_millis(3),
            "{:?}",
            next - late
        );
        assert!(!trial.fill_due(t0 + DURATION), "over");
    }

    /// Media sent during the trial counts toward the rate: padding only fills the rest.
    #[test]
    fn media_sent_meanwhile_leaves_less_to_fill() {
        let t0 = Instant::now();
        let mut trial = Trial::new(t0, 1, 800_000.0);
        let first = trial.next_fill().expect("due");
        assert_eq!(
            first,
            t0 + Duration::from_secs_f64(PROBE_PACKET_BYTES as f64 * 8.0 / 800_000.0)
        );
        // 10 kB of media at once: the next padding waits until the rate has caught up with it.
        trial.on_sent(t0, 10_000);
        let next = trial.next_fill().expect("due");
        assert!(next - t0 >= Duration::from_millis(100), "{:?}", next - t0);
        // 50 kB: more than the whole trial's worth; nothing left to fill.
        trial.on_sent(t0, 50_000);
        assert_eq!(trial.next_fill(), None);
    }
}
