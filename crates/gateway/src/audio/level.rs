//! RFC 6464 audio level of a frame, and a voice flag with a short hangover.
//!
//! The level is the frame's RMS in dBov (0 dBov: a full-scale square wave) with the sign dropped and
//! clamped to 0..=127, so 0 is the loudest and 127 is silence, as the `ssrc-audio-level` header
//! extension carries it and as the SFU's loudest-speaker ranking reads it.

/// The level for digital silence (RFC 6464 §3: "-127 dBov or less").
pub const SILENCE: u8 = 127;

/// Louder than this (a smaller number) counts as voice: quiet speech sits near -40 dBov, a room
/// system's background noise well below -50.
pub const VOICE_THRESHOLD: u8 = 50;

/// Frames the voice flag stays up after the level falls: the gaps between words must not make a
/// speaker flicker out of the loudest-speaker list.
pub const HANGOVER_FRAMES: u8 = 10;

/// RFC 6464 level (-dBov of the RMS, 0..=127) of 16-bit samples.
pub fn audio_level(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return SILENCE;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / samples.len() as f64).sqrt();
    if rms < 1.0 {
        // Below one LSB: log10 would run off to -inf, and it is silence anyway.
        return SILENCE;
    }
    let dbov = 20.0 * (rms / 32768.0).log10();
    (-dbov).round().clamp(0.0, f64::from(SILENCE)) as u8
}

/// Voice activity from a run of levels: up at [`VOICE_THRESHOLD`], down [`HANGOVER_FRAMES`] after.
#[derive(Debug, Default, Clone)]
pub struct VoiceActivity {
    hangover: u8,
}

impl VoiceActivity {
    /// Feed one frame's level; true while the speaker is talking.
    pub fn update(&mut self, level: u8) -> bool {
        if level < VOICE_THRESHOLD {
            self.hangover = HANGOVER_FRAMES;
            true
        } else if self.hangover > 0 {
            self.hangover -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn silence_is_127_and_full_scale_is_near_0() {
        assert_eq!(audio_level(&[0; 960]), 127);
        assert_eq!(audio_level(&[]), 127);
        assert_eq!(audio_level(&[1, -1, 0, 0]), 127);
        // A full-scale square wave is 0 dBov by definition, a full-scale sine 3 dB below it.
        assert_eq!(audio_level(&[i16::MIN; 960]), 0);
        assert_eq!(audio_level(&sine(32767.0, 960)), 3);
    }

    #[test]
    fn level_falls_20_per_decade_of_amplitude() {
        let loud = audio_level(&sine(10000.0, 960));
        let quiet = audio_level(&sine(1000.0, 960));
        let quieter = audio_level(&sine(100.0, 960));
        assert_eq!(quiet - loud, 20);
        assert_eq!(quieter - quiet, 20);
        assert_eq!(loud, 13);
    }

    #[test]
    fn voice_flag_has_a_hangover() {
        let mut vad = VoiceActivity::default();
        assert!(!vad.update(127));
        assert!(vad.update(20));
        for _ in 0..HANGOVER_FRAMES {
            assert!(vad.update(100));
        }
        assert!(!vad.update(100));
        assert!(!vad.update(VOICE_THRESHOLD));
        assert!(vad.update(VOICE_THRESHOLD - 1));
    }
}
