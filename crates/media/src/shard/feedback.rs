//! A subscriber's RTCP on the fast path (`fast_egress.rs`): decrypted and read here, not by str0m,
//! and each feedback sent where str0m's events went.

use std::time::Instant;

use super::{Flush, Shard};
use crate::fastpath::feedback::{Feedback, fir_ssrcs, packets};

impl Shard {
    /// An SRTCP datagram on a subscribe connection whose media the fast path sends.
    pub(super) fn on_fast_rtcp(&mut self, now: Instant, idx: usize, data: &[u8]) {
        self.in_scratch(data, |shard, buf| shard.read_fast_rtcp(now, idx, buf));
        // What the feedback changed (allocations, renegotiation) may have queued events.
        self.run_events(now, Flush::Later);
    }

    fn read_fast_rtcp(&mut self, now: Instant, idx: usize, buf: &mut [u8]) {
        let Some(fast) = self.peers[idx].fast.as_ref() else {
            return;
        };
        let len = match fast.open_rtcp(buf) {
            Ok(len) => len,
            Err(e) => {
                tracing::trace!(peer = idx, error = %e, "subscriber RTCP refused");
                self.metrics.dropped("srtp_auth");
                return;
            }
        };
        for packet in packets(&buf[..len]) {
            let feedback = match packet {
                Ok(feedback) => feedback,
                Err(_) => {
                    self.metrics.dropped("malformed_rtcp");
                    break;
                }
            };
            match feedback {
                Feedback::TransportCc(report) => {
                    let Some(fast) = self.peers[idx].fast.as_mut() else {
                        return;
                    };
                    let estimate = fast.on_transport_cc(now, &report);
                    // A probe put on trial fills the connection from now, on its timer.
                    if let Some(at) = fast.next_deadline() {
                        self.schedule(idx, at);
                    }
                    if let Some(kbps) = estimate {
                        self.on_downlink_estimate(now, idx, kbps);
                    }
                }
                Feedback::Nack {
                    media_ssrc,
                    entries,
                } => self.on_fast_nack(now, idx, media_ssrc, entries),
                Feedback::Pli { media_ssrc } => self.on_fast_keyframe_request(now, idx, media_ssrc),
                Feedback::Fir { entries } => {
                    for ssrc in fir_ssrcs(entries) {
                        self.on_fast_keyframe_request(now, idx, ssrc);
                    }
                }
                Feedback::Remb { bitrate_bps } => {
                    let kbps = (bitrate_bps / 1000).min(u64::from(u32::MAX)) as u32;
                    self.on_downlink_remb(now, idx, kbps);
                }
                Feedback::Other => {}
            }
        }
    }
}
