//! Group commit without a writer thread on the request path. Records wait
//! in one queue; the caller that finds no commit in progress becomes the
//! *leader*: it takes everything queued so far, writes and fdatasyncs it
//! as one batch on its own thread, answers every caller in the batch, and
//! hands the turn to the first caller still waiting, whose batch is
//! whatever queued up meanwhile. A lone request therefore waits for its
//! own write and fdatasync and for no other thread (the runtime moves the
//! leader's worker to another thread meanwhile, off the request's path:
//! [`lead_async`]); under load, records waiting at the same moment still
//! share one fdatasync.
//!
//! A small background thread (the ticker) does only what falls due by
//! time: the fdatasync of interval mode, recovery retries, and records
//! nobody waits for (`result`, `tls`, ...) when no commit has taken them
//! within [`LINGER`].
//!
//! Never: two batches written at once or out of queue order (one turn,
//! passed in queue order); a record answered before it is written; the
//! turn lost when its holder goes away (it is passed on, or the ticker
//! takes over).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use super::writer::State;
use super::AuditError;

/// How long a record nobody waits for may sit in the queue before the
/// ticker writes it: long enough that a gateway answering one request
/// after another writes each `result` with the next `request` (one
/// fdatasync per request, not two, and no commit for the next request to
/// wait behind), short enough that such records are on disk about as
/// soon as before.
pub(super) const LINGER: Duration = Duration::from_millis(1);

/// Most entries in one batch (one write).
const MAX_BATCH: usize = 4096;

/// What a caller queued.
pub(super) enum What {
    Record { event: &'static str, fields: String },
    Rotate,
    Shutdown(String),
}

/// A queued entry and who waits for it (none for `append_queued`).
pub(super) struct Entry {
    pub(super) what: What,
    pub(super) waiter: Option<Waiter>,
    /// When it was queued (how long a record nobody waits for lingered).
    queued: Instant,
}

impl Entry {
    pub(super) fn new(what: What, waiter: Option<Waiter>) -> Entry {
        Entry {
            what,
            waiter,
            queued: Instant::now(),
        }
    }
}

pub(super) type Waiter = oneshot::Sender<Turn>;

/// What a waiting caller hears.
pub(super) enum Turn {
    /// Its entry was handled: the record's seq (0 for rotate and shutdown).
    Done(Result<u64, AuditError>),
    /// It is the leader now: commit the queue, then wait on this for its
    /// own entry.
    Lead(oneshot::Receiver<Turn>),
}

struct Queue {
    entries: VecDeque<Entry>,
    /// Someone holds the turn: committing, or told to.
    leading: bool,
    /// Shut down: everything is refused.
    closed: bool,
}

/// The queue, the trail, and the ticker.
pub(super) struct Group {
    queue: Mutex<Queue>,
    trail: Mutex<State>,
    ticker: Arc<Ticker>,
    /// Entries that may wait before callers get `Overloaded`.
    cap: usize,
    /// Every commit ends with an fdatasync (`fsync = "always"`): leading
    /// blocks for a device flush, not just for a write(2) to the page
    /// cache (see [`lead_async`]).
    syncs_each_commit: bool,
}

/// For the queue and the ticker's alarm, whose state stays consistent
/// whatever panics (a panic while writing the trail closes the queue, see
/// [`Group::lead`]), and for marking a closed trail unavailable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Group {
    /// Takes over an opened trail and starts the ticker.
    pub(super) fn start(trail: State, cap: usize) -> Result<Arc<Group>, String> {
        let ticker = Arc::new(Ticker::default());
        let syncs_each_commit = trail.syncs_each_commit();
        let group = Arc::new(Group {
            queue: Mutex::new(Queue {
                entries: VecDeque::new(),
                leading: false,
                closed: false,
            }),
            trail: Mutex::new(trail),
            ticker: ticker.clone(),
            cap: cap.max(1),
            syncs_each_commit,
        });
        let weak = Arc::downgrade(&group);
        std::thread::Builder::new()
            .name("audit-ticker".into())
            .spawn(move || ticker.run(weak))
            .map_err(|e| format!("cannot start the audit ticker thread: {e}"))?;
        Ok(group)
    }

    /// Queues an entry; true when the caller holds the turn now and must
    /// lead. `bounded`: refused with `Overloaded` past the queue's size.
    pub(super) fn enqueue(&self, entry: Entry, bounded: bool) -> Result<bool, AuditError> {
        let mut q = lock(&self.queue);
        if q.closed {
            return Err(AuditError::Closed);
        }
        if bounded && q.entries.len() >= self.cap {
            return Err(AuditError::Overloaded);
        }
        let waits = entry.waiter.is_some();
        q.entries.push_back(entry);
        if q.leading {
            return Ok(false);
        }
        if waits {
            q.leading = true;
            return Ok(true);
        }
        self.arm_for_lingering(&q);
        Ok(false)
    }

