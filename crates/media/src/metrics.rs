//! Prometheus metrics of the media plane.
//!
//! Handles are resolved once per shard ([`ShardMetrics`]). Counters the packet path bumps are
//! [`ShardCounter`]s: the shard adds to a buffer of its own (no atomic shared with the other shards' cores,
//! no label lookup, no allocation) and flushes the buffers into the registered counters every tick
//! ([`ShardMetrics::flush`]), so a scrape sees each shard's counts at most one tick late.

use convene_core::{ClientType, MediaSource};
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Reasons a datagram or packet is dropped (the `reason` label of `convene_media_packets_dropped_total`).
pub const DROP_REASONS: [&str; 18] = [
    "unrecognized",
    "unknown_source",
    "not_accepted",
    "rejected",
    "unpublished",
    "unknown_payload_type",
    "codec_mismatch",
    "send_failed",
    // A datagram longer than the worker's receive buffers (`udp::MAX_DATAGRAM`).
    "oversized",
    // Data channel messages: from someone not controlling a screen, over the remote control flow's
    // fixed rate, or for a sharer whose channel is not open.
    "not_controlling",
    "remote_control_rate",
    "channel_closed",
    // A port attendee (a bridged call) did not read its deliveries fast enough.
    "port_full",
    // A publisher's packet on the fast path: not RTP, failed SRTP authentication, seen already (or
    // older than the replay window), or on one SSRC too many.
    "malformed_rtp",
    "srtp_auth",
    "duplicate",
    "too_many_streams",
    // A subscriber's RTCP on the fast path that is not RTCP.
    "malformed_rtcp",
];

/// Buckets of `convene_media_send_delay_seconds`: fine around the 1 ms a forwarded packet should stay
/// under, coarse beyond.
pub const SEND_DELAY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005,
    0.007_5, 0.01, 0.02, 0.05, 0.1, 0.25,
];

