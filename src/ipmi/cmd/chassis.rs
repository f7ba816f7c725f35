//! Chassis netFn (0x00) commands (reference §6.2): status, power control and
//! boot flags (System Boot Options parameter 5).

use super::registry::id;
use super::{need, Command, RawRequest};
use crate::ipmi::wire::WireError;

/// Boot options parameter: boot flags.
pub const BOOT_PARAM_FLAGS: u8 = 5;

/// Get Chassis Status (Chassis 0x01).
#[derive(Debug, Clone, Copy, Default)]
pub struct GetChassisStatus;

/// Power restore policy (byte 0 bits 6:5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePolicy {
    /// Stay off after AC returns.
    AlwaysOff,
    /// Restore the previous state.
    Previous,
    /// Always power up.
    AlwaysOn,
    /// Unknown.
    Unknown,
}

/// Decoded Get Chassis Status response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChassisStatus {
    /// System power is on.
    pub power_on: bool,
    /// Power overload.
    pub power_overload: bool,
    /// Power interlock active.
    pub power_interlock: bool,
    /// Main power fault.
    pub main_power_fault: bool,
    /// Power control fault.
    pub power_control_fault: bool,
    /// Power restore policy.
    pub restore_policy: RestorePolicy,
    /// Last power event bits (AC failed, overload, interlock, fault, on via IPMI).
    pub last_power_event: u8,
    /// Chassis intrusion active.
    pub chassis_intrusion: bool,
    /// Front-panel lockout active.
    pub front_panel_lockout: bool,
    /// Drive fault.
    pub drive_fault: bool,
    /// Cooling/fan fault.
    pub cooling_fault: bool,
    /// Identify state when reported: 0 off, 1 timed on, 2 indefinite on.
    pub identify_state: Option<u8>,
}

impl ChassisStatus {
    /// Text of the last power event, as ipmitool prints it.
    pub fn last_power_event_text(&self) -> &'static str {
        let e = self.last_power_event;
        if e & 0x10 != 0 {
            "command"
        } else if e & 0x08 != 0 {
            "power fault"
        } else if e & 0x04 != 0 {
            "interlock"
        } else if e & 0x02 != 0 {
            "overload"
        } else if e & 0x01 != 0 {
            "ac-failed"
        } else {
            ""
        }
    }
}

impl Command for GetChassisStatus {
    type Response = ChassisStatus;
    fn request(&self) -> RawRequest {
        id::GET_CHASSIS_STATUS.request(vec![])
    }
    fn parse_response(&self, d: &[u8]) -> Result<ChassisStatus, WireError> {
        need(d, 3, "Get Chassis Status response")?;
        Ok(ChassisStatus {
            power_on: d[0] & 0x01 != 0,
            power_overload: d[0] & 0x02 != 0,
            power_interlock: d[0] & 0x04 != 0,
            main_power_fault: d[0] & 0x08 != 0,
            power_control_fault: d[0] & 0x10 != 0,
            restore_policy: match (d[0] >> 5) & 3 {
                0 => RestorePolicy::AlwaysOff,
                1 => RestorePolicy::Previous,
                2 => RestorePolicy::AlwaysOn,
                _ => RestorePolicy::Unknown,
            },
            last_power_event: d[1] & 0x1F,
            chassis_intrusion: d[2] & 0x01 != 0,
            front_panel_lockout: d[2] & 0x02 != 0,
            drive_fault: d[2] & 0x04 != 0,
            cooling_fault: d[2] & 0x08 != 0,
            identify_state: if d[2] & 0x40 != 0 {
                Some((d[2] >> 4) & 3)
            } else {
                None
            },
        })
    }
}

/// Chassis Control actions (request byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Hard power off.
    Off = 0,
    /// Power on.
    On = 1,
    /// Power cycle.
    Cycle = 2,
    /// Hard reset.
    Reset = 3,
    /// Pulse diagnostic interrupt (NMI).
    Diag = 4,
    /// Soft (ACPI) shutdown.
    Soft = 5,
}

