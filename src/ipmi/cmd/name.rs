//! The one mapping from an IPMI request (netFn, cmd, data) to the command
//! names policy speaks (design.md, "Command names"), read from the
//! [`registry`](super::registry). Every request gets one name of its own;
//! whatever is not named is `raw.0xNN.0xMM` and counts as state-changing.
//!
//! Some requests are named by their data, because one (netFn, cmd) covers
//! very different acts:
//! - Chassis Control by its power action;
//! - Set System Boot Options by its parameter: the boot-device steps that
//!   `ipmitool chassis bootdev` and freeipmi send are `chassis.bootdev.set`,
//!   the boot flags' other bits (CMOS clear, password bypass, button
//!   lock-outs, ...) `chassis.bootopt.flags`, every other parameter
//!   `chassis.bootopt.param.0xNN`;
//! - Send Message carries another request: it is named `ipmb.send` *and*
//!   by what it carries (decoded; both names must be allowed), so that it
//!   is no tunnel around policy; what does not decode is refused;
//! - group extension (0x2C) and OEM (0x2E) commands mean different things
//!   per defining body and vendor: their names carry the body code
//!   (`raw.0x2c.0xMM.0xBB`) or the IANA number (`raw.0x2e.0xMM.NNNN`),
//!   except the few capability reads the registry names by body and exact
//!   data (PICMG, HPM.2, VITA and DCMI discovery: `mc.info`).

use std::borrow::Cow;

use super::registry::{self, Effect, Naming, MAX_BRIDGE_DEPTH};
use crate::ipmi::wire::message::{NetFn, Request};

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

/// Why a request is refused whatever policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A session-management command (also inside Send Message): the gateway
    /// owns BMC sessions.
    SessionCommand,
    /// A carried message that does not decode (or nests too deep): what it
    /// would do cannot be named, so it cannot be allowed.
    Undecodable(&'static str),
    /// A payload command (activate, deactivate, status, instance info,
    /// suspend/resume encryption): payloads are the console hub's own,
    /// opened only through `/v1/bmcs/NAME/console`, so that no one opens or
    /// closes the BMC's console behind the hub's back.
    PayloadCommand,
}

impl Refusal {
    /// A sentence for callers and the audit trail.
    pub fn describe(&self) -> &'static str {
        match self {
            Refusal::SessionCommand => {
                "session-management commands are the gateway's own; they are never forwarded"
            }
            Refusal::Undecodable(why) => why,
            Refusal::PayloadCommand => {
                "payload commands are the console hub's own; use the console (GET /v1/bmcs/NAME/console, ipmigw console)"
            }
        }
    }
}

/// What policy needs to know about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The request's own name.
    pub name: CommandName,
    /// True when the request (or anything it carries) changes state
    /// (rate-limited separately, never retried blindly).
    pub state_changing: bool,
    /// Other names policy must allow for it: what a Send Message carries
    /// (outermost first), or the other commands a composite read sends.
    pub also: Vec<CommandName>,
    /// Set when the request must be refused whatever policy says.
    pub refusal: Option<Refusal>,
}

impl Classified {
    /// Every name policy must allow: the request's own, then the others.
    pub fn names(&self) -> impl Iterator<Item = &CommandName> {
        std::iter::once(&self.name).chain(&self.also)
    }

    /// Adds a name a composite operation also sends (once).
    pub fn also_sends(&mut self, name: &'static str) {
        let n = CommandName(Cow::Borrowed(name));
        if !self.names().any(|m| *m == n) {
            self.state_changing |= name_is_state_changing(name).unwrap_or(true);
            self.also.push(n);
        }
    }
}

impl Classified {
    /// A request known only by its name (`policy explain --command NAME`):
    /// `None` when no request gets that name.
    pub fn of_name(name: &str) -> Option<Classified> {
        Some(Classified {
            state_changing: name_is_state_changing(name)?,
            name: CommandName(Cow::Owned(name.to_string())),
            also: Vec::new(),
            refusal: None,
        })
    }
}

