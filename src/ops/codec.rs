//! The one translation of an [`Op`]: from the verbs people type (the same
//! verbs for the gateway client and `ipmigw bmc`), to the HTTP request the
//! client sends, back from that request on the gateway, and the answer's
//! JSON and text shape. Both directions live here so that they cannot
//! drift apart (the shape of mini-redis's `parse_frames`/`into_frame`).
//!
//! Never decides policy and never touches a BMC.

use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorKind};
use super::{boot_flags, Op};
use crate::ipmi::cmd::chassis::PowerAction;
use crate::ipmi::cmd::name::is_session_management;
use crate::ipmi::cmd::RawRequest;
use crate::ipmi::wire::message::NetFn;

/// Most data bytes a raw request may carry.
pub const MAX_RAW_DATA: usize = 200;

/// The verbs: `Many` is how a verb names its BMCs (none for `ipmigw bmc`,
/// names and globs for the client), `One` how `raw` names its one BMC.
// Fields are documented by their own types (clap shows those).
#[allow(missing_docs)]
#[derive(Debug, Clone, Subcommand)]
pub enum OpVerb<Many: Args, One: Args> {
    /// Power status or control: power status|on|off|cycle|reset|soft|diag.
    Power {
        /// What to do.
        #[arg(value_enum)]
        action: PowerVerb,
        #[command(flatten)]
        at: Many,
    },
    /// Chassis status, or the boot device.
    Chassis {
        #[command(subcommand)]
        verb: ChassisVerb<Many>,
    },
    /// Management controller: mc info.
    Mc {
        #[command(subcommand)]
        verb: McVerb<Many>,
    },
    /// Every sensor with its reading and thresholds.
    Sensors {
        #[command(flatten)]
        at: Many,
    },
    /// System event log: sel list.
    Sel {
        #[command(subcommand)]
        verb: SelVerb<Many>,
    },
    /// FRU inventory of device 0.
    Fru {
        #[command(flatten)]
        at: Many,
    },
    /// One raw IPMI request: raw NETFN CMD [DATA...] (each a byte: 0x2c or 44).
    ///
    /// For example `raw 0x06 0x01` (Get Device ID). Policy names a raw
    /// request by what it does (`ipmigw policy explain --netfn 6 --cmd 1`
    /// shows how); its completion code decides the exit status.
    Raw {
        #[command(flatten)]
        at: One,
        /// Request netFn, even, 0x00-0x3e: 0x00 chassis, 0x04 sensor/event,
        /// 0x06 application, 0x0a storage, 0x0c transport, 0x2c group
        /// extension, 0x2e OEM.
        #[arg(value_name = "NETFN")]
        netfn: String,
        /// Command number within the netFn, 0x00-0xff.
        #[arg(value_name = "CMD")]
        cmd: String,
        /// Request data bytes in order (at most 200).
        #[arg(value_name = "DATA")]
        data: Vec<String>,
    },
}

/// `power` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PowerVerb {
    /// Is the host powered on?
    Status,
    /// Power on.
    On,
    /// Power off (hard).
    Off,
    /// Off, then on.
    Cycle,
    /// Hard reset.
    Reset,
    /// ACPI soft shutdown.
    Soft,
    /// Diagnostic interrupt.
    Diag,
}

/// `chassis` verbs.
// Fields are documented by their own types (clap shows those).
#[allow(missing_docs)]
#[derive(Debug, Clone, Subcommand)]
pub enum ChassisVerb<Many: Args> {
    /// Chassis status.
    Status {
        #[command(flatten)]
        at: Many,
    },
    /// Sets the boot device: chassis bootdev DEV [--persistent] [--efi]
    /// TARGET...; `chassis bootdev show TARGET...` shows it.
    Bootdev {
        /// The device, or `show`.
        #[arg(value_parser = ["pxe", "disk", "safe", "diag", "cdrom", "bios", "floppy", "none", "show"])]
        device: Option<String>,
        /// Keep the setting for every boot, not just the next.
        #[arg(long)]
        persistent: bool,
        /// Boot in EFI mode.
        #[arg(long)]
        efi: bool,
        #[command(flatten)]
        at: Many,
    },
}