/// Every media-plane series, registered once.
#[derive(Clone)]
pub struct MediaMetrics {
    meetings: IntGauge,
    attendees: IntGaugeVec,
    tracks: IntGaugeVec,
    packets_in: IntCounterVec,
    bytes_in: IntCounterVec,
    packets_out: IntCounterVec,
    bytes_out: IntCounterVec,
    datagrams_in: IntCounter,
    datagram_bytes_in: IntCounter,
    datagrams_out: IntCounter,
    datagram_bytes_out: IntCounter,
    nacks: IntCounter,
    plis: IntCounter,
    keyframe_requests: IntCounter,
    allocation_changes: IntCounter,
    reprobes: IntCounter,
    meeting_allocation: MeetingAllocationMetrics,
    rtx_sent: IntCounter,
    fast_path_packets: IntCounterVec,
    dropped: IntCounterVec,
    worker_busy: GaugeVec,
    worker_wakeups: IntCounterVec,
    segmented_datagrams: IntCounter,
    send_delay: Histogram,
    pub signal_connections: IntGauge,
    signal_errors: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

impl MediaMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let meetings = IntGauge::new("convene_media_meetings", "Meetings in progress.")?;
        registry.register(Box::new(meetings.clone()))?;
        let signal_connections = IntGauge::new(
            "convene_signal_connections",
            "Open signaling WebSocket connections.",
        )?;
        registry.register(Box::new(signal_connections.clone()))?;
        let worker_busy = GaugeVec::new(
            Opts::new(
                "convene_media_worker_busy_ratio",
                "Share of the last second each media worker spent working.",
            ),
            &["shard"],
        )?;
        registry.register(Box::new(worker_busy.clone()))?;
        let send_delay = Histogram::with_opts(
            HistogramOpts::new(
                "convene_media_send_delay_seconds",
                "Time from the kernel's receipt of a datagram to the send call that handed back to the \
                 kernel what it caused (a forwarded packet's copies; repairs for a NACK), per datagram \
                 the fast path sent (or the kernel refused): the latency the server adds.",
            )
            .buckets(SEND_DELAY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(send_delay.clone()))?;
        let m = Self {
            meetings,
            attendees: gauge_vec(
                registry,
                "convene_media_attendees",
                "Attendees in meetings, by client type.",
                "client",
            )?,
            tracks: gauge_vec(
                registry,
                "convene_media_tracks",
                "Published tracks, by source.",
                "source",
            )?,
            packets_in: counter_vec(
                registry,
                "convene_media_packets_in_total",
                "RTP packets received from publishers.",
                "kind",
            )?,
            bytes_in: counter_vec(
                registry,
                "convene_media_bytes_in_total",
                "RTP payload bytes received from publishers.",
                "kind",
            )?,
            packets_out: counter_vec(
                registry,
                "convene_media_packets_out_total",
                "RTP packets forwarded to subscribers.",
                "kind",
            )?,
            bytes_out: counter_vec(
                registry,
                "convene_media_bytes_out_total",
                "RTP payload bytes forwarded to subscribers.",
                "kind",
            )?,
            datagrams_in: counter(
                registry,
                "convene_media_datagrams_in_total",
                "UDP datagrams received on the media ports.",
            )?,
            datagram_bytes_in: counter(
                registry,
                "convene_media_datagram_bytes_in_total",
                "UDP bytes received on the media ports.",
            )?,
            datagrams_out: counter(
                registry,
                "convene_media_datagrams_out_total",
                "UDP datagrams sent from the media ports.",
            )?,
            datagram_bytes_out: counter(
                registry,
                "convene_media_datagram_bytes_out_total",
                "UDP bytes sent from the media ports.",
            )?,
            nacks: counter(
                registry,
                "convene_media_nacks_total",
                "NACKs received from subscribers (answered from the RTX cache).",
            )?,
            plis: counter(
                registry,
                "convene_media_plis_total",
                "PLIs received from subscribers.",
            )?,
            keyframe_requests: counter(
                registry,
                "convene_media_keyframe_requests_total",
                "Keyframe requests sent to publishers (throttled).",
            )?,
            allocation_changes: counter(
                registry,
                "convene_media_allocation_changes_total",
                "Bandwidth allocation decisions that changed a subscription's layer or paused/resumed it.",
            )?,
            reprobes: counter(
                registry,
                "convene_media_estimator_reprobes_total",
                "Probes asked of a subscriber's bandwidth estimator while its estimate stayed under what its allocation wants.",
            )?,
            meeting_allocation: MeetingAllocationMetrics {
                changes: counter_vec(
                    registry,
                    "convene_media_meeting_allocation_changes_total",
                    "Allocation decisions that changed a subscription's layer or paused/resumed it, per meeting.",
                    "meeting",
                )?,
                paused: gauge_vec(
                    registry,
                    "convene_media_meeting_paused_streams",
                    "Subscriptions paused by the bandwidth allocation (they do not fit), per meeting.",
                    "meeting",
                )?,
                min_downlink: gauge_vec(
                    registry,
                    "convene_media_meeting_min_downlink_kbps",
                    "The lowest subscriber downlink budget in the meeting (estimate capped by REMB and the client's cap), kbps.",
                    "meeting",
                )?,
            },
            rtx_sent: counter(
                registry,
                "convene_media_rtx_sent_total",
                "Retransmissions (RTX) sent to subscribers.",
            )?,
            fast_path_packets: counter_vec(
                registry,
                "convene_media_fast_path_packets_total",
                "Packets on the fast path, by kind: forwarded media, probe padding and retransmissions sent to subscribers; media received from publishers; feedback (transport-wide, NACK, PLI) sent to publishers.",
                "kind",
            )?,
            dropped: counter_vec(
                registry,
                "convene_media_packets_dropped_total",
                "Datagrams or packets dropped, by reason.",
                "reason",
            )?,
            worker_busy,
            send_delay,
            worker_wakeups: counter_vec(
                registry,
                "convene_media_worker_wakeups_total",
                "Times a media worker woke up, by cause: datagrams arrived, or only a timer was due. At light load a wake-up costs more than the packets it handles (bench/results).",
                "cause",
            )?,
            segmented_datagrams: counter(
                registry,
                "convene_media_segmented_datagrams_total",
                "Datagrams sent in segmented sends (UDP GSO: several copies to one subscriber in one message); the rest of convene_media_datagrams_out_total went one per message.",
            )?,
            signal_connections,
            signal_errors: counter(
                registry,
                "convene_signal_errors_total",
                "Signaling requests answered with an error.",
            )?,
        };
        // Make every series visible from the start (a scrape shows zeros rather than nothing).
        for c in ClientType::ALL {
            m.attendees.with_label_values(&[c.as_str()]);
        }
        for s in MediaSource::ALL {
            m.tracks.with_label_values(&[s.as_str()]);
        }
        for r in DROP_REASONS {
            m.dropped.with_label_values(&[r]);
        }
        for c in ["datagrams", "timer"] {
            m.worker_wakeups.with_label_values(&[c]);
        }
        for k in ["media", "padding", "rtx", "received", "feedback"] {
            m.fast_path_packets.with_label_values(&[k]);
        }
        Ok(m)
    }

