//! The built-in BMC simulator: N simulated BMCs on consecutive UDP ports,
//! each a task owning its socket, its RMCP+ [`Endpoint`] and its hardware
//! [`model::SimBmc`]. It is the embedded default the demo, the tests and the
//! benchmarks run against, so it must behave like a BMC, not return canned
//! bytes.
//!
//! Fault knobs ([`Faults`]) imitate lossy networks, slow or silent BMCs and
//! reboots. The library API ([`Simulator::start`], [`SimBmcHandle`]) lets
//! tests start BMCs in-process on port 0 and inspect their state.
//!
//! Each task also wakes at its endpoint's `poll_timeout`, so sessions
//! expire on time whether or not traffic comes.
//!
//! Every BMC has one SOL payload: the endpoint carries SOL packets and a
//! [`host::SimHost`] sits on the serial line (banner, `login:`, echo,
//! `flood N`). SOL datagrams go to the address that activated the payload.
//!
//! Insecure profiles ([`INSECURE_PROFILES`], `ipmigw sim --insecure`) make
//! the BMCs weak in named ways, so that every `ipmigw scan` finding has a
//! BMC that shows it and one that does not.
//!
//! Never does: answer a packet the endpoint dropped, or block one BMC's task
//! on another's.

pub mod host;
pub mod model;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Notify};

use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::bmc::{
    BmcUser, Endpoint, EndpointConfig, EndpointStats, Lockout, SolActivity, SolSettings,
    Weaknesses, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS,
};
use crate::ipmi::session::sol::LinkStats;
use crate::ipmi::session::Privilege;
use crate::secret::SecretBytes;
use host::SimHost;
use model::{SensorCatalog, SimBmc, UserSummary};

/// Largest datagram a simulated BMC reads.
const MAX_DATAGRAM_BYTES: usize = 1024;

/// Misbehaviour to imitate; all off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Fraction (0..=1) of incoming datagrams ignored.
    pub drop_requests: f64,
    /// Fraction of answers not sent.
    pub drop_replies: f64,
    /// Fraction of answers with one byte flipped.
    pub corrupt_replies: f64,
    /// Delay before each answer.
    pub delay: Duration,
    /// Refused logins get no answer at all (some BMCs stay silent).
    pub silent_login_errors: bool,
    /// The next this many RAKP 2 and RAKP 4 answers go out with their
    /// authentication code damaged (one corrupted datagram in a login).
    pub corrupt_rakp_auth: u32,
    /// Fraction of SOL packets lost, each way.
    pub drop_sol: f64,
    /// SOL goes silent: activation works but no SOL packet is taken or
    /// sent (a quirk of real BMCs and ipmi_sim).
    pub sol_silent: bool,
}

/// A simulated BMC user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUser {
    /// User name.
    pub name: String,
    /// Password (at most 20 bytes).
    pub password: String,
    /// `user`, `operator` or `administrator`.
    pub privilege: String,
    /// Defaults to true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    user: Vec<SimUser>,
}

/// The default users: admin, operator and user, with these passwords.
pub fn default_users() -> Vec<SimUser> {
    [
        ("admin", "Adm1nPass", "administrator"),
        ("operator", "0perPass", "operator"),
        ("user", "Us3rPass", "user"),
    ]
    .into_iter()
    .map(|(n, p, r)| SimUser {
        name: n.into(),
        password: p.into(),
        privilege: r.into(),
        enabled: true,
    })
    .collect()
}

/// Reads a TOML users file (`[[user]] name, password, privilege, enabled`).
/// Errors name the file and, from the TOML parser, the line and column.
pub fn load_users(path: &Path) -> Result<Vec<SimUser>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("users file {}: {e}", path.display()))?;
    let f: UsersFile =
        toml::from_str(&text).map_err(|e| format!("users file {}: {e}", path.display()))?;
    for u in &f.user {
        parse_privilege(&u.privilege)
            .map_err(|e| format!("users file {}: user {:?}: {e}", path.display(), u.name))?;
        if u.name.is_empty() || u.name.len() > 16 {
            return Err(format!(
                "users file {}: user {:?}: name must be 1-16 bytes",
                path.display(),
                u.name
            ));
        }
        if u.password.len() > 20 {
            return Err(format!(
                "users file {}: user {:?}: password is over 20 bytes",
                path.display(),
                u.name
            ));
        }
    }
    Ok(f.user)
}

