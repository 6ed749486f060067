//! A subscribe connection whose forwarded media the fast path sends (`ShardConfig::fast_path`).
//!
//! str0m keeps the connection (ICE, DTLS, SCTP, negotiation) but sends no RTP on it and reads none of
//! its RTCP: the shard writes each forwarded packet itself ([`fastpath::egress`]), numbers it in the
//! connection's transport-wide sequence space ([`fastpath::twcc`]), protects it with the connection's
//! SRTP key and queues it; the receiver's SRTCP is decrypted here and read by [`fastpath::feedback`]:
//! its transport-wide feedback drives the fast path's own estimator ([`fastpath::cc`]) in place of
//! str0m's, its NACKs, PLIs, FIRs and REMBs go where str0m's events went.
//!
//! The estimator's probe clusters go out as padding-only packets on the RTX stream of one of the
//! connection's video subscriptions (a receiver counts them in its feedback; it has nothing to decode),
//! spaced at the cluster's rate by the shard's timers; while a probe's result is on trial
//! (`fastpath::cc::Trial`), padding on the same stream fills the connection up to the probed rate.
//!
//! NACKs are answered from each video layer's history of incoming packets (`fastpath::rtx`), as RTX on
//! the subscription's RTX stream. Each media stream gets a sender report a second (SRTCP), so browsers
//! can play a person's audio and video in sync; str0m's reports on these connections are switched off.
//!
//! The default since it passed every sim and end-to-end test (`CONVENE_SIM_FAST_PATH=0` and
//! `--media-fast-path false` run str0m's path). Datagrams are written into the shard's reused outbox
//! buffers. Not here: a pacer for media (forwarded packets leave as they come, as Janus sends them).
//! Publishers' packets arrive on the fast path too (`fast_ingress.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::fastpath::cc::{BweConfig, PROBE_PACKET_BYTES, PacketResult, SendSideBwe};
use crate::fastpath::egress::{
    ExtIds, RtpOut, SENDER_REPORT_LEN, SenderInfo, ntp_of, write_rtp, write_sender_report,
};
use crate::fastpath::feedback::TransportCc;
use crate::fastpath::keys::DtlsKeys;
use crate::fastpath::prefetch::{prefetch, prefetch_all};
use crate::fastpath::srtp::{OutboundStream, SRTCP_OVERHEAD, SrtpContext, TAG_LEN};
use crate::fastpath::twcc::SendHistory;

/// The estimate moves by at least this share before the allocation hears of it (it reallocates on
/// every estimate it is given).
const ESTIMATE_STEP: f64 = 0.02;

