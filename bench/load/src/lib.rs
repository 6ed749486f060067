//! `convene-load`: synthetic WebRTC attendees that load a Convene SFU over loopback and measure what
//! comes through.
//!
//! Each attendee is a real WebRTC client built on str0m (ICE, DTLS, SRTP, RTCP) speaking Convene's
//! signaling protocol. A run is a [`Scenario`]: K meetings of N publishers and M subscribers, with Opus
//! audio (DTX), simulcast VP8 camera video and optionally a bursty screen share. Every packet carries a
//! [`payload::Stamp`] trailer, so receivers measure one-way latency, loss, jitter and keyframe waits.
//!
//! It is not a browser and does no congestion control: it sends what the traffic models say, whatever the
//! network does, which is what a benchmark wants.
//!
//! The pieces: [`driver`] (threads owning many connections each: the media side), [`signaling`] (one tokio
//! task per attendee), [`media`] (traffic models), [`stats`] (measurements), [`probe`] (the server
//! process's CPU and memory). [`run`] puts them together and returns a [`Summary`].
#![deny(unsafe_op_in_unsafe_fn)]

pub mod driver;
pub mod janus;
pub mod media;
pub mod payload;
pub mod probe;
pub mod signaling;
pub mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::driver::{Driver, PublishPlan, Shared};
use crate::janus::JanusRoom;
use crate::media::LayerSpec;
use crate::probe::{ProcProbe, ProcSample};
use crate::signaling::{Role, SignalCounters};
use crate::stats::Stats;

/// What can go wrong in the load generator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("signaling protocol: {0}")]
    Protocol(String),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("negotiation: {0}")]
    Negotiation(String),
    #[error("a driver thread is gone")]
    DriverGone,
    #[error("probe: {0}")]
    Probe(String),
}

/// One load run.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    /// The SFU under load.
    pub target: Target,
    pub meetings: usize,
    /// Publishers per meeting; they also subscribe to the others.
    pub publishers: usize,
    /// Subscribe-only attendees per meeting.
    pub subscribers: usize,
    pub audio: bool,
    /// Camera simulcast layers; empty for no camera.
    pub camera: Vec<LayerSpec>,
    /// Publishers that also share their screen (the first ones of each meeting).
    pub screens: usize,
    pub talk_ratio: f64,
    /// Publishers pause the simulcast layers Convene's `publish_targets` switch off, as its web app
    /// does (Janus sends no such thing; there every layer keeps flowing).
    pub follow_publish_targets: bool,
    #[serde(serialize_with = "as_secs")]
    pub keyframe_interval: Duration,
    /// Measurement window, after everyone is connected and a warm-up.
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
    #[serde(serialize_with = "as_secs")]
    pub warmup: Duration,
    /// Give up waiting for connections after this long (and measure what there is).
    #[serde(serialize_with = "as_secs")]
    pub connect_timeout: Duration,
    /// Attendees joining per second.
    pub join_rate: f64,
    /// Driver threads.
    pub threads: usize,
    /// Local address the clients bind (loopback).
    pub local_ip: IpAddr,
    /// Server process to sample (CPU, RSS), if known.
    pub server_pid: Option<u32>,
    pub seed: u64,
}

/// The SFU the attendees join.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "sfu", rename_all = "snake_case")]
pub enum Target {
    /// Convene: signaling at `/v1/signal`, forwarded packets counted by its `/metrics`.
    Convene {
        /// The server's HTTP address.
        server: SocketAddr,
        /// Signs the attendees' join tokens: built from the server's `<data-dir>/join-token.key`.
        #[serde(skip)]
        tokens: Arc<convene_core::JoinTokenIssuer>,
    },
    /// Janus 1.1's VideoRoom over its WebSocket transport ([`janus`]); forwarded packets are what the
    /// attendees received (Janus exports no counter of its own).
    Janus {
        /// `ws://HOST:PORT` of Janus's WebSocket transport.
        url: String,
        /// Camera layer every subscriber asks for (0 = the lowest of `camera`); None: Janus's default.
        layer: Option<u8>,
    },
}

impl Target {
    /// The address whose `/metrics` counts forwarded packets, if the SFU has one.
    fn metrics(&self) -> Option<SocketAddr> {
        match self {
            Target::Convene { server, .. } => Some(*server),
            Target::Janus { .. } => None,
        }
    }
}

impl Scenario {
    pub fn attendees(&self) -> usize {
        self.meetings * (self.publishers + self.subscribers)
    }

