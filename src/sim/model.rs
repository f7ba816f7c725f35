//! One simulated BMC's hardware: chassis power, boot flags, sensors that
//! drift and cross thresholds, the SEL, the SDR repository and FRU data,
//! behind the IPMI commands ipmitool and freeipmi use. The RMCP+ session
//! layer (`ipmi::session::bmc`) has already authenticated, decrypted and
//! privilege-checked every request that reaches [`SimBmc::execute`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ipmi::cmd::registry::{id, CommandId};
use crate::ipmi::fru::{BoardArea, ChassisArea, FruInventory, ProductArea};
use crate::ipmi::sdr::{self, AnalogFormat, Conversion, RawThresholds, SensorRecord};
use crate::ipmi::session::bmc::Application;
use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::{CompletionCode, NetFn, Request, BMC_SLAVE_ADDR};

/// IANA number 32473, reserved for documentation (RFC 5612): the simulator
/// claims no real vendor.
pub const SIM_MANUFACTURER_ID: u32 = 32473;
/// SEL capacity in entries.
pub const SEL_CAPACITY: usize = 512;
/// How long a power cycle keeps the host off.
pub const CYCLE_OFF_TIME: Duration = Duration::from_secs(1);
/// Sensors are re-evaluated at most this often (they drift slowly).
const SENSOR_TICK: Duration = Duration::from_millis(250);

/// A sensor's behaviour: its SDR and how its value moves.
#[derive(Debug, Clone)]
pub struct SensorSpec {
    /// The SDR describing it.
    pub record: SensorRecord,
    /// Value around which it drifts while powered on (in units).
    pub base: f64,
    /// Drift amplitude (in units).
    pub amplitude: f64,
    /// Drift period.
    pub period_s: f64,
    /// Has no reading while the host is off (fans, rails, CPU
    /// temperatures): Get Sensor Reading then says "reading unavailable".
    pub needs_power: bool,
}

/// The sensor set every simulated BMC has, and its SDR repository.
#[derive(Debug)]
pub struct SensorCatalog {
    /// Sensors by index; sensor numbers are index + 1.
    pub specs: Vec<SensorSpec>,
    /// Encoded SDR records (MC locator first), record IDs 1..=n.
    pub sdr: Vec<Vec<u8>>,
}

fn threshold_sensor(
    n: u8,
    id: &str,
    sensor_type: u8,
    unit: u8,
    m: i16,
    r_exp: i8,
    th: RawThresholds,
) -> SensorRecord {
    SensorRecord {
        record_id: u16::from(n) + 1,
        record_type: sdr::TYPE_FULL,
        owner_id: BMC_SLAVE_ADDR,
        owner_lun: 0,
        number: n,
        entity_id: match sensor_type {
            0x01 => 0x03,
            0x04 => 0x1D,
            _ => 0x07,
        },
        entity_instance: 1,
        sensor_type,
        event_reading_type: 0x01,
        percentage: false,
        modifier_mode: 0,
        base_unit: unit,
        modifier_unit: 0,
        conversion: Some(Conversion {
            format: AnalogFormat::Unsigned,
            linearization: 0,
            m,
            b: 0,
            b_exp: 0,
            r_exp,
        }),
        thresholds: Some(th),
        id: id.into(),
    }
}

/// Thresholds from (lnr, lc, lnc, unc, uc, unr) raw values; 0 = not set.
fn th(v: [u8; 6]) -> RawThresholds {
    let readable = [2u8, 1, 0, 3, 4, 5]
        .iter()
        .zip(v)
        .filter(|(_, raw)| *raw != 0)
        .fold(0, |m, (bit, _)| m | (1 << bit));
    RawThresholds {
        readable,
        lnr: v[0],
        lc: v[1],
        lnc: v[2],
        unc: v[3],
        uc: v[4],
        unr: v[5],
    }
}

impl SensorCatalog {
    /// CPU and inlet temperatures, four fans, 12V/5V/3.3V rails, two PSU
    /// status sensors and power draw, with realistic thresholds.
    pub fn standard() -> SensorCatalog {
        let temp = 0x01;
        let volt = 0x02;
        let fan = 0x04;
        let spec = |record, base, amplitude, period_s, needs_power| SensorSpec {
            record,
            base,
            amplitude,
            period_s,
            needs_power,
        };
        let mut specs = vec![
            spec(
                threshold_sensor(1, "CPU1 Temp", temp, 1, 1, 0, th([0, 5, 10, 85, 95, 100])),
                48.0,
                6.0,
                420.0,
                true,
            ),
            spec(
                threshold_sensor(2, "CPU2 Temp", temp, 1, 1, 0, th([0, 5, 10, 85, 95, 100])),
                45.0,
                6.0,
                510.0,
                true,
            ),
            spec(
                threshold_sensor(3, "Inlet Temp", temp, 1, 1, 0, th([0, 0, 5, 38, 42, 0])),
                23.0,
                1.5,
                900.0,
                false,
            ),
        ];
        for (i, base) in [(4u8, 6120.0), (5, 6240.0), (6, 5940.0), (7, 6060.0)] {
            let name = format!("Fan{}", i - 3);
            specs.push(spec(
                threshold_sensor(i, &name, fan, 18, 60, 0, th([10, 17, 25, 0, 0, 0])),
                base,
                240.0,
                300.0,
                true,
            ));
        }
        specs.push(spec(
            threshold_sensor(8, "12V", volt, 4, 6, -2, th([0, 180, 190, 210, 220, 0])),
            12.05,
            0.05,
            600.0,
            true,
        ));
        specs.push(spec(
            threshold_sensor(9, "5V", volt, 4, 25, -3, th([0, 180, 190, 210, 220, 0])),
            5.02,
            0.03,
            650.0,
            true,
        ));
        specs.push(spec(
            threshold_sensor(10, "3.3V", volt, 4, 165, -4, th([0, 180, 190, 210, 220, 0])),
            3.31,
            0.02,
            700.0,
            true,
        ));
        for (i, name) in [(11u8, "PSU1 Status"), (12, "PSU2 Status")] {
            let mut r = threshold_sensor(i, name, 0x08, 0, 1, 0, th([0; 6]));
            r.record_type = sdr::TYPE_COMPACT;
            r.event_reading_type = 0x6F;
            r.entity_id = 0x0A;
            r.conversion = None;
            r.thresholds = None;
            specs.push(spec(r, 0.0, 0.0, 1.0, false));
        }
        specs.push(spec(
            threshold_sensor(13, "Power", 0x0B, 6, 4, 0, th([0, 0, 0, 200, 225, 0])),
            310.0,
            40.0,
            240.0,
            true,
        ));
        let mut sdr = vec![sdr::encode_mc_locator(1, BMC_SLAVE_ADDR, "ipmigw sim BMC")];
        sdr.extend(specs.iter().map(|s| s.record.encode()));
        SensorCatalog { specs, sdr }
    }
}