#[derive(Debug, thiserror::Error)]
pub enum FastEgressError {
    #[error(transparent)]
    Keys(#[from] crate::fastpath::keys::KeysError),
    #[error(transparent)]
    Srtp(#[from] crate::fastpath::srtp::SrtpError),
}

/// Sender reports go out this often per media stream (browsers map RTP time to wallclock from them,
/// to play a person's audio and video in sync).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// A stream whose report is due within this much of another's reports with it.
const REPORT_ALIGN: Duration = Duration::from_millis(500);

/// An SSRC we send on: its SRTP rollover counter, and for a media stream (not RTX) what its sender
/// reports say.
struct SendStream {
    srtp: OutboundStream,
    report: Option<ReportState>,
}

/// A media stream's sender report state.
struct ReportState {
    clock_hz: u32,
    /// The RTP time of the last packet and when it left.
    last: (u32, Instant),
    packets: u32,
    octets: u32,
    next_report: Instant,
    /// SRTCP index of our reports from this SSRC (str0m sends none from it: its reports are off on
    /// fast-path connections).
    srtcp_index: u32,
}

impl ReportState {
    fn new(clock_hz: u32, now: Instant) -> Self {
        Self {
            clock_hz,
            last: (0, now),
            packets: 0,
            octets: 0,
            next_report: now,
            srtcp_index: 0,
        }
    }
}

/// A probe cluster being sent.
struct ActiveProbe {
    id: u32,
    left: usize,
    interval: Duration,
    next_at: Instant,
}

pub struct FastEgress {
    srtp: SrtpContext,
    srtcp: SrtpContext,
    /// The receiver's SRTCP: its feedback is read here, not by str0m.
    srtcp_in: SrtpContext,
    /// Per SSRC we send on (a few per subscription: a scan is cheaper than a map here).
    streams: Vec<SendStream>,
    /// The wallclock at an instant: sender reports carry wallclock time.
    wallclock: (Instant, SystemTime),
    history: SendHistory,
    bwe: SendSideBwe,
    results: Vec<PacketResult>,
    /// The receiver clock's zero for feedback arrival times (only differences matter).
    time_zero: Instant,
    /// Where the connection's datagrams go: the address str0m last sent to.
    pub destination: SocketAddr,
    /// The estimate the allocation was last given (`None`: not yet; the first feedback gives it).
    estimate_kbps: Option<u32>,
    /// Where padding goes: an RTX stream (SSRC, payload type) of a video subscription, and its
    /// sequence numbers.
    padding_stream: Option<(u32, u8, ExtIds)>,
    /// The next sequence number of each RTX stream sent on (padding and retransmissions share them).
    rtx_seqs: Vec<(u32, u16)>,
    probe: Option<ActiveProbe>,
    pub packets: u64,
    pub feedbacks: u64,
    pub padding_packets: u64,
    pub retransmissions: u64,
    pub reports: u64,
}

impl FastEgress {
    pub fn new(
        now: Instant,
        keys: &DtlsKeys,
        destination: SocketAddr,
        initial_kbps: u32,
    ) -> Result<Self, FastEgressError> {
        let keys = keys.srtp_keys()?;
        let srtp = keys.local.context()?;
        let srtcp = keys.local_rtcp.context()?;
        let srtcp_in = keys.remote_rtcp.context()?;
        let config = BweConfig {
            initial_bps: f64::from(initial_kbps) * 1000.0,
            ..BweConfig::default()
        };
        Ok(Self {
            srtp,
            srtcp,
            srtcp_in,
            streams: Vec::new(),
            // Read once: from here on the wallclock follows the instants handed in.
            wallclock: (now, SystemTime::now()),
            history: SendHistory::new(now),
            bwe: SendSideBwe::new(config),
            results: Vec::with_capacity(256),
            time_zero: now,
            destination,
            estimate_kbps: None,
            padding_stream: None,
            rtx_seqs: Vec::new(),
            probe: None,
            packets: 0,
            feedbacks: 0,
            padding_packets: 0,
            retransmissions: 0,
            reports: 0,
        })
    }

    /// Starts fetching what [`packet`](Self::packet) on `stream` touches (`fastpath::prefetch`); the
    /// fan-out asks for every subscriber's before it writes the first copy.
    pub fn prefetch_for_packet(&self, stream: Option<usize>) {
        prefetch(&self.srtp);
        prefetch(&self.streams);
        prefetch(&self.history);
        prefetch(&self.destination);
        if let Some(s) = stream.and_then(|i| self.streams.get(i)) {
            prefetch_all(s);
        }
        self.history.prefetch_next();
        self.bwe.prefetch_for_send();
    }

    /// Starts fetching what reading the receiver's next feedback touches; the worker asks for every
    /// report's in a received batch before it reads the first.
    pub fn prefetch_for_feedback(&self) {
        prefetch(&self.srtcp_in);
        prefetch(&self.history);
        prefetch(&self.results);
        self.history.prefetch_recent();
        self.bwe.prefetch_for_feedback();
    }

    /// What the allocation could use: the estimator probes toward it.
    pub fn set_wanted(&mut self, now: Instant, kbps: u32) {
        self.bwe.set_wanted(now, f64::from(kbps) * 1000.0);
    }

    /// The connection has this RTX stream (of a video subscription, whose m-line negotiated `ids`):
    /// probes can be sent on it.
    pub fn offer_padding_stream(&mut self, ssrc: u32, pt: u8, ids: ExtIds) {
        self.padding_stream.get_or_insert((ssrc, pt, ids));
    }

    /// When [`poll_padding`](Self::poll_padding) has something to send next (a cluster under way, or
    /// a probe on trial filling the connection).
    pub fn next_deadline(&self) -> Option<Instant> {
        let cluster = self.probe.as_ref().map(|p| p.next_at);
        [cluster, self.bwe.next_fill()].into_iter().flatten().min()
    }

    /// The next padding packet due now: of a probe cluster (starting one when the estimator asks for
    /// it), or filling the connection while a probe is on trial; call until `None`.
    pub fn poll_padding(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let (ssrc, pt, ids) = self.padding_stream?;
        // A probe nobody measures is noise: padding needs the transport-wide sequence number.
        ids.transport_cc?;
        if self.probe.is_none()
            && let Some(cluster) = self.bwe.poll_probe(now)
        {
            let interval =
                Duration::from_secs_f64(PROBE_PACKET_BYTES as f64 * 8.0 / cluster.rate_bps);
            self.probe = Some(ActiveProbe {
                id: cluster.id,
                left: cluster.packets,
                interval,
                next_at: now,
            });
        }
        let cluster = match self.probe.as_mut() {
            Some(probe) if probe.next_at <= now => {
                probe.left -= 1;
                probe.next_at += probe.interval;
                let id = probe.id;
                if probe.left == 0 {
                    self.probe = None;
                }
                Some(id)
            }
            Some(_) => return None,
            None if self.bwe.poll_fill(now) => None,
            None => return None,
        };
        let seq = self.next_rtx_seq(ssrc);
        let padding = RtpOut {
            ssrc,
            pt,
            seq,
            timestamp: 0,
            marker: false,
            transport_seq: None,
            audio_level: None,
            video_orientation: None,
            video_content_type: None,
            payload: &[],
            padding: u8::MAX,
        };
        let stream = self.stream(ssrc);
        let (len, _) = self.write(now, stream, &padding, &ids, cluster, buf)?;
        self.padding_packets += 1;
        Some(len)
    }

    /// A retransmission: `rtx` on an RTX stream, its payload the RTX payload
    /// (`fastpath::rtx::rtx_payload`); its sequence number is the stream's next.
    pub fn retransmission(
        &mut self,
        now: Instant,
        rtx: RtpOut,
        ids: &ExtIds,
        buf: &mut [u8],
    ) -> Option<usize> {
        let rtx = RtpOut {
            seq: self.next_rtx_seq(rtx.ssrc),
            ..rtx
        };
        let stream = self.stream(rtx.ssrc);
        let (len, _) = self.write(now, stream, &rtx, ids, None, buf)?;
        self.retransmissions += 1;
        Some(len)
    }

    /// Each RTX stream counts its own sequence numbers: SRTP's rollover counting at the receiver needs
    /// every stream to advance without jumps.
    fn next_rtx_seq(&mut self, ssrc: u32) -> u16 {
        let i = match self.rtx_seqs.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                self.rtx_seqs.push((ssrc, 0));
                self.rtx_seqs.len() - 1
            }
        };
        let seq = self.rtx_seqs[i].1;
        self.rtx_seqs[i].1 = seq.wrapping_add(1);
        seq
    }

