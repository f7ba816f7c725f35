//! The consoles the gateway holds: one Serial-over-LAN console per BMC,
//! shared by the users attached to it (one writer seat, any number of
//! viewers, scrollback for new attachers), with its limits.
//!
//! The BMC side runs in [`driver`] (a dedicated RMCP+ session per console,
//! credentials only the gateway holds), the WebSocket side in [`ws`], the
//! recording in [`record`]. Policy is decided by the API before a user is
//! attached here; this module only enforces seats and limits.
//!
//! Never does: let a viewer's bytes reach the BMC, block the BMC side on a
//! slow client (a client that falls behind is dropped, others go on), or
//! write a secret (BMC credentials) anywhere.

pub mod driver;
pub mod record;
pub mod ws;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::settings::BmcSpec;
use crate::audit::{AuditWriter, Event};

/// `[console]`: limits and recording.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// Attachments one user may hold at once.
    pub max_per_user: usize,
    /// Attachments in total.
    pub max_total: usize,
    /// Seconds without a keystroke from an attachment before it is ended.
    pub idle_timeout_s: u64,
    /// Seconds an attachment may last.
    pub max_duration_s: u64,
    /// Recent output a new attacher gets.
    pub scrollback_bytes: usize,
    /// Record keystrokes too (a password typed after a prompt is redacted).
    pub record_input: bool,
    /// Where recordings go (default: beside the trail, `AUDIT.consoles/`).
    pub recordings_dir: Option<PathBuf>,
    /// Milliseconds of BMC silence before the keep-alive asks.
    pub keepalive_ms: u64,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            max_per_user: 4,
            max_total: 256,
            idle_timeout_s: 3600,
            max_duration_s: 12 * 3600,
            scrollback_bytes: 64 * 1024,
            record_input: false,
            recordings_dir: None,
            keepalive_ms: 15_000,
        }
    }
}

/// Messages from a console to its attachments, in order.
#[derive(Debug, Clone)]
pub enum Out {
    /// Host output.
    Bytes(Bytes),
    /// A JSON control message for everyone.
    Control(serde_json::Value),
    /// The writer seat changed; attachments re-read their mode.
    Seat(serde_json::Value),
    /// The console is over.
    Ended(String),
}

/// What attachments send toward the BMC.
#[derive(Debug)]
pub enum Input {
    /// Keystrokes from the writer.
    Keys(Vec<u8>),
    /// A serial break.
    Break,
    /// Nobody is attached any more.
    Stop,
}

/// Why an attach was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// Someone else holds the writer seat (and no force).
    SeatTaken(String),
    /// A console limit.
    Limit(&'static str),
    /// The console cannot be opened (unknown BMC, shutting down).
    Unavailable(String),
}

/// Every console.
pub struct Consoles {
    specs: HashMap<String, BmcSpec>,
    cfg: ConsoleSection,
    dir: PathBuf,
    audit: AuditWriter,
    open: Mutex<HashMap<String, Arc<Console>>>,
    per_user: Mutex<HashMap<String, usize>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Consoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consoles").finish_non_exhaustive()
    }
}

/// One BMC's console.
pub struct Console {
    /// The BMC's name.
    pub bmc: String,
    /// The recording's file name: it also names this console session in
    /// every record of it (`audit query --console` groups by it).
    pub recording: String,
    hub: Mutex<Hub>,
    input: mpsc::Sender<Input>,
    audit: AuditWriter,
}

struct Hub {
    scrollback: VecDeque<u8>,
    cap: usize,
    out: broadcast::Sender<Out>,
    /// Attachment id and user of the writer.
    writer: Option<(u64, String)>,
    attached: HashMap<u64, String>,
    phase: &'static str,
    rec: Option<record::Recorder>,
    closed: bool,
}

/// One user's attachment; dropping it detaches.
pub struct Attachment {
    /// Its id.
    pub id: u64,
    /// Its user.
    pub user: String,
    /// The console.
    pub console: Arc<Console>,
    /// Scrollback at attach.
    pub scrollback: Vec<u8>,
    /// Everything after it.
    pub rx: broadcast::Receiver<Out>,
    /// Keystroke frames refused because it held no writer seat (the first
    /// is audited at once, the count at detach: a viewer typing cannot
    /// flood the trail).
    pub refused_inputs: u64,
    consoles: Arc<Consoles>,
}

