//! `ipmigw bridge`: a local RMCP+ BMC that stock tools (ipmitool, freeipmi,
//! fence agents) talk to, whose every IPMI request crosses the network only
//! as one `/v1/bmcs/TARGET/raw` call over the client's mTLS connection to
//! the gateway, where policy and audit apply to it.
//!
//! The local password is for the local hop only (random unless given) and
//! never leaves this process. Session management (login, privilege, close)
//! is the local endpoint's own and is never forwarded. Listens on loopback
//! only unless told otherwise.
//!
//! Every local process can reach the port, and RAKP hands whoever names a
//! known user an HMAC keyed with that user's password, which can be
//! guessed offline. So the bridge answers one user name only (the owner's
//! login name unless --user), refuses short --password-file passwords
//! unless told otherwise, and backs off after failed logins.
//!
//! The bridge answers session management itself, and holds Serial over
//! LAN toward the tool while the bytes cross to the gateway's console of
//! the BMC (see [`sol`]). Get System GUID goes to the BMC like any other
//! read. A boot-flags write that does not reach the BMC gets no answer at
//! all (see [`withheld_unless_answered`]). When the gateway goes away,
//! commands are answered at once with "node busy" while the bridge
//! reconnects with
//! back-off ([`Link`]). It starts only for targets the gateway lets its
//! user act on.
//!
//! Each local BMC is one tokio task owning its socket and its endpoint. It
//! answers one request at a time, as a BMC does (the next datagram waits in
//! the socket while a request crosses to the gateway), and wakes at the
//! endpoint's timer, so that idle and half-open local sessions expire, and
//! an unanswered RAKP 2 counts toward the back-off, on time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::watch;

mod sol;

use super::client::{self, ClientOpts, Gateway};
use super::CliError;
use crate::ipmi::cmd::name::{boot_step, classify, BootStep};
use crate::ipmi::cmd::registry::{id, CommandId};
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::bmc::{
    AppCommand, BmcUser, Endpoint, EndpointConfig, Lockout, Outgoing, Received, SolActivity,
};
use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::{CompletionCode, Request};
use crate::ipmi::wire::rakp::MAX_USERNAME_LEN;
use crate::ops::error::EXIT_USAGE;
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
    /// Local user name tools log in as (1-16 bytes); default your login
    /// name ($USER, $LOGNAME, or your uid's name in /etc/passwd).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Local password (16-20 characters); random and printed once otherwise.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Accept a --password-file password under 16 characters (any local
    /// process that knows the user name can guess it offline).
    #[arg(long, requires = "password_file")]
    allow_weak_password: bool,
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

/// What became of a command sent towards the gateway.
#[derive(Debug, PartialEq, Eq)]
enum Forwarded {
    /// The BMC's answer, through the gateway.
    Answered(CompletionCode, Vec<u8>),
    /// The gateway refused it, or could not be asked: the completion code
    /// the tool gets instead. Nothing reached the BMC (or, after a lost
    /// connection, perhaps it did: 0xFF).
    NotAnswered(CompletionCode),
}

struct Forwarder {
    link: Arc<Link>,
    path: String,
    target: String,
}

