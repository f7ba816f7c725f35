//! The HTTP API (design.md): routing, input checks, and the path of one
//! request: visibility → session-command refusal → policy (source, user,
//! target, command name from the IPMI bytes) → rate limits → durable
//! `request` record → BMC → `result` record → answer.
//!
//! Never tells a caller which rule refused them, which BMC addresses exist,
//! or whether an invisible BMC exists: unknown and invisible BMCs get the
//! same 404 bytes.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::tls::{map_user, PeerCert};
use super::Shared;
use crate::audit::{AuditError, Decision as AuditDecision, Event, RequestRecord, ResultRecord};
use crate::bmc::BmcError;
use crate::ipmi::cmd::chassis::PowerAction;
use crate::ipmi::cmd::name::{classify, is_session_management};
use crate::ipmi::cmd::RawRequest;
use crate::ipmi::wire::message::NetFn;
use crate::ops::{self, Op};
use crate::policy::{Decision, DenyReason, Request as PolicyRequest};

/// One client connection, as the handler sees it.
#[derive(Debug)]
pub struct ConnInfo {
    /// Client address (after PROXY protocol, when trusted).
    pub source: IpAddr,
    /// The verified client certificate.
    pub cert: PeerCert,
    /// Set when a reload found the certificate revoked.
    pub revoked: std::sync::atomic::AtomicBool,
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

/// Handles one HTTP request.
pub async fn handle(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Answer {
    let id = shared.request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let wants_text = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain"));
    if path == "/healthz" && method == Method::GET {
        return if shared.audit.is_available() {
            respond(StatusCode::OK, json!({"status": "ok"}), &[])
        } else {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit trail is unavailable",
                &id,
            )
        };
    }
    if conn.revoked.load(Relaxed) {
        return error(
            StatusCode::FORBIDDEN,
            "certificate_revoked",
            "this client certificate is no longer accepted",
            &id,
        );
    }
    let rt = shared.runtime();
    let user = match map_user(&rt.policy, &conn.cert) {
        Ok(u) => u,
        Err(why) => {
            return error(
                StatusCode::FORBIDDEN,
                why.code(),
                "this client certificate maps to no single policy user",
                &id,
            )
        }
    };
    let max_body = rt.settings.limits.max_body_bytes;
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("request bodies are limited to {max_body} bytes"),
                &id,
            )
        }
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["v1", "whoami"]) => respond(
            StatusCode::OK,
            json!({"user": user, "roles": rt.policy.roles_of(&user), "certificate_sha256": conn.cert.sha256, "source": conn.source.to_string()}),
            &[],
        ),
        (&Method::GET, ["v1", "bmcs"]) => respond(
            StatusCode::OK,
            json!({"bmcs": rt.policy.visible_bmcs(&user, Some(conn.source))}),
            &[],
        ),
        (_, ["v1", "bmcs", bmc, what]) => {
            if !rt.policy.is_visible(&user, bmc, Some(conn.source)) {
                return not_found();
            }
            let op = match operation(&method, what, &body) {
                Ok(op) => op,
                Err((status, code, msg)) => return error(status, code, &msg, &id),
            };
            drop(rt);
            run(&shared, &conn, &user, bmc, op, &id, wants_text).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no_route",
            &format!("no API route {method} {path}"),
            &id,
        ),
    }
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
        (&Method::POST, "raw") => {
            let v = json_body()?;
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
            let data_hex = v.get("data").and_then(Value::as_str).unwrap_or("");
            let data = hex::decode(data_hex).map_err(|_| bad("data: expected hex bytes"))?;
            if data.len() > 200 {
                return Err(bad("data: at most 200 bytes"));
            }
            if is_session_management(NetFn(netfn), cmd) {
                return Err((
                    StatusCode::FORBIDDEN,
                    "session_command_forbidden",
                    "session-management commands are the gateway's own; they are never forwarded"
                        .into(),
                ));
            }
            Op::Raw(RawRequest {
                netfn: NetFn(netfn),
                cmd,
                data,
            })
        }
        _ => {
            return Err((
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} /v1/bmcs/NAME/{what} is not an API route"),
            ))
        }
    })
}

/// Who asked for what: the parts of a `request` record every outcome shares.
struct Asked<'a> {
    id: &'a str,
    user: &'a str,
    conn: &'a ConnInfo,
    bmc: &'a str,
    /// The request that names the operation, and its command name.
    req: &'a RawRequest,
    command: &'a str,
}