    /// Connections that should come up: every publisher's publish connection, and a subscribe connection
    /// for every attendee that has someone to receive from.
    pub fn expected_connections(&self) -> usize {
        let subscribing_publishers = if self.publishers > 1 {
            self.publishers
        } else {
            0
        };
        let subscribing = if self.publishers > 0 {
            self.subscribers
        } else {
            0
        };
        self.meetings * (self.publishers + subscribing_publishers + subscribing)
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn from_us(h: &stats::Histogram) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.count(),
            p50: ms(h.quantile(0.5)),
            p90: ms(h.quantile(0.9)),
            p99: ms(h.quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// The server's side of a run, from its own accounting.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub cpu_s: f64,
    /// CPU-seconds per second of the window (1.0 = one core busy).
    pub cores_busy: f64,
    pub rss_kib_before: u64,
    pub rss_kib: u64,
    pub rss_kib_per_attendee: f64,
    /// Packets the server says it forwarded in the window (`convene_media_packets_out_total`).
    pub packets_out: Option<u64>,
    /// Server CPU microseconds per forwarded packet.
    pub cpu_us_per_pkt: f64,
    /// Forwarded packets per second one fully busy core would sustain at that cost.
    pub pps_per_core: f64,
}

/// The result of a run (printed as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: Scenario,
    pub attendees: usize,
    pub joined: u64,
    pub connections_expected: usize,
    pub connections_connected: u64,
    pub signaling_errors: u64,
    pub attendee_failures: u64,
    pub window_s: f64,
    pub sent_packets: u64,
    pub received_packets: u64,
    pub expected_packets: u64,
    pub lost_packets: u64,
    pub duplicate_packets: u64,
    pub loss_pct: f64,
    /// Packets received per second by all clients (what the SFU delivered).
    pub forwarded_pps: f64,
    pub received_mbps: f64,
    /// Sender's write to receiver's read: both clients' stacks, the loopback and the server.
    pub latency_ms: Percentiles,
    /// What the server itself measured of its share: kernel receipt of a datagram to the send of what
    /// it caused (Convene only; its workers publish the histogram at most a second late, so the window
    /// is that fuzzy).
    pub server_send_delay_ms: Option<DelayPercentiles>,
    pub jitter_ms_mean: f64,
    pub keyframe_wait_ms: Percentiles,
    pub keyframe_never: u64,
    /// Keyframe requests (PLI/FIR) publishers received over the whole run, and how many named no layer
    /// they send (those go unanswered until the next periodic keyframe).
    pub keyframe_requests: u64,
    pub keyframe_requests_unmatched: u64,
    pub client_send_errors: u64,
    /// CPU-seconds per second the load generator itself used in the window: when it nears the number of
    /// cores, the generator (not the server) limits the run.
    pub generator_cores_busy: f64,
    /// CPU-seconds per second the whole machine was busy in the window: minus the server's and the
    /// generator's, what anything else on the machine took from the run.
    pub system_cores_busy: f64,
    pub server: Option<ServerReport>,
}

/// What the generator reads from the server's `/metrics` at each end of the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCounts {
    /// `convene_media_packets_out_total`, all kinds summed.
    pub packets_out: u64,
    /// `convene_media_send_delay_seconds`: (upper bound in seconds, cumulative count) per bucket.
    pub send_delay: Vec<(f64, u64)>,
}

/// Reads [`ServerCounts`] from the server's `/metrics`.
pub async fn server_counts(server: SocketAddr) -> Result<ServerCounts, LoadError> {
    let mut tcp = tokio::net::TcpStream::connect(server).await?;
    tcp.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {server}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    tcp.read_to_string(&mut body).await?;
    Ok(ServerCounts {
        packets_out: sum_metric(&body, "convene_media_packets_out_total"),
        send_delay: histogram_buckets(&body, "convene_media_send_delay_seconds"),
    })
}

/// The server's own counts, where it keeps them.
async fn counted_by_server(target: &Target) -> Option<ServerCounts> {
    server_counts(target.metrics()?).await.ok()
}

/// The buckets of an unlabelled Prometheus histogram in a text exposition: (upper bound, cumulative
/// count), in order; `+Inf` as infinity.
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, rest) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = rest.trim().parse::<f64>().ok()?;
            Some((le, count as u64))
        })
        .collect()
}

