//! Minimum session privilege per command (reference §6, after OpenIPMI's
//! transcription of the spec's Appendix G). A BMC checks it before running a
//! command; anything not listed needs ADMINISTRATOR, as OpenIPMI does for
//! unknown and OEM commands.

use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::NetFn;

/// The lowest session privilege that may run `(netfn, cmd)`. `None` means
/// the command may be sent outside a session.
pub fn required(netfn: NetFn, cmd: u8) -> Option<Privilege> {
    use Privilege::*;
    Some(match (netfn, cmd) {
        // Session-less: Get System GUID, Get Channel Auth Capabilities,
        // Get Channel Cipher Suites.
        (NetFn::APP, 0x37 | 0x38 | 0x54) => return None,
        (NetFn::APP, 0x3C) => Callback,
        (
            NetFn::APP,
            0x01 | 0x04 | 0x08 | 0x25 | 0x34 | 0x3B | 0x3D | 0x41 | 0x42 | 0x4A | 0x4E,
        ) => User,
        (NetFn::APP, 0x48 | 0x49) => User,
        (NetFn::APP, 0x22 | 0x24 | 0x44 | 0x46 | 0x52) => Operator,
        (NetFn::CHASSIS, 0x00 | 0x01 | 0x07 | 0x0F) => User,
        (NetFn::CHASSIS, 0x02 | 0x04 | 0x06 | 0x08 | 0x09) => Operator,
        (NetFn::SENSOR_EVENT, 0x20..=0x23 | 0x25 | 0x27 | 0x29 | 0x2B | 0x2D | 0x2F) => User,
        (NetFn::SENSOR_EVENT, 0x24 | 0x26 | 0x28 | 0x2A | 0x2E) => Operator,
        (NetFn::STORAGE, 0x10 | 0x11 | 0x20..=0x23 | 0x40..=0x43 | 0x48) => User,
        (NetFn::STORAGE, 0x12 | 0x44 | 0x46 | 0x47 | 0x49) => Operator,
        (NetFn::TRANSPORT, 0x02) => Operator,
        (NetFn::TRANSPORT, 0x22) => User,
        _ => Administrator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_spot_checks() {
        assert_eq!(required(NetFn::APP, 0x38), None);
        assert_eq!(required(NetFn::APP, 0x3C), Some(Privilege::Callback));
        assert_eq!(required(NetFn::APP, 0x01), Some(Privilege::User));
        assert_eq!(required(NetFn::CHASSIS, 0x01), Some(Privilege::User));
        assert_eq!(required(NetFn::CHASSIS, 0x02), Some(Privilege::Operator));
        assert_eq!(required(NetFn::CHASSIS, 0x09), Some(Privilege::Operator));
        assert_eq!(required(NetFn::STORAGE, 0x47), Some(Privilege::Operator));
        assert_eq!(
            required(NetFn::TRANSPORT, 0x01),
            Some(Privilege::Administrator)
        );
        assert_eq!(
            required(NetFn::APP, 0x02),
            Some(Privilege::Administrator),
            "cold reset"
        );
        assert_eq!(
            required(NetFn(0x30), 0x01),
            Some(Privilege::Administrator),
            "OEM"
        );
    }
}
