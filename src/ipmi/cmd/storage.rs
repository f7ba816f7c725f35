//! Storage netFn (0x0A) commands (reference §6.3-§6.5): SDR repository, SEL
//! and FRU inventory access. The multi-step reads (reserve, chunk, follow
//! the next-record chain) are driven by the caller; these types build one
//! request and decode one response each.

use super::registry::id;
use super::{need, Command, RawRequest};
use crate::ipmi::wire::{le16, le32, WireError};

/// Record ID meaning "the first record".
pub const FIRST_RECORD: u16 = 0x0000;
/// Next-record ID meaning "that was the last".
pub const LAST_RECORD: u16 = 0xFFFF;

/// Get SDR Repository Info.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetSdrRepositoryInfo;

/// Decoded SDR repository info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdrRepositoryInfo {
    /// SDR version (0x51 or 0x02).
    pub version: u8,
    /// Number of records.
    pub record_count: u16,
    /// Timestamp of the most recent addition.
    pub last_add: u32,
    /// Timestamp of the most recent erase.
    pub last_erase: u32,
    /// Operation support bits.
    pub operation_support: u8,
}

impl Command for GetSdrRepositoryInfo {
    type Response = SdrRepositoryInfo;
    fn request(&self) -> RawRequest {
        id::GET_SDR_REPOSITORY_INFO.request(vec![])
    }
    fn parse_response(&self, d: &[u8]) -> Result<SdrRepositoryInfo, WireError> {
        need(d, 14, "Get SDR Repository Info response")?;
        Ok(SdrRepositoryInfo {
            version: d[0],
            record_count: le16(d, 1),
            last_add: le32(d, 5),
            last_erase: le32(d, 9),
            operation_support: d[13],
        })
    }
}

/// Reserve SDR Repository.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReserveSdrRepository;

impl Command for ReserveSdrRepository {
    type Response = u16;
    fn request(&self) -> RawRequest {
        id::RESERVE_SDR_REPOSITORY.request(vec![])
    }
    fn parse_response(&self, d: &[u8]) -> Result<u16, WireError> {
        need(d, 2, "reservation ID")?;
        Ok(le16(d, 0))
    }
}

/// Get SDR (partial read of one record).
#[derive(Debug, Clone, Copy)]
pub struct GetSdr {
    /// Reservation ID (0 allowed for whole reads from offset 0).
    pub reservation: u16,
    /// Record to read.
    pub record_id: u16,
    /// Offset into the record.
    pub offset: u8,
    /// Bytes to read (0xFF = all).
    pub count: u8,
}

/// One chunk of a record, with the ID of the next record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChunk {
    /// Next record ID (0xFFFF after the last).
    pub next_id: u16,
    /// The bytes read.
    pub bytes: Vec<u8>,
}

impl Command for GetSdr {
    type Response = RecordChunk;
    fn request(&self) -> RawRequest {
        let mut d = Vec::with_capacity(6);
        d.extend_from_slice(&self.reservation.to_le_bytes());
        d.extend_from_slice(&self.record_id.to_le_bytes());
        d.extend_from_slice(&[self.offset, self.count]);
        id::GET_SDR.request(d)
    }
    fn parse_response(&self, d: &[u8]) -> Result<RecordChunk, WireError> {
        chunk(d, self.count, "Get SDR response")
    }
}

/// Get SEL Info.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetSelInfo;

/// Decoded SEL info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SelInfo {
    /// SEL version.
    pub version: u8,
    /// Number of entries.
    pub entries: u16,
    /// Free space in bytes.
    pub free_bytes: u16,
    /// Timestamp of the most recent addition.
    pub last_add: u32,
    /// Timestamp of the most recent erase.
    pub last_erase: u32,
    /// Operation support bits (b7 overflow).
    pub operation_support: u8,
}

impl Command for GetSelInfo {
    type Response = SelInfo;
    fn request(&self) -> RawRequest {
        id::GET_SEL_INFO.request(vec![])
    }
    fn parse_response(&self, d: &[u8]) -> Result<SelInfo, WireError> {
        need(d, 14, "Get SEL Info response")?;
        Ok(SelInfo {
            version: d[0],
            entries: le16(d, 1),
            free_bytes: le16(d, 3),
            last_add: le32(d, 5),
            last_erase: le32(d, 9),
            operation_support: d[13],
        })
    }
}

/// Reserve SEL.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReserveSel;

impl Command for ReserveSel {
    type Response = u16;
    fn request(&self) -> RawRequest {
        id::RESERVE_SEL.request(vec![])
    }
    fn parse_response(&self, d: &[u8]) -> Result<u16, WireError> {
        need(d, 2, "reservation ID")?;
        Ok(le16(d, 0))
    }
}

/// Get SEL Entry.
#[derive(Debug, Clone, Copy)]
pub struct GetSelEntry {
    /// Reservation ID (0 allowed for whole-record reads).
    pub reservation: u16,
    /// Record to read (0 first, 0xFFFF last).
    pub record_id: u16,
}