/// A user as the model shows it (Get User Name / Access).
#[derive(Debug, Clone)]
pub struct UserSummary {
    /// Name.
    pub name: String,
    /// Privilege limit.
    pub privilege: Privilege,
    /// Enabled.
    pub enabled: bool,
}

/// Boot flags (parameter 5) and the other boot parameters as stored.
#[derive(Debug, Clone, Default)]
struct BootOptions {
    flags: [u8; 5],
    set_in_progress: u8,
    ack: [u8; 2],
}

/// One simulated BMC's state.
#[derive(Debug)]
pub struct SimBmc {
    index: u32,
    guid: [u8; 16],
    catalog: Arc<SensorCatalog>,
    fru: Vec<u8>,
    users: Vec<UserSummary>,
    started: Instant,
    power_on: bool,
    /// When a power cycle turns the host back on.
    power_on_at: Option<Instant>,
    on_since: Option<Instant>,
    on_minutes_before: u64,
    last_power_event: u8,
    restore_policy: u8,
    identify_until: Option<Instant>,
    identify_forced: bool,
    boot: BootOptions,
    resets: u32,
    /// Chassis Control commands run (tests check that nothing ran twice,
    /// or after a deadline).
    controls: u32,
    sensors: Vec<SensorState>,
    last_tick: Option<Instant>,
    sel: Vec<[u8; 16]>,
    sel_next_id: u16,
    sel_overflow: bool,
    sel_last_add: u32,
    sel_last_erase: u32,
    sel_clock_offset: i64,
    sel_reservation: u16,
    sdr_reservation: u16,
    /// The SDR repository's most recent addition timestamp (0 until a test
    /// says the repository changed).
    sdr_added: u32,
    reboot_requested: bool,
    /// Bad password threshold and lockout seconds (LAN parameter 26).
    lockout: Option<(u8, u16)>,
}

#[derive(Debug, Clone, Default)]
struct SensorState {
    raw: u8,
    /// Threshold status bits: b0 LNC, b1 LC, b2 LNR, b3 UNC, b4 UC, b5 UNR.
    status: u8,
    /// A test override, in units.
    forced: Option<f64>,
    /// No reading: a power-dependent sensor of a host that is off.
    unavailable: bool,
}

impl SimBmc {
    /// BMC number `index` (distinct device data and GUID), powered off.
    pub fn new(
        index: u32,
        catalog: Arc<SensorCatalog>,
        users: Vec<UserSummary>,
        now: Instant,
    ) -> SimBmc {
        let guid = sim_guid(index);
        let fru = FruInventory {
            chassis: Some(ChassisArea {
                chassis_type: 0x17,
                part_number: "SIM-CH-1U".into(),
                serial_number: format!("SIMCH{index:06}"),
                custom: vec![],
            }),
            board: Some(BoardArea {
                mfg_minutes: 15_000_000,
                manufacturer: "ipmigw".into(),
                product_name: "Simulated Board".into(),
                serial_number: format!("SIMBRD{index:06}"),
                part_number: "SIM-BRD-A".into(),
                ..BoardArea::default()
            }),
            product: Some(ProductArea {
                manufacturer: "ipmigw".into(),
                name: "ipmigw simulated server".into(),
                part_number: "SIM-SRV-1".into(),
                version: "1.0".into(),
                serial_number: format!("SIM{index:06}"),
                asset_tag: format!("bmc{index}"),
                ..ProductArea::default()
            }),
            warnings: vec![],
        }
        .encode();
        let sensors = vec![SensorState::default(); catalog.specs.len()];
        let mut bmc = SimBmc {
            index,
            guid,
            catalog,
            fru,
            users,
            started: now,
            power_on: false,
            power_on_at: None,
            on_since: None,
            on_minutes_before: 0,
            last_power_event: 0,
            restore_policy: 1,
            identify_until: None,
            identify_forced: false,
            boot: BootOptions::default(),
            resets: 0,
            controls: 0,
            sensors,
            last_tick: None,
            sel: Vec::new(),
            sel_next_id: 1,
            sel_overflow: false,
            sel_last_add: 0,
            sel_last_erase: 0,
            sel_clock_offset: 0,
            sel_reservation: 0,
            sdr_reservation: 0,
            sdr_added: 0,
            reboot_requested: false,
            lockout: None,
        };
        bmc.tick(now);
        bmc
    }

