//! Console recordings checked against the trail: every `console` record
//! with `action = "recording_chunk"` names a file, an offset, a length and
//! the chunk's SHA-256; the file must hold exactly those chunks, in order,
//! and nothing after the last one.
//!
//! Never does: trust a recording the trail does not pin (its bytes are
//! judged only by the hashes in MAC-checked records; call after
//! `verify::verify` succeeded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One chunk as the trail has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    offset: u64,
    length: u64,
    sha256: String,
}

/// A recording that does not match the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The recording file.
    pub file: PathBuf,
    /// Byte offset of the first chunk that does not match.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.file.display(),
            self.offset,
            self.what
        )
    }
}

/// The chunks the trail files name, per recording file name.
fn chunks_in(trail: &[PathBuf]) -> Result<BTreeMap<String, Vec<Chunk>>, String> {
    let mut out: BTreeMap<String, Vec<Chunk>> = BTreeMap::new();
    for path in trail {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for l in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            if v["event"] != "console" || v["action"] != "recording_chunk" {
                continue;
            }
            let (Some(file), Some(offset), Some(length), Some(sha)) = (
                v["file"].as_str(),
                v["offset"].as_u64(),
                v["length"].as_u64(),
                v["sha256"].as_str(),
            ) else {
                continue;
            };
            out.entry(file.to_string()).or_default().push(Chunk {
                offset,
                length,
                sha256: sha.to_string(),
            });
        }
    }
    Ok(out)
}

/// Checks every recording the trail names against the files in `dir`;
/// the number of recordings checked, or the first mismatch.
pub fn verify_recordings(trail: &[PathBuf], dir: &Path) -> Result<Result<usize, Mismatch>, String> {
    let all = chunks_in(trail)?;
    for (name, chunks) in &all {
        // Names come from MAC-checked records, but a path must still stay
        // inside the directory.
        if name.contains('/') || name.starts_with('.') {
            return Err(format!("recording name {name:?} is not a plain file name"));
        }
        if let Err(m) = check_file(&dir.join(name), chunks) {
            return Ok(Err(m));
        }
    }
    Ok(Ok(all.len()))
}

fn check_file(path: &Path, chunks: &[Chunk]) -> Result<(), Mismatch> {
    let bad = |offset: u64, what: String| Mismatch {
        file: path.to_path_buf(),
        offset,
        what,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(0, format!("unreadable or removed: {e}")))?;
    let mut at = 0u64;
    for c in chunks {
        if c.offset != at {
            return Err(bad(
                at,
                format!(
                    "the trail's chunks skip or reorder (next names offset {})",
                    c.offset
                ),
            ));
        }
        let end = c.offset.saturating_add(c.length);
        let Some(data) = bytes.get(c.offset as usize..end as usize) else {
            return Err(bad(c.offset, "truncated: the chunk is missing".into()));
        };
        if hex::encode(Sha256::digest(data)) != c.sha256 {
            return Err(bad(
                c.offset,
                "changed: the chunk's SHA-256 differs from the trail's".into(),
            ));
        }
        at = end;
    }
    if (bytes.len() as u64) > at {
        return Err(bad(
            at,
            format!("{} bytes the trail does not pin", bytes.len() as u64 - at),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(chunks: &[&[u8]]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let mut trail = String::new();
        let mut file = Vec::new();
        for c in chunks {
            trail.push_str(
                &serde_json::json!({"event": "console", "action": "recording_chunk",
                "file": "n-1.cast", "offset": file.len(), "length": c.len(),
                "sha256": hex::encode(Sha256::digest(c))})
                .to_string(),
            );
            trail.push('\n');
            file.extend_from_slice(c);
        }
        std::fs::write(dir.path().join("n-1.cast"), file).unwrap();
        let t = dir.path().join("audit.jsonl");
        std::fs::write(&t, trail).unwrap();
        (dir, t)
    }

    #[test]
    fn an_intact_recording_passes_and_every_kind_of_change_is_found() {
        let (dir, t) = setup(&[b"header\n", b"[1,\"o\",\"x\"]\n"]);
        assert_eq!(
            verify_recordings(std::slice::from_ref(&t), dir.path()).unwrap(),
            Ok(1)
        );
        let p = dir.path().join("n-1.cast");
        let orig = std::fs::read(&p).unwrap();
        let mut changed = orig.clone();
        changed[9] ^= 1;
        std::fs::write(&p, &changed).unwrap();
        let m = verify_recordings(std::slice::from_ref(&t), dir.path())
            .unwrap()
            .unwrap_err();
        assert_eq!((m.offset, m.what.starts_with("changed")), (7, true));
        std::fs::write(&p, &orig[..10]).unwrap();
        let m = verify_recordings(std::slice::from_ref(&t), dir.path())
            .unwrap()
            .unwrap_err();
        assert!(m.what.starts_with("truncated"), "{m}");
        let mut longer = orig.clone();
        longer.extend_from_slice(b"more");
        std::fs::write(&p, &longer).unwrap();
        assert!(verify_recordings(std::slice::from_ref(&t), dir.path())
            .unwrap()
            .is_err());
        std::fs::remove_file(&p).unwrap();
        let m = verify_recordings(&[t], dir.path()).unwrap().unwrap_err();
        assert!(m.what.contains("removed"), "{m}");
    }
}
