//! Multi-step reads over one session: walking the SDR repository (reserve,
//! header, body in chunks that shrink when the BMC says so, follow the
//! next-record chain), reading every sensor, the SEL, and FRU inventory.
//!
//! Every loop is bounded by what the BMC advertised plus a margin, or by a
//! hard cap, so a BMC that never ends a chain cannot hold us forever.

use std::net::SocketAddr;

use super::{BmcError, RawResponse, Transact};
use crate::ipmi::cmd::name::classify;
use crate::ipmi::cmd::sensor_event::GetSensorReading;
use crate::ipmi::cmd::storage::*;
use crate::ipmi::cmd::Command;
use crate::ipmi::fru::MAX_FRU_LEN;
use crate::ipmi::sdr::{self, SdrRecord, SensorRecord};
use crate::ipmi::sel::SelRecord;
use crate::ipmi::wire::message::{CompletionCode, BMC_SLAVE_ADDR};

/// First chunk size for SDR and FRU body reads (reference §4.4: 16-32 bytes
/// is safe everywhere).
pub const INITIAL_CHUNK: u8 = 32;
/// Hard cap on SDR records or SEL entries walked.
pub const MAX_RECORDS: usize = 4096;
/// How many times a lost reservation may restart a read.
pub const MAX_RESERVATION_RESTARTS: u32 = 8;

/// One sensor with its converted reading.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SensorValue {
    /// ID string.
    pub name: String,
    /// Sensor number.
    pub number: u8,
    /// The SDR record's id (what freeipmi, and so ipmi_exporter, call a
    /// sensor's id).
    pub record_id: u16,
    /// Sensor type code.
    pub sensor_type: u8,
    /// Converted reading, when there is one.
    pub reading: Option<f64>,
    /// Unit text.
    pub unit: String,
    /// `ok`, `nc`, `cr`, `nr`, `ns` (no reading) or a discrete state in hex.
    pub status: String,
    /// Converted thresholds, readable ones only: (name, value).
    pub thresholds: Vec<(String, f64)>,
}

/// Runs a typed command through `t`; a non-zero completion code is an error.
pub async fn run<T: Transact, C: Command>(t: &T, cmd: &C) -> Result<C::Response, BmcError> {
    let (resp, name) = raw(t, cmd).await?;
    if !resp.completion_code.is_ok() {
        return Err(BmcError::Completion {
            addr: t.addr(),
            command: name,
            code: resp.completion_code,
        });
    }
    decode(t, cmd, &resp, name)
}

async fn raw<T: Transact, C: Command>(t: &T, cmd: &C) -> Result<(RawResponse, String), BmcError> {
    let req = cmd.request();
    let name = classify(req.netfn, req.cmd, &req.data).name.to_string();
    Ok((t.transact(req).await?, name))
}

fn decode<T: Transact, C: Command>(
    t: &T,
    cmd: &C,
    resp: &RawResponse,
    command: String,
) -> Result<C::Response, BmcError> {
    cmd.parse_response(&resp.data)
        .map_err(|source| BmcError::Malformed {
            addr: t.addr(),
            command,
            source,
        })
}

fn protocol(addr: SocketAddr, what: &'static str, why: impl Into<String>) -> BmcError {
    BmcError::Protocol {
        addr,
        what,
        why: why.into(),
    }
}

/// Completion codes that mean "ask for fewer bytes".
fn is_length_problem(cc: CompletionCode) -> bool {
    matches!(cc.0, 0xCA | 0xC7 | 0xC8 | 0xFF)
}

/// A chunked read's answer: true when it carries data; false when the
/// BMC refused the length and `chunk` was halved to ask again (down to
/// `min`); any other completion code is the read's error.
fn chunk_went_through(
    resp: &RawResponse,
    chunk: &mut u8,
    min: u8,
    addr: SocketAddr,
    name: &str,
) -> Result<bool, BmcError> {
    match resp.completion_code {
        CompletionCode::OK => Ok(true),
        cc if is_length_problem(cc) && *chunk > min => {
            *chunk /= 2;
            Ok(false)
        }
        code => Err(BmcError::Completion {
            addr,
            command: name.to_string(),
            code,
        }),
    }
}

