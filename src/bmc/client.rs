//! The per-BMC task and its handle.
//!
//! One task owns one BMC's socket and session. Requests queue in front of
//! it (bounded); each carries a [`Ticket`] that its caller may withdraw
//! until the task commits to sending it, so that work whose caller is gone
//! (or whose deadline passed, or that shutdown cancelled) never reaches the
//! BMC. A failed login puts the BMC in back-off: until it ends, requests
//! are answered at once with [`BmcError::Unreachable`] instead of each
//! waiting out a login of its own. Logins, re-logins, logouts and lost
//! sessions are reported through [`SessionEvent`]s (the gateway audits
//! them).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info, warn};

use super::{BmcError, RawResponse, Ticket, Transact};
use crate::ipmi::cmd::app::GetDeviceId;
use crate::ipmi::cmd::name::classify;
use crate::ipmi::cmd::registry::id;
use crate::ipmi::cmd::{Command, RawRequest};
use crate::ipmi::session::console::{
    self, ActiveSession, Answer, ConsoleConfig, Drop, Exchange, Handshake, LoginFailure,
    SessionError,
};
use crate::ipmi::session::window::WindowError;

/// Default per-try timeout (the login's per-step one too).
pub const DEFAULT_TIMEOUT: Duration = console::DEFAULT_STEP_TIMEOUT;
/// Default retries of read-only commands (tries = 1 + retries), and of
/// each login step.
pub const DEFAULT_RETRIES: u32 = console::DEFAULT_RETRIES;
/// Default idle time before a keepalive (BMCs drop idle sessions at 30-60 s).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);
/// Commands that may wait behind the one in flight.
pub const DEFAULT_QUEUE_DEPTH: usize = 32;
/// First wait after a failed login; it doubles with each failure.
pub const LOGIN_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between login attempts.
pub const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Largest datagram accepted from a BMC.
const MAX_DATAGRAM_BYTES: usize = 1024;

/// Receives a BMC task's session events; called on the task, so it must
/// not block.
pub type EventSink = Arc<dyn Fn(SessionEvent) + Send + Sync>;

/// What happened to a BMC session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A session was established.
    LoggedIn {
        /// The cipher suite agreed.
        suite: u8,
        /// The BMC's id for the session (to close it after a crash).
        session_id: u32,
        /// True when it replaces a session that was lost.
        relogin: bool,
    },
    /// A login failed; the next one is tried after `retry_in`.
    LoginFailed {
        /// Why.
        error: String,
        /// The back-off.
        retry_in: Duration,
    },
    /// The BMC stopped answering in the session (it rebooted, or forgot the
    /// session); the next request logs in again.
    Lost {
        /// The BMC's id for the session given up (it may still hold a slot
        /// on the BMC: it is closed after the next login).
        session_id: u32,
        /// Why it was given up.
        reason: &'static str,
    },
    /// A session given up earlier (or left by a crashed instance) was
    /// closed through the current one, or could not be.
    StaleClosed {
        /// Its id.
        session_id: u32,
        /// Why it could not be closed, if it could not.
        error: Option<String>,
    },
    /// The session was closed by us.
    LoggedOut {
        /// The cipher suite it had.
        suite: u8,
        /// The BMC's id for the session that was closed.
        session_id: u32,
    },
}

/// How to reach and log in to one BMC.
#[derive(Clone)]
pub struct BmcConfig {
    /// UDP address (port 623 by default).
    pub addr: SocketAddr,
    /// Credentials, privilege and suites. Its `step_timeout` and `retries`
    /// are not read: `timeout` and `retries` below serve the login too, so
    /// that one BMC has one setting.
    pub console: ConsoleConfig,
    /// Per-try timeout of commands and of each login step.
    pub timeout: Duration,
    /// Retries for read-only commands and for each login step.
    pub retries: u32,
    /// Idle time before a keepalive.
    pub keepalive: Duration,
    /// Queue depth behind the command in flight.
    pub queue_depth: usize,
    /// Where session events go.
    pub events: Option<EventSink>,
}

impl std::fmt::Debug for BmcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcConfig")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl BmcConfig {
    /// Defaults: 1 s timeout, 3 retries, 20 s keepalive, 32 queued.
    pub fn new(addr: SocketAddr, console: ConsoleConfig) -> BmcConfig {
        BmcConfig {
            addr,
            console,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            keepalive: DEFAULT_KEEPALIVE,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            events: None,
        }
    }
}

