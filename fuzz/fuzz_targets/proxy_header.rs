//! PROXY protocol v2 header parser on arbitrary bytes (what a trusted
//! balancer, or something pretending to be one, sends first).
#![no_main]
use ipmigw::gateway::proxy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Past the signature too, which random bytes rarely match.
    let mut signed = proxy::SIGNATURE.to_vec();
    signed.extend_from_slice(data);
    check(&signed);
    check(data);
});

fn check(data: &[u8]) {
    if let Some(fixed) = data.get(..proxy::FIXED).and_then(|f| <&[u8; proxy::FIXED]>::try_from(f).ok()) {
        let _ = proxy::remaining_len(fixed);
    }
    if let Ok(proxy::Proxied::Client(a)) = proxy::parse(data) {
        let again = proxy::encode(a, a);
        assert_eq!(proxy::parse(&again), Ok(proxy::Proxied::Client(a)));
    }
}
