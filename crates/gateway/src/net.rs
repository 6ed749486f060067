//! The tokio edge around [`Gateway`]: the SIP sockets (UDP and TCP on one address), one RTP socket
//! per call from the configured port range, and admission asked of the [`MeetingDoor`].
//!
//! One task owns the core and everything it decides; connection readers, RTP readers and admission
//! lookups are small tasks that only feed it input over a channel.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::{MeetingEvent, MeetingEventKind, MeetingId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::call::{CallId, Config, Event, Gateway, Output};
use crate::dialplan::Dial;
use crate::door::{CallMedia, JoinGrant, MeetingDoor, Refused};
use crate::media_task::{self, MediaCommand};
use crate::metrics::GatewayMetrics;
use crate::sip::transport::StreamFramer;
use crate::sip::{ConnId, Peer, Transport};

/// Where the gateway listens and what it may bind.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP and TCP listen address.
    pub listen: SocketAddr,
    /// Inclusive RTP port range, four ports per call (audio, video and their RTCP), bound on `rtp_bind`.
    pub rtp_ports: (u16, u16),
    pub rtp_bind: IpAddr,
    /// The address put in Contact, Via and SDP (None: the bound address).
    pub public_ip: Option<IpAddr>,
    /// SIP over TLS, if served.
    pub tls: Option<TlsListen>,
    /// Where the live calls are written for `convene gateway calls` (None: nowhere).
    pub status_file: Option<PathBuf>,
    pub core: Config,
}

/// The TLS listener's address and certificate.
#[derive(Clone)]
pub struct TlsListen {
    pub addr: SocketAddr,
    pub config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListen")
            .field("addr", &self.addr)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "cannot bind SIP {transport} on {addr} (if another process, or another Convene, has the port: choose others with --sip/--sip-tls, or turn the gateway off with --no-sip)"
    )]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the SIP RTP port range {0}-{1} is empty")]
    NoRtpPorts(u16, u16),
}

/// Most TCP and TLS connections at once; a room system keeps one.
const MAX_CONNECTIONS: usize = 1024;
/// Most from one address, so that one peer cannot take every slot (an SBC in front of many rooms
/// opens a few).
const MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// A TCP connection that sends nothing for this long is closed (devices send CRLF keep-alives).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long shutdown waits for BYEs to be answered.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(2);

