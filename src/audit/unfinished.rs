//! After a crash: the requests the previous run recorded as allowed and
//! never recorded a result for. Whether each reached its BMC is unknown;
//! the next run records them as `interrupted`, so that no allowed request
//! is left without an outcome in the trail.
//!
//! Reads only; never changes the trail.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::fs::RealFs;
use super::writer::rotated_files;

/// How much of a trail's end is read looking for the previous run.
const MAX_SCAN_BYTES: u64 = 64 * 1024 * 1024;

/// Request ids allowed by the run before the newest `startup` record (in
/// the active file, or the newest rotated file when the previous run's
/// records start there) that have no `result` record.
pub fn unfinished_requests(trail: &Path) -> Vec<String> {
    let mut lines = tail_lines(trail);
    // The previous run began in a rotated file when the active one holds
    // only the newest startup.
    if starts(&lines) < 2 {
        if let Some(prev) = rotated_files(&RealFs, trail).pop() {
            let mut older = tail_lines(&prev);
            older.append(&mut lines);
            lines = older;
        }
    }
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l["event"] == "startup")
        .map(|(i, _)| i)
        .collect();
    let (from, to) = match starts.as_slice() {
        [.., a, b] => (*a, *b),
        [b] => (0, *b),
        [] => return Vec::new(),
    };
    let run = &lines[from..to];
    let finished: BTreeSet<&str> = run
        .iter()
        .filter(|l| l["event"] == "result")
        .filter_map(|l| l["request_id"].as_str())
        .collect();
    run.iter()
        .filter(|l| l["event"] == "request" && l["decision"] == "allow")
        .filter_map(|l| l["request_id"].as_str())
        .filter(|id| !finished.contains(id))
        .map(str::to_string)
        .collect()
}

fn starts(lines: &[Value]) -> usize {
    lines.iter().filter(|l| l["event"] == "startup").count()
}

/// The complete JSON lines of the last [`MAX_SCAN_BYTES`] of a file.
fn tail_lines(path: &Path) -> Vec<Value> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(MAX_SCAN_BYTES);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.lines();
    if from > 0 {
        lines.next(); // cut in the middle
    }
    lines.filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_requests_of_the_previous_run_without_a_result() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        let lines = [
            r#"{"event":"startup"}"#,
            r#"{"event":"request","request_id":"a","decision":"allow"}"#,
            r#"{"event":"result","request_id":"a"}"#,
            r#"{"event":"startup"}"#,
            r#"{"event":"request","request_id":"b","decision":"allow"}"#,
            r#"{"event":"request","request_id":"c","decision":"deny"}"#,
            r#"{"event":"request","request_id":"d","decision":"allow"}"#,
            r#"{"event":"result","request_id":"d"}"#,
            r#"{"event":"startup"}"#,
        ];
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        assert_eq!(unfinished_requests(&p), ["b"]);
        assert!(unfinished_requests(&d.path().join("none")).is_empty());
    }
}
