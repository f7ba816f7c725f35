//! BMC credentials from files: a password (at most 20 bytes, never
//! truncated) and a Kg (raw, or `0x` and hex), through the private-file
//! checks of [`crate::secret::read_private_file`]. Errors name the file and
//! the problem, never the content.

use std::path::Path;

use crate::ipmi::crypto::keys::{KG_LEN, MAX_PASSWORD_LEN};
use crate::secret::{read_private_file, SecretBytes};

/// Reads a password file: one line, the trailing newline dropped, at most
/// 20 bytes.
pub fn read_password_file(path: &Path) -> Result<SecretBytes, String> {
    let bytes = read_private_file(path, "password")?;
    if bytes.is_empty() {
        return Err(format!("password file {}: is empty", path.display()));
    }
    if bytes.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password file {}: password is {} bytes; RMCP+ allows at most {MAX_PASSWORD_LEN} (refusing rather than truncating)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Reads a Kg file: either raw bytes (at most 20) or `0x` and up to 40 hex
/// digits.
pub fn read_kg_file(path: &Path) -> Result<SecretBytes, String> {
    let bytes = read_private_file(path, "Kg")?;
    let text = bytes.expose();
    let kg = if let Some(hex) = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))
    {
        if hex.len() % 2 != 0 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!(
                "Kg file {}: after 0x, expected an even number of hex digits",
                path.display()
            ));
        }
        let decoded: Vec<u8> = hex
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
            .collect();
        SecretBytes::new(decoded)
    } else {
        bytes.clone()
    };
    if kg.len() > KG_LEN {
        return Err(format!(
            "Kg file {}: Kg is {} bytes; at most {KG_LEN}",
            path.display(),
            kg.len()
        ));
    }
    Ok(kg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8], mode: u32) -> tempfile::NamedTempFile {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn password_rules() {
        let f = file(b"Adm1nPass\n", 0o600);
        assert_eq!(read_password_file(f.path()).unwrap().expose(), b"Adm1nPass");
        let f = file(b"Adm1nPass\r\n", 0o400);
        assert_eq!(read_password_file(f.path()).unwrap().expose(), b"Adm1nPass");

        let f = file(b"Adm1nPass", 0o640);
        let e = read_password_file(f.path()).unwrap_err();
        assert!(
            e.contains("group or others") && e.contains(&f.path().display().to_string()),
            "{e}"
        );
        assert!(!e.contains("Adm1n"));

        let f = file(b"012345678901234567890", 0o600);
        let e = read_password_file(f.path()).unwrap_err();
        assert!(e.contains("21 bytes") && !e.contains("0123"), "{e}");

        let e = read_password_file(Path::new("/nonexistent/pw")).unwrap_err();
        assert!(
            e.contains("/nonexistent/pw") && e.contains("does not exist"),
            "{e}"
        );
        let f = file(b"\n", 0o600);
        assert!(read_password_file(f.path()).unwrap_err().contains("empty"));
    }

    #[test]
    fn kg_forms() {
        let f = file(b"0x3031323334\n", 0o600);
        assert_eq!(read_kg_file(f.path()).unwrap().expose(), b"01234");
        let f = file(b"0123456789abcdefghij", 0o600);
        assert_eq!(read_kg_file(f.path()).unwrap().len(), 20);
        let f = file(b"0x123", 0o600);
        assert!(read_kg_file(f.path()).is_err());
        let f = file(b"0123456789abcdefghijk", 0o600);
        assert!(read_kg_file(f.path()).is_err());
    }
}
