//! The IO around a shard: one thread, one UDP socket, a command channel.
//!
//! The thread sleeps in `mio` until a datagram arrives, a command is queued (the sender wakes it) or the
//! shard's next deadline passes; then it feeds the shard a batch of datagrams, runs what is due (which
//! also ends the batch: one str0m timeout pass per connection the datagrams wrote to) and sends what the
//! shard wants sent. Both directions are batched system calls ([`crate::udp`]).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::metrics::ShardMetrics;
use crate::shard::{Command, Shard};
use crate::udp::{self, RecvBatch, SendBatch};
use str0m::net::Transmit;

pub(crate) const SOCKET: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);

/// Receive calls (of up to [`udp::BATCH`] datagrams each) per wake-up before commands and timers get
/// their turn.
const RECV_CALLS: usize = 8;

pub(crate) struct Worker {
    pub shard: Shard,
    pub socket: UdpSocket,
    pub poll: Poll,
    pub commands: Receiver<Command>,
    pub load: Arc<AtomicUsize>,
    pub metrics: ShardMetrics,
    pub recv: RecvBatch,
    pub send: SendBatch,
    /// Transmits taken from the shard for the next `sendmmsg` (capacity [`udp::BATCH`], reused).
    pub outgoing: Vec<Transmit>,
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
            let timeout = if socket_pending {
                Duration::ZERO
            } else {
                self.shard
                    .poll_timeout()
                    .saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(shard = index, error = %e, "poll failed; worker stops");
                return;
            }
            let started = Instant::now();

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
            socket_pending = true;
            let mut received = 0;
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
                            if let Some((source, datagram)) = self.recv.get(i) {
                                // Each datagram's own instant, as before batching: it dates the
                                // arrivals that transport-wide feedback reports to publishers.
                                self.shard
                                    .handle_datagram(Instant::now(), source, local, datagram);
                            }
                        }
                        for _ in 0..self.recv.truncated() {
                            self.metrics.dropped("oversized");
                        }
                        // A short batch emptied the queue: a datagram arriving later signals anew.
                        if n < udp::BATCH {
                            socket_pending = false;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        socket_pending = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // ICMP errors (port unreachable) surface here on Linux; they concern one peer.
                        tracing::debug!(shard = index, error = %e, "recv error");
                        continue;
                    }
                }
            }

            if received > 0 {
                self.metrics.wakeups_datagrams.inc();
            } else {
                self.metrics.wakeups_timer.inc();
            }

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

    fn flush(&mut self) {
        let fd = self.socket.as_raw_fd();
        // The fast path's datagrams, straight from their buffers.
        let (queue, bufs) = self.shard.fast_outbox().parts();
        if !queue.is_empty() {
            let metrics = &self.metrics;
            self.send.send(
                fd,
                queue,
                |&(destination, len, slot)| (destination, &bufs[slot][..len]),
                |&(destination, _, _), e| {
                    tracing::debug!(error = %e, %destination, "send failed");
                    metrics.dropped("send_failed");
                },
            );
            self.shard.clear_fast_outbox();
        }
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
}

pub(crate) fn register(poll: &Poll, socket: &mut UdpSocket) -> std::io::Result<()> {
    poll.registry().register(socket, SOCKET, Interest::READABLE)
}
