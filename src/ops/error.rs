//! The API's errors, one enum for both sides: the gateway answers with an
//! [`ApiError`] (HTTP status, code, message); the client reads the same
//! code back and gets the same exit status. A code is written in one place
//! only: here.
//!
//! Never carries a secret, a BMC address or a policy rule: messages are
//! for callers.

use serde_json::{json, Value};

/// Exit status: done.
pub const EXIT_OK: u8 = 0;
/// Exit status: usage, input or configuration error.
pub const EXIT_USAGE: u8 = 1;
/// Exit status: no answer, connection or TLS trouble, gateway unavailable.
pub const EXIT_CONNECTION: u8 = 2;
/// Exit status: denied by policy, or rate limited.
pub const EXIT_DENIED: u8 = 3;
/// Exit status: the BMC failed or refused.
pub const EXIT_BMC: u8 = 4;

macro_rules! kinds {
    ($($kind:ident = $code:literal, $status:literal, $exit:ident;)*) => {
        /// What went wrong, as the API names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorKind {
            $(
                #[doc = concat!("`", $code, "` (HTTP ", stringify!($status), ")")]
                $kind,
            )*
        }

        impl ErrorKind {
            /// Every kind.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind),*];

            /// The code in the JSON body.
            pub fn code(self) -> &'static str {
                match self { $(ErrorKind::$kind => $code,)* }
            }

            /// The HTTP status.
            pub fn status(self) -> u16 {
                match self { $(ErrorKind::$kind => $status,)* }
            }

            /// The CLI's exit status for it.
            pub fn exit_code(self) -> u8 {
                match self { $(ErrorKind::$kind => $exit,)* }
            }

            /// The kind a code names.
            pub fn from_code(code: &str) -> Option<ErrorKind> {
                match code { $($code => Some(ErrorKind::$kind),)* _ => None }
            }
        }
    };
}

