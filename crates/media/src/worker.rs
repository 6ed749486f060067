//! The IO around a shard: one thread, one UDP port, a command channel.
//!
//! The thread sleeps in `mio` until a datagram arrives, a command is queued (the sender wakes it) or the
//! shard's next deadline passes; then it feeds the shard a batch of datagrams, runs what is due (which
//! also ends the batch: one str0m timeout pass per connection the datagrams wrote to) and sends what the
//! shard wants sent. Both directions are batched system calls ([`crate::udp`]).
//!
//! The port's RTCP arrives on a socket of its own where the kernel can steer it there
//! ([`crate::rtcp_steering`]); it is read on the wake-ups media and timers cause anyway, and wakes the
//! worker by itself only after a quiet spell ([`RtcpSocket`]).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::gso::{SegmentPlan, Segmenting};
use crate::metrics::ShardMetrics;
use crate::send_delay::SendDelays;
use crate::shard::{Command, Shard};
use crate::udp::{self, RecvBatch, SendBatch};
use str0m::net::Transmit;

pub(crate) const SOCKET: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);
pub(crate) const RTCP: Token = Token(2);

/// Receive calls (of up to [`udp::BATCH`] datagrams each) per socket per wake-up before commands and
/// timers get their turn.
const RECV_CALLS: usize = 8;

pub(crate) struct Worker {
    pub shard: Shard,
    pub socket: UdpSocket,
    /// Where the port's RTCP arrives, when the kernel steers it apart ([`crate::rtcp_steering`]).
    pub rtcp: Option<RtcpSocket>,
    pub poll: Poll,
    pub commands: Receiver<Command>,
    pub load: Arc<AtomicUsize>,
    pub metrics: ShardMetrics,
    pub recv: RecvBatch,
    pub send: SendBatch,
    /// Transmits taken from the shard for the next `sendmmsg` (capacity [`udp::BATCH`], reused).
    pub outgoing: Vec<Transmit>,
    /// What each received datagram queued in the fast outbox, to date its sends. Each entry holds at
    /// least one datagram and the outbox is sent once it holds [`crate::gso::MAX_HELD`]: that many entries at most.
    pub delays: SendDelays,
    /// How the fast outbox goes out: a subscriber's copies of a frame in one segmented send.
    pub plan: SegmentPlan,
    /// Whether the kernel segments sends on this socket now ([`udp::supports_segmentation`]; off for a
    /// while after it refused).
    pub segmenting: Segmenting,
}

