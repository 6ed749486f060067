//! Port attendees: attendees whose media crosses an attendee port (`convene_core::port`) instead of
//! WebRTC connections, such as the calls the SIP gateway bridges.
//!
//! A port attendee is an ordinary attendee of the roster (it joins, leaves, speaks, keeps its meeting
//! going) with no peers. Its publications are created when it joins, in the port's fixed formats, and
//! its packets enter the same forwarding as a browser's (`Shard::forward`). What it receives is
//! delivered into its port's queue; a full queue drops the packet and counts it, never blocks the shard.

use std::time::Instant;

use convene_core::MediaSource;
use convene_core::port::{PortDelivery, PortMedia, PortPacket, PortPublication, SeqExtender};
use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::Mid;
use str0m::rtp::ExtensionValues;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use super::Shard;
use super::forwarding::{Incoming, Payload};
use super::model::Layer;
use crate::forward::VideoCodec;

/// The shard's end of a port.
#[derive(Debug)]
pub struct PortLink {
    pub deliveries: Sender<PortDelivery>,
    /// It receives cameras and screens too (a video-capable bridged call); otherwise audio only,
    /// so nobody is asked for keyframes on its behalf.
    pub takes_video: bool,
    /// What its device can receive (kbps), a cap on its allocation like a browser's own; None: the
    /// best layers arriving (an in-process port has no link to estimate).
    pub downlink_kbps: Option<u32>,
}

/// The RTP parameters a port's audio is forwarded with: the Opus every WebRTC client negotiates
/// (str0m's default configuration, which is what our subscribe offers carry).
fn port_audio_params() -> Option<PayloadParams> {
    CodecConfig::new_with_defaults()
        .find(|p| p.spec().codec == Codec::Opus)
        .copied()
}

/// The RTP parameters of a port's H.264 camera: the default configuration's packetization-mode 1
/// H.264 with the device's profile, or constrained baseline (42e01f) when the device's profile is not
/// among those browsers are offered. Subscribers are matched against these.
fn port_h264_params(profile_level_id: Option<&str>) -> Option<PayloadParams> {
    let wanted = profile_level_id.and_then(|p| u32::from_str_radix(p, 16).ok());
    let config = CodecConfig::new_with_defaults();
    let h264 = |profile: Option<u32>| {
        config
            .find(|p| {
                let spec = p.spec();
                spec.codec == Codec::H264
                    && spec.format.packetization_mode == Some(1)
                    && profile.is_none_or(|want| spec.format.profile_level_id == Some(want))
            })
            .copied()
    };
    wanted
        .and_then(|w| h264(Some(w)))
        .or_else(|| h264(Some(0x42e01f)))
        .or_else(|| h264(None))
}

impl Shard {
    /// An attendee joins through a port (`Command::JoinPort`): a roster member like any other, whose
    /// downlink is capped by what its device takes and whose publications open at once.
    pub(super) fn join_port(
        &mut self,
        now: Instant,
        joining: super::roster::Joining,
        publishes: &[PortPublication],
    ) {
        let id = joining.id;
        let cap = joining.port.as_ref().and_then(|p| p.downlink_kbps);
        // Nothing reads a port attendee's signaling: the roster and speaking updates are for WebRTC
        // clients' screens. Its receiver is dropped, so sends to it are no-ops.
        let (signal, _) = tokio::sync::mpsc::unbounded_channel();
        self.join(now, joining, signal);
        if let Some(&idx) = self.attendee_by_id.get(&id) {
            self.attendees[idx].downlink_cap_kbps = cap;
            self.open_port_publications(now, idx, publishes);
        }
    }

    /// A port attendee joined: its publications exist from the start (a call's audio is always on,
    /// and a camera the device agreed to send gets its tile at once).
    pub(super) fn open_port_publications(
        &mut self,
        now: Instant,
        idx: usize,
        publishes: &[PortPublication],
    ) {
        for publication in publishes {
            let source = publication.source();
            if self.attendees[idx].publications[source.index()].is_some() {
                continue;
            }
            let (params, video_codec) = match publication {
                PortPublication::Audio => (port_audio_params(), None),
                PortPublication::H264Camera { profile_level_id } => (
                    port_h264_params(profile_level_id.as_deref()),
                    Some(VideoCodec::H264),
                ),
            };
            let Some(params) = params else {
                tracing::error!(
                    source = source.as_str(),
                    "no codec parameters for a port publication"
                );
                continue;
            };
            self.add_publication(now, idx, source, Mid::from(source.as_str()));
            if let Some(p) = self.attendees[idx].publications[source.index()] {
                let publication = &mut self.publications[p];
                publication.params = Some((params.pt(), params));
                publication.video_codec = video_codec;
                publication.port_seq = Some(SeqExtender::default());
            }
        }
    }

    /// A packet a port attendee sent into its meeting.
    pub(super) fn on_port_media(&mut self, now: Instant, idx: usize, media: PortMedia) {
        let Some(p) = self.attendees[idx].publications[media.source.index()] else {
            self.metrics.dropped("unpublished");
            return;
        };
        let publication = &mut self.publications[p];
        let (Some(seq), Some((pt, _))) = (publication.port_seq.as_mut(), publication.params) else {
            self.metrics.dropped("unpublished");
            return;
        };
        let seq = seq.extend(media.packet.seq);
        if publication.layers.is_empty() {
            // A port publication has one layer, on an SSRC of its own making (nobody sees it: each
            // subscription is sent on the subscriber's SSRC).
            let ssrc = fastrand::u32(..).into();
            publication.layers.push(Layer::new(None, ssrc, now));
        }
        let packet = media.packet;
        let incoming = Incoming {
            seq,
            timestamp: packet.timestamp,
            marker: packet.marker,
            pt,
            payload: Payload::shared(&packet.payload),
            arrival: now,
            ext: ExtensionValues {
                // Our own audio levels are -dBov like RFC 6464's; str0m's are their negation.
                audio_level: packet.audio_level.map(|l| -(l.min(127) as i8)),
                ..Default::default()
            },
        };
        self.forward(now, p, 0, None, incoming);
    }

    /// Hand a forwarded packet to a port subscriber. A full queue drops it (counted): the call's
    /// jitter buffer conceals a lost frame, while a blocked shard would stall the whole meeting.
    pub(super) fn deliver_to_port(
        &self,
        subscriber: usize,
        publication: usize,
        packet: &Incoming<'_>,
        seq: u16,
        timestamp: u32,
    ) -> bool {
        let Some(port) = &self.attendees[subscriber].port else {
            return false;
        };
        let from = &self.publications[publication];
        let delivery = PortDelivery::Media {
            from: from.attendee_id,
            source: from.source,
            packet: PortPacket {
                seq,
                timestamp,
                marker: packet.marker,
                audio_level: packet.ext.audio_level.map(|l| l.unsigned_abs().min(127)),
                payload: packet.payload.to_shared(),
            },
        };
        match port.deliveries.try_send(delivery) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped("port_full");
                false
            }
            // The call is hanging up; its leave follows.
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// A keyframe request for a port attendee's publication goes into its port.
    pub(super) fn request_port_keyframe(&self, publisher: usize, source: MediaSource) {
        if let Some(port) = &self.attendees[publisher].port {
            let _ = port
                .deliveries
                .try_send(PortDelivery::KeyframeRequest { source });
        }
    }
}