impl PowerAction {
    /// Parses the names the CLI and API use.
    pub fn from_name(s: &str) -> Option<PowerAction> {
        Some(match s {
            "off" => PowerAction::Off,
            "on" => PowerAction::On,
            "cycle" => PowerAction::Cycle,
            "reset" => PowerAction::Reset,
            "diag" => PowerAction::Diag,
            "soft" => PowerAction::Soft,
            _ => return None,
        })
    }

    /// The name used in policy (`chassis.power.NAME`) and messages.
    pub fn name(self) -> &'static str {
        match self {
            PowerAction::Off => "off",
            PowerAction::On => "on",
            PowerAction::Cycle => "cycle",
            PowerAction::Reset => "reset",
            PowerAction::Diag => "diag",
            PowerAction::Soft => "soft",
        }
    }
}

/// Chassis Control (Chassis 0x02).
#[derive(Debug, Clone, Copy)]
pub struct ChassisControl(pub PowerAction);

impl Command for ChassisControl {
    type Response = ();
    fn request(&self) -> RawRequest {
        id::CHASSIS_CONTROL.request(vec![self.0 as u8])
    }
    fn parse_response(&self, _: &[u8]) -> Result<(), WireError> {
        Ok(())
    }
}

/// Boot device selector (parameter 5, data byte 2 bits 5:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootDevice {
    /// No override.
    None,
    /// PXE.
    Pxe,
    /// Default hard disk.
    Disk,
    /// Hard disk, safe mode.
    Safe,
    /// Diagnostic partition.
    Diag,
    /// CD/DVD.
    Cdrom,
    /// BIOS setup.
    Bios,
    /// Remote floppy.
    Floppy,
    /// Any other selector value.
    Other(u8),
}

impl BootDevice {
    /// Parses the names the CLI and API use.
    pub fn from_name(s: &str) -> Option<BootDevice> {
        Some(match s {
            "none" => BootDevice::None,
            "pxe" => BootDevice::Pxe,
            "disk" => BootDevice::Disk,
            "safe" => BootDevice::Safe,
            "diag" => BootDevice::Diag,
            "cdrom" => BootDevice::Cdrom,
            "bios" => BootDevice::Bios,
            "floppy" => BootDevice::Floppy,
            _ => return None,
        })
    }

    /// The 4-bit selector.
    pub fn selector(self) -> u8 {
        match self {
            BootDevice::None => 0,
            BootDevice::Pxe => 1,
            BootDevice::Disk => 2,
            BootDevice::Safe => 3,
            BootDevice::Diag => 4,
            BootDevice::Cdrom => 5,
            BootDevice::Bios => 6,
            BootDevice::Floppy => 0xF,
            BootDevice::Other(v) => v & 0x0F,
        }
    }

    /// From the 4-bit selector.
    pub fn from_selector(v: u8) -> BootDevice {
        match v & 0x0F {
            0 => BootDevice::None,
            1 => BootDevice::Pxe,
            2 => BootDevice::Disk,
            3 => BootDevice::Safe,
            4 => BootDevice::Diag,
            5 => BootDevice::Cdrom,
            6 => BootDevice::Bios,
            0xF => BootDevice::Floppy,
            other => BootDevice::Other(other),
        }
    }

    /// Human name.
    pub fn name(self) -> String {
        match self {
            BootDevice::None => "none".into(),
            BootDevice::Pxe => "pxe".into(),
            BootDevice::Disk => "disk".into(),
            BootDevice::Safe => "safe".into(),
            BootDevice::Diag => "diag".into(),
            BootDevice::Cdrom => "cdrom".into(),
            BootDevice::Bios => "bios".into(),
            BootDevice::Floppy => "floppy".into(),
            BootDevice::Other(v) => format!("selector {v:#x}"),
        }
    }
}

/// Boot flags (System Boot Options parameter 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BootFlags {
    /// The flags are valid (take effect).
    pub valid: bool,
    /// Persistent rather than next boot only.
    pub persistent: bool,
    /// EFI rather than legacy boot.
    pub efi: bool,
    /// Boot device.
    pub device: BootDevice,
}

