//! Decoding and encoding one codec's frames: Opus (libopus through the `opus` crate, and for a
//! room's 8-16 kHz voice its SILK-only encoder through `silk_encoder`), G.722
//! (`ezk-g722`'s port of SpanDSP's codec, 64 kbit/s mode, unpacked) and G.711 μ-law and A-law
//! (`ezk-g711`'s per-sample tables; only its sample functions are used, its media-graph types are
//! not).
//!
//! Samples are mono 16-bit at the codec's own audio rate ([`audio_rate`]: 48 kHz Opus, 16 kHz G.722,
//! 8 kHz G.711), which for G.722 is not its RTP clock ([`rtp_clock`], 8 kHz by RFC 3551's historical
//! mistake). Concealing a lost frame is the decoder's job too, because it differs per codec: Opus
//! has its own packet-loss concealment and in-band FEC; for G.711/G.722 the last frame is repeated at
//! half and then a quarter of its level, then silence, which masks a lone loss without buzzing.

use ezk_g722::libg722::{self, Bitrate};

use super::AudioError;
use super::silk_encoder::SilkEncoder;
use crate::sdp::Codec;

/// Samples per second of the codec's audio.
pub fn audio_rate(codec: Codec) -> u32 {
    match codec {
        Codec::Opus => 48000,
        Codec::G722 => 16000,
        Codec::Pcmu | Codec::Pcma => 8000,
    }
}

/// The codec's RTP timestamp rate (RFC 3551 §4.5.2: G.722 keeps 8000 though it samples at 16 kHz).
pub fn rtp_clock(codec: Codec) -> u32 {
    match codec {
        Codec::Opus => 48000,
        Codec::G722 | Codec::Pcmu | Codec::Pcma => 8000,
    }
}

/// The longest packet decoded, in milliseconds (Opus's maximum; more from G.711 is refused).
pub const MAX_PACKET_MS: u32 = 120;

/// Bit rate of the Opus we encode: wideband speech with room for FEC.
pub const OPUS_BITRATE: i32 = 32_000;

/// The loss rate the Opus encoder plans its in-band FEC for (libopus sends no FEC at 0%).
pub const OPUS_EXPECTED_LOSS_PERCENT: i32 = 10;

/// The Opus encoder's complexity (0-10) for a room's voice at `input_rate`, measured with PESQ on
/// spoken sentences (`bench/gateway/opus_quality.py`, bench/results/2026-12-06-opus-quality.md):
/// - 16 kHz (G.722 rooms): 8, 9 and 10 score the same (PESQ-WB 4.01); 7 loses 0.14 and 5 0.24, which
///   is audible. libopus's default, 9.
/// - 8 kHz (G.711 rooms): 5 loses 0.06 against 9 (PESQ-NB 4.35 against 4.41), under what anyone hears,
///   and saves about a sixth of a G.711 call's CPU (the gateway benchmark).
pub fn opus_complexity(input_rate: u32) -> i32 {
    if input_rate <= 8000 { 5 } else { 9 }
}

/// Largest Opus payload we write; an encoder asked for 32 kbit/s stays far below.
const MAX_OPUS_PAYLOAD: usize = 1275;

/// Frames concealed by repetition before the decoder gives silence instead.
const REPEATS: u32 = 2;

enum DecoderKind {
    Opus(opus::Decoder),
    // Boxed: SpanDSP's state is ~470 bytes, the other variants a pointer or nothing.
    G722(Box<libg722::decoder::Decoder>),
    Pcmu,
    Pcma,
}

/// A decoder of one stream, with its concealment.
pub struct Decoder {
    kind: DecoderKind,
    rate: u32,
    /// The last decoded packet, for repetition (G.711/G.722), and its length for Opus's PLC.
    last: Vec<i16>,
    /// Frames concealed since the last good one.
    concealed: u32,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("rate", &self.rate)
            .field("concealed", &self.concealed)
            .finish()
    }
}

impl Decoder {
    /// A decoder for `codec`, mono.
    pub fn new(codec: Codec) -> Result<Self, AudioError> {
        let rate = audio_rate(codec);
        let kind = match codec {
            Codec::Opus => return Self::opus_to(rate),
            Codec::G722 => DecoderKind::G722(Box::new(libg722::decoder::Decoder::new(
                Bitrate::Mode1_64000,
                false,
                false,
            ))),
            Codec::Pcmu => DecoderKind::Pcmu,
            Codec::Pcma => DecoderKind::Pcma,
        };
        Ok(Self {
            kind,
            rate,
            last: Vec::with_capacity(max_samples(rate)),
            concealed: 0,
            scratch: vec![0; max_samples(rate)],
        })
    }

