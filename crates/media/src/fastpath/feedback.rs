//! Reading the RTCP a subscriber sends (its feedback on what we forward), in place and without
//! allocating: the fast path decrypts a subscriber's SRTCP itself, so str0m no longer parses it (its
//! parser builds queues for every transport-wide report, several allocations each, twenty times a
//! second per subscriber).
//!
//! [`packets`] walks a compound packet (RFC 3550 §6.1); [`Feedback`] is what the fast path acts on:
//! transport-wide feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1), generic NACK
//! (RFC 4585 §6.2.1), PLI (§6.3.1), FIR (RFC 5104 §4.3.1) and REMB
//! (draft-alvestrand-rmcat-remb-03). Receiver reports, SDES, BYE and the rest are skipped.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    #[error("truncated or malformed RTCP")]
    Malformed,
}

/// One RTCP packet of a compound packet, as far as the fast path cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback<'a> {
    TransportCc(TransportCc<'a>),
    /// Generic NACK: `entries` is the FCI, 4 bytes per (PID, BLP) entry ([`nack_entries`]).
    Nack {
        media_ssrc: u32,
        entries: &'a [u8],
    },
    Pli {
        media_ssrc: u32,
    },
    /// `entries`: 8 bytes per requested SSRC (SSRC, sequence number, reserved).
    Fir {
        entries: &'a [u8],
    },
    Remb {
        bitrate_bps: u64,
    },
    /// Anything else (receiver reports, SDES, BYE, XR, application packets).
    Other,
}

/// The packets of the compound RTCP packet `buf` (decrypted). A malformed packet ends the walk with an
/// error (what came before it was fine).
pub fn packets(buf: &[u8]) -> impl Iterator<Item = Result<Feedback<'_>, FeedbackError>> + '_ {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            rest = &[];
            return Some(Err(FeedbackError::Malformed));
        }
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        let Some(packet) = rest.get(..len) else {
            rest = &[];
            return Some(Err(FeedbackError::Malformed));
        };
        rest = &rest[len..];
        // Padding (the P bit) counts at the end of the packet it pads.
        let body_end = if packet[0] & 0x20 != 0 {
            let pad = usize::from(packet[len - 1]);
            match len.checked_sub(pad) {
                Some(end) if end >= 4 => end,
                _ => return Some(Err(FeedbackError::Malformed)),
            }
        } else {
            len
        };
        Some(read_packet(&packet[..body_end]))
    })
}

fn read_packet(packet: &[u8]) -> Result<Feedback<'_>, FeedbackError> {
    let fmt = packet[0] & 0x1f;
    let pt = packet[1];
    // Feedback messages: header, sender SSRC, media SSRC, then the FCI.
    let fci = || packet.get(12..).ok_or(FeedbackError::Malformed);
    let media_ssrc = || {
        packet
            .get(8..12)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(FeedbackError::Malformed)
    };
    Ok(match (pt, fmt) {
        (205, 1) => Feedback::Nack {
            media_ssrc: media_ssrc()?,
            entries: fci()?,
        },
        (205, 15) => Feedback::TransportCc(TransportCc::read(fci()?)?),
        (206, 1) => Feedback::Pli {
            media_ssrc: media_ssrc()?,
        },
        (206, 4) => Feedback::Fir { entries: fci()? },
        (206, 15) => match read_remb(fci()?) {
            Some(bitrate_bps) => Feedback::Remb { bitrate_bps },
            None => Feedback::Other,
        },
        _ => Feedback::Other,
    })
}

/// The (PID, BLP) entries of a generic NACK's FCI.
pub fn nack_entries(fci: &[u8]) -> impl Iterator<Item = (u16, u16)> + '_ {
    fci.chunks_exact(4).map(|e| {
        (
            u16::from_be_bytes([e[0], e[1]]),
            u16::from_be_bytes([e[2], e[3]]),
        )
    })
}

/// The SSRCs a FIR's entries ask keyframes of.
pub fn fir_ssrcs(entries: &[u8]) -> impl Iterator<Item = u32> + '_ {
    entries
        .chunks_exact(8)
        .map(|e| u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
}

