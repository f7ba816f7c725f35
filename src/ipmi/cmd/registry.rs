//! The command registry: one table of every IPMI command the project knows
//! by (netFn, cmd), with what each one means to the layers above: its policy
//! name (or how its data picks one), the minimum session privilege a BMC
//! asks for it (reference §6, after OpenIPMI's transcription of the spec's
//! Appendix G), and which of its data bytes are secrets that must never
//! reach the audit trail or a log.
//!
//! Classification ([`super::name`]), the BMC side's privilege check
//! ([`super::privilege`]) and audit redaction ([`secret_from`]) all read
//! this table, so that a command is described once.
//!
//! Never does: I/O, or any decision of policy (it names; policy decides).

use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::{NetFn, Request};

/// Whether a command changes the BMC's or the host's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A read: safe to retry, rate-limited with reads.
    Read,
    /// A change: never re-sent blindly, rate-limited with changes.
    Write,
}

/// How a command's policy name is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// One name whatever the data.
    Fixed(&'static str, Effect),
    /// Chassis Control: the power action in data byte 0.
    PowerAction,
    /// Set System Boot Options: the parameter and, for the boot flags, the
    /// bits it sets (IPMI v2.0 §28.12-28.13).
    SetBootOptions,
    /// Activate Payload: SOL (payload type 1) is named, others are raw.
    ActivatePayload,
    /// Send Message: named by what it carries, too.
    Bridged,
    /// Session management: the gateway's own, never forwarded.
    Session,
    /// No name of its own: `raw.0xNN.0xMM` (known for privilege only).
    Unnamed,
}

/// Which data bytes of a request are secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// None.
    None,
    /// Every byte from this offset on.
    From(usize),
    /// Every byte from `from` on, when data byte `at` (bits 6:0) holds one
    /// of `params` (configuration parameters that are credentials).
    Params {
        /// Offset of the parameter selector.
        at: usize,
        /// The secret parameters.
        params: &'static [u8],
        /// First secret byte.
        from: usize,
    },
    /// Send Message: a channel byte, then an IPMB request whose own
    /// secrets (and the checksum covering them) are secret.
    CarriedIpmb,
    /// Master Write-Read: bus, slave address, read count, then bytes
    /// written; when they form an IPMB request to that address, its
    /// secrets are secret.
    CarriedI2c,
}

/// A command's identity: its request netFn and command number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandId {
    /// Request netFn.
    pub netfn: NetFn,
    /// Command.
    pub cmd: u8,
}

impl CommandId {
    /// The command `cmd` of `netfn`.
    pub const fn new(netfn: NetFn, cmd: u8) -> CommandId {
        CommandId { netfn, cmd }
    }

    /// A request for this command with `data`.
    pub fn request(self, data: Vec<u8>) -> crate::ipmi::cmd::RawRequest {
        crate::ipmi::cmd::RawRequest {
            netfn: self.netfn,
            cmd: self.cmd,
            data,
        }
    }

    /// True when `req` is this command.
    pub fn is(self, netfn: NetFn, cmd: u8) -> bool {
        self.netfn == netfn && self.cmd == cmd
    }
}

/// One command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Its identity.
    pub id: CommandId,
    /// The spec's name for it.
    pub title: &'static str,
    /// How its policy name is found.
    pub naming: Naming,
    /// The lowest session privilege that may run it; `None` for commands
    /// a BMC answers outside a session.
    pub privilege: Option<Privilege>,
    /// Which data bytes are secret.
    pub secret: Secret,
}

/// Every command of the registry by name: the one place a (netFn, cmd)
/// pair is spelled. Typed commands, the simulator's dispatch and the BMC
/// side's session commands use these.
#[allow(missing_docs)]
pub mod id {
    use super::CommandId;
    use super::{APP, CHASSIS, SENSOR, STORAGE, TRANSPORT};

