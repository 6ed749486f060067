//! A jitter buffer for one RTP stream: reorders by sequence number, holds a small target delay,
//! drops what comes too late, and says when a frame is missing so the decoder can conceal it.
//!
//! Playout is pulled: the bridge asks for the next packet whenever its 20 ms tick needs more audio
//! ([`JitterBuffer::pop`]), so the playout clock is the caller's tick, and packets of any duration
//! (10, 20, 60 ms) work. The delay adapts per talkspurt, the way a VoIP buffer usually does: after the
//! first packet (and after every pause) playout waits until [`TARGET_DELAY`] of audio is buffered
//! (by RTP timestamps) or the first packet has waited that long, so each talkspurt starts with the
//! same cushion; a short underrun in the middle of speech is concealed and lets the delay grow by
//! that much instead of dropping the packet that was merely late; a buffer that grew past
//! [`MAX_DELAY`] (a device clock running fast, a burst after a stall) drops its oldest packets.
//!
//! What a missing frame means depends on context, and [`Playout`] says which: a gap in the sequence
//! while later packets are here is a loss ([`Playout::Lost`], conceal it, Opus may recover it from
//! the next packet's FEC); an empty buffer is a loss for the first [`CONCEAL_LIMIT`] frames and then
//! a pause ([`Playout::Silence`]): a browser's Opus DTX or a room system's VAD stops sending while
//! nobody talks, and concealing seconds of that would be a drone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Audio buffered before a talkspurt starts playing.
pub const TARGET_DELAY: Duration = Duration::from_millis(60);

/// More than this buffered and the oldest packets are dropped.
pub const MAX_DELAY: Duration = Duration::from_millis(300);

/// Most packets held at once, whatever their timestamps say (garbage timestamps must not let the
/// buffer grow without bound).
pub const MAX_PACKETS: usize = 64;

/// Empty-buffer frames concealed before playout counts the stream as paused.
pub const CONCEAL_LIMIT: u32 = 2;

/// A sequence number this far from the newest is a new stream (the device restarted its sender),
/// not a late or early packet.
const RESTART_DISTANCE: i64 = 1000;

/// A consecutive run of lost packets longer than this is skipped at once rather than concealed
/// frame by frame (which would only add delay).
const MAX_CONCEALED_RUN: u64 = 5;

/// What a packet did on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered for playout.
    Accepted,
    /// Its turn has passed (or the buffer was too deep for it); dropped.
    Late,
    /// Already buffered; dropped.
    Duplicate,
}

/// What to play next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The next packet's payload.
    Packet(Vec<u8>),
    /// A frame is missing in the middle of speech: conceal one frame.
    Lost,
    /// Nothing to play: not started, or the sender paused.
    Silence,
}

/// Counters of one buffer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub accepted: u64,
    pub late: u64,
    pub duplicate: u64,
    /// Dropped because the buffer was deeper than [`MAX_DELAY`] or [`MAX_PACKETS`].
    pub overflow: u64,
    /// Sequence gaps reported as [`Playout::Lost`] (underruns are not counted here).
    pub lost: u64,
}

#[derive(Debug)]
struct Slot {
    timestamp: u32,
    payload: Vec<u8>,
}

/// The buffer of one stream. Sequence numbers are extended to 64 bits so wrap-around needs no care.
#[derive(Debug)]
pub struct JitterBuffer {
    clock: u32,
    packets: BTreeMap<u64, Slot>,
    highest: Option<u64>,
    /// The next sequence number to play (a floor for late packets once playout has started).
    next: Option<u64>,
    playing: bool,
    /// When the current talkspurt's first packet arrived, while waiting to start.
    buffering_since: Option<Instant>,
    /// Consecutive pops that found the buffer empty.
    underruns: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer for a stream whose RTP clock runs at `clock` Hz.
    pub fn new(clock: u32) -> Self {
        Self {
            clock: clock.max(1),
            packets: BTreeMap::new(),
            highest: None,
            next: None,
            playing: false,
            buffering_since: None,
            underruns: 0,
            stats: JitterStats::default(),
        }
    }

    /// Forget everything but the counters (a new stream: another SSRC, a restarted sender).
    pub fn reset(&mut self) {
        *self = Self {
            stats: self.stats,
            ..Self::new(self.clock)
        };
    }

