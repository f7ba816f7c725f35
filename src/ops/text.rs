//! Text output shaped like ipmitool's, so that people and scripts that know
//! ipmitool can read it. JSON output is built beside it in `ops`.

use std::fmt::Write;

use crate::bmc::reads::SensorValue;
use crate::ipmi::cmd::app::{format_guid, DeviceId};
use crate::ipmi::cmd::chassis::{BootFlags, ChassisStatus, PowerAction, RestorePolicy};
use crate::ipmi::fru::{FruInventory, FRU_EPOCH_UNIX};
use crate::ipmi::sel::{format_timestamp, sensor_type_name, SelRecord};

/// `Chassis Power is on` / `off`.
pub fn power_status(on: bool) -> String {
    format!("Chassis Power is {}", if on { "on" } else { "off" })
}

/// What ipmitool prints after a Chassis Control.
pub fn power_action(a: PowerAction) -> String {
    let what = match a {
        PowerAction::Off => "Down/Off",
        PowerAction::On => "Up/On",
        PowerAction::Cycle => "Cycle",
        PowerAction::Reset => "Reset",
        PowerAction::Diag => "Diag",
        PowerAction::Soft => "Soft",
    };
    format!("Chassis Power Control: {what}")
}

/// `ipmitool chassis status`.
pub fn chassis_status(s: &ChassisStatus) -> String {
    let active = |b: bool| if b { "active" } else { "inactive" };
    let policy = match s.restore_policy {
        RestorePolicy::AlwaysOff => "always-off",
        RestorePolicy::Previous => "previous",
        RestorePolicy::AlwaysOn => "always-on",
        RestorePolicy::Unknown => "unknown",
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "System Power         : {}",
        if s.power_on { "on" } else { "off" }
    );
    let _ = writeln!(o, "Power Overload       : {}", s.power_overload);
    let _ = writeln!(o, "Power Interlock      : {}", active(s.power_interlock));
    let _ = writeln!(o, "Main Power Fault     : {}", s.main_power_fault);
    let _ = writeln!(o, "Power Control Fault  : {}", s.power_control_fault);
    let _ = writeln!(o, "Power Restore Policy : {policy}");
    let _ = writeln!(o, "Last Power Event     : {}", s.last_power_event_text());
    let _ = writeln!(o, "Chassis Intrusion    : {}", active(s.chassis_intrusion));
    let _ = writeln!(
        o,
        "Front-Panel Lockout  : {}",
        active(s.front_panel_lockout)
    );
    let _ = writeln!(o, "Drive Fault          : {}", s.drive_fault);
    let _ = write!(o, "Cooling/Fan Fault    : {}", s.cooling_fault);
    o
}

/// `boot get`: the device, its scope and firmware kind.
pub fn boot_flags(f: &BootFlags) -> String {
    format!(
        "Boot device: {} ({}, {}){}",
        f.device.name(),
        if f.persistent {
            "persistent"
        } else {
            "next boot only"
        },
        if f.efi { "EFI" } else { "legacy" },
        if f.valid {
            ""
        } else {
            "; boot flags not marked valid"
        }
    )
}

/// `ipmitool mc info`, plus the system GUID when known.
pub fn mc_info(d: &DeviceId, guid: Option<&[u8; 16]>) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut o = String::new();
    let _ = writeln!(o, "Device ID                 : {}", d.device_id);
    let _ = writeln!(o, "Device Revision           : {}", d.device_revision);
    let _ = writeln!(
        o,
        "Firmware Revision         : {}.{:02}",
        d.firmware_major, d.firmware_minor
    );
    let _ = writeln!(
        o,
        "IPMI Version              : {}.{}",
        d.ipmi_major, d.ipmi_minor
    );
    let _ = writeln!(o, "Manufacturer ID           : {}", d.manufacturer_id);
    let _ = writeln!(
        o,
        "Product ID                : {} ({:#06x})",
        d.product_id, d.product_id
    );
    let _ = writeln!(o, "Device Available          : {}", yes(d.device_available));
    let _ = writeln!(
        o,
        "Provides Device SDRs      : {}",
        yes(d.provides_device_sdrs)
    );
    if let Some(g) = guid {
        let _ = writeln!(o, "System GUID               : {}", format_guid(g));
    }
    let _ = write!(o, "Additional Device Support :");
    for n in d.support_names() {
        let _ = write!(o, "\n    {n}");
    }
    if let Some(aux) = d.aux_firmware {
        let _ = write!(
            o,
            "\nAux Firmware Rev Info     : {:#04x} {:#04x} {:#04x} {:#04x}",
            aux[0], aux[1], aux[2], aux[3]
        );
    }
    o
}

fn number(v: f64) -> String {
    format!("{v:.3}")
}