    /// Its system GUID.
    pub fn guid(&self) -> [u8; 16] {
        self.guid
    }

    /// Host power state (after any pending cycle at `now`).
    pub fn power_on(&mut self, now: Instant) -> bool {
        self.settle(now);
        self.power_on
    }

    /// Turns the host on or off as a power button would (records a SEL
    /// event); for demos and tests that want a running host.
    pub fn set_host_power(&mut self, on: bool, now: Instant) {
        self.settle(now);
        if self.power_on != on {
            self.set_power(on, now);
        }
    }

    /// Boot device selector and (valid, persistent, efi) flags.
    pub fn boot_flags(&self) -> (u8, bool, bool, bool) {
        let f = self.boot.flags;
        (
            (f[1] >> 2) & 0x0F,
            f[0] & 0x80 != 0,
            f[0] & 0x40 != 0,
            f[0] & 0x20 != 0,
        )
    }

    /// The five boot flag bytes as last set (parameter 5).
    pub fn boot_flag_bytes(&self) -> [u8; 5] {
        self.boot.flags
    }

    /// Chassis Control commands run so far.
    pub fn controls(&self) -> u32 {
        self.controls
    }

    /// Number of resets done.
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// SEL entries, raw.
    pub fn sel(&self) -> &[[u8; 16]] {
        &self.sel
    }

    /// Forces a sensor to `value` (units), or back to drifting with `None`.
    /// Returns false for an unknown sensor name.
    pub fn force_sensor(&mut self, name: &str, value: Option<f64>, now: Instant) -> bool {
        let Some(i) = self.catalog.specs.iter().position(|s| s.record.id == name) else {
            return false;
        };
        self.sensors[i].forced = value;
        self.last_tick = None;
        self.tick(now);
        true
    }

    /// Marks the SDR repository as changed (a new addition timestamp), as
    /// a BMC does after a firmware update adds records.
    pub fn touch_sdr(&mut self, timestamp: u32) {
        self.sdr_added = timestamp;
    }

    /// True once after a Cold/Warm Reset: the I/O layer then forgets every
    /// session, as a rebooting BMC does.
    pub fn take_reboot_request(&mut self) -> bool {
        std::mem::take(&mut self.reboot_requested)
    }

    fn settle(&mut self, now: Instant) {
        if let Some(at) = self.power_on_at {
            if now >= at {
                self.power_on_at = None;
                self.set_power(true, now);
            }
        }
    }

    fn set_power(&mut self, on: bool, now: Instant) {
        if on == self.power_on {
            return;
        }
        self.power_on = on;
        if on {
            self.on_since = Some(now);
            // The host boots: a one-shot boot override is used up.
            if self.boot.flags[0] & 0x40 == 0 {
                self.boot.flags[0] &= !0x80;
            }
        } else if let Some(since) = self.on_since.take() {
            self.on_minutes_before += now.saturating_duration_since(since).as_secs() / 60;
        }
        // Power Unit sensor event: "Power off/down" asserted when off,
        // deasserted when on.
        self.add_system_event(
            0x09,
            0x00,
            0x6F | if on { 0x80 } else { 0 },
            [0x00, 0xFF, 0xFF],
        );
        self.last_tick = None;
        self.tick(now);
    }

    fn sel_time(&self) -> u32 {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        (unix + self.sel_clock_offset).clamp(0, i64::from(u32::MAX)) as u32
    }

    fn add_system_event(
        &mut self,
        sensor_type: u8,
        sensor_number: u8,
        dir_type: u8,
        data: [u8; 3],
    ) {
        let mut r = [0u8; 16];
        r[2] = 0x02;
        r[7] = BMC_SLAVE_ADDR;
        r[9] = 0x04;
        r[10] = sensor_type;
        r[11] = sensor_number;
        r[12] = dir_type;
        r[13..16].copy_from_slice(&data);
        self.add_sel(r);
    }

    fn add_sel(&mut self, mut r: [u8; 16]) -> Option<u16> {
        if self.sel.len() >= SEL_CAPACITY {
            self.sel_overflow = true;
            return None;
        }
        let id = self.sel_next_id;
        self.sel_next_id = self.sel_next_id.wrapping_add(1).clamp(1, 0xFFFE);
        r[0..2].copy_from_slice(&id.to_le_bytes());
        let now = self.sel_time();
        if r[2] < 0xE0 {
            r[3..7].copy_from_slice(&now.to_le_bytes());
        }
        self.sel.push(r);
        self.sel_last_add = now;
        // Any SEL change cancels readers' reservations.
        self.sel_reservation = self.sel_reservation.wrapping_add(1);
        Some(id)
    }