fn record(
    a: &Asked<'_>,
    decision: AuditDecision,
    rule: Option<String>,
    reason: Option<String>,
) -> RequestRecord {
    let Asked {
        id,
        user,
        conn,
        bmc,
        req,
        command,
    } = *a;
    RequestRecord::new(
        id.into(),
        user.into(),
        conn.cert.sha256.clone(),
        conn.source.to_string(),
        bmc.into(),
        command.into(),
        req.netfn.0,
        req.cmd,
        &req.data,
        decision,
        rule,
        reason,
    )
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

async fn run(
    shared: &Shared,
    conn: &ConnInfo,
    user: &str,
    bmc: &str,
    op: Op,
    id: &str,
    wants_text: bool,
) -> Answer {
    // Classified once: the decision and both audit records use it.
    let req = op.representative();
    let classified = classify(req.netfn, req.cmd, &req.data);
    let (command, state_changing) = (classified.name.as_str(), classified.state_changing);
    let rt = shared.runtime();
    let preq = PolicyRequest {
        user,
        source: Some(conn.source),
        bmc,
        command,
        state_changing,
    };
    let decision = match rt.policy.decide(&preq) {
        Decision::Allow(p) => rt.limits.check(&rt.policy, p),
        d => d,
    };
    let asked = Asked {
        id,
        user,
        conn,
        bmc,
        req: &req,
        command,
    };
    let permit_rule = match decision {
        Decision::Allow(p) => p.rule().to_string(),
        Decision::Deny(d) => {
            let rule = d.rule.as_ref().map(|r| r.to_string());
            let reason = match d.reason {
                DenyReason::RateLimited(_) => "rate_limited",
                DenyReason::SourceNotAllowed => "source_not_allowed",
                _ => "denied",
            };
            let rec = record(&asked, AuditDecision::Deny, rule, Some(d.detail.clone()));
            if let Err(e) = shared.audit.request(rec).await {
                return audit_failed(e, id);
            }
            return match d.reason {
                DenyReason::RateLimited(wait) => {
                    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                    respond(
                        StatusCode::TOO_MANY_REQUESTS,
                        json!({"error": {"code": reason, "message": format!("rate limited: {command} on {bmc}; retry after {secs} s"), "request_id": id, "retry_after_s": secs}}),
                        &[("retry-after", secs.to_string())],
                    )
                }
                _ => error(
                    StatusCode::FORBIDDEN,
                    reason,
                    &format!("{user} may not run {command} on {bmc}"),
                    id,
                ),
            };
        }
    };
    drop(rt);
    let rec = record(&asked, AuditDecision::Allow, Some(permit_rule), None);
    let receipt = match shared.audit.request(rec).await {
        Ok(r) => r,
        Err(e) => return audit_failed(e, id),
    };
    let started = Instant::now();
    let result = shared.pool.run(&receipt, bmc, &op).await;
    let latency_us = started.elapsed().as_micros() as u64;
    let (result_rec, answer) = match result {
        Ok(a) => {
            let rec = ResultRecord {
                request_id: id.into(),
                completion_code: Some(a.completion_code.unwrap_or(0)),
                response_len: a.response_len,
                latency_us,
                error: None,
            };
            let body = if wants_text {
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(Full::new(Bytes::from(a.text + "\n")))
                    .expect("static headers are valid")
            } else {
                respond(StatusCode::OK, a.json, &[])
            };
            (rec, body)
        }
        Err(e) => {
            let (status, code, message) = bmc_failure(&e);
            let cc = match &e {
                BmcError::Completion { code, .. } => Some(code.0),
                _ => None,
            };
            let rec = ResultRecord {
                request_id: id.into(),
                completion_code: cc,
                response_len: 0,
                latency_us,
                error: Some(code.into()),
            };
            tracing::warn!(request_id = id, bmc, error = %e, "BMC operation failed");
            (rec, error(status, code, &message, id))
        }
    };
    // Queued before the answer goes out, durable with the next group
    // commit: the answer does not wait for a second fsync. (Write-ahead is
    // about the request record; a crash in this window can lose a result
    // record, never a request record.)
    if let Err(e) = shared.audit.append_queued(Event::Result(result_rec)) {
        tracing::error!(error = %e, request_id = id, "result record not queued");
    }
    answer
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
        BmcError::Completion { command, code, .. } => (StatusCode::BAD_GATEWAY, "bmc_error", format!("{command} failed: completion code {code}")),
        BmcError::Login { .. } => (StatusCode::BAD_GATEWAY, "bmc_login_failed", "the gateway could not log in to the BMC".into()),
        _ => (StatusCode::BAD_GATEWAY, "bmc_error", "the BMC request failed".into()),
    }
}
