//! `audit query --console`: one row per console session (a console the
//! gateway opened on a BMC, until it closed), from the trail's `console`
//! records grouped by the recording they name: who attached, the BMC,
//! start and end, the writer seat's changes, the recording file.
//!
//! Never does: verify (that is `audit verify`, recordings included) or
//! read the recordings themselves.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Filter;

/// One console session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleRow {
    /// The recording's file name (also the session's name).
    pub recording: String,
    /// The BMC.
    pub bmc: String,
    /// The first record's time.
    pub start: String,
    /// The last record's time, once the recording ended.
    pub end: Option<String>,
    /// Everyone who attached, in order of first attach.
    pub users: Vec<String>,
    /// Each holder of the writer seat in turn (a forced takeover marked).
    pub writers: Vec<String>,
    /// Why it ended (the last `ended`, `limit` or BMC event seen).
    pub ended: Option<String>,
}

impl ConsoleRow {
    fn take(&mut self, v: &Value) {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        if self.start.is_empty() {
            self.start = s("ts");
            self.bmc = s("bmc");
        }
        let user = s("user");
        match v["action"].as_str().unwrap_or("") {
            "attach" => {
                if !self.users.contains(&user) {
                    self.users.push(user.clone());
                }
                if v["mode"] == "write" {
                    self.writers.push(user);
                }
            }
            "takeover" => {
                if let Some(last) = self.writers.last_mut() {
                    last.push_str(" (forced)");
                }
            }
            "ended" | "bmc_ended" => self.ended = Some(s("reason")),
            "recording_end" => self.end = Some(s("ts")),
            _ => {}
        }
    }

    /// Writer seat changes.
    pub fn writer_changes(&self) -> usize {
        self.writers.len()
    }

    /// The JSON line.
    pub fn to_json(&self) -> Value {
        json!({"recording": self.recording, "bmc": self.bmc, "start": self.start,
            "end": self.end, "users": self.users, "writers": self.writers,
            "writer_changes": self.writer_changes(), "ended": self.ended})
    }

    fn keep(&self, f: &Filter) -> bool {
        let start = OffsetDateTime::parse(&self.start, &Rfc3339).ok();
        f.user.as_ref().is_none_or(|u| self.users.contains(u))
            && f.target.as_ref().is_none_or(|t| *t == self.bmc)
            && f.since.is_none_or(|s| start.is_some_and(|t| t >= s))
            && f.until.is_none_or(|u| start.is_some_and(|t| t < u))
    }
}

/// The console sessions in `files` (put in chain order), by start.
pub fn consoles(files: &[PathBuf], filter: &Filter) -> Result<Vec<ConsoleRow>, String> {
    let mut rows: BTreeMap<String, ConsoleRow> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for path in super::super::chain::in_chain_order(files)? {
        let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for l in BufReader::new(f).split(b'\n') {
            let l = l.map_err(|e| format!("{}: {e}", path.display()))?;
            // Torn or foreign lines are skipped here; `verify` reports them.
            let Ok(v) = serde_json::from_slice::<Value>(&l) else {
                continue;
            };
            if v["event"] != "console" {
                continue;
            }
            // Recording records name their file as `file`, the others as
            // `recording`.
            let Some(name) = v["recording"].as_str().or(v["file"].as_str()) else {
                continue;
            };
            let row = rows.entry(name.to_string()).or_insert_with(|| {
                order.push(name.to_string());
                ConsoleRow {
                    recording: name.to_string(),
                    ..ConsoleRow::default()
                }
            });
            row.take(&v);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|n| rows.remove(&n))
        .filter(|r| r.keep(filter))
        .collect())
}

/// The readable table.
pub fn table(rows: &[ConsoleRow]) -> String {
    let header = [
        "START",
        "END",
        "BMC",
        "USERS",
        "WRITERS",
        "CHANGES",
        "RECORDING",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.start.clone(),
                r.end.clone().unwrap_or_else(|| "-".into()),
                r.bmc.clone(),
                r.users.join(","),
                if r.writers.is_empty() {
                    "-".into()
                } else {
                    r.writers.join(" > ")
                },
                r.writer_changes().to_string(),
                r.recording.clone(),
            ]
        })
        .collect();
    super::layout(&header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts: &str, v: Value) -> String {
        let mut v = v;
        v["event"] = json!("console");
        v["ts"] = json!(ts);
        v.to_string()
    }

    #[test]
    fn sessions_group_by_recording_with_writers_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let r = "n1-1-a.cast";
        let lines = [
            rec(
                "2026-11-30T10:00:00Z",
                json!({"action": "open", "bmc": "n1", "user": "alice", "recording": r}),
            ),
            rec(
                "2026-11-30T10:00:01Z",
                json!({"action": "attach", "bmc": "n1", "user": "alice", "mode": "write", "recording": r}),
            ),
            rec(
                "2026-11-30T10:00:02Z",
                json!({"action": "attach", "bmc": "n1", "user": "bob", "mode": "read", "recording": r}),
            ),
            rec(
                "2026-11-30T10:00:03Z",
                json!({"action": "attach", "bmc": "n1", "user": "carol", "mode": "write", "recording": r}),
            ),
            rec(
                "2026-11-30T10:00:03Z",
                json!({"action": "takeover", "bmc": "n1", "user": "carol", "previous": "alice", "recording": r}),
            ),
            rec(
                "2026-11-30T10:05:00Z",
                json!({"action": "recording_chunk", "bmc": "n1", "file": r}),
            ),
            rec(
                "2026-11-30T10:05:00Z",
                json!({"action": "recording_end", "bmc": "n1", "file": r}),
            ),
            rec(
                "2026-11-30T11:00:00Z",
                json!({"action": "open", "bmc": "n2", "user": "dave", "recording": "n2-2-b.cast"}),
            ),
            "{torn".to_string(),
        ];
        let trail = dir.path().join("audit.jsonl");
        std::fs::write(&trail, lines.join("\n") + "\n").unwrap();
        let all = consoles(std::slice::from_ref(&trail), &Filter::default()).unwrap();
        assert_eq!(all.len(), 2);
        let a = &all[0];
        assert_eq!(
            (a.bmc.as_str(), a.start.as_str(), a.end.as_deref()),
            ("n1", "2026-11-30T10:00:00Z", Some("2026-11-30T10:05:00Z"))
        );
        assert_eq!(a.users, ["alice", "bob", "carol"]);
        assert_eq!(a.writers, ["alice", "carol (forced)"]);
        assert_eq!(a.to_json()["writer_changes"], 2);
        assert_eq!(all[1].end, None, "still open");
        let bob = Filter {
            user: Some("bob".into()),
            ..Filter::default()
        };
        assert_eq!(
            consoles(std::slice::from_ref(&trail), &bob).unwrap().len(),
            1
        );
        let t = table(&all);
        assert!(t.starts_with("START"), "{t}");
        assert!(
            t.contains("alice > carol (forced)") && t.contains("n2-2-b.cast"),
            "{t}"
        );
    }
}