/// Why datagrams were dropped, and what the task had to do about it.
#[derive(Debug, Default)]
pub struct DropStats {
    unexpected_source: AtomicU64,
    malformed: AtomicU64,
    wrong_session: AtomicU64,
    bad_integrity: AtomicU64,
    out_of_window: AtomicU64,
    unmatched: AtomicU64,
    retries: AtomicU64,
    relogins: AtomicU64,
}

/// A copy of [`DropStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropStatsSnapshot {
    /// Datagrams from an address other than the BMC's.
    pub unexpected_source: u64,
    /// Datagrams that did not parse, or of an unexpected kind.
    pub malformed: u64,
    /// Datagrams for another session.
    pub wrong_session: u64,
    /// Datagrams failing the MAC or decryption.
    pub bad_integrity: u64,
    /// Replays and sequence numbers outside the window.
    pub out_of_window: u64,
    /// Authentic replies matching no outstanding request.
    pub unmatched: u64,
    /// Re-sent read-only requests.
    pub retries: u64,
    /// Logins after the first.
    pub relogins: u64,
}

impl DropStats {
    fn count(&self, d: Drop) {
        let c = match d {
            Drop::Wire(_) | Drop::UnexpectedKind | Drop::Stale => &self.malformed,
            Drop::WrongSessionId => &self.wrong_session,
            Drop::Crypto(_) => &self.bad_integrity,
            Drop::Window(WindowError::Zero) | Drop::Window(_) => &self.out_of_window,
            Drop::Unmatched => &self.unmatched,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> DropStatsSnapshot {
        DropStatsSnapshot {
            unexpected_source: self.unexpected_source.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            wrong_session: self.wrong_session.load(Relaxed),
            bad_integrity: self.bad_integrity.load(Relaxed),
            out_of_window: self.out_of_window.load(Relaxed),
            unmatched: self.unmatched.load(Relaxed),
            retries: self.retries.load(Relaxed),
            relogins: self.relogins.load(Relaxed),
        }
    }
}

type Reply = oneshot::Sender<Result<RawResponse, BmcError>>;

enum Job {
    Request {
        req: RawRequest,
        ticket: Option<Arc<Ticket>>,
        reply: Reply,
    },
    /// Log in now unless a session is open (`connect`).
    Login(oneshot::Sender<Result<(), BmcError>>),
    /// Close another session of ours (one a crashed gateway left behind).
    CloseOther {
        session_id: u32,
        reply: oneshot::Sender<Result<(), BmcError>>,
    },
    Close,
}

/// Handle to the task that owns one BMC's socket and session. Cloning is
/// cheap; the session closes when [`BmcClient::close`] is called or the last
/// handle is dropped.
#[derive(Clone)]
pub struct BmcClient {
    addr: SocketAddr,
    jobs: mpsc::Sender<Job>,
    stats: Arc<DropStats>,
    /// The cipher suite of the current session (0 before the first login).
    suite: Arc<AtomicU8>,
    /// Set when the client is closing: queued requests are cancelled.
    closing: Arc<AtomicBool>,
    done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for BmcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl BmcClient {
    /// Binds a socket and starts the task; the first request logs in.
    pub async fn spawn(cfg: BmcConfig) -> Result<BmcClient, BmcError> {
        cfg.console.validate().map_err(|source| BmcError::Login {
            addr: cfg.addr,
            source,
        })?;
        let bind: SocketAddr = if cfg.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let addr = cfg.addr;
        let socket = UdpSocket::bind(bind)
            .await
            .map_err(|source| BmcError::io(addr, source))?;
        let stats = Arc::new(DropStats::default());
        let suite = Arc::new(AtomicU8::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(cfg.queue_depth.max(1));
        let task = Task {
            cfg,
            socket,
            session: None,
            suspect: false,
            stats: stats.clone(),
            suite: suite.clone(),
            closing: closing.clone(),
            logins: 0,
            down: None,
            lost: Vec::new(),
            buf: vec![0; MAX_DATAGRAM_BYTES],
        };
        let handle = tokio::spawn(task.run(rx));
        Ok(BmcClient {
            addr,
            jobs: tx,
            stats,
            suite,
            closing,
            done: Arc::new(tokio::sync::Mutex::new(Some(handle))),
        })
    }

    /// Binds a socket, logs in (so that credentials are checked now, not at
    /// the first command) and starts the task.
    pub async fn connect(cfg: BmcConfig) -> Result<BmcClient, BmcError> {
        let c = BmcClient::spawn(cfg).await?;
        let (tx, rx) = oneshot::channel();
        c.submit(Job::Login(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(c),
            Ok(Err(e)) => {
                c.close().await;
                Err(e)
            }
            Err(_) => Err(BmcError::Closed(c.addr)),
        }
    }

    fn submit(&self, job: Job) -> Result<(), BmcError> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BmcError::Busy(self.addr),
            mpsc::error::TrySendError::Closed(_) => BmcError::Closed(self.addr),
        })
    }

    /// Runs one request. Queued behind the command in flight; refused with
    /// [`BmcError::Busy`] when the queue is full.
    pub async fn request(&self, req: RawRequest) -> Result<RawResponse, BmcError> {
        self.request_with(req, None).await
    }

    /// Runs one request under `ticket`: withdrawn before the task commits
    /// it, the request is never sent and the answer is
    /// [`BmcError::Cancelled`].
    pub async fn request_with(
        &self,
        req: RawRequest,
        ticket: Option<Arc<Ticket>>,
    ) -> Result<RawResponse, BmcError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Request {
            req,
            ticket,
            reply: tx,
        })?;
        rx.await.map_err(|_| BmcError::Closed(self.addr))?
    }