/// REMB's application FCI: "REMB", the SSRC count, a 6-bit exponent and 18-bit mantissa.
fn read_remb(fci: &[u8]) -> Option<u64> {
    if fci.get(..4)? != b"REMB" {
        return None;
    }
    let b = fci.get(4..8)?;
    let exponent = u32::from(b[1] >> 2);
    let mantissa = (u64::from(b[1] & 3) << 16) | (u64::from(b[2]) << 8) | u64::from(b[3]);
    mantissa.checked_shl(exponent)
}

/// A transport-wide feedback packet's FCI, read lazily: [`TransportCc::arrivals`] walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportCc<'a> {
    pub base_seq: u16,
    pub status_count: u16,
    /// In units of 64 ms on the receiver's clock (24 bits).
    pub reference_time: u32,
    pub feedback_count: u8,
    /// The chunks and then the receive deltas.
    body: &'a [u8],
}

/// Units of a receive delta, in microseconds.
const DELTA_UNIT_US: i64 = 250;
/// Units of the reference time.
const REFERENCE_UNIT: Duration = Duration::from_millis(64);

impl<'a> TransportCc<'a> {
    fn read(fci: &'a [u8]) -> Result<Self, FeedbackError> {
        let head = fci.get(..8).ok_or(FeedbackError::Malformed)?;
        let this = Self {
            base_seq: u16::from_be_bytes([head[0], head[1]]),
            status_count: u16::from_be_bytes([head[2], head[3]]),
            reference_time: u32::from_be_bytes([0, head[4], head[5], head[6]]),
            feedback_count: head[7],
            body: &fci[8..],
        };
        // Walk it once: a packet whose chunks or deltas run short is refused whole, so users of
        // `arrivals` never see half a report.
        let mut count = 0usize;
        for arrival in this.arrivals() {
            arrival?;
            count += 1;
        }
        if count != usize::from(this.status_count) {
            return Err(FeedbackError::Malformed);
        }
        Ok(this)
    }

    /// The reference time as a duration since the receiver's (unknown) epoch.
    pub fn reference(&self) -> Duration {
        REFERENCE_UNIT * self.reference_time
    }

    /// Each reported packet in order: its transport-wide sequence number (16 bits, from the base on)
    /// and, if it arrived, its arrival in microseconds after [`TransportCc::reference`] (negative if
    /// before).
    pub fn arrivals(&self) -> Arrivals<'a> {
        Arrivals {
            body: self.body,
            chunk_at: 0,
            deltas_at: None,
            left: self.status_count,
            seq: self.base_seq,
            chunk: None,
            at_us: 0,
            failed: false,
        }
    }
}

/// What [`TransportCc::arrivals`] yields: `(sequence number, arrival in us after the reference)`.
pub type Arrival = (u16, Option<i64>);

/// See [`TransportCc::arrivals`].
#[derive(Debug, Clone)]
pub struct Arrivals<'a> {
    body: &'a [u8],
    chunk_at: usize,
    /// Where the receive deltas start: after the last chunk, found by a first pass over the chunks.
    deltas_at: Option<usize>,
    left: u16,
    seq: u16,
    /// The chunk being read, and how many of its symbols are left.
    chunk: Option<(u16, u16)>,
    at_us: i64,
    failed: bool,
}

impl Arrivals<'_> {
    /// Bytes of chunks that cover `count` statuses.
    fn chunks_len(body: &[u8], mut count: u16) -> Option<usize> {
        let mut at = 0;
        while count > 0 {
            let c = body.get(at..at + 2)?;
            let chunk = u16::from_be_bytes([c[0], c[1]]);
            count = count.saturating_sub(symbols_in(chunk));
            at += 2;
        }
        Some(at)
    }

    /// The status symbol of the next packet.
    fn next_symbol(&mut self) -> Option<u8> {
        let (chunk, left) = loop {
            match self.chunk {
                Some((chunk, left)) if left > 0 => break (chunk, left),
                _ => {
                    // (A run of length zero covers nothing: read on.)
                    let c = self.body.get(self.chunk_at..self.chunk_at + 2)?;
                    self.chunk_at += 2;
                    let chunk = u16::from_be_bytes([c[0], c[1]]);
                    self.chunk = Some((chunk, symbols_in(chunk)));
                }
            }
        };
        let index = symbols_in(chunk) - left;
        self.chunk = Some((chunk, left - 1));
        Some(symbol(chunk, index))
    }
}