fn parse_privilege(s: &str) -> Result<Privilege, String> {
    match s {
        "callback" => Ok(Privilege::Callback),
        "user" => Ok(Privilege::User),
        "operator" => Ok(Privilege::Operator),
        "administrator" | "admin" => Ok(Privilege::Administrator),
        other => Err(format!(
            "privilege {other:?}: expected user, operator or administrator"
        )),
    }
}

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// First address; BMC i listens on port + i (port 0: each picks a free port).
    pub listen: SocketAddr,
    /// Number of BMCs.
    pub count: usize,
    /// Users of every BMC.
    pub users: Vec<SimUser>,
    /// Accepted cipher suites.
    pub suites: Vec<CipherSuite>,
    /// Session cap per BMC.
    pub max_sessions: usize,
    /// Idle timeout of sessions.
    pub idle_timeout: Duration,
    /// Faults, applied to every BMC (each can be changed later).
    pub faults: Faults,
    /// Back-off after failed logins, per BMC.
    pub lockout: Option<Lockout>,
    /// Weaknesses given on purpose (see [`apply_insecure`]).
    pub weak: Weaknesses,
    /// The BMC key Kg, when one is set (auth caps then say so).
    pub kg: Option<SecretBytes>,
    /// How BMCs after the first find their address.
    pub spread: Spread,
}

/// Where BMC i (0-based) listens, from the first address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Spread {
    /// Same IP, port + i (port 0: each on a free port).
    #[default]
    Ports,
    /// IP + i, the same port: nmap's IPMI scripts only probe port 623,
    /// so a side-by-side test gives each BMC its own loopback address.
    Addresses,
}

/// The names `--insecure` takes, each a weakness real BMCs ship with.
pub const INSECURE_PROFILES: [&str; 6] = [
    "cipher0",
    "anonymous",
    "ipmi15-none",
    "ipmi15-md5",
    "default-creds",
    "no-lockout",
];

/// The vendor default account `default-creds` adds (Supermicro's).
pub const DEFAULT_CREDS_USER: (&str, &str) = ("ADMIN", "ADMIN");