    /// The counters so far.
    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Vec<u8>) -> Pushed {
        let seq = match self.highest {
            None => (1u64 << 32) + u64::from(seq),
            Some(highest) => {
                let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
                if delta.abs() > RESTART_DISTANCE {
                    self.reset();
                    (1u64 << 32) + u64::from(seq)
                } else {
                    highest.saturating_add_signed(delta)
                }
            }
        };
        if self.next.is_some_and(|next| seq < next) {
            self.stats.late += 1;
            return Pushed::Late;
        }
        if self.packets.contains_key(&seq) {
            self.stats.duplicate += 1;
            return Pushed::Duplicate;
        }
        self.packets.insert(seq, Slot { timestamp, payload });
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        if !self.playing && self.buffering_since.is_none() {
            self.buffering_since = Some(now);
        }
        self.stats.accepted += 1;
        self.trim();
        // The packet itself may have been the one trimmed (far older than the rest).
        if self.packets.contains_key(&seq) {
            Pushed::Accepted
        } else {
            Pushed::Late
        }
    }

    /// The next thing to play; call it whenever the decoder needs another frame.
    pub fn pop(&mut self, now: Instant) -> Playout {
        if !self.playing && !self.start(now) {
            return Playout::Silence;
        }
        let Some(next) = self.next else {
            return Playout::Silence;
        };
        let Some(&first) = self.packets.keys().next() else {
            self.underruns += 1;
            if self.underruns <= CONCEAL_LIMIT {
                return Playout::Lost;
            }
            // A pause: the next talkspurt buffers its cushion again.
            self.playing = false;
            return Playout::Silence;
        };
        self.underruns = 0;
        if first == next {
            self.next = Some(next + 1);
            return match self.packets.remove(&first) {
                Some(slot) => Playout::Packet(slot.payload),
                None => Playout::Silence,
            };
        }
        // first > next: `push` refuses anything below `next`.
        let gap = first - next;
        self.stats.lost += 1;
        self.next = Some(if gap > MAX_CONCEALED_RUN {
            self.stats.lost += gap - 1;
            first
        } else {
            next + 1
        });
        Playout::Lost
    }

    /// After [`Playout::Lost`], the payload of the packet that follows the lost one, if it is here
    /// (Opus carries a low-bitrate copy of the previous frame in it: in-band FEC).
    pub fn next_payload(&self) -> Option<&[u8]> {
        let next = self.next?;
        self.packets.get(&next).map(|s| s.payload.as_slice())
    }

    /// Whether a talkspurt may start playing now.
    fn start(&mut self, now: Instant) -> bool {
        let (Some((&first, oldest)), Some(newest)) = (
            self.packets.first_key_value(),
            self.packets.last_key_value(),
        ) else {
            return false;
        };
        let waited = self
            .buffering_since
            .is_some_and(|since| now.saturating_duration_since(since) >= TARGET_DELAY);
        // Audio buffered: the timestamp span plus the newest packet's own 20 ms.
        let frame = Duration::from_millis(20);
        let buffered = self.duration(newest.1.timestamp.wrapping_sub(oldest.timestamp)) + frame;
        if !waited && buffered < TARGET_DELAY {
            return false;
        }
        self.playing = true;
        self.buffering_since = None;
        self.underruns = 0;
        // Whatever was missing before the talkspurt (packets lost in the pause) is not concealed.
        self.next = Some(self.next.map_or(first, |next| next.max(first)));
        true
    }

    /// Drop the oldest packets while the buffer is too deep.
    fn trim(&mut self) {
        loop {
            let (Some((&first, oldest)), Some(newest)) = (
                self.packets.first_key_value(),
                self.packets.last_key_value(),
            ) else {
                return;
            };
            let span = self.duration(newest.1.timestamp.wrapping_sub(oldest.timestamp));
            if self.packets.len() <= MAX_PACKETS && span <= MAX_DELAY {
                return;
            }
            self.packets.remove(&first);
            self.stats.overflow += 1;
            self.next = Some(self.next.map_or(first + 1, |n| n.max(first + 1)));
        }
    }

    /// A timestamp difference as a duration; backwards (reordered or garbage) counts as zero.
    fn duration(&self, ticks: u32) -> Duration {
        let ticks = ticks as i32;
        if ticks <= 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(ticks as u64 * 1_000_000 / u64::from(self.clock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u32 = 160;

    fn payload(seq: u16) -> Vec<u8> {
        seq.to_be_bytes().to_vec()
    }

    fn push(jb: &mut JitterBuffer, now: Instant, seq: u16) -> Pushed {
        jb.push(now, seq, u32::from(seq) * STEP, payload(seq))
    }

    /// Pops until the buffer gives a packet or `limit` pops, returning what came out as seqs
    /// (None for Lost, skipping Silence).
    fn drain(jb: &mut JitterBuffer, now: Instant, pops: usize) -> Vec<Option<u16>> {
        let mut out = Vec::new();
        for _ in 0..pops {
            match jb.pop(now) {
                Playout::Packet(p) => out.push(Some(u16::from_be_bytes([p[0], p[1]]))),
                Playout::Lost => out.push(None),
                Playout::Silence => {}
            }
        }
        out
    }

    #[test]
    fn waits_for_the_target_delay_then_plays_in_order() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        push(&mut jb, t, 10);
        push(&mut jb, t, 11);
        assert_eq!(jb.pop(t), Playout::Silence, "40 ms buffered, target 60");
        push(&mut jb, t, 12);
        assert_eq!(drain(&mut jb, t, 3), [Some(10), Some(11), Some(12)]);
        // Or the first packet waited long enough.
        let mut jb = JitterBuffer::new(8000);
        push(&mut jb, t, 10);
        assert_eq!(jb.pop(t + Duration::from_millis(59)), Playout::Silence);
        assert_eq!(jb.pop(t + TARGET_DELAY), Playout::Packet(payload(10)));
    }

    #[test]
    fn reorders_and_drops_late_and_duplicate_packets() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        for seq in [1, 3, 2, 0] {
            assert_eq!(push(&mut jb, t, seq), Pushed::Accepted);
        }
        assert_eq!(push(&mut jb, t, 2), Pushed::Duplicate);
        assert_eq!(drain(&mut jb, t, 2), [Some(0), Some(1)]);
        assert_eq!(push(&mut jb, t, 1), Pushed::Late);
        assert_eq!(drain(&mut jb, t, 2), [Some(2), Some(3)]);
        assert_eq!(
            *jb.stats(),
            JitterStats {
                accepted: 4,
                late: 1,
                duplicate: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_gap_is_a_loss_with_the_next_payload_for_fec() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        for seq in [0, 1, 3, 4] {
            push(&mut jb, t, seq);
        }
        assert_eq!(drain(&mut jb, t, 2), [Some(0), Some(1)]);
        assert_eq!(jb.pop(t), Playout::Lost);
        assert_eq!(jb.next_payload(), Some(&payload(3)[..]));
        assert_eq!(drain(&mut jb, t, 2), [Some(3), Some(4)]);
        assert_eq!(jb.stats().lost, 1);
        // 2 arriving now is too late.
        assert_eq!(push(&mut jb, t, 2), Pushed::Late);
    }

    #[test]
    fn a_long_gap_is_skipped_not_concealed_frame_by_frame() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        for seq in [0, 1, 2] {
            push(&mut jb, t, seq);
        }
        assert_eq!(drain(&mut jb, t, 3), [Some(0), Some(1), Some(2)]);
        for seq in [9, 10, 11] {
            push(&mut jb, t, seq);
        }
        assert_eq!(drain(&mut jb, t, 4), [None, Some(9), Some(10), Some(11)]);
        assert_eq!(jb.stats().lost, 6);
    }

    #[test]
    fn an_empty_buffer_is_concealed_briefly_then_silence_then_rebuffers() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(48000);
        let push48 =
            |jb: &mut JitterBuffer, seq: u16| jb.push(t, seq, u32::from(seq) * 960, payload(seq));
        for seq in 0..3 {
            push48(&mut jb, seq);
        }
        assert_eq!(drain(&mut jb, t, 3).len(), 3);
        // DTX: the sender stops. Two frames of concealment, then silence.
        assert_eq!(jb.pop(t), Playout::Lost);
        assert_eq!(jb.pop(t), Playout::Lost);
        for _ in 0..100 {
            assert_eq!(jb.pop(t), Playout::Silence);
        }
        // Talk resumes (DTX keeps sequence numbers contiguous): the cushion is buffered again.
        push48(&mut jb, 3);
        assert_eq!(jb.pop(t), Playout::Silence);
        push48(&mut jb, 4);
        push48(&mut jb, 5);
        assert_eq!(drain(&mut jb, t, 3), [Some(3), Some(4), Some(5)]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn a_short_underrun_keeps_the_late_packet() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        for seq in 0..3 {
            push(&mut jb, t, seq);
        }
        assert_eq!(drain(&mut jb, t, 3).len(), 3);
        assert_eq!(jb.pop(t), Playout::Lost);
        assert_eq!(push(&mut jb, t, 3), Pushed::Accepted);
        assert_eq!(drain(&mut jb, t, 1), [Some(3)]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        let seqs = [65534u16, 65535, 0, 1, 2];
        for (i, &seq) in seqs.iter().enumerate() {
            jb.push(t, seq, i as u32 * STEP, payload(seq));
        }
        assert_eq!(
            drain(&mut jb, t, 5),
            seqs.iter().map(|&s| Some(s)).collect::<Vec<_>>()
        );
        assert_eq!(push(&mut jb, t, 65535), Pushed::Late);
    }

    #[test]
    fn depth_is_bounded() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        for seq in 0..100 {
            push(&mut jb, t, seq);
        }
        // 300 ms of 20 ms packets: the span from first to last is at most 300 ms.
        assert_eq!(jb.len(), 16);
        assert_eq!(jb.stats().overflow, 84);
        assert_eq!(drain(&mut jb, t, 1), [Some(84)]);
        // Garbage timestamps cannot defeat the bound.
        let mut jb = JitterBuffer::new(8000);
        for seq in 0..200u16 {
            jb.push(t, seq, 0, payload(seq));
        }
        assert_eq!(jb.len(), MAX_PACKETS);
    }

    #[test]
    fn a_sequence_jump_is_a_new_stream() {
        let t = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        for seq in 0..3 {
            push(&mut jb, t, seq);
        }
        assert_eq!(drain(&mut jb, t, 3).len(), 3);
        for seq in 30000..30003 {
            assert_eq!(push(&mut jb, t, seq), Pushed::Accepted);
        }
        assert_eq!(
            drain(&mut jb, t, 3),
            [Some(30000), Some(30001), Some(30002)]
        );
    }
}
