//! FRU inventory decoding (IPMI Platform Management FRU Information Storage
//! Definition v1.0): the common header and the chassis, board and product
//! info areas. A bad area checksum is reported alongside the decoded fields
//! (as ipmitool does) rather than hiding the data; a bad common header is an
//! error, because its offsets cannot be trusted.

use crate::ipmi::sdr::decode_typed_string;
use crate::ipmi::wire::{checksum, need, WireError};

/// Length of the common header.
pub const COMMON_HEADER_LEN: usize = 8;
/// Largest FRU image this decoder looks at (offsets are 8-bit × 8).
pub const MAX_FRU_LEN: usize = 64 * 1024;

/// Decoded FRU inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FruInventory {
    /// Chassis info area.
    pub chassis: Option<ChassisArea>,
    /// Board info area.
    pub board: Option<BoardArea>,
    /// Product info area.
    pub product: Option<ProductArea>,
    /// Problems found while decoding (bad checksums, truncated areas).
    pub warnings: Vec<String>,
}

/// Chassis info area.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChassisArea {
    /// SMBIOS chassis type.
    pub chassis_type: u8,
    /// Part number.
    pub part_number: String,
    /// Serial number.
    pub serial_number: String,
    /// Custom fields.
    pub custom: Vec<String>,
}

/// Board info area.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BoardArea {
    /// Manufacturing date: minutes since 1996-01-01 00:00 UTC.
    pub mfg_minutes: u32,
    /// Manufacturer.
    pub manufacturer: String,
    /// Product name.
    pub product_name: String,
    /// Serial number.
    pub serial_number: String,
    /// Part number.
    pub part_number: String,
    /// FRU file ID.
    pub fru_file_id: String,
    /// Custom fields.
    pub custom: Vec<String>,
}

/// Product info area.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProductArea {
    /// Manufacturer.
    pub manufacturer: String,
    /// Product name.
    pub name: String,
    /// Part / model number.
    pub part_number: String,
    /// Version.
    pub version: String,
    /// Serial number.
    pub serial_number: String,
    /// Asset tag.
    pub asset_tag: String,
    /// FRU file ID.
    pub fru_file_id: String,
    /// Custom fields.
    pub custom: Vec<String>,
}

/// Name of an SMBIOS chassis type (FRU chassis area byte 2), as ipmitool
/// prints it.
pub fn chassis_type_name(t: u8) -> &'static str {
    const NAMES: [&str; 37] = [
        "Unspecified",
        "Other",
        "Unknown",
        "Desktop",
        "Low Profile Desktop",
        "Pizza Box",
        "Mini Tower",
        "Tower",
        "Portable",
        "LapTop",
        "Notebook",
        "Hand Held",
        "Docking Station",
        "All in One",
        "Sub Notebook",
        "Space-saving",
        "Lunch Box",
        "Main Server Chassis",
        "Expansion Chassis",
        "SubChassis",
        "Bus Expansion Chassis",
        "Peripheral Chassis",
        "RAID Chassis",
        "Rack Mount Chassis",
        "Sealed-case PC",
        "Multi-system Chassis",
        "Compact PCI",
        "Advanced TCA",
        "Blade",
        "Blade Enclosure",
        "Tablet",
        "Convertible",
        "Detachable",
        "IoT Gateway",
        "Embedded PC",
        "Mini PC",
        "Stick PC",
    ];
    NAMES.get(usize::from(t)).copied().unwrap_or("Unknown")
}

/// Unix time of the FRU epoch, 1996-01-01 00:00:00 UTC.
pub const FRU_EPOCH_UNIX: i64 = 820_454_400;

/// Offsets of the info areas named in the common header, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// Chassis area offset (0 = absent).
    pub chassis: usize,
    /// Board area offset.
    pub board: usize,
    /// Product area offset.
    pub product: usize,
}

impl CommonHeader {
    /// Decodes and checks the common header.
    pub fn parse(b: &[u8]) -> Result<CommonHeader, WireError> {
        need(b, COMMON_HEADER_LEN, "FRU common header")?;
        if b[0] & 0x0F != 1 {
            return Err(WireError::BadField {
                field: "FRU format version",
                value: b[0].into(),
            });
        }
        if checksum(&b[..7]) != b[7] {
            return Err(WireError::Checksum(crate::ipmi::wire::ChecksumKind::Header));
        }
        Ok(CommonHeader {
            chassis: usize::from(b[2]) * 8,
            board: usize::from(b[3]) * 8,
            product: usize::from(b[4]) * 8,
        })
    }

    /// The number of bytes needed to hold every area's length byte.
    pub fn min_len(&self) -> usize {
        [self.chassis, self.board, self.product]
            .iter()
            .map(|o| o + 2)
            .max()
            .unwrap_or(COMMON_HEADER_LEN)
    }
}

