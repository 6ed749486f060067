//! A simulated network for driving a [`Shard`] with in-process str0m clients, in virtual time.
//!
//! Each client is an attendee with the two connections the protocol prescribes: a publish `Rtc`
//! (client offers) and a subscribe `Rtc` (server offers), both in RTP mode so tests write and read
//! individual packets. Signaling goes through the shard's commands and each attendee's channel;
//! datagrams go through [`Sim::queue`], where tests can drop what they like.

#![allow(dead_code)]

pub mod netem;

thread_local! {
    /// Set while the shard itself runs (not the simulated clients or the network), so a test with a
    /// counting allocator can tell the SFU's allocations from the harness's (`tests/alloc_per_packet.rs`).
    static IN_SHARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the shard is running on this thread right now.
#[allow(dead_code)] // only the allocation test asks
pub fn in_shard() -> bool {
    IN_SHARD.with(std::cell::Cell::get)
}

/// Runs `f` (a call into the shard) with [`in_shard`] true.
fn shard_work<R>(f: impl FnOnce() -> R) -> R {
    IN_SHARD.with(|c| c.set(true));
    let r = f();
    IN_SHARD.with(|c| c.set(false));
    r
}

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::{AttendeeId, AttendeeRole, ClientType, EventBus, InProcessBus, MeetingEvent};
use convene_media::metrics::{MediaMetrics, ShardMetrics};
use convene_media::shard::{Command, Shard, ShardConfig};
use convene_media::signal::messages::{PublishTrack, ServerMessage, SubscribeTrack};
use prometheus::Registry;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use netem::{Link, LinkSpec};

/// Decides per datagram (from, to, bytes) whether the network loses it.
pub type DropFilter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool>;

/// The default time step; see [`Sim::step`].
pub const STEP: Duration = Duration::from_millis(5);

/// One RTP packet a client received.
#[derive(Debug, Clone)]
pub struct Received {
    pub mid: Mid,
    pub seq: u64,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// Asserts that `packets` hold every sequence number from their lowest to their highest (in any order,
/// repeats allowed): nothing lost for good.
pub fn assert_no_gap(packets: &[Received], what: &str) {
    let mut seqs: Vec<u64> = packets.iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
        panic!("{what}: no packets");
    };
    assert_eq!((last - first + 1) as usize, seqs.len(), "{what}");
}

/// The payload type a connection negotiated for `codec`.
fn payload_type(rtc: &Rtc, codec: Codec) -> Option<str0m::media::Pt> {
    rtc.codec_config()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

pub struct ClientPeer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub connected: bool,
    pub received: Vec<Received>,
    pub keyframe_requests: usize,
    /// The rid of every keyframe request received (None: not simulcast), oldest first.
    pub keyframe_rids: Vec<Option<String>>,
    /// The data channel the server opened on this connection, and the messages that arrived on it.
    pub channel: Option<str0m::channel::ChannelId>,
    pub channel_messages: Vec<Vec<u8>>,
    /// Per m-line: the packet count the sender's last sender report gave (str0m's ingress stats).
    pub sender_reported: HashMap<Mid, u64>,
    /// The send-side estimates (bps) str0m made from the server's transport-wide feedback, when the
    /// sim turned its estimator on ([`Sim::publisher_bwe`]).
    pub estimates: Vec<u64>,
}

impl ClientPeer {
    fn new(now: Instant, addr: SocketAddr, bwe: bool) -> Self {
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(Some(Duration::from_secs(1)));
        if bwe {
            config = config.enable_bwe(Some(str0m::bwe::Bitrate::kbps(300)));
        }
        let mut rtc = config.build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        Self {
            rtc,
            addr,
            connected: false,
            received: Vec::new(),
            keyframe_requests: 0,
            keyframe_rids: Vec::new(),
            channel: None,
            channel_messages: Vec::new(),
            sender_reported: HashMap::new(),
            estimates: Vec::new(),
        }
    }
}

pub struct Client {
    pub name: String,
    pub id: AttendeeId,
    pub signal: UnboundedReceiver<ServerMessage>,
    pub messages: Vec<ServerMessage>,
    pub publish: Option<ClientPeer>,
    pub subscribe: Option<ClientPeer>,
    pub publish_pending: Option<SdpPendingOffer>,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    pub sub_tracks: Vec<SubscribeTrack>,
    pub answer_offers: bool,
    /// The last publish offer sent, for re-sending with another track list.
    pub publish_sdp: Option<String>,
    layer_seq: std::collections::HashMap<u8, (u64, u32)>,
    video_seq: u64,
    video_ts: u32,
    audio_seq: u64,
    audio_ts: u32,
    index: u8,
}

impl Client {
    /// Packets received on the subscribe connection for the given attendee's source.
    pub fn received_from(
        &self,
        from: AttendeeId,
        source: convene_core::MediaSource,
    ) -> Vec<Received> {
        let Some(sub) = &self.subscribe else {
            return Vec::new();
        };
        let mids: Vec<String> = self
            .sub_tracks
            .iter()
            .filter(|t| t.attendee_id == from && t.source == source)
            .map(|t| t.mid.clone())
            .collect();
        sub.received
            .iter()
            .filter(|r| mids.contains(&r.mid.to_string()))
            .cloned()
            .collect()
    }

    pub fn has_message(&self, f: impl Fn(&ServerMessage) -> bool) -> bool {
        self.messages.iter().any(f)
    }
}

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub shard: Shard,
    pub server: SocketAddr,
    pub clients: Vec<Client>,
    pub queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Return true to drop a datagram (from, to, bytes).
    pub drop_filter: Option<DropFilter>,
    /// Emulated links toward client addresses (see [`Sim::shape`]); others deliver at once.
    pub links: HashMap<SocketAddr, Link>,
    /// How far time advances per step: everything (pacing included) happens on step boundaries, so tests
    /// of congestion control use a fine step, where 5 ms bursts would look like queueing delay.
    pub step: Duration,
    pub events: tokio::sync::broadcast::Receiver<MeetingEvent>,
    pub event_log: Vec<MeetingEvent>,
    pub metrics: ShardMetrics,
    pub registry: Registry,
    /// Publish connections made from now on run str0m's send-side estimator (off by default: its
    /// probes would change every sim's traffic).
    pub publisher_bwe: bool,
}