    /// Moves sensor values to `now` and logs threshold crossings.
    fn tick(&mut self, now: Instant) {
        self.settle(now);
        if self
            .last_tick
            .is_some_and(|t| now.saturating_duration_since(t) < SENSOR_TICK)
        {
            return;
        }
        self.last_tick = Some(now);
        let t = now.saturating_duration_since(self.started).as_secs_f64();
        let catalog = self.catalog.clone();
        for (i, spec) in catalog.specs.iter().enumerate() {
            let Some(conv) = spec.record.conversion else {
                // Discrete PSU status: present, no failure.
                self.sensors[i].raw = 0;
                self.sensors[i].status = 0x01;
                continue;
            };
            // A host that is off does not power its fans, rails and CPU
            // sensors: as on a real BMC their reading is unavailable (not a
            // 0 that passes as `ok` below every lower threshold), and no
            // threshold events are logged for them.
            if spec.needs_power && !self.power_on && self.sensors[i].forced.is_none() {
                self.sensors[i] = SensorState {
                    unavailable: true,
                    ..SensorState::default()
                };
                continue;
            }
            self.sensors[i].unavailable = false;
            let phase = f64::from(self.index) * 0.7 + i as f64;
            let value = self.sensors[i].forced.unwrap_or_else(|| {
                spec.base
                    + spec.amplitude * (std::f64::consts::TAU * t / spec.period_s + phase).sin()
            });
            let step = f64::from(conv.m) * 10f64.powi(conv.r_exp.into());
            let raw = (value / step).round().clamp(0.0, 255.0) as u8;
            let th = spec.record.thresholds.unwrap_or_default();
            let mut status = 0u8;
            for (bit, lower, limit) in [
                (0u8, true, th.lnc),
                (1, true, th.lc),
                (2, true, th.lnr),
                (3, false, th.unc),
                (4, false, th.uc),
                (5, false, th.unr),
            ] {
                let readable = th.readable & (1 << bit) != 0;
                if readable && ((lower && raw <= limit) || (!lower && raw >= limit)) {
                    status |= 1 << bit;
                }
            }
            let old = self.sensors[i].status;
            self.sensors[i].raw = raw;
            self.sensors[i].status = status;
            for (bit, offset, limit) in [
                (0u8, 0x00u8, th.lnc),
                (1, 0x02, th.lc),
                (2, 0x04, th.lnr),
                (3, 0x07, th.unc),
                (4, 0x09, th.uc),
                (5, 0x0B, th.unr),
            ] {
                let was = old & (1 << bit) != 0;
                let is = status & (1 << bit) != 0;
                if was != is {
                    let dir = if is { 0x00 } else { 0x80 };
                    // Event data 1: trigger reading in byte 2, threshold in byte 3.
                    self.add_system_event(
                        spec.record.sensor_type,
                        spec.record.number,
                        dir | 0x01,
                        [0x50 | offset, raw, limit],
                    );
                }
            }
        }
    }

    fn chassis_control(&mut self, action: u8, now: Instant) -> CompletionCode {
        self.settle(now);
        match action {
            0 => {
                self.power_on_at = None;
                self.set_power(false, now);
            }
            1 => {
                self.last_power_event = 0x10;
                self.set_power(true, now);
            }
            2..=4 if !self.power_on => return CompletionCode::NOT_SUPPORTED_IN_STATE,
            2 => {
                self.set_power(false, now);
                self.last_power_event = 0x10;
                self.power_on_at = Some(now + CYCLE_OFF_TIME);
            }
            3 => {
                self.resets += 1;
                if self.boot.flags[0] & 0x40 == 0 {
                    self.boot.flags[0] &= !0x80;
                }
                // System Boot Initiated: initiated by hard reset.
                self.add_system_event(0x1D, 0x00, 0x6F, [0x01, 0xFF, 0xFF]);
            }
            4 => self.add_system_event(0x13, 0x00, 0x6F, [0x00, 0xFF, 0xFF]),
            5 => self.set_power(false, now),
            _ => return CompletionCode::INVALID_DATA_FIELD,
        }
        CompletionCode::OK
    }

    fn chassis_status(&mut self, now: Instant) -> Vec<u8> {
        self.settle(now);
        let identify = match self.identify_until {
            _ if self.identify_forced => 2,
            Some(t) if t > now => 1,
            _ => 0,
        };
        vec![
            u8::from(self.power_on) | (self.restore_policy & 3) << 5,
            self.last_power_event,
            0x40 | identify << 4,
        ]
    }

    fn poh_minutes(&self, now: Instant) -> u64 {
        self.on_minutes_before
            + self
                .on_since
                .map_or(0, |s| now.saturating_duration_since(s).as_secs() / 60)
    }

    fn sensor_index(&self, number: u8) -> Option<usize> {
        let i = usize::from(number).checked_sub(1)?;
        (i < self.catalog.specs.len()).then_some(i)
    }

    fn device_id(&self) -> Vec<u8> {
        let m = SIM_MANUFACTURER_ID.to_le_bytes();
        let product = (self.index & 0xFFFF) as u16;
        let mut d = vec![0x20, 0x01, 0x02, 0x10, 0x02, 0x9F, m[0], m[1], m[2]];
        d.extend_from_slice(&product.to_le_bytes());
        d.extend_from_slice(&self.index.to_le_bytes());
        d
    }

    fn boot_get(&self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let Some(&param) = d.first() else {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        };
        let mut out = vec![0x01, param & 0x7F];
        match param & 0x7F {
            0 => out.push(self.boot.set_in_progress),
            3 => out.push(0x1F),
            4 => out.extend_from_slice(&self.boot.ack),
            5 => out.extend_from_slice(&self.boot.flags),
            // 0x80: parameter not supported.
            _ => return (CompletionCode(0x80), vec![]),
        }
        (CompletionCode::OK, out)
    }

