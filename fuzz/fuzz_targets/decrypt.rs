//! AES-CBC payload decryption and pad checks on arbitrary ciphertext.
#![no_main]
use ipmigw::ipmi::crypto::confidentiality::{decrypt, encrypt};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 16] = [9; 16];

fuzz_target!(|data: &[u8]| {
    if let Ok(plain) = decrypt(&KEY, data) {
        assert!(plain.len() < data.len());
    }
    // And everything round-trips through encrypt.
    let mut out = Vec::new();
    encrypt(&KEY, &[1; 16], data, &mut out);
    assert_eq!(decrypt(&KEY, &out).unwrap(), data);
});
