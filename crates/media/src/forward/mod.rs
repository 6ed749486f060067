//! Per-subscription forwarding helpers: keyframe detection and RTP rewriting, shared with the gateway
//! through `convene_core` (`keyframe`, `rewrite`).
//!
//! These are pure functions and small state machines; the shard applies them per packet.

pub use convene_core::keyframe::{VideoCodec, starts_keyframe};
pub use convene_core::rewrite::{Rewriter, Rewritten};
