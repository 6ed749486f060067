//! The delay-based detector: are packets queueing up on the path?
//!
//! Packets sent within [`BURST`] of each other form a group; for consecutive groups the difference of
//! their arrival spacing and their send spacing is the queueing delay they added. Accumulated and
//! smoothed, those points form a trend whose slope (a least-squares fit over the last [`WINDOW`]
//! points) says whether the queue grows; scaled and compared against an adaptive threshold it becomes
//! [`Usage`]. This is the trendline estimator of libwebrtc (the draft's Kalman filter was replaced there
//! because it reacted late); the constants are its published defaults.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets sent within this of the first of a group belong to it.
const BURST: Duration = Duration::from_millis(5);
/// Points in the least-squares window.
const WINDOW: usize = 20;
/// Exponential smoothing of the accumulated delay: this much per [`SMOOTHING_GROUP_MS`] of send time.
/// libwebrtc applies 0.9 per group, its pacer making groups about 5 ms apart; the fast path sends each
/// frame as it comes, a group per frame (33 ms and more apart), where 0.9 per group lagged a rising
/// queue by 300 ms and more. Per unit of time, the response is the same however sparse the groups.
const SMOOTHING: f64 = 0.9;
const SMOOTHING_GROUP_MS: f64 = 5.0;
/// The slope is scaled by this and by the number of deltas seen (at most [`MAX_DELTAS`]).
const THRESHOLD_GAIN: f64 = 4.0;
const MAX_DELTAS: f64 = 60.0;
/// The adaptive threshold: start, bounds, and how fast it follows the trend up and down.
const THRESHOLD_START_MS: f64 = 12.5;
const THRESHOLD_MIN_MS: f64 = 6.0;
const THRESHOLD_MAX_MS: f64 = 600.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// A trend this far past the threshold is a spike, not a reason to move the threshold.
const SPIKE_MS: f64 = 15.0;
/// The trend must stay over the threshold this long (in send time) to be overuse.
const OVERUSE_TIME_MS: f64 = 10.0;
/// Arrival spacing jumping by more than this means the receiver's clock or the path reset.
const RESET_GAP: Duration = Duration::from_secs(3);

/// What the path is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Delay grows: the sender is above capacity.
    Over,
    Normal,
    /// Delay shrinks: a queue is draining.
    Under,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_departure: Instant,
    last_departure: Instant,
    last_arrival: Instant,
}

/// See the module docs.
#[derive(Debug)]
pub struct DelayDetector {
    current: Option<Group>,
    previous: Option<Group>,
    first_arrival: Option<Instant>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms since the first, smoothed delay ms)
    window: VecDeque<(f64, f64)>,
    deltas: f64,
    threshold_ms: f64,
    threshold_updated: Option<Instant>,
    previous_trend: f64,
    /// Send time spent over the threshold; negative when not over.
    time_over_ms: f64,
    overuse_count: u32,
    usage: Usage,
}

