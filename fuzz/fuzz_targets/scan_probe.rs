//! The scanner's decoders of BMC answers (auth caps, cipher suite chunks
//! and records, Open Session, RAKP 2 and 4, the suite-0 command answer) on
//! arbitrary datagrams: a scanned host may be hostile, and decoding its
//! answer must never panic. Findings are derived from what parses.
#![no_main]
use ipmigw::ipmi::probe;
use ipmigw::scan::Observations;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut obs = Observations::default();
    obs.auth_caps = probe::parse_auth_caps(data).ok();
    if let Ok(chunk) = probe::parse_cipher_suites_chunk(data) {
        obs.suites = Some(probe::suite_records(&chunk));
    }
    obs.suites.get_or_insert_with(|| probe::suite_records(data));
    let _ = probe::parse_open_session(data);
    let _ = probe::parse_rakp2(data);
    let _ = probe::parse_rakp4(data);
    let _ = probe::parse_suite0_answer(data);
    let _ = obs.findings();
});
