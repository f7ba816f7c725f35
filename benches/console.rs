//! The console through the gateway against SOL straight to the BMC, side
//! by side in one run (issue 16): keystroke echo latency (the gateway's
//! WebSocket vs our own SolConsole on a UDP socket, the path `ipmitool
//! sol activate` takes), `flood` throughput both ways, and N simultaneous
//! recorded consoles (gateway RSS and CPU per console).
//!
//! Everything on loopback: the simulated BMCs (`ipmigw sim`, its own
//! process), a development PKI and a gateway (`ipmigw serve`, its own
//! process, so that its RSS and CPU are its own). The direct console uses
//! BMC 0, the gateway's measured console BMC 1, the N consoles BMCs 2..
//!
//! `cargo bench --bench console` (full: 1,000 echoes, `flood 10000`, 1,000
//! consoles) or `-- --quick` (200 echoes, `flood 2000`, 50 consoles).
//! Ends with `figure: NAME VALUE UNIT` lines, like the gateway benchmark.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ipmigw::gateway::demo;
use ipmigw::ipmi::session::console::sol::{SolConfig, SolConsole, SolState};
use ipmigw::ipmi::session::console::{ActiveSession, ConsoleConfig, Handshake};
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{proc_usage, Sim};

/// Longest wait for any one answer.
const WAIT: Duration = Duration::from_secs(30);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// `ipmigw serve` on a demo deployment for the simulator's BMCs.
struct Gateway {
    child: Child,
    addr: SocketAddr,
}

impl Gateway {
    fn start(dir: &Path, sim: &Sim, bmcs: usize) -> Gateway {
        let addrs: Vec<SocketAddr> = (0..bmcs)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], sim.base + i as u16)))
            .collect();
        let config = demo::write_files(dir, &addrs, SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        // One identity opens every console: the demo's per-user and
        // state-changing rates and the front door's caps would refuse most.
        let edit = |path: &Path, from: &str, to: &str| {
            let text = std::fs::read_to_string(path).unwrap().replace(from, to);
            std::fs::write(path, text).unwrap();
        };
        edit(
            &dir.join("policies/users.toml"),
            "rate = \"6000/minute\"",
            "rate = \"1000000/second\"",
        );
        edit(
            &dir.join("policies/operator.toml"),
            "state_changing_rate = \"6/minute\"",
            "state_changing_rate = \"1000000/second\"",
        );
        edit(
            &config,
            "[limits]\n",
            "[limits]\nhandshake_rate = \"1000000/second\"\nmax_connections = 20000\n\
             max_connections_per_source = 20000\nmax_connections_per_identity = 20000\n\
             max_handshakes_per_source = 512\n",
        );
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("\n[console]\nmax_per_user = 100000\nmax_total = 100000\n");
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipmigw"))
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
                        break a.split(' ').next().unwrap().parse().unwrap();
                    }
                }
                _ => panic!("gateway did not start"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, addr }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
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

fn client_tls(pki: &Path, user: &str) -> Arc<rustls::ClientConfig> {
    let pem = |f: String| std::fs::read(pki.join(f)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem("ca.crt".into())[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = rustls_pemfile::certs(&mut &pem(format!("{user}.crt"))[..])
        .map(Result::unwrap)
        .collect();
    let key = rustls_pemfile::private_key(&mut &pem(format!("{user}.key"))[..])
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
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Attaches to `bmc`'s console as the writer.
async fn attach(gw: SocketAddr, tls: &Arc<rustls::ClientConfig>, bmc: &str) -> Ws {
    let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let req = format!("wss://localhost/v1/bmcs/{bmc}/console")
        .into_client_request()
        .unwrap();
    tokio_tungstenite::client_async(req, tls).await.unwrap().0
}

/// Our own SOL console straight to a BMC over UDP.
struct Direct {
    sock: UdpSocket,
    sol: SolConsole,
    buf: Vec<u8>,
}

impl Direct {
    async fn open(addr: SocketAddr) -> Direct {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(addr).await.unwrap();
        let session = login(&sock).await;
        let sol = SolConsole::start(session, SolConfig::new(addr.port()), Instant::now());
        let mut d = Direct {
            sock,
            sol,
            buf: vec![0; 2048],
        };
        let end = Instant::now() + WAIT;
        while d.sol.state() != SolState::Active {
            assert!(Instant::now() < end, "SOL did not activate");
            d.step().await;
        }
        d
    }

    async fn flush(&mut self) {
        while let Some(d) = self.sol.poll_transmit() {
            let _ = self.sock.send(&d).await;
        }
    }

    /// One datagram or timer.
    async fn step(&mut self) {
        self.flush().await;
        let at = self
            .sol
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = self.sock.recv(&mut self.buf) => if let Ok(n) = r {
                let _ = self.sol.handle_datagram(Instant::now(), &self.buf[..n]);
            },
            _ = tokio::time::sleep_until(at.into()) => self.sol.handle_timeout(Instant::now()),
        }
        while self.sol.poll_event().is_some() {}
        self.flush().await;
    }
}

async fn login(sock: &UdpSocket) -> Box<ActiveSession> {
    let cfg = ConsoleConfig::new(
        b"admin",
        SecretBytes::from(&b"Adm1nPass"[..]),
        Privilege::Administrator,
    );
    let mut hs = Handshake::start(cfg, Box::new(rand::rngs::OsRng), Instant::now()).unwrap();
    let mut buf = vec![0u8; 2048];
    let end = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < end, "no login");
        while let Some(d) = hs.poll_transmit() {
            let _ = sock.send(&d).await;
        }
        if let Some(outcome) = hs.poll_outcome() {
            return outcome.map_err(|f| f.error.to_string()).unwrap();
        }
        let at = hs
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = sock.recv(&mut buf) => if let Ok(n) = r {
                let _ = hs.handle_datagram(Instant::now(), &buf[..n]);
            },
            _ = tokio::time::sleep_until(at.into()) => hs.handle_timeout(Instant::now()),
        }
    }
}