/// Every fixed command name (the families in [`NAME_FAMILIES`] hold the
/// rest), with whether it changes state; for policy validation and for
/// listing what a user may do.
pub const NAMED: &[(&str, bool)] = &[
    ("mc.info", false),
    ("mc.selftest", false),
    ("mc.reset.cold", true),
    ("mc.reset.warm", true),
    ("mc.sysinfo.write", true),
    ("chassis.status", false),
    ("chassis.power.off", true),
    ("chassis.power.on", true),
    ("chassis.power.cycle", true),
    ("chassis.power.reset", true),
    ("chassis.power.diag", true),
    ("chassis.power.soft", true),
    ("chassis.identify", true),
    ("chassis.bootdev.get", false),
    ("chassis.bootdev.set", true),
    ("chassis.bootopt.flags", true),
    ("sensor.read", false),
    // Not an IPMI command: the gateway's own `/metrics`, granted like one.
    ("metrics.read", false),
    ("sensor.write", true),
    ("sdr.read", false),
    ("sel.read", false),
    ("sel.clear", true),
    ("fru.read", false),
    ("fru.write", true),
    ("user.read", false),
    ("user.write", true),
    ("lan.read", false),
    ("lan.write", true),
    ("channel.read", false),
    ("channel.write", true),
    ("sol.activate", true),
    ("sol.config.read", false),
    ("sol.config.write", true),
    // Console rights: decided by the gateway's console hub, never sent to
    // a BMC as such.
    ("console.read", false),
    ("console.write", true),
    ("console.force", true),
    ("console.break", true),
    ("session.info", false),
    ("ipmb.send", true),
    ("i2c.write_read", true),
];

/// Every fixed command name.
pub const NAMED_COMMANDS: [&str; NAMED.len()] = {
    let mut out = [""; NAMED.len()];
    let mut i = 0;
    while i < NAMED.len() {
        out[i] = NAMED[i].0;
        i += 1;
    }
    out
};

/// One segment of a family of generated names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSegment {
    /// Exactly this text.
    Literal(&'static str),
    /// A byte as `0xNN` (two lower-case hex digits).
    Byte,
    /// A decimal number (no leading zeros).
    Decimal,
}

/// Names made from request bytes; all of them change state.
pub const NAME_FAMILIES: &[&[NameSegment]] = {
    use NameSegment::*;
    &[
        &[
            Literal("chassis"),
            Literal("bootopt"),
            Literal("param"),
            Byte,
        ],
        &[Literal("raw"), Byte, Byte],
        &[Literal("raw"), Literal("0x2c"), Byte, Byte],
        &[Literal("raw"), Literal("0x2e"), Byte, Decimal],
    ]
};

/// Whether a command name changes state: `Some` for a name some request
/// gets, `None` otherwise. The same answers as [`classify`] gives for the
/// bytes behind each name.
pub fn name_is_state_changing(name: &str) -> Option<bool> {
    if let Some((_, sc)) = NAMED.iter().find(|(n, _)| *n == name) {
        return Some(*sc);
    }
    NAME_FAMILIES
        .iter()
        .any(|f| in_family(f, name))
        .then_some(true)
}

fn in_family(family: &[NameSegment], name: &str) -> bool {
    let mut parts = name.split('.');
    let fits = family.iter().all(|seg| {
        let Some(p) = parts.next() else { return false };
        match seg {
            NameSegment::Literal(l) => p == *l,
            NameSegment::Byte => {
                p.len() == 4
                    && p.starts_with("0x")
                    && p[2..]
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }
            NameSegment::Decimal => {
                !p.is_empty()
                    && p.len() <= 8
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'))
            }
        }
    });
    fits && parts.next().is_none()
}

/// True for the session-management commands a client may never send through
/// the gateway: the gateway owns BMC sessions.
pub fn is_session_management(netfn: NetFn, cmd: u8) -> bool {
    registry::lookup(netfn, cmd).is_some_and(|s| s.naming == Naming::Session)
}

