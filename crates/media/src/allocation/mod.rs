//! Bandwidth allocation (issue 6), sans-IO: who receives which simulcast layer of whom, what each
//! publisher should send, and whose audio is forwarded in a large meeting. Pure functions of the meeting's
//! facts, each subscriber's downlink estimate and the previous decision; the shard feeds them and applies
//! the result (layer switches on keyframes, pauses, publisher targets).
//!
//! - [`tiers`]: the documented bitrate tiers (`media-targets.md`) by meeting size, HD mode and screen.
//! - [`speakers`]: the loudest few speakers from RFC 6464 audio levels, smoothed, with hold times.
//! - [`policy`]: one subscriber's allocation under its estimate, by priority (audio, screen, active
//!   speaker video, other video) with hysteresis against flapping; and the publishers' targets.
//! - [`reprobe`]: when to make a subscriber's estimator probe again while its estimate falls short of
//!   what the allocation wants.

pub mod policy;
pub mod reprobe;
pub mod speakers;
pub mod tiers;
