//! The console (client) side of RMCP+: the gateway logging in to a BMC and
//! then exchanging commands in the established session.
//!
//! Login order (reference §2.1, §2.7), each step a state named for what it
//! waits for: [`ExpectAuthCaps`] → [`ExpectOpenSessionResponse`] →
//! [`ExpectRakp2`] → [`ExpectRakp4`] → (if above USER)
//! [`ExpectPrivilegeResponse`] → [`ActiveSession`]. No IPMI command can be
//! sent before the RAKP 2 HMAC and the RAKP 4 ICV have verified, because only
//! `ExpectRakp4` can build an `ActiveSession`.
//!
//! One pass through those states is an attempt; [`Handshake`] runs
//! attempts on the caller's clock (per-step timeout, re-sends, restarts)
//! and says why a login that went quiet failed. The caller owns the socket
//! and the timer; it passes `now` in and sends what the handshake emits.
//!
//! Never does: propose suite 0, accept an algorithm other than the one it
//! proposed, accept a packet before its MAC verified, move the replay window
//! on an unauthenticated packet, keep a password in an error or log, or
//! read a clock.

use std::collections::VecDeque;
use std::time::Duration;

use rand::{CryptoRng, RngCore};

use super::window::{SeqWindow, WindowError};
use super::Privilege;
use crate::ipmi::cmd::app::ChannelAuthCapabilities;
use crate::ipmi::cmd::registry::id;
use crate::ipmi::crypto::integrity::{open, seal};
use crate::ipmi::crypto::keys::{self, RakpInputs, SessionKeys, MAX_PASSWORD_LEN};
use crate::ipmi::crypto::{CipherSuite, CryptoError};
use crate::ipmi::wire::message::{CompletionCode, NetFn, Request, Response};
use crate::ipmi::wire::rakp::{
    AlgorithmTriple, OpenSessionRequest, OpenSessionResponse, Rakp1, Rakp2, Rakp3, Rakp4,
    RmcpPlusStatus, MAX_USERNAME_LEN, ROLE_NAME_ONLY_LOOKUP,
};
use crate::ipmi::wire::rmcp::{RmcpClass, RmcpHeader};
use crate::ipmi::wire::session::{
    emit_v15_sessionless, PayloadKind, PayloadType, RmcpPlusHeader, RmcpPlusPacket, SessionPacket,
};
use crate::ipmi::wire::WireError;
use crate::secret::SecretBytes;

mod exchange;
mod handshake;
pub mod sol;
pub use exchange::{Answer, Exchange};
pub use handshake::Handshake;

/// Default time a login step waits for the BMC's answer.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(1);
/// Default re-sends of a login step's datagram, and restarts of a stalled
/// login.
pub const DEFAULT_RETRIES: u32 = 3;

/// A cryptographically secure RNG the session may keep.
pub trait SessionRng: RngCore + CryptoRng + Send + Sync {}
impl<T: RngCore + CryptoRng + Send + Sync> SessionRng for T {}

/// What the console needs to log in. Built by the caller, checked by
/// [`ConsoleConfig::validate`] before any packet leaves.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// BMC user name (1..=16 bytes).
    pub username: Vec<u8>,
    /// BMC password, Kuid (at most 20 bytes).
    pub password: SecretBytes,
    /// Optional BMC key Kg (at most 20 bytes).
    pub kg: Option<SecretBytes>,
    /// Privilege the session is raised to after login.
    pub privilege: Privilege,
    /// Suites to propose, best first (default 17, then 3).
    pub cipher_suites: Vec<CipherSuite>,
    /// Allows suites without integrity or confidentiality (1, 2, 15, 16).
    /// Off by default; the name says what turning it on means.
    pub insecure_allow_weak_suites: bool,
    /// How long each login step waits for its answer before its datagram
    /// is sent again.
    pub step_timeout: Duration,
    /// Re-sends of one step's datagram before the step counts as stalled;
    /// a stalled login starts over, at most `1 + retries` attempts in all.
    pub retries: u32,
}

impl ConsoleConfig {
    /// A configuration with the default suites (17, then 3), a 1 s step
    /// timeout and 3 retries.
    pub fn new(username: &[u8], password: SecretBytes, privilege: Privilege) -> ConsoleConfig {
        ConsoleConfig {
            username: username.to_vec(),
            password,
            kg: None,
            privilege,
            cipher_suites: CipherSuite::DEFAULT.to_vec(),
            insecure_allow_weak_suites: false,
            step_timeout: DEFAULT_STEP_TIMEOUT,
            retries: DEFAULT_RETRIES,
        }
    }

    /// Checks lengths and the suite list. Errors never include the secret.
    pub fn validate(&self) -> Result<(), SessionError> {
        if self.username.is_empty() {
            return Err(SessionError::EmptyUsername);
        }
        if self.username.len() > MAX_USERNAME_LEN {
            return Err(SessionError::UsernameTooLong(self.username.len()));
        }
        if self.password.len() > MAX_PASSWORD_LEN {
            return Err(SessionError::PasswordTooLong(self.password.len()));
        }
        if let Some(kg) = &self.kg {
            if kg.len() > keys::KG_LEN {
                return Err(SessionError::KgTooLong(kg.len()));
            }
        }
        if self.cipher_suites.is_empty() {
            return Err(SessionError::NoCipherSuites);
        }
        if let Some(weak) = self.cipher_suites.iter().find(|s| !s.is_secure()) {
            if !self.insecure_allow_weak_suites {
                return Err(SessionError::InsecureSuite(weak.id()));
            }
        }
        Ok(())
    }
}

