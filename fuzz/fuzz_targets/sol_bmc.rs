//! A BMC endpoint with an active SOL payload, fed SOL packets with
//! arbitrary contents sealed in the holding session (so they pass the MAC
//! and the window) and raw datagrams: never a panic, never more keystrokes
//! for the host than arrived.
#![no_main]
use std::time::{Duration, Instant};

use ipmigw::ipmi::session::bmc::SolSettings;
use ipmigw::ipmi::session::console::sol::{SolConfig, SolConsole};
use libfuzzer_sys::fuzz_target;

#[path = "bmc_common.rs"]
mod bmc_common;

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let (mut ep, mut model) = bmc_common::bmc_with_sol(now, SolSettings::new(623));
    let session = bmc_common::login(&mut ep, &mut model, now);
    let mut sol = SolConsole::start(session, SolConfig::new(623), now);
    for _ in 0..8 {
        let Some(d) = sol.poll_transmit() else { break };
        if let Some(r) = ep.handle_datagram(now, &d, &mut model) {
            let _ = sol.handle_datagram(now, &r.bytes);
        }
    }
    assert!(ep.sol_owner().is_some(), "activated");
    let mut session = sol.into_session();
    let mut given = 0usize;
    for chunk in data.split(|b| *b == 0xFE) {
        given += chunk.len();
        let sealed = session.seal_sol(chunk);
        let _ = ep.handle_datagram(now, &sealed, &mut model);
        let _ = ep.handle_datagram(now, chunk, &mut model);
        let _ = ep.sol_write(now, chunk);
        now += Duration::from_millis(300);
        ep.handle_timeout(now);
        while ep.poll_sol_transmit().is_some() {}
    }
    assert!(ep.sol_read().len() <= given);
});
