//! The HTTP API (design.md): routing, input checks, and the path of one
//! request: the certificate's user → visibility of the BMC → the operation
//! (`ops::codec`) → refusal of session commands and undecodable tunnels →
//! policy for every command name the operation may send (`decide_all`) →
//! rate limits → a [`Job`] that makes the `request` record durable (turning
//! the permit into the proof the BMC pool takes), runs the operation and
//! writes the `result` record.
//!
//! Every refused request is audited too (unknown BMC, bad input, a
//! certificate that maps to no user, a denial), through the refusal gate so
//! that a flood of them is counted, not written line by line.
//!
//! Never tells a caller which rule refused them, which BMC addresses exist,
//! or whether an invisible BMC exists: unknown and invisible BMCs get the
//! same 404 bytes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::changes::OpenChanges;
use super::job::Job;
use super::refusals::RefusalKind;
use super::tls::{map_user, PeerCert};
use super::Shared;
use crate::audit::{Decision as AuditDecision, RequestRecord};
use crate::bmc::Ticket;
use crate::ipmi::cmd::name::{boot_step, BootStep, Classified, Refusal};
use crate::ipmi::cmd::RawRequest;
use crate::ops::error::{ApiError, ErrorKind};
use crate::ops::Op;
use crate::policy::{Decision, Denial, DenyReason, Permit};

mod scrape;

/// Longest a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// One client connection, as the handler sees it.
#[derive(Debug)]
pub struct ConnInfo {
    /// Client address (after PROXY protocol, when trusted).
    pub source: IpAddr,
    /// The verified client certificate.
    pub cert: PeerCert,
    /// Set when a reload found the certificate revoked.
    pub revoked: std::sync::atomic::AtomicBool,
    /// Requests in flight and when the last one ended (idle timeout).
    pub activity: Activity,
    /// Multi-message changes under way on this connection, each counted
    /// once by the state-changing rate limit.
    pub changes: OpenChanges,
}

/// What the idle timer of a connection looks at.
#[derive(Debug)]
pub struct Activity {
    since: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `since` of the last request start or end.
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            since: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.since.elapsed().as_millis() as u64, Relaxed);
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        self.touch();
        InFlight(self)
    }

    /// How long the connection has had no request in flight, or `None`
    /// while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Relaxed));
        Some(self.since.elapsed().saturating_sub(last))
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// An HTTP answer.
pub type Answer = Response<Full<Bytes>>;

/// A JSON answer.
pub fn respond(status: StatusCode, body: Value, extra: &[(&str, String)]) -> Answer {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in extra {
        r = r.header(*k, v.as_str());
    }
    r.body(Full::new(Bytes::from(body.to_string() + "\n")))
        .expect("static headers are valid")
}

/// An error answer (with Retry-After when the error says when).
pub fn fail(e: &ApiError, request_id: Option<&str>) -> Answer {
    let status = StatusCode::from_u16(e.kind.status()).expect("statuses in ops::error are valid");
    let retry: Vec<(&str, String)> = e
        .retry_after_s
        .map(|s| ("retry-after", s.to_string()))
        .into_iter()
        .collect();
    respond(status, e.body(request_id), &retry)
}

/// The one 404: the same bytes for a BMC that does not exist and one the
/// caller may not see (no request id: it would make the answers differ).
fn not_found() -> Answer {
    fail(&ApiError::new(ErrorKind::NotFound, "no such BMC"), None)
}

/// An answer without a body (HEAD).
fn bodiless(status: StatusCode, extra: &[(&str, &str)]) -> Answer {
    let mut r = Response::builder().status(status);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::new()))
        .expect("static headers are valid")
}

/// Who is asking, for records and limits.
struct Caller<'a> {
    conn: &'a ConnInfo,
    /// Policy user; `None` when the certificate maps to none.
    user: Option<String>,
    /// The id the client sent with the request, when well-formed.
    client_id: Option<String>,
    /// The request id the gateway gave it.
    id: String,
    /// What a scrape of `/metrics/bmc` names and how long Prometheus waits.
    scrape: scrape::ScrapeAsk,
}