/// Why a login or a session failed. Each variant says whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Config: no user name given.
    #[error("user name is empty (anonymous logins are refused)")]
    EmptyUsername,
    /// Config: user name over 16 bytes.
    #[error("user name is {0} bytes long; RMCP+ allows at most 16")]
    UsernameTooLong(usize),
    /// Config: password over 20 bytes (never truncated silently).
    #[error("password is {0} bytes long; RMCP+ allows at most 20")]
    PasswordTooLong(usize),
    /// Config: Kg over 20 bytes.
    #[error("Kg is {0} bytes long; it is at most 20")]
    KgTooLong(usize),
    /// Config: empty suite list.
    #[error("no cipher suite configured")]
    NoCipherSuites,
    /// Config: a weak suite without the insecure opt-in.
    #[error(
        "cipher suite {0} lacks integrity or confidentiality; it needs an explicit insecure opt-in"
    )]
    InsecureSuite(u8),
    /// Peer: Get Channel Authentication Capabilities failed.
    #[error("BMC refused Get Channel Authentication Capabilities: {0}")]
    AuthCapsRefused(CompletionCode),
    /// Peer: the channel does not do IPMI 2.0.
    #[error("BMC does not support IPMI 2.0 / RMCP+ on this channel")]
    NoRmcpPlus,
    /// Peer: a setup step was refused with an RMCP+ status.
    #[error("BMC refused {stage}: {status}")]
    Refused {
        /// Which message was refused.
        stage: &'static str,
        /// The status the BMC gave.
        status: RmcpPlusStatus,
    },
    /// Peer: every proposed suite was refused.
    #[error("BMC accepted none of the cipher suites {proposed:?} (last answer: {status})")]
    NoSuiteAccepted {
        /// Suites we proposed.
        proposed: Vec<u8>,
        /// The last refusal.
        status: RmcpPlusStatus,
    },
    /// Peer (or attacker): the Open Session Response changed the algorithms.
    #[error(
        "BMC answered cipher suite {proposed} with other algorithms {got:?}: downgrade refused"
    )]
    Downgrade {
        /// Suite we proposed.
        proposed: u8,
        /// What came back.
        got: AlgorithmTriple,
    },
    /// Peer: BMC session ID 0.
    #[error("BMC chose session ID 0")]
    ZeroSessionId,
    /// Peer or config: unknown user or wrong password.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    /// Peer: RAKP 4's integrity check value did not verify.
    #[error("RAKP 4 integrity check failed{0}")]
    Rakp4Invalid(&'static str),
    /// Peer or network: the BMC never answered (the first step went
    /// unanswered, or a later one on every attempt).
    #[error("no answer from the BMC after {tries} tries")]
    NoAnswer {
        /// Datagrams sent for the step that went unanswered.
        tries: u32,
    },
    /// Peer: Set Session Privilege Level refused.
    #[error("BMC refused privilege {wanted}: {code}")]
    PrivilegeRefused {
        /// The level asked for.
        wanted: Privilege,
        /// The completion code.
        code: CompletionCode,
    },
}

/// What one datagram did to an attempt.
#[derive(Debug)]
enum Progress {
    /// Send this datagram and wait for the next one.
    Send(Vec<u8>),
    /// The session is up; no more login packets.
    Established(Box<ActiveSession>),
    /// The datagram did not belong to this login (stale, foreign, malformed)
    /// and was dropped; keep waiting.
    Ignored(Drop),
}

/// A fatal login error, with the datagram to send the BMC on the way out
/// (RAKP 3 with an error status, so that it frees the half-open session).
#[derive(Debug)]
pub struct LoginFailure {
    /// What went wrong.
    pub error: SessionError,
    /// A last datagram to send, if any.
    pub farewell: Option<Vec<u8>>,
}

impl From<SessionError> for LoginFailure {
    fn from(error: SessionError) -> Self {
        LoginFailure {
            error,
            farewell: None,
        }
    }
}

/// Why an incoming datagram was dropped without effect. `Copy`, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Drop {
    /// Malformed bytes.
    #[error("malformed: {0}")]
    Wire(WireError),
    /// Not an IPMI-class RMCP message of the kind expected now.
    #[error("unexpected packet kind")]
    UnexpectedKind,
    /// Addressed to another session.
    #[error("wrong session ID")]
    WrongSessionId,
    /// Failed integrity or decryption.
    #[error("crypto: {0}")]
    Crypto(CryptoError),
    /// Outside the sequence window or replayed.
    #[error("sequence: {0}")]
    Window(WindowError),
    /// A reply that matches no outstanding request (stale or forged rqSeq).
    #[error("reply matches no outstanding request")]
    Unmatched,
    /// Stale setup message (tag or console session ID of another attempt).
    #[error("stale session-setup message")]
    Stale,
}

