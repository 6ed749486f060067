//! Any datagram on the SIP port: the request checks, the transaction layer and the call core behind
//! them, then the SDP reader on the same bytes. Answered, refused or dropped; never a panic.
#![no_main]

use std::time::{Duration, Instant};

use convene_gateway::call::{Config, Gateway, Output};
use convene_gateway::sip::{Peer, Transport};
use convene_gateway::{Event, GatewayMetrics};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut gw = Gateway::new(Config::default(), GatewayMetrics::unregistered());
    let now = Instant::now();
    let peer = Peer {
        transport: Transport::Udp,
        addr: ([127, 0, 0, 1], 5090).into(),
        conn: None,
    };
    // The same bytes twice: the second time they are a retransmission (or an in-dialog request).
    gw.handle_message(now, peer, data);
    while let Some(o) = gw.poll_output() {
        if let Output::Event(Event::Incoming { call, .. }) = o {
            gw.accept(now, call, 20000, None);
        }
    }
    gw.handle_message(now, peer, data);
    gw.handle_rtp(now, 1, ([127, 0, 0, 1], 4000).into(), data);
    gw.handle_timeout(now + Duration::from_secs(40));
    gw.hangup_all(now + Duration::from_secs(41));
    while gw.poll_output().is_some() {}
    if let Ok(offer) = convene_gateway::sdp::parse(data) {
        let _ = convene_gateway::sdp::answer(
            &offer,
            &convene_gateway::sdp::Session {
                id: 1,
                version: 1,
                ip: [127, 0, 0, 1].into(),
                port: 20000,
            },
        );
    }
});
