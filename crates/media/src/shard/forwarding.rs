//! The hot path: an incoming RTP packet goes out to every subscription of its publication.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{KeyframeRequest, KeyframeRequestKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};

use super::Shard;
use super::model::{FastSubscription, Layer};
use super::peer::Role;
use crate::allocation::policy::Choice;
use crate::fastpath::egress::{ExtIds, RtpOut};
use crate::fastpath::feedback::nack_entries;
use crate::fastpath::prefetch::prefetch;
use crate::fastpath::rtx::rtx_payload;
use crate::forward::{VideoCodec, starts_keyframe};

/// An RFC 6464 level (in -dBov) above this marks its sender as speaking...
const SPEAKING_LEVEL_DBOV: i8 = -50;
/// ...for this long after the packet.
const SPEAKING_HOLD: Duration = Duration::from_millis(600);
/// Bytes a forwarded packet carries besides its payload: IPv4 + UDP (28), the RTP header (12), our header
/// extensions (about 12) and the SRTP authentication tag (16).
const PACKET_OVERHEAD_BYTES: u64 = 68;
/// A layer whose last packet is older than this at the end of a rate window was stopping in it.
const STEADY_GAP: Duration = Duration::from_millis(300);
/// A layer without packets for this long is no longer "arriving".
const LAYER_STALE: Duration = Duration::from_millis(1500);
/// RTP ticks between the last packet of one source and the first of the next on a switch.
const VIDEO_SWITCH_GAP: u32 = 3000; // one frame at 30 fps, 90 kHz
const AUDIO_SWITCH_GAP: u32 = 960; // 20 ms at 48 kHz

/// An incoming media packet, from a WebRTC publish connection or from a port: what forwarding reads.
pub(super) struct Incoming<'a> {
    /// Sequence number, extended to 64 bits.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub pt: Pt,
    pub payload: Payload<'a>,
    pub arrival: Instant,
    pub ext: ExtensionValues,
}

/// An incoming packet's payload: the bytes, borrowed (the fast path writes and seals its copies from
/// them), and, made at most once per packet, a shared buffer for the outlets that keep it (str0m's
/// send queue, a port's channel).
pub(super) struct Payload<'a> {
    bytes: &'a [u8],
    shared: OnceCell<Arc<[u8]>>,
}

impl<'a> Payload<'a> {
    /// Bytes owned elsewhere (the fast path's receive buffer); shared only if an outlet asks.
    pub fn borrowed(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            shared: OnceCell::new(),
        }
    }

    /// A buffer that is shared already (str0m's, a port's).
    pub fn shared(buf: &'a Arc<[u8]>) -> Self {
        Self {
            bytes: buf,
            shared: OnceCell::from(Arc::clone(buf)),
        }
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The payload as a shared buffer: a reference count if it is one already, else one copy for
    /// every outlet of this packet.
    pub fn to_shared(&self) -> Arc<[u8]> {
        Arc::clone(self.shared.get_or_init(|| Arc::from(self.bytes)))
    }
}

impl Shard {
    pub(super) fn on_rtp(&mut self, now: Instant, peer_idx: usize, packet: RtpPacket) {
        // Media only counts on a publish connection: str0m also surfaces RTP a client sends on its
        // subscribe connection, which must never reach anyone.
        let peer = &self.peers[peer_idx];
        if peer.role != Role::Publish {
            self.metrics.dropped("unpublished");
            return;
        }
        let owner = peer.attendee;
        let ssrc = packet.header.ssrc;
        let route = self.peers[peer_idx]
            .ssrc_routes
            .iter()
            .find(|r| r.0 == ssrc)
            .map(|r| (r.1, r.2));
        let Some((p, layer)) = route.or_else(|| self.route_new_ssrc(now, peer_idx, ssrc)) else {
            self.metrics.dropped("unpublished");
            return;
        };
        if self
            .publications
            .get(p)
            .is_none_or(|publication| publication.attendee != owner)
        {
            self.metrics.dropped("unpublished");
            return;
        }
        let incoming = Incoming {
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            pt: packet.header.payload_type,
            payload: Payload::shared(&packet.payload),
            arrival: packet.timestamp,
            ext: packet.header.ext_vals,
        };
        self.forward(now, p, layer, Some(peer_idx), incoming);
    }

