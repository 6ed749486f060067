//! A driver thread: many str0m `Rtc`s, each with its own UDP socket, driven by one mio loop.
//!
//! Signaling runs on tokio (one task per attendee) and asks the driver that owns an attendee's connections
//! to make offers, apply answers and accept the server's subscribe offers, through [`DriverHandle`]. Media
//! never leaves the driver: publishers' traffic models are polled here, packets go through `write_rtp`, and
//! received packets are measured here into the thread's own [`Stats`]. One thread owning its connections
//! outright keeps the packet path free of locks, like the SFU's shards.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::oneshot;

use crate::LoadError;
use crate::media::{AudioModel, Frame, LayerSpec, VideoModel};
use crate::payload::{self, Kind, Stamp};
use crate::stats::Stats;

/// Identifies a connection inside its driver.
pub type ConnId = usize;

const WAKER: Token = Token(usize::MAX);
/// Largest datagram we accept.
const MAX_DATAGRAM: usize = 2048;
/// Readable sockets handled between two passes of the traffic models.
const SEND_EVERY: usize = 16;
/// Socket buffers: big enough that a screen-share burst or a scheduling hiccup does not overflow them.
const SOCKET_BUFFER: usize = 4 << 20;

/// State shared by every driver and the orchestrator: flags and progress counters (atomics, read by the
/// progress printer; the packet path only increments its own thread's `Stats`).
#[derive(Debug)]
pub struct Shared {
    pub epoch: Instant,
    /// Packets count towards the results only while this is set.
    pub measuring: AtomicBool,
    pub stop: AtomicBool,
    pub connected: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            connected: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Microseconds since the run's epoch: the clock of every [`Stamp`] (one process, one clock).
    pub fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

/// What a publisher sends.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub audio: bool,
    /// Camera simulcast layers (lowest first); empty for no camera.
    pub camera: Vec<LayerSpec>,
    pub screen: bool,
    pub talk_ratio: f64,
    pub keyframe_interval: Duration,
    /// First stream id of this publisher; each published track takes the next one.
    pub stream_base: u32,
    pub seed: u64,
    /// Follow the SFU's `publish_targets` (pause simulcast layers it switches off), as Convene's web app
    /// does.
    pub follow_targets: bool,
}

/// What the SFU asked one published track to send (Convene's `publish_targets`): the simulcast layers to
/// keep (`None`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackLayers {
    pub mid: String,
    pub active_rids: Option<Vec<String>>,
}

/// A publish offer made by the driver, ready to send.
#[derive(Debug)]
pub struct PublishOffer {
    pub conn: ConnId,
    pub sdp: String,
    /// (mid, source name as the protocol spells it)
    pub tracks: Vec<(String, &'static str)>,
}

enum Command {
    Publish {
        plan: PublishPlan,
        reply: oneshot::Sender<Result<PublishOffer, LoadError>>,
    },
    PublishAnswer {
        conn: ConnId,
        sdp: String,
        reply: oneshot::Sender<Result<(), LoadError>>,
    },
    Subscribe {
        conn: Option<ConnId>,
        sdp: String,
        /// (mid, is video)
        tracks: Vec<(String, bool)>,
        reply: oneshot::Sender<Result<(ConnId, String), LoadError>>,
    },
    /// Stop or resume simulcast layers, as a browser does when told (`RTCRtpSender.setParameters`).
    PublishTargets {
        conn: ConnId,
        tracks: Vec<TrackLayers>,
    },
    Close {
        conn: ConnId,
    },
}

/// The signaling side's way to reach one driver thread.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl DriverHandle {
    fn send(&self, cmd: Command) -> Result<(), LoadError> {
        self.tx.send(cmd).map_err(|_| LoadError::DriverGone)?;
        self.waker.wake().map_err(LoadError::Io)
    }

    /// Sends only the simulcast layers `tracks` name from now on (the others pause, as a browser's do
    /// when Convene's `publish_targets` switch them off).
    pub fn publish_targets(&self, conn: ConnId, tracks: Vec<TrackLayers>) -> Result<(), LoadError> {
        self.send(Command::PublishTargets { conn, tracks })
    }

