//! The one mapping from an IPMI request (netFn, cmd, data) to the command
//! name policy speaks (design.md, "Command names"). Every request maps to
//! exactly one name; whatever is not named is `raw.0xNN.0xMM` and counts as
//! state-changing.
//!
//! Beyond design.md's table, two pure reads of the same family are named
//! `sensor.read` (Get Sensor Hysteresis 04/25, Get Sensor Event Enable
//! 04/29), and the other Sensor/Event setters (04/24, 04/2A, 04/2E, 04/30)
//! are `sensor.write`, as the table's "and other sets" asks.

use std::borrow::Cow;

use crate::ipmi::wire::message::NetFn;

/// A policy command name such as `chassis.power.off`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandName(Cow<'static, str>);

impl CommandName {
    /// The dotted name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CommandName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What policy needs to know about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The command name.
    pub name: CommandName,
    /// True when the command changes state (rate-limited separately, never
    /// retried blindly).
    pub state_changing: bool,
}

/// Every named command (everything else is `raw.0xNN.0xMM`), for policy
/// validation and for listing what a user may do.
pub const NAMED_COMMANDS: &[&str] = &[
    "mc.info",
    "mc.selftest",
    "mc.reset.cold",
    "mc.reset.warm",
    "chassis.status",
    "chassis.power.off",
    "chassis.power.on",
    "chassis.power.cycle",
    "chassis.power.reset",
    "chassis.power.diag",
    "chassis.power.soft",
    "chassis.identify",
    "chassis.bootdev.get",
    "chassis.bootdev.set",
    "sensor.read",
    "sensor.write",
    "sdr.read",
    "sel.read",
    "sel.clear",
    "fru.read",
    "fru.write",
    "user.read",
    "user.write",
    "lan.read",
    "lan.write",
    "channel.read",
    "channel.write",
    "sol.activate",
    "sol.config.read",
    "sol.config.write",
    "session.info",
    "ipmb.send",
    "i2c.write_read",
];

/// Whether a command name changes state: `Some` for a named command or a
/// well-formed `raw.0xNN.0xMM` (always state-changing), `None` otherwise.
/// The same answers as [`classify`] gives for the bytes behind each name.
pub fn name_is_state_changing(name: &str) -> Option<bool> {
    if NAMED_COMMANDS.contains(&name) {
        let reads = [
            "mc.info",
            "mc.selftest",
            "chassis.status",
            "chassis.bootdev.get",
            "sensor.read",
            "sdr.read",
            "sel.read",
            "fru.read",
        ];
        let reads_too = [
            "user.read",
            "lan.read",
            "channel.read",
            "sol.config.read",
            "session.info",
        ];
        return Some(!reads.contains(&name) && !reads_too.contains(&name));
    }
    let rest = name.strip_prefix("raw.")?;
    let (netfn, cmd) = rest.split_once('.')?;
    let byte = |s: &str| {
        s.len() == 4
            && s.starts_with("0x")
            && u8::from_str_radix(&s[2..], 16).is_ok()
            && s[2..] == s[2..].to_ascii_lowercase()
    };
    (byte(netfn) && byte(cmd)).then_some(true)
}

/// True for the session-management commands a client may never send through
/// the gateway: the gateway owns BMC sessions.
pub fn is_session_management(netfn: NetFn, cmd: u8) -> bool {
    netfn == NetFn::APP && matches!(cmd, 0x38..=0x3C)
}

