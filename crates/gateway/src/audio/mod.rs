//! The audio bridge of one SIP call: the room system's codec on one side, the meeting's Opus on the
//! other, sans-IO like the rest of the gateway (no sockets, no threads, no clock read: the caller
//! passes `Instant`s in and calls [`AudioBridge::tick`] every 20 ms from its timer).
//!
//! ```text
//! device RTP --device_rtp--> jitter.rs --> codec.rs decode/conceal --> level.rs
//!     --> codec.rs Opus encode at the device's rate --> tick() returns a MeetingFrame (Opus, 20 ms)
//! meeting Opus --meeting_audio--> jitter.rs + Opus decoder per source, to the device's rate
//!     --> mix.rs --> codec.rs encode --> tick() writes device RTP
//! ```
//!
//! The API:
//! - [`AudioBridge::new`]`(device: DeviceAudio, ssrc: u32) -> Result<AudioBridge, AudioError>`:
//!   `device` is what SDP agreed ([`DeviceAudio::from`] a [`crate::sdp::Negotiated`]), `ssrc` ours
//!   toward the device (its first sequence number and timestamp are random, RFC 3550 §5.1).
//! - [`AudioBridge::device_rtp`]`(&mut self, now: Instant, packet: &[u8])`: one whole RTP packet from
//!   the device. Other payload types (telephone-event, which the call layer reads; comfort noise;
//!   anything else) and malformed packets are counted in [`BridgeStats`] and ignored.
//! - [`AudioBridge::meeting_audio`]`(&mut self, now: Instant, source: u64, seq: u16, timestamp: u32,
//!   payload: &[u8])`: one Opus frame of remote speaker `source` (stable per publication; its RTP
//!   sequence number and 48 kHz timestamp). The SFU never sends the device's own publication back,
//!   so the device's voice is never among the sources and is not subtracted.
//! - [`AudioBridge::meeting_source_ended`]`(&mut self, source: u64)`: forget a speaker now (sources
//!   silent for [`SOURCE_IDLE`] are forgotten anyway).
//! - [`AudioBridge::tick`]`(&mut self, now: Instant, to_device: &mut Vec<u8>) -> Option<MeetingFrame>`:
//!   the next 20 ms each way. `to_device` is cleared and always receives one RTP packet (the mix, or
//!   encoded silence while nobody talks: room systems expect a steady stream). The meeting frame is
//!   `None` until the device's first audio packet, then one per tick (silence is encoded too, with
//!   level 127 and `voice: false`, so the caller may drop it).
//! - [`AudioBridge::play_prompt`]`(&mut self, prompt: Prompt)`: speak an IVR [`Prompt`] to the
//!   device. From the next tick on, the device hears the prompt instead of the meeting's mix until
//!   it ends (the mix is still decoded meanwhile, so no jitter buffer backs up and the meeting comes
//!   back live); a new prompt replaces one still playing. [`AudioBridge::prompt_playing`] says
//!   whether one is.
//! - [`AudioBridge::stats`]`(&self) -> &BridgeStats`.
//!
//! Never panics on input: every packet is parsed with checks, and a payload a codec refuses is a
//! counted drop concealed like a loss.

pub mod codec;
pub mod comfort;
pub mod jitter;
pub mod level;
pub mod mix;
pub mod prompt;
pub mod resample;
pub mod silk_encoder;
#[cfg(test)]
mod test_signal;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rtp::header::Header;
use rtp::packet::Packet;
use webrtc_util::{Marshal as _, Unmarshal as _};

use crate::sdp::{Codec, Negotiated};
use codec::{Decoder, Encoder, audio_rate, rtp_clock};
use jitter::{JitterBuffer, Playout, Pushed};
use level::{VoiceActivity, audio_level};
use mix::Mixer;
pub use prompt::{PROMPT_RATE, Prompt};
use resample::{Resampler, samples_per_frame};

/// The meeting's audio: Opus at 48 kHz.
pub const MEETING_RATE: u32 = 48000;

/// Samples in one 20 ms meeting frame.
pub const MEETING_FRAME: usize = 960;

