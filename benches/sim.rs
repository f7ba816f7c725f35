//! Simulator benchmark: authenticated, encrypted requests/s the built-in
//! simulator answers over loopback with many BMCs and concurrent sessions,
//! its CPU time per request, and its memory per idle BMC.
//!
//! The simulator runs as its own process (`ipmigw sim`), so its CPU time is
//! read from /proc apart from the load generator's. Prints a table and
//! `figure: NAME VALUE UNIT` lines. `cargo bench --bench sim -- --quick`
//! for a short run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipmigw::ipmi::cmd::registry::id;
use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::console::{ConsoleConfig, Handshake};
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;
use rand::{rngs::StdRng, SeedableRng};
use tokio::net::UdpSocket;

mod common;
use common::{proc_usage, Sim};

/// One session: log in, then Get Device ID back to back until told to stop.
async fn session_loop(port: u16, suite: CipherSuite, done: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(("127.0.0.1", port)).await.unwrap();
    let mut cfg = ConsoleConfig::new(
        b"admin",
        SecretBytes::from(&b"Adm1nPass"[..]),
        Privilege::User,
    );
    cfg.cipher_suites = vec![suite];
    let mut hs = Handshake::start(cfg, Box::new(StdRng::from_entropy()), Instant::now()).unwrap();
    let mut buf = [0u8; 1024];
    let mut s = loop {
        while let Some(b) = hs.poll_transmit() {
            sock.send(&b).await.unwrap();
        }
        if let Some(outcome) = hs.poll_outcome() {
            break outcome.expect("login");
        }
        let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
            .await
            .expect("login answer")
            .unwrap();
        let _ = hs.handle_datagram(Instant::now(), &buf[..n]);
    };
    while !stop.load(Relaxed) {
        let req = s.send_request(id::GET_DEVICE_ID.netfn, id::GET_DEVICE_ID.cmd, vec![]);
        sock.send(&req).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
            Ok(Ok(n)) if s.handle_datagram(&buf[..n]).is_ok() => {
                done.fetch_add(1, Relaxed);
            }
            _ => s.cancel_pending(),
        }
    }
}

fn throughput(bmcs: usize, sessions: usize, suite: CipherSuite, secs: u64) -> (f64, f64, f64) {
    let sim = Sim::start(bmcs, sessions.div_ceil(bmcs) + 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let pid = sim.pid().to_string();
    let (rps, sim_us, gen_us) = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let port = sim.base + (i % bmcs) as u16;
            tasks.push(tokio::spawn(session_loop(
                port,
                suite,
                done.clone(),
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (sim0, _) = proc_usage(&pid);
        let (gen0, _) = proc_usage("self");
        let n0 = done.load(Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let n = done.load(Relaxed) - n0;
        let dt = t0.elapsed().as_secs_f64();
        let (sim1, _) = proc_usage(&pid);
        let (gen1, _) = proc_usage("self");
        stop.store(true, Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let per = |a: f64, b: f64| (b - a) / n.max(1) as f64 * 1e6;
        (n as f64 / dt, per(sim0, sim1), per(gen0, gen1))
    });
    drop(sim);
    (rps, sim_us, gen_us)
}

fn memory(count: usize) -> (u64, u64) {
    let mut one = Sim::start(1, 4);
    std::thread::sleep(Duration::from_millis(300));
    let (_, rss1) = proc_usage(&one.pid().to_string());
    one.stop();
    let many = Sim::start(count, 4);
    std::thread::sleep(Duration::from_millis(500));
    let (_, rssn) = proc_usage(&many.pid().to_string());
    (rss1, rssn)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 3 } else { 10 };
    println!(
        "ipmigw simulator benchmark ({} run), {} cores",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<44} {:>12} {:>14} {:>14}",
        "scenario", "req/s", "sim CPU us/req", "gen CPU us/req"
    );
    let mut best = 0f64;
    for (bmcs, sessions, suite) in [
        (100, 64, CipherSuite::Suite17),
        (100, 64, CipherSuite::Suite3),
        (1000, 256, CipherSuite::Suite17),
    ] {
        let (rps, sim_us, gen_us) = throughput(bmcs, sessions, suite, secs);
        best = best.max(rps);
        println!(
            "{:<44} {:>12.0} {:>14.1} {:>14.1}",
            format!("{bmcs} BMCs, {sessions} sessions, suite {suite}, Get Device ID"),
            rps,
            sim_us,
            gen_us
        );
        println!("figure: sim_rps_{bmcs}bmc_{sessions}s_suite{suite} {rps:.0} req/s");
        println!("figure: sim_cpu_us_per_req_{bmcs}bmc_{sessions}s_suite{suite} {sim_us:.1} us");
    }
    let count = if quick { 2000 } else { 10_000 };
    let (rss1, rssn) = memory(count);
    let per = (rssn.saturating_sub(rss1)) as f64 / (count - 1) as f64;
    println!(
        "memory: 1 BMC {:.1} MiB, {count} BMCs {:.1} MiB: {:.1} KiB per idle BMC",
        rss1 as f64 / 1048576.0,
        rssn as f64 / 1048576.0,
        per / 1024.0
    );
    println!("figure: sim_rps_best {best:.0} req/s");
    println!("figure: sim_bytes_per_idle_bmc {per:.0} bytes");
}
