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

mod export;
pub mod fs;
pub mod line;
pub mod query;
pub mod settings;
pub mod verify;
mod writer;

use serde::Serialize;

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

/// Proof that a `request` record is durable. Only the writer makes one; the
/// code that sends a command to a BMC takes it by reference.
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

/// A `request` record: who asked for what, and what policy said.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Request id (also in the `result` record and the HTTP answer).
    pub request_id: String,
    /// Policy user.
    pub user: String,
    /// SHA-256 of the client certificate (hex).
    pub cert_sha256: String,
    /// Client address.
    pub source: String,
    /// BMC name.
    pub target: String,
    /// Command name.
    pub command: String,
    /// IPMI netFn.
    pub netfn: u8,
    /// IPMI command.
    pub cmd: u8,
    /// Request data in hex, secrets redacted.
    data: String,
    /// `allow` or `deny`.
    pub decision: Decision,
    /// The deciding rule, as `file:line owner kind pattern`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why a deny happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

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
            user,
            cert_sha256,
            source,
            target,
            command,
            netfn,
            cmd,
            data: redact_request_data(netfn, cmd, data),
            decision,
            rule,
            reason,
        }
    }

    /// The recorded (redacted) data.
    pub fn data_hex(&self) -> &str {
        &self.data
    }
}

/// Request data as hex for the trail, with the secret part of commands that
/// carry one replaced by `<redacted:N>` (N bytes): Set User Password (App
/// 0x47: password after user id and operation) and Set Channel Security
/// Keys (App 0x56: key bytes after channel, operation and key id).
pub fn redact_request_data(netfn: u8, cmd: u8, data: &[u8]) -> String {
    let keep = match (netfn & !1, cmd) {
        (0x06, 0x47) => Some(2),
        (0x06, 0x56) => Some(3),
        _ => None,
    };
    match keep {
        Some(k) if data.len() > k => {
            format!("{}<redacted:{}>", hex::encode(&data[..k]), data.len() - k)
        }
        _ => hex::encode(data),
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

/// `bmc_session`: a BMC login, logout or failure (never a secret).
#[derive(Debug, Clone, Serialize)]
pub struct BmcSessionRecord {
    /// BMC name.
    pub bmc: String,
    /// `login`, `logout` or `failure`.
    pub action: String,
    /// Cipher suite, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<u8>,
    /// Why, for failures and logouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Events callers record (the writer adds `startup`, `audit_repair`,
/// `audit_recovered`, `checkpoint` and `export_dropped` itself).
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
    /// Configuration reloaded (or a reload refused).
    ConfigReload {
        /// SHA-256 over the policy files, in order.
        policy_sha256: String,
        /// Whether the new config took effect.
        ok: bool,
        /// Why not.
        error: Option<String>,
    },
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::Request(_) => "request",
            Event::Result(_) => "result",
            Event::Tls(_) => "tls",
            Event::BmcSession(_) => "bmc_session",
            Event::ConfigReload { .. } => "config_reload",
        }
    }

    fn fields(&self) -> String {
        let v = match self {
            Event::Request(r) => serde_json::to_string(r),
            Event::Result(r) => serde_json::to_string(r),
            Event::Tls(r) => serde_json::to_string(r),
            Event::BmcSession(r) => serde_json::to_string(r),
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
