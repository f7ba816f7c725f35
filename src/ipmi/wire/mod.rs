//! Wire formats of IPMI over LAN: RMCP, ASF presence ping/pong, the IPMI 1.5
//! and RMCP+ session headers, IPMI messages and the RMCP+ session-setup
//! payloads (Open Session, RAKP 1-4), and the SOL packet.
//!
//! Panic contract (as in smoltcp): every `parse` takes untrusted bytes and
//! returns `Err(WireError)` instead of panicking or allocating without bound;
//! every `emit` appends to a `Vec` and cannot fail. Multi-byte IPMI integers
//! are little-endian; ASF fields are big-endian (reference §0).

pub mod asf;
pub mod message;
pub mod rakp;
pub mod rmcp;
pub mod session;
pub mod sol;

/// Why bytes from the network were not accepted. `Copy` and allocation-free
/// so the I/O layer can count drops by reason. Every variant is the peer's
/// fault (or an attacker's): our own emitters never produce them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {what}: need {need} bytes, got {got}")]
    Truncated {
        /// The structure being decoded.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("bad {field}: {value:#x}")]
    BadField {
        /// Field name as in the reference.
        field: &'static str,
        /// The offending value.
        value: u32,
    },
    /// A length field disagrees with the bytes present.
    #[error("bad length of {what}: declared {declared}, available {available}")]
    BadLength {
        /// The structure whose length is wrong.
        what: &'static str,
        /// What the length field says.
        declared: usize,
        /// What is there.
        available: usize,
    },
    /// An IPMI message checksum does not add up to zero.
    #[error("bad IPMI message {0} checksum")]
    Checksum(ChecksumKind),
}

/// Which of the two IPMI message checksums failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumKind {
    /// checksum1, over rsAddr and netFn/LUN.
    Header,
    /// checksum2, over everything from rqAddr to the last data byte.
    Data,
}

impl std::fmt::Display for ChecksumKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChecksumKind::Header => "header",
            ChecksumKind::Data => "data",
        })
    }
}

/// Returns `bytes[range]` or a `Truncated` error naming `what`.
pub(crate) fn take<'a>(
    bytes: &'a [u8],
    range: std::ops::Range<usize>,
    what: &'static str,
) -> Result<&'a [u8], WireError> {
    bytes.get(range.clone()).ok_or(WireError::Truncated {
        what,
        need: range.end,
        got: bytes.len(),
    })
}

/// Fails with `Truncated` unless `bytes` holds at least `need` bytes.
pub(crate) fn need(bytes: &[u8], need: usize, what: &'static str) -> Result<(), WireError> {
    if bytes.len() < need {
        Err(WireError::Truncated {
            what,
            need,
            got: bytes.len(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Two's-complement checksum of IPMI messages: covered bytes + result ≡ 0.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// Asserts that every strict prefix of `$bytes` fails to parse.
#[cfg(test)]
macro_rules! all_truncations_fail {
    ($bytes:expr, $parse:expr) => {{
        let bytes: &[u8] = &$bytes[..];
        for n in 0..bytes.len() {
            if let Ok(v) = $parse(&bytes[..n]) {
                panic!("prefix of {n} bytes parsed as {v:?}");
            }
        }
    }};
}
#[cfg(test)]
pub(crate) use all_truncations_fail;