/// What a login is waiting for: the step a timeout finds it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStep {
    /// The Get Channel Authentication Capabilities reply.
    AuthCaps,
    /// The Open Session Response.
    OpenSession,
    /// RAKP 2, the answer to RAKP 1.
    Rakp2,
    /// RAKP 4, the answer to RAKP 3.
    Rakp4,
    /// The Set Session Privilege Level reply.
    Privilege,
}

/// One pass through the login states, from the first datagram to an
/// established session or a failure. It has no clock: [`Handshake`] decides
/// when it has waited too long.
struct Attempt {
    state: State,
    common: Common,
}

struct Common {
    cfg: ConsoleConfig,
    rng: Box<dyn SessionRng>,
    suites_left: VecDeque<CipherSuite>,
    kg_required_by_bmc: bool,
    tag: u8,
}

enum State {
    AuthCaps(ExpectAuthCaps),
    OpenSession(ExpectOpenSessionResponse),
    Rakp2(ExpectRakp2),
    Rakp4(ExpectRakp4),
    Privilege(ExpectPrivilegeResponse),
    Done,
}

impl State {
    fn step(&self) -> Option<LoginStep> {
        Some(match self {
            State::AuthCaps(_) => LoginStep::AuthCaps,
            State::OpenSession(_) => LoginStep::OpenSession,
            State::Rakp2(_) => LoginStep::Rakp2,
            State::Rakp4(_) => LoginStep::Rakp4,
            State::Privilege(_) => LoginStep::Privilege,
            State::Done => return None,
        })
    }
}

/// Waiting for the Get Channel Authentication Capabilities reply.
pub struct ExpectAuthCaps {
    rq_seq: u8,
}

/// Waiting for the Open Session Response.
pub struct ExpectOpenSessionResponse {
    suite: CipherSuite,
    console_sid: u32,
}

/// Waiting for RAKP 2.
pub struct ExpectRakp2 {
    suite: CipherSuite,
    console_sid: u32,
    bmc_sid: u32,
    console_random: [u8; 16],
    role: u8,
    /// A RAKP 2 whose HMAC failed was already discarded at this step: one
    /// such can be a corrupted datagram, a second is a wrong password.
    rejected_one: bool,
}

/// Waiting for RAKP 4.
pub struct ExpectRakp4 {
    suite: CipherSuite,
    console_sid: u32,
    bmc_sid: u32,
    console_random: [u8; 16],
    bmc_random: [u8; 16],
    bmc_guid: [u8; 16],
    role: u8,
    /// As in [`ExpectRakp2`], for the RAKP 4 ICV.
    rejected_one: bool,
}

/// Waiting for the Set Session Privilege Level reply, inside the session.
pub struct ExpectPrivilegeResponse {
    session: Box<ActiveSession>,
}

impl Attempt {
    /// Validates `cfg` and returns the attempt with its first datagram.
    fn start(
        cfg: ConsoleConfig,
        mut rng: Box<dyn SessionRng>,
    ) -> Result<(Attempt, Vec<u8>), SessionError> {
        cfg.validate()?;
        let rq_seq = (rng.next_u32() & 0x3F) as u8;
        let caps = id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES;
        let req = Request::to_bmc(
            caps.netfn,
            caps.cmd,
            rq_seq,
            // bit 7: IPMI 2.0 extended data; channel 0xE = this one.
            vec![0x8E, cfg.privilege.level()],
        );
        let mut msg = Vec::with_capacity(req.buffer_len());
        req.emit(&mut msg);
        let mut out = Vec::with_capacity(4 + 10 + msg.len());
        RmcpHeader::IPMI.emit(&mut out);
        emit_v15_sessionless(&msg, &mut out);
        let suites_left = cfg.cipher_suites.iter().copied().collect();
        let tag = (rng.next_u32() & 0xFF) as u8;
        Ok((
            Attempt {
                state: State::AuthCaps(ExpectAuthCaps { rq_seq }),
                common: Common {
                    cfg,
                    rng,
                    suites_left,
                    kg_required_by_bmc: false,
                    tag,
                },
            },
            out,
        ))
    }

    /// The step it waits in; `None` once it ended.
    fn step(&self) -> Option<LoginStep> {
        self.state.step()
    }

    /// What the next attempt starts from: the same configuration and RNG.
    fn into_parts(self) -> (ConsoleConfig, Box<dyn SessionRng>) {
        (self.common.cfg, self.common.rng)
    }

    /// Feeds one datagram from the BMC.
    fn handle(&mut self, datagram: &[u8]) -> Result<Progress, LoginFailure> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let c = &mut self.common;
        let (next, progress) = match state {
            State::AuthCaps(s) => s.handle(c, datagram)?,
            State::OpenSession(s) => s.handle(c, datagram)?,
            State::Rakp2(s) => s.handle(c, datagram)?,
            State::Rakp4(s) => s.handle(c, datagram)?,
            State::Privilege(s) => s.handle(c, datagram)?,
            State::Done => (State::Done, Progress::Ignored(Drop::UnexpectedKind)),
        };
        self.state = next;
        Ok(progress)
    }
}