    /// Get Device ID.
    pub const GET_DEVICE_ID: CommandId = CommandId::new(APP, 0x01);
    /// Cold Reset.
    pub const COLD_RESET: CommandId = CommandId::new(APP, 0x02);
    /// Warm Reset.
    pub const WARM_RESET: CommandId = CommandId::new(APP, 0x03);
    /// Get Self Test Results.
    pub const GET_SELF_TEST_RESULTS: CommandId = CommandId::new(APP, 0x04);
    /// Get Device GUID.
    pub const GET_DEVICE_GUID: CommandId = CommandId::new(APP, 0x08);
    /// Reset Watchdog Timer.
    pub const RESET_WATCHDOG_TIMER: CommandId = CommandId::new(APP, 0x22);
    /// Set Watchdog Timer.
    pub const SET_WATCHDOG_TIMER: CommandId = CommandId::new(APP, 0x24);
    /// Get Watchdog Timer.
    pub const GET_WATCHDOG_TIMER: CommandId = CommandId::new(APP, 0x25);
    /// Send Message.
    pub const SEND_MESSAGE: CommandId = CommandId::new(APP, 0x34);
    /// Get System GUID.
    pub const GET_SYSTEM_GUID: CommandId = CommandId::new(APP, 0x37);
    /// Get Channel Authentication Capabilities.
    pub const GET_CHANNEL_AUTHENTICATION_CAPABILITIES: CommandId = CommandId::new(APP, 0x38);
    /// Get Session Challenge.
    pub const GET_SESSION_CHALLENGE: CommandId = CommandId::new(APP, 0x39);
    /// Activate Session.
    pub const ACTIVATE_SESSION: CommandId = CommandId::new(APP, 0x3A);
    /// Set Session Privilege Level.
    pub const SET_SESSION_PRIVILEGE_LEVEL: CommandId = CommandId::new(APP, 0x3B);
    /// Close Session.
    pub const CLOSE_SESSION: CommandId = CommandId::new(APP, 0x3C);
    /// Get Session Info.
    pub const GET_SESSION_INFO: CommandId = CommandId::new(APP, 0x3D);
    /// Set Channel Access.
    pub const SET_CHANNEL_ACCESS: CommandId = CommandId::new(APP, 0x40);
    /// Get Channel Access.
    pub const GET_CHANNEL_ACCESS: CommandId = CommandId::new(APP, 0x41);
    /// Get Channel Info.
    pub const GET_CHANNEL_INFO: CommandId = CommandId::new(APP, 0x42);
    /// Set User Access.
    pub const SET_USER_ACCESS: CommandId = CommandId::new(APP, 0x43);
    /// Get User Access.
    pub const GET_USER_ACCESS: CommandId = CommandId::new(APP, 0x44);
    /// Set User Name.
    pub const SET_USER_NAME: CommandId = CommandId::new(APP, 0x45);
    /// Get User Name.
    pub const GET_USER_NAME: CommandId = CommandId::new(APP, 0x46);
    /// Set User Password.
    pub const SET_USER_PASSWORD: CommandId = CommandId::new(APP, 0x47);
    /// Activate Payload.
    pub const ACTIVATE_PAYLOAD: CommandId = CommandId::new(APP, 0x48);
    /// Deactivate Payload.
    pub const DEACTIVATE_PAYLOAD: CommandId = CommandId::new(APP, 0x49);
    /// Get Payload Activation Status.
    pub const GET_PAYLOAD_ACTIVATION_STATUS: CommandId = CommandId::new(APP, 0x4A);
    /// Get Payload Instance Info.
    pub const GET_PAYLOAD_INSTANCE_INFO: CommandId = CommandId::new(APP, 0x4B);
    /// Suspend/Resume Payload Encryption.
    pub const SUSPEND_RESUME_PAYLOAD_ENCRYPTION: CommandId = CommandId::new(APP, 0x55);
    /// Get Channel Payload Support.
    pub const GET_CHANNEL_PAYLOAD_SUPPORT: CommandId = CommandId::new(APP, 0x4E);
    /// Master Write-Read.
    pub const MASTER_WRITE_READ: CommandId = CommandId::new(APP, 0x52);
    /// Get Channel Cipher Suites.
    pub const GET_CHANNEL_CIPHER_SUITES: CommandId = CommandId::new(APP, 0x54);
    /// Set Channel Security Keys.
    pub const SET_CHANNEL_SECURITY_KEYS: CommandId = CommandId::new(APP, 0x56);
    /// Set System Info Parameters.
    pub const SET_SYSTEM_INFO_PARAMETERS: CommandId = CommandId::new(APP, 0x58);
    /// Get System Info Parameters.
    pub const GET_SYSTEM_INFO_PARAMETERS: CommandId = CommandId::new(APP, 0x59);
    /// Get Chassis Capabilities.
    pub const GET_CHASSIS_CAPABILITIES: CommandId = CommandId::new(CHASSIS, 0x00);
    /// Get Chassis Status.
    pub const GET_CHASSIS_STATUS: CommandId = CommandId::new(CHASSIS, 0x01);
    /// Chassis Control.
    pub const CHASSIS_CONTROL: CommandId = CommandId::new(CHASSIS, 0x02);
    /// Chassis Identify.
    pub const CHASSIS_IDENTIFY: CommandId = CommandId::new(CHASSIS, 0x04);
    /// Set Power Restore Policy.
    pub const SET_POWER_RESTORE_POLICY: CommandId = CommandId::new(CHASSIS, 0x06);
    /// Get System Restart Cause.
    pub const GET_SYSTEM_RESTART_CAUSE: CommandId = CommandId::new(CHASSIS, 0x07);
    /// Set System Boot Options.
    pub const SET_SYSTEM_BOOT_OPTIONS: CommandId = CommandId::new(CHASSIS, 0x08);
    /// Get System Boot Options.
    pub const GET_SYSTEM_BOOT_OPTIONS: CommandId = CommandId::new(CHASSIS, 0x09);
    /// Get POH Counter.
    pub const GET_POH_COUNTER: CommandId = CommandId::new(CHASSIS, 0x0F);
    /// Get Device SDR Info.
    pub const GET_DEVICE_SDR_INFO: CommandId = CommandId::new(SENSOR, 0x20);
    /// Get Device SDR.
    pub const GET_DEVICE_SDR: CommandId = CommandId::new(SENSOR, 0x21);
    /// Reserve Device SDR Repository.
    pub const RESERVE_DEVICE_SDR_REPOSITORY: CommandId = CommandId::new(SENSOR, 0x22);
    /// Get Sensor Reading Factors.
    pub const GET_SENSOR_READING_FACTORS: CommandId = CommandId::new(SENSOR, 0x23);
    /// Set Sensor Hysteresis.
    pub const SET_SENSOR_HYSTERESIS: CommandId = CommandId::new(SENSOR, 0x24);
    /// Get Sensor Hysteresis.
    pub const GET_SENSOR_HYSTERESIS: CommandId = CommandId::new(SENSOR, 0x25);
    /// Set Sensor Threshold.
    pub const SET_SENSOR_THRESHOLD: CommandId = CommandId::new(SENSOR, 0x26);
    /// Get Sensor Threshold.
    pub const GET_SENSOR_THRESHOLD: CommandId = CommandId::new(SENSOR, 0x27);
    /// Set Sensor Event Enable.
    pub const SET_SENSOR_EVENT_ENABLE: CommandId = CommandId::new(SENSOR, 0x28);
    /// Get Sensor Event Enable.
    pub const GET_SENSOR_EVENT_ENABLE: CommandId = CommandId::new(SENSOR, 0x29);
    /// Re-arm Sensor Events.
    pub const RE_ARM_SENSOR_EVENTS: CommandId = CommandId::new(SENSOR, 0x2A);
    /// Get Sensor Event Status.
    pub const GET_SENSOR_EVENT_STATUS: CommandId = CommandId::new(SENSOR, 0x2B);
    /// Get Sensor Reading.
    pub const GET_SENSOR_READING: CommandId = CommandId::new(SENSOR, 0x2D);
    /// Set Sensor Type.
    pub const SET_SENSOR_TYPE: CommandId = CommandId::new(SENSOR, 0x2E);
    /// Get Sensor Type.
    pub const GET_SENSOR_TYPE: CommandId = CommandId::new(SENSOR, 0x2F);
    /// Set Sensor Reading And Event Status.
    pub const SET_SENSOR_READING_AND_EVENT_STATUS: CommandId = CommandId::new(SENSOR, 0x30);
    /// Get FRU Inventory Area Info.
    pub const GET_FRU_INVENTORY_AREA_INFO: CommandId = CommandId::new(STORAGE, 0x10);
    /// Read FRU Data.
    pub const READ_FRU_DATA: CommandId = CommandId::new(STORAGE, 0x11);
    /// Write FRU Data.
    pub const WRITE_FRU_DATA: CommandId = CommandId::new(STORAGE, 0x12);
    /// Get SDR Repository Info.
    pub const GET_SDR_REPOSITORY_INFO: CommandId = CommandId::new(STORAGE, 0x20);
    /// Get SDR Repository Allocation Info.
    pub const GET_SDR_REPOSITORY_ALLOCATION_INFO: CommandId = CommandId::new(STORAGE, 0x21);
    /// Reserve SDR Repository.
    pub const RESERVE_SDR_REPOSITORY: CommandId = CommandId::new(STORAGE, 0x22);
    /// Get SDR.
    pub const GET_SDR: CommandId = CommandId::new(STORAGE, 0x23);
    /// Get SEL Info.
    pub const GET_SEL_INFO: CommandId = CommandId::new(STORAGE, 0x40);
    /// Get SEL Allocation Info.
    pub const GET_SEL_ALLOCATION_INFO: CommandId = CommandId::new(STORAGE, 0x41);
    /// Reserve SEL.
    pub const RESERVE_SEL: CommandId = CommandId::new(STORAGE, 0x42);
    /// Get SEL Entry.
    pub const GET_SEL_ENTRY: CommandId = CommandId::new(STORAGE, 0x43);
    /// Add SEL Entry.
    pub const ADD_SEL_ENTRY: CommandId = CommandId::new(STORAGE, 0x44);
    /// Delete SEL Entry.
    pub const DELETE_SEL_ENTRY: CommandId = CommandId::new(STORAGE, 0x46);
    /// Clear SEL.
    pub const CLEAR_SEL: CommandId = CommandId::new(STORAGE, 0x47);
    /// Get SEL Time.
    pub const GET_SEL_TIME: CommandId = CommandId::new(STORAGE, 0x48);
    /// Set SEL Time.
    pub const SET_SEL_TIME: CommandId = CommandId::new(STORAGE, 0x49);
    /// Set LAN Configuration Parameters.
    pub const SET_LAN_CONFIGURATION_PARAMETERS: CommandId = CommandId::new(TRANSPORT, 0x01);
    /// Get LAN Configuration Parameters.
    pub const GET_LAN_CONFIGURATION_PARAMETERS: CommandId = CommandId::new(TRANSPORT, 0x02);
    /// Set Serial/Modem Configuration.
    pub const SET_SERIAL_MODEM_CONFIGURATION: CommandId = CommandId::new(TRANSPORT, 0x10);
    /// Set SOL Configuration Parameters.
    pub const SET_SOL_CONFIGURATION_PARAMETERS: CommandId = CommandId::new(TRANSPORT, 0x21);
    /// Get SOL Configuration Parameters.
    pub const GET_SOL_CONFIGURATION_PARAMETERS: CommandId = CommandId::new(TRANSPORT, 0x22);
}

