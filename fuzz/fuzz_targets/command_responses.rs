//! Every typed command's response decoder on arbitrary data.
#![no_main]
use ipmigw::ipmi::cmd::app::*;
use ipmigw::ipmi::cmd::chassis::*;
use ipmigw::ipmi::cmd::sensor_event::*;
use ipmigw::ipmi::cmd::storage::*;
use ipmigw::ipmi::cmd::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ChannelAuthCapabilities::parse(data);
    let _ = GetDeviceId.parse_response(data);
    let _ = GetSystemGuid.parse_response(data);
    let _ = GetChassisStatus.parse_response(data);
    let _ = GetBootFlags.parse_response(data);
    let _ = GetSensorReading(1).parse_response(data);
    let _ = GetSdrRepositoryInfo.parse_response(data);
    let _ = ReserveSdrRepository.parse_response(data);
    let _ = GetSdr { reservation: 1, record_id: 0, offset: 0, count: 16 }.parse_response(data);
    let _ = GetSelInfo.parse_response(data);
    let _ = GetSelEntry { reservation: 1, record_id: 0 }.parse_response(data);
    let _ = GetFruInventoryAreaInfo(0).parse_response(data);
    let _ = ReadFruData { fru_id: 0, offset: 0, count: 16 }.parse_response(data);
    if let Some((&netfn, rest)) = data.split_first() {
        if let Some((&cmd, payload)) = rest.split_first() {
            let _ = ipmigw::ipmi::cmd::name::classify(ipmigw::ipmi::wire::message::NetFn(netfn), cmd, payload);
        }
    }
});
