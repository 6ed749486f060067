//! The media a bridge is fed, encoded once before a run and looped: a room system's voice in its
//! codec, and the meeting's voices in Opus as the attendee port delivers them.
//!
//! Encoding up front keeps the encoders of the *senders* out of the measurement: in a real call the
//! device and the browsers encode on their own CPUs, and only the bridge's work lands on the server.

use convene_gateway::audio::codec::{Encoder, audio_rate};
use convene_gateway::audio::{AudioError, MEETING_FRAME, MEETING_RATE};
use convene_gateway::sdp::Codec;

use crate::speech::{Voice, speech};

/// Frames in a loop: 4 s, long enough that talk spurts and pauses both recur at different phases.
pub const LOOP_FRAMES: usize = 200;

/// The static RTP payload type of a device codec (RFC 3551), as the SDP of a room system offers it.
pub fn payload_type(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0,
        Codec::Pcma => 8,
        Codec::G722 => 9,
        // Dynamic; any number in 96..=127 serves.
        Codec::Opus => 111,
    }
}

/// A room system's voice: 20 ms payloads in its codec.
#[derive(Debug, Clone)]
pub struct DeviceStream {
    pub codec: Codec,
    pub payload_type: u8,
    pub frames: Vec<Vec<u8>>,
}

/// A quiet room's microphone: noise around -70 dBov (room systems send RTP all the time, silence
/// included, unless they negotiated comfort noise).
fn room_hush(samples: usize, seed: u64) -> Vec<i16> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..samples).map(|_| rng.i16(-10..=10)).collect()
}

impl DeviceStream {
    /// [`LOOP_FRAMES`] frames of one voice, encoded by the gateway's own encoder for `codec` (the
    /// same G.711/G.722 code a device's would be bit-compatible with).
    pub fn new(codec: Codec) -> Result<Self, AudioError> {
        Self::talking(codec, 1.0)
    }

    /// The same voice talking the first `talk_ratio` of the loop and quiet for the rest (the calls'
    /// different offsets spread their talk spurts over time).
    pub fn talking(codec: Codec, talk_ratio: f64) -> Result<Self, AudioError> {
        let rate = audio_rate(codec);
        let n = rate as usize / 50;
        let mut pcm = speech(
            rate,
            n * LOOP_FRAMES,
            Voice {
                pitch_hz: 120.0,
                seed: 1,
            },
        );
        let talk = (talk_ratio.clamp(0.0, 1.0) * LOOP_FRAMES as f64).round() as usize * n;
        let quiet = pcm.len().saturating_sub(talk);
        pcm[talk..].copy_from_slice(&room_hush(quiet, 2));
        let mut encoder = Encoder::new(codec)?;
        let frames = pcm
            .chunks(n)
            .map(|chunk| {
                let mut payload = Vec::new();
                encoder.encode(chunk, &mut payload).map(|()| payload)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            codec,
            payload_type: payload_type(codec),
            frames,
        })
    }
}

/// The meeting's voices: per speaker, [`LOOP_FRAMES`] Opus frames; `None` where a browser in DTX
/// sends nothing.
#[derive(Debug, Clone)]
pub struct MeetingStream {
    pub speakers: Vec<Vec<Option<Vec<u8>>>>,
    /// Frames between one speaker's position in the loop and the next one's: 53 for voices talking
    /// over each other at different points of their loops, 0 for voices taking turns.
    pub stagger: usize,
}

/// A browser's Opus encoder for the meeting: 48 kHz mono, 32 kbit/s, VoIP, in-band FEC.
fn browser_encoder(dtx: bool) -> Result<opus::Encoder, AudioError> {
    let mut encoder =
        opus::Encoder::new(MEETING_RATE, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
    encoder.set_inband_fec(true)?;
    encoder.set_packet_loss_perc(5)?;
    encoder.set_dtx(dtx)?;
    Ok(encoder)
}

/// Opus packets of at most this many bytes are DTX placeholders a browser does not send (RFC 7587
/// §3.1.3; libwebrtc drops them).
const DTX_PLACEHOLDER_BYTES: usize = 2;

/// Pitches of the meeting's speakers, low to high, so their mix is not one voice thrice.
const SPEAKER_PITCHES: [f32; 4] = [105.0, 210.0, 150.0, 180.0];

impl MeetingStream {
    /// `speakers` voices talking at once, every frame sent (no DTX): what a SIP call receives in a
    /// large meeting where the SFU forwards the loudest three and all three are talking, the most
    /// decoding a bridge ever does. Encoded as a browser sends (48 kHz mono, 32 kbit/s, VoIP
    /// application, in-band FEC).
    pub fn new(speakers: usize) -> Result<Self, AudioError> {
        let speakers = (0..speakers)
            .map(|k| encode_voice(&voice_of(k), false))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            speakers,
            stagger: 53,
        })
    }

    /// `speakers` voices taking turns, each talking its share of the loop and quiet (DTX: a frame
    /// every 400 ms, nothing between) the rest: a meeting where one person talks at a time, the SFU
    /// still forwarding the loudest three.
    pub fn turns(speakers: usize) -> Result<Self, AudioError> {
        let share = LOOP_FRAMES / speakers.max(1) * MEETING_FRAME;
        let speakers = (0..speakers)
            .map(|k| {
                let mut pcm = voice_of(k);
                let (from, to) = (k * share, (k + 1) * share);
                for (i, sample) in pcm.iter_mut().enumerate() {
                    if i < from || i >= to {
                        *sample = 0;
                    }
                }
                encode_voice(&pcm, true)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            speakers,
            stagger: 0,
        })
    }
}

fn voice_of(k: usize) -> Vec<i16> {
    speech(
        MEETING_RATE,
        MEETING_FRAME * LOOP_FRAMES,
        Voice {
            pitch_hz: SPEAKER_PITCHES[k % SPEAKER_PITCHES.len()],
            seed: 100 + k as u64,
        },
    )
}

/// The frames a browser sends for `pcm`: with DTX, silence becomes nothing but a frame now and then.
fn encode_voice(pcm: &[i16], dtx: bool) -> Result<Vec<Option<Vec<u8>>>, AudioError> {
    let mut encoder = browser_encoder(dtx)?;
    let mut buf = [0u8; 1500];
    pcm.chunks(MEETING_FRAME)
        .map(|chunk| {
            let n = encoder.encode(chunk, &mut buf)?;
            Ok((n > DTX_PLACEHOLDER_BYTES).then(|| buf[..n].to_vec()))
        })
        .collect()
}

impl MeetingStream {
    /// Frames actually sent, over all speakers (for the report: how much DTX left out).
    pub fn frames_sent(&self) -> usize {
        self.speakers
            .iter()
            .flatten()
            .filter(|f| f.is_some())
            .count()
    }
}
