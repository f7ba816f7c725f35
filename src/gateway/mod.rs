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
pub mod demo;
pub mod pool;
pub mod proxy;
pub mod refusals;
pub mod settings;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::DefaultClock;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::audit::fs::RealFs;
use crate::audit::{AuditWriter, Event, TlsRecord, WriterConfig};
use crate::config::{ConfigError, Diag, GatewayConfig};
use crate::policy::rate::{Limiter, Rate};
use crate::policy::{Limits, Policy};
use api::ConnInfo;
use pool::BmcPool;
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
    pub pool: BmcPool,
    /// The audit trail.
    pub audit: AuditWriter,
    generation: watch::Sender<u64>,
    next_id: AtomicU64,
    id_prefix: String,
    handshakes: Limiter<IpAddr>,
    /// Refused requests and connections: recorded one by one up to a rate,
    /// counted past it.
    pub refusals: refusals::RefusalGate,
    conns: ConnCounts,
    config_path: PathBuf,
}

/// Open connections, in all, per source and per user.
#[derive(Default)]
struct ConnCounts {
    total: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    per_user: Mutex<HashMap<String, usize>>,
}

/// A counted connection slot; freed when dropped.
struct Slot<'a, K: std::hash::Hash + Eq + Clone> {
    map: &'a Mutex<HashMap<K, usize>>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> Slot<'_, K> {
    /// Takes a slot for `key` unless `max` are taken.
    fn take(map: &Mutex<HashMap<K, usize>>, key: K, max: usize) -> Option<Slot<'_, K>> {
        let mut m = map.lock().expect("connection counts");
        let n = m.entry(key.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                m.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Slot { map, key })
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for Slot<'_, K> {
    fn drop(&mut self) {
        let mut m = self.map.lock().expect("connection counts");
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl Shared {
    /// The configuration now.
    pub fn runtime(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.current.load()
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
    let policy = crate::policy::load(&cfg).map_err(cfg_err)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let src = &cfg.source;
    let mut diags: Vec<Diag> = Vec::new();
    let listen = match &cfg.file.listen {
        Some(l) => l
            .address
            .get_ref()
            .parse::<SocketAddr>()
            .map_err(|_| {
                diags.push(src.at(
                    &l.address,
                    format!(
                        "[listen] address {:?}: expected IP:PORT",
                        l.address.get_ref()
                    ),
                ))
            })
            .ok(),
        None => {
            diags.push(src.diag(0, "missing [listen] address = \"IP:PORT\""));
            None
        }
    };
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
    let mut proxy_from = Vec::new();
    for c in cfg.file.listen.iter().flat_map(|l| &l.proxy_protocol_from) {
        match c.get_ref().parse::<ipnet::IpNet>() {
            Ok(n) if n.trunc() == n => proxy_from.push(n),
            Ok(n) => diags.push(src.at(
                c,
                format!(
                    "proxy_protocol_from: {:?} has host bits set (did you mean {}?)",
                    c.get_ref(),
                    n.trunc()
                ),
            )),
            Err(_) => diags.push(src.at(
                c,
                format!("proxy_protocol_from: {:?} is not a CIDR", c.get_ref()),
            )),
        }
    }
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

/// Loads `config`, opens the audit trail and starts serving.
pub async fn start(config: &Path) -> Result<GatewayHandle, String> {
    let loaded = load(config)?;
    let audit =
        AuditWriter::open(loaded.audit.clone(), Arc::new(RealFs)).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(loaded.settings.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", loaded.settings.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let pool = BmcPool::new(
        loaded.specs.clone(),
        loaded.settings.limits.bmc_queue,
        audit.clone(),
    );
    let mut prefix = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix);
    let (per_identity, per_source) = loaded.settings.refusal_rates;
    let shared = Arc::new(Shared {
        handshakes: Limiter::new(loaded.settings.handshake_rate, DefaultClock::default()),
        refusals: refusals::RefusalGate::new(per_identity, per_source),
        conns: ConnCounts::default(),
        current: ArcSwap::from_pointee(runtime(loaded, None)),
        pool,
        audit,
        generation: watch::channel(0).0,
        next_id: AtomicU64::new(1),
        id_prefix: hex::encode(prefix),
        config_path: config.to_path_buf(),
    });
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(flush_refusal_summaries(shared.clone(), stop_rx.clone()));
    let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
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
                self.shared.pool.reconfigure(l.specs.clone());
                let next = runtime(l, Some(&self.shared.runtime()));
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

    /// SIGTERM: stops accepting, lets in-flight requests finish (up to
    /// `drain_ms`), closes BMC sessions, writes `shutdown`.
    pub async fn shutdown(self, reason: &str) {
        let _ = self.stop.send(true);
        let drain = Duration::from_millis(self.shared.runtime().settings.limits.drain_ms);
        let _ = tokio::time::timeout(drain + Duration::from_secs(1), self.task).await;
        self.shared.pool.close_all().await;
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
    for e in shared.refusals.drain() {
        if let Err(err) = shared.audit.append_queued(e) {
            tracing::error!(error = %err, "denial_summary record not written");
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((tcp, peer)) = r else { continue };
                // Read at each accept, so that a reload applies at once.
                let max = shared.runtime().settings.limits.max_connections;
                if shared.conns.total.fetch_add(1, Relaxed) >= max {
                    shared.conns.total.fetch_sub(1, Relaxed);
                    tracing::warn!(%peer, "connection refused: max_connections reached");
                    continue;
                }
                let (shared, stop) = (shared.clone(), stop.clone());
                conns.spawn(async move {
                    connection(&shared, tcp, peer, stop).await;
                    shared.conns.total.fetch_sub(1, Relaxed);
                });
            }
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drain = Duration::from_millis(shared.runtime().settings.limits.drain_ms);
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

fn audit_tls(
    shared: &Shared,
    outcome: &str,
    reason: Option<String>,
    cert: Option<String>,
    source: IpAddr,
    user: Option<String>,
) {
    let rec = TlsRecord {
        outcome: outcome.into(),
        reason,
        cert_sha256: cert,
        source: source.to_string(),
        user,
    };
    // Queued, not waited for: a connection's first request record is
    // durable only after this one (same queue, same order), and a refused
    // handshake has nothing to hold back.
    if let Err(e) = shared.audit.append_queued(Event::Tls(rec)) {
        tracing::error!(error = %e, "tls record not written");
    }
}

/// Audits a refused connection (through the refusal gate: past its rate,
/// refusals from one source or certificate are counted, not written one by
/// one). The caller then drops the connection.
fn refuse(shared: &Shared, source: IpAddr, cert: Option<String>, why: impl Into<String>) {
    let why = why.into();
    let kind = refusals::RefusalKind {
        identity: cert.clone().unwrap_or_else(|| "-".into()),
        source,
        target: "-".into(),
        command: "-".into(),
        reason: format!("tls: {}", reason_code(&why)),
    };
    if shared.refusals.admit(&kind).is_ok() {
        audit_tls(shared, "refused", Some(why), cert, source, None);
    }
}

/// The stable head of a refusal reason (before any detail), for counting.
fn reason_code(why: &str) -> &str {
    why.split(':').next().unwrap_or(why)
}

/// Reads a PROXY v2 header from a trusted balancer.
async fn read_proxy_header(tcp: &mut TcpStream) -> Result<proxy::Proxied, String> {
    use tokio::io::AsyncReadExt;
    let mut fixed = [0u8; proxy::FIXED];
    tcp.read_exact(&mut fixed)
        .await
        .map_err(|e| e.to_string())?;
    let len = proxy::remaining_len(&fixed).map_err(|e| e.to_string())?;
    let mut header = fixed.to_vec();
    header.resize(proxy::FIXED + len, 0);
    tcp.read_exact(&mut header[proxy::FIXED..])
        .await
        .map_err(|e| e.to_string())?;
    proxy::parse(&header).map_err(|e| e.to_string())
}

/// Who the client is, once the PROXY header (if any) is read.
async fn client_source(
    shared: &Shared,
    tcp: &mut TcpStream,
    peer: SocketAddr,
    deadline: Duration,
) -> Option<IpAddr> {
    let source = crate::policy::normalize(peer.ip());
    let trusted_balancer = shared
        .runtime()
        .settings
        .proxy_from
        .iter()
        .any(|n| n.contains(&source));
    if !trusted_balancer {
        return Some(source);
    }
    let header = tokio::time::timeout(deadline, read_proxy_header(tcp))
        .await
        .unwrap_or_else(|_| Err("timeout".into()));
    match header {
        Ok(proxy::Proxied::Client(c)) => Some(crate::policy::normalize(c.ip())),
        Ok(proxy::Proxied::Local) => Some(source),
        Err(e) => {
            refuse(
                shared,
                source,
                None,
                format!("PROXY header from {peer}: {e}"),
            );
            None
        }
    }
}

/// A TLS session whose client certificate maps to a policy user.
struct Verified {
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    leaf: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    cert: tls::PeerCert,
    user: String,
}

/// The TLS handshake and the certificate's user; refusals are audited and
/// end the connection (`None`).
async fn handshake(
    shared: &Shared,
    tcp: TcpStream,
    source: IpAddr,
    deadline: Duration,
) -> Option<Verified> {
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.runtime().tls.server.clone());
    let tls = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            refuse(shared, source, None, format!("handshake: {e}"));
            return None;
        }
        Err(_) => {
            refuse(shared, source, None, "handshake timeout");
            return None;
        }
    };
    let chain: Vec<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let Some(leaf) = chain.first().cloned() else {
        refuse(shared, source, None, "no client certificate");
        return None;
    };
    let cert = match tls::peer_cert(&leaf) {
        Ok(c) => c,
        Err(e) => {
            refuse(shared, source, None, e);
            return None;
        }
    };
    let rt = shared.runtime();
    match tls::map_user(&rt.policy, &rt.tls.identity, &cert) {
        Ok(user) => Some(Verified {
            tls,
            leaf,
            chain,
            cert,
            user,
        }),
        Err(why) => {
            // A certificate that names no user is refused outright: it may
            // not hold a connection slot, however valid its chain.
            refuse(shared, source, Some(cert.sha256.clone()), why.code());
            None
        }
    }
}

async fn connection(
    shared: &Arc<Shared>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let limits = shared.runtime().settings.limits.clone();
    let handshake_deadline = Duration::from_millis(limits.handshake_timeout_ms);
    let Some(source) = client_source(shared, &mut tcp, peer, handshake_deadline).await else {
        return;
    };
    let Some(_source_slot) = Slot::take(
        &shared.conns.per_source,
        source,
        limits.max_connections_per_source,
    ) else {
        refuse(
            shared,
            source,
            None,
            "too many connections from this source",
        );
        return;
    };
    if shared.handshakes.check(&source).is_err() {
        tracing::warn!(%source, "connection refused: handshake rate exceeded");
        return;
    }
    let _ = tcp.set_nodelay(true);
    let Some(v) = handshake(shared, tcp, source, handshake_deadline).await else {
        return;
    };
    let Some(_user_slot) = Slot::take(
        &shared.conns.per_user,
        v.user.clone(),
        limits.max_connections_per_identity,
    ) else {
        refuse(
            shared,
            source,
            Some(v.cert.sha256.clone()),
            format!("too many connections for user {}", v.user),
        );
        return;
    };
    audit_tls(
        shared,
        "accepted",
        None,
        Some(v.cert.sha256.clone()),
        source,
        Some(v.user.clone()),
    );
    serve(shared, v, source, &limits, stop).await;
}

/// Serves HTTP on a verified connection until the client leaves, it idles
/// past `idle_timeout_ms`, the gateway stops, or a reload refuses its
/// certificate.
async fn serve(
    shared: &Arc<Shared>,
    v: Verified,
    source: IpAddr,
    limits: &LimitsSection,
    mut stop: watch::Receiver<bool>,
) {
    let info = Arc::new(ConnInfo {
        source,
        cert: v.cert,
        revoked: AtomicBool::new(false),
        activity: api::Activity::default(),
    });
    let svc = {
        let (shared, info) = (shared.clone(), info.clone());
        service_fn(move |req| {
            let (shared, info) = (shared.clone(), info.clone());
            async move { Ok::<_, std::convert::Infallible>(api::handle(shared, info, req).await) }
        })
    };
    let idle = Duration::from_millis(limits.idle_timeout_ms.max(1));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes.max(8192))
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(KEEPALIVE_INTERVAL.min(idle)))
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(v.tls), svc);
    tokio::pin!(conn);
    let mut generation = shared.generation.subscribe();
    let mut idle_check = tokio::time::interval((idle / 4).clamp(IDLE_CHECK_MIN, IDLE_CHECK_MAX));
    // Once a graceful close has begun, the connection gets this long to end.
    let mut closing: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%source, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + Duration::from_millis(limits.drain_ms));
            }
            _ = idle_check.tick(), if closing.is_none() => {
                if info.activity.idle_for().is_some_and(|d| d >= idle) {
                    tracing::debug!(%source, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
            _ = tokio::time::sleep_until(closing.unwrap_or(far)), if closing.is_some() => return,
            Ok(()) = generation.changed() => {
                // A reload may have revoked this certificate or its user.
                let rt = shared.runtime();
                let still_valid = rt.tls.verifier.verify_client_cert(&v.leaf, &v.chain[1..], UnixTime::now()).is_ok()
                    && tls::map_user(&rt.policy, &rt.tls.identity, &info.cert).is_ok();
                if !still_valid {
                    tracing::warn!(%source, "closing a connection whose certificate the new configuration refuses");
                    info.revoked.store(true, Relaxed);
                    drop(rt);
                    audit_tls(shared, "closed", Some("certificate refused after reload".into()), Some(info.cert.sha256.clone()), source, None);
                    conn.as_mut().graceful_shutdown();
                    closing.get_or_insert(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
        }
    }
}

/// HTTP/2 pings on a quiet connection, to tell a dead peer from a slow one.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds on how often a connection checks whether it is idle.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(50);
const IDLE_CHECK_MAX: Duration = Duration::from_secs(5);
/// Time a connection closed for idling or revocation gets to finish.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);