/// The parsed sensor records of one BMC's SDR repository, kept with the
/// repository's record count and add/erase timestamps when it was read:
/// while those stay the same the repository has not changed, and a sensor
/// read needs only the readings.
#[derive(Debug, Default)]
pub struct SdrCache {
    held: std::sync::Mutex<Option<(Stamp, Vec<SensorRecord>)>>,
    walks: std::sync::atomic::AtomicU64,
}

/// What identifies a version of an SDR repository: record count, most
/// recent addition, most recent erase.
type Stamp = (u16, u32, u32);

impl SdrCache {
    /// How many times the repository was walked (not served from cache).
    pub fn walks(&self) -> u64 {
        self.walks.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn get(&self, stamp: Stamp) -> Option<Vec<SensorRecord>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()
            .filter(|(s, _)| *s == stamp)
            .map(|(_, r)| r.clone())
    }

    fn put(&self, stamp: Stamp, records: Vec<SensorRecord>) {
        self.walks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((stamp, records));
    }
}

/// The sensor records of the repository: from `t`'s cache while the
/// repository's stamp is unchanged, else walked (and cached when `t` has a
/// cache and the BMC gave a stamp).
async fn sensor_records<T: Transact>(t: &T) -> Result<Vec<SensorRecord>, BmcError> {
    let info = run(t, &GetSdrRepositoryInfo).await.ok();
    let stamp = info.map(|i| (i.record_count, i.last_add, i.last_erase));
    if let (Some(cache), Some(stamp)) = (t.sdr_cache(), stamp) {
        if let Some(records) = cache.get(stamp) {
            return Ok(records);
        }
    }
    let limit = info.map_or(MAX_RECORDS, |i| usize::from(i.record_count) + 8);
    let records: Vec<SensorRecord> = walk_sdr(t, limit.min(MAX_RECORDS))
        .await?
        .iter()
        .filter_map(|raw| match sdr::parse_record(raw) {
            Ok(SdrRecord::Sensor(s)) => Some(s),
            _ => None,
        })
        .collect();
    if let (Some(cache), Some(stamp)) = (t.sdr_cache(), stamp) {
        cache.put(stamp, records.clone());
    }
    Ok(records)
}

/// Reads every record of the SDR repository, raw (header included).
pub async fn read_sdr_repository<T: Transact>(t: &T) -> Result<Vec<Vec<u8>>, BmcError> {
    let limit = match run(t, &GetSdrRepositoryInfo).await {
        Ok(info) => usize::from(info.record_count) + 8,
        Err(_) => MAX_RECORDS,
    }
    .min(MAX_RECORDS);
    walk_sdr(t, limit).await
}

/// Walks the repository's record chain, at most `limit` records.
async fn walk_sdr<T: Transact>(t: &T, limit: usize) -> Result<Vec<Vec<u8>>, BmcError> {
    let addr = t.addr();
    let mut restarts = 0;
    'restart: loop {
        let reservation = reserve_sdr(t).await?;
        let mut records = Vec::new();
        let mut id = FIRST_RECORD;
        let mut chunk = INITIAL_CHUNK;
        loop {
            if records.len() >= limit {
                return Err(protocol(
                    addr,
                    "SDR repository",
                    format!("more than {limit} records; the chain does not end"),
                ));
            }
            match read_sdr_record(t, reservation, id, &mut chunk).await? {
                SdrRead::Record { next, bytes } => {
                    records.push(bytes);
                    if next == LAST_RECORD || next == id {
                        return Ok(records);
                    }
                    id = next;
                }
                SdrRead::ReservationLost => {
                    restarts += 1;
                    if restarts > MAX_RESERVATION_RESTARTS {
                        return Err(protocol(
                            addr,
                            "SDR repository",
                            "reservation kept being cancelled",
                        ));
                    }
                    continue 'restart;
                }
            }
        }
    }
}

