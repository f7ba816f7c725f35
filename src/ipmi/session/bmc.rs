//! The BMC (managed system) side of RMCP+: what a simulated BMC and the
//! local bridge put in front of their command handlers.
//!
//! One [`Endpoint`] serves one BMC: the session-less commands (Get Channel
//! Authentication Capabilities, Get Channel Cipher Suites, Get System GUID),
//! Open Session with real negotiation over the configured suites, RAKP 1-4
//! with the name-only / name-and-privilege lookup rules, an optional
//! back-off after failed logins ([`Lockout`]), and then every
//! in-session packet: integrity first, then the sequence window, then
//! decryption, then the command's minimum privilege, then the
//! [`Application`] (at once through [`Endpoint::handle_datagram`], or
//! later through [`Endpoint::receive`] and [`Endpoint::answer`] for an
//! application that waits on I/O). Idle and half-open sessions expire at
//! [`Endpoint::handle_timeout`], which the owner calls at
//! [`Endpoint::poll_timeout`]; the number of sessions is capped. With
//! [`EndpointConfig::sol`] set it also holds one SOL payload (`bmc/sol.rs`):
//! the payload commands and the holding session's SOL packets.
//!
//! [`Weaknesses`] make a test BMC vulnerable on purpose (suite 0 logins
//! with any password, anonymous login, IPMI 1.5 auth types advertised), so
//! that `ipmigw scan` has something true to find; all are off by default.
//!
//! Never does: answer a packet that failed its MAC, the window or the
//! session lookup (such packets are counted and dropped, so nothing leaks),
//! accept suite 0 (unless [`Weaknesses::suite_zero`] asks for it) or any
//! suite not configured, send a RAKP 2 HMAC for a name that is not an
//! enabled user's, or read a clock (`now` is passed in).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::console::{setup_datagram, SessionRng};
use super::window::SeqWindow;
use super::Privilege;
use crate::ipmi::cmd::name::classify;
use crate::ipmi::cmd::privilege;
use crate::ipmi::cmd::registry::{id, CommandId};
use crate::ipmi::crypto::integrity::{open, seal};
use crate::ipmi::crypto::keys::{self, RakpInputs, SessionKeys};
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::wire::asf::AsfMessage;
use crate::ipmi::wire::message::{CompletionCode, NetFn, Request, Response};
use crate::ipmi::wire::rakp::*;
use crate::ipmi::wire::rmcp::{RmcpClass, RmcpHeader};
use crate::ipmi::wire::session::{
    emit_v15_sessionless, PayloadKind, RmcpPlusPacket, SessionPacket,
};
use crate::secret::SecretBytes;

/// Default cap on sessions, half-open ones included.
pub const DEFAULT_MAX_SESSIONS: usize = 4;
/// Default idle time after which an active session is dropped.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a half-open session (Open Session done, RAKP not) may wait.
/// Short, because half-open sessions are the cheap way to fill every slot.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// The LAN channel number this endpoint reports.
pub const LAN_CHANNEL: u8 = 1;

/// One BMC user account.
#[derive(Debug, Clone)]
pub struct BmcUser {
    /// User name (1..=16 bytes).
    pub name: Vec<u8>,
    /// Password (Kuid), at most 20 bytes.
    pub password: SecretBytes,
    /// Privilege limit.
    pub privilege: Privilege,
    /// Disabled users cannot log in.
    pub enabled: bool,
}

/// How one endpoint behaves.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// System GUID (sent in RAKP 2 and Get System GUID).
    pub guid: [u8; 16],
    /// When set, Get System GUID inside a session is the application's
    /// (a front end forwards it to the BMC it stands for) and one outside
    /// a session is not answered: `guid` is then the front end's own,
    /// never to be shown as the managed system's.
    pub forward_system_guid: bool,
    /// Suites accepted in Open Session, in preference order for listings.
    pub suites: Vec<CipherSuite>,
    /// Session cap, half-open sessions included.
    pub max_sessions: usize,
    /// Idle timeout of active sessions.
    pub idle_timeout: Duration,
    /// Optional BMC key Kg.
    pub kg: Option<SecretBytes>,
    /// Back-off after failed logins; None: every login is tried.
    pub lockout: Option<Lockout>,
    /// When set, a state-changing command that repeats the session's
    /// previous one exactly (netFn, command, data) within this time is
    /// answered again without running twice. Some consoles (freeipmi's
    /// ipmipower) re-send a slow command with a new rqSeq, so a BMC cannot
    /// tell the copy from a new command; a front end that forwards slowly
    /// (the bridge) must not turn one power-off into many. Off for a BMC,
    /// where two equal commands are two commands.
    pub repeat_window: Option<Duration>,
    /// Serial over LAN: with settings, the endpoint answers the payload
    /// commands and carries SOL packets for one payload instance; without,
    /// those commands go to the application like any other.
    pub sol: Option<SolSettings>,
    /// Weaknesses given on purpose (test BMCs only); none by default.
    pub weak: Weaknesses,
}

/// Ways a test BMC is insecure on purpose, as real BMCs are: what
/// `ipmigw sim --insecure` turns on so that a scanner has something to find.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weaknesses {
    /// Cipher suite 0 (RAKP-none, no integrity, no confidentiality) is
    /// accepted and its login takes any password for a known name
    /// (CVE-2013-4782, as on ipmi_sim and many shipped BMCs).
    pub suite_zero: bool,
    /// An enabled user with the empty name logs in with RAKP 1's empty
    /// name, and auth caps report anonymous login and null user names.
    pub anonymous: bool,
    /// IPMI 1.5 authentication types advertised by auth caps (bit 0 none,
    /// 1 MD2, 2 MD5, 4 straight password); the channel then also reports
    /// IPMI 1.5 connections. Only advertised: no 1.5 session is served.
    pub v15_auth_types: u8,
    /// With `suite_zero`: a suite-0 session opens but every command in it
    /// is refused (0xD4), as on BMCs that give suite 0 no privilege. What
    /// a scanner that stops at Open Session wrongly calls vulnerable.
    pub suite_zero_no_commands: bool,
}