    /// Creates a publish connection for `plan` and returns its offer.
    pub async fn publish(&self, plan: PublishPlan) -> Result<PublishOffer, LoadError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish { plan, reply })?;
        rx.await.map_err(|_| LoadError::DriverGone)?
    }

    pub async fn publish_answer(&self, conn: ConnId, sdp: String) -> Result<(), LoadError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PublishAnswer { conn, sdp, reply })?;
        rx.await.map_err(|_| LoadError::DriverGone)?
    }

    /// Applies a subscribe offer (creating the subscribe connection on the first) and returns the answer.
    pub async fn subscribe(
        &self,
        conn: Option<ConnId>,
        sdp: String,
        tracks: Vec<(String, bool)>,
    ) -> Result<(ConnId, String), LoadError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Subscribe {
            conn,
            sdp,
            tracks,
            reply,
        })?;
        rx.await.map_err(|_| LoadError::DriverGone)?
    }

    pub fn close(&self, conn: ConnId) {
        // A driver that is gone has closed everything already.
        let _ = self.send(Command::Close { conn });
    }
}

/// A running driver thread; `join` returns what it measured.
pub struct Driver {
    pub handle: DriverHandle,
    thread: JoinHandle<Stats>,
}

impl Driver {
    pub fn spawn(
        index: usize,
        shared: Arc<Shared>,
        local_ip: std::net::IpAddr,
    ) -> Result<Self, LoadError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("load-driver-{index}"))
            .spawn(move || {
                let mut state = DriverState {
                    poll,
                    rx,
                    shared,
                    local_ip,
                    conns: Vec::new(),
                    stats: Stats::default(),
                    buf: vec![0; MAX_DATAGRAM],
                    index: index as u32,
                };
                state.run();
                state.stats
            })?;
        Ok(Self {
            handle: DriverHandle { tx, waker },
            thread,
        })
    }

    pub fn join(self) -> Stats {
        // Wake it so it sees the stop flag now rather than at its next timer.
        let _ = self.handle.waker.wake();
        self.thread.join().unwrap_or_else(|_| {
            tracing::error!("a driver thread panicked; its measurements are lost");
            Stats::default()
        })
    }
}

/// One traffic source of a publisher: a track (or one simulcast layer of it).
struct Source {
    mid: Mid,
    rid: Option<Rid>,
    model: Model,
    stream: u32,
    /// Trailer sequence (per stream and layer).
    seq: u32,
    /// RTP sequence number (extended; str0m derives the SRTP ROC from it).
    rtp_seq: u64,
    pt: Option<Pt>,
    /// A simulcast layer the SFU switched off is not sent (its model still runs, so it resumes in step).
    active: bool,
}

enum Model {
    Audio(AudioModel),
    Video(VideoModel),
}

impl Model {
    fn next_at(&self) -> Instant {
        match self {
            Model::Audio(m) => m.next_at(),
            Model::Video(m) => m.next_at(),
        }
    }
    fn poll(&mut self, now: Instant) -> Option<Frame> {
        match self {
            Model::Audio(m) => m.poll(now),
            Model::Video(m) => m.poll(now),
        }
    }
}

/// A video track of a subscribe connection, for the keyframe wait.
struct SubTrack {
    /// When the track became receivable: its offer was answered (and later, the connection came up).
    since: Instant,
    got_first: bool,
}

struct Conn {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    connected: bool,
    closed: bool,
    next_timeout: Instant,
    /// Media was written since the last timeout pass: str0m releases it on the next one.
    dirty: bool,
    pending: Option<SdpPendingOffer>,
    sources: Vec<Source>,
    video_tracks: HashMap<Mid, SubTrack>,
    ssrc_mids: Vec<(Ssrc, Mid)>,
}

struct DriverState {
    poll: Poll,
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    local_ip: std::net::IpAddr,
    conns: Vec<Conn>,
    stats: Stats,
    buf: Vec<u8>,
    index: u32,
}

/// One DTLS certificate for all our connections: generating a key pair per `Rtc` would cost more CPU at
/// ramp-up than the handshakes themselves, and the server does not care.
fn shared_cert() -> Option<str0m::config::DtlsCert> {
    static CERT: OnceLock<Option<str0m::config::DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    })
    .clone()
}

fn new_rtc(now: Instant) -> Rtc {
    let mut cfg = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true);
    if let Some(cert) = shared_cert() {
        cfg = cfg.set_dtls_cert(cert);
    }
    cfg.build(now)
}