/// Maps a request to its policy name.
pub fn classify(netfn: NetFn, cmd: u8, data: &[u8]) -> Classified {
    let named = |n: &'static str, state_changing: bool| Classified {
        name: CommandName(Cow::Borrowed(n)),
        state_changing,
    };
    let r = |n| named(n, false);
    let w = |n| named(n, true);
    match (netfn, cmd) {
        (NetFn::APP, 0x01 | 0x37) => r("mc.info"),
        (NetFn::APP, 0x04) => r("mc.selftest"),
        (NetFn::APP, 0x02) => w("mc.reset.cold"),
        (NetFn::APP, 0x03) => w("mc.reset.warm"),
        (NetFn::APP, 0x3D) => r("session.info"),
        (NetFn::APP, 0x44 | 0x46) => r("user.read"),
        (NetFn::APP, 0x43 | 0x45 | 0x47) => w("user.write"),
        (NetFn::APP, 0x41 | 0x42 | 0x54) => r("channel.read"),
        (NetFn::APP, 0x40) => w("channel.write"),
        (NetFn::APP, 0x48) if data.first().map(|b| b & 0x3F) == Some(1) => w("sol.activate"),
        (NetFn::APP, 0x34) => w("ipmb.send"),
        (NetFn::APP, 0x52) => w("i2c.write_read"),
        (NetFn::CHASSIS, 0x01) => r("chassis.status"),
        (NetFn::CHASSIS, 0x02) if data.len() == 1 => match data[0] {
            0 => w("chassis.power.off"),
            1 => w("chassis.power.on"),
            2 => w("chassis.power.cycle"),
            3 => w("chassis.power.reset"),
            4 => w("chassis.power.diag"),
            5 => w("chassis.power.soft"),
            _ => raw(netfn, cmd),
        },
        (NetFn::CHASSIS, 0x04) => w("chassis.identify"),
        (NetFn::CHASSIS, 0x09) => r("chassis.bootdev.get"),
        (NetFn::CHASSIS, 0x08) => w("chassis.bootdev.set"),
        (NetFn::SENSOR_EVENT, 0x2D | 0x27 | 0x2F | 0x2B | 0x25 | 0x29) => r("sensor.read"),
        (NetFn::SENSOR_EVENT, 0x24 | 0x26 | 0x28 | 0x2A | 0x2E | 0x30) => w("sensor.write"),
        (NetFn::SENSOR_EVENT, 0x20..=0x23) => r("sdr.read"),
        (NetFn::STORAGE, 0x20..=0x23) => r("sdr.read"),
        (NetFn::STORAGE, 0x40 | 0x42 | 0x43 | 0x48) => r("sel.read"),
        (NetFn::STORAGE, 0x47) => w("sel.clear"),
        (NetFn::STORAGE, 0x10 | 0x11) => r("fru.read"),
        (NetFn::STORAGE, 0x12) => w("fru.write"),
        (NetFn::TRANSPORT, 0x02) => r("lan.read"),
        (NetFn::TRANSPORT, 0x01) => w("lan.write"),
        (NetFn::TRANSPORT, 0x22) => r("sol.config.read"),
        (NetFn::TRANSPORT, 0x21) => w("sol.config.write"),
        _ => raw(netfn, cmd),
    }
}