    /// With no leader, the oldest queued record is written by the ticker
    /// once it has lingered.
    fn arm_for_lingering(&self, q: &Queue) {
        if let Some(oldest) = q.entries.front() {
            self.ticker.at(oldest.queued + LINGER);
        }
    }

    /// As leader: commits one batch, then passes the turn on. Blocks for
    /// the write and the fdatasync. A panic in the trail's code (a bug)
    /// leaves the chain's state unknown: the queue is closed for good,
    /// as a writer thread that died would leave it, instead of continuing
    /// the chain from a state that may be wrong.
    pub(super) fn lead(&self) {
        let batch: Vec<Entry> = {
            let mut q = lock(&self.queue);
            let n = q.entries.len().min(MAX_BATCH);
            q.entries.drain(..n).collect()
        };
        let on_panic = CloseOnPanic(self);
        let (stopped, due) = match self.trail.lock() {
            Ok(mut trail) => {
                let stopped = trail.work(batch);
                (stopped, trail.next_deadline())
            }
            Err(_) => (true, None),
        };
        std::mem::forget(on_panic);
        let mut q = lock(&self.queue);
        if stopped {
            self.close(&mut q);
            return;
        }
        if let Some(due) = due {
            self.ticker.at(due);
        }
        self.pass_turn(&mut q);
    }

    /// Refuses everything from now on: what is queued hears `Closed` (its
    /// waiters dropped), and so does every later caller; the health check
    /// says so.
    fn close(&self, q: &mut Queue) {
        q.closed = true;
        q.leading = false;
        q.entries.clear();
        self.ticker.stop();
        // Only a flag is set: safe on a trail whose lock a panic poisoned.
        lock(&self.trail).refuse_all();
    }

    /// Gives the turn to the first caller still waiting; with none, frees
    /// it, and what is left (records nobody waits for) goes to the next
    /// leader or, after [`LINGER`], to the ticker.
    fn pass_turn(&self, q: &mut Queue) {
        for e in q.entries.iter_mut() {
            let Some(old) = e.waiter.take() else {
                continue;
            };
            let (tx, rx) = oneshot::channel();
            e.waiter = Some(tx);
            if old.send(Turn::Lead(rx)).is_ok() {
                return;
            }
            // That caller is gone; its entry stays queued, unanswered.
            e.waiter = None;
        }
        q.leading = false;
        self.arm_for_lingering(q);
    }

    /// What falls due by time, unless a leader is at work (it re-arms the
    /// ticker when it is done). Queued records that have not lingered yet
    /// are left for the next request's commit.
    fn tick(&self) {
        {
            let mut q = lock(&self.queue);
            if q.leading || q.closed {
                return;
            }
            let now = Instant::now();
            let Ok(trail) = self.trail.lock() else {
                return;
            };
            let trail_due = trail.next_deadline();
            drop(trail);
            let lingered = q.entries.front().map(|e| e.queued + LINGER);
            let due = [trail_due, lingered].into_iter().flatten().min();
            match due {
                None => return,
                Some(t) if t > now => {
                    self.ticker.at(t);
                    return;
                }
                Some(_) => q.leading = true,
            }
        }
        self.lead();
    }
}

impl Drop for Group {
    /// The last handle is gone without a shutdown: what is queued is
    /// written and what is written synced, so that dropping the writer
    /// loses no record it accepted; dropping the trail then releases the
    /// writer lock.
    fn drop(&mut self) {
        self.ticker.stop();
        let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        let batch: Vec<Entry> = if q.closed {
            Vec::new()
        } else {
            q.entries.drain(..).collect()
        };
        let Ok(trail) = self.trail.get_mut() else {
            return;
        };
        if !batch.is_empty() {
            trail.handle(batch);
        }
        trail.sync_if_unsynced();
    }
}

/// Armed while a leader is in the trail's code; dropped only by a panic.
struct CloseOnPanic<'a>(&'a Group);

impl Drop for CloseOnPanic<'_> {
    fn drop(&mut self) {
        let mut q = lock(&self.0.queue);
        self.0.close(&mut q);
    }
}

