//! The HTTP API (design.md): routing, input checks, and the path of one
//! request: visibility → refusal of session commands and undecodable
//! tunnels → policy for every command name the operation may send (source,
//! user, target, command) → rate limits → durable `request` record → BMC →
//! `result` record → answer.
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

use super::refusals::RefusalKind;
use super::tls::{map_user, PeerCert};
use super::Shared;
use crate::audit::{AuditError, Decision as AuditDecision, Event, RequestRecord, ResultRecord};
use crate::bmc::{BmcError, Ticket};
use crate::ipmi::cmd::chassis::PowerAction;
use crate::ipmi::cmd::name::{Classified, Refusal};
use crate::ipmi::cmd::RawRequest;
use crate::ipmi::wire::message::NetFn;
use crate::ops::{self, Op};
use crate::policy::{Decision, DenyReason, Request as PolicyRequest};

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

type Answer = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: Value, extra: &[(&str, String)]) -> Answer {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in extra {
        r = r.header(*k, v.as_str());
    }
    r.body(Full::new(Bytes::from(body.to_string() + "\n")))
        .expect("static headers are valid")
}

fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Answer {
    respond(
        status,
        json!({"error": {"code": code, "message": message, "request_id": request_id}}),
        &[],
    )
}

/// The one 404: the same bytes for a BMC that does not exist and one the
/// caller may not see (no request id: it would make the answers differ).
fn not_found() -> Answer {
    respond(
        StatusCode::NOT_FOUND,
        json!({"error": {"code": "not_found", "message": "no such BMC"}}),
        &[],
    )
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

/// A refusal to record and answer.
struct Refused<'a> {
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
    };
    let max_body = rt.settings.limits.max_body_bytes;
    drop(rt);
    let route = format!("{method} {path}");
    let refusal = if conn.revoked.load(Relaxed) {
        Some((
            StatusCode::FORBIDDEN,
            "certificate_revoked",
            "this client certificate is no longer accepted",
        ))
    } else if caller.user.is_none() {
        Some((
            StatusCode::FORBIDDEN,
            "no_user_for_certificate",
            "this client certificate maps to no single policy user",
        ))
    } else if method == Method::HEAD {
        // HEAD is served for the health check only: every other route would
        // run a BMC operation to compute a body nobody reads.
        Some((
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "HEAD is answered for /healthz only",
        ))
    } else {
        None
    };
    if let Some((status, code, message)) = refusal {
        let answer = if method == Method::HEAD {
            bodiless(status, &[("allow", "GET")])
        } else {
            error(status, code, message, &id)
        };
        let refused = Refused {
            target: "-",
            command: "-",
            reason: code,
            answer,
        };
        return refuse(&shared, &caller, &id, &route, refused).await;
    }
    let wants_text = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain"));
    let body = match read_body(req.into_body(), max_body).await {
        Ok(b) => b,
        Err((status, code, message)) => {
            let answer = error(status, code, &message, &id);
            let refused = Refused {
                target: "-",
                command: "-",
                reason: code,
                answer,
            };
            return refuse(&shared, &caller, &id, &route, refused).await;
        }
    };
    route_request(&shared, &caller, &id, &method, &path, &body, wants_text).await
}

fn health(shared: &Shared, id: &str) -> Answer {
    if shared.audit.is_available() {
        respond(StatusCode::OK, json!({"status": "ok"}), &[])
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit trail is unavailable",
            id,
        )
    }
}

