//! Any datagram to an established session: dropped or accepted, never a panic.
#![no_main]
use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::console::fuzzing::active_session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
        let mut s = active_session(suite);
        let _ = s.handle_datagram(data);
    }
});