    /// The index of the stream we send on `ssrc` (added on first use; indices never change): a
    /// subscription keeps it, so its packets skip the search and prefetch only their own stream.
    pub fn stream(&mut self, ssrc: u32) -> usize {
        match self.streams.iter().position(|s| s.srtp.ssrc() == ssrc) {
            Some(i) => i,
            None => {
                self.streams.push(SendStream {
                    srtp: OutboundStream::new(ssrc),
                    report: None,
                });
                self.streams.len() - 1
            }
        }
    }

    /// Writes, numbers and protects one forwarded packet (`out.transport_seq` is filled in here) of
    /// stream `stream` ([`stream`](Self::stream) of `out.ssrc`), whose RTP clock runs at `clock_hz`.
    pub fn packet(
        &mut self,
        now: Instant,
        stream: usize,
        out: &RtpOut,
        ids: &ExtIds,
        clock_hz: u32,
        buf: &mut [u8],
    ) -> Option<usize> {
        // A wrong index costs a search, never a packet on another stream's keys.
        let stream = match self.streams.get(stream) {
            Some(s) if s.srtp.ssrc() == out.ssrc => stream,
            _ => self.stream(out.ssrc),
        };
        let (len, i) = self.write(now, stream, out, ids, None, buf)?;
        self.packets += 1;
        let report = self.streams[i]
            .report
            .get_or_insert_with(|| ReportState::new(clock_hz, now));
        report.last = (out.timestamp, now);
        report.packets = report.packets.wrapping_add(1);
        report.octets = report.octets.wrapping_add(out.payload.len() as u32);
        Some(len)
    }