/// Remote speakers mixed at once; more are refused and counted (the SFU forwards only the loudest
/// few, so this bounds memory against a misbehaving caller rather than shaping the mix).
pub const MAX_SOURCES: usize = 16;

/// A source that sent nothing for this long is forgotten (DTX pauses are seconds, not this).
pub const SOURCE_IDLE: Duration = Duration::from_secs(30);

/// Why a bridge could not be built, or a frame not coded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("payload type {0} is not a valid RTP payload type (0-127)")]
    PayloadType(u8),
    #[error("{codec} runs its RTP clock at {expected} Hz, not {got}")]
    Clock {
        codec: &'static str,
        expected: u32,
        got: u32,
    },
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    #[error(transparent)]
    Libopus(#[from] silk_encoder::LibopusError),
    #[error("resampler: {0}")]
    Resampler(String),
    #[error("a frame of {got} samples where {expected} were expected")]
    FrameSize { expected: usize, got: usize },
    #[error("payload refused: {0}")]
    Payload(&'static str),
}

/// What SDP agreed with the device for audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAudio {
    pub codec: Codec,
    pub payload_type: u8,
    /// The RTP clock from the `rtpmap` (checked against the codec's).
    pub clock: u32,
    /// RFC 3389 comfort noise payload type, when agreed (G.711, G.722).
    pub comfort_noise: Option<u8>,
}

impl From<&Negotiated> for DeviceAudio {
    fn from(n: &Negotiated) -> Self {
        Self {
            codec: n.codec,
            payload_type: n.format.pt,
            clock: n.format.clock,
            comfort_noise: n.comfort_noise,
        }
    }
}

/// One 20 ms frame for the meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingFrame {
    /// Consecutive from 0.
    pub seq: u16,
    /// 48 kHz, +960 per frame from 0.
    pub timestamp: u32,
    /// Opus, 20 ms, mono.
    pub payload: Vec<u8>,
    /// RFC 6464 level: -dBov, 0 the loudest, 127 silence.
    pub level: u8,
    /// Speech (with a short hangover), for the SFU's active-speaker ranking.
    pub voice: bool,
}

/// Counters of one bridge.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BridgeStats {
    /// Every datagram given to [`AudioBridge::device_rtp`].
    pub device_packets: u64,
    /// Device packets decoded into audio.
    pub device_decoded: u64,
    /// Device frames concealed (lost or late; FEC/PLC for Opus, repetition otherwise).
    pub device_concealed: u64,
    /// Device packets dropped as late or duplicate or by a jitter buffer that grew too deep.
    pub device_late: u64,
    /// Device packets that are not RTP, carry an empty payload, or that the codec refused.
    pub device_malformed: u64,
    /// Device packets of another payload type (telephone-event, comfort noise, unknown).
    pub device_other_pt: u64,
    /// Times the device changed its SSRC (its stream restarted).
    pub device_ssrc_changes: u64,
    /// Every frame given to [`AudioBridge::meeting_audio`].
    pub meeting_frames: u64,
    /// Meeting frames decoded into audio.
    pub meeting_decoded: u64,
    /// Meeting frames concealed (Opus FEC or PLC).
    pub meeting_concealed: u64,
    /// Meeting frames dropped as late, duplicate or by a buffer that grew too deep.
    pub meeting_late: u64,
    /// Meeting frames that were empty or that Opus refused.
    pub meeting_malformed: u64,
    /// Meeting frames of a source beyond [`MAX_SOURCES`].
    pub meeting_sources_refused: u64,
    /// RTP packets written for the device.
    pub frames_to_device: u64,
    /// Frames returned for the meeting.
    pub frames_to_meeting: u64,
    /// Frames an encoder or resampler failed on (not expected; silence or nothing was sent).
    pub internal_errors: u64,
    /// Frames sent to the device that carried a prompt instead of the meeting's mix.
    pub prompt_frames: u64,
    /// Frames of a quiet room not encoded for the meeting (discontinuous transmission).
    pub frames_not_sent_quiet: u64,
    /// Comfort noise packets the device sent (RFC 3389), and that we sent it.
    pub device_comfort_noise: u64,
    pub comfort_noise_to_device: u64,
}