/// Messages a console's channel holds for a slow attachment before it is
/// dropped.
const CHANNEL_DEPTH: usize = 8192;

impl Consoles {
    /// The hub for `specs`, recording into `dir` unless the section names
    /// another.
    pub fn new(specs: &[BmcSpec], cfg: &ConsoleSection, dir: PathBuf, audit: AuditWriter) -> Self {
        Consoles {
            specs: specs.iter().map(|s| (s.name.clone(), s.clone())).collect(),
            dir: cfg.recordings_dir.clone().unwrap_or(dir),
            cfg: cfg.clone(),
            audit,
            open: Mutex::new(HashMap::new()),
            per_user: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ConsoleSection {
        &self.cfg
    }

    /// Whether `bmc`'s console is open (attaching opens it otherwise).
    pub fn is_open(&self, bmc: &str) -> bool {
        self.open
            .lock()
            .expect("consoles")
            .get(bmc)
            .is_some_and(|c| !c.hub.lock().expect("hub").closed)
    }

    /// Attaches `user` to `bmc`'s console, opening it when needed and
    /// `may_open` (policy decided the opening: a console that closed after
    /// the decision is not reopened on a viewer's behalf).
    pub fn attach(
        self: &Arc<Self>,
        user: &str,
        bmc: &str,
        (write, force): (bool, bool),
        may_open: bool,
    ) -> Result<Attachment, AttachError> {
        if let Err(e) = self.reserve(user) {
            self.audit_refusal(user, bmc, &e);
            return Err(e);
        }
        let console = match self.console(bmc, user, may_open) {
            Ok(c) => c,
            Err(e) => {
                self.release(user);
                self.audit_refusal(user, bmc, &e);
                return Err(e);
            }
        };
        let id = self.next_id.fetch_add(1, Relaxed);
        match console.join(id, user, write, force) {
            Ok((scrollback, rx)) => Ok(Attachment {
                id,
                user: user.to_string(),
                console,
                scrollback,
                rx,
                refused_inputs: 0,
                consoles: self.clone(),
            }),
            Err(e) => {
                self.release(user);
                self.audit_refusal(user, bmc, &e);
                Err(e)
            }
        }
    }

    /// A console record for an attach the hub refused (policy had allowed
    /// it, so the trail must say why it did not happen).
    fn audit_refusal(&self, user: &str, bmc: &str, e: &AttachError) {
        let reason = match e {
            AttachError::SeatTaken(holder) => format!("writer seat held by {holder}"),
            AttachError::Limit(which) => format!("limit {which}"),
            AttachError::Unavailable(why) => why.clone(),
        };
        let rec = json!({"action": "refused", "bmc": bmc, "user": user, "reason": reason});
        if let Err(e) = self.audit.append_queued(Event::Console(rec)) {
            tracing::error!(error = %e, bmc, "console audit record not written");
        }
    }

    fn reserve(&self, user: &str) -> Result<(), AttachError> {
        let mut per = self.per_user.lock().expect("consoles");
        let total: usize = per.values().sum();
        if total >= self.cfg.max_total {
            return Err(AttachError::Limit("max_total"));
        }
        let n = per.entry(user.to_string()).or_default();
        if *n >= self.cfg.max_per_user {
            return Err(AttachError::Limit("max_per_user"));
        }
        *n += 1;
        Ok(())
    }

    fn release(&self, user: &str) {
        let mut per = self.per_user.lock().expect("consoles");
        if let Some(n) = per.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(user);
            }
        }
    }