    /// An Opus decoder giving samples at `output_rate` (8, 12, 16, 24 or 48 kHz): libopus decodes
    /// only the band that rate holds, so a meeting voice for a G.711 or G.722 room costs a fraction of
    /// a full-band decode and needs no resampling after (bench/results, the gateway benchmark). Mono
    /// even if the sender is stereo: libopus downmixes, and the meeting is mono.
    pub fn opus_to(output_rate: u32) -> Result<Self, AudioError> {
        Ok(Self {
            kind: DecoderKind::Opus(opus::Decoder::new(output_rate, opus::Channels::Mono)?),
            rate: output_rate,
            last: Vec::with_capacity(max_samples(output_rate)),
            concealed: 0,
            scratch: vec![0; max_samples(output_rate)],
        })
    }

    /// Samples per second this decoder gives.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Decode one packet's payload, appending its samples to `out`; returns how many.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, AudioError> {
        if payload.is_empty() {
            return Err(AudioError::Payload("empty"));
        }
        let start = out.len();
        match &mut self.kind {
            DecoderKind::Opus(d) => {
                // Checked first: libopus refuses a too-small buffer, and we want a clear reason.
                let n = opus::packet::get_nb_samples(payload, self.rate)?;
                if n > max_samples(self.rate) {
                    return Err(AudioError::Payload("longer than 120 ms"));
                }
                let n = d.decode(payload, &mut self.scratch, false)?;
                out.extend_from_slice(&self.scratch[..n]);
            }
            DecoderKind::G722(d) => {
                // 64 kbit/s: one byte carries two 16 kHz samples.
                if payload.len() * 2 > max_samples(self.rate) {
                    return Err(AudioError::Payload("longer than 120 ms"));
                }
                out.extend_from_slice(&d.decode(payload));
            }
            DecoderKind::Pcmu | DecoderKind::Pcma => {
                if payload.len() > max_samples(self.rate) {
                    return Err(AudioError::Payload("longer than 120 ms"));
                }
                let law = if matches!(self.kind, DecoderKind::Pcmu) {
                    ezk_g711::mulaw::decode
                } else {
                    ezk_g711::alaw::decode
                };
                out.extend(payload.iter().map(|&b| law(b)));
            }
        }
        self.last.clear();
        self.last.extend_from_slice(&out[start..]);
        self.concealed = 0;
        Ok(out.len() - start)
    }

    /// Stand in for one lost packet, appending samples to `out` (as long as the last packet, or
    /// 20 ms); `next` is the payload that follows the lost one, if already here, for Opus's FEC.
    /// Returns how many samples were appended.
    pub fn conceal(&mut self, next: Option<&[u8]>, out: &mut Vec<i16>) -> usize {
        let frame = self.rate as usize / 50;
        let n = if self.last.is_empty() {
            frame
        } else {
            self.last.len()
        };
        let start = out.len();
        self.concealed = self.concealed.saturating_add(1);
        match &mut self.kind {
            DecoderKind::Opus(d) => {
                let buf = &mut self.scratch[..n];
                // FEC recovers the lost frame from the next packet's redundancy; without it (or if
                // the next packet carries none, which libopus handles as PLC) conceal by PLC.
                let fec = next.filter(|p| !p.is_empty());
                let decoded = match fec {
                    Some(p) => d.decode(p, buf, true),
                    None => d.decode(&[], buf, false),
                };
                if let Ok(got) = decoded {
                    out.extend_from_slice(&buf[..got.min(n)]);
                }
            }
            DecoderKind::G722(_) | DecoderKind::Pcmu | DecoderKind::Pcma => {
                if self.concealed <= REPEATS && !self.last.is_empty() {
                    let shift = self.concealed;
                    out.extend(self.last.iter().map(|&s| s >> shift));
                }
            }
        }
        // Whatever the codec could not produce is silence, so the stream keeps its length.
        out.resize(start + n, 0);
        n
    }

    /// The stream paused: a loss after this must not repeat audio from before the pause.
    pub fn pause(&mut self) {
        self.last.clear();
        self.concealed = REPEATS;
    }
}

enum EncoderKind {
    Opus(opus::Encoder),
    /// Opus from 8-16 kHz input: SILK only (`silk_encoder`).
    Silk(SilkEncoder),
    G722(Box<libg722::encoder::Encoder>),
    Pcmu,
    Pcma,
}

