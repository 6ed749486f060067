//! Send-side congestion control for the fast path: transport-wide feedback in, a target bitrate and probe
//! clusters out.
//!
//! Why our own: the fast path sends forwarded media itself, so str0m's estimator (internal to str0m,
//! fed only by the packets str0m sends) cannot see it. The one sans-IO alternative on crates.io,
//! `rtc-interceptor`'s GCC (0.21), has no probing and, in a link simulation like the one in
//! `crates/media/tests/cc_link.rs`, never declared overuse while a 300 kbit/s link held a 300 ms
//! queue: its loss half did all the work (`bench/results/2026-12-06-notes.md`). This follows the
//! structure of Google Congestion Control as libwebrtc runs it (draft-ietf-rmcat-gcc-02 plus probing):
//!
//! ```text
//! feedback -> PacketResult (send time, size, arrival) -+-> DelayDetector (trendline) -> Usage -+
//!                                                      +-> AckedRate ------------------------+-> RateControl (AIMD)
//!                                                      +-> ProbeResults -> Trial -> jump up +          |
//!                                                      +-> LossCap (heavy loss only) ------------- min -+-> target
//! ```
//!
//! A probe that would raise the estimate is put on [`Trial`] first: the connection is filled to the
//! probed rate for 300 ms, and the estimate rises only if that arrived without a queue growing
//! (a token-bucket shaper passes a probe cluster's few kilobytes at any rate; see `trial.rs`).
//!
//! Every instant is an argument; nothing here reads a clock or allocates after construction (the
//! windows are bounded and preallocated), so a bitrate trajectory is a pure function of its input.

mod acked;
mod aimd;
mod delay;
mod loss;
mod probe;
mod trial;

use std::time::{Duration, Instant};

pub use acked::AckedRate;
pub use aimd::{RateControl, RateState};
pub use delay::{DelayDetector, Usage};
pub use loss::LossCap;
pub use probe::{PROBE_PACKET_BYTES, ProbeCluster, ProbeController, ProbeResults};
pub use trial::{Trial, Verdict};

/// One sent packet joined with what the receiver reported about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    /// Transport-wide sequence number, unwrapped (send order).
    pub seq: u64,
    /// Bytes on the wire.
    pub size: usize,
    /// When it left (the pacer's release instant, not when media was queued).
    pub departure: Instant,
    /// When it arrived, on the receiver's clock (only differences matter); `None`: reported lost.
    pub arrival: Option<Instant>,
    /// The probe cluster it belonged to.
    pub probe: Option<u32>,
}

/// Limits and starting point of an estimator.
#[derive(Debug, Clone, Copy)]
pub struct BweConfig {
    pub initial_bps: f64,
    pub min_bps: f64,
    pub max_bps: f64,
}

impl Default for BweConfig {
    fn default() -> Self {
        Self {
            initial_bps: 300_000.0,
            min_bps: 30_000.0,
            max_bps: 10_000_000.0,
        }
    }
}

/// The send-side bandwidth estimate of one transport (one subscriber connection).
#[derive(Debug)]
pub struct SendSideBwe {
    config: BweConfig,
    delay: DelayDetector,
    rate: RateControl,
    acked: AckedRate,
    loss: LossCap,
    probes: ProbeResults,
    controller: ProbeController,
    /// A probe result being confirmed before the estimate takes it.
    trial: Option<Trial>,
    rtt: Duration,
    target: f64,
}

impl SendSideBwe {
    pub fn new(config: BweConfig) -> Self {
        let initial = config.initial_bps.clamp(config.min_bps, config.max_bps);
        Self {
            config,
            delay: DelayDetector::new(),
            rate: RateControl::new(initial, config.min_bps, config.max_bps),
            acked: AckedRate::new(),
            loss: LossCap::new(),
            probes: ProbeResults::new(),
            controller: ProbeController::new(),
            trial: None,
            rtt: Duration::from_millis(100),
            target: initial,
        }
    }

    /// The estimate: what the connection may carry, in bits per second.
    pub fn target_bps(&self) -> f64 {
        self.target
    }

    /// The rate the receiver acknowledged lately, if enough arrived to say.
    pub fn acked_bps(&self) -> Option<f64> {
        self.acked.rate_bps()
    }

    /// What the delay detector makes of the path now.
    pub fn usage(&self) -> Usage {
        self.delay.usage()
    }