/// Cipher suite 0's algorithms, as Open Session carries them.
const SUITE_ZERO: AlgorithmTriple = AlgorithmTriple {
    auth: 0,
    integrity: 0,
    confidentiality: 0,
};

impl EndpointConfig {
    /// Suites 17 and 3, 4 sessions, 60 s idle timeout, no Kg, no lockout.
    pub fn new(guid: [u8; 16]) -> EndpointConfig {
        EndpointConfig {
            guid,
            forward_system_guid: false,
            suites: CipherSuite::DEFAULT.to_vec(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            kg: None,
            lockout: None,
            repeat_window: None,
            sol: None,
            weak: Weaknesses::default(),
        }
    }
}

/// Refusing logins for a while after failed ones, so that passwords cannot
/// be guessed online at packet speed.
///
/// Failed logins are the ones that guess at a secret: RAKP 1 with a name
/// that is not an enabled user's, RAKP 3 with a wrong HMAC, RAKP 3 in which
/// the console reports that RAKP 2's HMAC did not verify, and a RAKP 2
/// that no RAKP 3 answered before the half-open session expired. The last
/// is how a wrong password from ipmitool or freeipmi shows: they check
/// RAKP 2 themselves and just stop, so it counts only after
/// [`SETUP_TIMEOUT`]. Failures are counted per endpoint, not per user or
/// source: a spoofed name or address must not open a fresh budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failed logins in a row (since the last success) before the first
    /// back-off (0 acts as 1).
    pub after_failures: u32,
    /// The first back-off; each further failure doubles it.
    pub base: Duration,
    /// The longest back-off.
    pub max: Duration,
}

impl Lockout {
    /// How long logins are refused after `failures` failed logins in a row;
    /// None below the threshold.
    pub fn backoff(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.after_failures.max(1))?;
        let factor = 1u32.checked_shl(over).unwrap_or(u32::MAX);
        Some(self.base.saturating_mul(factor).min(self.max))
    }
}

/// The BMC behind the sessions: runs one command that passed every check.
pub trait Application {
    /// Runs `req` for a session at `privilege`; returns the completion code
    /// and response data.
    fn execute(
        &mut self,
        now: Instant,
        privilege: Privilege,
        req: &Request,
    ) -> (CompletionCode, Vec<u8>);
}

/// A datagram to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The bytes, RMCP header included.
    pub bytes: Vec<u8>,
    /// True when this refuses a login (a non-zero RMCP+ status): some BMCs
    /// stay silent instead, which a simulator may want to imitate.
    pub login_error: bool,
}

/// What one datagram asks of the endpoint's owner
/// ([`Endpoint::receive`]).
#[derive(Debug)]
pub enum Received {
    /// Send this back now.
    Reply(Outgoing),
    /// A command that passed every check, for the [`Application`]: run it,
    /// then seal the answer with [`Endpoint::answer`].
    Command(AppCommand),
}

/// A verified in-session command waiting for the application's answer.
/// Not `Clone`: it is answered once.
#[derive(Debug)]
pub struct AppCommand {
    bmc_sid: u32,
    console_sid: u32,
    privilege: Privilege,
    received_at: Instant,
    request: Request,
}

impl AppCommand {
    fn new(
        (bmc_sid, console_sid): (u32, u32),
        privilege: Privilege,
        received_at: Instant,
        request: Request,
    ) -> AppCommand {
        AppCommand {
            bmc_sid,
            console_sid,
            privilege,
            received_at,
            request,
        }
    }

    /// The request, as the console sent it.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The session's privilege when the command arrived (already checked
    /// against the command's minimum).
    pub fn privilege(&self) -> Privilege {
        self.privilege
    }
}

/// What the endpoint dropped, refused and did. Counters only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStats {
    /// Datagrams that did not parse or were of an unknown kind.
    pub malformed: u64,
    /// In-session packets for no active session.
    pub unknown_session: u64,
    /// Packets failing the MAC, decryption or the required security bits.
    pub bad_integrity: u64,
    /// Replays and out-of-window sequence numbers.
    pub out_of_window: u64,
    /// Session-less requests for commands that need a session.
    pub sessionless_refused: u64,
    /// Successful logins.
    pub logins: u64,
    /// Refused logins (unknown user, wrong password, role, suite).
    pub login_failures: u64,
    /// Open Session refused because every slot was taken.
    pub sessions_full: u64,
    /// Back-offs begun (see [`Lockout`]).
    pub lockouts: u64,
    /// Login steps refused during a back-off.
    pub locked_out: u64,
    /// Sessions closed by Close Session.
    pub closed: u64,
    /// Re-sent requests answered again without running them twice.
    pub resends_answered: u64,
    /// Sessions dropped for idleness (or half-open too long).
    pub expired: u64,
    /// Commands answered inside sessions.
    pub commands: u64,
    /// Commands refused for insufficient privilege.
    pub privilege_refused: u64,
    /// Authentic SOL packets taken for the active payload.
    pub sol_packets: u64,
    /// SOL packets of a session that holds no payload, or malformed.
    pub sol_refused: u64,
    /// SOL payload activations.
    pub sol_activations: u64,
}

struct Session {
    console_sid: u32,
    /// The suite whose packet format the session uses; a suite-0 session
    /// uses suite 1's (no integrity, no confidentiality).
    suite: CipherSuite,
    /// Suite 0: no RAKP auth codes are made or checked.
    zero: bool,
    /// Privilege asked for in Open Session (0 = highest available).
    open_privilege: u8,
    last_activity: Instant,
    stage: Stage,
}

enum Stage {
    ExpectRakp1,
    ExpectRakp3(Rakp2Sent),
    Active(Box<Active>),
}

/// What a RAKP 2 committed to, which RAKP 3's HMAC must cover.
#[derive(Clone)]
struct Rakp2Sent {
    console_random: [u8; 16],
    bmc_random: [u8; 16],
    role: u8,
    user: usize,
    /// The name RAKP 1 carried.
    username: Vec<u8>,
}

impl Rakp2Sent {
    fn inputs<'a>(&'a self, console_sid: u32, bmc_sid: u32, guid: &'a [u8; 16]) -> RakpInputs<'a> {
        RakpInputs {
            console_sid,
            bmc_sid,
            console_random: &self.console_random,
            bmc_random: &self.bmc_random,
            bmc_guid: guid,
            role: self.role,
            username: &self.username,
        }
    }
}

