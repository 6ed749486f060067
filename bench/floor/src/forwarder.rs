//! The floor itself: receive SRTP, decrypt once, encrypt once per receiver, send.
//!
//! It does what any SFU must do per forwarded packet and nothing else: no ICE, no DTLS (keys are
//! pre-shared, see [`crate::keys`]), no RTCP, no header rewriting, no pacing. It receives and sends the
//! way Convene's media worker does (`recvmmsg`/`sendmmsg` of up to `udp::BATCH` datagrams, through the
//! same [`convene_media::udp`], a receiver's copies of a frame in one segmented send as planned by
//! [`convene_media::gso`]), so the comparison is like for like.
//!
//! Receivers subscribe with a small plain-text control datagram: `FLOORS` + SSRC (4 bytes, big endian)
//! + receiver id (4 bytes), sent from the address they want packets on.
//!
//! Per packet there is no heap allocation: the buffers are owned by the [`Floor`], streams and
//! receivers are created only by the first packet of an SSRC and by subscriptions.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use convene_media::gso::{MAX_HELD, SegmentPlan};
use convene_media::udp::{BATCH, RecvBatch, SendBatch};

use crate::keys;
use crate::srtp::{Profile, RocTracker, SrtpContext, SrtpError, TAG_LEN, ssrc_seq};

/// Marks a subscription datagram (its first byte can never start an RTP packet: version bits 01).
pub const SUBSCRIBE_MAGIC: &[u8; 6] = b"FLOORS";
/// A datagram of just these bytes asks the floor for its send delays ([`SendDelayCounts::to_bytes`]).
pub const STATS_MAGIC: &[u8; 6] = b"FLOORQ";

/// Upper bounds (seconds) of the floor's send-delay buckets: Convene's, so both are read alike.
pub use convene_media::metrics::SEND_DELAY_BUCKETS;
const DELAY_BUCKETS: usize = SEND_DELAY_BUCKETS.len() + 1;

/// How long the floor's copies waited since their packet arrived (the kernel's receive time to the
/// return of the send that carried them), counted per bucket as Convene's
/// `convene_media_send_delay_seconds`: the latency the floor adds, measured as Convene measures its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendDelayCounts([u64; DELAY_BUCKETS]);

impl Default for SendDelayCounts {
    fn default() -> Self {
        Self([0; DELAY_BUCKETS])
    }
}

impl SendDelayCounts {
    pub fn observe(&mut self, delay: Duration) {
        let secs = delay.as_secs_f64();
        let i = SEND_DELAY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(SEND_DELAY_BUCKETS.len());
        self.0[i] += 1;
    }

    /// The reply to a [`STATS_MAGIC`] query: each bucket's count, big-endian.
    pub fn to_bytes(&self) -> [u8; DELAY_BUCKETS * 8] {
        let mut out = [0u8; DELAY_BUCKETS * 8];
        for (chunk, count) in out.chunks_mut(8).zip(self.0) {
            chunk.copy_from_slice(&count.to_be_bytes());
        }
        out
    }

    /// Parses a reply into cumulative (upper bound, count) buckets, the last one `+Inf`, as a
    /// Prometheus histogram reads; `None` if it is not one.
    pub fn cumulative_from_bytes(bytes: &[u8]) -> Option<Vec<(f64, u64)>> {
        if bytes.len() != DELAY_BUCKETS * 8 {
            return None;
        }
        let mut total = 0u64;
        let bounds = SEND_DELAY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        Some(
            bytes
                .chunks(8)
                .zip(bounds)
                .map(|(chunk, le)| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    total += u64::from_be_bytes(b);
                    (le, total)
                })
                .collect(),
        )
    }
}
pub const SUBSCRIBE_LEN: usize = 14;
const MAX_DATAGRAM: usize = convene_media::udp::MAX_DATAGRAM;

/// Builds a subscription datagram.
pub fn subscribe_datagram(ssrc: u32, receiver: u32) -> [u8; SUBSCRIBE_LEN] {
    let mut d = [0u8; SUBSCRIBE_LEN];
    d[..6].copy_from_slice(SUBSCRIBE_MAGIC);
    d[6..10].copy_from_slice(&ssrc.to_be_bytes());
    d[10..14].copy_from_slice(&receiver.to_be_bytes());
    d
}

/// What the floor counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub send_errors: u64,
    pub send_delay: SendDelayCounts,
}

struct Receiver {
    addr: SocketAddr,
    tx: SrtpContext,
}

struct Stream {
    rx: SrtpContext,
    roc: RocTracker,
    receivers: Vec<Receiver>,
}