impl Common {
    fn next_tag(&mut self) -> u8 {
        self.tag = self.tag.wrapping_add(1);
        self.tag
    }

    fn role(&self) -> u8 {
        self.cfg.privilege.level() | ROLE_NAME_ONLY_LOOKUP
    }

    /// Builds an Open Session Request for the next suite to try.
    fn open_session(&mut self) -> Option<(ExpectOpenSessionResponse, Vec<u8>)> {
        let suite = self.suites_left.pop_front()?;
        let console_sid = loop {
            let sid = self.rng.next_u32();
            if sid != 0 {
                break sid;
            }
        };
        let req = OpenSessionRequest {
            tag: self.next_tag(),
            // An explicit level, the same as in RAKP 1: BMCs that hash the
            // Open Session privilege (FreeIPMI "opensesspriv", ipmi_sim)
            // then agree with those that hash RAKP 1's (reference §2.6).
            max_privilege: self.cfg.privilege.level(),
            console_sid,
            algorithms: suite.algorithms(),
        };
        let mut payload = Vec::with_capacity(OpenSessionRequest::LEN);
        req.emit(&mut payload);
        Some((
            ExpectOpenSessionResponse { suite, console_sid },
            setup_datagram(PayloadKind::OPEN_SESSION_REQUEST, &payload),
        ))
    }
}

type Step = Result<(State, Progress), LoginFailure>;

impl ExpectAuthCaps {
    fn handle(self, c: &mut Common, d: &[u8]) -> Step {
        let msg = match v15_message(d) {
            Ok(m) => m,
            Err(drop) => return Ok((State::AuthCaps(self), Progress::Ignored(drop))),
        };
        let resp = match Response::parse(msg) {
            Ok(r)
                if r.rq_seq == self.rq_seq
                    && r.cmd == id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES.cmd
                    && r.netfn == id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES.netfn.response() =>
            {
                r
            }
            Ok(_) => return Ok((State::AuthCaps(self), Progress::Ignored(Drop::Unmatched))),
            Err(e) => return Ok((State::AuthCaps(self), Progress::Ignored(Drop::Wire(e)))),
        };
        if !resp.completion_code.is_ok() {
            return Err(SessionError::AuthCapsRefused(resp.completion_code).into());
        }
        let caps = match ChannelAuthCapabilities::parse(&resp.data) {
            Ok(caps) => caps,
            Err(e) => return Ok((State::AuthCaps(self), Progress::Ignored(Drop::Wire(e)))),
        };
        if !caps.supports_ipmi_v20 {
            return Err(SessionError::NoRmcpPlus.into());
        }
        c.kg_required_by_bmc = caps.kg_set;
        let (next, bytes) = c.open_session().ok_or(SessionError::NoCipherSuites)?;
        Ok((State::OpenSession(next), Progress::Send(bytes)))
    }
}

impl ExpectOpenSessionResponse {
    fn handle(self, c: &mut Common, d: &[u8]) -> Step {
        let payload = match setup_payload(d, PayloadKind::OPEN_SESSION_RESPONSE) {
            Ok(p) => p,
            Err(drop) => return Ok((State::OpenSession(self), Progress::Ignored(drop))),
        };
        let resp = match OpenSessionResponse::parse(payload) {
            Ok(r) => r,
            Err(e) => return Ok((State::OpenSession(self), Progress::Ignored(Drop::Wire(e)))),
        };
        if resp.tag != c.tag || resp.console_sid.is_some_and(|sid| sid != self.console_sid) {
            return Ok((State::OpenSession(self), Progress::Ignored(Drop::Stale)));
        }
        let Some(accepted) = resp.accepted else {
            if resp.status.is_algorithm_refusal() {
                if let Some((next, bytes)) = c.open_session() {
                    return Ok((State::OpenSession(next), Progress::Send(bytes)));
                }
                // A full BMC answers 0x01 to every suite: say so plainly.
                if resp.status == RmcpPlusStatus::INSUFFICIENT_RESOURCES {
                    return Err(SessionError::Refused {
                        stage: "Open Session",
                        status: resp.status,
                    }
                    .into());
                }
                return Err(SessionError::NoSuiteAccepted {
                    proposed: c.cfg.cipher_suites.iter().map(|s| s.id()).collect(),
                    status: resp.status,
                }
                .into());
            }
            return Err(SessionError::Refused {
                stage: "Open Session",
                status: resp.status,
            }
            .into());
        };
        if resp.console_sid != Some(self.console_sid) {
            return Ok((State::OpenSession(self), Progress::Ignored(Drop::Stale)));
        }
        if accepted.algorithms != self.suite.algorithms() {
            // Some BMCs answer a suite they lack with another suite's
            // algorithms (seen: 17 answered with 3's). That says "not this
            // suite", never "use these": propose the next allowed suite in
            // a new Open Session; what was answered here is not taken.
            if let Some((next, bytes)) = c.open_session() {
                return Ok((State::OpenSession(next), Progress::Send(bytes)));
            }
            return Err(SessionError::Downgrade {
                proposed: self.suite.id(),
                got: accepted.algorithms,
            }
            .into());
        }
        if accepted.bmc_sid == 0 {
            return Err(SessionError::ZeroSessionId.into());
        }
        let mut console_random = [0u8; 16];
        c.rng.fill_bytes(&mut console_random);
        let rakp1 = Rakp1 {
            tag: c.next_tag(),
            bmc_sid: accepted.bmc_sid,
            console_random,
            role: c.role(),
            username: c.cfg.username.clone(),
        };
        let mut payload = Vec::with_capacity(28 + rakp1.username.len());
        rakp1.emit(&mut payload);
        Ok((
            State::Rakp2(ExpectRakp2 {
                suite: self.suite,
                console_sid: self.console_sid,
                bmc_sid: accepted.bmc_sid,
                console_random,
                role: rakp1.role,
                rejected_one: false,
            }),
            Progress::Send(setup_datagram(PayloadKind::RAKP1, &payload)),
        ))
    }
}

