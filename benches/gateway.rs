//! The gateway against the tools people use today, side by side in one run
//! (issue: benchmarks). Starts everything on loopback: simulated BMCs
//! (`ipmigw sim`, its own process), a development PKI, and a gateway
//! (`ipmigw serve`, its own process, audit `fsync = "always"`).
//!
//! Scenarios: one-shot CLI vs ipmitool; warm per-command latency through the
//! gateway vs our RMCP+ client straight to the BMC; fan-out over many BMCs
//! vs freeipmi's ipmipower and an ipmitool loop; audited throughput with 64
//! clients; gateway memory with many BMCs and many idle clients.
//!
//! `cargo bench --bench gateway` (full, a few minutes) or `-- --quick`
//! (smoke, under a minute, smaller counts; figure names carry the counts
//! used). Ends with `figure: NAME VALUE UNIT` lines.
//!
//! `IPMIGW_BENCH_BIN=PATH` runs the gateway and the CLI from another build
//! of `ipmigw` (the simulator stays this build's), so that two builds can
//! be compared in one session, run after run on the same machine.
//!
//! `-- --compare PATH [--fsync MODE]` measures only warm latency and
//! throughput, for this build's gateway (or `IPMIGW_BENCH_BIN`'s) as `a`
//! and the one at PATH as `b`, both running at once and measured in turns
//! (latency in blocks of requests, throughput in one-second slices), so
//! that whatever else loads the machine falls on both alike; MODE is the
//! audit `fsync` setting of both (`always` unless given).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipmigw::bmc::{BmcClient, BmcConfig};
use ipmigw::gateway::demo;
use ipmigw::ipmi::cmd::chassis::GetChassisStatus;
use ipmigw::ipmi::session::console::ConsoleConfig;
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;

mod common;
use common::{proc_usage, switches_per, thread_switches, Sim};

/// The `ipmigw` whose gateway and CLI are measured.
fn bin() -> String {
    std::env::var("IPMIGW_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ipmigw").to_string())
}

/// Front-door limits raised for a benchmark (see [`Gateway::start_with`]).
const BENCH_LIMITS: &str = "handshake_rate = \"1000000/second\"\n\
    max_connections = 20000\n\
    max_connections_per_source = 20000\n\
    max_connections_per_identity = 20000\n\
    max_handshakes_per_source = 512\n";

struct Gateway {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Gateway {
    /// Writes a deployment for `bmcs` simulated BMCs and starts `ipmigw serve`.
    fn start(dir: &Path, sim: &Sim, bmcs: usize) -> Gateway {
        Gateway::start_with(dir, sim, bmcs, "always")
    }

    /// The same with another audit fsync mode.
    fn start_with(dir: &Path, sim: &Sim, bmcs: usize, fsync: &str) -> Gateway {
        Gateway::start_bin(&bin(), dir, sim, bmcs, fsync)
    }

