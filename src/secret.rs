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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = SecretBytes::new(b"Adm1nPass".to_vec());
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("Adm1n"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
