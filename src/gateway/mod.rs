//! The gateway (`ipmigw serve`): the mTLS front door, the HTTP API, the BMC
//! pool, and the audit trail composed into one server.
//!
//! Security invariants kept here: a client certificate is mandatory and
//! verified (chain, CRLs, clientAuth); every request is decided by policy
//! and durably audited before any byte goes to a BMC; BMC credentials stay
//! in the pool (never in logs, audit records or answers); a bad reload
//! keeps the old configuration; a revoked certificate's open connections
//! close at the next reload.

pub mod api;
pub mod changes;
pub mod console;
pub mod demo;
mod front;
mod job;
pub mod pool;
pub mod proxy;
pub mod refusals;
pub mod settings;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::DefaultClock;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::audit::fs::RealFs;
use crate::audit::{AuditWriter, Event, WriterConfig};
use crate::config::{ConfigError, Diag};
use crate::policy::rate::{Limiter, Rate};
use crate::policy::{Limits, Policy};
use pool::BmcPool;
use settings::GatewayConfig;
use settings::{BmcSpec, LimitsSection};
use tls::TlsSetup;

/// Settings that apply to the whole server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// Handshakes per source.
    pub handshake_rate: Rate,
    /// Refusals recorded one by one per identity, and per source.
    pub refusal_rates: (Rate, Rate),
    /// Balancers whose PROXY protocol v2 header is trusted.
    pub proxy_from: Vec<ipnet::IpNet>,
}

/// A loaded, validated configuration.
pub struct Loaded {
    policy: Policy,
    tls: TlsSetup,
    settings: Settings,
    specs: Vec<BmcSpec>,
    console: console::ConsoleSection,
    audit: WriterConfig,
    policy_sha256: String,
}

/// What a request sees of the current configuration.
pub struct Runtime {
    /// The policy.
    pub policy: Policy,
    /// Its rate limiters.
    pub limits: Limits<DefaultClock>,
    /// TLS.
    pub tls: TlsSetup,
    /// Server settings.
    pub settings: Settings,
}

/// State shared by every connection.
pub struct Shared {
    current: ArcSwap<Runtime>,
    /// BMC sessions.
    pub pool: Arc<BmcPool>,
    /// The audit trail.
    pub audit: AuditWriter,
    generation: watch::Sender<u64>,
    next_id: AtomicU64,
    id_prefix: String,
    /// Handshakes per source (rebuilt when a reload changes the rate).
    handshakes: ArcSwap<Limiter<IpAddr>>,
    /// Refused requests and connections: recorded one by one up to a rate,
    /// counted past it (rebuilt when a reload changes a rate).
    refusals: ArcSwap<refusals::RefusalGate>,
    /// Allowed requests on their way to the BMC and the trail.
    pub jobs: Arc<Jobs>,
    /// The consoles the gateway holds, one per BMC.
    pub consoles: Arc<console::Consoles>,
    conns: front::ConnCounts,
    config_path: PathBuf,
    /// The gateway's Prometheus metrics.
    pub metrics: crate::metrics::GatewayMetrics,
}

/// Allowed requests in progress, each a task of its own; shutdown waits for
/// them (up to the drain deadline) so that each gets its result record.
#[derive(Default)]
pub struct Jobs {
    running: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Jobs {
    /// Runs `job` as a task, counted until it ends.
    pub fn spawn(self: &Arc<Self>, job: impl std::future::Future<Output = ()> + Send + 'static) {
        self.running.fetch_add(1, Relaxed);
        let jobs = self.clone();
        tokio::spawn(async move {
            job.await;
            if jobs.running.fetch_sub(1, Relaxed) == 1 {
                jobs.idle.notify_waiters();
            }
        });
    }

    /// Waits until no job runs, or `deadline`; true when none runs.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            if self.running.load(Relaxed) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.running.load(Relaxed) == 0;
            }
        }
    }
}

impl Shared {
    /// The configuration now.
    pub fn runtime(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.current.load()
    }

    /// The refusal gate now.
    pub fn refusals(&self) -> arc_swap::Guard<Arc<refusals::RefusalGate>> {
        self.refusals.load()
    }

