//! RAKP auth codes and session keys (reference §2.6). Inputs are concatenated
//! in wire order; random numbers and the GUID are used exactly as received.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::{AuthAlgorithm, CipherSuite, IntegrityAlgorithm};
use crate::secret::SecretBytes;

/// Longest password RMCP+ allows (the key Kuid).
pub const MAX_PASSWORD_LEN: usize = 20;
/// Length of the BMC key Kg.
pub const KG_LEN: usize = 20;

/// The values both ends feed into the RAKP computations.
#[derive(Debug, Clone)]
pub struct RakpInputs<'a> {
    /// Console session ID.
    pub console_sid: u32,
    /// BMC session ID.
    pub bmc_sid: u32,
    /// Console random number Rm.
    pub console_random: &'a [u8; 16],
    /// BMC random number Rc.
    pub bmc_random: &'a [u8; 16],
    /// BMC GUID as on the wire.
    pub bmc_guid: &'a [u8; 16],
    /// The whole RAKP 1 role byte (lookup bit included).
    pub role: u8,
    /// User name as sent in RAKP 1.
    pub username: &'a [u8],
}

/// Computes HMAC over the concatenation of `parts`.
pub fn hmac(alg: AuthAlgorithm, key: &[u8], parts: &[&[u8]]) -> SecretBytes {
    match alg {
        AuthAlgorithm::HmacSha1 => {
            let mut m =
                <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            parts.iter().for_each(|p| m.update(p));
            SecretBytes::new(m.finalize().into_bytes().to_vec())
        }
        AuthAlgorithm::HmacSha256 => {
            let mut m =
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            parts.iter().for_each(|p| m.update(p));
            SecretBytes::new(m.finalize().into_bytes().to_vec())
        }
    }
}

/// Constant-time check that `code` is HMAC(key, parts), or its first
/// `code.len()` bytes when `truncated`. A code of the wrong length fails.
pub fn hmac_verify(
    alg: AuthAlgorithm,
    key: &[u8],
    parts: &[&[u8]],
    code: &[u8],
    expect_len: usize,
) -> bool {
    if code.len() != expect_len || expect_len == 0 {
        return false;
    }
    macro_rules! check {
        ($h:ty) => {{
            let mut m =
                <Hmac<$h> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            parts.iter().for_each(|p| m.update(p));
            if expect_len == <$h as sha2::digest::OutputSizeUser>::output_size() {
                m.verify_slice(code).is_ok()
            } else {
                m.verify_truncated_left(code).is_ok()
            }
        }};
    }
    match alg {
        AuthAlgorithm::HmacSha1 => check!(Sha1),
        AuthAlgorithm::HmacSha256 => check!(Sha256),
    }
}

/// Full HMAC output length of an authentication algorithm.
pub fn auth_code_len(alg: AuthAlgorithm) -> usize {
    match alg {
        AuthAlgorithm::HmacSha1 => 20,
        AuthAlgorithm::HmacSha256 => 32,
    }
}

/// Length of the RAKP 4 integrity check value.
pub fn rakp4_icv_len(alg: AuthAlgorithm) -> usize {
    match alg {
        AuthAlgorithm::HmacSha1 => 12,
        AuthAlgorithm::HmacSha256 => 16,
    }
}

/// Length of the per-packet AuthCode.
pub fn integrity_code_len(alg: IntegrityAlgorithm) -> usize {
    match alg {
        IntegrityAlgorithm::None => 0,
        IntegrityAlgorithm::HmacSha1_96 => 12,
        IntegrityAlgorithm::HmacSha256_128 => 16,
    }
}

fn rakp2_parts<'a>(i: &'a RakpInputs<'a>, sids: &'a [u8; 8], role: &'a [u8; 2]) -> [&'a [u8]; 6] {
    [
        sids,
        i.console_random,
        i.bmc_random,
        i.bmc_guid,
        role,
        i.username,
    ]
}

/// The RAKP 2 auth code: HMAC_Kuid(SIDm ‖ SIDc ‖ Rm ‖ Rc ‖ GUIDc ‖ role ‖ N ‖ name).
pub fn rakp2_auth_code(alg: AuthAlgorithm, kuid: &SecretBytes, i: &RakpInputs<'_>) -> SecretBytes {
    let (sids, role) = rakp2_prefix(i);
    hmac(alg, kuid.expose(), &rakp2_parts(i, &sids, &role))
}

/// Checks a RAKP 2 auth code in constant time.
pub fn verify_rakp2(
    alg: AuthAlgorithm,
    kuid: &SecretBytes,
    i: &RakpInputs<'_>,
    code: &[u8],
) -> bool {
    let (sids, role) = rakp2_prefix(i);
    hmac_verify(
        alg,
        kuid.expose(),
        &rakp2_parts(i, &sids, &role),
        code,
        auth_code_len(alg),
    )
}

