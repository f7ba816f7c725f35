//! The audit writer: appends records to the trail, write-ahead. Callers
//! queue records (bounded) and wait for the answer; every record waiting at
//! the same moment goes into one write and one fsync (group commit), made
//! by one of the waiting callers as leader ([`super::group`]), not by a
//! thread callers would have to wake and wait for.
//!
//! Fail closed: after any write, fsync, rename or anchor error the writer
//! drops the file descriptor (it never writes to one whose fsync failed),
//! answers every record someone waits for with [`AuditError::Unavailable`]
//! (that caller sends nothing), holds the records nobody waits for
//! (bounded, [`super::held`]), and retries with backoff to reopen the
//! trail, repair its tail and write a durable `audit_recovered` record
//! followed by what it held; only then does it accept records again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::export::{Exporter, SyslogTarget};
use super::fs::{write_all, TrailFile, TrailFs, WriterLock};
use super::group::{Entry, Group, Turn, Waiter, Waiting, What};
use super::held::{Held, HeldRecord};
use super::line::{self, AuditKey, LineHash, GENESIS};
use super::{members, AuditError, Event, Receipt, RequestRecord};

/// When a record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After fdatasync (group commit shares one among waiting records).
    Always,
    /// After write(2); fdatasync at most this long later. A crash can lose
    /// acknowledged records from that window: for sites that accept it.
    Interval(Duration),
}

impl Durability {
    /// Parses `always` or `interval:10ms` (`ms` or `s`, 1 ms to 10 s).
    pub fn parse(s: &str) -> Result<Durability, String> {
        if s == "always" {
            return Ok(Durability::Always);
        }
        let expected = || {
            format!("fsync {s:?}: expected \"always\" or \"interval:N\" with N from 1ms to 10s, e.g. \"interval:10ms\"")
        };
        let v = s.strip_prefix("interval:").ok_or_else(expected)?;
        let d = if let Some(ms) = v.strip_suffix("ms") {
            ms.parse().ok().map(Duration::from_millis)
        } else if let Some(secs) = v.strip_suffix('s') {
            secs.parse().ok().map(Duration::from_secs)
        } else {
            None
        };
        match d {
            Some(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(10) => {
                Ok(Durability::Interval(d))
            }
            _ => Err(expected()),
        }
    }
}

/// How to run a writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The active trail file; rotated files sit beside it as `NAME.<last seq>`.
    pub path: PathBuf,
    /// The MAC key.
    pub key: AuditKey,
    /// When a record counts as written.
    pub durability: Durability,
    /// Rotate when the active file reaches this size.
    pub rotate_bytes: Option<u64>,
    /// Write a checkpoint every this many records (0: only at rotation and shutdown).
    pub checkpoint_every: u64,
    /// Append-only file that receives every checkpoint's (seq, hash).
    pub anchor_path: Option<PathBuf>,
    /// Export every record to syslog (RFC 5424).
    pub syslog: Option<SyslogTarget>,
    /// Records that may wait for the writer before callers get `Overloaded`.
    pub queue: usize,
    /// Records nobody waits for (`result`, ...) kept while the trail is
    /// closed, written first when it recovers; past this they are counted
    /// and the count recorded.
    pub held: usize,
    /// Records the syslog exporter may hold before it drops (and counts).
    pub export_queue: usize,
    /// First delay before retrying after a failure (doubles up to 5 s).
    pub retry: Duration,
    /// A write or fsync in progress longer than this makes the writer
    /// unhealthy ([`AuditWriter::health`]).
    pub stall_after: Duration,
}

impl WriterConfig {
    /// Defaults: fsync always, checkpoint every 10,000 records, no rotation.
    pub fn new(path: PathBuf, key: AuditKey) -> WriterConfig {
        WriterConfig {
            path,
            key,
            durability: Durability::Always,
            rotate_bytes: None,
            checkpoint_every: 10_000,
            anchor_path: None,
            syslog: None,
            queue: 65_536,
            held: 65_536,
            export_queue: 8_192,
            retry: Duration::from_millis(200),
            stall_after: Duration::from_secs(2),
        }
    }
}

/// Counters, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Records written.
    pub records: u64,
    /// Write batches (group commits).
    pub batches: u64,
    /// fdatasync calls.
    pub syncs: u64,
    /// Failures that closed the trail.
    pub failures: u64,
    /// Records the syslog exporter dropped.
    pub export_dropped: u64,
    /// Records nobody waited for that did not fit while the trail was
    /// closed (see [`WriterConfig::held`]).
    pub held_dropped: u64,
}