fn raw(netfn: NetFn, cmd: u8) -> Classified {
    Classified {
        name: CommandName(Cow::Owned(format!("raw.0x{:02x}.0x{:02x}", netfn.0, cmd))),
        state_changing: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(netfn: u8, cmd: u8, data: &[u8]) -> (String, bool) {
        let c = classify(NetFn(netfn), cmd, data);
        (c.name.to_string(), c.state_changing)
    }

    #[test]
    fn design_table() {
        let cases: &[(u8, u8, &[u8], &str, bool)] = &[
            (0x06, 0x01, &[], "mc.info", false),
            (0x06, 0x37, &[], "mc.info", false),
            (0x06, 0x04, &[], "mc.selftest", false),
            (0x06, 0x02, &[], "mc.reset.cold", true),
            (0x06, 0x03, &[], "mc.reset.warm", true),
            (0x00, 0x01, &[], "chassis.status", false),
            (0x00, 0x02, &[0], "chassis.power.off", true),
            (0x00, 0x02, &[1], "chassis.power.on", true),
            (0x00, 0x02, &[2], "chassis.power.cycle", true),
            (0x00, 0x02, &[3], "chassis.power.reset", true),
            (0x00, 0x02, &[4], "chassis.power.diag", true),
            (0x00, 0x02, &[5], "chassis.power.soft", true),
            (0x00, 0x04, &[], "chassis.identify", true),
            (0x00, 0x09, &[5, 0, 0], "chassis.bootdev.get", false),
            (
                0x00,
                0x08,
                &[5, 0x80, 4, 0, 0, 0],
                "chassis.bootdev.set",
                true,
            ),
            (0x04, 0x2D, &[1], "sensor.read", false),
            (0x04, 0x27, &[1], "sensor.read", false),
            (0x04, 0x2F, &[1], "sensor.read", false),
            (0x04, 0x2B, &[1], "sensor.read", false),
            (0x04, 0x26, &[1], "sensor.write", true),
            (0x04, 0x28, &[1], "sensor.write", true),
            (0x0A, 0x20, &[], "sdr.read", false),
            (0x0A, 0x23, &[], "sdr.read", false),
            (0x04, 0x20, &[], "sdr.read", false),
            (0x04, 0x23, &[], "sdr.read", false),
            (0x0A, 0x40, &[], "sel.read", false),
            (0x0A, 0x42, &[], "sel.read", false),
            (0x0A, 0x43, &[], "sel.read", false),
            (0x0A, 0x48, &[], "sel.read", false),
            (0x0A, 0x47, &[], "sel.clear", true),
            (0x0A, 0x10, &[0], "fru.read", false),
            (0x0A, 0x11, &[0], "fru.read", false),
            (0x0A, 0x12, &[0], "fru.write", true),
            (0x06, 0x44, &[], "user.read", false),
            (0x06, 0x46, &[], "user.read", false),
            (0x06, 0x43, &[], "user.write", true),
            (0x06, 0x45, &[], "user.write", true),
            (0x06, 0x47, &[], "user.write", true),
            (0x0C, 0x02, &[], "lan.read", false),
            (0x0C, 0x01, &[], "lan.write", true),
            (0x06, 0x41, &[], "channel.read", false),
            (0x06, 0x42, &[], "channel.read", false),
            (0x06, 0x54, &[], "channel.read", false),
            (0x06, 0x40, &[], "channel.write", true),
            (0x06, 0x48, &[1, 1, 0xC0, 0, 0, 0], "sol.activate", true),
            (0x0C, 0x22, &[], "sol.config.read", false),
            (0x0C, 0x21, &[], "sol.config.write", true),
            (0x06, 0x3D, &[0], "session.info", false),
            (0x06, 0x34, &[], "ipmb.send", true),
            (0x06, 0x52, &[], "i2c.write_read", true),
        ];
        for &(netfn, cmd, data, want, sc) in cases {
            assert_eq!(
                name(netfn, cmd, data),
                (want.to_string(), sc),
                "{netfn:#x}/{cmd:#x}"
            );
        }
    }

    #[test]
    fn everything_else_is_raw_and_state_changing() {
        assert_eq!(name(0x30, 0x01, &[]), ("raw.0x30.0x01".into(), true));
        assert_eq!(
            name(0x2E, 0xAB, &[0x7C, 0x2A, 0]),
            ("raw.0x2e.0xab".into(), true)
        );
        // Chassis Control with no, too much or out-of-range data is not a power action.
        assert_eq!(name(0x00, 0x02, &[]).0, "raw.0x00.0x02");
        assert_eq!(name(0x00, 0x02, &[6]).0, "raw.0x00.0x02");
        assert_eq!(name(0x00, 0x02, &[0, 0]).0, "raw.0x00.0x02");
        // Activate Payload for anything but SOL.
        assert_eq!(name(0x06, 0x48, &[2]).0, "raw.0x06.0x48");
        assert_eq!(name(0x06, 0x48, &[]).0, "raw.0x06.0x48");
    }

    #[test]
    fn every_request_gets_exactly_one_name() {
        for netfn in (0..0x40u8).step_by(2) {
            for cmd in 0..=255u8 {
                for data in [&[][..], &[0], &[1], &[5], &[0xFF, 0, 0]] {
                    let c = classify(NetFn(netfn), cmd, data);
                    assert!(!c.name.as_str().is_empty());
                    if c.name.as_str().starts_with("raw.") {
                        assert!(c.state_changing);
                    } else {
                        assert!(
                            NAMED_COMMANDS.contains(&c.name.as_str()),
                            "{} is not listed",
                            c.name
                        );
                    }
                    assert_eq!(
                        name_is_state_changing(c.name.as_str()),
                        Some(c.state_changing),
                        "{}",
                        c.name
                    );
                }
            }
        }
    }

    #[test]
    fn names_without_bytes() {
        assert_eq!(name_is_state_changing("chassis.power.on"), Some(true));
        assert_eq!(name_is_state_changing("sel.read"), Some(false));
        assert_eq!(name_is_state_changing("raw.0x2e.0x01"), Some(true));
        for bad in [
            "raw.0x2E.0x01",
            "raw.2e.01",
            "raw.0x2e",
            "chassis.power",
            "nope",
            "",
        ] {
            assert_eq!(name_is_state_changing(bad), None, "{bad}");
        }
    }

    #[test]
    fn session_management_commands() {
        for cmd in [0x38, 0x39, 0x3A, 0x3B, 0x3C] {
            assert!(is_session_management(NetFn::APP, cmd));
        }
        assert!(!is_session_management(NetFn::APP, 0x3D));
        assert!(!is_session_management(NetFn::CHASSIS, 0x3C));
    }
}
