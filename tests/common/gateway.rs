//! A gateway on loopback for tests: simulated BMCs, the demo files
//! (development PKI, policy, config), edits a test makes to them, the
//! gateway in-process; and HTTPS clients that speak HTTP/1.1 or HTTP/2 as
//! a given user, optionally from a chosen loopback source address.

use std::io::BufReader;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipmigw::gateway::{self, demo, GatewayHandle};
use ipmigw::sim::{SimConfig, Simulator};

/// A running gateway with its simulator and files.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub gw: GatewayHandle,
}

impl Env {
    /// Starts `bmcs` simulated BMCs (powered on) and a gateway on the demo
    /// files, after `edit` has changed them (it gets the directory).
    pub async fn start(bmcs: usize, edit: impl FnOnce(&Path)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let sim = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), bmcs))
            .await
            .unwrap();
        for b in sim.bmcs() {
            b.with_model(|m, now| m.set_host_power(true, now));
        }
        let addrs: Vec<SocketAddr> = sim.bmcs().iter().map(|b| b.addr()).collect();
        let config = demo::write_files(dir.path(), &addrs, "127.0.0.1:0".parse().unwrap()).unwrap();
        edit(dir.path());
        let gw = gateway::start(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Env { dir, sim, gw }
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    pub fn addr(&self) -> SocketAddr {
        self.gw.local_addr()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// Every line of the active trail file.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The trail's records of one event kind.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.audit_lines()
            .into_iter()
            .filter(|l| l["event"] == event)
            .collect()
    }

    /// An HTTP/1.1 client for `user` (certificate `pki/USER.crt`).
    pub async fn user(&self, name: &str) -> Https {
        Https::connect(self.addr(), &self.pki(), Some(name), None, Version::Http1)
            .await
            .unwrap()
    }

    /// An HTTP/2 client for `user`.
    pub async fn user_h2(&self, name: &str) -> Https {
        Https::connect(self.addr(), &self.pki(), Some(name), None, Version::Http2)
            .await
            .unwrap()
    }

    /// Stops the gateway (writing its last records) and the simulator.
    pub async fn stop(self) -> tempfile::TempDir {
        self.gw.shutdown("test").await;
        self.sim.stop().await;
        self.dir
    }
}

/// Adds text to a policy file of the demo layout.
pub fn append_policy(dir: &Path, file: &str, text: &str) {
    let p = dir.join("policies").join(file);
    let mut t = std::fs::read_to_string(&p).unwrap_or_default();
    t.push_str(text);
    std::fs::write(&p, t).unwrap();
    if !std::fs::read_to_string(dir.join("gateway.toml"))
        .unwrap()
        .contains(&format!("policies/{file}"))
    {
        let cfg = dir.join("gateway.toml");
        let c = std::fs::read_to_string(&cfg).unwrap().replacen(
            "policy = [",
            &format!("policy = [\"policies/{file}\", "),
            1,
        );
        std::fs::write(cfg, c).unwrap();
    }
}

