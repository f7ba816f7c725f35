//! The BMC pool: one warm session per BMC (the engine's `BmcClient`),
//! opened on first use and kept across requests and config reloads (unless
//! that BMC's settings changed). Sending needs an audit [`Receipt`]: no
//! request reaches a BMC unless its record is durable.
//!
//! Also here: identical concurrent reads of one BMC share one walk of the
//! BMC; reservation-based reads and raw requests run one at a time per BMC;
//! the session ids the gateway holds are kept in a file beside the trail,
//! so that a restart after a crash closes the sessions the dead instance
//! left on each BMC (they fill its few session slots otherwise); every
//! login, re-login, lost session and logout is a `bmc_session` record.
//!
//! Never decides policy: it runs what the API has decided and recorded.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OnceCell};

use super::settings::BmcSpec;
use crate::audit::{AuditWriter, BmcSessionRecord, Event, Recorded};
use crate::bmc::{BmcClient, BmcConfig, BmcError, RawResponse, SessionEvent, Ticket, Transact};
use crate::ipmi::cmd::name::classify;
use crate::ipmi::cmd::RawRequest;
use crate::ops::{Answer, Op};
use crate::policy::Permit;

/// Every configured BMC's session.
pub struct BmcPool {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    audit: AuditWriter,
    sessions: Arc<SessionFile>,
    draining: AtomicBool,
}

impl std::fmt::Debug for BmcPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcPool").finish_non_exhaustive()
    }
}

/// One shared answer to identical concurrent reads.
type Flight = watch::Receiver<Option<Result<Answer, BmcError>>>;

struct Slot {
    spec: BmcSpec,
    queue: usize,
    client: OnceCell<BmcClient>,
    /// Held for the whole of a multi-step read and for every raw request:
    /// a reservation (SDR, SEL) taken by one is cancelled by the next
    /// reservation on the BMC, so they must not interleave, and a raw
    /// Reserve from a caller must not break someone's sensor walk.
    exclusive: tokio::sync::Mutex<()>,
    /// Reads in progress that a caller asking the same may share.
    flights: Mutex<HashMap<&'static str, Flight>>,
    /// The sensor records of the BMC's SDR repository, re-read only when
    /// its add/erase timestamps change.
    sdr: crate::bmc::reads::SdrCache,
}

impl BmcPool {
    /// A pool for `specs`; sessions open on first use. `sessions_file`
    /// keeps the ids of the sessions held; ids left there by an instance
    /// that did not close them are closed now.
    pub fn new(
        specs: Vec<BmcSpec>,
        queue: usize,
        audit: AuditWriter,
        sessions_file: Option<PathBuf>,
    ) -> BmcPool {
        let pool = BmcPool {
            slots: Mutex::new(HashMap::new()),
            audit,
            sessions: Arc::new(SessionFile::open(sessions_file)),
            draining: AtomicBool::new(false),
        };
        pool.reconfigure(specs, queue);
        pool
    }

    /// Applies a new BMC list (and queue depth): unchanged BMCs keep their
    /// session; changed and removed ones are closed.
    pub fn reconfigure(&self, specs: Vec<BmcSpec>, queue: usize) {
        let mut slots = self.slots.lock().expect("pool lock");
        let mut next = HashMap::new();
        for spec in specs {
            let slot = match slots.remove(&spec.name) {
                Some(s) if s.spec == spec && s.queue == queue => s,
                _ => Arc::new(Slot {
                    spec: spec.clone(),
                    queue,
                    client: OnceCell::new(),
                    exclusive: tokio::sync::Mutex::new(()),
                    flights: Mutex::new(HashMap::new()),
                    sdr: Default::default(),
                }),
            };
            next.insert(spec.name.clone(), slot);
        }
        let gone: Vec<Arc<Slot>> = slots.drain().map(|(_, s)| s).collect();
        *slots = next;
        drop(slots);
        tokio::spawn(async move {
            for s in gone {
                if let Some(c) = s.client.get() {
                    c.clone().close().await;
                }
            }
        });
    }