/// Either way to the host's serial line.
enum Side {
    Direct(Box<Direct>),
    Gateway(Box<Ws>),
}

impl Side {
    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Side::Direct(d) => {
                let mut off = 0;
                while off < bytes.len() {
                    let n = d.sol.write(Instant::now(), &bytes[off..]);
                    off += n;
                    d.flush().await;
                    if n == 0 {
                        d.step().await;
                    }
                }
            }
            Side::Gateway(ws) => ws.send(Message::Binary(bytes.to_vec())).await.unwrap(),
        }
    }

    /// The next host output.
    async fn recv(&mut self) -> Vec<u8> {
        match self {
            Side::Direct(d) => loop {
                let out = d.sol.read();
                if !out.is_empty() {
                    return out;
                }
                d.step().await;
            },
            Side::Gateway(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => return b,
                    Some(Ok(_)) => {}
                    other => panic!("console ended: {other:?}"),
                }
            },
        }
    }

    /// Reads until `done` holds for what arrived since the call.
    async fn until(&mut self, done: impl Fn(&[u8]) -> bool) -> usize {
        let mut seen = Vec::new();
        let end = tokio::time::Instant::now() + WAIT;
        while !done(&seen) {
            let chunk = tokio::time::timeout_at(end, self.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out; saw {:?}", String::from_utf8_lossy(&seen)));
            seen.extend(chunk);
        }
        seen.len()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Echo latency of one typed character, `n` times (each erased again).
async fn echo_latency(side: &mut Side, n: usize) -> Vec<f64> {
    side.send(b"\r").await;
    side.until(|s| contains(s, b"login: ")).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        side.send(b"x").await;
        side.until(|s| s.contains(&b'x')).await;
        out.push(t.elapsed().as_secs_f64() * 1e6);
        side.send(b"\x7f").await;
        side.until(|s| contains(s, b"\x08 \x08")).await;
    }
    out
}

/// Logs in and floods `n` lines: (lines per second, bytes per second).
async fn flood(side: &mut Side, n: usize) -> (f64, f64) {
    side.send(b"root\r").await;
    side.until(|s| contains(s, b"Password: ")).await;
    side.send(b"secret\r").await;
    side.until(|s| contains(s, b"$ ")).await;
    let t = Instant::now();
    side.send(format!("flood {n}\r").as_bytes()).await;
    let bytes = side.until(|s| contains(s, b"flood done")).await;
    let secs = t.elapsed().as_secs_f64();
    (n as f64 / secs, bytes as f64 / secs)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let lat_n = if quick { 200 } else { 1000 };
    let flood_n = if quick { 2000 } else { 10_000 };
    let consoles = if quick { 50 } else { 1000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(consoles + 2, 4);
    let gw = Gateway::start(dir.path(), &sim, consoles + 2);
    let pki = dir.path().join("pki");
    let mut figures = Vec::new();
    rt.block_on(async {
        let tls = client_tls(&pki, "alice");
        let bmc0 = SocketAddr::from(([127, 0, 0, 1], sim.base));
        let mut direct = Side::Direct(Box::new(Direct::open(bmc0).await));
        let mut through = Side::Gateway(Box::new(attach(gw.addr, &tls, &demo::bmc_name(1)).await));
        // Each side measured through before the next: a SOL console left
        // unattended meanwhile would time out at the BMC.
        let mut d = echo_latency(&mut direct, lat_n).await;
        let (dl, db) = flood(&mut direct, flood_n).await;
        let mut g = echo_latency(&mut through, lat_n).await;
        let (gl, gb) = flood(&mut through, flood_n).await;
        println!("1. keystroke echo latency, {lat_n} keystrokes each (µs)");
        let (d50, d99, g50, g99) = (
            pct(&mut d, 0.5),
            pct(&mut d, 0.99),
            pct(&mut g, 0.5),
            pct(&mut g, 0.99),
        );
        println!("  direct SOL   p50 {d50:>9.1}  p99 {d99:>9.1}");
        println!(
            "  gateway      p50 {g50:>9.1}  p99 {g99:>9.1}  (adds {:.1} µs p50)",
            g50 - d50
        );
        figures.extend([
            ("console_echo_direct_p50_us", d50, "us"),
            ("console_echo_direct_p99_us", d99, "us"),
            ("console_echo_gateway_p50_us", g50, "us"),
            ("console_echo_gateway_p99_us", g99, "us"),
            ("console_echo_added_p50_us", g50 - d50, "us"),
        ]);
        println!("\n2. `flood {flood_n}` throughput");
        println!(
            "  direct SOL   {dl:>9.0} lines/s  {:>8.1} KiB/s",
            db / 1024.0
        );
        println!(
            "  gateway      {gl:>9.0} lines/s  {:>8.1} KiB/s  ({:.0} % of direct)",
            gb / 1024.0,
            100.0 * gl / dl
        );
        figures.extend([
            ("console_flood_direct_lines_s", dl, "lines/s"),
            ("console_flood_gateway_lines_s", gl, "lines/s"),
            ("console_flood_gateway_pct", 100.0 * gl / dl, "%"),
        ]);
        drop((direct, through));
        many_consoles(&gw, &tls, consoles, quick, &mut figures).await;
    });
    sim.stop();
    drop(gw);
    println!();
    for (name, v, unit) in figures {
        println!("figure: {name} {v:.3} {unit}");
    }
}

/// `n` consoles attached at once (each active, one line of output seen),
/// then held idle: the gateway's RSS and CPU per console.
async fn many_consoles(
    gw: &Gateway,
    tls: &Arc<rustls::ClientConfig>,
    n: usize,
    quick: bool,
    figures: &mut Vec<(&'static str, f64, &'static str)>,
) {
    println!("\n3. {n} simultaneous recorded consoles");
    let pid = gw.pid();
    let (_, rss0) = proc_usage(&pid);
    let t = Instant::now();
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let mut ws = Side::Gateway(Box::new(attach(gw.addr, tls, &demo::bmc_name(i + 2)).await));
        ws.send(b"\r").await;
        socks.push(ws);
    }
    for ws in socks.iter_mut() {
        ws.until(|s| contains(s, b"login: ")).await;
    }
    let opened = t.elapsed().as_secs_f64();
    let (cpu0, rss1) = proc_usage(&pid);
    let idle = Duration::from_secs(if quick { 3 } else { 10 });
    tokio::time::sleep(idle).await;
    let (cpu1, rss2) = proc_usage(&pid);
    let per_kib = (rss2.max(rss1) as f64 - rss0 as f64) / n as f64 / 1024.0;
    let cpu_ms_s = (cpu1 - cpu0) * 1000.0 / idle.as_secs_f64();
    println!(
        "  all active in {opened:.1} s; RSS {:.1} -> {:.1} MiB ({per_kib:.1} KiB per console)",
        rss0 as f64 / 1048576.0,
        rss2 as f64 / 1048576.0
    );
    println!(
        "  idle CPU {cpu_ms_s:.1} ms/s in all ({:.3} ms/s per console)",
        cpu_ms_s / n as f64
    );
    figures.extend([
        ("console_many_open_s", opened, "s"),
        ("console_many_rss_kib_per_console", per_kib, "KiB"),
        (
            "console_many_idle_cpu_ms_s_per_console",
            cpu_ms_s / n as f64,
            "ms/s",
        ),
    ]);
    drop(socks);
}