async fn read_body(body: Incoming, max: usize) -> Result<Bytes, BadInput> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {max} bytes"),
        )),
        Ok(Err(e)) => Err((
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
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
    id: &str,
    method: &Method,
    path: &str,
    body: &[u8],
    wants_text: bool,
) -> Answer {
    let user = caller.user();
    let source = caller.conn.source;
    let route = format!("{method} {path}");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rt = shared.runtime();
    match (method, segs.as_slice()) {
        (&Method::GET, ["v1", "whoami"]) => respond(
            StatusCode::OK,
            json!({"user": user, "roles": rt.policy.roles_of(user), "certificate_sha256": caller.conn.cert.sha256, "source": source.to_string()}),
            &[],
        ),
        (&Method::GET, ["v1", "bmcs"]) => respond(
            StatusCode::OK,
            json!({"bmcs": rt.policy.visible_bmcs(user, Some(source))}),
            &[],
        ),
        (_, ["v1", "bmcs", bmc, what]) => {
            if !rt.policy.is_visible(user, bmc, Some(source)) {
                drop(rt);
                let refused = Refused {
                    target: bmc,
                    command: "-",
                    reason: "not_found",
                    answer: not_found(),
                };
                return refuse(shared, caller, id, &route, refused).await;
            }
            drop(rt);
            match operation(method, what, body) {
                Ok(op) => run(shared, caller, bmc, op, id, wants_text).await,
                Err((status, code, msg)) => {
                    let refused = Refused {
                        target: bmc,
                        command: "-",
                        reason: code,
                        answer: error(status, code, &msg, id),
                    };
                    refuse(shared, caller, id, &route, refused).await
                }
            }
        }
        _ => {
            drop(rt);
            let refused = Refused {
                target: "-",
                command: "-",
                reason: "no_route",
                answer: error(
                    StatusCode::NOT_FOUND,
                    "no_route",
                    &format!("no API route {route}"),
                    id,
                ),
            };
            refuse(shared, caller, id, &route, refused).await
        }
    }
}

/// Records a refusal (through the refusal gate) and answers it: the
/// refusal's own answer when its record is durable, 429 when the caller is
/// refused faster than refusals are recorded one by one, 503 when the trail
/// cannot take the record.
async fn refuse(
    shared: &Shared,
    caller: &Caller<'_>,
    id: &str,
    route: &str,
    r: Refused<'_>,
) -> Answer {
    let kind = RefusalKind {
        identity: caller.identity().to_string(),
        source: caller.conn.source,
        target: r.target.to_string(),
        command: r.command.to_string(),
        reason: r.reason.to_string(),
    };
    if let Err(wait) = shared.refusals().admit(&kind) {
        return too_many_refusals(wait, id);
    }
    let rec = RequestRecord::refusal(
        id.into(),
        caller.user().into(),
        caller.conn.cert.sha256.clone(),
        caller.conn.source.to_string(),
        r.target.into(),
        route,
        r.reason.into(),
    )
    .with_client_id(caller.client_id.as_deref());
    match shared.audit.request(rec).await {
        Ok(_) => r.answer,
        Err(e) => audit_failed(e, id),
    }
}

fn too_many_refusals(wait: Duration, id: &str) -> Answer {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    respond(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": {"code": "too_many_refusals", "message": format!("too many refused requests; retry after {secs} s"), "request_id": id, "retry_after_s": secs}}),
        &[("retry-after", secs.to_string())],
    )
}

type BadInput = (StatusCode, &'static str, String);

fn bad(msg: impl Into<String>) -> BadInput {
    (StatusCode::BAD_REQUEST, "bad_request", msg.into())
}

fn operation(method: &Method, what: &str, body: &[u8]) -> Result<Op, BadInput> {
    let json_body = || -> Result<Value, BadInput> {
        serde_json::from_slice(body).map_err(|e| bad(format!("body: expected JSON: {e}")))
    };
    Ok(match (method, what) {
        (&Method::GET, "info") => Op::McInfo,
        (&Method::GET, "power") => Op::PowerStatus,
        (&Method::POST, "power") => {
            let v = json_body()?;
            let a = v.get("action").and_then(Value::as_str).ok_or_else(|| {
                bad("body: expected {\"action\":\"on|off|cycle|reset|soft|diag\"}")
            })?;
            Op::Power(PowerAction::from_name(a).ok_or_else(|| {
                bad(format!(
                    "action {a:?}: expected on, off, cycle, reset, soft or diag"
                ))
            })?)
        }
        (&Method::GET, "chassis") => Op::ChassisStatus,
        (&Method::GET, "boot") => Op::BootGet,
        (&Method::PUT, "boot") => {
            let v = json_body()?;
            let d = v
                .get("device")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("body: expected {\"device\":\"pxe|disk|cdrom|bios|none\"}"))?;
            let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
            Op::BootSet(
                ops::boot_flags(d, flag("persistent"), flag("efi")).ok_or_else(|| {
                    bad(format!(
                        "device {d:?}: expected pxe, disk, safe, diag, cdrom, bios, floppy or none"
                    ))
                })?,
            )
        }
        (&Method::GET, "sensors") => Op::Sensors,
        (&Method::GET, "sel") => Op::Sel,
        (&Method::GET, "fru") => Op::Fru,
        (&Method::POST, "raw") => Op::Raw(raw_request(&json_body()?)?),
        _ => {
            return Err((
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} /v1/bmcs/NAME/{what} is not an API route"),
            ))
        }
    })
}