#[derive(Default)]
struct Shared {
    available: AtomicBool,
    records: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    failures: AtomicU64,
    held_dropped: AtomicU64,
    /// Since when the trail's writes and fsyncs have been at work, while
    /// they are: a disk that stops answering shows here, not in an error.
    busy_since: Mutex<Option<Instant>>,
}

/// Marks the trail at work while it lives (also through a panic).
struct Busy<'a>(&'a Mutex<Option<Instant>>);

impl<'a> Busy<'a> {
    fn start(m: &'a Mutex<Option<Instant>>) -> Busy<'a> {
        *m.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Busy(m)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The handle callers hold; cheap to clone.
#[derive(Clone)]
pub struct AuditWriter {
    group: Arc<Group>,
    shared: Arc<Shared>,
    exporter_dropped: Arc<AtomicU64>,
    stall_after: Duration,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Opens the trail (repairing a torn tail and continuing the chain),
    /// writes a durable `startup` record, and starts the ticker thread
    /// (interval fsync, recovery retries, lingering records).
    pub fn open(cfg: WriterConfig, fs: Arc<dyn TrailFs>) -> Result<AuditWriter, AuditError> {
        let lock = fs
            .lock_writer(&cfg.path, cfg.anchor_path.as_deref())
            .map_err(|reason| AuditError::Startup {
                path: cfg.path.display().to_string(),
                reason,
            })?;
        let shared = Arc::new(Shared::default());
        let exporter = cfg
            .syslog
            .clone()
            .map(|t| Exporter::spawn(t, cfg.export_queue));
        let exporter_dropped = exporter
            .as_ref()
            .map(|e| e.dropped.clone())
            .unwrap_or_default();
        let (queue, stall_after) = (cfg.queue, cfg.stall_after);
        let mut state = State::new(cfg, fs, exporter, shared.clone(), lock);
        let repair = state.reopen().map_err(|reason| AuditError::Startup {
            path: state.cfg.path.display().to_string(),
            reason,
        })?;
        let startup = format!(
            "\"version\":\"{}\",\"pid\":{}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
        let mut first: Vec<(&'static str, String)> =
            repair.into_iter().map(|r| ("audit_repair", r)).collect();
        first.push(("startup", startup));
        state
            .commit_internal(&first, true)
            .map_err(|reason| AuditError::Startup {
                path: state.cfg.path.display().to_string(),
                reason,
            })?;
        shared.available.store(true, Relaxed);
        let group = Group::start(state, queue).map_err(|reason| AuditError::Startup {
            path: String::new(),
            reason,
        })?;
        Ok(AuditWriter {
            group,
            shared,
            exporter_dropped,
            stall_after,
        })
    }

    async fn record(&self, event: &'static str, fields: String) -> Result<u64, AuditError> {
        Waiting::run(&self.group, What::Record { event, fields }, true).await
    }

    /// Records a request decision; returns once the record is durable (or
    /// written, in interval mode). The receipt is what lets a request go on.
    pub async fn request(&self, r: RequestRecord) -> Result<Receipt, AuditError> {
        let fields = members(serde_json::to_string(&r).unwrap_or_default());
        let seq = self.record("request", fields).await?;
        Ok(Receipt {
            seq,
            request_id: r.request_id,
            allowed: r.decision == super::Decision::Allow,
        })
    }

    /// Records any other event, durably.
    pub async fn append(&self, e: Event) -> Result<u64, AuditError> {
        self.record(e.name(), e.fields()).await
    }

    /// Queues a record without waiting for it to be written: it goes into
    /// the next group commit, or is written by the ticker when none has
    /// come within `LINGER` (1 ms). For records whose durability nothing
    /// waits on, such as `result`; never for `request`. While the trail is
    /// closed such records are held (up to [`WriterConfig::held`]) and
    /// written first when it recovers.
    pub fn append_queued(&self, e: Event) -> Result<(), AuditError> {
        let what = What::Record {
            event: e.name(),
            fields: e.fields(),
        };
        self.group.enqueue(Entry::new(what, None), true).map(|_| ())
    }

    /// Blocking form of [`AuditWriter::append`], for threads outside tokio.
    pub fn append_blocking(&self, e: Event) -> Result<u64, AuditError> {
        let what = What::Record {
            event: e.name(),
            fields: e.fields(),
        };
        Waiting::run_blocking(&self.group, what)
    }

    /// Closes the active file and starts the next one (SIGHUP); the chain
    /// and the sequence continue.
    pub async fn rotate(&self) -> Result<(), AuditError> {
        Waiting::run(&self.group, What::Rotate, true)
            .await
            .map(|_| ())
    }

    /// Writes `shutdown` and a final checkpoint, syncs, and stops the
    /// writer. Never refused as overloaded: it waits its turn behind
    /// whatever is queued.
    pub async fn shutdown(&self, reason: &str) -> Result<(), AuditError> {
        Waiting::run(&self.group, What::Shutdown(reason.to_string()), false)
            .await
            .map(|_| ())
    }

    /// How long the write or fsync in progress has been at it (None when
    /// the trail is idle): a disk that hangs instead of failing leaves the
    /// trail available while every request waits, which only this shows.
    pub fn stalled_for(&self) -> Option<Duration> {
        let since = *self
            .shared
            .busy_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        since.map(|t| t.elapsed())
    }

    /// For the gateway's health check: why requests cannot be recorded now,
    /// if they cannot. The trail is closed, or a write or fsync has been in
    /// progress for longer than [`WriterConfig::stall_after`] (requests
    /// then wait until their deadline: a balancer should send elsewhere).
    pub fn health(&self) -> Result<(), String> {
        if !self.is_available() {
            return Err("the audit trail is unavailable".into());
        }
        match self.stalled_for() {
            Some(d) if d >= self.stall_after => Err(format!(
                "audit fsync stalled for {} ms (a write or fsync of the trail has not returned)",
                d.as_millis()
            )),
            _ => Ok(()),
        }
    }

    /// False while the writer refuses records (the gateway's health check).
    pub fn is_available(&self) -> bool {
        self.shared.available.load(Relaxed)
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            records: self.shared.records.load(Relaxed),
            batches: self.shared.batches.load(Relaxed),
            syncs: self.shared.syncs.load(Relaxed),
            failures: self.shared.failures.load(Relaxed),
            export_dropped: self.exporter_dropped.load(Relaxed),
            held_dropped: self.shared.held_dropped.load(Relaxed),
        }
    }
}

/// Longest wait between recovery attempts.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The trail as the leader sees it: the open file, where the chain
/// stands, and why it is closed if it is.
pub(super) struct State {
    cfg: WriterConfig,
    fs: Arc<dyn TrailFs>,
    file: Option<Box<dyn TrailFile>>,
    anchor: Option<Box<dyn TrailFile>>,
    next_seq: u64,
    prev: LineHash,
    file_len: u64,
    /// Why the trail is closed, while it is.
    failed: Option<Failure>,
    next_retry: Instant,
    retry_delay: Duration,
    since_checkpoint: u64,
    /// Interval mode: when the oldest unsynced write happened.
    unsynced: Option<Instant>,
    exporter: Option<Exporter>,
    dropped_reported: u64,
    /// Records nobody waits for, kept while the trail is closed.
    held: Held,
    shared: Arc<Shared>,
    /// The trail's writer lock: held until the shutdown record is durable.
    lock: Option<WriterLock>,
}

/// Why the trail is closed: the error that closed it and how recovery has
/// gone since. Only the first cause and the latest attempt's error are kept,
/// so that the text is as long after an hour of failing retries as after
/// one: it goes into every refusal and every log line.
struct Failure {
    cause: String,
    /// Recovery attempts that have failed.
    attempts: u64,
    /// What callers are told.
    text: String,
}

impl Failure {
    fn new(cause: String) -> Failure {
        Failure {
            text: cause.clone(),
            cause,
            attempts: 0,
        }
    }

    /// The same failure after one more recovery attempt failed with `e`.
    fn retry_failed(self, e: &str) -> Failure {
        let attempts = self.attempts + 1;
        Failure {
            text: format!("{} (recovery attempt {attempts} failed: {e})", self.cause),
            cause: self.cause,
            attempts,
        }
    }
}

fn io_text(what: &str, e: &io::Error) -> String {
    format!("{what}: {e}")
}

impl State {
    /// A state with no file open yet; `reopen` finds where the chain stands.
    fn new(
        cfg: WriterConfig,
        fs: Arc<dyn TrailFs>,
        exporter: Option<Exporter>,
        shared: Arc<Shared>,
        lock: WriterLock,
    ) -> State {
        let cfg_held = cfg.held;
        State {
            lock: Some(lock),
            retry_delay: cfg.retry,
            cfg,
            fs,
            file: None,
            anchor: None,
            next_seq: 1,
            prev: GENESIS,
            file_len: 0,
            failed: None,
            next_retry: Instant::now(),
            since_checkpoint: 0,
            unsynced: None,
            exporter,
            dropped_reported: 0,
            held: Held::new(cfg_held),
            shared,
        }
    }

    /// One leader's turn: what fell due by time, then the batch; true when
    /// shut down. Marked at work throughout (see [`AuditWriter::stalled_for`]).
    pub(super) fn work(&mut self, batch: Vec<Entry>) -> bool {
        let shared = self.shared.clone();
        let _busy = Busy::start(&shared.busy_since);
        self.maintain();
        self.handle(batch)
    }

    /// What falls due by time, done by whoever leads next: a recovery
    /// attempt once its back-off has passed, the interval fsync.
    fn maintain(&mut self) {
        if self.failed.is_some() && Instant::now() >= self.next_retry {
            self.recover();
        }
        if self
            .unsynced
            .is_some_and(|t| t.elapsed() >= self.interval())
        {
            if let Err(e) = self.sync_now() {
                self.fail(e);
            }
        }
    }

    /// For good (shutdown, or a panic in this code): the health check
    /// reports the trail unavailable.
    pub(super) fn refuse_all(&self) {
        self.shared.available.store(false, Relaxed);
    }

    /// Interval mode, when the last handle goes: what was written is made
    /// durable.
    pub(super) fn sync_if_unsynced(&mut self) {
        if self.unsynced.is_some() {
            let _ = self.sync_now();
        }
    }

    /// Whether every commit ends with an fdatasync.
    pub(super) fn syncs_each_commit(&self) -> bool {
        self.cfg.durability == Durability::Always
    }

    fn interval(&self) -> Duration {
        match self.cfg.durability {
            Durability::Interval(d) => d,
            Durability::Always => Duration::ZERO,
        }
    }

    /// When the ticker must look again: the next recovery attempt, the
    /// interval fsync.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return Some(self.next_retry);
        }
        self.unsynced.map(|t| t + self.interval())
    }

    /// Handles one batch of entries in order; true when shut down (the
    /// entries after the shutdown are dropped: their callers hear `Closed`).
    pub(super) fn handle(&mut self, batch: Vec<Entry>) -> bool {
        let mut records: Vec<(&'static str, String, Option<Waiter>)> = Vec::new();
        for Entry { what, waiter, .. } in batch {
            match what {
                What::Record { event, fields } => records.push((event, fields, waiter)),
                What::Rotate => {
                    self.commit(std::mem::take(&mut records));
                    answer(waiter, self.guarded(|s| s.rotate()).map(|_| 0));
                }
                What::Shutdown(reason) => {
                    self.commit(std::mem::take(&mut records));
                    // One last attempt, so that what is held is not lost
                    // merely because the disk came back after the last retry.
                    self.recover();
                    let r = self.guarded(|s| {
                        let fields = members(serde_json::json!({ "reason": reason }).to_string());
                        s.commit_internal(&[("shutdown", fields)], true)?;
                        s.checkpoint("shutdown")
                    });
                    if !self.held.is_empty() {
                        tracing::error!(path = %self.cfg.path.display(), "shut down with the trail closed: records held since it failed (results among them) were never written");
                    }
                    self.shared.available.store(false, Relaxed);
                    // Nothing is written after this: the trail is closed
                    // for good, and the syslog exporter's thread ends.
                    self.file = None;
                    self.anchor = None;
                    self.exporter = None;
                    // Released before the caller hears back, so that a
                    // successor started right after finds the trail free.
                    self.lock = None;
                    answer(waiter, r.map(|_| 0));
                    return true;
                }
            }
        }
        self.commit(records);
        false
    }

    /// Runs a step unless the trail is closed; a failure closes it.
    fn guarded(
        &mut self,
        step: impl FnOnce(&mut State) -> Result<(), String>,
    ) -> Result<(), AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Unavailable(f.text.clone()));
        }
        step(self).map_err(|e| {
            self.fail(e.clone());
            AuditError::Unavailable(e)
        })
    }