    /// The next datagram of sender reports due now; call until `None`.
    ///
    /// Each media stream gets a report per [`REPORT_INTERVAL`]; when one is due, every stream due
    /// within [`REPORT_ALIGN`] more reports with it, in one compound SRTCP packet (RFC 3550 §6.1:
    /// reports may be stacked; the interval may vary by half either way, §6.2). After a round the
    /// streams' reports fall due together: one datagram a second per connection instead of one per
    /// stream (a 10-person meeting's subscriber has 18 streams; measured: those reports were 5 % of
    /// the datagrams the server sent in scenario (b), bench/results/2026-12-06-notes.md).
    pub fn poll_report(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if !self
            .streams
            .iter()
            .any(|s| s.report.as_ref().is_some_and(|r| r.next_report <= now))
        {
            return None;
        }
        let wallclock = self.wallclock.1 + now.saturating_duration_since(self.wallclock.0);
        let ntp = ntp_of(wallclock);
        let room = buf.len().checked_sub(SRTCP_OVERHEAD)?;
        let mut len = 0;
        // The first report's SSRC names the SRTCP context; its index counts this packet.
        let mut leader: Option<usize> = None;
        for (i, s) in self.streams.iter_mut().enumerate() {
            let Some(m) = s
                .report
                .as_mut()
                .filter(|r| r.next_report <= now + REPORT_ALIGN)
            else {
                continue;
            };
            if room - len < SENDER_REPORT_LEN {
                // The rest go in the next datagram (their reports stay due).
                break;
            }
            m.next_report = now + REPORT_INTERVAL;
            // The RTP time now: the last packet's, advanced by the time since it left.
            let (ts, at) = m.last;
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            let info = SenderInfo {
                ssrc: s.srtp.ssrc(),
                ntp,
                rtp_time: ts.wrapping_add((elapsed * f64::from(m.clock_hz)) as u32),
                packets: m.packets,
                octets: m.octets,
            };
            len += write_sender_report(&mut buf[len..room], &info).ok()?;
            leader.get_or_insert(i);
            self.reports += 1;
        }
        let m = self.streams.get_mut(leader?)?.report.as_mut()?;
        let index = m.srtcp_index;
        m.srtcp_index = (index + 1) & 0x7fff_ffff;
        self.srtcp.protect_rtcp(buf, len, index).ok()
    }

    /// When the next sender report is due.
    pub fn next_report(&self) -> Option<Instant> {
        self.streams
            .iter()
            .filter_map(|s| s.report.as_ref().map(|r| r.next_report))
            .min()
    }

    /// Writes `out` into `buf` as SRTP: its length and the index of its stream, or `None` when it
    /// does not fit or cannot be protected.
    fn write(
        &mut self,
        now: Instant,
        stream: usize,
        out: &RtpOut,
        ids: &ExtIds,
        probe: Option<u32>,
        buf: &mut [u8],
    ) -> Option<(usize, usize)> {
        let numbered = RtpOut {
            transport_seq: ids.transport_cc.map(|_| self.history.next_seq() as u16),
            ..*out
        };
        // The tag must fit after the packet.
        let room = buf.len().checked_sub(TAG_LEN)?;
        let len = write_rtp(&mut buf[..room], &numbered, ids).ok()?;
        let protected = self
            .srtp
            .protect_in_place(&mut self.streams.get_mut(stream)?.srtp, buf, len)
            .ok()?;
        if ids.transport_cc.is_some() {
            self.history.record(now, protected, probe);
            self.bwe.on_sent(now, protected);
        }
        Some((protected, stream))
    }

    /// Authenticates and decrypts the receiver's SRTCP packet in `buf` in place; returns the RTCP
    /// length.
    pub fn open_rtcp(&self, buf: &mut [u8]) -> Result<usize, crate::fastpath::srtp::SrtpError> {
        self.srtcp_in.unprotect_rtcp(buf).map(|(len, _index)| len)
    }

