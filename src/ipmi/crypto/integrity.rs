//! Per-packet integrity (reference §4.2) and the whole seal/open of an
//! in-session RMCP+ packet: encrypt-then-MAC on the way out; on the way in,
//! MAC first, then decrypt.
//!
//! [`Verified`] can only be made here, after the AuthCode checked out, so a
//! function that takes one cannot be handed unauthenticated bytes.

use super::keys::{hmac, hmac_verify, integrity_code_len, SessionKeys};
use super::{
    confidentiality, AuthAlgorithm, ConfidentialityAlgorithm, CryptoError, IntegrityAlgorithm,
};
use crate::ipmi::wire::rmcp::RmcpHeader;
use crate::ipmi::wire::session::{
    PayloadKind, PayloadType, RmcpPlusHeader, RmcpPlusPacket, NEXT_HEADER, RMCP_PLUS_HEADER_LEN,
};

/// A packet whose integrity (if the suite has integrity) was verified and
/// whose payload was decrypted (if the suite has confidentiality). The
/// session ID and sequence number are authentic but not yet checked against
/// the session and its window: that is the session layer's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    header: RmcpPlusHeader,
    plaintext: Vec<u8>,
}

impl Verified {
    /// The authenticated header.
    pub fn header(&self) -> &RmcpPlusHeader {
        &self.header
    }

    /// The decrypted payload.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }

    /// Takes the decrypted payload.
    pub fn into_plaintext(self) -> Vec<u8> {
        self.plaintext
    }
}

/// Builds a complete datagram (RMCP header included) for one in-session
/// payload. `iv` must come from a CSPRNG; it is ignored by suites without
/// confidentiality.
pub fn seal(
    keys: &SessionKeys,
    kind: PayloadKind,
    session_id: u32,
    seq: u32,
    plaintext: &[u8],
    iv: &[u8; 16],
) -> Vec<u8> {
    let suite = keys.suite;
    let encrypted = suite.confidentiality() == ConfidentialityAlgorithm::AesCbc128;
    let authenticated = suite.integrity() != IntegrityAlgorithm::None;
    let mut payload = Vec::with_capacity(plaintext.len() + 32);
    if encrypted {
        confidentiality::encrypt(keys.aes_key(), iv, plaintext, &mut payload);
    } else {
        payload.extend_from_slice(plaintext);
    }
    let mut out = Vec::with_capacity(4 + RMCP_PLUS_HEADER_LEN + payload.len() + 20);
    RmcpHeader::IPMI.emit(&mut out);
    RmcpPlusHeader {
        payload_type: PayloadType {
            kind,
            encrypted,
            authenticated,
        },
        session_id,
        seq,
        // Payloads are bounded by the datagram size (far below 64 KiB).
        payload_len: u16::try_from(payload.len()).unwrap_or(u16::MAX),
    }
    .emit(&mut out);
    out.extend_from_slice(&payload);
    if authenticated {
        let covered = RMCP_PLUS_HEADER_LEN + payload.len() + 2;
        let pad = (4 - covered % 4) % 4;
        out.extend(std::iter::repeat_n(0xFF, pad));
        out.push(pad as u8);
        out.push(NEXT_HEADER);
        let code = auth_code(keys, &out[4..]);
        out.extend_from_slice(&code[..integrity_code_len(suite.integrity())]);
    }
    out
}

/// Verifies (integrity, then security bits) and decrypts one framed packet.
pub fn open(keys: &SessionKeys, packet: &RmcpPlusPacket<'_>) -> Result<Verified, CryptoError> {
    let suite = keys.suite;
    let pt = packet.header.payload_type;
    let want_auth = suite.integrity() != IntegrityAlgorithm::None;
    let want_enc = suite.confidentiality() != ConfidentialityAlgorithm::None;
    if want_auth && !pt.authenticated {
        return Err(CryptoError::MissingIntegrity);
    }
    if !want_auth && pt.authenticated {
        return Err(CryptoError::UnexpectedSecurityBit);
    }
    if want_auth {
        verify_trailer(keys, packet)?;
    } else if !packet.trailer.is_empty() {
        return Err(CryptoError::BadTrailer);
    }
    if want_enc != pt.encrypted {
        return Err(if want_enc {
            CryptoError::MissingEncryption
        } else {
            CryptoError::UnexpectedSecurityBit
        });
    }
    let plaintext = if want_enc {
        confidentiality::decrypt(keys.aes_key(), packet.payload)?
    } else {
        packet.payload.to_vec()
    };
    Ok(Verified {
        header: packet.header,
        plaintext,
    })
}

fn verify_trailer(keys: &SessionKeys, packet: &RmcpPlusPacket<'_>) -> Result<(), CryptoError> {
    let code_len = integrity_code_len(keys.suite.integrity());
    let t = packet.trailer;
    // pad (0-3) + pad length + next header + AuthCode
    if t.len() < 2 + code_len || t.len() > 5 + code_len {
        return Err(CryptoError::BadTrailer);
    }
    let covered_len = packet.session_bytes.len() - code_len;
    let (covered, code) = packet.session_bytes.split_at(covered_len);
    // Check the MAC before looking at any trailer field, so that a forged
    // trailer teaches an attacker nothing about which check failed.
    let alg = integrity_hash(keys.suite.integrity());
    if !hmac_verify(alg, keys.k1(), &[covered], code, code_len) {
        return Err(CryptoError::BadAuthCode);
    }
    let pad_len = t.len() - 2 - code_len;
    let (pad, rest) = t.split_at(pad_len);
    if usize::from(rest[0]) != pad_len || rest[1] != NEXT_HEADER || pad.iter().any(|b| *b != 0xFF) {
        return Err(CryptoError::BadTrailer);
    }
    Ok(())
}