    /// Writes caller records as one batch and answers each. With the trail
    /// closed, or when this write fails, callers waiting are refused (they
    /// send nothing) and records nobody waits for are held.
    fn commit(&mut self, records: Vec<(&'static str, String, Option<Waiter>)>) {
        if records.is_empty() {
            return;
        }
        if let Some(f) = &self.failed {
            let refused = AuditError::Unavailable(f.text.clone());
            for (event, fields, waiter) in records {
                match waiter {
                    Some(w) => answer(Some(w), Err(refused.clone())),
                    None => self.hold(None, event, fields),
                }
            }
            return;
        }
        // Drops by the exporter are themselves audited, first in the batch.
        let mut lines: Vec<(&'static str, String)> = Vec::with_capacity(records.len() + 1);
        let mut waiters = Vec::with_capacity(records.len() + 1);
        if let Some(l) = self.export_dropped_line() {
            lines.push(l);
            waiters.push(None);
        }
        for (event, fields, waiter) in records {
            lines.push((event, fields));
            waiters.push(waiter);
        }
        let sync = self.cfg.durability == Durability::Always;
        let first = self.next_seq;
        match self.write_lines(&lines, sync) {
            Ok(seqs) => {
                for (seq, waiter) in seqs.into_iter().zip(waiters) {
                    answer(waiter, Ok(seq));
                }
                if let Err(e) = self.after_commit() {
                    self.fail(e);
                }
            }
            Err(e) => {
                self.fail(e.clone());
                let refused = AuditError::Unavailable(e);
                for ((seq, (event, fields)), waiter) in (first..).zip(lines).zip(waiters) {
                    match waiter {
                        Some(w) => answer(Some(w), Err(refused.clone())),
                        None => self.hold(Some(seq), event, fields),
                    }
                }
            }
        }
    }

    /// The `export_dropped` line, when the exporter dropped records since
    /// the last one.
    fn export_dropped_line(&mut self) -> Option<(&'static str, String)> {
        let dropped = self
            .exporter
            .as_ref()
            .map_or(0, |e| e.dropped.load(Relaxed));
        if dropped <= self.dropped_reported {
            return None;
        }
        let fields = format!(
            "\"sink\":\"syslog\",\"dropped\":{},\"dropped_total\":{dropped}",
            dropped - self.dropped_reported
        );
        self.dropped_reported = dropped;
        Some(("export_dropped", fields))
    }

    /// Keeps a record nobody waits for until the trail recovers.
    fn hold(&mut self, seq: Option<u64>, event: &'static str, fields: String) {
        if let Err(n) = self.held.push(HeldRecord { seq, event, fields }) {
            self.shared.held_dropped.fetch_add(1, Relaxed);
            if n == 1 {
                tracing::error!(limit = self.cfg.held, "audit trail closed too long: records nobody waits for are now dropped (counted, and the count recorded on recovery)");
            }
        }
    }

    /// Periodic checkpoint and size rotation, after a successful commit.
    fn after_commit(&mut self) -> Result<(), String> {
        if self.cfg.checkpoint_every > 0 && self.since_checkpoint >= self.cfg.checkpoint_every {
            self.checkpoint("interval")?;
        }
        if self
            .cfg
            .rotate_bytes
            .is_some_and(|max| self.file_len >= max)
        {
            self.rotate()?;
        }
        Ok(())
    }

    /// Writes the writer's own records; `sync` forces durability.
    fn commit_internal(
        &mut self,
        lines: &[(&'static str, String)],
        sync: bool,
    ) -> Result<(), String> {
        self.write_lines(lines, sync || self.cfg.durability == Durability::Always)
            .map(|_| ())
    }

    /// Formats, chains, writes and (when asked) syncs lines; returns their seqs.
    fn write_lines(
        &mut self,
        lines: &[(&'static str, String)],
        sync: bool,
    ) -> Result<Vec<u64>, String> {
        let file = self.file.as_mut().ok_or("no trail file open")?;
        let ts = line::now_rfc3339();
        let mut buf = String::with_capacity(lines.len() * 400);
        let mut seqs = Vec::with_capacity(lines.len());
        let (mut seq, mut prev) = (self.next_seq, self.prev);
        for (event, fields) in lines {
            let l = line::build(seq, &ts, event, &self.cfg.key, fields, &prev);
            prev = line::hash_line(l.as_bytes());
            buf.push_str(&l);
            buf.push('\n');
            seqs.push(seq);
            seq += 1;
        }
        write_all(file.as_mut(), buf.as_bytes()).map_err(|e| io_text("write", &e))?;
        // The chain advances only once the bytes are in the file; after a
        // failure it is read back from the file on recovery anyway.
        self.next_seq = seq;
        self.prev = prev;
        self.file_len += buf.len() as u64;
        self.since_checkpoint += lines.len() as u64;
        self.shared.records.fetch_add(lines.len() as u64, Relaxed);
        self.shared.batches.fetch_add(1, Relaxed);
        if sync {
            self.sync_now()?;
        } else {
            self.unsynced.get_or_insert_with(Instant::now);
        }
        if let Some(ex) = &self.exporter {
            for l in buf.lines() {
                ex.send(l);
            }
        }
        Ok(seqs)
    }

    fn sync_now(&mut self) -> Result<(), String> {
        if let Some(f) = self.file.as_mut() {
            f.sync().map_err(|e| io_text("fsync", &e))?;
            self.shared.syncs.fetch_add(1, Relaxed);
        }
        self.unsynced = None;
        Ok(())
    }

    /// A durable checkpoint line, then its (seq, hash) in the anchor file.
    fn checkpoint(&mut self, reason: &str) -> Result<(), String> {
        let fields = format!("\"reason\":\"{reason}\"");
        self.commit_internal(&[("checkpoint", fields)], true)?;
        self.since_checkpoint = 0;
        let (seq, hash) = (self.next_seq - 1, self.prev);
        if let Some(anchor) = self.anchor.as_mut() {
            let entry = format!(
                "{{\"seq\":{seq},\"ts\":\"{}\",\"line_sha256\":\"{}\"}}\n",
                line::now_rfc3339(),
                hex::encode(hash)
            );
            write_all(anchor.as_mut(), entry.as_bytes())
                .map_err(|e| io_text("anchor write", &e))?;
            anchor.sync().map_err(|e| io_text("anchor fsync", &e))?;
        }
        Ok(())
    }

    /// Checkpoint, rename the active file to `NAME.<last seq>`, open a new one.
    fn rotate(&mut self) -> Result<(), String> {
        self.checkpoint("rotation")?;
        self.file = None;
        let rotated = rotated_name(&self.cfg.path, self.next_seq - 1);
        self.fs
            .rename(&self.cfg.path, &rotated)
            .map_err(|e| io_text("rotate", &e))?;
        self.file = Some(
            self.fs
                .open_append(&self.cfg.path)
                .map_err(|e| io_text("open after rotation", &e))?,
        );
        self.file_len = 0;
        Ok(())
    }

    fn fail(&mut self, why: String) {
        self.close(Failure::new(why));
    }

    fn close(&mut self, failure: Failure) {
        tracing::error!(error = %failure.text, path = %self.cfg.path.display(), "audit trail failed; refusing records until it recovers");
        self.shared.available.store(false, Relaxed);
        self.shared.failures.fetch_add(1, Relaxed);
        // Never write again through a descriptor that has failed.
        self.file = None;
        self.anchor = None;
        self.unsynced = None;
        self.failed = Some(failure);
        self.next_retry = Instant::now() + self.retry_delay;
        self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
    }

    /// Reopens the trail, repairs its tail, and writes `audit_recovered`.
    fn recover(&mut self) {
        let Some(failure) = self.failed.take() else {
            return;
        };
        let after = format!(
            "{} (recovered on attempt {})",
            failure.cause,
            failure.attempts + 1
        );
        let result = self
            .reopen()
            .and_then(|repair| self.write_recovery(repair, &after));
        match result {
            Ok(()) => {
                tracing::warn!(path = %self.cfg.path.display(), "audit trail recovered");
                self.retry_delay = self.cfg.retry;
                self.shared.available.store(true, Relaxed);
            }
            Err(e) => self.close(failure.retry_failed(&e)),
        }
    }

    /// The recovery batch, durable in one write: what was cut from the
    /// tail, `audit_recovered`, then the records held while the trail was
    /// closed and an `audit_dropped` record with how many did not fit.
    fn write_recovery(&mut self, repair: Option<String>, after: &str) -> Result<(), String> {
        let mut lines: Vec<(&'static str, String)> =
            repair.into_iter().map(|r| ("audit_repair", r)).collect();
        lines.push((
            "audit_recovered",
            members(serde_json::json!({ "after": after }).to_string()),
        ));
        let (held, dropped) = self.held.take(self.next_seq);
        let first_held = lines.len();
        lines.extend(held.into_iter().map(|r| (r.event, r.fields)));
        let held_end = lines.len();
        if dropped > 0 {
            let why = format!(
                "records nobody waited for, beyond the {} held while the trail was closed",
                self.cfg.held
            );
            lines.push((
                "audit_dropped",
                members(serde_json::json!({ "dropped": dropped, "reason": why }).to_string()),
            ));
        }
        let first = self.next_seq;
        let r = self.commit_internal(&lines, true);
        if r.is_err() {
            // Held again, with the seqs they had: after a failed fsync they
            // may be on disk, which the next attempt reads.
            let back = (first + first_held as u64..)
                .zip(lines.drain(first_held..held_end))
                .map(|(seq, (event, fields))| HeldRecord {
                    seq: Some(seq),
                    event,
                    fields,
                })
                .collect();
            self.held.restore(back, dropped);
        }
        r
    }

    /// Opens the active file and the anchor, finds where the chain stands
    /// and cuts a torn tail; returns the `audit_repair` fields if it cut.
    fn reopen(&mut self) -> Result<Option<String>, String> {
        self.file = None;
        self.anchor = None;
        let mut file = self
            .fs
            .open_append(&self.cfg.path)
            .map_err(|e| io_text("open", &e))?;
        let tail = find_tail(file.as_mut(), &self.cfg.key, &self.cfg.path)
            .map_err(|e| format!("{}: {e}", self.cfg.path.display()))?;
        let (seq, prev) = match tail.last {
            Some(last) => last,
            None => self.tail_of_rotated()?,
        };
        let repair = match &tail.torn {
            Some(torn) => {
                file.truncate(tail.complete_len)
                    .map_err(|e| io_text("truncate torn tail", &e))?;
                let head = &torn[..torn.len().min(256)];
                Some(members(
                    serde_json::json!({
                        "file": self.cfg.path.display().to_string(),
                        "offset": tail.complete_len,
                        "torn_bytes": torn.len(),
                        "torn_sha256": hex::encode(line::hash_line(torn)),
                        "torn_head": String::from_utf8_lossy(head),
                    })
                    .to_string(),
                ))
            }
            None => None,
        };
        if let Some(p) = &self.cfg.anchor_path {
            self.anchor = Some(
                self.fs
                    .open_append(p)
                    .map_err(|e| io_text("open anchor file", &e))?,
            );
        }
        self.next_seq = seq;
        self.prev = prev;
        self.file_len = tail.complete_len;
        self.file = Some(file);
        Ok(repair)
    }

    /// With an empty active file, the chain continues from the newest
    /// rotated file (or starts, if there is none).
    fn tail_of_rotated(&self) -> Result<(u64, LineHash), String> {
        let Some(newest) = rotated_files(self.fs.as_ref(), &self.cfg.path).pop() else {
            return Ok((1, GENESIS));
        };
        let mut f = self
            .fs
            .open_append(&newest)
            .map_err(|e| io_text("open rotated file", &e))?;
        let tail = find_tail(f.as_mut(), &self.cfg.key, &self.cfg.path)
            .map_err(|e| format!("{}: {e}", newest.display()))?;
        match (tail.last, tail.torn) {
            (Some(last), None) => Ok(last),
            _ => Err(format!(
                "{}: rotated file does not end with a complete record",
                newest.display()
            )),
        }
    }
}

/// Tells a waiting caller how its entry went (a caller gone meanwhile is
/// told nothing).
fn answer(waiter: Option<Waiter>, r: Result<u64, AuditError>) {
    if let Some(w) = waiter {
        let _ = w.send(Turn::Done(r));
    }
}

/// `NAME.<seq, 12 digits>`, so that rotated files sort in chain order.
pub(crate) fn rotated_name(path: &Path, last_seq: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{last_seq:012}"));
    path.with_file_name(name)
}

/// Rotated files of a trail, oldest first.
pub(crate) fn rotated_files(fs: &dyn TrailFs, path: &Path) -> Vec<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut found: Vec<PathBuf> = fs
        .list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.strip_prefix(&base)
                .and_then(|r| r.strip_prefix('.'))
                .is_some_and(|n| n.len() == 12 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort();
    found
}

struct Tail {
    /// (next seq, hash of the last complete line), if there is one.
    last: Option<(u64, LineHash)>,
    /// Length up to the end of the last complete line.
    complete_len: u64,
    /// Bytes after it (a write cut short by a crash).
    torn: Option<Vec<u8>>,
}

fn read_range(f: &dyn TrailFile, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut buf[done..], offset + done as u64)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while reading",
                ))
            }
            n => done += n,
        }
    }
    Ok(buf)
}

/// Position of the last `\n` before `end`, reading backwards in chunks.
fn last_newline_before(f: &dyn TrailFile, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let chunk = read_range(f, lo, (hi - lo) as usize)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

/// Finds the last complete line, verified with `key`, and anything torn
/// after it. The last line sets the next seq and prev, so one the writer
/// cannot verify is refused: whoever appended it would choose where the
/// chain continues. `trail` is the active file, for the advice.
fn find_tail(f: &mut dyn TrailFile, key: &AuditKey, trail: &Path) -> Result<Tail, String> {
    let len = f.size().map_err(|e| io_text("stat", &e))?;
    let io = |e: io::Error| io_text("read", &e);
    let complete_len = match last_newline_before(f, len).map_err(io)? {
        Some(nl) => nl + 1,
        None => 0,
    };
    let torn = (complete_len < len)
        .then(|| read_range(f, complete_len, (len - complete_len) as usize))
        .transpose()
        .map_err(io)?;
    if complete_len == 0 {
        return Ok(Tail {
            last: None,
            complete_len,
            torn,
        });
    }
    let start = last_newline_before(f, complete_len - 1)
        .map_err(io)?
        .map_or(0, |nl| nl + 1);
    let last = read_range(f, start, (complete_len - 1 - start) as usize).map_err(io)?;
    let found = match line::parse(&last) {
        Ok(h) => h.key_id,
        Err(e) => {
            return Err(format!(
            "last complete line at byte {start}: {e}; run `ipmigw audit verify` before restarting"
        ))
        }
    };
    let header = line::open(&last, std::slice::from_ref(key)).map_err(|e| {
        let trail = trail.display();
        format!(
            "last record at byte {start} (key_id {found}) cannot be verified with the configured audit key (key_id {}): {e}. \
             The gateway continues only a trail whose last record it can verify; check it with \
             `ipmigw audit verify --key-file KEY {trail}*`. To start a new trail instead, move the trail files aside \
             ({trail} and {trail}.*, e.g. into an archive directory): they stay verifiable with the key \
             that wrote them via `ipmigw audit verify --key-file`",
            key.id()
        )
    })?;
    Ok(Tail {
        last: Some((header.seq + 1, line::hash_line(&last))),
        complete_len,
        torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::{FaultFs, Faults, EIO, ENOSPC};
    use crate::secret::SecretBytes;

    /// Why the writer refuses records right now.
    fn refusal(s: &mut State) -> String {
        match s.guarded(|_| Ok(())) {
            Err(AuditError::Unavailable(why)) => why,
            r => panic!("expected the trail closed, got {r:?}"),
        }
    }

    #[test]
    fn a_long_failure_keeps_its_first_cause_in_a_bounded_message() {
        let d = tempfile::tempdir().unwrap();
        let key = AuditKey::new(SecretBytes::new(vec![1; 32])).unwrap();
        let cfg = WriterConfig::new(d.path().join("audit.jsonl"), key);
        let fs = FaultFs::default();
        let mut s = State::new(
            cfg.clone(),
            Arc::new(fs.clone()),
            None,
            Arc::default(),
            WriterLock::none(),
        );
        s.reopen().unwrap();
        s.commit_internal(&[("startup", String::new())], true)
            .unwrap();
        // The disk fills up, then the trail cannot even be reopened.
        fs.set(Faults {
            sync: Some(ENOSPC),
            open: Some(EIO),
            ..Faults::default()
        });
        s.commit(vec![("request", String::new(), None)]);
        let cause = refusal(&mut s);
        assert!(cause.starts_with("fsync: "), "{cause}");
        // Driven one attempt at a time: the real backoff would take minutes.
        let mut seen = Vec::new();
        for attempt in 1..=50 {
            s.recover();
            if attempt == 2 || attempt == 50 {
                seen.push(refusal(&mut s));
            }
        }
        let (two, fifty) = (&seen[0], &seen[1]);
        assert!(fifty.starts_with(&cause), "{fifty}");
        assert!(
            fifty.contains("recovery attempt 50 failed: open: "),
            "{fifty}"
        );
        assert_eq!(
            *fifty,
            two.replace("attempt 2 ", "attempt 50 "),
            "only the count may change"
        );
        fs.set(Faults::default());
        s.recover();
        assert!(s.guarded(|_| Ok(())).is_ok(), "recovered");
        let text = std::fs::read_to_string(&cfg.path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["event"], "audit_recovered");
        assert_eq!(last["after"], format!("{cause} (recovered on attempt 51)"));
    }
}
