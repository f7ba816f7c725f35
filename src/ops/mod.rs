//! The operations a user can ask of one BMC (power, chassis, boot device,
//! controller info, sensors, event log, FRU, raw), shared by the gateway's
//! HTTP API and `ipmigw bmc`: the policy name of each, the IPMI request
//! that represents it in the audit trail, how it runs over [`Transact`],
//! and its answer as JSON (the API's shape) and as ipmitool-like text.
//!
//! Never decides policy and never writes audit records: callers do both
//! before an operation runs.

pub mod codec;
pub mod error;
pub mod scrape;
pub mod text;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use crate::bmc::{reads, BmcError, RawResponse, Transact};
use crate::ipmi::cmd::app::{format_guid, GetDeviceId, GetSystemGuid};
use crate::ipmi::cmd::chassis::{
    BootDevice, BootFlags, ChassisControl, GetBootFlags, GetChassisStatus, PowerAction,
    SetBootFlags,
};
use crate::ipmi::cmd::name::{classify, Classified};
use crate::ipmi::cmd::registry::id;
use crate::ipmi::cmd::{Command, RawRequest};
use crate::ipmi::fru;
use crate::ipmi::sel::{format_timestamp, sensor_type_name, SelRecord};

/// One operation on one BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Power state.
    PowerStatus,
    /// Power control.
    Power(PowerAction),
    /// Chassis status.
    ChassisStatus,
    /// Boot device, read.
    BootGet,
    /// Boot device, set.
    BootSet(BootFlags),
    /// Device ID and GUID.
    McInfo,
    /// Every sensor (SDR repository walk plus readings).
    Sensors,
    /// Every SEL entry.
    Sel,
    /// FRU inventory of device 0.
    Fru,
    /// A raw request.
    Raw(RawRequest),
    /// A Prometheus scrape: the chosen collectors, each answered or not
    /// within the scrape's time.
    Scrape(scrape::Collectors),
}

/// An operation's answer, both ways.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The API's JSON.
    pub json: Value,
    /// ipmitool-like text.
    pub text: String,
    /// Completion code of a raw request (non-zero is not an error for raw
    /// over the API; the caller decides).
    pub completion_code: Option<u8>,
    /// Response bytes, for the audit `result`.
    pub response_len: usize,
}

impl Op {
    /// The IPMI request that names this operation in policy and audit: the
    /// operation itself for single commands, the first or defining command
    /// of a multi-step read.
    pub fn representative(&self) -> RawRequest {
        match self {
            Op::PowerStatus | Op::ChassisStatus => GetChassisStatus.request(),
            Op::Power(a) => ChassisControl(*a).request(),
            Op::BootGet => GetBootFlags.request(),
            Op::BootSet(f) => SetBootFlags(*f).request(),
            Op::McInfo => GetDeviceId.request(),
            // Get Sensor Reading (sensor 0) stands for "read sensors".
            Op::Sensors => id::GET_SENSOR_READING.request(vec![0]),
            Op::Sel => id::GET_SEL_ENTRY.request(vec![]),
            Op::Fru => id::READ_FRU_DATA.request(vec![]),
            Op::Raw(r) => r.clone(),
            // A scrape's defining read is the sensors'.
            Op::Scrape(_) => id::GET_SENSOR_READING.request(vec![0]),
        }
    }

    /// Every command name the operation may send, as policy decides them:
    /// the representative request's own (and, for a raw Send Message, what
    /// it carries), plus the other kinds of command a composite read sends.
    pub fn classify(&self) -> Classified {
        let r = self.representative();
        let mut c = classify(r.netfn, r.cmd, &r.data);
        // A sensor walk reserves and reads the SDR repository, then reads
        // each sensor. (Device ID and System GUID are both mc.info; the SEL
        // and FRU reads send sel.read and fru.read only.)
        match self {
            Op::Sensors => c.also_sends("sdr.read"),
            Op::Scrape(cs) => cs.names().for_each(|n| c.also_sends(n)),
            _ => {}
        }
        c
    }

    /// Runs the operation; its answer's `response_len` counts the data
    /// bytes of every response it read (one for a single command, every
    /// step of a multi-step read).
    pub async fn run<T: Transact>(&self, t: &T) -> Result<Answer, BmcError> {
        let counted = Counted {
            inner: t,
            bytes: AtomicUsize::new(0),
        };
        let mut a = self.execute(&counted).await?;
        a.response_len = counted.bytes.load(Ordering::Relaxed);
        Ok(a)
    }

