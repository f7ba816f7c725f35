//! One audit line: how it is built, MACed, hashed and taken apart again.
//!
//! A line is a JSON object whose bytes are fixed by the writer:
//!
//! ```text
//! {"seq":N,"ts":"…Z","event":"…","key_id":"…",<event fields>,"prev":"<64 hex>","mac":"<64 hex>"}
//! ```
//!
//! `prev` is the SHA-256 of the previous line (without its newline; 64 zeros
//! before the first line of a trail) and `mac` is HMAC-SHA256 with the audit
//! key over the line's canonical bytes: everything before `,"mac":"`. The
//! canonical bytes are the written bytes, so verification needs no JSON
//! canonicalisation: a changed byte anywhere changes the MAC input.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::SecretBytes;

/// SHA-256 of a line.
pub type LineHash = [u8; 32];

/// `prev` of the first line of a trail.
pub const GENESIS: LineHash = [0; 32];

const MAC_OPEN: &[u8] = b",\"mac\":\"";
const PREV_OPEN: &[u8] = b",\"prev\":\"";
/// `,"mac":"` + 64 hex + `"}`.
const MAC_SUFFIX_LEN: usize = MAC_OPEN.len() + 64 + 2;

/// Key material shorter than this is refused.
pub const MIN_KEY_LEN: usize = 16;

/// The audit MAC key and its public id.
#[derive(Clone)]
pub struct AuditKey {
    key: SecretBytes,
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A key from raw bytes; its id is derived from it (a one-way hash, so
    /// that verifiers can pick the right key after a rotation).
    pub fn new(key: SecretBytes) -> Result<AuditKey, String> {
        if key.len() < MIN_KEY_LEN {
            return Err(format!("audit key is {} bytes; expected at least {MIN_KEY_LEN} (use `ipmigw audit keygen`)", key.len()));
        }
        let mut h = Sha256::new();
        h.update(b"ipmigw audit key id\0");
        h.update(key.expose());
        let id = hex::encode(&h.finalize()[..8]);
        Ok(AuditKey { key, id })
    }

    /// Reads a key file: 64 or more hex digits, or raw bytes. The file must
    /// be a regular file owned by this user and not readable by others.
    pub fn from_file(path: &std::path::Path) -> Result<AuditKey, String> {
        let bytes = crate::secret::read_private_file(path, "audit key")?;
        let text = bytes.expose();
        let trimmed = text.trim_ascii();
        let key = if trimmed.len() >= 64
            && trimmed.len() % 2 == 0
            && trimmed.iter().all(u8::is_ascii_hexdigit)
        {
            SecretBytes::new(hex::decode(trimmed).expect("checked hex"))
        } else {
            bytes
        };
        AuditKey::new(key).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The public key id written on every line.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, canonical: &[u8]) -> [u8; 32] {
        let mut m =
            Hmac::<Sha256>::new_from_slice(self.key.expose()).expect("HMAC takes any key length");
        m.update(canonical);
        m.finalize().into_bytes().into()
    }

    fn mac_matches(&self, canonical: &[u8], mac: &[u8; 32]) -> bool {
        let mut m =
            Hmac::<Sha256>::new_from_slice(self.key.expose()).expect("HMAC takes any key length");
        m.update(canonical);
        m.verify_slice(mac).is_ok()
    }
}

/// SHA-256 of a line (without its newline).
pub fn hash_line(line: &[u8]) -> LineHash {
    Sha256::digest(line).into()
}

/// Builds one line (without newline): header, the event's fields (a JSON
/// object's members, without braces, possibly empty), `prev`, then the MAC.
pub fn build(
    seq: u64,
    ts: &str,
    event: &str,
    key: &AuditKey,
    fields: &str,
    prev: &LineHash,
) -> String {
    let mut line = String::with_capacity(160 + fields.len());
    line.push_str("{\"seq\":");
    line.push_str(&seq.to_string());
    line.push_str(",\"ts\":\"");
    line.push_str(ts);
    line.push_str("\",\"event\":\"");
    line.push_str(event);
    line.push_str("\",\"key_id\":\"");
    line.push_str(key.id());
    line.push('"');
    if !fields.is_empty() {
        line.push(',');
        line.push_str(fields);
    }
    line.push_str(",\"prev\":\"");
    line.push_str(&hex::encode(prev));
    line.push('"');
    let mac = key.mac(line.as_bytes());
    line.push_str(",\"mac\":\"");
    line.push_str(&hex::encode(mac));
    line.push_str("\"}");
    line
}

/// The header of a line, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Sequence number.
    pub seq: u64,
    /// Timestamp as written.
    pub ts: String,
    /// Event name.
    pub event: String,
    /// Key id.
    pub key_id: String,
    /// Hash of the previous line.
    pub prev: LineHash,
}

