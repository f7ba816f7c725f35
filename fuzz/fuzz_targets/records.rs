//! SDR, SEL and FRU decoders, and reading conversion on whatever decodes.
#![no_main]
use ipmigw::ipmi::{fru, sdr, sel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdr::SdrRecord::Sensor(s)) = sdr::parse_record(data) {
        let _ = s.unit_text();
        for raw in [0u8, 1, 0x7F, 0x80, 0xFF] {
            let _ = s.convert(raw);
        }
    }
    if let Ok(r) = sel::SelRecord::parse(data) {
        if let Some(e) = r.event {
            let _ = (e.description(), sel::sensor_type_name(e.sensor_type));
        }
        if let Some(t) = r.timestamp {
            let _ = sel::format_timestamp(t);
        }
    }
    let _ = fru::parse(data);
});