/// True for the payload commands only the console hub sends: Activate and
/// Deactivate Payload, Get Payload Activation Status, Get Payload Instance
/// Info, Suspend/Resume Payload Encryption (IPMI v2.0 §24).
pub fn is_payload_command(netfn: NetFn, cmd: u8) -> bool {
    use registry::id;
    [
        id::ACTIVATE_PAYLOAD,
        id::DEACTIVATE_PAYLOAD,
        id::GET_PAYLOAD_ACTIVATION_STATUS,
        id::GET_PAYLOAD_INSTANCE_INFO,
        id::SUSPEND_RESUME_PAYLOAD_ENCRYPTION,
    ]
    .iter()
    .any(|c| c.is(netfn, cmd))
}

/// Maps a request to its policy names.
pub fn classify(netfn: NetFn, cmd: u8, data: &[u8]) -> Classified {
    let mut c = own_name(netfn, cmd, data);
    if is_payload_command(netfn, cmd) {
        c.refusal = Some(Refusal::PayloadCommand);
    }
    if registry::lookup(netfn, cmd).is_some_and(|s| s.naming == Naming::Bridged) {
        classify_carried(&mut c, data, 0);
    }
    c
}

/// Names what a Send Message at nesting `depth` carries into `c`.
fn classify_carried(c: &mut Classified, data: &[u8], depth: usize) {
    let refuse = |c: &mut Classified, why| {
        c.refusal.get_or_insert(Refusal::Undecodable(why));
    };
    if depth >= MAX_BRIDGE_DEPTH {
        return refuse(c, "Send Message nested deeper than the gateway decodes");
    }
    // Byte 0 is the channel and its tracking bits; an IPMB request follows.
    let Some(inner) = data.get(1..).and_then(|b| Request::parse(b).ok()) else {
        return refuse(
            c,
            "the message inside Send Message is not an IPMB request with valid checksums",
        );
    };
    if is_session_management(inner.netfn, inner.cmd) {
        c.refusal.get_or_insert(Refusal::SessionCommand);
    }
    if is_payload_command(inner.netfn, inner.cmd) {
        c.refusal.get_or_insert(Refusal::PayloadCommand);
    }
    let own = own_name(inner.netfn, inner.cmd, &inner.data);
    c.state_changing |= own.state_changing;
    c.also.push(own.name);
    if registry::lookup(inner.netfn, inner.cmd).is_some_and(|s| s.naming == Naming::Bridged) {
        classify_carried(c, &inner.data, depth + 1);
    }
}

/// The name of a request itself (what it carries aside).
fn own_name(netfn: NetFn, cmd: u8, data: &[u8]) -> Classified {
    let named = |n: &'static str, state_changing: bool| Classified {
        name: CommandName(Cow::Borrowed(n)),
        state_changing,
        also: Vec::new(),
        refusal: None,
    };
    if netfn == NetFn::GROUP_EXTENSION {
        if let Some(e) = registry::group_extension(cmd, data) {
            return named(e.name, false);
        }
    }
    let Some(spec) = registry::lookup(netfn, cmd) else {
        return raw(netfn, cmd, data);
    };
    match spec.naming {
        Naming::Fixed(n, effect) => named(n, effect == Effect::Write),
        Naming::PowerAction => match data {
            [0] => named("chassis.power.off", true),
            [1] => named("chassis.power.on", true),
            [2] => named("chassis.power.cycle", true),
            [3] => named("chassis.power.reset", true),
            [4] => named("chassis.power.diag", true),
            [5] => named("chassis.power.soft", true),
            // No, too much or out-of-range data is not a power action.
            _ => raw(netfn, cmd, data),
        },
        Naming::SetBootOptions => boot_options(data).map_or_else(
            || raw(netfn, cmd, data),
            |name| Classified {
                name,
                state_changing: true,
                also: Vec::new(),
                refusal: None,
            },
        ),
        Naming::ActivatePayload if data.first().map(|b| b & 0x3F) == Some(1) => {
            named("sol.activate", true)
        }
        Naming::Bridged => named("ipmb.send", true),
        Naming::Session => Classified {
            refusal: Some(Refusal::SessionCommand),
            ..raw(netfn, cmd, data)
        },
        Naming::ActivatePayload | Naming::Unnamed => raw(netfn, cmd, data),
    }
}