impl Caller<'_> {
    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("-")
    }

    /// The user, or the certificate when it names none: what refusals are
    /// counted by.
    fn identity(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.conn.cert.sha256)
    }
}

/// `x-client-request-id`: 1-64 letters, digits, `-` or `_` (it goes into
/// the trail; anything else is ignored).
fn client_request_id(headers: &hyper::HeaderMap) -> Option<String> {
    let v = headers.get("x-client-request-id")?.to_str().ok()?;
    let ok = (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| v.to_string())
}

/// A refusal to record and answer.
struct Refused<'a> {
    /// The request record (a refusal of a request that named no command
    /// is a route-only record).
    record: RequestRecord,
    /// What the refusal gate counts it as.
    target: &'a str,
    command: &'a str,
    reason: &'a str,
    answer: Answer,
}

/// Handles one HTTP request.
pub async fn handle(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Answer {
    let _in_flight = conn.activity.begin();
    let id = shared.request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/healthz" && (method == Method::GET || method == Method::HEAD) {
        let answer = health(&shared, &id);
        return if method == Method::HEAD {
            bodiless(answer.status(), &[])
        } else {
            answer
        };
    }
    let rt = shared.runtime();
    let caller = Caller {
        conn: &conn,
        user: map_user(&rt.policy, &rt.tls.identity, &conn.cert).ok(),
        client_id: client_request_id(req.headers()),
        id,
        scrape: scrape::ScrapeAsk::of(&req),
    };
    let max_body = rt.settings.limits.max_body_bytes;
    drop(rt);
    let route = format!("{method} {path}");
    if let Some(e) = refused_caller(&caller, &method) {
        let answer = if method == Method::HEAD {
            bodiless(
                StatusCode::from_u16(e.kind.status()).expect("valid"),
                &[("allow", "GET")],
            )
        } else {
            fail(&e, Some(&caller.id))
        };
        return refuse(
            &shared,
            &caller,
            route_refusal(&caller, &route, "-", e.kind, answer),
        )
        .await;
    }
    if method == Method::GET {
        if let Some(bmc) = console_target(&path) {
            let bmc = bmc.to_string();
            return console_route(&shared, &caller, conn.clone(), &bmc, req).await;
        }
    }
    let wants_text = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain"));
    let body = match read_body(req.into_body(), max_body).await {
        Ok(b) => b,
        Err(e) => {
            let answer = fail(&e, Some(&caller.id));
            return refuse(
                &shared,
                &caller,
                route_refusal(&caller, &route, "-", e.kind, answer),
            )
            .await;
        }
    };
    route_request(&shared, &caller, &method, &path, &body, wants_text).await
}

/// Why a caller is refused whatever they ask, if they are.
fn refused_caller(caller: &Caller<'_>, method: &Method) -> Option<ApiError> {
    if caller.conn.revoked.load(Relaxed) {
        return Some(ApiError::new(
            ErrorKind::CertificateRevoked,
            "this client certificate is no longer accepted",
        ));
    }
    if caller.user.is_none() {
        return Some(ApiError::new(
            ErrorKind::NoUserForCertificate,
            "this client certificate maps to no single policy user",
        ));
    }
    // HEAD is served for the health check only: every other route would
    // run a BMC operation to compute a body nobody reads.
    (method == Method::HEAD).then(|| {
        ApiError::new(
            ErrorKind::MethodNotAllowed,
            "HEAD is answered for /healthz only",
        )
    })
}

/// 503 while requests cannot be recorded: the trail is closed, or its
/// disk has stopped answering (so that a balancer sends elsewhere).
fn health(shared: &Shared, id: &str) -> Answer {
    match shared.audit.health() {
        Ok(()) => respond(StatusCode::OK, json!({"status": "ok"}), &[]),
        Err(why) => fail(&ApiError::new(ErrorKind::AuditUnavailable, why), Some(id)),
    }
}