impl ExpectRakp2 {
    fn handle(self, c: &mut Common, d: &[u8]) -> Step {
        let payload = match setup_payload(d, PayloadKind::RAKP2) {
            Ok(p) => p,
            Err(drop) => return Ok((State::Rakp2(self), Progress::Ignored(drop))),
        };
        let r2 = match Rakp2::parse(payload) {
            Ok(r) => r,
            Err(e) => return Ok((State::Rakp2(self), Progress::Ignored(Drop::Wire(e)))),
        };
        if r2.tag != c.tag || r2.console_sid != self.console_sid {
            return Ok((State::Rakp2(self), Progress::Ignored(Drop::Stale)));
        }
        if !r2.status.is_ok() {
            return Err(rakp2_refused(r2.status));
        }
        let inputs = RakpInputs {
            console_sid: self.console_sid,
            bmc_sid: self.bmc_sid,
            console_random: &self.console_random,
            bmc_random: &r2.bmc_random,
            bmc_guid: &r2.bmc_guid,
            role: self.role,
            username: &c.cfg.username,
        };
        let alg = self.suite.auth();
        let verified = keys::verify_rakp2(alg, &c.cfg.password, &inputs, &r2.auth_code);
        if !verified && !self.rejected_one {
            // Discarded, not final: the handshake re-sends RAKP 1 when the
            // step times out, and a BMC answers it again.
            let next = ExpectRakp2 {
                rejected_one: true,
                ..self
            };
            return Ok((
                State::Rakp2(next),
                Progress::Ignored(Drop::Crypto(CryptoError::BadAuthCode)),
            ));
        }
        if !verified {
            return Err(self.wrong_password(c));
        }
        let code = keys::rakp3_auth_code(alg, &c.cfg.password, &inputs);
        let r3 = Rakp3 {
            tag: c.next_tag(),
            status: RmcpPlusStatus::OK,
            bmc_sid: self.bmc_sid,
            auth_code: code.expose().to_vec(),
        };
        let mut payload = Vec::with_capacity(8 + r3.auth_code.len());
        r3.emit(&mut payload);
        Ok((
            State::Rakp4(ExpectRakp4 {
                suite: self.suite,
                console_sid: self.console_sid,
                bmc_sid: self.bmc_sid,
                console_random: self.console_random,
                bmc_random: r2.bmc_random,
                bmc_guid: r2.bmc_guid,
                role: self.role,
                rejected_one: false,
            }),
            Progress::Send(setup_datagram(PayloadKind::RAKP3, &payload)),
        ))
    }
}

/// Why a BMC refused RAKP 1, in the words a user can act on.
fn rakp2_refused(status: RmcpPlusStatus) -> LoginFailure {
    let why = match status {
        RmcpPlusStatus::UNAUTHORIZED_NAME => "unknown or disabled user name",
        RmcpPlusStatus::UNAUTHORIZED_ROLE | RmcpPlusStatus::INVALID_ROLE => {
            "the user may not have the requested privilege"
        }
        _ => {
            return SessionError::Refused {
                stage: "RAKP 1",
                status,
            }
            .into()
        }
    };
    SessionError::AuthenticationFailed(why).into()
}

impl ExpectRakp2 {
    /// A RAKP 2 that failed verification twice: the password is wrong. The
    /// BMC is told, so it frees the half-open session at once.
    fn wrong_password(&self, c: &mut Common) -> LoginFailure {
        let r3 = Rakp3 {
            tag: c.next_tag(),
            status: RmcpPlusStatus::INVALID_INTEGRITY_CHECK,
            bmc_sid: self.bmc_sid,
            auth_code: Vec::new(),
        };
        let mut payload = Vec::new();
        r3.emit(&mut payload);
        LoginFailure {
            error: SessionError::AuthenticationFailed(
                "wrong password (or the BMC is not who it claims to be)",
            ),
            farewell: Some(setup_datagram(PayloadKind::RAKP3, &payload)),
        }
    }
}

