//! `ipmigw scan`: the security posture of BMCs, from what they answer.
//!
//! Per BMC: the unauthenticated probes ([`drive`]: auth caps, cipher
//! suites, suite 0, RAKP 2 exposure), optionally a suite-0 login proof
//! (`--prove`), the authenticated checks with given credentials
//! ([`auth`]) and the opt-in default-credential logins; then the findings
//! ([`findings`]) and the reports ([`report`]: table, JSON, SARIF 2.1.0).
//! Many BMCs are scanned at once, each on its own socket, under a
//! concurrency limit and an overall time budget.
//!
//! Never does: send or print a password hash, try a default password more
//! than once per BMC and run, or run a command that changes a BMC.

pub mod auth;
pub mod drive;
pub mod findings;
pub mod report;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::{AuditWriter, Event, ScanRecord};
use crate::bmc::{BmcClient, BmcConfig};
use crate::ipmi::session::console::ConsoleConfig;
use crate::ipmi::session::Privilege;
use crate::secret::SecretBytes;
pub use drive::{ProbeLog, ProbeSettings, WELL_KNOWN_NAMES};
pub use findings::{Finding, Observations, Severity};

/// Vendor defaults `--default-creds` tries, once each.
pub const DEFAULT_CREDS: [(&str, &str); 4] = [
    ("root", "calvin"),
    ("ADMIN", "ADMIN"),
    ("USERID", "PASSW0RD"),
    ("admin", "admin"),
];

/// Pause between two default-credential logins to one BMC: slow enough
/// that a lockout counter or an IDS sees a trickle, not a burst.
pub const DEFAULT_CREDS_PAUSE: Duration = Duration::from_millis(500);

/// One BMC to scan.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name (a configured BMC's) or the address as given.
    pub name: String,
    /// UDP address.
    pub addr: SocketAddr,
    /// Credentials for the authenticated checks.
    pub login: Option<(String, SecretBytes)>,
}

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Probe timing and options.
    pub probe: ProbeSettings,
    /// BMCs scanned at once.
    pub concurrency: usize,
    /// The whole scan's time budget; BMCs not done by then are reported
    /// as timed out.
    pub budget: Duration,
    /// Try [`DEFAULT_CREDS`].
    pub default_creds: bool,
    /// The audit trail every probe is recorded in.
    pub audit: Option<Arc<AuditWriter>>,
}

/// One BMC's result.
#[derive(Debug, Clone, Serialize)]
pub struct BmcResult {
    /// Name as given.
    pub target: String,
    /// Address.
    pub addr: String,
    /// `ok`, `unreachable` or `timed out`.
    pub status: String,
    /// Round-trip time of auth caps, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// What the probes saw.
    pub observations: Observations,
    /// Every probe (what the audit trail records).
    #[serde(skip)]
    pub probes: Vec<ProbeLog>,
}

/// A whole scan.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// Per BMC, in the order given.
    pub bmcs: Vec<BmcResult>,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

impl ScanReport {
    /// The most severe finding of the scan.
    pub fn worst(&self) -> Option<Severity> {
        self.bmcs
            .iter()
            .flat_map(|b| b.findings.iter().map(|f| f.severity))
            .max()
    }
}

/// Scans every target, at most `concurrency` at once, within the budget.
pub async fn scan(targets: Vec<Target>, settings: ScanSettings) -> ScanReport {
    let start = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
    let deadline = tokio::time::Instant::now() + settings.budget;
    let settings = Arc::new(settings);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().cloned().enumerate() {
        let (limit, sent, settings) = (limit.clone(), sent.clone(), settings.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let fallback = timed_out(&t);
            let r = tokio::time::timeout_at(deadline, scan_one(t, &settings, &sent)).await;
            (i, r.unwrap_or(fallback))
        });
    }
    let mut out: Vec<Option<BmcResult>> = vec![None; targets.len()];
    while let Some(r) = tasks.join_next().await {
        if let Ok((i, r)) = r {
            out[i] = Some(r);
        }
    }
    let bmcs = out
        .into_iter()
        .zip(&targets)
        .map(|(r, t)| r.unwrap_or_else(|| timed_out(t)))
        .collect();
    ScanReport {
        bmcs,
        packets_sent: sent.load(Relaxed),
        elapsed_ms: start.elapsed().as_millis() as u64,
    }
}

fn timed_out(t: &Target) -> BmcResult {
    BmcResult {
        target: t.name.clone(),
        addr: t.addr.to_string(),
        status: "timed out".into(),
        rtt_ms: None,
        findings: vec![],
        observations: Observations::default(),
        probes: vec![],
    }
}