struct Active {
    /// The RAKP 3 that activated the session and the RAKP 4 answering it,
    /// kept until the first in-session packet so that a re-sent RAKP 3 (its
    /// answer was lost) gets the same answer instead of silence.
    rakp_replay: Option<(Vec<u8>, Vec<u8>)>,
    keys: SessionKeys,
    window: SeqWindow,
    out_seq: u32,
    privilege: Privilege,
    max_privilege: Privilege,
    user: usize,
    /// The last command run and its answer (see `repeat_window`).
    last: Option<Executed>,
}

/// A command run in a session, remembered for a re-sent copy.
struct Executed {
    at: Instant,
    netfn: NetFn,
    cmd: u8,
    data: Vec<u8>,
    /// `None`: withheld ([`Endpoint::withhold`]).
    answer: Option<(CompletionCode, Vec<u8>)>,
}

/// One BMC's RMCP+ endpoint: every session of that BMC.
pub struct Endpoint {
    cfg: EndpointConfig,
    users: Vec<BmcUser>,
    sessions: HashMap<u32, Session>,
    rng: Box<dyn SessionRng>,
    stats: EndpointStats,
    /// Failed logins since the last successful one (counted only with a
    /// [`Lockout`]).
    failed_logins: u32,
    /// Logins are refused before this instant.
    locked_until: Option<Instant>,
    /// The SOL payload, while a session holds it.
    sol: Option<sol::Payload>,
    /// SOL datagrams for the payload's session, sealed.
    sol_out: VecDeque<Outgoing>,
    /// What the owner hears of SOL (bounded by `sol::MAX_EVENTS`).
    sol_events: VecDeque<sol::SolActivity>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sessions", &self.sessions.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with these users.
    pub fn new(cfg: EndpointConfig, users: Vec<BmcUser>, rng: Box<dyn SessionRng>) -> Endpoint {
        Endpoint {
            cfg,
            users,
            sessions: HashMap::new(),
            rng,
            stats: EndpointStats::default(),
            failed_logins: 0,
            locked_until: None,
            sol: None,
            sol_out: VecDeque::new(),
            sol_events: VecDeque::new(),
        }
    }

    /// Until when logins are refused, if a back-off is running at `now`.
    pub fn locked_until(&self, now: Instant) -> Option<Instant> {
        self.locked_until.filter(|t| now < *t)
    }

    /// Counts a login that guessed wrong and starts (or lengthens) the
    /// back-off once the threshold is reached.
    fn failed_guess(&mut self, now: Instant) {
        let Some(lockout) = self.cfg.lockout else {
            return;
        };
        self.failed_logins = self.failed_logins.saturating_add(1);
        if let Some(wait) = lockout.backoff(self.failed_logins) {
            self.locked_until = Some(now + wait);
            self.stats.lockouts += 1;
        }
    }

    /// Whether a login step at `now` is refused by a back-off; counts it.
    fn refused_by_lockout(&mut self, now: Instant) -> bool {
        let locked = self.locked_until(now).is_some();
        if locked {
            self.stats.locked_out += 1;
        }
        locked
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Sessions open now (half-open ones included).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Active sessions and their privilege (for state inspection).
    pub fn active_sessions(&self) -> Vec<Privilege> {
        self.sessions
            .values()
            .filter_map(|s| match &s.stage {
                Stage::Active(a) => Some(a.privilege),
                _ => None,
            })
            .collect()
    }

    /// Forgets every session, as a BMC reboot does (and with them the SOL
    /// payload, without a word to its console).
    pub fn forget_sessions(&mut self) {
        self.sessions.clear();
        self.sol_owner_gone();
    }

    /// Drops idle and stale half-open sessions.
    pub fn handle_timeout(&mut self, now: Instant) {
        let idle = self.cfg.idle_timeout;
        let before = self.sessions.len();
        let mut unanswered = 0;
        self.sessions.retain(|_, s| {
            let limit = if matches!(s.stage, Stage::Active(_)) {
                idle
            } else {
                SETUP_TIMEOUT.min(idle)
            };
            let keep = now.saturating_duration_since(s.last_activity) < limit;
            if !keep && matches!(s.stage, Stage::ExpectRakp3(_)) {
                unanswered += 1;
            }
            keep
        });
        self.stats.expired += (before - self.sessions.len()) as u64;
        for _ in 0..unanswered {
            self.failed_guess(now);
        }
        self.sol_owner_gone();
        self.sol_timeout(now);
    }

    /// When [`Endpoint::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sol = self.sol.as_ref().and_then(|p| p.link.poll_timeout());
        self.sessions
            .values()
            .map(|s| {
                let limit = if matches!(s.stage, Stage::Active(_)) {
                    self.cfg.idle_timeout
                } else {
                    SETUP_TIMEOUT.min(self.cfg.idle_timeout)
                };
                s.last_activity + limit
            })
            .chain(sol)
            .min()
    }