/// Decodes a whole FRU image.
pub fn parse(b: &[u8]) -> Result<FruInventory, WireError> {
    let h = CommonHeader::parse(b)?;
    let mut inv = FruInventory::default();
    if h.chassis != 0 {
        if let Some((mut f, body)) = area(b, h.chassis, "chassis", &mut inv.warnings) {
            inv.chassis = Some(ChassisArea {
                chassis_type: body.get(2).copied().unwrap_or(0),
                part_number: f.next_field(),
                serial_number: f.next_field(),
                custom: f.rest(),
            });
        }
    }
    if h.board != 0 {
        if let Some((mut f, body)) = area(b, h.board, "board", &mut inv.warnings) {
            let d = body.get(3..6).unwrap_or(&[0, 0, 0]);
            inv.board = Some(BoardArea {
                mfg_minutes: u32::from(d[0]) | u32::from(d[1]) << 8 | u32::from(d[2]) << 16,
                manufacturer: f.next_field(),
                product_name: f.next_field(),
                serial_number: f.next_field(),
                part_number: f.next_field(),
                fru_file_id: f.next_field(),
                custom: f.rest(),
            });
        }
    }
    if h.product != 0 {
        if let Some((mut f, _)) = area(b, h.product, "product", &mut inv.warnings) {
            inv.product = Some(ProductArea {
                manufacturer: f.next_field(),
                name: f.next_field(),
                part_number: f.next_field(),
                version: f.next_field(),
                serial_number: f.next_field(),
                asset_tag: f.next_field(),
                fru_file_id: f.next_field(),
                custom: f.rest(),
            });
        }
    }
    Ok(inv)
}

impl FruInventory {
    /// Encodes the chassis, board and product areas as a FRU image (common
    /// header, areas with 8-bit ASCII fields, end markers, padding and zero
    /// checksums), for simulated BMCs and tests. Fields longer than 63 bytes
    /// are cut to 63, the most a type/length byte can say. `warnings` is
    /// not encoded.
    pub fn encode(&self) -> Vec<u8> {
        let chassis = self.chassis.as_ref().map(|c| {
            let fields = [&c.part_number, &c.serial_number]
                .into_iter()
                .chain(&c.custom);
            encode_area(&[1, 0, c.chassis_type], fields)
        });
        let board = self.board.as_ref().map(|b| {
            let d = b.mfg_minutes.to_le_bytes();
            let fields = [
                &b.manufacturer,
                &b.product_name,
                &b.serial_number,
                &b.part_number,
                &b.fru_file_id,
            ]
            .into_iter()
            .chain(&b.custom);
            encode_area(&[1, 0, 0, d[0], d[1], d[2]], fields)
        });
        let product = self.product.as_ref().map(|p| {
            let fields = [
                &p.manufacturer,
                &p.name,
                &p.part_number,
                &p.version,
                &p.serial_number,
                &p.asset_tag,
                &p.fru_file_id,
            ]
            .into_iter()
            .chain(&p.custom);
            encode_area(&[1, 0, 0], fields)
        });
        let mut offsets = [0u8; 3];
        let mut at = COMMON_HEADER_LEN;
        for (slot, area) in offsets.iter_mut().zip([&chassis, &board, &product]) {
            if let Some(a) = area {
                *slot = (at / 8) as u8;
                at += a.len();
            }
        }
        let mut out = vec![1, 0, offsets[0], offsets[1], offsets[2], 0, 0];
        out.push(checksum(&out));
        for a in [chassis, board, product].into_iter().flatten() {
            out.extend(a);
        }
        out
    }
}

fn encode_area<'a>(fixed: &[u8], fields: impl Iterator<Item = &'a String>) -> Vec<u8> {
    let mut a = fixed.to_vec();
    for f in fields {
        let bytes = &f.as_bytes()[..f.len().min(63)];
        a.push(0xC0 | bytes.len() as u8);
        a.extend_from_slice(bytes);
    }
    a.push(0xC1);
    while !(a.len() + 1).is_multiple_of(8) {
        a.push(0);
    }
    a[1] = ((a.len() + 1) / 8) as u8;
    a.push(checksum(&a));
    a
}

/// Returns a field reader positioned at the first field, and the area bytes.
fn area<'a>(
    b: &'a [u8],
    off: usize,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<(Fields<'a>, &'a [u8])> {
    let Some(len_byte) = b.get(off + 1) else {
        warnings.push(format!("{name} area offset {off} is beyond the FRU data"));
        return None;
    };
    let len = usize::from(*len_byte) * 8;
    let Some(body) = b.get(off..off + len) else {
        warnings.push(format!("{name} area is truncated"));
        return None;
    };
    if len == 0 {
        warnings.push(format!("{name} area has length 0"));
        return None;
    }
    if checksum(&body[..len - 1]) != body[len - 1] {
        warnings.push(format!("{name} area checksum is wrong"));
    }
    // Chassis: version, length, type; board: version, length, language, 3-byte date;
    // product: version, length, language.
    let first = match name {
        "board" => 6,
        _ => 3,
    };
    Some((
        Fields {
            b: &body[..len - 1],
            at: first,
            done: false,
        },
        body,
    ))
}

