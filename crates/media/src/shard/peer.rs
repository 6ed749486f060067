//! One WebRTC connection (a str0m `Rtc`) and how the shard configures it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::channel::ChannelId;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, Pt};
use str0m::rtp::Ssrc;
use str0m::{Candidate, IceCreds, Rtc};

use super::fast_egress::FastEgress;
use super::fast_ingress::FastIngress;
use crate::fastpath::keys::{self, KeySlot};

/// Which of an attendee's two connections this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The attendee sends its tracks; the attendee offers.
    Publish,
    /// The attendee receives the others' tracks; the shard offers.
    Subscribe,
}

pub struct Peer {
    pub rtc: Rtc,
    pub attendee: usize,
    pub role: Role,
    pub ufrag: String,
    /// Remote addresses that reached us with this peer's credentials.
    pub addrs: Vec<SocketAddr>,
    pub created: Instant,
    pub last_rx: Instant,
    pub connected: bool,
    /// The earliest entry this peer has in the shard's timer heap.
    pub scheduled: Option<Instant>,
    /// When str0m last asked to be woken (its `Output::Timeout`). The shard's timer also wakes a
    /// connection for the fast path's padding alone, which needs no str0m pass.
    pub str0m_due: Option<Instant>,
    /// The earliest entry this peer has in the shard's soft timer heap (`Shard::schedule_soft`).
    pub soft_scheduled: Option<Instant>,
    /// Media was written since the last timeout pass (see `Shard::mark_dirty`).
    pub dirty: bool,
    /// Incoming SSRC -> (publication, layer), filled on first sight of each SSRC.
    pub ssrc_routes: Vec<(Ssrc, usize, usize)>,
    /// Bit set of the RTX payload types we send on (subscribe connections use our own numbering).
    pub rtx_pts: u128,
    /// The SRTP keying material str0m negotiates for this connection, for the fast path (see
    /// `fastpath::keys`). Filled once when DTLS completes; a fast-path connection builds its egress from it.
    pub srtp_keys: KeySlot,
    /// Subscribe connections: the `convene` data channel we offer (remote control events), and whether
    /// it is open.
    pub channel: Option<(ChannelId, bool)>,
    /// Built once the connection is up on a fast-path subscribe connection (see `fast_egress.rs`).
    pub fast: Option<Box<FastEgress>>,
    /// Built once the connection is up on a fast-path publish connection (see `fast_ingress.rs`).
    pub fast_in: Option<Box<FastIngress>>,
    /// This connection's media is meant for the fast path: sent by it (subscribe; str0m's estimator is
    /// off) or received by it (publish), once the connection is up.
    pub fast_path: bool,
}

impl Peer {
    /// Is this outgoing datagram an RTX retransmission? The RTP header is not encrypted by SRTP, so the
    /// payload type can be read from the second byte.
    pub fn is_rtx(&self, datagram: &[u8]) -> bool {
        datagram.len() > 12
            && datagram[0] >> 6 == 2
            && self.rtx_pts & (1u128 << (datagram[1] & 0x7f)) != 0
    }

    /// Woken by the shard's timer at `now`: `None` if str0m gets its timeout pass now, or until when
    /// its pass waits ([`str0m_waits_until`]).
    pub fn str0m_waits_until(&self, now: Instant) -> Option<Instant> {
        str0m_waits_until(self.dirty, self.str0m_due, now)
    }
}

/// A connection woken only for the fast path's probe padding (a timer per packet, up to thousands a
/// second while it probes) keeps str0m out of it: str0m's pass, on state gone cold, is due only when
/// media was written to the connection (`dirty`), str0m asked for `now` or earlier, or str0m has asked
/// for nothing. Otherwise the pass waits until str0m's own time, which is returned.
fn str0m_waits_until(dirty: bool, str0m_due: Option<Instant>, now: Instant) -> Option<Instant> {
    str0m_due.filter(|&at| !dirty && at > now)
}

/// Where a subscriber's downlink estimate starts before feedback and probing refine it: enough for the
/// 1:1 tier (650 kbps video + audio) without a first-second freeze, low enough not to flood a slow link.
pub const INITIAL_DOWNLINK_KBPS: u64 = 1000;
const PT_OPUS: u8 = 111;
const PT_H264: u8 = 108;
const PT_H264_RTX: u8 = 109;
const PT_VP8: u8 = 96;
const PT_VP8_RTX: u8 = 97;
/// profile-level-id 42e01f: Constrained Baseline, level 3.1 (what every browser and room system decodes).
const H264_CONSTRAINED_BASELINE: u32 = 0x42e01f;