/// A prompt being spoken to the device.
#[derive(Debug)]
struct Playing {
    prompt: Prompt,
    /// Samples of it already sent, at [`PROMPT_RATE`].
    sent: usize,
}

/// What [`Stream::fill`] did, for the counters.
#[derive(Debug, Default)]
struct Filled {
    decoded: u64,
    concealed: u64,
    malformed: u64,
    /// Some of the frame was silence (nothing to play: a pause in the stream).
    silent: bool,
}

/// One incoming stream: its jitter buffer, decoder, and decoded audio not played yet.
#[derive(Debug)]
struct Stream {
    jitter: JitterBuffer,
    decoder: Decoder,
    /// Decoded samples at the decoder's rate (packets need not be 20 ms long).
    pending: VecDeque<i16>,
    decoded: Vec<i16>,
    /// When its last packet arrived (for forgetting idle meeting sources).
    last_packet: Option<Instant>,
}

impl Stream {
    fn new(codec: Codec) -> Result<Self, AudioError> {
        Ok(Self::with(Decoder::new(codec)?, rtp_clock(codec)))
    }

    /// A meeting voice (Opus, 48 kHz RTP clock) decoded to `rate`.
    fn meeting_voice(rate: u32) -> Result<Self, AudioError> {
        Ok(Self::with(Decoder::opus_to(rate)?, rtp_clock(Codec::Opus)))
    }

    fn with(decoder: Decoder, clock: u32) -> Self {
        Self {
            jitter: JitterBuffer::new(clock),
            pending: VecDeque::with_capacity(
                2 * codec::MAX_PACKET_MS as usize * decoder.rate() as usize / 1000,
            ),
            decoded: Vec::new(),
            decoder,
            last_packet: None,
        }
    }

    /// The next `out.len()` samples: decoded, concealed or silence.
    fn fill(&mut self, now: Instant, out: &mut [i16]) -> Filled {
        let mut filled = Filled::default();
        // Each turn either plays a packet out of the buffer or ends the loop with silence, so it
        // ends; a decoder giving 0 samples (a legal empty Opus frame) just takes another turn.
        while self.pending.len() < out.len() {
            self.decoded.clear();
            match self.jitter.pop(now) {
                Playout::Packet(payload) => {
                    match self.decoder.decode(&payload, &mut self.decoded) {
                        Ok(_) => filled.decoded += 1,
                        Err(_) => {
                            filled.malformed += 1;
                            self.decoder.conceal(None, &mut self.decoded);
                            filled.concealed += 1;
                        }
                    }
                }
                Playout::Lost => {
                    self.decoder
                        .conceal(self.jitter.next_payload(), &mut self.decoded);
                    filled.concealed += 1;
                }
                Playout::Silence => {
                    filled.silent = true;
                    self.decoder.pause();
                    let missing = out.len() - self.pending.len();
                    self.pending.extend(std::iter::repeat_n(0, missing));
                }
            }
            self.pending.extend(self.decoded.iter().copied());
        }
        let n = out.len();
        for (o, s) in out.iter_mut().zip(self.pending.drain(..n)) {
            *o = s;
        }
        filled
    }
}

/// The audio bridge of one call (see the module docs for the loop contract).
#[derive(Debug)]
pub struct AudioBridge {
    device: DeviceAudio,
    stats: BridgeStats,

    // Device -> meeting.
    device_in: Stream,
    /// The device's SSRC, latched from its first audio packet.
    device_ssrc: Option<u32>,
    device_started: bool,
    device_pcm: Vec<i16>,
    /// Opus fed the device's audio at its own rate (see [`Encoder::opus_from`]).
    meeting_encoder: Encoder,
    vad: VoiceActivity,
    /// Frames the room has been quiet for (see DTX in `encode_for_meeting`).
    quiet_frames: u32,
    meeting_seq: u16,
    meeting_timestamp: u32,

    // Meeting -> device.
    sources: HashMap<u64, Stream>,
    /// Meeting voices are decoded and mixed at the device's audio rate (see [`Decoder::opus_to`]).
    source_pcm: Vec<i16>,
    mixer: Mixer,
    mixed: Vec<i16>,
    device_encoder: Encoder,
    ssrc: u32,
    device_seq: u16,
    device_timestamp: u32,
    first_to_device: bool,

