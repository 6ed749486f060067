//! Probing: short clusters of padding sent above the estimate, to find out whether the path carries
//! more than the media currently needs.
//!
//! A sender that sends only what its media needs is application-limited, and rate control never climbs
//! more than 1.5x above what it sends; after a capacity drop and recovery it would take minutes at 8 % a
//! second. So when the allocation wants more than the estimate, [`ProbeController`] asks for a cluster at
//! twice the estimate (at most 1.25x what is wanted), repeats every [`PERIOD`] while it still wants
//! more, and after a cluster that got through probes again at twice what it measured. [`ProbeResults`]
//! measures a cluster from its feedback: the rate it was sent at and the rate it arrived at; the lower,
//! and if the path clearly could not keep up, a little under what arrived.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PacketResult;

/// How long a cluster lasts at its rate, and its least number of packets.
const CLUSTER_DURATION: Duration = Duration::from_millis(40);
const CLUSTER_MIN_PACKETS: usize = 5;
/// The size on the wire of the fast path's padding packets (header, transport-wide sequence number,
/// 255 bytes of padding, the most RTP padding can count, and the SRTP tag): clusters are sized in them.
pub const PROBE_PACKET_BYTES: usize = 291;
/// Between probes while the allocation wants more than the estimate.
pub const PERIOD: Duration = Duration::from_millis(2500);
/// A cluster not measured by then is given up.
const RESULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Clusters awaiting feedback at most.
const MAX_CLUSTERS: usize = 4;
/// A cluster must have this share of its packets arrive to count.
const MIN_ARRIVED: f64 = 0.8;
/// Arriving slower than this share of the sending rate: the path limited the cluster.
const SATURATED_RATIO: f64 = 0.9;
const SATURATED_UTILISATION: f64 = 0.95;
/// A probe counts as having got through at this share of its rate.
const SUCCESS: f64 = 0.7;

/// A cluster to send: `packets` padding packets (`bytes` in all), spread at `rate_bps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeCluster {
    pub id: u32,
    pub rate_bps: f64,
    pub packets: usize,
    pub bytes: usize,
}

impl ProbeCluster {
    fn at(id: u32, rate_bps: f64) -> Self {
        let bytes = (rate_bps * CLUSTER_DURATION.as_secs_f64() / 8.0) as usize;
        let packets = bytes.div_ceil(PROBE_PACKET_BYTES).max(CLUSTER_MIN_PACKETS);
        Self {
            id,
            rate_bps,
            packets,
            bytes: packets * PROBE_PACKET_BYTES,
        }
    }
}

/// Decides when to probe and how high.
#[derive(Debug)]
pub struct ProbeController {
    wanted: f64,
    next_id: u32,
    last_probe: Option<Instant>,
    /// The cluster sent and not yet measured (id, rate, when).
    pending: Option<(u32, f64, Instant)>,
    /// After a cluster got through: the rate to probe next, at once.
    further: Option<f64>,
}

impl Default for ProbeController {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeController {
    pub fn new() -> Self {
        Self {
            wanted: 0.0,
            next_id: 1,
            last_probe: None,
            pending: None,
            further: None,
        }
    }

    /// The allocation wants `wanted`: a rise of a quarter or more may probe at once.
    pub fn set_wanted(&mut self, _now: Instant, wanted: f64, estimate: f64) {
        if wanted > 1.25 * self.wanted && wanted > estimate {
            self.last_probe = None;
        }
        self.wanted = wanted;
    }

    /// A cluster was measured at `measured`.
    pub fn on_result(&mut self, _now: Instant, id: u32, measured: f64) {
        let Some((pending, rate, _)) = self.pending else {
            return;
        };
        if pending != id {
            return;
        }
        self.pending = None;
        self.further = (measured >= SUCCESS * rate && measured < self.wanted)
            .then(|| (2.0 * measured).min(1.25 * self.wanted));
    }