/// Leads from async code without holding up the runtime's other tasks
/// for a device flush.
///
/// With `fsync = "always"`, `block_in_place` keeps the write and the
/// fdatasync on this thread (no hand-off to another thread and back on the
/// request's path) while the worker's queued tasks move to another thread,
/// so that a 200 µs flush does not hold up the requests queued behind the
/// leader on its worker. In interval mode a commit is a write(2) to the
/// page cache, led inline like any small file write: moving the worker to
/// another thread would cost more than the write (measured through the
/// gateway on a loaded 2-core VM, BENCHMARKS.md: about 4.5 more context
/// switches per request and some 25 µs at p50; with an fdatasync in every
/// commit the same difference was within the run-to-run noise, and p99 no
/// worse). Such a leader may occasionally make the interval's fdatasync or
/// a checkpoint's when they fall due during its turn. A current-thread
/// runtime cannot block in place: its callers lead on the blocking pool.
pub(super) async fn lead_async(group: &Arc<Group>) {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) if group.syncs_each_commit => {
            tokio::task::block_in_place(|| group.lead())
        }
        Ok(RuntimeFlavor::MultiThread) => group.lead(),
        Ok(_) => {
            let g = group.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || g.lead()).await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        Err(_) => group.lead(),
    }
}

/// A caller waiting for its entry. If it goes away holding the turn (its
/// future dropped after `Lead` arrived), the turn is passed on, so that
/// the queue never waits for a leader that will not come.
pub(super) struct Waiting {
    rx: Option<oneshot::Receiver<Turn>>,
    group: Arc<Group>,
}

impl Waiting {
    /// Queues `what` and waits for it, leading whenever the turn comes.
    pub(super) async fn run(
        group: &Arc<Group>,
        what: What,
        bounded: bool,
    ) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        let lead = group.enqueue(Entry::new(what, Some(tx)), bounded)?;
        let mut w = Waiting {
            rx: Some(rx),
            group: group.clone(),
        };
        if lead {
            lead_async(group).await;
        }
        loop {
            let rx = w.rx.as_mut().expect("a receiver until answered");
            let turn = rx.await;
            w.rx = None;
            match turn {
                Ok(Turn::Done(r)) => return r,
                Ok(Turn::Lead(next)) => {
                    w.rx = Some(next);
                    lead_async(group).await;
                }
                Err(_) => return Err(AuditError::Closed),
            }
        }
    }

    /// The same for a thread outside tokio: it leads on its own thread.
    pub(super) fn run_blocking(group: &Arc<Group>, what: What) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        let mut lead = group.enqueue(Entry::new(what, Some(tx)), true)?;
        let mut rx = rx;
        loop {
            if lead {
                group.lead();
            }
            match rx.blocking_recv() {
                Ok(Turn::Done(r)) => return r,
                Ok(Turn::Lead(next)) => {
                    rx = next;
                    lead = true;
                }
                Err(_) => return Err(AuditError::Closed),
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            // Dropped here, before the turn is passed on: the receiver
            // inside `Lead` must be gone, or passing the turn would hand it
            // to this very caller again (a scrutinee of `if let` would
            // live until the end of the block).
            let holding = matches!(rx.try_recv(), Ok(Turn::Lead(_)));
            if holding {
                let mut q = lock(&self.group.queue);
                self.group.pass_turn(&mut q);
            }
        }
    }
}

/// The background thread's alarm clock.
#[derive(Default)]
struct Ticker {
    state: Mutex<Alarm>,
    cv: Condvar,
}

#[derive(Default)]
struct Alarm {
    at: Option<Instant>,
    stopped: bool,
}

impl Ticker {
    /// Wakes the thread at `t` at the latest.
    fn at(&self, t: Instant) {
        let mut a = lock(&self.state);
        if a.at.is_none_or(|cur| t < cur) {
            a.at = Some(t);
            self.cv.notify_one();
        }
    }

    fn stop(&self) {
        lock(&self.state).stopped = true;
        self.cv.notify_one();
    }

    /// Sleeps until the alarm; false once stopped.
    fn wait(&self) -> bool {
        let mut a = lock(&self.state);
        loop {
            if a.stopped {
                return false;
            }
            a = match a.at {
                None => self.cv.wait(a).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    let now = Instant::now();
                    if now >= t {
                        a.at = None;
                        return true;
                    }
                    self.cv
                        .wait_timeout(a, t - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Holds the group only while working: when the last handle goes, the
    /// group (and with it the trail and its writer lock) goes too.
    fn run(&self, group: Weak<Group>) {
        while self.wait() {
            match group.upgrade() {
                Some(g) => g.tick(),
                None => return,
            }
        }
    }
}
