//! The media plane as the rest of the server sees it: start the shards, place meetings, send commands.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use convene_core::port::{AttendeePort, PORT_DELIVERY_QUEUE, PortMedia, PortPublication, PortSink};
use convene_core::{AttendeeId, ClientType, EventBus, MediaSource, MeetingId};
use dashmap::DashMap;
use mio::{Poll, Waker};

use crate::metrics::MediaMetrics;
use crate::rtcp_steering;
use crate::send_delay::SendDelays;
use crate::shard::{Command, PortLink, Shard, ShardConfig};
use crate::udp::{RecvBatch, SendBatch};
use crate::worker::{RtcpSocket, WAKER, Worker, register};

/// How the media plane listens.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address the UDP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address put in ICE candidates (what clients send to).
    pub public_ip: IpAddr,
    /// Inclusive UDP port range; each worker takes the first free port from it.
    pub port_range: (u16, u16),
    /// Number of media worker threads (shards).
    pub workers: usize,
    /// Subscribers' media goes out on the fast path (`shard::ShardConfig::fast_path`).
    pub fast_path: bool,
    /// Run each media worker thread under `SCHED_FIFO` at this priority (1-99), so nothing of ordinary
    /// priority on the machine can preempt it while media waits; `None`: ordinary scheduling.
    pub realtime_priority: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media port range {lo}-{hi} is empty")]
    EmptyPortRange { lo: u16, hi: u16 },
    #[error("no free UDP port in {lo}-{hi} on {ip} for media worker {worker}")]
    NoFreePort {
        lo: u16,
        hi: u16,
        ip: IpAddr,
        worker: usize,
    },
    #[error("media worker setup failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a meeting lives and how many signaling sessions refer to it.
struct Placement {
    shard: usize,
    sessions: usize,
}

struct ShardHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    addr: SocketAddr,
    load: Arc<AtomicUsize>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The running media plane.
pub struct MediaPlane {
    shards: Vec<ShardHandle>,
    /// Flips to true when shutdown begins, so front ends can close connections that never joined.
    closing: tokio::sync::watch::Sender<bool>,
    placement: DashMap<MeetingId, Placement>,
    /// Attendee ids with a live signaling session: a join token admits one connection at a time.
    attendees: dashmap::DashSet<AttendeeId>,
    metrics: MediaMetrics,
}

impl MediaPlane {
    /// Bind one UDP port per worker (two sockets: [`rtcp_steering`]) and start the worker threads.
    pub fn start(
        config: &MediaConfig,
        bus: Arc<dyn EventBus>,
        metrics: MediaMetrics,
    ) -> Result<Self, MediaError> {
        let (lo, hi) = config.port_range;
        if lo > hi || lo == 0 {
            return Err(MediaError::EmptyPortRange { lo, hi });
        }
        let mut shards = Vec::with_capacity(config.workers.max(1));
        let mut next_port = lo;
        for index in 0..config.workers.max(1) {
            let (steered, port) = loop {
                if next_port > hi || next_port == 0 {
                    return Err(MediaError::NoFreePort {
                        lo,
                        hi,
                        ip: config.bind_ip,
                        worker: index,
                    });
                }
                let port = next_port;
                next_port = next_port.wrapping_add(1);
                if let Ok(s) = rtcp_steering::bind(SocketAddr::new(config.bind_ip, port)) {
                    break (s, port);
                }
            };
            let std_socket = steered.media;
            prepare(&std_socket, index)?;
            let segmenting =
                crate::udp::supports_segmentation(std::os::fd::AsRawFd::as_raw_fd(&std_socket));
            if !segmenting {
                tracing::info!(
                    worker = index,
                    "no UDP segmentation (GSO) here: one datagram per send"
                );
            }
            let mut socket = mio::net::UdpSocket::from_std(std_socket);
            let poll = Poll::new()?;
            register(&poll, &mut socket)?;
            // Without its RTCP socket the port still works: the kernel then hashes RTCP onto the
            // media socket (the group's only member once this one is dropped).
            let rtcp = steered.rtcp.and_then(|s| {
                prepare(&s, index)
                    .and_then(|()| RtcpSocket::new(&poll, mio::net::UdpSocket::from_std(s)))
                    .map_err(|e| {
                        tracing::warn!(port, error = %e, "RTCP socket unusable; RTCP wakes the worker")
                    })
                    .ok()
            });
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let addr = SocketAddr::new(config.public_ip, port);
            let (tx, rx) = channel();
            let load = Arc::new(AtomicUsize::new(0));
            let shard_metrics = metrics.shard(index);
            let shard = Shard::new(
                ShardConfig {
                    fast_path: config.fast_path,
                    ..ShardConfig::new(index, addr)
                },
                bus.clone(),
                shard_metrics.clone(),
                Instant::now(),
            );
            let worker = Worker {
                shard,
                socket,
                rtcp,
                poll,
                commands: rx,
                load: load.clone(),
                metrics: shard_metrics,
                recv: RecvBatch::new(),
                send: SendBatch::new(),
                outgoing: Vec::with_capacity(crate::udp::BATCH),
                delays: SendDelays::with_capacity(crate::gso::MAX_HELD),
                plan: crate::gso::SegmentPlan::with_capacity(crate::gso::MAX_HELD),
                segmenting: crate::gso::Segmenting::new(segmenting),
            };
            let realtime = config.realtime_priority;
            let thread = std::thread::Builder::new()
                .name(format!("media-{index}"))
                .spawn(move || {
                    if let Some(priority) = realtime {
                        run_realtime(index, priority);
                    }
                    worker.run()
                })?;
            shards.push(ShardHandle {
                commands: tx,
                waker,
                addr,
                load,
                thread: std::sync::Mutex::new(Some(thread)),
            });
        }
        Ok(Self {
            shards,
            closing: tokio::sync::watch::channel(false).0,
            placement: DashMap::new(),
            attendees: dashmap::DashSet::new(),
            metrics,
        })
    }

