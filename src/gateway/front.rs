//! The front door: accepting TCP connections, the PROXY v2 header from a
//! trusted balancer, the TLS handshake and the certificate's user, the
//! limits on all of these, and serving HTTP on what gets through.
//!
//! Limits come in two stages, so that a client without a certificate can
//! never take what authenticated users need:
//! - *before authentication*, a connection holds a handshake slot: at most
//!   `max_handshakes_per_source` per source (an IPv6 /64 counts as one),
//!   and `max_handshakes` in all, where a new handshake evicts the oldest
//!   unfinished one (an honest handshake finishes in milliseconds; a silent
//!   one would otherwise hold its slot for `handshake_timeout_ms`);
//! - *after authentication*, it holds a connection slot: at most
//!   `max_connections` in all, `max_connections_per_source` per source and
//!   `max_connections_per_identity` per policy user, and it is closed after
//!   `idle_timeout_ms` without a request in flight.
//!
//! Every refusal is audited through the refusal gate. Refusals before the
//! handshake end with a TLS `access_denied` alert (the client can say "rate
//! limited" instead of "handshake eof"); refusals after it answer HTTP 429
//! `too_many_connections` to the first request and close.
//!
//! Never serves a request on a connection whose certificate names no
//! policy user, and never lets a refused connection hold a slot.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::api::{self, ConnInfo};
use super::settings::LimitsSection;
use super::{proxy, refusals, tls, Shared};
use crate::audit::{Event, TlsRecord};
use crate::ops::error::{ApiError, ErrorKind};

/// Connections and handshakes, counted.
#[derive(Default)]
pub struct ConnCounts {
    /// Authenticated connections.
    established: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    per_user: Mutex<HashMap<String, usize>>,
    handshakes: Handshakes,
}

/// Unfinished handshakes, oldest first, each with a way to stop it.
#[derive(Default)]
struct Handshakes {
    next: AtomicU64,
    order: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
}

/// A handshake in progress; the receiver fires when a newer one evicted it.
struct HandshakeSlot<'a> {
    id: u64,
    all: &'a Handshakes,
    _source: Slot<'a, IpAddr>,
    evicted: oneshot::Receiver<()>,
}

impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        let mut order = self.all.order.lock().expect("handshakes");
        if let Some(i) = order.iter().position(|(id, _)| *id == self.id) {
            order.remove(i);
        }
    }
}

impl Handshakes {
    /// A slot for a new handshake from `source`, evicting the oldest one
    /// when `max` are in progress; `None` when `source` has `per_source`.
    fn begin(&self, source: IpAddr, per_source: usize, max: usize) -> Option<HandshakeSlot<'_>> {
        let source_slot = Slot::take(&self.per_source, source, per_source)?;
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Relaxed);
        let mut order = self.order.lock().expect("handshakes");
        while order.len() >= max.max(1) {
            match order.pop_front() {
                Some((_, stop)) => {
                    let _ = stop.send(());
                }
                None => break,
            }
        }
        order.push_back((id, tx));
        Some(HandshakeSlot {
            id,
            all: self,
            _source: source_slot,
            evicted: rx,
        })
    }
}

/// A counted slot; freed when dropped.
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

