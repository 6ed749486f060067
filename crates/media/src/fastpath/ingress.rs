//! The receiving half of the fast path, sans IO: what a publisher's SRTP packet needs before the shard
//! can forward it, and the feedback the publisher expects back.
//!
//! - [`read_header`] and [`read_extensions`]: the RTP header and the RFC 8285 header extensions the SFU
//!   reads (MID, RID and repaired RID to route a new SSRC; transport-wide sequence number; audio level;
//!   video orientation and content type, which travel on). Written here because str0m's parser is
//!   private to it, and it is a few dozen lines.
//! - [`SeqTracker`]: extends 16-bit sequence numbers to the SRTP packet index (RFC 3711 §3.3.1) and
//!   refuses replays and duplicates (a 128-packet window).
//! - [`NackList`]: the gaps in a stream, asked for again (generic NACK, RFC 4585 §6.2.1) a few times.
//! - [`TransportFeedback`]: transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-
//!   cc-extensions-01), the publisher's estimator's input.
//! - [`write_nack`] and [`write_pli`]: the other two feedback packets (fixed layouts of 12 + 4n and 12
//!   bytes).
//!
//! The feedback packets are written here by hand because str0m, which parses them all, builds and
//! writes them only through types it keeps private (its receive register, its packet trait).
//!
//! Nothing here allocates per packet: the register's queue and the NACK list keep their capacity.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use str0m::media::{Mid, Rid};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, VideoOrientation};

/// The header extension ids a publish connection negotiated, for what the fast path reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngressExtIds {
    pub mid: Option<u8>,
    pub rid: Option<u8>,
    pub repaired_rid: Option<u8>,
    pub transport_cc: Option<u8>,
    pub audio_level: Option<u8>,
    pub video_orientation: Option<u8>,
    pub video_content_type: Option<u8>,
}

impl IngressExtIds {
    pub fn from_map(map: &ExtensionMap) -> Self {
        let id = |e: Extension| map.id_of(e);
        Self {
            mid: id(Extension::RtpMid),
            rid: id(Extension::RtpStreamId),
            repaired_rid: id(Extension::RepairedRtpStreamId),
            transport_cc: id(Extension::TransportSequenceNumber),
            audio_level: id(Extension::AudioLevel),
            video_orientation: id(Extension::VideoOrientation),
            video_content_type: id(Extension::VideoContentType),
        }
    }

    /// The same without the stream identifiers (MID, RID, repaired RID): what a packet of a stream
    /// already routed needs read. (Senders repeat them on every packet until their SSRC is reported
    /// on; reading one makes a string.)
    pub fn without_identifiers(self) -> Self {
        Self {
            mid: None,
            rid: None,
            repaired_rid: None,
            ..self
        }
    }

