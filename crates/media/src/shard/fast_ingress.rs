//! A publish connection whose incoming media the fast path receives (`ShardConfig::fast_path`).
//!
//! Once the connection is up, its SRTP packets no longer go through str0m: the shard decrypts them
//! with the connection's key ([`fastpath::srtp`]), reads their headers ([`fastpath::ingress`]) and
//! forwards the payload straight from its receive buffer. str0m keeps ICE, DTLS and the publisher's
//! RTCP (sender reports).
//!
//! What str0m did for a publisher's streams is done here instead, since str0m no longer sees them:
//! transport-wide feedback (the publisher's estimator depends on it), NACKs for lost video packets
//! (the publisher answers with RTX, which is unwrapped here), and PLIs when a subscriber needs a
//! keyframe. All of it goes out as SRTCP from one sender SSRC of our own.
//!
//! Streams are found by SSRC (a short list, scanned: a publisher sends a handful). A new SSRC is
//! routed by the shard from its MID and RID header extensions, or from the route str0m found for it
//! before the connection moved to the fast path.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use str0m::rtp::ExtensionValues;

use crate::fastpath::ingress::{
    IngressError, IngressExtIds, NackList, RtpHeaderView, SeqTracker, TransportFeedback,
    payload_range, read_extensions, read_header, write_nack, write_pli,
};
use crate::fastpath::keys::DtlsKeys;
use crate::fastpath::srtp::{SRTCP_OVERHEAD, SrtpContext, SrtpError};

/// Most SSRCs one publish connection may send on (three simulcast layers and their RTX per camera,
/// screen share and audio fit many times over): bounds the scan and what a misbehaving client costs.
const MAX_STREAMS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FastIngressError {
    #[error(transparent)]
    Keys(#[from] crate::fastpath::keys::KeysError),
    #[error(transparent)]
    Srtp(#[from] SrtpError),
}

/// Why an incoming packet was not taken (each a drop reason in the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("malformed RTP")]
    Malformed,
    #[error("SRTP authentication failed")]
    Auth,
    #[error("duplicate or replayed packet")]
    Duplicate,
    #[error("too many SSRCs on one connection")]
    TooManyStreams,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed_rtp",
            Refused::Auth => "srtp_auth",
            Refused::Duplicate => "duplicate",
            Refused::TooManyStreams => "too_many_streams",
        }
    }
}

impl From<IngressError> for Refused {
    fn from(_: IngressError) -> Self {
        Refused::Malformed
    }
}

/// Where an incoming SSRC's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Media of a publication's layer.
    Media { publication: usize, layer: usize },
    /// Retransmissions (RFC 4588) of the stream on `main_ssrc`.
    Repair { main_ssrc: u32 },
}

/// One incoming SSRC.
#[derive(Debug)]
pub struct InStream {
    pub ssrc: u32,
    seq: SeqTracker,
    nack: NackList,
    /// Set by the shard on first sight (a stream it cannot route yet stays `None`, its packets dropped).
    pub route: Option<Route>,
    /// Lost packets are asked for again (video).
    pub nackable: bool,
}

/// A packet [`FastIngress::open`] decrypted.
#[derive(Debug)]
pub struct Opened {
    /// Index into the connection's streams.
    pub stream: usize,
    /// The packet index (the sequence number extended to 64 bits).
    pub index: u64,
    pub header: RtpHeaderView,
    /// Where the payload lies in the buffer given to `open` (padding removed).
    pub payload: Range<usize>,
    pub ext: ExtensionValues,
}

pub struct FastIngress {
    /// The publisher's SRTP (what we decrypt with).
    srtp: SrtpContext,
    /// Our SRTCP (feedback to the publisher).
    srtcp: SrtpContext,
    srtcp_index: u32,
    /// The SSRC our feedback is sent from: str0m's own RTCP uses others, so the two SRTCP index spaces
    /// never meet.
    sender_ssrc: u32,
    /// Where the feedback goes: the address str0m last sent to.
    pub destination: SocketAddr,
    pub ids: IngressExtIds,
    streams: Vec<InStream>,
    feedback: TransportFeedback,
    /// Scratch for the sequence numbers of one NACK.
    nack_seqs: Vec<u16>,
    pub packets: u64,
    pub feedbacks: u64,
    pub nacks: u64,
}

impl FastIngress {
    pub fn new(
        keys: &DtlsKeys,
        destination: SocketAddr,
        ids: IngressExtIds,
    ) -> Result<Self, FastIngressError> {
        let keys = keys.srtp_keys()?;
        Ok(Self {
            srtp: keys.remote.context()?,
            srtcp: keys.local_rtcp.context()?,
            srtcp_index: 0,
            sender_ssrc: fastrand::u32(1..),
            destination,
            ids,
            streams: Vec::with_capacity(8),
            feedback: TransportFeedback::default(),
            nack_seqs: Vec::with_capacity(64),
            packets: 0,
            feedbacks: 0,
            nacks: 0,
        })
    }

    pub fn stream(&self, i: usize) -> &InStream {
        &self.streams[i]
    }

    pub fn stream_mut(&mut self, i: usize) -> &mut InStream {
        &mut self.streams[i]
    }

