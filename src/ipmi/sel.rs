//! System Event Log records (reference §6.4): the 16-byte record, decoded
//! into system events and OEM records, with the descriptions ipmitool prints
//! for threshold and common sensor-specific events.

use crate::ipmi::wire::{le16, le32, need, WireError};

/// Length of one SEL record.
pub const RECORD_LEN: usize = 16;
/// Timestamps below this count seconds since BMC initialisation.
pub const PRE_INIT_TIMESTAMP_MAX: u32 = 0x2000_0000;

/// One decoded SEL record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SelRecord {
    /// Record ID.
    pub record_id: u16,
    /// Record type (0x02 system event; 0xC0-0xDF OEM timestamped; 0xE0-0xFF
    /// OEM non-timestamped).
    pub record_type: u8,
    /// Timestamp, when the record type has one.
    pub timestamp: Option<u32>,
    /// The event, for system event records.
    pub event: Option<SystemEvent>,
    /// Bytes after the timestamp (or after the type) for OEM records.
    pub oem_data: Option<Vec<u8>>,
}

/// A system event record's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SystemEvent {
    /// Generator ID (slave address or software ID in bits 7:1 of byte 0).
    pub generator_id: u16,
    /// Event message format revision.
    pub evm_revision: u8,
    /// Sensor type code.
    pub sensor_type: u8,
    /// Sensor number.
    pub sensor_number: u8,
    /// True for deassertion events.
    pub deassertion: bool,
    /// Event/reading type code.
    pub event_type: u8,
    /// Event data 1-3.
    pub data: [u8; 3],
}

impl SelRecord {
    /// Decodes a 16-byte record.
    pub fn parse(b: &[u8]) -> Result<SelRecord, WireError> {
        need(b, RECORD_LEN, "SEL record")?;
        let record_id = le16(b, 0);
        let record_type = b[2];
        Ok(match record_type {
            0x02 => SelRecord {
                record_id,
                record_type,
                timestamp: Some(le32(b, 3)),
                event: Some(SystemEvent {
                    generator_id: le16(b, 7),
                    evm_revision: b[9],
                    sensor_type: b[10],
                    sensor_number: b[11],
                    deassertion: b[12] & 0x80 != 0,
                    event_type: b[12] & 0x7F,
                    data: [b[13], b[14], b[15]],
                }),
                oem_data: None,
            },
            0xC0..=0xDF => SelRecord {
                record_id,
                record_type,
                timestamp: Some(le32(b, 3)),
                event: None,
                oem_data: Some(b[7..16].to_vec()),
            },
            _ => SelRecord {
                record_id,
                record_type,
                timestamp: None,
                event: None,
                oem_data: Some(b[3..16].to_vec()),
            },
        })
    }
}

impl SystemEvent {
    /// The event offset (event data 1, bits 3:0).
    pub fn offset(&self) -> u8 {
        self.data[0] & 0x0F
    }

    /// What happened, in ipmitool's words where they are known.
    pub fn description(&self) -> String {
        let o = usize::from(self.offset());
        let known = match self.event_type {
            0x01 => THRESHOLD.get(o).copied(),
            0x02 => [
                "Transition to Idle",
                "Transition to Active",
                "Transition to Busy",
            ]
            .get(o)
            .copied(),
            0x03 => ["State Deasserted", "State Asserted"].get(o).copied(),
            0x04 => [
                "Predictive Failure deasserted",
                "Predictive Failure asserted",
            ]
            .get(o)
            .copied(),
            0x05 => ["Limit Not Exceeded", "Limit Exceeded"].get(o).copied(),
            0x06 => ["Performance Met", "Performance Lags"].get(o).copied(),
            0x08 => ["Device Absent", "Device Present"].get(o).copied(),
            0x09 => ["Device Disabled", "Device Enabled"].get(o).copied(),
            0x6F => sensor_specific(self.sensor_type, o),
            _ => None,
        };
        known.map_or_else(
            || format!("Event type {:#04x} offset {:#03x}", self.event_type, o),
            str::to_string,
        )
    }

