//! The shared vocabulary of Convene.
//!
//! This crate holds what every plane must agree on and nothing else: identifiers ([`MeetingId`],
//! [`AttendeeId`]), the kinds of things that take part in a meeting ([`ClientType`], [`MediaSource`]),
//! the typed [`MeetingEvent`]s the media plane emits and the [`EventBus`] they travel on (the
//! in-process [`InProcessBus`], and the durable [`EventJournal`] a single-machine deployment runs on),
//! the signed [`join_token`]s by which the admin plane admits attendees to the media plane, and the
//! attendee [`port`] through which calls the gateway bridges take part in a meeting's media.
//!
//! Its only IO is the [`journal`] file. It knows nothing of WebRTC, SIP or databases: the media plane and
//! the admin plane meet here (events one way, tokens the other) without depending on each other.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod events;
pub mod ids;
pub mod join_token;
pub mod journal;
pub mod keyframe;
pub mod port;
pub mod rewrite;

pub use events::{EventBus, InProcessBus, LeaveReason, MeetingEvent, MeetingEventKind};
pub use ids::{AttendeeId, ClientType, EventId, IdError, MediaSource, MeetingId};
pub use join_token::{AttendeeRole, JoinClaims, JoinTokenIssuer, JoinTokenVerifier, TokenError};
pub use journal::{Batch, EventJournal, EventLog, JournalError};