impl Forwarder {
    async fn forward(&self, req: &Request) -> Forwarded {
        // While the gateway is away, answer at once (a tool that waited for
        // a dial per command would time out) and say nothing more: the
        // outage was reported once when it began.
        if self.link.is_away() {
            return Forwarded::NotAnswered(CompletionCode(CC_NODE_BUSY));
        }
        let hex = hex::encode(&req.data);
        let body = json!({"netfn": req.netfn.0, "cmd": req.cmd, "data": hex});
        let (status, bytes) = match self
            .link
            .gateway
            .call_raw(Method::POST, &self.path, Some(body), false)
            .await
        {
            Ok(r) => r,
            Err(e) if e.code == EXIT_USAGE => {
                eprintln!("ipmigw bridge: {}: {}", self.target, e.message);
                return Forwarded::NotAnswered(CompletionCode(CC_UNSPECIFIED));
            }
            Err(e) => {
                Link::lost(&self.link, &e.message);
                return Forwarded::NotAnswered(CompletionCode(CC_UNSPECIFIED));
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
            return Forwarded::Answered(CompletionCode(cc), data);
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
        Forwarded::NotAnswered(CompletionCode(cc))
    }
}

// === the link to the gateway ===

/// First wait before dialling a gateway that went away, doubled after each
/// failed attempt up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// The way to the gateway, shared by every local BMC of the process. When
/// a request finds the gateway gone (restart, network), the link is
/// "away": commands are answered at once with 0xC0 (node busy), one task
/// dials again with back-off, and the owner is told once when the gateway
/// went and once when it is back, not once per command.
struct Link {
    gateway: Gateway,
    /// When the gateway went away; `None` while it is there.
    away_since: std::sync::Mutex<Option<Instant>>,
}

impl Link {
    fn new(gateway: Gateway) -> Arc<Link> {
        Arc::new(Link {
            gateway,
            away_since: std::sync::Mutex::new(None),
        })
    }

    fn is_away(&self) -> bool {
        self.away_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The gateway could not be reached (`why`): begins an outage, unless
    /// one is under way, and the reconnecting task that ends it.
    fn lost(link: &Arc<Link>, why: &str) {
        {
            let mut away = link.away_since.lock().unwrap_or_else(|p| p.into_inner());
            if away.is_some() {
                return;
            }
            *away = Some(Instant::now());
        }
        eprintln!(
            "ipmigw bridge: lost the gateway ({why}); answering 0xC0 (node busy) until it is back, reconnecting"
        );
        tokio::spawn(reconnect(link.clone()));
    }
}

/// Dials the gateway with back-off until it answers; then the link is up.
async fn reconnect(link: Arc<Link>) {
    let mut wait = RECONNECT_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        if link.gateway.redial().await.is_ok() {
            let since = link
                .away_since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let secs = since.map_or(0.0, |t| t.elapsed().as_secs_f64());
            eprintln!("ipmigw bridge: the gateway is back (away {secs:.1} s)");
            return;
        }
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

// === what the bridge answers itself ===

/// True when `req` must go unanswered if it did not reach the BMC: the
/// boot-flags write of a boot-device change. ipmitool's `chassis bootdev`
/// ignores completion codes (it prints "failed" and exits 0, and scripts
/// go on to reboot into the wrong device); only a missing answer makes it
/// exit 1. freeipmi reports the timeout too.
/// Any boot-flags write counts, also one with flags no role grants
/// (`chassis.bootopt.flags`: CMOS clear, lock-outs): refused, it must not
/// look like success either.
fn withheld_unless_answered(req: &Request) -> bool {
    boot_step(req.netfn, req.cmd, &req.data) == Some(BootStep::Flags)
        || (CommandId::new(req.netfn, req.cmd) == id::SET_SYSTEM_BOOT_OPTIONS
            && req.data.first().is_some_and(|p| p & 0x7F == 5))
}

/// Shortest --password-file password taken without --allow-weak-password:
/// as long as the generated one.
const MIN_PASSWORD_CHARS: usize = 16;

/// Failed local logins before the bridge backs off, and how long.
const LOCKOUT: Lockout = Lockout {
    after_failures: 3,
    base: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

fn local_password(a: &BridgeArgs) -> Result<(SecretBytes, bool), CliError> {
    if let Some(p) = &a.password_file {
        let pw = crate::bmc::credentials::read_password_file(p).map_err(CliError::usage)?;
        if let (Some(why), false) = (weakness(pw.expose()), a.allow_weak_password) {
            return Err(CliError::usage(format!(
                "--password-file {}: the password {why}; \
                 any local process that knows the user name gets the local login's RAKP 2 HMAC \
                 and can guess the password offline. Omit --password-file to get a random one \
                 printed, or give --allow-weak-password",
                p.display()
            )));
        }
        return Ok((pw, false));
    }
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    let pw: Vec<u8> = (0..16)
        .map(|_| ALPHABET[rand::Rng::gen_range(&mut rng, 0..ALPHABET.len())])
        .collect();
    Ok((SecretBytes::new(pw), true))
}

/// Why a password is too weak to guard an offline-crackable exchange, or
/// `None`. Not a strength meter: it refuses what a cracker tries first
/// (short, few distinct characters, runs like `abcd` or `1111`, one kind
/// of character) and what falls short of 80 bits by a generous estimate.
fn weakness(pw: &[u8]) -> Option<&'static str> {
    const MIN_BITS: f64 = 80.0;
    let chars: Vec<char> = String::from_utf8_lossy(pw).chars().collect();
    if chars.len() < MIN_PASSWORD_CHARS {
        return Some("is shorter than 16 characters");
    }
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < chars.len() / 2 {
        return Some("repeats too few characters");
    }
    let runs = chars
        .windows(2)
        .filter(|w| (w[0] as i64 - w[1] as i64).abs() <= 1)
        .count();
    if runs * 2 >= chars.len() {
        return Some("is mostly a run of neighbouring characters");
    }
    let has = |f: fn(&char) -> bool| chars.iter().any(f);
    let pool = [
        (has(char::is_ascii_lowercase), 26.0),
        (has(char::is_ascii_uppercase), 26.0),
        (has(char::is_ascii_digit), 10.0),
        (has(|c| !c.is_ascii_alphanumeric()), 33.0),
    ]
    .iter()
    .filter(|(present, _)| *present)
    .map(|(_, n)| n)
    .sum::<f64>();
    if chars.len() as f64 * pool.log2() < MIN_BITS {
        return Some("draws on too few kinds of characters for its length");
    }
    None
}

/// The one user name the bridge answers to: --user, or the login name of
/// whoever started it.
fn local_user(a: &BridgeArgs) -> Result<String, CliError> {
    let name = match &a.user {
        Some(n) => n.clone(),
        None => {
            let var = |k| std::env::var(k).ok();
            login_name(var("USER"), var("LOGNAME"), uid_name).ok_or_else(|| {
                CliError::usage(
                    "cannot tell your login name ($USER and $LOGNAME are unset, and your uid has no name in /etc/passwd): give the local user name with --user NAME",
                )
            })?
        }
    };
    if name.is_empty() || name.len() > MAX_USERNAME_LEN {
        let from = if a.user.is_some() {
            "--user"
        } else {
            "your login name"
        };
        return Err(CliError::usage(format!(
            "{from} {name:?}: IPMI user names are 1-{MAX_USERNAME_LEN} bytes; give another with --user NAME"
        )));
    }
    Ok(name)
}

/// The first of $USER, $LOGNAME and the uid's passwd name that is set and
/// not empty.
fn login_name(
    user: Option<String>,
    logname: Option<String>,
    uid_name: impl FnOnce() -> Option<String>,
) -> Option<String> {
    user.into_iter()
        .chain(logname)
        .find(|n| !n.is_empty())
        .or_else(|| uid_name().filter(|n| !n.is_empty()))
}

/// The passwd name of this process's real uid, read without libc (the
/// crate makes no raw libc calls): the uid from /proc, the name from /etc/passwd.
fn uid_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_name(&passwd, status_uid(&status)?)
}

/// The real uid in a /proc/PID/status text.
fn status_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The name of `uid` in a passwd(5) text.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

pub async fn run(opts: ClientOpts, a: BridgeArgs) -> Result<(), CliError> {
    if !a.listen.ip().is_loopback() && !a.allow_non_loopback {
        return Err(CliError::usage(format!(
            "--listen {}: not a loopback address; the bridge acts with your certificate, so it listens on loopback unless --allow-non-loopback is given",
            a.listen
        )));
    }
    let user = local_user(&a)?;
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
    check_targets(&gateway, &targets).await?;
    let link = Link::new(gateway);
    // A closed stdout (a supervisor that read the first line) must not stop the bridge.
    let say = |line: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    let mut first = None;
    for (i, target) in targets.iter().enumerate() {
        let port = if a.listen.port() == 0 {
            0
        } else {
            a.listen.port() + i as u16
        };
        let addr = SocketAddr::new(a.listen.ip(), port);
        let make = |port| endpoint(user.as_bytes(), &password, port);
        let (worker, local) =
            spawn_bridge(addr, target, make, link.clone(), stopped.clone()).await?;
        say(format!(
            "ipmigw bridge: {target} on udp://{local} (user {user}; cipher suites 17 and 3)"
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
            "try: ipmitool -I lanplus -H {} -p {} -U {user} -P <local password> -C 17 power status",
            local.ip(),
            local.port()
        ));
    }
    super::signals::Signals::new(false).next().await;
    // Each bridge finishes the request it is forwarding, then stops.
    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}

/// Most BMC names a refusal of an unknown target lists.
const MAX_NAMES_LISTED: usize = 10;

/// Refuses to start for a target the gateway does not let this user act
/// on: every command would be refused, and a tool would report it as a
/// privilege problem. (The gateway answers unknown and invisible BMCs
/// alike, so the message cannot say which.)
async fn check_targets(gateway: &Gateway, targets: &[String]) -> Result<(), CliError> {
    let visible = gateway.visible().await?;
    let Some(unknown) = targets.iter().find(|t| !visible.contains(t)) else {
        return Ok(());
    };
    let yours = if visible.is_empty() {
        "none".to_string()
    } else {
        let mut names = visible[..visible.len().min(MAX_NAMES_LISTED)].join(", ");
        if visible.len() > MAX_NAMES_LISTED {
            names.push_str(&format!(", ... ({} in all)", visible.len()));
        }
        names
    };
    Err(CliError::usage(format!(
        "{unknown}: the gateway knows no BMC of that name that you may act on (`ipmigw bmcs` lists yours: {yours})"
    )))
}

/// The local BMC's session endpoint on `port`: one administrator named
/// `user`, SOL activations left to the bridge.
fn endpoint(user: &[u8], password: &SecretBytes, port: u16) -> Endpoint {
    // The local hop's own GUID, for RAKP only: Get System GUID is forwarded
    // to the BMC (an inventory tool must see the machine, not the bridge).
    let mut guid = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut guid);
    let mut cfg = EndpointConfig::new(guid);
    cfg.forward_system_guid = true;
    cfg.suites = vec![CipherSuite::Suite17, CipherSuite::Suite3];
    // Local tools and scripts may run side by side; sessions cost little here.
    cfg.max_sessions = 32;
    // A slow gateway makes ipmipower re-send power commands (with a new
    // rqSeq): each copy must not become another power action.
    cfg.repeat_window = Some(Duration::from_secs(10));
    cfg.lockout = Some(LOCKOUT);
    cfg.sol = Some(sol::settings(port));
    let users = vec![BmcUser {
        name: user.to_vec(),
        password: password.clone(),
        privilege: Privilege::Administrator,
        enabled: true,
    }];
    Endpoint::new(cfg, users, Box::new(rand::rngs::OsRng))
}

/// One local BMC for `target` on `addr`, served by its own task.
async fn spawn_bridge(
    addr: SocketAddr,
    target: &str,
    endpoint: impl FnOnce(u16) -> Endpoint,
    link: Arc<Link>,
    stopped: watch::Receiver<bool>,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr), CliError> {
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|e| CliError::usage(format!("--listen {addr}: {e}")))?;
    let local = socket
        .local_addr()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let bridge = LocalBmc {
        socket,
        // The Activate Payload answer names this port.
        endpoint: endpoint(local.port()),
        fwd: Forwarder {
            link,
            path: format!("/v1/bmcs/{}/raw", client::encode(target)),
            target: target.to_string(),
        },
        seen: Seen::default(),
        sol: None,
        sol_peer: None,
    };
    Ok((tokio::spawn(bridge.serve(stopped)), local))
}

/// One local BMC: its socket, its session endpoint, and the way to the
/// gateway for the commands that pass the endpoint.
struct LocalBmc {
    socket: UdpSocket,
    endpoint: Endpoint,
    fwd: Forwarder,
    seen: Seen,
    /// The console leg of the local SOL payload, while it is active.
    sol: Option<sol::Leg>,
    /// Where the payload's datagrams go (the tool that activated it).
    sol_peer: Option<SocketAddr>,
}

/// What woke a local BMC.
enum Wake {
    Datagram(usize, SocketAddr),
    Timer,
    Console(Option<Result<tokio_tungstenite::tungstenite::Message, String>>),
    Stop,
}

/// The next message of the console leg, or never without one.
async fn console_next(
    leg: &mut Option<sol::Leg>,
) -> Option<Result<tokio_tungstenite::tungstenite::Message, String>> {
    match leg {
        Some(leg) => leg.next().await,
        None => std::future::pending().await,
    }
}

impl LocalBmc {
    async fn serve(mut self, mut stopped: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 1024];
        loop {
            let expiry = self.endpoint.poll_timeout();
            let wake = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => Wake::Datagram(n, peer),
                    Err(e) => {
                        // ICMP errors from earlier answers surface here.
                        eprintln!("ipmigw bridge: socket: {e}");
                        continue;
                    }
                },
                () = wake_at(expiry) => Wake::Timer,
                m = console_next(&mut self.sol) => Wake::Console(m),
                _ = stopped.changed() => Wake::Stop,
            };
            match wake {
                Wake::Datagram(n, peer) => self.datagram(&buf[..n], peer).await,
                Wake::Timer => self.endpoint.handle_timeout(Instant::now()),
                Wake::Console(m) => self.console_heard(m),
                Wake::Stop => {
                    if let Some(leg) = self.sol.take() {
                        leg.close().await;
                    }
                    return;
                }
            }
            self.pump_sol().await;
            self.seen
                .report(&self.endpoint, &self.fwd.target, Instant::now());
        }
    }

    /// Answers one datagram; a command for the BMC crosses to the gateway
    /// first, and nothing else is read until its answer is back.
    async fn datagram(&mut self, d: &[u8], peer: SocketAddr) {
        let out = match self.endpoint.receive(Instant::now(), d) {
            None => return,
            Some(Received::Reply(out)) => out,
            Some(Received::Command(cmd))
                if CommandId::new(cmd.request().netfn, cmd.request().cmd)
                    == id::ACTIVATE_PAYLOAD =>
            {
                match self.activate(cmd, peer).await {
                    Some(out) => out,
                    None => return,
                }
            }
            Some(Received::Command(cmd)) => {
                let (cc, data) = match self.run(cmd.request()).await {
                    Some(answer) => answer,
                    None => return self.endpoint.withhold(cmd),
                };
                match self.endpoint.answer(cmd, cc, data) {
                    Some(out) => out,
                    None => return,
                }
            }
        };
        let _ = self.socket.send_to(&out.bytes, peer).await;
    }

    /// The answer to one command: the bridge's own, or the BMC's through
    /// the gateway; `None` to leave it unanswered.
    async fn run(&mut self, req: &Request) -> Option<(CompletionCode, Vec<u8>)> {
        let target = &self.fwd.target;
        match self.fwd.forward(req).await {
            Forwarded::Answered(cc, data) => Some((cc, data)),
            Forwarded::NotAnswered(_) if withheld_unless_answered(req) => {
                eprintln!(
                    "ipmigw bridge: {target}: the boot device was not set; no answer, so that the tool reports the failure"
                );
                None
            }
            Forwarded::NotAnswered(cc) => Some((cc, vec![])),
        }
    }
}

