//! Tests and benchmarks find free ports however busy the machine is: the
//! benchmarks' simulator takes a range of consecutive ports that it probes
//! and retries, clear of the ephemeral range where neighbours' sockets land.

#[path = "../benches/common/mod.rs"]
mod bench_common;

use std::net::UdpSocket;

#[test]
fn the_benchmark_simulator_starts_while_neighbours_hold_ports_everywhere() {
    // A neighbour holding every 100th port from 20000 up: no range of 200
    // consecutive ports is free there (where the benchmarks used to look).
    let held: Vec<UdpSocket> = (20_000u32..61_000)
        .step_by(100)
        .filter_map(|p| UdpSocket::bind(("127.0.0.1", p as u16)).ok())
        .collect();
    assert!(held.len() > 300, "could hold only {} ports", held.len());
    let mut sim = bench_common::Sim::start(200, 2);
    let range = sim.base as u32..sim.base as u32 + 200;
    assert!(
        held.iter()
            .all(|s| !range.contains(&(s.local_addr().unwrap().port() as u32))),
        "the simulator's range {range:?} overlaps a held port"
    );
    // Its BMCs answer on their ports (the last one was pinged by start).
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let ping = [
        0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x01, 0x00, 0x00,
    ];
    sock.send_to(&ping, ("127.0.0.1", sim.base)).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        sock.recv_from(&mut buf).is_ok(),
        "no pong from {}",
        sim.base
    );
    sim.stop();
}