async fn reserve_sdr<T: Transact>(t: &T) -> Result<u16, BmcError> {
    let (resp, name) = raw(t, &ReserveSdrRepository).await?;
    match resp.completion_code {
        CompletionCode::OK => decode(t, &ReserveSdrRepository, &resp, name),
        // Reservations are optional: 0 works for whole reads from offset 0.
        CompletionCode::INVALID_COMMAND => Ok(0),
        code => Err(BmcError::Completion {
            addr: t.addr(),
            command: name,
            code,
        }),
    }
}

enum SdrRead {
    Record { next: u16, bytes: Vec<u8> },
    ReservationLost,
}

async fn read_sdr_record<T: Transact>(
    t: &T,
    reservation: u16,
    id: u16,
    chunk: &mut u8,
) -> Result<SdrRead, BmcError> {
    let addr = t.addr();
    let header_cmd = GetSdr {
        reservation,
        record_id: id,
        offset: 0,
        count: sdr::HEADER_LEN as u8,
    };
    let (resp, name) = raw(t, &header_cmd).await?;
    if resp.completion_code == CompletionCode::RESERVATION_CANCELLED {
        return Ok(SdrRead::ReservationLost);
    }
    if !resp.completion_code.is_ok() {
        return Err(BmcError::Completion {
            addr,
            command: name,
            code: resp.completion_code,
        });
    }
    let head = decode(t, &header_cmd, &resp, name)?;
    let header = sdr::SdrHeader::parse(&head.bytes).map_err(|source| BmcError::Malformed {
        addr,
        command: "sdr.read".into(),
        source,
    })?;
    let total = sdr::HEADER_LEN + usize::from(header.length);
    let mut bytes = head.bytes;
    bytes.truncate(sdr::HEADER_LEN);
    while bytes.len() < total {
        let want = (*chunk as usize).min(total - bytes.len()) as u8;
        let cmd = GetSdr {
            reservation,
            record_id: id,
            offset: bytes.len() as u8,
            count: want,
        };
        let (resp, name) = raw(t, &cmd).await?;
        if resp.completion_code == CompletionCode::RESERVATION_CANCELLED {
            return Ok(SdrRead::ReservationLost);
        }
        if !chunk_went_through(&resp, chunk, 1, addr, &name)? {
            continue;
        }
        let part = decode(t, &cmd, &resp, name)?;
        if part.bytes.is_empty() {
            return Err(protocol(
                addr,
                "SDR record",
                format!("record {id:#06x}: empty read at offset {}", bytes.len()),
            ));
        }
        bytes.extend_from_slice(&part.bytes[..part.bytes.len().min(total - bytes.len())]);
    }
    Ok(SdrRead::Record {
        next: head.next_id,
        bytes,
    })
}

/// Reads the SDR repository (or its cached sensor records, while it is
/// unchanged) and every sensor's reading.
pub async fn read_sensors<T: Transact>(t: &T) -> Result<Vec<SensorValue>, BmcError> {
    let mut out = Vec::new();
    for s in sensor_records(t).await? {
        out.push(sensor_value(t, &s).await?);
    }
    Ok(out)
}

