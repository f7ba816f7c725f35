//! Authenticated requests with arbitrary netFn, command and data, through the
//! endpoint's dispatch into the simulated BMC, and the reply back through
//! the console: never a panic, and every request gets a matching reply.
#![no_main]
use std::time::Instant;

use ipmigw::ipmi::wire::message::NetFn;
use libfuzzer_sys::fuzz_target;

#[path = "bmc_common.rs"]
mod bmc_common;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let (mut ep, mut model) = bmc_common::bmc(now);
    let mut s = bmc_common::login(&mut ep, &mut model, now);
    for chunk in data.split(|b| *b == 0xA5).take(4) {
        let [netfn, cmd, rest @ ..] = chunk else { continue };
        let d = s.send_request(NetFn(netfn & 0x3E), *cmd, rest.to_vec());
        let Some(reply) = ep.handle_datagram(now, &d, &mut model) else { continue };
        s.handle_datagram(&reply.bytes).expect("the BMC's reply verifies and matches");
        if ep.session_count() == 0 {
            break; // Close Session or a cold reset ended it.
        }
    }
});