    fn handshake_limiter(&self) -> arc_swap::Guard<Arc<Limiter<IpAddr>>> {
        self.handshakes.load()
    }

    /// After a reload: new rate limiters for handshakes and refusals where
    /// their rates changed (the counts of unchanged ones carry on).
    fn apply_rates(&self, old: &Settings, new: &Settings) {
        if old.handshake_rate != new.handshake_rate {
            self.handshakes.store(Arc::new(Limiter::new(
                new.handshake_rate,
                DefaultClock::default(),
            )));
        }
        if old.refusal_rates != new.refusal_rates {
            write_refusal_summaries(self);
            let (per_identity, per_source) = new.refusal_rates;
            self.refusals.store(Arc::new(refusals::RefusalGate::new(
                per_identity,
                per_source,
            )));
        }
    }

    fn request_id(&self) -> String {
        format!(
            "{}-{:08x}",
            self.id_prefix,
            self.next_id.fetch_add(1, Relaxed)
        )
    }
}

fn cfg_err(e: ConfigError) -> String {
    e.to_string()
}

/// Loads and checks everything a gateway needs from `path` (also what
/// `check-config` validates): config, policy, TLS files, CRLs, BMC secrets,
/// audit settings.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let cfg = GatewayConfig::load(path).map_err(cfg_err)?;
    let policy = crate::policy::load(&cfg.policy_paths, &cfg.bmc_names()).map_err(cfg_err)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let src = &cfg.source;
    let mut diags: Vec<Diag> = Vec::new();
    let listen = listen_address(&cfg, &mut diags);
    let tls = match &cfg.file.tls {
        Some(t) => tls::load(src, dir, t, &mut diags),
        None => {
            diags.push(src.diag(0, "missing [tls] cert, key, client_ca"));
            None
        }
    };
    let audit = match &cfg.file.audit {
        Some(a) => a.writer_config(src, dir, &mut diags),
        None => {
            diags.push(src.diag(
                0,
                "missing [audit] path, key_file: the gateway does not run without an audit trail",
            ));
            None
        }
    };
    let proxy_from = proxy_sources(&cfg, &mut diags);
    let limits = cfg.file.limits.clone();
    let mut rate = |key: &str, v: &str| {
        Rate::parse(v)
            .map_err(|e| diags.push(src.diag(0, format!("[limits] {key}: {e}"))))
            .ok()
    };
    let handshake_rate = rate("handshake_rate", &limits.handshake_rate);
    let refusal_rate = rate("refusal_rate", &limits.refusal_rate);
    let refusal_rate_per_source = rate("refusal_rate_per_source", &limits.refusal_rate_per_source);
    if let Some(t) = &tls {
        unreachable_identities(&policy, &t.identity, src, &mut diags);
    }
    let specs = settings::bmc_specs(src, dir, &cfg.file.bmc_defaults, &cfg.file.bmc, &mut diags);
    if !diags.is_empty() {
        return Err(ConfigError(diags).to_string());
    }
    let mut h = Sha256::new();
    for p in &cfg.policy_paths {
        h.update(std::fs::read(p).unwrap_or_default());
    }
    Ok(Loaded {
        console: cfg.file.console.clone(),
        policy,
        tls: tls.expect("no diagnostics"),
        settings: Settings {
            listen: listen.expect("no diagnostics"),
            limits,
            handshake_rate: handshake_rate.expect("no diagnostics"),
            refusal_rates: (
                refusal_rate.expect("no diagnostics"),
                refusal_rate_per_source.expect("no diagnostics"),
            ),
            proxy_from,
        },
        specs,
        audit: audit.expect("no diagnostics"),
        policy_sha256: hex::encode(h.finalize()),
    })
}

/// `[listen] address`.
fn listen_address(cfg: &GatewayConfig, diags: &mut Vec<Diag>) -> Option<SocketAddr> {
    let src = &cfg.source;
    let Some(l) = &cfg.file.listen else {
        diags.push(src.diag(0, "missing [listen] address = \"IP:PORT\""));
        return None;
    };
    let text = l.address.get_ref();
    let parsed = text.parse::<SocketAddr>().ok();
    if parsed.is_none() {
        let what = format!("[listen] address {text:?}: expected IP:PORT");
        diags.push(src.at(&l.address, what));
    }
    parsed
}

