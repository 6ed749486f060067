//! DTMF from room systems, both ways they send it: RFC 4733 telephone-events in the RTP stream and
//! SIP INFO `application/dtmf-relay` (and the rarer `application/dtmf`), plus the IVR's digit
//! collector. Pure functions and plain state: no clock of its own.

use std::time::{Duration, Instant};

/// A DTMF key.
pub fn digit_of_event(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

/// The parts of an RTP packet DTMF needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpEvent {
    pub timestamp: u32,
    pub digit: char,
    pub end: bool,
}

/// Read an RFC 4733 event out of an RTP packet with payload type `pt` (None: another payload type,
/// or not an event we know).
pub fn rtp_event(packet: &[u8], pt: u8) -> Option<RtpEvent> {
    if packet.len() < 12 || packet[0] >> 6 != 2 || packet[1] & 0x7f != pt {
        return None;
    }
    let csrcs = usize::from(packet[0] & 0x0f) * 4;
    let mut offset = 12 + csrcs;
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(offset + 2..offset + 4)?;
        offset += 4 + usize::from(u16::from_be_bytes([ext[0], ext[1]])) * 4;
    }
    let payload = packet.get(offset..offset + 4)?;
    let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    Some(RtpEvent {
        timestamp,
        digit: digit_of_event(payload[0])?,
        end: payload[1] & 0x80 != 0,
    })
}

/// The digit in a SIP INFO body of type `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (just the digit).
pub fn info_digit(content_type: &str, body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let mime = content_type.split(';').next()?.trim();
    let signal = if mime.eq_ignore_ascii_case("application/dtmf-relay") {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if mime.eq_ignore_ascii_case("application/dtmf") {
        text.trim()
    } else {
        return None;
    };
    match signal {
        "10" => Some('*'),
        "11" => Some('#'),
        s if s.len() == 1 => {
            let c = s.chars().next()?.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => None,
    }
}

/// Turns the repeated packets of RFC 4733 events into single key presses: one event is many packets
/// with the same timestamp (updates, then three end packets), so a digit counts once per timestamp.
#[derive(Debug, Default)]
pub struct EventDeduper {
    last: Option<u32>,
}

impl EventDeduper {
    pub fn key_press(&mut self, event: RtpEvent) -> Option<char> {
        if self.last == Some(event.timestamp) {
            return None;
        }
        self.last = Some(event.timestamp);
        Some(event.digit)
    }
}

/// What the IVR makes of a key press.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Still typing.
    Pending,
    /// `#` ended an entry: these digits (without the `#`).
    Entered(String),
}

/// Collects one meeting ID at a time, ended by `#`; `*` starts over. Tries are counted by the caller.
#[derive(Debug)]
pub struct Collector {
    digits: String,
    /// When the current try gives up if no `#` comes.
    deadline: Instant,
    timeout: Duration,
}

/// Longest entry kept: a meeting ID is 10 digits, anything much longer is a stuck key.
const MAX_DIGITS: usize = 32;

impl Collector {
    pub fn new(now: Instant, timeout: Duration) -> Self {
        Self {
            digits: String::new(),
            deadline: now + timeout,
            timeout,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A key press at `now`.
    pub fn press(&mut self, now: Instant, key: char) -> Entry {
        self.deadline = now + self.timeout;
        match key {
            '#' => Entry::Entered(std::mem::take(&mut self.digits)),
            '*' => {
                self.digits.clear();
                Entry::Pending
            }
            d if d.is_ascii_digit() && self.digits.len() < MAX_DIGITS => {
                self.digits.push(d);
                Entry::Pending
            }
            _ => Entry::Pending,
        }
    }

    /// Start a new try.
    pub fn reset(&mut self, now: Instant) {
        self.digits.clear();
        self.deadline = now + self.timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_events_and_info_bodies() {
        let mut p = vec![0x80, 101, 0, 1, 0, 0, 0x10, 0, 1, 2, 3, 4, 5, 0x8a, 0, 160];
        assert_eq!(
            rtp_event(&p, 101),
            Some(RtpEvent {
                timestamp: 0x1000,
                digit: '5',
                end: true
            })
        );
        assert_eq!(rtp_event(&p, 100), None);
        p[12] = 11;
        assert_eq!(rtp_event(&p, 101).map(|e| e.digit), Some('#'));
        assert_eq!(rtp_event(&p[..14], 101), None);
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal= #\r\n"),
            Some('#')
        );
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal=11"),
            Some('#')
        );
        assert_eq!(info_digit("application/dtmf", b"7"), Some('7'));
        assert_eq!(info_digit("application/dtmf-relay", b"Signal=x"), None);
        assert_eq!(info_digit("text/plain", b"Signal=1"), None);
        assert_eq!(info_digit("application/dtmf-relay", &[0xff, 0xfe]), None);
    }
}
