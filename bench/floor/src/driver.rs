//! Feeds a floor forwarder with SRTP and measures what comes back, and what it cost the floor's process.
//!
//! Two threads in this process: a sender (one socket, `streams` SSRCs at `pps` packets/s each, paced in
//! 1 ms steps, each stream at its own phase) and a receiver (`receivers` sockets, each subscribed to every stream, decrypting and
//! checking every packet). The payload starts with the send time and a per-stream counter, so loss and
//! latency are measured the same way as in `convene-load`.
//!
//! With `feedback_hz` each receiver also sends the floor small SRTP packets of an SSRC of its own (as a
//! receiver sends transport-wide feedback); the floor decrypts them and, nobody being subscribed, drops
//! them: what reading receivers' feedback costs at least, beside what forwarding costs.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use convene_load::probe::ProcProbe;
use convene_load::stats::{Histogram, StreamRecv};
use mio::{Events, Interest, Poll, Token};

use crate::forwarder::{STATS_MAGIC, SendDelayCounts, subscribe_datagram};
use crate::keys;
use crate::srtp::{Profile, RocTracker, SrtpContext, TAG_LEN};
use convene_load::{DelayPercentiles, window_percentiles};

/// SSRC of stream 0; stream i is `FIRST_SSRC + i`.
const FIRST_SSRC: u32 = 0x1000_0000;
/// SSRC of receiver r's feedback: `FEEDBACK_SSRC + r`.
const FEEDBACK_SSRC: u32 = 0x2000_0000;
/// Payload bytes of a feedback packet: about a transport-wide feedback report's.
const FEEDBACK_PAYLOAD: usize = 48;
const RTP_HEADER: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("srtp: {0}")]
    Srtp(#[from] crate::srtp::SrtpError),
    #[error("probe: {0}")]
    Probe(#[from] convene_load::LoadError),
    #[error("a driver thread panicked")]
    Panicked,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DriveConfig {
    pub floor: SocketAddr,
    pub local_ip: IpAddr,
    pub streams: u32,
    pub receivers: u32,
    /// One-to-one: receiver i gets only stream i (`receivers` is then taken to equal `streams`).
    pub pairs: bool,
    /// Packets per second per stream.
    pub pps: u32,
    /// RTP payload bytes per packet (at least 12: the send time and counter).
    pub size: usize,
    /// Feedback packets each receiver sends the floor per second (0: none).
    #[serde(default)]
    pub feedback_hz: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// The floor's process, to read its CPU time.
    pub floor_pid: Option<u32>,
    /// Send each stream's packets in video frames rather than one by one.
    #[serde(default)]
    pub frames: Option<Frames>,
}

/// A stream's packets as a camera sends them: `rate` frames a second of `packets` packets each, sent
/// back to back, every `keyframe_every_s` a keyframe of `keyframe_packets`; what is left of the
/// stream's `pps` goes one packet at a time in between (its audio). The floor so meets the same
/// bursts Convene meets from the load generator's camera, which decide the latency of a fan-out.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Frames {
    pub rate: u32,
    pub packets: u32,
    pub keyframe_packets: u32,
    pub keyframe_every_s: f64,
}

impl Frames {
    /// Packets of frame `index` (frame 0 is a keyframe, as a camera's first).
    fn packets_of(&self, index: u64) -> u32 {
        let every = (self.keyframe_every_s * f64::from(self.rate))
            .round()
            .max(1.0) as u64;
        if index.is_multiple_of(every) {
            self.keyframe_packets
        } else {
            self.packets
        }
    }

    /// Packets a second left for single packets when a stream sends `pps` in all.
    fn singles_pps(&self, pps: u32) -> u32 {
        pps.saturating_sub(self.rate * self.packets)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DriveSummary {
    pub config: DriveConfig,
    pub window_s: f64,
    pub sent_packets: u64,
    pub received_packets: u64,
    pub expected_packets: u64,
    pub lost_packets: u64,
    pub loss_pct: f64,
    pub forwarded_pps: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub auth_failures: u64,
    pub floor_cpu_s: Option<f64>,
    pub floor_cpu_us_per_pkt: Option<f64>,
    pub floor_pps_per_core: Option<f64>,
    pub floor_rss_kib: Option<u64>,
    /// The floor's own measure of the latency it adds ([`crate::forwarder::SendDelayCounts`]).
    pub floor_send_delay_ms: Option<DelayPercentiles>,
}

struct Measured {
    latency_us: Histogram,
    streams: Vec<StreamRecv>,
    received: u64,
    auth_failures: u64,
}

fn micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

fn bind(ip: IpAddr) -> Result<UdpSocket, DriveError> {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
    let _ = socket2::SockRef::from(&s).set_send_buffer_size(4 << 20);
    Ok(s)
}

/// Runs the drive: subscribe, warm up, measure, stop.
pub fn run(cfg: DriveConfig, profile: Profile) -> Result<DriveSummary, DriveError> {
    let epoch = Instant::now();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    // Receivers subscribe first (twice: UDP on loopback does not lose them, but a floor that is still
    // starting might).
    let mut cfg = cfg;
    if cfg.pairs {
        cfg.receivers = cfg.streams;
    }
    let mut sockets = Vec::new();
    for _ in 0..cfg.receivers {
        let s = bind(cfg.local_ip)?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    for _ in 0..2 {
        for (r, s) in sockets.iter().enumerate() {
            for i in 0..cfg.streams {
                if !cfg.pairs || i == r as u32 {
                    s.send_to(&subscribe_datagram(FIRST_SSRC + i, r as u32), cfg.floor)?;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let receiver = {
        let (measuring, stop, cfg) = (measuring.clone(), stop.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("floor-receiver".into())
            .spawn(move || receive(sockets, &cfg, profile, epoch, &measuring, &stop))?
    };
    let sender = {
        let (measuring, stop, cfg) = (measuring.clone(), stop.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("floor-sender".into())
            .spawn(move || send(&cfg, profile, epoch, &measuring, &stop))?
    };

    let probe = cfg.floor_pid.map(ProcProbe::new);
    std::thread::sleep(Duration::from_secs_f64(cfg.warmup_s));
    let delays_start = send_delays(&cfg);
    let start = probe.as_ref().map(ProcProbe::sample).transpose()?;
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(cfg.duration_s));
    measuring.store(false, Ordering::Relaxed);
    let window_s = t0.elapsed().as_secs_f64();
    let end = probe.as_ref().map(ProcProbe::sample).transpose()?;
    let delays_end = send_delays(&cfg);
    // Let in-flight packets land before stopping the receiver.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().map_err(|_| DriveError::Panicked)??;
    let m = receiver.join().map_err(|_| DriveError::Panicked)??;

    let expected: u64 = m.streams.iter().map(StreamRecv::expected).sum();
    let lost: u64 = m.streams.iter().map(StreamRecv::lost).sum();
    let cpu = match (start, end) {
        (Some(a), Some(b)) => Some((b.cpu_s - a.cpu_s).max(0.0)),
        _ => None,
    };
    let per_pkt = cpu
        .filter(|_| m.received > 0)
        .map(|c| c * 1e6 / m.received as f64);
    Ok(DriveSummary {
        window_s,
        sent_packets: sent,
        received_packets: m.received,
        expected_packets: expected,
        lost_packets: lost,
        loss_pct: if expected == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / expected as f64
        },
        forwarded_pps: m.received as f64 / window_s,
        latency_ms_p50: m.latency_us.quantile(0.5) as f64 / 1000.0,
        latency_ms_p99: m.latency_us.quantile(0.99) as f64 / 1000.0,
        auth_failures: m.auth_failures,
        floor_send_delay_ms: match (delays_start, delays_end) {
            (Some(a), Some(b)) => window_percentiles(&a, &b),
            _ => None,
        },
        floor_cpu_s: cpu,
        floor_cpu_us_per_pkt: per_pkt,
        floor_pps_per_core: per_pkt.filter(|&p| p > 0.0).map(|p| 1e6 / p),
        floor_rss_kib: end.map(|e| e.rss_kib),
        config: cfg,
    })
}

/// Asks the floor for its send-delay counts (cumulative buckets); `None` if it does not answer.
fn send_delays(cfg: &DriveConfig) -> Option<Vec<(f64, u64)>> {
    let socket = UdpSocket::bind(SocketAddr::new(cfg.local_ip, 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let mut buf = [0u8; 512];
    for _ in 0..3 {
        socket.send_to(STATS_MAGIC, cfg.floor).ok()?;
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return SendDelayCounts::cumulative_from_bytes(&buf[..n]);
        }
    }
    tracing::warn!("the floor did not report its send delays");
    None
}

/// Writes one RTP packet for stream `i` into `buf`; returns its length (before encryption).
fn build_packet(buf: &mut [u8], i: u32, seq: u64, size: usize, sent_us: u64) -> usize {
    build_rtp(buf, FIRST_SSRC + i, seq, size, sent_us)
}

/// Writes one RTP packet of `ssrc` into `buf`; returns its length (before encryption).
fn build_rtp(buf: &mut [u8], ssrc: u32, seq: u64, size: usize, sent_us: u64) -> usize {
    buf[0] = 0x80;
    buf[1] = 96;
    buf[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&((seq as u32).wrapping_mul(3000)).to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let p = &mut buf[RTP_HEADER..RTP_HEADER + size];
    p[..8].copy_from_slice(&sent_us.to_be_bytes());
    p[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
    RTP_HEADER + size
}

/// How many packets stream `stream` of `streams` has sent `elapsed` seconds in, at `pps` each.
///
/// Each stream runs at its own phase, the streams spread evenly over one packet interval, as
/// independent publishers do: in lock step the floor would get every stream's packet in one burst and
/// one wake-up, a batching no SFU is offered by real senders (and Convene's load generator does not
/// offer Convene), which made the floor look cheaper per packet than forwarding the same packets costs.
fn packets_due(elapsed: f64, pps: u32, stream: usize, streams: usize) -> u64 {
    let phase = stream as f64 / streams.max(1) as f64;
    (elapsed * f64::from(pps) + phase) as u64
}

fn send(
    cfg: &DriveConfig,
    profile: Profile,
    epoch: Instant,
    measuring: &AtomicBool,
    stop: &AtomicBool,
) -> Result<u64, DriveError> {
    let socket = bind(cfg.local_ip)?;
    let size = cfg.size.clamp(12, 1400);
    let mut contexts = Vec::new();
    for i in 0..cfg.streams {
        let (key, salt) = keys::stream_key(profile, FIRST_SSRC + i);
        contexts.push(SrtpContext::new(profile, &key[..profile.key_len()], salt)?);
    }
    let streams = contexts.len();
    let mut seqs = vec![0u64; streams];
    let mut singles_sent = vec![0u64; streams];
    let mut frames_sent = vec![0u64; streams];
    let singles_pps = cfg.frames.map_or(cfg.pps, |f| f.singles_pps(cfg.pps));
    let mut buf = [0u8; 1500];
    let mut sent_in_window = 0u64;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let elapsed = start.elapsed().as_secs_f64();
        for (i, ctx) in contexts.iter().enumerate() {
            let mut burst = 0u64;
            let due = packets_due(elapsed, singles_pps, i, streams);
            burst += due.saturating_sub(singles_sent[i]);
            singles_sent[i] = singles_sent[i].max(due);
            if let Some(frames) = &cfg.frames {
                let due = packets_due(elapsed, frames.rate, i, streams);
                while frames_sent[i] < due {
                    burst += u64::from(frames.packets_of(frames_sent[i]));
                    frames_sent[i] += 1;
                }
            }
            for _ in 0..burst {
                let seq = seqs[i];
                seqs[i] += 1;
                let len = build_packet(&mut buf, i as u32, seq, size, micros(epoch));
                let n = ctx.protect(&mut buf[..len + TAG_LEN], len, (seq >> 16) as u32)?;
                if socket.send_to(&buf[..n], cfg.floor).is_ok() && measuring.load(Ordering::Relaxed)
                {
                    sent_in_window += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(sent_in_window)
}

/// The receivers' feedback packets: one SSRC and SRTP context per receiver, sent round-robin at
/// `feedback_hz` each.
struct Feedback {
    contexts: Vec<SrtpContext>,
    /// All receivers' packets per second.
    rate: f64,
    sent: u64,
    start: Instant,
    buf: [u8; 256],
}

impl Feedback {
    fn new(cfg: &DriveConfig, profile: Profile, receivers: usize) -> Result<Self, DriveError> {
        let mut contexts = Vec::new();
        if cfg.feedback_hz > 0.0 {
            for r in 0..receivers as u32 {
                let (key, salt) = keys::stream_key(profile, FEEDBACK_SSRC + r);
                contexts.push(SrtpContext::new(profile, &key[..profile.key_len()], salt)?);
            }
        }
        Ok(Self {
            rate: cfg.feedback_hz * contexts.len() as f64,
            contexts,
            sent: 0,
            start: Instant::now(),
            buf: [0; 256],
        })
    }

    /// Sends what is due by now, each packet from its receiver's socket.
    fn send_due(
        &mut self,
        sockets: &[mio::net::UdpSocket],
        floor: SocketAddr,
        epoch: Instant,
    ) -> Result<(), DriveError> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let due = (self.start.elapsed().as_secs_f64() * self.rate) as u64;
        let receivers = self.contexts.len() as u64;
        while self.sent < due {
            let r = (self.sent % receivers) as usize;
            let seq = self.sent / receivers;
            self.sent += 1;
            let len = build_rtp(
                &mut self.buf,
                FEEDBACK_SSRC + r as u32,
                seq,
                FEEDBACK_PAYLOAD,
                micros(epoch),
            );
            let n = self.contexts[r].protect(
                &mut self.buf[..len + TAG_LEN],
                len,
                (seq >> 16) as u32,
            )?;
            // A full socket buffer loses a report, as it would a receiver's.
            let _ = sockets[r].send_to(&self.buf[..n], floor);
        }
        Ok(())
    }
}

fn receive(
    mut sockets: Vec<UdpSocket>,
    cfg: &DriveConfig,
    profile: Profile,
    epoch: Instant,
    measuring: &AtomicBool,
    stop: &AtomicBool,
) -> Result<Measured, DriveError> {
    let mut poll = Poll::new()?;
    let mut mio_sockets = Vec::new();
    let mut contexts = Vec::new();
    for (r, s) in sockets.drain(..).enumerate() {
        let mut m = mio::net::UdpSocket::from_std(s);
        poll.registry()
            .register(&mut m, Token(r), Interest::READABLE)?;
        mio_sockets.push(m);
        let (key, salt) = keys::receiver_key(profile, r as u32);
        contexts.push(SrtpContext::new(profile, &key[..profile.key_len()], salt)?);
    }
    let streams = cfg.streams as usize;
    let mut rocs = vec![RocTracker::default(); mio_sockets.len() * streams];
    let mut m = Measured {
        latency_us: Histogram::new(),
        streams: vec![StreamRecv::default(); mio_sockets.len() * streams],
        received: 0,
        auth_failures: 0,
    };
    let mut events = Events::with_capacity(256);
    let mut buf = [0u8; 2048];
    let mut feedback = Feedback::new(cfg, profile, mio_sockets.len())?;
    // Feedback goes out in 1 ms steps, as the sender's media does.
    let wait = if feedback.rate > 0.0 { 1 } else { 50 };
    while !stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(wait)))?;
        feedback.send_due(&mio_sockets, cfg.floor, epoch)?;
        for ev in events.iter() {
            let r = ev.token().0;
            loop {
                let n = match mio_sockets[r].recv_from(&mut buf) {
                    Ok((n, _)) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                };
                let Some((ssrc, seq)) = crate::srtp::ssrc_seq(&buf[..n]) else {
                    continue;
                };
                let i = ssrc.wrapping_sub(FIRST_SSRC) as usize;
                if i >= streams {
                    continue;
                }
                let slot = r * streams + i;
                let roc = rocs[slot].roc_for(seq);
                let Ok(len) = contexts[r].unprotect(&mut buf[..n], roc) else {
                    m.auth_failures += 1;
                    continue;
                };
                if !measuring.load(Ordering::Relaxed) || len < RTP_HEADER + 12 {
                    continue;
                }
                let now = micros(epoch);
                let p = &buf[RTP_HEADER..len];
                let mut sent = [0u8; 8];
                sent.copy_from_slice(&p[..8]);
                let sent_us = u64::from_be_bytes(sent);
                let counter = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
                m.received += 1;
                m.latency_us.record(now.saturating_sub(sent_us));
                m.streams[slot].record(counter, sent_us, now);
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Floor;

    /// A floor on a thread, driven by `run` with 3 streams to 4 receivers for a second.
    fn drive(feedback_hz: f64) -> (DriveSummary, crate::forwarder::Counters) {
        drive_with(feedback_hz, None)
    }

    fn drive_with(
        feedback_hz: f64,
        frames: Option<Frames>,
    ) -> (DriveSummary, crate::forwarder::Counters) {
        let profile = Profile::AeadAes256Gcm;
        let mut floor = Floor::bind("127.0.0.1:0".parse().unwrap(), profile).unwrap();
        let addr = floor.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let floor_thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                floor.run(&stop).unwrap();
                floor.counters
            })
        };
        let summary = run(
            DriveConfig {
                floor: addr,
                local_ip: "127.0.0.1".parse().unwrap(),
                streams: 3,
                receivers: 4,
                pairs: false,
                pps: 200,
                size: 300,
                feedback_hz,
                warmup_s: 0.2,
                duration_s: 1.0,
                floor_pid: Some(std::process::id()),
                frames,
            },
            profile,
        )
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        (summary, floor_thread.join().unwrap())
    }

    /// Streams keep their rate but not each other's step: at any instant they are within one packet
    /// of each other, and within one packet interval every stream sends at a different moment.
    #[test]
    fn streams_send_at_their_own_phase() {
        let (pps, streams) = (50, 4);
        let interval = 1.0 / f64::from(pps);
        for step in 0..1000 {
            let t = step as f64 * interval / 100.0;
            let due: Vec<u64> = (0..streams)
                .map(|s| packets_due(t, pps, s, streams))
                .collect();
            let (lo, hi) = (due.iter().min().unwrap(), due.iter().max().unwrap());
            assert!(hi - lo <= 1, "at {t}: {due:?}");
        }
        // The first instant (in 1/100 of an interval) each stream's first packet is due.
        let first_at: Vec<Option<u32>> = (0..streams)
            .map(|s| {
                (0..200)
                    .find(|&k| packets_due(f64::from(k) * interval / 100.0, pps, s, streams) >= 1)
            })
            .collect();
        assert_eq!(first_at, vec![Some(100), Some(75), Some(50), Some(25)]);
        // Over ten seconds every stream sends its rate.
        for s in 0..streams {
            assert_eq!(packets_due(10.0, pps, s, streams), 500);
        }
    }

    /// The floor forwards every packet of every stream to every receiver, decryptable with the receiver's
    /// own key (an end-to-end SRTP round trip through decrypt-once / encrypt-per-receiver).
    #[test]
    fn floor_forwards_to_every_receiver() {
        let (summary, counters) = drive(0.0);
        assert_eq!(summary.auth_failures, 0);
        assert!(summary.sent_packets > 300, "{summary:?}");
        // Each sent packet reaches 4 receivers; the window edges blur the count a little.
        let want = summary.sent_packets * 4;
        assert!(
            summary.received_packets.abs_diff(want) <= want / 10 + 40,
            "{summary:?}"
        );
        assert!(summary.loss_pct < 1.0, "{summary:?}");
        assert!(counters.forwarded >= summary.received_packets);
        assert_eq!(counters.dropped, 0);
        assert!(summary.floor_cpu_us_per_pkt.is_some());
        // The floor dated what it sent, and told the driver what it counted in the window.
        let delays = summary
            .floor_send_delay_ms
            .expect("the floor's send delays");
        assert!(
            delays.count > 0 && delays.count <= counters.forwarded,
            "{delays:?}"
        );
        assert!(delays.p50 <= delays.p99, "{delays:?}");
    }

    /// A frame and a keyframe go out back to back; the rest of the rate one by one.
    #[test]
    fn frames_bunch_a_streams_packets() {
        let frames = Frames {
            rate: 15,
            packets: 2,
            keyframe_packets: 6,
            keyframe_every_s: 5.0,
        };
        assert_eq!(frames.packets_of(0), 6);
        assert_eq!(frames.packets_of(1), 2);
        assert_eq!(frames.packets_of(74), 2);
        assert_eq!(frames.packets_of(75), 6);
        assert_eq!(frames.singles_pps(42), 12);
        assert_eq!(frames.singles_pps(20), 0);
        // Through a real floor: everything arrives, each frame's packets in one go.
        let (summary, counters) = drive_with(0.0, Some(frames));
        assert_eq!(summary.auth_failures, 0);
        assert!(summary.loss_pct < 1.0, "{summary:?}");
        // 3 streams x (30 frame packets + 170 singles + 4 extra per keyframe) a second, to 4 receivers.
        assert!(counters.forwarded > 3 * 200 * 4 / 2, "{counters:?}");
    }

    /// The floor's send-delay counts survive their trip through a reply, as cumulative buckets.
    #[test]
    fn send_delay_counts_are_read_back_cumulatively() {
        let mut counts = SendDelayCounts::default();
        for us in [10, 40, 900, 1_200, 400_000] {
            counts.observe(Duration::from_micros(us));
        }
        let buckets = SendDelayCounts::cumulative_from_bytes(&counts.to_bytes()).expect("a reply");
        assert_eq!(
            buckets.len(),
            crate::forwarder::SEND_DELAY_BUCKETS.len() + 1
        );
        let at = |le: f64| buckets.iter().find(|b| b.0 == le).map(|b| b.1);
        assert_eq!(at(0.000_05), Some(2));
        assert_eq!(at(0.001), Some(3));
        assert_eq!(at(0.001_5), Some(4));
        assert_eq!(at(f64::INFINITY), Some(5));
        assert!(SendDelayCounts::cumulative_from_bytes(&[0; 7]).is_none());
    }

    /// Receivers' feedback reaches the floor, decrypts there (nothing dropped) and is forwarded to
    /// nobody: the media still arrives as without it.
    #[test]
    fn receivers_feedback_is_decrypted_and_not_forwarded() {
        let (summary, counters) = drive(100.0);
        assert_eq!(counters.dropped, 0, "{counters:?}");
        assert!(summary.loss_pct < 1.0, "{summary:?}");
        // Every media packet the floor received went to 4 receivers; the rest of what it received is
        // feedback: 100 a second from each of 4 receivers for at least 1.2 s.
        let feedback = counters.received - counters.forwarded / 4;
        assert!(feedback >= 380, "{feedback} feedback packets: {counters:?}");
    }
}
