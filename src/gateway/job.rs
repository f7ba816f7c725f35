//! One allowed request on its way: its `request` record made durable (which
//! turns the policy permit into the proof the BMC pool takes), the BMC
//! exchange under a ticket the caller can withdraw until the BMC's task
//! commits to sending, and the `result` record. It runs as a task of its
//! own, so that a caller who hangs up can only withdraw what has not
//! reached the BMC, and every request recorded as allowed gets its result
//! record.
//!
//! Never sends anything without a `Recorded<Permit>`; never re-sends.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use tokio::sync::oneshot;

use super::api::{fail, respond, Answer};
use super::Shared;
use crate::audit::{Event, Recorded, RequestRecord, ResultRecord};
use crate::bmc::{BmcError, Ticket};
use crate::ops::error::{ApiError, ErrorKind};
use crate::ops::{self, Op};
use crate::policy::Permit;

/// An allowed request.
pub struct Job {
    pub(super) shared: Arc<Shared>,
    /// The `request` record's facts (the permit adds the decision).
    pub(super) record: RequestRecord,
    pub(super) permit: Permit,
    pub(super) op: Op,
    pub(super) id: String,
    pub(super) wants_text: bool,
    /// After it the caller is answered, and what has not reached the BMC
    /// is withdrawn.
    pub(super) deadline: tokio::time::Instant,
    pub(super) ticket: Arc<Ticket>,
}

/// Resolves when the caller has stopped waiting for the answer (never, once
/// the answer has been sent).
async fn caller_gone(answer: &mut Option<oneshot::Sender<Answer>>) {
    match answer.as_mut() {
        Some(a) => a.closed().await,
        None => std::future::pending().await,
    }
}

/// Why a job stopped waiting for the BMC.
enum Stop {
    Deadline,
    CallerGone,
}

impl Job {
    /// Runs to the result record; answers the caller through `answer`
    /// (unless the caller has gone).
    pub async fn run(self, answer: oneshot::Sender<Answer>) {
        let mut answer = Some(answer);
        let Some(recorded) = self.record(&mut answer).await else {
            return;
        };
        let started = Instant::now();
        let pool = self.shared.pool.clone();
        let run = pool.run(&recorded, &self.op, &self.ticket);
        tokio::pin!(run);
        let stopped = tokio::select! {
            r = &mut run => Ok(r),
            _ = tokio::time::sleep_until(self.deadline) => Err(Stop::Deadline),
            _ = caller_gone(&mut answer) => Err(Stop::CallerGone),
        };
        let result = match stopped {
            Ok(r) => r,
            Err(why) if self.ticket.withdraw() => {
                // Nothing was or will be sent.
                return self.withdrawn(why, started, answer);
            }
            Err(why) => {
                // Already at the BMC: the caller learns it now, the trail
                // gets the outcome when it comes. A read still walking is
                // abandoned between two commands.
                self.ticket.abandon();
                if let (Stop::Deadline, Some(a)) = (why, answer.take()) {
                    let _ = a.send(fail(&self.late(), Some(&self.id)));
                }
                run.await
            }
        };
        let reply = self.finish(result, started);
        if let Some(a) = answer.take() {
            let _ = a.send(reply);
        }
    }

    /// Makes the request record durable, which turns the permit into the
    /// proof the pool takes. The deadline counts from the request's
    /// arrival, disk included: when the trail is slower than that, the
    /// caller is answered now (nothing was sent) and the record, once it
    /// lands, gets its result record.
    async fn record(
        &self,
        answer: &mut Option<oneshot::Sender<Answer>>,
    ) -> Option<Recorded<Permit>> {
        let writing = self
            .shared
            .audit
            .record_permit(self.record.clone(), self.permit.clone());
        tokio::pin!(writing);
        let late = tokio::select! {
            r = &mut writing => return self.recorded_or_refused(r, answer),
            _ = tokio::time::sleep_until(self.deadline) => true,
            _ = caller_gone(answer) => false,
        };
        if late {
            if let Some(a) = answer.take() {
                let e = ApiError::new(
                    ErrorKind::AuditUnavailable,
                    "the audit trail did not confirm the request record within the request deadline; nothing was sent to the BMC",
                );
                let _ = a.send(fail(&e, Some(&self.id)));
            }
        }
        // The record may still land: then it gets a result saying why
        // nothing followed it.
        if writing.await.is_ok() {
            let code = if late {
                ErrorKind::DeadlineExceeded
            } else {
                ErrorKind::Cancelled
            };
            self.write_result(None, 0, Instant::now(), Some(code.code()));
        }
        None
    }

    fn recorded_or_refused(
        &self,
        r: Result<Recorded<Permit>, crate::audit::AuditError>,
        answer: &mut Option<oneshot::Sender<Answer>>,
    ) -> Option<Recorded<Permit>> {
        match r {
            Ok(recorded) => Some(recorded),
            Err(e) => {
                tracing::error!(error = %e, "request refused: audit record not durable");
                let e = ApiError::new(
                    ErrorKind::AuditUnavailable,
                    "the audit trail is unavailable; nothing was sent to the BMC",
                );
                if let Some(a) = answer.take() {
                    let _ = a.send(fail(&e, Some(&self.id)));
                }
                None
            }
        }
    }