impl Peer {
    pub fn new(
        now: Instant,
        local: SocketAddr,
        attendee: usize,
        role: Role,
        fast_path: bool,
    ) -> Self {
        let creds = IceCreds::new();
        let ufrag = creds.ufrag.clone();
        let mut config = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_local_ice_credentials(creds)
            // str0m's stats feed one thing: the NACK and PLI counters of what str0m itself sends
            // (`Shard::on_egress_stats`). A connection on the fast path sends nothing through str0m
            // (a subscriber's fallback to str0m, when the fast path refuses its keys, is already
            // without str0m's reports and estimator); there each second's stats pass cost ~40 us a
            // connection, 12 % of the server's time in the benchmark's scenario (a)
            // (bench/results/2026-12-06-notes.md).
            .set_stats_interval(
                (role == Role::Subscribe && !fast_path).then_some(Duration::from_secs(1)),
            )
            .clear_codecs();
        let codecs = config.codec_config();
        // Opus with DTX: silent attendees cost (almost) nothing to forward.
        codecs.add_config(
            Pt::from(PT_OPUS),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                use_dtx: Some(true),
                ..Default::default()
            },
        );
        // H.264 constrained baseline first: our answers list codecs in this order, browsers send the
        // first they share with us, and room systems (SIP/H.323) only take H.264. VP8 follows.
        codecs.add_h264(
            Pt::from(PT_H264),
            Some(Pt::from(PT_H264_RTX)),
            true,
            H264_CONSTRAINED_BASELINE,
        );
        codecs.add_config(
            Pt::from(PT_VP8),
            Some(Pt::from(PT_VP8_RTX)),
            Codec::Vp8,
            Frequency::NINETY_KHZ,
            None,
            FormatParams::default(),
        );
        if fast_path && role == Role::Subscribe {
            // The fast path sends the media and reads the receiver's feedback itself (str0m sees no
            // RTCP once the connection is up); str0m's estimator would probe with sequence numbers of
            // its own.
            // Its sender reports are ours too (str0m's would say nothing was sent): str0m's are
            // pushed out of any connection's lifetime.
            const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
            config = config
                .set_rtcp_report_interval_audio(NEVER)
                .set_rtcp_report_interval_video(NEVER);
        } else if role == Role::Subscribe {
            // Send-side estimation (transport-wide CC feedback, probing) of what the subscriber can
            // receive: the allocation spends it (crate::allocation).
            config = config.enable_bwe(Some(str0m::bwe::Bitrate::kbps(INITIAL_DOWNLINK_KBPS)));
        }
        // Built through the fast path's key capture: str0m behaves exactly as with its default crypto.
        let (mut rtc, srtp_keys) = keys::build_rtc(config, now);
        if let Ok(candidate) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(candidate);
        }
        let rtx_pts = rtc
            .codec_config()
            .params()
            .iter()
            .filter_map(|p| p.resend())
            .fold(0u128, |mask, pt| mask | (1u128 << (*pt & 0x7f)));
        Self {
            rtx_pts,
            rtc,
            attendee,
            role,
            ufrag,
            addrs: Vec::new(),
            created: now,
            last_rx: now,
            connected: false,
            scheduled: None,
            str0m_due: None,
            soft_scheduled: None,
            dirty: false,
            ssrc_routes: Vec::new(),
            srtp_keys,
            channel: None,
            fast: None,
            fast_in: None,
            fast_path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_for_padding_alone_leaves_str0m_to_its_own_time() {
        let now = Instant::now();
        let later = now + Duration::from_millis(40);
        // Padding woke a clean connection before str0m's time: str0m waits.
        assert_eq!(str0m_waits_until(false, Some(later), now), Some(later));
        // Media was written, str0m's time came, or str0m never asked: the pass runs now.
        assert_eq!(str0m_waits_until(true, Some(later), now), None);
        assert_eq!(str0m_waits_until(false, Some(now), now), None);
        assert_eq!(
            str0m_waits_until(false, Some(now - Duration::from_millis(1)), now),
            None
        );
        assert_eq!(str0m_waits_until(false, None, now), None);
    }
}