/// The registry. Anything not listed needs ADMINISTRATOR (as OpenIPMI does
/// for unknown and OEM commands), is named `raw.*` and carries no known
/// secret.
#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    // Application (IPMI v2.0 §20-22).
    c(id::GET_DEVICE_ID, "Get Device ID", fixed_r("mc.info"), Some(User)),
    c(id::COLD_RESET, "Cold Reset", fixed_w("mc.reset.cold"), Some(Administrator)),
    c(id::WARM_RESET, "Warm Reset", fixed_w("mc.reset.warm"), Some(Administrator)),
    c(id::GET_SELF_TEST_RESULTS, "Get Self Test Results", fixed_r("mc.selftest"), Some(User)),
    c(id::GET_DEVICE_GUID, "Get Device GUID", fixed_r("mc.info"), Some(User)),
    c(id::RESET_WATCHDOG_TIMER, "Reset Watchdog Timer", Naming::Unnamed, Some(Operator)),
    c(id::SET_WATCHDOG_TIMER, "Set Watchdog Timer", Naming::Unnamed, Some(Operator)),
    c(id::GET_WATCHDOG_TIMER, "Get Watchdog Timer", Naming::Unnamed, Some(User)),
    secret(c(id::SEND_MESSAGE, "Send Message", Naming::Bridged, Some(User)), Secret::CarriedIpmb),
    c(id::GET_SYSTEM_GUID, "Get System GUID", fixed_r("mc.info"), None),
    c(id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES, "Get Channel Authentication Capabilities", Naming::Session, None),
    c(id::GET_SESSION_CHALLENGE, "Get Session Challenge", Naming::Session, Some(Administrator)),
    c(id::ACTIVATE_SESSION, "Activate Session", Naming::Session, Some(Administrator)),
    c(id::SET_SESSION_PRIVILEGE_LEVEL, "Set Session Privilege Level", Naming::Session, Some(User)),
    c(id::CLOSE_SESSION, "Close Session", Naming::Session, Some(Callback)),
    c(id::GET_SESSION_INFO, "Get Session Info", fixed_r("session.info"), Some(User)),
    c(id::SET_CHANNEL_ACCESS, "Set Channel Access", fixed_w("channel.write"), Some(Administrator)),
    c(id::GET_CHANNEL_ACCESS, "Get Channel Access", fixed_r("channel.read"), Some(User)),
    c(id::GET_CHANNEL_INFO, "Get Channel Info", fixed_r("channel.read"), Some(User)),
    c(id::SET_USER_ACCESS, "Set User Access", fixed_w("user.write"), Some(Administrator)),
    c(id::GET_USER_ACCESS, "Get User Access", fixed_r("user.read"), Some(Operator)),
    c(id::SET_USER_NAME, "Set User Name", fixed_w("user.write"), Some(Administrator)),
    c(id::GET_USER_NAME, "Get User Name", fixed_r("user.read"), Some(Operator)),
    // The password follows the user id and the operation.
    secret(c(id::SET_USER_PASSWORD, "Set User Password", fixed_w("user.write"), Some(Administrator)), Secret::From(2)),
    c(id::ACTIVATE_PAYLOAD, "Activate Payload", Naming::ActivatePayload, Some(User)),
    c(id::DEACTIVATE_PAYLOAD, "Deactivate Payload", Naming::Unnamed, Some(User)),
    c(id::GET_PAYLOAD_ACTIVATION_STATUS, "Get Payload Activation Status", Naming::Unnamed, Some(User)),
    c(id::GET_PAYLOAD_INSTANCE_INFO, "Get Payload Instance Info", Naming::Unnamed, Some(User)),
    c(id::GET_CHANNEL_PAYLOAD_SUPPORT, "Get Channel Payload Support", Naming::Unnamed, Some(User)),
    secret(c(id::MASTER_WRITE_READ, "Master Write-Read", fixed_w("i2c.write_read"), Some(Operator)), Secret::CarriedI2c),
    c(id::GET_CHANNEL_CIPHER_SUITES, "Get Channel Cipher Suites", fixed_r("channel.read"), None),
    // The key follows the channel, the operation and the key id.
    secret(c(id::SET_CHANNEL_SECURITY_KEYS, "Set Channel Security Keys", Naming::Unnamed, Some(Administrator)), Secret::From(3)),
    // System name, OS name and version, firmware version, BMC URL (§22.14a):
    // what identifies the machine, read like the device ID.
    c(id::SET_SYSTEM_INFO_PARAMETERS, "Set System Info Parameters", fixed_w("mc.sysinfo.write"), Some(Administrator)),
    c(id::GET_SYSTEM_INFO_PARAMETERS, "Get System Info Parameters", fixed_r("mc.info"), Some(User)),
    // Chassis (§28).
    c(id::GET_CHASSIS_CAPABILITIES, "Get Chassis Capabilities", Naming::Unnamed, Some(User)),
    c(id::GET_CHASSIS_STATUS, "Get Chassis Status", fixed_r("chassis.status"), Some(User)),
    c(id::CHASSIS_CONTROL, "Chassis Control", Naming::PowerAction, Some(Operator)),
    c(id::CHASSIS_IDENTIFY, "Chassis Identify", fixed_w("chassis.identify"), Some(Operator)),
    c(id::SET_POWER_RESTORE_POLICY, "Set Power Restore Policy", Naming::Unnamed, Some(Operator)),
    c(id::GET_SYSTEM_RESTART_CAUSE, "Get System Restart Cause", Naming::Unnamed, Some(User)),
    c(id::SET_SYSTEM_BOOT_OPTIONS, "Set System Boot Options", Naming::SetBootOptions, Some(Operator)),
    c(id::GET_SYSTEM_BOOT_OPTIONS, "Get System Boot Options", fixed_r("chassis.bootdev.get"), Some(Operator)),
    c(id::GET_POH_COUNTER, "Get POH Counter", Naming::Unnamed, Some(User)),
    // Sensor/Event (§29, §35-36).
    c(id::GET_DEVICE_SDR_INFO, "Get Device SDR Info", fixed_r("sdr.read"), Some(User)),
    c(id::GET_DEVICE_SDR, "Get Device SDR", fixed_r("sdr.read"), Some(User)),
    c(id::RESERVE_DEVICE_SDR_REPOSITORY, "Reserve Device SDR Repository", fixed_r("sdr.read"), Some(User)),
    c(id::GET_SENSOR_READING_FACTORS, "Get Sensor Reading Factors", fixed_r("sdr.read"), Some(User)),
    c(id::SET_SENSOR_HYSTERESIS, "Set Sensor Hysteresis", fixed_w("sensor.write"), Some(Operator)),
    c(id::GET_SENSOR_HYSTERESIS, "Get Sensor Hysteresis", fixed_r("sensor.read"), Some(User)),
    c(id::SET_SENSOR_THRESHOLD, "Set Sensor Threshold", fixed_w("sensor.write"), Some(Operator)),
    c(id::GET_SENSOR_THRESHOLD, "Get Sensor Threshold", fixed_r("sensor.read"), Some(User)),
    c(id::SET_SENSOR_EVENT_ENABLE, "Set Sensor Event Enable", fixed_w("sensor.write"), Some(Operator)),
    c(id::GET_SENSOR_EVENT_ENABLE, "Get Sensor Event Enable", fixed_r("sensor.read"), Some(User)),
    c(id::RE_ARM_SENSOR_EVENTS, "Re-arm Sensor Events", fixed_w("sensor.write"), Some(Operator)),
    c(id::GET_SENSOR_EVENT_STATUS, "Get Sensor Event Status", fixed_r("sensor.read"), Some(User)),
    c(id::GET_SENSOR_READING, "Get Sensor Reading", fixed_r("sensor.read"), Some(User)),
    c(id::SET_SENSOR_TYPE, "Set Sensor Type", fixed_w("sensor.write"), Some(Operator)),
    c(id::GET_SENSOR_TYPE, "Get Sensor Type", fixed_r("sensor.read"), Some(User)),
    c(id::SET_SENSOR_READING_AND_EVENT_STATUS, "Set Sensor Reading And Event Status", fixed_w("sensor.write"), Some(Administrator)),
    // Storage (§31-34).
    c(id::GET_FRU_INVENTORY_AREA_INFO, "Get FRU Inventory Area Info", fixed_r("fru.read"), Some(User)),
    c(id::READ_FRU_DATA, "Read FRU Data", fixed_r("fru.read"), Some(User)),
    c(id::WRITE_FRU_DATA, "Write FRU Data", fixed_w("fru.write"), Some(Operator)),
    c(id::GET_SDR_REPOSITORY_INFO, "Get SDR Repository Info", fixed_r("sdr.read"), Some(User)),
    c(id::GET_SDR_REPOSITORY_ALLOCATION_INFO, "Get SDR Repository Allocation Info", fixed_r("sdr.read"), Some(User)),
    c(id::RESERVE_SDR_REPOSITORY, "Reserve SDR Repository", fixed_r("sdr.read"), Some(User)),
    c(id::GET_SDR, "Get SDR", fixed_r("sdr.read"), Some(User)),
    c(id::GET_SEL_INFO, "Get SEL Info", fixed_r("sel.read"), Some(User)),
    c(id::GET_SEL_ALLOCATION_INFO, "Get SEL Allocation Info", Naming::Unnamed, Some(User)),
    c(id::RESERVE_SEL, "Reserve SEL", fixed_r("sel.read"), Some(User)),
    c(id::GET_SEL_ENTRY, "Get SEL Entry", fixed_r("sel.read"), Some(User)),
    c(id::ADD_SEL_ENTRY, "Add SEL Entry", Naming::Unnamed, Some(Operator)),
    c(id::DELETE_SEL_ENTRY, "Delete SEL Entry", Naming::Unnamed, Some(Operator)),
    c(id::CLEAR_SEL, "Clear SEL", fixed_w("sel.clear"), Some(Operator)),
    c(id::GET_SEL_TIME, "Get SEL Time", fixed_r("sel.read"), Some(User)),
    c(id::SET_SEL_TIME, "Set SEL Time", Naming::Unnamed, Some(Operator)),
    // Transport (§23, §25, §26). LAN parameter 16 is the SNMP community
    // string; serial/modem parameters 15, 26 and 42 are the community
    // string, TAP passwords and PPP account passwords.
    secret(
        c(id::SET_LAN_CONFIGURATION_PARAMETERS, "Set LAN Configuration Parameters", fixed_w("lan.write"), Some(Administrator)),
        Secret::Params { at: 1, params: &[0x10], from: 2 },
    ),
    c(id::GET_LAN_CONFIGURATION_PARAMETERS, "Get LAN Configuration Parameters", fixed_r("lan.read"), Some(Operator)),
    secret(
        c(id::SET_SERIAL_MODEM_CONFIGURATION, "Set Serial/Modem Configuration", Naming::Unnamed, Some(Administrator)),
        Secret::Params { at: 1, params: &[0x0F, 0x1A, 0x2A], from: 2 },
    ),
    c(id::SET_SOL_CONFIGURATION_PARAMETERS, "Set SOL Configuration Parameters", fixed_w("sol.config.write"), Some(Administrator)),
    c(id::GET_SOL_CONFIGURATION_PARAMETERS, "Get SOL Configuration Parameters", fixed_r("sol.config.read"), Some(User)),
];

