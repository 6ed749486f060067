//! Per-subscription forwarding helpers: keyframe detection and RTP rewriting.
//!
//! These are pure functions and small state machines; the shard applies them per packet.

mod keyframe;
mod rewrite;

pub use keyframe::{VideoCodec, starts_keyframe};
pub use rewrite::{Rewriter, Rewritten};