    async fn execute<T: Transact>(&self, t: &T) -> Result<Answer, BmcError> {
        let done = |json: Value, text: String| Answer {
            json,
            text,
            completion_code: None,
            response_len: 0,
        };
        Ok(match self {
            Op::PowerStatus => {
                let s = reads::run(t, &GetChassisStatus).await?;
                done(
                    json!({"power": if s.power_on { "on" } else { "off" }}),
                    text::power_status(s.power_on),
                )
            }
            Op::Power(a) => {
                reads::run(t, &ChassisControl(*a)).await?;
                done(
                    json!({"action": a.name(), "result": "ok"}),
                    text::power_action(*a),
                )
            }
            Op::ChassisStatus => {
                let s = reads::run(t, &GetChassisStatus).await?;
                done(
                    serde_json::to_value(&s).unwrap_or_default(),
                    text::chassis_status(&s),
                )
            }
            Op::BootGet => {
                let f = reads::run(t, &GetBootFlags).await?;
                done(
                    serde_json::to_value(f).unwrap_or_default(),
                    text::boot_flags(&f),
                )
            }
            Op::BootSet(f) => {
                reads::run(t, &SetBootFlags(*f)).await?;
                done(
                    json!({"device": f.device.name(), "persistent": f.persistent, "efi": f.efi}),
                    format!("Set Boot Device to {}", f.device.name()),
                )
            }
            Op::McInfo => {
                let d = reads::run(t, &GetDeviceId).await?;
                let guid = reads::run(t, &GetSystemGuid).await.ok();
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                v["system_guid"] = json!(guid.as_ref().map(format_guid));
                done(v, text::mc_info(&d, guid.as_ref()))
            }
            Op::Sensors => {
                let list = reads::read_sensors(t).await?;
                let v = list.iter().map(sensor_json).collect();
                done(Value::Array(v), text::sensors(&list))
            }
            Op::Sel => {
                let list = reads::read_sel(t).await?;
                let v = list.iter().map(sel_json).collect();
                done(Value::Array(v), text::sel_list(&list))
            }
            Op::Fru => fru_answer(t).await?,
            Op::Raw(req) => raw_answer(t, req).await?,
            Op::Scrape(c) => {
                let json = scrape::run(t, c).await?;
                let text = json.to_string();
                done(json, text)
            }
        })
    }
}

/// The FRU inventory of device 0.
async fn fru_answer<T: Transact>(t: &T) -> Result<Answer, BmcError> {
    let bytes = reads::read_fru(t, 0).await?;
    let inv = fru::parse(&bytes).map_err(|source| BmcError::Malformed {
        addr: t.addr(),
        command: "fru.read".into(),
        source,
    })?;
    Ok(Answer {
        json: serde_json::to_value(&inv).unwrap_or_default(),
        text: text::fru(&inv),
        completion_code: None,
        response_len: bytes.len(),
    })
}

/// A raw command: its completion code and data, whatever they are.
async fn raw_answer<T: Transact>(t: &T, req: &RawRequest) -> Result<Answer, BmcError> {
    let r = t.transact(req.clone()).await?;
    let text = if r.completion_code.is_ok() {
        text::raw_bytes(&r.data)
    } else {
        format!("completion code {}", r.completion_code)
    };
    Ok(Answer {
        json: json!({"completion_code": r.completion_code.0, "data": hex::encode(&r.data)}),
        text,
        completion_code: Some(r.completion_code.0),
        response_len: r.data.len(),
    })
}

/// One sensor as the API shows it.
fn sensor_json(s: &reads::SensorValue) -> Value {
    let thresholds: std::collections::BTreeMap<_, _> = s.thresholds.iter().cloned().collect();
    json!({"name": s.name, "number": s.number, "record_id": s.record_id,
           "sensor_type": s.sensor_type,
           "reading": s.reading, "unit": s.unit, "status": s.status,
           "thresholds": thresholds})
}

/// One SEL record as the API shows it.
fn sel_json(r: &SelRecord) -> Value {
    let (date, time) = r.timestamp.map(format_timestamp).unwrap_or_default();
    json!({"id": r.record_id, "record_type": r.record_type, "timestamp": r.timestamp,
           "date": date, "time": time,
           "sensor_type": r.event.map(|e| sensor_type_name(e.sensor_type)),
           "sensor_number": r.event.map(|e| e.sensor_number),
           "description": r.event.map(|e| e.description()),
           "direction": r.event.map(|e| e.direction())})
}

/// A [`Transact`] that counts the response bytes passing through it, for
/// the audit `result` record.
struct Counted<'a, T> {
    inner: &'a T,
    bytes: AtomicUsize,
}

impl<T: Transact> Transact for Counted<'_, T> {
    async fn transact(&self, req: RawRequest) -> Result<RawResponse, BmcError> {
        let r = self.inner.transact(req).await?;
        self.bytes.fetch_add(r.data.len(), Ordering::Relaxed);
        Ok(r)
    }
    fn addr(&self) -> std::net::SocketAddr {
        self.inner.addr()
    }
    fn sdr_cache(&self) -> Option<&reads::SdrCache> {
        self.inner.sdr_cache()
    }
}

/// Parses a boot device name and flags into the flags Set Boot Options writes.
pub fn boot_flags(device: &str, persistent: bool, efi: bool) -> Option<BootFlags> {
    Some(BootFlags {
        valid: true,
        persistent,
        efi,
        device: BootDevice::from_name(device)?,
    })
}