    fn command(&self) -> &str {
        self.permit.names().first().map_or("-", String::as_str)
    }

    /// Recorded and answered: withdrawn before anything reached the BMC.
    fn withdrawn(&self, why: Stop, started: Instant, answer: Option<oneshot::Sender<Answer>>) {
        let kind = match why {
            Stop::Deadline => ErrorKind::DeadlineExceeded,
            Stop::CallerGone => ErrorKind::Cancelled,
        };
        self.write_result(None, 0, started, Some(kind.code()));
        if let Some(a) = answer {
            let e = ApiError::new(
                kind,
                format!(
                    "{} was not sent: the BMC did not take it within the request deadline",
                    self.command()
                ),
            );
            let _ = a.send(fail(&e, Some(&self.id)));
        }
    }

    /// The answer when the deadline passes with the command at the BMC.
    fn late(&self) -> ApiError {
        let c = self.command();
        if self.permit.state_changing() {
            ApiError::new(
                ErrorKind::OutcomeUnknown,
                format!("{c} was sent and has not completed within the request deadline: it may or may not happen (not retried)"),
            )
        } else {
            ApiError::new(
                ErrorKind::BmcTimeout,
                format!("{c} did not complete within the request deadline"),
            )
        }
    }

    /// Writes the result record and makes the caller's answer.
    fn finish(&self, result: Result<ops::Answer, BmcError>, started: Instant) -> Answer {
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
                // The BMC's task stopped (shutdown's deadline) with the
                // command already sent: whether it ran is unknown.
                let e = match e {
                    BmcError::Closed(addr)
                        if self.ticket.committed() && self.permit.state_changing() =>
                    {
                        BmcError::OutcomeUnknown {
                            addr,
                            command: self.command().to_string(),
                        }
                    }
                    e => e,
                };
                let api = bmc_failure(&e);
                let cc = match &e {
                    BmcError::Completion { code, .. } => Some(code.0),
                    _ => None,
                };
                self.write_result(cc, 0, started, Some(api.kind.code()));
                tracing::warn!(request_id = %self.id, bmc = %self.permit.bmc(), command = %self.command(), error = %e, "BMC operation failed");
                fail(&api, Some(&self.id))
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

/// A BMC failure as the API answers it (no BMC address in the message).
pub fn bmc_failure(e: &BmcError) -> ApiError {
    use ErrorKind as K;
    match e {
        BmcError::NoAnswer { .. } => ApiError::new(K::BmcTimeout, "the BMC did not answer"),
        BmcError::OutcomeUnknown { command, .. } => ApiError::new(
            K::OutcomeUnknown,
            format!("{command} was sent but the BMC's reply was lost: it may or may not have happened (not retried)"),
        ),
        BmcError::Busy(_) => ApiError::new(K::BmcBusy, "too many requests are waiting for this BMC"),
        BmcError::Cancelled(_) => ApiError::new(
            K::Cancelled,
            "the gateway is shutting down; the request was not sent",
        ),
        BmcError::Unreachable { last, retry_in, .. } => {
            let secs = retry_in.as_secs().max(1);
            let e = match &**last {
                BmcError::Login { source, .. } => ApiError::new(
                    K::BmcLoginFailed,
                    format!("the gateway could not log in to the BMC{}; next attempt in {secs} s", slots_hint(source)),
                ),
                _ => ApiError::new(
                    K::BmcUnreachable,
                    format!("the BMC is not answering; next attempt in {secs} s"),
                ),
            };
            e.retry_after(*retry_in)
        }
        BmcError::Completion { command, code, .. } => {
            ApiError::new(K::BmcError, format!("{command} failed: completion code {code}"))
        }
        BmcError::Login { source, .. } => ApiError::new(
            K::BmcLoginFailed,
            format!("the gateway could not log in to the BMC{}", slots_hint(source)),
        ),
        // The gateway's own socket (out of file descriptors, say): not the
        // BMC's fault.
        BmcError::Io { source, .. } => ApiError::new(
            K::Internal,
            format!("the gateway could not talk on its socket: {source}"),
        ),
        _ => ApiError::new(K::BmcError, "the BMC request failed"),
    }
}

/// A login refused for want of a free session slot says so: the operator's
/// fix is on the BMC (sessions left open by other clients), not in the
/// gateway's credentials.
fn slots_hint(e: &crate::ipmi::session::console::SessionError) -> &'static str {
    use crate::ipmi::session::console::SessionError;
    use crate::ipmi::wire::rakp::RmcpPlusStatus;
    match e {
        SessionError::Refused { status, .. }
            if *status == RmcpPlusStatus::INSUFFICIENT_RESOURCES =>
        {
            ": every session slot of the BMC is taken (by other clients, or sessions left open)"
        }
        _ => "",
    }
}
