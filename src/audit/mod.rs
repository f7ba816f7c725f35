//! The audit trail: a write-ahead, hash-chained, MACed JSON Lines record of
//! everything the gateway decides and does, and the tools to verify and
//! query it.
//!
//! The promise: no request reaches a BMC unless its `request` record is
//! durable first ([`Receipt`] is the proof, and only [`AuditWriter`] makes
//! one); nothing is lost or silently altered (gap-free `seq`, `prev` chain,
//! HMAC per line, anchored checkpoints); after any write or fsync failure
//! the writer refuses every record until it has reopened the file and
//! written `audit_recovered`.
//!
//! Never in a record: passwords, keys, Kg, session keys. Request bytes of
//! commands that carry secrets are redacted by [`redact_request_data`]
//! before they reach the writer.

pub mod chain;
mod export;
pub mod fs;
mod group;
mod held;
pub mod line;
pub mod query;
pub mod recordings;
pub mod settings;
pub mod unfinished;
pub mod verify;
mod writer;

use serde::Serialize;

use crate::ipmi::cmd::registry::secret_from;
use crate::ipmi::wire::message::NetFn;
use crate::policy::Permit;

pub use export::SyslogTarget;
pub use line::AuditKey;
pub use writer::{AuditWriter, Durability, WriterConfig, WriterStats};