impl Sim {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A sim whose shard runs with `adjust` applied to the default configuration.
    ///
    /// The fast path is the default; `CONVENE_SIM_FAST_PATH=0` in the environment runs every sim on
    /// str0m's path instead (`tests/run` runs them both ways), `=1` forces the fast path.
    pub fn with_config(adjust: impl FnOnce(&mut ShardConfig)) -> Self {
        let now = Instant::now();
        let server: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let bus = Arc::new(InProcessBus::new(1024));
        let events = bus.subscribe();
        let registry = Registry::new();
        let metrics = MediaMetrics::register(&registry).unwrap().shard(0);
        let mut config = ShardConfig::new(0, server);
        match std::env::var("CONVENE_SIM_FAST_PATH").as_deref() {
            Ok("1") => config.fast_path = true,
            Ok("0") => config.fast_path = false,
            _ => {}
        }
        adjust(&mut config);
        let shard = Shard::new(config, bus, metrics.clone(), now);
        Self {
            now,
            start: now,
            shard,
            server,
            clients: Vec::new(),
            queue: VecDeque::new(),
            drop_filter: None,
            links: HashMap::new(),
            step: STEP,
            events,
            event_log: Vec::new(),
            metrics,
            registry,
            publisher_bwe: false,
        }
    }

    /// Milliseconds of simulated time since the sim started.
    pub fn ms(&self) -> u128 {
        (self.now - self.start).as_millis()
    }

    /// A new attendee joins `meeting`; returns its index.
    pub fn join(&mut self, meeting: &str, name: &str) -> usize {
        self.join_as(meeting, name, AttendeeRole::Attendee)
    }

    /// Like [`Sim::join`], with the role a join token would grant (`Host` for host controls).
    pub fn join_as(&mut self, meeting: &str, name: &str, role: AttendeeRole) -> usize {
        self.join_with(meeting, name, role, false)
    }