struct Fields<'a> {
    b: &'a [u8],
    at: usize,
    done: bool,
}

impl Fields<'_> {
    /// Next type/length-prefixed field; empty once the end marker is seen.
    fn next_field(&mut self) -> String {
        self.next_opt().unwrap_or_default()
    }

    fn next_opt(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        let tl = *self.b.get(self.at)?;
        if tl == 0xC1 {
            self.done = true;
            return None;
        }
        let len = usize::from(tl & 0x3F);
        let start = self.at + 1;
        let bytes = self.b.get(start..start + len).unwrap_or_else(|| {
            self.done = true;
            self.b.get(start..).unwrap_or(&[])
        });
        self.at = start + len;
        Some(decode_typed_string(tl >> 6, bytes))
    }

    fn rest(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.next_opt()).take(64).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A FRU image shaped like the bmc-lab's: board and product areas.
    pub fn lab_image(name: &str, serial: &str) -> Vec<u8> {
        FruInventory {
            board: Some(BoardArea {
                manufacturer: "bmc-lab".into(),
                product_name: "ipmi_sim lab board".into(),
                serial_number: format!("BRD-{serial}"),
                part_number: "LAB-BOARD-1".into(),
                ..BoardArea::default()
            }),
            product: Some(ProductArea {
                manufacturer: "bmc-lab".into(),
                name: "ipmi_sim lab BMC".into(),
                part_number: "LAB-BMC-1".into(),
                version: "1.0".into(),
                serial_number: serial.into(),
                asset_tag: name.into(),
                ..ProductArea::default()
            }),
            ..FruInventory::default()
        }
        .encode()
    }

    #[test]
    fn encode_matches_a_hand_built_area_and_round_trips() {
        // Board area by hand: 6 fixed bytes, fields of 8+19+13+12+1 bytes,
        // end marker = 60, padded to 63, checksum = 64 bytes = 8 units; so
        // the product area starts at unit 1 + 8 = 9.
        let img = lab_image("bmc1", "LAB09001");
        assert_eq!(&img[..8], &[1, 0, 0, 1, 9, 0, 0, 0u8.wrapping_sub(11)]);
        assert_eq!(&img[8..17], &[1, 8, 0, 0, 0, 0, 0xC7, b'b', b'm']);
        assert_eq!(
            img[8..8 + 64].iter().fold(0u8, |s, b| s.wrapping_add(*b)),
            0,
            "board checksum"
        );
        let full = FruInventory {
            chassis: Some(ChassisArea {
                chassis_type: 0x17,
                part_number: "CH-1".into(),
                serial_number: "CS-9".into(),
                custom: vec!["extra".into()],
            }),
            board: Some(BoardArea {
                mfg_minutes: 12345678,
                manufacturer: "M".repeat(70),
                ..BoardArea::default()
            }),
            product: None,
            warnings: vec![],
        };
        let back = parse(&full.encode()).unwrap();
        assert_eq!(back.chassis, full.chassis);
        let b = back.board.unwrap();
        assert_eq!((b.mfg_minutes, b.manufacturer.len()), (12345678, 63));
        assert!(back.product.is_none() && back.warnings.is_empty());
    }

    #[test]
    fn lab_image_decodes() {
        let img = lab_image("bmc1", "LAB09001");
        let inv = parse(&img).unwrap();
        assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
        let b = inv.board.unwrap();
        assert_eq!(b.manufacturer, "bmc-lab");
        assert_eq!(b.serial_number, "BRD-LAB09001");
        assert_eq!(b.part_number, "LAB-BOARD-1");
        let p = inv.product.unwrap();
        assert_eq!(p.serial_number, "LAB09001");
        assert_eq!(p.asset_tag, "bmc1");
        assert_eq!(p.version, "1.0");
        assert!(inv.chassis.is_none());
    }

    #[test]
    fn damage_is_reported_not_panicked_on() {
        let img = lab_image("bmc1", "LAB09001");
        for n in 0..img.len() {
            let _ = parse(&img[..n]);
        }
        let mut bad = img.clone();
        bad[7] ^= 1;
        assert!(parse(&bad).is_err(), "header checksum");
        let mut bad = img.clone();
        bad[12] ^= 0x20;
        let inv = parse(&bad).unwrap();
        assert!(inv
            .warnings
            .iter()
            .any(|w| w.contains("board area checksum")));
        let short = &img[..20];
        assert!(parse(short)
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.contains("truncated")));
    }
}