/// What is wrong with a line on its own (before chain checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not the shape the writer produces.
    #[error("not an audit record: {0}")]
    Malformed(&'static str),
    /// Made with a key that was not given.
    #[error("signed with key {0}, which is not among the given keys")]
    UnknownKey(String),
    /// The MAC does not match the bytes.
    #[error("MAC mismatch: the line was altered or forged")]
    BadMac,
}

/// Takes a line apart and checks its MAC with the key its `key_id` names.
pub fn open(line: &[u8], keys: &[AuditKey]) -> Result<Header, LineError> {
    let header = parse(line)?;
    let key = keys
        .iter()
        .find(|k| k.id == header.key_id)
        .ok_or_else(|| LineError::UnknownKey(header.key_id.clone()))?;
    let (canonical, mac) = split_mac(line)?;
    if !key.mac_matches(canonical, &mac) {
        return Err(LineError::BadMac);
    }
    Ok(header)
}

fn split_mac(line: &[u8]) -> Result<(&[u8], [u8; 32]), LineError> {
    if line.len() <= MAC_SUFFIX_LEN || !line.ends_with(b"\"}") {
        return Err(LineError::Malformed("does not end with the mac field"));
    }
    let cut = line.len() - MAC_SUFFIX_LEN;
    let (canonical, suffix) = line.split_at(cut);
    if !suffix.starts_with(MAC_OPEN) {
        return Err(LineError::Malformed("does not end with the mac field"));
    }
    let hex = &suffix[MAC_OPEN.len()..MAC_OPEN.len() + 64];
    let mut mac = [0u8; 32];
    hex::decode_to_slice(hex, &mut mac)
        .map_err(|_| LineError::Malformed("mac is not 64 hex digits"))?;
    Ok((canonical, mac))
}

/// Parses the header without checking the MAC (for tail scans and queries).
pub fn parse(line: &[u8]) -> Result<Header, LineError> {
    let (canonical, _) = split_mac(line)?;
    // `prev` must be the last member before the MAC.
    let prev_at = canonical
        .len()
        .checked_sub(PREV_OPEN.len() + 65)
        .ok_or(LineError::Malformed("no prev field"))?;
    let tail = &canonical[prev_at..];
    if !tail.starts_with(PREV_OPEN) || !tail.ends_with(b"\"") {
        return Err(LineError::Malformed("prev is not the field before mac"));
    }
    let mut prev: LineHash = [0; 32];
    hex::decode_to_slice(&tail[PREV_OPEN.len()..PREV_OPEN.len() + 64], &mut prev)
        .map_err(|_| LineError::Malformed("prev is not 64 hex digits"))?;
    #[derive(serde::Deserialize)]
    struct Fields {
        seq: u64,
        ts: String,
        event: String,
        key_id: String,
    }
    let f: Fields = serde_json::from_slice(line)
        .map_err(|_| LineError::Malformed("not a JSON object with seq, ts, event and key_id"))?;
    if !line.starts_with(b"{\"seq\":") {
        return Err(LineError::Malformed("seq is not the first field"));
    }
    Ok(Header {
        seq: f.seq,
        ts: f.ts,
        event: f.event,
        key_id: f.key_id,
        prev,
    })
}

/// Now, as the audit trail writes it: UTC, RFC 3339, microseconds.
pub fn now_rfc3339() -> String {
    format_ts(time::OffsetDateTime::now_utc())
}

/// Formats a time as the trail does.
pub fn format_ts(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> AuditKey {
        AuditKey::new(SecretBytes::new(vec![b; 32])).unwrap()
    }

    #[test]
    fn lines_round_trip_and_every_byte_matters() {
        let k = key(7);
        let line = build(
            42,
            "2026-11-26T14:00:00.000001Z",
            "request",
            &k,
            r#""user":"alice","netfn":6"#,
            &[0xab; 32],
        );
        let h = open(line.as_bytes(), std::slice::from_ref(&k)).unwrap();
        assert_eq!(
            (h.seq, h.event.as_str(), h.prev),
            (42, "request", [0xab; 32])
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["user"], "alice");
        assert_eq!(v["key_id"], k.id());
        for i in 0..line.len() {
            let mut b = line.clone().into_bytes();
            b[i] ^= 0x01;
            assert!(
                open(&b, std::slice::from_ref(&k)).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        assert_eq!(
            open(line.as_bytes(), &[key(8)]),
            Err(LineError::UnknownKey(k.id().to_string()))
        );
        let empty = build(1, "t", "startup", &k, "", &GENESIS);
        assert!(open(empty.as_bytes(), &[k]).is_ok(), "{empty}");
    }

    #[test]
    fn short_keys_are_refused_and_ids_differ() {
        assert!(AuditKey::new(SecretBytes::new(vec![1; 15])).is_err());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().len(), 16);
        assert!(!format!("{:?}", key(0x41)).contains("AAAA"));
    }

    #[test]
    fn timestamps_have_microseconds() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000123 UTC);
        assert_eq!(format_ts(t), "2026-01-02T03:04:05.000123Z");
        assert_eq!(now_rfc3339().len(), 27);
    }
}