pub(crate) enum Input {
    Message {
        peer: Peer,
        bytes: Vec<u8>,
    },
    Connected {
        conn: ConnId,
        tx: mpsc::Sender<Vec<u8>>,
    },
    Closed {
        conn: ConnId,
    },
    Rtp {
        call: CallId,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Admission {
        call: CallId,
        result: Result<JoinGrant, Refused>,
    },
    IvrAdmission {
        call: CallId,
        result: Result<JoinGrant, Refused>,
    },
    MeetingEnded(MeetingId),
}

/// Pass the ends of meetings from the event bus to the gateway's task.
async fn forward_meeting_ends(
    mut events: broadcast::Receiver<MeetingEvent>,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.changed() => return,
        };
        match event {
            Ok(MeetingEvent {
                meeting,
                kind: MeetingEventKind::MeetingEnded,
                ..
            }) => {
                if tx.send(Input::MeetingEnded(meeting)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "the SIP gateway fell behind the meeting events");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A running gateway.
pub struct SipServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SipServer {
    /// Bind the sockets and start serving.
    /// `events` is a subscription to the meeting event bus: a meeting's end hangs up its calls.
    pub async fn start(
        config: SipConfig,
        door: Arc<dyn MeetingDoor>,
        metrics: GatewayMetrics,
        events: Option<broadcast::Receiver<MeetingEvent>>,
    ) -> Result<Self, NetError> {
        if config.rtp_ports.0 == 0 || config.rtp_ports.0 > config.rtp_ports.1 {
            return Err(NetError::NoRtpPorts(config.rtp_ports.0, config.rtp_ports.1));
        }
        let udp = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| NetError::Bind {
                transport: "UDP",
                addr: config.listen,
                source,
            })?;
        let udp_addr = udp.local_addr().map_err(|source| NetError::Bind {
            transport: "UDP",
            addr: config.listen,
            source,
        })?;
        // TCP on the same port as UDP, also when the caller asked for port 0.
        let tcp_at = SocketAddr::new(config.listen.ip(), udp_addr.port());
        let tcp = TcpListener::bind(tcp_at)
            .await
            .map_err(|source| NetError::Bind {
                transport: "TCP",
                addr: tcp_at,
                source,
            })?;
        let tls = match &config.tls {
            Some(t) => {
                let listener =
                    TcpListener::bind(t.addr)
                        .await
                        .map_err(|source| NetError::Bind {
                            transport: "TLS",
                            addr: t.addr,
                            source,
                        })?;
                let addr = listener.local_addr().unwrap_or(t.addr);
                Some((listener, addr, t.config.clone()))
            }
            None => None,
        };
        let mut core_config = config.core.clone();
        core_config.local.udp = Some(udp_addr);
        core_config.local.tcp = Some(tcp_at);
        core_config.local.tls = tls.as_ref().map(|(_, addr, _)| *addr);
        core_config.local.public_host = config.public_ip;
        core_config.media_ip = config.public_ip.unwrap_or(config.rtp_bind);
        let core = Gateway::new(core_config, metrics.clone());
        let (stop, stopped) = watch::channel(false);
        let (tx, rx) = mpsc::channel(4096);
        let tx_events = tx.clone();
        let conns = Arc::new(Connections::default());
        tokio::spawn(accept_loop(
            tcp,
            None,
            conns.clone(),
            tx.clone(),
            stopped.clone(),
        ));
        let tls_addr = tls.as_ref().map(|(_, addr, _)| *addr);
        if let Some((listener, _, tls_config)) = tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
            tokio::spawn(accept_loop(
                listener,
                Some(acceptor),
                conns,
                tx.clone(),
                stopped.clone(),
            ));
        }
        let runner = Runner {
            core,
            udp: Arc::new(udp),
            tx,
            conns: HashMap::new(),
            rtp: HashMap::new(),
            present: HashMap::new(),
            metrics,
            rtp_ports: config.rtp_ports,
            rtp_bind: config.rtp_bind,
            rtp_cursor: config.rtp_ports.0,
            door,
            status: config.status_file.map(|path| StatusFile {
                path,
                dirty: true,
                next_write: tokio::time::Instant::now(),
            }),
        };
        if let Some(events) = events {
            tokio::spawn(forward_meeting_ends(events, tx_events, stopped.clone()));
        }
        let task = tokio::spawn(runner.run(rx, stopped));
        tracing::info!(udp = %udp_addr, tcp = %tcp_at, tls = ?tls_addr, "SIP gateway listening");
        Ok(Self {
            udp: udp_addr,
            tcp: tcp_at,
            tls: tls_addr,
            stop,
            task,
        })
    }

    /// Hang up every call (BYE), wait briefly for the answers, stop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Stream connections of both stream transports: ids and the count against the limit.
#[derive(Default)]
struct Connections {
    next: std::sync::atomic::AtomicU64,
    open: std::sync::atomic::AtomicUsize,
    per_source: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    /// Take a slot for a connection from `ip`, if the limits allow.
    fn admit(&self, ip: IpAddr) -> bool {
        use std::sync::atomic::Ordering;
        let Ok(mut per_source) = self.per_source.lock() else {
            return false;
        };
        let mine = per_source.entry(ip).or_insert(0);
        if *mine >= MAX_CONNECTIONS_PER_SOURCE
            || self.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS
        {
            return false;
        }
        *mine += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn release(&self, ip: IpAddr) {
        use std::sync::atomic::Ordering;
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut per_source) = self.per_source.lock()
            && let Some(n) = per_source.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_source.remove(&ip);
            }
        }
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    conns: Arc<Connections>,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !conns.admit(addr.ip()) {
            tracing::warn!(%addr, "too many SIP connections (in all, or from this address); refusing one");
            continue;
        }
        let conn = conns.next.fetch_add(1, Ordering::Relaxed) + 1;
        let conns = conns.clone();
        let tx = tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, Transport::Tcp, addr, conn, tx).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, Transport::Tls, addr, conn, tx).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "SIP TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%addr, "SIP TLS handshake timed out"),
                    }
                }
            }
            conns.release(addr.ip());
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    transport: Transport,
    addr: SocketAddr,
    conn: ConnId,
    tx: mpsc::Sender<Input>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    if tx
        .send(Input::Connected { conn, tx: out_tx })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                break;
            }
        }
    });
    let peer = Peer {
        transport,
        addr,
        conn: Some(conn),
    };
    let mut framer = StreamFramer::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(bytes)) => {
                    if tx.send(Input::Message { peer, bytes }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A stream we cannot frame cannot be resynchronised: close it (RFC 3261 §18.3).
                    tracing::debug!(%addr, error = %e, "closing a SIP stream connection");
                    let _ = tx.send(Input::Closed { conn }).await;
                    writer.abort();
                    return;
                }
            }
        }
    }
    let _ = tx.send(Input::Closed { conn }).await;
    writer.abort();
}