    /// The next cluster to send, if one is due.
    pub fn poll(&mut self, now: Instant, estimate: f64) -> Option<ProbeCluster> {
        if let Some((_, _, sent)) = self.pending {
            if now.saturating_duration_since(sent) < RESULT_TIMEOUT {
                return None;
            }
            self.pending = None;
        }
        // Any shortfall: an estimate just under what is wanted cannot climb by itself (rate control
        // stays within 1.5x what is sent, and an allocation short of its next layer sends less).
        if self.wanted <= estimate {
            self.further = None;
            return None;
        }
        let rate = match self.further.take() {
            Some(rate) => rate,
            None if self
                .last_probe
                .is_none_or(|t| now.saturating_duration_since(t) >= PERIOD) =>
            {
                (2.0 * estimate).min(1.25 * self.wanted)
            }
            None => return None,
        };
        if rate <= estimate {
            return None;
        }
        let cluster = ProbeCluster::at(self.next_id, rate);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.last_probe = Some(now);
        self.pending = Some((cluster.id, rate, now));
        Some(cluster)
    }
}

#[derive(Debug, Clone, Copy)]
struct ClusterStats {
    id: u32,
    expected: usize,
    created: Instant,
    reported: usize,
    arrived: usize,
    first_departure: Option<Instant>,
    last_departure: Option<(Instant, usize)>,
    sent_bytes: usize,
    first_arrival: Option<(Instant, usize)>,
    last_arrival: Option<Instant>,
    arrived_bytes: usize,
}

/// Measures clusters from their feedback.
#[derive(Debug, Default)]
pub struct ProbeResults {
    clusters: VecDeque<ClusterStats>,
    result: Option<(u32, f64)>,
}

impl ProbeResults {
    pub fn new() -> Self {
        Self {
            clusters: VecDeque::with_capacity(MAX_CLUSTERS),
            result: None,
        }
    }

    /// A cluster is being sent from `now`; its packets' feedback will follow.
    pub fn expect(&mut self, now: Instant, cluster: ProbeCluster) {
        if self.clusters.len() == MAX_CLUSTERS {
            self.clusters.pop_front();
        }
        self.clusters.push_back(ClusterStats {
            id: cluster.id,
            expected: cluster.packets,
            created: now,
            reported: 0,
            arrived: 0,
            first_departure: None,
            last_departure: None,
            sent_bytes: 0,
            first_arrival: None,
            last_arrival: None,
            arrived_bytes: 0,
        });
    }

    /// One reported packet of cluster `id`.
    pub fn add(&mut self, id: u32, r: &PacketResult) {
        let Some(c) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return;
        };
        c.reported += 1;
        c.first_departure = Some(
            c.first_departure
                .map_or(r.departure, |t| t.min(r.departure)),
        );
        if c.last_departure.is_none_or(|(t, _)| r.departure >= t) {
            c.last_departure = Some((r.departure, r.size));
        }
        c.sent_bytes += r.size;
        if let Some(arrival) = r.arrival {
            c.arrived += 1;
            c.arrived_bytes += r.size;
            if c.first_arrival.is_none_or(|(t, _)| arrival < t) {
                c.first_arrival = Some((arrival, r.size));
            }
            c.last_arrival = Some(c.last_arrival.map_or(arrival, |t| t.max(arrival)));
        }
        if c.reported >= c.expected {
            let c = *c;
            self.clusters.retain(|x| x.id != id);
            if let Some(rate) = measure(&c) {
                self.result = Some((id, rate));
            }
        }
        // Clusters whose feedback never came are forgotten.
        let newest = r.departure;
        self.clusters
            .retain(|x| newest.saturating_duration_since(x.created) < RESULT_TIMEOUT);
    }

    /// The last cluster measured since the previous call: its id and rate.
    pub fn take_result(&mut self) -> Option<(u32, f64)> {
        self.result.take()
    }
}

