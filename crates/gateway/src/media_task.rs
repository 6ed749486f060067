//! One call's media, as a tokio task: the call's RTP sockets (audio, video, video RTCP), its
//! [`AudioBridge`], its [`VideoRelay`] and its attendee port into the meeting.
//!
//! The task starts when the call's ports are bound (before the call is answered: the IVR reads DTMF
//! from the audio port) and passes every audio packet on to the signaling core, which reads
//! telephone-events and keeps the reception statistics. The bridge starts at the first IVR prompt or
//! when the caller joins its meeting ([`MediaCommand::Join`]): every 20 ms it yields one frame each way,
//! the device's toward the meeting as Opus and the meeting's mix (or a prompt) toward the device in its
//! codec. Video is relayed packet by packet. SRTP, when agreed, is removed and applied here at the
//! socket edge, so the bridge and the relay see plain RTP. Media goes back where the device's packets
//! come from (symmetric RTP, for devices behind NAT), or to its SDP address before the first packet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convene_core::MediaSource;
use convene_core::port::{AttendeePort, PortDelivery, PortMedia, PortPacket};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::audio::{AudioBridge, DeviceAudio, Prompt};
use crate::call::CallId;
use crate::metrics::GatewayMetrics;
use crate::net::Input;
use crate::sdp::{Direction, Negotiated, SrtpNegotiated, VideoNegotiated};
use crate::srtp::{self, SrtpPair};
use crate::video::{VideoAction, VideoRelay};

/// A call's sockets: audio RTP, video RTP and video RTCP (the device's keyframe requests).
pub(crate) struct CallSockets {
    pub audio: UdpSocket,
    pub video: UdpSocket,
    pub video_rtcp: UdpSocket,
}

/// What the signaling side tells a call's media task.
#[derive(Debug)]
pub(crate) enum MediaCommand {
    /// The caller is in its meeting: bridge its audio through `port`.
    Join {
        media: Negotiated,
        port: Option<AttendeePort>,
    },
    /// The device changed its audio (re-INVITE: hold, resume, a new address).
    Update { media: Negotiated },
    /// The device asked for a keyframe by SIP INFO (`picture_fast_update`, RFC 5168).
    DeviceWantsKeyframe,
    /// Play an IVR prompt to the device (the call may not be in a meeting yet).
    Prompt { media: Negotiated, prompt: Prompt },
}

/// Audio frames are 20 ms each way.
const FRAME: Duration = Duration::from_millis(20);