/// How long admission may take before the caller is told to try later.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(8);

async fn ask(
    door: &dyn MeetingDoor,
    meeting_id: &str,
    caller: &str,
    source: IpAddr,
) -> Result<JoinGrant, Refused> {
    match tokio::time::timeout(ADMISSION_TIMEOUT, door.admit(meeting_id, caller, source)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(meeting_id, "admission timed out");
            Err(Refused::Unavailable)
        }
    }
}

struct Runner {
    core: Gateway,
    udp: Arc<UdpSocket>,
    tx: mpsc::Sender<Input>,
    conns: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    /// Each call's media task, and how to reach it.
    rtp: HashMap<CallId, (JoinHandle<()>, mpsc::Sender<MediaCommand>)>,
    metrics: GatewayMetrics,
    /// Calls in their meetings (told to the door as arrived), to tell it when they end.
    present: HashMap<CallId, JoinGrant>,
    rtp_ports: (u16, u16),
    rtp_bind: IpAddr,
    rtp_cursor: u16,
    door: Arc<dyn MeetingDoor>,
    status: Option<StatusFile>,
}

/// The live calls as a JSON file, rewritten (at most once a second) when calls change: how
/// `convene gateway calls` sees them without a network API.
struct StatusFile {
    path: PathBuf,
    dirty: bool,
    next_write: tokio::time::Instant,
}

/// What the status file holds.
#[derive(serde::Serialize)]
struct Status<'a> {
    /// The server process, so a reader can tell a stale file (left by a crash) from a live one.
    pid: u32,
    updated_unix: u64,
    calls: Vec<StatusCall<'a>>,
}

#[derive(serde::Serialize)]
struct StatusCall<'a> {
    #[serde(flatten)]
    info: &'a crate::call::CallInfo,
    started_unix: u64,
}

const STATUS_EVERY: Duration = Duration::from_secs(1);