/// A group extension command (netFn 0x2C, IPMI v2.0 §5.1), whose meaning
/// is set by the body that defines it: data byte 0 is that body's code
/// (0x00 PICMG, 0x03 VITA, 0xDC DCMI). Known by (cmd, body) and only with
/// exactly the request data its spec gives; anything else stays raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionSpec {
    /// Command number.
    pub cmd: u8,
    /// Defining body code (data byte 0).
    pub body: u8,
    /// The defining spec's name for it.
    pub title: &'static str,
    /// Request data length, body code included.
    pub data_len: usize,
    /// Its policy name; every listed command is a read.
    pub name: &'static str,
    /// The lowest session privilege that may run it.
    pub privilege: Privilege,
}

/// The group extension commands the registry names: the capability reads
/// that tools probe at start-up (ipmitool's PICMG, HPM.2 and VITA probes,
/// freeipmi's and ipmitool's DCMI discovery). They say what the controller
/// supports and change nothing, so they are `mc.info`; every other group
/// extension command (DCMI power limits, PICMG FRU control, ...) is raw.
#[rustfmt::skip]
pub const GROUP_EXTENSION_READS: &[ExtensionSpec] = &[
    ext(0x00, 0x00, "Get PICMG Properties", 1, "mc.info"),
    // HPM.2 Get LAN Attach Capabilities: the body, then the HPM.x identifier.
    ext(0x3E, 0x00, "Get HPM.x Capabilities", 2, "mc.info"),
    ext(0x00, 0x03, "Get VSO Capabilities", 1, "mc.info"),
    // The body, then the capability parameter selector.
    ext(0x01, 0xDC, "Get DCMI Capabilities Info", 2, "mc.info"),
];