    /// The round-trip time, from RTCP (receiver reports); it paces decreases and additive increases.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt.clamp(Duration::from_millis(1), Duration::from_secs(2));
    }

    /// What the sender would send with no limit (the allocation's wish): probing stops at it.
    pub fn set_wanted(&mut self, now: Instant, wanted_bps: f64) {
        self.controller.set_wanted(now, wanted_bps, self.target);
    }

    /// The next probe cluster to send, when one is due (none while a probe is on trial).
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeCluster> {
        if self.trial.is_some() {
            return None;
        }
        let cluster = self.controller.poll(now, self.target)?;
        self.probes.expect(now, cluster);
        Some(cluster)
    }

    /// Starts fetching what [`on_sent`](Self::on_sent) touches (`fastpath::prefetch`).
    pub fn prefetch_for_send(&self) {
        crate::fastpath::prefetch::prefetch(&self.trial);
    }

    /// Starts fetching what [`on_feedback`](Self::on_feedback) touches: most of the estimator.
    pub fn prefetch_for_feedback(&self) {
        crate::fastpath::prefetch::prefetch_all(self);
    }

    /// A packet of `size` bytes (media, retransmission or padding) left at `now`.
    pub fn on_sent(&mut self, now: Instant, size: usize) {
        if let Some(trial) = self.trial.as_mut() {
            trial.on_sent(now, size);
        }
    }

    /// Whether a padding packet is due now to fill the connection for a probe on trial; the sender
    /// sends one (reporting it through [`on_sent`](Self::on_sent)) and asks again.
    pub fn poll_fill(&mut self, now: Instant) -> bool {
        self.trial.as_mut().is_some_and(|t| t.fill_due(now))
    }

    /// When the next padding packet of a trial is due (none when no trial runs).
    pub fn next_fill(&self) -> Option<Instant> {
        self.trial.as_ref().and_then(Trial::next_fill)
    }

    /// Folds in one transport-wide feedback: the packets it covered, in send order.
    pub fn on_feedback(&mut self, now: Instant, results: &[PacketResult]) {
        if results.is_empty() {
            return;
        }
        let mut overuse = false;
        let mut lost = 0;
        for r in results {
            match r.arrival {
                Some(arrival) => {
                    self.acked.add(arrival, r.size);
                    overuse |= self.delay.update(r.departure, arrival) == Usage::Over;
                }
                None => lost += 1,
            }
            if let Some(id) = r.probe {
                self.probes.add(id, r);
            }
            if let Some(trial) = self.trial.as_mut() {
                trial.add(r);
            }
        }
        let usage = if overuse {
            Usage::Over
        } else {
            self.delay.usage()
        };
        let acked = self.acked.rate_bps();
        let mut delay_based = self.rate.update(now, usage, acked, self.rtt);
        if let Some((cluster, probed)) = self.probes.take_result() {
            // A probe measured more than the estimate: the path may carry it. It goes on trial;
            // if the path does carry it, the estimate jumps there (libwebrtc jumps at once, which is
            // what makes recovery after a capacity rise take one probe, not a minute of 8 % steps).
            if probed > delay_based && usage != Usage::Over && self.trial.is_none() {
                self.trial = Some(Trial::new(now, cluster, probed));
            } else {
                self.controller.on_result(now, cluster, probed);
            }
        }
        if let Some(trial) = self.trial.as_mut() {
            if usage == Usage::Over {
                trial.on_overuse();
            }
            let (cluster, verdict) = (trial.cluster, trial.verdict(now));
            if verdict != Verdict::Pending {
                tracing::debug!(cluster, rate = trial.rate, ?verdict, "probe trial over");
            }
            match verdict {
                Verdict::Pending => {}
                Verdict::Passed(rate) => {
                    self.trial = None;
                    if rate > delay_based {
                        delay_based = self.rate.jump_to(now, rate);
                        self.loss.raise_to(rate);
                    }
                    self.controller.on_result(now, cluster, rate);
                }
                Verdict::Failed(_) => {
                    // Nothing further from a failed trial: the next probe waits for its period.
                    self.trial = None;
                    self.controller.on_result(now, cluster, 0.0);
                }
            }
        }
        let capped = self.loss.update(now, lost, results.len(), acked, self.rtt);
        self.target = delay_based
            .min(capped.unwrap_or(f64::INFINITY))
            .clamp(self.config.min_bps, self.config.max_bps);
    }
}