/// p50 and p99 (milliseconds) of what a histogram counted between two scrapes, linear within a
/// bucket; `None` without samples. A quantile in the last (`+Inf`) bucket reads as its lower bound.
pub fn window_percentiles(start: &[(f64, u64)], end: &[(f64, u64)]) -> Option<DelayPercentiles> {
    if start.len() != end.len() && !start.is_empty() {
        return None;
    }
    let counts: Vec<(f64, u64)> = end
        .iter()
        .enumerate()
        .map(|(i, &(le, c))| (le, c.saturating_sub(start.get(i).map_or(0, |s| s.1))))
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let quantile = |q: f64| {
        let rank = q * total as f64;
        let mut lower = (0.0, 0u64);
        for &(le, cumulative) in &counts {
            if cumulative as f64 >= rank {
                if le.is_infinite() {
                    return lower.0 * 1000.0;
                }
                let in_bucket = (cumulative - lower.1) as f64;
                let share = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    0.0
                };
                return (lower.0 + (le - lower.0) * share) * 1000.0;
            }
            lower = (le, cumulative);
        }
        lower.0 * 1000.0
    };
    Some(DelayPercentiles {
        count: total,
        p50: quantile(0.5),
        p99: quantile(0.99),
    })
}

/// Percentiles the server measured itself (`convene_media_send_delay_seconds`), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelayPercentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
}

/// Sums every sample of a Prometheus counter in a text exposition.
pub fn sum_metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs a scenario to the end and returns its summary. Progress goes to stderr once a second.
pub async fn run(s: Scenario) -> Result<Summary, LoadError> {
    let shared = Arc::new(Shared::new());
    let mut drivers = Vec::new();
    for i in 0..s.threads.max(1) {
        drivers.push(Driver::spawn(i, shared.clone(), s.local_ip)?);
    }
    let probe = s.server_pid.map(ProcProbe::new);
    let before = probe.as_ref().map(ProcProbe::sample).transpose()?;

    let counters = Arc::new(SignalCounters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut stream_base = 1u32;
    let mut n = 0usize;
    let join_gap = Duration::from_secs_f64(1.0 / s.join_rate.max(0.1));
    // Publishers first, so subscribers find tracks to receive when they arrive.
    for pass in [true, false] {
        for m in 0..s.meetings {
            let count = if pass { s.publishers } else { s.subscribers };
            for i in 0..count {
                let publish = pass.then(|| {
                    let plan = PublishPlan {
                        audio: s.audio,
                        camera: s.camera.clone(),
                        screen: i < s.screens,
                        talk_ratio: s.talk_ratio,
                        keyframe_interval: s.keyframe_interval,
                        follow_targets: s.follow_publish_targets,
                        stream_base,
                        seed: s.seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    };
                    stream_base += 3;
                    plan
                });
                let role = Role {
                    meeting: format!("{}-{m}", s.name),
                    name: format!("{}-{m}-{}{i}", s.name, if pass { "p" } else { "s" }),
                    publish,
                };
                let driver = drivers[n % drivers.len()].handle.clone();
                let counters = counters.clone();
                let stop = stop_rx.clone();
                match &s.target {
                    Target::Convene { server, tokens } => {
                        let (server, tokens) = (*server, tokens.clone());
                        tasks.spawn(async move {
                            signaling::attendee(server, role, driver, counters, tokens, stop).await
                        });
                    }
                    Target::Janus { url, layer } => {
                        let room = JanusRoom {
                            // VideoRoom rooms are numbers; 0 is not a valid one.
                            room: m as u64 + 1,
                            publishers: s.publishers,
                            substream: layer.and_then(|l| janus::substream(l, s.camera.len())),
                        };
                        let url = url.clone();
                        tasks.spawn(async move {
                            janus::attendee(url, role, room, driver, counters, stop).await
                        });
                    }
                }
                n += 1;
                tokio::time::sleep(join_gap).await;
            }
        }
    }

    // Wait for the connections, then warm up.
    let expected = s.expected_connections() as u64;
    let deadline = started + s.connect_timeout;
    let mut last_print = Instant::now();
    while shared.connected.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            progress(&s, &shared, &counters, "connecting");
        }
    }
    let connected = shared.connected.load(Ordering::Relaxed);
    if connected < expected {
        tracing::warn!(
            connected,
            expected,
            "not every connection came up; measuring anyway"
        );
    }
    tokio::time::sleep(s.warmup).await;

    let metrics_start = counted_by_server(&s.target).await;
    let cpu_start = probe.as_ref().map(ProcProbe::sample).transpose()?;
    let me = ProcProbe::new(std::process::id());
    let me_start = me.sample()?;
    let system_start = probe::system_busy_s()?;
    let window_start = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    while window_start.elapsed() < s.duration {
        tokio::time::sleep(Duration::from_secs(1).min(s.duration)).await;
        progress(&s, &shared, &counters, "measuring");
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let window = window_start.elapsed();
    let cpu_end = probe.as_ref().map(ProcProbe::sample).transpose()?;
    let me_end = me.sample()?;
    let system_end = probe::system_busy_s()?;
    let metrics_end = counted_by_server(&s.target).await;

    // Leave, and give the tasks a moment to say so.
    let _ = stop_tx.send(true);
    let mut failures = 0u64;
    let leave_deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(r)) = tokio::time::timeout_at(leave_deadline.into(), tasks.join_next()).await
    {
        if let Ok(Err(e)) = r {
            failures += 1;
            tracing::warn!(error = %e, "attendee failed");
        }
    }
    tasks.abort_all();
    shared.stop.store(true, Ordering::Relaxed);
    let mut stats = Stats::default();
    for d in drivers {
        stats.merge(d.join());
    }

    let window_s = window.as_secs_f64();
    let forwarded_pps = stats.received_packets as f64 / window_s;
    let packets_out = match (&metrics_start, &metrics_end) {
        (Some(a), Some(b)) if b.packets_out >= a.packets_out => Some(b.packets_out - a.packets_out),
        _ => None,
    };
    let server_send_delay_ms = match (&metrics_start, &metrics_end) {
        (Some(a), Some(b)) => window_percentiles(&a.send_delay, &b.send_delay),
        _ => None,
    };
    let server = match (before, cpu_start, cpu_end) {
        (Some(before), Some(a), Some(b)) => Some(server_report(
            before,
            a,
            b,
            window_s,
            packets_out.unwrap_or(stats.received_packets),
            s.attendees(),
        )),
        _ => None,
    };
    Ok(Summary {
        attendees: s.attendees(),
        joined: counters.joined.load(Ordering::Relaxed),
        connections_expected: s.expected_connections(),
        connections_connected: connected,
        signaling_errors: counters.errors.load(Ordering::Relaxed),
        attendee_failures: failures,
        window_s,
        sent_packets: stats.sent_packets,
        received_packets: stats.received_packets,
        expected_packets: stats.expected(),
        lost_packets: stats.lost(),
        duplicate_packets: stats.duplicates(),
        loss_pct: stats.loss_pct(),
        forwarded_pps,
        received_mbps: stats.received_bytes as f64 * 8.0 / window_s / 1e6,
        latency_ms: Percentiles::from_us(&stats.latency_us),
        server_send_delay_ms,
        jitter_ms_mean: stats.mean_jitter_ms(),
        keyframe_wait_ms: Percentiles::from_us(&stats.keyframe_wait_us),
        keyframe_never: stats.keyframe_never,
        keyframe_requests: stats.keyframe_requests,
        keyframe_requests_unmatched: stats.keyframe_requests_unmatched,
        client_send_errors: stats.send_errors,
        generator_cores_busy: (me_end.cpu_s - me_start.cpu_s).max(0.0) / window_s,
        system_cores_busy: (system_end - system_start).max(0.0) / window_s,
        server,
        scenario: s,
    })
}

