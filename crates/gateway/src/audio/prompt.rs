//! The IVR's spoken prompts: real speech, embedded in the binary.
//!
//! The audio lives in `crates/gateway/prompts/*.raw`, made from the texts below by
//! `crates/gateway/prompts/generate.sh` (espeak-ng and sox; only regenerating needs them) and
//! committed. Each file is headerless PCM: [`PROMPT_RATE`] Hz, mono, signed 16-bit little-endian.
//! [`Prompt::samples`] decodes a prompt once per process; [`Prompt::duration`] needs no decoding, so
//! the signaling core can time its goodbye BYE without touching audio.
//!
//! The call core says when a prompt is due ([`crate::call::Event::Prompt`]); the call's
//! [`super::AudioBridge::play_prompt`] speaks it to the device in its codec.

use std::sync::OnceLock;
use std::time::Duration;

/// Sample rate of the prompt files: wideband speech, G.722's own rate, and a whole ratio to both
/// Opus's 48 kHz and G.711's 8 kHz.
pub const PROMPT_RATE: u32 = 16000;

const ENTER_MEETING_ID: &[u8] = include_bytes!("../../prompts/enter_meeting_id.raw");
const TRY_AGAIN: &[u8] = include_bytes!("../../prompts/try_again.raw");
const GOODBYE_NOT_FOUND: &[u8] = include_bytes!("../../prompts/goodbye_not_found.raw");
const JOINING: &[u8] = include_bytes!("../../prompts/joining.raw");

// A truncated or empty file would lose its last sample or say nothing; refuse to build instead.
const _: () = assert!(whole_samples(ENTER_MEETING_ID));
const _: () = assert!(whole_samples(TRY_AGAIN));
const _: () = assert!(whole_samples(GOODBYE_NOT_FOUND));
const _: () = assert!(whole_samples(JOINING));

const fn whole_samples(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len().is_multiple_of(2)
}

/// One spoken prompt of the IVR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// "Welcome to Convene. Please enter your meeting ID, followed by the pound key."
    EnterMeetingId,
    /// "That meeting ID was not found. Please try again."
    TryAgain,
    /// "Sorry, that meeting ID was not found. Goodbye."
    GoodbyeNotFound,
    /// "Joining your meeting."
    Joining,
}

impl Prompt {
    /// Every prompt, in declaration order.
    pub const ALL: [Prompt; 4] = [
        Prompt::EnterMeetingId,
        Prompt::TryAgain,
        Prompt::GoodbyeNotFound,
        Prompt::Joining,
    ];

    /// Its file name without `.raw`, and its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::EnterMeetingId => "enter_meeting_id",
            Self::TryAgain => "try_again",
            Self::GoodbyeNotFound => "goodbye_not_found",
            Self::Joining => "joining",
        }
    }

    /// What it says (the text `generate.sh` speaks).
    pub fn text(self) -> &'static str {
        match self {
            Self::EnterMeetingId => {
                "Welcome to Convene. Please enter your meeting ID, followed by the pound key."
            }
            Self::TryAgain => "That meeting ID was not found. Please try again.",
            Self::GoodbyeNotFound => "Sorry, that meeting ID was not found. Goodbye.",
            Self::Joining => "Joining your meeting.",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::EnterMeetingId => 0,
            Self::TryAgain => 1,
            Self::GoodbyeNotFound => 2,
            Self::Joining => 3,
        }
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            Self::EnterMeetingId => ENTER_MEETING_ID,
            Self::TryAgain => TRY_AGAIN,
            Self::GoodbyeNotFound => GOODBYE_NOT_FOUND,
            Self::Joining => JOINING,
        }
    }

    /// Its audio at [`PROMPT_RATE`] Hz, mono (decoded on first use, then shared by every call).
    pub fn samples(self) -> &'static [i16] {
        // The embedded bytes are not i16-aligned, so they are decoded rather than reinterpreted.
        static DECODED: [OnceLock<Vec<i16>>; 4] = [const { OnceLock::new() }; 4];
        DECODED[self.index()].get_or_init(|| {
            self.bytes()
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect()
        })
    }

    /// How long it speaks.
    pub fn duration(self) -> Duration {
        let samples = (self.bytes().len() / 2) as u64;
        // Exact: 16 kHz is a whole number of nanoseconds per sample.
        Duration::from_nanos(samples * 1_000_000_000 / u64::from(PROMPT_RATE))
    }
}

impl std::fmt::Display for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_is_a_few_seconds_of_speech() {
        for (i, p) in Prompt::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
            let d = p.duration();
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(8),
                "{p}: {d:?}"
            );
            let samples = p.samples();
            assert_eq!(
                samples.len() as u64,
                d.as_nanos() as u64 * u64::from(PROMPT_RATE) / 1_000_000_000
            );
            // Speech, not silence or noise: loud somewhere, and quiet between words.
            let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(peak > 8000, "{p}: peak {peak}");
            let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
                / samples.len() as f64)
                .sqrt();
            assert!(rms > 500.0 && rms < 8000.0, "{p}: rms {rms}");
        }
    }

    #[test]
    fn decoding_is_little_endian_and_shared() {
        let p = Prompt::Joining;
        let b = p.bytes();
        assert_eq!(p.samples()[0], i16::from_le_bytes([b[0], b[1]]));
        assert!(std::ptr::eq(p.samples(), p.samples()));
    }
}