impl Command for GetSelEntry {
    type Response = RecordChunk;
    fn request(&self) -> RawRequest {
        let mut d = Vec::with_capacity(6);
        d.extend_from_slice(&self.reservation.to_le_bytes());
        d.extend_from_slice(&self.record_id.to_le_bytes());
        d.extend_from_slice(&[0, 0xFF]);
        id::GET_SEL_ENTRY.request(d)
    }
    fn parse_response(&self, d: &[u8]) -> Result<RecordChunk, WireError> {
        let c = chunk(d, 0xFF, "Get SEL Entry response")?;
        need(&c.bytes, 16, "SEL record")?;
        Ok(c)
    }
}

/// Get FRU Inventory Area Info.
#[derive(Debug, Clone, Copy)]
pub struct GetFruInventoryAreaInfo(pub u8);

/// Decoded FRU area info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FruAreaInfo {
    /// Area size in bytes.
    pub size: u16,
    /// Accessed by words rather than bytes.
    pub by_words: bool,
}

impl Command for GetFruInventoryAreaInfo {
    type Response = FruAreaInfo;
    fn request(&self) -> RawRequest {
        id::GET_FRU_INVENTORY_AREA_INFO.request(vec![self.0])
    }
    fn parse_response(&self, d: &[u8]) -> Result<FruAreaInfo, WireError> {
        need(d, 3, "Get FRU Inventory Area Info response")?;
        Ok(FruAreaInfo {
            size: le16(d, 0),
            by_words: d[2] & 1 != 0,
        })
    }
}

/// Read FRU Data.
#[derive(Debug, Clone, Copy)]
pub struct ReadFruData {
    /// FRU device ID.
    pub fru_id: u8,
    /// Offset (in bytes, or words for word-accessed FRUs).
    pub offset: u16,
    /// Count to read.
    pub count: u8,
}

impl Command for ReadFruData {
    type Response = Vec<u8>;
    fn request(&self) -> RawRequest {
        let o = self.offset.to_le_bytes();
        id::READ_FRU_DATA.request(vec![self.fru_id, o[0], o[1], self.count])
    }
    fn parse_response(&self, d: &[u8]) -> Result<Vec<u8>, WireError> {
        need(d, 1, "Read FRU Data response")?;
        let n = usize::from(d[0]);
        let bytes = &d[1..];
        if n > bytes.len() || n > usize::from(self.count) {
            return Err(WireError::BadLength {
                what: "Read FRU Data count",
                declared: n,
                available: bytes.len(),
            });
        }
        Ok(bytes[..n].to_vec())
    }
}

fn chunk(d: &[u8], asked: u8, what: &'static str) -> Result<RecordChunk, WireError> {
    need(d, 2, what)?;
    let bytes = &d[2..];
    if asked != 0xFF && bytes.len() > usize::from(asked) {
        return Err(WireError::BadLength {
            what,
            declared: bytes.len(),
            available: usize::from(asked),
        });
    }
    Ok(RecordChunk {
        next_id: le16(d, 0),
        bytes: bytes.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_sdr_request_and_response() {
        let g = GetSdr {
            reservation: 0x1234,
            record_id: 7,
            offset: 5,
            count: 16,
        };
        assert_eq!(g.request().data, [0x34, 0x12, 7, 0, 5, 16]);
        let c = g.parse_response(&[8, 0, 1, 2, 3]).unwrap();
        assert_eq!(c.next_id, 8);
        assert_eq!(c.bytes, [1, 2, 3]);
        assert!(g.parse_response(&[8]).is_err());
        assert!(
            g.parse_response(&[0u8; 19]).is_err(),
            "more bytes than asked for"
        );
    }

    #[test]
    fn fru_read_checks_its_count() {
        let r = ReadFruData {
            fru_id: 0,
            offset: 0x0102,
            count: 4,
        };
        assert_eq!(r.request().data, [0, 2, 1, 4]);
        assert_eq!(r.parse_response(&[2, 9, 9, 9]).unwrap(), [9, 9]);
        assert!(r.parse_response(&[5, 9, 9]).is_err());
        assert!(r.parse_response(&[]).is_err());
    }

    #[test]
    fn sel_info_and_entry() {
        let mut d = vec![0x51, 3, 0, 0x00, 0x40];
        d.extend_from_slice(&100u32.to_le_bytes());
        d.extend_from_slice(&50u32.to_le_bytes());
        d.push(0x0A);
        let info = GetSelInfo.parse_response(&d).unwrap();
        assert_eq!(
            (info.entries, info.free_bytes, info.last_add),
            (3, 0x4000, 100)
        );
        assert!(GetSelInfo.parse_response(&d[..13]).is_err());
        let e = GetSelEntry {
            reservation: 0,
            record_id: 0,
        };
        assert!(
            e.parse_response(&[0xFF, 0xFF, 1, 2]).is_err(),
            "short record"
        );
        assert_eq!(
            e.parse_response(
                &[0xFF, 0xFF]
                    .iter()
                    .chain(&[0u8; 16])
                    .copied()
                    .collect::<Vec<_>>()
            )
            .unwrap()
            .next_id,
            LAST_RECORD
        );
    }
}