/// The address a per-source limit counts: IPv6 addresses by /64 (one
/// host's or one customer's usual allocation), IPv4 addresses whole.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// Accepts connections until `stop`, then lets them drain for `drain_ms`.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    // An episode of running out of file descriptors, logged once: it
    // ends after accept has worked for a while without failing again.
    let mut starved: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (tcp, peer) = match r {
                    Ok(c) => c,
                    Err(e) if out_of_descriptors(&e) => {
                        // Retrying at once spins on the same error; existing
                        // connections keep being served meanwhile.
                        let now = tokio::time::Instant::now();
                        match &mut starved {
                            Some((_, last)) => *last = now,
                            None => {
                                tracing::error!(error = %e, "out of file descriptors: accepting connections slowly until some close (raise LimitNOFILE)");
                                starved = Some((now, now));
                            }
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                };
                if let Some((since, last)) = starved {
                    if last.elapsed() >= STARVED_EPISODE_END {
                        tracing::warn!(after_ms = since.elapsed().as_millis() as u64, "accepting connections normally again");
                        starved = None;
                    }
                }
                let (shared, stop) = (shared.clone(), stop.clone());
                conns.spawn(async move { connection(&shared, tcp, peer, stop).await });
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

/// One connection, from accept to close.
async fn connection(
    shared: &Arc<Shared>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let limits = shared.runtime().settings.limits.clone();
    let deadline = Duration::from_millis(limits.handshake_timeout_ms);
    if shared.conns.established.load(Relaxed) >= limits.max_connections {
        let source = crate::policy::normalize(peer.ip());
        return deny_before_tls(shared, tcp, source, "max_connections reached").await;
    }
    let Some(source) = client_source(shared, &mut tcp, peer, deadline).await else {
        return;
    };
    if shared
        .handshake_limiter()
        .check(&source_key(source))
        .is_err()
    {
        return deny_before_tls(shared, tcp, source, "handshake rate exceeded").await;
    }
    let Some(mut hs_slot) = shared.conns.handshakes.begin(
        source_key(source),
        limits.max_handshakes_per_source,
        limits.max_handshakes,
    ) else {
        return deny_before_tls(shared, tcp, source, "too many handshakes from this source").await;
    };
    let _ = tcp.set_nodelay(true);
    let verified = tokio::select! {
        v = handshake(shared, tcp, source, deadline) => v,
        _ = &mut hs_slot.evicted => {
            refuse(shared, source, None, "handshake evicted: too many unfinished handshakes");
            None
        }
    };
    drop(hs_slot);
    let Some(v) = verified else { return };
    let held = admit(shared, &v, source, &limits);
    match held {
        Ok(_slots) => {
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
        Err(why) => {
            refuse(shared, source, Some(v.cert.sha256.clone()), why.clone());
            serve_refusal(v.tls, &why).await;
        }
    }
}

/// The connection slots an authenticated connection holds while open.
struct Held<'a> {
    _source: Slot<'a, IpAddr>,
    _user: Slot<'a, String>,
    established: &'a AtomicUsize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.established.fetch_sub(1, Relaxed);
    }
}

/// Takes the slots an authenticated connection needs, or says which limit
/// it is over.
fn admit<'a>(
    shared: &'a Shared,
    v: &Verified,
    source: IpAddr,
    limits: &LimitsSection,
) -> Result<Held<'a>, String> {
    let c = &shared.conns;
    if c.established.fetch_add(1, Relaxed) >= limits.max_connections {
        c.established.fetch_sub(1, Relaxed);
        return Err("max_connections reached".into());
    }
    let established = &c.established;
    let release = || {
        established.fetch_sub(1, Relaxed);
    };
    let Some(s) = Slot::take(
        &c.per_source,
        source_key(source),
        limits.max_connections_per_source,
    ) else {
        release();
        return Err("too many connections from this source".into());
    };
    let Some(u) = Slot::take(
        &c.per_user,
        v.user.clone(),
        limits.max_connections_per_identity,
    ) else {
        release();
        return Err(format!("too many connections for user {}", v.user));
    };
    Ok(Held {
        _source: s,
        _user: u,
        established,
    })
}

/// The TLS `access_denied` alert (fatal), as a plaintext record: the answer
/// to a connection refused before its handshake.
const ACCESS_DENIED_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49];
/// Refusals before the handshake that may be waiting to send their alert;
/// past it, refused connections are just closed.
const MAX_PENDING_DENIALS: usize = 256;
static PENDING_DENIALS: AtomicUsize = AtomicUsize::new(0);

