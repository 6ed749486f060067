//! A publisher's media on the fast path (`fast_ingress.rs`): from the datagram to [`Shard::forward`],
//! and the feedback that goes back.

use std::time::Instant;

use str0m::media::Pt;

use super::Shard;
use super::fast_ingress::{FastIngress, Opened, Route};
use super::forwarding::{Incoming, Payload};
use crate::fastpath::ingress::IngressExtIds;

impl Shard {
    /// The publish connection `idx` is up: its media moves to the fast path.
    pub(super) fn start_fast_ingress(&mut self, idx: usize) {
        let ids = self.ingress_ext_ids(idx);
        let peer = &mut self.peers[idx];
        // DTLS is done, so its keys have landed; str0m's last datagram went to the nominated pair.
        let destination = peer.addrs.last().copied();
        match (peer.srtp_keys.get(), destination) {
            (Some(keys), Some(destination)) => match FastIngress::new(&keys, destination, ids) {
                Ok(fast_in) => peer.fast_in = Some(Box::new(fast_in)),
                Err(e) => {
                    tracing::warn!(peer = idx, error = %e, "fast ingress unavailable; str0m receives")
                }
            },
            _ => tracing::warn!(
                peer = idx,
                "connected without keys or address; str0m receives"
            ),
        }
    }

    /// The header extension ids the publisher negotiated, over all its m-lines.
    fn ingress_ext_ids(&self, idx: usize) -> IngressExtIds {
        let peer = &self.peers[idx];
        let mut ids = IngressExtIds::default();
        for p in self.attendees[peer.attendee]
            .publications
            .into_iter()
            .flatten()
        {
            if let Some(media) = peer.rtc.media(self.publications[p].mid) {
                ids.merge(IngressExtIds::from_map(media.remote_extmap()));
            }
        }
        ids
    }

    /// The publisher renegotiated: its extension ids may name more now (a first video m-line). A
    /// connection not on the fast path yet reads them when it comes up.
    pub(super) fn refresh_ingress_ext_ids(&mut self, idx: usize) {
        let ids = self.ingress_ext_ids(idx);
        if let Some(fast_in) = self.peers[idx].fast_in.as_mut() {
            fast_in.ids = ids;
        }
    }

    /// Runs `f` on a copy of `data` in the shard's scratch buffer (the fast path decrypts in place;
    /// the caller's buffer is shared). The buffer is taken out meanwhile, so `f` may borrow from it
    /// while it changes the shard.
    pub(super) fn in_scratch(&mut self, data: &[u8], f: impl FnOnce(&mut Self, &mut [u8])) {
        let n = data.len();
        if n > self.scratch.len() {
            self.metrics.dropped("oversized");
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch[..n].copy_from_slice(data);
        f(self, &mut scratch[..n]);
        self.scratch = scratch;
    }

    /// An SRTP datagram on a publish connection whose media the fast path receives.
    pub(super) fn on_fast_rtp(&mut self, now: Instant, peer_idx: usize, data: &[u8]) {
        self.in_scratch(data, |shard, buf| shard.take_fast_rtp(now, peer_idx, buf));
        self.schedule_fast_ingress(peer_idx);
    }

    fn take_fast_rtp(&mut self, now: Instant, peer_idx: usize, buf: &mut [u8]) {
        let Some(fast_in) = self.peers[peer_idx].fast_in.as_mut() else {
            return;
        };
        let opened = match fast_in.open(now, buf) {
            Ok(opened) => opened,
            Err(refused) => {
                tracing::trace!(peer = peer_idx, %refused, "incoming packet refused");
                self.metrics.dropped(refused.reason());
                return;
            }
        };
        self.metrics.fast_received.inc();
        let route = match fast_in.stream(opened.stream).route {
            Some(route) => route,
            None => match self.route_fast_stream(now, peer_idx, &opened) {
                Some(route) => route,
                None => {
                    self.metrics.dropped("unpublished");
                    return;
                }
            },
        };
        let (p, layer, index, pt, payload) = match route {
            Route::Media { publication, layer } => (
                publication,
                layer,
                opened.index,
                Pt::from(opened.header.pt),
                opened.payload.clone(),
            ),
            Route::Repair { main_ssrc } => {
                let range = opened.payload.clone();
                if range.len() < 2 {
                    // Padding only: a probe of the publisher's estimator, counted in our feedback.
                    return;
                }
                let osn = u16::from_be_bytes([buf[range.start], buf[range.start + 1]]);
                let Some(pt) = self.repaired_pt(peer_idx, Pt::from(opened.header.pt)) else {
                    self.metrics.dropped("unknown_payload_type");
                    return;
                };
                let Some(fast_in) = self.peers[peer_idx].fast_in.as_mut() else {
                    return;
                };
                let Some(Route::Media { publication, layer }) = fast_in.route_of(main_ssrc) else {
                    self.metrics.dropped("unpublished");
                    return;
                };
                let Some(index) = fast_in.repaired(now, main_ssrc, osn) else {
                    // Arrived already (a NACK crossed the packet, or str0m's early one).
                    self.metrics.dropped("duplicate");
                    return;
                };
                (publication, layer, index, pt, range.start + 2..range.end)
            }
        };
        let owner = self.peers[peer_idx].attendee;
        if self.publications.get(p).is_none_or(|publication| {
            publication.attendee != owner || layer >= publication.layers.len()
        }) {
            self.metrics.dropped("unpublished");
            return;
        }
        let incoming = Incoming {
            seq: index,
            timestamp: opened.header.timestamp,
            marker: opened.header.marker,
            pt,
            payload: Payload::borrowed(&buf[payload]),
            arrival: now,
            ext: opened.ext,
        };
        self.forward(now, p, layer, Some(peer_idx), incoming);
    }

    /// The payload type an RTX payload type of the publish connection repairs.
    fn repaired_pt(&self, peer_idx: usize, rtx_pt: Pt) -> Option<Pt> {
        self.peers[peer_idx]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.resend() == Some(rtx_pt))
            .map(|p| p.pt())
    }