    fn boot_set(&mut self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let Some((&param, data)) = d.split_first() else {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        };
        match (param & 0x7F, data) {
            (0, [v, ..]) => self.boot.set_in_progress = v & 3,
            (3, [_, ..]) => {}
            (4, [mask, v, ..]) => self.boot.ack = [*mask, *v],
            (5, [a, b, c, dd, e, ..]) => {
                let dev = (b >> 2) & 0x0F;
                if !matches!(dev, 0..=6 | 0xF) {
                    return (CompletionCode::INVALID_DATA_FIELD, vec![]);
                }
                self.boot.flags = [*a, *b, *c, *dd, *e];
            }
            (0 | 3 | 4 | 5, _) => return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]),
            _ => return (CompletionCode(0x80), vec![]),
        }
        (CompletionCode::OK, vec![])
    }

    fn get_sdr(&self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        if d.len() < 6 {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        }
        let reservation = u16::from_le_bytes([d[0], d[1]]);
        let id = u16::from_le_bytes([d[2], d[3]]);
        let (offset, count) = (usize::from(d[4]), usize::from(d[5]));
        if offset != 0 && reservation != self.sdr_reservation {
            return (CompletionCode::RESERVATION_CANCELLED, vec![]);
        }
        let sdr = &self.catalog.sdr;
        let idx = match id {
            0x0000 => 0,
            0xFFFF => sdr.len() - 1,
            id => usize::from(id) - 1,
        };
        let Some(rec) = sdr.get(idx) else {
            return (CompletionCode::NOT_PRESENT, vec![]);
        };
        if offset > rec.len() {
            return (CompletionCode::PARAMETER_OUT_OF_RANGE, vec![]);
        }
        let next: u16 = if idx + 1 == sdr.len() {
            0xFFFF
        } else {
            idx as u16 + 2
        };
        let mut out = next.to_le_bytes().to_vec();
        let end = if count == 0xFF {
            rec.len()
        } else {
            (offset + count).min(rec.len())
        };
        out.extend_from_slice(&rec[offset..end]);
        (CompletionCode::OK, out)
    }

    fn get_sel_entry(&self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        if d.len() < 6 {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        }
        let reservation = u16::from_le_bytes([d[0], d[1]]);
        let id = u16::from_le_bytes([d[2], d[3]]);
        let (offset, count) = (usize::from(d[4]), usize::from(d[5]));
        if (offset != 0 || reservation != 0) && reservation != self.sel_reservation {
            return (CompletionCode::RESERVATION_CANCELLED, vec![]);
        }
        let idx = match id {
            0x0000 if !self.sel.is_empty() => Some(0),
            0xFFFF if !self.sel.is_empty() => Some(self.sel.len() - 1),
            id => self
                .sel
                .iter()
                .position(|r| u16::from_le_bytes([r[0], r[1]]) == id),
        };
        let Some(idx) = idx else {
            return (CompletionCode::NOT_PRESENT, vec![]);
        };
        if offset >= 16 {
            return (CompletionCode::PARAMETER_OUT_OF_RANGE, vec![]);
        }
        let next = self
            .sel
            .get(idx + 1)
            .map_or(0xFFFF, |r| u16::from_le_bytes([r[0], r[1]]));
        let mut out = next.to_le_bytes().to_vec();
        let end = if count == 0xFF {
            16
        } else {
            (offset + count).min(16)
        };
        out.extend_from_slice(&self.sel[idx][offset..end]);
        (CompletionCode::OK, out)
    }

    fn clear_sel(&mut self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        if d.len() < 6 {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        }
        if u16::from_le_bytes([d[0], d[1]]) != self.sel_reservation {
            return (CompletionCode::RESERVATION_CANCELLED, vec![]);
        }
        if &d[2..5] != b"CLR" {
            return (CompletionCode::INVALID_DATA_FIELD, vec![]);
        }
        if d[5] == 0xAA {
            self.sel.clear();
            self.sel_overflow = false;
            self.sel_last_erase = self.sel_time();
            self.sel_reservation = self.sel_reservation.wrapping_add(1);
        }
        (CompletionCode::OK, vec![0x01])
    }

    fn read_fru(&self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let [id, lo, hi, count, ..] = d else {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        };
        if *id != 0 {
            return (CompletionCode::NOT_PRESENT, vec![]);
        }
        let offset = usize::from(u16::from_le_bytes([*lo, *hi]));
        if offset > self.fru.len() {
            return (CompletionCode::PARAMETER_OUT_OF_RANGE, vec![]);
        }
        // Real BMCs cap one read well below the datagram size.
        if *count > 64 {
            return (CompletionCode::CANNOT_RETURN_BYTES, vec![]);
        }
        let end = (offset + usize::from(*count)).min(self.fru.len());
        let mut out = vec![(end - offset) as u8];
        out.extend_from_slice(&self.fru[offset..end]);
        (CompletionCode::OK, out)
    }

    /// User `uid`: user 1 is the null (empty-name) user, when there is
    /// one; named users follow from user 2 on, in order.
    fn user_by_id(&self, uid: u8) -> Option<&UserSummary> {
        match uid {
            0 => None,
            1 => self.users.iter().find(|u| u.name.is_empty()),
            _ => self
                .users
                .iter()
                .filter(|u| !u.name.is_empty())
                .nth(usize::from(uid) - 2),
        }
    }

    fn user_access(&self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let Some(&uid) = d.get(1) else {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        };
        let max = (self.users.len() + 1).max(10) as u8;
        let uid = uid & 0x3F;
        if uid == 0 || uid > max {
            return (CompletionCode::INVALID_DATA_FIELD, vec![]);
        }
        let enabled = self.users.iter().filter(|u| u.enabled).count() as u8;
        // Byte 4: IPMI messaging (bit 4) and the privilege limit; an absent
        // user (the null user without the anonymous profile) has no access.
        let (status, access) = match self.user_by_id(uid) {
            Some(u) if u.enabled => (0x40, 0x10 | u.privilege.level()),
            Some(u) => (0x80, u.privilege.level()),
            None => (0x00, 0x0F),
        };
        (
            CompletionCode::OK,
            vec![max, status | enabled, 0x01, access],
        )
    }

    fn user_name(&self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let Some(&uid) = d.first() else {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        };
        let mut name = [0u8; 16];
        if let Some(u) = self.user_by_id(uid & 0x3F) {
            let n = u.name.as_bytes();
            name[..n.len().min(16)].copy_from_slice(&n[..n.len().min(16)]);
        }
        (CompletionCode::OK, name.to_vec())
    }

    /// Get LAN Configuration Parameters: only parameter 26, the bad
    /// password threshold (IPMI v2.0 rev 1.1 §23.2), which is what the
    /// lockout is; others are "not supported" (0x80).
    fn lan_parameter(&self, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let Some(&param) = d.get(1) else {
            return TOO_SHORT;
        };
        if param != 26 {
            return (CompletionCode(0x80), vec![]);
        }
        let (threshold, reset, lock) = match self.lockout {
            // Intervals are in tens of seconds.
            Some((n, secs)) => (n, 30u16, (secs / 10).max(1)),
            None => (0, 0, 0),
        };
        let mut v = vec![0x11, 0x00, threshold];
        v.extend_from_slice(&reset.to_le_bytes());
        v.extend_from_slice(&lock.to_le_bytes());
        ok(v)
    }

    /// Sets what the bad password threshold parameter reports: failures
    /// before a lockout and its length in seconds; None: no lockout.
    pub fn set_lockout(&mut self, lockout: Option<(u8, u16)>) {
        self.lockout = lockout;
    }
}