/// Run a call's media until the socket fails or the signaling side drops `commands`.
pub(crate) async fn run(
    call: CallId,
    sockets: CallSockets,
    to_core: mpsc::Sender<Input>,
    mut commands: mpsc::Receiver<MediaCommand>,
    metrics: GatewayMetrics,
) {
    let socket = sockets.audio;
    let (video_socket, video_rtcp) = (sockets.video, sockets.video_rtcp);
    let mut buf = vec![0u8; 2048];
    let mut video_buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 1500];
    let mut bridged: Option<Bridged> = None;
    let mut ticker = tokio::time::interval(FRAME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut to_device = Vec::with_capacity(1500);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { break };
                let srtp = bridged.as_mut().and_then(|b| b.audio_srtp.as_mut());
                let Some(packet) = srtp::unprotect(srtp, &buf[..n], false) else {
                    metrics.refused.with_label_values(&["srtp"]).inc();
                    continue;
                };
                if let Some(b) = bridged.as_mut() {
                    let started = Instant::now();
                    b.device_packet(started, from, &packet);
                    metrics.transcode_seconds.inc_by(started.elapsed().as_secs_f64());
                }
                // DTMF and reception statistics are the signaling core's.
                let input = Input::Rtp { call, from, bytes: packet.to_vec() };
                if to_core.send(input).await.is_err() {
                    break;
                }
            }
            r = video_socket.recv_from(&mut video_buf) => {
                let Ok((n, from)) = r else { break };
                if let Some(b) = bridged.as_mut() {
                    b.device_video(from, &video_buf[..n], &metrics);
                }
            }
            r = video_rtcp.recv_from(&mut rtcp_buf) => {
                let Ok((n, from)) = r else { break };
                if let Some(b) = bridged.as_mut() {
                    b.device_video_rtcp(from, &rtcp_buf[..n], &metrics);
                }
            }
            command = commands.recv() => match command {
                None => break,
                Some(MediaCommand::Join { media, port }) => {
                    if let Some(b) = start_bridge(call, &mut bridged, &media, &mut ticker, &metrics) {
                        b.port = port;
                        b.update(&media);
                    }
                }
                Some(MediaCommand::Prompt { media, prompt }) => {
                    if let Some(b) = start_bridge(call, &mut bridged, &media, &mut ticker, &metrics) {
                        b.bridge.play_prompt(prompt);
                    }
                }
                Some(MediaCommand::Update { media }) => {
                    if let Some(b) = bridged.as_mut() {
                        b.update(&media);
                    }
                }
                Some(MediaCommand::DeviceWantsKeyframe) => {
                    if let Some(b) = bridged.as_mut() {
                        let action = b.video.as_ref().and_then(|v| v.relay.device_wants_keyframe());
                        b.act(action);
                    }
                }
            },
            delivery = recv_delivery(&mut bridged) => match (delivery, bridged.as_mut()) {
                (Some(delivery), Some(b)) => {
                    let started = Instant::now();
                    if let Some((packet, dest)) = b.meeting_delivery(started, delivery) {
                        metrics.video_packets.with_label_values(&["to_device"]).inc();
                        if let Some(packet) = b.protect_video(packet, false) {
                            let _ = video_socket.send_to(&packet, dest).await;
                        }
                    }
                    metrics.transcode_seconds.inc_by(started.elapsed().as_secs_f64());
                    if let Some((rtcp, dest)) = b.take_keyframe_request()
                        && let Some(rtcp) = b.protect_video(rtcp, true)
                    {
                        let _ = video_rtcp.send_to(&rtcp, dest).await;
                    }
                }
                // The meeting side closed the port (the attendee was removed): keep the call's
                // RTP going (it may be hung up next), without a port to wait on.
                (None, Some(b)) => b.port = None,
                _ => {}
            },
            _ = ticker.tick(), if bridged.is_some() => {
                let Some(b) = bridged.as_mut() else { continue };
                let started = Instant::now();
                let frame = b.bridge.tick(started, &mut to_device);
                metrics.transcode_seconds.inc_by(started.elapsed().as_secs_f64());
                if let Some(frame) = frame {
                    metrics.audio_frames.with_label_values(&["to_meeting"]).inc();
                    b.send_to_meeting(frame);
                }
                b.report_concealment(&metrics);
                if !to_device.is_empty() {
                    metrics.audio_frames.with_label_values(&["to_device"]).inc();
                    if let Some(dest) = b.destination() {
                        let packet = match b.audio_srtp.as_mut() {
                            Some(srtp) => srtp.protect_rtp(&to_device),
                            None => Some(std::mem::take(&mut to_device)),
                        };
                        // A full socket buffer or an unreachable device costs this frame only.
                        if let Some(packet) = packet {
                            let _ = socket.send_to(&packet, dest).await;
                        }
                    }
                    to_device.clear();
                }
            }
        }
    }
}

/// The call's bridge, made on first need (an IVR prompt, or joining the meeting). None if the audio
/// cannot be bridged (logged and counted once).
fn start_bridge<'a>(
    call: CallId,
    bridged: &'a mut Option<Bridged>,
    media: &Negotiated,
    ticker: &mut tokio::time::Interval,
    metrics: &GatewayMetrics,
) -> Option<&'a mut Bridged> {
    if bridged.is_none() {
        match Bridged::new(media, None) {
            Ok(b) => {
                *bridged = Some(b);
                // The first frame now, then every 20 ms (not a burst of ticks missed before).
                ticker.reset_immediately();
            }
            Err(e) => {
                tracing::warn!(call, error = %e, codec = media.codec.name(), "call audio cannot be bridged");
                metrics.refused.with_label_values(&["audio_bridge"]).inc();
                return None;
            }
        }
    }
    bridged.as_mut()
}