/// `{"netfn":6,"cmd":1,"data":"hex"}`: `data` may be absent (no data), but
/// when present it is a string of hex bytes, never a number or null.
fn raw_request(v: &Value) -> Result<RawRequest, BadInput> {
    let byte = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .filter(|b| *b <= 0xFF)
            .map(|b| b as u8)
    };
    let netfn = byte("netfn")
        .filter(|n| *n <= 0x3E && n % 2 == 0)
        .ok_or_else(|| bad("netfn: expected an even request netFn 0-62"))?;
    let cmd = byte("cmd").ok_or_else(|| bad("cmd: expected 0-255"))?;
    let data_hex = match v.get("data") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad("data: expected a string of hex bytes, e.g. \"0a1b\"")),
    };
    let data = hex::decode(data_hex).map_err(|_| bad("data: expected hex bytes"))?;
    if data.len() > 200 {
        return Err(bad("data: at most 200 bytes"));
    }
    Ok(RawRequest {
        netfn: NetFn(netfn),
        cmd,
        data,
    })
}

/// What was asked and how it is named: the parts of a `request` record
/// every outcome shares.
struct Asked<'a> {
    id: &'a str,
    caller: &'a Caller<'a>,
    bmc: &'a str,
    /// The request that represents the operation in the trail.
    req: RawRequest,
    classified: Classified,
}

impl Asked<'_> {
    fn names(&self) -> Vec<String> {
        self.classified.names().map(|n| n.to_string()).collect()
    }

    fn record(
        &self,
        decision: AuditDecision,
        rule: Option<String>,
        reason: Option<String>,
    ) -> RequestRecord {
        RequestRecord::new(
            self.id.into(),
            self.caller.user().into(),
            self.caller.conn.cert.sha256.clone(),
            self.caller.conn.source.to_string(),
            self.bmc.into(),
            self.classified.name.to_string(),
            self.req.netfn.0,
            self.req.cmd,
            &self.req.data,
            decision,
            rule,
            reason,
        )
        .with_commands(self.names())
        .with_client_id(self.caller.client_id.as_deref())
    }
}

fn audit_failed(e: AuditError, id: &str) -> Answer {
    tracing::error!(error = %e, "request refused: audit record not durable");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the audit trail is unavailable; nothing was sent to the BMC",
        id,
    )
}

/// Policy's verdict on every name of a request: the joined allow rules, or
/// the first denial.
/// A denial and the command name it denies.
type Denied = (Box<crate::policy::Denial>, String);

fn decide(shared: &Shared, asked: &Asked<'_>) -> Result<String, Denied> {
    let rt = shared.runtime();
    let mut rules: Vec<String> = Vec::new();
    let mut first = None;
    for name in asked.classified.names() {
        let preq = PolicyRequest {
            user: asked.caller.user(),
            source: Some(asked.caller.conn.source),
            bmc: asked.bmc,
            command: name.as_str(),
            state_changing: asked.classified.state_changing,
        };
        match rt.policy.decide(&preq) {
            Decision::Allow(p) => {
                let rule = p.rule().to_string();
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
                first.get_or_insert(p);
            }
            Decision::Deny(d) => return Err((Box::new(d), name.to_string())),
        }
    }
    let permit = first.expect("a request has at least one name");
    // Rates count the request once, whatever it names.
    match rt.limits.check(&rt.policy, permit) {
        Decision::Allow(_) => Ok(rules.join("; ")),
        Decision::Deny(d) => Err((Box::new(d), asked.classified.name.to_string())),
    }
}

async fn run(
    shared: &Arc<Shared>,
    caller: &Caller<'_>,
    bmc: &str,
    op: Op,
    id: &str,
    wants_text: bool,
) -> Answer {
    let asked = Asked {
        id,
        caller,
        bmc,
        req: op.representative(),
        classified: op.classify(),
    };
    let command = asked.classified.name.to_string();
    if let Some(refusal) = asked.classified.refusal {
        let code = match refusal {
            Refusal::SessionCommand => "session_command_forbidden",
            Refusal::Undecodable(_) => "undecodable_bridged_message",
        };
        let answer = error(StatusCode::FORBIDDEN, code, refusal.describe(), id);
        let detail = refusal.describe().to_string();
        return deny_recorded(shared, &asked, None, code, detail, answer).await;
    }
    let rule = match decide(shared, &asked) {
        Ok(rule) => rule,
        Err((d, name)) => return denied(shared, &asked, *d, &name).await,
    };
    // From here the request is allowed. Recording it, sending it and
    // recording its result happen in a task of its own, so that a caller
    // who hangs up can only withdraw what has not reached the BMC, and
    // every request recorded as allowed gets its result record.
    let timeout = Duration::from_millis(shared.runtime().settings.limits.request_timeout_ms);
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job = Job {
        shared: shared.clone(),
        record: asked.record(AuditDecision::Allow, Some(rule), None),
        bmc: bmc.to_string(),
        state_changing: asked.classified.state_changing,
        op,
        allowed: asked.names(),
        id: id.to_string(),
        command,
        wants_text,
        deadline: tokio::time::Instant::now() + timeout,
        ticket: Ticket::new(),
    };
    shared.jobs.spawn(job.run(answer));
    answered.await.unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request's task ended without an answer",
            id,
        )
    })
}

