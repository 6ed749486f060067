//! Sequence number and timestamp rewriting for one subscription (the SFU's) or one outgoing stream
//! fed by several sources in turn (the gateway's picture of the active speaker).
//!
//! A subscriber must see one continuous RTP stream even though what we forward to it changes: it may
//! start in the middle of a publisher's stream (a late joiner), and the source layer may switch. The
//! rewriter maps each incoming (extended sequence number, RTP time) of the current source onto the
//! outgoing stream, continuing where the previous source left off. Sequence numbers start below 2^16 so
//! the subscriber's SRTP rollover counter starts at zero without out-of-band signalling.

/// Per-subscription rewrite state.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// Offset added to incoming extended sequence numbers of the current source.
    seq_offset: i64,
    /// Offset added (mod 2^32) to incoming RTP timestamps of the current source.
    ts_offset: u32,
    /// Highest outgoing sequence number so far, and the timestamp sent with it.
    last_out: Option<(u64, u32)>,
    /// Set when the next packet begins a new source (first packet ever or a switch).
    rebase_pending: bool,
    /// First outgoing sequence number of the current source: anything below was used by an earlier one.
    source_start: u64,
    started: bool,
}

/// Where a packet goes on the outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u64,
    pub ts: u32,
}

impl Rewriter {
    pub fn new() -> Self {
        Self {
            rebase_pending: true,
            ..Self::default()
        }
    }

    /// The next packet comes from a new source (layer switch or a publisher restart): continue the
    /// outgoing stream from where it is, `ts_gap` RTP ticks after the last packet sent.
    pub fn switch_source(&mut self) {
        self.rebase_pending = true;
    }

    /// Map one incoming packet. Returns `None` for a packet older than the start of the current source
    /// (it would go out with a sequence number already used).
    pub fn rewrite(&mut self, in_seq: u64, in_ts: u32, ts_gap: u32) -> Option<Rewritten> {
        if self.rebase_pending {
            self.rebase_pending = false;
            match self.last_out {
                None => {
                    // Start low: the subscriber's SRTP rollover counter starts at zero.
                    self.seq_offset = i64::from(in_seq as u16) - in_seq as i64;
                    self.ts_offset = 0;
                }
                Some((seq, ts)) => {
                    self.seq_offset = (seq + 1) as i64 - in_seq as i64;
                    self.ts_offset = ts.wrapping_add(ts_gap).wrapping_sub(in_ts);
                    self.source_start = seq + 1;
                }
            }
            self.started = true;
        }
        let out = in_seq as i64 + self.seq_offset;
        if out < 0 {
            return None;
        }
        let out = out as u64;
        // Retransmissions and reordering within the current source are fine; anything from before
        // its first packet would reuse a number an earlier source sent.
        if out < self.source_start {
            return None;
        }
        let ts = in_ts.wrapping_add(self.ts_offset);
        match self.last_out {
            Some((last, _)) if out <= last => {}
            _ => self.last_out = Some((out, ts)),
        }
        Some(Rewritten { seq: out, ts })
    }

    pub fn has_started(&self) -> bool {
        self.started
    }

    /// For a retransmission: the incoming sequence number behind outgoing `out_seq` (the 16 bits a NACK
    /// names), if it belongs to the current source and was sent.
    pub fn source_seq(&self, out_seq: u16) -> Option<u64> {
        let (last, _) = self.last_out?;
        // The extended number nearest the last one sent with these low 16 bits.
        let base = (last & !0xffff) | u64::from(out_seq);
        let out = if base > last + 0x8000 && base >= 0x10000 {
            base - 0x10000
        } else if base + 0x8000 < last {
            base + 0x10000
        } else {
            base
        };
        if out < self.source_start || out > last {
            return None;
        }
        u64::try_from(out as i64 - self.seq_offset).ok()
    }

    /// The outgoing timestamp of an incoming one of the current source.
    pub fn out_timestamp(&self, in_ts: u32) -> u32 {
        in_ts.wrapping_add(self.ts_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retransmission_finds_its_source_packet_in_the_current_source_only() {
        let mut r = Rewriter::new();
        for i in 0..10u64 {
            r.rewrite(70_000 + i, 1000 + i as u32 * 3000, 3000).unwrap();
        }
        // 70 000 started at 70 000 mod 65 536 = 4464.
        assert_eq!(r.source_seq(4464), Some(70_000));
        assert_eq!(r.source_seq(4473), Some(70_009));
        assert_eq!(r.source_seq(4474), None, "not sent yet");
        assert_eq!(r.out_timestamp(1000), 1000);
        r.switch_source();
        let first = r.rewrite(500, 90, 3000).unwrap();
        assert_eq!(first.seq, 4474);
        assert_eq!(r.source_seq(4474), Some(500));
        assert_eq!(r.source_seq(4473), None, "an earlier source's packet");
        assert_eq!(r.out_timestamp(90), first.ts);
    }

    #[test]
    fn source_seq_unwraps_across_the_16_bit_boundary() {
        let mut r = Rewriter::new();
        for i in 0..10u64 {
            r.rewrite(65_530 + i, 0, 3000).unwrap();
        }
        assert_eq!(r.source_seq(65_535), Some(65_535));
        assert_eq!(r.source_seq(3), Some(65_539));
    }

    #[test]
    fn first_packet_starts_below_65536_and_keeps_spacing() {
        let mut r = Rewriter::new();
        let a = r.rewrite(5 * 65536 + 100, 1000, 3000).unwrap();
        assert_eq!(a.seq, 100);
        assert_eq!(a.ts, 1000);
        let b = r.rewrite(5 * 65536 + 102, 4000, 3000).unwrap();
        assert_eq!(b.seq, 102);
        assert_eq!(b.ts, 4000);
        // A reordered/retransmitted packet keeps its place.
        assert_eq!(r.rewrite(5 * 65536 + 101, 4000, 3000).unwrap().seq, 101);
    }

    #[test]
    fn switching_source_continues_the_stream() {
        let mut r = Rewriter::new();
        r.rewrite(10, 90_000, 3000).unwrap();
        let last = r.rewrite(11, 93_000, 3000).unwrap();
        r.switch_source();
        // The new layer has unrelated numbering.
        let n = r.rewrite(40_000, 7, 3000).unwrap();
        assert_eq!(n.seq, last.seq + 1);
        assert_eq!(n.ts, last.ts + 3000);
        let n2 = r.rewrite(40_001, 3007, 3000).unwrap();
        assert_eq!(n2.seq, last.seq + 2);
        assert_eq!(n2.ts, last.ts + 6000);
        // A straggler of the new source from before its first packet is refused, even one just before.
        assert!(r.rewrite(38_000, 0, 3000).is_none());
        assert!(r.rewrite(39_999, 0, 3000).is_none());
    }

    #[test]
    fn timestamps_wrap() {
        let mut r = Rewriter::new();
        r.rewrite(1, u32::MAX - 10, 960).unwrap();
        assert_eq!(r.rewrite(2, 949, 960).unwrap().ts, 949);
    }
}
