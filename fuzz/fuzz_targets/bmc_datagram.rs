//! Any datagram to a BMC endpoint that has a live session: never a panic,
//! and nothing unauthenticated changes the hardware.
#![no_main]
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

#[path = "bmc_common.rs"]
mod bmc_common;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let (mut ep, mut model) = bmc_common::bmc(now);
    let _session = bmc_common::login(&mut ep, &mut model, now);
    let before = (model.power_on(now), model.sel().len());
    let _ = ep.handle_datagram(now, data, &mut model);
    assert_eq!((model.power_on(now), model.sel().len()), before);
});