/// `[listen] proxy_protocol_from`: networks whose PROXY headers are
/// believed.
fn proxy_sources(cfg: &GatewayConfig, diags: &mut Vec<Diag>) -> Vec<ipnet::IpNet> {
    let src = &cfg.source;
    let mut out = Vec::new();
    for c in cfg.file.listen.iter().flat_map(|l| &l.proxy_protocol_from) {
        let text = c.get_ref();
        match text.parse::<ipnet::IpNet>() {
            Ok(n) if n.trunc() == n => out.push(n),
            Ok(n) => diags.push(src.at(
                c,
                format!(
                    "proxy_protocol_from: {text:?} has host bits set (did you mean {}?)",
                    n.trunc()
                ),
            )),
            Err(_) => diags.push(src.at(c, format!("proxy_protocol_from: {text:?} is not a CIDR"))),
        }
    }
    out
}

/// A policy user whose identity is of a kind `[tls] identity` does not list
/// could never be matched: say so instead of refusing them at run time.
fn unreachable_identities(
    policy: &Policy,
    order: &[crate::policy::IdentityKind],
    src: &crate::config::Source,
    diags: &mut Vec<Diag>,
) {
    for user in policy.users() {
        let Some(id) = policy.identity_of(user) else {
            continue;
        };
        if !order.contains(&id.kind()) {
            let listed: Vec<&str> = order.iter().map(|k| k.name()).collect();
            diags.push(src.diag(
                0,
                format!(
                    "policy user {user:?} has identity {id}, but [tls] identity = {listed:?} does not list {:?}: no certificate could ever name this user (add {:?} to [tls] identity, or give the user an identity of a listed kind)",
                    id.kind().name(),
                    id.kind().name()
                ),
            ));
        }
    }
}

/// A running gateway.
pub struct GatewayHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Gives every request the previous run allowed and left without a result
/// (it crashed) a `result` record saying so: whether it reached its BMC is
/// unknown.
fn record_interrupted(audit: &AuditWriter, trail: &Path) {
    let ids = crate::audit::unfinished::unfinished_requests(trail);
    if !ids.is_empty() {
        tracing::warn!(count = ids.len(), "the previous run ended with allowed requests unrecorded; recording them as interrupted");
    }
    for id in ids {
        let rec = crate::audit::ResultRecord {
            request_id: id,
            completion_code: None,
            response_len: 0,
            latency_us: 0,
            error: Some("interrupted".into()),
        };
        if let Err(e) = audit.append_queued(Event::Result(rec)) {
            tracing::error!(error = %e, "interrupted result not recorded");
        }
    }
}

/// Loads `config`, opens the audit trail and starts serving.
pub async fn start(config: &Path) -> Result<GatewayHandle, String> {
    let loaded = load(config)?;
    let audit =
        AuditWriter::open(loaded.audit.clone(), Arc::new(RealFs)).map_err(|e| e.to_string())?;
    record_interrupted(&audit, &loaded.audit.path);
    let listener = TcpListener::bind(loaded.settings.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", loaded.settings.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sessions = crate::audit::fs::sibling(&loaded.audit.path, "sessions.json");
    let pool = Arc::new(BmcPool::new(
        loaded.specs.clone(),
        loaded.settings.limits.bmc_queue,
        audit.clone(),
        Some(sessions),
    ));
    pool.close_stale_sessions();
    let mut prefix = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix);
    let (per_identity, per_source) = loaded.settings.refusal_rates;
    let shared = Arc::new(Shared {
        handshakes: ArcSwap::from_pointee(Limiter::new(
            loaded.settings.handshake_rate,
            DefaultClock::default(),
        )),
        refusals: ArcSwap::from_pointee(refusals::RefusalGate::new(per_identity, per_source)),
        jobs: Arc::default(),
        consoles: Arc::new(console::Consoles::new(
            &loaded.specs,
            &loaded.console,
            crate::audit::fs::sibling(&loaded.audit.path, "consoles"),
            audit.clone(),
        )),
        conns: front::ConnCounts::default(),
        current: ArcSwap::from_pointee(runtime(loaded, None)),
        pool,
        audit,
        generation: watch::channel(0).0,
        next_id: AtomicU64::new(1),
        id_prefix: hex::encode(prefix),
        config_path: config.to_path_buf(),
        metrics: crate::metrics::GatewayMetrics::new(),
    });
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(flush_refusal_summaries(shared.clone(), stop_rx.clone()));
    let task = tokio::spawn(front::accept_loop(listener, shared.clone(), stop_rx));
    tracing::info!(%addr, "gateway listening");
    Ok(GatewayHandle {
        addr,
        shared,
        stop,
        task,
    })
}