/// `mc` verbs.
// Fields are documented by their own types (clap shows those).
#[allow(missing_docs)]
#[derive(Debug, Clone, Subcommand)]
pub enum McVerb<Many: Args> {
    /// Device ID and GUID.
    Info {
        #[command(flatten)]
        at: Many,
    },
}

/// `sel` verbs.
// Fields are documented by their own types (clap shows those).
#[allow(missing_docs)]
#[derive(Debug, Clone, Subcommand)]
pub enum SelVerb<Many: Args> {
    /// Every entry.
    List {
        #[command(flatten)]
        at: Many,
    },
}

/// No BMC named on the command line (`ipmigw bmc` names it with --host).
#[derive(Debug, Clone, Default, Args)]
pub struct Here {}

impl<Many: Args, One: Args> OpVerb<Many, One> {
    /// The operation the verb asks for; bad raw input is refused here,
    /// before anything is sent anywhere.
    pub fn op(&self) -> Result<Op, ApiError> {
        Ok(match self {
            OpVerb::Power { action, .. } => power_op(*action),
            OpVerb::Chassis { verb } => match verb {
                ChassisVerb::Status { .. } => Op::ChassisStatus,
                ChassisVerb::Bootdev { device: None, .. } => Op::BootGet,
                ChassisVerb::Bootdev {
                    device: Some(d), ..
                } if d == "show" => Op::BootGet,
                ChassisVerb::Bootdev {
                    device: Some(device),
                    persistent,
                    efi,
                    ..
                } => Op::BootSet(boot_flags(device, *persistent, *efi).ok_or_else(|| {
                    ApiError::new(ErrorKind::BadRequest, format!("bootdev {device:?}"))
                })?),
            },
            OpVerb::Mc { .. } => Op::McInfo,
            OpVerb::Sensors { .. } => Op::Sensors,
            OpVerb::Sel { .. } => Op::Sel,
            OpVerb::Fru { .. } => Op::Fru,
            OpVerb::Raw {
                netfn, cmd, data, ..
            } => Op::Raw(raw_from_words(netfn, cmd, data)?),
        })
    }

    /// The BMCs the verb names.
    pub fn many(&self) -> Option<&Many> {
        Some(match self {
            OpVerb::Power { at, .. } | OpVerb::Sensors { at } | OpVerb::Fru { at } => at,
            OpVerb::Chassis {
                verb: ChassisVerb::Status { at } | ChassisVerb::Bootdev { at, .. },
            } => at,
            OpVerb::Mc {
                verb: McVerb::Info { at },
            } => at,
            OpVerb::Sel {
                verb: SelVerb::List { at },
            } => at,
            OpVerb::Raw { .. } => return None,
        })
    }

    /// The one BMC `raw` names.
    pub fn one(&self) -> Option<&One> {
        match self {
            OpVerb::Raw { at, .. } => Some(at),
            _ => None,
        }
    }
}

fn power_op(action: PowerVerb) -> Op {
    let a = match action {
        PowerVerb::Status => return Op::PowerStatus,
        PowerVerb::On => PowerAction::On,
        PowerVerb::Off => PowerAction::Off,
        PowerVerb::Cycle => PowerAction::Cycle,
        PowerVerb::Reset => PowerAction::Reset,
        PowerVerb::Soft => PowerAction::Soft,
        PowerVerb::Diag => PowerAction::Diag,
    };
    Op::Power(a)
}

/// A byte as people type it: `0x2c`, `0X2C` or `44`.
pub fn parse_byte(s: &str, what: &str) -> Result<u8, ApiError> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse::<u8>(),
    };
    v.map_err(|_| {
        bad(format!(
            "raw {what} {s:?}: expected a byte, 0x00-0xff or 0-255"
        ))
    })
}

/// `raw NETFN CMD [DATA...]` as typed.
pub fn raw_from_words(netfn: &str, cmd: &str, data: &[String]) -> Result<RawRequest, ApiError> {
    let netfn = parse_byte(netfn, "NETFN")?;
    let cmd = parse_byte(cmd, "CMD")?;
    let data = data
        .iter()
        .map(|d| parse_byte(d, "DATA"))
        .collect::<Result<Vec<_>, _>>()?;
    raw_request(netfn, cmd, data)
}