    /// The open console of `bmc`, or a new one (its driver started).
    fn console(&self, bmc: &str, user: &str, may_open: bool) -> Result<Arc<Console>, AttachError> {
        let mut open = self.open.lock().expect("consoles");
        if let Some(c) = open.get(bmc) {
            if !c.hub.lock().expect("hub").closed {
                return Ok(c.clone());
            }
        }
        if !may_open {
            return Err(AttachError::Unavailable(
                "the console closed while you attached; attach again".into(),
            ));
        }
        let spec = self
            .specs
            .get(bmc)
            .ok_or_else(|| AttachError::Unavailable(format!("no BMC {bmc:?}")))?
            .clone();
        let rec = record::Recorder::create(&self.dir, bmc, &self.cfg, self.audit.clone())
            .map_err(|e| AttachError::Unavailable(format!("recording: {e}")))?;
        let recording = rec.name();
        let (input, rx) = mpsc::channel(256);
        let console = Arc::new(Console {
            bmc: bmc.to_string(),
            recording,
            hub: Mutex::new(Hub {
                scrollback: VecDeque::new(),
                cap: self.cfg.scrollback_bytes,
                out: broadcast::channel(CHANNEL_DEPTH).0,
                writer: None,
                attached: HashMap::new(),
                phase: "reopening",
                rec: Some(rec),
                closed: false,
            }),
            input,
            audit: self.audit.clone(),
        });
        console.audit(json!({"action": "open", "bmc": bmc, "user": user}));
        open.insert(bmc.to_string(), console.clone());
        tokio::spawn(driver::run(console.clone(), spec, self.cfg.clone(), rx));
        Ok(console)
    }

    fn detach(&self, a: &Attachment) {
        a.console.leave(a.id, &a.user, a.refused_inputs);
        self.release(&a.user);
        let mut open = self.open.lock().expect("consoles");
        if a.console.hub.lock().expect("hub").attached.is_empty() {
            if let Some(c) = open.get(&a.console.bmc) {
                if Arc::ptr_eq(c, &a.console) {
                    open.remove(&a.console.bmc);
                }
            }
            a.console.hub.lock().expect("hub").closed = true;
            let _ = a.console.input.try_send(Input::Stop);
        }
    }

    /// Ends every console (gateway shutdown).
    pub fn shutdown(&self, reason: &str) {
        let open: Vec<Arc<Console>> = self
            .open
            .lock()
            .expect("consoles")
            .values()
            .cloned()
            .collect();
        for c in open {
            c.end(reason);
            let _ = c.input.try_send(Input::Stop);
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let consoles = self.consoles.clone();
        consoles.detach(self);
    }
}

impl Console {
    /// Writes a `console` audit record (queued: the console must not wait
    /// on the trail).
    pub fn audit(&self, mut fields: serde_json::Value) {
        fields["bmc"] = json!(self.bmc);
        fields["recording"] = json!(self.recording);
        if let Err(e) = self.audit.append_queued(Event::Console(fields)) {
            tracing::error!(error = %e, bmc = %self.bmc, "console audit record not written");
        }
    }

    fn join(
        &self,
        id: u64,
        user: &str,
        write: bool,
        force: bool,
    ) -> Result<(Vec<u8>, broadcast::Receiver<Out>), AttachError> {
        let mut hub = self.hub.lock().expect("hub");
        if hub.closed {
            return Err(AttachError::Unavailable("the console is closing".into()));
        }
        let mut previous = None;
        if write {
            if let Some((_, holder)) = &hub.writer {
                if !force {
                    return Err(AttachError::SeatTaken(holder.clone()));
                }
                previous = Some(holder.clone());
            }
        }
        hub.attached.insert(id, user.to_string());
        let mode = if write { "write" } else { "read" };
        self.audit(json!({"action": "attach", "user": user, "mode": mode}));
        hub.marker(&format!("attach {user} {mode}"));
        if write {
            hub.writer = Some((id, user.to_string()));
            if force && previous.is_some() {
                let prev = previous.clone().unwrap_or_default();
                self.audit(json!({"action": "takeover", "user": user, "previous": prev}));
                hub.marker(&format!("takeover {user} from {prev}"));
            }
            let msg = json!({"type": "writer", "writer": user, "previous": previous, "forced": force && previous.is_some()});
            let _ = hub.out.send(Out::Seat(msg));
        }
        let rx = hub.out.subscribe();
        Ok((hub.scrollback.iter().copied().collect(), rx))
    }

