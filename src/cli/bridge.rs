//! `ipmigw bridge`: a local RMCP+ BMC that stock tools (ipmitool, freeipmi,
//! fence agents) talk to, whose every IPMI request crosses the network only
//! as one `/v1/bmcs/TARGET/raw` call over the client's mTLS connection to
//! the gateway, where policy and audit apply to it.
//!
//! The local password is for the local hop only (random unless given) and
//! never leaves this process. Session management (login, privilege, close)
//! is the local endpoint's own and is never forwarded. Listens on loopback
//! only unless told otherwise.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::client::{self, ClientOpts, Gateway};
use super::CliError;
use crate::ipmi::cmd::name::classify;
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::bmc::{Application, BmcUser, Endpoint, EndpointConfig};
use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::{CompletionCode, Request};
use crate::secret::SecretBytes;

#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// Local UDP address for ipmitool/freeipmi (loopback only by default).
    #[arg(long, default_value = "127.0.0.1:6230")]
    listen: SocketAddr,
    /// Allow a non-loopback --listen (anyone who can reach it and knows the
    /// local password acts with your certificate).
    #[arg(long)]
    allow_non_loopback: bool,
    /// Local password (at most 20 bytes); random and printed once otherwise.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// A file naming one BMC per line (`#` comments): one bridge each, on
    /// consecutive ports from --listen.
    #[arg(long, conflicts_with = "target")]
    map: Option<PathBuf>,
    /// The BMC (as the gateway names it).
    #[arg(required_unless_present = "map")]
    target: Option<String>,
}

fn targets(a: &BridgeArgs) -> Result<Vec<String>, CliError> {
    let Some(map) = &a.map else {
        return Ok(a.target.clone().into_iter().collect());
    };
    let text = std::fs::read_to_string(map)
        .map_err(|e| CliError::usage(format!("--map {}: {e}", map.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(CliError::usage(format!(
                "{}:{}: {name:?} is not a BMC name",
                map.display(),
                i + 1
            )));
        }
        out.push(name.to_string());
    }
    if out.is_empty() {
        return Err(CliError::usage(format!(
            "--map {}: names no BMC",
            map.display()
        )));
    }
    Ok(out)
}

/// Completion codes the local tool sees when the gateway refuses.
const CC_INSUFFICIENT_PRIVILEGE: u8 = 0xD4;
const CC_INVALID_COMMAND: u8 = 0xC1;
const CC_NODE_BUSY: u8 = 0xC0;
const CC_TIMEOUT: u8 = 0xC3;
const CC_UNSPECIFIED: u8 = 0xFF;

struct Forwarder {
    rt: tokio::runtime::Handle,
    gateway: Gateway,
    path: String,
    target: String,
}

impl Forwarder {
    async fn forward(&self, req: &Request) -> (CompletionCode, Vec<u8>) {
        let hex = hex::encode(&req.data);
        let body = json!({"netfn": req.netfn.0, "cmd": req.cmd, "data": hex});
        let (status, bytes) = match self
            .gateway
            .call_raw(Method::POST, &self.path, Some(body), false)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ipmigw bridge: {}: {}", self.target, e.message);
                return (CompletionCode(CC_UNSPECIFIED), vec![]);
            }
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if status == StatusCode::OK {
            let cc = v["completion_code"]
                .as_u64()
                .unwrap_or(CC_UNSPECIFIED as u64) as u8;
            let data = hex::decode(v["data"].as_str().unwrap_or("").as_bytes())
                .ok()
                .unwrap_or_default();
            return (CompletionCode(cc), data);
        }
        let message = v["error"]["message"].as_str().unwrap_or("refused");
        eprintln!(
            "ipmigw bridge: {} netfn 0x{:02x} cmd 0x{:02x}: {status}: {message}",
            self.target, req.netfn.0, req.cmd
        );
        let unnamed = classify(req.netfn, req.cmd, &req.data)
            .name
            .as_str()
            .starts_with("raw.");
        let cc = match status.as_u16() {
            // A refused command outside the named set (OEM, PICMG probes that
            // tools send at start-up) looks like one this BMC lacks, so that
            // tools fall back quietly; a refused named command is a
            // privilege error, as on a BMC.
            403 if unnamed => CC_INVALID_COMMAND,
            403 | 404 => CC_INSUFFICIENT_PRIVILEGE,
            429 | 503 => CC_NODE_BUSY,
            504 => CC_TIMEOUT,
            _ => CC_UNSPECIFIED,
        };
        (CompletionCode(cc), vec![])
    }
}

