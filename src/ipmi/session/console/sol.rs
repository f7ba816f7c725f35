//! The console's SOL engine: Serial over LAN on an established session,
//! from activation to deactivation, on the caller's clock.
//!
//! Order (IPMI v2.0 §24, §26; reference §8): Get SOL Configuration
//! Parameters 4 (the BMC's retry count and interval; defaults when it has
//! none), Activate Payload with encryption and authentication as the
//! session's suite has them (a payload left active by another session is
//! deactivated first when [`SolConfig::take_over`] says so), then SOL
//! packets both ways through a [`SolLink`]; when the BMC was quiet for
//! [`SolConfig::keepalive`], Get Payload Instance Info (which session holds
//! the payload; Get Payload Activation Status on BMCs without it);
//! Deactivate Payload
//! at [`SolConsole::deactivate`]. The engine ends, with a [`SolEnd`] event,
//! when the BMC reports SOL inactive, when the keep-alive finds the payload
//! gone, held by another session, or unanswered, or when a packet goes unacknowledged through every
//! retry.
//!
//! Never does: read a clock, use the payload before the BMC's answer to
//! Activate Payload, accept a SOL packet that failed the session's checks,
//! deliver a character twice, or follow a BMC to another UDP port.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{ActiveSession, Answer, Drop, Exchange, Inbound};
use crate::ipmi::cmd::sol::{
    activate_cc, deactivate_cc, param, ActivatePayload, ActivatedPayload, DeactivatePayload,
    GetPayloadActivationStatus, GetPayloadInstanceInfo, GetSolConfig, SolRetry,
};
use crate::ipmi::cmd::Command;
use crate::ipmi::crypto::{ConfidentialityAlgorithm, IntegrityAlgorithm};
use crate::ipmi::session::sol::{LinkConfig, LinkStats, SolLink};
use crate::ipmi::wire::message::{CompletionCode, Response};
use crate::ipmi::wire::sol::{Control, SolPacket};
use crate::ipmi::wire::WireError;

/// Quiet time after which the engine asks whether its payload is active.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// SOL retry interval when the BMC names none (ipmitool's).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// SOL re-sends when the BMC names none.
pub const DEFAULT_SOL_RETRIES: u32 = 6;
/// A BMC's retry interval is raised to this at least: some report 0.
pub const MIN_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Keystrokes waiting to be sent, at most.
pub const DEFAULT_SEND_CAPACITY: usize = 4096;
/// Host output received and not yet read, at most; beyond it the BMC is
/// NACKed and sends again later.
pub const DEFAULT_RECEIVE_CAPACITY: usize = 64 * 1024;
/// Characters per packet when the BMC's size makes no sense.
const FALLBACK_CHUNK: usize = 32;

/// How the engine behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolConfig {
    /// Payload instance (1).
    pub instance: u8,
    /// The UDP port the session talks to: the Activate answer must name
    /// it (or its byte-swapped form, a known BMC mistake).
    pub session_port: u16,
    /// Deactivate a payload another session left active, then activate.
    pub take_over: bool,
    /// Quiet time before the keep-alive.
    pub keepalive: Duration,
    /// Wait for one try of an IPMI request.
    pub request_timeout: Duration,
    /// Tries of one IPMI request.
    pub request_tries: u32,
    /// SOL retry count and interval; `None`: ask the BMC.
    pub retry: Option<SolRetry>,
    /// Bound of the keystroke queue.
    pub send_capacity: usize,
    /// Bound of the host-output queue.
    pub receive_capacity: usize,
}

impl SolConfig {
    /// Instance 1, no take-over, defaults for the rest.
    pub fn new(session_port: u16) -> SolConfig {
        SolConfig {
            instance: 1,
            session_port,
            take_over: false,
            keepalive: DEFAULT_KEEPALIVE,
            request_timeout: Duration::from_secs(1),
            request_tries: 3,
            retry: None,
            send_capacity: DEFAULT_SEND_CAPACITY,
            receive_capacity: DEFAULT_RECEIVE_CAPACITY,
        }
    }
}

/// Where the engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolState {
    /// Reading the BMC's SOL retry parameters.
    Configuring,
    /// Waiting for Activate Payload (or for a stale payload's deactivation).
    Activating,
    /// Characters flow.
    Active,
    /// Waiting for Deactivate Payload.
    Deactivating,
    /// Over; see the [`SolEnd`] event.
    Ended,
}