/// Statuses a chunk covers.
fn symbols_in(chunk: u16) -> u16 {
    match chunk >> 14 {
        // Run length chunk: symbol, 13-bit run.
        0 | 1 => chunk & 0x1fff,
        // Status vector of 1-bit symbols.
        2 => 14,
        // Status vector of 2-bit symbols.
        _ => 7,
    }
}

/// The `index`th status symbol of a chunk.
fn symbol(chunk: u16, index: u16) -> u8 {
    match chunk >> 14 {
        0 | 1 => ((chunk >> 13) & 3) as u8,
        2 => ((chunk >> (13 - index)) & 1) as u8,
        _ => ((chunk >> (12 - 2 * index)) & 3) as u8,
    }
}

impl Iterator for Arrivals<'_> {
    type Item = Result<Arrival, FeedbackError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        let deltas_at = match self.deltas_at {
            Some(at) => at,
            None => {
                let Some(at) = Self::chunks_len(self.body, self.left) else {
                    self.failed = true;
                    return Some(Err(FeedbackError::Malformed));
                };
                self.deltas_at = Some(at);
                at
            }
        };
        let Some(symbol) = self.next_symbol() else {
            self.failed = true;
            return Some(Err(FeedbackError::Malformed));
        };
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.left -= 1;
        let delta = match symbol {
            0 => return Some(Ok((seq, None))),
            1 => self.body.get(deltas_at).map(|&d| (i64::from(d), 1)),
            2 => self
                .body
                .get(deltas_at..deltas_at + 2)
                .map(|d| (i64::from(i16::from_be_bytes([d[0], d[1]])), 2)),
            _ => None,
        };
        let Some((delta, bytes)) = delta else {
            self.failed = true;
            return Some(Err(FeedbackError::Malformed));
        };
        self.deltas_at = Some(deltas_at + bytes);
        self.at_us += delta * DELTA_UNIT_US;
        Some(Ok((seq, Some(self.at_us))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::ingress::{TransportFeedback, write_nack, write_pli};
    use std::time::Instant;

    /// What our own writer writes (`ingress::TransportFeedback`), read back: the same arrivals.
    #[test]
    fn transport_feedback_we_write_reads_back() {
        let t0 = Instant::now();
        let mut f = TransportFeedback::default();
        let sent = [(10u16, 0u64), (11, 1_000), (13, 900), (14, 90_000)];
        for (seq, us) in sent {
            f.on_arrival(t0 + Duration::from_micros(us), seq);
        }
        let mut buf = [0u8; 1200];
        let len = f
            .poll_report(t0 + Duration::from_secs(1), 1, 2, &mut buf)
            .unwrap();
        let all: Vec<_> = packets(&buf[..len]).collect();
        let [Ok(Feedback::TransportCc(cc))] = all[..] else {
            panic!("{all:?}");
        };
        assert_eq!((cc.base_seq, cc.status_count), (10, 5));
        let arrivals: Vec<Arrival> = cc.arrivals().map(|a| a.unwrap()).collect();
        let seqs: Vec<u16> = arrivals.iter().map(|a| a.0).collect();
        assert_eq!(seqs, vec![10, 11, 12, 13, 14]);
        assert_eq!(arrivals[2].1, None);
        let at = |i: usize| arrivals[i].1.unwrap();
        assert!((at(1) - at(0) - 1_000).abs() <= 125);
        assert!((at(3) - at(0) - 900).abs() <= 125);
        assert!((at(4) - at(0) - 90_000).abs() <= 125);
    }

    /// A report with run-length and 1-bit vector chunks, as libwebrtc writes them (built by hand from
    /// the draft's layouts).
    #[test]
    fn run_length_and_one_bit_chunks_are_read() {
        let mut fci = vec![];
        fci.extend_from_slice(&100u16.to_be_bytes()); // base
        fci.extend_from_slice(&18u16.to_be_bytes()); // count
        fci.extend_from_slice(&[0, 0, 2, 7]); // reference 2 (128 ms), feedback count 7
        // Run of 4 "small delta", then a 1-bit vector of 14: received, lost, then 12 received.
        fci.extend_from_slice(&(0x2000u16 | 4).to_be_bytes());
        fci.extend_from_slice(&(0x8000u16 | 0x2fff).to_be_bytes());
        // 4 + 13 small deltas of 4 units (1 ms).
        fci.extend_from_slice(&[4; 17]);
        let cc = TransportCc::read(&fci).unwrap();
        assert_eq!(cc.reference(), Duration::from_millis(128));
        assert_eq!(cc.feedback_count, 7);
        let arrivals: Vec<Arrival> = cc.arrivals().map(|a| a.unwrap()).collect();
        assert_eq!(arrivals.len(), 18);
        assert_eq!(arrivals[0], (100, Some(1_000)));
        assert_eq!(arrivals[4], (104, Some(5_000)));
        assert_eq!(arrivals[5], (105, None));
        assert_eq!(arrivals[17], (117, Some(17_000)));
        // One delta byte short: refused whole.
        assert_eq!(
            TransportCc::read(&fci[..fci.len() - 1]),
            Err(FeedbackError::Malformed)
        );
    }

    #[test]
    fn a_compound_packet_yields_each_feedback() {
        let mut buf = vec![];
        // A receiver report with no blocks: skipped.
        buf.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 9]);
        let mut p = [0u8; 64];
        let n = write_nack(&mut p, 9, 0xabcd, &[5, 6]).unwrap();
        buf.extend_from_slice(&p[..n]);
        let n = write_pli(&mut p, 9, 0xabcd).unwrap();
        buf.extend_from_slice(&p[..n]);
        // REMB of 300000 bps: exponent 2, mantissa 75000, one SSRC.
        let mantissa: u32 = 75_000;
        buf.extend_from_slice(&[0x8f, 206, 0, 5, 0, 0, 0, 9, 0, 0, 0, 0]);
        buf.extend_from_slice(b"REMB");
        buf.extend_from_slice(&[
            1,
            (2 << 2) | (mantissa >> 16) as u8,
            (mantissa >> 8) as u8,
            mantissa as u8,
        ]);
        buf.extend_from_slice(&0xabcdu32.to_be_bytes());
        // FIR for two SSRCs.
        buf.extend_from_slice(&[0x84, 206, 0, 6, 0, 0, 0, 9, 0, 0, 0, 0]);
        buf.extend_from_slice(&[0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 2, 3, 0, 0, 0]);
        let all: Vec<_> = packets(&buf).map(|p| p.unwrap()).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0], Feedback::Other);
        let Feedback::Nack {
            media_ssrc,
            entries,
        } = all[1]
        else {
            panic!("{:?}", all[1]);
        };
        assert_eq!(media_ssrc, 0xabcd);
        assert_eq!(nack_entries(entries).collect::<Vec<_>>(), vec![(5, 1)]);
        assert_eq!(all[2], Feedback::Pli { media_ssrc: 0xabcd });
        assert_eq!(
            all[3],
            Feedback::Remb {
                bitrate_bps: 300_000
            }
        );
        let Feedback::Fir { entries } = all[4] else {
            panic!("{:?}", all[4]);
        };
        assert_eq!(fir_ssrcs(entries).collect::<Vec<_>>(), vec![1, 2]);
    }

    /// Random and truncated input: errors, never a panic, and never an arrival past a status count.
    #[test]
    fn malformed_rtcp_is_refused_without_panicking() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let n = rng.usize(0..80);
            let mut buf: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if n > 2 {
                buf[0] = 0x80 | (buf[0] & 0x3f);
                buf[1] = [200, 201, 205, 206][rng.usize(0..4)];
            }
            for p in packets(&buf) {
                if let Ok(Feedback::TransportCc(cc)) = p {
                    assert_eq!(cc.arrivals().count(), usize::from(cc.status_count));
                }
            }
        }
    }
}