fn write_status(path: &Path, calls: &[crate::call::CallInfo]) -> std::io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let status = Status {
        pid: std::process::id(),
        updated_unix: now.as_secs(),
        calls: calls
            .iter()
            .map(|info| StatusCall {
                info,
                started_unix: now.saturating_sub(info.age).as_secs(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&status).map_err(std::io::Error::other)?;
    // Written aside and renamed, so a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

impl Runner {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65536];
        let mut linger_until: Option<tokio::time::Instant> = None;
        loop {
            self.flush().await;
            self.write_status();
            let deadline = self
                .core
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let deadline = match linger_until {
                Some(l) => deadline.min(l),
                None => deadline,
            };
            let deadline = match &self.status {
                Some(s) if s.dirty => deadline.min(s.next_write),
                _ => deadline,
            };
            let udp = self.udp.clone();
            tokio::select! {
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let peer = Peer { transport: Transport::Udp, addr: from, conn: None };
                        self.core.handle_message(Instant::now(), peer, &buf[..n]);
                    }
                    Err(e) => tracing::debug!(error = %e, "SIP UDP receive failed"),
                },
                Some(input) = rx.recv() => self.input(input).await,
                _ = tokio::time::sleep_until(deadline) => {
                    if linger_until.is_some_and(|l| l <= tokio::time::Instant::now()) {
                        break;
                    }
                    self.core.handle_timeout(Instant::now());
                    self.write_status();
                }
                changed = stop.changed(), if linger_until.is_none() => {
                    let _ = changed;
                    tracing::info!(calls = self.core.calls(), "SIP gateway stopping: hanging up every call");
                    self.core.hangup_all(Instant::now());
                    linger_until = Some(tokio::time::Instant::now() + SHUTDOWN_LINGER);
                }
            }
            if linger_until.is_some() && self.core.calls() == 0 && !self.core.awaiting_answers() {
                self.flush().await;
                break;
            }
        }
        for (_, (task, _)) in self.rtp.drain() {
            task.abort();
        }
        if let Some(s) = &self.status {
            let _ = std::fs::remove_file(&s.path);
        }
    }

    /// Rewrite the status file if calls changed and a second has passed since the last write.
    fn write_status(&mut self) {
        let Some(s) = &mut self.status else {
            return;
        };
        let now = tokio::time::Instant::now();
        if !s.dirty || now < s.next_write {
            return;
        }
        s.dirty = false;
        s.next_write = now + STATUS_EVERY;
        let calls = self.core.snapshot(Instant::now());
        if let Err(e) = write_status(&s.path, &calls) {
            tracing::warn!(path = %s.path.display(), error = %e, "cannot write the gateway's call list");
        }
    }

    async fn flush(&mut self) {
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => self.transmit(peer, bytes).await,
                Output::Event(e) => self.event(e).await,
            }
        }
    }

    async fn transmit(&mut self, peer: Peer, bytes: Vec<u8>) {
        match peer.conn {
            None => {
                if let Err(e) = self.udp.send_to(&bytes, peer.addr).await {
                    tracing::debug!(%peer, error = %e, "SIP UDP send failed");
                }
            }
            Some(conn) => match self.conns.get(&conn) {
                Some(tx) => {
                    if tx.try_send(bytes).is_err() {
                        tracing::debug!(%peer, "SIP TCP connection is full or gone; message dropped");
                    }
                }
                None => tracing::debug!(%peer, "SIP TCP connection closed; message dropped"),
            },
        }
    }

    async fn input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Message { peer, bytes } => self.core.handle_message(now, peer, &bytes),
            Input::Connected { conn, tx } => {
                self.conns.insert(conn, tx);
            }
            Input::Closed { conn } => {
                self.conns.remove(&conn);
            }
            Input::Rtp { call, from, bytes } => self.core.handle_rtp(now, call, from, &bytes),
            Input::Admission { call, result } => match result {
                Ok(grant) => self.answer(call, Some(grant)).await,
                Err(refused) => self.core.refuse_admission(now, call, &refused),
            },
            Input::MeetingEnded(meeting) => self.core.hangup_meeting(now, &meeting),
            Input::IvrAdmission { call, result } => match result {
                Ok(grant) => {
                    tracing::info!(call, meeting = %grant.meeting, "IVR caller admitted");
                    self.core.ivr_admitted(call, grant);
                }
                Err(refused) => self.core.ivr_refused(now, call, &refused),
            },
        }
    }

    /// Bind the call's RTP port and answer it.
    async fn answer(&mut self, call: CallId, grant: Option<JoinGrant>) {
        match self.bind_rtp(call).await {
            Some(port) => self.core.accept(Instant::now(), call, port, grant),
            None => {
                tracing::warn!(call, "no free RTP port in the SIP range");
                self.core
                    .refuse(Instant::now(), call, 503, "No Media Port Free");
            }
        }
    }

    /// Bind a call's media ports: audio RTP on an even port P, video RTP on P+2 and its RTCP on P+3
    /// (the answer names P and, when video is agreed, P+2: `sdp::Session::video_port`). P+1 is left
    /// for audio RTCP, which we do not read. Four ports per call, so the range takes a quarter as
    /// many calls as it has ports.
    async fn bind_rtp(&mut self, call: CallId) -> Option<u16> {
        let (lo, hi) = self.rtp_ports;
        let count = u32::from(hi - lo) + 1;
        for _ in 0..count {
            let port = self.rtp_cursor;
            self.rtp_cursor = if port >= hi { lo } else { port + 1 };
            // Even ports only, so RTCP can take port+1 as devices expect.
            if port % 2 == 1 || u32::from(port) + 3 > u32::from(hi) {
                continue;
            }
            let Some(sockets) = self.bind_call_ports(port).await else {
                continue;
            };
            let (commands, commands_rx) = mpsc::channel(8);
            let task = tokio::spawn(media_task::run(
                call,
                sockets,
                self.tx.clone(),
                commands_rx,
                self.metrics.clone(),
            ));
            self.rtp.insert(call, (task, commands));
            return Some(port);
        }
        None
    }

    async fn bind_call_ports(&self, port: u16) -> Option<media_task::CallSockets> {
        let bind = |p: u16| UdpSocket::bind(SocketAddr::new(self.rtp_bind, p));
        Some(media_task::CallSockets {
            audio: bind(port).await.ok()?,
            video: bind(port + 2).await.ok()?,
            video_rtcp: bind(port + 3).await.ok()?,
        })
    }

    fn tell_media(&self, call: CallId, command: MediaCommand) {
        if let Some((_, commands)) = self.rtp.get(&call)
            && commands.try_send(command).is_err()
        {
            tracing::warn!(
                call,
                "call's media task is gone or busy; media command dropped"
            );
        }
    }

    async fn event(&mut self, e: Event) {
        if let Some(s) = &mut self.status
            && !matches!(e, Event::Dtmf { .. } | Event::KeyframeRequested { .. })
        {
            s.dirty = true;
        }
        match e {
            Event::Incoming {
                call,
                dial,
                caller,
                source,
            } => match dial {
                Dial::Meeting(id) => {
                    let door = self.door.clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let result = ask(door.as_ref(), &id, &caller, source).await;
                        let _ = tx.send(Input::Admission { call, result }).await;
                    });
                }
                Dial::Ivr => self.answer(call, None).await,
                Dial::Unknown => {
                    self.core
                        .refuse_admission(Instant::now(), call, &Refused::UnknownMeeting)
                }
            },
            Event::IvrEntered {
                call,
                meeting_id,
                caller,
                source,
            } => {
                let door = self.door.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = ask(door.as_ref(), &meeting_id, &caller, source).await;
                    let _ = tx.send(Input::IvrAdmission { call, result }).await;
                });
            }
            Event::Joined { call, grant, media } => {
                tracing::info!(
                    call,
                    meeting = %grant.meeting,
                    attendee = %grant.attendee,
                    name = %grant.name,
                    codec = media.codec.name(),
                    video = media.video.is_some(),
                    srtp = media.srtp.is_some(),
                    "SIP caller admitted"
                );
                let port = self.door.arrived(&grant, &CallMedia::of(&media));
                self.present.insert(call, grant);
                self.tell_media(call, MediaCommand::Join { media, port });
            }
            Event::Ended { call, .. } => {
                if let Some((task, _)) = self.rtp.remove(&call) {
                    task.abort();
                }
                if let Some(grant) = self.present.remove(&call) {
                    self.door.departed(&grant);
                }
            }
            Event::MediaChanged { call, media } => {
                tracing::debug!(call, direction = ?media.direction, "SIP call media changed");
                self.tell_media(call, MediaCommand::Update { media });
            }
            Event::Dtmf { call, digit } => tracing::debug!(call, %digit, "DTMF"),
            Event::KeyframeRequested { call } => {
                tracing::debug!(call, "keyframe requested by SIP INFO");
                self.tell_media(call, MediaCommand::DeviceWantsKeyframe);
            }
            Event::Prompt { call, prompt } => match self.core.media_of(call) {
                Some(media) => {
                    let media = media.clone();
                    self.tell_media(call, MediaCommand::Prompt { media, prompt });
                }
                None => tracing::debug!(call, %prompt, "prompt for a call without agreed audio"),
            },
        }
    }
}