impl Worker {
    pub fn run(mut self) {
        let index = self.shard.config().index;
        let local: SocketAddr = self.shard.config().candidate_addr;
        let mut events = Events::with_capacity(16);
        let fd = self.socket.as_raw_fd();
        let mut busy = Duration::ZERO;
        let mut window_start = Instant::now();
        tracing::info!(shard = index, %local, "media worker started");
        // mio is edge-triggered: after a capped batch the socket may still hold datagrams without
        // signalling again, so the next wait must not sleep.
        let mut socket_pending = false;
        loop {
            let rtcp_pending = self.rtcp.as_ref().is_some_and(|r| r.pending);
            let timeout = if socket_pending || rtcp_pending {
                Duration::ZERO
            } else {
                let rtcp_due = self.rtcp.as_ref().and_then(|r| r.due);
                let deadline = self.shard.poll_timeout();
                rtcp_due
                    .map_or(deadline, |due| deadline.min(due))
                    .saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(shard = index, error = %e, "poll failed; worker stops");
                return;
            }
            let started = Instant::now();
            let rtcp_signalled = events.iter().any(|e| e.token() == RTCP);

            loop {
                match self.commands.try_recv() {
                    Ok(Command::Shutdown) => {
                        self.shard.handle_command(Instant::now(), Command::Shutdown);
                        self.flush();
                        self.metrics.flush();
                        tracing::info!(shard = index, "media worker stopped");
                        return;
                    }
                    Ok(command) => self.shard.handle_command(Instant::now(), command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }

            // At most a batch per wake-up, so commands, timers and shutdown are never starved.
            let (mut received, pending) = self.receive(fd, local);
            socket_pending = pending;
            // Media's last copies go before the RTCP read: a few hundred reports a worker reads
            // at once take a millisecond.
            self.flush_fast();
            let rtcp_fd = self.rtcp.as_ref().filter(|r| r.wants_read(rtcp_signalled));
            if let Some(rtcp_fd) = rtcp_fd.map(|r| r.socket.as_raw_fd()) {
                let (n, pending) = self.receive(rtcp_fd, local);
                received += n;
                if let Some(rtcp) = self.rtcp.as_mut() {
                    rtcp.after_read(&self.poll, Instant::now(), rtcp_signalled, n, pending);
                }
            }

            if received > 0 {
                self.metrics.wakeups_datagrams.inc();
            } else {
                self.metrics.wakeups_timer.inc();
            }

            // The copies the datagrams made go out before the timers' work, which can take
            // milliseconds (a tick visits every connection).
            self.flush_fast();
            // Ends the batch too: each connection written to gets one str0m timeout pass, and one that
            // is also due gets only that one (a separate `end_batch` first would give it two).
            self.shard.handle_timeout(Instant::now());
            self.flush();
            // Placement is released by the signaling sessions (`MediaPlane::release`).
            while let Some(meeting) = self.shard.poll_ended_meeting() {
                tracing::info!(shard = index, %meeting, "meeting ended");
            }
            self.load
                .store(self.shard.attendee_count(), Ordering::Relaxed);

            busy += started.elapsed();
            let window = window_start.elapsed();
            if window >= Duration::from_secs(1) {
                // The worker counts its own send failures on its clone of the shard's handles.
                self.metrics.flush();
                self.metrics
                    .busy
                    .set(busy.as_secs_f64() / window.as_secs_f64());
                busy = Duration::ZERO;
                window_start = Instant::now();
            }
        }
    }

    /// Up to [`RECV_CALLS`] batches from socket `fd` into the shard: how many datagrams, and whether
    /// the last batch was full (the socket may hold more without signalling again).
    fn receive(&mut self, fd: RawFd, local: SocketAddr) -> (usize, bool) {
        let mut received = 0;
        let segmenting = self.segmenting.on(Instant::now());
        for _ in 0..RECV_CALLS {
            match self.recv.recv(fd, false) {
                Ok(n) => {
                    received += n;
                    if n > 1 {
                        for i in 0..n {
                            if let Some((source, datagram)) = self.recv.get(i) {
                                self.shard.prefetch_datagram(source, datagram);
                            }
                        }
                    }
                    for i in 0..n {
                        let Some((source, datagram)) = self.recv.get(i) else {
                            continue;
                        };
                        let queued = self.shard.fast_outbox().len();
                        // Each datagram's own instant, as before batching: it dates the
                        // arrivals that transport-wide feedback reports to publishers.
                        self.shard
                            .handle_datagram(Instant::now(), source, local, datagram);
                        let queued = queued..self.shard.fast_outbox().len();
                        self.delays.caused(queued, self.recv.arrived(i));
                        // Sent once a batch is ready, after the fan-out of the datagram that
                        // filled it: a copy waits for its own packet's fan-out, not for the whole
                        // wake-up's (32 packets received in (a) are 3 200 copies), and the outbox's
                        // buffers stay few enough to stay in cache. Where the kernel segments, a
                        // run of packets from one source (a frame's) is fanned out whole first, so
                        // each subscriber's copies of it leave in one send.
                        let held = self.shard.fast_outbox().len();
                        let run_goes_on = segmenting
                            && held < crate::gso::MAX_HELD
                            && self.recv.get(i + 1).is_some_and(|(next, _)| next == source);
                        if held >= udp::BATCH && !run_goes_on {
                            self.flush_fast();
                        }
                    }
                    for _ in 0..self.recv.truncated() {
                        self.metrics.dropped("oversized");
                    }
                    // A short batch emptied the queue: a datagram arriving later signals anew.
                    if n < udp::BATCH {
                        return (received, false);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return (received, false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on Linux; they concern one peer.
                    tracing::debug!(shard = self.shard.config().index, error = %e, "recv error");
                    continue;
                }
            }
        }
        (received, true)
    }

    /// Sends everything the shard wants sent: the fast path's datagrams, then str0m's.
    fn flush(&mut self) {
        self.flush_fast();
        let fd = self.socket.as_raw_fd();
        loop {
            self.outgoing.clear();
            while self.outgoing.len() < udp::BATCH {
                match self.shard.poll_transmit() {
                    Some(t) => self.outgoing.push(t),
                    None => break,
                }
            }
            if self.outgoing.is_empty() {
                return;
            }
            let metrics = &self.metrics;
            self.send.send(
                fd,
                &self.outgoing,
                |t| (t.destination, &t.contents[..]),
                |t, e| {
                    tracing::debug!(error = %e, destination = %t.destination, "send failed");
                    metrics.dropped("send_failed");
                },
            );
        }
    }

    /// Sends the fast path's datagrams, straight from their buffers: grouped by destination into
    /// segmented sends where the kernel cuts them ([`crate::gso`]), up to [`udp::BATCH`] messages per
    /// `sendmmsg`; each datagram is dated when the call that carried it returns.
    fn flush_fast(&mut self) {
        let (queue, bufs) = self.shard.fast_outbox().parts();
        if queue.is_empty() {
            return;
        }
        let now = Instant::now();
        let planned_segmented = self.segmenting.on(now);
        // Cleared by `send_plan` if the kernel refuses segmenting (EIO).
        let mut segmenting = planned_segmented;
        self.plan
            .plan(queue.len(), |i| (queue[i].0, queue[i].1), segmenting);
        let metrics = &self.metrics;
        let plan = &self.plan;
        let delays = &self.delays;
        self.send.send_plan(
            self.socket.as_raw_fd(),
            plan,
            |i| {
                let (_, len, slot) = queue[i];
                &bufs[slot][..len]
            },
            &mut segmenting,
            |messages| {
                let now = udp::wall_clock();
                for m in messages {
                    if m.count > 1 {
                        metrics.segmented.inc_by(m.count as u64);
                    }
                    delays.sent(plan.datagrams(m), now, |delay| {
                        metrics.send_delay.observe(delay.as_secs_f64())
                    });
                }
            },
            |m, e| {
                tracing::debug!(error = %e, destination = %m.destination, "send failed");
                for _ in 0..m.count {
                    metrics.dropped("send_failed");
                }
            },
        );
        if planned_segmented && !segmenting {
            self.segmenting.refused(now);
        }
        self.delays.clear();
        self.shard.clear_fast_outbox();
    }
}

pub(crate) fn register(poll: &Poll, socket: &mut UdpSocket) -> std::io::Result<()> {
    poll.registry().register(socket, SOCKET, Interest::READABLE)
}

/// The RTCP socket of a steered media port ([`crate::rtcp_steering`]) and when it must be read.
///
/// It starts registered with the poll ("armed"): RTCP wakes the worker. RTCP that woke it switches
/// it to lazy reading: unregistered, read on every wake-up whatever its cause, and at the latest
/// [`RTCP_DELAY`] after the last read that found some. A read at that deadline that finds none arms
/// it again. With RTCP flowing (every subscriber's feedback every 50-100 ms) the worker so wakes for
/// it at most every [`RTCP_DELAY`], not per report.
pub(crate) struct RtcpSocket {
    socket: UdpSocket,
    armed: bool,
    /// While not armed: read it by then.
    due: Option<Instant>,
    /// The last read filled its batches: read again without sleeping.
    pending: bool,
}

/// How long RTCP may wait in its socket when nothing else wakes the worker: within what a NACK's
/// repair, a keyframe request or the estimator's reaction (to feedback sent every 50-100 ms) can
/// lose without anyone noticing.
const RTCP_DELAY: Duration = Duration::from_millis(10);

impl RtcpSocket {
    pub fn new(poll: &Poll, mut socket: UdpSocket) -> std::io::Result<Self> {
        poll.registry()
            .register(&mut socket, RTCP, Interest::READABLE)?;
        Ok(Self {
            socket,
            armed: true,
            due: None,
            pending: false,
        })
    }

    /// Whether this wake-up reads it: RTCP woke the worker, the last read left some, or it is lazy.
    fn wants_read(&self, signalled: bool) -> bool {
        signalled || self.pending || !self.armed
    }

    /// After a read that got `n` datagrams at `now` (`signalled`: the poll reported it readable;
    /// `pending`: the read filled its batches).
    fn after_read(&mut self, poll: &Poll, now: Instant, signalled: bool, n: usize, pending: bool) {
        self.pending = pending;
        if self.armed {
            if signalled {
                match poll.registry().deregister(&mut self.socket) {
                    Ok(()) => {
                        self.armed = false;
                        self.due = Some(now + RTCP_DELAY);
                    }
                    Err(e) => tracing::debug!(error = %e, "could not unregister the RTCP socket"),
                }
            }
            return;
        }
        if n > 0 || self.pending {
            self.due = Some(now + RTCP_DELAY);
        } else if self.due.is_none_or(|due| now >= due) {
            // Quiet for a while: let the next RTCP wake the worker again. A datagram that arrived
            // since the read makes the registration report it at once.
            match poll
                .registry()
                .register(&mut self.socket, RTCP, Interest::READABLE)
            {
                Ok(()) => {
                    self.armed = true;
                    self.due = None;
                }
                Err(e) => {
                    // Stay lazy and try again at the next deadline (a past one would spin the poll).
                    tracing::debug!(error = %e, "could not register the RTCP socket");
                    self.due = Some(now + RTCP_DELAY);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtcp_events(poll: &mut Poll, wait: Duration) -> usize {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(wait)).expect("poll");
        events.iter().filter(|e| e.token() == RTCP).count()
    }

    /// RTCP wakes the worker until it flows; then it is read on other wake-ups and at most
    /// [`RTCP_DELAY`] late, and after a quiet read past that it wakes the worker again.
    #[test]
    fn the_rtcp_socket_wakes_the_worker_only_after_a_quiet_spell() {
        let mut poll = Poll::new().expect("poll");
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        std_socket.set_nonblocking(true).expect("nonblocking");
        let addr = std_socket.local_addr().expect("addr");
        let mut rtcp = RtcpSocket::new(&poll, UdpSocket::from_std(std_socket)).expect("register");
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let report = [0x81, 205, 0, 1, 0, 0, 0, 1];
        let mut buf = [0u8; 64];

        // Armed: a report wakes the poll.
        peer.send_to(&report, addr).expect("send");
        assert_eq!(rtcp_events(&mut poll, Duration::from_secs(5)), 1);
        let t0 = Instant::now();
        assert!(rtcp.socket.recv_from(&mut buf).is_ok());
        rtcp.after_read(&poll, t0, true, 1, false);
        assert!(!rtcp.armed);
        assert_eq!(rtcp.due, Some(t0 + RTCP_DELAY));

        // Lazy: the next report waits in the socket without waking anyone.
        peer.send_to(&report, addr).expect("send");
        assert_eq!(rtcp_events(&mut poll, Duration::from_millis(100)), 0);
        // A read that finds it (on another wake-up) moves the deadline on.
        assert!(rtcp.socket.recv_from(&mut buf).is_ok());
        let t1 = t0 + Duration::from_millis(5);
        rtcp.after_read(&poll, t1, false, 1, false);
        assert_eq!(rtcp.due, Some(t1 + RTCP_DELAY));
        // An empty read before the deadline changes nothing; one at it arms the socket again.
        rtcp.after_read(&poll, t1 + RTCP_DELAY / 2, false, 0, false);
        assert!(!rtcp.armed);
        rtcp.after_read(&poll, t1 + RTCP_DELAY, false, 0, false);
        assert!(rtcp.armed);
        assert_eq!(rtcp.due, None);
        peer.send_to(&report, addr).expect("send");
        assert_eq!(rtcp_events(&mut poll, Duration::from_secs(5)), 1);
    }
}
