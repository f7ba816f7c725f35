//! `ipmigw scan`: the security posture of BMCs (see `crate::scan`), as a
//! table, JSON or SARIF; exit 5 when a finding reaches `--fail-on`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::out::{out, outln};
use super::CliError;
use crate::audit::fs::RealFs;
use crate::audit::AuditWriter;
use crate::gateway::settings::{bmc_specs, GatewayConfig};
use crate::scan::{self, ProbeSettings, ScanSettings, Severity, Target, WELL_KNOWN_NAMES};

/// Exit code when a finding reaches `--fail-on`.
pub const EXIT_FINDINGS: u8 = 5;
/// Most BMCs one `--cidr` expands to.
const MAX_CIDR_HOSTS: usize = 65_536;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// BMCs: HOST[:PORT] (port 623 by default), or names of BMCs in --config.
    targets: Vec<String>,
    /// Every BMC in --config.
    #[arg(long, requires = "config")]
    all: bool,
    /// Every address of this network (e.g. 10.1.2.0/24), on --port.
    #[arg(long, value_name = "NET")]
    cidr: Option<ipnet::IpNet>,
    /// Port for --cidr.
    #[arg(long, default_value_t = 623)]
    port: u16,
    /// The gateway's config: BMC names and credentials (authenticated
    /// checks), and the audit trail every probe is recorded in.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// User for the authenticated checks of address targets.
    #[arg(long, short = 'U', requires = "password_file")]
    user: Option<String>,
    /// File holding that user's password (mode 0600 or stricter).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Prove cipher suite 0: log in with no valid password and run Get
    /// Device ID (critical only when the command is answered).
    #[arg(long)]
    prove: bool,
    /// Try vendor default passwords (root/calvin, ADMIN/ADMIN,
    /// USERID/PASSW0RD, admin/admin), once each, paced.
    #[arg(long)]
    default_creds: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// Also write SARIF 2.1.0 to FILE.
    #[arg(long, value_name = "FILE")]
    sarif: Option<PathBuf>,
    /// Exit 5 when a finding is at least this severe.
    #[arg(long, value_enum, default_value_t = Severity::High)]
    fail_on: Severity,
    /// Per-try timeout, milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=10_000))]
    timeout_ms: u64,
    /// Re-sends after a silent try.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=5))]
    retries: u32,
    /// BMCs scanned at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// Time budget of the whole scan, seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    budget_secs: u64,
}

pub async fn run(a: ScanArgs) -> Result<(), CliError> {
    let (targets, audit) = targets(&a)?;
    if targets.is_empty() {
        return Err(CliError::usage("scan: name a TARGET, --all or --cidr"));
    }
    want_sockets(targets.len().min(a.concurrency as usize))?;
    let settings = ScanSettings {
        probe: ProbeSettings {
            timeout: Duration::from_millis(a.timeout_ms),
            retries: a.retries,
            prove: a.prove,
            rakp_names: WELL_KNOWN_NAMES.iter().map(|s| s.to_string()).collect(),
        },
        concurrency: a.concurrency as usize,
        budget: Duration::from_secs(a.budget_secs),
        default_creds: a.default_creds,
        audit: audit.clone(),
    };
    let report = scan::scan(targets, settings).await;
    if let Some(w) = audit {
        let _ = w.shutdown("scan done").await;
    }
    if let Some(path) = &a.sarif {
        let text = serde_json::to_string_pretty(&scan::report::sarif(&report)).unwrap_or_default();
        std::fs::write(path, text + "\n")
            .map_err(|e| CliError::usage(format!("--sarif {}: {e}", path.display())))?;
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        out!("{}", scan::report::table(&report));
    }
    match report.worst() {
        Some(s) if s >= a.fail_on => Err(CliError {
            code: EXIT_FINDINGS,
            message: format!(
                "scan: findings at or above {} (worst: {})",
                a.fail_on.name(),
                s.name()
            ),
        }),
        _ => Ok(()),
    }
}

/// One socket per BMC in flight.
fn want_sockets(n: usize) -> Result<(), CliError> {
    let want = n as u64 + 64;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => Err(CliError::usage(format!(
            "--concurrency: needs {want} open files, the limit allows {got}"
        ))),
        _ => Ok(()),
    }
}

type Targets = (Vec<Target>, Option<Arc<AuditWriter>>);

fn targets(a: &ScanArgs) -> Result<Targets, CliError> {
    let login = match (&a.user, &a.password_file) {
        (Some(u), Some(p)) => {
            let pw = crate::bmc::credentials::read_password_file(p)
                .map_err(|e| CliError::usage(format!("--password-file: {e}")))?;
            Some((u.clone(), pw))
        }
        _ => None,
    };
    let (configured, audit) = match &a.config {
        Some(p) => configured(p)?,
        None => (Vec::new(), None),
    };
    let mut out = Vec::new();
    if a.all {
        out.extend(configured.iter().cloned());
    }
    for t in &a.targets {
        if let Some(c) = configured.iter().find(|c| &c.name == t) {
            out.push(c.clone());
            continue;
        }
        let addr = parse_target(t).ok_or_else(|| {
            CliError::usage(format!("{t:?}: not HOST[:PORT] nor a BMC of --config"))
        })?;
        out.push(Target {
            name: t.clone(),
            addr,
            login: login.clone(),
        });
    }
    if let Some(net) = a.cidr {
        let hosts: Vec<IpAddr> = match net.prefix_len() == net.max_prefix_len() {
            true => vec![net.addr()],
            false => net.hosts().take(MAX_CIDR_HOSTS + 1).collect(),
        };
        if hosts.len() > MAX_CIDR_HOSTS {
            return Err(CliError::usage(format!(
                "--cidr {net}: over {MAX_CIDR_HOSTS} addresses"
            )));
        }
        out.extend(hosts.into_iter().map(|ip| {
            let addr = SocketAddr::new(ip, a.port);
            Target {
                name: addr.to_string(),
                addr,
                login: login.clone(),
            }
        }));
    }
    // A target named twice is scanned once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| seen.insert(t.addr));
    Ok((out, audit))
}

fn parse_target(t: &str) -> Option<SocketAddr> {
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Ok(ip) = t.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 623));
    }
    let with_port = if t.contains(':') {
        t.to_string()
    } else {
        format!("{t}:623")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .ok()?
        .next()
}

/// The config's BMCs (with their credentials) and its audit trail.
fn configured(path: &std::path::Path) -> Result<Targets, CliError> {
    let cfg = GatewayConfig::load(path).map_err(|e| CliError::usage(e.to_string()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut diags = Vec::new();
    let specs = bmc_specs(
        &cfg.source,
        dir,
        &cfg.file.bmc_defaults,
        &cfg.file.bmc,
        &mut diags,
    );
    let writer = cfg
        .file
        .audit
        .as_ref()
        .and_then(|s| s.writer_config(&cfg.source, dir, &mut diags));
    if let Some(d) = diags.first() {
        return Err(CliError::usage(d.to_string()));
    }
    let audit = match writer {
        Some(w) => Some(Arc::new(AuditWriter::open(w, Arc::new(RealFs)).map_err(
            |e| {
                CliError::usage(format!(
                    "{e} (scans are recorded in the gateway's trail: is the gateway holding it?)"
                ))
            },
        )?)),
        None => None,
    };
    let targets = specs
        .into_iter()
        .map(|s| Target {
            name: s.name.clone(),
            addr: s.addr,
            login: Some((
                String::from_utf8_lossy(&s.username).into_owned(),
                s.password.clone(),
            )),
        })
        .collect();
    Ok((targets, audit))
}
