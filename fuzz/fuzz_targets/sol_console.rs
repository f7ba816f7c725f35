//! The console's SOL engine fed authentic (correctly sealed) SOL packets
//! with arbitrary contents, and the passing of time: never a panic, and
//! it never hands out more characters than arrived.
#![no_main]
use std::time::{Duration, Instant};

use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::console::fuzzing::{seal_sol, sol_console};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let suite = if first & 1 == 0 { CipherSuite::Suite3 } else { CipherSuite::Suite17 };
    let mut now = Instant::now();
    let mut sol = sol_console(suite, now);
    let mut given = 0usize;
    // Packets separated by 0xFF 0xFE; the sequence number counts up.
    for (i, chunk) in rest.split(|b| *b == 0xFE).enumerate() {
        given += chunk.len();
        let _ = sol.handle_datagram(now, &seal_sol(suite, 2 + i as u32, chunk));
        let _ = sol.write(now, chunk);
        now += Duration::from_millis(150);
        sol.handle_timeout(now);
        while sol.poll_transmit().is_some() {}
    }
    assert!(sol.read().len() <= given);
    while sol.poll_event().is_some() {}
});