    /// Closes the sessions a previous instance left open, on every BMC the
    /// session file names (run once, at start).
    pub fn close_stale_sessions(self: &Arc<Self>) {
        for (bmc, ids) in self.sessions.stale() {
            let pool = self.clone();
            tokio::spawn(async move {
                let Ok(slot) = pool.slot(&bmc) else {
                    pool.sessions.forget_stale(&bmc);
                    return;
                };
                let Ok(client) = pool.client(&slot).await else {
                    return;
                };
                for id in ids {
                    let result = client.close_other_session(id).await;
                    let reason = match &result {
                        Ok(()) => "closed a session a previous instance left open".to_string(),
                        Err(e) => {
                            format!("could not close a session a previous instance left open: {e}")
                        }
                    };
                    record(
                        &pool.audit,
                        &bmc,
                        "stale_closed",
                        None,
                        Some(id),
                        Some(reason),
                    );
                }
                pool.sessions.forget_stale(&bmc);
            });
        }
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, BmcError> {
        let slot = self.slots.lock().expect("pool lock").get(name).cloned();
        slot.ok_or_else(|| BmcError::Protocol {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            what: "pool",
            why: format!("no BMC named {name}"),
        })
    }

    /// The slot's client, started on first use (the login happens with the
    /// first request, in the client's task).
    async fn client(&self, slot: &Slot) -> Result<BmcClient, BmcError> {
        let c = slot
            .client
            .get_or_try_init(|| {
                let mut cfg = BmcConfig::new(slot.spec.addr, slot.spec.console());
                cfg.timeout = slot.spec.timeout;
                cfg.retries = slot.spec.retries;
                cfg.queue_depth = slot.queue;
                cfg.events = Some(self.event_sink(&slot.spec.name));
                BmcClient::spawn(cfg)
            })
            .await?;
        if self.draining.load(Relaxed) {
            c.begin_close();
        }
        Ok(c.clone())
    }

    /// Session events of one BMC, as `bmc_session` records and entries of
    /// the session file.
    fn event_sink(&self, bmc: &str) -> crate::bmc::EventSink {
        let (audit, sessions, bmc) = (self.audit.clone(), self.sessions.clone(), bmc.to_string());
        Arc::new(move |e: SessionEvent| match e {
            SessionEvent::LoggedIn {
                suite,
                session_id,
                relogin,
            } => {
                sessions.hold(&bmc, session_id);
                let action = if relogin { "relogin" } else { "login" };
                record(&audit, &bmc, action, Some(suite), Some(session_id), None);
            }
            SessionEvent::LoginFailed { error, retry_in } => {
                let reason = format!("{error}; next attempt in {} ms", retry_in.as_millis());
                record(&audit, &bmc, "failure", None, None, Some(reason));
            }
            SessionEvent::Lost { session_id, reason } => {
                // Kept in the file until closed: it may hold a BMC slot.
                sessions.mark_lost(&bmc, session_id);
                record(
                    &audit,
                    &bmc,
                    "lost",
                    None,
                    Some(session_id),
                    Some(reason.into()),
                );
            }
            SessionEvent::StaleClosed { session_id, error } => {
                let action = if error.is_none() {
                    sessions.release(&bmc, session_id);
                    "stale_closed"
                } else {
                    "stale_close_failed"
                };
                record(&audit, &bmc, action, None, Some(session_id), error);
            }
            SessionEvent::LoggedOut { suite, session_id } => {
                sessions.release(&bmc, session_id);
                record(&audit, &bmc, "logout", Some(suite), Some(session_id), None);
            }
        })
    }

    /// Runs an operation allowed by a recorded permit, on the permit's BMC;
    /// it may send only the command names the permit allows, and nothing
    /// once `ticket` is withdrawn. Nothing else can reach a BMC: a denial
    /// has no `Recorded<Permit>`, and only the audit trail makes one.
    pub async fn run(
        &self,
        permit: &Recorded<Permit>,
        op: &Op,
        ticket: &Arc<Ticket>,
    ) -> Result<Answer, BmcError> {
        let (name, allowed) = (permit.get().bmc(), permit.get().names());
        if self.draining.load(Relaxed) {
            ticket.withdraw();
        }
        let slot = self.slot(name)?;
        let client = self.client(&slot).await?;
        if ticket.withdrawn() {
            return Err(BmcError::Cancelled(client.addr()));
        }
        let gated = Gated {
            client: &client,
            allowed,
            ticket,
            sdr: &slot.sdr,
        };
        match shared_read(op) {
            Some(key) => run_shared(&slot, key, op, &gated).await,
            None => run_alone(&slot, op, &gated).await,
        }
    }

    /// SIGTERM: stops taking work. Requests queued but not yet sent are
    /// cancelled; those in flight finish.
    pub fn begin_drain(&self) {
        self.draining.store(true, Relaxed);
        for s in self.slots.lock().expect("pool lock").values() {
            if let Some(c) = s.client.get() {
                c.begin_close();
            }
        }
    }

    /// Closes every session within `limit` (shutdown); after it, each BMC's
    /// task is stopped whatever it was doing, so nothing more is sent.
    pub async fn close_all(&self, limit: Duration) {
        self.begin_drain();
        let clients: Vec<BmcClient> = self
            .slots
            .lock()
            .expect("pool lock")
            .values()
            .filter_map(|s| s.client.get().cloned())
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for c in clients {
            tasks.spawn(c.close_within(limit));
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Reads whose answer identical concurrent callers may share.
fn shared_read(op: &Op) -> Option<&'static str> {
    match op {
        Op::Sensors => Some("sensors"),
        Op::Scrape(c) => Some(c.flight_key()),
        Op::Sel => Some("sel"),
        Op::Fru => Some("fru"),
        Op::McInfo => Some("info"),
        _ => None,
    }
}

/// Runs `op`, holding the BMC's exclusive lock when it needs one.
async fn run_alone(slot: &Slot, op: &Op, gated: &Gated<'_>) -> Result<Answer, BmcError> {
    let _exclusive = match op {
        Op::Sensors | Op::Scrape(_) | Op::Sel | Op::Fru | Op::Raw(_) => {
            Some(slot.exclusive.lock().await)
        }
        _ => None,
    };
    op.run(gated).await
}

/// Runs a shareable read, or waits for the identical one in progress and
/// takes its answer. When the one in progress was cancelled (its caller
/// left before it reached the BMC), this caller runs it itself.
async fn run_shared(
    slot: &Slot,
    key: &'static str,
    op: &Op,
    gated: &Gated<'_>,
) -> Result<Answer, BmcError> {
    loop {
        let waiting = {
            let mut flights = slot.flights.lock().expect("flights");
            match flights.get(key) {
                Some(rx) => Ok(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(key, rx);
                    Err(tx)
                }
            }
        };
        match waiting {
            Ok(mut rx) => {
                let shared = match rx.wait_for(Option::is_some).await {
                    Ok(v) => v.clone(),
                    Err(_) => None, // the leader's caller left mid-way
                };
                match shared {
                    Some(Err(BmcError::Cancelled(_))) | None => continue,
                    Some(answer) => return answer,
                }
            }
            Err(tx) => {
                let _landing = Landing { slot, key };
                let answer = run_alone(slot, op, gated).await;
                let _ = tx.send(Some(answer.clone()));
                return answer;
            }
        }
    }
}

/// Removes a read from the shared ones when it ends, however it ends.
struct Landing<'a> {
    slot: &'a Slot,
    key: &'static str,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.slot.flights.lock().expect("flights").remove(self.key);
    }
}

/// Records a `bmc_session` event (never a secret: reasons are error texts
/// that name addresses and statuses only). Queued: it comes from a BMC's
/// task, which must not wait for the disk.
fn record(
    audit: &AuditWriter,
    bmc: &str,
    action: &str,
    cipher_suite: Option<u8>,
    session_id: Option<u32>,
    reason: Option<String>,
) {
    let rec = BmcSessionRecord {
        bmc: bmc.into(),
        action: action.into(),
        cipher_suite,
        session_id: session_id.map(|id| format!("{id:08x}")),
        reason,
    };
    if let Err(e) = audit.append_queued(Event::BmcSession(rec)) {
        tracing::error!(error = %e, bmc, "bmc_session record not written");
    }
}

/// The wire side of one operation: a session, the command names the
/// operation may send, and its ticket.
struct Gated<'a> {
    client: &'a BmcClient,
    allowed: &'a [String],
    ticket: &'a Arc<Ticket>,
    sdr: &'a crate::bmc::reads::SdrCache,
}

