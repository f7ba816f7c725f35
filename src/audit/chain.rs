//! Which files make up a trail, and their chain order. The writer keeps
//! the active file `NAME` and, at each rotation (SIGHUP, `rotate_bytes`),
//! renames it to `NAME.<last seq, 12 digits>` beside it. `audit verify`
//! and `audit query` take a trail's directory, its base name or single
//! files, and read the files in chain order (by each file's first `seq`).
//!
//! Reads at most the first line of a file; never verifies a record (that
//! is `verify`'s) and never writes.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::fs::RealFs;
use super::line;
use super::writer::rotated_files;

/// The longest first line looked at when telling a trail from other files.
const MAX_FIRST_LINE: u64 = 1 << 20;

/// The files the paths name, each once: a directory stands for the one
/// trail in it, a trail's base name for it and its rotated files, any
/// other file for itself.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen = BTreeSet::new();
    for p in paths {
        let files = if p.is_dir() {
            trail_of_dir(p)?
        } else {
            with_rotations(p)?
        };
        for f in files {
            // One file named twice (`audit.jsonl audit.jsonl*`) is read once.
            let key = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if seen.insert(key) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// `path` and, when it is a trail's base name (not itself a rotated file),
/// its rotated files, oldest first. A base name whose active file is gone
/// still names its rotated files.
fn with_rotations(path: &Path) -> Result<Vec<PathBuf>, String> {
    if rotated_base(path).is_some() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = rotated_files(&RealFs, path);
    if path.exists() {
        files.push(path.to_path_buf());
    }
    if files.is_empty() {
        return Err(format!("{}: no such file", path.display()));
    }
    Ok(files)
}

/// The one trail in `dir`: its files, found by rotated names and by first
/// lines that are audit records. Several trails in one directory must be
/// named one by one.
fn trail_of_dir(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut bases = BTreeSet::new();
    for e in entries {
        let path = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if !path.is_file() {
            continue;
        }
        match rotated_base(&path) {
            Some(base) => {
                bases.insert(base);
            }
            None if first_seq(&path).ok().flatten().is_some() => {
                bases.insert(path);
            }
            None => {}
        }
    }
    let mut bases = bases.into_iter();
    match (bases.next(), bases.next()) {
        (Some(base), None) => with_rotations(&base),
        (None, _) => Err(format!("{}: holds no audit trail", dir.display())),
        (Some(a), Some(b)) => Err(format!(
            "{}: holds more than one trail ({}, {}, ...): name the one to read",
            dir.display(),
            a.display(),
            b.display()
        )),
    }
}

/// For a rotated file `NAME.<12 digits>`, the trail's base `NAME`.
fn rotated_base(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let (base, digits) = name.rsplit_once('.')?;
    (!base.is_empty() && digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| path.with_file_name(base))
}

/// The first `seq` of a file (unverified); `None` when its first line is
/// not an audit record (an empty file, or no trail at all).
pub fn first_seq(path: &Path) -> Result<Option<u64>, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut first = Vec::new();
    BufReader::new(f.take(MAX_FIRST_LINE))
        .read_until(b'\n', &mut first)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let first = first.strip_suffix(b"\n").unwrap_or(&first);
    Ok(line::parse(first).ok().map(|h| h.seq))
}

/// The files in chain order: by first `seq`, files without a record last.
pub fn in_chain_order(files: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut ordered = Vec::with_capacity(files.len());
    for f in files {
        ordered.push((first_seq(f)?.unwrap_or(u64::MAX), f.clone()));
    }
    ordered.sort();
    Ok(ordered.into_iter().map(|(_, f)| f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_base_name_brings_its_rotated_files_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let active = touch(d.path(), "audit.jsonl", "");
        let r2 = touch(d.path(), "audit.jsonl.000000000090", "");
        let r1 = touch(d.path(), "audit.jsonl.000000000033", "");
        touch(d.path(), "audit.jsonl.bak", "");
        touch(d.path(), "other.jsonl.000000000001", "");
        let got = expand(std::slice::from_ref(&active)).unwrap();
        assert_eq!(got, [r1.clone(), r2.clone(), active.clone()]);
        // Named again by a shell glob: each file once.
        let again = expand(&[active.clone(), r1.clone(), r2.clone()]).unwrap();
        assert_eq!(again, [r1.clone(), r2, active]);
        // A rotated file named alone is itself only.
        assert_eq!(expand(std::slice::from_ref(&r1)).unwrap(), [r1]);
    }

    #[test]
    fn a_directory_stands_for_its_one_trail() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "audit.key", "00\n");
        touch(
            d.path(),
            "audit-anchor.jsonl",
            "{\"seq\":1,\"line_sha256\":\"00\"}\n",
        );
        let r = touch(d.path(), "audit.jsonl.000000000005", "");
        let active = touch(d.path(), "audit.jsonl", "");
        assert_eq!(expand(&[d.path().to_path_buf()]).unwrap(), [r, active]);
        let empty = tempfile::tempdir().unwrap();
        let e = expand(&[empty.path().to_path_buf()]).unwrap_err();
        assert!(e.contains("no audit trail"), "{e}");
        touch(d.path(), "second.jsonl.000000000007", "");
        let e = expand(&[d.path().to_path_buf()]).unwrap_err();
        assert!(e.contains("more than one trail"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        let e = expand(&[d.path().join("nope.jsonl")]).unwrap_err();
        assert!(e.contains("nope.jsonl: no such file"), "{e}");
    }
}