    // Comfort noise: the level the device last announced (played in its pauses), how long the mix
    // has been silent (frames), and the noise source.
    device_noise: Option<u8>,
    silent_frames: u32,
    noise: fastrand::Rng,

    // Prompts -> device (they join the meeting -> device path at the device's rate, in place of the mix).
    prompt: Option<Playing>,
    prompt_pcm: Vec<i16>,
    prompt_resample: Resampler,
}

impl AudioBridge {
    /// A bridge for a device speaking `device`, sending to it as `ssrc`.
    pub fn new(device: DeviceAudio, ssrc: u32) -> Result<Self, AudioError> {
        if device.payload_type > 127 {
            return Err(AudioError::PayloadType(device.payload_type));
        }
        let expected = rtp_clock(device.codec);
        if device.clock != expected {
            return Err(AudioError::Clock {
                codec: device.codec.name(),
                expected,
                got: device.clock,
            });
        }
        let rate = audio_rate(device.codec);
        Ok(Self {
            device,
            stats: BridgeStats::default(),
            device_in: Stream::new(device.codec)?,
            device_ssrc: None,
            device_started: false,
            device_pcm: vec![0; samples_per_frame(rate)],
            meeting_encoder: Encoder::opus_from(rate)?,
            vad: VoiceActivity::default(),
            quiet_frames: 0,
            meeting_seq: 0,
            meeting_timestamp: 0,
            sources: HashMap::new(),
            source_pcm: vec![0; samples_per_frame(rate)],
            mixer: Mixer::new(samples_per_frame(rate)),
            mixed: vec![0; samples_per_frame(rate)],
            device_encoder: Encoder::new(device.codec)?,
            ssrc,
            // RFC 3550 §5.1: random starting points, so a restarted call is not mistaken for the old.
            device_seq: fastrand::u16(..),
            device_timestamp: fastrand::u32(..),
            first_to_device: true,
            device_noise: None,
            silent_frames: 0,
            noise: fastrand::Rng::new(),
            prompt: None,
            prompt_pcm: vec![0; samples_per_frame(PROMPT_RATE)],
            prompt_resample: Resampler::new(PROMPT_RATE, rate)?,
        })
    }

    /// What the device speaks.
    pub fn device(&self) -> DeviceAudio {
        self.device
    }

    /// The counters so far.
    pub fn stats(&self) -> &BridgeStats {
        &self.stats
    }

    /// Remote speakers currently mixed.
    pub fn meeting_sources(&self) -> usize {
        self.sources.len()
    }

    /// Speak `prompt` to the device from the next tick on, in place of the meeting's mix, until it
    /// ends. A prompt still playing is cut off: the newest is what the caller needs to hear.
    pub fn play_prompt(&mut self, prompt: Prompt) {
        self.prompt = Some(Playing { prompt, sent: 0 });
    }

    /// Whether a prompt is still being spoken (the next tick sends more of it).
    pub fn prompt_playing(&self) -> bool {
        self.prompt.is_some()
    }

    /// One whole RTP packet from the device.
    pub fn device_rtp(&mut self, now: Instant, packet: &[u8]) {
        self.stats.device_packets += 1;
        let Ok(packet) = Packet::unmarshal(&mut &packet[..]) else {
            self.stats.device_malformed += 1;
            return;
        };
        if packet.header.version != 2 {
            self.stats.device_malformed += 1;
            return;
        }
        if Some(packet.header.payload_type) == self.device.comfort_noise {
            // The device went quiet and says how loud its room is: played in the pause that follows.
            self.stats.device_comfort_noise += 1;
            self.device_noise = comfort::level_of(&packet.payload);
            return;
        }
        if packet.header.payload_type != self.device.payload_type {
            self.stats.device_other_pt += 1;
            return;
        }
        if packet.payload.is_empty() {
            self.stats.device_malformed += 1;
            return;
        }
        match self.device_ssrc {
            None => self.device_ssrc = Some(packet.header.ssrc),
            Some(ssrc) if ssrc != packet.header.ssrc => {
                // A new stream (the device restarted its sender): its numbering starts over.
                self.device_ssrc = Some(packet.header.ssrc);
                self.device_in.jitter.reset();
                self.stats.device_ssrc_changes += 1;
            }
            Some(_) => {}
        }
        let pushed = self.device_in.jitter.push(
            now,
            packet.header.sequence_number,
            packet.header.timestamp,
            packet.payload.to_vec(),
        );
        match pushed {
            Pushed::Accepted => {
                self.device_started = true;
            }
            Pushed::Late | Pushed::Duplicate => self.stats.device_late += 1,
        }
    }