    fn leave(&self, id: u64, user: &str, refused_inputs: u64) {
        let mut hub = self.hub.lock().expect("hub");
        hub.attached.remove(&id);
        self.audit(json!({"action": "detach", "user": user, "refused_inputs": refused_inputs}));
        hub.marker(&format!("detach {user}"));
        if hub.writer.as_ref().is_some_and(|(w, _)| *w == id) {
            hub.writer = None;
            let msg = json!({"type": "writer", "writer": null, "previous": user, "forced": false});
            let _ = hub.out.send(Out::Seat(msg));
        }
    }

    /// Whether attachment `id` holds the writer seat.
    pub fn is_writer(&self, id: u64) -> bool {
        self.hub
            .lock()
            .expect("hub")
            .writer
            .as_ref()
            .is_some_and(|(w, _)| *w == id)
    }

    /// The status message for attachment `id`.
    pub fn status(&self, id: u64) -> serde_json::Value {
        let hub = self.hub.lock().expect("hub");
        let you = hub.attached.get(&id).cloned();
        let writer = hub.writer.as_ref().map(|(_, u)| u.clone());
        let mine = hub.writer.as_ref().is_some_and(|(w, _)| *w == id);
        let viewers = hub.attached.len() - usize::from(hub.writer.is_some());
        json!({"type": "status", "bmc": self.bmc, "state": hub.phase, "you": you,
            "mode": if mine { "write" } else { "read" }, "writer": writer, "viewers": viewers})
    }

    /// Host output: into scrollback, recording and every attachment.
    pub fn output(&self, bytes: &[u8]) {
        let mut hub = self.hub.lock().expect("hub");
        hub.scrollback.extend(bytes.iter().copied());
        let excess = hub.scrollback.len().saturating_sub(hub.cap);
        hub.scrollback.drain(..excess);
        if let Some(rec) = hub.rec.as_mut() {
            rec.output(bytes);
        }
        let _ = hub.out.send(Out::Bytes(Bytes::copy_from_slice(bytes)));
    }

    /// Keystrokes from attachment `id`: sent only when it is the writer.
    pub fn keys(&self, id: u64, bytes: &[u8]) -> bool {
        let mut hub = self.hub.lock().expect("hub");
        if !hub.writes(id) {
            return false;
        }
        if let Some(rec) = hub.rec.as_mut() {
            rec.input(bytes);
        }
        self.input.try_send(Input::Keys(bytes.to_vec())).is_ok()
    }

    /// A serial break from attachment `id` (the writer).
    pub fn serial_break(&self, id: u64, user: &str) -> bool {
        let mut hub = self.hub.lock().expect("hub");
        if !hub.writes(id) {
            return false;
        }
        hub.marker(&format!("break {user}"));
        self.audit(json!({"action": "break", "user": user}));
        self.input.try_send(Input::Break).is_ok()
    }

    /// The BMC side's state for status messages; tells everyone with a
    /// notice when `notice` is given.
    pub fn set_phase(&self, phase: &'static str, notice: Option<&str>) {
        let mut hub = self.hub.lock().expect("hub");
        hub.phase = phase;
        if let Some(text) = notice {
            hub.marker(text);
            let _ = hub
                .out
                .send(Out::Control(json!({"type": "notice", "text": text})));
        }
    }

    /// Writes the recording's pending chunk.
    pub fn flush_recording(&self) {
        if let Some(rec) = self.hub.lock().expect("hub").rec.as_mut() {
            rec.flush();
        }
    }

    /// Ends the console for everyone.
    pub fn end(&self, reason: &str) {
        let mut hub = self.hub.lock().expect("hub");
        hub.phase = "ended";
        hub.closed = true;
        if let Some(mut rec) = hub.rec.take() {
            rec.marker(&format!("ended {reason}"));
            rec.finish();
        }
        let _ = hub.out.send(Out::Ended(reason.to_string()));
    }
}

impl Hub {
    /// Whether attachment `id` holds the writer seat.
    fn writes(&self, id: u64) -> bool {
        self.writer.as_ref().is_some_and(|(w, _)| *w == id)
    }

    fn marker(&mut self, text: &str) {
        if let Some(rec) = self.rec.as_mut() {
            rec.marker(text);
        }
    }
}
