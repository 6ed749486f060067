//! The shared vocabulary of Convene.
//!
//! This crate holds what every plane must agree on and nothing else: identifiers ([`MeetingId`],
//! [`AttendeeId`]), the kinds of things that take part in a meeting ([`ClientType`], [`MediaSource`]),
//! the typed [`MeetingEvent`]s the media plane emits, and the [`EventBus`] they travel on (with the
//! in-process [`InProcessBus`] used when everything runs in one binary).
//!
//! It has no IO of its own and no knowledge of WebRTC, SIP or storage: the media plane and the admin
//! plane meet here (events one way) without depending on each other.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod events;
pub mod ids;
pub mod join_token;

pub use events::{EventBus, InProcessBus, LeaveReason, MeetingEvent, MeetingEventKind};
pub use ids::{AttendeeId, ClientType, EventId, IdError, MediaSource, MeetingId};
pub use join_token::{JoinClaims, JoinTokenIssuer, JoinTokenVerifier, AttendeeRole, TokenError};
