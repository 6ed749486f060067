//! The floor itself: receive SRTP, decrypt once, encrypt once per receiver, send.
//!
//! It does what any SFU must do per forwarded packet and nothing else: no ICE, no DTLS (keys are
//! pre-shared, see [`crate::keys`]), no RTCP, no header rewriting, no pacing. It sends the way Convene's
//! media worker sends today (one `send_to` per datagram, no `sendmmsg`/GSO), so the comparison is like
//! for like; when Convene batches, the floor should too.
//!
//! Receivers subscribe with a small plain-text control datagram: `FLOORS` + SSRC (4 bytes, big endian)
//! + receiver id (4 bytes), sent from the address they want packets on.
//!
//! Per packet there is no heap allocation: the two buffers are owned by the [`Floor`], streams and
//! receivers are created only by the first packet of an SSRC and by subscriptions.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::keys;
use crate::srtp::{Profile, RocTracker, SrtpContext, SrtpError, TAG_LEN, ssrc_seq};

/// Marks a subscription datagram (its first byte can never start an RTP packet: version bits 01).
pub const SUBSCRIBE_MAGIC: &[u8; 6] = b"FLOORS";
pub const SUBSCRIBE_LEN: usize = 14;
const MAX_DATAGRAM: usize = 2048;

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

/// A running forwarder on one UDP socket.
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

pub struct Floor {
    socket: UdpSocket,
    profile: Profile,
    streams: HashMap<u32, Stream>,
    inbuf: Box<[u8; MAX_DATAGRAM]>,
    outbuf: Box<[u8; MAX_DATAGRAM]>,
    pub counters: Counters,
}

impl Floor {
    pub fn bind(addr: SocketAddr, profile: Profile) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        // Wake up now and then to notice a stop request.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let s = socket2::SockRef::from(&socket);
        // Best effort, capped by net.core.[rw]mem_max: bursts must not overflow the floor's buffers.
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        Ok(Self {
            socket,
            profile,
            streams: HashMap::new(),
            inbuf: Box::new([0; MAX_DATAGRAM]),
            outbuf: Box::new([0; MAX_DATAGRAM]),
            counters: Counters::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Handles the datagram of `len` bytes just received into the input buffer.
    fn handle(&mut self, len: usize, from: SocketAddr) {
        if len == SUBSCRIBE_LEN && self.inbuf[..6] == SUBSCRIBE_MAGIC[..] {
            let b = &self.inbuf;
            let ssrc = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
            let receiver = u32::from_be_bytes([b[10], b[11], b[12], b[13]]);
            if let Err(e) = self.subscribe(ssrc, receiver, from) {
                tracing::warn!(error = %e, "subscription refused");
            }
            return;
        }
        self.counters.received += 1;
        let Some((ssrc, seq)) = ssrc_seq(&self.inbuf[..len]) else {
            self.counters.dropped += 1;
            return;
        };
        // Decrypt once...
        let Ok(stream) = stream(&mut self.streams, self.profile, ssrc) else {
            self.counters.dropped += 1;
            return;
        };
        let roc = stream.roc.roc_for(seq);
        let Ok(plain_len) = stream.rx.unprotect(&mut self.inbuf[..len], roc) else {
            self.counters.dropped += 1;
            return;
        };
        // ...encrypt once per receiver, send each.
        for r in &stream.receivers {
            self.outbuf[..plain_len].copy_from_slice(&self.inbuf[..plain_len]);
            let Ok(n) =
                r.tx.protect(&mut self.outbuf[..plain_len + TAG_LEN], plain_len, roc)
            else {
                self.counters.dropped += 1;
                continue;
            };
            match self.socket.send_to(&self.outbuf[..n], r.addr) {
                Ok(_) => self.counters.forwarded += 1,
                Err(_) => self.counters.send_errors += 1,
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

    /// Waits (at most the socket's 100 ms read timeout) for one datagram and handles it; false when
    /// none came.
    pub fn poll_once(&mut self) -> std::io::Result<bool> {
        match self.socket.recv_from(&mut self.inbuf[..]) {
            Ok((len, from)) => {
                self.handle(len, from);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
            // ICMP port unreachable from a receiver that went away surfaces here on Linux.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Forwards until `stop` is set.
    pub fn run(&mut self, stop: &Arc<AtomicBool>) -> std::io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.poll_once()?;
        }
        Ok(())
    }
}