fn rakp2_prefix(i: &RakpInputs<'_>) -> ([u8; 8], [u8; 2]) {
    let mut sids = [0u8; 8];
    sids[..4].copy_from_slice(&i.console_sid.to_le_bytes());
    sids[4..].copy_from_slice(&i.bmc_sid.to_le_bytes());
    (sids, [i.role, i.username.len() as u8])
}

/// The RAKP 3 auth code: HMAC_Kuid(Rc ‖ SIDm ‖ role ‖ N ‖ name).
pub fn rakp3_auth_code(alg: AuthAlgorithm, kuid: &SecretBytes, i: &RakpInputs<'_>) -> SecretBytes {
    let sid = i.console_sid.to_le_bytes();
    let role = [i.role, i.username.len() as u8];
    hmac(alg, kuid.expose(), &[i.bmc_random, &sid, &role, i.username])
}

/// Checks a RAKP 3 auth code in constant time.
pub fn verify_rakp3(
    alg: AuthAlgorithm,
    kuid: &SecretBytes,
    i: &RakpInputs<'_>,
    code: &[u8],
) -> bool {
    let sid = i.console_sid.to_le_bytes();
    let role = [i.role, i.username.len() as u8];
    hmac_verify(
        alg,
        kuid.expose(),
        &[i.bmc_random, &sid, &role, i.username],
        code,
        auth_code_len(alg),
    )
}

