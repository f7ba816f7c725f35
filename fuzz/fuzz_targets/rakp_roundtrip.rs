//! Open Session and RAKP payloads: parse, emit, parse to the same value.
#![no_main]
use ipmigw::ipmi::wire::rakp::*;
use libfuzzer_sys::fuzz_target;

macro_rules! round_trip {
    ($t:ty, $data:expr) => {
        if let Ok(v) = <$t>::parse($data) {
            let mut out = Vec::new();
            v.emit(&mut out);
            assert_eq!(<$t>::parse(&out).unwrap(), v, stringify!($t));
        }
    };
}

fuzz_target!(|data: &[u8]| {
    round_trip!(OpenSessionRequest, data);
    round_trip!(OpenSessionResponse, data);
    round_trip!(Rakp1, data);
    round_trip!(Rakp2, data);
    round_trip!(Rakp3, data);
    round_trip!(Rakp4, data);
});
