//! RMCP+ cryptography (reference §2.6, §3, §4), built only on the RustCrypto
//! crates: RAKP key-exchange auth codes, SIK/K1/K2, per-packet integrity
//! (HMAC-SHA1-96, HMAC-SHA256-128) and confidentiality (AES-CBC-128).
//!
//! Never does: hand-written primitives, `==` on MACs (all checks go through
//! `hmac::Mac::verify_*`, which is constant-time), logging of any key.

pub mod confidentiality;
pub mod integrity;
pub mod keys;

use crate::ipmi::wire::rakp::AlgorithmTriple;

/// Authentication (RAKP) algorithm. RAKP-none is not representable: a
/// session without a password check is never acceptable (CVE-2013-4782).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAlgorithm {
    /// RAKP-HMAC-SHA1 (1).
    HmacSha1,
    /// RAKP-HMAC-SHA256 (3).
    HmacSha256,
}

/// Per-packet integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityAlgorithm {
    /// No integrity trailer (insecure; opt-in only).
    None,
    /// HMAC-SHA1-96 (1).
    HmacSha1_96,
    /// HMAC-SHA256-128 (4).
    HmacSha256_128,
}

/// Confidentiality algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfidentialityAlgorithm {
    /// Plaintext payloads (insecure; opt-in only).
    None,
    /// AES-CBC-128 (1).
    AesCbc128,
}

/// A cipher suite this implementation can speak. Only 3 and 17 are secure;
/// the others lack integrity or confidentiality and need an explicit,
/// `insecure`-named opt-in at the session layer. Suite 0 and the MD5/RC4
/// suites cannot be constructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// HMAC-SHA1 / none / none.
    Suite1,
    /// HMAC-SHA1 / HMAC-SHA1-96 / none.
    Suite2,
    /// HMAC-SHA1 / HMAC-SHA1-96 / AES-CBC-128: mandatory in the spec.
    Suite3,
    /// HMAC-SHA256 / none / none.
    Suite15,
    /// HMAC-SHA256 / HMAC-SHA256-128 / none.
    Suite16,
    /// HMAC-SHA256 / HMAC-SHA256-128 / AES-CBC-128: preferred.
    Suite17,
}

/// A cipher suite number this implementation will not speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "cipher suite {0} is not supported (only 17 and 3, or 1, 2, 15, 16 with an insecure opt-in)"
)]
pub struct UnsupportedCipherSuite(pub u8);

impl TryFrom<u8> for CipherSuite {
    type Error = UnsupportedCipherSuite;
    fn try_from(id: u8) -> Result<Self, Self::Error> {
        Ok(match id {
            1 => CipherSuite::Suite1,
            2 => CipherSuite::Suite2,
            3 => CipherSuite::Suite3,
            15 => CipherSuite::Suite15,
            16 => CipherSuite::Suite16,
            17 => CipherSuite::Suite17,
            other => return Err(UnsupportedCipherSuite(other)),
        })
    }
}

impl CipherSuite {
    /// The suites used when nothing else is configured, best first.
    pub const DEFAULT: [CipherSuite; 2] = [CipherSuite::Suite17, CipherSuite::Suite3];