/// The session keys of one RMCP+ session. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct SessionKeys {
    /// The negotiated suite.
    pub suite: CipherSuite,
    sik: SecretBytes,
    k1: SecretBytes,
    k2: SecretBytes,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Derives SIK = HMAC_{Kg or Kuid}(Rm ‖ Rc ‖ role ‖ N ‖ name), then
    /// K1 = HMAC_SIK(20 × 0x01) and K2 = HMAC_SIK(20 × 0x02). An all-zero or
    /// absent Kg means "not set" (reference §2.6).
    pub fn derive(
        suite: CipherSuite,
        kuid: &SecretBytes,
        kg: Option<&SecretBytes>,
        i: &RakpInputs<'_>,
    ) -> SessionKeys {
        let alg = suite.auth();
        let key = match kg {
            Some(kg) if kg.expose().iter().any(|b| *b != 0) => kg,
            _ => kuid,
        };
        let role = [i.role, i.username.len() as u8];
        let sik = hmac(
            alg,
            key.expose(),
            &[i.console_random, i.bmc_random, &role, i.username],
        );
        let k1 = hmac(alg, sik.expose(), &[&[0x01; 20]]);
        let k2 = hmac(alg, sik.expose(), &[&[0x02; 20]]);
        SessionKeys { suite, sik, k1, k2 }
    }

    /// The RAKP 4 integrity check value: HMAC_SIK(Rm ‖ SIDc ‖ GUIDc), truncated.
    pub fn rakp4_icv(&self, i: &RakpInputs<'_>) -> Vec<u8> {
        let sid = i.bmc_sid.to_le_bytes();
        let full = hmac(
            self.suite.auth(),
            self.sik.expose(),
            &[i.console_random, &sid, i.bmc_guid],
        );
        full.expose()[..rakp4_icv_len(self.suite.auth())].to_vec()
    }

    /// Checks the RAKP 4 integrity check value in constant time.
    pub fn verify_rakp4(&self, i: &RakpInputs<'_>, icv: &[u8]) -> bool {
        let sid = i.bmc_sid.to_le_bytes();
        let alg = self.suite.auth();
        hmac_verify(
            alg,
            self.sik.expose(),
            &[i.console_random, &sid, i.bmc_guid],
            icv,
            rakp4_icv_len(alg),
        )
    }

    pub(crate) fn k1(&self) -> &[u8] {
        self.k1.expose()
    }

    /// The AES key: the first 16 bytes of K2.
    pub(crate) fn aes_key(&self) -> &[u8] {
        &self.k2.expose()[..16]
    }

    #[cfg(test)]
    pub(crate) fn raw(&self) -> (&[u8], &[u8], &[u8]) {
        (self.sik.expose(), self.k1.expose(), self.k2.expose())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const RM: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    pub const RC: [u8; 16] = [
        16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    ];
    pub const GUID: [u8; 16] = [
        32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    ];

    /// Reference §11 inputs.
    pub fn inputs() -> RakpInputs<'static> {
        RakpInputs {
            console_sid: 0xA0A2A3A4,
            bmc_sid: 0x12345678,
            console_random: &RM,
            bmc_random: &RC,
            bmc_guid: &GUID,
            role: 0x14,
            username: b"admin",
        }
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn reference_vectors_suite_3() {
        let pw = SecretBytes::from(&b"password"[..]);
        let i = inputs();
        let alg = AuthAlgorithm::HmacSha1;
        assert_eq!(
            rakp2_auth_code(alg, &pw, &i).expose(),
            h("9508518bfb43673d0eb84d935ac25439b06a7ab8")
        );
        assert_eq!(
            rakp3_auth_code(alg, &pw, &i).expose(),
            h("4ab420258775814f120682c8ab9275c29997effd")
        );
        let k = SessionKeys::derive(CipherSuite::Suite3, &pw, None, &i);
        let (sik, k1, k2) = k.raw();
        assert_eq!(sik, h("122c77c4b11ccd93251cbae6c34a9cb6310da154"));
        assert_eq!(k1, h("e4472be78f9a81fa68297aab696a7be8c97fc9f8"));
        assert_eq!(k2, h("2b6552012a2517cb3b5713901d757a6efc7d8301"));
        assert_eq!(k.aes_key(), h("2b6552012a2517cb3b5713901d757a6e"));
        assert_eq!(k.rakp4_icv(&i), h("5aca955789109a61974ad7a1"));
        let kg = SecretBytes::from(&b"0123456789abcdefghij"[..]);
        let kk = SessionKeys::derive(CipherSuite::Suite3, &pw, Some(&kg), &i);
        assert_eq!(kk.raw().0, h("65f784b694a40588bbd04701ea80d7f32d82e940"));
        // An all-zero Kg means "not set".
        let zero = SecretBytes::new(vec![0; 20]);
        let kz = SessionKeys::derive(CipherSuite::Suite3, &pw, Some(&zero), &i);
        assert_eq!(kz.raw().0, sik);
    }

    #[test]
    fn reference_vectors_suite_17() {
        let pw = SecretBytes::from(&b"password"[..]);
        let i = inputs();
        let alg = AuthAlgorithm::HmacSha256;
        assert_eq!(
            rakp2_auth_code(alg, &pw, &i).expose(),
            h("79b07cf99f6fd074691206ca7d16d7dd4f3839265fb50a773376369454929e88")
        );
        assert_eq!(
            rakp3_auth_code(alg, &pw, &i).expose(),
            h("72a845290e0504673b2177d93a8dd844954778f3fe6b0476b2e7055a21663586")
        );
        let k = SessionKeys::derive(CipherSuite::Suite17, &pw, None, &i);
        let (sik, k1, k2) = k.raw();
        assert_eq!(
            sik,
            h("e5935f7199865ad961063477b0662684e2ce9b1da8f2b8d41c5ce127d37e9bcf")
        );
        assert_eq!(
            k1,
            h("dc4fe73d075306f6897115dd63257385e845c10404fa1d73991790c6a101bec2")
        );
        assert_eq!(
            k2,
            h("2a4f969ea6dfa83066f36674fdc2fea289fa1a21da90303e9b5269b54ec5adb5")
        );
        assert_eq!(k.rakp4_icv(&i), h("f9794eeba255f475851d0dc1957efda9"));
        let kg = SecretBytes::from(&b"0123456789abcdefghij"[..]);
        let kk = SessionKeys::derive(CipherSuite::Suite17, &pw, Some(&kg), &i);
        assert_eq!(
            kk.raw().0,
            h("1b81a421925c6a1fe7328bea4e72c8e5826e24f55ba8bc6fc9511f62edcd7b9f")
        );
    }

    #[test]
    fn verification_rejects_wrong_codes_and_lengths() {
        let pw = SecretBytes::from(&b"password"[..]);
        let i = inputs();
        for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
            let alg = suite.auth();
            let good = rakp2_auth_code(alg, &pw, &i);
            assert!(verify_rakp2(alg, &pw, &i, good.expose()));
            let mut bad = good.expose().to_vec();
            bad[0] ^= 1;
            assert!(!verify_rakp2(alg, &pw, &i, &bad));
            assert!(
                !verify_rakp2(alg, &pw, &i, &good.expose()[..12]),
                "truncated RAKP 2 code"
            );
            let wrong = SecretBytes::from(&b"passw0rd"[..]);
            assert!(!verify_rakp2(alg, &wrong, &i, good.expose()));
            let r3 = rakp3_auth_code(alg, &pw, &i);
            assert!(verify_rakp3(alg, &pw, &i, r3.expose()));
            assert!(!verify_rakp3(alg, &wrong, &i, r3.expose()));

            let k = SessionKeys::derive(suite, &pw, None, &i);
            let icv = k.rakp4_icv(&i);
            assert!(k.verify_rakp4(&i, &icv));
            assert!(!k.verify_rakp4(&i, &icv[..icv.len() - 1]));
            assert!(!k.verify_rakp4(&i, &[]));
            let mut bad = icv.clone();
            bad[3] ^= 0x80;
            assert!(!k.verify_rakp4(&i, &bad));
        }
    }

    #[test]
    fn debug_hides_keys() {
        let pw = SecretBytes::from(&b"password"[..]);
        let k = SessionKeys::derive(CipherSuite::Suite3, &pw, None, &inputs());
        let s = format!("{k:?}");
        assert!(
            !s.contains("122c") && !s.to_lowercase().contains("sik:"),
            "{s}"
        );
    }
}