/// The lockout a simulated BMC has unless `no-lockout` is asked for (see
/// [`apply_insecure`]): 5 failures in a row, then back-offs up to a minute.
pub const SIM_LOCKOUT: Lockout = Lockout {
    after_failures: 5,
    base: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// Makes `cfg` weak in exactly the named ways ([`INSECURE_PROFILES`]) and
/// gives it [`SIM_LOCKOUT`] unless `no-lockout` is among them. An unknown
/// name is an error that lists the valid ones.
pub fn apply_insecure<S: AsRef<str>>(cfg: &mut SimConfig, names: &[S]) -> Result<(), String> {
    cfg.lockout = Some(SIM_LOCKOUT);
    let user = |name: &str, password: &str| SimUser {
        name: name.into(),
        password: password.into(),
        privilege: "administrator".into(),
        enabled: true,
    };
    for name in names {
        match name.as_ref() {
            "cipher0" => cfg.weak.suite_zero = true,
            "anonymous" => {
                cfg.weak.anonymous = true;
                if !cfg.users.iter().any(|u| u.name.is_empty()) {
                    cfg.users.insert(0, user("", ""));
                }
            }
            "ipmi15-none" => cfg.weak.v15_auth_types |= 0x01,
            "ipmi15-md5" => cfg.weak.v15_auth_types |= 0x04,
            "default-creds" => {
                let (n, p) = DEFAULT_CREDS_USER;
                if !cfg.users.iter().any(|u| u.name == n) {
                    cfg.users.push(user(n, p));
                }
            }
            "no-lockout" => cfg.lockout = None,
            other => {
                return Err(format!(
                    "--insecure {other:?}: expected any of {}",
                    INSECURE_PROFILES.join(", ")
                ))
            }
        }
    }
    Ok(())
}

impl SimConfig {
    /// `count` BMCs from `listen`, default users, suites 17 and 3, 4 sessions,
    /// no lockout.
    pub fn new(listen: SocketAddr, count: usize) -> SimConfig {
        SimConfig {
            listen,
            count,
            users: default_users(),
            suites: CipherSuite::DEFAULT.to_vec(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            faults: Faults::default(),
            // Off: load and fault tests log in wrongly on purpose and many
            // lab BMCs have no lockout; imitating one is opt-in.
            lockout: None,
            weak: Weaknesses::default(),
            kg: None,
            spread: Spread::Ports,
        }
    }
}

/// What one BMC's task shares with its handle.
#[derive(Debug)]
struct Shared {
    model: SimBmc,
    endpoint: Endpoint,
    faults: Faults,
    host: SimHost,
    /// Where the SOL payload's console is.
    sol_peer: Option<SocketAddr>,
}

/// A running simulator.
#[derive(Debug)]
pub struct Simulator {
    bmcs: Vec<SimBmcHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Access to one simulated BMC's state.
#[derive(Debug, Clone)]
pub struct SimBmcHandle {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// Wakes the task to send what a handle call queued.
    wake: Arc<Notify>,
}

impl Simulator {
    /// Binds every socket, then starts one task per BMC.
    pub async fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let mut users = Vec::new();
        let mut summaries = Vec::new();
        for u in &cfg.users {
            let privilege = parse_privilege(&u.privilege).map_err(invalid)?;
            users.push(BmcUser {
                name: u.name.as_bytes().to_vec(),
                password: SecretBytes::from(u.password.as_bytes()),
                privilege,
                enabled: u.enabled,
            });
            summaries.push(UserSummary {
                name: u.name.clone(),
                privilege,
                enabled: u.enabled,
            });
        }
        let catalog = Arc::new(SensorCatalog::standard());
        let (stop, stopped) = watch::channel(false);
        let now = Instant::now();
        let mut bmcs = Vec::with_capacity(cfg.count);
        let mut tasks = Vec::with_capacity(cfg.count);
        for i in 0..cfg.count {
            let addr = bmc_addr(cfg.listen, cfg.spread, i).map_err(invalid)?;
            let socket = UdpSocket::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("simulated BMC {} on {addr}: {e}", i + 1))
            })?;
            let addr = socket.local_addr()?;
            let index = i as u32 + 1;
            let mut model = SimBmc::new(index, catalog.clone(), summaries.clone(), now);
            model.set_lockout(cfg.lockout.map(|l| {
                let secs = u16::try_from(l.max.as_secs()).unwrap_or(u16::MAX);
                (u8::try_from(l.after_failures).unwrap_or(u8::MAX), secs)
            }));
            let mut ecfg = EndpointConfig::new(model.guid());
            ecfg.suites = cfg.suites.clone();
            ecfg.max_sessions = cfg.max_sessions;
            ecfg.idle_timeout = cfg.idle_timeout;
            ecfg.lockout = cfg.lockout;
            ecfg.weak = cfg.weak;
            ecfg.kg = cfg.kg.clone();
            ecfg.sol = Some(SolSettings::new(addr.port()));
            let endpoint = Endpoint::new(
                ecfg,
                users.clone(),
                Box::new(rand::rngs::StdRng::from_entropy()),
            );
            let shared = Arc::new(Mutex::new(Shared {
                model,
                endpoint,
                faults: cfg.faults.clone(),
                host: SimHost::new(index),
                sol_peer: None,
            }));
            let wake = Arc::new(Notify::new());
            let task = serve(socket, shared.clone(), wake.clone(), stopped.clone());
            tasks.push(tokio::spawn(task));
            bmcs.push(SimBmcHandle { addr, shared, wake });
        }
        Ok(Simulator { bmcs, stop, tasks })
    }

    /// Every BMC, in order (BMC 1 first).
    pub fn bmcs(&self) -> &[SimBmcHandle] {
        &self.bmcs
    }

    /// BMC `i` (0-based).
    pub fn bmc(&self, i: usize) -> &SimBmcHandle {
        &self.bmcs[i]
    }

    /// Stops every task and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl SimBmcHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        f(&mut lock(&self.shared))
    }

    /// Runs `f` on the hardware model (power, boot flags, SEL, sensors).
    pub fn with_model<R>(&self, f: impl FnOnce(&mut SimBmc, Instant) -> R) -> R {
        self.with(|s| f(&mut s.model, Instant::now()))
    }

    /// Host power state.
    pub fn power_on(&self) -> bool {
        self.with_model(|m, now| m.power_on(now))
    }

    /// Session-layer counters (drops by reason, logins, commands).
    pub fn stats(&self) -> EndpointStats {
        self.with(|s| s.endpoint.stats())
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        self.with(|s| s.endpoint.session_count())
    }

    /// Forgets every session, as a BMC reboot does.
    pub fn forget_sessions(&self) {
        self.with(|s| s.endpoint.forget_sessions());
    }

    /// Replaces this BMC's faults.
    pub fn set_faults(&self, faults: Faults) {
        self.with(|s| s.faults = faults);
    }

    /// True while a session holds the SOL payload.
    pub fn sol_active(&self) -> bool {
        self.with(|s| s.endpoint.sol_owner().is_some())
    }

    /// Deactivates SOL from the BMC's side: the console is told SOL is
    /// inactive (as when someone takes the console elsewhere).
    pub fn sol_deactivate(&self) {
        self.with(|s| s.endpoint.sol_deactivate());
        self.wake.notify_one();
    }

    /// Every byte the host received over SOL (up to 1 MiB).
    pub fn host_input(&self) -> Vec<u8> {
        self.with(|s| s.host.received().to_vec())
    }

    /// Breaks the host received.
    pub fn host_breaks(&self) -> u32 {
        self.with(|s| s.host.breaks())
    }

    /// The SOL link's counters while a payload is active.
    pub fn sol_link_stats(&self) -> Option<LinkStats> {
        self.with(|s| s.endpoint.sol_link_stats())
    }
}