    /// The shard a meeting lives on, placing it on the least loaded shard if it is new. Each call holds
    /// the placement until the matching [`MediaPlane::release`]: a meeting keeps its shard while any
    /// session refers to it, so two attendees can never end up in "the same" meeting on two shards.
    pub fn shard_for(&self, meeting: &MeetingId) -> usize {
        let mut entry = self
            .placement
            .entry(meeting.clone())
            .or_insert_with(|| Placement {
                shard: self
                    .shards
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.load.load(Ordering::Relaxed))
                    .map(|(i, _)| i)
                    .unwrap_or(0),
                sessions: 0,
            });
        entry.sessions += 1;
        entry.shard
    }

    /// The shard a placed meeting lives on, without placing it or holding the placement.
    pub fn placed_shard(&self, meeting: &MeetingId) -> Option<usize> {
        self.placement.get(meeting).map(|p| p.shard)
    }

    /// A session that called [`MediaPlane::shard_for`] is done with the meeting.
    pub fn release(&self, meeting: &MeetingId) {
        if let Some(mut entry) = self.placement.get_mut(meeting) {
            entry.sessions = entry.sessions.saturating_sub(1);
        }
        self.placement.remove_if(meeting, |_, p| p.sessions == 0);
    }

    /// Reserve an attendee id for one session; false if another session holds it (a reused token).
    pub fn claim_attendee(&self, attendee: AttendeeId) -> bool {
        self.attendees.insert(attendee)
    }

    /// Whether a session holds `attendee`.
    pub fn holds_attendee(&self, attendee: AttendeeId) -> bool {
        self.attendees.contains(&attendee)
    }

    /// The session holding `attendee` has ended.
    pub fn release_attendee(&self, attendee: AttendeeId) {
        self.attendees.remove(&attendee);
    }

    /// Queue a command for a shard and wake it. False if the shard is gone (shutting down).
    pub fn send(&self, shard: usize, command: Command) -> bool {
        let Some(handle) = self.shards.get(shard) else {
            return false;
        };
        let ok = handle.commands.send(command).is_ok();
        let _ = handle.waker.wake();
        ok
    }

    /// `attendee` joins `meeting` through an attendee port (a call the gateway bridges): it publishes
    /// `publishes` in the port's formats and receives its meeting's media into the returned port. The
    /// port holds the meeting's placement and the attendee id until [`MediaPlane::close_port`]. None if
    /// the id is already in use or the shard is gone.
    pub fn open_port(&self, joining: PortJoin) -> Option<AttendeePort> {
        if !self.claim_attendee(joining.attendee) {
            tracing::warn!(attendee = %joining.attendee, "port attendee's id already in use");
            return None;
        }
        let shard = self.shard_for(&joining.meeting);
        let (deliveries_tx, deliveries) = tokio::sync::mpsc::channel(PORT_DELIVERY_QUEUE);
        let join = Command::JoinPort {
            attendee: joining.attendee,
            meeting: joining.meeting.clone(),
            name: joining.name,
            client: joining.client,
            publishes: joining.publishes,
            port: PortLink {
                deliveries: deliveries_tx,
                takes_video: joining.takes_video,
                downlink_kbps: joining.downlink_kbps,
            },
        };
        let handle = &self.shards[shard];
        if !self.send(shard, join) {
            self.release(&joining.meeting);
            self.release_attendee(joining.attendee);
            return None;
        }
        Some(AttendeePort {
            sink: Box::new(ShardPortSink {
                attendee: joining.attendee,
                commands: handle.commands.clone(),
                waker: Arc::clone(&handle.waker),
            }),
            deliveries,
        })
    }

    /// The port attendee leaves its meeting (the call ended); undoes [`MediaPlane::open_port`].
    pub fn close_port(&self, meeting: &MeetingId, attendee: AttendeeId) {
        if !self.holds_attendee(attendee) {
            return; // never opened
        }
        if let Some(shard) = self.placed_shard(meeting) {
            self.send(shard, Command::Leave { attendee });
        }
        self.release(meeting);
        self.release_attendee(attendee);
    }

    /// The candidate address of each shard (public IP and port).
    pub fn shard_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.addr).collect()
    }

    pub fn metrics(&self) -> &MediaMetrics {
        &self.metrics
    }

    /// Tell every attendee the server is going away, then stop the workers.
    /// A receiver that turns true when shutdown begins.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Blocks until the workers have stopped; calling it again does nothing.
    pub fn shutdown(&self) {
        self.closing.send_replace(true);
        for index in 0..self.shards.len() {
            self.send(index, Command::Shutdown);
        }
        for shard in &self.shards {
            let thread = shard.thread.lock().map(|mut t| t.take()).unwrap_or(None);
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

/// Who joins through an attendee port.
#[derive(Debug, Clone)]
pub struct PortJoin {
    pub meeting: MeetingId,
    pub attendee: AttendeeId,
    pub name: String,
    pub client: ClientType,
    /// Its publications, open from the start (a call's audio is always on).
    pub publishes: Vec<PortPublication>,
    /// It receives cameras and screens too; otherwise audio only.
    pub takes_video: bool,
    /// The most it can receive (kbps): the bandwidth allocation chooses its layers within it, as for
    /// a browser's "low bandwidth" cap. None: the best layers arriving.
    pub downlink_kbps: Option<u32>,
}

/// The media a port attendee sends goes to its meeting's shard as commands, waking the worker.
struct ShardPortSink {
    attendee: AttendeeId,
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl PortSink for ShardPortSink {
    fn send(&self, media: PortMedia) -> bool {
        let ok = self
            .commands
            .send(Command::PortMedia {
                attendee: self.attendee,
                media,
            })
            .is_ok();
        let _ = self.waker.wake();
        ok
    }

    fn request_keyframe(&self, from: AttendeeId, source: MediaSource) -> bool {
        let ok = self
            .commands
            .send(Command::PortKeyframeRequest { from, source })
            .is_ok();
        let _ = self.waker.wake();
        ok
    }
}

impl Drop for MediaPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What each media socket asks for as receive and send buffer.
///
/// A worker shares the machine's cores with everything else; descheduled for a few milliseconds it must
/// not lose what arrives meanwhile. Linux's default receive buffer (`net.core.rmem_default`, 208 KiB)
/// holds about a hundred full-size datagrams: 2.5 ms at 40 000 packets a second, where the benchmark's
/// 200 calls saw the socket drop datagrams (bench/results/2026-12-06-notes.md). The kernel caps the
/// request at `net.core.rmem_max`/`wmem_max`.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Puts the calling thread (a media worker) under `SCHED_FIFO` at `priority`. Measured on a machine the
/// load generator shared: at half of the capacity each worker was preempted ~180 times a second, and the
/// wait for its core was most of the latency it added (p99 4.8 -> 0.5 ms in scenario (b) under
/// `SCHED_FIFO`; `bench/results/2026-12-06-notes.md`). A worker sleeps whenever it has nothing to do, and
/// the kernel keeps 5 % of each second for ordinary threads even then. Refused without `CAP_SYS_NICE`
/// or an `RLIMIT_RTPRIO` of at least `priority` (systemd: `LimitRTPRIO=`): the worker then runs as it
/// would have, and says so. With a worker per core, overloaded workers can hold every core and leave
/// ordinary threads (signaling, HTTP) only that 5 %: the option's docs suggest fewer workers then.
fn run_realtime(worker: usize, priority: u8) {
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority),
    };
    // SAFETY: pid 0 is the calling thread; `param` is a live, initialised sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) };
    if rc == 0 {
        tracing::info!(worker, priority, "media worker runs under SCHED_FIFO");
    } else {
        tracing::warn!(
            worker,
            priority,
            error = %std::io::Error::last_os_error(),
            "media worker keeps ordinary scheduling: SCHED_FIFO needs CAP_SYS_NICE or LimitRTPRIO"
        );
    }
}

/// Readies one of a worker's sockets: non-blocking, buffers sized ([`size_buffers`]), and arrivals
/// dated by the kernel for `convene_media_send_delay_seconds` (without that the media flows the same
/// and the histogram stays empty).
fn prepare(socket: &std::net::UdpSocket, worker: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    socket.set_nonblocking(true)?;
    size_buffers(socket, worker);
    if let Err(e) = crate::udp::enable_arrival_times(socket.as_raw_fd()) {
        tracing::warn!(worker, error = %e, "no arrival times on the media socket: send delays not measured");
    }
    Ok(())
}

/// Asks for [`SOCKET_BUFFER_BYTES`] each way and says what the kernel granted; a cap below it is worth
/// an operator's sysctl, not a failure.
fn size_buffers(socket: &std::net::UdpSocket, worker: usize) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(worker, error = %e, "could not size the media socket's receive buffer");
    }
    if let Err(e) = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(worker, error = %e, "could not size the media socket's send buffer");
    }
    // Linux reports twice what it granted (the doubled value covers its bookkeeping).
    let granted = |size: std::io::Result<usize>| size.map(|s| s / 2).unwrap_or(0);
    let (recv, send) = (
        granted(sock.recv_buffer_size()),
        granted(sock.send_buffer_size()),
    );
    if recv < SOCKET_BUFFER_BYTES || send < SOCKET_BUFFER_BYTES {
        tracing::warn!(
            worker,
            recv_bytes = recv,
            send_bytes = send,
            wanted_bytes = SOCKET_BUFFER_BYTES,
            "media socket buffers smaller than wanted: raise net.core.rmem_max and net.core.wmem_max"
        );
    } else {
        tracing::debug!(
            worker,
            recv_bytes = recv,
            send_bytes = send,
            "media socket buffers"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convene_core::InProcessBus;

    fn start(realtime_priority: Option<u8>) -> MediaPlane {
        let config = MediaConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            public_ip: "127.0.0.1".parse().unwrap(),
            port_range: (40100, 40999),
            workers: 2,
            fast_path: false,
            realtime_priority,
        };
        let metrics = MediaMetrics::register(&prometheus::Registry::new()).unwrap();
        MediaPlane::start(&config, Arc::new(InProcessBus::default()), metrics).unwrap()
    }

    fn plane() -> MediaPlane {
        start(None)
    }

    /// Held by every test that starts a plane: their `media-*` threads would mix in /proc.
    static PLANES: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_plane_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        PLANES.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scheduling policy of every `media-*` thread of this process (from /proc).
    fn media_thread_policies() -> Vec<u64> {
        let mut policies = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("media-") {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised name; `policy` is field 41 of proc(5), the 39th after it.
            let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
            if let Some(policy) = after.split(' ').nth(38).and_then(|p| p.parse().ok()) {
                policies.push(policy);
            }
        }
        policies
    }

    /// With a realtime priority, the workers run under SCHED_FIFO where the process may (root or
    /// CAP_SYS_NICE, as this test checks for itself); where it may not, they start all the same.
    #[test]
    fn workers_take_the_realtime_priority_they_are_given() {
        let _one = one_plane_at_a_time();
        // The workers ask for priority 3: may this process give it?
        let param = libc::sched_param { sched_priority: 3 };
        // SAFETY: pid 0 is this thread; it goes back to SCHED_OTHER right after.
        let permitted =
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) } == 0;
        if permitted {
            let normal = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &raw const normal) };
        }
        if !permitted {
            eprintln!("SCHED_FIFO 3 not permitted here: checking only that the workers start");
        }
        let plane = start(Some(3));
        // The workers set it as they start.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let want = if permitted {
            libc::SCHED_FIFO
        } else {
            libc::SCHED_OTHER
        } as u64;
        let mut policies = media_thread_policies();
        while (policies.len() < 2 || policies.iter().any(|&p| p != want))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            policies = media_thread_policies();
        }
        assert!(policies.len() >= 2, "{policies:?}");
        assert!(
            policies.iter().all(|&p| p == want),
            "{policies:?}, want {want}"
        );
        assert_eq!(plane.shard_addrs().len(), 2);
        plane.shutdown();
    }

    #[test]
    fn a_meeting_keeps_its_shard_while_any_session_holds_it() {
        let _one = one_plane_at_a_time();
        let plane = plane();
        let m: MeetingId = "m".parse().unwrap();
        let first = plane.shard_for(&m);
        for _ in 0..5 {
            assert_eq!(plane.shard_for(&m), first);
        }
        for _ in 0..5 {
            plane.release(&m);
            assert!(
                plane.placement.contains_key(&m),
                "released while a session still holds it"
            );
        }
        plane.release(&m);
        assert!(!plane.placement.contains_key(&m));
        // Releasing more than was taken is harmless.
        plane.release(&m);
        assert_eq!(plane.shard_addrs().len(), 2);
        plane.shutdown();
        // Stopped workers take no more commands.
        assert!(!plane.send(0, Command::Shutdown));
    }
}