/// An encoder of one outgoing stream.
pub struct Encoder {
    kind: EncoderKind,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

impl Encoder {
    /// An encoder for `codec`, mono at [`audio_rate`]. Opus: VoIP mode (SILK-only from 8-16 kHz input,
    /// see [`Encoder::opus_with_complexity`]), [`OPUS_BITRATE`], in-band FEC
    /// on, no DTX (room systems expect a steady stream, and the meeting side gets a level per frame
    /// to decide what is speech). An Opus device's fmtp (maxplaybackrate, stereo, its own FEC or
    /// bitrate wishes) is not read yet: mono full-band at 32 kbit/s is valid for any Opus receiver.
    pub fn new(codec: Codec) -> Result<Self, AudioError> {
        let kind = match codec {
            Codec::Opus => return Self::opus_from(audio_rate(codec)),
            Codec::G722 => EncoderKind::G722(Box::new(libg722::encoder::Encoder::new(
                Bitrate::Mode1_64000,
                false,
                false,
            ))),
            Codec::Pcmu => EncoderKind::Pcmu,
            Codec::Pcma => EncoderKind::Pcma,
        };
        Ok(Self { kind })
    }

    /// An Opus encoder (settings as [`Encoder::new`], complexity by [`opus_complexity`]) fed samples at
    /// `input_rate` (8, 12, 16, 24 or 48 kHz). The stream is ordinary Opus whatever the input rate (48 kHz RTP clock, any decoder
    /// plays it); a narrower input only tells libopus there is no higher band to code, which for a
    /// G.711 or G.722 room's voice is true anyway, and spares the upsampling to 48 kHz and most of the
    /// encoder's time (bench/results, the gateway benchmark).
    pub fn opus_from(input_rate: u32) -> Result<Self, AudioError> {
        Self::opus_with_complexity(input_rate, opus_complexity(input_rate))
    }

    /// [`Encoder::opus_from`] at another complexity (0-10): for the quality and cost measurements of
    /// `bench/gateway`.
    pub fn opus_with_complexity(input_rate: u32, complexity: i32) -> Result<Self, AudioError> {
        if input_rate <= 16_000 {
            // A room's narrow- or wideband voice: SILK only, without VoIP's per-frame tonality
            // analysis (see `silk_encoder`).
            let mut e = SilkEncoder::new(input_rate)?;
            e.set_bitrate(OPUS_BITRATE)?;
            e.set_inband_fec(true)?;
            e.set_packet_loss_perc(OPUS_EXPECTED_LOSS_PERCENT)?;
            e.set_complexity(complexity)?;
            return Ok(Self {
                kind: EncoderKind::Silk(e),
            });
        }
        let mut e = opus::Encoder::new(input_rate, opus::Channels::Mono, opus::Application::Voip)?;
        e.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))?;
        e.set_inband_fec(true)?;
        e.set_packet_loss_perc(OPUS_EXPECTED_LOSS_PERCENT)?;
        e.set_complexity(complexity)?;
        Ok(Self {
            kind: EncoderKind::Opus(e),
        })
    }

    /// Encode one 20 ms frame, appending the payload to `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), AudioError> {
        match &mut self.kind {
            EncoderKind::Opus(e) => append_payload(out, |buf| e.encode(pcm, buf))?,
            EncoderKind::Silk(e) => append_payload(out, |buf| e.encode(pcm, buf))?,
            EncoderKind::G722(e) => out.extend_from_slice(&e.encode(pcm)),
            EncoderKind::Pcmu => out.extend(pcm.iter().map(|&s| ezk_g711::mulaw::encode(s))),
            EncoderKind::Pcma => out.extend(pcm.iter().map(|&s| ezk_g711::alaw::encode(s))),
        }
        Ok(())
    }
}

/// Appends an Opus payload to `out`, written by `encode` into room for the largest one.
fn append_payload<E: Into<AudioError>>(
    out: &mut Vec<u8>,
    encode: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(), AudioError> {
    let start = out.len();
    out.resize(start + MAX_OPUS_PAYLOAD, 0);
    match encode(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(err.into())
        }
    }
}

