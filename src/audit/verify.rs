//! `audit verify`: checks a trail line by line (MAC with the key its
//! `key_id` names, `prev` chain, gap-free `seq`), across files in chain
//! order, and against an anchor file of checkpoint hashes. Names the first
//! line that breaks. A final line cut short by a crash is a torn tail, not
//! tampering.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::line::{self, AuditKey, LineHash, GENESIS};

/// Where a trail breaks and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The file.
    pub file: PathBuf,
    /// 1-based line in it.
    pub line: u64,
    /// The line's seq, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(s) = self.seq {
            write!(f, "seq {s}: ")?;
        }
        f.write_str(&self.what)
    }
}

/// A final line without its newline: an interrupted write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
    /// Its length.
    pub bytes: usize,
}

/// What an intact trail holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records checked.
    pub records: u64,
    /// First and last seq.
    pub seqs: Option<(u64, u64)>,
    /// First and last timestamp.
    pub times: Option<(String, String)>,
    /// Files in chain order.
    pub files: Vec<PathBuf>,
    /// Key ids seen.
    pub key_ids: Vec<String>,
    /// Anchor entries matched against the trail.
    pub anchors_checked: usize,
    /// True when the first record is the trail's first (seq 1, genesis prev);
    /// false when the files given start mid-trail.
    pub from_genesis: bool,
    /// A torn final line, if any.
    pub torn_tail: Option<TornTail>,
}

/// Why verification did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read (not a verdict on the trail).
    #[error("{0}")]
    Io(String),
    /// The trail is broken here.
    #[error("{0}")]
    Broken(Break),
}

struct Anchor {
    hash: LineHash,
    line: u64,
}

fn read_anchor(path: &Path) -> Result<BTreeMap<u64, Anchor>, VerifyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| VerifyError::Io(format!("{}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        #[derive(serde::Deserialize)]
        struct Entry {
            seq: u64,
            line_sha256: String,
        }
        let bad = || {
            VerifyError::Io(format!(
                "{}:{}: not an anchor entry (expected {{\"seq\":N,\"line_sha256\":\"…\"}})",
                path.display(),
                i + 1
            ))
        };
        let e: Entry = serde_json::from_str(l).map_err(|_| bad())?;
        let hash: LineHash = hex::decode(e.line_sha256.as_bytes())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(bad)?;
        out.insert(
            e.seq,
            Anchor {
                hash,
                line: i as u64 + 1,
            },
        );
    }
    Ok(out)
}

/// First seq of a file (unverified), to put files in chain order.
pub(crate) fn first_seq_of(path: &Path) -> Result<Option<u64>, VerifyError> {
    first_seq(path)
}

fn first_seq(path: &Path) -> Result<Option<u64>, VerifyError> {
    let f = File::open(path).map_err(|e| VerifyError::Io(format!("{}: {e}", path.display())))?;
    let mut first = Vec::new();
    BufReader::new(f)
        .read_until(b'\n', &mut first)
        .map_err(|e| VerifyError::Io(format!("{}: {e}", path.display())))?;
    let first = first.strip_suffix(b"\n").unwrap_or(&first);
    Ok(line::parse(first).ok().map(|h| h.seq))
}

/// Verifies files (in any order given; checked in chain order).
pub fn verify(
    files: &[PathBuf],
    keys: &[AuditKey],
    anchor: Option<&Path>,
) -> Result<Report, VerifyError> {
    let anchors = anchor.map(read_anchor).transpose()?.unwrap_or_default();
    let mut ordered = Vec::new();
    for f in files {
        ordered.push((first_seq(f)?.unwrap_or(u64::MAX), f.clone()));
    }
    ordered.sort();
    let mut report = Report::default();
    let mut prev: Option<(u64, LineHash)> = None;
    let mut last_place: Option<(PathBuf, u64)> = None;
    let n_files = ordered.len();
    for (fi, (_, path)) in ordered.into_iter().enumerate() {
        let f =
            File::open(&path).map_err(|e| VerifyError::Io(format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::new(f);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| VerifyError::Io(format!("{}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let broken = |seq: Option<u64>, what: String| {
                VerifyError::Broken(Break {
                    file: path.clone(),
                    line: line_no,
                    seq,
                    what,
                })
            };
            let Some(text) = buf.strip_suffix(b"\n") else {
                let mut rest = Vec::new();
                let more = reader.read_to_end(&mut rest).unwrap_or(0);
                if fi + 1 == n_files && more == 0 {
                    report.torn_tail = Some(TornTail {
                        file: path.clone(),
                        line: line_no,
                        bytes: buf.len(),
                    });
                    break;
                }
                return Err(broken(
                    None,
                    "line is not terminated and is not at the end of the trail".into(),
                ));
            };
            let header = line::open(text, keys)
                .map_err(|e| broken(line::parse(text).ok().map(|h| h.seq), e.to_string()))?;
            let hash = line::hash_line(text);
            match prev {
                None => {
                    report.from_genesis = header.seq == 1;
                    if header.seq == 1 && header.prev != GENESIS {
                        return Err(broken(
                            Some(1),
                            "the first record does not start the chain (prev is not all zeros)"
                                .into(),
                        ));
                    }
                }
                Some((pseq, phash)) => {
                    if header.prev != phash {
                        return Err(broken(
                            Some(header.seq),
                            format!("chain broken: prev does not match the hash of the record before (seq {pseq}): a record was deleted, inserted or reordered"),
                        ));
                    }
                    if header.seq != pseq + 1 {
                        return Err(broken(
                            Some(header.seq),
                            format!("seq jumps from {pseq} to {}", header.seq),
                        ));
                    }
                }
            }
            if let Some(a) = anchors.get(&header.seq) {
                if a.hash != hash {
                    return Err(broken(Some(header.seq), format!("does not match the anchored checkpoint (anchor line {}): the trail was rewritten", a.line)));
                }
                report.anchors_checked += 1;
            }
            if !report.key_ids.contains(&header.key_id) {
                report.key_ids.push(header.key_id.clone());
            }
            report.records += 1;
            report.seqs = Some((report.seqs.map_or(header.seq, |s| s.0), header.seq));
            report.times = Some((
                report
                    .times
                    .take()
                    .map_or_else(|| header.ts.clone(), |t| t.0),
                header.ts,
            ));
            prev = Some((header.seq, hash));
            last_place = Some((path.clone(), line_no));
        }
        report.files.push(path);
    }
    let last_seq = prev.map_or(0, |p| p.0);
    if let Some((&seq, a)) = anchors.range(last_seq + 1..).next() {
        let (file, line) = last_place.unwrap_or_default();
        return Err(VerifyError::Broken(Break {
            file,
            line,
            seq: prev.map(|p| p.0),
            what: format!(
                "truncated: the anchor file (line {}) records seq {seq}, but the trail ends here",
                a.line
            ),
        }));
    }
    Ok(report)
}