impl Application for SimBmc {
    fn execute(
        &mut self,
        now: Instant,
        _privilege: Privilege,
        req: &Request,
    ) -> (CompletionCode, Vec<u8>) {
        self.tick(now);
        let cmd = CommandId::new(req.netfn, req.cmd);
        let d = &req.data;
        match req.netfn {
            NetFn::APP => self.app(cmd, d),
            NetFn::CHASSIS => self.chassis(now, cmd, d),
            NetFn::SENSOR_EVENT => self.sensor_event(cmd, d),
            NetFn::STORAGE => self.storage(cmd, d),
            NetFn::TRANSPORT if cmd == id::GET_LAN_CONFIGURATION_PARAMETERS => {
                self.lan_parameter(d)
            }
            _ => (CompletionCode::INVALID_COMMAND, vec![]),
        }
    }
}

fn ok(v: Vec<u8>) -> (CompletionCode, Vec<u8>) {
    (CompletionCode::OK, v)
}

const TOO_SHORT: (CompletionCode, Vec<u8>) = (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);

// === the simulated BMC's commands, by netFn ===

impl SimBmc {
    fn app(&mut self, cmd: CommandId, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        match cmd {
            id::GET_DEVICE_ID => ok(self.device_id()),
            id::COLD_RESET | id::WARM_RESET => {
                self.reboot_requested = true;
                ok(vec![])
            }
            id::GET_SELF_TEST_RESULTS => ok(vec![0x55, 0x00]),
            id::GET_DEVICE_GUID => ok(self.guid.to_vec()),
            id::GET_CHANNEL_ACCESS => ok(vec![0x22, 0x04]),
            id::GET_CHANNEL_INFO => ok(vec![0x01, 0x04, 0x01, 0x80, 0xF2, 0x1B, 0x00, 0x00, 0x00]),
            id::GET_USER_ACCESS => self.user_access(d),
            id::GET_USER_NAME => self.user_name(d),
            _ => (CompletionCode::INVALID_COMMAND, vec![]),
        }
    }

    fn chassis(&mut self, now: Instant, cmd: CommandId, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        match cmd {
            id::GET_CHASSIS_CAPABILITIES => ok(vec![0x00, 0x20, 0x20, 0x20, 0x20]),
            id::GET_CHASSIS_STATUS => ok(self.chassis_status(now)),
            id::CHASSIS_CONTROL => match d.first() {
                Some(a) => {
                    self.controls += 1;
                    (self.chassis_control(a & 0x0F, now), vec![])
                }
                None => TOO_SHORT,
            },
            id::CHASSIS_IDENTIFY => {
                let secs = d.first().copied().unwrap_or(15);
                self.identify_forced = d.get(1).is_some_and(|b| b & 1 == 1);
                self.identify_until = (secs > 0).then(|| now + Duration::from_secs(secs.into()));
                ok(vec![])
            }
            id::SET_POWER_RESTORE_POLICY => match d.first() {
                Some(p) => {
                    if p & 7 < 3 {
                        self.restore_policy = p & 7;
                    }
                    ok(vec![0x07])
                }
                None => TOO_SHORT,
            },
            id::GET_SYSTEM_RESTART_CAUSE => ok(vec![0x01, 0x01]),
            id::SET_SYSTEM_BOOT_OPTIONS => self.boot_set(d),
            id::GET_SYSTEM_BOOT_OPTIONS => self.boot_get(d),
            id::GET_POH_COUNTER => {
                let count = (self.poh_minutes(now) / 60) as u32;
                let mut v = vec![60];
                v.extend_from_slice(&count.to_le_bytes());
                ok(v)
            }
            _ => (CompletionCode::INVALID_COMMAND, vec![]),
        }
    }

    fn sensor_event(&mut self, cmd: CommandId, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let known = matches!(
            cmd,
            id::GET_SENSOR_READING
                | id::GET_SENSOR_THRESHOLD
                | id::GET_SENSOR_HYSTERESIS
                | id::GET_SENSOR_EVENT_ENABLE
                | id::GET_SENSOR_TYPE
        );
        if !known {
            return (CompletionCode::INVALID_COMMAND, vec![]);
        }
        let Some(i) = d.first().and_then(|n| self.sensor_index(*n)) else {
            return (CompletionCode::NOT_PRESENT, vec![]);
        };
        let (spec, st) = (&self.catalog.specs[i], &self.sensors[i]);
        let r = &spec.record;
        match cmd {
            // Byte 2: event messages and scanning enabled, bit 5 "reading
            // unavailable" (IPMI v2.0 §35.14).
            id::GET_SENSOR_READING if r.is_threshold() => {
                let flags = 0xC0 | if st.unavailable { 0x20 } else { 0 };
                ok(vec![st.raw, flags, st.status | 0xC0])
            }
            id::GET_SENSOR_READING => ok(vec![0x00, 0xC0, st.status, 0x80]),
            id::GET_SENSOR_THRESHOLD => {
                let t = r.thresholds.unwrap_or_default();
                ok(vec![t.readable, t.lnc, t.lc, t.lnr, t.unc, t.uc, t.unr])
            }
            id::GET_SENSOR_HYSTERESIS => ok(vec![0, 0]),
            id::GET_SENSOR_EVENT_ENABLE => ok(vec![0xC0, 0, 0, 0, 0]),
            _ => ok(vec![r.sensor_type, r.event_reading_type]),
        }
    }

