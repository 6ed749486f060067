//! SIP for the gateway: message checks and typed views ([`message`]), writing responses and requests
//! ([`compose`]), transports as the core sees them ([`transport`]), RFC 3261 transactions ([`transaction`]), dialogs ([`dialog`]) and RFC 4028
//! session timers ([`session_timer`]).
//!
//! # Why this split
//! Parsing and serialising SIP is rsipstack's (`rsipstack::sip`, pinned exactly): a maintained,
//! fuzzed parser that took ~12 million mutated messages without a panic in our research
//! (docs/research/sip-stack.md). Transactions, dialogs and session timers are ours, hand-written and
//! sans-IO: no well-kept Rust SIP stack is sans-IO (rsipstack runs its transactions as tokio tasks
//! on the wall clock; the one sans-IO stack found, rsiprtp, is young with a single author), and the
//! project's rule is that protocol state machines take `now` and input and return output, so that
//! RFC 3261 timers, retransmissions and races (CANCEL against the 200 OK) are tested in simulated
//! time without sockets or sleeps. The cost is ~1k lines we own, covered by `tests/`.
//! rsipstack still brings tokio as a dependency (its parser does not build without its runtime
//! feature); we use none of its runtime parts.

pub mod compose;
pub mod dialog;
pub mod message;
pub mod session_timer;
pub mod transaction;
pub mod transport;

pub use compose::Reply;
pub use message::{Inbound, Malformed, SipRequest, SipResponse};
pub use rsipstack::sip::Method;
pub use transport::{ConnId, LocalAddrs, Peer, Transport};