/// Records a policy denial of `command` (one of the request's names) and
/// answers 403 or 429.
async fn denied(
    shared: &Shared,
    asked: &Asked<'_>,
    d: crate::policy::Denial,
    command: &str,
) -> Answer {
    let rule = d.rule.as_ref().map(|r| r.to_string());
    let (bmc, id) = (asked.bmc, asked.id);
    let (reason, answer) = match d.reason {
        DenyReason::RateLimited(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let message = format!("rate limited: {command} on {bmc}; retry after {secs} s");
            let answer = respond(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": {"code": "rate_limited", "message": message, "request_id": id, "retry_after_s": secs}}),
                &[("retry-after", secs.to_string())],
            );
            ("rate_limited", answer)
        }
        ref other => {
            let code = if *other == DenyReason::SourceNotAllowed {
                "source_not_allowed"
            } else {
                "denied"
            };
            let user = asked.caller.user();
            let message = format!("{user} may not run {command} on {bmc}");
            (code, error(StatusCode::FORBIDDEN, code, &message, id))
        }
    };
    deny_recorded(shared, asked, rule, reason, d.detail, answer).await
}

/// Writes a deny record for `asked` (through the refusal gate) and answers.
async fn deny_recorded(
    shared: &Shared,
    asked: &Asked<'_>,
    rule: Option<String>,
    reason: &str,
    detail: String,
    answer: Answer,
) -> Answer {
    let kind = RefusalKind {
        identity: asked.caller.identity().to_string(),
        source: asked.caller.conn.source,
        target: asked.bmc.to_string(),
        command: asked.classified.name.to_string(),
        reason: reason.to_string(),
    };
    if let Err(wait) = shared.refusals().admit(&kind) {
        return too_many_refusals(wait, asked.id);
    }
    let rec = asked.record(AuditDecision::Deny, rule, Some(detail));
    match shared.audit.request(rec).await {
        Ok(_) => answer,
        Err(e) => audit_failed(e, asked.id),
    }
}

/// An allowed request on its way to the trail, the BMC and its result
/// record.
struct Job {
    shared: Arc<Shared>,
    record: RequestRecord,
    bmc: String,
    state_changing: bool,
    op: Op,
    allowed: Vec<String>,
    id: String,
    command: String,
    wants_text: bool,
    /// After it the caller is answered, and what has not reached the BMC
    /// is withdrawn.
    deadline: tokio::time::Instant,
    ticket: Arc<Ticket>,
}

/// Why a job stopped waiting for the BMC.
enum Stop {
    Deadline,
    CallerGone,
}