    /// One Opus frame of remote speaker `source`.
    pub fn meeting_audio(
        &mut self,
        now: Instant,
        source: u64,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) {
        self.stats.meeting_frames += 1;
        if payload.is_empty() {
            self.stats.meeting_malformed += 1;
            return;
        }
        if !self.sources.contains_key(&source) {
            if self.sources.len() >= MAX_SOURCES {
                self.stats.meeting_sources_refused += 1;
                return;
            }
            match Stream::meeting_voice(audio_rate(self.device.codec)) {
                Ok(stream) => {
                    self.sources.insert(source, stream);
                }
                Err(_) => {
                    self.stats.internal_errors += 1;
                    return;
                }
            }
        }
        let Some(stream) = self.sources.get_mut(&source) else {
            return;
        };
        stream.last_packet = Some(now);
        match stream.jitter.push(now, seq, timestamp, payload.to_vec()) {
            Pushed::Accepted => {}
            Pushed::Late | Pushed::Duplicate => self.stats.meeting_late += 1,
        }
    }

    /// Forget remote speaker `source` (its publication ended).
    pub fn meeting_source_ended(&mut self, source: u64) {
        self.sources.remove(&source);
    }

    /// The next 20 ms each way: an RTP packet for the device into `to_device` (cleared first), and
    /// the frame for the meeting once the device has sent audio.
    pub fn tick(&mut self, now: Instant, to_device: &mut Vec<u8>) -> Option<MeetingFrame> {
        self.mix_for_device(now, to_device);
        self.encode_for_meeting(now)
    }

