//! Sensor Data Records (reference §6.3): header, full (type 0x01) and compact
//! (type 0x02) sensor records, locators, ID strings, and the conversion of
//! raw readings to values (y = L((M·x + B·10^K1)·10^K2)).
//!
//! Records come from the BMC: every decoder bounds-checks and returns
//! `WireError`, never panics.

use crate::ipmi::wire::{le16, need, WireError};

/// Length of the SDR record header.
pub const HEADER_LEN: usize = 5;
/// Full sensor record.
pub const TYPE_FULL: u8 = 0x01;
/// Compact sensor record.
pub const TYPE_COMPACT: u8 = 0x02;
/// Event-only record.
pub const TYPE_EVENT_ONLY: u8 = 0x03;
/// FRU device locator.
pub const TYPE_FRU_LOCATOR: u8 = 0x11;
/// Management controller device locator.
pub const TYPE_MC_LOCATOR: u8 = 0x12;

/// The 5-byte record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdrHeader {
    /// Record ID.
    pub record_id: u16,
    /// SDR version (0x51).
    pub version: u8,
    /// Record type.
    pub record_type: u8,
    /// Bytes after the header.
    pub length: u8,
}

impl SdrHeader {
    /// Decodes the header.
    pub fn parse(b: &[u8]) -> Result<SdrHeader, WireError> {
        need(b, HEADER_LEN, "SDR header")?;
        Ok(SdrHeader {
            record_id: le16(b, 0),
            version: b[2],
            record_type: b[3],
            length: b[4],
        })
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum SdrRecord {
    /// Full or compact sensor record.
    Sensor(SensorRecord),
    /// Management controller device locator.
    McLocator {
        /// Record ID.
        record_id: u16,
        /// Device slave address.
        slave_addr: u8,
        /// ID string.
        id: String,
    },
    /// FRU device locator.
    FruLocator {
        /// Record ID.
        record_id: u16,
        /// FRU device ID (logical FRUs).
        fru_id: u8,
        /// ID string.
        id: String,
    },
    /// Any other record type, kept by header only.
    Other(SdrHeader),
}

/// Analog data format of readings (units 1, bits 7:6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalogFormat {
    /// Unsigned.
    Unsigned,
    /// One's complement.
    OnesComplement,
    /// Two's complement.
    TwosComplement,
    /// No analog reading.
    None,
}

/// Reading conversion factors of a full sensor record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    /// Raw byte interpretation.
    pub format: AnalogFormat,
    /// Linearization function code.
    pub linearization: u8,
    /// Multiplier M (10-bit signed).
    pub m: i16,
    /// Offset B (10-bit signed).
    pub b: i16,
    /// B exponent K1 (4-bit signed).
    pub b_exp: i8,
    /// Result exponent K2 (4-bit signed).
    pub r_exp: i8,
}

impl Conversion {
    /// Converts a raw reading; `None` when the sensor has no analog reading
    /// or a non-linear function this decoder cannot evaluate.
    pub fn convert(&self, raw: u8) -> Option<f64> {
        let x = match self.format {
            AnalogFormat::Unsigned => f64::from(raw),
            AnalogFormat::OnesComplement => {
                if raw & 0x80 != 0 {
                    -f64::from(!raw)
                } else {
                    f64::from(raw)
                }
            }
            AnalogFormat::TwosComplement => f64::from(raw as i8),
            AnalogFormat::None => return None,
        };
        let y = (f64::from(self.m) * x + f64::from(self.b) * 10f64.powi(self.b_exp.into()))
            * 10f64.powi(self.r_exp.into());
        linearize(self.linearization, y)
    }

    /// Converts a difference of readings (hysteresis): B does not apply.
    pub fn convert_delta(&self, raw: u8) -> Option<f64> {
        Conversion { b: 0, ..*self }.convert(raw)
    }
}