    /// One packet of publication `p`'s `layer` goes out to every subscription that should get it.
    /// `publisher_peer` is the connection it arrived on (None for a port attendee's packet), where
    /// an unknown payload type's parameters are looked up.
    pub(super) fn forward(
        &mut self,
        now: Instant,
        p: usize,
        layer: usize,
        publisher_peer: Option<usize>,
        packet: Incoming<'_>,
    ) {
        let publication = &mut self.publications[p];
        let is_video = publication.source.is_video();
        let len = packet.payload.bytes().len() as u64;
        if is_video {
            self.metrics.video_in.inc();
            self.metrics.video_bytes_in.inc_by(len);
        } else {
            self.metrics.audio_in.inc();
            self.metrics.audio_bytes_in.inc_by(len);
        }
        let l = &mut publication.layers[layer];
        l.last_packet = now;
        // What the layer costs on a subscriber's link, which is what its estimate measures: the payload
        // plus each packet's headers and SRTP tag (about a fifth more for audio and small video packets).
        l.bytes_window += len + PACKET_OVERHEAD_BYTES;
        if publication.best_layer.is_none() {
            publication.best_layer = Some(layer);
        }
        if !is_video && let Some(level) = packet.ext.audio_level {
            if level > SPEAKING_LEVEL_DBOV {
                publication.speaking_until = Some(now + SPEAKING_HOLD);
            }
            // str0m gives the level as -dBov (0 loudest, -127 silence).
            publication.level_sum += u32::from(level.unsigned_abs().min(127));
            publication.level_packets += 1;
        }
        if !is_video && !publication.audible {
            // Not among the loudest voices of a large meeting: nobody receives it.
            return;
        }

        let pt = packet.pt;
        let params = match publication.params {
            Some((cached, params)) if cached == pt => params,
            _ => {
                let Some(params) = publisher_peer
                    .and_then(|peer| self.peers[peer].rtc.codec_config().find(|c| c.pt() == pt))
                    .copied()
                else {
                    self.metrics.dropped("unknown_payload_type");
                    return;
                };
                publication.params = Some((pt, params));
                publication.video_codec = match params.spec().codec {
                    Codec::Vp8 => Some(VideoCodec::Vp8),
                    Codec::H264 => Some(VideoCodec::H264),
                    _ => None,
                };
                params
            }
        };
        let keyframe = publication
            .video_codec
            .is_some_and(|c| starts_keyframe(c, packet.payload.bytes()));
        let best = publication.best_layer.unwrap_or(layer);
        // Layers some subscriber waits for a keyframe of (bit per layer index).
        let mut keyframes_wanted: u32 = 0;
        // Some fast-path subscription got the packet (then it may be NACKed).
        let mut sent_fast = false;

        self.prefetch_fan_out(p);
        for i in 0..self.publications[p].subscriptions.len() {
            let s = self.publications[p].subscriptions[i];
            let sub = &mut self.subscriptions[s];
            if !sub.negotiated {
                continue;
            }
            let subscriber = &self.attendees[sub.subscriber];
            // Where it goes: a WebRTC subscribe connection (its m-line), or a port.
            let egress = if subscriber.port.is_some() {
                None
            } else {
                let (Some(mid), Some(peer)) = (sub.mid, subscriber.subscribe_peer) else {
                    continue;
                };
                if !self.peers[peer].connected {
                    continue;
                }
                Some((mid, peer))
            };
            // What this subscriber should get: its allocation, or (before it has an estimate) the best
            // layer arriving.
            let want = match sub.target {
                None => best,
                Some(Choice::Layer(l)) => l,
                Some(Choice::Paused) => {
                    // Resuming later starts on a keyframe, like a first start.
                    sub.layer = None;
                    continue;
                }
            };
            if sub.layer != Some(layer) {
                if is_video {
                    // Start or switch only on a keyframe of the layer we want.
                    if layer != want || !keyframe {
                        if sub.layer.is_none_or(|current| current != want) {
                            keyframes_wanted |= 1 << (want.min(31) as u32);
                        }
                        continue;
                    }
                } else if sub.layer.is_some() {
                    continue;
                }
                if sub.rewriter.has_started() {
                    sub.rewriter.switch_source();
                }
                tracing::debug!(subscription = s, from = ?sub.layer, to = layer, "layer switched");
                sub.layer = Some(layer);
            } else if is_video && layer != want {
                keyframes_wanted |= 1 << (want.min(31) as u32);
            }
            let gap = if is_video {
                VIDEO_SWITCH_GAP
            } else {
                AUDIO_SWITCH_GAP
            };
            let Some(out) = sub.rewriter.rewrite(packet.seq, packet.timestamp, gap) else {
                continue;
            };
            let Some((mid, peer)) = egress else {
                let subscriber = sub.subscriber;
                if self.deliver_to_port(subscriber, p, &packet, out.seq as u16, out.ts) {
                    self.count_out(is_video, len);
                }
                continue;
            };
            let out_pt = match sub.pt_map {
                Some((from, to)) if from == pt => to,
                _ => {
                    // The subscriber's codec for these parameters, and only one its answer accepted.
                    let rtc = &self.peers[peer].rtc;
                    let negotiated = rtc.media(mid).map(|m| m.remote_pts()).unwrap_or(&[]);
                    let Some(to) = rtc
                        .codec_config()
                        .match_params(params)
                        .map(|m| m.pt())
                        .filter(|to| negotiated.contains(to))
                    else {
                        self.metrics.dropped("codec_mismatch");
                        continue;
                    };
                    sub.pt_map = Some((pt, to));
                    to
                }
            };
            let Some(tx_ssrc) = sub.tx_ssrc else { continue };
            if self.peers[peer].fast.is_some() {
                let rtc = &mut self.peers[peer].rtc;
                let FastSubscription { ids, rtx, stream } =
                    *sub.fast.get_or_insert_with(|| FastSubscription {
                        ids: rtc
                            .media(mid)
                            .map(|m| ExtIds::from_map(m.remote_extmap()))
                            .unwrap_or_default(),
                        rtx: rtx_of(rtc, tx_ssrc, out_pt),
                        stream: None,
                    });
                let Some(fast) = self.peers[peer].fast.as_mut() else {
                    continue;
                };
                let stream = match stream {
                    Some(stream) => stream,
                    None => {
                        let stream = fast.stream(*tx_ssrc);
                        if let Some(f) = sub.fast.as_mut() {
                            f.stream = Some(stream);
                        }
                        stream
                    }
                };
                if is_video && let Some((ssrc, pt)) = rtx {
                    fast.offer_padding_stream(ssrc, pt, ids);
                }
                let rtp = RtpOut {
                    ssrc: *tx_ssrc,
                    pt: *out_pt,
                    seq: out.seq as u16,
                    timestamp: out.ts,
                    marker: packet.marker,
                    transport_seq: None,
                    audio_level: packet
                        .ext
                        .audio_level
                        .map(|level| (level, packet.ext.voice_activity.unwrap_or(false))),
                    video_orientation: packet.ext.video_orientation.map(|o| o as u8),
                    video_content_type: packet.ext.video_content_type,
                    payload: packet.payload.bytes(),
                    padding: 0,
                };
                let clock_hz = if is_video { 90_000 } else { 48_000 };
                if let Some(n) =
                    fast.packet(now, stream, &rtp, &ids, clock_hz, self.outbox.next_buf())
                {
                    self.outbox.commit(fast.destination, n);
                    self.count_out(is_video, len);
                    self.metrics.fast_media.inc();
                    sent_fast = true;
                }
                continue;
            }
            let ext = ExtensionValues {
                audio_level: packet.ext.audio_level,
                voice_activity: packet.ext.voice_activity,
                // Phones signal rotation here instead of rotating frames.
                video_orientation: packet.ext.video_orientation,
                video_content_type: packet.ext.video_content_type,
                ..Default::default()
            };
            let mut direct = self.peers[peer].rtc.direct_api();
            let Some(tx) = direct.stream_tx(&tx_ssrc) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    out.seq.into(),
                    out.ts,
                    packet.arrival,
                    packet.payload.to_shared(),
                )
                .marker(packet.marker)
                .ext_vals(ext)
                .nackable(is_video),
            );
            self.count_out(is_video, len);
            self.drain(peer, now);
            // str0m releases written packets on its next timeout pass; one per connection per batch.
            self.mark_dirty(peer);
        }
        if is_video && sent_fast {
            // Kept once per layer for the fast path's retransmissions (a copy into a reused buffer), and
            // only if the fast path sent it: a layer nobody receives is never asked for again.
            self.publications[p].layers[layer].history.insert(
                packet.seq,
                packet.timestamp,
                packet.marker,
                packet.payload.bytes(),
                now,
            );
        }
        // Only the layers some subscriber waits for (usually none): visit set bits, not all 32.
        while keyframes_wanted != 0 {
            let l = keyframes_wanted.trailing_zeros() as usize;
            keyframes_wanted &= keyframes_wanted - 1;
            self.request_keyframe(now, p, Some(l));
        }
    }

    /// Starts fetching every fast-path subscriber's egress state before the fan-out of one of
    /// publication `p`'s packets writes the first copy (`fastpath::prefetch`): the loads here do not
    /// depend on each other, so their misses overlap instead of stalling each copy in turn.
    fn prefetch_fan_out(&self, p: usize) {
        for &s in &self.publications[p].subscriptions {
            let sub = &self.subscriptions[s];
            prefetch(sub);
            if let Some(peer) = self.attendees[sub.subscriber].subscribe_peer
                && let Some(fast) = self.peers[peer].fast.as_deref()
            {
                fast.prefetch_for_packet(sub.fast.and_then(|f| f.stream));
            }
        }
    }

    /// A subscriber's NACK on a fast-path connection: resend what the layers' histories still hold, as
    /// RTX.
    pub(super) fn on_fast_nack(&mut self, now: Instant, idx: usize, media_ssrc: u32, fci: &[u8]) {
        // str0m counts the NACKs it answers in its egress stats; these it never sees.
        self.metrics.nacks.inc();
        let Some(s) = self.subscription_sent_on(idx, media_ssrc) else {
            return;
        };
        let sub = &self.subscriptions[s];
        let (
            Some(layer),
            Some(FastSubscription {
                ids,
                rtx: Some((rtx_ssrc, rtx_pt)),
                ..
            }),
        ) = (sub.layer, sub.fast)
        else {
            return;
        };
        let history = &self.publications[sub.publication].layers[layer].history;
        // Reused: a NACK storm is no reason to allocate.
        let mut payload = std::mem::take(&mut self.rtx_scratch);
        for (pid, blp) in nack_entries(fci) {
            let lost = std::iter::once(pid).chain(
                (0..16u16)
                    .filter(|bit| blp & (1 << bit) != 0)
                    .map(|bit| pid.wrapping_add(bit + 1)),
            );
            for out_seq in lost {
                let Some(original) = sub
                    .rewriter
                    .source_seq(out_seq)
                    .and_then(|seq| history.get(seq, now))
                else {
                    continue;
                };
                rtx_payload(out_seq, &original.payload, &mut payload);
                let Some(fast) = self.peers[idx].fast.as_mut() else {
                    continue;
                };
                let timestamp = sub.rewriter.out_timestamp(original.timestamp);
                let rtx = RtpOut {
                    ssrc: rtx_ssrc,
                    pt: rtx_pt,
                    seq: 0,
                    timestamp,
                    marker: original.marker,
                    transport_seq: None,
                    audio_level: None,
                    video_orientation: None,
                    video_content_type: None,
                    payload: &payload,
                    padding: 0,
                };
                if let Some(n) = fast.retransmission(now, rtx, &ids, self.outbox.next_buf()) {
                    self.outbox.commit(fast.destination, n);
                    self.metrics.rtx_sent.inc();
                    self.metrics.fast_rtx.inc();
                }
            }
        }
        self.rtx_scratch = payload;
    }

    /// A subscriber's PLI or FIR for the stream we send it on `media_ssrc` (fast path: str0m does not
    /// read its RTCP): passed on like str0m's keyframe request events.
    pub(super) fn on_fast_keyframe_request(&mut self, now: Instant, idx: usize, media_ssrc: u32) {
        self.metrics.plis.inc();
        if let Some(s) = self.subscription_sent_on(idx, media_ssrc) {
            self.request_keyframe_for(now, s);
        }
    }

    /// The subscription subscribe connection `idx` sends on SSRC `ssrc`.
    fn subscription_sent_on(&self, idx: usize, ssrc: u32) -> Option<usize> {
        let ssrc = Ssrc::from(ssrc);
        let attendee = self.peers[idx].attendee;
        self.attendees[attendee]
            .subscriptions
            .iter()
            .copied()
            .find(|&s| self.subscriptions[s].tx_ssrc == Some(ssrc))
    }

    /// Subscription `s` needs a keyframe: ask its publisher for one of the layer it gets (during a
    /// switch, the layer being switched to: a keyframe of the old one would only crowd the, often
    /// congested, link the switch is for).
    fn request_keyframe_for(&mut self, now: Instant, s: usize) {
        let sub = &self.subscriptions[s];
        let layer = super::target_layer(sub.target).or(sub.layer);
        self.request_keyframe(now, sub.publication, layer);
    }

    /// Sends the fast path's due padding and sender reports on connection `idx`, and schedules the
    /// next.
    pub(super) fn poll_fast_path(&mut self, now: Instant, idx: usize) {
        self.poll_fast_ingress(now, idx);
        let Some(fast) = self.peers.get_mut(idx).and_then(|p| p.fast.as_mut()) else {
            return;
        };
        while let Some(n) = fast.poll_padding(now, self.outbox.next_buf()) {
            self.metrics.fast_padding.inc();
            self.outbox.commit(fast.destination, n);
        }
        while let Some(n) = fast.poll_report(now, self.outbox.next_buf()) {
            self.outbox.commit(fast.destination, n);
        }
        let (padding, report) = (fast.next_deadline(), fast.next_report());
        if let Some(at) = padding {
            self.schedule(idx, at);
        }
        // A sender report a few tens of milliseconds late is as good.
        if let Some(at) = report {
            self.schedule_soft(idx, at);
        }
    }

    fn count_out(&self, is_video: bool, len: u64) {
        if is_video {
            self.metrics.video_out.inc();
            self.metrics.video_bytes_out.inc_by(len);
        } else {
            self.metrics.audio_out.inc();
            self.metrics.audio_bytes_out.inc_by(len);
        }
    }

    /// First packet on an SSRC: find its publication (by the m-line str0m mapped it to) and layer.
    fn route_new_ssrc(
        &mut self,
        now: Instant,
        peer_idx: usize,
        ssrc: Ssrc,
    ) -> Option<(usize, usize)> {
        let (mid, rid) = {
            let mut direct = self.peers[peer_idx].rtc.direct_api();
            let rx = direct.stream_rx(&ssrc)?;
            (rx.mid(), rx.rid())
        };
        self.route_stream(now, peer_idx, ssrc, mid, rid)
    }

    /// A new SSRC on a publish connection, sent for m-line `mid` (and simulcast layer `rid`): its
    /// publication and layer, remembered for the connection.
    pub(super) fn route_stream(
        &mut self,
        now: Instant,
        peer_idx: usize,
        ssrc: Ssrc,
        mid: Mid,
        rid: Option<Rid>,
    ) -> Option<(usize, usize)> {
        let peer = &mut self.peers[peer_idx];
        let attendee = &self.attendees[peer.attendee];
        let p = attendee
            .publications
            .into_iter()
            .flatten()
            .find(|&p| self.publications[p].mid == mid)?;
        let publication = &mut self.publications[p];
        let layer = match publication.layers.iter().position(|l| l.rid == rid) {
            Some(i) => {
                // Same layer, new SSRC (the sender restarted the stream): its numbering starts over,
                // so every subscription starts over too, on a keyframe for video.
                publication.layers[i].ssrc = ssrc;
                for &s in &publication.subscriptions {
                    let sub = &mut self.subscriptions[s];
                    if sub.layer == Some(i) {
                        sub.layer = None;
                    }
                }
                i
            }
            None => {
                publication.layers.push(Layer::new(rid, ssrc, now));
                publication.layers.len() - 1
            }
        };
        peer.ssrc_routes.retain(|r| r.1 != p || r.2 != layer);
        peer.ssrc_routes.push((ssrc, p, layer));
        tracing::debug!(attendee = %publication.attendee_id, %mid, ?rid, %ssrc, "new incoming stream");
        Some((p, layer))
    }

    /// A subscriber asked for a keyframe (PLI/FIR): pass it on to the publisher, throttled.
    pub(super) fn on_keyframe_request(
        &mut self,
        now: Instant,
        peer_idx: usize,
        req: KeyframeRequest,
    ) {
        let attendee = self.peers[peer_idx].attendee;
        let sub = self.attendees[attendee]
            .subscriptions
            .iter()
            .copied()
            .find(|&s| self.subscriptions[s].mid == Some(req.mid));
        if let Some(s) = sub {
            self.request_keyframe_for(now, s);
        }
    }

    /// Ask a publisher for a keyframe of one layer (None: its best layer, or every layer before any
    /// arrived), at most once per configured interval per layer: subscribers waiting on different
    /// layers do not starve each other, and a storm of requests still costs one per interval.
    pub(super) fn request_keyframe(&mut self, now: Instant, p: usize, layer: Option<usize>) {
        let interval = self.config.keyframe_request_interval;
        let publication = &mut self.publications[p];
        if !publication.source.is_video() {
            return;
        }
        let due = |last: Option<Instant>| last.is_none_or(|t| now >= t + interval);
        if self.attendees[publication.attendee].port.is_some() {
            // A bridged call's video has one layer; the gateway turns this into the device's own
            // keyframe request.
            if due(publication.last_keyframe_request) {
                publication.last_keyframe_request = Some(now);
                let (owner, source) = (publication.attendee, publication.source);
                self.request_port_keyframe(owner, source);
                self.metrics.keyframe_requests.inc();
            }
            return;
        }
        let Some(peer_idx) = self.attendees[publication.attendee].publish_peer else {
            return;
        };
        let mut targets: [Option<Ssrc>; 4] = [None; 4];
        match layer.or(publication.best_layer) {
            Some(l) => {
                let Some(chosen) = publication.layers.get_mut(l) else {
                    return;
                };
                if !due(chosen.last_keyframe_request) {
                    return;
                }
                chosen.last_keyframe_request = Some(now);
                targets[0] = Some(chosen.ssrc);
            }
            // Before anything arrived we do not know the layers; ask for all of them once they show up.
            None => {
                if !due(publication.last_keyframe_request) || publication.layers.is_empty() {
                    return;
                }
                publication.last_keyframe_request = Some(now);
                for (slot, l) in targets.iter_mut().zip(publication.layers.iter()) {
                    *slot = Some(l.ssrc);
                }
            }
        }
        tracing::trace!(publication = p, ?layer, ?targets, "keyframe requested");
        self.metrics.keyframe_requests.inc();
        if let Some(fast_in) = self.peers[peer_idx].fast_in.as_mut() {
            // str0m does not know the streams the fast path receives: the PLI is ours.
            for ssrc in targets.into_iter().flatten() {
                if let Some(n) = fast_in.pli(*ssrc, self.outbox.next_buf()) {
                    self.outbox.commit(fast_in.destination, n);
                    self.metrics.fast_feedback.inc();
                }
            }
            return;
        }
        let rtc = &mut self.peers[peer_idx].rtc;
        let mut direct = rtc.direct_api();
        for ssrc in targets.into_iter().flatten() {
            if let Some(rx) = direct.stream_rx(&ssrc) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
        self.drain(peer_idx, now);
    }

    /// Recompute each layer's rate and which layer is best (the highest rate still arriving).
    pub(super) fn update_layer_rates(&mut self, now: Instant, elapsed_secs: f64) {
        for (_, publication) in self.publications.iter_mut() {
            let mut best: Option<(usize, u64)> = None;
            for (i, layer) in publication.layers.iter_mut().enumerate() {
                // Averaged with the last second: one second's count swings with keyframes and frame
                // timing, and the allocation compares it against tier caps.
                let sample = (layer.bytes_window as f64 / elapsed_secs) as u64;
                layer.rate = if layer.rate == 0 {
                    sample
                } else {
                    (layer.rate + sample) / 2
                };
                // Only windows the layer arrived through from start to end say what it carries: the
                // one it stops in (or starts in) would drag the figure down.
                let steady = sample > 0
                    && layer.last_sample > 0
                    && now.saturating_duration_since(layer.last_packet) < STEADY_GAP;
                if steady {
                    layer.nominal = layer.rate;
                }
                layer.last_sample = sample;
                layer.bytes_window = 0;
                let arriving = now.saturating_duration_since(layer.last_packet) < LAYER_STALE;
                if arriving && best.is_none_or(|(_, r)| layer.rate > r) {
                    best = Some((i, layer.rate));
                }
            }
            if let Some((i, _)) = best {
                publication.best_layer = Some(i);
            }
        }
    }
}

/// The RTX stream str0m negotiated beside `tx_ssrc`: its SSRC and payload type (the resend type of
/// `pt`).
fn rtx_of(rtc: &mut str0m::Rtc, tx_ssrc: Ssrc, pt: Pt) -> Option<(u32, u8)> {
    let rtx_pt = rtc.codec_config().find(|c| c.pt() == pt)?.resend()?;
    let rtx_ssrc = rtc.direct_api().stream_tx(&tx_ssrc)?.rtx()?;
    Some((*rtx_ssrc, *rtx_pt))
}