    /// Like [`Sim::join_as`], with the token's remote control permission.
    pub fn join_with(
        &mut self,
        meeting: &str,
        name: &str,
        role: AttendeeRole,
        may_grant_control: bool,
    ) -> usize {
        let (tx, rx) = unbounded_channel();
        let id = AttendeeId::random();
        let index = self.clients.len() as u8;
        self.shard.handle_command(
            self.now,
            Command::Join {
                attendee: id,
                meeting: meeting.parse().unwrap(),
                name: name.into(),
                client: ClientType::Web,
                role,
                user: None,
                may_grant_control,
                signal: tx,
            },
        );
        self.clients.push(Client {
            name: name.into(),
            id,
            signal: rx,
            messages: Vec::new(),
            publish: None,
            subscribe: None,
            publish_pending: None,
            audio_mid: None,
            video_mid: None,
            sub_tracks: Vec::new(),
            answer_offers: true,
            publish_sdp: None,
            layer_seq: Default::default(),
            video_seq: 1000 + u64::from(index) * 7000,
            video_ts: 90_000,
            audio_seq: 5000,
            audio_ts: 48_000,
            index,
        });
        self.pump();
        self.clients.len() - 1
    }

    /// The client offers audio + camera on its publish connection.
    pub fn publish(&mut self, c: usize) {
        self.publish_with(c, &[]);
    }

    /// Like [`Sim::publish`], with the camera sent as simulcast layers with these rids.
    pub fn publish_with(&mut self, c: usize, rids: &[&str]) {
        let addr: SocketAddr = format!("10.0.1.{}:4000", c + 1).parse().unwrap();
        let mut peer = ClientPeer::new(self.now, addr, self.publisher_bwe);
        let mut api = peer.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let simulcast = (!rids.is_empty()).then(|| {
            let mut sim = str0m::media::Simulcast::new();
            for rid in rids {
                sim.add_send_layer(str0m::media::SimulcastLayer::new(rid));
            }
            sim
        });
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        let (offer, pending) = api.apply().expect("offer");
        let client = &mut self.clients[c];
        client.publish = Some(peer);
        client.publish_pending = Some(pending);
        client.audio_mid = Some(audio);
        client.video_mid = Some(video);
        let tracks = vec![
            PublishTrack {
                mid: audio.to_string(),
                source: "audio".into(),
            },
            PublishTrack {
                mid: video.to_string(),
                source: "camera".into(),
            },
        ];
        let id = client.id;
        client.publish_sdp = Some(offer.to_sdp_string());
        self.shard.handle_command(
            self.now,
            Command::PublishOffer {
                attendee: id,
                sdp: offer.to_sdp_string(),
                tracks,
            },
        );
        self.pump();
    }

    /// Renegotiate the publish connection with the same m-lines but another list of published sources
    /// (`"audio"`, `"camera"`): what a browser does when it stops and restarts a track.
    pub fn republish(&mut self, c: usize, sources: &[&str]) {
        let client = &self.clients[c];
        let sdp = client.publish_sdp.clone().expect("published before");
        let tracks = sources
            .iter()
            .map(|&source| {
                let mid = if source == "audio" {
                    client.audio_mid
                } else {
                    client.video_mid
                };
                PublishTrack {
                    mid: mid.expect("mid").to_string(),
                    source: source.into(),
                }
            })
            .collect();
        let id = client.id;
        self.shard.handle_command(
            self.now,
            Command::PublishOffer {
                attendee: id,
                sdp,
                tracks,
            },
        );
        self.pump();
    }

    /// The client asks to start (`on`) or stop recording, as a `recording` message would.
    pub fn hd_mode(&mut self, c: usize, on: bool) {
        let id = self.clients[c].id;
        self.shard
            .handle_command(self.now, Command::HdMode { attendee: id, on });
        self.pump();
    }

    pub fn recording(&mut self, c: usize, on: bool) {
        let id = self.clients[c].id;
        self.shard
            .handle_command(self.now, Command::Recording { attendee: id, on });
        self.pump();
    }