    /// "Asserted" or "Deasserted".
    pub fn direction(&self) -> &'static str {
        if self.deassertion {
            "Deasserted"
        } else {
            "Asserted"
        }
    }
}

const THRESHOLD: [&str; 12] = [
    "Lower Non-critical going low",
    "Lower Non-critical going high",
    "Lower Critical going low",
    "Lower Critical going high",
    "Lower Non-recoverable going low",
    "Lower Non-recoverable going high",
    "Upper Non-critical going low",
    "Upper Non-critical going high",
    "Upper Critical going low",
    "Upper Critical going high",
    "Upper Non-recoverable going low",
    "Upper Non-recoverable going high",
];

fn sensor_specific(sensor_type: u8, o: usize) -> Option<&'static str> {
    let table: &[&str] = match sensor_type {
        0x05 => &[
            "General Chassis intrusion",
            "Drive Bay intrusion",
            "I/O Card area intrusion",
            "Processor area intrusion",
            "System unplugged from LAN",
            "Unauthorized dock",
            "FAN area intrusion",
        ],
        0x07 => &[
            "IERR",
            "Thermal Trip",
            "FRB1/BIST failure",
            "FRB2/Hang in POST failure",
            "FRB3/Processor Startup/Init failure",
            "Configuration Error",
            "SM BIOS Uncorrectable CPU-complex Error",
            "Presence detected",
            "Disabled",
            "Terminator presence detected",
            "Throttled",
        ],
        0x08 => &[
            "Presence detected",
            "Failure detected",
            "Predictive failure",
            "Power Supply AC lost",
            "AC lost or out-of-range",
            "AC out-of-range, but present",
            "Config Error",
        ],
        0x09 => &[
            "Power off/down",
            "Power cycle",
            "240VA power down",
            "Interlock power down",
            "AC lost",
            "Soft-power control failure",
            "Failure detected",
            "Predictive failure",
        ],
        0x0C => &[
            "Correctable ECC",
            "Uncorrectable ECC",
            "Parity",
            "Memory Scrub Failed",
            "Memory Device Disabled",
            "Correctable ECC logging limit reached",
            "Presence Detected",
            "Configuration Error",
            "Spare",
            "Throttled",
            "Critical Overtemperature",
        ],
        0x10 => &[
            "Correctable memory error logging disabled",
            "Event logging disabled",
            "Log area reset/cleared",
            "All event logging disabled",
            "Log full",
            "Log almost full",
        ],
        0x12 => &[
            "System Reconfigured",
            "OEM System boot event",
            "Undetermined system hardware failure",
            "Entry added to auxiliary log",
            "PEF Action",
            "Timestamp Clock Sync",
        ],
        0x14 => &[
            "Power Button pressed",
            "Sleep Button pressed",
            "Reset Button pressed",
            "FRU latch open",
            "FRU service request button",
        ],
        0x1D => &[
            "Initiated by power up",
            "Initiated by hard reset",
            "Initiated by warm reset",
            "User requested PXE boot",
            "Automatic boot to diagnostic",
            "OS initiated hard reset",
            "OS initiated warm reset",
            "System Restart",
        ],
        0x23 => &[
            "Timer expired, status only",
            "Hard reset",
            "Power down",
            "Power cycle",
            "reserved",
            "reserved",
            "reserved",
            "reserved",
            "Timer interrupt",
        ],
        0x2A => &[
            "Session activated",
            "Session deactivated",
            "Invalid Username or Password",
            "Invalid password disable",
        ],
        _ => &[],
    };
    table.get(o).copied()
}

