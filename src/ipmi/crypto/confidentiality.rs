//! AES-CBC-128 payload confidentiality (reference §4.1): a 16-byte IV, then
//! the ciphertext of `plaintext ‖ 01 02 … P ‖ P`. Only the RustCrypto `aes`
//! and `cbc` crates touch the blocks.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use super::CryptoError;

/// AES block and IV length.
pub const BLOCK_LEN: usize = 16;

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

/// Appends `IV ‖ AES-CBC(plaintext ‖ pad ‖ padlen)` to `out`.
pub fn encrypt(key: &[u8], iv: &[u8; BLOCK_LEN], plaintext: &[u8], out: &mut Vec<u8>) {
    let pad = (BLOCK_LEN - (plaintext.len() + 1) % BLOCK_LEN) % BLOCK_LEN;
    let start = out.len();
    out.extend_from_slice(iv);
    out.extend_from_slice(plaintext);
    out.extend((1..=pad as u8).chain(std::iter::once(pad as u8)));
    let body = &mut out[start + BLOCK_LEN..];
    let len = body.len();
    Enc::new_from_slices(key, iv)
        .expect("K2 gives a 16-byte AES key and the IV is 16 bytes")
        .encrypt_padded_mut::<NoPadding>(body, len)
        .expect("body is a whole number of blocks");
}

/// Decrypts `IV ‖ ciphertext` and strips the confidentiality pad. Every
/// failure is the same error so that no padding oracle is exposed.
pub fn decrypt(key: &[u8], payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if payload.len() < 2 * BLOCK_LEN || !payload.len().is_multiple_of(BLOCK_LEN) {
        return Err(CryptoError::BadCiphertext);
    }
    let (iv, ct) = payload.split_at(BLOCK_LEN);
    let mut buf = ct.to_vec();
    Dec::new_from_slices(key, iv)
        .map_err(|_| CryptoError::BadCiphertext)?
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| CryptoError::BadCiphertext)?;
    let pad = usize::from(*buf.last().ok_or(CryptoError::BadCiphertext)?);
    if pad >= BLOCK_LEN || pad + 1 > buf.len() {
        return Err(CryptoError::BadCiphertext);
    }
    let body_len = buf.len() - 1 - pad;
    let pad_ok = buf[body_len..buf.len() - 1]
        .iter()
        .enumerate()
        .all(|(i, b)| usize::from(*b) == i + 1);
    if !pad_ok {
        return Err(CryptoError::BadCiphertext);
    }
    buf.truncate(body_len);
    Ok(buf)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IV and a plaintext message the crypto tests share.
    pub(crate) const IV: [u8; 16] = [
        0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e,
        0x4f,
    ];
    pub(crate) const GET_DEVICE_ID: [u8; 7] = [0x20, 0x18, 0xc8, 0x81, 0x04, 0x01, 0x7a];

    #[test]
    fn reference_ciphertexts() {
        for (key, ct) in [
            (
                "2b6552012a2517cb3b5713901d757a6e",
                "76897a66f2d15784c96fc864677b9ba8",
            ),
            (
                "2a4f969ea6dfa83066f36674fdc2fea2",
                "5abdb9c00a6870c5c330f91be0177956",
            ),
        ] {
            let key = hex::decode(key).unwrap();
            let mut out = Vec::new();
            encrypt(&key, &IV, &GET_DEVICE_ID, &mut out);
            assert_eq!(&out[..16], IV);
            assert_eq!(hex::encode(&out[16..]), ct);
            assert_eq!(decrypt(&key, &out).unwrap(), GET_DEVICE_ID);
        }
    }

    #[test]
    fn every_length_round_trips_and_bad_pads_fail() {
        let key = [7u8; 16];
        for n in 0..40 {
            let msg: Vec<u8> = (0..n as u8).collect();
            let mut out = Vec::new();
            encrypt(&key, &IV, &msg, &mut out);
            assert_eq!((out.len() - 16) % 16, 0);
            assert_eq!(decrypt(&key, &out).unwrap(), msg, "length {n}");
        }
        let mut out = Vec::new();
        encrypt(&key, &IV, &GET_DEVICE_ID, &mut out);
        assert_eq!(decrypt(&[8u8; 16], &out), Err(CryptoError::BadCiphertext));
        assert_eq!(decrypt(&key, &out[..31]), Err(CryptoError::BadCiphertext));
        assert_eq!(decrypt(&key, &out[..16]), Err(CryptoError::BadCiphertext));
    }
}