    fn mix_for_device(&mut self, now: Instant, out: &mut Vec<u8>) {
        out.clear();
        self.sources.retain(|_, s| {
            s.last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < SOURCE_IDLE)
        });
        self.mixer.clear();
        for stream in self.sources.values_mut() {
            let filled = stream.fill(now, &mut self.source_pcm);
            self.stats.meeting_decoded += filled.decoded;
            self.stats.meeting_concealed += filled.concealed;
            self.stats.meeting_malformed += filled.malformed;
            self.mixer.add(&self.source_pcm);
        }
        self.mixer.finish(&mut self.mixed);
        // The meeting was decoded above even when a prompt covers it: its jitter buffers keep
        // draining, so the live mix follows the prompt without a backlog.
        self.prompt_over_mix();
        if let Some(cn) = self.device.comfort_noise {
            if self.mixed.iter().all(|&s| s == 0) {
                self.silent_frames = self.silent_frames.saturating_add(1);
                // Silence: a CN packet now and then instead of encoded silence every 20 ms.
                if (self.silent_frames - 1).is_multiple_of(comfort::CN_EVERY_FRAMES) {
                    self.write_to_device(cn, &[comfort::MEETING_SILENCE_LEVEL], out);
                    self.stats.comfort_noise_to_device += 1;
                }
                self.device_timestamp = self
                    .device_timestamp
                    .wrapping_add(rtp_clock(self.device.codec) / 50);
                return;
            }
            if self.silent_frames > 0 {
                // The talkspurt after a pause starts with the marker bit (RFC 3551 §4.1).
                self.silent_frames = 0;
                self.first_to_device = true;
            }
        }
        let header = Header {
            version: 2,
            marker: self.first_to_device,
            payload_type: self.device.payload_type,
            sequence_number: self.device_seq,
            timestamp: self.device_timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        };
        out.resize(RTP_HEADER_LEN, 0);
        if header.marshal_to(&mut out[..]).is_err()
            || self.device_encoder.encode(&self.mixed, out).is_err()
        {
            self.stats.internal_errors += 1;
            out.clear();
            return;
        }
        self.first_to_device = false;
        self.device_seq = self.device_seq.wrapping_add(1);
        self.device_timestamp = self
            .device_timestamp
            .wrapping_add(rtp_clock(self.device.codec) / 50);
        self.stats.frames_to_device += 1;
    }

    /// One packet for the device that is not audio of its codec (a CN packet): header and payload.
    fn write_to_device(&mut self, pt: u8, payload: &[u8], out: &mut Vec<u8>) {
        let header = Header {
            version: 2,
            payload_type: pt,
            sequence_number: self.device_seq,
            timestamp: self.device_timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        };
        out.resize(RTP_HEADER_LEN, 0);
        if header.marshal_to(&mut out[..]).is_err() {
            self.stats.internal_errors += 1;
            out.clear();
            return;
        }
        out.extend_from_slice(payload);
        self.device_seq = self.device_seq.wrapping_add(1);
    }

    /// If a prompt is playing, put its next 20 ms (at the device's rate) in place of the mix.
    fn prompt_over_mix(&mut self) {
        let Some(playing) = self.prompt.as_mut() else {
            return;
        };
        let samples = playing.prompt.samples();
        let rest = samples.get(playing.sent..).unwrap_or_default();
        let n = rest.len().min(self.prompt_pcm.len());
        self.prompt_pcm[..n].copy_from_slice(&rest[..n]);
        // The last chunk of a prompt is rarely whole: silence after it.
        self.prompt_pcm[n..].fill(0);
        playing.sent += n;
        if playing.sent >= samples.len() {
            self.prompt = None;
        }
        if self
            .prompt_resample
            .process(&self.prompt_pcm, &mut self.mixed)
            .is_err()
        {
            self.stats.internal_errors += 1;
            self.mixed.fill(0);
        }
        self.stats.prompt_frames += 1;
    }

    fn encode_for_meeting(&mut self, now: Instant) -> Option<MeetingFrame> {
        if !self.device_started {
            return None;
        }
        let filled = self.device_in.fill(now, &mut self.device_pcm);
        self.stats.device_decoded += filled.decoded;
        self.stats.device_concealed += filled.concealed;
        self.stats.device_malformed += filled.malformed;
        if let Some(level) = self
            .device_noise
            .filter(|_| filled.silent && filled.decoded == 0)
        {
            comfort::generate(level, &mut self.noise, &mut self.device_pcm);
        }
        let level = audio_level(&self.device_pcm);
        let voice = self.vad.update(level);
        // Discontinuous transmission, as browsers' Opus does: while the room is quiet only every
        // DTX_EVERY_FRAMES-th frame is encoded and sent (the first one of the pause included), which
        // spares most of the Opus encoder's time, the bridge's largest cost (bench/results). Time
        // goes on in the timestamps; sequence numbers stay consecutive, so receivers see a pause,
        // not loss.
        if voice {
            self.quiet_frames = 0;
        } else {
            self.quiet_frames = self.quiet_frames.saturating_add(1);
            if !(self.quiet_frames - 1).is_multiple_of(DTX_EVERY_FRAMES) {
                self.meeting_timestamp = self.meeting_timestamp.wrapping_add(MEETING_FRAME as u32);
                self.stats.frames_not_sent_quiet += 1;
                return None;
            }
        }
        let mut payload = Vec::with_capacity(256);
        if self
            .meeting_encoder
            .encode(&self.device_pcm, &mut payload)
            .is_err()
        {
            self.stats.internal_errors += 1;
            return None;
        }
        let frame = MeetingFrame {
            seq: self.meeting_seq,
            timestamp: self.meeting_timestamp,
            payload,
            level,
            voice,
        };
        self.meeting_seq = self.meeting_seq.wrapping_add(1);
        self.meeting_timestamp = self.meeting_timestamp.wrapping_add(MEETING_FRAME as u32);
        self.stats.frames_to_meeting += 1;
        Some(frame)
    }
}

/// While the room is quiet, one frame in this many goes to the meeting (400 ms, Opus DTX's pace).
const DTX_EVERY_FRAMES: u32 = 20;

/// Our packets carry no CSRCs or extensions.
const RTP_HEADER_LEN: usize = 12;