fn linearize(code: u8, y: f64) -> Option<f64> {
    let v = match code {
        0 => y,
        1 => y.ln(),
        2 => y.log10(),
        3 => y.log2(),
        4 => y.exp(),
        5 => 10f64.powf(y),
        6 => 2f64.powf(y),
        7 => 1.0 / y,
        8 => y * y,
        9 => y * y * y,
        10 => y.sqrt(),
        11 => y.cbrt(),
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// Raw threshold values of a full record, in reference order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawThresholds {
    /// Readable-threshold mask: b0 LNC, b1 LC, b2 LNR, b3 UNC, b4 UC, b5 UNR.
    pub readable: u8,
    /// Lower non-critical.
    pub lnc: u8,
    /// Lower critical.
    pub lc: u8,
    /// Lower non-recoverable.
    pub lnr: u8,
    /// Upper non-critical.
    pub unc: u8,
    /// Upper critical.
    pub uc: u8,
    /// Upper non-recoverable.
    pub unr: u8,
}

impl RawThresholds {
    /// (name, readable-mask bit, raw value) for the six thresholds.
    pub fn entries(&self) -> [(&'static str, bool, u8); 6] {
        let r = |bit: u8| self.readable & (1 << bit) != 0;
        [
            ("lnr", r(2), self.lnr),
            ("lc", r(1), self.lc),
            ("lnc", r(0), self.lnc),
            ("unc", r(3), self.unc),
            ("uc", r(4), self.uc),
            ("unr", r(5), self.unr),
        ]
    }
}

/// A full or compact sensor record.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRecord {
    /// Record ID.
    pub record_id: u16,
    /// Record type (full or compact).
    pub record_type: u8,
    /// Owner ID (slave address or software ID, bit 0 tells which).
    pub owner_id: u8,
    /// Owner LUN.
    pub owner_lun: u8,
    /// Sensor number.
    pub number: u8,
    /// Entity ID.
    pub entity_id: u8,
    /// Entity instance.
    pub entity_instance: u8,
    /// Sensor type code.
    pub sensor_type: u8,
    /// Event/reading type code (0x01 = threshold).
    pub event_reading_type: u8,
    /// Percentage flag of units 1.
    pub percentage: bool,
    /// Modifier-unit mode (0 none, 1 base/modifier, 2 base×modifier).
    pub modifier_mode: u8,
    /// Base unit code.
    pub base_unit: u8,
    /// Modifier unit code.
    pub modifier_unit: u8,
    /// Conversion factors (full records only).
    pub conversion: Option<Conversion>,
    /// Thresholds (full threshold records only).
    pub thresholds: Option<RawThresholds>,
    /// ID string.
    pub id: String,
}

impl SensorRecord {
    /// True for threshold-based sensors.
    pub fn is_threshold(&self) -> bool {
        self.event_reading_type == 0x01
    }

    /// Unit text as ipmitool prints it ("degrees C", "Volts", "% RPM", …).
    pub fn unit_text(&self) -> String {
        let base = unit_name(self.base_unit);
        let mut s = match self.modifier_mode {
            1 => format!("{base}/{}", unit_name(self.modifier_unit)),
            2 => format!("{base}*{}", unit_name(self.modifier_unit)),
            _ => base.to_string(),
        };
        if self.percentage {
            s.insert_str(0, "% ");
        }
        s
    }

    /// Converts a raw reading, when the record allows it.
    pub fn convert(&self, raw: u8) -> Option<f64> {
        self.conversion?.convert(raw)
    }
}

impl SensorRecord {
    /// Encodes a full (type 0x01) or compact (type 0x02) record, header
    /// included, for simulated BMCs. Threshold sensors declare readable
    /// thresholds and the matching assertion events; ID strings are 8-bit
    /// ASCII, cut to 16 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let full = self.record_type == TYPE_FULL;
        let mut b = vec![0u8; if full { 48 } else { 32 }];
        b[0..2].copy_from_slice(&self.record_id.to_le_bytes());
        b[2] = 0x51;
        b[3] = self.record_type;
        b[5] = self.owner_id;
        b[6] = self.owner_lun & 0x03;
        b[7] = self.number;
        b[8] = self.entity_id;
        b[9] = self.entity_instance;
        // Initialisation: scanning, events, thresholds, hysteresis, type,
        // event generation and scanning on by default.
        b[10] = 0x7F;
        let readable = self.thresholds.map_or(0, |t| t.readable);
        // Capabilities: auto re-arm; thresholds readable when there are any.
        b[11] = 0x40 | if readable != 0 { 0x04 } else { 0 };
        b[12] = self.sensor_type;
        b[13] = self.event_reading_type;
        if self.is_threshold() {
            // Assertion events for each readable threshold: lower ones going
            // low (offsets 0, 2, 4), upper ones going high (7, 9, 11).
            let mut mask: u16 = 0;
            for (bit, offset) in [(0, 0), (1, 2), (2, 4), (3, 7), (4, 9), (5, 11)] {
                if readable & (1 << bit) != 0 {
                    mask |= 1 << offset;
                }
            }
            b[14..16].copy_from_slice(&mask.to_le_bytes());
            b[16..18].copy_from_slice(&mask.to_le_bytes());
            b[18] = readable;
            b[19] = 0;
        } else {
            b[14..16].copy_from_slice(&0x0001u16.to_le_bytes());
            b[18..20].copy_from_slice(&0x0001u16.to_le_bytes());
        }
        b[20] = (self.modifier_mode & 3) << 1 | u8::from(self.percentage);
        b[21] = self.base_unit;
        b[22] = self.modifier_unit;
        let id_at = if let (true, Some(c)) = (full, self.conversion) {
            b[20] |= match c.format {
                AnalogFormat::Unsigned => 0,
                AnalogFormat::OnesComplement => 1,
                AnalogFormat::TwosComplement => 2,
                AnalogFormat::None => 3,
            } << 6;
            let (m, bb) = (c.m as u16 & 0x3FF, c.b as u16 & 0x3FF);
            b[23] = c.linearization & 0x7F;
            b[24] = (m & 0xFF) as u8;
            b[25] = ((m >> 8) as u8) << 6;
            b[26] = (bb & 0xFF) as u8;
            b[27] = ((bb >> 8) as u8) << 6;
            b[29] = ((c.r_exp as u8) & 0x0F) << 4 | (c.b_exp as u8) & 0x0F;
            if let Some(t) = self.thresholds {
                b[36..42].copy_from_slice(&[t.unr, t.uc, t.unc, t.lnr, t.lc, t.lnc]);
            }
            47
        } else {
            31
        };
        let id = &self.id.as_bytes()[..self.id.len().min(16)];
        b[id_at] = 0xC0 | id.len() as u8;
        b.extend_from_slice(id);
        b[4] = (b.len() - HEADER_LEN) as u8;
        b
    }
}

