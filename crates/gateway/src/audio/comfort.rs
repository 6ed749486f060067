//! Comfort noise (RFC 3389) for codecs without their own (G.711, G.722): a device that stops sending
//! during silence tells the noise level of its room in a CN packet, and a receiver plays noise at
//! that level instead of dead silence, which listeners take for a dropped call. We read the device's
//! level, and send it one while the meeting is silent instead of a stream of encoded silence.
//!
//! Only the level byte is used: the optional spectral parameters are ignored (RFC 3389 §4: a receiver
//! may generate white noise), and we send none.

/// The level we tell the device while the meeting is silent (-dBov): a quiet room.
pub const MEETING_SILENCE_LEVEL: u8 = 80;

/// While the meeting is silent, a CN packet goes to the device this often (in 20 ms frames), so it
/// keeps hearing from us (RFC 3389 §4 leaves the rate to the sender).
pub const CN_EVERY_FRAMES: u32 = 10;

/// The noise level a CN payload announces (-dBov, 0..=127); None if the payload is empty.
pub fn level_of(payload: &[u8]) -> Option<u8> {
    payload.first().map(|l| l & 0x7f)
}

/// Fill `out` with white noise whose RMS is `level` dB below a full-scale sine's (RFC 3389 §3.1 uses
/// dBov as RFC 6464 does).
pub fn generate(level: u8, rng: &mut fastrand::Rng, out: &mut [i16]) {
    // A uniform variable on [-a, a] has RMS a / sqrt(3); dBov 0 is the RMS of a full-scale sine.
    let rms = 32767.0 / std::f64::consts::SQRT_2 * 10f64.powf(-f64::from(level.min(127)) / 20.0);
    let amplitude = (rms * 3f64.sqrt()).min(32767.0) as i32;
    for o in out.iter_mut() {
        *o = if amplitude == 0 {
            0
        } else {
            rng.i32(-amplitude..=amplitude) as i16
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dbov(samples: &[i16]) -> f64 {
        let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
            / samples.len() as f64)
            .sqrt();
        20.0 * (rms / (32767.0 / std::f64::consts::SQRT_2)).log10()
    }

    #[test]
    fn noise_has_the_announced_level() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut out = vec![0i16; 8000];
        for level in [20u8, 40, 60, 80] {
            generate(level, &mut rng, &mut out);
            let got = dbov(&out);
            assert!(
                (got + f64::from(level)).abs() < 1.0,
                "level {level}: {got:.1} dBov"
            );
        }
        generate(127, &mut rng, &mut out);
        assert!(out.iter().all(|&s| s.abs() < 2));
        assert_eq!(level_of(&[0x85, 1, 2]), Some(5));
        assert_eq!(level_of(&[]), None);
    }
}