/// The stream of `ssrc`, created (with its pre-shared key) on first sight.
fn stream(
    streams: &mut HashMap<u32, Stream>,
    profile: Profile,
    ssrc: u32,
) -> Result<&mut Stream, SrtpError> {
    Ok(match streams.entry(ssrc) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => {
            let (key, salt) = keys::stream_key(profile, ssrc);
            v.insert(Stream {
                rx: SrtpContext::new(profile, &key[..profile.key_len()], salt)?,
                roc: RocTracker::default(),
                receivers: Vec::new(),
            })
        }
    })
}

/// A running forwarder on one UDP socket.
pub struct Floor {
    socket: UdpSocket,
    recv: RecvBatch,
    forwarding: Forwarding,
    pub counters: Counters,
}

/// Everything but the socket and the receive buffers, so a received datagram can be decrypted in place
/// while the rest is borrowed too.
struct Forwarding {
    profile: Profile,
    streams: HashMap<u32, Stream>,
    outgoing: Outgoing,
}

/// Encrypted copies waiting for the next `sendmmsg`: the first `pending` slots of `out`, and for each
/// its destination and length. As Convene's worker: sent once a batch is ready after a packet's
/// fan-out, unless the next packet continues the run (the same stream: a frame's packets), up to
/// [`MAX_HELD`]; grouped by destination into segmented sends where the kernel cuts them.
struct Outgoing {
    out: Vec<[u8; MAX_DATAGRAM]>,
    to: Vec<(SocketAddr, usize, usize)>,
    /// When the packet each queued copy was made from arrived (the kernel's time).
    arrived: Vec<Option<Duration>>,
    pending: usize,
    send: SendBatch,
    plan: SegmentPlan,
    segmenting: bool,
}

impl Floor {
    pub fn bind(addr: SocketAddr, profile: Profile) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        if let Err(e) = convene_media::udp::enable_arrival_times(socket.as_raw_fd()) {
            tracing::warn!(error = %e, "no arrival times: send delays not measured");
        }
        // Wake up now and then to notice a stop request.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let s = socket2::SockRef::from(&socket);
        // Best effort, capped by net.core.[rw]mem_max: bursts must not overflow the floor's buffers.
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        let segmenting = convene_media::udp::supports_segmentation(socket.as_raw_fd());
        Ok(Self {
            socket,
            recv: RecvBatch::new(),
            forwarding: Forwarding {
                profile,
                streams: HashMap::new(),
                outgoing: Outgoing {
                    out: vec![[0; MAX_DATAGRAM]; MAX_HELD],
                    to: vec![(SocketAddr::from(([0, 0, 0, 0], 0)), 0, 0); MAX_HELD],
                    arrived: vec![None; MAX_HELD],
                    pending: 0,
                    send: SendBatch::new(),
                    plan: SegmentPlan::with_capacity(MAX_HELD),
                    segmenting,
                },
            },
            counters: Counters::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits (at most the socket's 100 ms read timeout) for datagrams, handles what one `recvmmsg` took
    /// and sends what that produced; false when none came.
    pub fn poll_once(&mut self) -> std::io::Result<bool> {
        let fd = self.socket.as_raw_fd();
        let n = match self.recv.recv(fd, true) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(false);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(false),
            // ICMP port unreachable from a receiver that went away surfaces here on Linux.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(false),
            Err(e) => return Err(e),
        };
        self.counters.dropped += self.recv.truncated() as u64;
        for i in 0..n {
            let arrived = self.recv.arrived(i);
            if let Some((from, datagram)) = self.recv.get_mut(i) {
                if datagram[..] == STATS_MAGIC[..] {
                    let reply = self.counters.send_delay.to_bytes();
                    if let Err(e) = self.socket.send_to(&reply, from) {
                        tracing::debug!(error = %e, "stats reply not sent");
                    }
                    continue;
                }
                self.forwarding
                    .handle(fd, datagram, from, arrived, &mut self.counters);
            }
            // The run goes on while the next packet is the same stream's: the floor's streams are
            // its publishers (its driver sends them all from one socket, so the source address, which
            // Convene's worker goes by, would run across publishers here).
            let outgoing = &self.forwarding.outgoing;
            if outgoing.pending < BATCH {
                continue;
            }
            let ssrc_at = |i: usize| {
                self.recv
                    .get(i)
                    .and_then(|(_, d)| ssrc_seq(d))
                    .map(|(s, _)| s)
            };
            let this = ssrc_at(i);
            let run_goes_on = outgoing.segmenting && this.is_some() && this == ssrc_at(i + 1);
            if !run_goes_on {
                self.forwarding.outgoing.flush(fd, &mut self.counters);
            }
        }
        self.forwarding.outgoing.flush(fd, &mut self.counters);
        Ok(n > 0)
    }

    /// Forwards until `stop` is set.
    pub fn run(&mut self, stop: &Arc<AtomicBool>) -> std::io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.poll_once()?;
        }
        Ok(())
    }
}