async fn sensor_value<T: Transact>(t: &T, s: &SensorRecord) -> Result<SensorValue, BmcError> {
    let thresholds = s
        .thresholds
        .map(|th| {
            th.entries()
                .into_iter()
                .filter(|(_, readable, _)| *readable)
                .filter_map(|(n, _, raw)| s.convert(raw).map(|v| (n.to_string(), v)))
                .collect()
        })
        .unwrap_or_default();
    let mut v = SensorValue {
        name: s.id.clone(),
        number: s.number,
        record_id: s.record_id,
        sensor_type: s.sensor_type,
        reading: None,
        unit: s.unit_text(),
        status: "ns".into(),
        thresholds,
    };
    // Sensors owned by other controllers need bridging, which this client
    // does not do: they show as "no reading".
    if s.owner_id != BMC_SLAVE_ADDR || s.owner_lun != 0 {
        return Ok(v);
    }
    let (resp, _) = raw(t, &GetSensorReading(s.number)).await?;
    // One sensor the BMC cannot read (absent, not scanning, refused) shows as
    // "no reading", as in ipmitool; it does not sink the whole listing.
    if !resp.completion_code.is_ok() {
        tracing::debug!(sensor = %s.id, code = %resp.completion_code, "no reading");
        return Ok(v);
    }
    let Ok(r) = GetSensorReading(s.number).parse_response(&resp.data) else {
        return Ok(v);
    };
    if !r.is_valid() {
        return Ok(v);
    }
    if s.is_threshold() {
        v.reading = s.convert(r.raw);
        v.status = sdr::threshold_status(r.state).into();
    } else {
        v.status = format!("0x{:04x}", r.state);
    }
    Ok(v)
}

/// Reads every SEL entry.
pub async fn read_sel<T: Transact>(t: &T) -> Result<Vec<SelRecord>, BmcError> {
    let addr = t.addr();
    let info = run(t, &GetSelInfo).await?;
    if info.entries == 0 {
        return Ok(Vec::new());
    }
    let limit = (usize::from(info.entries) + 8).min(MAX_RECORDS);
    let mut restarts = 0;
    'restart: loop {
        let reservation = match raw(t, &ReserveSel).await? {
            (r, name) if r.completion_code.is_ok() => decode(t, &ReserveSel, &r, name)?,
            _ => 0,
        };
        let mut out = Vec::new();
        let mut id = FIRST_RECORD;
        loop {
            if out.len() >= limit {
                return Err(protocol(
                    addr,
                    "SEL",
                    format!("more than {limit} entries; the chain does not end"),
                ));
            }
            let cmd = GetSelEntry {
                reservation,
                record_id: id,
            };
            let (resp, name) = raw(t, &cmd).await?;
            match resp.completion_code {
                CompletionCode::OK => {}
                CompletionCode::RESERVATION_CANCELLED if restarts < MAX_RESERVATION_RESTARTS => {
                    restarts += 1;
                    continue 'restart;
                }
                // The log was cleared under us or is empty after all.
                CompletionCode::NOT_PRESENT if id == FIRST_RECORD => return Ok(out),
                code => {
                    return Err(BmcError::Completion {
                        addr,
                        command: name,
                        code,
                    })
                }
            }
            let chunk = decode(t, &cmd, &resp, name)?;
            let rec = SelRecord::parse(&chunk.bytes).map_err(|source| BmcError::Malformed {
                addr,
                command: "sel.read".into(),
                source,
            })?;
            out.push(rec);
            if chunk.next_id == LAST_RECORD || chunk.next_id == id {
                return Ok(out);
            }
            id = chunk.next_id;
        }
    }
}