    /// Closes another session of ours by its id (Close Session names it):
    /// one a crashed instance left holding a slot of the BMC's.
    pub async fn close_other_session(&self, session_id: u32) -> Result<(), BmcError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::CloseOther {
            session_id,
            reply: tx,
        })?;
        rx.await.map_err(|_| BmcError::Closed(self.addr))?
    }

    /// Runs a typed command; a non-zero completion code is an error.
    pub async fn execute<C: Command>(&self, cmd: &C) -> Result<C::Response, BmcError> {
        let req = cmd.request();
        let name = classify(req.netfn, req.cmd, &req.data).name.to_string();
        let resp = self.request(req).await?;
        if !resp.completion_code.is_ok() {
            return Err(BmcError::Completion {
                addr: self.addr,
                command: name,
                code: resp.completion_code,
            });
        }
        cmd.parse_response(&resp.data)
            .map_err(|source| BmcError::Malformed {
                addr: self.addr,
                command: name,
                source,
            })
    }

    /// The cipher suite the current session agreed on.
    pub fn suite(&self) -> Option<u8> {
        Some(self.suite.load(Relaxed)).filter(|s| *s != 0)
    }

    /// Drop counters.
    pub fn stats(&self) -> DropStatsSnapshot {
        self.stats.snapshot()
    }

    /// The BMC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking work: requests still queued whose tickets can be
    /// withdrawn are answered [`BmcError::Cancelled`]; the one in flight
    /// finishes.
    pub fn begin_close(&self) {
        self.closing.store(true, Relaxed);
    }

    /// Sends Close Session and stops the task; queued requests that were
    /// not committed are cancelled. Waits at most `limit` (then the task is
    /// stopped, whatever it was doing, so nothing reaches the BMC after).
    pub async fn close_within(self, limit: Duration) {
        self.begin_close();
        let handle = self.done.lock().await.take();
        if let Some(mut h) = handle {
            let _ = self.jobs.try_send(Job::Close);
            if tokio::time::timeout(limit, &mut h).await.is_err() {
                h.abort();
                let _ = h.await;
            }
        }
    }

    /// [`close_within`](Self::close_within) a few per-try timeouts.
    pub async fn close(self) {
        self.close_within(Duration::from_secs(5)).await
    }
}

