//! Minimum session privilege per command, from the
//! [`registry`](super::registry). A BMC checks it before running a command;
//! anything not listed needs ADMINISTRATOR, as OpenIPMI does for unknown and
//! OEM commands.

use super::registry;
use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::NetFn;

/// The lowest session privilege that may run `(netfn, cmd)` with `data`
/// (group extension commands are told apart by their data). `None` means
/// the command may be sent outside a session.
pub fn required(netfn: NetFn, cmd: u8, data: &[u8]) -> Option<Privilege> {
    if netfn == NetFn::GROUP_EXTENSION {
        if let Some(e) = registry::group_extension(cmd, data) {
            return Some(e.privilege);
        }
    }
    match registry::lookup(netfn, cmd) {
        Some(spec) => spec.privilege,
        None => Some(Privilege::Administrator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_spot_checks() {
        assert_eq!(required(NetFn::APP, 0x38, &[]), None);
        assert_eq!(required(NetFn::APP, 0x3C, &[]), Some(Privilege::Callback));
        assert_eq!(required(NetFn::APP, 0x01, &[]), Some(Privilege::User));
        assert_eq!(required(NetFn::CHASSIS, 0x01, &[]), Some(Privilege::User));
        assert_eq!(
            required(NetFn::CHASSIS, 0x02, &[]),
            Some(Privilege::Operator)
        );
        assert_eq!(
            required(NetFn::CHASSIS, 0x09, &[]),
            Some(Privilege::Operator)
        );
        assert_eq!(
            required(NetFn::STORAGE, 0x47, &[]),
            Some(Privilege::Operator)
        );
        assert_eq!(
            required(NetFn::TRANSPORT, 0x01, &[]),
            Some(Privilege::Administrator)
        );
        assert_eq!(
            required(NetFn::APP, 0x02, &[]),
            Some(Privilege::Administrator),
            "cold reset"
        );
        assert_eq!(
            required(NetFn(0x30), 0x01, &[]),
            Some(Privilege::Administrator),
            "OEM"
        );
        // Group extension reads by body and exact data; the rest need
        // ADMINISTRATOR.
        let ge = NetFn::GROUP_EXTENSION;
        assert_eq!(required(ge, 0x00, &[0x00]), Some(Privilege::User));
        assert_eq!(required(ge, 0x01, &[0xDC, 1]), Some(Privilege::User));
        assert_eq!(
            required(ge, 0x00, &[0x00, 1]),
            Some(Privilege::Administrator)
        );
        assert_eq!(
            required(ge, 0x01, &[0x00, 1]),
            Some(Privilege::Administrator)
        );
        assert_eq!(required(ge, 0x00, &[]), Some(Privilege::Administrator));
    }
}
