//! Shared by the benchmarks: a simulator process (`ipmigw sim`) on a free
//! range of consecutive ports (ipmipower's host ranges need them), and
//! CPU/RSS readings from /proc.
//!
//! Ports: a range is drawn at random below the system's ephemeral range
//! (where neighbours' port-0 sockets land), probed, and taken only when the
//! simulator says it bound every port; any failure draws another range. A
//! neighbour holding some ports costs a retry, never the run.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sim {
    pub child: Child,
    pub base: u16,
}

/// Ranges tried before giving up.
const ATTEMPTS: usize = 64;
/// Lowest port drawn (clear of the well-known and most registered ports).
const LOW: u16 = 10_000;

impl Sim {
    pub fn start(count: usize, max_sessions: usize) -> Sim {
        let (lo, hi) = port_window(count);
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            let base = rand::Rng::gen_range(&mut rand::thread_rng(), lo..=hi);
            if !range_free(base, count) {
                last_error = format!("ports {base}+{count} busy");
                continue;
            }
            match Sim::spawn(base, count, max_sessions) {
                Ok(sim) => return sim,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start the simulator on any of {ATTEMPTS} port ranges in {lo}..{hi}+{count}: {last_error}");
    }

    /// Starts `ipmigw sim` on `base..base+count`; ready once it has said
    /// where it serves (it binds every socket first) and its last BMC
    /// answers a ping.
    fn spawn(base: u16, count: usize, max_sessions: usize) -> Result<Sim, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipmigw"))
            .args(["sim", "--listen", &format!("127.0.0.1:{base}")])
            .args(["--count", &count.to_string()])
            .args(["--max-sessions", &max_sessions.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ipmigw sim");
        let stderr = drain(child.stderr.take().expect("piped"));
        let banner = first_line(child.stdout.take().expect("piped"));
        let mut sim = Sim { child, base };
        match banner {
            Some(l) if l.starts_with("ipmigw sim:") && sim.answers_ping(count) => Ok(sim),
            _ => {
                sim.stop();
                let err = stderr
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default();
                Err(format!("simulator on {base}: {}", err.trim()))
            }
        }
    }

    /// True when the last BMC answers an ASF ping within 10 s.
    fn answers_ping(&mut self, count: usize) -> bool {
        let last = self.base as usize + count - 1;
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let ping = [
            0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x01, 0x00, 0x00,
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let _ = sock.send_to(&ping, ("127.0.0.1", last as u16));
            if sock.recv_from(&mut buf).is_ok() {
                return true;
            }
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first line a child prints, waiting at most 60 s (a simulator with
/// 10,000 BMCs takes a while to bind); `None` when it exits first.
fn first_line(stdout: std::process::ChildStdout) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        // Keep draining, so that the simulator never blocks on a full pipe.
        for _ in lines {}
    });
    rx.recv_timeout(Duration::from_secs(60)).ok().flatten()
}

/// Reads a child's stderr to its end (so that it never blocks on a full
/// pipe); sends its first 4 KiB when the child has closed it.
fn drain(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if kept.len() < 4096 {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// Where a range of `count` ports may start: from [`LOW`] up to the
/// ephemeral range's start (or, when that leaves no room, above its end).
fn port_window(count: usize) -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|v| v.parse::<usize>().ok());
    let (eph_lo, eph_hi) = (it.next().unwrap_or(32_768), it.next().unwrap_or(60_999));
    if eph_lo > LOW as usize + count + 100 {
        return (LOW, (eph_lo - count) as u16);
    }
    let hi = 65_535usize.saturating_sub(count);
    assert!(
        hi > eph_hi + 100,
        "no room for {count} consecutive ports outside the ephemeral range"
    );
    ((eph_hi + 1) as u16, hi as u16)
}

/// True when every UDP port of the range can be bound on loopback now.
fn range_free(base: u16, count: usize) -> bool {
    let mut held = Vec::with_capacity(count);
    for p in base as usize..base as usize + count {
        match UdpSocket::bind(("127.0.0.1", p as u16)) {
            Ok(s) => held.push(s),
            Err(_) => return false,
        }
    }
    true
}

/// (user + system CPU seconds, RSS bytes) of a process, from /proc.
pub fn proc_usage(pid: &str) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks / clock_ticks(), rss_kb * 1024)
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Context switches of a process's threads so far, (voluntary,
/// involuntary) summed by thread name, from /proc. A thread that sleeps
/// until another wakes it counts one voluntary switch, so their count per
/// request is the number of hand-offs between threads that request cost;
/// involuntary ones are preemptions (how busy the machine is).
pub fn thread_switches(pid: &str) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        let e: &mut (u64, u64) = by_name.entry(name).or_default();
        e.0 += field("voluntary_ctxt_switches:");
        e.1 += field("nonvoluntary_ctxt_switches:");
    }
    by_name
}

/// Switches per request between two [`thread_switches`] readings, by
/// thread name: `tokio-rt-worker 3.02+0.10` is 3.02 voluntary and 0.10
/// involuntary switches per request.
pub fn switches_per(
    before: &std::collections::BTreeMap<String, (u64, u64)>,
    after: &std::collections::BTreeMap<String, (u64, u64)>,
    requests: usize,
) -> String {
    let per = |d: u64| d as f64 / requests.max(1) as f64;
    after
        .iter()
        .map(|(name, (v, nv))| {
            let (v0, nv0) = before.get(name).copied().unwrap_or_default();
            format!(
                "{name} {:.2}+{:.2}",
                per(v.saturating_sub(v0)),
                per(nv.saturating_sub(nv0))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