async fn read_body(body: Incoming, max: usize) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            ErrorKind::BodyTooLarge,
            format!("request bodies are limited to {max} bytes"),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            ErrorKind::BodyUnreadable,
            format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorKind::BodyTimeout,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn route_request(
    shared: &Arc<Shared>,
    caller: &Caller<'_>,
    method: &Method,
    path: &str,
    body: &[u8],
    wants_text: bool,
) -> Answer {
    let user = caller.user();
    let source = caller.conn.source;
    let route = format!("{method} {path}");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["v1", "whoami"]) => {
            let rt = shared.runtime();
            respond(
                StatusCode::OK,
                json!({"user": user, "roles": rt.policy.roles_of(user), "certificate_sha256": caller.conn.cert.sha256, "source": source.to_string()}),
                &[],
            )
        }
        (&Method::GET, ["v1", "bmcs"]) => {
            let rt = shared.runtime();
            let bmcs = rt.policy.visible_bmcs(user, Some(source));
            respond(StatusCode::OK, json!({ "bmcs": bmcs }), &[])
        }
        (&Method::GET, ["metrics"]) => scrape::gateway(shared, caller, &route).await,
        (&Method::GET, ["metrics", "bmc"]) => scrape::bmc(shared, caller, &route).await,
        (_, ["v1", "bmcs", bmc, what]) => {
            let visible = shared.runtime().policy.is_visible(user, bmc, Some(source));
            if !visible {
                let r = route_refusal(caller, &route, bmc, ErrorKind::NotFound, not_found());
                return refuse(shared, caller, r).await;
            }
            match Op::from_http(method, what, body) {
                Ok(op) => run(shared, caller, bmc, op, wants_text).await,
                Err(e) => {
                    let answer = fail(&e, Some(&caller.id));
                    let r = route_refusal(caller, &route, bmc, e.kind, answer);
                    refuse(shared, caller, r).await
                }
            }
        }
        _ => {
            let e = ApiError::new(ErrorKind::NoRoute, format!("no API route {route}"));
            let answer = fail(&e, Some(&caller.id));
            let r = route_refusal(caller, &route, "-", e.kind, answer);
            refuse(shared, caller, r).await
        }
    }
}

/// The refusal of a request that named no command: its route stands for it.
fn route_refusal<'a>(
    caller: &Caller<'_>,
    route: &str,
    target: &'a str,
    kind: ErrorKind,
    answer: Answer,
) -> Refused<'a> {
    let record = RequestRecord::refusal(
        caller.id.clone(),
        caller.user().into(),
        caller.conn.cert.sha256.clone(),
        caller.conn.source.to_string(),
        target.into(),
        route,
        kind.code().into(),
    )
    .with_client_id(caller.client_id.as_deref());
    Refused {
        record,
        target,
        command: "-",
        reason: kind.code(),
        answer,
    }
}

/// Records a refusal (through the refusal gate) and answers it: the
/// refusal's own answer when its record is durable, 429 when the caller is
/// refused faster than refusals are recorded one by one, 503 when the trail
/// cannot take the record.
async fn refuse(shared: &Shared, caller: &Caller<'_>, r: Refused<'_>) -> Answer {
    let status = r.answer.status().as_u16();
    shared.metrics.request(r.command, "deny", status, None);
    shared.metrics.denial(r.reason);
    let kind = RefusalKind {
        identity: caller.identity().to_string(),
        source: caller.conn.source,
        target: r.target.to_string(),
        command: r.command.to_string(),
        reason: r.reason.to_string(),
    };
    if let Err(wait) = shared.refusals().admit(&kind) {
        let e = ApiError::new(
            ErrorKind::TooManyRefusals,
            format!(
                "too many refused requests; retry after {} s",
                wait.as_secs_f64().ceil().max(1.0)
            ),
        )
        .retry_after(wait);
        return fail(&e, Some(&caller.id));
    }
    match shared.audit.record_refusal(r.record).await {
        Ok(()) => r.answer,
        Err(e) => {
            tracing::error!(error = %e, "request refused: audit record not durable");
            let e = ApiError::new(
                ErrorKind::AuditUnavailable,
                "the audit trail is unavailable; nothing was sent to the BMC",
            );
            fail(&e, Some(&caller.id))
        }
    }
}