    fn storage(&mut self, cmd: CommandId, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        match cmd {
            id::GET_FRU_INVENTORY_AREA_INFO => match d.first() {
                Some(0) => {
                    let b = (self.fru.len() as u16).to_le_bytes();
                    ok(vec![b[0], b[1], 0x00])
                }
                Some(_) => (CompletionCode::NOT_PRESENT, vec![]),
                None => TOO_SHORT,
            },
            id::READ_FRU_DATA => self.read_fru(d),
            id::GET_SDR_REPOSITORY_INFO => {
                let n = (self.catalog.sdr.len() as u16).to_le_bytes();
                let a = self.sdr_added.to_le_bytes();
                ok(vec![
                    0x51, n[0], n[1], 0x00, 0x08, a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0x02,
                ])
            }
            id::RESERVE_SDR_REPOSITORY => {
                self.sdr_reservation = self.sdr_reservation.wrapping_add(1).max(1);
                ok(self.sdr_reservation.to_le_bytes().to_vec())
            }
            id::GET_SDR => self.get_sdr(d),
            id::GET_SEL_INFO => ok(self.sel_info()),
            id::RESERVE_SEL => {
                self.sel_reservation = self.sel_reservation.wrapping_add(1).max(1);
                ok(self.sel_reservation.to_le_bytes().to_vec())
            }
            id::GET_SEL_ENTRY => self.get_sel_entry(d),
            id::ADD_SEL_ENTRY => match <[u8; 16]>::try_from(d) {
                Ok(r) => match self.add_sel(r) {
                    Some(id) => ok(id.to_le_bytes().to_vec()),
                    None => (CompletionCode(0xC4), vec![]),
                },
                Err(_) => TOO_SHORT,
            },
            id::CLEAR_SEL => self.clear_sel(d),
            id::GET_SEL_TIME => ok(self.sel_time().to_le_bytes().to_vec()),
            id::SET_SEL_TIME => match d.get(..4) {
                Some(t) => {
                    let want = i64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
                    let unix = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    self.sel_clock_offset = want - unix;
                    ok(vec![])
                }
                None => TOO_SHORT,
            },
            _ => (CompletionCode::INVALID_COMMAND, vec![]),
        }
    }

    fn sel_info(&self) -> Vec<u8> {
        let n = (self.sel.len() as u16).to_le_bytes();
        let free = (((SEL_CAPACITY - self.sel.len()) * 16) as u16).to_le_bytes();
        let mut v = vec![0x51, n[0], n[1], free[0], free[1]];
        v.extend_from_slice(&self.sel_last_add.to_le_bytes());
        v.extend_from_slice(&self.sel_last_erase.to_le_bytes());
        v.push(0x02 | if self.sel_overflow { 0x80 } else { 0 });
        v
    }
}