/// The runtime for a loaded configuration; rate-limit state carries over
/// from `previous` for users, roles and BMCs that still exist.
fn runtime(l: Loaded, previous: Option<&Runtime>) -> Runtime {
    let clock = DefaultClock::default();
    Runtime {
        limits: match previous {
            Some(p) => Limits::reloaded(&l.policy, clock, &p.policy, &p.limits),
            None => Limits::new(&l.policy, clock),
        },
        policy: l.policy,
        tls: l.tls,
        settings: l.settings,
    }
}

impl GatewayHandle {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (tests read the audit writer's state).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// SIGHUP: reloads config, policy, certificates and CRLs; on any
    /// problem keeps the old configuration and says why. Also rotates the
    /// audit trail when asked.
    pub async fn reload(&self) -> Result<(), String> {
        let path = self.shared.config_path.clone();
        match tokio::task::spawn_blocking(move || load(&path))
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(l) => {
                let hash = l.policy_sha256.clone();
                self.shared
                    .pool
                    .reconfigure(l.specs.clone(), l.settings.limits.bmc_queue);
                let before = self.shared.runtime();
                self.shared.apply_rates(&before.settings, &l.settings);
                let next = runtime(l, Some(&before));
                drop(before);
                self.shared.current.store(Arc::new(next));
                self.shared.generation.send_modify(|g| *g += 1);
                let _ = self
                    .shared
                    .audit
                    .append(Event::ConfigReload {
                        policy_sha256: hash,
                        ok: true,
                        error: None,
                    })
                    .await;
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the previous configuration stays in effect");
                let _ = self
                    .shared
                    .audit
                    .append(Event::ConfigReload {
                        policy_sha256: String::new(),
                        ok: false,
                        error: Some(e.clone()),
                    })
                    .await;
                Err(e)
            }
        }
    }

    /// SIGTERM: stops accepting; requests queued for a BMC but not sent are
    /// cancelled (their result records say so); exchanges already with a
    /// BMC may finish until `drain_ms`; then sessions are closed, and
    /// nothing reaches a BMC after the deadline; `shutdown` is written last.
    pub async fn shutdown(self, reason: &str) {
        let drain = Duration::from_millis(self.shared.runtime().settings.limits.drain_ms);
        let deadline = tokio::time::Instant::now() + drain;
        let _ = self.stop.send(true);
        self.shared.consoles.shutdown("gateway shutdown");
        self.shared.pool.begin_drain();
        // Leave part of the budget to close sessions politely.
        let close_budget = (drain / 4).min(Duration::from_secs(2));
        if !self.shared.jobs.wait_idle(deadline - close_budget).await {
            tracing::warn!(
                "requests still in flight at the drain deadline; their BMCs are closed now"
            );
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.shared
            .pool
            .close_all(left.max(Duration::from_millis(100)))
            .await;
        // Jobs whose BMC task was stopped record their result now.
        self.shared
            .jobs
            .wait_idle(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
        write_refusal_summaries(&self.shared);
        if let Err(e) = self.shared.audit.shutdown(reason).await {
            tracing::error!(error = %e, "shutdown record not written");
        }
    }
}

/// Writes what the refusal gate counted, every [`refusals::SUMMARY_INTERVAL`].
async fn flush_refusal_summaries(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(refusals::SUMMARY_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => write_refusal_summaries(&shared),
            _ = stop.changed() => return,
        }
    }
}

fn write_refusal_summaries(shared: &Shared) {
    for e in shared.refusals().drain() {
        if let Err(err) = shared.audit.append_queued(e) {
            tracing::error!(error = %err, "denial_summary record not written");
        }
    }
}