/// Name of a sensor type code, as ipmitool prints it.
pub fn sensor_type_name(code: u8) -> &'static str {
    const NAMES: [&str; 0x2D] = [
        "reserved",
        "Temperature",
        "Voltage",
        "Current",
        "Fan",
        "Physical Security",
        "Platform Security",
        "Processor",
        "Power Supply",
        "Power Unit",
        "Cooling Device",
        "Other",
        "Memory",
        "Drive Slot / Bay",
        "POST Memory Resize",
        "System Firmwares",
        "Event Logging Disabled",
        "Watchdog1",
        "System Event",
        "Critical Interrupt",
        "Button",
        "Module / Board",
        "Microcontroller",
        "Add-in Card",
        "Chassis",
        "Chip Set",
        "Other FRU",
        "Cable / Interconnect",
        "Terminator",
        "System Boot Initiated",
        "Boot Error",
        "OS Boot",
        "OS Critical Stop",
        "Slot / Connector",
        "System ACPI Power State",
        "Watchdog2",
        "Platform alert",
        "Entity Presence",
        "Monitor ASIC",
        "LAN",
        "Management Subsys Health",
        "Battery",
        "Session Audit",
        "Version Change",
        "FRU State",
    ];
    match code {
        0xC0..=0xFF => "OEM",
        _ => NAMES.get(usize::from(code)).copied().unwrap_or("reserved"),
    }
}

/// Formats a SEL timestamp as ipmitool's `MM/DD/YYYY | HH:MM:SS` pair, or
/// `Pre-Init` for times counted from BMC initialisation.
pub fn format_timestamp(ts: u32) -> (String, String) {
    if ts < PRE_INIT_TIMESTAMP_MAX {
        return ("Pre-Init".into(), format!("{ts:010}"));
    }
    let fmt_date = time::macros::format_description!("[month]/[day]/[year]");
    let fmt_time = time::macros::format_description!("[hour]:[minute]:[second]");
    match time::OffsetDateTime::from_unix_timestamp(i64::from(ts)) {
        Ok(t) => (
            t.format(&fmt_date).unwrap_or_default(),
            t.format(&fmt_time).unwrap_or_default(),
        ),
        Err(_) => ("invalid".into(), ts.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_event_like_the_lab_seed() {
        // Added by `raw 0x0a 0x44 ...`: CPU Temp UNC going high, asserted.
        let mut r = vec![0x01, 0x00, 0x02];
        r.extend_from_slice(&1_764_000_000u32.to_le_bytes());
        r.extend_from_slice(&[0x20, 0x00, 0x04, 0x01, 0x01, 0x01, 0x57, 0x4c, 0x4b]);
        let rec = SelRecord::parse(&r).unwrap();
        let e = rec.event.unwrap();
        assert_eq!(rec.record_id, 1);
        assert_eq!(sensor_type_name(e.sensor_type), "Temperature");
        assert_eq!(e.description(), "Upper Non-critical going high");
        assert_eq!(e.direction(), "Asserted");
        let (d, t) = format_timestamp(rec.timestamp.unwrap());
        assert_eq!((d.as_str(), t.as_str()), ("11/24/2025", "16:00:00"));
        for n in 0..16 {
            assert!(SelRecord::parse(&r[..n]).is_err());
        }
    }

    #[test]
    fn oem_records_and_pre_init() {
        let mut r = vec![0x05, 0x00, 0xE0];
        r.extend_from_slice(&[0xAA; 13]);
        let rec = SelRecord::parse(&r).unwrap();
        assert!(rec.event.is_none() && rec.timestamp.is_none());
        assert_eq!(rec.oem_data.unwrap().len(), 13);
        assert_eq!(format_timestamp(42).0, "Pre-Init");
        assert_eq!(sensor_type_name(0xD0), "OEM");
        let e = SystemEvent {
            generator_id: 0x20,
            evm_revision: 4,
            sensor_type: 0x09,
            sensor_number: 1,
            deassertion: true,
            event_type: 0x6F,
            data: [0x00, 0xFF, 0xFF],
        };
        assert_eq!(e.description(), "Power off/down");
        assert_eq!(e.direction(), "Deasserted");
        let odd = SystemEvent {
            event_type: 0x70,
            ..e
        };
        assert!(odd.description().starts_with("Event type 0x70"));
    }
}
