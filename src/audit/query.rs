//! `audit query`: requests joined with their results, filtered by user,
//! target, command glob, decision and time. Reads; does not verify (run
//! `audit verify` for that).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::policy::glob::CommandPattern;

pub mod console;

/// What to keep.
#[derive(Debug, Default)]
pub struct Filter {
    /// Policy user.
    pub user: Option<String>,
    /// BMC name.
    pub target: Option<String>,
    /// Command-name glob, as in policy.
    pub command: Option<CommandPattern>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// Requests at or after.
    pub since: Option<OffsetDateTime>,
    /// Requests before.
    pub until: Option<OffsetDateTime>,
    /// The gateway's request id, or the id the client sent with it.
    pub request_id: Option<String>,
}

/// Parses a time for `--since`/`--until`: RFC 3339, or a date (midnight UTC).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339))
        .map_err(|_| format!("{s:?}: expected an RFC 3339 time like 2026-11-26T14:00:00Z, or a date like 2026-11-26"))
}

/// One request with its result (if recorded).
#[derive(Debug, Clone)]
pub struct Row {
    /// The `request` record.
    pub request: Value,
    /// Its `result` record.
    pub result: Option<Value>,
}

impl Row {
    fn field(&self, name: &str) -> &str {
        self.request.get(name).and_then(Value::as_str).unwrap_or("")
    }

    /// The outcome column: completion code, error, or `-`.
    pub fn outcome(&self) -> String {
        match &self.result {
            None => "-".into(),
            Some(r) => match (
                r.get("error").and_then(Value::as_str),
                r.get("completion_code").and_then(Value::as_u64),
            ) {
                (Some(e), _) => e.to_string(),
                (None, Some(cc)) => format!("cc=0x{cc:02x}"),
                (None, None) => "ok".into(),
            },
        }
    }

    /// Latency column.
    pub fn latency(&self) -> String {
        self.result
            .as_ref()
            .and_then(|r| r.get("latency_us").and_then(Value::as_u64))
            .map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0))
    }

    /// Request and result as one JSON object.
    pub fn to_json(&self) -> Value {
        let mut v = self.request.clone();
        if let Value::Object(m) = &mut v {
            m.insert("result".into(), self.result.clone().unwrap_or(Value::Null));
        }
        v
    }

    /// The command name and every other name decided with it (what a Send
    /// Message carried, the parts of a composite read).
    fn commands(&self) -> impl Iterator<Item = &str> {
        let others = self
            .request
            .get("commands")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        std::iter::once(self.field("command")).chain(others)
    }

    fn keep(&self, f: &Filter) -> bool {
        let eq = |want: &Option<String>, field: &str| {
            want.as_deref().is_none_or(|w| self.field(field) == w)
        };
        let ts = OffsetDateTime::parse(self.field("ts"), &Rfc3339).ok();
        eq(&f.user, "user")
            && f.request_id.as_deref().is_none_or(|id| {
                self.field("request_id") == id || self.field("client_request_id") == id
            })
            && eq(&f.target, "target")
            && eq(&f.decision, "decision")
            && f.command
                .as_ref()
                .is_none_or(|c| self.commands().any(|n| c.matches(n)))
            && f.since.is_none_or(|s| ts.is_some_and(|t| t >= s))
            && f.until.is_none_or(|u| ts.is_some_and(|t| t < u))
    }
}

/// Reads files (put in chain order) and returns matching requests in order.
pub fn query(files: &[PathBuf], filter: &Filter) -> Result<Vec<Row>, String> {
    let ordered = super::chain::in_chain_order(files)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for path in ordered {
        let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, l) in BufReader::new(f).split(b'\n').enumerate() {
            let l = l.map_err(|e| format!("{}: {e}", path.display()))?;
            // Torn or foreign lines are skipped here; `verify` reports them.
            let Ok(v) = serde_json::from_slice::<Value>(&l) else {
                tracing::debug!("{}:{}: not a JSON record; skipped", path.display(), i + 1);
                continue;
            };
            let id = v
                .get("request_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            match (v.get("event").and_then(Value::as_str), id) {
                (Some("request"), Some(id)) => {
                    by_id.insert(id, rows.len());
                    rows.push(Row {
                        request: v,
                        result: None,
                    });
                }
                (Some("result"), Some(id)) => {
                    if let Some(&i) = by_id.get(&id) {
                        rows[i].result = Some(v);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(rows.into_iter().filter(|r| r.keep(filter)).collect())
}

/// The readable table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "TIME", "USER", "SOURCE", "TARGET", "COMMAND", "DECISION", "RESULT", "LATENCY",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.field("ts").to_string(),
                r.field("user").to_string(),
                r.field("source").to_string(),
                r.field("target").to_string(),
                r.field("command").to_string(),
                r.field("decision").to_string(),
                r.outcome(),
                r.latency(),
            ]
        })
        .collect();
    layout(&header, &cells)
}

/// Header and rows as aligned columns (shared with the console table).
fn layout<const N: usize>(header: &[&str; N], cells: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for c in cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |vals: &[&str]| {
        let line: Vec<String> = vals
            .iter()
            .zip(widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push(header);
    for c in cells {
        push(&c.each_ref().map(String::as_str));
    }
    out
}
