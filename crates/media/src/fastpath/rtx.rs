//! Retransmissions on the fast path: a history of each video layer's recent incoming packets, kept once
//! per publisher layer (not per subscriber), from which a subscriber's NACK is answered as RTX
//! (RFC 4588: the original sequence number, then the original payload, on the RTX stream).
//!
//! Only packets the fast path forwarded are kept: a layer nobody receives is never asked for.
//!
//! A subscriber's NACK names its own (rewritten) sequence numbers; its subscription's rewriter maps them
//! back to the layer's (`convene_core::rewrite::Rewriter::source_seq`). Keeping the payloads once per
//! layer costs one copy per received packet; a per-subscriber history (str0m's way) keeps one per
//! forwarded packet.
//!
//! The history copies payloads into buffers it reuses: a packet that ages out gives its buffer to the
//! next one, so in steady state it allocates nothing, and it holds what [`MAX_AGE`] of the layer's
//! traffic takes (the same as keeping the received buffers would).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most packets a layer's history holds: a 150 KB screen-share keyframe is about 140 packets, a
/// 2.5 Mbit/s camera layer sends about 280 a second.
const MAX_PACKETS: usize = 1024;
/// How old a packet may be and still be resent: long enough for a second of queue on a slow link
/// (see `a_deep_queued_slow_link_keeps_the_picture_going`).
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// One incoming packet, as much of it as a retransmission needs.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The layer's extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub arrival: Instant,
}

/// See the module docs. Empty (and without buffers) until the first packet.
#[derive(Debug, Default)]
pub struct PacketHistory {
    /// Ordered by sequence number (packets arrive in order, or nearly: a late one is put in place).
    packets: VecDeque<Stored>,
    /// Buffers of packets that aged out, for the next ones.
    spare: Vec<Vec<u8>>,
}

impl PacketHistory {
    /// Keeps a copy of a packet of the layer; a packet with a sequence number already held replaces it.
    pub fn insert(&mut self, seq: u64, timestamp: u32, marker: bool, payload: &[u8], now: Instant) {
        while let Some(front) = self.packets.front() {
            if self.packets.len() < MAX_PACKETS
                && now.saturating_duration_since(front.arrival) <= MAX_AGE
            {
                break;
            }
            if let Some(old) = self.packets.pop_front() {
                self.spare.push(old.payload);
            }
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        let stored = Stored {
            seq,
            timestamp,
            marker,
            payload: buf,
            arrival: now,
        };
        match self.packets.back() {
            Some(last) if last.seq >= seq => {
                match self.packets.binary_search_by_key(&seq, |p| p.seq) {
                    Ok(i) => {
                        let old = std::mem::replace(&mut self.packets[i], stored);
                        self.spare.push(old.payload);
                    }
                    Err(i) => self.packets.insert(i, stored),
                }
            }
            _ => self.packets.push_back(stored),
        }
    }

    /// Packets held now (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.packets.len()
    }

    /// The packet with extended sequence number `seq`, if still held and younger than [`MAX_AGE`].
    pub fn get(&self, seq: u64, now: Instant) -> Option<&Stored> {
        let i = self.packets.binary_search_by_key(&seq, |p| p.seq).ok()?;
        let stored = &self.packets[i];
        (now.saturating_duration_since(stored.arrival) <= MAX_AGE).then_some(stored)
    }
}

/// The RTX payload of `original`: its outgoing sequence number, then its payload.
pub fn rtx_payload(out_seq: u16, original: &[u8], buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&out_seq.to_be_bytes());
    buf.extend_from_slice(original);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(h: &mut PacketHistory, seq: u64, at: Instant) {
        h.insert(seq, seq as u32 * 3000, false, &[seq as u8; 10], at);
    }

    #[test]
    fn holds_recent_packets_by_sequence_number() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        assert!(h.get(5, t0).is_none());
        for seq in 100..200 {
            insert(&mut h, seq, t0);
        }
        assert_eq!(h.get(150, t0).map(|p| p.payload[0]), Some(150));
        assert_eq!(h.get(150, t0).map(|p| p.payload.len()), Some(10));
        assert!(h.get(99, t0).is_none());
        // Too old to be worth resending.
        assert!(
            h.get(151, t0 + MAX_AGE + Duration::from_millis(1))
                .is_none()
        );
    }

    /// A packet that arrives late (reordered, or repaired by the publisher) is found like the others.
    #[test]
    fn a_late_packet_is_put_in_place() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        for seq in [1, 2, 4, 5, 3] {
            insert(&mut h, seq, t0);
        }
        for seq in 1..=5 {
            assert_eq!(h.get(seq, t0).map(|p| p.seq), Some(seq));
        }
        // The same number again replaces the packet rather than adding one.
        h.insert(4, 0, true, &[9], t0);
        assert_eq!(h.len(), 5);
        assert_eq!(
            h.get(4, t0).map(|p| (p.marker, p.payload.clone())),
            Some((true, vec![9]))
        );
    }

    /// At most [`MAX_PACKETS`] are held, whatever their age.
    #[test]
    fn the_history_is_bounded_in_packets() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        for seq in 0..3000 {
            insert(&mut h, seq, t0);
        }
        assert_eq!(h.len(), MAX_PACKETS);
        assert!(h.get(2999, t0).is_some());
        assert!(h.get(3000 - MAX_PACKETS as u64 - 1, t0).is_none());
    }

    /// A slow layer's old packets are let go as new ones arrive, not kept until their slot is reused.
    #[test]
    fn packets_past_the_age_limit_are_released() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        // 20 packets a second for 10 s: only the last 2 s (40 packets, and the one at the edge) stay.
        for i in 0..200u64 {
            insert(&mut h, i, t0 + Duration::from_millis(i * 50));
        }
        assert!((40..=41).contains(&h.len()), "{}", h.len());
        assert!(h.get(199, t0 + Duration::from_millis(199 * 50)).is_some());
    }

    #[test]
    fn the_rtx_payload_leads_with_the_original_sequence_number() {
        let mut buf = Vec::new();
        rtx_payload(0xbeef, &[1, 2, 3], &mut buf);
        assert_eq!(buf, vec![0xbe, 0xef, 1, 2, 3]);
    }
}