/// BMC `i`'s address (0-based) under `spread`.
fn bmc_addr(first: SocketAddr, spread: Spread, i: usize) -> Result<SocketAddr, String> {
    let mut addr = first;
    match spread {
        Spread::Ports if addr.port() == 0 => {}
        Spread::Ports => {
            let port = u16::try_from(usize::from(addr.port()) + i)
                .map_err(|_| format!("BMC {}: port beyond 65535", i + 1))?;
            addr.set_port(port);
        }
        Spread::Addresses => {
            let beyond = || format!("BMC {}: address beyond the address space", i + 1);
            let step = u32::try_from(i).map_err(|_| beyond())?;
            addr.set_ip(match first.ip() {
                std::net::IpAddr::V4(v4) => {
                    let n = u32::from(v4).checked_add(step).ok_or_else(beyond)?;
                    std::net::Ipv4Addr::from(n).into()
                }
                std::net::IpAddr::V6(v6) => {
                    let n = u128::from(v6).checked_add(step.into()).ok_or_else(beyond)?;
                    std::net::Ipv6Addr::from(n).into()
                }
            });
        }
    }
    Ok(addr)
}

/// True for an RMCP+ RAKP message 2 or 4 (payload types 0x13, 0x15).
fn is_rakp_2_or_4(d: &[u8]) -> bool {
    d.len() > 5 && d[4] == 0x06 && matches!(d[5] & 0x3F, 0x13 | 0x15)
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn serve(
    socket: UdpSocket,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
    let mut rng = rand::rngs::SmallRng::from_entropy();
    loop {
        // Also woken when the next session is due to expire, so that idle
        // and half-open sessions free their slots (and a lockout counts an
        // unanswered RAKP 2) without waiting for the next datagram; the
        // same timer re-sends unacknowledged SOL output.
        let expiry = lock(&shared).endpoint.poll_timeout();
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors from earlier sends surface here; keep serving.
                Err(_) => continue,
            },
            () = wake_at(expiry) => {
                let out = {
                    let mut g = lock(&shared);
                    g.endpoint.handle_timeout(Instant::now());
                    pump_sol(&mut g, Instant::now(), &mut rng)
                };
                send_sol(&socket, out).await;
                continue;
            }
            () = wake.notified() => {
                let out = pump_sol(&mut lock(&shared), Instant::now(), &mut rng);
                send_sol(&socket, out).await;
                continue;
            }
            _ = stopped.changed() => return,
        };
        let (answer, faults, sol_out) = {
            let mut g = lock(&shared);
            let s = &mut *g;
            if s.faults.drop_requests > 0.0 && rng.gen_bool(s.faults.drop_requests.clamp(0.0, 1.0))
            {
                continue;
            }
            if is_sol(&buf[..n]) && (s.faults.sol_silent || chance(&mut rng, s.faults.drop_sol)) {
                continue;
            }
            let holder = s.endpoint.sol_owner();
            let mut answer = s
                .endpoint
                .handle_datagram(Instant::now(), &buf[..n], &mut s.model);
            if s.model.take_reboot_request() {
                s.endpoint.forget_sessions();
            }
            if s.endpoint.sol_owner().is_some_and(|o| Some(o) != holder) {
                s.sol_peer = Some(from);
            }
            if let Some(out) = answer.as_mut().filter(|o| is_rakp_2_or_4(&o.bytes)) {
                if s.faults.corrupt_rakp_auth > 0 {
                    s.faults.corrupt_rakp_auth -= 1;
                    if let Some(last) = out.bytes.last_mut() {
                        *last ^= 0x01;
                    }
                }
            }
            let sol_out = pump_sol(s, Instant::now(), &mut rng);
            (answer, s.faults.clone(), sol_out)
        };
        if let Some(out) = answer {
            answer_datagram(&socket, out, from, &faults, &mut rng).await;
        }
        send_sol(&socket, sol_out).await;
    }
}

