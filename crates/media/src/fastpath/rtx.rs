//! Retransmissions on the fast path: a history of each video layer's recent incoming packets, kept once
//! per publisher layer (not per subscriber), from which a subscriber's NACK is answered as RTX
//! (RFC 4588: the original sequence number, then the original payload, on the RTX stream).
//!
//! A subscriber's NACK names its own (rewritten) sequence numbers; its subscription's rewriter maps them
//! back to the layer's (`convene_core::rewrite::Rewriter::source_seq`). Keeping the payloads once per
//! layer costs one reference count per received packet and no copy; a per-subscriber history (str0m's
//! way) keeps one per forwarded packet.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packets a layer's history holds: a 150 KB screen-share keyframe is about 140 packets, a 2.5 Mbit/s
/// camera layer sends about 280 a second.
const SLOTS: usize = 1024;
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
    pub payload: Arc<[u8]>,
    pub arrival: Instant,
}

/// See the module docs. Empty (and without its slots allocated) until the first packet.
#[derive(Debug, Default)]
pub struct PacketHistory {
    slots: Vec<Option<Stored>>,
    /// What was inserted, oldest first: packets past [`MAX_AGE`] are let go (a slow layer would
    /// otherwise keep a thousand packets, most of a minute of payloads).
    order: VecDeque<(u64, Instant)>,
}

impl PacketHistory {
    pub fn insert(&mut self, packet: Stored) {
        if self.slots.is_empty() {
            self.slots.resize(SLOTS, None);
            self.order.reserve_exact(SLOTS);
        }
        while let Some(&(seq, at)) = self.order.front() {
            if self.order.len() < SLOTS && packet.arrival.saturating_duration_since(at) <= MAX_AGE {
                break;
            }
            self.order.pop_front();
            let slot = &mut self.slots[seq as usize % SLOTS];
            if slot.as_ref().is_some_and(|s| s.seq == seq) {
                *slot = None;
            }
        }
        self.order.push_back((packet.seq, packet.arrival));
        let slot = packet.seq as usize % SLOTS;
        self.slots[slot] = Some(packet);
    }

    /// Packets held now (a count over every slot: for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The packet with extended sequence number `seq`, if still held and younger than [`MAX_AGE`].
    pub fn get(&self, seq: u64, now: Instant) -> Option<&Stored> {
        let stored = self.slots.get(seq as usize % SLOTS)?.as_ref()?;
        (stored.seq == seq && now.saturating_duration_since(stored.arrival) <= MAX_AGE)
            .then_some(stored)
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

    fn stored(seq: u64, at: Instant) -> Stored {
        Stored {
            seq,
            timestamp: seq as u32 * 3000,
            marker: false,
            payload: Arc::from(vec![seq as u8; 10]),
            arrival: at,
        }
    }

    #[test]
    fn holds_recent_packets_by_sequence_number() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        assert!(h.get(5, t0).is_none());
        for seq in 100..200 {
            h.insert(stored(seq, t0));
        }
        assert_eq!(h.get(150, t0).map(|p| p.payload[0]), Some(150));
        assert!(h.get(99, t0).is_none());
        // A newer packet in the same slot replaces it.
        h.insert(stored(150 + SLOTS as u64, t0));
        assert!(h.get(150, t0).is_none());
        // Too old to be worth resending.
        assert!(
            h.get(151, t0 + MAX_AGE + Duration::from_millis(1))
                .is_none()
        );
    }

    /// A slow layer's old packets are let go as new ones arrive, not kept until their slot is reused.
    #[test]
    fn packets_past_the_age_limit_are_released() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        // 20 packets a second for 10 s: only the last 2 s (40 packets, and the one at the edge) stay.
        for i in 0..200u64 {
            h.insert(stored(i, t0 + Duration::from_millis(i * 50)));
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
