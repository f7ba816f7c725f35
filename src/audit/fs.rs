//! The little file system the audit writer needs, behind a trait so that
//! tests can make writes and fsyncs fail (EIO, short writes, ENOSPC, a
//! read-only file system) exactly where they want.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// An open trail file, appended to.
pub trait TrailFile: Send {
    /// Appends some of `buf`; returns how much.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Makes everything written durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Current length.
    fn size(&self) -> io::Result<u64>;
    /// Reads at an offset.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// Where trail files live.
pub trait TrailFs: Send + Sync + 'static {
    /// Opens (creating, mode 0600) a file for appending and reading.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn TrailFile>>;
    /// Renames a file and makes the rename durable.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Lists a directory's entries.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// True when the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Takes the trail's writer lock (and the anchor file's) for as long as
    /// the returned guard lives, or says who holds it. Two writers on one
    /// trail break its chain.
    fn lock_writer(&self, _trail: &Path, _anchor: Option<&Path>) -> Result<WriterLock, String> {
        Ok(WriterLock::none())
    }
}

/// Held by the one writer of a trail; dropping it releases the lock.
pub struct WriterLock(#[allow(dead_code)] Vec<File>);

impl WriterLock {
    /// No lock (file systems that are not shared, such as test fakes).
    pub fn none() -> WriterLock {
        WriterLock(Vec::new())
    }
}

/// The lock file beside a trail: `audit.lock` for `audit.jsonl` (named so
/// that `audit.jsonl*` matches trail files only), holding the writer's pid.
pub fn lock_path(trail: &Path) -> PathBuf {
    sibling(trail, "lock")
}

/// A file beside the trail named after it: `audit.SUFFIX` for `audit.jsonl`.
pub fn sibling(trail: &Path, suffix: &str) -> PathBuf {
    let stem = trail
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    trail.with_file_name(format!("{stem}.{suffix}"))
}

/// Where `path` really is: symlinks and `..` resolved (for a file that does
/// not exist yet, its directory's).
fn real_path(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_path_buf(),
    }
}

/// Locks `path` (opened or created 0600) exclusively, without waiting.
fn try_lock(path: &Path, what: &str, holder_from: &Path) -> Result<File, String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(holder_from).unwrap_or_default();
            let pid = pid.trim();
            let holder = if pid.is_empty() {
                "another process".to_string()
            } else {
                format!("another gateway (pid {pid})")
            };
            Err(format!(
                "{what} {} is held by {holder}; two writers would break the trail's chain: stop that one first (its lock goes once its shutdown record is durable)",
                path.display()
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("{what} {}: cannot lock: {e}", path.display()))
        }
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(File);

impl TrailFile for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        self.0.sync_all()
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

impl TrailFs for RealFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn TrailFile>> {
        let existed = path.exists();
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        if !existed {
            // A new file's directory entry must be durable too.
            sync_dir(path)?;
        }
        Ok(Box::new(RealFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        sync_dir(to)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn lock_writer(&self, trail: &Path, anchor: Option<&Path>) -> Result<WriterLock, String> {
        // By the file's real place, not the name it is given: two gateways
        // reaching one trail through a symlink must meet at one lock.
        let lock = lock_path(&real_path(trail));
        let mut f = try_lock(&lock, "audit trail lock", &lock)?;
        f.set_len(0)
            .map_err(|e| format!("{}: {e}", lock.display()))?;
        writeln!(f, "{}", std::process::id()).map_err(|e| format!("{}: {e}", lock.display()))?;
        let mut held = vec![f];
        if let Some(a) = anchor {
            held.push(try_lock(a, "audit anchor file", &lock)?);
        }
        Ok(WriterLock(held))
    }
}

/// Writes all of `buf`, treating a write that makes no progress as an error.
pub fn write_all(f: &mut dyn TrailFile, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "short write: no progress",
                ))
            }
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
