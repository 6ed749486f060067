//! Any text a client sends on the signaling socket: parsed or refused with an error, never a panic.
#![no_main]

use convene_media::signal::messages::ServerMessage;
use convene_media::signal::ws::{check_name, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match parse(text) {
        Ok(_) => {}
        Err(ServerMessage::Error { .. }) => {}
        Err(other) => panic!("parse failed without an error message: {other:?}"),
    }
    let _ = check_name(text);
});
