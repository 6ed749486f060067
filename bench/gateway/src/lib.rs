//! `convene-gateway-bench`: how many SIP calls one core bridges into Opus meetings (issue 7).
//!
//! Each call of the SIP gateway runs an [`AudioBridge`](convene_gateway::audio::AudioBridge): every
//! 20 ms it takes the room system's packet (G.722 or PCMU) and the meeting's voices (Opus), and
//! gives one Opus frame to the meeting and one packet in the device's codec back. This crate runs N
//! such bridges on one thread, pinned to one core, paced by the wall clock, and finds the largest N
//! whose every 20 ms round ends in time ([`capacity::Search`]); it reports the CPU per call from the
//! thread's own clock and a breakdown by stage against the bare cost of Opus ([`stages`]).
//!
//! It measures the bridge's transcoding only: no sockets, no tokio, no attendee port, no SFU. Those
//! cost per packet, not per sample, and the SFU's share is what `bench/run`'s other scenarios measure.
//!
//! - [`speech`]: synthetic speech-like audio (no recordings needed);
//! - [`streams`]: the device's and the meeting's media, encoded once and looped;
//! - [`calls::Calls`]: N bridges and one round of their work at a given instant;
//! - [`capacity`]: the paced search; [`stages`]: the per-stage breakdown; [`cpu`]: thread CPU time
//!   and pinning.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod calls;
pub mod capacity;
pub mod cpu;
pub mod speech;
pub mod stages;
pub mod streams;