/// What was asked and how it is named: the parts of a `request` record
/// every outcome shares.
struct Asked<'a> {
    caller: &'a Caller<'a>,
    bmc: &'a str,
    /// The request that represents the operation in the trail.
    req: RawRequest,
    classified: Classified,
}

impl Asked<'_> {
    fn names(&self) -> Vec<&str> {
        self.classified.names().map(|n| n.as_str()).collect()
    }

    /// The record's facts; the decision is the audit writer's to set.
    fn record(&self, reason: Option<String>, rule: Option<String>) -> RequestRecord {
        RequestRecord::new(
            self.caller.id.clone(),
            self.caller.user().into(),
            self.caller.conn.cert.sha256.clone(),
            self.caller.conn.source.to_string(),
            self.bmc.into(),
            self.classified.name.to_string(),
            self.req.netfn.0,
            self.req.cmd,
            &self.req.data,
            AuditDecision::Deny,
            rule,
            reason,
        )
        .with_commands(self.names().iter().map(|n| n.to_string()).collect())
        .with_client_id(self.caller.client_id.as_deref())
    }
}

/// A denial and the command name it denies.
type Denied = (Denial, String);

/// Policy's verdict on every name of a request, then the rate limits
/// (counted once per request, whatever it names; a step of a change that
/// began on this connection as the connection's changes say).
fn decide(
    shared: &Shared,
    asked: &Asked<'_>,
    step: Option<BootStep>,
) -> Result<Permit, Box<Denied>> {
    let rt = shared.runtime();
    let permit = rt.policy.decide_classified(
        asked.caller.user(),
        Some(asked.caller.conn.source),
        asked.bmc,
        &asked.classified,
    )?;
    let changes = &asked.caller.conn.changes;
    changes.decide(asked.bmc, step, Instant::now(), |charge| {
        match rt.limits.check_charged(&rt.policy, permit, charge) {
            Decision::Allow(p) => Ok(p),
            Decision::Deny(d) => Err(Box::new((d, asked.classified.name.to_string()))),
        }
    })
}

/// The boot-device change step a request is: raw requests only (a typed
/// operation's messages are decided once already).
fn change_step(op: &Op) -> Option<BootStep> {
    match op {
        Op::Raw(r) => boot_step(r.netfn, r.cmd, &r.data),
        _ => None,
    }
}

async fn run(
    shared: &Arc<Shared>,
    caller: &Caller<'_>,
    bmc: &str,
    op: Op,
    wants_text: bool,
) -> Answer {
    let asked = Asked {
        caller,
        bmc,
        req: op.representative(),
        classified: op.classify(),
    };
    if let Some(refusal) = asked.classified.refusal {
        let kind = match refusal {
            Refusal::SessionCommand => ErrorKind::SessionCommandForbidden,
            Refusal::Undecodable(_) => ErrorKind::UndecodableBridgedMessage,
            Refusal::PayloadCommand => ErrorKind::PayloadCommandForbidden,
        };
        let e = ApiError::new(kind, refusal.describe());
        return denied_answer(
            shared,
            &asked,
            None,
            kind.code(),
            refusal.describe().into(),
            e,
        )
        .await;
    }
    let permit = match decide(shared, &asked, change_step(&op)) {
        Ok(p) => p,
        Err(d) => {
            let (d, name) = *d;
            return denied(shared, &asked, d, &name).await;
        }
    };
    let timeout = Duration::from_millis(shared.runtime().settings.limits.request_timeout_ms);
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job = Job {
        shared: shared.clone(),
        record: asked.record(None, None),
        permit,
        op,
        id: caller.id.clone(),
        wants_text,
        deadline: tokio::time::Instant::now() + timeout,
        ticket: Ticket::new(),
    };
    let started = Instant::now();
    shared.jobs.spawn(job.run(answer));
    let answer = answered.await.unwrap_or_else(|_| {
        let e = ApiError::new(
            ErrorKind::Internal,
            "the request's task ended without an answer",
        );
        fail(&e, Some(&caller.id))
    });
    let elapsed = started.elapsed().as_secs_f64();
    let status = answer.status().as_u16();
    shared.metrics.request(
        asked.classified.name.as_str(),
        "allow",
        status,
        Some(elapsed),
    );
    answer
}