fn max_samples(rate: u32) -> usize {
    (rate * MAX_PACKET_MS / 1000) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_signal::{power, tone};

    const ALL: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

    /// Encode then decode a 440 Hz tone for 20 frames; the decoded audio, all of it.
    fn round_trip(codec: Codec, freq: f64) -> Vec<i16> {
        let rate = audio_rate(codec);
        let frame = rate as usize / 50;
        let mut enc = Encoder::new(codec).unwrap();
        let mut dec = Decoder::new(codec).unwrap();
        let mut decoded = Vec::new();
        for k in 0..20 {
            let mut payload = Vec::new();
            enc.encode(&tone(freq, rate, k * frame, frame, 8000.0), &mut payload)
                .unwrap();
            let n = dec.decode(&payload, &mut decoded).unwrap();
            assert_eq!(n, frame, "{codec:?}");
        }
        decoded
    }

    #[test]
    fn each_codec_carries_a_tone() {
        for codec in ALL {
            let rate = audio_rate(codec);
            let out = round_trip(codec, 440.0);
            let steady = &out[out.len() / 2..];
            let at = power(steady, 440.0, rate);
            let off = power(steady, 1000.0, rate).max(power(steady, 200.0, rate));
            assert!(at > 50.0 * off, "{codec:?}: {at} vs {off}");
        }
    }

    #[test]
    fn payload_sizes_match_the_codec() {
        for (codec, bytes) in [(Codec::G722, 160), (Codec::Pcmu, 160), (Codec::Pcma, 160)] {
            let rate = audio_rate(codec);
            let mut enc = Encoder::new(codec).unwrap();
            let mut out = vec![0xAA];
            enc.encode(&vec![0; rate as usize / 50], &mut out).unwrap();
            assert_eq!(out.len(), 1 + bytes, "{codec:?} appends");
        }
        assert_eq!(
            (rtp_clock(Codec::G722), audio_rate(Codec::G722)),
            (8000, 16000)
        );
    }

    #[test]
    fn g711_silence_is_the_codes_silence() {
        let mut out = Vec::new();
        Encoder::new(Codec::Pcmu)
            .unwrap()
            .encode(&[0; 4], &mut out)
            .unwrap();
        Encoder::new(Codec::Pcma)
            .unwrap()
            .encode(&[0; 4], &mut out)
            .unwrap();
        assert_eq!(out, [0xFF, 0xFF, 0xFF, 0xFF, 0xD5, 0xD5, 0xD5, 0xD5]);
    }

    #[test]
    fn repetition_fades_then_stops() {
        for codec in [Codec::G722, Codec::Pcmu, Codec::Pcma] {
            let rate = audio_rate(codec);
            let frame = rate as usize / 50;
            let mut enc = Encoder::new(codec).unwrap();
            let mut dec = Decoder::new(codec).unwrap();
            let mut payload = Vec::new();
            enc.encode(&tone(440.0, rate, 0, frame, 8000.0), &mut payload)
                .unwrap();
            let mut good = Vec::new();
            dec.decode(&payload, &mut good).unwrap();
            let peak = |s: &[i16]| s.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
            let mut out = Vec::new();
            let mut peaks = Vec::new();
            for _ in 0..4 {
                out.clear();
                assert_eq!(dec.conceal(None, &mut out), frame);
                peaks.push(peak(&out));
            }
            let p = peak(&good);
            assert!(
                peaks[0] <= p / 2 + 1 && peaks[0] >= p / 2 - 1 && peaks[1] <= p / 4 + 1,
                "{codec:?}: {p} then {peaks:?}"
            );
            assert_eq!(&peaks[2..], [0, 0], "{codec:?}");
        }
    }

    #[test]
    fn opus_conceals_with_plc_and_recovers_with_fec() {
        let mut enc = Encoder::new(Codec::Opus).unwrap();
        let mut dec = Decoder::new(Codec::Opus).unwrap();
        let mut packets = Vec::new();
        for k in 0..30 {
            let mut p = Vec::new();
            enc.encode(&tone(440.0, 48000, k * 960, 960, 8000.0), &mut p)
                .unwrap();
            packets.push(p);
        }
        let mut out = Vec::new();
        for p in &packets[..20] {
            dec.decode(p, &mut out).unwrap();
        }
        // 20 lost: recovered from 21's FEC; then 22 lost with nothing after it: PLC.
        let mut fec = Vec::new();
        assert_eq!(dec.conceal(Some(&packets[21]), &mut fec), 960);
        assert!(power(&fec, 440.0, 48000) > 50.0 * power(&fec, 1000.0, 48000));
        dec.decode(&packets[21], &mut out).unwrap();
        let mut plc = Vec::new();
        assert_eq!(dec.conceal(None, &mut plc), 960);
        assert!(plc.iter().any(|&s| s != 0), "PLC continues the tone");
    }

    #[test]
    fn bad_payloads_are_errors() {
        for codec in ALL {
            let mut dec = Decoder::new(codec).unwrap();
            let mut out = Vec::new();
            assert!(dec.decode(&[], &mut out).is_err(), "{codec:?}");
            assert!(dec.decode(&[0x55; 5000], &mut out).is_err(), "{codec:?}");
            assert!(out.is_empty());
        }
        // A TOC byte announcing a frame count the payload cannot hold.
        let mut dec = Decoder::new(Codec::Opus).unwrap();
        assert!(dec.decode(&[0x03], &mut Vec::new()).is_err());
    }
}
