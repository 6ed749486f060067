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

impl DeviceStream {
    /// [`LOOP_FRAMES`] frames of one voice, encoded by the gateway's own encoder for `codec` (the
    /// same G.711/G.722 code a device's would be bit-compatible with).
    pub fn new(codec: Codec) -> Result<Self, AudioError> {
        let rate = audio_rate(codec);
        let n = rate as usize / 50;
        let pcm = speech(
            rate,
            n * LOOP_FRAMES,
            Voice {
                pitch_hz: 120.0,
                seed: 1,
            },
        );
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

/// The meeting's voices: per speaker, [`LOOP_FRAMES`] Opus frames.
#[derive(Debug, Clone)]
pub struct MeetingStream {
    pub speakers: Vec<Vec<Vec<u8>>>,
}

/// Pitches of the meeting's speakers, low to high, so their mix is not one voice thrice.
const SPEAKER_PITCHES: [f32; 4] = [105.0, 210.0, 150.0, 180.0];

impl MeetingStream {
    /// `speakers` voices talking at once, every frame sent (no DTX): what a SIP call receives in a
    /// large meeting where the SFU forwards the loudest three and all three are talking, the most
    /// decoding a bridge ever does. Encoded as a browser sends (48 kHz mono, 32 kbit/s, VoIP
    /// application, in-band FEC).
    pub fn new(speakers: usize) -> Result<Self, AudioError> {
        let speakers = (0..speakers)
            .map(|k| {
                let pcm = speech(
                    MEETING_RATE,
                    MEETING_FRAME * LOOP_FRAMES,
                    Voice {
                        pitch_hz: SPEAKER_PITCHES[k % SPEAKER_PITCHES.len()],
                        seed: 100 + k as u64,
                    },
                );
                let mut encoder = opus::Encoder::new(
                    MEETING_RATE,
                    opus::Channels::Mono,
                    opus::Application::Voip,
                )?;
                encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
                encoder.set_inband_fec(true)?;
                encoder.set_packet_loss_perc(5)?;
                let mut buf = [0u8; 1500];
                pcm.chunks(MEETING_FRAME)
                    .map(|chunk| {
                        let n = encoder.encode(chunk, &mut buf)?;
                        Ok(buf[..n].to_vec())
                    })
                    .collect::<Result<Vec<_>, AudioError>>()
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { speakers })
    }
}