    /// The handles one shard uses.
    pub fn shard(&self, index: usize) -> ShardMetrics {
        let kind = |v: &IntCounterVec, k: &str| ShardCounter::new(v.with_label_values(&[k]));
        ShardMetrics {
            meetings: self.meetings.clone(),
            attendees: ClientType::ALL.map(|c| self.attendees.with_label_values(&[c.as_str()])),
            tracks: MediaSource::ALL.map(|s| self.tracks.with_label_values(&[s.as_str()])),
            audio_in: kind(&self.packets_in, "audio"),
            video_in: kind(&self.packets_in, "video"),
            audio_bytes_in: kind(&self.bytes_in, "audio"),
            video_bytes_in: kind(&self.bytes_in, "video"),
            audio_out: kind(&self.packets_out, "audio"),
            video_out: kind(&self.packets_out, "video"),
            audio_bytes_out: kind(&self.bytes_out, "audio"),
            video_bytes_out: kind(&self.bytes_out, "video"),
            datagrams_in: ShardCounter::new(self.datagrams_in.clone()),
            bytes_in: ShardCounter::new(self.datagram_bytes_in.clone()),
            datagrams_out: ShardCounter::new(self.datagrams_out.clone()),
            bytes_out: ShardCounter::new(self.datagram_bytes_out.clone()),
            nacks: ShardCounter::new(self.nacks.clone()),
            plis: ShardCounter::new(self.plis.clone()),
            keyframe_requests: self.keyframe_requests.clone(),
            allocation_changes: self.allocation_changes.clone(),
            reprobes: self.reprobes.clone(),
            meeting_allocation: self.meeting_allocation.clone(),
            rtx_sent: ShardCounter::new(self.rtx_sent.clone()),
            fast_media: kind(&self.fast_path_packets, "media"),
            fast_padding: kind(&self.fast_path_packets, "padding"),
            fast_rtx: kind(&self.fast_path_packets, "rtx"),
            fast_received: kind(&self.fast_path_packets, "received"),
            fast_feedback: kind(&self.fast_path_packets, "feedback"),
            dropped: DROP_REASONS.map(|r| ShardCounter::new(self.dropped.with_label_values(&[r]))),
            busy: self.worker_busy.with_label_values(&[&index.to_string()]),
            wakeups_datagrams: kind(&self.worker_wakeups, "datagrams"),
            wakeups_timer: kind(&self.worker_wakeups, "timer"),
            segmented: ShardCounter::new(self.segmented_datagrams.clone()),
            send_delay: self.send_delay.local(),
            signal_errors: self.signal_errors.clone(),
        }
    }

    pub fn signal_error(&self) {
        self.signal_errors.inc();
    }
}

/// The bandwidth allocation's series per meeting (label `meeting`), removed when the meeting ends.
#[derive(Clone)]
pub struct MeetingAllocationMetrics {
    changes: IntCounterVec,
    paused: IntGaugeVec,
    min_downlink: IntGaugeVec,
}

impl MeetingAllocationMetrics {
    pub fn changed(&self, meeting: &str) {
        self.changes.with_label_values(&[meeting]).inc();
    }

    /// The meeting's state once a second: paused subscriptions and its lowest downlink budget.
    pub fn set(&self, meeting: &str, paused: usize, min_downlink_kbps: Option<u32>) {
        self.paused
            .with_label_values(&[meeting])
            .set(paused.try_into().unwrap_or(i64::MAX));
        if let Some(kbps) = min_downlink_kbps {
            self.min_downlink
                .with_label_values(&[meeting])
                .set(i64::from(kbps));
        }
    }

    /// The meeting ended: its series go away (label sets must not pile up).
    pub fn forget(&self, meeting: &str) {
        let _ = self.changes.remove_label_values(&[meeting]);
        let _ = self.paused.remove_label_values(&[meeting]);
        let _ = self.min_downlink.remove_label_values(&[meeting]);
    }
}

/// A counter one shard bumps on its packet path: adds go to the shard's own buffer, [`ShardCounter::flush`]
/// moves them into the registered counter. A clone has a buffer of its own (and reads the same total).
#[derive(Clone)]
pub struct ShardCounter {
    shared: IntCounter,
    local: LocalIntCounter,
}