kinds! {
    BadRequest = "bad_request", 400, EXIT_USAGE;
    BodyUnreadable = "body_unreadable", 400, EXIT_USAGE;
    NotFound = "not_found", 404, EXIT_USAGE;
    NoRoute = "no_route", 404, EXIT_USAGE;
    MethodNotAllowed = "method_not_allowed", 405, EXIT_USAGE;
    BodyTimeout = "body_timeout", 408, EXIT_USAGE;
    BodyTooLarge = "body_too_large", 413, EXIT_USAGE;
    Denied = "denied", 403, EXIT_DENIED;
    SourceNotAllowed = "source_not_allowed", 403, EXIT_DENIED;
    SessionCommandForbidden = "session_command_forbidden", 403, EXIT_DENIED;
    UndecodableBridgedMessage = "undecodable_bridged_message", 403, EXIT_DENIED;
    PayloadCommandForbidden = "payload_command_forbidden", 403, EXIT_DENIED;
    CertificateRevoked = "certificate_revoked", 403, EXIT_DENIED;
    NoUserForCertificate = "no_user_for_certificate", 403, EXIT_DENIED;
    RateLimited = "rate_limited", 429, EXIT_DENIED;
    TooManyRefusals = "too_many_refusals", 429, EXIT_DENIED;
    TooManyConnections = "too_many_connections", 429, EXIT_DENIED;
    ConsoleLimit = "console_limit", 429, EXIT_DENIED;
    WriterSeatTaken = "writer_seat_taken", 409, EXIT_DENIED;
    ConsoleUnavailable = "console_unavailable", 503, EXIT_BMC;
    Internal = "internal", 500, EXIT_CONNECTION;
    BmcError = "bmc_error", 502, EXIT_BMC;
    BmcLoginFailed = "bmc_login_failed", 502, EXIT_BMC;
    AuditUnavailable = "audit_unavailable", 503, EXIT_CONNECTION;
    BmcBusy = "bmc_busy", 503, EXIT_BMC;
    Cancelled = "cancelled", 503, EXIT_CONNECTION;
    BmcTimeout = "bmc_timeout", 504, EXIT_BMC;
    BmcUnreachable = "bmc_unreachable", 504, EXIT_BMC;
    OutcomeUnknown = "outcome_unknown", 504, EXIT_BMC;
    DeadlineExceeded = "deadline_exceeded", 504, EXIT_BMC;
}

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// A sentence for the caller.
    pub message: String,
    /// When to try again (429 and back-offs).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The same, with when to retry (at least a second).
    pub fn retry_after(mut self, wait: std::time::Duration) -> ApiError {
        self.retry_after_s = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        self
    }

    /// The JSON body: `{"error":{"code","message","request_id"}}` (no
    /// request id when `None`: the one 404 must be the same bytes for a
    /// BMC that does not exist and one the caller may not see).
    pub fn body(&self, request_id: Option<&str>) -> Value {
        let mut e = json!({"code": self.kind.code(), "message": self.message});
        if let Some(id) = request_id {
            e["request_id"] = json!(id);
        }
        if let Some(s) = self.retry_after_s {
            e["retry_after_s"] = json!(s);
        }
        json!({ "error": e })
    }

    /// Reads an answer that is not a success, as a client sees it. An
    /// unknown code (a newer gateway) is kept by its status.
    pub fn from_answer(status: u16, body: &[u8]) -> ApiError {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let code = v["error"]["code"].as_str().unwrap_or("");
        let kind = ErrorKind::from_code(code).unwrap_or(match status {
            403 => ErrorKind::Denied,
            429 => ErrorKind::RateLimited,
            400..=499 => ErrorKind::BadRequest,
            502 => ErrorKind::BmcError,
            504 => ErrorKind::BmcTimeout,
            _ => ErrorKind::Internal,
        });
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the gateway answered {status}"));
        ApiError {
            kind,
            message,
            retry_after_s: v["error"]["retry_after_s"].as_u64(),
        }
    }

    /// The CLI's exit status.
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ErrorKind::RateLimited => f.write_str(&self.message),
            ErrorKind::Denied
            | ErrorKind::SourceNotAllowed
            | ErrorKind::SessionCommandForbidden
            | ErrorKind::UndecodableBridgedMessage
            | ErrorKind::PayloadCommandForbidden => write!(f, "denied: {}", self.message),
            k => write!(f, "{} ({})", self.message, k.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_code() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(*k));
            let e = ApiError::new(*k, "m");
            let back = ApiError::from_answer(k.status(), e.body(Some("r")).to_string().as_bytes());
            assert_eq!(back, e);
        }
    }

    #[test]
    fn exit_codes_follow_the_status_families() {
        for k in ErrorKind::ALL {
            let want = match k.status() {
                403 | 429 => EXIT_DENIED,
                // Someone else holds the console's writer seat: a refusal
                // to act, as a denial is, not a usage mistake.
                409 if *k == ErrorKind::WriterSeatTaken => EXIT_DENIED,
                400..=499 => EXIT_USAGE,
                502 | 504 => EXIT_BMC,
                _ if *k == ErrorKind::BmcBusy => EXIT_BMC,
                // The BMC side of the console cannot be opened.
                _ if *k == ErrorKind::ConsoleUnavailable => EXIT_BMC,
                _ => EXIT_CONNECTION,
            };
            assert_eq!(k.exit_code(), want, "{k:?}");
        }
    }

    #[test]
    fn unknown_codes_keep_their_status_family() {
        let e = ApiError::from_answer(
            429,
            br#"{"error":{"code":"new_thing","message":"slow down"}}"#,
        );
        assert_eq!(
            (e.kind, e.exit_code()),
            (ErrorKind::RateLimited, EXIT_DENIED)
        );
        let e = ApiError::from_answer(502, b"not json");
        assert_eq!(e.kind, ErrorKind::BmcError);
    }
}
