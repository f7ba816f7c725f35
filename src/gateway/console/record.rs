//! Console recordings: asciicast v2 files, written in chunks whose SHA-256
//! (with file name, offset and length) goes into a `console` audit record,
//! so that the trail proves the recording.
//!
//! Never does: record keystrokes unless `record_input` is set, or record
//! what is typed after a password prompt (it becomes `<redacted>` up to the
//! next newline).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::ConsoleSection;
use crate::audit::{AuditWriter, Event};

/// A chunk is written and hashed once it holds this many bytes.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// One console's recording.
pub struct Recorder {
    file: File,
    path: PathBuf,
    bmc: String,
    start: Instant,
    pending: Vec<u8>,
    offset: u64,
    chunk: u64,
    record_input: bool,
    /// Output seen last (a prompt may span packets).
    tail: Vec<u8>,
    redacting: bool,
    audit: AuditWriter,
}

impl Recorder {
    /// Creates `DIR/BMC-UNIXTIME-RANDOM.cast` with its header line.
    pub fn create(
        dir: &Path,
        bmc: &str,
        cfg: &ConsoleSection,
        audit: AuditWriter,
    ) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let tag: u32 = rand::random();
        let path = dir.join(format!("{bmc}-{now}-{tag:08x}.cast"));
        let file = File::options().create_new(true).append(true).open(&path)?;
        let mut r = Recorder {
            file,
            path,
            bmc: bmc.to_string(),
            start: Instant::now(),
            pending: Vec::new(),
            offset: 0,
            chunk: 0,
            record_input: cfg.record_input,
            tail: Vec::new(),
            redacting: false,
            audit,
        };
        let header = json!({"version": 2, "width": 80, "height": 24, "timestamp": now,
            "title": format!("ipmigw console {bmc}")});
        r.line(header.to_string());
        Ok(r)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name (what the trail's records carry: the directory may
    /// move with the trail).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn line(&mut self, text: String) {
        self.pending.extend_from_slice(text.as_bytes());
        self.pending.push(b'\n');
        if self.pending.len() >= CHUNK_BYTES {
            self.flush();
        }
    }

    fn event(&mut self, kind: &str, data: &str) {
        let t = self.start.elapsed().as_secs_f64();
        self.line(json!([(t * 1e6).round() / 1e6, kind, data]).to_string());
    }

    /// Host output.
    pub fn output(&mut self, bytes: &[u8]) {
        self.event("o", &String::from_utf8_lossy(bytes));
        self.tail.extend_from_slice(bytes);
        let excess = self.tail.len().saturating_sub(64);
        self.tail.drain(..excess);
        let text = String::from_utf8_lossy(&self.tail).to_ascii_lowercase();
        let trimmed = text.trim_end();
        if trimmed.ends_with("password:") || trimmed.ends_with("passphrase:") {
            self.redacting = true;
        }
    }

    /// Keystrokes (only with `record_input`; redacted after a password
    /// prompt up to the next newline).
    pub fn input(&mut self, bytes: &[u8]) {
        if !self.record_input {
            return;
        }
        if !self.redacting {
            self.event("i", &String::from_utf8_lossy(bytes));
            return;
        }
        match bytes.iter().position(|b| *b == b'\r' || *b == b'\n') {
            None => self.event("i", "<redacted>"),
            Some(i) => {
                self.redacting = false;
                self.tail.clear();
                self.event("i", "<redacted>");
                self.event("i", &String::from_utf8_lossy(&bytes[i..]));
            }
        }
    }

    /// A marker (attach, detach, takeover, break, BMC events).
    pub fn marker(&mut self, text: &str) {
        self.event("m", text);
    }

    /// Writes the pending chunk and audits its hash.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        if let Err(e) = self.file.write_all(&chunk) {
            tracing::error!(error = %e, file = %self.path.display(), "recording write failed");
            return;
        }
        let name = self.name();
        let rec = json!({"action": "recording_chunk", "bmc": self.bmc, "file": name,
            "chunk": self.chunk, "offset": self.offset, "length": chunk.len(),
            "sha256": hex::encode(Sha256::digest(&chunk))});
        if let Err(e) = self.audit.append_queued(Event::Console(rec)) {
            tracing::error!(error = %e, "recording chunk not audited");
        }
        self.offset += chunk.len() as u64;
        self.chunk += 1;
    }

    /// Flushes and syncs the file.
    pub fn finish(mut self) {
        self.flush();
        let _ = self.file.sync_all();
        let name = self.name();
        let rec = json!({"action": "recording_end", "bmc": self.bmc, "file": name,
            "chunks": self.chunk, "length": self.offset});
        let _ = self.audit.append_queued(Event::Console(rec));
    }
}
