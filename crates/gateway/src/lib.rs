//! Convene's SIP gateway: room systems (Cisco, Tandberg, Polycom; baresip in our tests) dial into
//! meetings by SIP.
//!
//! This crate is a gateway call end to end: SIP over UDP, TCP and TLS, RFC 3261 transactions and
//! dialogs, RFC 4028 session timers, the dial plan and DTMF IVR, the audio and H.264 offer/answer, and
//! the call's media through an attendee port of its meeting ([`video::VideoRelay`] shows the room the
//! meeting's speaker). It depends on
//! `convene-core` only; admission is asked through the [`door::MeetingDoor`] trait that
//! `crates/server` implements with the admin plane's one admission rule.
//!
//! [`audio::AudioBridge`] is a call's sans-IO audio: the device's codec to and from the meeting's Opus,
//! and the IVR's spoken [`audio::Prompt`]s (committed audio made by `prompts/generate.sh`), which the
//! core asks for with [`call::Event::Prompt`].
//!
//! The two types that matter: [`call::Gateway`], the sans-IO core (time and messages in, messages
//! and events out; every protocol rule lives there and below), and [`net::SipServer`], the tokio
//! edge that owns the sockets and runs the core.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod audio;
pub mod call;
pub mod dialplan;
pub mod door;
pub mod dtmf;
mod media_task;
pub mod metrics;
pub mod net;
pub mod sdp;
pub mod sip;
pub mod srtp;
pub mod tls;
pub mod video;

pub use call::{CallId, Config, EndReason, Event, Gateway, Output};
pub use door::{JoinGrant, MeetingDoor, Refused};
pub use metrics::GatewayMetrics;
