//! The fast path for media: the pieces with which the shard receives publishers' RTP and sends
//! subscribers' RTP itself (`shard/fast_ingress.rs`, `shard/fast_egress.rs`), while str0m keeps ICE,
//! DTLS, SCTP, negotiation and the subscribers' RTCP. Why: str0m's per-packet cost was several times
//! the SRTP floor and it allocated per packet (`bench/results/2026-11-24-notes.md`, ARCHITECTURE "Fast
//! path"). Everything here is sans IO.
//!
//! - [`srtp`]: the RFC 7714 packet transform (AES-GCM), allocation-free, with per-SSRC rollover
//!   counting on the sending side. `convene-floor` uses the same code.
//! - [`keys`]: the DTLS-SRTP keying material str0m negotiates, captured per connection through a
//!   wrapping crypto provider (no fork of str0m).
//! - [`kdf`]: the SRTP session keys of both directions, from that keying material.
//! - [`ingress`]: reading a publisher's packet (header, extensions, packet index, replay window) and
//!   the feedback it expects (transport-wide feedback, NACK, PLI).
//! - [`feedback`]: reading the RTCP subscribers send (transport-wide feedback, NACK, PLI, FIR, REMB).
//! - [`egress`]: a forwarded RTP packet written by us (header, negotiated extensions, payload).
//! - [`outbox`]: the written datagrams' reusable buffers, until the worker sends them.
//! - [`twcc`]: transport-wide sequence numbers and the send history feedback is joined with.
//! - [`rtx`]: each video layer's recent packets, for answering NACKs with RTX.
//! - [`cc`]: send-side congestion control (delay trend, AIMD, loss cap, probing) from transport-wide
//!   feedback, since str0m's estimator cannot see packets str0m does not send.

pub mod cc;
pub mod egress;
pub mod feedback;
pub mod ingress;
pub mod kdf;
pub mod keys;
pub mod outbox;
pub mod prefetch;
pub mod rtx;
pub mod srtp;
pub mod twcc;