impl Transact for BmcClient {
    async fn transact(&self, req: RawRequest) -> Result<RawResponse, BmcError> {
        self.request(req).await
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A login failure and when the next login may be tried.
struct Down {
    until: Instant,
    failures: u32,
    last: BmcError,
}

struct Task {
    cfg: BmcConfig,
    socket: UdpSocket,
    session: Option<Box<ActiveSession>>,
    /// A state-changing command's outcome was lost: probe before trusting
    /// the session again.
    suspect: bool,
    stats: Arc<DropStats>,
    suite: Arc<AtomicU8>,
    closing: Arc<AtomicBool>,
    logins: u64,
    /// Set while logins are backing off after a failure.
    down: Option<Down>,
    /// Sessions given up since the last login, to close after the next.
    lost: Vec<u32>,
    buf: Vec<u8>,
}

impl Task {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            let idle = self.cfg.keepalive + jitter(self.cfg.keepalive);
            match tokio::time::timeout(idle, jobs.recv()).await {
                Ok(Some(Job::Request { req, ticket, reply })) => {
                    let result = self.serve(req, ticket.as_deref()).await;
                    let _ = reply.send(result);
                }
                Ok(Some(Job::Login(reply))) => {
                    let _ = reply.send(self.ensure_session().await);
                }
                Ok(Some(Job::CloseOther { session_id, reply })) => {
                    let _ = reply.send(self.close_other(session_id).await);
                }
                Ok(Some(Job::Close)) | Ok(None) => break,
                Err(_) => self.keepalive().await,
            }
        }
        self.close_session().await;
    }

    fn emit(&self, e: SessionEvent) {
        if let Some(sink) = &self.cfg.events {
            sink(e);
        }
    }

    /// One queued request: cancelled if its ticket was withdrawn (or the
    /// client is closing and it can still be withdrawn), refused at once
    /// while logins back off, else sent.
    async fn serve(
        &mut self,
        req: RawRequest,
        ticket: Option<&Ticket>,
    ) -> Result<RawResponse, BmcError> {
        let addr = self.cfg.addr;
        let closing = self.closing.load(Relaxed);
        match ticket {
            Some(t) if t.withdrawn() || (closing && t.withdraw()) => {
                return Err(BmcError::Cancelled(addr))
            }
            None if closing => return Err(BmcError::Cancelled(addr)),
            _ => {}
        }
        self.ensure_session().await?;
        if ticket.is_some_and(|t| !t.commit()) {
            return Err(BmcError::Cancelled(addr));
        }
        self.execute(req).await
    }

    /// Makes sure a session is open: logs in unless one is, or unless the
    /// back-off after a failed login has not ended (then the last failure
    /// is the answer, at once).
    async fn ensure_session(&mut self) -> Result<(), BmcError> {
        if self.suspect {
            self.suspect = false;
            if self.probe().await.is_err() {
                self.lose("no answer after a lost reply");
            }
        }
        if self.session.is_some() {
            return Ok(());
        }
        if let Some(d) = &self.down {
            let now = Instant::now();
            if now < d.until {
                return Err(BmcError::Unreachable {
                    addr: self.cfg.addr,
                    retry_in: d.until - now,
                    last: Box::new(d.last.clone()),
                });
            }
        }
        match self.login().await {
            Ok(()) => {
                self.down = None;
                self.close_lost().await;
                Ok(())
            }
            Err(e) => {
                let failures = self.down.as_ref().map_or(0, |d| d.failures) + 1;
                let retry_in = backoff(failures);
                warn!(bmc = %self.cfg.addr, error = %e, retry_in_ms = retry_in.as_millis() as u64, "login failed; backing off");
                self.emit(SessionEvent::LoginFailed {
                    error: e.to_string(),
                    retry_in,
                });
                self.down = Some(Down {
                    until: Instant::now() + retry_in,
                    failures,
                    last: e.clone(),
                });
                Err(e)
            }
        }
    }

    fn lose(&mut self, reason: &'static str) {
        if let Some(s) = self.session.take() {
            let session_id = s.bmc_session_id();
            // A BMC that stopped answering for a moment still counts the
            // session against its few slots: close it once logged in again.
            self.lost.push(session_id);
            self.emit(SessionEvent::Lost { session_id, reason });
        }
    }

    /// Closes the sessions given up since the last login, through the new
    /// one (Close Session naming another session of the same user).
    async fn close_lost(&mut self) {
        for id in std::mem::take(&mut self.lost) {
            if self
                .session
                .as_ref()
                .is_some_and(|s| s.bmc_session_id() == id)
            {
                continue;
            }
            let error = self
                .close_through_session(id)
                .await
                .err()
                .map(|e| e.to_string());
            self.emit(SessionEvent::StaleClosed {
                session_id: id,
                error,
            });
        }
    }

