//! Audit trail readers on arbitrary file content: the line parser, MAC
//! check, verify (chain walk, torn tails) and query (join, filters). A
//! trail is evidence an attacker may have edited; reading it must never
//! panic.
#![no_main]
use ipmigw::audit::{line, query, verify, AuditKey};
use ipmigw::secret::SecretBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = AuditKey::new(SecretBytes::new(vec![1; 32])).expect("32-byte key");
    for l in data.split(|&b| b == b'\n') {
        let _ = line::parse(l);
        let _ = line::open(l, std::slice::from_ref(&key));
    }
    let dir = std::env::temp_dir().join(format!("ipmigw-fuzz-audit-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("trail.jsonl");
    if std::fs::write(&file, data).is_ok() {
        let _ = verify::verify(std::slice::from_ref(&file), std::slice::from_ref(&key), None);
        if let Ok(rows) = query::query(std::slice::from_ref(&file), &query::Filter::default()) {
            let _ = query::table(&rows);
        }
    }
});