    /// The client caps its downlink (the signaling `downlink_cap`).
    pub fn downlink_cap(&mut self, c: usize, kbps: Option<u32>) {
        let id = self.clients[c].id;
        self.shard
            .handle_command(self.now, Command::DownlinkCap { attendee: id, kbps });
        self.pump();
    }

    /// The client's decoder gave up waiting on `from`'s `source`: a PLI on its subscribe connection, as a
    /// browser sends when it cannot decode.
    pub fn request_keyframe_from(
        &mut self,
        c: usize,
        from: AttendeeId,
        source: convene_core::MediaSource,
    ) {
        let now = self.now;
        let client = &mut self.clients[c];
        let Some(mid) = client
            .sub_tracks
            .iter()
            .find(|t| t.attendee_id == from && t.source == source)
            .map(|t| Mid::from(t.mid.as_str()))
        else {
            return;
        };
        let Some(peer) = client.subscribe.as_mut() else {
            return;
        };
        if let Some(rx) = peer.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        let _ = peer.rtc.handle_input(Input::Timeout(now));
        self.drain_client(c, false);
    }

    /// Hand the shard a command, as the front end would.
    pub fn command(&mut self, command: Command) {
        self.shard.handle_command(self.now, command);
        self.pump();
    }

    /// Write a binary message on the client's subscribe data channel; false if it is not open.
    pub fn channel_send(&mut self, c: usize, data: &[u8]) -> bool {
        let now = self.now;
        let Some(peer) = self.clients[c].subscribe.as_mut() else {
            return false;
        };
        let Some(id) = peer.channel else {
            return false;
        };
        let written = peer
            .rtc
            .channel(id)
            .is_some_and(|mut ch| ch.write(true, data).unwrap_or(false));
        let _ = peer.rtc.handle_input(Input::Timeout(now));
        self.drain_client(c, false);
        written
    }

    pub fn leave(&mut self, c: usize) {
        let id = self.clients[c].id;
        self.shard
            .handle_command(self.now, Command::Leave { attendee: id });
        self.clients[c].publish = None;
        self.clients[c].subscribe = None;
        self.pump();
    }

    /// Write one VP8 packet on the client's camera track.
    pub fn send_video(&mut self, c: usize, keyframe: bool) {
        self.send_video_layer(c, None, keyframe);
    }