    fn find(&self, ssrc: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.ssrc == ssrc)
    }

    /// Authenticates and decrypts the SRTP packet in `buf` in place, and takes note of it (its index,
    /// its transport-wide arrival, the gaps before it).
    pub fn open(&mut self, now: Instant, buf: &mut [u8]) -> Result<Opened, Refused> {
        let header = read_header(buf)?;
        let stream = match self.find(header.ssrc) {
            Some(i) => i,
            None if self.streams.len() < MAX_STREAMS => {
                self.streams.push(InStream {
                    ssrc: header.ssrc,
                    seq: SeqTracker::default(),
                    nack: NackList::default(),
                    route: None,
                    nackable: false,
                });
                self.streams.len() - 1
            }
            None => return Err(Refused::TooManyStreams),
        };
        let index = self.streams[stream].seq.estimate(header.seq);
        if !self.streams[stream].seq.is_new(index) {
            return Err(Refused::Duplicate);
        }
        let len = self
            .srtp
            .unprotect(buf, (index >> 16) as u32)
            .map_err(|e| match e {
                SrtpError::Auth => Refused::Auth,
                _ => Refused::Malformed,
            })?;
        let packet = &buf[..len];
        let payload = payload_range(packet, &header)?;
        let mut ext = ExtensionValues::default();
        let ids = match self.streams[stream].route {
            Some(_) => self.ids.without_identifiers(),
            None => self.ids,
        };
        read_extensions(packet, header.header_len, &ids, &mut ext);
        let s = &mut self.streams[stream];
        let before = s.seq.record(index);
        if s.nackable {
            s.nack.on_arrival(now, index, before);
        }
        if let Some(seq) = ext.transport_cc {
            self.feedback.on_arrival(now, seq);
        }
        self.packets += 1;
        Ok(Opened {
            stream,
            index,
            header,
            payload,
            ext,
        })
    }

    /// A retransmission of packet `osn` of the stream on `main_ssrc` arrived: its index there, unless
    /// that packet arrived already (or the stream is unknown).
    pub fn repaired(&mut self, now: Instant, main_ssrc: u32, osn: u16) -> Option<u64> {
        let i = self.find(main_ssrc)?;
        let s = &mut self.streams[i];
        let index = s.seq.estimate(osn);
        if !s.seq.is_new(index) {
            return None;
        }
        let before = s.seq.record(index);
        s.nack.on_arrival(now, index, before);
        Some(index)
    }

    /// Publication `p` is gone (its slot may be reused): streams that carried or repaired it are
    /// routed again on their next packet.
    pub fn forget_publication(&mut self, p: usize) {
        let gone: Vec<u32> = self
            .streams
            .iter()
            .filter(
                |s| matches!(s.route, Some(Route::Media { publication, .. }) if publication == p),
            )
            .map(|s| s.ssrc)
            .collect();
        for s in &mut self.streams {
            let stale = match s.route {
                Some(Route::Media { publication, .. }) => publication == p,
                Some(Route::Repair { main_ssrc }) => gone.contains(&main_ssrc),
                None => false,
            };
            if stale {
                s.route = None;
                s.nack = NackList::default();
            }
        }
    }

    /// Where the stream on `ssrc` goes, if it arrived and was routed.
    pub fn route_of(&self, ssrc: u32) -> Option<Route> {
        self.streams.iter().find(|s| s.ssrc == ssrc)?.route
    }

    /// When [`FastIngress::poll`] has NACKs to send (a retry must go out on time).
    pub fn next_nack_due(&self) -> Option<Instant> {
        self.streams.iter().filter_map(|s| s.nack.next_due()).min()
    }

    /// When [`FastIngress::poll`] has transport-wide feedback to send: a soft deadline (see
    /// `Shard::schedule_soft`); a publisher's estimator takes feedback a few tens of milliseconds late
    /// in its stride, and a publisher that sends wakes the worker often enough anyway.
    pub fn next_feedback_due(&self) -> Option<Instant> {
        self.feedback.next_due()
    }

    /// Writes the next due feedback datagram (transport-wide feedback, then NACKs) into `buf`,
    /// sealed; returns its length.
    pub fn poll(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let room = buf.len().checked_sub(SRTCP_OVERHEAD)?;
        let media_ssrc = self.streams.first().map_or(0, |s| s.ssrc);
        if let Some(len) =
            self.feedback
                .poll_report(now, self.sender_ssrc, media_ssrc, &mut buf[..room])
        {
            self.feedbacks += 1;
            return self.seal(buf, len);
        }
        for i in 0..self.streams.len() {
            if self.streams[i].nack.next_due().is_none_or(|at| at > now) {
                continue;
            }
            self.streams[i].nack.poll_due(now, &mut self.nack_seqs);
            let ssrc = self.streams[i].ssrc;
            if let Some(len) = write_nack(&mut buf[..room], self.sender_ssrc, ssrc, &self.nack_seqs)
            {
                self.nacks += 1;
                return self.seal(buf, len);
            }
        }
        None
    }

    /// Writes a PLI for the stream on `media_ssrc` into `buf`, sealed; returns its length.
    pub fn pli(&mut self, media_ssrc: u32, buf: &mut [u8]) -> Option<usize> {
        let len = write_pli(buf, self.sender_ssrc, media_ssrc)?;
        self.seal(buf, len)
    }

    fn seal(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        let index = self.srtcp_index;
        self.srtcp_index = (index + 1) & 0x7fff_ffff;
        self.srtcp.protect_rtcp(buf, len, index).ok()
    }
}

/// Is this datagram SRTP (RTP, not RTCP: RFC 5761 §4 tells them apart by the second byte)?
pub fn is_srtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] >> 6 == 2 && !(192..=223).contains(&datagram[1])
}

/// Is this datagram SRTCP?
pub fn is_srtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}
