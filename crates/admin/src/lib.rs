//! Convene's control plane: the administration API of the admin guide, wire-compatible with the public
//! Chime admin API so boto3 and the AWS CLI work against it.
//!
//! Today this crate holds the sans-IO identity core, [`iam`]: SigV4 request verification and policy
//! evaluation (managed and custom policies). Accounts, users, storage (`sqlx`), audit and billing join it
//! as the admin-API issue lands them; the HTTP surface is an axum router mounted by the `convene` binary.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod iam;
pub mod model;
pub mod secrets;
pub mod store;