    async fn execute(&mut self, req: RawRequest) -> Result<RawResponse, BmcError> {
        let c = classify(req.netfn, req.cmd, &req.data);
        if c.state_changing {
            return match self.exchange(&req, 1).await? {
                Some(r) => Ok(r),
                None => {
                    self.suspect = true;
                    Err(BmcError::OutcomeUnknown {
                        addr: self.cfg.addr,
                        command: c.name.to_string(),
                    })
                }
            };
        }
        let tries = 1 + self.cfg.retries;
        if let Some(r) = self.exchange(&req, tries).await? {
            return Ok(r);
        }
        // No answer at all: the BMC may have forgotten the session (reboot,
        // idle timeout). Log in again once and retry.
        info!(bmc = %self.cfg.addr, "no answer in session; logging in again");
        self.lose("no answer in session");
        self.ensure_session().await?;
        self.exchange(&req, tries).await?.ok_or(BmcError::NoAnswer {
            addr: self.cfg.addr,
            tries: 2 * tries,
        })
    }
    /// Sends `req` up to `tries` times (the core keeps the count and the
    /// timer); `None` when nothing authentic came back.
    async fn exchange(
        &mut self,
        req: &RawRequest,
        tries: u32,
    ) -> Result<Option<RawResponse>, BmcError> {
        // Out of `self` while the socket is read, and back before any error
        // is returned.
        let Some(mut session) = self.session.take() else {
            return Ok(None);
        };
        let now = Instant::now().into_std();
        let mut ex = Exchange::start(&mut session, req.clone(), tries, self.cfg.timeout, now);
        let answer = self.drive_exchange(&mut session, &mut ex).await;
        self.session = Some(session);
        self.stats
            .retries
            .fetch_add(u64::from(ex.retransmits()), Relaxed);
        Ok(match answer? {
            Answer::Reply(resp) => Some(RawResponse {
                completion_code: resp.completion_code,
                data: resp.data,
            }),
            Answer::Unanswered { .. } => None,
        })
    }

    /// Runs `ex` in `session` to its answer over the socket.
    async fn drive_exchange(
        &mut self,
        session: &mut ActiveSession,
        ex: &mut Exchange,
    ) -> Result<Answer, BmcError> {
        loop {
            if let Some(bytes) = ex.poll_transmit() {
                self.send(&bytes).await?;
            }
            if let Some(answer) = ex.poll_outcome() {
                return Ok(answer);
            }
            let Some(at) = ex.poll_timeout() else {
                unreachable!("a request without an outcome has a timer");
            };
            match self.recv_until(Instant::from_std(at)).await? {
                Some(n) => {
                    if let Err(drop) = ex.handle_datagram(session, &self.buf[..n]) {
                        debug!(bmc = %self.cfg.addr, %drop, "dropped datagram");
                        self.stats.count(drop);
                    }
                }
                None => ex.handle_timeout(session, Instant::now().into_std()),
            }
        }
    }

    /// Receives one datagram from the BMC's address into `buf`, or `None` at
    /// the deadline. Datagrams from anywhere else are counted and dropped.
    async fn recv_until(&mut self, deadline: Instant) -> Result<Option<usize>, BmcError> {
        loop {
            match timeout_at(deadline, self.socket.recv_from(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable from an earlier send: keep waiting
                    // so the caller sees a bounded "no answer".
                    continue;
                }
                Ok(Err(source)) => return Err(BmcError::io(self.cfg.addr, source)),
                Ok(Ok((n, from))) => {
                    if from != self.cfg.addr {
                        self.stats.unexpected_source.fetch_add(1, Relaxed);
                        warn!(bmc = %self.cfg.addr, %from, "datagram from unexpected address dropped");
                        continue;
                    }
                    return Ok(Some(n));
                }
            }
        }
    }

    async fn send(&self, bytes: &[u8]) -> Result<(), BmcError> {
        match self.socket.send_to(bytes, self.cfg.addr).await {
            Ok(_) => Ok(()),
            // A refused earlier datagram surfaces on the next send; the BMC
            // may come back, so treat it like a lost packet.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            Err(source) => Err(BmcError::io(self.cfg.addr, source)),
        }
    }