/// A GUID distinct per BMC index, stable across runs: a version 4, RFC 4122
/// variant GUID in IPMI byte order (time_low, time_mid, time_hi little-endian),
/// so that ipmitool and freeipmi decode it the way we print it.
pub fn sim_guid(index: u32) -> [u8; 16] {
    let mut g = [
        0, 0, 0, 0, 0x5F, 0x8E, 0x1B, 0x4D, 0x9A, 0x53, b'I', b'P', b'M', b'I', b'G', b'W',
    ];
    g[0..4].copy_from_slice(&index.to_le_bytes());
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bmc() -> (SimBmc, Instant) {
        let now = Instant::now();
        (
            SimBmc::new(7, Arc::new(SensorCatalog::standard()), vec![], now),
            now,
        )
    }

    fn call(
        b: &mut SimBmc,
        now: Instant,
        netfn: NetFn,
        cmd: u8,
        data: Vec<u8>,
    ) -> (CompletionCode, Vec<u8>) {
        b.execute(
            now,
            Privilege::Administrator,
            &Request::to_bmc(netfn, cmd, 0, data),
        )
    }

    #[test]
    fn power_state_machine_and_sel() {
        let (mut b, t0) = bmc();
        assert!(!b.power_on(t0));
        assert_eq!(
            call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![2]).0,
            CompletionCode::NOT_SUPPORTED_IN_STATE,
            "cycle while off"
        );
        assert!(call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![1]).0.is_ok());
        assert!(b.power_on(t0));
        assert_eq!(
            call(&mut b, t0, NetFn::CHASSIS, 0x01, vec![]).1[..2],
            [0x21, 0x10]
        );
        assert!(call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![2]).0.is_ok());
        assert!(!b.power_on(t0), "off during the cycle");
        assert!(b.power_on(t0 + CYCLE_OFF_TIME), "back on after it");
        call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![3]);
        assert_eq!(b.resets(), 1);
        let power_events = b.sel().iter().filter(|r| r[10] == 0x09).count();
        assert_eq!(power_events, 3, "on, off (cycle), on again");
    }

    #[test]
    fn sensors_drift_fall_to_zero_and_cross_thresholds() {
        let (mut b, t0) = bmc();
        let reading = |b: &mut SimBmc, n| call(b, t0, NetFn::SENSOR_EVENT, 0x2D, vec![n]).1[0];
        assert!(reading(&mut b, 3) > 15, "inlet is ambient even when off");
        call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![1]);
        let fan = reading(&mut b, 4);
        assert!((95..=110).contains(&fan), "fan raw {fan} (5880-6360 RPM)");
        let before = b.sel().len();
        assert!(b.force_sensor("CPU1 Temp", Some(97.0), t0));
        let after: Vec<_> = b.sel()[before..].to_vec();
        assert_eq!(after.len(), 2, "UNC and UC asserted");
        assert_eq!(after[0][13] & 0x0F, 0x07);
        assert_eq!(after[1][13] & 0x0F, 0x09);
        assert_eq!(
            call(&mut b, t0, NetFn::SENSOR_EVENT, 0x2D, vec![1]).1[2] & 0x3F,
            0x18
        );
        b.force_sensor("CPU1 Temp", None, t0);
        assert_eq!(b.sel().len(), before + 4, "and deasserted");
        assert!(!b.force_sensor("nope", Some(1.0), t0));
        assert_eq!(
            call(&mut b, t0, NetFn::SENSOR_EVENT, 0x2D, vec![99]).0,
            CompletionCode::NOT_PRESENT
        );
    }

    /// A powered-off host's fans, rails and CPU temperatures have no
    /// reading (as on real BMCs), not a 0 that passes as `ok` below their
    /// lower thresholds; the inlet and the PSUs still read.
    #[test]
    fn sensors_of_a_powered_off_host_are_unavailable() {
        let (mut b, t0) = bmc();
        let read = |b: &mut SimBmc, n| call(b, t0, NetFn::SENSOR_EVENT, 0x2D, vec![n]);
        let before = b.sel().len();
        for (n, name) in [(1, "CPU1 Temp"), (4, "Fan1"), (8, "12V"), (13, "Power")] {
            let (cc, d) = read(&mut b, n);
            assert_eq!(cc, CompletionCode::OK, "{name}");
            assert_eq!(d[1] & 0x20, 0x20, "{name}: reading unavailable");
            assert_eq!(d[2] & 0x3F, 0, "{name}: no threshold crossed");
        }
        let (_, inlet) = read(&mut b, 3);
        assert_eq!(inlet[1] & 0x20, 0, "the inlet reads while off");
        call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![1]);
        let (_, fan) = read(&mut b, 4);
        assert_eq!(fan[1] & 0x20, 0, "the fan reads once the host is on");
        assert_eq!(fan[2] & 0x3F, 0, "and is within its thresholds");
        call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![0]);
        assert_eq!(read(&mut b, 4).1[1] & 0x20, 0x20, "and not after power-off");
        let threshold_events = b.sel()[before..].iter().filter(|r| r[10] != 0x09).count();
        assert_eq!(threshold_events, 0, "powering off logs no threshold events");
        // A forced value (tests) reads even while off.
        b.force_sensor("Fan1", Some(600.0), t0);
        let (_, forced) = read(&mut b, 4);
        assert_eq!(
            (forced[1] & 0x20, forced[2] & 0x3F),
            (0, 0x07),
            "below LNC, LC, LNR"
        );
    }

    #[test]
    fn boot_flags_persist_only_when_asked() {
        let (mut b, t0) = bmc();
        assert!(call(
            &mut b,
            t0,
            NetFn::CHASSIS,
            0x08,
            vec![5, 0x80, 0x04, 0, 0, 0]
        )
        .0
        .is_ok());
        assert_eq!(b.boot_flags(), (1, true, false, false));
        assert_eq!(
            call(&mut b, t0, NetFn::CHASSIS, 0x09, vec![5, 0, 0]).1,
            [1, 5, 0x80, 0x04, 0, 0, 0]
        );
        call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![1]);
        assert!(!b.boot_flags().1, "one-shot override used by the boot");
        call(
            &mut b,
            t0,
            NetFn::CHASSIS,
            0x08,
            vec![5, 0xE0, 0x14, 0, 0, 0],
        );
        call(&mut b, t0, NetFn::CHASSIS, 0x02, vec![3]);
        assert_eq!(
            b.boot_flags(),
            (5, true, true, true),
            "persistent EFI cdrom survives"
        );
        assert_eq!(
            call(
                &mut b,
                t0,
                NetFn::CHASSIS,
                0x08,
                vec![5, 0x80, 0x28, 0, 0, 0]
            )
            .0,
            CompletionCode::INVALID_DATA_FIELD
        );
    }

    #[test]
    fn sdr_and_fru_decode_with_the_library() {
        let (mut b, t0) = bmc();
        let c = SensorCatalog::standard();
        assert_eq!(c.sdr.len(), 14);
        for rec in &c.sdr {
            assert!(sdr::parse_record(rec).is_ok());
        }
        let (cc, d) = call(&mut b, t0, NetFn::STORAGE, 0x23, vec![0, 0, 0, 0, 0, 0xFF]);
        assert!(cc.is_ok());
        assert_eq!(u16::from_le_bytes([d[0], d[1]]), 2);
        let inv = crate::ipmi::fru::parse(&b.fru).unwrap();
        assert_eq!(inv.product.unwrap().serial_number, "SIM000007");
        assert_eq!(inv.chassis.unwrap().chassis_type, 0x17);
        assert!(inv.warnings.is_empty());
        assert_ne!(sim_guid(1), sim_guid(2));
    }
}