impl Transact for Gated<'_> {
    async fn transact(&self, req: RawRequest) -> Result<RawResponse, BmcError> {
        if self.ticket.abandoned() {
            // Nobody waits for this read any more: stop walking the BMC.
            return Err(BmcError::Cancelled(self.client.addr()));
        }
        let name = classify(req.netfn, req.cmd, &req.data).name;
        if !self.allowed.iter().any(|a| a == name.as_str()) {
            return Err(BmcError::Protocol {
                addr: self.client.addr(),
                what: "operation",
                why: format!("{name} is outside what was audited and allowed"),
            });
        }
        self.client
            .request_with(req, Some(self.ticket.clone()))
            .await
    }
    fn addr(&self) -> SocketAddr {
        self.client.addr()
    }
    fn sdr_cache(&self) -> Option<&crate::bmc::reads::SdrCache> {
        Some(self.sdr)
    }
}

/// The session ids the gateway holds per BMC, kept in a small JSON file
/// beside the trail (`audit.sessions.json`), so that the next instance can
/// close what a crashed one left open.
struct SessionFile {
    path: Option<PathBuf>,
    state: Mutex<SessionIds>,
}

#[derive(Default)]
struct SessionIds {
    /// Held by this instance.
    held: BTreeMap<String, Vec<u32>>,
    /// Left by earlier instances, not yet closed.
    stale: BTreeMap<String, Vec<u32>>,
}