    /// The same with the `ipmigw` at `bin`.
    fn start_bin(bin: &str, dir: &Path, sim: &Sim, bmcs: usize, fsync: &str) -> Gateway {
        let addrs: Vec<SocketAddr> = (0..bmcs)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], sim.base + i as u16)))
            .collect();
        // Port 0: the gateway binds a free port and says which (no race
        // with a neighbour for a port probed here and released).
        let config = demo::write_files(dir, &addrs, SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        // Benchmarks measure capacity, not the demo's per-user rate limit.
        let users = dir.join("policies/users.toml");
        let text = std::fs::read_to_string(&users)
            .unwrap()
            .replace("rate = \"6000/minute\"", "rate = \"1000000/second\"");
        std::fs::write(&users, text).unwrap();
        // Every client here is alice from 127.0.0.1: 64 busy clients, up to
        // 1,000 idle ones and the CLI, all one identity and one source. The
        // front door's per-identity and per-source caps (64 and 256 by
        // default) would refuse most of them and measure the refusal path.
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("[limits]\n", &format!("[limits]\n{BENCH_LIMITS}"))
            .replace("fsync = \"always\"", &format!("fsync = \"{fsync}\""));
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(bin)
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("ipmigw: serving on https://") {
                        break a.split(' ').next().unwrap().to_string();
                    }
                }
                _ => panic!("gateway did not start"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Gateway {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn cli(&self, args: &[&str]) -> Command {
        let p = self.dir.join("pki");
        let mut c = Command::new(bin());
        c.args(args)
            .env("IPMIGW_GATEWAY", format!("https://{}", self.addr))
            .env("IPMIGW_CA", p.join("ca.crt"))
            .env("IPMIGW_CERT", p.join("alice.crt"))
            .env("IPMIGW_KEY", p.join("alice.key"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Send = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2(gw: &Gateway) -> Send {
    let p = gw.dir.join("pki");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut BufReader::new(
        &std::fs::read(p.join("ca.crt")).unwrap()[..],
    )) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = rustls_pemfile::certs(&mut BufReader::new(
        &std::fs::read(p.join("alice.crt")).unwrap()[..],
    ))
    .map(Result::unwrap)
    .collect();
    let key = rustls_pemfile::private_key(&mut BufReader::new(
        &std::fs::read(p.join("alice.key")).unwrap()[..],
    ))
    .unwrap()
    .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(send: &Send, path: &str) -> u16 {
    let req = hyper::Request::get(format!("https://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut s = send.clone();
    s.ready().await.unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// Keeps every connection in `sends` busy for `run_for`, each request
/// after the previous answer, over 100 BMCs; returns the requests
/// answered. Only answers count: a refusal (429, 503) is quick and would
/// pass for throughput, so any is a failure.
async fn drive(sends: &[Send], run_for: Duration) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = sends
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (s, done, refused, stop) = (s.clone(), done.clone(), refused.clone(), stop.clone());
            tokio::spawn(async move {
                let mut b = i;
                while !stop.load(Relaxed) {
                    let path = format!("/v1/bmcs/{}/power", demo::bmc_name(b % 100));
                    match get(&s, &path).await {
                        200 => done.fetch_add(1, Relaxed),
                        _ => refused.fetch_add(1, Relaxed),
                    };
                    b += 7;
                }
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    stop.store(true, Relaxed);
    for t in tasks {
        t.await.expect("a throughput client failed");
    }
    let refused = refused.load(Relaxed);
    assert_eq!(
        refused, 0,
        "{refused} throughput requests were not answered 200"
    );
    done.load(Relaxed)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

/// The trail's own fdatasync on this machine: appends of a line the size
/// of a `request` record to a file in the gateway's trail directory (same
/// file system, same disk), each made durable the way the writer does it.
///
/// Samples are taken in the same run as the requests they are compared
/// with, in blocks between them (see [`latency_in_blocks`]), each right
/// after an answer woke the probing thread: the gateway's own fdatasync is
/// made by a thread that was asleep until a request came, and a loop
/// syncing back to back (or a thread that sleeps between syncs) measures
/// something else on a loaded machine: the scheduler often wakes such a
/// thread a tick late (about 4 ms instead of 0.2). Not after every timed
/// request: the probe's fsync and the gateway's would meet on the disk.
struct FsyncProbe {
    file: std::fs::File,
    path: PathBuf,
    line: Vec<u8>,
    samples: Vec<f64>,
}

impl FsyncProbe {
    fn new(dir: &Path) -> FsyncProbe {
        let path = dir.join("fsync-probe.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut line = vec![b'x'; 449];
        line.push(b'\n');
        FsyncProbe {
            file,
            path,
            line,
            samples: Vec::new(),
        }
    }

    /// Appends one line and times its fdatasync (microseconds).
    fn sample(&mut self) {
        use std::io::Write;
        self.file.write_all(&self.line).unwrap();
        let t = Instant::now();
        self.file.sync_data().unwrap();
        self.samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
}

impl Drop for FsyncProbe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn wall(mut c: Command) -> (f64, bool) {
    let t = Instant::now();
    let ok = c.status().map(|s| s.success()).unwrap_or(false);
    (t.elapsed().as_secs_f64(), ok)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ipmitool(sim: &Sim, i: usize) -> Command {
    let mut c = Command::new("ipmitool");
    // The gateway's own sessions are operator sessions: ask for the same.
    c.args([
        "-I",
        "lanplus",
        "-C",
        "3",
        "-L",
        "OPERATOR",
        "-H",
        "127.0.0.1",
        "-p",
        &(sim.base as usize + i).to_string(),
        "-U",
        "operator",
        "-P",
        demo::SIM_OPERATOR_PASSWORD,
        "power",
        "status",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

/// A fresh work directory under `target/` and the clients' runtime.
fn setup(tag: &str) -> (PathBuf, tokio::runtime::Runtime) {
    let work = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (work, rt)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if let Some(other) = std::env::args().skip_while(|a| a != "--compare").nth(1) {
        return compare(&other, quick);
    }
    let fanout_n = if quick { 200 } else { 1000 };
    let loop_n = if quick { 20 } else { 100 };
    let runs = if quick { 8 } else { 30 };
    let lat_n = if quick { 500 } else { 3000 };
    let tput_secs = if quick { 3 } else { 10 };
    let big_n = if quick { 2000 } else { 10_000 };
    let idle_n = if quick { 200 } else { 1000 };
    let (work, rt) = setup("gateway");
    let mut figures: Vec<String> = Vec::new();
    let mut fig = |name: String, v: f64, unit: &str| {
        println!("  {name:<28} {v:>12.3} {unit}");
        figures.push(format!("figure: {name} {v:.3} {unit}"));
    };
    println!(
        "machine: {} cores; everything on loopback; audit fsync = always",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let sim = Sim::start(fanout_n, 8);
    let gw = Gateway::start(&work.join("gw"), &sim, fanout_n);

    // 1. One-shot CLI through the gateway vs ipmitool straight to the BMC.
    println!("\n1. one-shot `power status`, {runs} runs each, interleaved (median wall time)");
    let _ = gw.cli(&["power", "status", "node01"]).status(); // the gateway's session to node01 is now warm
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let tool = have("ipmitool");
    for _ in 0..runs {
        let (t, ok) = wall(gw.cli(&["power", "status", "node01"]));
        assert!(ok, "ipmigw power status failed");
        ours.push(t * 1e3);
        if tool {
            let (t, ok) = wall(ipmitool(&sim, 0));
            if !ok {
                let out = ipmitool(&sim, 0).stderr(Stdio::piped()).output().unwrap();
                panic!(
                    "ipmitool power status failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            theirs.push(t * 1e3);
        }
    }
    let cli_ms = pct(&mut ours, 0.5);
    fig("cli_ms".into(), cli_ms, "ms");
    if tool {
        let it = pct(&mut theirs, 0.5);
        fig("ipmitool_ms".into(), it, "ms");
        fig("cli_vs_ipmitool".into(), cli_ms / it, "ratio");
    } else {
        println!("  ipmitool not installed: skipped");
    }

    // 1b. ipmitool through the bridge vs straight to the BMC.
    if tool {
        println!("\n1b. `ipmitool power status` through `ipmigw bridge` vs straight to the BMC, {runs} runs each (median)");
        let pw = work.join("bridge.pw");
        std::fs::write(&pw, "BridgePass1-bench").unwrap();
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut bridge = gw
            .cli(&[
                "bridge",
                "--user",
                "me",
                "--listen",
                "127.0.0.1:0",
                "--password-file",
                pw.to_str().unwrap(),
                "node01",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(bridge.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        std::thread::spawn(move || for _ in lines {});
        let port = first
            .split("udp://")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .expect("bridge address")
            .port();
        let (mut via, mut direct) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let mut c = Command::new("ipmitool");
            c.args([
                "-I",
                "lanplus",
                "-C",
                "17",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "me",
                "-P",
                "BridgePass1-bench",
                "power",
                "status",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            let (t, ok) = wall(c);
            assert!(ok, "ipmitool through the bridge failed");
            via.push(t * 1e3);
            direct.push(wall(ipmitool(&sim, 0)).0 * 1e3);
        }
        let _ = bridge.kill();
        let _ = bridge.wait();
        let (v, d) = (pct(&mut via, 0.5), pct(&mut direct, 0.5));
        fig("bridge_ipmitool_ms".into(), v, "ms");
        fig("direct_ipmitool_ms".into(), d, "ms");
        fig("bridge_vs_direct".into(), v / d, "ratio");
    }

    // 2. Warm per-command latency: gateway vs our client straight to the BMC.
    println!("\n2. warm per-command latency, {lat_n} sequential commands each");
    // The disk's share of the gateway's latency, measured beside it.
    let mut probe = FsyncProbe::new(&gw.dir);
    let (direct, through) = rt.block_on(async {
        let console = ConsoleConfig::new(
            b"operator",
            SecretBytes::new(demo::SIM_OPERATOR_PASSWORD.as_bytes().to_vec()),
            Privilege::Operator,
        );
        let c = BmcClient::connect(BmcConfig::new(
            SocketAddr::from(([127, 0, 0, 1], sim.base + 1)),
            console,
        ))
        .await
        .unwrap();
        let targets = [Target::Direct(c), Target::Gateway(h2(&gw).await)];
        let mut v = latency_in_blocks(&targets, lat_n, &mut probe).await;
        if let [Target::Direct(c), _] = targets {
            c.close().await;
        }
        let through = v.pop().unwrap();
        (v.pop().unwrap(), through)
    });
    let mut fsyncs = std::mem::take(&mut probe.samples);
    drop(probe);
    let (mut d, mut g) = (direct, through);
    let (dp50, dp99, gp50, gp99) = (
        pct(&mut d, 0.5),
        pct(&mut d, 0.99),
        pct(&mut g, 0.5),
        pct(&mut g, 0.99),
    );
    fig("direct_p50_us".into(), dp50, "us");
    fig("direct_p99_us".into(), dp99, "us");
    fig("gateway_p50_us".into(), gp50, "us");
    fig("gateway_p99_us".into(), gp99, "us");
    fig("overhead_p50_us".into(), gp50 - dp50, "us");
    // Write-ahead costs one fdatasync per request; the rest is the gateway.
    let fp50 = pct(&mut fsyncs, 0.5);
    fig("audit_fsync_p50_us".into(), fp50, "us");
    fig(
        "overhead_minus_fsync_p50_us".into(),
        gp50 - dp50 - fp50,
        "us",
    );
    // Hand-offs between threads: each time one of the gateway's threads
    // sleeps until another wakes it (an fdatasync alone is about 3 on
    // ext4: the journal thread commits).
    let n = 200;
    let s0 = thread_switches(&gw.pid());
    rt.block_on(async {
        let send = h2(&gw).await;
        for _ in 0..n {
            get(&send, "/v1/bmcs/node02/power").await;
        }
    });
    let voluntary = |m: &std::collections::BTreeMap<String, (u64, u64)>| -> u64 {
        m.values().map(|(v, _)| v).sum()
    };
    let switches = voluntary(&thread_switches(&gw.pid())).saturating_sub(voluntary(&s0));
    println!(
        "  by thread: {}",
        switches_per(&s0, &thread_switches(&gw.pid()), n)
    );
    fig(
        "gateway_switches_per_req".into(),
        switches as f64 / n as f64,
        "1",
    );
    // Where the overhead goes: the same through a gateway whose audit
    // acknowledges after write(2) and syncs every 10 ms.
    let gw_int = Gateway::start_with(&work.join("interval"), &sim, 4, "interval:10ms");
    let mut gi = rt.block_on(async {
        let send = h2(&gw_int).await;
        assert_eq!(get(&send, "/v1/bmcs/node02/power").await, 200);
        let mut v = Vec::new();
        for _ in 0..lat_n {
            let t = Instant::now();
            get(&send, "/v1/bmcs/node02/power").await;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        v
    });
    drop(gw_int);
    let gip50 = pct(&mut gi, 0.5);
    fig("gateway_interval_p50_us".into(), gip50, "us");
    fig("overhead_interval_p50_us".into(), gip50 - dp50, "us");

    // 3. Fan-out: power status of every BMC.
    println!("\n3. fan-out `power status` over {fanout_n} BMCs (wall time)");
    let gw_fan = Gateway::start(&work.join("fan"), &sim, fanout_n);
    let (cold, ok) = wall(gw_fan.cli(&["power", "status", "--all"]));
    assert!(ok, "cold fan-out failed");
    let (warm, ok) = wall(gw_fan.cli(&["power", "status", "--all"]));
    assert!(ok, "warm fan-out failed");
    fig(format!("fanout_{fanout_n}_cold_s"), cold, "s");
    fig(format!("fanout_{fanout_n}_s"), warm, "s");
    drop(gw_fan);
    if have("ipmipower") {
        let hosts = format!(
            "127.0.0.1:[{}-{}]",
            sim.base,
            sim.base as usize + fanout_n - 1
        );
        let mut c = Command::new("ipmipower");
        c.args([
            "-D",
            "LAN_2_0",
            "-I",
            "3",
            "-h",
            &hosts,
            "-u",
            "operator",
            "-p",
            demo::SIM_OPERATOR_PASSWORD,
            "--stat",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let (t, _) = wall(c);
        fig(format!("ipmipower_{fanout_n}_s"), t, "s");
        fig("fanout_vs_ipmipower".into(), t / warm, "x faster");
    } else {
        println!("  ipmipower not installed: skipped");
    }
    if tool {
        let t = Instant::now();
        for i in 0..loop_n {
            assert!(
                ipmitool(&sim, i).status().is_ok_and(|s| s.success()),
                "ipmitool loop failed"
            );
        }
        fig(
            format!("ipmitool_loop_{loop_n}_s"),
            t.elapsed().as_secs_f64(),
            "s",
        );
    }

    // 4. Audited throughput: 64 clients over 100 BMCs.
    println!("\n4. audited throughput, 64 clients over 100 BMCs, {tput_secs} s");
    let (rps, gw_cpu, sim_cpu) = rt.block_on(async {
        let mut sends = Vec::new();
        for _ in 0..64 {
            sends.push(h2(&gw).await);
        }
        // Warm every session first.
        for b in 0..100 {
            get(&sends[0], &format!("/v1/bmcs/{}/power", demo::bmc_name(b))).await;
        }
        let (gw0, sim0) = (
            proc_usage(&gw.pid()).0,
            proc_usage(&sim.pid().to_string()).0,
        );
        let t = Instant::now();
        let n = drive(&sends, Duration::from_secs(tput_secs)).await as f64;
        let secs = t.elapsed().as_secs_f64();
        let (gw1, sim1) = (
            proc_usage(&gw.pid()).0,
            proc_usage(&sim.pid().to_string()).0,
        );
        (n / secs, (gw1 - gw0) / n * 1e6, (sim1 - sim0) / n * 1e6)
    });
    fig("throughput_rps".into(), rps, "1/s");
    fig("gateway_cpu_us_per_req".into(), gw_cpu, "us");
    fig("sim_cpu_us_per_req".into(), sim_cpu, "us");
    drop(gw);
    drop(sim);

    // 5. Memory: many BMCs with warm sessions, then many idle clients.
    println!("\n5. gateway memory: {big_n} BMCs (sessions warm), then {idle_n} idle mTLS clients");
    let big_sim = Sim::start(big_n, 4);
    let big = Gateway::start(&work.join("big"), &big_sim, big_n);
    let (_, ok) = wall(big.cli(&["power", "status", "--all"]));
    assert!(ok, "warming {big_n} sessions failed");
    let rss_bmcs = proc_usage(&big.pid()).1 as f64 / 1048576.0;
    let rss_clients = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..idle_n {
            idle.push(h2(&big).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = proc_usage(&big.pid()).1 as f64 / 1048576.0;
        // Each was admitted (a refused one holds less memory and is
        // answered 429).
        for s in &idle {
            assert_eq!(get(s, "/healthz").await, 200, "an idle client was refused");
        }
        drop(idle);
        rss
    });
    fig(format!("rss_{}k_bmcs_mb", big_n / 1000), rss_bmcs, "MB");
    fig(
        format!("rss_{}_clients_mb", idle_n),
        rss_clients - rss_bmcs,
        "MB",
    );
    fig("rss_total_mb".into(), rss_clients, "MB");
    drop(big);
    drop(big_sim);
    let _ = std::fs::remove_dir_all(&work);

    println!();
    for f in figures {
        println!("{f}");
    }
}

/// Where a latency sample goes: our RMCP+ client straight to a BMC, or a
/// gateway over one warm HTTP/2 connection (both to the same BMC).
enum Target {
    Direct(BmcClient),
    Gateway(Send),
}

impl Target {
    async fn once(&self) {
        match self {
            Target::Direct(c) => {
                c.execute(&GetChassisStatus).await.unwrap();
            }
            Target::Gateway(s) => {
                assert_eq!(get(s, "/v1/bmcs/node02/power").await, 200);
            }
        }
    }
}

/// `n` sequential requests to each target, in blocks (10 to each in turn,
/// then 5 fdatasync probe samples, each after an untimed request), so that
/// whatever else loads the machine falls on all of them alike; latencies
/// in microseconds, per target.
async fn latency_in_blocks(targets: &[Target], n: usize, probe: &mut FsyncProbe) -> Vec<Vec<f64>> {
    const BLOCK: usize = 10;
    for t in targets {
        t.once().await;
    }
    let mut v = vec![Vec::with_capacity(n); targets.len()];
    for _ in 0..n.div_ceil(BLOCK) {
        for (t, lat) in targets.iter().zip(v.iter_mut()) {
            for _ in 0..BLOCK {
                let start = Instant::now();
                t.once().await;
                lat.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        for i in 0..BLOCK / 2 {
            targets[i % targets.len()].once().await;
            probe.sample();
        }
    }
    v
}

/// See the module doc: `--compare PATH`.
fn compare(other: &str, quick: bool) {
    let (lat_n, slices) = if quick { (500, 4) } else { (3000, 10) };
    let (work, rt) = setup("compare");
    let sim = Sim::start(100, 8);
    let fsync = std::env::args()
        .skip_while(|a| a != "--fsync")
        .nth(1)
        .unwrap_or_else(|| "always".into());
    let a = Gateway::start_bin(&bin(), &work.join("a"), &sim, 100, &fsync);
    let b = Gateway::start_bin(other, &work.join("b"), &sim, 100, &fsync);
    println!("a: {}\nb: {other}\naudit fsync = {fsync}", bin());
    let idle0 = [proc_usage(&a.pid()).0, proc_usage(&b.pid()).0];
    std::thread::sleep(Duration::from_secs(2));
    for (i, (name, g)) in [("a", &a), ("b", &b)].into_iter().enumerate() {
        let ms = (proc_usage(&g.pid()).0 - idle0[i]) * 1e3 / 2.0;
        println!("{name}: idle CPU {ms:.1} ms/s");
    }
    let before = [thread_switches(&a.pid()), thread_switches(&b.pid())];
    let mut probe = FsyncProbe::new(&a.dir);
    let cpu0 = [proc_usage(&a.pid()).0, proc_usage(&b.pid()).0];
    let (mut la, mut lb) = rt.block_on(async {
        let targets = [Target::Gateway(h2(&a).await), Target::Gateway(h2(&b).await)];
        let mut v = latency_in_blocks(&targets, lat_n, &mut probe).await;
        let lb = v.pop().unwrap();
        (v.pop().unwrap(), lb)
    });
    let cpu = [
        proc_usage(&a.pid()).0 - cpu0[0],
        proc_usage(&b.pid()).0 - cpu0[1],
    ];
    let mut fs = std::mem::take(&mut probe.samples);
    drop(probe);
    for (i, (name, g)) in [("a", &a), ("b", &b)].into_iter().enumerate() {
        let per = switches_per(&before[i], &thread_switches(&g.pid()), lat_n);
        println!("{name}: context switches per request by thread: {per}");
        println!(
            "{name}: gateway_cpu_us_per_req (sequential) {:.1}",
            cpu[i] / lat_n as f64 * 1e6
        );
    }
    let fp50 = pct(&mut fs, 0.5);
    println!("audit_fsync_p50_us {fp50:.1}");
    for (name, v) in [("a", &mut la), ("b", &mut lb)] {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "{name}: gateway_p50_us {p50:.1} gateway_p99_us {p99:.1} minus_fsync_p50_us {:.1}",
            p50 - fp50
        );
    }
    let per = rt.block_on(async {
        let mut sends: [Vec<Send>; 2] = [Vec::new(), Vec::new()];
        for (i, g) in [&a, &b].into_iter().enumerate() {
            for _ in 0..64 {
                sends[i].push(h2(g).await);
            }
            for n in 0..100 {
                get(
                    &sends[i][0],
                    &format!("/v1/bmcs/{}/power", demo::bmc_name(n)),
                )
                .await;
            }
        }
        // (requests, seconds, gateway CPU seconds) per gateway.
        let mut per = [(0u64, 0f64, 0f64); 2];
        for slice in 0..2 * slices {
            let i = slice % 2;
            let g = [&a, &b][i];
            let (cpu0, t) = (proc_usage(&g.pid()).0, Instant::now());
            per[i].0 += drive(&sends[i], Duration::from_secs(1)).await;
            per[i].1 += t.elapsed().as_secs_f64();
            per[i].2 += proc_usage(&g.pid()).0 - cpu0;
        }
        per
    });
    for (name, (n, secs, cpu)) in ["a", "b"].into_iter().zip(per) {
        println!(
            "{name}: throughput_rps {:.0} gateway_cpu_us_per_req {:.1}",
            n as f64 / secs,
            cpu / n as f64 * 1e6
        );
    }
    drop((a, b, sim));
    let _ = std::fs::remove_dir_all(&work);
}