/// Why the audit trail refused a record. The gateway answers 503
/// `audit_unavailable` for all of these: without a durable record, no
/// request goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A write or fsync failed; the writer refuses records until it has
    /// recovered.
    #[error("audit trail unavailable: {0}")]
    Unavailable(String),
    /// More records are waiting than the writer queues.
    #[error("audit trail overloaded: too many records waiting")]
    Overloaded,
    /// The writer has shut down.
    #[error("audit trail closed")]
    Closed,
    /// Startup found a trail it cannot continue.
    #[error("audit trail {path}: {reason}")]
    Startup {
        /// The trail file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// That a `request` record is durable (its sequence number), whatever it
/// decided. What lets a request go on to a BMC is a [`Recorded`] permit.
#[derive(Debug, PartialEq, Eq)]
pub struct Receipt {
    seq: u64,
    request_id: String,
    allowed: bool,
}

impl Receipt {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The request id it records.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
    /// True when the recorded decision was allow.
    pub fn allows(&self) -> bool {
        self.allowed
    }
}

/// Proof that an allowed request's record is durable, carrying the policy
/// permit it records. Only [`AuditWriter::record_permit`] makes one, and the
/// BMC pool takes nothing else: verify → decide → record → send is in the
/// types.
#[derive(Debug)]
pub struct Recorded<T> {
    seq: u64,
    request_id: String,
    inner: T,
}

impl<T> Recorded<T> {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The request id it records.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// What was recorded.
    pub fn get(&self) -> &T {
        &self.inner
    }
}

impl AuditWriter {
    /// Records an allowed request (decision, rules and command names from
    /// the permit) and returns, once durable, the proof that lets it go on.
    pub async fn record_permit(
        &self,
        rec: RequestRecord,
        permit: Permit,
    ) -> Result<Recorded<Permit>, AuditError> {
        let rules: Vec<String> = permit.rules().map(|r| r.to_string()).collect();
        let rec = RequestRecord {
            decision: Decision::Allow,
            rule: Some(rules.join("; ")),
            reason: None,
            ..rec
        }
        .with_commands(permit.names().to_vec());
        let receipt = self.request(rec).await?;
        Ok(Recorded {
            seq: receipt.seq(),
            request_id: receipt.request_id().to_string(),
            inner: permit,
        })
    }

    /// Records a refused request. Nothing comes back to send with.
    pub async fn record_refusal(&self, rec: RequestRecord) -> Result<(), AuditError> {
        let rec = RequestRecord {
            decision: Decision::Deny,
            ..rec
        };
        self.request(rec).await.map(|_| ())
    }
}

/// A `request` record: who asked for what, and what policy said.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Request id (also in the `result` record and the HTTP answer).
    pub request_id: String,
    /// The id the client sent with it (`x-client-request-id`), so that a
    /// client whose answer was lost can find the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// Policy user (`-` when the certificate maps to none).
    pub user: String,
    /// SHA-256 of the client certificate (hex).
    pub cert_sha256: String,
    /// Client address.
    pub source: String,
    /// BMC name (as asked for, also when it does not exist).
    pub target: String,
    /// Command name (`-` for a request refused before it named one).
    pub command: String,
    /// Every command name policy decided, when there are more than one: a
    /// Send Message and what it carries, or each kind of command a
    /// composite read sends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// IPMI netFn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netfn: Option<u8>,
    /// IPMI command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<u8>,
    /// Request data in hex, secrets redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// The HTTP method and path, for requests refused before they named a
    /// command (at most [`MAX_ROUTE_CHARS`] characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `allow` or `deny`.
    pub decision: Decision,
    /// The deciding rule, as `file:line owner kind pattern` (several joined
    /// by `; ` when several commands were decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why a deny happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest route kept in a record: paths come from callers.
pub const MAX_ROUTE_CHARS: usize = 256;
/// Longest target kept in a refusal record: a name asked for that no BMC
/// has comes from the caller too.
pub const MAX_TARGET_CHARS: usize = 128;

/// A recorded decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

impl RequestRecord {
    /// A request record; `data` is redacted here (see [`redact_request_data`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_id: String,
        user: String,
        cert_sha256: String,
        source: String,
        target: String,
        command: String,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        decision: Decision,
        rule: Option<String>,
        reason: Option<String>,
    ) -> RequestRecord {
        RequestRecord {
            request_id,
            client_request_id: None,
            user,
            cert_sha256,
            source,
            target,
            command,
            commands: Vec::new(),
            netfn: Some(netfn),
            cmd: Some(cmd),
            data: Some(redact_request_data(netfn, cmd, data)),
            route: None,
            decision,
            rule,
            reason,
        }
    }

    /// A refusal of a request that named no IPMI command (a bad body, an
    /// unknown BMC, a certificate that maps to no user): the route stands
    /// for it.
    pub fn refusal(
        request_id: String,
        user: String,
        cert_sha256: String,
        source: String,
        target: String,
        route: &str,
        reason: String,
    ) -> RequestRecord {
        RequestRecord {
            request_id,
            client_request_id: None,
            user,
            cert_sha256,
            source,
            target: target.chars().take(MAX_TARGET_CHARS).collect(),
            command: "-".into(),
            commands: Vec::new(),
            netfn: None,
            cmd: None,
            data: None,
            route: Some(route.chars().take(MAX_ROUTE_CHARS).collect()),
            decision: Decision::Deny,
            rule: None,
            reason: Some(reason),
        }
    }

    /// Records the id the client sent (see [`client_request_id`](Self::client_request_id)).
    pub fn with_client_id(mut self, id: Option<&str>) -> RequestRecord {
        self.client_request_id = id.map(str::to_string);
        self
    }

    /// Records every command name decided (kept only when there are several).
    pub fn with_commands(mut self, names: Vec<String>) -> RequestRecord {
        self.commands = if names.len() > 1 { names } else { Vec::new() };
        self
    }

    /// The recorded (redacted) data.
    pub fn data_hex(&self) -> &str {
        self.data.as_deref().unwrap_or("")
    }
}

/// Request data as hex for the trail, with the secret part of commands that
/// carry one replaced by `<redacted:N>` (N bytes). Which bytes are secret is
/// the command registry's knowledge (`ipmi::cmd::registry::secret_from`):
/// passwords, keys and community strings, also inside bridged messages.
pub fn redact_request_data(netfn: u8, cmd: u8, data: &[u8]) -> String {
    match secret_from(NetFn(netfn & !1), cmd, data) {
        Some(k) => format!("{}<redacted:{}>", hex::encode(&data[..k]), data.len() - k),
        None => hex::encode(data),
    }
}

/// A `result` record: how a request ended.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRecord {
    /// The request's id.
    pub request_id: String,
    /// IPMI completion code, when the BMC answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_code: Option<u8>,
    /// Response data length.
    pub response_len: usize,
    /// Time from request record to answer, microseconds.
    pub latency_us: u64,
    /// The error, e.g. `outcome_unknown`, `timeout`, `bmc_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `tls`: a handshake accepted or refused.
