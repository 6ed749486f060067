//! Test signals for the audio code: a pure tone, and the energy at one frequency (Goertzel) to check a
//! tone came through. Shared by the unit tests (`audio::test_signal`) and the integration tests
//! (`tests/audio.rs` includes this file by path), so both judge audio the same way.

use std::f64::consts::PI;

/// `n` samples of a sine at `freq` Hz and `amplitude`, at `rate`, starting at sample `start`.
pub fn tone(freq: f64, rate: u32, start: usize, n: usize, amplitude: f64) -> Vec<i16> {
    (start..start + n)
        .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
        .collect()
}

/// Energy at `freq` (Goertzel).
pub fn power(samples: &[i16], freq: f64, rate: u32) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}
