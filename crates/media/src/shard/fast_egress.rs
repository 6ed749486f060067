//! A subscribe connection whose forwarded media the fast path sends (`ShardConfig::fast_path`).
//!
//! str0m keeps the connection (ICE, DTLS, SCTP, RTCP in and out, negotiation) but sends no RTP on it:
//! the shard writes each forwarded packet itself ([`fastpath::egress`]), numbers it in the connection's
//! transport-wide sequence space ([`fastpath::twcc`]), protects it with the connection's SRTP key and
//! queues it; the receiver's transport-wide feedback, which str0m still decrypts and parses (raw packet
//! events), drives the fast path's own estimator ([`fastpath::cc`]) in place of str0m's.
//!
//! Not yet here (issue 8, next steps): a pacer and the padding probes the estimator asks for,
//! retransmissions from a history of our own (NACKs are not answered on this path yet), sender
//! reports, and sending without a heap allocation per packet. Until then the configuration stays off
//! by default.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::rtp::rtcp::Twcc;

use crate::fastpath::cc::{BweConfig, PacketResult, SendSideBwe};
use crate::fastpath::egress::{ExtIds, RtpOut, write_rtp};
use crate::fastpath::keys::DtlsKeys;
use crate::fastpath::srtp::{OutboundStream, SrtpContext, TAG_LEN};
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

pub struct FastEgress {
    srtp: SrtpContext,
    /// Per SSRC we send on: its rollover counter.
    streams: Vec<OutboundStream>,
    history: SendHistory,
    bwe: SendSideBwe,
    results: Vec<PacketResult>,
    /// The receiver clock's zero for feedback arrival times (only differences matter).
    time_zero: Instant,
    /// Where the connection's datagrams go: the address str0m last sent to.
    pub destination: SocketAddr,
    /// The estimate the allocation was last given (`None`: not yet; the first feedback gives it).
    estimate_kbps: Option<u32>,
    pub packets: u64,
    pub feedbacks: u64,
}

impl FastEgress {
    pub fn new(
        now: Instant,
        keys: &DtlsKeys,
        destination: SocketAddr,
        initial_kbps: u32,
    ) -> Result<Self, FastEgressError> {
        let srtp = keys.srtp_keys()?.local.context()?;
        let config = BweConfig {
            initial_bps: f64::from(initial_kbps) * 1000.0,
            ..BweConfig::default()
        };
        Ok(Self {
            srtp,
            streams: Vec::new(),
            history: SendHistory::new(now),
            bwe: SendSideBwe::new(now, config),
            results: Vec::with_capacity(256),
            time_zero: now,
            destination,
            estimate_kbps: None,
            packets: 0,
            feedbacks: 0,
        })
    }

    /// What the allocation could use: the estimator probes toward it.
    pub fn set_wanted(&mut self, now: Instant, kbps: u32) {
        self.bwe.set_wanted(now, f64::from(kbps) * 1000.0);
    }

    /// Writes, numbers and protects one forwarded packet (`out.transport_seq` is filled in here).
    pub fn packet(&mut self, now: Instant, out: &RtpOut, ids: &ExtIds) -> Option<Vec<u8>> {
        // Room for the header, four extension elements and the tag.
        let mut buf = vec![0u8; out.payload.len() + 48 + TAG_LEN];
        let numbered = RtpOut {
            transport_seq: ids.transport_cc.map(|_| self.history.next_seq() as u16),
            ..*out
        };
        let len = write_rtp(&mut buf, &numbered, ids).ok()?;
        let stream = match self.streams.iter().position(|s| s.ssrc() == out.ssrc) {
            Some(i) => &mut self.streams[i],
            None => {
                self.streams.push(OutboundStream::new(out.ssrc));
                self.streams.last_mut()?
            }
        };
        let protected = self.srtp.protect_in_place(stream, &mut buf, len).ok()?;
        buf.truncate(protected);
        if ids.transport_cc.is_some() {
            self.history.record(now, protected, None);
        }
        self.packets += 1;
        Some(buf)
    }

    /// The receiver's transport-wide feedback; returns the new estimate (kbps) when it moved enough to
    /// reallocate.
    pub fn on_twcc(&mut self, now: Instant, twcc: Twcc) -> Option<u32> {
        self.feedbacks += 1;
        let feedback = self.history.feedback_of(twcc, self.time_zero);
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