/// Reads the whole FRU inventory area of device `fru_id`.
pub async fn read_fru<T: Transact>(t: &T, fru_id: u8) -> Result<Vec<u8>, BmcError> {
    let addr = t.addr();
    let info = run(t, &GetFruInventoryAreaInfo(fru_id)).await?;
    let size = usize::from(info.size).min(MAX_FRU_LEN);
    let unit = if info.by_words { 2 } else { 1 };
    let mut data = Vec::with_capacity(size);
    let mut chunk = INITIAL_CHUNK;
    while data.len() < size {
        let want_bytes = (usize::from(chunk)).min(size - data.len());
        let cmd = ReadFruData {
            fru_id,
            offset: (data.len() / unit) as u16,
            count: (want_bytes / unit).max(1) as u8,
        };
        let (resp, name) = raw(t, &cmd).await?;
        if !chunk_went_through(&resp, &mut chunk, 2, addr, &name)? {
            continue;
        }
        let got = decode(t, &cmd, &resp, name)?;
        if got.is_empty() {
            return Err(protocol(
                addr,
                "FRU data",
                format!("empty read at offset {}", data.len()),
            ));
        }
        data.extend_from_slice(&got[..got.len().min(size - data.len())]);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::ipmi::cmd::RawRequest;
    use crate::ipmi::sdr::tests::full_record;

    /// A fake BMC repository with knobs: a cap on read sizes (answers 0xCA
    /// above it) and a number of reservation cancellations to inject.
    struct FakeBmc {
        sdrs: Vec<Vec<u8>>,
        sel: Vec<[u8; 16]>,
        fru: Vec<u8>,
        max_read: usize,
        cancel_reservations: RefCell<u32>,
        reservation: RefCell<u16>,
        log: RefCell<Vec<(u8, u8)>>,
    }

    impl FakeBmc {
        fn new() -> FakeBmc {
            FakeBmc {
                sdrs: vec![
                    full_record(b"CPU Temp", 1, 1, 0, 1, [95, 85, 75, 0, 5, 10]),
                    full_record(b"12V", 3, 6, -2, 4, [0, 220, 210, 0, 180, 190]),
                ],
                sel: vec![
                    [1, 0, 2, 0, 0, 0, 0x60, 0x20, 0, 4, 1, 1, 1, 0x57, 0, 0],
                    [2, 0, 2, 0, 0, 0, 0x60, 0x20, 0, 4, 4, 2, 1, 0x52, 0, 0],
                ],
                fru: crate::ipmi::fru::tests::lab_image("bmc1", "LAB09001"),
                max_read: 255,
                cancel_reservations: RefCell::new(0),
                reservation: RefCell::new(1),
                log: RefCell::new(vec![]),
            }
        }

        fn answer(&self, req: &RawRequest) -> RawResponse {
            let ok = |data: Vec<u8>| RawResponse {
                completion_code: CompletionCode::OK,
                data,
            };
            let cc = |c: u8| RawResponse {
                completion_code: CompletionCode(c),
                data: vec![],
            };
            let d = &req.data;
            match (req.netfn.0, req.cmd) {
                (0x0A, 0x20) => ok(vec![
                    0x51,
                    self.sdrs.len() as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0x02,
                ]),
                (0x0A, 0x22) | (0x0A, 0x42) => {
                    *self.reservation.borrow_mut() += 1;
                    ok(self.reservation.borrow().to_le_bytes().to_vec())
                }
                (0x0A, 0x23) => {
                    let res = u16::from_le_bytes([d[0], d[1]]);
                    if res != *self.reservation.borrow() {
                        return cc(0xC5);
                    }
                    if *self.cancel_reservations.borrow() > 0 && d[4] > 0 {
                        *self.cancel_reservations.borrow_mut() -= 1;
                        *self.reservation.borrow_mut() += 1;
                        return cc(0xC5);
                    }
                    let idx = usize::from(u16::from_le_bytes([d[2], d[3]]));
                    let rec = &self.sdrs[idx];
                    let (off, n) = (usize::from(d[4]), usize::from(d[5]));
                    if n > self.max_read {
                        return cc(0xCA);
                    }
                    let next: u16 = if idx + 1 == self.sdrs.len() {
                        0xFFFF
                    } else {
                        idx as u16 + 1
                    };
                    let mut out = next.to_le_bytes().to_vec();
                    out.extend_from_slice(&rec[off..(off + n).min(rec.len())]);
                    ok(out)
                }
                (0x04, 0x2D) if d[0] == 9 => cc(0xCC),
                (0x04, 0x2D) => ok(vec![if d[0] == 1 { 45 } else { 200 }, 0xC0, 0x00]),
                (0x0A, 0x40) => ok(vec![
                    0x51,
                    self.sel.len() as u8,
                    0,
                    0,
                    0x40,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0x0A,
                ]),
                (0x0A, 0x43) => {
                    let idx = usize::from(u16::from_le_bytes([d[2], d[3]])).max(1) - 1;
                    let next: u16 = if idx + 1 == self.sel.len() {
                        0xFFFF
                    } else {
                        idx as u16 + 2
                    };
                    let mut out = next.to_le_bytes().to_vec();
                    out.extend_from_slice(&self.sel[idx]);
                    ok(out)
                }
                (0x0A, 0x10) => ok(vec![self.fru.len() as u8, 0, 0]),
                (0x0A, 0x11) => {
                    let off = usize::from(u16::from_le_bytes([d[1], d[2]]));
                    let n = usize::from(d[3]);
                    if n > self.max_read {
                        return cc(0xCA);
                    }
                    let part = &self.fru[off..(off + n).min(self.fru.len())];
                    let mut out = vec![part.len() as u8];
                    out.extend_from_slice(part);
                    ok(out)
                }
                _ => cc(0xC1),
            }
        }
    }

    impl Transact for FakeBmc {
        async fn transact(&self, req: RawRequest) -> Result<RawResponse, BmcError> {
            self.log.borrow_mut().push((req.netfn.0, req.cmd));
            Ok(self.answer(&req))
        }
        fn addr(&self) -> SocketAddr {
            "127.0.0.1:623".parse().unwrap()
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn sensors_with_conversion_and_thresholds() {
        let bmc = FakeBmc::new();
        let sensors = block_on(read_sensors(&bmc)).unwrap();
        assert_eq!(sensors.len(), 2);
        assert_eq!(
            (
                sensors[0].name.as_str(),
                sensors[0].reading,
                sensors[0].status.as_str()
            ),
            ("CPU Temp", Some(45.0), "ok")
        );
        assert_eq!(sensors[0].unit, "degrees C");
        let v = &sensors[1];
        assert!((v.reading.unwrap() - 12.0).abs() < 1e-9);
        let uc = v.thresholds.iter().find(|(n, _)| n == "uc").unwrap().1;
        assert!((uc - 13.2).abs() < 1e-9);
    }

    #[test]
    fn an_unreadable_sensor_shows_no_reading_and_the_rest_still_list() {
        let mut bmc = FakeBmc::new();
        bmc.sdrs.push(full_record(b"Ghost", 9, 1, 0, 1, [0; 6]));
        let sensors = block_on(read_sensors(&bmc)).unwrap();
        assert_eq!(sensors.len(), 3);
        assert_eq!(
            (sensors[2].reading, sensors[2].status.as_str()),
            (None, "ns")
        );
    }

    #[test]
    fn chunk_shrinks_when_the_bmc_cannot_return_that_many_bytes() {
        let mut bmc = FakeBmc::new();
        bmc.max_read = 7;
        let recs = block_on(read_sdr_repository(&bmc)).unwrap();
        assert_eq!(recs, bmc.sdrs);
        let fru = block_on(read_fru(&bmc, 0)).unwrap();
        assert_eq!(fru, bmc.fru);
    }

    #[test]
    fn lost_reservation_restarts_the_walk() {
        let bmc = FakeBmc::new();
        *bmc.cancel_reservations.borrow_mut() = 2;
        let recs = block_on(read_sdr_repository(&bmc)).unwrap();
        assert_eq!(recs.len(), 2);
        let reserves = bmc
            .log
            .borrow()
            .iter()
            .filter(|c| **c == (0x0A, 0x22))
            .count();
        assert_eq!(reserves, 3);
        *bmc.cancel_reservations.borrow_mut() = 100;
        assert!(matches!(
            block_on(read_sdr_repository(&bmc)),
            Err(BmcError::Protocol { .. })
        ));
    }

    #[test]
    fn sel_entries_follow_the_chain() {
        let bmc = FakeBmc::new();
        let sel = block_on(read_sel(&bmc)).unwrap();
        assert_eq!(sel.len(), 2);
        assert_eq!(sel[1].event.unwrap().sensor_number, 2);
    }
}