fn measure(c: &ClusterStats) -> Option<f64> {
    if (c.arrived as f64) < MIN_ARRIVED * c.expected as f64 {
        return None;
    }
    let first_departure = c.first_departure?;
    let (last_departure, last_size) = c.last_departure?;
    let (first_arrival, first_size) = c.first_arrival?;
    let last_arrival = c.last_arrival?;
    let send_interval = last_departure.saturating_duration_since(first_departure);
    let receive_interval = last_arrival.saturating_duration_since(first_arrival);
    if send_interval.is_zero()
        || receive_interval.is_zero()
        || send_interval > Duration::from_secs(1)
    {
        return None;
    }
    // The last packet's bytes leave after the send interval ends, the first's arrive before the
    // receive interval starts.
    let send_rate = (c.sent_bytes - last_size) as f64 * 8.0 / send_interval.as_secs_f64();
    let receive_rate = (c.arrived_bytes - first_size) as f64 * 8.0 / receive_interval.as_secs_f64();
    tracing::debug!(
        cluster = c.id,
        packets = c.expected,
        arrived = c.arrived,
        bytes = c.sent_bytes,
        send_ms = send_interval.as_secs_f64() * 1e3,
        receive_ms = receive_interval.as_secs_f64() * 1e3,
        send_kbps = send_rate / 1e3,
        receive_kbps = receive_rate / 1e3,
        "probe cluster measured"
    );
    Some(if receive_rate < SATURATED_RATIO * send_rate {
        SATURATED_UTILISATION * receive_rate
    } else {
        send_rate.min(receive_rate)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_results(t0: Instant, cluster: &ProbeCluster, link_bps: f64) -> Vec<PacketResult> {
        let size = cluster.bytes / cluster.packets;
        let send_gap = size as f64 * 8.0 / cluster.rate_bps;
        let serve = size as f64 * 8.0 / link_bps;
        let mut link_free = 0.0f64;
        (0..cluster.packets)
            .map(|i| {
                let sent = i as f64 * send_gap;
                link_free = link_free.max(sent) + serve;
                PacketResult {
                    seq: i as u64,
                    size,
                    departure: t0 + Duration::from_secs_f64(sent),
                    arrival: Some(t0 + Duration::from_secs_f64(0.03 + link_free)),
                    probe: Some(cluster.id),
                }
            })
            .collect()
    }

    #[test]
    fn a_cluster_through_a_wide_path_measures_its_own_rate() {
        let t0 = Instant::now();
        let cluster = ProbeCluster::at(1, 1_000_000.0);
        let mut results = ProbeResults::new();
        results.expect(t0, cluster);
        for r in cluster_results(t0, &cluster, 5_000_000.0) {
            results.add(1, &r);
        }
        let (id, rate) = results.take_result().expect("measured");
        assert_eq!(id, 1);
        assert!((rate - 1_000_000.0).abs() < 60_000.0, "{rate}");
        assert_eq!(results.take_result(), None);
    }

    #[test]
    fn a_cluster_through_a_narrow_path_measures_the_path() {
        let t0 = Instant::now();
        let cluster = ProbeCluster::at(7, 2_000_000.0);
        let mut results = ProbeResults::new();
        results.expect(t0, cluster);
        for r in cluster_results(t0, &cluster, 600_000.0) {
            results.add(7, &r);
        }
        let (_, rate) = results.take_result().expect("measured");
        assert!((rate - 0.95 * 600_000.0).abs() < 40_000.0, "{rate}");
    }

    #[test]
    fn a_cluster_mostly_lost_measures_nothing() {
        let t0 = Instant::now();
        let cluster = ProbeCluster::at(2, 1_000_000.0);
        let mut results = ProbeResults::new();
        results.expect(t0, cluster);
        for (i, mut r) in cluster_results(t0, &cluster, 5_000_000.0)
            .into_iter()
            .enumerate()
        {
            if i % 2 == 0 {
                r.arrival = None;
            }
            results.add(2, &r);
        }
        assert_eq!(results.take_result(), None);
    }

    #[test]
    fn the_controller_probes_while_more_is_wanted_and_climbs_after_success() {
        let t0 = Instant::now();
        let mut c = ProbeController::new();
        // Nothing wanted beyond the estimate: no probe.
        c.set_wanted(t0, 250_000.0, 300_000.0);
        assert_eq!(c.poll(t0, 300_000.0), None);
        c.set_wanted(t0, 1_200_000.0, 300_000.0);
        let first = c.poll(t0, 300_000.0).expect("probe");
        assert_eq!(first.rate_bps, 600_000.0);
        // Waiting for its result: nothing more.
        assert_eq!(c.poll(t0 + Duration::from_millis(100), 300_000.0), None);
        c.on_result(t0 + Duration::from_millis(150), first.id, 590_000.0);
        let further = c
            .poll(t0 + Duration::from_millis(150), 590_000.0)
            .expect("probe further");
        assert_eq!(further.rate_bps, 1_180_000.0);
        // That one fails (the path carries 700k): no further probe until the period passes.
        c.on_result(t0 + Duration::from_millis(300), further.id, 660_000.0);
        assert_eq!(c.poll(t0 + Duration::from_millis(400), 660_000.0), None);
        let again = c
            .poll(t0 + Duration::from_millis(150) + PERIOD, 660_000.0)
            .expect("periodic");
        assert_eq!(again.rate_bps, 1_320_000.0f64.min(1.25 * 1_200_000.0));
    }
}