    /// Logs in: the handshake decides what to send and when to give up
    /// (re-sends, restarts, what a silent BMC means); this loop only moves
    /// its datagrams and wakes it at its timer.
    async fn login(&mut self) -> Result<(), BmcError> {
        let addr = self.cfg.addr;
        let console = ConsoleConfig {
            step_timeout: self.cfg.timeout,
            retries: self.cfg.retries,
            ..self.cfg.console.clone()
        };
        let rng = Box::new(rand::rngs::OsRng);
        let mut hs = Handshake::start(console, rng, Instant::now().into_std())
            .map_err(|source| BmcError::Login { addr, source })?;
        let outcome = self.drive(&mut hs).await;
        self.stats
            .retries
            .fetch_add(u64::from(hs.retransmits()), Relaxed);
        match outcome? {
            Ok(s) => {
                self.established(s);
                Ok(())
            }
            Err(f) => {
                debug!(bmc = %addr, error = %f.error, "login failed");
                if let Some(bytes) = f.farewell {
                    let _ = self.send(&bytes).await;
                }
                Err(match f.error {
                    SessionError::NoAnswer { tries } => BmcError::NoAnswer { addr, tries },
                    source => BmcError::Login { addr, source },
                })
            }
        }
    }

    /// Runs `hs` to its outcome over the socket.
    async fn drive(
        &mut self,
        hs: &mut Handshake,
    ) -> Result<Result<Box<ActiveSession>, LoginFailure>, BmcError> {
        loop {
            while let Some(bytes) = hs.poll_transmit() {
                self.send(&bytes).await?;
            }
            if let Some(outcome) = hs.poll_outcome() {
                return Ok(outcome);
            }
            let Some(at) = hs.poll_timeout() else {
                unreachable!("a login without an outcome has a timer");
            };
            match self.recv_until(Instant::from_std(at)).await? {
                Some(n) => {
                    let now = Instant::now().into_std();
                    if let Err(drop) = hs.handle_datagram(now, &self.buf[..n]) {
                        self.stats.count(drop);
                    }
                }
                None => hs.handle_timeout(Instant::now().into_std()),
            }
        }
    }

    /// Takes a new session into use and tells whoever listens.
    fn established(&mut self, s: Box<ActiveSession>) {
        let relogin = self.logins > 0;
        if relogin {
            self.stats.relogins.fetch_add(1, Relaxed);
        }
        self.logins += 1;
        info!(bmc = %self.cfg.addr, suite = %s.suite(), privilege = %s.privilege(), session = format_args!("{:#010x}", s.bmc_session_id()), "session established");
        self.suite.store(s.suite().id(), Relaxed);
        self.emit(SessionEvent::LoggedIn {
            suite: s.suite().id(),
            session_id: s.bmc_session_id(),
            relogin,
        });
        self.session = Some(s);
    }

    async fn probe(&mut self) -> Result<(), BmcError> {
        let req = GetDeviceId.request();
        match self.exchange(&req, 1 + self.cfg.retries).await? {
            Some(_) => Ok(()),
            None => Err(BmcError::NoAnswer {
                addr: self.cfg.addr,
                tries: 1 + self.cfg.retries,
            }),
        }
    }

    async fn keepalive(&mut self) {
        if self.session.is_none() {
            return;
        }
        if self.probe().await.is_err() {
            warn!(bmc = %self.cfg.addr, "keepalive unanswered; will log in again on next use");
            self.lose("keepalive unanswered");
        }
    }

    /// Close Session naming another session of ours.
    async fn close_other(&mut self, session_id: u32) -> Result<(), BmcError> {
        self.ensure_session().await?;
        self.close_through_session(session_id).await
    }

    /// Close Session naming another session, sent in the current one.
    async fn close_through_session(&mut self, session_id: u32) -> Result<(), BmcError> {
        let req = id::CLOSE_SESSION.request(session_id.to_le_bytes().to_vec());
        match self.exchange(&req, 1 + self.cfg.retries).await? {
            // 0x87: no such session (the BMC forgot it already): closed.
            Some(r) if r.completion_code.is_ok() || r.completion_code.0 == 0x87 => Ok(()),
            Some(r) => Err(BmcError::Completion {
                addr: self.cfg.addr,
                command: "Close Session".into(),
                code: r.completion_code,
            }),
            None => Err(BmcError::NoAnswer {
                addr: self.cfg.addr,
                tries: 1 + self.cfg.retries,
            }),
        }
    }