/// The plan of one BMC's scan, as the audit trail records it before the
/// first packet.
fn plan(t: &Target, settings: &ScanSettings) -> String {
    let mut steps = vec!["auth caps", "cipher suites", "open session suite 0"];
    if settings.probe.prove {
        steps.push("suite 0 login proof");
    }
    if t.login.is_some() {
        steps.push("authenticated checks");
    }
    if settings.default_creds {
        steps.push("default credentials");
    }
    steps.push("RAKP 1 for well-known names");
    format!("plan: {}", steps.join(", "))
}

fn record(t: &Target, p: &ProbeLog) -> Event {
    Event::Scan(ScanRecord {
        bmc: t.name.clone(),
        address: t.addr.to_string(),
        probe: p.probe.clone(),
        sent: p.sent,
        outcome: p.outcome.clone(),
    })
}

/// Scans one BMC: its plan on the trail first (nothing is sent when that
/// fails), each probe after.
async fn scan_one(t: Target, settings: &ScanSettings, sent: &AtomicU64) -> BmcResult {
    let Some(audit) = &settings.audit else {
        return probe_one(t, settings, sent).await;
    };
    let plan = ProbeLog {
        probe: plan(&t, settings),
        sent: 0,
        outcome: "starting".into(),
    };
    if let Err(e) = audit.append(record(&t, &plan)).await {
        let mut r = timed_out(&t);
        r.status = format!("not scanned: {e}");
        return r;
    }
    let r = probe_one(t.clone(), settings, sent).await;
    for p in &r.probes {
        // Queued: the plan record already put the scan on the trail.
        let _ = audit.append_queued(record(&t, p));
    }
    r
}

async fn probe_one(t: Target, settings: &ScanSettings, sent: &AtomicU64) -> BmcResult {
    let mut r = timed_out(&t);
    let mut obs = Observations::default();
    let mut link = match drive::Link::open(t.addr, &settings.probe, sent).await {
        Ok(l) => l,
        Err(e) => {
            r.status = format!("socket error: {e}");
            return r;
        }
    };
    let Some(rtt) = drive::unauthenticated(&mut link, &mut obs).await else {
        r.probes = std::mem::take(&mut link.log);
        r.status = "unreachable".into();
        return r;
    };
    r.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
    if let Some((user, password)) = &t.login {
        let outcome = match login(t.addr, user, password.clone(), &settings.probe).await {
            Some(c) => {
                obs.authenticated = Some(auth::run(&c, user).await);
                c.close().await;
                "logged in; read user table, LAN parameter 26, device ID"
            }
            None => {
                obs.notes
                    .push(format!("login as {user} failed: no authenticated checks"));
                "login failed"
            }
        };
        link.log.push(ProbeLog {
            probe: format!("login as {user} (authenticated checks)"),
            sent: 0,
            outcome: outcome.into(),
        });
    }
    if settings.default_creds {
        default_creds(&t, settings, &mut obs, &mut link.log).await;
    }
    drive::rakp_names(&mut link, &mut obs).await;
    r.probes = std::mem::take(&mut link.log);
    r.status = "ok".into();
    r.findings = obs.findings();
    r.observations = obs;
    r
}

async fn login(
    addr: SocketAddr,
    user: &str,
    password: SecretBytes,
    p: &ProbeSettings,
) -> Option<BmcClient> {
    let console = ConsoleConfig::new(user.as_bytes(), password, Privilege::Administrator);
    let mut cfg = BmcConfig::new(addr, console);
    cfg.timeout = p.timeout;
    cfg.retries = p.retries;
    BmcClient::connect(cfg).await.ok()
}

/// Tries each vendor default once, paced, with no retries of a refused
/// login (a refusal is an answer).
async fn default_creds(
    t: &Target,
    settings: &ScanSettings,
    obs: &mut Observations,
    log: &mut Vec<ProbeLog>,
) {
    for (i, (user, password)) in DEFAULT_CREDS.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(DEFAULT_CREDS_PAUSE).await;
        }
        let pw = SecretBytes::from(password.as_bytes());
        let ok = match login(t.addr, user, pw, &settings.probe).await {
            Some(c) => {
                c.close().await;
                true
            }
            None => false,
        };
        log.push(ProbeLog {
            probe: format!("default credentials login as {user}"),
            sent: 0,
            outcome: if ok { "logged in" } else { "refused" }.into(),
        });
        if ok {
            // The name only: the password is public, but now also the BMC's.
            obs.default_creds.push(user.to_string());
        }
    }
}
