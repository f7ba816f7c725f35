//! Secret bytes (passwords, Kg, session keys): zeroized on drop, printed as
//! `<redacted>`, and with no `Display` or `Serialize` so that no code path can
//! put one in a log line, an error message or an HTTP answer by accident;
//! and reading the files that hold them (BMC passwords, Kg, keys): refused
//! when missing, unreadable, not a regular file, owned by someone else or
//! open to group/others; never truncated; never echoed. Errors name the
//! file and the problem, not the content.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes that must never be shown. Cloning is allowed (a session needs its
/// own copy of the password for re-login); every copy zeroizes on drop.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`; the caller's buffer moves in, so no
    /// unzeroized copy stays behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// The secret itself, for the crypto code that needs it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret: IPMI limits are about lengths).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(b: &[u8]) -> Self {
        SecretBytes(b.to_vec())
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads a file that holds a secret (password, Kg, audit key), refusing one
/// that someone else could have swapped or read: a symlink, not a regular
/// file, not owned by this process's user, or accessible by group or others.
/// The checks are made on the opened descriptor, so the file read is the
/// file checked.
/// One trailing newline is dropped. Errors name the file and what to fix,
/// never the content.
pub fn read_private_file(path: &std::path::Path, what: &str) -> Result<SecretBytes, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let shown = path.display();
    let failed = |e: std::io::Error| format!("{what} file {shown}: {}", io_reason(&e));
    // One open, and every check on the descriptor it returns: checking the
    // path and then opening it again reads whatever was swapped in between.
    // O_NOFOLLOW makes a symlink fail the open (ELOOP); O_NONBLOCK keeps a
    // FIFO from blocking it until someone writes (a regular file ignores it).
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                format!("{what} file {shown}: is a symlink; point the config at the file itself")
            }
            _ => failed(e),
        })?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(format!("{what} file {shown}: not a regular file"));
    }
    // /proc/self is owned by the process's effective user: no raw geteuid() call.
    if let Ok(me) = std::fs::metadata("/proc/self") {
        if meta.uid() != me.uid() {
            return Err(format!(
                "{what} file {shown}: owned by uid {}, not by this process's user (uid {})",
                meta.uid(),
                me.uid()
            ));
        }
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("{what} file {shown}: is accessible by group or others (mode {mode:04o}); run: chmod 600 {shown}"));
    }
    // Sized up front, as fs::read does, so that no reallocation leaves an
    // unzeroized copy of the secret behind.
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(usize::try_from(meta.len()).unwrap_or(usize::MAX))
        .map_err(|_| format!("{what} file {shown}: too large ({} bytes)", meta.len()))?;
    file.read_to_end(&mut bytes).map_err(failed)?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(SecretBytes::new(bytes))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_refuse_symlinks_and_loose_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private_file(&p, "key").unwrap().expose(), b"s3cret");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        // Refused by the open itself, even when the link leads nowhere.
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nothing"), &dangling).unwrap();
        for l in [&link, &dangling] {
            assert_eq!(
                read_private_file(l, "key").unwrap_err(),
                format!(
                    "key file {}: is a symlink; point the config at the file itself",
                    l.display()
                )
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_private_file(&p, "key").unwrap_err();
        assert!(e.contains("mode 0640") && !e.contains("s3cret"), "{e}");
        assert!(read_private_file(d.path(), "key")
            .unwrap_err()
            .contains("not a regular file"));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(made.success());
        // An open without O_NONBLOCK would wait for a writer forever.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = p.clone();
        std::thread::spawn(move || tx.send(read_private_file(&path, "key")));
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO hung");
        let e = r.unwrap_err();
        assert_eq!(e, format!("key file {}: not a regular file", p.display()));
    }

    #[test]
    fn a_file_swapped_after_the_check_is_never_read() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let private = d.path().join("private");
        std::fs::write(&private, "private").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        let public = d.path().join("public");
        std::fs::write(&public, "public").unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = d.path().join("k");
        std::fs::hard_link(&private, &p).unwrap();
        // Someone keeps swapping the path between the private file and a
        // symlink to a file anyone can read: whatever is read must be the
        // file that passed the checks.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, dir, p) = (stop.clone(), d.path().to_path_buf(), p.clone());
            std::thread::spawn(move || {
                let (link, hard) = (dir.join("link.tmp"), dir.join("hard.tmp"));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::os::unix::fs::symlink(&public, &link).unwrap();
                    std::fs::rename(&link, &p).unwrap();
                    std::fs::hard_link(&private, &hard).unwrap();
                    std::fs::rename(&hard, &p).unwrap();
                }
            })
        };
        let (mut read, mut wrong) = (0, None);
        for _ in 0..20_000 {
            if let Ok(b) = read_private_file(&p, "key") {
                if b.expose() != b"private" {
                    wrong = Some(String::from_utf8_lossy(b.expose()).into_owned());
                    break;
                }
                read += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(wrong, None, "read a file other than the one checked");
        assert!(read > 0, "the private file was never read");
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = SecretBytes::new(b"Adm1nPass".to_vec());
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("Adm1n"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
