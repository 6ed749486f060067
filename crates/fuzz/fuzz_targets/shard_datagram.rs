//! Datagrams on the media port, from strangers and from a source that reuses a known ICE ufrag.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_core::InProcessBus;
use convene_media::metrics::ShardMetrics;
use convene_media::shard::{Shard, ShardConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let server: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let mut shard = Shard::new(ShardConfig::new(0, server), Arc::new(InProcessBus::new(16)), ShardMetrics::unregistered(), now);
    let from: SocketAddr = "10.0.0.2:4000".parse().unwrap();
    for chunk in data.chunks(300) {
        shard.handle_datagram(now, from, server, chunk);
    }
    shard.handle_timeout(now + Duration::from_secs(1));
    while shard.poll_transmit().is_some() {}
});