/// The next delivery from the meeting, or never when the call is not bridged (yet).
async fn recv_delivery(bridged: &mut Option<Bridged>) -> Option<PortDelivery> {
    match bridged.as_mut().and_then(|b| b.port.as_mut()) {
        Some(port) => port.deliveries.recv().await,
        None => std::future::pending().await,
    }
}

/// A call in its meeting: the bridge, the port, and where the device listens.
struct Bridged {
    bridge: AudioBridge,
    port: Option<AttendeePort>,
    /// Where the device's packets come from (symmetric RTP), once one has.
    latched: Latch,
    /// Where its SDP says it listens, and whether it wants to receive at all.
    remote: Option<SocketAddr>,
    receives: bool,
    sends: bool,
    /// A stable number per meeting publication, for the bridge's per-source state.
    sources: Vec<(convene_core::AttendeeId, u64)>,
    /// The bridge's concealment counts already reported (device, meeting).
    concealed_reported: (u64, u64),
    /// The call's video, when H.264 was agreed.
    video: Option<CallVideo>,
    /// SDES-SRTP of the audio line, when agreed (a call over TLS).
    audio_srtp: Option<SrtpPair>,
}

/// A call's video: the relay, and where the device's video and its RTCP go.
struct CallVideo {
    relay: VideoRelay,
    /// Latched from the device's packets (symmetric RTP), else its SDP address.
    latched: Latch,
    remote: Option<SocketAddr>,
    rtcp_latched: Latch,
    receives: bool,
    sends: bool,
    /// A keyframe request for the device, waiting to be sent on the RTCP socket.
    keyframe_request: Option<Vec<u8>>,
    /// SDES-SRTP of the video line, when agreed.
    srtp: Option<SrtpPair>,
}

impl CallVideo {
    fn new(video: &VideoNegotiated) -> Self {
        let mut v = Self {
            relay: VideoRelay::new(video.format.pt, fastrand::u32(..)),
            latched: Latch::default(),
            remote: None,
            rtcp_latched: Latch::default(),
            receives: true,
            sends: true,
            keyframe_request: None,
            srtp: None,
        };
        v.update(video);
        v
    }

    fn update(&mut self, video: &VideoNegotiated) {
        self.remote = video.remote.map(|(ip, port)| SocketAddr::new(ip, port));
        (self.sends, self.receives) = directions(video.direction, self.remote.is_some());
        update_srtp(&mut self.srtp, video.srtp.as_ref());
    }

    fn destination(&self) -> Option<SocketAddr> {
        self.receives
            .then_some(self.latched.addr().or(self.remote))
            .flatten()
    }

    /// The device's RTCP: where it comes from, or RFC 3550's video port + 1.
    fn rtcp_destination(&self) -> Option<SocketAddr> {
        self.rtcp_latched.addr().or_else(|| {
            let rtp = self.latched.addr().or(self.remote)?;
            Some(SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)))
        })
    }
}

/// Symmetric RTP (RFC 4961) with the signaling core's rule: the first source a stream's packets come
/// from is the device's, and packets from anywhere else are ignored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Latch(Option<SocketAddr>);

impl Latch {
    /// Whether a packet from `from` is the device's (latching the first source seen).
    fn accept(&mut self, from: SocketAddr) -> bool {
        *self.0.get_or_insert(from) == from
    }

    fn addr(&self) -> Option<SocketAddr> {
        self.0
    }
}

/// Keep, make or drop an m-line's SRTP contexts to match what is now agreed.
fn update_srtp(current: &mut Option<SrtpPair>, agreed: Option<&SrtpNegotiated>) {
    match agreed {
        Some(n) if current.as_ref().is_some_and(|c| c.matches(n)) => {}
        Some(n) => {
            *current = SrtpPair::new(n)
                .map_err(|e| tracing::warn!(error = %e, "SRTP keys refused; media dropped"))
                .ok();
        }
        None => *current = None,
    }
}

