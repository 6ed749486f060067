//! An Opus encoder restricted to SILK, for a room's narrow- and wideband voice.
//!
//! Why: for 8 or 16 kHz input at 32 kbit/s libopus codes SILK frames whatever its application, but
//! created for VoIP it also runs its tonality analysis on every 16 kHz frame (an FFT and a music/speech
//! classifier that chooses between modes it cannot use at that rate): 11 % of the encode, measured
//! (152 against 171 us a frame, same bit rate; bench/results/2026-12-06-gateway-notes.md). libopus 1.5's
//! `OPUS_APPLICATION_RESTRICTED_SILK` skips that and never allocates CELT. Its packets are ordinary
//! SILK-mode Opus: any decoder plays them.
//!
//! Why by hand: the `opus` crate creates only VoIP, Audio and low-delay encoders. This wraps the same
//! libopus the `opus` crate links (`opusic-sys`): create, the five settings the bridge uses, encode,
//! destroy.

use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use opusic_sys as ffi;

/// What libopus refused, by its error code.
#[derive(Debug, thiserror::Error)]
#[error("libopus {call}: {message} ({code})")]
pub struct LibopusError {
    pub call: &'static str,
    pub code: i32,
    pub message: String,
}

impl LibopusError {
    fn new(call: &'static str, code: c_int) -> Self {
        // SAFETY: opus_strerror returns a pointer to a static NUL-terminated string for any code.
        let message = unsafe { CStr::from_ptr(ffi::opus_strerror(code)) }
            .to_string_lossy()
            .into_owned();
        Self {
            call,
            code,
            message,
        }
    }
}

fn check(call: &'static str, code: c_int) -> Result<c_int, LibopusError> {
    if code < 0 {
        Err(LibopusError::new(call, code))
    } else {
        Ok(code)
    }
}

/// A mono SILK-only Opus encoder (see the module docs).
pub struct SilkEncoder {
    state: NonNull<ffi::OpusEncoder>,
}

// SAFETY: the encoder state is plain memory owned by this value, with no thread affinity; every call
// takes `&mut self`, so it is never used from two threads at once.
unsafe impl Send for SilkEncoder {}

impl std::fmt::Debug for SilkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SilkEncoder")
    }
}

impl SilkEncoder {
    /// A mono encoder of `input_rate` samples a second (8, 12 or 16 kHz: SILK's rates).
    pub fn new(input_rate: u32) -> Result<Self, LibopusError> {
        let rate = i32::try_from(input_rate)
            .map_err(|_| LibopusError::new("opus_encoder_create", ffi::OPUS_BAD_ARG))?;
        let mut error: c_int = 0;
        // SAFETY: plain arguments and a valid pointer for the error code.
        let state = unsafe {
            ffi::opus_encoder_create(rate, 1, ffi::OPUS_APPLICATION_RESTRICTED_SILK, &mut error)
        };
        check("opus_encoder_create", error)?;
        let state = NonNull::new(state)
            .ok_or_else(|| LibopusError::new("opus_encoder_create", ffi::OPUS_ALLOC_FAIL))?;
        Ok(Self { state })
    }

    /// One integer setting (`request` is an `OPUS_SET_*_REQUEST`).
    fn set(&mut self, call: &'static str, request: c_int, value: i32) -> Result<(), LibopusError> {
        // SAFETY: a live encoder; every request used here takes one `opus_int32` argument.
        check(call, unsafe {
            ffi::opus_encoder_ctl(self.state.as_ptr(), request, value)
        })
        .map(drop)
    }

    pub fn set_bitrate(&mut self, bps: i32) -> Result<(), LibopusError> {
        self.set("OPUS_SET_BITRATE", ffi::OPUS_SET_BITRATE_REQUEST, bps)
    }

    pub fn set_inband_fec(&mut self, on: bool) -> Result<(), LibopusError> {
        self.set(
            "OPUS_SET_INBAND_FEC",
            ffi::OPUS_SET_INBAND_FEC_REQUEST,
            i32::from(on),
        )
    }