    /// The receiver's transport-wide feedback; returns the new estimate (kbps) when it moved enough to
    /// reallocate.
    pub fn on_transport_cc(&mut self, now: Instant, report: &TransportCc<'_>) -> Option<u32> {
        self.feedbacks += 1;
        let feedback = self.history.feedback_of(report, self.time_zero);
        let mut results = std::mem::take(&mut self.results);
        self.history.join(feedback, &mut results);
        self.bwe.on_feedback(now, &results);
        self.results = results;
        let kbps = (self.bwe.target_bps() / 1000.0) as u32;
        let moved = self
            .estimate_kbps
            .is_none_or(|last| f64::from(kbps.abs_diff(last)) > ESTIMATE_STEP * f64::from(last));
        moved.then(|| {
            self.estimate_kbps = Some(kbps);
            kbps
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::crypto::dtls::SrtpProfile;

    fn keys(dtls_client: bool) -> DtlsKeys {
        DtlsKeys {
            profile: SrtpProfile::AEAD_AES_256_GCM,
            // Both directions' 32-byte keys and 12-byte salts.
            material: (0..88u8).collect(),
            dtls_client,
        }
    }

    /// One packet on `ssrc`, through the stream index a subscription would keep.
    fn send(egress: &mut FastEgress, now: Instant, ssrc: u32, buf: &mut [u8]) {
        let stream = egress.stream(ssrc);
        send_on(egress, now, stream, ssrc, buf);
    }

    fn send_on(egress: &mut FastEgress, now: Instant, stream: usize, ssrc: u32, buf: &mut [u8]) {
        let out = RtpOut {
            ssrc,
            pt: 111,
            seq: 1,
            timestamp: 1000,
            marker: false,
            transport_seq: None,
            audio_level: None,
            video_orientation: None,
            video_content_type: None,
            payload: &[7; 100],
            padding: 0,
        };
        assert!(
            egress
                .packet(now, stream, &out, &ExtIds::default(), 48_000, buf)
                .is_some()
        );
    }

    #[test]
    fn a_stream_keeps_its_index_and_a_wrong_one_costs_only_a_search() {
        let t0 = Instant::now();
        let (mut egress, _) = egress_and_receiver(t0);
        let (a, b) = (egress.stream(1111), egress.stream(2222));
        assert_ne!(a, b);
        assert_eq!(egress.stream(1111), a, "indices never change");
        let mut buf = [0u8; 1500];
        // Sent on 2222 with 1111's index (or one out of range): counted on 2222's stream.
        send_on(&mut egress, t0, a, 2222, &mut buf);
        send_on(&mut egress, t0, 99, 2222, &mut buf);
        let count = |i: usize| egress.streams[i].report.as_ref().map(|r| r.packets);
        assert_eq!(count(b), Some(2));
        assert_eq!(count(a), None);
        assert_eq!(egress.streams.len(), 2);
    }

    /// A connection's egress, and the SRTCP context its receiver opens our reports with.
    fn egress_and_receiver(t0: Instant) -> (FastEgress, SrtpContext) {
        let addr = "127.0.0.1:9".parse().expect("address");
        let egress = FastEgress::new(t0, &keys(true), addr, 300).expect("keys");
        let receiver = keys(false)
            .srtp_keys()
            .expect("keys")
            .remote_rtcp
            .context()
            .expect("ctx");
        (egress, receiver)
    }

    /// The receiver's view of one report datagram: the SSRCs its sender reports are from.
    fn reported_ssrcs(receiver: &SrtpContext, datagram: &mut [u8]) -> Vec<u32> {
        let (len, _) = receiver.unprotect_rtcp(datagram).expect("our SRTCP opens");
        datagram[..len]
            .chunks(SENDER_REPORT_LEN)
            .map(|sr| {
                assert_eq!((sr[0], sr[1]), (0x80, 200), "a sender report");
                u32::from_be_bytes([sr[4], sr[5], sr[6], sr[7]])
            })
            .collect()
    }

    /// Streams that start at different moments get their first reports at once, each on its own;
    /// from the next round on all of them share one compound datagram a second.
    #[test]
    fn sender_reports_of_all_streams_share_one_datagram_a_second() {
        let t0 = Instant::now();
        let (mut egress, receiver) = egress_and_receiver(t0);
        let mut buf = [0u8; 1500];
        let mut rounds = Vec::new();
        for ms in (0..=3000).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            match ms {
                0 => send(&mut egress, now, 1, &mut buf),
                300 => {
                    send(&mut egress, now, 2, &mut buf);
                    send(&mut egress, now, 3, &mut buf);
                }
                _ => {}
            }
            while let Some(n) = egress.poll_report(now, &mut buf) {
                rounds.push((ms, reported_ssrcs(&receiver, &mut buf[..n])));
            }
        }
        assert_eq!(
            rounds,
            vec![
                // Stream 1's next is 700 ms away: 2 and 3 start on their own.
                (0, vec![1]),
                (300, vec![2, 3]),
                // Stream 1 is due; 2 and 3 (due at 1300) come along.
                (1000, vec![1, 2, 3]),
                (2000, vec![1, 2, 3]),
                (3000, vec![1, 2, 3]),
            ]
        );
        assert_eq!(egress.reports, 12);
        assert_eq!(egress.next_report(), Some(t0 + Duration::from_secs(4)));
    }

    /// More streams than fit one datagram: the rest follow in the next, nothing is lost.
    #[test]
    fn sender_reports_beyond_one_datagram_follow_in_the_next() {
        let t0 = Instant::now();
        let (mut egress, receiver) = egress_and_receiver(t0);
        let mut buf = [0u8; 1500];
        for ssrc in 1..=5 {
            send(&mut egress, t0, ssrc, &mut buf);
        }
        // Room for two reports and the SRTCP trailer.
        let small = 2 * SENDER_REPORT_LEN + SRTCP_OVERHEAD;
        let mut seen = Vec::new();
        while let Some(n) = egress.poll_report(t0, &mut buf[..small]) {
            seen.push(reported_ssrcs(&receiver, &mut buf[..n]));
        }
        assert_eq!(seen, vec![vec![1, 2], vec![3, 4], vec![5]]);
        // Each datagram counts in its leading stream's SRTCP index (the receiver's replay window).
        assert_eq!(egress.poll_report(t0, &mut buf), None);
    }
}