/// Replaces the demo config's `[limits]` section body.
pub fn set_limits(dir: &Path, limits: &str) {
    let cfg = dir.join("gateway.toml");
    let c = std::fs::read_to_string(&cfg).unwrap().replace(
        "[limits]\ndrain_ms = 2000\n",
        &format!("[limits]\n{limits}\n"),
    );
    std::fs::write(cfg, c).unwrap();
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

impl Version {
    /// The ALPN protocol id.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Version::Http1 => b"http/1.1",
            Version::Http2 => b"h2",
        }
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A test HTTPS client on one connection.
pub struct Https {
    send: Sender,
}

/// A rustls client config trusting `pki/ca.crt`, with `user`'s certificate.
pub fn client_tls(pki: &Path, user: Option<&str>, alpn: &[u8]) -> rustls::ClientConfig {
    let files = user.map(|u| (pki.join(format!("{u}.crt")), pki.join(format!("{u}.key"))));
    client_tls_files(
        &pki.join("ca.crt"),
        files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        alpn,
    )
}

/// A rustls client config trusting `ca`, with the certificate and key files
/// `identity` (none: no client certificate).
pub fn client_tls_files(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[u8],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut BufReader::new(&std::fs::read(ca).unwrap()[..])) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((crt, key)) => {
            let chain =
                rustls_pemfile::certs(&mut BufReader::new(&std::fs::read(crt).unwrap()[..]))
                    .map(Result::unwrap)
                    .collect();
            let key =
                rustls_pemfile::private_key(&mut BufReader::new(&std::fs::read(key).unwrap()[..]))
                    .unwrap()
                    .unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg
}

/// A TCP connection to `addr` from loopback address `from` (any port).
pub async fn tcp_from(
    addr: SocketAddr,
    from: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    if let Some(ip) = from {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    sock.connect(addr).await
}

/// A TLS session to the gateway as `user` (no HTTP yet).
pub async fn tls_from(
    addr: SocketAddr,
    pki: &Path,
    user: Option<&str>,
    from: Option<IpAddr>,
    alpn: &[u8],
) -> Result<Tls, String> {
    tls_with(addr, client_tls(pki, user, alpn), from, None).await
}

/// A client TLS session.
pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS session with `cfg`, from `from`, after `proxy_header` (bytes a
/// balancer would send first).
pub async fn tls_with(
    addr: SocketAddr,
    cfg: rustls::ClientConfig,
    from: Option<IpAddr>,
    proxy_header: Option<Vec<u8>>,
) -> Result<Tls, String> {
    let mut tcp = tcp_from(addr, from).await.map_err(|e| e.to_string())?;
    if let Some(h) = proxy_header {
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &h)
            .await
            .map_err(|e| e.to_string())?;
    }
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())
}

impl Https {
    /// Connects as `user` from `from` (a loopback address) with HTTP/1.1 or 2.
    pub async fn connect(
        addr: SocketAddr,
        pki: &Path,
        user: Option<&str>,
        from: Option<IpAddr>,
        version: Version,
    ) -> Result<Https, String> {
        let tls = tls_from(addr, pki, user, from, version.alpn()).await?;
        Https::over(tls, version).await
    }

    /// HTTP over an established TLS session.
    pub async fn over(tls: Tls, version: Version) -> Result<Https, String> {
        let send = match version {
            Version::Http1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H1(send)
            }
            Version::Http2 => {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H2(send)
            }
        };
        Ok(Https { send })
    }

    /// One request; `(status, headers, body)`.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, hyper::HeaderMap, Vec<u8>), String> {
        self.call_with(method, path, body, None).await
    }

    /// One request with an extra header.
    pub async fn call_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        extra_header: Option<(&str, String)>,
    ) -> Result<(u16, hyper::HeaderMap, Vec<u8>), String> {
        let mut req = hyper::Request::builder().method(method);
        req = match self.send {
            Sender::H1(_) => req.uri(path).header("host", "localhost"),
            Sender::H2(_) => req.uri(format!("https://localhost{path}")),
        };
        if let Some((k, v)) = extra_header {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(
                body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
            ))
            .unwrap();
        let fut = async {
            match &mut self.send {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await.map_err(|e| e.to_string())
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await.map_err(|e| e.to_string())
                }
            }
        };
        let resp = tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .map_err(|_| "timeout".to_string())??;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status.as_u16(), parts.headers, bytes.to_vec()))
    }

    /// A clone that shares the connection (HTTP/2 only: concurrent streams).
    pub fn stream(&self) -> Https {
        match &self.send {
            Sender::H2(s) => Https {
                send: Sender::H2(s.clone()),
            },
            Sender::H1(_) => panic!("HTTP/1.1 has one request at a time"),
        }
    }
}

/// The JSON body of an answer.
pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(body)))
}

/// `ipmigw serve` as a real process (for faults that are process-level:
/// signals, resource limits, a second instance), its stderr collected.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl GatewayProcess {
    /// Starts `ipmigw serve --config CONFIG`, behind `wrapper` (e.g.
    /// `["prlimit", "--fsize=60000", "--"]`) when given; waits until it
    /// says where it serves, or returns its stderr when it exits first.
    pub fn start(config: &Path, wrapper: &[&str]) -> Result<GatewayProcess, String> {
        use std::io::BufRead;
        let exe = env!("CARGO_BIN_EXE_ipmigw");
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = std::process::Command::new(w);
                c.args(rest).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        let mut child = cmd
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("ipmigw: serving on https://") {
                    let _ = tx.send(a.split(' ').next().unwrap_or("").to_string());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(50)) {
                let addr = a.parse().unwrap();
                return Ok(GatewayProcess {
                    child,
                    addr,
                    stderr,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let text = stderr.lock().unwrap().clone();
                return Err(format!("exited with {status}: {text}"));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not start in 20 s"
            );
        }
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`, `HUP`) by pid.
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig}");
    }

    /// Waits up to `limit` for the process to end.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// CPU time (user + system) the process has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The demo files for `sim`'s BMCs in `dir`, after `edit`; the config path.
pub fn demo_files(dir: &Path, sim: &Simulator, edit: impl FnOnce(&Path)) -> PathBuf {
    let addrs: Vec<SocketAddr> = sim.bmcs().iter().map(|b| b.addr()).collect();
    let config = demo::write_files(dir, &addrs, "127.0.0.1:0".parse().unwrap()).unwrap();
    edit(dir);
    config
}