    pub fn set_packet_loss_perc(&mut self, percent: i32) -> Result<(), LibopusError> {
        self.set(
            "OPUS_SET_PACKET_LOSS_PERC",
            ffi::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
            percent,
        )
    }

    pub fn set_complexity(&mut self, complexity: i32) -> Result<(), LibopusError> {
        self.set(
            "OPUS_SET_COMPLEXITY",
            ffi::OPUS_SET_COMPLEXITY_REQUEST,
            complexity,
        )
    }

    /// Encodes one frame of `pcm` (a valid Opus frame length at the input rate) into `out`; returns
    /// the payload's length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, LibopusError> {
        let samples = c_int::try_from(pcm.len())
            .map_err(|_| LibopusError::new("opus_encode", ffi::OPUS_BAD_ARG))?;
        let room = i32::try_from(out.len()).unwrap_or(i32::MAX);
        // SAFETY: a live encoder; `pcm` holds `samples` mono samples and `out` has `room` bytes, and
        // libopus reads and writes only within those.
        let n = unsafe {
            ffi::opus_encode(
                self.state.as_ptr(),
                pcm.as_ptr(),
                samples,
                out.as_mut_ptr(),
                room,
            )
        };
        check("opus_encode", n).map(|n| n as usize)
    }
}

impl Drop for SilkEncoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create, destroyed once.
        unsafe { ffi::opus_encoder_destroy(self.state.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(rate: u32, frames: usize) -> Vec<i16> {
        let n = rate as usize / 50 * frames;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                let v: f64 = (1..8)
                    .map(|h| {
                        (2.0 * std::f64::consts::PI * 150.0 * f64::from(h) * t).sin() / f64::from(h)
                    })
                    .sum();
                (v * 6000.0) as i16
            })
            .collect()
    }

    /// Its packets are SILK-only (TOC configs 0-11) and the `opus` crate's decoder plays them back
    /// with the voice's energy.
    #[test]
    fn a_voice_comes_back_through_an_ordinary_decoder() {
        for rate in [8000, 16000] {
            let mut enc = SilkEncoder::new(rate).expect("encoder");
            enc.set_bitrate(32_000).expect("bitrate");
            enc.set_inband_fec(true).expect("fec");
            enc.set_packet_loss_perc(10).expect("loss");
            enc.set_complexity(9).expect("complexity");
            let mut dec = opus::Decoder::new(rate, opus::Channels::Mono).expect("decoder");
            let pcm = voice(rate, 50);
            let frame = rate as usize / 50;
            let mut out = vec![0i16; frame];
            let (mut energy_in, mut energy_out) = (0.0f64, 0.0f64);
            for (k, chunk) in pcm.chunks(frame).enumerate() {
                let mut packet = [0u8; 1275];
                let n = enc.encode(chunk, &mut packet).expect("encode");
                assert!(n > 1, "{rate} Hz frame {k}: {n} bytes");
                assert!(
                    packet[0] >> 3 < 12,
                    "{rate} Hz frame {k}: TOC config {} is not SILK",
                    packet[0] >> 3
                );
                let got = dec.decode(&packet[..n], &mut out, false).expect("decode");
                assert_eq!(got, frame);
                if k >= 5 {
                    energy_in += chunk.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
                    energy_out += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
                }
            }
            let ratio = energy_out / energy_in;
            assert!(
                (0.5..2.0).contains(&ratio),
                "{rate} Hz: energy ratio {ratio}"
            );
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_crash() {
        assert!(
            SilkEncoder::new(44_100).is_err(),
            "44.1 kHz is no Opus rate"
        );
        let mut enc = SilkEncoder::new(16_000).expect("encoder");
        let err = enc
            .encode(&[0i16; 123], &mut [0u8; 100])
            .expect_err("123 samples is no frame");
        assert!(err.code < 0, "{err}");
        assert!(enc.set_complexity(42).is_err());
    }
}