impl Forwarding {
    /// Handles one received datagram (decrypted in place).
    fn handle(
        &mut self,
        fd: i32,
        datagram: &mut [u8],
        from: SocketAddr,
        arrived: Option<Duration>,
        counters: &mut Counters,
    ) {
        let len = datagram.len();
        if len == SUBSCRIBE_LEN && datagram[..6] == SUBSCRIBE_MAGIC[..] {
            let b = &datagram;
            let ssrc = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
            let receiver = u32::from_be_bytes([b[10], b[11], b[12], b[13]]);
            if let Err(e) = self.subscribe(ssrc, receiver, from) {
                tracing::warn!(error = %e, "subscription refused");
            }
            return;
        }
        counters.received += 1;
        let Some((ssrc, seq)) = ssrc_seq(datagram) else {
            counters.dropped += 1;
            return;
        };
        // Decrypt once...
        let Ok(stream) = stream(&mut self.streams, self.profile, ssrc) else {
            counters.dropped += 1;
            return;
        };
        let roc = stream.roc.roc_for(seq);
        let Ok(plain_len) = stream.rx.unprotect(datagram, roc) else {
            counters.dropped += 1;
            return;
        };
        // ...encrypt once per receiver, send in batches.
        for receiver in &stream.receivers {
            let Some(slot) = self.outgoing.slot(fd, counters) else {
                continue;
            };
            slot[..plain_len].copy_from_slice(&datagram[..plain_len]);
            match receiver
                .tx
                .protect(&mut slot[..plain_len + TAG_LEN], plain_len, roc)
            {
                Ok(n) => self.outgoing.commit(receiver.addr, n, arrived),
                Err(_) => counters.dropped += 1,
            }
        }
    }

    fn subscribe(&mut self, ssrc: u32, receiver: u32, addr: SocketAddr) -> Result<(), SrtpError> {
        let profile = self.profile;
        let stream = stream(&mut self.streams, profile, ssrc)?;
        if stream.receivers.iter().any(|r| r.addr == addr) {
            return Ok(());
        }
        let (key, salt) = keys::receiver_key(profile, receiver);
        stream.receivers.push(Receiver {
            addr,
            tx: SrtpContext::new(profile, &key[..profile.key_len()], salt)?,
        });
        Ok(())
    }
}

impl Outgoing {
    /// The next free buffer (sending the full batch first when there is none).
    fn slot(&mut self, fd: i32, counters: &mut Counters) -> Option<&mut [u8; MAX_DATAGRAM]> {
        if self.pending == MAX_HELD {
            self.flush(fd, counters);
        }
        self.out.get_mut(self.pending)
    }

    /// Queues the `len` bytes just written into the buffer [`slot`](Self::slot) gave, for `to`.
    fn commit(&mut self, to: SocketAddr, len: usize, arrived: Option<Duration>) {
        self.to[self.pending] = (to, len, self.pending);
        self.arrived[self.pending] = arrived;
        self.pending += 1;
    }

    /// Sends the encrypted copies waiting.
    fn flush(&mut self, fd: i32, counters: &mut Counters) {
        if self.pending == 0 {
            return;
        }
        let (out, to, arrived) = (&self.out, &self.to, &self.arrived);
        self.plan
            .plan(self.pending, |i| (to[i].0, to[i].1), self.segmenting);
        let plan = &self.plan;
        let mut failed = 0;
        self.send.send_plan(
            fd,
            plan,
            |i| {
                let (_, n, slot) = to[i];
                &out[slot][..n]
            },
            &mut self.segmenting,
            |messages| {
                let now = convene_media::udp::wall_clock();
                for m in messages {
                    counters.forwarded += m.count as u64;
                    for &i in plan.datagrams(m) {
                        if let Some(arrived) = arrived[i] {
                            let delay = convene_media::udp::delay_until_now(arrived, now);
                            counters.send_delay.observe(delay);
                        }
                    }
                }
            },
            |m, _| failed += m.count as u64,
        );
        counters.send_errors += failed;
        self.pending = 0;
    }
}