// === Serial over LAN ===

impl LocalBmc {
    /// An Activate Payload the endpoint found valid: the gateway's console
    /// is attached as the writer first; its refusal is the tool's.
    async fn activate(&mut self, cmd: AppCommand, peer: SocketAddr) -> Option<Outgoing> {
        let target = &self.fwd.target;
        let path = format!("/v1/bmcs/{}/console?mode=write", client::encode(target));
        let attached = if self.fwd.link.is_away() {
            Err((Some(503), CliError::usage("the gateway is away")))
        } else {
            self.fwd.link.gateway.console_socket(&path).await
        };
        match attached {
            Ok(ws) => {
                let out = self.endpoint.sol_accept(cmd);
                if self.endpoint.sol_owner().is_some() {
                    eprintln!("ipmigw bridge: {target}: sol activate: attached to the console as the writer");
                    self.sol = Some(sol::Leg::new(ws));
                    self.sol_peer = Some(peer);
                } else {
                    sol::Leg::new(ws).close().await;
                }
                out
            }
            Err((status, e)) => {
                eprintln!(
                    "ipmigw bridge: {target}: sol activate refused: {}",
                    e.message
                );
                let cc = CompletionCode(sol::refusal_cc(status));
                self.endpoint.answer(cmd, cc, vec![])
            }
        }
    }

