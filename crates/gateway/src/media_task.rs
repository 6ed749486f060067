//! One call's media, as a tokio task: the call's RTP socket, its [`AudioBridge`] and its attendee
//! port into the meeting.
//!
//! The task starts when the call's RTP port is bound (before the call is answered: the IVR reads DTMF
//! from it) and passes every packet on to the signaling core, which reads telephone-events and keeps
//! the reception statistics. Once the caller is in its meeting ([`MediaCommand::Join`]) the task
//! also bridges audio: every 20 ms the bridge yields one frame each way, the device's toward the
//! meeting as Opus and the meeting's mix toward the device in its codec. Audio goes back where the
//! device's packets come from (symmetric RTP, for devices behind NAT), or to its SDP address before
//! the first packet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::MediaSource;
use convene_core::port::{AttendeePort, PortDelivery, PortMedia, PortPacket};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::audio::{AudioBridge, DeviceAudio};
use crate::call::CallId;
use crate::metrics::GatewayMetrics;
use crate::net::Input;
use crate::sdp::{Direction, Negotiated};

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
}

/// Audio frames are 20 ms each way.
const FRAME: Duration = Duration::from_millis(20);

/// Run a call's media until the socket fails or the signaling side drops `commands`.
pub(crate) async fn run(
    call: CallId,
    socket: UdpSocket,
    to_core: mpsc::Sender<Input>,
    mut commands: mpsc::Receiver<MediaCommand>,
    metrics: GatewayMetrics,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 2048];
    let mut bridged: Option<Bridged> = None;
    let mut ticker = tokio::time::interval(FRAME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut to_device = Vec::with_capacity(1500);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { break };
                let packet = &buf[..n];
                if let Some(b) = bridged.as_mut() {
                    let started = Instant::now();
                    b.device_packet(started, from, packet);
                    metrics.transcode_seconds.inc_by(started.elapsed().as_secs_f64());
                }
                // DTMF and reception statistics are the signaling core's.
                let input = Input::Rtp { call, from, bytes: packet.to_vec() };
                if to_core.send(input).await.is_err() {
                    break;
                }
            }
            command = commands.recv() => match command {
                None => break,
                Some(MediaCommand::Join { media, port }) => {
                    match Bridged::new(&media, port) {
                        Ok(b) => {
                            bridged = Some(b);
                            // The first frame now, then every 20 ms (not a burst of the ticks
                            // missed while the call was in the IVR).
                            ticker.reset_immediately();
                        }
                        Err(e) => {
                            tracing::warn!(call, error = %e, codec = media.codec.name(), "call audio cannot be bridged");
                            metrics.refused.with_label_values(&["audio_bridge"]).inc();
                        }
                    }
                }
                Some(MediaCommand::Update { media }) => {
                    if let Some(b) = bridged.as_mut() {
                        b.update(&media);
                    }
                }
            },
            delivery = recv_delivery(&mut bridged) => match (delivery, bridged.as_mut()) {
                (Some(delivery), Some(b)) => {
                    let started = Instant::now();
                    b.meeting_delivery(started, delivery);
                    metrics.transcode_seconds.inc_by(started.elapsed().as_secs_f64());
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
                        // A full socket buffer or an unreachable device costs this frame only.
                        let _ = socket.send_to(&to_device, dest).await;
                    }
                    to_device.clear();
                }
            }
        }
    }
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
    latched: Option<SocketAddr>,
    /// Where its SDP says it listens, and whether it wants to receive at all.
    remote: Option<SocketAddr>,
    receives: bool,
    sends: bool,
    /// A stable number per meeting publication, for the bridge's per-source state.
    sources: Vec<(convene_core::AttendeeId, u64)>,
    /// The bridge's concealment counts already reported (device, meeting).
    concealed_reported: (u64, u64),
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
            latched: None,
            remote: None,
            receives: true,
            sends: true,
            sources: Vec::new(),
            concealed_reported: (0, 0),
        };
        b.update(media);
        Ok(b)
    }

    fn update(&mut self, media: &Negotiated) {
        self.remote = media.remote.map(|(ip, port)| SocketAddr::new(ip, port));
        (self.sends, self.receives) = match media.direction {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        };
        if self.remote.is_none() {
            // On hold with 0.0.0.0 (RFC 3264 §8.4): nothing goes to the device.
            self.receives = false;
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

    fn destination(&self) -> Option<SocketAddr> {
        if !self.receives {
            return None;
        }
        self.latched.or(self.remote)
    }

    fn device_packet(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        self.latched = Some(from);
        if self.sends {
            self.bridge.device_rtp(now, packet);
        }
    }

    fn meeting_delivery(&mut self, now: Instant, delivery: PortDelivery) {
        let PortDelivery::Media {
            from,
            source: MediaSource::Audio,
            packet,
        } = delivery
        else {
            return; // video and keyframe requests come with video bridging
        };
        let source = match self.sources.iter().find(|(a, _)| *a == from) {
            Some(&(_, n)) => n,
            None => {
                let n = self.sources.len() as u64 + 1;
                self.sources.push((from, n));
                n
            }
        };
        self.bridge
            .meeting_audio(now, source, packet.seq, packet.timestamp, &packet.payload);
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
