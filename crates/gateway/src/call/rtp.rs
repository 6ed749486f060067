//! What arrives on a call's RTP port: telephone-events for the IVR, and per-call reception statistics
//! (packets, loss, interarrival jitter as RFC 3550 §6.4.1 and A.8 define them) for operators, until the
//! audio path takes the packets over.

use super::*;

/// The fixed header fields we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
}

impl RtpHeader {
    /// None if it is not RTP version 2 with a whole fixed header.
    pub fn read(packet: &[u8]) -> Option<Self> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return None;
        }
        Some(Self {
            payload_type: packet[1] & 0x7f,
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        })
    }

    /// RTCP sent on the RTP port (RFC 5761 demultiplexing: packet types 200-204 read as PT 72-76).
    pub fn is_rtcp(&self) -> bool {
        (72..=76).contains(&self.payload_type)
    }
}

/// Reception statistics of one call.
#[derive(Debug, Default, Clone)]
pub struct RtpStats {
    pub packets: u64,
    /// Packets missing from the sequence so far (late ones are counted back when they arrive).
    pub lost: u64,
    /// Interarrival jitter in timestamp units, scaled by 16 as in RFC 3550 A.8.
    jitter_x16: u64,
    highest: Option<u16>,
    /// Arrival and timestamp of the last packet, for the jitter.
    last: Option<(Instant, u32)>,
}

impl RtpStats {
    pub fn record(&mut self, now: Instant, header: &RtpHeader, clock: u32) {
        self.packets += 1;
        match self.highest {
            None => self.highest = Some(header.sequence),
            Some(highest) => {
                let ahead = header.sequence.wrapping_sub(highest);
                if ahead != 0 && ahead < 0x8000 {
                    self.lost += u64::from(ahead - 1);
                    self.highest = Some(header.sequence);
                } else if ahead != 0 {
                    // Late (reordered): it was counted lost when the gap opened.
                    self.lost = self.lost.saturating_sub(1);
                }
            }
        }
        if let Some((arrived, timestamp)) = self.last {
            let elapsed = now.saturating_duration_since(arrived).as_secs_f64() * f64::from(clock);
            let spacing = f64::from(header.timestamp.wrapping_sub(timestamp) as i32);
            let d = (elapsed - spacing).abs().min(f64::from(u32::MAX)) as u64;
            // J += (|D| - J) / 16, kept scaled by 16 to stay in integers.
            self.jitter_x16 = self.jitter_x16 + d - self.jitter_x16 / 16;
        }
        self.last = Some((now, header.timestamp));
    }

    /// The jitter in milliseconds at `clock` Hz.
    pub fn jitter_ms(&self, clock: u32) -> f64 {
        if clock == 0 {
            return 0.0;
        }
        (self.jitter_x16 as f64 / 16.0) * 1000.0 / f64::from(clock)
    }
}

impl Gateway {
    /// An RTP packet that arrived on this call's port from `from`: DTMF events are read from it.
    /// The first source is latched (symmetric RTP: a device behind NAT sends from where it wants
    /// media); packets from any other address are ignored, so nobody else can key DTMF into a call.
    pub fn handle_rtp(&mut self, now: Instant, call: CallId, from: SocketAddr, packet: &[u8]) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.rtp_source {
            None => c.rtp_source = Some(from),
            Some(latched) if latched != from => {
                self.metrics
                    .refused
                    .with_label_values(&["rtp_foreign_source"])
                    .inc();
                return;
            }
            Some(_) => {}
        }
        let Some(header) = RtpHeader::read(packet) else {
            self.metrics.rtp_dropped.inc();
            return;
        };
        let clock = c.negotiated.as_ref().map_or(8000, |n| n.format.clock);
        // Telephone-events share the stream's sequence numbers; RTCP (muxed) does not count.
        if !header.is_rtcp() {
            let lost_before = c.rtp.lost;
            c.rtp.record(now, &header, clock);
            self.metrics.rtp_packets.inc();
            self.metrics
                .rtp_lost
                .inc_by(c.rtp.lost.saturating_sub(lost_before));
        }
        let Some(pt) = c.negotiated.as_ref().and_then(|n| n.telephone_event) else {
            return;
        };
        let Some(event) = dtmf::rtp_event(packet, pt) else {
            return;
        };
        if let Some(digit) = c.rtp_events.key_press(event) {
            self.metrics.dtmf_digits.with_label_values(&["rtp"]).inc();
            self.key(now, call, digit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(sequence: u16, timestamp: u32) -> RtpHeader {
        RtpHeader {
            payload_type: 0,
            sequence,
            timestamp,
        }
    }

    #[test]
    fn loss_counts_gaps_and_forgives_late_packets() {
        let mut s = RtpStats::default();
        let t = Instant::now();
        for seq in [65534u16, 65535, 0, 3, 2, 4] {
            s.record(t, &header(seq, 0), 8000);
        }
        // 1 and 2 missed at 3; 2 came late.
        assert_eq!((s.packets, s.lost), (6, 1));
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_wobble() {
        let mut s = RtpStats::default();
        let t0 = Instant::now();
        for i in 0..50u32 {
            s.record(
                t0 + Duration::from_millis(20 * u64::from(i)),
                &header(i as u16, 160 * i),
                8000,
            );
        }
        assert!(s.jitter_ms(8000) < 0.1, "{}", s.jitter_ms(8000));
        for i in 50..100u32 {
            let wobble = if i % 2 == 0 { 10 } else { 0 };
            s.record(
                t0 + Duration::from_millis(20 * u64::from(i) + wobble),
                &header(i as u16, 160 * i),
                8000,
            );
        }
        let j = s.jitter_ms(8000);
        assert!((3.0..=11.0).contains(&j), "{j}");
        assert!(
            RtpHeader::read(&[0x80, 200 & 0x7f | 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .is_some_and(|h| h.is_rtcp())
        );
        assert_eq!(RtpHeader::read(&[0x40; 12]), None);
    }
}