impl DriverState {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.command(cmd);
            }
            let now = Instant::now();
            self.produce(now);
            self.timeouts(now);

            let next = self
                .conns
                .iter()
                .filter(|c| !c.closed)
                .flat_map(|c| {
                    std::iter::once(c.next_timeout).chain(
                        c.sources
                            .iter()
                            .filter(|_| c.connected)
                            .map(|s| s.model.next_at()),
                    )
                })
                .min();
            let now = Instant::now();
            // Cap the sleep so the stop flag is noticed even when nothing is scheduled.
            let wait = next
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "driver poll failed");
                break;
            }
            for (i, ev) in events.iter().enumerate() {
                if ev.token() == WAKER {
                    continue;
                }
                self.receive(ev.token().0);
                // Keep sending on time while a long batch of receptions is handled: a sender that falls
                // behind and then catches up all at once sends bursts no set of real clients would.
                if i % SEND_EVERY == SEND_EVERY - 1 {
                    let now = Instant::now();
                    self.produce(now);
                    self.timeouts(now);
                }
            }
        }
        for c in &mut self.conns {
            if c.connected && !c.closed {
                self.stats.keyframe_never +=
                    c.video_tracks.values().filter(|t| !t.got_first).count() as u64;
            }
            c.rtc.disconnect();
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { plan, reply } => {
                let _ = reply.send(self.create_publish(plan));
            }
            Command::PublishAnswer { conn, sdp, reply } => {
                let _ = reply.send(self.accept_publish_answer(conn, &sdp));
            }
            Command::Subscribe {
                conn,
                sdp,
                tracks,
                reply,
            } => {
                let _ = reply.send(self.accept_subscribe_offer(conn, &sdp, &tracks));
            }
            Command::PublishTargets { conn, tracks } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    for s in &mut c.sources {
                        let (Some(rid), Some(track)) =
                            (s.rid, tracks.iter().find(|t| t.mid == s.mid.to_string()))
                        else {
                            continue;
                        };
                        s.active = track
                            .active_rids
                            .as_ref()
                            .is_none_or(|rids| rids.iter().any(|r| r.as_str() == &*rid));
                    }
                }
            }
            Command::Close { conn } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.rtc.disconnect();
                    c.closed = true;
                    let _ = self.poll.registry().deregister(&mut c.socket);
                }
            }
        }
    }

    fn new_conn(&mut self, now: Instant) -> Result<ConnId, LoadError> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(SocketAddr::new(self.local_ip, 0)),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(self.local_ip, 0).into())?;
        let std_socket: std::net::UdpSocket = socket.into();
        let local = std_socket.local_addr()?;
        let mut socket = UdpSocket::from_std(std_socket);
        let id = self.conns.len();
        self.poll
            .registry()
            .register(&mut socket, Token(id), Interest::READABLE)?;
        let mut rtc = new_rtc(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| LoadError::Negotiation(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        self.conns.push(Conn {
            rtc,
            socket,
            local,
            connected: false,
            closed: false,
            next_timeout: now,
            dirty: false,
            pending: None,
            sources: Vec::new(),
            video_tracks: HashMap::new(),
            ssrc_mids: Vec::new(),
        });
        Ok(id)
    }

    fn create_publish(&mut self, plan: PublishPlan) -> Result<PublishOffer, LoadError> {
        let now = Instant::now();
        let id = self.new_conn(now)?;
        let conn = &mut self.conns[id];
        let mut api = conn.rtc.sdp_api();
        let mut tracks = Vec::new();
        let mut sources = Vec::new();
        let mut stream = plan.stream_base;
        let mut seed = plan.seed;
        let mut next_seed = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        let rtp_start = |s: u64| 1000 + (s % 20_000);
        if plan.audio {
            let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            tracks.push((mid.to_string(), "audio"));
            let s = next_seed();
            sources.push(Source {
                mid,
                rid: None,
                model: Model::Audio(AudioModel::new(now, plan.talk_ratio, s)),
                stream,
                seq: 0,
                rtp_seq: rtp_start(s),
                pt: None,
                active: true,
            });
            stream += 1;
        }
        if !plan.camera.is_empty() {
            let simulcast = (plan.camera.len() > 1).then(|| {
                let mut sim = Simulcast::new();
                for layer in &plan.camera {
                    sim.add_send_layer(SimulcastLayer::new(&layer.rid));
                }
                sim
            });
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
            tracks.push((mid.to_string(), "camera"));
            for (i, layer) in plan.camera.iter().enumerate() {
                let s = next_seed();
                sources.push(Source {
                    mid,
                    rid: (plan.camera.len() > 1).then(|| Rid::from(layer.rid.as_str())),
                    model: Model::Video(VideoModel::camera(
                        now,
                        i as u8,
                        layer,
                        plan.keyframe_interval,
                        s,
                    )),
                    stream,
                    seq: 0,
                    rtp_seq: rtp_start(s),
                    pt: None,
                    active: true,
                });
            }
            stream += 1;
        }
        if plan.screen {
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            tracks.push((mid.to_string(), "screen"));
            let s = next_seed();
            sources.push(Source {
                mid,
                rid: None,
                model: Model::Video(VideoModel::screen(now, plan.keyframe_interval * 2, s)),
                stream,
                seq: 0,
                rtp_seq: rtp_start(s),
                pt: None,
                active: true,
            });
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| LoadError::Negotiation("nothing to offer".into()))?;
        conn.pending = Some(pending);
        conn.sources = sources;
        Ok(PublishOffer {
            conn: id,
            sdp: offer.to_sdp_string(),
            tracks,
        })
    }

    fn accept_publish_answer(&mut self, id: ConnId, sdp: &str) -> Result<(), LoadError> {
        let conn = self
            .conns
            .get_mut(id)
            .ok_or_else(|| LoadError::Negotiation("unknown connection".into()))?;
        let pending = conn
            .pending
            .take()
            .ok_or_else(|| LoadError::Negotiation("publish answer without an offer".into()))?;
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| LoadError::Negotiation(format!("publish answer: {e}")))?;
        conn.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| LoadError::Negotiation(format!("publish answer: {e}")))?;
        // The payload types the server accepted, per m-line.
        for s in &mut conn.sources {
            let codec = match s.model {
                Model::Audio(_) => Codec::Opus,
                Model::Video(_) => Codec::Vp8,
            };
            let remote = conn
                .rtc
                .media(s.mid)
                .map(|m| m.remote_pts().to_vec())
                .unwrap_or_default();
            s.pt = conn
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
                .map(|p| p.pt());
            if s.pt.is_none() {
                return Err(LoadError::Negotiation(format!(
                    "the server did not accept {codec:?} on mid {}",
                    s.mid
                )));
            }
        }
        self.flush(id, Instant::now());
        Ok(())
    }

    fn accept_subscribe_offer(
        &mut self,
        id: Option<ConnId>,
        sdp: &str,
        tracks: &[(String, bool)],
    ) -> Result<(ConnId, String), LoadError> {
        let now = Instant::now();
        let offer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| LoadError::Negotiation(format!("subscribe offer: {e}")))?;
        let id = match id {
            Some(id) => id,
            None => self.new_conn(now)?,
        };
        let conn = &mut self.conns[id];
        let answer = conn
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| LoadError::Negotiation(format!("subscribe offer: {e}")))?;
        for (mid, is_video) in tracks {
            if !is_video {
                continue;
            }
            conn.video_tracks
                .entry(Mid::from(mid.as_str()))
                .or_insert(SubTrack {
                    since: now,
                    got_first: false,
                });
        }
        self.flush(id, now);
        Ok((id, answer.to_sdp_string()))
    }

    /// Polls every connected publisher's models and writes what is due.
    fn produce(&mut self, now: Instant) {
        let measuring = self.shared.measuring.load(Ordering::Relaxed);
        for id in 0..self.conns.len() {
            let conn = &mut self.conns[id];
            if !conn.connected || conn.closed || conn.sources.is_empty() {
                continue;
            }
            let mut wrote = 0u64;
            let mut bytes = 0u64;
            for s in &mut conn.sources {
                let Some(pt) = s.pt else { continue };
                while let Some(frame) = s.model.poll(now) {
                    if !s.active {
                        continue;
                    }
                    let mut api = conn.rtc.direct_api();
                    let Some(tx) = api.stream_tx_by_mid(s.mid, s.rid) else {
                        break;
                    };
                    let sizes: Vec<usize> = if frame.kind == Kind::Audio {
                        vec![frame.bytes]
                    } else {
                        payload::split_frame(frame.bytes).collect()
                    };
                    let last = sizes.len() - 1;
                    for (i, size) in sizes.into_iter().enumerate() {
                        let stamp = Stamp {
                            kind: frame.kind,
                            layer: frame.layer,
                            keyframe: frame.keyframe,
                            stream: s.stream,
                            seq: s.seq,
                            sent_us: self.shared.micros(Instant::now()),
                        };
                        s.seq = s.seq.wrapping_add(1);
                        s.rtp_seq += 1;
                        let body = if frame.kind == Kind::Audio {
                            payload::opus_payload(size, &stamp)
                        } else {
                            payload::vp8_payload(size, i == 0, frame.keyframe, &stamp)
                        };
                        bytes += body.len() as u64;
                        let ext = ExtensionValues {
                            audio_level: frame.audio_level,
                            voice_activity: frame.audio_level.map(|l| l > -50),
                            ..Default::default()
                        };
                        tx.write_rtp(
                            RtpWrite::new(pt, s.rtp_seq.into(), frame.rtp_time, now, body)
                                .marker(i == last)
                                .ext_vals(ext)
                                .nackable(frame.kind != Kind::Audio),
                        );
                        wrote += 1;
                    }
                }
            }
            if wrote > 0 {
                conn.dirty = true;
                self.shared.sent.fetch_add(wrote, Ordering::Relaxed);
                if measuring {
                    self.stats.sent_packets += wrote;
                    self.stats.sent_bytes += bytes;
                }
            }
        }
    }

    /// Gives every connection whose timer is due (or that has media queued) its timeout pass.
    fn timeouts(&mut self, now: Instant) {
        for id in 0..self.conns.len() {
            let c = &self.conns[id];
            if c.closed || (!c.dirty && c.next_timeout > now) {
                continue;
            }
            self.conns[id].dirty = false;
            if self.conns[id]
                .rtc
                .handle_input(Input::Timeout(now))
                .is_err()
            {
                self.fail(id);
                continue;
            }
            self.flush(id, now);
        }
    }

    /// Reads every datagram waiting on a connection's socket.
    fn receive(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if conn.closed {
                return;
            }
            let (n, from) = match conn.socket.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "recv failed");
                    return;
                }
            };
            let now = Instant::now();
            let Ok(contents) = self.buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: conn.local,
                    contents,
                },
            );
            if conn.rtc.handle_input(input).is_err() {
                self.fail(id);
                return;
            }
            self.flush(id, now);
        }
    }

    fn fail(&mut self, id: ConnId) {
        let c = &mut self.conns[id];
        if !c.closed {
            tracing::warn!(conn = id, "connection failed");
            c.closed = true;
            let _ = self.poll.registry().deregister(&mut c.socket);
        }
    }

    /// Drains a connection's output: sends datagrams, handles events, remembers its next timeout.
    fn flush(&mut self, id: ConnId, now: Instant) {
        let measuring = self.shared.measuring.load(Ordering::Relaxed);
        loop {
            let conn = &mut self.conns[id];
            let out = match conn.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "poll_output failed");
                    self.fail(id);
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    conn.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    if let Err(e) = conn.socket.send_to(&t.contents, t.destination) {
                        // A full socket buffer drops the datagram as a congested network would.
                        tracing::trace!(error = %e, "send failed");
                        self.stats.send_errors += 1;
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        conn.connected = true;
                        for t in conn.video_tracks.values_mut() {
                            t.since = t.since.max(now);
                        }
                        self.shared.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::KeyframeRequest(req) => {
                        let mut matched = false;
                        for s in &mut conn.sources {
                            if s.mid == req.mid
                                && s.rid == req.rid
                                && let Model::Video(m) = &mut s.model
                            {
                                m.request_keyframe();
                                matched = true;
                            }
                        }
                        self.stats.keyframe_requests += 1;
                        if !matched {
                            self.stats.keyframe_requests_unmatched += 1;
                        }
                    }
                    Event::RtpPacket(p) => {
                        let recv_us = self.shared.micros(Instant::now());
                        self.shared.received.fetch_add(1, Ordering::Relaxed);
                        let ssrc = p.header.ssrc;
                        let mid = match conn.ssrc_mids.iter().find(|(s, _)| *s == ssrc) {
                            Some(&(_, mid)) => Some(mid),
                            None => {
                                let mid = conn.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                                if let Some(mid) = mid {
                                    conn.ssrc_mids.push((ssrc, mid));
                                }
                                mid
                            }
                        };
                        if let Some(track) = mid.and_then(|m| conn.video_tracks.get_mut(&m))
                            && !track.got_first
                        {
                            track.got_first = true;
                            // Recorded outside the window too: waits happen at join time, which is
                            // mostly before measuring starts.
                            let wait = now.saturating_duration_since(track.since);
                            self.stats.keyframe_wait_us.record(wait.as_micros() as u64);
                        }
                        if !measuring {
                            continue;
                        }
                        let Some(stamp) = Stamp::read(&p.payload) else {
                            self.stats.foreign_packets += 1;
                            continue;
                        };
                        self.stats.received_packets += 1;
                        self.stats.received_bytes += p.payload.len() as u64;
                        self.stats
                            .latency_us
                            .record(recv_us.saturating_sub(stamp.sent_us));
                        // The SFU's extended sequence number: its low 32 bits are a counter that does
                        // not wrap within any run.
                        let seq = (*p.seq_no & u64::from(u32::MAX)) as u32;
                        self.stats
                            .streams
                            .entry((self.index << 20 | id as u32, *ssrc))
                            .or_default()
                            .record(seq, stamp.sent_us, recv_us);
                    }
                    _ => {}
                },
            }
        }
    }
}