/// The named group extension command `cmd` with request `data`, if it is one.
pub fn group_extension(cmd: u8, data: &[u8]) -> Option<&'static ExtensionSpec> {
    let body = *data.first()?;
    GROUP_EXTENSION_READS
        .iter()
        .find(|e| e.cmd == cmd && e.body == body && e.data_len == data.len())
}

/// The registry entry for `(netfn, cmd)`.
pub fn lookup(netfn: NetFn, cmd: u8) -> Option<&'static CommandSpec> {
    // A linear scan of ~80 entries is a few dozen nanoseconds, far below a
    // request's cost; the table stays in spec order for readers.
    COMMANDS.iter().find(|s| s.id.is(netfn, cmd))
}

/// Offset from which a request's data is secret (everything after it is
/// redacted in the audit trail), or `None` when it carries no secret. A
/// bridged message is looked into: its carried command's secret and the
/// checksum that covers it are secret.
pub fn secret_from(netfn: NetFn, cmd: u8, data: &[u8]) -> Option<usize> {
    secret_from_depth(netfn, cmd, data, 0)
}

fn secret_from_depth(netfn: NetFn, cmd: u8, data: &[u8], depth: usize) -> Option<usize> {
    let from = match lookup(netfn, cmd)?.secret {
        Secret::None => return None,
        Secret::From(n) => n,
        Secret::Params { at, params, from } => match data.get(at) {
            Some(p) if params.contains(&(p & 0x7F)) => from,
            _ => return None,
        },
        Secret::CarriedIpmb => {
            // Bytes that do not decode (or nest too deep) may hold anything
            // and policy refuses them: all of the carried message is secret.
            let Some(inner) = carried(data.get(1..).unwrap_or_default(), depth) else {
                return (data.len() > 1).then_some(1);
            };
            1 + IPMB_DATA_OFFSET
                + secret_from_depth(inner.netfn, inner.cmd, &inner.data, depth + 1)?
        }
        Secret::CarriedI2c => {
            // On the bus the slave address is the IPMB rsSA; the written
            // bytes are the rest of the frame. Written bytes that are no
            // IPMB request (an EEPROM, a bad checksum) may hold anything:
            // all of them are secret.
            const WRITTEN: usize = 3;
            let (&addr, rest) = data.get(1..)?.split_first()?;
            let mut frame = vec![addr & 0xFE];
            frame.extend_from_slice(rest.get(1..).unwrap_or_default());
            let Some(inner) = carried(&frame, depth) else {
                return (data.len() > WRITTEN).then_some(WRITTEN);
            };
            let n = secret_from_depth(inner.netfn, inner.cmd, &inner.data, depth + 1)?;
            2 + IPMB_DATA_OFFSET + n
        }
    };
    (data.len() > from).then_some(from)
}

