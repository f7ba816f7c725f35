//! Authentic (correctly sealed) replies with arbitrary plaintext and sequence
//! numbers: exercises everything behind the MAC check.
#![no_main]
use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::console::fuzzing::{active_session, seal_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let suite = if data[0] & 1 == 0 { CipherSuite::Suite3 } else { CipherSuite::Suite17 };
    let seq = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let mut s = active_session(suite);
    let d = seal_reply(suite, seq, &data[5..]);
    let _ = s.handle_datagram(&d);
});