/// (device sends, device receives) for its SDP direction; nothing goes to a device without an address.
fn directions(direction: Direction, has_address: bool) -> (bool, bool) {
    let (sends, receives) = match direction {
        Direction::SendRecv => (true, true),
        Direction::SendOnly => (true, false),
        Direction::RecvOnly => (false, true),
        Direction::Inactive => (false, false),
    };
    // On hold with 0.0.0.0 (RFC 3264 §8.4): nothing goes to the device.
    (sends, receives && has_address)
}

impl Bridged {
    fn new(
        media: &Negotiated,
        port: Option<AttendeePort>,
    ) -> Result<Self, crate::audio::AudioError> {
        let bridge = AudioBridge::new(DeviceAudio::from(media), fastrand::u32(..))?;
        let mut b = Self {
            bridge,
            port,
            latched: Latch::default(),
            remote: None,
            receives: true,
            sends: true,
            sources: Vec::new(),
            concealed_reported: (0, 0),
            video: media.video.as_deref().map(CallVideo::new),
            audio_srtp: None,
        };
        b.update(media);
        Ok(b)
    }

    fn update(&mut self, media: &Negotiated) {
        self.remote = media.remote.map(|(ip, port)| SocketAddr::new(ip, port));
        (self.sends, self.receives) = directions(media.direction, self.remote.is_some());
        update_srtp(&mut self.audio_srtp, media.srtp.as_ref());
        match (&mut self.video, &media.video) {
            (Some(v), Some(n)) => v.update(n),
            // Video dropped by a re-INVITE: stop relaying it (a camera publication stays open, idle).
            (Some(_), None) => self.video = None,
            (None, Some(n)) => self.video = Some(CallVideo::new(n)),
            (None, None) => {}
        }
    }

    /// Carry out what the video relay asks.
    fn act(&mut self, action: Option<VideoAction>) {
        if let (Some(VideoAction::RequestKeyframe(from)), Some(port)) = (action, &self.port) {
            port.sink.request_keyframe(from, MediaSource::Camera);
        }
    }

    /// Our video packet (RTP, or RTCP when `rtcp`) as the device must get it: SRTP when agreed.
    fn protect_video(&mut self, packet: Vec<u8>, rtcp: bool) -> Option<Vec<u8>> {
        match self.video.as_mut().and_then(|v| v.srtp.as_mut()) {
            Some(srtp) if rtcp => srtp.protect_rtcp(&packet),
            Some(srtp) => srtp.protect_rtp(&packet),
            None => Some(packet),
        }
    }

    /// A packet on the call's video port: the device's camera into the meeting (or its muxed RTCP).
    fn device_video(&mut self, from: SocketAddr, packet: &[u8], metrics: &GatewayMetrics) {
        let Some(video) = self.video.as_mut() else {
            return;
        };
        // RFC 5761: RTCP packet types 200-204 on the RTP port.
        if packet.len() > 1 && (200..=204).contains(&packet[1]) {
            return self.device_video_rtcp(from, packet, metrics);
        }
        let Some(packet) = srtp::unprotect(video.srtp.as_mut(), packet, false) else {
            metrics.refused.with_label_values(&["srtp"]).inc();
            return;
        };
        if !video.latched.accept(from) {
            return; // another source's packets (counted by the signaling core for audio)
        }
        if !video.sends {
            return;
        }
        metrics
            .video_packets
            .with_label_values(&["to_meeting"])
            .inc();
        let (Some(packet), Some(port)) = (video.relay.device_rtp(&packet), &self.port) else {
            return;
        };
        port.sink.send(PortMedia {
            source: MediaSource::Camera,
            packet,
        });
    }

    /// The device's RTCP for its video: a PLI or FIR asks the shown speaker for a keyframe.
    fn device_video_rtcp(&mut self, from: SocketAddr, packet: &[u8], metrics: &GatewayMetrics) {
        let Some(video) = self.video.as_mut() else {
            return;
        };
        let Some(packet) = srtp::unprotect(video.srtp.as_mut(), packet, true) else {
            metrics.refused.with_label_values(&["srtp"]).inc();
            return;
        };
        if !video.rtcp_latched.accept(from) {
            return;
        }
        if video.relay.device_rtcp(&packet) {
            let action = video.relay.device_wants_keyframe();
            self.act(action);
        }
    }

