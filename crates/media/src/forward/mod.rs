//! Per-subscription forwarding helpers: keyframe detection (from `convene_core::keyframe`) and RTP
//! rewriting.
//!
//! These are pure functions and small state machines; the shard applies them per packet.

mod rewrite;

pub use convene_core::keyframe::{VideoCodec, starts_keyframe};
pub use rewrite::{Rewriter, Rewritten};