    async fn close_session(&mut self) {
        if let Some(mut s) = self.session.take() {
            self.emit(SessionEvent::LoggedOut {
                suite: s.suite().id(),
                session_id: s.bmc_session_id(),
            });
            let bytes = s.close_session_request();
            if self.send(&bytes).await.is_ok() {
                // Wait briefly for the answer so the BMC frees its slot before
                // we go; some BMCs never answer (reference §2.9).
                let deadline = Instant::now() + self.cfg.timeout.min(Duration::from_millis(500));
                let _ = self.recv_until(deadline).await;
            }
            info!(bmc = %self.cfg.addr, "session closed");
        }
    }
}

/// The wait after the `failures`-th failed login in a row: 1 s doubling up
/// to a minute.
fn backoff(failures: u32) -> Duration {
    LOGIN_BACKOFF_BASE
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(LOGIN_BACKOFF_MAX)
}

fn jitter(base: Duration) -> Duration {
    let max = base.as_millis() as u64 / 10;
    Duration::from_millis(rand::thread_rng().gen_range(0..=max.max(1)))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ipmi::cmd::chassis::{ChassisControl, GetChassisStatus, PowerAction};
    use crate::ipmi::session::console::ConsoleConfig;
    use crate::ipmi::session::testpeer::{Knobs, Peer};
    use crate::ipmi::session::Privilege;
    use crate::secret::SecretBytes;

    #[derive(Default)]
    struct Faults {
        /// In-session replies to swallow (the command still "runs").
        lose_replies: u32,
        /// Also send each in-session reply from a foreign socket first.
        spoof_from_elsewhere: bool,
        /// Send a copy with a broken MAC before each in-session reply.
        forged_first: bool,
        /// Never answer this session-setup payload type (e.g. 0x13, RAKP 2).
        silent_on: Option<u8>,
    }

    struct FakeBmc {
        addr: SocketAddr,
        peer: Arc<Mutex<Peer>>,
        faults: Arc<Mutex<Faults>>,
    }

    impl FakeBmc {
        async fn start() -> FakeBmc {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let rogue = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = sock.local_addr().unwrap();
            let knobs = Knobs {
                accept: vec![17, 3],
                ..Knobs::default()
            };
            let peer = Arc::new(Mutex::new(Peer::new(b"pw", knobs)));
            let faults = Arc::new(Mutex::new(Faults::default()));
            let (p, f) = (peer.clone(), faults.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                    let in_session =
                        n > 5 && buf[4] == 0x06 && buf[5] & 0x3F == 0 && buf[5] & 0x40 != 0;
                    let Some(reply) = p.lock().unwrap().handle(&buf[..n]) else {
                        continue;
                    };
                    if reply.len() > 5 && Some(reply[5] & 0x3F) == f.lock().unwrap().silent_on {
                        continue;
                    }
                    let (lose, spoof, forge) = {
                        let mut f = f.lock().unwrap();
                        let lose = in_session && f.lose_replies > 0;
                        if lose {
                            f.lose_replies -= 1;
                        }
                        (
                            lose,
                            in_session && f.spoof_from_elsewhere,
                            in_session && f.forged_first,
                        )
                    };
                    if lose {
                        continue;
                    }
                    if spoof {
                        rogue.send_to(&reply, from).await.unwrap();
                    }
                    if forge {
                        let mut bad = reply.clone();
                        *bad.last_mut().unwrap() ^= 1;
                        sock.send_to(&bad, from).await.unwrap();
                    }
                    sock.send_to(&reply, from).await.unwrap();
                }
            });
            FakeBmc { addr, peer, faults }
        }

        fn commands(&self) -> Vec<(u8, u8)> {
            self.peer
                .lock()
                .unwrap()
                .commands
                .iter()
                .map(|r| (r.netfn.0, r.cmd))
                .collect()
        }
    }

    async fn client(bmc: &FakeBmc) -> BmcClient {
        let console =
            ConsoleConfig::new(b"admin", SecretBytes::from(&b"pw"[..]), Privilege::Operator);
        let mut cfg = BmcConfig::new(bmc.addr, console);
        cfg.timeout = Duration::from_millis(100);
        cfg.retries = 2;
        BmcClient::connect(cfg).await.unwrap()
    }

    #[tokio::test]
    async fn read_only_commands_are_retried() {
        let bmc = FakeBmc::start().await;
        let c = client(&bmc).await;
        bmc.faults.lock().unwrap().lose_replies = 2;
        assert!(c.execute(&GetChassisStatus).await.unwrap().power_on);
        assert_eq!(c.stats().retries, 2);
        let status_requests = bmc
            .commands()
            .iter()
            .filter(|c| **c == (0x00, 0x01))
            .count();
        assert_eq!(status_requests, 3);
    }

    #[tokio::test]
    async fn a_state_changing_command_is_never_resent() {
        let bmc = FakeBmc::start().await;
        let c = client(&bmc).await;
        bmc.faults.lock().unwrap().lose_replies = 1;
        let err = c
            .execute(&ChassisControl(PowerAction::Off))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BmcError::OutcomeUnknown { ref command, .. } if command == "chassis.power.off"),
            "{err}"
        );
        assert!(err.to_string().contains("outcome unknown"));
        let controls = bmc
            .commands()
            .iter()
            .filter(|c| **c == (0x00, 0x02))
            .count();
        assert_eq!(controls, 1, "sent once, never again");
        // The session is probed before it is trusted again, then works.
        assert!(c.execute(&GetChassisStatus).await.is_ok());
        assert_eq!(
            bmc.commands()
                .iter()
                .filter(|c| **c == (0x00, 0x02))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn foreign_sources_and_forged_macs_are_dropped_and_counted() {
        let bmc = FakeBmc::start().await;
        let c = client(&bmc).await;
        {
            let mut f = bmc.faults.lock().unwrap();
            f.spoof_from_elsewhere = true;
            f.forged_first = true;
        }
        assert!(c.execute(&GetChassisStatus).await.unwrap().power_on);
        let s = c.stats();
        assert_eq!(s.unexpected_source, 1, "{s:?}");
        assert_eq!(s.bad_integrity, 1, "{s:?}");
        assert_eq!(s.retries, 0, "the authentic reply was still accepted");
    }

    #[tokio::test]
    async fn close_sends_close_session() {
        let bmc = FakeBmc::start().await;
        let c = client(&bmc).await;
        c.clone().close().await;
        assert_eq!(bmc.commands().last(), Some(&(0x06, 0x3C)));
        assert!(matches!(
            c.execute(&GetChassisStatus).await,
            Err(BmcError::Closed(_))
        ));
    }

    #[tokio::test]
    async fn a_bmc_silent_after_rakp_is_an_authentication_failure() {
        for (payload, hint) in [(0x13u8, "RAKP 1"), (0x15, "RAKP 3")] {
            let bmc = FakeBmc::start().await;
            bmc.faults.lock().unwrap().silent_on = Some(payload);
            let console =
                ConsoleConfig::new(b"admin", SecretBytes::from(&b"pw"[..]), Privilege::Operator);
            let mut cfg = BmcConfig::new(bmc.addr, console);
            cfg.timeout = Duration::from_millis(50);
            cfg.retries = 1;
            let t = Instant::now();
            let err = BmcClient::connect(cfg).await.unwrap_err();
            assert!(
                err.to_string().contains("authentication failed") && err.to_string().contains(hint),
                "{err}"
            );
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "bounded by tries x timeout"
            );
            assert!(bmc.commands().is_empty());
        }
    }

    #[tokio::test]
    async fn an_idle_session_is_kept_alive() {
        let bmc = FakeBmc::start().await;
        let console =
            ConsoleConfig::new(b"admin", SecretBytes::from(&b"pw"[..]), Privilege::Operator);
        let mut cfg = BmcConfig::new(bmc.addr, console);
        cfg.keepalive = Duration::from_millis(100);
        let c = BmcClient::connect(cfg).await.unwrap();
        tokio::time::sleep(Duration::from_millis(450)).await;
        let keepalives = bmc
            .commands()
            .iter()
            .filter(|c| **c == (0x06, 0x01))
            .count();
        assert!(keepalives >= 2, "{keepalives} keepalives");
        c.close().await;
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_grown() {
        let bmc = FakeBmc::start().await;
        let console =
            ConsoleConfig::new(b"admin", SecretBytes::from(&b"pw"[..]), Privilege::Operator);
        let mut cfg = BmcConfig::new(bmc.addr, console);
        cfg.queue_depth = 1;
        cfg.timeout = Duration::from_millis(100);
        let c = BmcClient::connect(cfg).await.unwrap();
        bmc.faults.lock().unwrap().lose_replies = 100;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let c = c.clone();
            set.spawn(async move { c.execute(&GetChassisStatus).await });
        }
        let results = set.join_all().await;
        assert!(results.iter().any(|r| matches!(r, Err(BmcError::Busy(_)))));
    }
}