    /// A keyframe request for the device's camera, and where to send it.
    fn take_keyframe_request(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        let video = self.video.as_mut()?;
        let request = video.keyframe_request.take()?;
        Some((request, video.rtcp_destination()?))
    }

    fn destination(&self) -> Option<SocketAddr> {
        if !self.receives {
            return None;
        }
        self.latched.addr().or(self.remote)
    }

    fn device_packet(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        if !self.latched.accept(from) {
            // Not the device: the core counts it (rtp_foreign_source); nothing of it is played or
            // followed, so nobody on the path can inject audio or steal the return stream.
            return;
        }
        if self.sends {
            self.bridge.device_rtp(now, packet);
        }
    }

    /// What the meeting sent: audio into the bridge (and its level to the video relay, which shows
    /// the speaker); video through the relay, returned with where it goes; keyframe requests for the
    /// device's camera queued as RTCP.
    fn meeting_delivery(
        &mut self,
        now: Instant,
        delivery: PortDelivery,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        match delivery {
            PortDelivery::Media {
                from,
                source: MediaSource::Audio,
                packet,
            } => {
                let source = self.source_number(from);
                self.bridge.meeting_audio(
                    now,
                    source,
                    packet.seq,
                    packet.timestamp,
                    &packet.payload,
                );
                let action = self
                    .video
                    .as_mut()
                    .and_then(|v| v.relay.heard(now, from, packet.audio_level));
                self.act(action);
                None
            }
            PortDelivery::Media {
                from,
                source: MediaSource::Camera,
                packet,
            } => {
                let video = self.video.as_mut()?;
                let (out, action) = video.relay.meeting_rtp(now, from, &packet);
                let dest = video.destination();
                self.act(action);
                Some((out?, dest?))
            }
            // Screen shares come with content (BFCP, H.239) later.
            PortDelivery::Media { .. } => None,
            PortDelivery::KeyframeRequest { .. } => {
                let video = self.video.as_mut()?;
                video.keyframe_request = video.relay.keyframe_request();
                None
            }
        }
    }

    /// A stable number per meeting publication, for the bridge's per-source state.
    fn source_number(&mut self, from: convene_core::AttendeeId) -> u64 {
        match self.sources.iter().find(|(a, _)| *a == from) {
            Some(&(_, n)) => n,
            None => {
                let n = self.sources.len() as u64 + 1;
                self.sources.push((from, n));
                n
            }
        }
    }

    /// Turn the bridge's running concealment counts into metric increments.
    fn report_concealment(&mut self, metrics: &GatewayMetrics) {
        let stats = self.bridge.stats();
        let (device, meeting) = (stats.device_concealed, stats.meeting_concealed);
        let (device_before, meeting_before) = self.concealed_reported;
        // Frames concealed from the device were going to the meeting, and the other way round.
        metrics
            .audio_concealed
            .with_label_values(&["to_meeting"])
            .inc_by(device.saturating_sub(device_before));
        metrics
            .audio_concealed
            .with_label_values(&["to_device"])
            .inc_by(meeting.saturating_sub(meeting_before));
        self.concealed_reported = (device, meeting);
    }

    fn send_to_meeting(&self, frame: crate::audio::MeetingFrame) {
        let Some(port) = &self.port else { return };
        if !self.sends {
            return; // on hold: the room is not heard
        }
        port.sink.send(PortMedia {
            source: MediaSource::Audio,
            packet: PortPacket {
                seq: frame.seq,
                timestamp: frame.timestamp,
                marker: false,
                audio_level: Some(frame.level),
                payload: frame.payload.into(),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_source_is_the_device_and_no_other_is_taken() {
        let device: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let other: SocketAddr = "192.0.2.66:4000".parse().unwrap();
        let mut latch = Latch::default();
        assert_eq!(latch.addr(), None);
        assert!(latch.accept(device));
        assert!(!latch.accept(other));
        assert!(latch.accept(device));
        assert_eq!(latch.addr(), Some(device));
    }
}