    /// A new SSRC on the fast path: which publication and layer it carries, or which stream it
    /// repairs. A stream str0m routed before keeps that route; others are routed by their MID and
    /// RID (or repaired RID) header extensions, as str0m would.
    fn route_fast_stream(
        &mut self,
        now: Instant,
        peer_idx: usize,
        opened: &Opened,
    ) -> Option<Route> {
        let ssrc = opened.header.ssrc;
        let known = self.peers[peer_idx]
            .ssrc_routes
            .iter()
            .find(|r| *r.0 == ssrc)
            .map(|r| (r.1, r.2));
        let ext = &opened.ext;
        let route = match (known, ext.mid) {
            (Some((publication, layer)), _) => Route::Media { publication, layer },
            (None, None) => return None,
            (None, Some(mid)) => {
                let owner = self.peers[peer_idx].attendee;
                let p = self.attendees[owner]
                    .publications
                    .into_iter()
                    .flatten()
                    .find(|&p| self.publications[p].mid == mid)?;
                let layers = &self.publications[p].layers;
                let is_rtx = self
                    .repaired_pt(peer_idx, Pt::from(opened.header.pt))
                    .is_some();
                if let Some(rrid) = ext.rid_repair {
                    let l = layers.iter().find(|l| l.rid == Some(rrid))?;
                    Route::Repair { main_ssrc: *l.ssrc }
                } else if is_rtx {
                    // RTX of a stream without simulcast: the publication's one layer.
                    let l = layers.iter().find(|l| l.rid.is_none())?;
                    Route::Repair { main_ssrc: *l.ssrc }
                } else {
                    let (publication, layer) =
                        self.route_stream(now, peer_idx, ssrc.into(), mid, ext.rid)?;
                    Route::Media { publication, layer }
                }
            }
        };
        let nackable = match route {
            Route::Media { publication, .. } => self.publications[publication].source.is_video(),
            Route::Repair { .. } => false,
        };
        tracing::debug!(peer = peer_idx, ssrc, ?route, "fast path stream");
        let fast_in = self.peers[peer_idx].fast_in.as_mut()?;
        let stream = fast_in.stream_mut(opened.stream);
        stream.route = Some(route);
        stream.nackable = nackable;
        Some(route)
    }

    /// Sends the fast path's due feedback to publisher connection `idx`, and schedules the next.
    pub(super) fn poll_fast_ingress(&mut self, now: Instant, idx: usize) {
        let Some(fast_in) = self.peers.get_mut(idx).and_then(|p| p.fast_in.as_mut()) else {
            return;
        };
        while let Some(n) = fast_in.poll(now, self.outbox.next_buf()) {
            self.outbox.commit(fast_in.destination, n);
            self.metrics.fast_feedback.inc();
        }
        self.schedule_fast_ingress(idx);
    }

    /// Wakes the publish connection for its next NACK retry (on time) and its next feedback (soft).
    fn schedule_fast_ingress(&mut self, idx: usize) {
        let Some(fast_in) = self.peers.get(idx).and_then(|p| p.fast_in.as_ref()) else {
            return;
        };
        let (nack, feedback) = (fast_in.next_nack_due(), fast_in.next_feedback_due());
        if let Some(at) = nack {
            self.schedule(idx, at);
        }
        if let Some(at) = feedback {
            self.schedule_soft(idx, at);
        }
    }
}