/// Sends one answer, as the faults allow.
async fn answer_datagram(
    socket: &UdpSocket,
    mut out: crate::ipmi::session::bmc::Outgoing,
    to: SocketAddr,
    faults: &Faults,
    rng: &mut rand::rngs::SmallRng,
) {
    if out.login_error && faults.silent_login_errors {
        return;
    }
    if chance(rng, faults.drop_replies) {
        return;
    }
    if chance(rng, faults.corrupt_replies) && out.bytes.len() > 4 {
        let i = rng.gen_range(4..out.bytes.len());
        out.bytes[i] ^= 1 << rng.gen_range(0..8);
    }
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    let _ = socket.send_to(&out.bytes, to).await;
}

/// Moves bytes between the SOL payload and the host, and collects the
/// SOL datagrams to send (after the SOL faults) with their destination.
fn pump_sol(s: &mut Shared, now: Instant, rng: &mut rand::rngs::SmallRng) -> SolOut {
    while let Some(activity) = s.endpoint.poll_sol_activity() {
        match activity {
            SolActivity::Activated { .. } => s.host.attach(),
            SolActivity::Break => s.host.serial_break(),
            SolActivity::Deactivated => {}
        }
    }
    let keys = s.endpoint.sol_read();
    if !keys.is_empty() {
        s.host.input(&keys);
    }
    // Bounded by the payload's send queue: a flood is made only as fast
    // as the console takes it.
    while s.host.has_output() {
        let room = s.endpoint.sol_room();
        if room == 0 {
            break;
        }
        let chunk = s.host.read_output(room);
        if chunk.is_empty() {
            break;
        }
        s.endpoint.sol_write(now, &chunk);
    }
    let mut datagrams = Vec::new();
    while let Some(out) = s.endpoint.poll_sol_transmit() {
        if !s.faults.sol_silent && !chance(rng, s.faults.drop_sol) {
            datagrams.push(out.bytes);
        }
    }
    SolOut {
        to: s.sol_peer,
        datagrams,
    }
}

/// SOL datagrams for the console holding the payload.
struct SolOut {
    to: Option<SocketAddr>,
    datagrams: Vec<Vec<u8>>,
}

async fn send_sol(socket: &UdpSocket, out: SolOut) {
    let Some(to) = out.to else { return };
    for d in out.datagrams {
        let _ = socket.send_to(&d, to).await;
    }
}

/// True for an RMCP+ packet of payload type 1 (SOL).
fn is_sol(d: &[u8]) -> bool {
    d.len() > 5 && d[4] == 0x06 && d[5] & 0x3F == 0x01
}

fn chance(rng: &mut rand::rngs::SmallRng, p: f64) -> bool {
    p > 0.0 && rng.gen_bool(p.clamp(0.0, 1.0))
}
