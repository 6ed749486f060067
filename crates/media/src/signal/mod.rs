//! Signaling front ends: translate a client protocol into shard [`Command`](crate::shard::Command)s.
//!
//! Only our JSON WebSocket protocol exists today (`docs/signaling.md`); a Chime SDK front end will sit
//! beside it and produce the same commands, so the shard never learns which protocol a client spoke.

pub mod messages;
pub mod ws;

pub use ws::router;