    /// Write one VP8 packet on one simulcast layer (byte 3 of the payload names the layer; higher layers
    /// send bigger packets). Each layer numbers its own packets.
    pub fn send_video_layer(&mut self, c: usize, rid: Option<&str>, keyframe: bool) {
        let now = self.now;
        let layer: u8 = match rid {
            None => 0,
            Some(r) => r.bytes().next().unwrap_or(0),
        };
        let client = &mut self.clients[c];
        let (Some(peer), Some(mid)) = (client.publish.as_mut(), client.video_mid) else {
            return;
        };
        let Some(pt) = payload_type(&peer.rtc, Codec::Vp8) else {
            return;
        };
        let mut payload = vec![
            0x10,
            if keyframe { 0x00 } else { 0x01 },
            client.index,
            layer,
        ];
        payload.resize(if layer == b'h' { 400 } else { 160 }, 0xab);
        let start = (client.video_seq + u64::from(layer) * 100, client.video_ts);
        let counter = client.layer_seq.entry(layer).or_insert(start);
        counter.0 += 1;
        counter.1 = counter.1.wrapping_add(3000);
        let (seq, ts) = *counter;
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, rid.map(str0m::media::Rid::from)) else {
            return;
        };
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, now, payload)
                .marker(true)
                .nackable(true),
        );
        let _ = peer.rtc.handle_input(Input::Timeout(now));
        self.drain_client(c, true);
    }

    /// Write one video frame of `bytes` on a layer as packets of at most 1100 bytes, numbered per layer,
    /// marker on the last. Each payload starts like VP8 (descriptor, frame tag on the first packet, so
    /// the SFU sees keyframes) and then says what it is: byte 2 the client index, 3 the layer, 4..8 the
    /// frame number, 8 the packet's index in the frame, 9 the frame's packet count, 10 keyframe (1/0).
    pub fn send_frame(
        &mut self,
        c: usize,
        rid: Option<&str>,
        frame: u32,
        keyframe: bool,
        bytes: usize,
    ) {
        let now = self.now;
        let layer: u8 = rid.and_then(|r| r.bytes().next()).unwrap_or(0);
        let client = &mut self.clients[c];
        let (Some(peer), Some(mid)) = (client.publish.as_mut(), client.video_mid) else {
            return;
        };
        let Some(pt) = payload_type(&peer.rtc, Codec::Vp8) else {
            return;
        };
        let packets = bytes.div_ceil(1100).max(1);
        let size = (bytes / packets).max(11);
        let start = (client.video_seq + u64::from(layer) * 100, client.video_ts);
        let counter = client.layer_seq.entry(layer).or_insert(start);
        counter.1 = counter.1.wrapping_add(3000);
        let ts = counter.1;
        for i in 0..packets {
            counter.0 += 1;
            let mut payload = vec![0u8; size];
            payload[0] = if i == 0 { 0x10 } else { 0x00 };
            payload[1] = if keyframe { 0x00 } else { 0x01 };
            payload[2] = client.index;
            payload[3] = layer;
            payload[4..8].copy_from_slice(&frame.to_be_bytes());
            payload[8] = i as u8;
            payload[9] = packets as u8;
            payload[10] = u8::from(keyframe);
            let mut api = peer.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, rid.map(str0m::media::Rid::from)) else {
                return;
            };
            tx.write_rtp(
                RtpWrite::new(pt, counter.0.into(), ts, now, payload)
                    .marker(i + 1 == packets)
                    .nackable(true),
            );
        }
        let _ = peer.rtc.handle_input(Input::Timeout(now));
        self.drain_client(c, true);
    }

    /// Write one Opus packet with an RFC 6464 level (-dBov, so -20 is loud and -127 silence).
    pub fn send_audio(&mut self, c: usize, level: i8) {
        self.send_audio_sized(c, level, 5);
    }

    /// Like [`Sim::send_audio`], with a payload of `bytes` (at least 2).
    pub fn send_audio_sized(&mut self, c: usize, level: i8, bytes: usize) {
        let now = self.now;
        let client = &mut self.clients[c];
        let (Some(peer), Some(mid)) = (client.publish.as_mut(), client.audio_mid) else {
            return;
        };
        let Some(pt) = payload_type(&peer.rtc, Codec::Opus) else {
            return;
        };
        client.audio_seq += 1;
        client.audio_ts = client.audio_ts.wrapping_add(960);
        let (seq, ts) = (client.audio_seq, client.audio_ts);
        let ext = ExtensionValues {
            audio_level: Some(level),
            voice_activity: Some(level > -50),
            ..Default::default()
        };
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, now, {
                let mut p = vec![0xfc, client.index, 1, 2, 3];
                p.resize(bytes.max(2), 0);
                p
            })
            .ext_vals(ext),
        );
        let _ = peer.rtc.handle_input(Input::Timeout(now));
        self.drain_client(c, true);
    }

    /// Advance virtual time by `d`, calling `each_step` (with the sim) every step.
    pub fn run(&mut self, d: Duration, mut each_step: impl FnMut(&mut Sim)) {
        let end = self.now + d;
        while self.now < end {
            self.now += self.step;
            each_step(self);
            self.tick();
        }
    }

    /// Advance until `done` holds or `limit` passes; returns whether it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut each_step: impl FnMut(&mut Sim),
        done: impl Fn(&Sim) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.now += self.step;
            each_step(self);
            self.tick();
        }
        done(self)
    }

    /// Client `c` decoded more than `min_video` camera and `min_audio` audio packets from attendee
    /// `from` (the sim's client `from_index`), with intact payloads (`send_video`/`send_audio` mark
    /// their sender) and a camera stream without sequence gaps.
    pub fn assert_decoded_from(
        &self,
        c: usize,
        from: AttendeeId,
        from_index: usize,
        min_video: usize,
        min_audio: usize,
    ) {
        let video = self.clients[c].received_from(from, convene_core::MediaSource::Camera);
        let audio = self.clients[c].received_from(from, convene_core::MediaSource::Audio);
        assert!(
            video.len() > min_video,
            "client {c} got {} video packets",
            video.len()
        );
        assert!(
            audio.len() > min_audio,
            "client {c} got {} audio packets",
            audio.len()
        );
        let from_index = from_index as u8;
        assert!(
            video
                .iter()
                .all(|p| p.payload.len() == 160 && p.payload[2] == from_index)
        );
        assert!(audio.iter().all(|p| p.payload[1] == from_index));
        // One continuous stream: strictly increasing sequence numbers without gaps.
        assert!(
            video.windows(2).all(|w| w[1].seq == w[0].seq + 1),
            "video sequence has gaps"
        );
        assert!(video[0].seq < 65536);
    }

    /// Moves what the shard wants sent (str0m's transmits and the fast path's outbox) onto the network.
    fn collect_transmits(&mut self) {
        while let Some(t) = shard_work(|| self.shard.poll_transmit()) {
            self.queue
                .push_back((t.source, t.destination, t.contents.to_vec()));
        }
        let server = self.server;
        for (to, bytes) in self.shard.fast_outbox().datagrams() {
            self.queue.push_back((server, to, bytes.to_vec()));
        }
        shard_work(|| self.shard.clear_fast_outbox());
    }

    /// The lowest subscriber downlink budget the shard's metrics report (None before any).
    pub fn lowest_downlink_budget_kbps(&self) -> Option<i64> {
        self.registry
            .gather()
            .iter()
            .find(|f| f.name() == "convene_media_meeting_min_downlink_kbps")
            .and_then(|f| {
                f.get_metric()
                    .first()
                    .map(|m| m.get_gauge().get_value() as i64)
            })
    }

    /// Send everything toward `to` through an emulated link from now on.
    pub fn shape(&mut self, to: SocketAddr, spec: LinkSpec) {
        self.links.insert(to, Link::new(spec, self.now));
    }

    fn tick(&mut self) {
        let now = self.now;
        // Packets that crossed their links by now arrive first, each at its own arrival time.
        let shaped: Vec<SocketAddr> = self.links.keys().copied().collect();
        for to in shaped {
            while let Some((at, from, to, bytes)) =
                self.links.get_mut(&to).and_then(|l| l.poll_arrival(now))
            {
                self.deliver_to_client(from, to, &bytes, at);
            }
        }
        for c in 0..self.clients.len() {
            for publish in [true, false] {
                let client = &mut self.clients[c];
                let peer = if publish {
                    client.publish.as_mut()
                } else {
                    client.subscribe.as_mut()
                };
                if let Some(peer) = peer {
                    let _ = peer.rtc.handle_input(Input::Timeout(now));
                    self.drain_client(c, publish);
                }
            }
        }
        shard_work(|| self.shard.handle_timeout(now));
        self.pump();
    }

    /// Move datagrams and signaling until nothing is left to move.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            self.collect_transmits();
            while let Some((from, to, bytes)) = self.queue.pop_front() {
                moved = true;
                if let Some(filter) = self.drop_filter.as_mut()
                    && filter(from, to, &bytes)
                {
                    continue;
                }
                if to == self.server {
                    // One datagram per batch: the simulated network delivers them one at a time.
                    let now = self.now;
                    shard_work(|| {
                        self.shard.handle_datagram(now, from, to, &bytes);
                        self.shard.end_batch(now);
                    });
                    self.collect_transmits();
                } else if let Some(link) = self.links.get_mut(&to) {
                    link.offer(self.now, from, to, bytes);
                } else {
                    self.deliver_to_client(from, to, &bytes, self.now);
                }
            }
            for c in 0..self.clients.len() {
                while let Ok(msg) = self.clients[c].signal.try_recv() {
                    moved = true;
                    self.on_signal(c, msg);
                }
            }
            while let Ok(e) = self.events.try_recv() {
                self.event_log.push(e);
            }
            if !moved {
                // Tests read the registered counters right after a step.
                self.shard.flush_metrics();
                break;
            }
        }
    }

    fn deliver_to_client(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8], now: Instant) {
        for c in 0..self.clients.len() {
            for publish in [true, false] {
                let client = &mut self.clients[c];
                let peer = if publish {
                    client.publish.as_mut()
                } else {
                    client.subscribe.as_mut()
                };
                let Some(peer) = peer else { continue };
                if peer.addr != to {
                    continue;
                }
                let Ok(contents) = bytes.try_into() else {
                    return;
                };
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: to,
                        contents,
                    },
                );
                let _ = peer.rtc.handle_input(input);
                self.drain_client_at(c, publish, now);
                return;
            }
        }
    }

    fn drain_client(&mut self, c: usize, publish: bool) {
        self.drain_client_at(c, publish, self.now);
    }

    /// Drain a client connection; packets it received are stamped `now`.
    fn drain_client_at(&mut self, c: usize, publish: bool, now: Instant) {
        let client = &mut self.clients[c];
        let peer = if publish {
            client.publish.as_mut()
        } else {
            client.subscribe.as_mut()
        };
        let Some(peer) = peer else { return };
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(_)) | Err(_) => break,
                Ok(Output::Transmit(t)) => {
                    self.queue
                        .push_back((t.source, t.destination, t.contents.to_vec()))
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => peer.connected = true,
                    Event::ChannelOpen(id, _) => peer.channel = Some(id),
                    Event::ChannelData(d) => peer.channel_messages.push(d.data),
                    Event::KeyframeRequest(r) => {
                        peer.keyframe_requests += 1;
                        peer.keyframe_rids.push(r.rid.map(|r| r.to_string()));
                    }
                    Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc {
                        estimate, ..
                    }) => peer.estimates.push(estimate.as_u64()),
                    Event::MediaIngressStats(stats) => {
                        if let Some(remote) = stats.remote {
                            peer.sender_reported.insert(stats.mid, remote.packets);
                        }
                    }
                    Event::RtpPacket(p) => {
                        let mid = peer
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid());
                        if let Some(mid) = mid {
                            peer.received.push(Received {
                                mid,
                                seq: *p.seq_no,
                                payload: p.payload.to_vec(),
                                at: now,
                            });
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    fn on_signal(&mut self, c: usize, msg: ServerMessage) {
        let now = self.now;
        match &msg {
            ServerMessage::PublishAnswer { sdp } => {
                let client = &mut self.clients[c];
                if let (Some(peer), Some(pending)) =
                    (client.publish.as_mut(), client.publish_pending.take())
                {
                    let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
                    peer.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .expect("answer accepted");
                    self.drain_client(c, true);
                }
            }
            ServerMessage::SubscribeOffer { sdp, tracks } if self.clients[c].answer_offers => {
                let addr: SocketAddr = format!("10.0.2.{}:4000", c + 1).parse().unwrap();
                let client = &mut self.clients[c];
                client.sub_tracks = tracks.clone();
                let peer = client
                    .subscribe
                    .get_or_insert_with(|| ClientPeer::new(now, addr, false));
                let offer = SdpOffer::from_sdp_string(sdp).expect("offer parses");
                let answer = peer
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("offer accepted");
                let id = client.id;
                self.drain_client(c, false);
                self.shard.handle_command(
                    now,
                    Command::SubscribeAnswer {
                        attendee: id,
                        sdp: answer.to_sdp_string(),
                    },
                );
            }
            _ => {}
        }
        self.clients[c].messages.push(msg);
    }

    /// Run until every client's connections are up.
    pub fn connect_all(&mut self) {
        let ok = self.run_until(
            Duration::from_secs(5),
            |_| {},
            |s| {
                s.clients.iter().all(|c| {
                    c.publish.as_ref().is_none_or(|p| p.connected)
                        && c.subscribe.as_ref().is_none_or(|p| p.connected)
                })
            },
        );
        assert!(ok, "connections did not come up in 5 s of simulated time");
    }
}
