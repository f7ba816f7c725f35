//! `audit verify`: checks a trail line by line (MAC with the key its
//! `key_id` names, `prev` chain, gap-free `seq`), across files in chain
//! order, and against an anchor file of checkpoint hashes. Names the first
//! line that breaks. A final line cut short by a crash is a torn tail, not
//! tampering.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::chain;
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

/// Verifies files (in any order given; checked in chain order).
pub fn verify(
    files: &[PathBuf],
    keys: &[AuditKey],
    anchor: Option<&Path>,
) -> Result<Report, VerifyError> {
    let anchors = anchor.map(read_anchor).transpose()?.unwrap_or_default();
    let ordered = chain::in_chain_order(files).map_err(VerifyError::Io)?;
    let mut walk = Walk {
        keys,
        anchors: &anchors,
        report: Report::default(),
        prev: None,
        last_place: None,
    };
    let n_files = ordered.len();
    for (i, path) in ordered.into_iter().enumerate() {
        walk.file(&path, i + 1 == n_files)?;
        walk.report.files.push(path);
    }
    walk.check_not_truncated()?;
    Ok(walk.report)
}

/// One pass over the trail, line by line, in chain order.
struct Walk<'a> {
    keys: &'a [AuditKey],
    anchors: &'a BTreeMap<u64, Anchor>,
    report: Report,
    /// The last record's seq and hash.
    prev: Option<(u64, LineHash)>,
    /// Where the last record is.
    last_place: Option<(PathBuf, u64)>,
}

/// Where a line is, to name it when it breaks.
struct Place<'p> {
    file: &'p Path,
    line: u64,
}

impl Place<'_> {
    fn broken(&self, seq: Option<u64>, what: String) -> VerifyError {
        VerifyError::Broken(Break {
            file: self.file.to_path_buf(),
            line: self.line,
            seq,
            what,
        })
    }
}

impl Walk<'_> {
    /// Checks every line of one file. An unterminated line is a torn tail
    /// when it ends the last file, and a break anywhere else.
    fn file(&mut self, path: &Path, last_file: bool) -> Result<(), VerifyError> {
        let io = |e: std::io::Error| VerifyError::Io(format!("{}: {e}", path.display()));
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
                return Ok(());
            }
            line_no += 1;
            let place = Place {
                file: path,
                line: line_no,
            };
            let Some(text) = buf.strip_suffix(b"\n") else {
                let mut rest = Vec::new();
                let more = reader.read_to_end(&mut rest).unwrap_or(0);
                if last_file && more == 0 {
                    self.report.torn_tail = Some(TornTail {
                        file: path.to_path_buf(),
                        line: line_no,
                        bytes: buf.len(),
                    });
                    return Ok(());
                }
                return Err(place.broken(
                    None,
                    "line is not terminated and is not at the end of the trail".into(),
                ));
            };
            self.line(&place, text)?;
        }
    }

    /// One complete line: its MAC, its link to the record before, its
    /// anchor; then it counts.
    fn line(&mut self, place: &Place<'_>, text: &[u8]) -> Result<(), VerifyError> {
        let header = line::open(text, self.keys)
            .map_err(|e| place.broken(line::parse(text).ok().map(|h| h.seq), e.to_string()))?;
        let hash = line::hash_line(text);
        self.check_link(place, &header)?;
        if let Some(a) = self.anchors.get(&header.seq) {
            if a.hash != hash {
                return Err(place.broken(Some(header.seq), format!("does not match the anchored checkpoint (anchor line {}): the trail was rewritten", a.line)));
            }
            self.report.anchors_checked += 1;
        }
        let r = &mut self.report;
        if !r.key_ids.contains(&header.key_id) {
            r.key_ids.push(header.key_id.clone());
        }
        r.records += 1;
        r.seqs = Some((r.seqs.map_or(header.seq, |s| s.0), header.seq));
        let first_ts = r.times.take().map_or_else(|| header.ts.clone(), |t| t.0);
        r.times = Some((first_ts, header.ts));
        self.prev = Some((header.seq, hash));
        self.last_place = Some((place.file.to_path_buf(), place.line));
        Ok(())
    }

    /// The chain: the first record starts it (or the files start mid-trail);
    /// every later one names its predecessor's hash and the next seq.
    fn check_link(&mut self, place: &Place<'_>, header: &line::Header) -> Result<(), VerifyError> {
        let Some((pseq, phash)) = self.prev else {
            self.report.from_genesis = header.seq == 1;
            if header.seq == 1 && header.prev != GENESIS {
                return Err(place.broken(
                    Some(1),
                    "the first record does not start the chain (prev is not all zeros)".into(),
                ));
            }
            return Ok(());
        };
        if header.prev != phash {
            return Err(place.broken(
                Some(header.seq),
                format!("chain broken: prev does not match the hash of the record before (seq {pseq}): a record was deleted, inserted or reordered"),
            ));
        }
        if header.seq != pseq + 1 {
            return Err(place.broken(
                Some(header.seq),
                format!("seq jumps from {pseq} to {}", header.seq),
            ));
        }
        Ok(())
    }

    /// An anchored checkpoint past the trail's end: it was cut short.
    fn check_not_truncated(&self) -> Result<(), VerifyError> {
        let last_seq = self.prev.map_or(0, |p| p.0);
        let Some((&seq, a)) = self.anchors.range(last_seq + 1..).next() else {
            return Ok(());
        };
        let (file, line) = self.last_place.clone().unwrap_or_default();
        Err(VerifyError::Broken(Break {
            file,
            line,
            seq: self.prev.map(|p| p.0),
            what: format!(
                "truncated: the anchor file (line {}) records seq {seq}, but the trail ends here",
                a.line
            ),
        }))
    }
}