/// Records a policy denial of `command` (one of the request's names) and
/// answers 403 or 429.
async fn denied(shared: &Shared, asked: &Asked<'_>, d: Denial, command: &str) -> Answer {
    let rule = d.rule.as_ref().map(|r| r.to_string());
    let bmc = asked.bmc;
    let e = match d.reason {
        DenyReason::RateLimited(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            ApiError::new(
                ErrorKind::RateLimited,
                format!("rate limited: {command} on {bmc}; retry after {secs} s"),
            )
            .retry_after(wait)
        }
        DenyReason::SourceNotAllowed => ApiError::new(
            ErrorKind::SourceNotAllowed,
            format!(
                "{} may not run {command} on {bmc} from here",
                asked.caller.user()
            ),
        ),
        _ => ApiError::new(
            ErrorKind::Denied,
            format!("{} may not run {command} on {bmc}", asked.caller.user()),
        ),
    };
    denied_answer(shared, asked, rule, e.kind.code(), d.detail, e).await
}

/// Writes a deny record for `asked` (through the refusal gate) and answers.
async fn denied_answer(
    shared: &Shared,
    asked: &Asked<'_>,
    rule: Option<String>,
    reason: &str,
    detail: String,
    e: ApiError,
) -> Answer {
    let refused = Refused {
        record: asked.record(Some(detail), rule),
        target: asked.bmc,
        command: asked.classified.name.as_str(),
        reason,
        answer: fail(&e, Some(&asked.caller.id)),
    };
    refuse(shared, asked.caller, refused).await
}

/// `NAME` of `/v1/bmcs/NAME/console`.
fn console_target(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/bmcs/")?.strip_suffix("/console")?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// What a console request asks: `mode=read|write`, `force=1`.
fn console_query(query: Option<&str>) -> Result<(bool, bool), ApiError> {
    let (mut write, mut force) = (true, false);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair {
            "mode=write" => write = true,
            "mode=read" => write = false,
            "force=1" | "force=true" => force = true,
            "force=0" | "force=false" => force = false,
            _ => {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    "console query: mode=read|write, force=1",
                ))
            }
        }
    }
    Ok((write, force))
}

/// The names a console attach needs: the seat's right, the takeover's,
/// and the IPMI commands the console sends when this attach opens it.
fn console_classified(write: bool, force: bool, opens: bool) -> Classified {
    let own = if write {
        "console.write"
    } else {
        "console.read"
    };
    let mut c = Classified::of_name(own).expect("a console name");
    let mut more = Vec::new();
    if write && force {
        more.push("console.force");
    }
    if opens {
        more.extend(["sol.activate", "sol.config.read"]);
    }
    for name in more {
        c.also
            .push(Classified::of_name(name).expect("a named command").name);
        c.state_changing |= name != "sol.config.read";
    }
    c
}

