//! N calls' bridges and one 20 ms round of their work, as each call's media task does it: the
//! device's RTP packet in, the meeting's voices in, one `tick()` out.
//!
//! A round takes the time it is for (`now`) from the caller, so the same code runs paced by the wall
//! clock in the benchmark and in simulated time in the tests. Packets arrive exactly on time: the
//! jitter buffers see no jitter, which is the bridge's cheapest steady state, not a flattering one
//! (a late packet costs a concealment instead of a decode, about the same).

use std::time::Instant;

use convene_gateway::audio::codec::rtp_clock;
use convene_gateway::audio::{AudioBridge, AudioError, BridgeStats, DeviceAudio};

use crate::streams::{DeviceStream, LOOP_FRAMES, MeetingStream};

/// The 12-byte RTP header a device sends: version 2, no padding, extension or CSRCs.
const RTP_HEADER: usize = 12;

/// One call: its bridge and the state of the device's RTP stream feeding it.
#[derive(Debug)]
struct Call {
    bridge: AudioBridge,
    ssrc: u32,
    first_seq: u16,
    first_timestamp: u32,
    /// Where in the loops this call starts, so calls do not code identical frames in lockstep.
    offset: usize,
    /// Per meeting voice, the RTP sequence number of its next packet (a browser in DTX numbers only
    /// the packets it sends; the timestamps jump).
    meeting_seq: Vec<u16>,
    packet: Vec<u8>,
    to_device: Vec<u8>,
}

/// What came out of the bridges, summed over calls and rounds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Flow {
    /// RTP packets written for the devices.
    pub to_device: u64,
    pub bytes_to_device: u64,
    /// Opus frames returned for the meeting.
    pub to_meeting: u64,
    /// Of those, frames flagged as speech.
    pub to_meeting_voice: u64,
    pub bytes_to_meeting: u64,
}

impl std::ops::AddAssign for Flow {
    fn add_assign(&mut self, o: Self) {
        self.to_device += o.to_device;
        self.bytes_to_device += o.bytes_to_device;
        self.to_meeting += o.to_meeting;
        self.to_meeting_voice += o.to_meeting_voice;
        self.bytes_to_meeting += o.bytes_to_meeting;
    }
}

/// The bridges of N calls of one device codec, all in meetings with the same speakers.
#[derive(Debug)]
pub struct Calls {
    device: DeviceStream,
    meeting: MeetingStream,
    calls: Vec<Call>,
    /// Rounds run so far; every stream's position follows from it.
    round: u64,
    created: u64,
}

impl Calls {
    pub fn new(device: DeviceStream, meeting: MeetingStream) -> Self {
        Self {
            device,
            meeting,
            calls: Vec::new(),
            round: 0,
            created: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Speakers each call hears.
    pub fn speakers(&self) -> usize {
        self.meeting.speakers.len()
    }

    /// Hang up calls or answer new ones until there are `n`. New calls start in the middle of the
    /// streams (as a call joining a meeting does); their jitter buffers fill over the next rounds.
    pub fn resize(&mut self, n: usize) -> Result<(), AudioError> {
        self.calls.truncate(n);
        let device = DeviceAudio {
            codec: self.device.codec,
            payload_type: self.device.payload_type,
            clock: rtp_clock(self.device.codec),
            comfort_noise: None,
        };
        while self.calls.len() < n {
            let k = self.created;
            self.created += 1;
            let ssrc = 0x5100_0000 | k as u32;
            self.calls.push(Call {
                bridge: AudioBridge::new(device, ssrc.wrapping_add(1))?,
                ssrc,
                first_seq: (k as u16).wrapping_mul(7919),
                first_timestamp: (k as u32).wrapping_mul(104_729),
                offset: (k as usize * 37) % LOOP_FRAMES,
                meeting_seq: vec![0; self.meeting.speakers.len()],
                packet: Vec::with_capacity(RTP_HEADER + 2000),
                to_device: Vec::with_capacity(1500),
            });
        }
        Ok(())
    }

    /// One 20 ms round for every call, at `now`.
    pub fn round(&mut self, now: Instant) -> Flow {
        self.round_part(now, 0, 1)
    }

    /// Part `part` of `parts` of a 20 ms round, at `now`: the calls whose index is `part` modulo
    /// `parts` (calls that joined at different times tick at different phases of the 20 ms). The
    /// round is over after its last part.
    pub fn round_part(&mut self, now: Instant, part: usize, parts: usize) -> Flow {
        let mut flow = Flow::default();
        let r = self.round;
        if part + 1 >= parts {
            self.round += 1;
        }
        let step = u64::from(rtp_clock(self.device.codec) / 50);
        let parts = parts.max(1);
        for call in self.calls.iter_mut().skip(part).step_by(parts) {
            let at = (call.offset + r as usize) % LOOP_FRAMES;
            // The device's packet: its sequence number and timestamp advance from where it started.
            call.packet.clear();
            call.packet.push(0x80);
            call.packet.push(self.device.payload_type);
            let seq = call.first_seq.wrapping_add(r as u16);
            let timestamp = call.first_timestamp.wrapping_add((r * step) as u32);
            call.packet.extend_from_slice(&seq.to_be_bytes());
            call.packet.extend_from_slice(&timestamp.to_be_bytes());
            call.packet.extend_from_slice(&call.ssrc.to_be_bytes());
            call.packet.extend_from_slice(&self.device.frames[at]);
            call.bridge.device_rtp(now, &call.packet);

            // The meeting's voices, one frame each, as the port delivers them.
            for (k, frames) in self.meeting.speakers.iter().enumerate() {
                let Some(frame) = &frames[(at + self.meeting.stagger * k) % LOOP_FRAMES] else {
                    continue;
                };
                call.bridge.meeting_audio(
                    now,
                    k as u64 + 1,
                    call.meeting_seq[k],
                    (r * convene_gateway::audio::MEETING_FRAME as u64) as u32,
                    frame,
                );
                call.meeting_seq[k] = call.meeting_seq[k].wrapping_add(1);
            }

            let out = call.bridge.tick(now, &mut call.to_device);
            if !call.to_device.is_empty() {
                flow.to_device += 1;
                flow.bytes_to_device += call.to_device.len() as u64;
            }
            if let Some(frame) = out {
                flow.to_meeting += 1;
                flow.to_meeting_voice += u64::from(frame.voice);
                flow.bytes_to_meeting += frame.payload.len() as u64;
            }
        }
        flow
    }

    /// The bridges' counters, summed.
    pub fn stats(&self) -> BridgeStats {
        let mut t = BridgeStats::default();
        for c in &self.calls {
            let s = c.bridge.stats();
            t.device_packets += s.device_packets;
            t.device_decoded += s.device_decoded;
            t.device_concealed += s.device_concealed;
            t.device_late += s.device_late;
            t.device_malformed += s.device_malformed;
            t.device_other_pt += s.device_other_pt;
            t.meeting_frames += s.meeting_frames;
            t.meeting_decoded += s.meeting_decoded;
            t.meeting_concealed += s.meeting_concealed;
            t.meeting_late += s.meeting_late;
            t.meeting_malformed += s.meeting_malformed;
            t.meeting_sources_refused += s.meeting_sources_refused;
            t.frames_not_sent_quiet += s.frames_not_sent_quiet;
            t.frames_to_device += s.frames_to_device;
            t.frames_to_meeting += s.frames_to_meeting;
            t.internal_errors += s.internal_errors;
        }
        t
    }
}