/// Names a Set System Boot Options request (IPMI v2.0 Table 28-14), or
/// `None` when it has no parameter selector.
fn boot_options(data: &[u8]) -> Option<CommandName> {
    let (&selector, value) = data.split_first()?;
    let param = selector & 0x7F;
    let bootdev = CommandName(Cow::Borrowed("chassis.bootdev.set"));
    // Bit 7 marks the parameter invalid (locks it): never a bootdev step.
    if selector & 0x80 != 0 {
        return Some(boot_param(param));
    }
    Some(match (param, value) {
        // Set In Progress: set complete, set in progress, commit write.
        (0, [v]) if *v <= 2 => bootdev,
        // Boot Info Acknowledge: write mask and acknowledge bits.
        (4, [_, _]) => bootdev,
        // Boot Flags: valid, persistent and EFI bits, then the device
        // selector (byte 2 bits 5:2); every other bit is an option with
        // its own risk, and so is a value of another length.
        (5, [flags, device, 0, 0, 0]) if flags & 0x1F == 0 && device & !0x3C == 0 => bootdev,
        (5, _) => CommandName(Cow::Borrowed("chassis.bootopt.flags")),
        _ => boot_param(param),
    })
}

/// One step of a boot-device change as `ipmitool chassis bootdev` sends
/// it: parameter 0 brackets the writes (IPMI v2.0 §28.12: set in progress,
/// commit write, set complete) around the boot info acknowledge and the
/// boot flags. The gateway counts such a change once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootStep {
    /// Parameter 0 "set in progress": a change begins.
    Begin,
    /// Parameter 4, boot info acknowledge.
    Acknowledge,
    /// Parameter 5, the boot device (only what `chassis.bootdev.set` names).
    Flags,
    /// Parameter 0 "commit write".
    Commit,
    /// Parameter 0 "set complete": the change ends.
    End,
}

/// The boot-device change step a request is: `Some` only for what is named
/// `chassis.bootdev.set` (never for the boot options beyond the device).
pub fn boot_step(netfn: NetFn, cmd: u8, data: &[u8]) -> Option<BootStep> {
    if !registry::id::SET_SYSTEM_BOOT_OPTIONS.is(netfn, cmd)
        || boot_options(data)?.as_str() != "chassis.bootdev.set"
    {
        return None;
    }
    Some(match data {
        [0, 1] => BootStep::Begin,
        [0, 2] => BootStep::Commit,
        [0, _] => BootStep::End,
        [4, ..] => BootStep::Acknowledge,
        _ => BootStep::Flags,
    })
}

fn boot_param(param: u8) -> CommandName {
    CommandName(Cow::Owned(format!("chassis.bootopt.param.0x{param:02x}")))
}