/// Set System Boot Options parameter 5 (Chassis 0x08).
#[derive(Debug, Clone, Copy)]
pub struct SetBootFlags(pub BootFlags);

impl Command for SetBootFlags {
    type Response = ();
    fn request(&self) -> RawRequest {
        let f = self.0;
        let byte1 = if f.valid { 0x80 } else { 0 }
            | if f.persistent { 0x40 } else { 0 }
            | if f.efi { 0x20 } else { 0 };
        id::SET_SYSTEM_BOOT_OPTIONS.request(vec![
            BOOT_PARAM_FLAGS,
            byte1,
            f.device.selector() << 2,
            0,
            0,
            0,
        ])
    }
    fn parse_response(&self, _: &[u8]) -> Result<(), WireError> {
        Ok(())
    }
}

/// Get System Boot Options parameter 5 (Chassis 0x09).
#[derive(Debug, Clone, Copy, Default)]
pub struct GetBootFlags;

impl Command for GetBootFlags {
    type Response = BootFlags;
    fn request(&self) -> RawRequest {
        id::GET_SYSTEM_BOOT_OPTIONS.request(vec![BOOT_PARAM_FLAGS, 0, 0])
    }
    fn parse_response(&self, d: &[u8]) -> Result<BootFlags, WireError> {
        need(d, 4, "Get System Boot Options response")?;
        if d[1] & 0x7F != BOOT_PARAM_FLAGS {
            return Err(WireError::BadField {
                field: "boot options parameter selector",
                value: d[1].into(),
            });
        }
        Ok(BootFlags {
            valid: d[2] & 0x80 != 0,
            persistent: d[2] & 0x40 != 0,
            efi: d[2] & 0x20 != 0,
            device: BootDevice::from_selector(d[3] >> 2),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_flag_requests_match_the_reference() {
        let pxe = SetBootFlags(BootFlags {
            valid: true,
            persistent: false,
            efi: false,
            device: BootDevice::Pxe,
        });
        assert_eq!(pxe.request().data, [0x05, 0x80, 0x04, 0, 0, 0]);
        let disk = SetBootFlags(BootFlags {
            valid: true,
            persistent: true,
            efi: true,
            device: BootDevice::Disk,
        });
        assert_eq!(disk.request().data, [0x05, 0xE0, 0x08, 0, 0, 0]);
        let bios = SetBootFlags(BootFlags {
            valid: true,
            persistent: false,
            efi: false,
            device: BootDevice::Bios,
        });
        assert_eq!(bios.request().data, [0x05, 0x80, 0x18, 0, 0, 0]);
    }

    #[test]
    fn boot_flags_and_status_decode() {
        let f = GetBootFlags
            .parse_response(&[0x01, 0x05, 0xE0, 0x14, 0, 0, 0])
            .unwrap();
        assert!(f.valid && f.persistent && f.efi);
        assert_eq!(f.device, BootDevice::Cdrom);
        assert!(GetBootFlags.parse_response(&[0x01, 0x04, 0, 0]).is_err());
        assert!(GetBootFlags.parse_response(&[0x01, 0x05, 0]).is_err());

        let s = GetChassisStatus
            .parse_response(&[0x21, 0x10, 0x40])
            .unwrap();
        assert!(s.power_on);
        assert_eq!(s.restore_policy, RestorePolicy::Previous);
        assert_eq!(s.last_power_event_text(), "command");
        assert_eq!(s.identify_state, Some(0));
        assert!(GetChassisStatus.parse_response(&[0x21, 0x10]).is_err());
    }

    #[test]
    fn selectors_round_trip() {
        for v in 0..16u8 {
            assert_eq!(BootDevice::from_selector(v).selector(), v);
        }
        for n in [
            "none", "pxe", "disk", "safe", "diag", "cdrom", "bios", "floppy",
        ] {
            assert_eq!(BootDevice::from_name(n).unwrap().name(), n);
        }
        for n in ["off", "on", "cycle", "reset", "diag", "soft"] {
            assert_eq!(PowerAction::from_name(n).unwrap().name(), n);
        }
    }
}