/// Refuses a connection before its handshake: audited (rate-bounded), then
/// a TLS alert the client can name, then close.
async fn deny_before_tls(shared: &Shared, mut tcp: TcpStream, source: IpAddr, why: &str) {
    tracing::debug!(%source, why, "connection refused before the handshake");
    refuse(shared, source, None, why);
    if PENDING_DENIALS.fetch_add(1, Relaxed) >= MAX_PENDING_DENIALS {
        PENDING_DENIALS.fetch_sub(1, Relaxed);
        return;
    }
    // Read the ClientHello first: closing with unread data would reset the
    // connection, and the client could lose the alert.
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(DENIAL_READ, tcp.read(&mut buf)).await;
    let _ = tokio::time::timeout(DENIAL_READ, async {
        let _ = tcp.write_all(&ACCESS_DENIED_ALERT).await;
        let _ = tcp.shutdown().await;
    })
    .await;
    PENDING_DENIALS.fetch_sub(1, Relaxed);
}

/// Answers the first request on a connection over its limits with 429 and
/// closes it (within a second).
async fn serve_refusal(tls: tokio_rustls::server::TlsStream<TcpStream>, why: &str) {
    let message = format!("{why}; close other connections or retry later");
    serve_error(tls, ErrorKind::TooManyConnections, &message).await;
}

/// Answers the first request on a refused connection with `kind`'s status
/// and code, so that the client can say why, and closes it (within a
/// second).
async fn serve_error(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    kind: ErrorKind,
    message: &str,
) {
    let body = format!("{}\n", ApiError::new(kind, message).body(None));
    let svc = service_fn(move |_req| {
        let body = body.clone();
        async move {
            let mut answer = hyper::Response::builder()
                .status(kind.status())
                .header("content-type", "application/json")
                .header("connection", "close");
            if kind.status() == 429 {
                answer = answer.header("retry-after", "1");
            }
            Ok::<_, std::convert::Infallible>(
                answer
                    .body(Full::new(Bytes::from(body)))
                    .expect("static headers are valid"),
            )
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    let _ = tokio::time::timeout(REFUSAL_SERVE, conn.as_mut()).await;
}

/// Closes a connection whose handshake failed after its alert went out,
/// without resetting it: with TLS 1.3 the client has sent its first
/// request by now, and closing with that unread would reset the
/// connection and discard the alert before the client reads it.
async fn close_after_alert(mut tcp: TcpStream) {
    if PENDING_DENIALS.fetch_add(1, Relaxed) >= MAX_PENDING_DENIALS {
        PENDING_DENIALS.fetch_sub(1, Relaxed);
        return;
    }
    let _ = tokio::time::timeout(DENIAL_READ, async {
        let _ = tcp.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut left = 64 * 1024;
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n.min(left),
            }
        }
    })
    .await;
    PENDING_DENIALS.fetch_sub(1, Relaxed);
}

pub(super) fn audit_tls(
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
/// one). The caller then ends the connection.
fn refuse(shared: &Shared, source: IpAddr, cert: Option<String>, why: impl Into<String>) {
    let why = why.into();
    let kind = refusals::RefusalKind {
        identity: cert.clone().unwrap_or_else(|| "-".into()),
        source,
        target: "-".into(),
        command: "-".into(),
        reason: format!("tls: {}", reason_code(&why)),
    };
    if shared.refusals().admit(&kind).is_ok() {
        audit_tls(shared, "refused", Some(why), cert, source, None);
    }
}

/// The stable head of a refusal reason (before any detail), for counting.
fn reason_code(why: &str) -> &str {
    why.split(':').next().unwrap_or(why)
}

/// Reads a PROXY v2 header from a trusted balancer.
async fn read_proxy_header(tcp: &mut TcpStream) -> Result<proxy::Proxied, String> {
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
    let tls = match tokio::time::timeout(deadline, acceptor.accept(tcp).into_fallible()).await {
        Ok(Ok(s)) => s,
        Ok(Err((e, tcp))) => {
            refuse(shared, source, None, format!("handshake: {e}"));
            close_after_alert(tcp).await;
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
            // Counted with the refusals before the handshake: a CA-signed
            // certificate of nobody's holds no connection slot.
            if PENDING_DENIALS.fetch_add(1, Relaxed) < MAX_PENDING_DENIALS {
                serve_error(tls, ErrorKind::NoUserForCertificate, why.message()).await;
            }
            PENDING_DENIALS.fetch_sub(1, Relaxed);
            None
        }
    }
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
        changes: Default::default(),
    });
    let svc = {
        let (shared, info) = (shared.clone(), info.clone());
        service_fn(move |req| {
            let (shared, info) = (shared.clone(), info.clone());
            async move { Ok::<_, std::convert::Infallible>(api::handle(shared, info, req).await) }
        })
    };
    let idle = Duration::from_millis(limits.idle_timeout_ms.max(1));
    let builder = http_builder(limits, idle);
    // Boxed so that it can be dropped (with the service's hold on `info`)
    // before an upgraded session is watched.
    let mut conn = Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(v.tls), svc));
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
                break;
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
                if refused_after_reload(shared, &v.leaf, &v.chain, &info) {
                    conn.as_mut().graceful_shutdown();
                    closing.get_or_insert(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
        }
    }
    // An upgraded connection (a console's WebSocket) lives on in its own
    // task: its certificate is still checked on reloads.
    drop(conn);
    watch_upgraded(shared, &v.leaf, &v.chain, &info, &mut generation, &mut stop).await;
}