/// Encodes a management controller device locator (type 0x12) for the BMC
/// itself, advertising chassis, SEL, SDR, FRU and sensor device support.
pub fn encode_mc_locator(record_id: u16, slave_addr: u8, id: &str) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0..2].copy_from_slice(&record_id.to_le_bytes());
    b[2] = 0x51;
    b[3] = TYPE_MC_LOCATOR;
    b[5] = slave_addr;
    b[8] = 0xBD; // chassis, event receiver, FRU, SEL, SDR, sensor device
    b[12] = 0x07; // entity: system board
    b[13] = 1;
    let id = &id.as_bytes()[..id.len().min(16)];
    b[15] = 0xC0 | id.len() as u8;
    b.extend_from_slice(id);
    b[4] = (b.len() - HEADER_LEN) as u8;
    b
}

/// Decodes one whole record (header included).
pub fn parse_record(b: &[u8]) -> Result<SdrRecord, WireError> {
    let h = SdrHeader::parse(b)?;
    let end = HEADER_LEN + usize::from(h.length);
    need(b, end, "SDR record body")?;
    let b = &b[..end];
    match h.record_type {
        TYPE_FULL | TYPE_COMPACT => parse_sensor(h, b).map(SdrRecord::Sensor),
        TYPE_MC_LOCATOR => {
            need(b, 16, "MC locator record")?;
            Ok(SdrRecord::McLocator {
                record_id: h.record_id,
                slave_addr: b[5],
                id: id_string(b, 15)?,
            })
        }
        TYPE_FRU_LOCATOR => {
            need(b, 16, "FRU locator record")?;
            Ok(SdrRecord::FruLocator {
                record_id: h.record_id,
                fru_id: b[6],
                id: id_string(b, 15)?,
            })
        }
        _ => Ok(SdrRecord::Other(h)),
    }
}