/// `raw.0xNN.0xMM`, with the defining body code (group extension) or the
/// IANA number (OEM/group) when the data holds it.
fn raw(netfn: NetFn, cmd: u8, data: &[u8]) -> Classified {
    let name = match (netfn, data) {
        (NetFn::GROUP_EXTENSION, [body, ..]) => format!("raw.0x2c.0x{cmd:02x}.0x{body:02x}"),
        (NetFn::OEM_GROUP, [a, b, c, ..]) => {
            let iana = u32::from_le_bytes([*a, *b, *c, 0]);
            format!("raw.0x2e.0x{cmd:02x}.{iana}")
        }
        _ => format!("raw.0x{:02x}.0x{cmd:02x}", netfn.0),
    };
    Classified {
        name: CommandName(Cow::Owned(name)),
        state_changing: true,
        also: Vec::new(),
        refusal: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::wire::message::Request;

    fn name(netfn: u8, cmd: u8, data: &[u8]) -> (String, bool) {
        let c = classify(NetFn(netfn), cmd, data);
        (c.name.to_string(), c.state_changing)
    }

    #[test]
    fn design_table() {
        let cases: &[(u8, u8, &[u8], &str, bool)] = &[
            (0x06, 0x01, &[], "mc.info", false),
            (0x06, 0x37, &[], "mc.info", false),
            (0x06, 0x08, &[], "mc.info", false),
            (0x06, 0x59, &[0, 1, 0, 0], "mc.info", false),
            (0x06, 0x58, &[1, 0, 1], "mc.sysinfo.write", true),
            (0x2C, 0x00, &[0x00], "mc.info", false),
            (0x2C, 0x3E, &[0x00, 0x02], "mc.info", false),
            (0x2C, 0x00, &[0x03], "mc.info", false),
            (0x2C, 0x01, &[0xDC, 0x01], "mc.info", false),
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
        // OEM/group commands carry their vendor's IANA number (here Intel's
        // 343 = 0x000157), group extensions their defining body.
        assert_eq!(
            name(0x2E, 0xAB, &[0x57, 0x01, 0x00, 9]),
            ("raw.0x2e.0xab.343".into(), true)
        );
        assert_eq!(
            name(0x2C, 0x02, &[0xDC, 1]),
            ("raw.0x2c.0x02.0xdc".into(), true)
        );
        // Group extension reads are named only by their body and exact
        // data: other bodies, lengths or commands stay raw.
        assert_eq!(name(0x2C, 0x00, &[0x00, 0x01]).0, "raw.0x2c.0x00.0x00");
        assert_eq!(name(0x2C, 0x00, &[0xDC]).0, "raw.0x2c.0x00.0xdc");
        assert_eq!(name(0x2C, 0x01, &[0x00, 0x01]).0, "raw.0x2c.0x01.0x00");
        assert_eq!(name(0x2C, 0x3E, &[0x00]).0, "raw.0x2c.0x3e.0x00");
        // DCMI writes (Set Power Limit) are not capability reads.
        assert_eq!(
            name(
                0x2C,
                0x04,
                &[0xDC, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            ),
            ("raw.0x2c.0x04.0xdc".into(), true)
        );
        assert_eq!(name(0x2E, 0x01, &[0x57]).0, "raw.0x2e.0x01");
        assert_eq!(name(0x2C, 0x01, &[]).0, "raw.0x2c.0x01");
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
                for data in [
                    &[][..],
                    &[0],
                    &[1],
                    &[5],
                    &[0xFF, 0, 0],
                    &[5, 0x80, 4, 0, 0, 0],
                ] {
                    let c = classify(NetFn(netfn), cmd, data);
                    assert!(!c.name.as_str().is_empty());
                    if c.name.as_str().starts_with("raw.") {
                        assert!(c.state_changing);
                    } else if !c.name.as_str().starts_with("chassis.bootopt.param.") {
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
        assert_eq!(name_is_state_changing("raw.0x2e.0x01.343"), Some(true));
        assert_eq!(name_is_state_changing("raw.0x2c.0x01.0xdc"), Some(true));
        assert_eq!(
            name_is_state_changing("chassis.bootopt.param.0x07"),
            Some(true)
        );
        assert_eq!(name_is_state_changing("chassis.bootopt.flags"), Some(true));
        for bad in [
            "raw.0x2E.0x01",
            "raw.2e.01",
            "raw.0x2e",
            "raw.0x2e.0x01.0343",
            "raw.0x2c.0x01.dc",
            "chassis.bootopt.param.5",
            "chassis.bootopt.param.0x05.x",
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

    /// Boot options as ipmitool and freeipmi send them for `chassis bootdev`
    /// are one name; every other bit and parameter is another.
    #[test]
    fn boot_options_are_named_by_parameter_and_bits() {
        let bootdev = |data: &[u8]| name(0x00, 0x08, data).0;
        for ok in [
            &[0x00, 0x01][..],            // set in progress
            &[0x00, 0x00],                // set complete
            &[0x00, 0x02],                // commit write
            &[0x04, 0x01, 0x00],          // boot info acknowledge
            &[0x05, 0x80, 0x04, 0, 0, 0], // pxe, next boot
            &[0x05, 0xE0, 0x08, 0, 0, 0], // disk, persistent, EFI
            &[0x05, 0x80, 0x3C, 0, 0, 0], // floppy/removable
            &[0x05, 0x00, 0x00, 0, 0, 0], // clear
        ] {
            assert_eq!(bootdev(ok), "chassis.bootdev.set", "{ok:02x?}");
        }
        for flags in [
            &[0x05, 0x80, 0x84, 0, 0, 0][..], // CMOS clear
            &[0x05, 0x80, 0x44, 0, 0, 0],     // lock keyboard
            &[0x05, 0x80, 0x06, 0, 0, 0],     // screen blank
            &[0x05, 0x80, 0x05, 0, 0, 0],     // lock out reset button
            &[0x05, 0x80, 0x04, 0x80, 0, 0],  // lock out power button
            &[0x05, 0x80, 0x04, 0x08, 0, 0],  // user password bypass
            &[0x05, 0x80, 0x04, 0x04, 0, 0],  // lock out sleep button
            &[0x05, 0x80, 0x04, 0x01, 0, 0],  // console redirection
            &[0x05, 0x80, 0x04, 0, 0x01, 0],  // BIOS mux override
            &[0x05, 0x80, 0x04, 0, 0, 0x01],  // device instance
            &[0x05, 0x81, 0x04, 0, 0, 0],     // reserved bit
            &[0x05, 0x80, 0x04, 0, 0],        // short
            &[0x05, 0x80, 0x04, 0, 0, 0, 0],  // long
            &[0x05],
        ] {
            assert_eq!(bootdev(flags), "chassis.bootopt.flags", "{flags:02x?}");
        }
        assert_eq!(bootdev(&[0x03, 0x1F]), "chassis.bootopt.param.0x03");
        assert_eq!(bootdev(&[0x07, 0, 1, 2]), "chassis.bootopt.param.0x07");
        assert_eq!(bootdev(&[0x61, 0]), "chassis.bootopt.param.0x61");
        assert_eq!(bootdev(&[0x00, 0x03]), "chassis.bootopt.param.0x00");
        assert_eq!(
            bootdev(&[0x85, 0x80, 0x04, 0, 0, 0]),
            "chassis.bootopt.param.0x05"
        );
        assert_eq!(bootdev(&[]), "raw.0x00.0x08");
        for d in [&[0x05, 0x80, 0x84, 0, 0, 0][..], &[0x07, 0], &[]] {
            assert!(name(0x00, 0x08, d).1, "state-changing");
        }
    }

    #[test]
    fn boot_device_steps_are_told_apart_and_nothing_else_is_one() {
        let step = |data: &[u8]| boot_step(NetFn::CHASSIS, 0x08, data);
        assert_eq!(step(&[0, 1]), Some(BootStep::Begin));
        assert_eq!(step(&[4, 1, 1]), Some(BootStep::Acknowledge));
        assert_eq!(step(&[5, 0x80, 0x04, 0, 0, 0]), Some(BootStep::Flags));
        assert_eq!(step(&[0, 2]), Some(BootStep::Commit));
        assert_eq!(step(&[0, 0]), Some(BootStep::End));
        for other in [
            &[0, 3][..],               // reserved: not chassis.bootdev.set
            &[0x80, 1],                // parameter 0 marked invalid
            &[5, 0x80, 0x84, 0, 0, 0], // CMOS clear
            &[7, 0, 1, 2],             // the boot mailbox
            &[0, 1, 0],                // too long
            &[],
        ] {
            assert_eq!(step(other), None, "{other:02x?}");
        }
        assert_eq!(boot_step(NetFn::CHASSIS, 0x09, &[0, 1]), None, "a read");
        assert_eq!(boot_step(NetFn::APP, 0x08, &[0, 1]), None);
    }

    fn ipmb(netfn: u8, cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Request::to_bmc(NetFn(netfn), cmd, 1, data.to_vec()).emit(&mut out);
        out
    }

    fn send_message(channel: u8, inner: &[u8]) -> Vec<u8> {
        let mut d = vec![channel];
        d.extend_from_slice(inner);
        d
    }

    /// Send Message is named by what it carries; both names are decided.
    #[test]
    fn bridged_requests_carry_their_inner_names() {
        let set_pw = send_message(0, &ipmb(0x06, 0x47, &[0x03, 0x02, b'x', b'y']));
        let c = classify(NetFn::APP, 0x34, &set_pw);
        assert_eq!(c.name.as_str(), "ipmb.send");
        let names: Vec<&str> = c.names().map(CommandName::as_str).collect();
        assert_eq!(names, ["ipmb.send", "user.write"]);
        assert!(c.state_changing);
        assert_eq!(c.refusal, None);

        let read = classify(NetFn::APP, 0x34, &send_message(0, &ipmb(0x06, 0x01, &[])));
        assert_eq!(read.also[0].as_str(), "mc.info");

        // Double bridging (ipmitool -b -t -B -T) names every level.
        let inner = send_message(6, &ipmb(0x00, 0x02, &[0]));
        let outer = classify(
            NetFn::APP,
            0x34,
            &send_message(0, &ipmb(0x06, 0x34, &inner)),
        );
        let names: Vec<&str> = outer.names().map(CommandName::as_str).collect();
        assert_eq!(names, ["ipmb.send", "ipmb.send", "chassis.power.off"]);
        assert_eq!(outer.refusal, None);

        // Three levels are more than the gateway decodes.
        let third = send_message(
            0,
            &ipmb(0x06, 0x34, &send_message(0, &ipmb(0x06, 0x34, &inner))),
        );
        assert!(matches!(
            classify(NetFn::APP, 0x34, &third).refusal,
            Some(Refusal::Undecodable(_))
        ));
    }

    #[test]
    fn session_commands_are_refused_inside_a_tunnel_too() {
        for cmd in [0x38, 0x39, 0x3A, 0x3B, 0x3C] {
            let c = classify(
                NetFn::APP,
                0x34,
                &send_message(0, &ipmb(0x06, cmd, &[0; 5])),
            );
            assert_eq!(c.refusal, Some(Refusal::SessionCommand), "{cmd:#x}");
            assert_eq!(
                classify(NetFn::APP, cmd, &[]).refusal,
                Some(Refusal::SessionCommand)
            );
        }
    }

    /// Payloads are the console hub's: no raw or tunnelled payload
    /// command reaches a BMC, whatever its data; the payload-related reads
    /// that open nothing (channel payload support) stay allowed.
    #[test]
    fn payload_commands_are_refused_direct_and_inside_a_tunnel() {
        for cmd in [0x48, 0x49, 0x4A, 0x4B, 0x55] {
            for data in [&[][..], &[1, 1, 0xC0, 0, 0, 0], &[2, 1]] {
                let c = classify(NetFn::APP, cmd, data);
                assert_eq!(c.refusal, Some(Refusal::PayloadCommand), "{cmd:#x}");
            }
            let tunnelled = send_message(0, &ipmb(0x06, cmd, &[1, 1]));
            let c = classify(NetFn::APP, 0x34, &tunnelled);
            assert_eq!(c.refusal, Some(Refusal::PayloadCommand), "{cmd:#x}");
        }
        assert_eq!(classify(NetFn::APP, 0x4E, &[1]).refusal, None);
        // The name stays, for policy and the trail.
        assert_eq!(
            classify(NetFn::APP, 0x48, &[1, 1, 0xC0, 0, 0, 0])
                .name
                .as_str(),
            "sol.activate"
        );
    }

    #[test]
    fn undecodable_bridged_messages_are_refused() {
        let good = send_message(0, &ipmb(0x06, 0x01, &[]));
        let mut bad_sum = good.clone();
        *bad_sum.last_mut().unwrap() ^= 1;
        let mut bad_header = good.clone();
        bad_header[3] ^= 1;
        let response = {
            let mut d = good.clone();
            d[2] |= 1 << 2; // netFn 0x07: a response
            d[3] = 0u8.wrapping_sub(d[1].wrapping_add(d[2]));
            d
        };
        for d in [&[][..], &[0], &good[..5], &bad_sum, &bad_header, &response] {
            let c = classify(NetFn::APP, 0x34, d);
            assert!(
                matches!(c.refusal, Some(Refusal::Undecodable(_))),
                "{d:02x?}"
            );
            assert_eq!(c.name.as_str(), "ipmb.send");
        }
    }
}