    /// The suite number.
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Suite1 => 1,
            CipherSuite::Suite2 => 2,
            CipherSuite::Suite3 => 3,
            CipherSuite::Suite15 => 15,
            CipherSuite::Suite16 => 16,
            CipherSuite::Suite17 => 17,
        }
    }

    /// Authentication algorithm.
    pub fn auth(self) -> AuthAlgorithm {
        match self {
            CipherSuite::Suite1 | CipherSuite::Suite2 | CipherSuite::Suite3 => {
                AuthAlgorithm::HmacSha1
            }
            _ => AuthAlgorithm::HmacSha256,
        }
    }

    /// Integrity algorithm.
    pub fn integrity(self) -> IntegrityAlgorithm {
        match self {
            CipherSuite::Suite1 | CipherSuite::Suite15 => IntegrityAlgorithm::None,
            CipherSuite::Suite2 | CipherSuite::Suite3 => IntegrityAlgorithm::HmacSha1_96,
            CipherSuite::Suite16 | CipherSuite::Suite17 => IntegrityAlgorithm::HmacSha256_128,
        }
    }

    /// Confidentiality algorithm.
    pub fn confidentiality(self) -> ConfidentialityAlgorithm {
        match self {
            CipherSuite::Suite3 | CipherSuite::Suite17 => ConfidentialityAlgorithm::AesCbc128,
            _ => ConfidentialityAlgorithm::None,
        }
    }

    /// True for suites with authentication, integrity and confidentiality.
    pub fn is_secure(self) -> bool {
        matches!(self, CipherSuite::Suite3 | CipherSuite::Suite17)
    }

    /// The algorithm numbers proposed in Open Session.
    pub fn algorithms(self) -> AlgorithmTriple {
        AlgorithmTriple {
            auth: match self.auth() {
                AuthAlgorithm::HmacSha1 => 1,
                AuthAlgorithm::HmacSha256 => 3,
            },
            integrity: match self.integrity() {
                IntegrityAlgorithm::None => 0,
                IntegrityAlgorithm::HmacSha1_96 => 1,
                IntegrityAlgorithm::HmacSha256_128 => 4,
            },
            confidentiality: match self.confidentiality() {
                ConfidentialityAlgorithm::None => 0,
                ConfidentialityAlgorithm::AesCbc128 => 1,
            },
        }
    }

    /// The suite whose algorithms are exactly `t`, if we speak it.
    pub fn from_algorithms(t: AlgorithmTriple) -> Option<CipherSuite> {
        [1u8, 2, 3, 15, 16, 17]
            .into_iter()
            .filter_map(|id| CipherSuite::try_from(id).ok())
            .find(|s| s.algorithms() == t)
    }
}

impl std::fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.id())
    }
}

/// Why a packet failed its cryptographic checks. Deliberately coarse toward
/// the peer (nothing is answered), precise for our drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The session requires integrity but the packet's bit 6 is clear.
    #[error("packet lacks the integrity bit the session requires")]
    MissingIntegrity,
    /// The session requires confidentiality but the packet's bit 7 is clear.
    #[error("packet lacks the encryption bit the session requires")]
    MissingEncryption,
    /// A security bit is set that the session did not negotiate.
    #[error("packet carries a security bit the session did not negotiate")]
    UnexpectedSecurityBit,
    /// The integrity trailer is malformed (length, pad, next header).
    #[error("malformed integrity trailer")]
    BadTrailer,
    /// The AuthCode does not verify.
    #[error("integrity check failed")]
    BadAuthCode,
    /// The encrypted payload is malformed or its pad is wrong.
    #[error("payload does not decrypt")]
    BadCiphertext,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_suites_exist() {
        for id in 0..=255u8 {
            let ok = CipherSuite::try_from(id).is_ok();
            assert_eq!(ok, matches!(id, 1 | 2 | 3 | 15 | 16 | 17), "suite {id}");
        }
        assert!(CipherSuite::Suite17.is_secure() && CipherSuite::Suite3.is_secure());
        assert!(!CipherSuite::Suite2.is_secure());
    }

    #[test]
    fn algorithm_numbers_round_trip() {
        for s in [1u8, 2, 3, 15, 16, 17] {
            let suite = CipherSuite::try_from(s).unwrap();
            assert_eq!(
                CipherSuite::from_algorithms(suite.algorithms()),
                Some(suite)
            );
        }
        let t = CipherSuite::Suite17.algorithms();
        assert_eq!((t.auth, t.integrity, t.confidentiality), (3, 4, 1));
        let none = AlgorithmTriple {
            auth: 0,
            integrity: 0,
            confidentiality: 0,
        };
        assert_eq!(CipherSuite::from_algorithms(none), None);
    }
}
