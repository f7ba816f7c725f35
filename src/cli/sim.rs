//! `ipmigw sim`: serve simulated BMCs until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::out::outln;
use super::CliError;
use crate::ipmi::crypto::CipherSuite;
use crate::sim::{self, Faults, SimConfig, SimUser, Simulator};

/// Most BMCs one simulator serves.
const MAX_COUNT: usize = 20_000;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// First address; BMC i listens on PORT + i - 1 (port 0: each BMC on a
    /// free port the system picks), or with --spread address on the i-th
    /// address from this one, all on PORT.
    #[arg(long, default_value = "127.0.0.1:9623")]
    listen: SocketAddr,
    /// How BMCs after the first are placed: on consecutive ports or on
    /// consecutive addresses (one port, e.g. 623 for nmap's IPMI scripts).
    #[arg(long, value_enum, default_value_t = SpreadArg::Port)]
    spread: SpreadArg,
    /// Make the BMCs weak on purpose, for scanners: any of cipher0,
    /// anonymous, ipmi15-none, ipmi15-md5, default-creds, no-lockout
    /// (comma-separated). Without no-lockout, 5 wrong logins in a row
    /// start a back-off.
    #[arg(long, value_delimiter = ',', value_name = "WEAKNESS,...")]
    insecure: Vec<String>,
    /// Number of simulated BMCs.
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[arg(long, value_name = "FILE", help = users_help())]
    users: Option<PathBuf>,
    /// Cipher suites to accept.
    #[arg(long, value_delimiter = ',', default_value = "17,3")]
    cipher_suites: Vec<u8>,
    /// Sessions per BMC.
    #[arg(long, default_value_t = 4)]
    max_sessions: usize,
    /// Idle session timeout, seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Fraction of requests to ignore (0-1).
    #[arg(long, default_value_t = 0.0)]
    drop_requests: f64,
    /// Fraction of replies to drop (0-1).
    #[arg(long, default_value_t = 0.0)]
    drop_replies: f64,
    /// Fraction of replies to corrupt (0-1).
    #[arg(long, default_value_t = 0.0)]
    corrupt_replies: f64,
    /// Delay before each reply, milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Never answer refused logins (some BMCs stay silent).
    #[arg(long)]
    silent_login_errors: bool,
    /// Fraction of SOL packets to lose, each way (0-1).
    #[arg(long, default_value_t = 0.0)]
    drop_sol: f64,
    /// SOL activates but carries nothing (a quirk of some BMCs).
    #[arg(long)]
    sol_silent: bool,
    /// Forget every session this often, seconds (a BMC reboot); 0 = never.
    #[arg(long, default_value_t = 0)]
    forget_sessions_every: u64,
}

/// `--spread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SpreadArg {
    Port,
    Address,
}

pub async fn run(a: SimArgs) -> Result<(), CliError> {
    check(&a)?;
    let cfg = config(&a)?;
    let users = cfg.users.clone();
    let sim = Simulator::start(cfg)
        .await
        .map_err(|e| CliError::usage(e.to_string()))?;
    announce(&sim, &users);
    let reboots = reboot_every(&sim, a.forget_sessions_every);
    super::signals::Signals::new(false).next().await;
    reboots.abort();
    sim.stop().await;
    super::say("ipmigw sim: stopped");
    Ok(())
}

/// Refuses arguments out of range before any socket is bound.
fn check(a: &SimArgs) -> Result<(), CliError> {
    if a.count == 0 || a.count > MAX_COUNT {
        return Err(CliError::usage(format!(
            "--count {}: expected 1 to {MAX_COUNT}",
            a.count
        )));
    }
    for (name, v) in [
        ("--drop-requests", a.drop_requests),
        ("--drop-replies", a.drop_replies),
        ("--drop-sol", a.drop_sol),
        ("--corrupt-replies", a.corrupt_replies),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(CliError::usage(format!(
                "{name} {v}: expected a fraction from 0 to 1"
            )));
        }
    }
    // One socket per BMC: make room when the soft descriptor limit is low.
    let want = a.count as u64 + 64;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => Err(CliError::usage(format!(
            "--count {}: needs {want} open files, the hard limit allows {got} (raise it with ulimit -Hn)",
            a.count
        ))),
        _ => Ok(()),
    }
}

fn config(a: &SimArgs) -> Result<SimConfig, CliError> {
    let mut cfg = SimConfig::new(a.listen, a.count);
    if let Some(p) = &a.users {
        cfg.users = sim::load_users(p).map_err(CliError::usage)?;
    }
    cfg.spread = match a.spread {
        SpreadArg::Port => sim::Spread::Ports,
        SpreadArg::Address => sim::Spread::Addresses,
    };
    sim::apply_insecure(&mut cfg, &a.insecure).map_err(CliError::usage)?;
    cfg.suites = a
        .cipher_suites
        .iter()
        .map(|id| {
            CipherSuite::try_from(*id).map_err(|e| CliError::usage(format!("--cipher-suites: {e}")))
        })
        .collect::<Result<_, _>>()?;
    cfg.max_sessions = a.max_sessions.max(1);
    cfg.idle_timeout = Duration::from_secs(a.idle_timeout_secs.max(1));
    cfg.faults = Faults {
        drop_requests: a.drop_requests,
        drop_replies: a.drop_replies,
        corrupt_replies: a.corrupt_replies,
        delay: Duration::from_millis(a.delay_ms),
        silent_login_errors: a.silent_login_errors,
        corrupt_rakp_auth: 0,
        drop_sol: a.drop_sol,
        sol_silent: a.sol_silent,
    };
    Ok(cfg)
}

/// Where the BMCs are, who may log in, and a command to try.
fn announce(sim: &Simulator, users: &[SimUser]) {
    let first = sim.bmc(0).addr();
    let last = sim.bmcs().last().map_or(first, |b| b.addr());
    outln!(
        "ipmigw sim: {} simulated BMC(s) on {} to {}",
        sim.bmcs().len(),
        first,
        last
    );
    for u in users {
        outln!(
            "  user {:<10} password {:<12} privilege {}",
            u.name,
            u.password,
            u.privilege
        );
    }
    if let Some(u) = users.first() {
        outln!(
            "try: ipmitool -I lanplus -H {} -p {} -U {} -P {} -C 17 chassis status",
            first.ip(),
            first.port(),
            u.name,
            u.password
        );
    }
}

/// `--forget-sessions-every`: every BMC forgets its sessions that often,
/// as a rebooting BMC does.
fn reboot_every(sim: &Simulator, secs: u64) -> tokio::task::JoinHandle<()> {
    let handles = sim.bmcs().to_vec();
    tokio::spawn(async move {
        if secs == 0 {
            return std::future::pending().await;
        }
        let mut every = tokio::time::interval(Duration::from_secs(secs));
        every.tick().await;
        loop {
            every.tick().await;
            handles.iter().for_each(|b| b.forget_sessions());
        }
    })
}

/// The `--users` help: the default users, named from the simulator's own
/// list so that the help cannot drift from it.
fn users_help() -> String {
    let users: Vec<String> = sim::default_users()
        .iter()
        .map(|u| format!("{}/{} ({})", u.name, u.password, u.privilege))
        .collect();
    format!(
        "TOML users file ([[user]] name, password, privilege); without it every BMC has the users {}",
        users.join(", ")
    )
}
