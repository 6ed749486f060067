//! Meeting events into billing and reports: the consumer that reads the media plane's durable event log
//! ([`consumer`]) and the Active Pro rules it applies ([`rules`], sans-IO).

pub mod consumer;
pub mod rules;