impl ExpectRakp4 {
    fn handle(self, c: &mut Common, d: &[u8]) -> Step {
        let payload = match setup_payload(d, PayloadKind::RAKP4) {
            Ok(p) => p,
            Err(drop) => return Ok((State::Rakp4(self), Progress::Ignored(drop))),
        };
        let r4 = match Rakp4::parse(payload) {
            Ok(r) => r,
            Err(e) => return Ok((State::Rakp4(self), Progress::Ignored(Drop::Wire(e)))),
        };
        if r4.tag != c.tag || r4.console_sid != self.console_sid {
            return Ok((State::Rakp4(self), Progress::Ignored(Drop::Stale)));
        }
        if !r4.status.is_ok() {
            if r4.status == RmcpPlusStatus::INVALID_INTEGRITY_CHECK {
                return Err(SessionError::AuthenticationFailed(
                    "the BMC rejected our RAKP 3 (wrong password?)",
                )
                .into());
            }
            return Err(SessionError::Refused {
                stage: "RAKP 3",
                status: r4.status,
            }
            .into());
        }
        let inputs = RakpInputs {
            console_sid: self.console_sid,
            bmc_sid: self.bmc_sid,
            console_random: &self.console_random,
            bmc_random: &self.bmc_random,
            bmc_guid: &self.bmc_guid,
            role: self.role,
            username: &c.cfg.username,
        };
        let keys = SessionKeys::derive(self.suite, &c.cfg.password, c.cfg.kg.as_ref(), &inputs);
        if !keys.verify_rakp4(&inputs, &r4.icv) {
            if !self.rejected_one {
                let next = ExpectRakp4 {
                    rejected_one: true,
                    ..self
                };
                return Ok((
                    State::Rakp4(next),
                    Progress::Ignored(Drop::Crypto(CryptoError::BadAuthCode)),
                ));
            }
            let hint = match (c.kg_required_by_bmc, c.cfg.kg.is_some()) {
                (true, false) => " (the BMC reports a Kg is set and none was given)",
                (_, true) => " (wrong Kg?)",
                _ => "",
            };
            return Err(SessionError::Rakp4Invalid(hint).into());
        }
        let rng_seed = c.rng.next_u32();
        let mut session = Box::new(ActiveSession {
            keys,
            console_sid: self.console_sid,
            bmc_sid: self.bmc_sid,
            out_seq: 0,
            window: SeqWindow::new(),
            next_rq_seq: (rng_seed & 0x3F) as u8,
            pending: None,
            privilege: Privilege::User,
            rng: std::mem::replace(&mut c.rng, Box::new(rand::rngs::OsRng)),
        });
        if c.cfg.privilege <= Privilege::User {
            return Ok((State::Done, Progress::Established(session)));
        }
        let set = id::SET_SESSION_PRIVILEGE_LEVEL;
        let bytes = session.send_request(set.netfn, set.cmd, vec![c.cfg.privilege.level()]);
        Ok((
            State::Privilege(ExpectPrivilegeResponse { session }),
            Progress::Send(bytes),
        ))
    }
}

impl ExpectPrivilegeResponse {
    fn handle(mut self, c: &mut Common, d: &[u8]) -> Step {
        let resp = match self.session.handle_datagram(d) {
            Ok(r) => r,
            Err(drop) => return Ok((State::Privilege(self), Progress::Ignored(drop))),
        };
        let wanted = c.cfg.privilege;
        if !resp.completion_code.is_ok() {
            return Err(LoginFailure {
                error: SessionError::PrivilegeRefused {
                    wanted,
                    code: resp.completion_code,
                },
                farewell: Some(self.session.close_session_request()),
            });
        }
        // Some BMCs answer with the new level, some with nothing useful;
        // a level other than the one asked for is a refusal.
        match resp.data.first().and_then(|b| Privilege::from_level(*b)) {
            Some(got) if got != wanted => {
                return Err(LoginFailure {
                    error: SessionError::PrivilegeRefused {
                        wanted,
                        code: CompletionCode::INSUFFICIENT_PRIVILEGE,
                    },
                    farewell: Some(self.session.close_session_request()),
                })
            }
            _ => {}
        }
        self.session.privilege = wanted;
        Ok((State::Done, Progress::Established(self.session)))
    }
}

/// An authentic datagram of an established session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The reply to the outstanding request.
    Reply(Response),
    /// A decrypted SOL payload, not yet decoded.
    Sol(Vec<u8>),
}

/// An established, authenticated session toward one BMC. One request may be
/// outstanding at a time; replies are matched by rqSeq, netFn and command.
pub struct ActiveSession {
    keys: SessionKeys,
    console_sid: u32,
    bmc_sid: u32,
    out_seq: u32,
    window: SeqWindow,
    next_rq_seq: u8,
    pending: Option<Pending>,
    privilege: Privilege,
    rng: Box<dyn SessionRng>,
}

impl std::fmt::Debug for ActiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSession")
            .field("suite", &self.keys.suite)
            .field("bmc_sid", &format_args!("{:#010x}", self.bmc_sid))
            .field("privilege", &self.privilege)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    rq_seq: u8,
    netfn: NetFn,
    cmd: u8,
}

impl ActiveSession {
    /// The negotiated cipher suite.
    pub fn suite(&self) -> CipherSuite {
        self.keys.suite
    }

    /// The session privilege.
    pub fn privilege(&self) -> Privilege {
        self.privilege
    }

    /// The BMC's session ID (not secret; useful in logs).
    pub fn bmc_session_id(&self) -> u32 {
        self.bmc_sid
    }

