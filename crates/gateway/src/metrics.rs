//! Prometheus series of the gateway, registered into the registry the binary passes in.

use prometheus::{Counter, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Label values of `convene_gateway_refused_total{reason}`: messages refused before a transaction.
pub const REFUSAL_REASONS: [&str; 11] = [
    "malformed",
    "wrong_version",
    "too_large",
    "unsupported_scheme",
    "not_implemented",
    "rate_limited",
    "unanswerable",
    "overloaded",
    "rtp_foreign_source",
    "audio_bridge",
    "srtp",
];

/// Directions of `convene_gateway_audio_frames_total` and `convene_gateway_audio_concealed_total`.
pub const AUDIO_DIRECTIONS: [&str; 2] = ["to_meeting", "to_device"];

/// Call states for `convene_gateway_calls{state}`.
pub const CALL_STATES: [&str; 3] = ["admitting", "ivr", "meeting"];

#[derive(Clone)]
pub struct GatewayMetrics {
    pub requests: IntCounterVec,
    pub refused: IntCounterVec,
    pub retransmissions: IntCounterVec,
    pub calls: IntGaugeVec,
    pub calls_answered: IntCounterVec,
    pub calls_ended: IntCounterVec,
    pub dtmf_digits: IntCounterVec,
    pub ivr_failures: IntCounterVec,
    pub rtp_packets: IntCounter,
    pub rtp_lost: IntCounter,
    pub rtp_dropped: IntCounter,
    pub audio_frames: IntCounterVec,
    pub audio_concealed: IntCounterVec,
    pub transcode_seconds: Counter,
    pub video_packets: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl GatewayMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let calls = IntGaugeVec::new(
            Opts::new("convene_gateway_calls", "Live gateway calls by state"),
            &["state"],
        )?;
        r.register(Box::new(calls.clone()))?;
        let m = Self {
            requests: counter_vec(
                r,
                "convene_gateway_requests_total",
                "SIP requests received, by method",
                "method",
            )?,
            refused: counter_vec(
                r,
                "convene_gateway_refused_total",
                "SIP messages refused before any transaction (answered with an error or dropped), and RTP from a source other than the call's, by reason",
                "reason",
            )?,
            retransmissions: counter_vec(
                r,
                "convene_gateway_retransmissions_total",
                "SIP retransmissions, by direction (in: absorbed, out: sent by our timers)",
                "direction",
            )?,
            calls,
            calls_answered: counter_vec(
                r,
                "convene_gateway_calls_answered_total",
                "Calls answered, by audio codec",
                "codec",
            )?,
            calls_ended: counter_vec(
                r,
                "convene_gateway_calls_ended_total",
                "Calls ended, by reason",
                "reason",
            )?,
            dtmf_digits: counter_vec(
                r,
                "convene_gateway_dtmf_digits_total",
                "DTMF key presses received, by source (rtp, info)",
                "source",
            )?,
            ivr_failures: counter_vec(
                r,
                "convene_gateway_ivr_failures_total",
                "Meeting IDs entered in the IVR that did not admit the caller, by reason",
                "reason",
            )?,
            rtp_packets: counter(
                r,
                "convene_gateway_rtp_packets_total",
                "RTP packets received from devices",
            )?,
            rtp_lost: counter(
                r,
                "convene_gateway_rtp_lost_total",
                "RTP packets devices sent that never arrived (sequence gaps, net of late arrivals)",
            )?,
            rtp_dropped: counter(
                r,
                "convene_gateway_rtp_dropped_total",
                "Datagrams on gateway RTP ports that are not RTP",
            )?,
            audio_frames: counter_vec(
                r,
                "convene_gateway_audio_frames_total",
                "20 ms audio frames bridged, by direction (to_meeting: the room's voice as Opus; to_device: the meeting's mix in the device's codec)",
                "direction",
            )?,
            audio_concealed: counter_vec(
                r,
                "convene_gateway_audio_concealed_total",
                "Audio frames concealed because their packet was lost or late, by the direction they were going (to_meeting: from the device; to_device: from the meeting)",
                "direction",
            )?,
            video_packets: counter_vec(
                r,
                "convene_gateway_video_packets_total",
                "H.264 packets relayed, by direction (to_meeting: the room's camera; to_device: the speaker shown to the room)",
                "direction",
            )?,
            transcode_seconds: {
                let c = Counter::new(
                    "convene_gateway_transcode_seconds_total",
                    "Time calls' media tasks spent decoding, mixing and encoding audio, summed over calls (its rate is the cores transcoding takes)",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
        };
        // Pre-create the known series so dashboards see zeros.
        for direction in AUDIO_DIRECTIONS {
            m.audio_frames.with_label_values(&[direction]);
            m.audio_concealed.with_label_values(&[direction]);
            m.video_packets.with_label_values(&[direction]);
        }
        for reason in REFUSAL_REASONS {
            m.refused.with_label_values(&[reason]);
        }
        for state in CALL_STATES {
            m.calls.with_label_values(&[state]);
        }
        Ok(m)
    }

    /// Series registered nowhere, for tests.
    pub fn unregistered() -> Self {
        // A fresh registry cannot already hold these names.
        Self::register(&Registry::new()).unwrap_or_else(|_| unreachable!("fresh registry"))
    }
}
