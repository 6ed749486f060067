//! Who is calling and what they may do: SigV4 verification, the `chime:` action table, and policy
//! evaluation. Pure functions of their inputs (request, credentials, time, policy documents): no IO.

pub mod actions;
pub mod policy;
pub mod sigv4;