    /// Our session ID: the one the BMC's packets carry.
    pub fn console_session_id(&self) -> u32 {
        self.console_sid
    }

    /// Seals a request as the one outstanding request, replacing any earlier
    /// one: a late reply to that one is then dropped as unmatched. Each call
    /// uses a fresh rqSeq and session sequence number.
    pub fn send_request(&mut self, netfn: NetFn, cmd: u8, data: Vec<u8>) -> Vec<u8> {
        let rq_seq = self.next_rq_seq;
        self.next_rq_seq = (self.next_rq_seq + 1) & 0x3F;
        let req = Request::to_bmc(netfn, cmd, rq_seq, data);
        let mut msg = Vec::with_capacity(req.buffer_len());
        req.emit(&mut msg);
        self.pending = Some(Pending { rq_seq, netfn, cmd });
        self.seal(PayloadKind::IPMI, &msg)
    }

    /// Forgets the outstanding request (the caller gave up on it).
    pub fn cancel_pending(&mut self) {
        self.pending = None;
    }

    /// True when a request is outstanding.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// A Close Session request for this session (no reply is awaited).
    pub fn close_session_request(&mut self) -> Vec<u8> {
        let data = self.bmc_sid.to_le_bytes().to_vec();
        let close = id::CLOSE_SESSION;
        let bytes = self.send_request(close.netfn, close.cmd, data);
        self.pending = None;
        bytes
    }

    /// Checks one datagram: framing, session ID, integrity, window, then the
    /// match against the outstanding request. Only a reply that passes all
    /// of them comes back; everything else is a counted [`Drop`].
    pub fn handle_datagram(&mut self, d: &[u8]) -> Result<Response, Drop> {
        // Checked before the MAC, so that a session without SOL keeps
        // refusing SOL packets as it always did.
        if rmcp_plus(d)?.header.payload_type.kind != PayloadKind::IPMI {
            return Err(Drop::UnexpectedKind);
        }
        match self.handle_inbound(d)? {
            Inbound::Reply(resp) => Ok(resp),
            Inbound::Sol(_) => Err(Drop::UnexpectedKind),
        }
    }

    /// Like [`handle_datagram`](Self::handle_datagram), and also takes SOL
    /// payloads (type 1), for a session with an active SOL payload: they
    /// pass the same session, integrity and window checks and come back
    /// decrypted, still undecoded.
    pub fn handle_inbound(&mut self, d: &[u8]) -> Result<Inbound, Drop> {
        let packet = rmcp_plus(d)?;
        let kind = packet.header.payload_type.kind;
        if kind != PayloadKind::IPMI && kind != PayloadKind::SOL {
            return Err(Drop::UnexpectedKind);
        }
        if packet.header.session_id != self.console_sid {
            return Err(Drop::WrongSessionId);
        }
        let verified = open(&self.keys, &packet).map_err(Drop::Crypto)?;
        self.window
            .accept(verified.header().seq)
            .map_err(Drop::Window)?;
        if kind == PayloadKind::SOL {
            return Ok(Inbound::Sol(verified.into_plaintext()));
        }
        let resp = Response::parse(verified.plaintext()).map_err(Drop::Wire)?;
        let Some(p) = self.pending else {
            return Err(Drop::Unmatched);
        };
        if resp.rq_seq != p.rq_seq || resp.netfn != p.netfn.response() || resp.cmd != p.cmd {
            return Err(Drop::Unmatched);
        }
        // 0xCF answers a duplicate of an earlier try; the real answer follows.
        if resp.completion_code == CompletionCode::DUPLICATED_REQUEST {
            return Err(Drop::Unmatched);
        }
        self.pending = None;
        Ok(Inbound::Reply(resp))
    }

    /// Seals one SOL packet (payload type 1) under the session's suite and
    /// next sequence number; the caller activated the payload with the
    /// same encryption and authentication.
    pub fn seal_sol(&mut self, sol_packet: &[u8]) -> Vec<u8> {
        self.seal(PayloadKind::SOL, sol_packet)
    }

    fn seal(&mut self, kind: PayloadKind, plaintext: &[u8]) -> Vec<u8> {
        // 0 is reserved for session setup: skip it on wrap (reference §5.1).
        self.out_seq = self.out_seq.wrapping_add(1).max(1);
        let mut iv = [0u8; 16];
        self.rng.fill_bytes(&mut iv);
        seal(&self.keys, kind, self.bmc_sid, self.out_seq, plaintext, &iv)
    }
}

/// A session-setup datagram: RMCP header, RMCP+ header with session 0 and
/// sequence 0, no security bits, then the payload.
pub(crate) fn setup_datagram(kind: PayloadKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + payload.len());
    RmcpHeader::IPMI.emit(&mut out);
    RmcpPlusHeader {
        payload_type: PayloadType::setup(kind),
        session_id: 0,
        seq: 0,
        payload_len: payload.len() as u16,
    }
    .emit(&mut out);
    out.extend_from_slice(payload);
    out
}