    /// Handles one datagram; returns the answer, if one is due. A command
    /// for the application runs at once, through `app`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        d: &[u8],
        app: &mut impl Application,
    ) -> Option<Outgoing> {
        match self.receive(now, d)? {
            Received::Reply(out) => Some(out),
            Received::Command(cmd) => {
                let (cc, data) = app.execute(now, cmd.privilege, &cmd.request);
                self.answer(cmd, cc, data)
            }
        }
    }

    /// Handles one datagram but leaves the application's commands to the
    /// caller: such a command comes back as [`Received::Command`], for an
    /// owner whose application answers later (the bridge waits on the
    /// gateway). Everything else is answered, or dropped, as in
    /// [`handle_datagram`](Self::handle_datagram).
    pub fn receive(&mut self, now: Instant, d: &[u8]) -> Option<Received> {
        let Ok((rmcp, rest)) = RmcpHeader::parse(d) else {
            self.stats.malformed += 1;
            return None;
        };
        if rmcp.is_ack || rmcp.class == RmcpClass::Oem {
            self.stats.malformed += 1;
            return None;
        }
        if rmcp.class == RmcpClass::Asf {
            return match AsfMessage::parse(rest) {
                Ok(AsfMessage::Ping { tag }) => {
                    let mut out = Vec::with_capacity(28);
                    RmcpHeader::ASF.emit(&mut out);
                    AsfMessage::pong_for(tag).emit(&mut out);
                    Some(Received::Reply(plain(out)))
                }
                _ => {
                    self.stats.malformed += 1;
                    None
                }
            };
        }
        match SessionPacket::parse(rest) {
            Ok(SessionPacket::V15(p)) if p.auth_type == 0 && p.session_id == 0 => {
                let resp = self.sessionless(p.message)?;
                let mut msg = Vec::new();
                resp.emit(&mut msg);
                let mut out = Vec::with_capacity(14 + msg.len());
                RmcpHeader::IPMI.emit(&mut out);
                emit_v15_sessionless(&msg, &mut out);
                Some(Received::Reply(plain(out)))
            }
            Ok(SessionPacket::RmcpPlus(p)) => self.rmcp_plus(now, &p),
            _ => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    fn rmcp_plus(&mut self, now: Instant, p: &RmcpPlusPacket<'_>) -> Option<Received> {
        let pt = p.header.payload_type;
        let setup = !pt.encrypted && !pt.authenticated && p.header.session_id == 0;
        let reply = match pt.kind {
            PayloadKind::OPEN_SESSION_REQUEST if setup => self.open_session(now, p.payload),
            PayloadKind::RAKP1 if setup => self.rakp1(now, p.payload),
            PayloadKind::RAKP3 if setup => self.rakp3(now, p.payload),
            PayloadKind::IPMI if setup => {
                let resp = self.sessionless(p.payload)?;
                let mut msg = Vec::new();
                resp.emit(&mut msg);
                Some(plain(setup_datagram(PayloadKind::IPMI, &msg)))
            }
            PayloadKind::IPMI => return self.in_session(now, p),
            PayloadKind::SOL if !setup => {
                self.sol_datagram(now, p);
                None
            }
            _ => {
                self.stats.malformed += 1;
                None
            }
        };
        reply.map(Received::Reply)
    }

    // === session-less commands ===

    fn sessionless(&mut self, msg: &[u8]) -> Option<Response> {
        let Ok(req) = Request::parse(msg) else {
            self.stats.malformed += 1;
            return None;
        };
        let answer = match CommandId::new(req.netfn, req.cmd) {
            id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES => auth_caps(&self.cfg, &req.data),
            id::GET_CHANNEL_CIPHER_SUITES => cipher_suites(&self.cfg, &req.data),
            id::GET_SYSTEM_GUID if !self.cfg.forward_system_guid => {
                (CompletionCode::OK, self.cfg.guid.to_vec())
            }
            _ => {
                self.stats.sessionless_refused += 1;
                return None;
            }
        };
        Some(req.response(answer.0, answer.1))
    }

    // === session setup ===

    fn open_session(&mut self, now: Instant, payload: &[u8]) -> Option<Outgoing> {
        let Ok(req) = OpenSessionRequest::parse(payload) else {
            self.stats.malformed += 1;
            return None;
        };
        let (resp, refused) = match self.admit_open(now, &req) {
            Ok((suite, zero, level, bmc_sid)) => (
                OpenSessionResponse {
                    tag: req.tag,
                    status: RmcpPlusStatus::OK,
                    console_sid: Some(req.console_sid),
                    accepted: Some(OpenSessionAccepted {
                        max_privilege: level.level(),
                        bmc_sid,
                        algorithms: if zero { SUITE_ZERO } else { suite.algorithms() },
                    }),
                },
                false,
            ),
            Err(status) => (
                OpenSessionResponse {
                    tag: req.tag,
                    status,
                    console_sid: Some(req.console_sid),
                    accepted: None,
                },
                true,
            ),
        };
        Some(setup_reply(
            PayloadKind::OPEN_SESSION_RESPONSE,
            |o| resp.emit(o),
            refused,
        ))
    }

    /// Decides an Open Session request: the suite, the privilege granted
    /// and the session it opens, or the status it is refused with.
    fn admit_open(
        &mut self,
        now: Instant,
        req: &OpenSessionRequest,
    ) -> Result<(CipherSuite, bool, Privilege, u32), RmcpPlusStatus> {
        // Refused rather than ignored: the tool stops at once with a status
        // that means "not now" (a busy BMC's), instead of retrying into
        // silence for many seconds and then reporting a wrong password to
        // the one who typed the right one. The answer costs no crypto and
        // tells a guesser nothing it would not learn from the silence.
        if self.refused_by_lockout(now) {
            return Err(RmcpPlusStatus::INSUFFICIENT_RESOURCES);
        }
        let zero = self.cfg.weak.suite_zero && req.algorithms == SUITE_ZERO;
        let suite = match zero {
            true => CipherSuite::Suite1,
            false => self.negotiate(req.algorithms).inspect_err(|_| {
                self.stats.login_failures += 1;
            })?,
        };
        let level = match req.max_privilege {
            0 => Privilege::Administrator,
            v => match Privilege::from_level(v) {
                Some(p) if p <= Privilege::Administrator => p,
                _ => {
                    self.stats.login_failures += 1;
                    return Err(RmcpPlusStatus::INVALID_ROLE);
                }
            },
        };
        let bmc_sid = self.half_open_session(now, req, (suite, zero))?;
        Ok((suite, zero, level, bmc_sid))
    }

    /// The half-open session for this request: the one a retransmitted
    /// request (same console SID, still half-open) already got, instead of
    /// taking another slot, or a new one while slots are free.
    fn half_open_session(
        &mut self,
        now: Instant,
        req: &OpenSessionRequest,
        (suite, zero): (CipherSuite, bool),
    ) -> Result<u32, RmcpPlusStatus> {
        let existing = self.sessions.iter().find(|(_, s)| {
            s.console_sid == req.console_sid && matches!(s.stage, Stage::ExpectRakp1)
        });
        if let Some((id, _)) = existing {
            return Ok(*id);
        }
        self.handle_timeout(now);
        if self.sessions.len() >= self.cfg.max_sessions {
            self.stats.sessions_full += 1;
            return Err(RmcpPlusStatus::INSUFFICIENT_RESOURCES);
        }
        let id = self.new_session_id();
        self.sessions.insert(
            id,
            Session {
                console_sid: req.console_sid,
                suite,
                zero,
                open_privilege: req.max_privilege,
                last_activity: now,
                stage: Stage::ExpectRakp1,
            },
        );
        Ok(id)
    }

    /// Picks the proposed suite if configured; otherwise says which part of
    /// the triple matched nothing (reference §2.7).
    fn negotiate(&self, t: AlgorithmTriple) -> Result<CipherSuite, RmcpPlusStatus> {
        if let Some(s) = CipherSuite::from_algorithms(t).filter(|s| self.cfg.suites.contains(s)) {
            return Ok(s);
        }
        let ours: Vec<AlgorithmTriple> = self.cfg.suites.iter().map(|s| s.algorithms()).collect();
        Err(if !ours.iter().any(|a| a.auth == t.auth) {
            RmcpPlusStatus::INVALID_AUTH_ALGORITHM
        } else if !ours
            .iter()
            .any(|a| a.auth == t.auth && a.integrity == t.integrity)
        {
            RmcpPlusStatus::INVALID_INTEGRITY_ALGORITHM
        } else if !ours.iter().any(|a| a.confidentiality == t.confidentiality) {
            RmcpPlusStatus::INVALID_CONFIDENTIALITY_ALGORITHM
        } else {
            RmcpPlusStatus::NO_CIPHER_SUITE_MATCH
        })
    }

    fn new_session_id(&mut self) -> u32 {
        loop {
            let id = self.rng.next_u32();
            if id != 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    fn rakp1(&mut self, now: Instant, payload: &[u8]) -> Option<Outgoing> {
        // Look at the name length before parsing, so that an over-long name
        // gets its proper status instead of silence.
        let (tag, bmc_sid) = match payload {
            [tag, _, _, _, a, b, c, d, ..] => (*tag, u32::from_le_bytes([*a, *b, *c, *d])),
            _ => {
                self.stats.malformed += 1;
                return None;
            }
        };
        let Some(session) = self.sessions.get(&bmc_sid) else {
            return Some(self.rakp2_refusal(tag, 0, RmcpPlusStatus::INVALID_SESSION_ID));
        };
        let console_sid = session.console_sid;
        if payload
            .get(27)
            .is_some_and(|n| usize::from(*n) > MAX_USERNAME_LEN)
        {
            self.sessions.remove(&bmc_sid);
            return Some(self.rakp2_refusal(tag, console_sid, RmcpPlusStatus::INVALID_NAME_LENGTH));
        }
        let Ok(r1) = Rakp1::parse(payload) else {
            self.stats.malformed += 1;
            return None;
        };
        if matches!(session.stage, Stage::Active(_)) {
            self.stats.malformed += 1;
            return None;
        }
        // A session opened before the back-off began gets no RAKP 2 during it.
        if self.locked_until(now).is_some() {
            self.stats.locked_out += 1;
            self.sessions.remove(&bmc_sid);
            return Some(rakp2_error(
                tag,
                console_sid,
                RmcpPlusStatus::INSUFFICIENT_RESOURCES,
            ));
        }
        let suite = (session.suite, session.zero);
        match self.check_rakp1(session, &r1) {
            Ok(user) => Some(self.rakp2(now, tag, (console_sid, bmc_sid), suite, user, r1)),
            Err(status) => {
                self.sessions.remove(&bmc_sid);
                // A name no enabled user has is a guess; a known name with
                // the wrong role or lookup is a misconfigured tool.
                if !self
                    .users
                    .iter()
                    .any(|u| u.enabled && u.name == r1.username)
                {
                    self.failed_guess(now);
                }
                Some(self.rakp2_refusal(tag, console_sid, status))
            }
        }
    }

    /// Answers an acceptable RAKP 1 and remembers what the answer committed to.
    fn rakp2(
        &mut self,
        now: Instant,
        tag: u8,
        (console_sid, bmc_sid): (u32, u32),
        (suite, zero): (CipherSuite, bool),
        user: usize,
        r1: Rakp1,
    ) -> Outgoing {
        let mut bmc_random = [0u8; 16];
        self.rng.fill_bytes(&mut bmc_random);
        let sent = Rakp2Sent {
            console_random: r1.console_random,
            bmc_random,
            role: r1.role,
            user,
            username: r1.username,
        };
        let inputs = sent.inputs(console_sid, bmc_sid, &self.cfg.guid);
        // Suite 0 proves nothing: RAKP 2 carries no auth code.
        let code = match zero {
            true => Vec::new(),
            false => keys::rakp2_auth_code(suite.auth(), &self.users[user].password, &inputs)
                .expose()
                .to_vec(),
        };
        let r2 = Rakp2 {
            tag,
            status: RmcpPlusStatus::OK,
            console_sid,
            bmc_random,
            bmc_guid: self.cfg.guid,
            auth_code: code,
        };
        if let Some(s) = self.sessions.get_mut(&bmc_sid) {
            s.last_activity = now;
            s.stage = Stage::ExpectRakp3(sent);
        }
        setup_reply(PayloadKind::RAKP2, |o| r2.emit(o), false)
    }

    /// The user a RAKP 1 may log in as, or the status refusing it.
    fn check_rakp1(&self, session: &Session, r1: &Rakp1) -> Result<usize, RmcpPlusStatus> {
        let requested =
            Privilege::from_level(r1.role & 0x0F).ok_or(RmcpPlusStatus::INVALID_ROLE)?;
        if requested > Privilege::Administrator {
            return Err(RmcpPlusStatus::INVALID_ROLE);
        }
        if session.open_privilege != 0 && requested.level() > session.open_privilege {
            return Err(RmcpPlusStatus::UNAUTHORIZED_ROLE);
        }
        if r1.username.is_empty() && !self.cfg.weak.anonymous {
            return Err(RmcpPlusStatus::UNAUTHORIZED_NAME);
        }
        let name_only = r1.role & ROLE_NAME_ONLY_LOOKUP != 0;
        let user = self
            .users
            .iter()
            .position(|u| {
                u.enabled && u.name == r1.username && (name_only || u.privilege == requested)
            })
            .ok_or(RmcpPlusStatus::UNAUTHORIZED_NAME)?;
        if self.users[user].privilege < requested {
            return Err(RmcpPlusStatus::UNAUTHORIZED_ROLE);
        }
        Ok(user)
    }

    fn rakp2_refusal(&mut self, tag: u8, console_sid: u32, status: RmcpPlusStatus) -> Outgoing {
        self.stats.login_failures += 1;
        rakp2_error(tag, console_sid, status)
    }

    fn rakp3(&mut self, now: Instant, payload: &[u8]) -> Option<Outgoing> {
        let Ok(r3) = Rakp3::parse(payload) else {
            self.stats.malformed += 1;
            return None;
        };
        let refuse = |this: &mut Endpoint, console_sid, status| {
            this.stats.login_failures += 1;
            Some(rakp4_error(r3.tag, console_sid, status))
        };
        let Some(session) = self.sessions.get(&r3.bmc_sid) else {
            return refuse(self, 0, RmcpPlusStatus::INVALID_SESSION_ID);
        };
        let sent = match &session.stage {
            Stage::ExpectRakp3(sent) => sent.clone(),
            Stage::Active(a) => {
                return match &a.rakp_replay {
                    Some((rakp3, rakp4)) if rakp3 == payload => Some(plain(rakp4.clone())),
                    _ => {
                        self.stats.malformed += 1;
                        None
                    }
                };
            }
            Stage::ExpectRakp1 => {
                self.stats.malformed += 1;
                return None;
            }
        };
        let (console_sid, suite, zero) = (session.console_sid, session.suite, session.zero);
        // A RAKP 2 sent before the back-off began buys no guess during it.
        if self.refused_by_lockout(now) {
            self.sessions.remove(&r3.bmc_sid);
            return Some(rakp4_error(
                r3.tag,
                console_sid,
                RmcpPlusStatus::INSUFFICIENT_RESOURCES,
            ));
        }
        if !r3.status.is_ok() {
            // The console gave up: RAKP 2's HMAC did not verify under its
            // password, so that password is wrong.
            self.sessions.remove(&r3.bmc_sid);
            self.stats.login_failures += 1;
            self.failed_guess(now);
            return None;
        }
        let inputs = sent.inputs(console_sid, r3.bmc_sid, &self.cfg.guid);
        let password = &self.users[sent.user].password;
        if !zero && !keys::verify_rakp3(suite.auth(), password, &inputs, &r3.auth_code) {
            self.sessions.remove(&r3.bmc_sid);
            self.failed_guess(now);
            return refuse(self, console_sid, RmcpPlusStatus::INVALID_INTEGRITY_CHECK);
        }
        let keys = SessionKeys::derive(suite, password, self.cfg.kg.as_ref(), &inputs);
        let icv = match zero {
            true => Vec::new(),
            false => keys.rakp4_icv(&inputs),
        };
        let r4 = Rakp4 {
            tag: r3.tag,
            status: RmcpPlusStatus::OK,
            console_sid,
            icv,
        };
        let reply = setup_reply(PayloadKind::RAKP4, |o| r4.emit(o), false);
        self.establish(now, r3.bmc_sid, &sent, keys, (payload, &reply));
        Some(reply)
    }

    /// Turns a session whose RAKP 3 verified into an established one.
    fn establish(
        &mut self,
        now: Instant,
        bmc_sid: u32,
        sent: &Rakp2Sent,
        keys: SessionKeys,
        (rakp3, rakp4): (&[u8], &Outgoing),
    ) {
        let max_privilege = Privilege::from_level(sent.role & 0x0F)
            .unwrap_or(Privilege::User)
            .min(self.users[sent.user].privilege);
        if let Some(s) = self.sessions.get_mut(&bmc_sid) {
            s.last_activity = now;
            s.stage = Stage::Active(Box::new(Active {
                rakp_replay: Some((rakp3.to_vec(), rakp4.bytes.clone())),
                keys,
                window: SeqWindow::new(),
                out_seq: 0,
                // Sessions start at USER (or lower) until raised.
                privilege: max_privilege.min(Privilege::User),
                max_privilege,
                user: sent.user,
                last: None,
            }));
        }
        self.stats.logins += 1;
        self.failed_logins = 0;
        self.locked_until = None;
    }

    // === established sessions ===

    fn in_session(&mut self, now: Instant, p: &RmcpPlusPacket<'_>) -> Option<Received> {
        let bmc_sid = p.header.session_id;
        // Out of the table while it runs, so that a command may look at the
        // other sessions (Close Session names one).
        let Some(mut session) = self.sessions.remove(&bmc_sid) else {
            self.stats.unknown_session += 1;
            return None;
        };
        let (out, close) = self.session_command(now, bmc_sid, &mut session, p);
        if close != Some(bmc_sid) {
            self.sessions.insert(bmc_sid, session);
        } else {
            self.stats.closed += 1;
        }
        if let Some(id) = close.filter(|id| *id != bmc_sid) {
            if self.sessions.remove(&id).is_some() {
                self.stats.closed += 1;
            }
        }
        // A BMC tears SOL down with the session that held it (§24.2).
        self.sol_owner_gone();
        self.sol_flush(now);
        out
    }

    /// Close Session for the session id in `data`: its own session, any
    /// as ADMINISTRATOR, or another session of the same user (a client
    /// closing what it left open before a crash). Also says which to close.
    fn close_request(
        &self,
        bmc_sid: u32,
        a: &Active,
        data: &[u8],
    ) -> ((CompletionCode, Vec<u8>), Option<u32>) {
        let Some(id) = data.get(..4) else {
            return ((CompletionCode::REQUEST_LENGTH_INVALID, vec![]), None);
        };
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        let owner = self.sessions.get(&id).and_then(|s| match &s.stage {
            Stage::Active(o) => Some(o.user),
            _ => None,
        });
        let allowed = id == bmc_sid
            || (id != 0 && a.privilege >= Privilege::Administrator)
            || owner == Some(a.user);
        if allowed {
            ((CompletionCode::OK, vec![]), Some(id))
        } else {
            ((CompletionCode(0x87), vec![]), None)
        }
    }

    /// One command in `session`: answered here unless it is the
    /// application's; also says which session to close.
    fn session_command(
        &mut self,
        now: Instant,
        bmc_sid: u32,
        session: &mut Session,
        p: &RmcpPlusPacket<'_>,
    ) -> (Option<Received>, Option<u32>) {
        let active_count = self.sessions.len() + 1;
        let max_sessions = self.cfg.max_sessions;
        let console_sid = session.console_sid;
        let Stage::Active(a) = &mut session.stage else {
            self.stats.unknown_session += 1;
            return (None, None);
        };
        let Some(req) = self
            .stats
            .checked_request(a, p, (&mut session.last_activity, now))
        else {
            return (None, None);
        };
        let mut close = None;
        let (cc, data) = match CommandId::new(req.netfn, req.cmd) {
            _ if session.zero && self.cfg.weak.suite_zero_no_commands => {
                self.stats.privilege_refused += 1;
                (CompletionCode::INSUFFICIENT_PRIVILEGE, vec![])
            }
            _ if privilege::required(req.netfn, req.cmd, &req.data)
                .is_some_and(|p| a.privilege < p) =>
            {
                self.stats.privilege_refused += 1;
                (CompletionCode::INSUFFICIENT_PRIVILEGE, vec![])
            }
            id::SET_SESSION_PRIVILEGE_LEVEL => set_privilege(a, &req.data),
            id::CLOSE_SESSION => {
                let (answer, id) = self.close_request(bmc_sid, a, &req.data);
                close = id;
                answer
            }
            id::GET_SESSION_INFO => (
                CompletionCode::OK,
                session_info(max_sessions, active_count, a),
            ),
            id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES => auth_caps(&self.cfg, &req.data),
            id::GET_CHANNEL_CIPHER_SUITES => cipher_suites(&self.cfg, &req.data),
            id::GET_SYSTEM_GUID if !self.cfg.forward_system_guid => {
                (CompletionCode::OK, self.cfg.guid.to_vec())
            }
            id::ACTIVATE_PAYLOAD if self.cfg.sol.is_some_and(|s| s.owner_decides) => {
                match self.activate_refusal(a, &req.data) {
                    Some(refusal) => refusal,
                    None => {
                        let cmd = AppCommand::new((bmc_sid, console_sid), a.privilege, now, req);
                        return (Some(Received::Command(cmd)), None);
                    }
                }
            }
            cmd if self.cfg.sol.is_some() && sol::is_sol_command(cmd) => {
                self.sol_command(bmc_sid, console_sid, a, &req)
            }
            _ => match a.last.as_ref().filter(|l| {
                self.cfg
                    .repeat_window
                    .is_some_and(|w| l.repeats(now, w, &req))
            }) {
                Some(l) => {
                    self.stats.resends_answered += 1;
                    match l.answer.clone() {
                        Some(answer) => answer,
                        // The first copy was withheld: so is this one.
                        None => return (None, None),
                    }
                }
                None => {
                    let cmd = AppCommand::new((bmc_sid, console_sid), a.privilege, now, req);
                    return (Some(Received::Command(cmd)), None);
                }
            },
        };
        let out = seal_response(&mut *self.rng, a, console_sid, &req, cc, data);
        (Some(Received::Reply(out)), close)
    }

    /// Seals the application's answer to `cmd` in its session. `None` when
    /// that session ended meanwhile (closed, expired, forgotten): the
    /// answer then goes nowhere.
    pub fn answer(
        &mut self,
        cmd: AppCommand,
        cc: CompletionCode,
        data: Vec<u8>,
    ) -> Option<Outgoing> {
        let session = self.sessions.get_mut(&cmd.bmc_sid)?;
        // The same ID handed to a new session since would be another
        // console's: its console session ID tells them apart.
        if session.console_sid != cmd.console_sid {
            return None;
        }
        let Stage::Active(a) = &mut session.stage else {
            return None;
        };
        if self.cfg.repeat_window.is_some() {
            a.last = Some(Executed::of(&cmd, Some((cc, data.clone()))));
        }
        Some(seal_response(
            &mut *self.rng,
            a,
            cmd.console_sid,
            &cmd.request,
            cc,
            data,
        ))
    }
}

impl Endpoint {
    /// Leaves `cmd` unanswered on purpose, as a BMC that lost it would: the
    /// console times out and reports a failure. For a front end whose
    /// console ignores completion codes where a refusal matters (ipmitool
    /// exits 0 from `chassis bootdev` whatever the BMC answers). Re-sent
    /// copies within the repeat window get no answer either, and are not
    /// handed to the application again.
    pub fn withhold(&mut self, cmd: AppCommand) {
        if self.cfg.repeat_window.is_none() {
            return;
        }
        let Some(session) = self.sessions.get_mut(&cmd.bmc_sid) else {
            return;
        };
        if session.console_sid != cmd.console_sid {
            return;
        }
        if let Stage::Active(a) = &mut session.stage {
            a.last = Some(Executed::of(&cmd, None));
        }
    }
}

/// The response to `req` in session `a`, under its next sequence number.
fn seal_response(
    rng: &mut dyn SessionRng,
    a: &mut Active,
    console_sid: u32,
    req: &Request,
    cc: CompletionCode,
    data: Vec<u8>,
) -> Outgoing {
    let mut msg = Vec::with_capacity(8 + data.len());
    req.response(cc, data).emit(&mut msg);
    a.out_seq = a.out_seq.wrapping_add(1).max(1);
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    let bytes = seal(
        &a.keys,
        PayloadKind::IPMI,
        console_sid,
        a.out_seq,
        &msg,
        &iv,
    );
    plain(bytes)
}

impl Executed {
    fn of(cmd: &AppCommand, answer: Option<(CompletionCode, Vec<u8>)>) -> Executed {
        Executed {
            at: cmd.received_at,
            netfn: cmd.request.netfn,
            cmd: cmd.request.cmd,
            data: cmd.request.data.clone(),
            answer,
        }
    }

    /// True when `req` is a re-sent copy of this state-changing command.
    fn repeats(&self, now: Instant, window: Duration, req: &Request) -> bool {
        now.duration_since(self.at) < window
            && (self.netfn, self.cmd) == (req.netfn, req.cmd)
            && self.data == req.data
            && classify(req.netfn, req.cmd, &req.data).state_changing
    }
}

/// Get Channel Authentication Capabilities: an IPMI 2.0-only channel.
fn auth_caps(cfg: &EndpointConfig, d: &[u8]) -> (CompletionCode, Vec<u8>) {
    let Some(&chan) = d.first() else {
        return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
    };
    if !matches!(chan & 0x0F, 0x0E | LAN_CHANNEL) {
        return (CompletionCode::INVALID_DATA_FIELD, vec![]);
    }
    // IPMI 2.0 only (unless weakened): no 1.5 auth types, non-null user
    // names only.
    let kg_set = cfg
        .kg
        .as_ref()
        .is_some_and(|k| k.expose().iter().any(|b| *b != 0));
    let v15 = cfg.weak.v15_auth_types & 0x37;
    let anonymous = if cfg.weak.anonymous { 0x03 } else { 0 };
    let status = 0x04 | anonymous | if kg_set { 0x20 } else { 0 };
    let connections = 0x02 | u8::from(v15 != 0);
    (
        CompletionCode::OK,
        vec![LAN_CHANNEL, 0x80 | v15, status, connections, 0, 0, 0, 0],
    )
}

/// Get Channel Cipher Suites: the configured suites as 16-byte chunks of
/// the record stream (reference §3.1).
/// Get Session Info's answer about the asking session.
fn session_info(max_sessions: usize, active_count: usize, a: &Active) -> Vec<u8> {
    vec![
        1,
        max_sessions as u8,
        active_count as u8,
        a.user as u8 + 1,
        a.privilege.level(),
        0x10 | LAN_CHANNEL,
    ]
}

impl EndpointStats {
    /// A packet in an active session, checked (integrity, sequence window)
    /// and parsed; `None`, counted by why, when it fails a check. A packet
    /// that passes the checks is activity (`touch`), parsed or not.
    fn checked_request(
        &mut self,
        a: &mut Active,
        p: &RmcpPlusPacket<'_>,
        touch: (&mut Instant, Instant),
    ) -> Option<Request> {
        let Ok(verified) = open(&a.keys, p) else {
            self.bad_integrity += 1;
            return None;
        };
        if a.window.accept(verified.header().seq).is_err() {
            self.out_of_window += 1;
            return None;
        }
        *touch.0 = touch.1;
        a.rakp_replay = None;
        let Ok(req) = Request::parse(verified.plaintext()) else {
            self.malformed += 1;
            return None;
        };
        self.commands += 1;
        Some(req)
    }
}

fn cipher_suites(cfg: &EndpointConfig, d: &[u8]) -> (CompletionCode, Vec<u8>) {
    if d.len() < 3 {
        return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
    }
    if !matches!(d[0] & 0x0F, 0x0E | LAN_CHANNEL) {
        return (CompletionCode::INVALID_DATA_FIELD, vec![]);
    }
    let mut stream = Vec::new();
    let zero = cfg.weak.suite_zero.then_some((0u8, SUITE_ZERO));
    let listed = cfg.suites.iter().map(|s| (s.id(), s.algorithms()));
    let listed: Vec<(u8, AlgorithmTriple)> = listed.chain(zero).collect();
    if d[2] & 0x80 != 0 {
        for (id, a) in &listed {
            stream.extend_from_slice(&[
                0xC0,
                *id,
                a.auth,
                0x40 | a.integrity,
                0x80 | a.confidentiality,
            ]);
        }
    } else {
        let mut tags: Vec<u8> = Vec::new();
        for (_, a) in &listed {
            for t in [a.auth, 0x40 | a.integrity, 0x80 | a.confidentiality] {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
        }
        stream = tags;
    }
    let start = usize::from(d[2] & 0x3F) * 16;
    let mut out = vec![LAN_CHANNEL];
    out.extend(stream.iter().skip(start).take(16));
    (CompletionCode::OK, out)
}

fn set_privilege(a: &mut Active, d: &[u8]) -> (CompletionCode, Vec<u8>) {
    let Some(&b) = d.first() else {
        return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
    };
    match b & 0x0F {
        0 => (CompletionCode::OK, vec![a.privilege.level()]),
        v => match Privilege::from_level(v) {
            Some(p) if p <= a.max_privilege && p != Privilege::Oem => {
                a.privilege = p;
                (CompletionCode::OK, vec![p.level()])
            }
            // 0x81: requested level exceeds the user's or channel's limit.
            Some(_) => (CompletionCode(0x81), vec![]),
            None => (CompletionCode::INVALID_DATA_FIELD, vec![]),
        },
    }
}

/// A RAKP 2 refusing the login: a status and no HMAC.
fn rakp2_error(tag: u8, console_sid: u32, status: RmcpPlusStatus) -> Outgoing {
    let r2 = Rakp2 {
        tag,
        status,
        console_sid,
        bmc_random: [0; 16],
        bmc_guid: [0; 16],
        auth_code: vec![],
    };
    setup_reply(PayloadKind::RAKP2, |o| r2.emit(o), true)
}

/// A RAKP 4 refusing the login: a status and no ICV.
fn rakp4_error(tag: u8, console_sid: u32, status: RmcpPlusStatus) -> Outgoing {
    let r4 = Rakp4 {
        tag,
        status,
        console_sid,
        icv: vec![],
    };
    setup_reply(PayloadKind::RAKP4, |o| r4.emit(o), true)
}

fn setup_reply(kind: PayloadKind, emit: impl FnOnce(&mut Vec<u8>), login_error: bool) -> Outgoing {
    let mut payload = Vec::with_capacity(64);
    emit(&mut payload);
    Outgoing {
        bytes: setup_datagram(kind, &payload),
        login_error,
    }
}

fn plain(bytes: Vec<u8>) -> Outgoing {
    Outgoing {
        bytes,
        login_error: false,
    }
}

mod sol;
pub use sol::{SolActivity, SolSettings};

#[cfg(test)]
pub(crate) mod tests;