/// `ipmitool sensor`: name | value | unit | status | lnr | lc | lnc | unc | uc | unr.
pub fn sensors(list: &[SensorValue]) -> String {
    let mut o = String::new();
    for s in list {
        let value = s.reading.map_or_else(|| "na".to_string(), number);
        let th = |n: &str| {
            s.thresholds
                .iter()
                .find(|(k, _)| k == n)
                .map_or_else(|| "na".to_string(), |(_, v)| number(*v))
        };
        let unit = if s.reading.is_some() || !s.thresholds.is_empty() {
            s.unit.as_str()
        } else {
            "discrete"
        };
        let _ = writeln!(
            o,
            "{:<16} | {:<10} | {:<10} | {:<5} | {:<9} | {:<9} | {:<9} | {:<9} | {:<9} | {:<9}",
            s.name,
            value,
            unit,
            s.status,
            th("lnr"),
            th("lc"),
            th("lnc"),
            th("unc"),
            th("uc"),
            th("unr")
        );
    }
    o.trim_end().to_string()
}

/// `ipmitool sel list`.
pub fn sel_list(list: &[SelRecord]) -> String {
    let mut o = String::new();
    for r in list {
        let (date, time) = r
            .timestamp
            .map(format_timestamp)
            .unwrap_or_else(|| ("".into(), "".into()));
        match r.event {
            Some(e) => {
                let _ = writeln!(
                    o,
                    "{:>4x} | {} | {} | {} #0x{:02x} | {} | {}",
                    r.record_id,
                    date,
                    time,
                    sensor_type_name(e.sensor_type),
                    e.sensor_number,
                    e.description(),
                    e.direction()
                );
            }
            None => {
                let data: String = r
                    .oem_data
                    .iter()
                    .flatten()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let _ = writeln!(
                    o,
                    "{:>4x} | {} | {} | OEM record {:02x} | {}",
                    r.record_id, date, time, r.record_type, data
                );
            }
        }
    }
    o.trim_end().to_string()
}

/// `ipmitool fru print` for device 0.
pub fn fru(inv: &FruInventory) -> String {
    let mut o = String::from("FRU Device Description : Builtin FRU Device (ID 0)\n");
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(o, " {k:<22}: {v}");
    };
    if let Some(c) = &inv.chassis {
        line(
            "Chassis Type",
            crate::ipmi::fru::chassis_type_name(c.chassis_type),
        );
        line("Chassis Part Number", &c.part_number);
        line("Chassis Serial", &c.serial_number);
        c.custom.iter().for_each(|x| line("Chassis Extra", x));
    }
    if let Some(b) = &inv.board {
        let date = if b.mfg_minutes == 0 {
            "Unspecified".to_string()
        } else {
            time::OffsetDateTime::from_unix_timestamp(
                FRU_EPOCH_UNIX + i64::from(b.mfg_minutes) * 60,
            )
            .ok()
            .and_then(|t| {
                t.format(&time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .ok()
            })
            .unwrap_or_default()
        };
        line("Board Mfg Date", &date);
        line("Board Mfg", &b.manufacturer);
        line("Board Product", &b.product_name);
        line("Board Serial", &b.serial_number);
        line("Board Part Number", &b.part_number);
        b.custom
            .iter()
            .filter(|x| !x.is_empty())
            .for_each(|x| line("Board Extra", x));
    }
    if let Some(p) = &inv.product {
        line("Product Manufacturer", &p.manufacturer);
        line("Product Name", &p.name);
        line("Product Part Number", &p.part_number);
        line("Product Version", &p.version);
        line("Product Serial", &p.serial_number);
        line("Product Asset Tag", &p.asset_tag);
        p.custom
            .iter()
            .filter(|x| !x.is_empty())
            .for_each(|x| line("Product Extra", x));
    }
    for w in &inv.warnings {
        let _ = writeln!(o, " Warning               : {w}");
    }
    o.trim_end().to_string()
}

/// Response bytes as ipmitool's `raw` prints them: hex, 16 to a line.
pub fn raw_bytes(data: &[u8]) -> String {
    data.chunks(16)
        .map(|c| c.iter().map(|b| format!(" {b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_lines_match_ipmitool() {
        assert_eq!(power_status(true), "Chassis Power is on");
        assert_eq!(power_status(false), "Chassis Power is off");
        assert_eq!(
            power_action(PowerAction::On),
            "Chassis Power Control: Up/On"
        );
    }

    #[test]
    fn raw_wraps_at_16() {
        let d: Vec<u8> = (0..18).collect();
        assert_eq!(
            raw_bytes(&d),
            " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n 10 11"
        );
    }

    #[test]
    fn sensor_table_row() {
        let s = SensorValue {
            name: "12V".into(),
            number: 3,
            record_id: 4,
            sensor_type: 2,
            reading: Some(12.0),
            unit: "Volts".into(),
            status: "ok".into(),
            thresholds: vec![("lc".into(), 10.8), ("uc".into(), 13.2)],
        };
        let row = sensors(&[s]);
        assert!(
            row.starts_with(
                "12V              | 12.000     | Volts      | ok    | na        | 10.800"
            ),
            "{row}"
        );
        assert!(row.contains("| 13.200"));
    }
}
