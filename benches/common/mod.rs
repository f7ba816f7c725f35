//! Shared by the benchmarks: a simulator process (`ipmigw sim`) on a free
//! port range, and CPU/RSS readings from /proc.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sim {
    pub child: Child,
    pub base: u16,
}

impl Sim {
    pub fn start(count: usize, max_sessions: usize) -> Sim {
        for attempt in 0..20u16 {
            let base = 20_000
                + ((std::process::id() as u16).wrapping_mul(7) % 20_000)
                + attempt * 997 % 20_000;
            let child = Command::new(env!("CARGO_BIN_EXE_ipmigw"))
                .args([
                    "sim",
                    "--listen",
                    &format!("127.0.0.1:{base}"),
                    "--count",
                    &count.to_string(),
                ])
                .args(["--max-sessions", &max_sessions.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn ipmigw sim");
            let mut sim = Sim { child, base };
            if sim.wait_ready(count) {
                return sim;
            }
            sim.stop();
        }
        panic!("could not start the simulator on any port range");
    }

    /// Ready when the last BMC answers an ASF ping.
    fn wait_ready(&mut self, count: usize) -> bool {
        let last = self.base as usize + count - 1;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let ping = [
            0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x01, 0x00, 0x00,
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
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