impl SessionFile {
    fn open(path: Option<PathBuf>) -> SessionFile {
        let stale = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, Vec<u32>>>(&b).ok())
            .unwrap_or_default();
        SessionFile {
            path,
            state: Mutex::new(SessionIds {
                held: BTreeMap::new(),
                stale,
            }),
        }
    }

    fn stale(&self) -> Vec<(String, Vec<u32>)> {
        let s = self.state.lock().expect("session ids");
        s.stale
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn forget_stale(&self, bmc: &str) {
        self.keep_stale(bmc, Vec::new());
    }

    /// The stale ids of `bmc` that are still open (closing them failed).
    fn keep_stale(&self, bmc: &str, ids: Vec<u32>) {
        self.update(|s| {
            if ids.is_empty() {
                s.stale.remove(bmc);
            } else {
                s.stale.insert(bmc.to_string(), ids);
            }
        });
    }

    fn hold(&self, bmc: &str, id: u32) {
        self.update(|s| {
            let ids = s.held.entry(bmc.to_string()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        });
    }

    /// A session given up: still ours until closed (kept in `held`).
    fn mark_lost(&self, bmc: &str, id: u32) {
        self.hold(bmc, id);
    }

    fn release(&self, bmc: &str, id: u32) {
        self.update(|s| {
            if let Some(ids) = s.held.get_mut(bmc) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    s.held.remove(bmc);
                }
            }
        });
    }

    /// Changes the ids and writes the file (held and stale together: until
    /// a stale id is closed, the next instance must still see it).
    fn update(&self, f: impl FnOnce(&mut SessionIds)) {
        let mut s = self.state.lock().expect("session ids");
        f(&mut s);
        let Some(path) = &self.path else { return };
        let mut all = s.stale.clone();
        for (bmc, ids) in &s.held {
            all.entry(bmc.clone()).or_default().extend(ids);
        }
        if let Err(e) = write_atomically(path, &serde_json::to_vec(&all).unwrap_or_default()) {
            tracing::warn!(path = %path.display(), error = %e, "session ids not saved");
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames
/// it over `path`, so that a crash leaves the old or the new file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}