impl ShardCounter {
    fn new(shared: IntCounter) -> Self {
        Self {
            local: shared.local(),
            shared,
        }
    }

    #[inline]
    pub fn inc(&self) {
        self.local.inc();
    }

    #[inline]
    pub fn inc_by(&self, v: u64) {
        self.local.inc_by(v);
    }

    pub fn flush(&self) {
        self.local.flush();
    }

    /// The registered total: what every clone flushed so far.
    pub fn get(&self) -> u64 {
        self.shared.get()
    }
}

/// One shard's resolved metric handles.
#[derive(Clone)]
pub struct ShardMetrics {
    pub meetings: IntGauge,
    attendees: [IntGauge; ClientType::ALL.len()],
    tracks: [IntGauge; 3],
    pub audio_in: ShardCounter,
    pub video_in: ShardCounter,
    pub audio_bytes_in: ShardCounter,
    pub video_bytes_in: ShardCounter,
    pub audio_out: ShardCounter,
    pub video_out: ShardCounter,
    pub audio_bytes_out: ShardCounter,
    pub video_bytes_out: ShardCounter,
    pub datagrams_in: ShardCounter,
    pub bytes_in: ShardCounter,
    pub datagrams_out: ShardCounter,
    pub bytes_out: ShardCounter,
    pub nacks: ShardCounter,
    pub plis: ShardCounter,
    pub keyframe_requests: IntCounter,
    pub allocation_changes: IntCounter,
    pub reprobes: IntCounter,
    /// Per-meeting allocation series: touched when decisions change and once a second, never per
    /// packet (their label lookups would be).
    pub meeting_allocation: MeetingAllocationMetrics,
    pub rtx_sent: ShardCounter,
    /// What the fast path sent (`ShardConfig::fast_path`).
    pub fast_media: ShardCounter,
    pub fast_padding: ShardCounter,
    pub fast_rtx: ShardCounter,
    pub fast_received: ShardCounter,
    pub fast_feedback: ShardCounter,
    dropped: [ShardCounter; DROP_REASONS.len()],
    pub busy: Gauge,
    /// Counted by the worker (its clone flushes them).
    pub wakeups_datagrams: ShardCounter,
    pub wakeups_timer: ShardCounter,
    pub segmented: ShardCounter,
    /// Observed by the worker, per fast-path datagram it sends.
    pub send_delay: LocalHistogram,
    pub signal_errors: IntCounter,
}

impl ShardMetrics {
    /// Handles registered nowhere: for tests that do not scrape.
    pub fn unregistered() -> Self {
        MediaMetrics::register(&Registry::new())
            .map(|m| m.shard(0))
            .unwrap_or_else(|e| {
                // Registering into a fresh registry cannot collide; if it ever did, fail loudly in tests.
                panic!("metrics: {e}")
            })
    }

    /// Moves what this handle set counted since the last flush into the registered counters. The shard
    /// calls it every tick; any other holder of a clone (the worker) flushes its own.
    pub fn flush(&self) {
        for c in [
            &self.audio_in,
            &self.video_in,
            &self.audio_bytes_in,
            &self.video_bytes_in,
            &self.audio_out,
            &self.video_out,
            &self.audio_bytes_out,
            &self.video_bytes_out,
            &self.datagrams_in,
            &self.bytes_in,
            &self.datagrams_out,
            &self.bytes_out,
            &self.nacks,
            &self.plis,
            &self.rtx_sent,
            &self.fast_media,
            &self.fast_padding,
            &self.fast_rtx,
            &self.fast_received,
            &self.fast_feedback,
            &self.wakeups_datagrams,
            &self.wakeups_timer,
            &self.segmented,
        ] {
            c.flush();
        }
        for c in &self.dropped {
            c.flush();
        }
        self.send_delay.flush();
    }

    pub fn attendees(&self, client: ClientType) -> &IntGauge {
        &self.attendees[client as usize]
    }

    pub fn tracks(&self, source: MediaSource) -> &IntGauge {
        &self.tracks[source.index()]
    }

    /// Count a drop. `reason` must be one of [`DROP_REASONS`].
    pub fn dropped(&self, reason: &'static str) {
        match DROP_REASONS.iter().position(|&r| r == reason) {
            Some(i) => self.dropped[i].inc(),
            None => debug_assert!(false, "unknown drop reason {reason}"),
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.get()).sum()
    }
}