/// A raw request, checked: an even request netFn, no session command, at
/// most [`MAX_RAW_DATA`] bytes.
pub fn raw_request(netfn: u8, cmd: u8, data: Vec<u8>) -> Result<RawRequest, ApiError> {
    if netfn > 0x3E || netfn % 2 == 1 {
        return Err(bad(format!(
            "netfn {netfn:#04x}: expected an even request netFn 0x00-0x3e"
        )));
    }
    if is_session_management(NetFn(netfn), cmd) {
        return Err(ApiError::new(
            ErrorKind::SessionCommandForbidden,
            "session-management commands are the gateway's own; they are never forwarded",
        ));
    }
    if data.len() > MAX_RAW_DATA {
        return Err(bad(format!(
            "data: {} bytes; at most {MAX_RAW_DATA}",
            data.len()
        )));
    }
    Ok(RawRequest {
        netfn: NetFn(netfn),
        cmd,
        data,
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message)
}

impl Op {
    /// The HTTP request for this operation on a BMC: method, the path
    /// after `/v1/bmcs/NAME/`, and the JSON body.
    pub fn to_http(&self) -> (Method, &'static str, Option<Value>) {
        match self {
            Op::McInfo => (Method::GET, "info", None),
            Op::PowerStatus => (Method::GET, "power", None),
            Op::Power(a) => (Method::POST, "power", Some(json!({"action": a.name()}))),
            Op::ChassisStatus => (Method::GET, "chassis", None),
            Op::BootGet => (Method::GET, "boot", None),
            Op::BootSet(f) => (
                Method::PUT,
                "boot",
                Some(json!({"device": f.device.name(), "persistent": f.persistent, "efi": f.efi})),
            ),
            // No verb builds a scrape (only /metrics/bmc does); its
            // defining read is the sensors'.
            Op::Sensors | Op::Scrape(_) => (Method::GET, "sensors", None),
            Op::Sel => (Method::GET, "sel", None),
            Op::Fru => (Method::GET, "fru", None),
            Op::Raw(r) => (
                Method::POST,
                "raw",
                Some(json!({"netfn": r.netfn.0, "cmd": r.cmd, "data": hex::encode(&r.data)})),
            ),
        }
    }

    /// The operation an HTTP request asks for (the inverse of
    /// [`Op::to_http`]); bad input is a 400, an unknown route a 405.
    pub fn from_http(method: &Method, what: &str, body: &[u8]) -> Result<Op, ApiError> {
        let json_body = || -> Result<Value, ApiError> {
            serde_json::from_slice(body).map_err(|e| bad(format!("body: expected JSON: {e}")))
        };
        Ok(match (method, what) {
            (&Method::GET, "info") => Op::McInfo,
            (&Method::GET, "power") => Op::PowerStatus,
            (&Method::POST, "power") => {
                let v = json_body()?;
                let a = v.get("action").and_then(Value::as_str).ok_or_else(|| {
                    bad("body: expected {\"action\":\"on|off|cycle|reset|soft|diag\"}")
                })?;
                Op::Power(PowerAction::from_name(a).ok_or_else(|| {
                    bad(format!(
                        "action {a:?}: expected on, off, cycle, reset, soft or diag"
                    ))
                })?)
            }
            (&Method::GET, "chassis") => Op::ChassisStatus,
            (&Method::GET, "boot") => Op::BootGet,
            (&Method::PUT, "boot") => {
                let v = json_body()?;
                let d = v.get("device").and_then(Value::as_str).ok_or_else(|| {
                    bad("body: expected {\"device\":\"pxe|disk|cdrom|bios|none\"}")
                })?;
                let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
                Op::BootSet(
                    boot_flags(d, flag("persistent"), flag("efi")).ok_or_else(|| {
                        bad(format!(
                        "device {d:?}: expected pxe, disk, safe, diag, cdrom, bios, floppy or none"
                    ))
                    })?,
                )
            }
            (&Method::GET, "sensors") => Op::Sensors,
            (&Method::GET, "sel") => Op::Sel,
            (&Method::GET, "fru") => Op::Fru,
            (&Method::POST, "raw") => Op::Raw(raw_from_json(&json_body()?)?),
            _ => {
                return Err(ApiError::new(
                    ErrorKind::MethodNotAllowed,
                    format!("{method} /v1/bmcs/NAME/{what} is not an API route"),
                ))
            }
        })
    }

    /// How its JSON answer is printed: one-line answers stay on one line
    /// (scripts grep them); records are pretty.
    pub fn json_text(&self, v: &Value) -> String {
        match self {
            Op::PowerStatus | Op::Power(_) | Op::BootSet(_) | Op::Raw(_) => v.to_string(),
            _ => serde_json::to_string_pretty(v).unwrap_or_default(),
        }
    }
}

/// `{"netfn":6,"cmd":1,"data":"hex"}`: `data` may be absent (no data), but
/// when present it is a string of hex bytes, never a number or null.
fn raw_from_json(v: &Value) -> Result<RawRequest, ApiError> {
    let byte = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .filter(|b| *b <= 0xFF)
            .map(|b| b as u8)
    };
    let netfn = byte("netfn").ok_or_else(|| bad("netfn: expected an even request netFn 0-62"))?;
    let cmd = byte("cmd").ok_or_else(|| bad("cmd: expected 0-255"))?;
    let data_hex = match v.get("data") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad("data: expected a string of hex bytes, e.g. \"0a1b\"")),
    };
    let data = hex::decode(data_hex).map_err(|_| bad("data: expected hex bytes"))?;
    raw_request(netfn, cmd, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::cmd::chassis::{BootDevice, BootFlags};

    fn every_op() -> Vec<Op> {
        let mut ops = vec![
            Op::McInfo,
            Op::PowerStatus,
            Op::ChassisStatus,
            Op::BootGet,
            Op::Sensors,
            Op::Sel,
            Op::Fru,
            Op::BootSet(BootFlags {
                valid: true,
                persistent: true,
                efi: false,
                device: BootDevice::from_name("pxe").unwrap(),
            }),
            Op::Raw(RawRequest {
                netfn: NetFn(0x2E),
                cmd: 1,
                data: vec![0x57, 1, 0, 9],
            }),
        ];
        for a in ["on", "off", "cycle", "reset", "soft", "diag"] {
            ops.push(Op::Power(PowerAction::from_name(a).unwrap()));
        }
        ops
    }

    /// Whatever the client sends, the gateway reads back as the same op.
    #[test]
    fn every_op_survives_the_trip_over_http() {
        for op in every_op() {
            let (method, what, body) = op.to_http();
            let bytes = body.map(|b| b.to_string()).unwrap_or_default();
            assert_eq!(
                Op::from_http(&method, what, bytes.as_bytes()).unwrap(),
                op,
                "{method} {what}"
            );
        }
    }

    #[test]
    fn raw_words_as_people_type_them() {
        let r = raw_from_words("0x06", "1", &[]).unwrap();
        assert_eq!((r.netfn, r.cmd), (NetFn::APP, 1));
        let r = raw_from_words("0x00", "0x08", &["0x05".into(), "128".into()]).unwrap();
        assert_eq!(r.data, [5, 128]);
        assert!(raw_from_words("0x07", "1", &[]).is_err(), "response netFn");
        assert!(raw_from_words("0x06", "0x3c", &[])
            .unwrap_err()
            .message
            .contains("session-management"));
        assert!(raw_from_words("0x06", "0x100", &[]).is_err());
        assert!(raw_from_words("0x06", "1", &["zz".into()])
            .unwrap_err()
            .message
            .contains("DATA"));
    }

    #[test]
    fn bad_http_input_is_named() {
        let e =
            Op::from_http(&Method::POST, "raw", br#"{"netfn":6,"cmd":1,"data":5}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        let e = Op::from_http(&Method::POST, "raw", br#"{"netfn":6,"cmd":60}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::SessionCommandForbidden);
        let e = Op::from_http(&Method::DELETE, "power", b"").unwrap_err();
        assert_eq!(e.kind, ErrorKind::MethodNotAllowed);
        let e = raw_from_words("7", "1", &[]).unwrap_err();
        assert!(e.message.contains("even"), "{e}");
        let e = raw_from_words("6", "0x1", &["300".into()]).unwrap_err();
        assert!(e.message.contains("DATA"), "{e}");
    }
}