impl Job {
    async fn run(self, answer: tokio::sync::oneshot::Sender<Answer>) {
        let mut answer = Some(answer);
        let receipt = match self.shared.audit.request(self.record.clone()).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(a) = answer.take() {
                    let _ = a.send(audit_failed(e, &self.id));
                }
                return;
            }
        };
        let started = Instant::now();
        let pool = self.shared.pool.clone();
        let run = pool.run(&receipt, &self.bmc, &self.op, &self.allowed, &self.ticket);
        tokio::pin!(run);
        let stopped = tokio::select! {
            r = &mut run => Ok(r),
            _ = tokio::time::sleep_until(self.deadline) => Err(Stop::Deadline),
            _ = answer.as_mut().expect("not answered yet").closed() => Err(Stop::CallerGone),
        };
        let result = match stopped {
            Ok(r) => r,
            Err(why) if self.ticket.withdraw() => {
                // Nothing was or will be sent.
                let code = match why {
                    Stop::Deadline => "deadline_exceeded",
                    Stop::CallerGone => "cancelled",
                };
                self.write_result(None, 0, started, Some(code));
                if let Some(a) = answer.take() {
                    let message = format!(
                        "{} was not sent: the BMC did not take it within the request deadline",
                        self.command
                    );
                    let _ = a.send(error(StatusCode::GATEWAY_TIMEOUT, code, &message, &self.id));
                }
                return;
            }
            Err(why) => {
                // Already at the BMC: the caller learns it now, the trail
                // gets the outcome when it comes.
                if let (Stop::Deadline, Some(a)) = (why, answer.take()) {
                    let (code, message) = if self.state_changing {
                        ("outcome_unknown", format!("{} was sent and has not completed within the request deadline: it may or may not happen (not retried)", self.command))
                    } else {
                        (
                            "bmc_timeout",
                            format!(
                                "{} did not complete within the request deadline",
                                self.command
                            ),
                        )
                    };
                    let _ = a.send(error(StatusCode::GATEWAY_TIMEOUT, code, &message, &self.id));
                }
                run.await
            }
        };
        let reply = self.finish(result, started);
        if let Some(a) = answer.take() {
            let _ = a.send(reply);
        }
    }

    /// Writes the result record and makes the caller's answer.
    fn finish(&self, result: Result<crate::ops::Answer, BmcError>, started: Instant) -> Answer {
        match result {
            Ok(a) => {
                let cc = Some(a.completion_code.unwrap_or(0));
                self.write_result(cc, a.response_len, started, None);
                if self.wants_text {
                    Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "text/plain; charset=utf-8")
                        .body(Full::new(Bytes::from(a.text + "\n")))
                        .expect("static headers are valid")
                } else {
                    respond(StatusCode::OK, a.json, &[])
                }
            }
            Err(e) => {
                let (status, code, message) = bmc_failure(&e);
                let cc = match &e {
                    BmcError::Completion { code, .. } => Some(code.0),
                    _ => None,
                };
                self.write_result(cc, 0, started, Some(code));
                tracing::warn!(request_id = %self.id, bmc = %self.bmc, command = %self.command, error = %e, "BMC operation failed");
                error(status, code, &message, &self.id)
            }
        }
    }

    /// Queued before the answer goes out, durable with the next group
    /// commit: the answer does not wait for a second fsync. (Write-ahead is
    /// about the request record; a crash in this window can lose a result
    /// record, never a request record.)
    fn write_result(&self, cc: Option<u8>, len: usize, started: Instant, err: Option<&str>) {
        let rec = ResultRecord {
            request_id: self.id.clone(),
            completion_code: cc,
            response_len: len,
            latency_us: started.elapsed().as_micros() as u64,
            error: err.map(str::to_string),
        };
        if let Err(e) = self.shared.audit.append_queued(Event::Result(rec)) {
            tracing::error!(error = %e, request_id = %self.id, "result record not queued");
        }
    }
}

/// Status, code and a caller-safe message (no BMC address) for a BMC failure.
fn bmc_failure(e: &BmcError) -> (StatusCode, &'static str, String) {
    match e {
        BmcError::NoAnswer { .. } => (StatusCode::GATEWAY_TIMEOUT, "bmc_timeout", "the BMC did not answer".into()),
        BmcError::OutcomeUnknown { command, .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            format!("{command} was sent but the BMC's reply was lost: it may or may not have happened (not retried)"),
        ),
        BmcError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "bmc_busy", "too many requests are waiting for this BMC".into()),
        BmcError::Cancelled(_) => (StatusCode::SERVICE_UNAVAILABLE, "cancelled", "the gateway is shutting down; the request was not sent".into()),
        BmcError::Unreachable { last, retry_in, .. } => match **last {
            BmcError::Login { .. } => (StatusCode::BAD_GATEWAY, "bmc_login_failed", format!("the gateway could not log in to the BMC; next attempt in {} s", retry_in.as_secs().max(1))),
            _ => (StatusCode::GATEWAY_TIMEOUT, "bmc_unreachable", format!("the BMC is not answering; next attempt in {} s", retry_in.as_secs().max(1))),
        },
        BmcError::Completion { command, code, .. } => (StatusCode::BAD_GATEWAY, "bmc_error", format!("{command} failed: completion code {code}")),
        BmcError::Login { .. } => (StatusCode::BAD_GATEWAY, "bmc_login_failed", "the gateway could not log in to the BMC".into()),
        _ => (StatusCode::BAD_GATEWAY, "bmc_error", "the BMC request failed".into()),
    }
}