/// The IPMB request in `bytes`, if they are one and nesting allows.
fn carried(bytes: &[u8], depth: usize) -> Option<Request> {
    if depth >= MAX_BRIDGE_DEPTH {
        return None;
    }
    Request::parse(bytes).ok()
}

/// How deep Send Message may nest (ipmitool's double bridging is two).
pub const MAX_BRIDGE_DEPTH: usize = 2;
/// Where an IPMB request's data starts (rsSA, netFn/LUN, checksum, rqSA,
/// rqSeq/LUN, cmd).
pub const IPMB_DATA_OFFSET: usize = 6;

// === table helpers ===

use Privilege::{Administrator, Callback, Operator, User};
const APP: NetFn = NetFn::APP;
const CHASSIS: NetFn = NetFn::CHASSIS;
const SENSOR: NetFn = NetFn::SENSOR_EVENT;
const STORAGE: NetFn = NetFn::STORAGE;
const TRANSPORT: NetFn = NetFn::TRANSPORT;

const fn c(
    id: CommandId,
    title: &'static str,
    naming: Naming,
    privilege: Option<Privilege>,
) -> CommandSpec {
    CommandSpec {
        id,
        title,
        naming,
        privilege,
        secret: Secret::None,
    }
}

const fn ext(
    cmd: u8,
    body: u8,
    title: &'static str,
    data_len: usize,
    name: &'static str,
) -> ExtensionSpec {
    ExtensionSpec {
        cmd,
        body,
        title,
        data_len,
        name,
        privilege: User,
    }
}