impl Application for Forwarder {
    fn execute(
        &mut self,
        _now: std::time::Instant,
        _privilege: Privilege,
        req: &Request,
    ) -> (CompletionCode, Vec<u8>) {
        // The endpoint's thread is not a tokio thread: wait here, one
        // request at a time, as a BMC does.
        self.rt.block_on(self.forward(req))
    }
}

fn local_password(a: &BridgeArgs) -> Result<(SecretBytes, bool), CliError> {
    if let Some(p) = &a.password_file {
        return Ok((
            super::secrets::read_password_file(p).map_err(CliError::usage)?,
            false,
        ));
    }
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    let pw: Vec<u8> = (0..16)
        .map(|_| ALPHABET[rand::Rng::gen_range(&mut rng, 0..ALPHABET.len())])
        .collect();
    Ok((SecretBytes::new(pw), true))
}

pub async fn run(opts: ClientOpts, a: BridgeArgs) -> Result<(), CliError> {
    if !a.listen.ip().is_loopback() && !a.allow_non_loopback {
        return Err(CliError::usage(format!(
            "--listen {}: not a loopback address; the bridge acts with your certificate, so it listens on loopback unless --allow-non-loopback is given",
            a.listen
        )));
    }
    let (password, generated) = local_password(&a)?;
    let targets = targets(&a)?;
    if a.listen.port() != 0 && a.listen.port() as usize + targets.len() > 65_536 {
        return Err(CliError::usage(format!(
            "--listen {}: not enough ports for {} bridges",
            a.listen,
            targets.len()
        )));
    }
    let gateway = client::connect(&opts).await?;
    // A closed stdout (a supervisor that read the first line) must not stop the bridge.
    let say = |line: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut first = None;
    for (i, target) in targets.iter().enumerate() {
        let port = if a.listen.port() == 0 {
            0
        } else {
            a.listen.port() + i as u16
        };
        let addr = SocketAddr::new(a.listen.ip(), port);
        let (worker, local) = spawn_bridge(addr, target, &password, gateway.clone(), stop.clone())?;
        say(format!(
            "ipmigw bridge: {target} on udp://{local} (any user name; cipher suites 17 and 3)"
        ));
        first.get_or_insert(local);
        workers.push(worker);
    }
    if generated {
        // Printed once, to the person who started the bridge: it only opens the local hop.
        say(format!(
            "local password: {}",
            String::from_utf8_lossy(password.expose())
        ));
    }
    if let Some(local) = first {
        say(format!(
            "try: ipmitool -I lanplus -H {} -p {} -U $USER -P <local password> -C 17 power status",
            local.ip(),
            local.port()
        ));
    }
    super::signals::Signals::new(false).next().await;
    stop.store(true, Relaxed);
    let _ =
        tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join()))).await;
    Ok(())
}

/// One local BMC for `target` on `addr`, served by its own thread.
fn spawn_bridge(
    addr: SocketAddr,
    target: &str,
    password: &SecretBytes,
    gateway: Gateway,
    stop: Arc<AtomicBool>,
) -> Result<(std::thread::JoinHandle<()>, SocketAddr), CliError> {
    let socket =
        UdpSocket::bind(addr).map_err(|e| CliError::usage(format!("--listen {addr}: {e}")))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| CliError::usage(e.to_string()))?;
    let local = socket
        .local_addr()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let mut guid = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut guid);
    let mut cfg = EndpointConfig::new(guid);
    cfg.suites = vec![CipherSuite::Suite17, CipherSuite::Suite3];
    cfg.any_user_name = true;
    // Local tools and scripts may run side by side; sessions cost little here.
    cfg.max_sessions = 32;
    let users = vec![BmcUser {
        name: b"bridge".to_vec(),
        password: password.clone(),
        privilege: Privilege::Administrator,
        enabled: true,
    }];
    let mut endpoint = Endpoint::new(cfg, users, Box::new(rand::rngs::OsRng));
    let mut fwd = Forwarder {
        rt: tokio::runtime::Handle::current(),
        gateway,
        path: format!("/v1/bmcs/{}/raw", client::encode(target)),
        target: target.to_string(),
    };
    let worker = std::thread::Builder::new()
        .name(format!("bridge-{target}"))
        .spawn(move || {
            let mut buf = vec![0u8; 1024];
            while !stop.load(Relaxed) {
                endpoint.handle_timeout(Instant::now());
                let (n, peer) = match socket.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(e) => {
                        eprintln!("ipmigw bridge: socket: {e}");
                        continue;
                    }
                };
                if let Some(out) = endpoint.handle_datagram(Instant::now(), &buf[..n], &mut fwd) {
                    let _ = socket.send_to(&out.bytes, peer);
                }
            }
        })
        .map_err(|e| CliError::usage(format!("cannot start the bridge thread: {e}")))?;
    Ok((worker, local))
}