/// `GET /v1/bmcs/NAME/console`: policy, limits and the seat are settled
/// before the upgrade (refusals are ordinary answers); then the WebSocket
/// runs as a task of its own.
async fn console_route(
    shared: &Arc<Shared>,
    caller: &Caller<'_>,
    conn: Arc<ConnInfo>,
    bmc: &str,
    mut req: Request<Incoming>,
) -> Answer {
    let route = format!("GET /v1/bmcs/{bmc}/console");
    let user = caller.user();
    let source = caller.conn.source;
    if !shared.runtime().policy.is_visible(user, bmc, Some(source)) {
        let r = route_refusal(caller, &route, bmc, ErrorKind::NotFound, not_found());
        return refuse(shared, caller, r).await;
    }
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .map(str::to_string);
    let query = console_query(req.uri().query());
    let (Some(key), Ok((write, force))) = (key, query.clone()) else {
        let e = query.err().unwrap_or_else(|| {
            ApiError::new(ErrorKind::BadRequest, "the console is a WebSocket upgrade")
        });
        let answer = fail(&e, Some(&caller.id));
        return refuse(
            shared,
            caller,
            route_refusal(caller, &route, bmc, e.kind, answer),
        )
        .await;
    };
    let opening = !shared.consoles.is_open(bmc);
    let asked = Asked {
        caller,
        bmc,
        // What the console sends to open: the operation's representative.
        req: RawRequest {
            netfn: crate::ipmi::wire::message::NetFn(0x06),
            cmd: 0x48,
            data: vec![1, 1, 0xC0, 0, 0, 0],
        },
        classified: console_classified(write, force, opening),
    };
    if let Err(answer) = console_permit(shared, &asked).await {
        return answer;
    }
    let a = match shared.consoles.attach(user, bmc, (write, force), opening) {
        Ok(a) => a,
        Err(e) => return console_refused(caller, e),
    };
    let brk = Classified::of_name("console.break").expect("named");
    let may_break = shared
        .runtime()
        .policy
        .decide_classified(user, Some(source), bmc, &brk);
    let rights = super::console::ws::Rights {
        brk: may_break.is_ok(),
    };
    let cfg = shared.consoles.settings();
    let idle = Duration::from_secs(cfg.idle_timeout_s.max(1));
    let max = Duration::from_secs(cfg.max_duration_s.max(1));
    let upgrade = hyper::upgrade::on(&mut req);
    shared.jobs.spawn(super::console::ws::serve(
        upgrade, a, rights, conn, idle, max,
    ));
    switching_protocols(&key)
}

/// Policy's decision on a console attach, recorded durably before anything
/// happens; the answer to give when it is not allowed.
async fn console_permit(shared: &Arc<Shared>, asked: &Asked<'_>) -> Result<(), Answer> {
    let user = asked.caller.user();
    let source = asked.caller.conn.source;
    let decision =
        shared
            .runtime()
            .policy
            .decide_classified(user, Some(source), asked.bmc, &asked.classified);
    let permit = match decision {
        Ok(p) => p,
        Err(d) => {
            let (d, name) = *d;
            return Err(denied(shared, asked, d, &name).await);
        }
    };
    if let Err(e) = shared
        .audit
        .record_permit(asked.record(None, None), permit)
        .await
    {
        tracing::error!(error = %e, "console refused: audit record not durable");
        let e = ApiError::new(
            ErrorKind::AuditUnavailable,
            "the audit trail is unavailable",
        );
        return Err(fail(&e, Some(&asked.caller.id)));
    }
    Ok(())
}

/// The 101 answer that completes a WebSocket upgrade (RFC 6455 §4.2.2).
fn switching_protocols(key: &str) -> Answer {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = answer.headers_mut();
    h.insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        "connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    answer
}

/// The answer to an attach the console hub refused (after the allow
/// record: policy allowed it, the seat or a limit did not).
fn console_refused(caller: &Caller<'_>, e: super::console::AttachError) -> Answer {
    use super::console::AttachError;
    let e = match e {
        AttachError::SeatTaken(holder) => ApiError::new(
            ErrorKind::WriterSeatTaken,
            format!("{holder} holds the writer seat; attach with mode=read, or force=1"),
        ),
        AttachError::Limit(which) => ApiError::new(
            ErrorKind::ConsoleLimit,
            format!("console limit {which} reached"),
        )
        .retry_after(Duration::from_secs(5)),
        AttachError::Unavailable(why) => ApiError::new(ErrorKind::ConsoleUnavailable, why),
    };
    fail(&e, Some(&caller.id))
}
