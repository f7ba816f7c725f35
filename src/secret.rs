//! Secret bytes (passwords, Kg, session keys): zeroized on drop, printed as
//! `<redacted>`, and with no `Display` or `Serialize` so that no code path can
//! put one in a log line, an error message or an HTTP answer by accident.

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
/// One trailing newline is dropped. Errors name the file and what to fix,
/// never the content.
pub fn read_private_file(path: &std::path::Path, what: &str) -> Result<SecretBytes, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("{what} file {shown}: {}", io_reason(&e)))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{what} file {shown}: is a symlink; point the config at the file itself"
        ));
    }
    if !meta.is_file() {
        return Err(format!("{what} file {shown}: not a regular file"));
    }
    // /proc/self is owned by the process's effective user: no libc needed.
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
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("{what} file {shown}: {}", io_reason(&e)))?;
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
        let e = read_private_file(&link, "key").unwrap_err();
        assert!(e.contains("is a symlink"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_private_file(&p, "key").unwrap_err();
        assert!(e.contains("mode 0640") && !e.contains("s3cret"), "{e}");
        assert!(read_private_file(d.path(), "key")
            .unwrap_err()
            .contains("not a regular file"));
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = SecretBytes::new(b"Adm1nPass".to_vec());
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("Adm1n"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
