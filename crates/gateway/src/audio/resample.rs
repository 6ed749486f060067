//! Sample-rate conversion between a device codec's rate (8 or 16 kHz) and the meeting's 48 kHz, in
//! fixed 20 ms chunks.
//!
//! rubato's synchronous FFT resampler fits this job: the ratios are fixed integers (×3, ×6 and back),
//! both sides of a 20 ms tick have a fixed size (`FixedSync::Both`: 160 or 320 in, 960 out), it
//! allocates nothing per chunk, and its 10 ms of delay is well under the jitter buffer's. The
//! asynchronous sinc resamplers would only add cost for a drift we do not correct here (the jitter
//! buffer absorbs the device clock's drift instead). Samples are converted to `f32` around it because
//! the codecs speak `i16`.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use super::AudioError;

/// One direction of conversion, 20 ms at a time; a pass-through when the rates are equal.
pub struct Resampler {
    fft: Option<Fft<f32>>,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("input_samples", &self.input.len())
            .field("output_samples", &self.output.len())
            .finish()
    }
}

impl Resampler {
    /// A converter from `from` Hz to `to` Hz for 20 ms chunks.
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        let input_len = samples_per_frame(from);
        let output_len = samples_per_frame(to);
        let fft = if from == to {
            None
        } else {
            let fft = Fft::<f32>::new(from as usize, to as usize, input_len, 1, FixedSync::Both)
                .map_err(|e| AudioError::Resampler(e.to_string()))?;
            // FixedSync::Both rounds the chunk up to whole FFT blocks; for our rates it must land
            // exactly on 20 ms each side, or ticks would drift.
            if fft.input_frames_next() != input_len || fft.output_frames_next() != output_len {
                return Err(AudioError::Resampler(format!(
                    "{from}->{to} Hz: chunks of {} -> {}, not 20 ms",
                    fft.input_frames_next(),
                    fft.output_frames_next()
                )));
            }
            Some(fft)
        };
        Ok(Self {
            fft,
            input: vec![0.0; input_len],
            output: vec![0.0; output_len],
        })
    }

    /// Samples this converter takes per chunk.
    pub fn input_len(&self) -> usize {
        self.input.len()
    }

    /// Samples this converter gives per chunk.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Convert one 20 ms chunk: `input` must hold [`Self::input_len`] samples and `out`
    /// [`Self::output_len`].
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> Result<(), AudioError> {
        if input.len() != self.input.len() {
            return Err(AudioError::FrameSize {
                expected: self.input.len(),
                got: input.len(),
            });
        }
        if out.len() != self.output.len() {
            return Err(AudioError::FrameSize {
                expected: self.output.len(),
                got: out.len(),
            });
        }
        let Some(fft) = self.fft.as_mut() else {
            out.copy_from_slice(input);
            return Ok(());
        };
        for (f, &s) in self.input.iter_mut().zip(input) {
            *f = f32::from(s) / 32768.0;
        }
        let frames_in = self.input.len();
        let frames_out = self.output.len();
        let buf_in = InterleavedSlice::new(&self.input[..], 1, frames_in)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        let mut buf_out = InterleavedSlice::new_mut(&mut self.output[..], 1, frames_out)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        fft.process_into_buffer(&buf_in, &mut buf_out, None)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        for (o, &f) in out.iter_mut().zip(&self.output) {
            *o = (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        Ok(())
    }
}

/// Samples in 20 ms at `rate` Hz.
pub fn samples_per_frame(rate: u32) -> usize {
    (rate / 50) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_signal::{power, tone};

    fn run(from: u32, to: u32, freq: f64) -> Vec<i16> {
        let mut r = Resampler::new(from, to).unwrap();
        let (n_in, n_out) = (r.input_len(), r.output_len());
        let mut all = Vec::new();
        let mut out = vec![0; n_out];
        for k in 0..10 {
            r.process(&tone(freq, from, k * n_in, n_in, 10000.0), &mut out)
                .unwrap();
            all.extend_from_slice(&out);
        }
        all
    }

    #[test]
    fn chunk_sizes_are_20_ms() {
        for (from, to, i, o) in [
            (8000, 48000, 160, 960),
            (16000, 48000, 320, 960),
            (48000, 8000, 960, 160),
            (48000, 16000, 960, 320),
            (48000, 48000, 960, 960),
        ] {
            let r = Resampler::new(from, to).unwrap();
            assert_eq!((r.input_len(), r.output_len()), (i, o), "{from}->{to}");
        }
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level() {
        for (from, to, freq) in [
            (8000, 48000, 440.0),
            (16000, 48000, 1000.0),
            (48000, 8000, 1000.0),
            (48000, 16000, 440.0),
        ] {
            let out = run(from, to, freq);
            // Skip the first 40 ms: the resampler's delay starts as silence.
            let steady = &out[out.len() * 4 / 10..];
            let at = power(steady, freq, to);
            let off = power(steady, freq * 1.7, to).max(power(steady, freq / 2.0, to));
            assert!(at > 100.0 * off, "{from}->{to}: {at} vs {off}");
            let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((9000..=11000).contains(&peak), "{from}->{to}: peak {peak}");
        }
    }

    #[test]
    fn downsampling_removes_what_the_lower_rate_cannot_carry() {
        // 6 kHz fits 48 kHz but not 8 kHz (Nyquist 4 kHz): it must not fold back as a 2 kHz alias.
        let out = run(48000, 8000, 6000.0);
        let steady = &out[out.len() * 4 / 10..];
        let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak < 300, "alias peak {peak}");
    }

    #[test]
    fn wrong_sizes_are_an_error_not_a_panic() {
        let mut r = Resampler::new(8000, 48000).unwrap();
        let mut out = vec![0; 960];
        assert!(r.process(&[0; 100], &mut out).is_err());
        assert!(r.process(&[0; 160], &mut out[..10]).is_err());
    }
}
