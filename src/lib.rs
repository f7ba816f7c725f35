//! ipmigw: a hardened IPMI security gateway.
//!
//! Clients reach the gateway only over mutually authenticated TLS; the
//! gateway maps the client certificate to a policy user, decides, writes
//! the decision to a hash-chained audit trail, and only then sends the
//! command to the BMC over its own RMCP+ session, with credentials only it
//! holds.
//!
//! # The path of one request
//!
//! Each step hands the next a value that only it can make, so the order
//! verify → decide → record → send is in the signatures:
//!
//! ```text
//! gateway::front::accept_loop(listener, shared, stop)
//!   └ connection(): PROXY header, connection limits, TLS handshake
//!       └ serve(shared, Verified, source, ..): hyper, HTTP/1.1 or 2
//! gateway::api::handle(shared, conn, Request) -> Answer
//!   └ route_request() -> ops::Op::from_http(method, path, body)
//!   └ run(shared, caller, bmc, Op)
//!       ├ Op::classify() -> ipmi::cmd::name::Classified   (wire names)
//!       └ decide() -> policy::Policy::decide_all(..) -> Result<Permit, Denial>
//!                     policy::Limits::check(&Policy, Permit) -> Decision
//! gateway::job::Job::run(self, answer)
//!   └ audit::AuditWriter::record_permit(RequestRecord, Permit)
//!         -> Result<Recorded<Permit>, AuditError>     (durable first)
//!       └ audit::group::Waiting::run: this task, as leader, writes and
//!         fdatasyncs what is queued (group commit, no writer thread)
//!   └ gateway::pool::Pool::run(&Recorded<Permit>, &Op, &Ticket)
//!       └ ops::Op::run(&Gated) -> Answer
//!           └ <Gated as bmc::Transact>::transact(RawRequest)
//!                 (refuses any wire name the permit does not hold)
//!               └ bmc::client::BmcClient::request_with(RawRequest, ticket)
//!                   └ ipmi::session::console::Exchange (sans-IO) ⇄ UDP
//!   └ audit::AuditWriter::append_queued(Event::Result ..)
//! ```
//!
//! A denial never has a `Recorded<Permit>`: it goes through
//! `AuditWriter::record_refusal`, which returns nothing to send with.
//!
//! # Modules, lowest layer first
//!
//! Dependencies point one way (`tests/layering.rs` checks it):
//!
//! - [`secret`]: the zeroizing, never-printed holder for passwords and keys.
//! - [`config`]: TOML sources and file:line:col diagnostics; knows no
//!   subsystem.
//! - [`pki`]: the development PKI (`ipmigw pki`), revocation lists.
//! - [`ipmi`]: sans-IO protocol code: RMCP/RMCP+ framing, the session
//!   state machines of both sides with their timers, typed commands, the
//!   command registry and names, SDR/SEL/FRU decoding. No sockets, files,
//!   clocks or runtime.
//! - [`policy`]: users, roles, command and BMC patterns, source
//!   allowlists, rate limits; makes `Permit`s.
//! - [`audit`]: the hash-chained trail: writer, verification, queries,
//!   syslog export, secret redaction.
//! - [`bmc`]: tokio I/O toward BMCs: one UDP socket and session per BMC,
//!   retries, keepalive, re-login; multi-step reads (SDR, SEL, FRU).
//! - [`ops`]: the operations users name (power, sensors, boot, raw, ...),
//!   their HTTP and CLI codec, errors with status and exit codes.
//! - [`alerts`]: alert conditions with stable fingerprints and their
//!   sinks (signed webhook, syslog); knows no other subsystem.
//! - [`metrics`]: the Prometheus registry and exposition, ipmi_exporter
//!   names for BMC sensors.
//! - [`scan`]: BMC security posture (`ipmigw scan`): probes, findings,
//!   table/JSON/SARIF reports; audited through [`audit`].
//! - [`sim`]: a simulated BMC (RMCP+ server side) for tests, demos and
//!   benchmarks.
//! - [`gateway`]: the server: front door, API, jobs, BMC pool, reload,
//!   shutdown, the demo.
//! - [`cli`]: the `ipmigw` command line: client verbs, `serve`, `bridge`,
//!   `audit`, `policy`, `pki`, `sim`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alerts;
pub mod audit;
pub mod bmc;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod ipmi;
pub mod metrics;
pub mod ops;
pub mod pki;
pub mod policy;
pub mod scan;
pub mod secret;
pub mod sim;
#[cfg(test)]
mod test_clock;
