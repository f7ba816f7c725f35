//! Async I/O toward BMCs: one UDP socket and one authenticated RMCP+ session
//! per BMC, owned by one task ([`BmcClient`]). The task logs in, runs one
//! command at a time from a bounded queue, retries read-only commands,
//! never blindly re-sends a state-changing one, keeps an idle session alive,
//! logs in again when the BMC has forgotten the session, and closes the
//! session on shutdown.
//!
//! It never parses a reply itself: every datagram goes through
//! `ipmi::session`, which verifies it before anything else looks at it.
//! Nor does it keep a protocol timer of its own: the login
//! (`console::Handshake`) and each request (`console::Exchange`) say when
//! they next need waking and what to send; the task owns the socket and
//! the tokio timers and carries out what they decide. What it does decide
//! is above the session: how many tries a command gets (one when it
//! changes state), when to log in again, the back-off between failed
//! logins, and keepalives.
//! Drops (foreign source, bad MAC, outside the window, …) are counted in
//! [`DropStats`], never answered.

mod client;
pub mod credentials;
pub mod reads;
mod ticket;

pub use client::{BmcClient, BmcConfig, DropStats, DropStatsSnapshot, EventSink, SessionEvent};
pub use ticket::Ticket;

use std::net::SocketAddr;

use crate::ipmi::cmd::RawRequest;
use crate::ipmi::session::console::SessionError;
use crate::ipmi::wire::message::CompletionCode;
use crate::ipmi::wire::WireError;

/// A BMC's answer: completion code and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Completion code.
    pub completion_code: CompletionCode,
    /// Data after the completion code.
    pub data: Vec<u8>,
}

/// What can go wrong talking to a BMC. Messages name the BMC address and the
/// command; none carries a secret. Cloneable, so that one answer can serve
/// several callers of the same read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BmcError {
    /// Login failed (configuration, credentials or the BMC's refusal).
    #[error("login to {addr} failed: {source}")]
    Login {
        /// BMC address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: SessionError,
    },
    /// Nothing came back in time.
    #[error("no answer from {addr} after {tries} tries")]
    NoAnswer {
        /// BMC address.
        addr: SocketAddr,
        /// Datagrams sent.
        tries: u32,
    },
    /// A state-changing command was sent but its reply was lost: it may or
    /// may not have happened, and it is not re-sent.
    #[error("{command} was sent to {addr} but no reply came back: outcome unknown (not retried, it changes state)")]
    OutcomeUnknown {
        /// BMC address.
        addr: SocketAddr,
        /// Policy name of the command.
        command: String,
    },
    /// The BMC answered with a non-zero completion code.
    #[error("{command} failed on {addr}: completion code {code}")]
    Completion {
        /// BMC address.
        addr: SocketAddr,
        /// Policy name of the command.
        command: String,
        /// The completion code.
        code: CompletionCode,
    },
    /// The BMC's answer did not decode.
    #[error("{command} from {addr}: malformed answer: {source}")]
    Malformed {
        /// BMC address.
        addr: SocketAddr,
        /// Policy name of the command.
        command: String,
        /// Why.
        #[source]
        source: WireError,
    },
    /// The queue in front of this BMC is full.
    #[error("too many commands queued for {0}")]
    Busy(SocketAddr),
    /// The client was shut down.
    #[error("connection to {0} is closed")]
    Closed(SocketAddr),
    /// The request was withdrawn before anything was sent (its caller left,
    /// its deadline passed, or the gateway is shutting down).
    #[error("request to {0} cancelled before it was sent")]
    Cancelled(SocketAddr),
    /// Logins to this BMC are backing off after a failure: answered at once
    /// with the last failure instead of waiting for a login of our own.
    #[error("{addr} is unreachable (next login attempt in {} ms): {last}", retry_in.as_millis())]
    Unreachable {
        /// BMC address.
        addr: SocketAddr,
        /// Until the next attempt.
        retry_in: std::time::Duration,
        /// The failure that started the back-off.
        last: Box<BmcError>,
    },
    /// A local socket error.
    #[error("socket error talking to {addr}: {source}")]
    Io {
        /// BMC address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// A multi-step read could not finish (loops, refusals).
    #[error("{what} from {addr}: {why}")]
    Protocol {
        /// BMC address.
        addr: SocketAddr,
        /// What was being read.
        what: &'static str,
        /// Why it stopped.
        why: String,
    },
}

impl BmcError {
    /// A socket error.
    pub fn io(addr: SocketAddr, source: std::io::Error) -> BmcError {
        BmcError::Io {
            addr,
            source: std::sync::Arc::new(source),
        }
    }
}

/// Something that can run one IPMI request against one BMC. [`BmcClient`]
/// is the real one; tests use fakes to drive the multi-step reads.
#[allow(async_fn_in_trait)]
pub trait Transact {
    /// Sends one request and returns the BMC's answer.
    async fn transact(&self, req: RawRequest) -> Result<RawResponse, BmcError>;
    /// The BMC's address, for error messages.
    fn addr(&self) -> SocketAddr;
    /// The SDR cache kept for this BMC, when there is one (the gateway's
    /// pool keeps one per BMC; one-off clients read the repository each time).
    fn sdr_cache(&self) -> Option<&reads::SdrCache> {
        None
    }
}