fn rmcp_plus(d: &[u8]) -> Result<RmcpPlusPacket<'_>, Drop> {
    let (rmcp, rest) = RmcpHeader::parse(d).map_err(Drop::Wire)?;
    if rmcp.class != RmcpClass::Ipmi || rmcp.is_ack {
        return Err(Drop::UnexpectedKind);
    }
    match SessionPacket::parse(rest).map_err(Drop::Wire)? {
        SessionPacket::RmcpPlus(p) => Ok(p),
        SessionPacket::V15(_) => Err(Drop::UnexpectedKind),
    }
}

fn setup_payload(d: &[u8], kind: PayloadKind) -> Result<&[u8], Drop> {
    let p = rmcp_plus(d)?;
    let pt = p.header.payload_type;
    if pt.kind != kind || pt.encrypted || pt.authenticated || p.header.session_id != 0 {
        return Err(Drop::UnexpectedKind);
    }
    Ok(p.payload)
}

fn v15_message(d: &[u8]) -> Result<&[u8], Drop> {
    let (rmcp, rest) = RmcpHeader::parse(d).map_err(Drop::Wire)?;
    if rmcp.class != RmcpClass::Ipmi {
        return Err(Drop::UnexpectedKind);
    }
    match SessionPacket::parse(rest).map_err(Drop::Wire)? {
        SessionPacket::V15(p) if p.auth_type == 0 && p.session_id == 0 => Ok(p.message),
        _ => Err(Drop::UnexpectedKind),
    }
}

#[cfg(test)]
mod tests;

/// Internals for fuzz targets only: an established session with fixed keys,
/// and a way to seal a reply to it, so fuzzing reaches the code behind the
/// MAC check. Not part of the public API.
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::*;
    use crate::ipmi::crypto::integrity;

    const RM: [u8; 16] = [1; 16];
    const RC: [u8; 16] = [2; 16];
    const GUID: [u8; 16] = [3; 16];
    /// Console session ID of the fuzz session.
    pub const CONSOLE_SID: u32 = 0x0102_0304;
    const BMC_SID: u32 = 0x0A0B_0C0D;

    fn keys(suite: CipherSuite) -> SessionKeys {
        let i = RakpInputs {
            console_sid: CONSOLE_SID,
            bmc_sid: BMC_SID,
            console_random: &RM,
            bmc_random: &RC,
            bmc_guid: &GUID,
            role: 0x14,
            username: b"fuzz",
        };
        SessionKeys::derive(suite, &SecretBytes::from(&b"fuzz"[..]), None, &i)
    }

    /// An active session with one request outstanding (Get Device ID).
    pub fn active_session(suite: CipherSuite) -> ActiveSession {
        let mut s = ActiveSession {
            keys: keys(suite),
            console_sid: CONSOLE_SID,
            bmc_sid: BMC_SID,
            out_seq: 0,
            window: SeqWindow::new(),
            next_rq_seq: 0,
            pending: None,
            privilege: Privilege::User,
            rng: Box::new(rand::rngs::OsRng),
        };
        let get = id::GET_DEVICE_ID;
        let _ = s.send_request(get.netfn, get.cmd, vec![]);
        s
    }

    /// A SOL engine on a fuzz session, started at `now` (the harness's
    /// clock: this module reads none) and already active (its Activate
    /// Payload answered with port [`SOL_PORT`]).
    pub fn sol_console(suite: CipherSuite, now: std::time::Instant) -> sol::SolConsole {
        use crate::ipmi::cmd::sol::ActivatedPayload;
        let mut session = active_session(suite);
        session.cancel_pending();
        session.next_rq_seq = 0;
        let mut cfg = sol::SolConfig::new(SOL_PORT);
        cfg.retry = Some(crate::ipmi::cmd::sol::SolRetry {
            count: 2,
            interval: std::time::Duration::from_millis(100),
        });
        let mut sol = sol::SolConsole::start(Box::new(session), cfg, now);
        let answer = ActivatedPayload {
            aux: [0; 4],
            inbound_size: 255,
            outbound_size: 255,
            port: SOL_PORT,
            vlan: None,
        };
        let act = id::ACTIVATE_PAYLOAD;
        let mut msg = Vec::new();
        Request::to_bmc(act.netfn, act.cmd, 0, vec![])
            .response(CompletionCode::OK, answer.to_bytes())
            .emit(&mut msg);
        let _ = sol.handle_datagram(now, &seal_reply(suite, 1, &msg));
        sol
    }

    /// The port the fuzz SOL engine's session talks to.
    pub const SOL_PORT: u16 = 623;

    /// Seals a SOL payload as the BMC would, for `sol_console(suite, now)`.
    pub fn seal_sol(suite: CipherSuite, seq: u32, plaintext: &[u8]) -> Vec<u8> {
        integrity::seal(
            &keys(suite),
            PayloadKind::SOL,
            CONSOLE_SID,
            seq,
            plaintext,
            &[7; 16],
        )
    }

    /// Seals `plaintext` as the BMC would, for `active_session(suite)`.
    pub fn seal_reply(suite: CipherSuite, seq: u32, plaintext: &[u8]) -> Vec<u8> {
        integrity::seal(
            &keys(suite),
            PayloadKind::IPMI,
            CONSOLE_SID,
            seq,
            plaintext,
            &[7; 16],
        )
    }
}