fn auth_code(keys: &SessionKeys, covered: &[u8]) -> Vec<u8> {
    hmac(
        integrity_hash(keys.suite.integrity()),
        keys.k1(),
        &[covered],
    )
    .expose()
    .to_vec()
}

fn integrity_hash(alg: IntegrityAlgorithm) -> AuthAlgorithm {
    match alg {
        IntegrityAlgorithm::HmacSha256_128 => AuthAlgorithm::HmacSha256,
        // None never reaches here; SHA1-96 uses SHA1.
        _ => AuthAlgorithm::HmacSha1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::crypto::keys::tests::inputs;
    use crate::ipmi::crypto::CipherSuite;
    use crate::ipmi::wire::session::SessionPacket;
    use crate::secret::SecretBytes;

    use crate::ipmi::crypto::confidentiality::tests::{GET_DEVICE_ID, IV};

    fn keys(suite: CipherSuite) -> SessionKeys {
        SessionKeys::derive(suite, &SecretBytes::from(&b"password"[..]), None, &inputs())
    }

    fn frame(d: &[u8]) -> RmcpPlusPacket<'_> {
        match SessionPacket::parse(&d[4..]).unwrap() {
            SessionPacket::RmcpPlus(p) => p,
            _ => panic!("not RMCP+"),
        }
    }

    #[test]
    fn reference_datagrams() {
        for (suite, want) in [
            (CipherSuite::Suite3, "0600ff0706c078563412010000002000404142434445464748494a4b4c4d4e4f76897a66f2d15784c96fc864677b9ba8ffff02071adaa34f1a5329fc0c181fad"),
            (CipherSuite::Suite17, "0600ff0706c078563412010000002000404142434445464748494a4b4c4d4e4f5abdb9c00a6870c5c330f91be0177956ffff02078d081f2b9cedd47c6ba02e30f25cbf6a"),
        ] {
            let k = keys(suite);
            let d = seal(&k, PayloadKind::IPMI, 0x12345678, 1, &GET_DEVICE_ID, &IV);
            assert_eq!(hex::encode(&d), want, "suite {suite}");
            let v = open(&k, &frame(&d)).unwrap();
            assert_eq!(v.plaintext(), GET_DEVICE_ID);
            assert_eq!(v.header().seq, 1);
        }
    }

    #[test]
    fn any_flipped_bit_fails_the_mac() {
        let k = keys(CipherSuite::Suite17);
        let d = seal(&k, PayloadKind::IPMI, 0x12345678, 1, &GET_DEVICE_ID, &IV);
        for i in 4..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x01;
            if let Ok(SessionPacket::RmcpPlus(p)) = SessionPacket::parse(&bad[4..]) {
                assert!(open(&k, &p).is_err(), "flip at byte {i} accepted");
            }
        }
    }

    #[test]
    fn security_bits_must_match_the_suite() {
        let k = keys(CipherSuite::Suite3);
        let d = seal(&k, PayloadKind::IPMI, 1, 1, &GET_DEVICE_ID, &IV);
        // Same bytes with the authenticated bit cleared and no trailer.
        let mut stripped = d[..4 + 12 + 32].to_vec();
        stripped[5] &= !0x40;
        assert_eq!(
            open(&k, &frame(&stripped)),
            Err(CryptoError::MissingIntegrity)
        );
        // A plaintext packet sent to a suite-3 session, properly MACed under
        // suite 2 keys of the same K1, must still be refused as unencrypted.
        let k2 = SessionKeys::derive(
            CipherSuite::Suite2,
            &SecretBytes::from(&b"password"[..]),
            None,
            &inputs(),
        );
        let d2 = seal(&k2, PayloadKind::IPMI, 1, 1, &GET_DEVICE_ID, &IV);
        assert_eq!(open(&k, &frame(&d2)), Err(CryptoError::MissingEncryption));
        // The reverse: an encrypted packet to a session without confidentiality.
        assert_eq!(
            open(&k2, &frame(&d)),
            Err(CryptoError::UnexpectedSecurityBit)
        );
    }

    #[test]
    fn suites_without_integrity_still_round_trip() {
        for suite in [
            CipherSuite::Suite1,
            CipherSuite::Suite2,
            CipherSuite::Suite15,
            CipherSuite::Suite16,
        ] {
            let k = keys(suite);
            for n in [0usize, 1, 7, 16, 33] {
                let msg = vec![0xA5; n];
                let d = seal(&k, PayloadKind::IPMI, 9, 3, &msg, &IV);
                assert_eq!(
                    open(&k, &frame(&d)).unwrap().plaintext(),
                    msg,
                    "suite {suite} len {n}"
                );
            }
        }
    }
}