const fn secret(mut spec: CommandSpec, secret: Secret) -> CommandSpec {
    spec.secret = secret;
    spec
}

const fn fixed_r(name: &'static str) -> Naming {
    Naming::Fixed(name, Effect::Read)
}

const fn fixed_w(name: &'static str) -> Naming {
    Naming::Fixed(name, Effect::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_is_listed_once() {
        for (i, a) in COMMANDS.iter().enumerate() {
            for b in &COMMANDS[i + 1..] {
                assert!(
                    a.id != b.id,
                    "{:#04x}/{:#04x} listed twice",
                    a.id.netfn.0,
                    a.id.cmd
                );
            }
            assert!(!a.id.netfn.is_response(), "{}", a.title);
        }
    }

    #[test]
    fn secrets_are_found_directly_and_inside_bridged_messages() {
        let pw = b"hunter2-hunter2-hun2";
        let mut set_pw = vec![0x03, 0x02];
        set_pw.extend_from_slice(pw);
        assert_eq!(secret_from(APP, 0x47, &set_pw), Some(2));
        assert_eq!(secret_from(APP, 0x47, &[0x03, 0x02]), None, "nothing after");
        assert_eq!(secret_from(APP, 0x01, &[1, 2, 3]), None);
        assert_eq!(secret_from(TRANSPORT, 0x01, &[1, 0x10, b'p']), Some(2));
        assert_eq!(secret_from(TRANSPORT, 0x10, &[1, 0x1A, 1, b'p']), Some(2));
        assert_eq!(secret_from(TRANSPORT, 0x10, &[1, 0x2A, 1, b'p']), Some(2));
        assert_eq!(secret_from(TRANSPORT, 0x10, &[1, 0x07, 1, 2]), None);
        // Master Write-Read: bytes written to an EEPROM are all secret; so
        // is what does not decode; an IPMB read without secrets is not.
        assert_eq!(secret_from(APP, 0x52, &[0, 0xA0, 0, b'p', b'w']), Some(3));
        assert_eq!(secret_from(APP, 0x52, &[0, 0x20, 0]), None);
        let mut get_id = Vec::new();
        Request::to_bmc(APP, 0x01, 1, vec![]).emit(&mut get_id);
        let mut mwr = vec![0, 0x20, 0];
        mwr.extend_from_slice(&get_id[1..]);
        assert_eq!(secret_from(APP, 0x52, &mwr), None);
        assert_eq!(secret_from(TRANSPORT, 0x01, &[1, 0x03, 10, 0, 0, 1]), None);
        // Send Message (channel 0) carrying Set User Password to the BMC.
        let mut ipmb = Vec::new();
        Request::to_bmc(APP, 0x47, 1, set_pw.clone()).emit(&mut ipmb);
        let mut send = vec![0x00];
        send.extend_from_slice(&ipmb);
        assert_eq!(secret_from(APP, 0x34, &send), Some(1 + 6 + 2));
        // ... and nested once more.
        let mut outer = Vec::new();
        Request::to_bmc(APP, 0x34, 2, send.clone()).emit(&mut outer);
        let mut send2 = vec![0x07];
        send2.extend_from_slice(&outer);
        assert_eq!(secret_from(APP, 0x34, &send2), Some(1 + 6 + 1 + 6 + 2));
    }
}
