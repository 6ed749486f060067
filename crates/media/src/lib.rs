//! Convene's media plane: a selective forwarding unit (SFU) built on `str0m`.
//!
//! Browsers and native clients connect with WebRTC; each attendee has a *publish* connection (its own
//! tracks in) and a *subscribe* connection (everyone else's tracks out). The work is split into
//! [`shard::Shard`]s: one per media worker thread, each owning its UDP socket, its meetings and every
//! connection of their attendees, so the packet path never takes a lock. A shard is sans-IO (time and
//! bytes in, datagrams and events out); [`MediaPlane`] wraps shards in threads and sockets, and
//! [`signal`] is the WebSocket front end clients negotiate through.
//!
//! Start reading at [`shard`] (the model and the hot path), then [`plane`] (threads and placement).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod allocation;
pub mod fastpath;
pub mod forward;
pub mod gso;
pub mod metrics;
pub mod plane;
pub mod rtcp_steering;
mod send_delay;
pub mod shard;
pub mod signal;
pub mod udp;
mod worker;

pub use metrics::MediaMetrics;
pub use plane::{MediaConfig, MediaError, MediaPlane};