    /// A message from the gateway's console.
    fn console_heard(
        &mut self,
        m: Option<Result<tokio_tungstenite::tungstenite::Message, String>>,
    ) {
        let Some(leg) = self.sol.as_mut() else {
            return;
        };
        if let sol::Heard::End(why) = leg.heard(m) {
            eprintln!("ipmigw bridge: {}: {why}; SOL deactivated", self.fwd.target);
            self.sol = None;
            self.endpoint.sol_deactivate();
        }
    }

    /// Moves SOL along after any wake: output into the payload, keystrokes
    /// and breaks to the gateway, the payload's datagrams to the tool, and
    /// the console detached once the payload is gone.
    async fn pump_sol(&mut self) {
        let now = Instant::now();
        while let Some(ev) = self.endpoint.poll_sol_activity() {
            let sent = match (ev, self.sol.as_mut()) {
                (SolActivity::Break, Some(leg)) => leg.brk().await,
                (SolActivity::Deactivated, _) => {
                    if let Some(leg) = self.sol.take() {
                        leg.close().await;
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
            self.leg_failed(sent);
        }
        if let Some(leg) = self.sol.as_mut() {
            leg.feed(&mut self.endpoint, now);
            let keys = self.endpoint.sol_read();
            if !keys.is_empty() {
                let sent = leg.keys(keys).await;
                self.leg_failed(sent);
            }
        }
        while let Some(out) = self.endpoint.poll_sol_transmit() {
            if let Some(peer) = self.sol_peer {
                let _ = self.socket.send_to(&out.bytes, peer).await;
            }
        }
    }

    /// The gateway's console is gone: so is the local payload.
    fn leg_failed(&mut self, sent: Result<(), String>) {
        if let Err(e) = sent {
            eprintln!(
                "ipmigw bridge: {}: console: {e}; SOL deactivated",
                self.fwd.target
            );
            self.sol = None;
            self.endpoint.sol_deactivate();
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What the bridge has told its owner on stderr: login back-offs (someone
/// is guessing, and their own tool is refused for a while) and a full
/// session table (someone opens sessions without logging in, which keeps
/// every login out until they expire).
#[derive(Default)]
struct Seen {
    lockouts: u64,
    sessions_full: u64,
    full_told_at: Option<Instant>,
}

/// How often a full session table is reported at most.
const FULL_REPORT_EVERY: Duration = Duration::from_secs(10);

impl Seen {
    fn report(&mut self, endpoint: &Endpoint, target: &str, now: Instant) {
        let stats = endpoint.stats();
        if stats.lockouts != self.lockouts {
            self.lockouts = stats.lockouts;
            if let Some(until) = endpoint.locked_until(now) {
                eprintln!(
                    "ipmigw bridge: {target}: failed local logins (unknown user name or wrong password); refusing logins for {} s",
                    (until - now).as_secs()
                );
            }
        }
        if stats.sessions_full != self.sessions_full {
            self.sessions_full = stats.sessions_full;
            if self
                .full_told_at
                .is_none_or(|t| now.duration_since(t) >= FULL_REPORT_EVERY)
            {
                self.full_told_at = Some(now);
                eprintln!(
                    "ipmigw bridge: {target}: every local session slot is taken ({} sessions); logins are refused until some expire (a local process may be opening sessions without logging in)",
                    endpoint.session_count()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::session::bmc::tests::{open, rakp1};
    use crate::ipmi::wire::rakp::RmcpPlusStatus;

    const PASSWORD: &[u8] = b"k7Qx2mPz9RtL4vWn";

    #[test]
    fn the_bridge_gives_an_hmac_to_its_user_name_only() {
        let now = Instant::now();
        let mut ep = endpoint(b"carol", &SecretBytes::from(PASSWORD), 6230);
        let sid = open(&mut ep, now).unwrap();
        let (r2, _) = rakp1(&mut ep, now, sid, b"carol");
        assert!(r2.status.is_ok());
        assert!(!r2.auth_code.is_empty());
        // Two: a third unknown name would start the back-off.
        for name in [&b"anyone"[..], b"bridge"] {
            let sid = open(&mut ep, now).unwrap();
            let (r2, raw) = rakp1(&mut ep, now, sid, name);
            assert_eq!(r2.status, RmcpPlusStatus::UNAUTHORIZED_NAME);
            assert_eq!(raw.len(), 8, "a bare refusal, no HMAC");
        }
    }

    #[test]
    fn the_bridge_backs_off_after_three_unknown_names() {
        let now = Instant::now();
        let mut ep = endpoint(b"carol", &SecretBytes::from(PASSWORD), 6230);
        for _ in 0..LOCKOUT.after_failures {
            let sid = open(&mut ep, now).unwrap();
            rakp1(&mut ep, now, sid, b"mallory");
        }
        assert_eq!(ep.locked_until(now), Some(now + LOCKOUT.base));
        assert_eq!(
            open(&mut ep, now),
            Err(RmcpPlusStatus::INSUFFICIENT_RESOURCES)
        );
    }

    #[test]
    fn login_name_is_user_then_logname_then_the_uids_passwd_name() {
        let some = |s: &str| Some(s.to_string());
        let never = || -> Option<String> { panic!("passwd read though $USER is set") };
        assert_eq!(login_name(some("ann"), some("bob"), never), some("ann"));
        assert_eq!(login_name(None, some("bob"), never), some("bob"));
        assert_eq!(login_name(some(""), some("bob"), never), some("bob"));
        assert_eq!(login_name(None, None, || some("cat")), some("cat"));
        assert_eq!(login_name(Some(String::new()), None, || None), None);
        assert_eq!(login_name(None, None, || some("")), None);
    }

    #[test]
    fn the_uid_name_comes_from_proc_status_and_passwd() {
        let status = "Name:\tipmigw\nUmask:\t0022\nUid:\t1001\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(
            status_uid(status),
            Some(1001),
            "the real uid, not the effective"
        );
        assert_eq!(status_uid("Name:\tx\n"), None);
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      broken\n\
                      dave:x:1001:100::/home/dave:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 1001).as_deref(), Some("dave"));
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 42), None);
    }

    fn args(extra: &[&str]) -> Result<BridgeArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: BridgeArgs,
        }
        let argv = ["bridge"].iter().chain(extra).chain(&["node01"]);
        <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.a)
    }

    #[test]
    fn user_names_are_1_to_16_bytes() {
        assert_eq!(
            local_user(&args(&["--user", "ops"]).unwrap()).unwrap(),
            "ops"
        );
        let sixteen = "a".repeat(16);
        assert!(local_user(&args(&["--user", &sixteen]).unwrap()).is_ok());
        for bad in ["", &"a".repeat(17)] {
            let e = local_user(&args(&["--user", bad]).unwrap()).unwrap_err();
            assert_eq!(e.code, super::super::EXIT_USAGE);
            assert!(
                e.message.contains("--user") && e.message.contains("1-16 bytes"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn short_password_files_need_the_weak_password_opt_in() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, pw: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pw).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p.to_str().unwrap().to_string()
        };
        let weak = file("weak", "letmein\n");
        let e = local_password(&args(&["--password-file", &weak]).unwrap()).unwrap_err();
        assert!(
            e.message.contains("--allow-weak-password") && e.message.contains("offline"),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains("letmein"),
            "the error shows no password"
        );
        let (pw, generated) =
            local_password(&args(&["--password-file", &weak, "--allow-weak-password"]).unwrap())
                .unwrap();
        assert_eq!((pw.expose(), generated), (&b"letmein"[..], false));
        // Fifteen characters are still too few; sixteen varied ones are enough.
        let fifteen = file("fifteen", "kX9#mQ2!vL7@pR4");
        assert!(local_password(&args(&["--password-file", &fifteen]).unwrap()).is_err());
        let sixteen = file("sixteen", "kX9#mQ2!vL7@pR4$");
        assert!(local_password(&args(&["--password-file", &sixteen]).unwrap()).is_ok());
        // The opt-in means nothing without a file.
        assert!(args(&["--allow-weak-password"]).is_err());
    }

    fn request(netfn: u8, cmd: u8, data: &[u8]) -> Request {
        Request::to_bmc(
            crate::ipmi::wire::message::NetFn(netfn),
            cmd,
            1,
            data.to_vec(),
        )
    }

    /// Only boot-flags writes go unanswered when they do not reach the
    /// BMC: a boot-device change, and one with flags no role grants (CMOS
    /// clear, keyboard lock-out).
    #[test]
    fn only_the_boot_flags_write_is_withheld() {
        for data in [
            &[5, 0x80, 4, 0, 0, 0][..],
            &[5, 0x80, 0x84, 0, 0, 0],
            &[5, 0x80, 0x04, 0x40, 0, 0],
            &[0x85, 0x80, 0x04, 0, 0, 0],
        ] {
            assert!(
                withheld_unless_answered(&request(0x00, 0x08, data)),
                "{data:02x?}"
            );
        }
        for (netfn, cmd, data) in [
            (0x00, 0x08, &[0, 1][..]),
            (0x00, 0x08, &[4, 1, 1]),
            (0x00, 0x08, &[0, 0]),
            (0x00, 0x02, &[0]),
            (0x00, 0x09, &[5, 0, 0]),
        ] {
            assert!(
                !withheld_unless_answered(&request(netfn, cmd, data)),
                "{data:02x?}"
            );
        }
    }

    #[test]
    fn the_generated_password_passes_the_check() {
        for _ in 0..200 {
            let (pw, generated) = local_password(&args(&[]).unwrap()).unwrap();
            assert!(generated);
            assert_eq!(weakness(pw.expose()), None);
        }
    }

    /// Sixteen characters that a cracker tries first are refused.
    #[test]
    fn long_but_guessable_passwords_are_weak() {
        for weak in [
            "aaaaaaaaaaaaaaaa",
            "passwordpassword",
            "1234567890123456",
            "               a",
            "abcdefghijklmnop",
            "qwertyuiopasdfgh",
        ] {
            assert!(weakness(weak.as_bytes()).is_some(), "{weak}");
        }
        for strong in ["kX9#mQ2!vL7@pR4$", "correct-horse-battery-staple-42"] {
            assert_eq!(weakness(strong.as_bytes()), None, "{strong}");
        }
    }
}
