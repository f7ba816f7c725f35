//! Any datagram fed to a login in progress: no panic, and garbage is ignored.
#![no_main]
use ipmigw::ipmi::session::console::{ConsoleConfig, Handshake};
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = ConsoleConfig::new(b"admin", SecretBytes::from(&b"pw"[..]), Privilege::Operator);
    let now = std::time::Instant::now();
    let mut hs = Handshake::start(cfg, Box::new(rand::rngs::OsRng), now).unwrap();
    // Several datagrams in a row, split on a marker, to reach later states
    // only when the fuzzer finds valid-looking replies.
    for part in data.split(|b| *b == 0xA5).take(8) {
        let _ = hs.handle_datagram(now, part);
        while hs.poll_transmit().is_some() {}
        if hs.poll_outcome().is_some() {
            break;
        }
    }
});