    /// Fills in what `self` lacks from another m-line's map (an audio m-line's map names no video
    /// extensions; under BUNDLE the ids are one space).
    pub fn merge(&mut self, other: Self) {
        let fields = [
            (&mut self.mid, other.mid),
            (&mut self.rid, other.rid),
            (&mut self.repaired_rid, other.repaired_rid),
            (&mut self.transport_cc, other.transport_cc),
            (&mut self.audio_level, other.audio_level),
            (&mut self.video_orientation, other.video_orientation),
            (&mut self.video_content_type, other.video_content_type),
        ];
        for (mine, theirs) in fields {
            if mine.is_none() {
                *mine = theirs;
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngressError {
    #[error("not an RTP packet (too short, wrong version or truncated header)")]
    NotRtp,
    #[error("RTP padding longer than the payload")]
    BadPadding,
}

/// The fixed RTP header fields, and where the payload lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeaderView {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub pt: u8,
    /// Bytes of header (fixed part, CSRCs, extensions): the payload starts here.
    pub header_len: usize,
    /// The P bit: the last payload octet counts padding octets to drop.
    pub padded: bool,
}

/// Reads the RTP header at the start of `packet` (RFC 3550 §5.1).
pub fn read_header(packet: &[u8]) -> Result<RtpHeaderView, IngressError> {
    let header_len = super::srtp::rtp_header_len(packet).map_err(|_| IngressError::NotRtp)?;
    Ok(RtpHeaderView {
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        marker: packet[1] & 0x80 != 0,
        pt: packet[1] & 0x7f,
        header_len,
        padded: packet[0] & 0x20 != 0,
    })
}

/// The payload of a decrypted RTP packet of `len` bytes, without RTP padding.
pub fn payload_range(
    packet: &[u8],
    header: &RtpHeaderView,
) -> Result<std::ops::Range<usize>, IngressError> {
    let end = packet.len();
    if !header.padded {
        return Ok(header.header_len..end);
    }
    let pad = usize::from(*packet.last().ok_or(IngressError::BadPadding)?);
    if pad == 0 || header.header_len + pad > end {
        return Err(IngressError::BadPadding);
    }
    Ok(header.header_len..end - pad)
}

/// Reads the header extensions of `packet` (whose header is `header_len` bytes) that `ids` names into
/// `ev`. Both RFC 8285 forms are read; elements it does not know are skipped, a malformed block ends
/// the reading (what was read stays).
pub fn read_extensions(
    packet: &[u8],
    header_len: usize,
    ids: &IngressExtIds,
    ev: &mut ExtensionValues,
) {
    if packet.len() < 12 || packet[0] & 0x10 == 0 {
        return;
    }
    let start = 12 + 4 * usize::from(packet[0] & 0x0f);
    let Some(profile) = packet.get(start..start + 2) else {
        return;
    };
    let profile = u16::from_be_bytes([profile[0], profile[1]]);
    let Some(block) = packet.get(start + 4..header_len) else {
        return;
    };
    let two_byte = match profile {
        0xBEDE => false,
        p if p & 0xfff0 == 0x1000 => true,
        _ => return,
    };
    let mut i = 0;
    while i < block.len() {
        let (id, len, head) = if two_byte {
            let id = block[i];
            if id == 0 {
                i += 1;
                continue;
            }
            let Some(&len) = block.get(i + 1) else { return };
            (id, usize::from(len), 2)
        } else {
            let b = block[i];
            if b == 0 {
                i += 1;
                continue;
            }
            let id = b >> 4;
            if id == 15 {
                return;
            }
            (id, usize::from(b & 0x0f) + 1, 1)
        };
        let Some(data) = block.get(i + head..i + head + len) else {
            return;
        };
        read_element(id, data, ids, ev);
        i += head + len;
    }
}

fn read_element(id: u8, data: &[u8], ids: &IngressExtIds, ev: &mut ExtensionValues) {
    let is = |want: Option<u8>| want == Some(id);
    if is(ids.transport_cc) && data.len() >= 2 {
        ev.transport_cc = Some(u16::from_be_bytes([data[0], data[1]]));
    } else if is(ids.audio_level) && !data.is_empty() {
        // RFC 6464: V flag, then the level in -dBov; str0m's convention (which forwarding reads) is
        // the level negated.
        ev.audio_level = Some(-((data[0] & 0x7f) as i8));
        ev.voice_activity = Some(data[0] & 0x80 != 0);
    } else if is(ids.video_orientation) && !data.is_empty() {
        ev.video_orientation = Some(VideoOrientation::from(data[0] & 3));
    } else if is(ids.video_content_type) && !data.is_empty() {
        ev.video_content_type = Some(data[0]);
    } else if is(ids.mid) {
        ev.mid = identifier(data).map(Mid::from);
    } else if is(ids.rid) {
        ev.rid = identifier(data).map(Rid::from);
    } else if is(ids.repaired_rid) {
        ev.rid_repair = identifier(data).map(Rid::from);
    }
}

/// An RFC 8852 identifier (MID, RID): 1 to 16 alphanumeric characters. str0m's `Mid`/`Rid` hold at
/// most 16 bytes; anything else is not one.
fn identifier(data: &[u8]) -> Option<&str> {
    // Some senders pad the value with NULs.
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let s = std::str::from_utf8(&data[..end]).ok()?;
    (!s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(s)
}

/// The 64-bit number ending in `seq` nearest to `near`: of the three candidate rollovers, the closest
/// (RFC 3711 Appendix A's estimate; never below zero).
pub fn extend_seq(near: u64, seq: u16) -> u64 {
    let candidate = (near & !0xffff) | u64::from(seq);
    [
        candidate.checked_sub(1 << 16),
        Some(candidate),
        Some(candidate + (1 << 16)),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|c| c.abs_diff(near))
    .unwrap_or(candidate)
}

/// Extends an incoming stream's 16-bit sequence numbers to 64-bit packet indices (RFC 3711 §3.3.1,
/// Appendix A) and remembers which of the last [`SeqTracker::WINDOW`] arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqTracker {
    highest: Option<u64>,
    /// Bit i: index `highest - i` arrived.
    seen: u128,
}

impl SeqTracker {
    /// How far back duplicates are recognised; older packets count as replays.
    pub const WINDOW: u64 = 128;

    /// The index `seq` most likely stands for ([`extend_seq`]). A stream's first packet has rollover 0,
    /// as the sender's counter starts there.
    pub fn estimate(&self, seq: u16) -> u64 {
        match self.highest {
            Some(highest) => extend_seq(highest, seq),
            None => u64::from(seq),
        }
    }

    /// Is `index` new: not seen, and not older than the window?
    pub fn is_new(&self, index: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if index > h => true,
            Some(h) => {
                let back = h - index;
                back < Self::WINDOW && self.seen & (1u128 << back) == 0
            }
        }
    }

    /// `index` arrived (and authenticated): returns the highest index before it (`None` for the
    /// first).
    pub fn record(&mut self, index: u64) -> Option<u64> {
        let before = self.highest;
        match before {
            None => {
                self.highest = Some(index);
                self.seen = 1;
            }
            Some(h) if index > h => {
                let shift = index - h;
                self.seen = if shift >= 128 { 0 } else { self.seen << shift };
                self.seen |= 1;
                self.highest = Some(index);
            }
            Some(h) => {
                let back = h - index;
                if back < Self::WINDOW {
                    self.seen |= 1u128 << back;
                }
            }
        }
        before
    }
}

/// A missing packet, asked for until it arrives or we give up.
#[derive(Debug, Clone, Copy)]
struct Missing {
    index: u64,
    asked: u8,
    next: Instant,
    since: Instant,
}

/// The packets missing from one stream, and when to ask for each (again).
#[derive(Debug, Default)]
pub struct NackList {
    missing: VecDeque<Missing>,
}

impl NackList {
    /// Most gaps tracked at once: a longer burst of loss is better served by a keyframe.
    pub const MAX_MISSING: usize = 256;
    /// Times a packet is asked for.
    pub const MAX_ASKS: u8 = 3;
    /// Between two asks for one packet (about a round trip and a half on a long path).
    pub const RETRY: Duration = Duration::from_millis(100);
    /// A packet missing this long is not worth asking for any more (the history that would answer it
    /// keeps about this much; a frame this late is better replaced).
    pub const GIVE_UP: Duration = Duration::from_millis(1000);

    /// A packet `index` arrived; `highest_before` is what the stream had reached before it.
    pub fn on_arrival(&mut self, now: Instant, index: u64, highest_before: Option<u64>) {
        match highest_before {
            Some(h) if index > h + 1 => {
                let gap = index - h - 1;
                if gap as usize > Self::MAX_MISSING {
                    // The sender jumped (or we lost a whole burst): start over from here.
                    self.missing.clear();
                    return;
                }
                for missing in h + 1..index {
                    if self.missing.len() == Self::MAX_MISSING {
                        self.missing.pop_front();
                    }
                    self.missing.push_back(Missing {
                        index: missing,
                        asked: 0,
                        next: now,
                        since: now,
                    });
                }
            }
            Some(h) if index <= h => {
                // Late or repaired: no longer missing.
                if let Ok(i) = self.missing.binary_search_by_key(&index, |m| m.index) {
                    self.missing.remove(i);
                }
            }
            _ => {}
        }
    }

    /// When something is due to be asked for.
    pub fn next_due(&self) -> Option<Instant> {
        self.missing.iter().map(|m| m.next).min()
    }

    /// Packets missing now: how many there are (for tests and metrics).
    pub fn len(&self) -> usize {
        self.missing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }

    /// The 16-bit sequence numbers due to be asked for now, into `out` (cleared first); each counts as
    /// asked once more. Gives up on packets asked for enough or missing too long.
    pub fn poll_due(&mut self, now: Instant, out: &mut Vec<u16>) {
        out.clear();
        self.missing.retain(|m| {
            m.asked < Self::MAX_ASKS && now.saturating_duration_since(m.since) < Self::GIVE_UP
        });
        for m in self.missing.iter_mut().filter(|m| m.next <= now) {
            out.push(m.index as u16);
            m.asked += 1;
            m.next = now + Self::RETRY;
        }
    }
}

/// Bytes of a PLI (RFC 4585 §6.3.1).
pub const PLI_LEN: usize = 12;

/// Writes a picture loss indication for `media_ssrc` into `buf`; returns its length.
pub fn write_pli(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Option<usize> {
    let out = buf.get_mut(..PLI_LEN)?;
    // V=2, FMT=1 (PLI), PT=206 (PSFB), length 2 words after the first.
    out[..4].copy_from_slice(&[0x81, 206, 0, 2]);
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    Some(PLI_LEN)
}

/// Writes a generic NACK (RFC 4585 §6.2.1) for `seqs` (in increasing order, modulo wrap) of
/// `media_ssrc` into `buf`, packing neighbours into one entry's bitmask; returns its length, or `None`
/// if there is nothing to ask or no room (it writes as many entries as fit).
pub fn write_nack(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seqs: &[u16],
) -> Option<usize> {
    if seqs.is_empty() || buf.len() < 16 {
        return None;
    }
    let mut len = 12;
    let mut i = 0;
    while i < seqs.len() && len + 4 <= buf.len() {
        let pid = seqs[i];
        let mut blp: u16 = 0;
        i += 1;
        while i < seqs.len() {
            let d = seqs[i].wrapping_sub(pid);
            if d == 0 || d > 16 {
                break;
            }
            blp |= 1 << (d - 1);
            i += 1;
        }
        buf[len..len + 2].copy_from_slice(&pid.to_be_bytes());
        buf[len + 2..len + 4].copy_from_slice(&blp.to_be_bytes());
        len += 4;
    }
    let words = (len / 4 - 1) as u16;
    // V=2, FMT=1 (generic NACK), PT=205 (RTPFB).
    buf[..2].copy_from_slice(&[0x81, 205]);
    buf[2..4].copy_from_slice(&words.to_be_bytes());
    buf[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    buf[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    Some(len)
}

/// Transport-wide feedback for one connection (draft-holmer-rmcat-transport-wide-cc-extensions-01
/// §3.1): the arrival times of the transport-wide sequence numbers, reported every
/// [`TransportFeedback::INTERVAL`].
///
/// Written by hand: str0m builds these reports with a register it does not export. Every report uses
/// status vector chunks of seven 2-bit symbols (a valid encoding, if not the most compact one: run
/// length chunks would save a few bytes on long runs).
#[derive(Debug, Default)]
pub struct TransportFeedback {
    /// Arrivals not yet reported, by extended sequence number.
    arrivals: VecDeque<(u64, Instant)>,
    /// Where the next report starts: one past the last one reported.
    next_base: Option<u64>,
    highest: Option<u64>,
    /// The clock the reference times count from.
    time_zero: Option<Instant>,
    count: u8,
    next_at: Option<Instant>,
}

impl TransportFeedback {
    /// How often feedback goes out while packets arrive (libwebrtc's receivers send every 50 to
    /// 250 ms; str0m every 50).
    pub const INTERVAL: Duration = Duration::from_millis(50);
    /// Most packets one report covers (about 700 bytes at most); more go in the next one, at once.
    pub const MAX_STATUSES: usize = 300;
    /// Most arrivals waiting to be reported (the oldest give way).
    const MAX_PENDING: usize = 2000;
    /// Bytes before the first chunk.
    const FIXED_LEN: usize = 20;
    /// Units of a receive delta, and of the reference time.
    const DELTA_UNIT_US: i64 = 250;
    const REFERENCE_UNIT: Duration = Duration::from_millis(64);

    /// A packet with transport-wide sequence number `seq` arrived at `now`.
    pub fn on_arrival(&mut self, now: Instant, seq: u16) {
        let index = self.highest.map_or(u64::from(seq), |h| extend_seq(h, seq));
        if self.next_base.is_some_and(|base| index < base) {
            // Reported (as lost) already: too late to tell.
            return;
        }
        if self.highest.is_none_or(|h| index > h) {
            self.highest = Some(index);
        }
        match self.arrivals.back() {
            Some(&(last, _)) if last >= index => {
                if let Err(i) = self.arrivals.binary_search_by_key(&index, |a| a.0) {
                    self.arrivals.insert(i, (index, now));
                }
            }
            _ => self.arrivals.push_back((index, now)),
        }
        if self.arrivals.len() > Self::MAX_PENDING
            && let Some((dropped, _)) = self.arrivals.pop_front()
        {
            self.next_base = Some(dropped + 1);
        }
        if self.next_at.is_none() {
            self.next_at = Some(now + Self::INTERVAL);
        }
    }

    /// When the next report is due (`None`: nothing to report).
    pub fn next_due(&self) -> Option<Instant> {
        self.next_at
    }

    /// Writes the due report into `buf`; returns its length (`None`: nothing due, or no room for a
    /// report of at least one packet).
    pub fn poll_report(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
        buf: &mut [u8],
    ) -> Option<usize> {
        if self.next_at.is_none_or(|at| at > now) {
            return None;
        }
        self.next_at = None;
        let &(first, first_at) = self.arrivals.front()?;
        let base = self.next_base.unwrap_or(first).min(first);
        let zero = *self.time_zero.get_or_insert(first_at);
        let reference =
            first_at.saturating_duration_since(zero).as_micros() / Self::REFERENCE_UNIT.as_micros();
        // Receive deltas count from the reference time, then from the previous packet received.
        let mut previous_us = reference as i64 * Self::REFERENCE_UNIT.as_micros() as i64;

        // Room: the fixed part, a chunk per 7 statuses, up to 2 delta bytes each, 3 of padding.
        let max_statuses =
            Self::MAX_STATUSES.min(buf.len().saturating_sub(Self::FIXED_LEN + 3) * 7 / 16);
        // First pass: the statuses and deltas, written after the room the chunks will need.
        let mut statuses = 0usize;
        let mut deltas_len = 0usize;
        let mut consumed = 0usize;
        let deltas_at = Self::FIXED_LEN + 2 * max_statuses.div_ceil(7);
        let mut symbols = [0u8; Self::MAX_STATUSES];
        let mut seq = base;
        while statuses < max_statuses {
            let Some(&(next, at)) = self.arrivals.get(consumed) else {
                break;
            };
            if seq < next {
                symbols[statuses] = 0;
                statuses += 1;
                seq += 1;
                continue;
            }
            let at_us = at.saturating_duration_since(zero).as_micros() as i64;
            // Rounded to the nearest unit; the running sum keeps the rounding from adding up.
            let delta =
                (at_us - previous_us + Self::DELTA_UNIT_US / 2).div_euclid(Self::DELTA_UNIT_US);
            let room = buf.len() - deltas_at - deltas_len;
            if (0..=255).contains(&delta) && room >= 1 {
                buf[deltas_at + deltas_len] = delta as u8;
                deltas_len += 1;
                symbols[statuses] = 1;
            } else if let Ok(d) = i16::try_from(delta)
                && room >= 2
            {
                buf[deltas_at + deltas_len..deltas_at + deltas_len + 2]
                    .copy_from_slice(&d.to_be_bytes());
                deltas_len += 2;
                symbols[statuses] = 2;
            } else {
                // Too far from the previous one for a delta: the next report starts here.
                break;
            }
            previous_us += delta * Self::DELTA_UNIT_US;
            statuses += 1;
            consumed += 1;
            seq += 1;
        }
        if consumed == 0 {
            // A report must carry at least one arrival; the first one's delta always fits, so this
            // is a buffer too small.
            return None;
        }
        // Second pass: the chunks, then the deltas moved up behind them.
        let chunks = statuses.div_ceil(7);
        for (c, group) in symbols[..statuses].chunks(7).enumerate() {
            let mut chunk: u16 = 0xC000;
            for (i, &symbol) in group.iter().enumerate() {
                chunk |= u16::from(symbol) << (12 - 2 * i);
            }
            let at = Self::FIXED_LEN + 2 * c;
            buf[at..at + 2].copy_from_slice(&chunk.to_be_bytes());
        }
        let deltas_to = Self::FIXED_LEN + 2 * chunks;
        buf.copy_within(deltas_at..deltas_at + deltas_len, deltas_to);
        let mut len = deltas_to + deltas_len;
        let padding = (4 - len % 4) % 4;
        if padding > 0 {
            buf[len..len + padding].fill(0);
            len += padding;
            buf[len - 1] = padding as u8;
        }
        // V=2, P if padded, FMT=15 (transport-wide CC), PT=205 (RTPFB).
        buf[0] = 0x80 | if padding > 0 { 0x20 } else { 0 } | 15;
        buf[1] = 205;
        buf[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        buf[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
        buf[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
        buf[12..14].copy_from_slice(&(base as u16).to_be_bytes());
        buf[14..16].copy_from_slice(&(statuses as u16).to_be_bytes());
        let reference = (reference as u32) & 0x00ff_ffff;
        buf[16..20].copy_from_slice(&((reference << 8) | u32::from(self.count)).to_be_bytes());
        self.count = self.count.wrapping_add(1);
        self.arrivals.drain(..consumed);
        self.next_base = Some(base + statuses as u64);
        if !self.arrivals.is_empty() {
            // More than one report's worth waited: the rest goes at once.
            self.next_at = Some(now);
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_with_extensions(block: &[u8], two_byte: bool) -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        let profile: u16 = if two_byte { 0x1000 } else { 0xBEDE };
        let mut block = block.to_vec();
        while !block.len().is_multiple_of(4) {
            block.push(0);
        }
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&block);
        p.extend_from_slice(&[0xaa; 20]);
        p
    }

    fn ids() -> IngressExtIds {
        IngressExtIds {
            mid: Some(4),
            rid: Some(10),
            repaired_rid: Some(11),
            transport_cc: Some(3),
            audio_level: Some(1),
            video_orientation: Some(13),
            video_content_type: Some(7),
        }
    }

    #[test]
    fn one_byte_extensions_are_read() {
        // audio level 0x9e (voice, 30 dBov), padding byte, twcc 0x0102, mid "0", rid "h".
        let block = [0x10, 0x9e, 0x00, 0x31, 0x01, 0x02, 0x40, b'0', 0xa0, b'h'];
        let p = packet_with_extensions(&block, false);
        let header = read_header(&p).unwrap();
        assert_eq!(header.header_len, 12 + 4 + 12);
        let mut ev = ExtensionValues::default();
        read_extensions(&p, header.header_len, &ids(), &mut ev);
        assert_eq!(ev.audio_level, Some(-30));
        assert_eq!(ev.voice_activity, Some(true));
        assert_eq!(ev.transport_cc, Some(0x0102));
        assert_eq!(ev.mid, Some(Mid::from("0")));
        assert_eq!(ev.rid, Some(Rid::from("h")));
        assert_eq!(ev.rid_repair, None);
    }

    #[test]
    fn two_byte_extensions_are_read() {
        let block = [11, 1, b'q', 13, 1, 0x03, 7, 1, 0x01, 0, 3, 2, 0xff, 0xfe];
        let p = packet_with_extensions(&block, true);
        let header = read_header(&p).unwrap();
        let mut ev = ExtensionValues::default();
        read_extensions(&p, header.header_len, &ids(), &mut ev);
        assert_eq!(ev.rid_repair, Some(Rid::from("q")));
        assert_eq!(ev.video_orientation, Some(VideoOrientation::Deg90));
        assert_eq!(ev.video_content_type, Some(1));
        assert_eq!(ev.transport_cc, Some(0xfffe));
    }

    /// A block that claims more than it has stops the reading; nothing panics on any truncation.
    #[test]
    fn malformed_extensions_are_survived() {
        let block = [0x10, 0x9e, 0x3f, 0x01];
        let p = packet_with_extensions(&block, false);
        let header = read_header(&p).unwrap();
        let mut ev = ExtensionValues::default();
        read_extensions(&p, header.header_len, &ids(), &mut ev);
        assert_eq!(ev.audio_level, Some(-30));
        assert_eq!(ev.transport_cc, None);
        for cut in 0..p.len() {
            let truncated = &p[..cut];
            if let Ok(h) = read_header(truncated) {
                read_extensions(
                    truncated,
                    h.header_len,
                    &ids(),
                    &mut ExtensionValues::default(),
                );
            }
        }
        // Random bytes.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let n = rng.usize(0..64);
            let mut p: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if let Some(b) = p.first_mut() {
                *b = 0x90 | (*b & 0x2f);
            }
            if let Ok(h) = read_header(&p) {
                read_extensions(&p, h.header_len, &ids(), &mut ExtensionValues::default());
                let _ = payload_range(&p, &h);
            }
        }
    }

    #[test]
    fn padding_is_removed_and_bad_padding_refused() {
        let mut p = vec![0xa0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 0, 0, 3];
        let h = read_header(&p).unwrap();
        assert_eq!(payload_range(&p, &h), Ok(12..15));
        *p.last_mut().unwrap() = 200;
        assert_eq!(payload_range(&p, &h), Err(IngressError::BadPadding));
    }

    #[test]
    fn sequence_numbers_extend_across_wraps_and_duplicates_are_refused() {
        let mut t = SeqTracker::default();
        assert_eq!(t.estimate(65_530), 65_530);
        t.record(65_530);
        assert_eq!(t.estimate(3), 65_536 + 3);
        t.record(65_539);
        // A late packet from before the wrap.
        assert_eq!(t.estimate(65_535), 65_535);
        assert!(t.is_new(65_535));
        t.record(65_535);
        assert!(!t.is_new(65_535));
        assert!(!t.is_new(65_539));
        // Older than the window: refused as a replay.
        assert!(!t.is_new(65_539 - SeqTracker::WINDOW));
        // Near a high index, either side of a wrap.
        assert_eq!(extend_seq(3 << 16 | 10, 12), 3 << 16 | 12);
        assert_eq!(extend_seq(3 << 16 | 10, 65_000), 2 << 16 | 65_000);
    }

    #[test]
    fn gaps_are_asked_for_a_few_times_then_given_up() {
        let t0 = Instant::now();
        let mut n = NackList::default();
        n.on_arrival(t0, 10, None);
        n.on_arrival(t0, 11, Some(10));
        n.on_arrival(t0, 15, Some(11));
        assert_eq!(n.len(), 3);
        let mut out = Vec::new();
        n.poll_due(t0, &mut out);
        assert_eq!(out, vec![12, 13, 14]);
        // Not again before the retry interval.
        n.poll_due(t0 + Duration::from_millis(10), &mut out);
        assert!(out.is_empty());
        // 13 arrives (repaired): the rest is asked for again.
        n.on_arrival(t0, 13, Some(15));
        n.poll_due(t0 + NackList::RETRY, &mut out);
        assert_eq!(out, vec![12, 14]);
        n.poll_due(t0 + NackList::RETRY * 2, &mut out);
        assert_eq!(out, vec![12, 14]);
        n.poll_due(t0 + NackList::RETRY * 3, &mut out);
        assert!(out.is_empty(), "asked {} times already", NackList::MAX_ASKS);
        assert!(n.is_empty());
        // A jump larger than the list starts over.
        n.on_arrival(t0, 10_000, Some(15));
        assert!(n.is_empty());
    }

    #[test]
    fn a_nack_packs_neighbours_into_bitmasks() {
        let mut buf = [0u8; 64];
        let len = write_nack(&mut buf, 1, 2, &[100, 101, 116, 117, 200]).unwrap();
        // Entries: 100 with bits for 101 and 116; 117 alone; 200 alone.
        assert_eq!(len, 12 + 3 * 4);
        assert_eq!(&buf[..4], &[0x81, 205, 0, 5]);
        assert_eq!(&buf[12..16], &[0, 100, 0x80, 0x01]);
        assert_eq!(&buf[16..20], &[0, 117, 0, 0]);
        assert_eq!(&buf[20..24], &[0, 200, 0, 0]);
        // str0m reads what we wrote.
        let parsed = str0m::rtp::rtcp::Rtcp::try_from(&buf[..len]);
        let Ok(str0m::rtp::rtcp::Rtcp::Nack(nack)) = parsed else {
            panic!("not a NACK: {parsed:?}");
        };
        assert_eq!(*nack.ssrc, 2);
        assert_eq!(nack.reports.iter().count(), 3);
        assert_eq!(write_nack(&mut buf, 1, 2, &[]), None);
    }

    #[test]
    fn transport_feedback_reports_what_arrived() {
        let t0 = Instant::now();
        let mut f = TransportFeedback::default();
        let mut buf = [0u8; 1200];
        assert_eq!(f.poll_report(t0, 1, 2, &mut buf), None);
        let arrivals = [(65_534u16, 0u64), (65_535, 1_000), (1, 900), (2, 70_000)];
        for (seq, us) in arrivals {
            f.on_arrival(t0 + Duration::from_micros(us), seq);
        }
        assert_eq!(f.next_due(), Some(t0 + TransportFeedback::INTERVAL));
        assert_eq!(f.poll_report(t0, 1, 2, &mut buf), None, "not due yet");
        let len = f
            .poll_report(t0 + TransportFeedback::INTERVAL, 1, 2, &mut buf)
            .unwrap();
        assert_eq!(len % 4, 0);
        let parsed = str0m::rtp::rtcp::Rtcp::try_from(&buf[..len]);
        let Ok(str0m::rtp::rtcp::Rtcp::Twcc(twcc)) = parsed else {
            panic!("not transport-wide feedback: {parsed:?}");
        };
        assert_eq!(twcc.base_seq, 65_534);
        // 65534, 65535, (0 lost), 1, 2.
        assert_eq!(twcc.status_count, 5);
        // Read back as the fast path's egress reads a subscriber's feedback: arrivals keep their
        // spacing (to the 250 us unit), including the reordered one and the large delta.
        let read: Vec<(u64, Option<Instant>)> = twcc
            .into_iter(t0, 65_534u64.into())
            .map(|(s, _, a)| (*s, a))
            .collect();
        let seqs: Vec<u64> = read.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![65_534, 65_535, 65_536, 65_537, 65_538]);
        assert_eq!(read[2].1, None);
        let at = |i: usize| read[i].1.unwrap();
        let near = |d: Duration, us: u64| d.as_micros().abs_diff(u128::from(us)) <= 125;
        assert!(near(at(1) - at(0), 1_000));
        assert!(near(at(1) - at(3), 100));
        assert!(near(at(4) - at(0), 70_000));
        assert_eq!(f.next_due(), None, "all reported");
        // The next report goes on from there; a packet reported lost already is not reported again.
        f.on_arrival(t0 + Duration::from_millis(80), 3);
        f.on_arrival(t0 + Duration::from_millis(80), 0);
        let len = f
            .poll_report(t0 + Duration::from_millis(200), 1, 2, &mut buf)
            .unwrap();
        let Ok(str0m::rtp::rtcp::Rtcp::Twcc(twcc)) = str0m::rtp::rtcp::Rtcp::try_from(&buf[..len])
        else {
            panic!("not transport-wide feedback");
        };
        assert_eq!(
            (twcc.base_seq, twcc.status_count, twcc.feedback_count),
            (3, 1, 1)
        );
    }

    /// More arrivals than one report holds go out in several, back to back, none lost or repeated.
    #[test]
    fn a_long_run_of_arrivals_is_split_across_reports() {
        let t0 = Instant::now();
        let mut f = TransportFeedback::default();
        let mut buf = [0u8; 1200];
        for i in 0..1000u16 {
            if i % 10 != 3 {
                f.on_arrival(t0 + Duration::from_micros(u64::from(i) * 300), i);
            }
        }
        let mut covered = 0u64;
        let mut now = t0 + TransportFeedback::INTERVAL;
        let mut received = 0;
        while let Some(len) = f.poll_report(now, 1, 2, &mut buf) {
            assert!(len <= 1200);
            let Ok(str0m::rtp::rtcp::Rtcp::Twcc(twcc)) =
                str0m::rtp::rtcp::Rtcp::try_from(&buf[..len])
            else {
                panic!("not transport-wide feedback");
            };
            assert_eq!(u64::from(twcc.base_seq), covered);
            covered += u64::from(twcc.status_count);
            received += twcc
                .into_iter(t0, covered.into())
                .filter(|r| r.2.is_some())
                .count();
            now = f.next_due().unwrap_or(now);
        }
        assert_eq!(covered, 1000);
        assert_eq!(received, 900);
    }
}
