//! SOL packets and the payload commands' answers from arbitrary bytes:
//! never a panic, and what parses emits and parses again to the same value.
#![no_main]
use ipmigw::ipmi::cmd::sol::{
    ActivatePayload, GetPayloadActivationStatus, GetSolConfig, SolRetry,
};
use ipmigw::ipmi::cmd::Command;
use ipmigw::ipmi::wire::sol::SolPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = SolPacket::parse(data) {
        let again = SolPacket::parse(&p.to_bytes()).expect("emitted packet parses");
        assert_eq!(p, again);
    }
    let act = ActivatePayload { instance: 1, encrypt: true, authenticate: true };
    if let Ok(a) = act.parse_response(data) {
        assert_eq!(act.parse_response(&a.to_bytes()).expect("round trip"), a);
    }
    let _ = ActivatePayload::parse_request(data);
    if let Ok(st) = GetPayloadActivationStatus.parse_response(data) {
        assert_eq!(GetPayloadActivationStatus.parse_response(&st.to_bytes()).ok(), Some(st));
    }
    let _ = GetSolConfig { param: 4 }.parse_response(data);
    let _ = SolRetry::parse(data);
});