/// Whether a reload revoked this connection's certificate or its user; if
/// so, marks the connection revoked (what its requests and console check)
/// and audits the closing.
fn refused_after_reload(
    shared: &Shared,
    leaf: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
    info: &ConnInfo,
) -> bool {
    let rt = shared.runtime();
    let still_valid = rt
        .tls
        .verifier
        .verify_client_cert(leaf, chain.get(1..).unwrap_or(&[]), UnixTime::now())
        .is_ok()
        && tls::map_user(&rt.policy, &rt.tls.identity, &info.cert).is_ok();
    drop(rt);
    if !still_valid {
        tracing::warn!(source = %info.source, "closing a connection whose certificate the new configuration refuses");
        info.revoked.store(true, Relaxed);
        audit_tls(
            shared,
            "closed",
            Some("certificate refused after reload".into()),
            Some(info.cert.sha256.clone()),
            info.source,
            None,
        );
    }
    !still_valid
}

/// After hyper hands a connection over (an upgrade), keeps checking its
/// certificate on every reload for as long as the upgraded session holds
/// the connection's info; its connection slots stay held until then.
async fn watch_upgraded(
    shared: &Shared,
    leaf: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
    info: &Arc<ConnInfo>,
    generation: &mut watch::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
) {
    let mut alive = tokio::time::interval(Duration::from_secs(1));
    while Arc::strong_count(info) > 1 && !*stop.borrow() {
        tokio::select! {
            Ok(()) = generation.changed() => {
                if refused_after_reload(shared, leaf, chain, info) {
                    return;
                }
            }
            _ = stop.changed() => return,
            _ = alive.tick() => {}
        }
    }
}

/// HTTP/1.1 and HTTP/2 with the configured header, stream and keep-alive
/// limits.
fn http_builder(
    limits: &LimitsSection,
    idle: Duration,
) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
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
    builder
}

/// True for EMFILE and ENFILE: the process or the system is out of file
/// descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// How long accept waits after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Without a descriptor shortage for this long, an episode is over.
const STARVED_EPISODE_END: Duration = Duration::from_secs(5);
/// How long a refusal before the handshake reads and writes.
const DENIAL_READ: Duration = Duration::from_millis(100);
/// How long a connection over its limits is served its 429.
const REFUSAL_SERVE: Duration = Duration::from_secs(1);
/// HTTP/2 pings on a quiet connection, to tell a dead peer from a slow one.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds on how often a connection checks whether it is idle.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(50);
const IDLE_CHECK_MAX: Duration = Duration::from_secs(5);
/// Time a connection closed for idling or revocation gets to finish.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);