fn parse_sensor(h: SdrHeader, b: &[u8]) -> Result<SensorRecord, WireError> {
    let full = h.record_type == TYPE_FULL;
    need(b, if full { 48 } else { 32 }, "sensor record")?;
    let conversion = full.then(|| Conversion {
        format: match b[20] >> 6 {
            0 => AnalogFormat::Unsigned,
            1 => AnalogFormat::OnesComplement,
            2 => AnalogFormat::TwosComplement,
            _ => AnalogFormat::None,
        },
        linearization: b[23] & 0x7F,
        m: sign_extend(u16::from(b[24]) | (u16::from(b[25] >> 6) << 8), 10),
        b: sign_extend(u16::from(b[26]) | (u16::from(b[27] >> 6) << 8), 10),
        b_exp: sign_extend(u16::from(b[29] & 0x0F), 4) as i8,
        r_exp: sign_extend(u16::from(b[29] >> 4), 4) as i8,
    });
    let threshold = b[13] == 0x01;
    let thresholds = (full && threshold).then(|| RawThresholds {
        readable: b[18] & 0x3F,
        unr: b[36],
        uc: b[37],
        unc: b[38],
        lnr: b[39],
        lc: b[40],
        lnc: b[41],
    });
    Ok(SensorRecord {
        record_id: h.record_id,
        record_type: h.record_type,
        owner_id: b[5],
        owner_lun: b[6] & 0x03,
        number: b[7],
        entity_id: b[8],
        entity_instance: b[9],
        sensor_type: b[12],
        event_reading_type: b[13],
        percentage: b[20] & 0x01 != 0,
        modifier_mode: (b[20] >> 1) & 0x03,
        base_unit: b[21],
        modifier_unit: b[22],
        conversion,
        thresholds,
        id: id_string(b, if full { 47 } else { 31 })?,
    })
}

fn sign_extend(v: u16, bits: u32) -> i16 {
    let shift = 16 - bits;
    ((v << shift) as i16) >> shift
}

/// Decodes the ID string whose type/length byte is at `at`.
fn id_string(b: &[u8], at: usize) -> Result<String, WireError> {
    let tl = *b.get(at).ok_or(WireError::Truncated {
        what: "SDR ID string type/length",
        need: at + 1,
        got: b.len(),
    })?;
    let len = usize::from(tl & 0x1F);
    // Some BMCs declare more than the record holds; take what is there.
    let bytes = &b[at + 1..b.len().min(at + 1 + len)];
    Ok(decode_typed_string(tl >> 6, bytes))
}

/// Decodes a string by IPMI type code (0 unicode/binary, 1 BCD plus,
/// 2 6-bit packed ASCII, 3 8-bit ASCII + Latin-1). Shared with FRU fields.
pub fn decode_typed_string(kind: u8, bytes: &[u8]) -> String {
    match kind {
        3 => bytes
            .iter()
            .map(|&c| char::from(c))
            .collect::<String>()
            .trim_end_matches('\0')
            .to_string(),
        2 => unpack_6bit(bytes),
        1 => bytes
            .iter()
            .flat_map(|b| [b & 0x0F, b >> 4])
            .map(|n| match n {
                0..=9 => char::from(b'0' + n),
                0xA => ' ',
                0xB => '-',
                0xC => '.',
                _ => '?',
            })
            .collect(),
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn unpack_6bit(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let v = u32::from(chunk[0])
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0)) << 16;
        let chars = match chunk.len() {
            1 => 1,
            2 => 2,
            _ => 4,
        };
        for i in 0..chars {
            out.push(char::from(((v >> (6 * i)) & 0x3F) as u8 + 0x20));
        }
    }
    out.trim_end().to_string()
}

/// Status text from a threshold sensor's reading state bits, as ipmitool
/// prints it: `nr`, `cr`, `nc` or `ok`.
pub fn threshold_status(state: u16) -> &'static str {
    if state & 0x24 != 0 {
        "nr"
    } else if state & 0x12 != 0 {
        "cr"
    } else if state & 0x09 != 0 {
        "nc"
    } else {
        "ok"
    }
}