/// What the driver is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SolEvent {
    /// The payload is active with these sizes.
    Activated(ActivatedPayload),
    /// A payload another session had left active was deactivated first.
    TookOver,
    /// The BMC's status bits changed (break detected, overrun, transfer
    /// unavailable); NACK and SOL-inactive are handled here.
    Status(Control),
    /// The engine ended; nothing more comes.
    Ended(SolEnd),
}

/// How SOL ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SolEnd {
    /// Deactivated at our request.
    Closed,
    /// The BMC said SOL is inactive (another session took it, or SOL was
    /// turned off).
    DeactivatedByBmc,
    /// The keep-alive found the payload no longer active (BMC reset, or
    /// deactivated without telling us).
    Inactive,
    /// The keep-alive found the payload held by another session (someone
    /// took the console on the BMC and the BMC did not tell us).
    TakenElsewhere {
        /// The BMC session ID holding it now.
        session: u32,
    },
    /// It failed.
    Failed(SolError),
}

/// Why SOL failed. Each says whose doing it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolError {
    /// Peer: another session holds the payload.
    #[error("SOL payload already active on another session")]
    AlreadyActive,
    /// Peer: a request was refused.
    #[error("BMC refused {stage}: {code}")]
    Refused {
        /// The request.
        stage: &'static str,
        /// Its completion code.
        code: CompletionCode,
    },
    /// Peer or network: a request went unanswered (a silent BMC).
    #[error("no answer from the BMC to {stage} after {tries} tries")]
    NoAnswer {
        /// The request.
        stage: &'static str,
        /// Datagrams sent.
        tries: u32,
    },
    /// Peer: an answer did not decode.
    #[error("malformed answer to {stage}: {error}")]
    Malformed {
        /// The request.
        stage: &'static str,
        /// Why.
        error: WireError,
    },
    /// Peer or config: SOL is offered on a port other than the session's.
    #[error(
        "the BMC asks for SOL on UDP port {payload}, not the session's port {session}; \
         SOL on a second port is not supported"
    )]
    OtherPort {
        /// The session's port.
        session: u16,
        /// The port the BMC named.
        payload: u16,
    },
    /// Peer or network: a SOL packet was never acknowledged.
    #[error("the BMC acknowledged no try of a SOL packet ({chars} characters lost)")]
    Unacknowledged {
        /// Characters it carried.
        chars: usize,
    },
}

/// The request the engine waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Config,
    Activate,
    DeactivateStale,
    Deactivate,
    KeepAlive,
    KeepAliveStatus,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Config => "Get SOL Configuration Parameters",
            Step::Activate => "Activate Payload",
            Step::DeactivateStale | Step::Deactivate => "Deactivate Payload",
            Step::KeepAlive => "Get Payload Instance Info (keep-alive)",
            Step::KeepAliveStatus => "Get Payload Activation Status (keep-alive)",
        }
    }
}

/// SOL on one session, driven like [`Exchange`]: feed datagrams and time,
/// send what [`poll_transmit`](Self::poll_transmit) returns, write
/// keystrokes with [`write`](Self::write), read host output with
/// [`read`](Self::read) after each datagram, and watch
/// [`poll_event`](Self::poll_event). Output not read stays in a bounded
/// queue; once it is full the BMC is NACKed and sends again after its
/// retry interval, so a slow reader slows the host instead of losing
/// characters.
///
/// The engine owns the session while it runs (it needs the session's one
/// outstanding request for its own); [`into_session`](Self::into_session)
/// gives it back, to close it.
pub struct SolConsole {
    session: Box<ActiveSession>,
    cfg: SolConfig,
    state: SolState,
    request: Option<(Step, Exchange)>,
    link: Option<SolLink>,
    retry: SolRetry,
    took_over: bool,
    /// The BMC refused Get Payload Instance Info: keep-alives ask for the
    /// activation status instead.
    no_instance_info: bool,
    last_heard: Instant,
    status: u8,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<SolEvent>,
}

impl std::fmt::Debug for SolConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolConsole")
            .field("state", &self.state)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Status bits the driver hears about.
const REPORTED_STATUS: u8 =
    Control::BREAK_DETECTED | Control::OVERRUN | Control::TRANSFER_UNAVAILABLE;

