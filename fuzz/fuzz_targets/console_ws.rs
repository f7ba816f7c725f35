//! A client's bytes on the console WebSocket, decoded as the gateway does
//! (server role, its frame limits, then the control-message decoder):
//! never a panic, and every message has an answer.
#![no_main]
use ipmigw::gateway::console::ws::{decode_stream, ClientMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in decode_stream(data) {
        if let ClientMsg::Keys(k) = m {
            // The frame limit holds for whatever got through.
            assert!(k.len() <= 64 * 1024);
        }
    }
});
