//! Speech-like test audio, synthesised so the benchmark needs no recordings.
//!
//! Codecs do not cost the same on every signal: Opus picks SILK, CELT or hybrid frames from what it
//! hears, and its encoder works harder on voiced speech than on silence or a pure tone. So the test
//! audio is a crude source-filter voice: a glottal pulse train at a wandering pitch through three
//! formant resonators (vowels), bursts of shaped noise (fricatives), syllables of 60-280 ms with a
//! rise and fall, and pauses between phrases. Seeded, so every run codes the same audio.

use std::f32::consts::PI;

/// Who speaks: the pitch sets the voice, the seed its words.
#[derive(Debug, Clone, Copy)]
pub struct Voice {
    /// Mean fundamental frequency (about 110 Hz for a low voice, 210 Hz for a high one).
    pub pitch_hz: f32,
    pub seed: u64,
}

/// First three formants of five vowels (Peterson and Barney's averages for adult men, in Hz).
const VOWELS: [[f32; 3]; 5] = [
    [730.0, 1090.0, 2440.0],
    [270.0, 2290.0, 3010.0],
    [300.0, 870.0, 2240.0],
    [530.0, 1840.0, 2480.0],
    [570.0, 840.0, 2410.0],
];

/// Formant bandwidths, Hz.
const BANDWIDTHS: [f32; 3] = [90.0, 110.0, 160.0];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sound {
    Vowel([f32; 3]),
    Fricative,
    Pause,
}

/// A two-pole resonator (one formant).
#[derive(Debug, Default, Clone, Copy)]
struct Resonator {
    gain: f32,
    b1: f32,
    b2: f32,
    y1: f32,
    y2: f32,
    bypass: bool,
}

impl Resonator {
    fn tune(&mut self, freq: f32, bandwidth: f32, rate: f32) {
        // A formant the rate cannot carry (3 kHz at 8 kHz sampling is close to Nyquist) is left out.
        self.bypass = freq >= 0.45 * rate;
        let r = (-PI * bandwidth / rate).exp();
        self.b1 = 2.0 * r * (2.0 * PI * freq / rate).cos();
        self.b2 = -r * r;
        // Roughly unit gain at the peak, so the cascade neither explodes nor vanishes.
        self.gain = 1.0 - r;
    }

    fn step(&mut self, x: f32) -> f32 {
        if self.bypass {
            return x;
        }
        let y = self.gain * x + self.b1 * self.y1 + self.b2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// RMS of a vowel's middle and of a fricative, relative to full scale: speech around -20 dBFS, its
/// fricatives well below (their energy is high in frequency, not in level).
const VOWEL_RMS: f32 = 0.1;
const FRICATIVE_RMS: f32 = 0.02;

/// `samples` samples at `rate` Hz of `voice` speaking.
pub fn speech(rate: u32, samples: usize, voice: Voice) -> Vec<i16> {
    let fs = rate as f32;
    let mut rng = fastrand::Rng::with_seed(voice.seed);
    // Higher voices have shorter vocal tracts: formants move up a little with pitch.
    let tract = (voice.pitch_hz / 120.0).powf(0.3);
    let mut formants = [Resonator::default(); 3];
    let mut hiss = Resonator::default();
    hiss.tune(0.35 * fs, 0.1 * fs, fs);

    let mut out = Vec::with_capacity(samples + rate as usize);
    let mut syllable = Vec::new();
    let mut sound = Sound::Pause;
    let (mut phase, mut last_glottal) = (0.0f32, 0.0f32);
    while out.len() < samples {
        // The next syllable: after a spoken one, sometimes a pause between phrases.
        let ms = if sound != Sound::Pause && rng.f32() < 0.15 {
            sound = Sound::Pause;
            rng.u32(150..500)
        } else if rng.f32() < 0.25 {
            sound = Sound::Fricative;
            rng.u32(60..120)
        } else {
            let v = VOWELS[rng.usize(..VOWELS.len())];
            sound = Sound::Vowel(v);
            for ((r, f), b) in formants.iter_mut().zip(v).zip(BANDWIDTHS) {
                r.tune(f * tract, b, fs);
            }
            rng.u32(120..280)
        };
        let len = (rate * ms / 1000) as usize;
        syllable.clear();
        for pos in 0..len {
            let t = (out.len() + pos) as f32 / fs;
            let within = pos as f32 / len as f32;
            let y = match sound {
                Sound::Pause => 0.0,
                Sound::Fricative => hiss.step(rng.f32() * 2.0 - 1.0),
                Sound::Vowel(_) => {
                    // Intonation: a slow wander, and each syllable's pitch falling a little.
                    let f0 = voice.pitch_hz
                        * (1.0 + 0.08 * (2.0 * PI * 0.7 * t).sin())
                        * (1.05 - 0.1 * within);
                    phase += f0 / fs;
                    if phase >= 1.0 {
                        phase -= 1.0;
                    }
                    // Open phase of the glottis, then closed; its derivative is what the lips radiate.
                    let glottal = if phase < 0.6 {
                        (PI * phase / 0.6).sin().powi(2)
                    } else {
                        0.0
                    };
                    let source = glottal - last_glottal + 0.002 * (rng.f32() - 0.5);
                    last_glottal = glottal;
                    formants.iter_mut().fold(source, |x, r| r.step(x))
                }
            };
            syllable.push(y);
        }
        // Each syllable brought to its level, then shaped: a rise and fall whose square root keeps
        // the middle full. (The resonators' gains differ by formant and rate; this evens them out.)
        let target = match sound {
            Sound::Vowel(_) => VOWEL_RMS,
            Sound::Fricative => FRICATIVE_RMS,
            Sound::Pause => 0.0,
        };
        let rms = (syllable.iter().map(|s| s * s).sum::<f32>() / len.max(1) as f32).sqrt();
        let gain = if rms > 0.0 { target / rms } else { 0.0 };
        for (pos, s) in syllable.iter().enumerate() {
            let envelope = (PI * pos as f32 / len as f32).sin().sqrt();
            let x = (s * gain * envelope * 32767.0).clamp(-32768.0, 32767.0);
            out.push(x as i16);
        }
    }
    out.truncate(samples);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_talks_and_pauses() {
        let s = speech(
            16000,
            16000 * 4,
            Voice {
                pitch_hz: 120.0,
                seed: 7,
            },
        );
        assert_eq!(s.len(), 64000);
        let frames: Vec<u8> = s
            .chunks(320)
            .map(convene_gateway::audio::level::audio_level)
            .collect();
        let loud = frames.iter().filter(|&&l| l < 40).count();
        let quiet = frames.iter().filter(|&&l| l > 60).count();
        // Mostly speech, with some pauses: not a constant tone, not silence.
        assert!(loud > frames.len() / 2, "{loud} loud of {}", frames.len());
        assert!(quiet > 0, "no pause in 4 s");
    }
}