impl SolConsole {
    /// Begins SOL on `session` at `now`: its first request waits in
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn start(session: Box<ActiveSession>, cfg: SolConfig, now: Instant) -> SolConsole {
        let mut sol = SolConsole {
            session,
            cfg,
            state: SolState::Configuring,
            request: None,
            link: None,
            retry: SolRetry {
                count: DEFAULT_SOL_RETRIES as u8,
                interval: DEFAULT_RETRY_INTERVAL,
            },
            took_over: false,
            no_instance_info: false,
            last_heard: now,
            status: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        match cfg.retry {
            Some(r) => {
                sol.retry = r;
                sol.begin(Step::Activate, now);
            }
            None => sol.begin(Step::Config, now),
        }
        sol
    }

    /// Where the engine is.
    pub fn state(&self) -> SolState {
        self.state
    }

    /// The session, for its suite and IDs.
    pub fn session(&self) -> &ActiveSession {
        &self.session
    }

    /// The session back, once the engine is over or abandoned.
    pub fn into_session(self) -> Box<ActiveSession> {
        self.session
    }

    /// The SOL retry parameters in use.
    pub fn retry(&self) -> SolRetry {
        self.retry
    }

    /// Link counters (zero before activation).
    pub fn link_stats(&self) -> LinkStats {
        self.link.as_ref().map(SolLink::stats).unwrap_or_default()
    }

    /// Queues keystrokes; returns how many were taken (none unless
    /// active, fewer when the queue is full).
    pub fn write(&mut self, now: Instant, bytes: &[u8]) -> usize {
        let Some(link) = self.link.as_mut() else {
            return 0;
        };
        let n = link.write(bytes);
        self.flush(now);
        n
    }

    /// Characters the keystroke queue takes now.
    pub fn room(&self) -> usize {
        self.link.as_ref().map_or(0, SolLink::room)
    }

    /// Asks the BMC for a break on the host's serial line.
    pub fn send_break(&mut self, now: Instant) {
        self.send_operation(now, Control::GENERATE_BREAK);
    }

    /// Sends operation bits (break, ring, CTS pause, DCD/DSR drop,
    /// flushes: the `Control` constants toward a BMC) in the next packet,
    /// which is acknowledged and re-sent like characters. NACK is the
    /// engine's own and is not sent from here.
    pub fn send_operation(&mut self, now: Instant, bits: u8) {
        if let Some(link) = self.link.as_mut() {
            link.request_ops(bits & !Control::NACK);
            self.flush(now);
        }
    }

    /// Host output received so far, in order, each character once.
    pub fn read(&mut self) -> Vec<u8> {
        self.link.as_mut().map(SolLink::read).unwrap_or_default()
    }

    /// Deactivates the payload (unsent keystrokes are dropped).
    pub fn deactivate(&mut self, now: Instant) {
        if matches!(self.state, SolState::Deactivating | SolState::Ended) {
            return;
        }
        self.link = None;
        self.session.cancel_pending();
        self.begin(Step::Deactivate, now);
    }

    /// Feeds one datagram from the BMC. `Err` says why it was dropped.
    pub fn handle_datagram(&mut self, now: Instant, d: &[u8]) -> Result<(), Drop> {
        if self.state == SolState::Ended {
            return Err(Drop::UnexpectedKind);
        }
        let result = match self.session.handle_inbound(d)? {
            Inbound::Sol(bytes) => {
                self.last_heard = now;
                self.on_sol(now, &bytes)
            }
            Inbound::Reply(resp) => {
                self.last_heard = now;
                self.on_reply(now, resp)
            }
        };
        self.flush(now);
        result
    }

    /// Re-sends, gives up, or probes the BMC, as due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((step, mut ex)) = self.request.take() {
            ex.handle_timeout(&mut self.session, now);
            self.transmit.extend(ex.poll_transmit());
            match ex.poll_outcome() {
                Some(answer) => self.on_answer(step, answer, now),
                None => self.request = Some((step, ex)),
            }
        }
        if let Some(link) = self.link.as_mut() {
            if let Err(lost) = link.handle_timeout(now) {
                return self.end(SolEnd::Failed(SolError::Unacknowledged {
                    chars: lost.chars,
                }));
            }
        }
        if self.keepalive_due().is_some_and(|t| now >= t) {
            let step = if self.no_instance_info {
                Step::KeepAliveStatus
            } else {
                Step::KeepAlive
            };
            self.begin(step, now);
        }
        self.flush(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work; `None` once
    /// ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.request.as_ref().and_then(|(_, ex)| ex.poll_timeout()),
            self.link.as_ref().and_then(SolLink::poll_timeout),
            self.keepalive_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SolEvent> {
        self.events.pop_front()
    }

    // === internals ===

    fn keepalive_due(&self) -> Option<Instant> {
        (self.state == SolState::Active && self.request.is_none())
            .then(|| self.last_heard + self.cfg.keepalive)
    }

    fn begin(&mut self, step: Step, now: Instant) {
        let req = match step {
            Step::Config => GetSolConfig {
                param: param::RETRY,
            }
            .request(),
            Step::Activate => self.activate_command().request(),
            Step::DeactivateStale | Step::Deactivate => DeactivatePayload {
                instance: self.cfg.instance,
            }
            .request(),
            Step::KeepAlive => GetPayloadInstanceInfo {
                instance: self.cfg.instance,
            }
            .request(),
            Step::KeepAliveStatus => GetPayloadActivationStatus.request(),
        };
        self.state = match step {
            Step::Config => SolState::Configuring,
            Step::Activate | Step::DeactivateStale => SolState::Activating,
            Step::Deactivate => SolState::Deactivating,
            Step::KeepAlive | Step::KeepAliveStatus => self.state,
        };
        let tries = self.cfg.request_tries;
        let mut ex = Exchange::start(&mut self.session, req, tries, self.cfg.request_timeout, now);
        self.transmit.extend(ex.poll_transmit());
        self.request = Some((step, ex));
    }

    fn activate_command(&self) -> ActivatePayload {
        let suite = self.session.suite();
        ActivatePayload {
            instance: self.cfg.instance,
            encrypt: suite.confidentiality() != ConfidentialityAlgorithm::None,
            authenticate: suite.integrity() != IntegrityAlgorithm::None,
        }
    }

    fn on_reply(&mut self, now: Instant, resp: Response) -> Result<(), Drop> {
        let Some((step, mut ex)) = self.request.take() else {
            return Err(Drop::Unmatched);
        };
        if let Err(e) = ex.take_reply(resp) {
            self.request = Some((step, ex));
            return Err(e);
        }
        if let Some(answer) = ex.poll_outcome() {
            self.on_answer(step, answer, now);
        }
        Ok(())
    }

    fn on_answer(&mut self, step: Step, answer: Answer, now: Instant) {
        let resp = match answer {
            Answer::Reply(resp) => resp,
            // A BMC without SOL parameters (or one that dropped the
            // request) still gets its activation, with defaults.
            Answer::Unanswered { .. } if step == Step::Config => {
                return self.begin(Step::Activate, now)
            }
            Answer::Unanswered { tries } => {
                let stage = step.name();
                return self.end(SolEnd::Failed(SolError::NoAnswer { stage, tries }));
            }
        };
        let cc = resp.completion_code;
        match step {
            Step::Config => {
                if let Some(r) = cc
                    .is_ok()
                    .then(|| {
                        GetSolConfig {
                            param: param::RETRY,
                        }
                        .parse_response(&resp.data)
                    })
                    .and_then(Result::ok)
                    .and_then(|d| SolRetry::parse(&d).ok())
                {
                    self.retry = r;
                }
                self.begin(Step::Activate, now);
            }
            Step::Activate => self.on_activate(now, cc, &resp.data),
            Step::DeactivateStale if cc.is_ok() || cc.0 == deactivate_cc::ALREADY_INACTIVE => {
                self.took_over = true;
                self.events.push_back(SolEvent::TookOver);
                self.begin(Step::Activate, now);
            }
            Step::Deactivate if cc.is_ok() || cc.0 == deactivate_cc::ALREADY_INACTIVE => {
                self.end(SolEnd::Closed)
            }
            Step::DeactivateStale | Step::Deactivate => {
                let stage = step.name();
                self.end(SolEnd::Failed(SolError::Refused { stage, code: cc }))
            }
            Step::KeepAlive => self.on_instance_info(now, cc, &resp.data),
            // Any answer proves the BMC alive; only "not active" ends SOL.
            Step::KeepAliveStatus => match GetPayloadActivationStatus.parse_response(&resp.data) {
                Ok(st) if cc.is_ok() && !st.is_active(self.cfg.instance) => {
                    self.end(SolEnd::Inactive)
                }
                _ => {}
            },
        }
    }

    fn on_instance_info(&mut self, now: Instant, cc: CompletionCode, data: &[u8]) {
        let info = GetPayloadInstanceInfo {
            instance: self.cfg.instance,
        };
        match info.parse_response(data) {
            Ok(info) if cc.is_ok() => match info.session_id {
                0 => self.end(SolEnd::Inactive),
                id if id != self.session.bmc_session_id() => {
                    self.end(SolEnd::TakenElsewhere { session: id })
                }
                _ => {}
            },
            // Not every BMC has it: ask the other way, now and from now on.
            _ => {
                self.no_instance_info = true;
                self.begin(Step::KeepAliveStatus, now);
            }
        }
    }

    fn on_activate(&mut self, now: Instant, cc: CompletionCode, data: &[u8]) {
        let stage = Step::Activate.name();
        if cc.0 == activate_cc::ALREADY_ACTIVE {
            if self.cfg.take_over && !self.took_over {
                return self.begin(Step::DeactivateStale, now);
            }
            return self.end(SolEnd::Failed(SolError::AlreadyActive));
        }
        if !cc.is_ok() {
            return self.end(SolEnd::Failed(SolError::Refused { stage, code: cc }));
        }
        let activated = match self.activate_command().parse_response(data) {
            Ok(a) => a,
            Err(error) => return self.end(SolEnd::Failed(SolError::Malformed { stage, error })),
        };
        let session = self.cfg.session_port;
        if ![0, session, session.swap_bytes()].contains(&activated.port) {
            // Activated all the same: leave no payload behind (one try,
            // no answer awaited: the engine ends here).
            let req = DeactivatePayload {
                instance: self.cfg.instance,
            }
            .request();
            let bytes = self.session.send_request(req.netfn, req.cmd, req.data);
            self.session.cancel_pending();
            self.transmit.push_back(bytes);
            let payload = activated.port;
            return self.end(SolEnd::Failed(SolError::OtherPort { session, payload }));
        }
        self.link = Some(SolLink::new(self.link_config(&activated)));
        self.state = SolState::Active;
        self.last_heard = now;
        self.events.push_back(SolEvent::Activated(activated));
    }

    fn link_config(&self, a: &ActivatedPayload) -> LinkConfig {
        // The size counts the 4-byte header on some BMCs and not on
        // others: leave it room either way, and clamp nonsense.
        let chunk = match usize::from(a.inbound_size) {
            n @ 5.. => (n - 4).min(255),
            _ => FALLBACK_CHUNK,
        };
        LinkConfig {
            retry_interval: self.retry.interval.max(MIN_RETRY_INTERVAL),
            retries: u32::from(self.retry.count),
            max_chunk: chunk,
            send_capacity: self.cfg.send_capacity,
            receive_capacity: self.cfg.receive_capacity,
            nack_bits: Control::NACK,
        }
    }

    fn on_sol(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Drop> {
        let packet = SolPacket::parse(bytes).map_err(Drop::Wire)?;
        let Some(link) = self.link.as_mut() else {
            // Before the Activate answer (reordered) or after the end:
            // the BMC sends it again if it matters.
            return Err(Drop::UnexpectedKind);
        };
        let arrived = link.receive(now, &packet);
        if packet.seq != 0 && arrived.control.has(Control::SOL_INACTIVE) {
            self.end(SolEnd::DeactivatedByBmc);
            return Ok(());
        }
        let status = arrived.control.0 & REPORTED_STATUS & !nack_only(arrived.control);
        if status != self.status {
            self.status = status;
            self.events.push_back(SolEvent::Status(Control(status)));
        }
        Ok(())
    }

    fn flush(&mut self, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        while let Some(p) = link.poll_packet(now) {
            let sealed = self.session.seal_sol(&p.to_bytes());
            self.transmit.push_back(sealed);
        }
    }

    fn end(&mut self, why: SolEnd) {
        self.link = None;
        if self.request.take().is_some() {
            self.session.cancel_pending();
        }
        self.state = SolState::Ended;
        self.events.push_back(SolEvent::Ended(why));
    }
}

/// "Transfer unavailable" on a NACK is the NACK's reason, not a status to
/// report.
fn nack_only(c: Control) -> u8 {
    if c.has(Control::NACK) {
        Control::TRANSFER_UNAVAILABLE
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