impl Default for DelayDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DelayDetector {
    pub fn new() -> Self {
        Self {
            current: None,
            previous: None,
            first_arrival: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            window: VecDeque::with_capacity(WINDOW + 1),
            deltas: 0.0,
            threshold_ms: THRESHOLD_START_MS,
            threshold_updated: None,
            previous_trend: 0.0,
            time_over_ms: -1.0,
            overuse_count: 0,
            usage: Usage::Normal,
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The adaptive threshold now, in the trend's units (ms).
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// One packet that arrived, in send order; returns the usage after it.
    pub fn update(&mut self, departure: Instant, arrival: Instant) -> Usage {
        let Some(mut group) = self.current else {
            self.current = Some(Group {
                first_departure: departure,
                last_departure: departure,
                last_arrival: arrival,
            });
            return self.usage;
        };
        if departure < group.first_departure {
            // Reordered behind its group: it says nothing about the trend.
            return self.usage;
        }
        if self.belongs(&group, departure, arrival) {
            group.last_departure = group.last_departure.max(departure);
            group.last_arrival = group.last_arrival.max(arrival);
            self.current = Some(group);
            return self.usage;
        }
        // This packet starts a new group, which closes `group`.
        if let Some(previous) = self.previous {
            let send_delta = group
                .last_departure
                .saturating_duration_since(previous.last_departure);
            let arrival_delta = group
                .last_arrival
                .saturating_duration_since(previous.last_arrival);
            if group.last_arrival < previous.last_arrival || arrival_delta > send_delta + RESET_GAP
            {
                self.reset();
            } else {
                self.trend(group.last_arrival, arrival_delta, send_delta);
            }
        }
        self.previous = Some(group);
        self.current = Some(Group {
            first_departure: departure,
            last_departure: departure,
            last_arrival: arrival,
        });
        self.usage
    }

    fn belongs(&self, group: &Group, departure: Instant, arrival: Instant) -> bool {
        if departure.saturating_duration_since(group.first_departure) <= BURST {
            return true;
        }
        // A burst the network delivered together (arrived within BURST of the group, and sooner
        // after it than it was sent): the same queue, not a new sample.
        let arrival_gap = arrival.saturating_duration_since(group.last_arrival);
        let send_gap = departure.saturating_duration_since(group.last_departure);
        arrival >= group.last_arrival && arrival_gap < BURST && arrival_gap < send_gap
    }

    fn reset(&mut self) {
        let threshold = self.threshold_ms;
        *self = Self::new();
        self.threshold_ms = threshold;
    }

    fn trend(&mut self, arrival: Instant, arrival_delta: Duration, send_delta: Duration) {
        let delta_ms = arrival_delta.as_secs_f64() * 1e3 - send_delta.as_secs_f64() * 1e3;
        self.deltas = (self.deltas + 1.0).min(1000.0);
        self.accumulated_ms += delta_ms;
        let alpha = SMOOTHING.powf(send_delta.as_secs_f64() * 1e3 / SMOOTHING_GROUP_MS);
        self.smoothed_ms = alpha * self.smoothed_ms + (1.0 - alpha) * self.accumulated_ms;
        let first = *self.first_arrival.get_or_insert(arrival);
        let x = arrival.saturating_duration_since(first).as_secs_f64() * 1e3;
        self.window.push_back((x, self.smoothed_ms));
        if self.window.len() > WINDOW {
            self.window.pop_front();
        }
        let slope = if self.window.len() == WINDOW {
            linear_fit_slope(&self.window).unwrap_or(self.previous_trend)
        } else {
            self.previous_trend
        };
        self.detect(slope, send_delta.as_secs_f64() * 1e3, arrival);
    }

    fn detect(&mut self, slope: f64, send_delta_ms: f64, now: Instant) {
        let modified = self.deltas.min(MAX_DELTAS) * slope * THRESHOLD_GAIN;
        if modified > self.threshold_ms {
            if self.time_over_ms < 0.0 {
                // Assume half the interval was already over.
                self.time_over_ms = send_delta_ms / 2.0;
            } else {
                self.time_over_ms += send_delta_ms;
            }
            self.overuse_count += 1;
            if self.time_over_ms > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && slope >= self.previous_trend
            {
                self.time_over_ms = 0.0;
                self.overuse_count = 0;
                self.usage = Usage::Over;
            }
        } else if modified < -self.threshold_ms {
            self.time_over_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Under;
        } else {
            self.time_over_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.previous_trend = slope;
        self.adapt_threshold(modified, now);
    }

    fn adapt_threshold(&mut self, modified: f64, now: Instant) {
        let last = *self.threshold_updated.get_or_insert(now);
        self.threshold_updated = Some(now);
        if modified.abs() > self.threshold_ms + SPIKE_MS {
            return;
        }
        let k = if modified.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let dt_ms = (now.saturating_duration_since(last).as_secs_f64() * 1e3).min(100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt_ms;
        self.threshold_ms = self.threshold_ms.clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
    }
}

/// Least-squares slope of `points`; `None` when they share one x.
fn linear_fit_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sum_x, sum_y) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
    let (mean_x, mean_y) = (sum_x / n, sum_y / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), &(x, y)| {
        (
            num + (x - mean_x) * (y - mean_y),
            den + (x - mean_x) * (x - mean_x),
        )
    });
    (den != 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds packets every `send_ms`, arriving every `arrive_ms`, and returns the usages seen.
    fn run(
        detector: &mut DelayDetector,
        t0: Instant,
        packets: u32,
        send_ms: f64,
        arrive_ms: f64,
    ) -> Vec<Usage> {
        (0..packets)
            .map(|i| {
                let departure = t0 + Duration::from_secs_f64(i as f64 * send_ms / 1e3);
                let arrival = t0 + Duration::from_secs_f64(0.05 + i as f64 * arrive_ms / 1e3);
                detector.update(departure, arrival)
            })
            .collect()
    }

    #[test]
    fn a_path_that_keeps_up_is_normal() {
        let mut d = DelayDetector::new();
        let usages = run(&mut d, Instant::now(), 400, 10.0, 10.0);
        assert!(usages.iter().all(|u| *u == Usage::Normal), "{usages:?}");
    }

    /// Sending a packet every 10 ms into a link that needs 13 ms for each: the queue grows 3 ms per
    /// packet, which is overuse within a window.
    #[test]
    fn a_growing_queue_is_overuse_soon() {
        let mut d = DelayDetector::new();
        let usages = run(&mut d, Instant::now(), 60, 10.0, 13.0);
        let first = usages.iter().position(|u| *u == Usage::Over);
        assert!(matches!(first, Some(i) if i <= WINDOW + 5), "{usages:?}");
    }

    /// A queue draining (arrivals closer together than sends) is underuse, not overuse.
    #[test]
    fn a_draining_queue_is_underuse() {
        let mut d = DelayDetector::new();
        let usages = run(&mut d, Instant::now(), 60, 10.0, 7.0);
        assert!(usages.contains(&Usage::Under), "{usages:?}");
        assert!(!usages.contains(&Usage::Over), "{usages:?}");
    }

    /// Packets sent together are one group: a burst sent in 1 ms and spread by the link does not
    /// count as 10 growing samples.
    #[test]
    fn a_burst_is_one_group() {
        let mut d = DelayDetector::new();
        let t0 = Instant::now();
        for frame in 0..100u32 {
            for i in 0..5u32 {
                let departure = t0
                    + Duration::from_millis(frame as u64 * 33)
                    + Duration::from_micros(i as u64 * 100);
                // The link spreads the burst over 5 ms but drains before the next frame.
                let arrival =
                    departure + Duration::from_millis(40) + Duration::from_millis(i as u64);
                assert_ne!(d.update(departure, arrival), Usage::Over, "frame {frame}");
            }
        }
    }

    #[test]
    fn the_fit_is_least_squares() {
        let points: VecDeque<(f64, f64)> =
            (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((linear_fit_slope(&points).unwrap() - 3.0).abs() < 1e-9);
        let flat: VecDeque<(f64, f64)> = (0..3).map(|_| (5.0, 1.0)).collect();
        assert_eq!(linear_fit_slope(&flat), None);
    }
}