#[derive(Debug, Clone, Serialize)]
pub struct TlsRecord {
    /// `accepted` or `refused`.
    pub outcome: String,
    /// Why, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// SHA-256 of the client certificate, when one was presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// Client address.
    pub source: String,
    /// Policy user, when mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `bmc_session`: a BMC login, re-login, lost session, logout, failure, or
/// a session a previous instance left open being closed (never a secret).
#[derive(Debug, Clone, Serialize)]
pub struct BmcSessionRecord {
    /// BMC name.
    pub bmc: String,
    /// `login`, `relogin`, `lost`, `logout`, `failure` or `stale_closed`.
    pub action: String,
    /// Cipher suite, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<u8>,
    /// The BMC's session id (hex), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Why, for failures and logouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `denial_summary`: refusals of one kind that came faster than the
/// refusal rate allows, counted instead of recorded one by one, so that a
/// flood of denied requests grows the trail at a bounded rate.
#[derive(Debug, Clone, Serialize)]
pub struct DenialSummary {
    /// Policy user, or the certificate fingerprint when it maps to none.
    pub identity: String,
    /// Client address (`*` when the summary table overflowed).
    pub source: String,
    /// BMC name as asked (`*` when the summary table overflowed).
    pub target: String,
    /// Command name (`*` when the summary table overflowed).
    pub command: String,
    /// Why each was refused.
    pub reason: String,
    /// How many were refused and not recorded one by one.
    pub count: u64,
    /// First and last refusal counted, RFC 3339.
    pub first: String,
    /// Last refusal counted.
    pub last: String,
}

/// `scan`: one probe of a posture scan (`ipmigw scan`). A BMC's plan is
/// recorded before its first packet, then each probe with its outcome, so
/// that scan traffic an IDS flags is on the trail as ours. Never a hash or
/// a password.
#[derive(Debug, Clone, Serialize)]
pub struct ScanRecord {
    /// BMC name as given.
    pub bmc: String,
    /// Its address.
    pub address: String,
    /// What was sent (or `plan: ...` before the first packet).
    pub probe: String,
    /// Datagrams sent for it.
    pub sent: u32,
    /// How it ended.
    pub outcome: String,
}

/// Events callers record (the writer adds `startup`, `audit_repair`,
/// `audit_recovered`, `audit_dropped`, `checkpoint` and `export_dropped`
/// itself).
#[derive(Debug, Clone)]
pub enum Event {
    /// A decision on a request (use [`AuditWriter::request`] for these).
    Request(RequestRecord),
    /// How a request ended.
    Result(ResultRecord),
    /// A TLS handshake.
    Tls(TlsRecord),
    /// A BMC session change.
    BmcSession(BmcSessionRecord),
    /// Refusals counted, not recorded one by one.
    DenialSummary(DenialSummary),
    /// A posture scan's probe.
    Scan(ScanRecord),
    /// Configuration reloaded (or a reload refused).
    ConfigReload {
        /// SHA-256 over the policy files, in order.
        policy_sha256: String,
        /// Whether the new config took effect.
        ok: bool,
        /// Why not.
        error: Option<String>,
    },
    /// A console event (attach, detach, seat change, BMC-side change,
    /// recording chunk): a JSON object whose `action` says which.
    Console(serde_json::Value),
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::Request(_) => "request",
            Event::Result(_) => "result",
            Event::Tls(_) => "tls",
            Event::BmcSession(_) => "bmc_session",
            Event::DenialSummary(_) => "denial_summary",
            Event::Scan(_) => "scan",
            Event::ConfigReload { .. } => "config_reload",
            Event::Console(_) => "console",
        }
    }

    fn fields(&self) -> String {
        let v = match self {
            Event::Request(r) => serde_json::to_string(r),
            Event::Result(r) => serde_json::to_string(r),
            Event::Tls(r) => serde_json::to_string(r),
            Event::BmcSession(r) => serde_json::to_string(r),
            Event::DenialSummary(r) => serde_json::to_string(r),
            Event::Console(v) => serde_json::to_string(v),
            Event::Scan(r) => serde_json::to_string(r),
            Event::ConfigReload {
                policy_sha256,
                ok,
                error,
            } => serde_json::to_string(
                &serde_json::json!({"policy_sha256": policy_sha256, "ok": ok, "error": error}),
            ),
        };
        members(v.unwrap_or_else(|_| "{}".into()))
    }
}

/// `{"a":1,"b":2}` → `"a":1,"b":2`.
fn members(object: String) -> String {
    object
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests;