/// CPU per forwarded packet and memory per attendee from three samples of the server process.
pub fn server_report(
    before_join: ProcSample,
    start: ProcSample,
    end: ProcSample,
    window_s: f64,
    packets: u64,
    attendees: usize,
) -> ServerReport {
    let cpu_s = (end.cpu_s - start.cpu_s).max(0.0);
    let cpu_us_per_pkt = if packets == 0 {
        0.0
    } else {
        cpu_s * 1e6 / packets as f64
    };
    ServerReport {
        cpu_s,
        cores_busy: if window_s > 0.0 {
            cpu_s / window_s
        } else {
            0.0
        },
        rss_kib_before: before_join.rss_kib,
        rss_kib: end.rss_kib,
        rss_kib_per_attendee: end.rss_kib.saturating_sub(before_join.rss_kib) as f64
            / attendees.max(1) as f64,
        packets_out: Some(packets),
        cpu_us_per_pkt,
        pps_per_core: if cpu_us_per_pkt > 0.0 {
            1e6 / cpu_us_per_pkt
        } else {
            0.0
        },
    }
}

fn progress(s: &Scenario, shared: &Shared, counters: &SignalCounters, phase: &str) {
    eprintln!(
        "[{}] {phase}: joined {}/{} connected {}/{} sent {} received {}",
        s.name,
        counters.joined.load(Ordering::Relaxed),
        s.attendees(),
        shared.connected.load(Ordering::Relaxed),
        s.expected_connections(),
        shared.sent.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_ignore_other_series() {
        let text = "# HELP convene_media_packets_out_total x\n\
                    convene_media_packets_out_total{kind=\"audio\"} 10\n\
                    convene_media_packets_out_total{kind=\"video\"} 32\n\
                    convene_media_packets_out_total_extra 99\n\
                    convene_media_packets_in_total{kind=\"video\"} 5\n";
        assert_eq!(sum_metric(text, "convene_media_packets_out_total"), 42);
    }

    /// The buckets of one histogram, in order, with `+Inf`; another histogram's are not taken.
    #[test]
    fn histogram_buckets_are_read_in_order() {
        let text = "# TYPE convene_media_send_delay_seconds histogram\n\
                    convene_media_send_delay_seconds_bucket{le=\"0.001\"} 90\n\
                    convene_media_send_delay_seconds_bucket{le=\"0.002\"} 99\n\
                    convene_media_send_delay_seconds_bucket{le=\"+Inf\"} 100\n\
                    convene_media_send_delay_seconds_sum 0.1\n\
                    convene_media_send_delay_seconds_count 100\n\
                    other_seconds_bucket{le=\"0.001\"} 7\n";
        assert_eq!(
            histogram_buckets(text, "convene_media_send_delay_seconds"),
            vec![(0.001, 90), (0.002, 99), (f64::INFINITY, 100)]
        );
        assert!(histogram_buckets(text, "missing").is_empty());
    }

    /// Percentiles of what was counted between two scrapes, interpolated within the bucket.
    #[test]
    fn window_percentiles_count_only_the_window() {
        let inf = f64::INFINITY;
        // Before the window: 1 000 samples, all slow; they must not count.
        let start = [(0.001, 0), (0.002, 0), (0.01, 1000), (inf, 1000)];
        // In the window: 50 under 1 ms, 49 in 1-2 ms, one in 2-10 ms.
        let end = [(0.001, 50), (0.002, 99), (0.01, 1100), (inf, 1100)];
        let p = window_percentiles(&start, &end).expect("samples");
        assert_eq!(p.count, 100);
        assert!((p.p50 - 1.0).abs() < 1e-9, "{p:?}");
        // Rank 99 is the last of the 1-2 ms bucket.
        assert!((p.p99 - 2.0).abs() < 1e-9, "{p:?}");
        // No samples, or mismatched scrapes: nothing to say.
        assert!(window_percentiles(&end, &end).is_none());
        assert!(window_percentiles(&start[..2], &end).is_none());
        // Everything past the last bound reads as that bound.
        let over = window_percentiles(&[], &[(0.001, 0), (inf, 10)]).expect("samples");
        assert_eq!((over.p50, over.p99), (1.0, 1.0));
    }

    #[test]
    fn server_report_math() {
        let s = |cpu_s, rss_kib| ProcSample { cpu_s, rss_kib };
        let r = server_report(
            s(0.5, 10_000),
            s(1.0, 30_000),
            s(3.0, 31_000),
            10.0,
            100_000,
            42,
        );
        assert!((r.cpu_s - 2.0).abs() < 1e-9);
        assert!((r.cores_busy - 0.2).abs() < 1e-9);
        assert!((r.cpu_us_per_pkt - 20.0).abs() < 1e-9);
        assert!((r.pps_per_core - 50_000.0).abs() < 1e-6);
        assert!((r.rss_kib_per_attendee - 21_000.0 / 42.0).abs() < 1e-9);
        let idle = server_report(s(0.0, 1), s(0.0, 1), s(0.0, 1), 0.0, 0, 0);
        assert_eq!(idle.cpu_us_per_pkt, 0.0);
        assert_eq!(idle.pps_per_core, 0.0);
    }

    #[test]
    fn expected_connections_by_shape() {
        let mut s = Scenario {
            name: "t".into(),
            target: Target::Janus {
                url: "ws://127.0.0.1:1".into(),
                layer: None,
            },
            meetings: 1,
            publishers: 1,
            subscribers: 100,
            audio: true,
            camera: vec![],
            screens: 0,
            talk_ratio: 1.0,
            follow_publish_targets: true,
            keyframe_interval: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            connect_timeout: Duration::from_secs(1),
            join_rate: 1.0,
            threads: 1,
            local_ip: "127.0.0.1".parse().unwrap(),
            server_pid: None,
            seed: 0,
        };
        assert_eq!(s.expected_connections(), 101);
        s.publishers = 10;
        s.subscribers = 0;
        assert_eq!(s.expected_connections(), 20);
        s.meetings = 200;
        s.publishers = 2;
        assert_eq!(s.expected_connections(), 800);
        assert_eq!(s.attendees(), 400);
    }
}