/// Name of a base unit code (IPMI 2.0 table 43-15).
pub fn unit_name(code: u8) -> &'static str {
    const UNITS: [&str; 93] = [
        "unspecified",
        "degrees C",
        "degrees F",
        "degrees K",
        "Volts",
        "Amps",
        "Watts",
        "Joules",
        "Coulombs",
        "VA",
        "Nits",
        "lumen",
        "lux",
        "Candela",
        "kPa",
        "PSI",
        "Newton",
        "CFM",
        "RPM",
        "Hz",
        "microsecond",
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "mil",
        "inches",
        "feet",
        "cu in",
        "cu feet",
        "mm",
        "cm",
        "m",
        "cu cm",
        "cu m",
        "liters",
        "fluid ounce",
        "radians",
        "steradians",
        "revolutions",
        "cycles",
        "gravities",
        "ounce",
        "pound",
        "ft-lb",
        "oz-in",
        "gauss",
        "gilberts",
        "henry",
        "millihenry",
        "farad",
        "microfarad",
        "ohms",
        "siemens",
        "mole",
        "becquerel",
        "PPM",
        "reserved",
        "Decibels",
        "DbA",
        "DbC",
        "gray",
        "sievert",
        "color temp deg K",
        "bit",
        "kilobit",
        "megabit",
        "gigabit",
        "byte",
        "kilobyte",
        "megabyte",
        "gigabyte",
        "word",
        "dword",
        "qword",
        "line",
        "hit",
        "miss",
        "retry",
        "reset",
        "overflow",
        "underrun",
        "collision",
        "packets",
        "messages",
        "characters",
        "error",
        "correctable error",
        "uncorrectable error",
        "fatal error",
        "grams",
    ];
    UNITS.get(usize::from(code)).copied().unwrap_or("unknown")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A full threshold record like the lab's "12V": M 6, R exp -2.
    pub fn full_record(id: &[u8], number: u8, m: u16, r_exp: i8, unit: u8, th: [u8; 6]) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        b[0..2].copy_from_slice(&(u16::from(number) + 1).to_le_bytes());
        b[2] = 0x51;
        b[3] = TYPE_FULL;
        b[5] = 0x20;
        b[7] = number;
        b[8] = 0x07;
        b[9] = 1;
        b[12] = 0x02;
        b[13] = 0x01;
        b[18] = 0x3F;
        b[21] = unit;
        b[24] = (m & 0xFF) as u8;
        b[25] = ((m >> 8) as u8) << 6;
        b[29] = ((r_exp as u8) & 0x0F) << 4;
        b[36..42].copy_from_slice(&th);
        b[47] = 0xC0 | id.len() as u8;
        b.extend_from_slice(id);
        b[4] = (b.len() - HEADER_LEN) as u8;
        b
    }

    #[test]
    fn full_record_and_conversion() {
        let rec = full_record(b"12V", 3, 6, -2, 4, [0, 220, 210, 0, 180, 190]);
        let SdrRecord::Sensor(s) = parse_record(&rec).unwrap() else {
            panic!()
        };
        assert_eq!(s.id, "12V");
        assert_eq!(s.number, 3);
        assert_eq!(s.unit_text(), "Volts");
        assert!(s.is_threshold());
        let c = s.conversion.unwrap();
        assert_eq!((c.m, c.r_exp), (6, -2));
        assert!((s.convert(200).unwrap() - 12.0).abs() < 1e-9);
        let t = s.thresholds.unwrap();
        assert!((s.convert(t.uc).unwrap() - 13.2).abs() < 1e-9);
        assert!((s.convert(t.lc).unwrap() - 10.8).abs() < 1e-9);
        for n in 0..rec.len() {
            assert!(parse_record(&rec[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn reference_worked_conversions() {
        let c = Conversion {
            format: AnalogFormat::Unsigned,
            linearization: 0,
            m: 1,
            b: 0,
            b_exp: 0,
            r_exp: 0,
        };
        assert_eq!(c.convert(0x2A), Some(42.0));
        let v = Conversion {
            m: 247,
            r_exp: -4,
            ..c
        };
        assert!((v.convert(0xC8).unwrap() - 4.94).abs() < 1e-9);
        let neg = Conversion {
            format: AnalogFormat::TwosComplement,
            ..c
        };
        assert_eq!(neg.convert(0xFE), Some(-2.0));
        let ones = Conversion {
            format: AnalogFormat::OnesComplement,
            ..c
        };
        assert_eq!(ones.convert(0xFE), Some(-1.0));
        let with_b = Conversion {
            b: -5,
            b_exp: 1,
            ..c
        };
        assert_eq!(with_b.convert(60), Some(10.0));
        assert_eq!(with_b.convert_delta(60), Some(60.0));
        let sq = Conversion {
            linearization: 8,
            ..c
        };
        assert_eq!(sq.convert(3), Some(9.0));
        let none = Conversion {
            format: AnalogFormat::None,
            ..c
        };
        assert_eq!(none.convert(3), None);
        let nonlinear = Conversion {
            linearization: 0x70,
            ..c
        };
        assert_eq!(nonlinear.convert(3), None);
        assert_eq!(sign_extend(0x3FF, 10), -1);
        assert_eq!(sign_extend(0x8, 4), -8);
    }

    #[test]
    fn strings_and_units() {
        // "ABC" packed: A=0x21, B=0x22, C=0x23, space=0x00
        let packed = [0x21 | (0x22 << 6), (0x22 >> 2) | (0x23 << 4), 0x23 >> 4];
        assert_eq!(decode_typed_string(2, &packed), "ABC");
        assert_eq!(decode_typed_string(1, &[0x21, 0xBA]), "12 -");
        assert_eq!(decode_typed_string(3, b"Fan 1\0"), "Fan 1");
        assert_eq!(unit_name(18), "RPM");
        assert_eq!(unit_name(92), "grams");
        assert_eq!(unit_name(200), "unknown");
        assert_eq!(threshold_status(0), "ok");
        assert_eq!(threshold_status(0x08), "nc");
        assert_eq!(threshold_status(0x02), "cr");
        assert_eq!(threshold_status(0x20), "nr");
    }

    #[test]
    fn encode_round_trips_through_parse() {
        let SdrRecord::Sensor(s) = parse_record(&full_record(
            b"12V",
            3,
            6,
            -2,
            4,
            [0, 220, 210, 0, 180, 190],
        ))
        .unwrap() else {
            panic!()
        };
        let again = parse_record(&s.encode()).unwrap();
        assert_eq!(again, SdrRecord::Sensor(s.clone()));
        let compact = SensorRecord {
            record_type: TYPE_COMPACT,
            conversion: None,
            thresholds: None,
            event_reading_type: 0x6F,
            sensor_type: 0x08,
            id: "PSU1 Status".into(),
            ..s
        };
        assert_eq!(
            parse_record(&compact.encode()).unwrap(),
            SdrRecord::Sensor(compact)
        );
        let mc = encode_mc_locator(1, 0x20, "BMC");
        assert!(matches!(
            parse_record(&mc).unwrap(),
            SdrRecord::McLocator {
                slave_addr: 0x20,
                ..
            }
        ));
    }

    #[test]
    fn compact_and_locator_records() {
        let mut c = vec![0u8; 32];
        c[3] = TYPE_COMPACT;
        c[7] = 9;
        c[13] = 0x6F;
        c[31] = 0xC3;
        c.extend_from_slice(b"PSU");
        c[4] = (c.len() - 5) as u8;
        let SdrRecord::Sensor(s) = parse_record(&c).unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.id.as_str(), s.number, s.conversion, s.thresholds),
            ("PSU", 9, None, None)
        );

        let mut mc = vec![0u8; 16];
        mc[3] = TYPE_MC_LOCATOR;
        mc[5] = 0x20;
        mc[15] = 0xC7;
        mc.extend_from_slice(b"Lab BMC");
        mc[4] = (mc.len() - 5) as u8;
        assert_eq!(
            parse_record(&mc).unwrap(),
            SdrRecord::McLocator {
                record_id: 0,
                slave_addr: 0x20,
                id: "Lab BMC".into()
            }
        );
    }
}
