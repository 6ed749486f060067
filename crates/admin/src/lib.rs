//! Convene's control plane: the administration API of the admin guide, wire-compatible with the public
//! Chime admin API so boto3 and the AWS CLI work against it.
//!
//! - [`iam`]: the sans-IO identity core: SigV4 verification, the `chime:` action table, policy evaluation.
//! - [`store`]: storage through `sqlx` (SQLite by default, PostgreSQL), one repository layer.
//! - [`api`]: the HTTP surface (axum), mounted by the `convene` binary: authenticate, resolve the one
//!   operation, authorize its action, execute, answer in the AWS error shape.
//! - [`principals`] and [`secrets`]: administrators, their access keys, and the master key that seals them.
//!
//! - [`portal`]: the users' side: invitation acceptance, sign-in sessions, meetings, the admission rule
//!   and the join tokens the media plane checks.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod api;
pub mod audit_log;
pub mod billing;
pub mod iam;
pub mod mail;
pub mod model;
pub mod portal;
pub mod principals;
pub mod secrets;
pub mod store;
