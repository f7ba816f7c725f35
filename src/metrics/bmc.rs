//! One BMC's sensors under ipmi_exporter's names: `ipmi_up{collector}`,
//! `ipmi_scrape_duration_seconds`, the typed families (`ipmi_temperature_celsius`,
//! `ipmi_fan_speed_rpm`, `ipmi_fan_speed_ratio`, `ipmi_voltage_volts`,
//! `ipmi_current_amperes`, `ipmi_power_watts`, each with its `_state`) keyed
//! by `{id, name}`, and `ipmi_sensor_value`/`ipmi_sensor_state`
//! `{id, name, type}` for every other sensor. Which family a sensor lands in
//! follows the exporter's rule: the unit decides, and a percentage is a fan
//! ratio only on a fan.
//!
//! Renders values it is given: never reads a BMC and never decides who may
//! see them.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::{FloatGauge, Labels};
use crate::ipmi::sel::sensor_type_name;

/// A sensor as the gateway's sensor read reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// The exporter's `id` label (freeipmi prints the SDR record id; the
    /// gateway's read gives the sensor number).
    pub id: u32,
    /// ID string.
    pub name: String,
    /// Sensor type code.
    pub sensor_type: u8,
    /// Converted reading; `None` renders as NaN, as the exporter does for N/A.
    pub reading: Option<f64>,
    /// Unit text ("degrees C", "Volts", "% RPM", ...).
    pub unit: String,
    /// `ok`, `nc`, `cr`, `nr`, `ns` or a discrete state.
    pub status: String,
}

impl Sensor {
    /// Reads one entry of the API's sensor list; `None` when it lacks a
    /// field (the list is the gateway's own, but a renderer must not panic).
    pub fn from_json(v: &Value) -> Option<Sensor> {
        // freeipmi's id is the SDR record id; older answers carry only
        // the sensor number.
        let id = v.get("record_id").or_else(|| v.get("number"))?.as_u64()?;
        Some(Sensor {
            id: u32::try_from(id).ok()?,
            name: v.get("name")?.as_str()?.to_string(),
            sensor_type: u8::try_from(v.get("sensor_type")?.as_u64()?).ok()?,
            reading: v.get("reading").and_then(Value::as_f64),
            unit: v.get("unit")?.as_str()?.to_string(),
            status: v.get("status")?.as_str()?.to_string(),
        })
    }

    /// 0 nominal, 1 warning, 2 critical, NaN when there is no reading or
    /// no known state (the exporter's N/A).
    fn state(&self) -> f64 {
        match self.status.as_str() {
            "ok" => 0.0,
            "nc" => 1.0,
            "cr" | "nr" => 2.0,
            s => match s.strip_prefix("0x").map(|h| u16::from_str_radix(h, 16)) {
                Some(Ok(bits)) => discrete_state(self.sensor_type, bits),
                _ => f64::NAN,
            },
        }
    }
}

/// The severity of a discrete sensor's state bits, as freeipmi's default
/// interpretation rules (which ipmi_exporter reports) judge the common
/// sensor-specific types; NaN for the types it leaves uninterpreted.
fn discrete_state(sensor_type: u8, bits: u16) -> f64 {
    let any = |mask: u16| bits & mask != 0;
    match sensor_type {
        // Power Supply: failure or input lost critical, predictive failure
        // warning, presence nominal.
        0x08 if any(0b0011_1010) => 2.0,
        0x08 if any(0b0000_0100) => 1.0,
        0x08 => 0.0,
        // Processor: IERR, thermal trip, FRB failures critical.
        0x07 if any(0b0000_1111) => 2.0,
        0x07 => 0.0,
        // Physical security: any intrusion or violation critical.
        0x05 if any(0x7F) => 2.0,
        0x05 => 0.0,
        _ => f64::NAN,
    }
}

/// The family pair a sensor is exported in, and the scale of its value.
fn family_of(s: &Sensor) -> Option<(&'static str, &'static str, f64)> {
    let unit = s.unit.as_str();
    if unit.starts_with('%') {
        // ipmimonitoring prints "%" for any percentage; only a fan's is a ratio.
        return (s.sensor_type == 0x04).then_some(("fan_speed_ratio", "fan_speed_state", 0.01));
    }
    Some(match unit {
        "RPM" => ("fan_speed_rpm", "fan_speed_state", 1.0),
        "degrees C" => ("temperature_celsius", "temperature_state", 1.0),
        "Amps" => ("current_amperes", "current_state", 1.0),
        "Volts" => ("voltage_volts", "voltage_state", 1.0),
        "Watts" => ("power_watts", "power_state", 1.0),
        _ => return None,
    })
}

/// Help texts, one per family name.
const HELP: &[(&str, &str)] = &[
    ("fan_speed_rpm", "Fan speed in rotations per minute."),
    ("fan_speed_ratio", "Fan speed as a proportion of the maximum speed."),
    ("fan_speed_state", "Reported state of a fan speed sensor (0=nominal, 1=warning, 2=critical)."),
    ("temperature_celsius", "Temperature reading in degree Celsius."),
    ("temperature_state", "Reported state of a temperature sensor (0=nominal, 1=warning, 2=critical)."),
    ("voltage_volts", "Voltage reading in Volts."),
    ("voltage_state", "Reported state of a voltage sensor (0=nominal, 1=warning, 2=critical)."),
    ("current_amperes", "Current reading in Amperes."),
    ("current_state", "Reported state of a current sensor (0=nominal, 1=warning, 2=critical)."),
    ("power_watts", "Power reading in Watts."),
    ("power_state", "Reported state of a power sensor (0=nominal, 1=warning, 2=critical)."),
    ("sensor_value", "Generic data read from an IPMI sensor of unknown type, relying on labels for context."),
    ("sensor_state", "Indicates the severity of the state reported by an IPMI sensor (0=nominal, 1=warning, 2=critical)."),
];

/// What one scrape collected; a collector's field is `None` when it did
/// not finish (failed or ran out of the scrape's time).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The collectors asked for, in ipmi_exporter's words (`ipmi`, `bmc`,
    /// `chassis`, `sel`); empty means `ipmi` alone.
    pub collectors: Vec<String>,
    /// The sensors read, when the read finished.
    pub sensors: Option<Vec<Sensor>>,
    /// Firmware revision and IANA manufacturer number.
    pub bmc: Option<(String, u32)>,
    /// Whether the chassis power is on.
    pub chassis_power_on: Option<bool>,
    /// SEL entries and free bytes.
    pub sel: Option<(u64, u64)>,
    /// How long the scrape took.
    pub duration_s: f64,
}

impl Scrape {
    /// Reads a scrape operation's JSON answer (`{"ipmi": [..], "bmc": ..}`,
    /// `null` for an unfinished collector); what does not parse counts as
    /// unfinished.
    pub fn from_json(collectors: &[&str], v: &Value, duration_s: f64) -> Scrape {
        let sensors = v["ipmi"]
            .as_array()
            .map(|a| a.iter().filter_map(Sensor::from_json).collect());
        let bmc = v["bmc"]["firmware_revision"].as_str().and_then(|fw| {
            let id = u32::try_from(v["bmc"]["manufacturer_id"].as_u64()?).ok()?;
            Some((fw.to_string(), id))
        });
        let sel = v["sel"]["entries"]
            .as_u64()
            .zip(v["sel"]["free_bytes"].as_u64());
        Scrape {
            collectors: collectors.iter().map(|c| c.to_string()).collect(),
            sensors,
            bmc,
            chassis_power_on: v["chassis"]["power_on"].as_bool(),
            sel,
            duration_s,
        }
    }

    fn finished(&self, collector: &str) -> bool {
        match collector {
            "ipmi" => self.sensors.is_some(),
            "bmc" => self.bmc.is_some(),
            "chassis" => self.chassis_power_on.is_some(),
            "sel" => self.sel.is_some(),
            _ => false,
        }
    }
}

/// A few IANA enterprise numbers by name, as freeipmi prints them in
/// `ipmi_bmc_info`'s `manufacturer_id` ("NAME (NUMBER)"); others print the
/// number alone.
const MANUFACTURERS: &[(u32, &str)] = &[
    (2, "IBM"),
    (11, "Hewlett-Packard"),
    (343, "Intel Corporation"),
    (674, "Dell Inc."),
    (10368, "Fujitsu Siemens Computers"),
    (10876, "Super Micro Computer Inc."),
    (19046, "Lenovo Enterprise Business Group"),
    (32473, "Example Enterprise Number for Documentation Use"),
    (47196, "Hewlett Packard Enterprise"),
];

fn manufacturer_label(id: u32) -> String {
    match MANUFACTURERS.iter().find(|(n, _)| *n == id) {
        Some((_, name)) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

/// The non-sensor collectors' families: `ipmi_bmc_info`,
/// `ipmi_chassis_power_state`, `ipmi_sel_logs_count`,
/// `ipmi_sel_free_space_bytes`; each present only when its collector ran.
fn register_collectors(registry: &mut Registry, scrape: &Scrape) {
    if let Some((fw, id)) = &scrape.bmc {
        let info = Family::<Labels, FloatGauge>::default();
        info.get_or_create(&vec![
            ("firmware_revision", fw.clone()),
            ("manufacturer_id", manufacturer_label(*id)),
            // Not read: the gateway sends no Get System Info Parameters.
            ("system_firmware_version", "N/A".to_string()),
        ])
        .set(1.0);
        registry.register(
            "ipmi_bmc_info",
            "Constant metric with value '1' providing details about the BMC.",
            info,
        );
    }
    let single = |registry: &mut Registry, name: &str, help: &str, v: f64| {
        let g = FloatGauge::default();
        g.set(v);
        registry.register(name, help, g);
    };
    if let Some(on) = scrape.chassis_power_on {
        single(
            registry,
            "ipmi_chassis_power_state",
            "Current power state (1=on, 0=off).",
            f64::from(u8::from(on)),
        );
    }
    if let Some((entries, free)) = scrape.sel {
        single(
            registry,
            "ipmi_sel_logs_count",
            "Current number of log entries in the SEL.",
            entries as f64,
        );
        single(
            registry,
            "ipmi_sel_free_space_bytes",
            "Current free space remaining for new SEL entries.",
            free as f64,
        );
    }
}

/// Renders a scrape in the exposition format.
pub fn render(scrape: &Scrape) -> String {
    let mut registry = Registry::default();
    let families: Vec<(&str, Family<Labels, FloatGauge>)> = HELP
        .iter()
        .map(|(name, _)| (*name, Family::default()))
        .collect();
    let family = |name: &str| {
        &families
            .iter()
            .find(|(n, _)| *n == name)
            .expect("every family name is in HELP")
            .1
    };
    let up = Family::<Labels, FloatGauge>::default();
    let ipmi_only = ["ipmi".to_string()];
    let asked = if scrape.collectors.is_empty() {
        &ipmi_only[..]
    } else {
        &scrape.collectors[..]
    };
    for c in asked {
        up.get_or_create(&vec![("collector", c.clone())])
            .set(if scrape.finished(c) { 1.0 } else { 0.0 });
    }
    for s in scrape.sensors.iter().flatten() {
        let mut labels: Labels = vec![("id", s.id.to_string()), ("name", s.name.clone())];
        let value = s.reading.unwrap_or(f64::NAN);
        let (value_family, state_family, scale) = family_of(s).unwrap_or_else(|| {
            labels.push(("type", sensor_type_name(s.sensor_type).to_string()));
            ("sensor_value", "sensor_state", 1.0)
        });
        family(value_family)
            .get_or_create(&labels)
            .set(value * scale);
        family(state_family).get_or_create(&labels).set(s.state());
    }
    registry.register(
        "ipmi_up",
        "'1' if a scrape of the IPMI device was successful, '0' otherwise.",
        up,
    );
    let duration = FloatGauge::default();
    duration.set(scrape.duration_s);
    registry.register(
        "ipmi_scrape_duration_seconds",
        "Returns how long the scrape took to complete in seconds.",
        duration,
    );
    for ((name, f), (_, help)) in families.into_iter().zip(HELP) {
        registry.register(format!("ipmi_{name}"), *help, f);
    }
    register_collectors(&mut registry, scrape);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(
        id: u32,
        name: &str,
        ty: u8,
        reading: Option<f64>,
        unit: &str,
        status: &str,
    ) -> Sensor {
        Sensor {
            id,
            name: name.into(),
            sensor_type: ty,
            reading,
            unit: unit.into(),
            status: status.into(),
        }
    }

    #[test]
    fn sensors_land_in_the_exporters_families() {
        let scrape = Scrape {
            sensors: Some(vec![
                sensor(1, "CPU Temp", 0x01, Some(45.0), "degrees C", "ok"),
                sensor(2, "FAN1", 0x04, Some(4200.0), "RPM", "nc"),
                sensor(3, "FAN2", 0x04, Some(60.0), "% RPM", "cr"),
                sensor(4, "12V", 0x02, Some(12.1), "Volts", "ok"),
                sensor(5, "PSU Out", 0x08, Some(250.0), "Watts", "ok"),
                sensor(6, "PSU Amps", 0x03, Some(2.5), "Amps", "ok"),
                sensor(7, "Humidity", 0x0B, Some(40.0), "% unspecified", "ok"),
                sensor(8, "Intrusion", 0x05, None, "unspecified", "0x0000"),
                sensor(9, "PSU1", 0x08, None, "unspecified", "0x0003"),
                sensor(10, "Door", 0x15, None, "unspecified", "0x0001"),
            ]),
            duration_s: 0.25,
            ..Scrape::default()
        };
        let t = render(&scrape);
        for line in [
            "ipmi_up{collector=\"ipmi\"} 1.0",
            "ipmi_scrape_duration_seconds 0.25",
            "ipmi_temperature_celsius{id=\"1\",name=\"CPU Temp\"} 45.0",
            "ipmi_temperature_state{id=\"1\",name=\"CPU Temp\"} 0.0",
            "ipmi_fan_speed_rpm{id=\"2\",name=\"FAN1\"} 4200.0",
            "ipmi_fan_speed_state{id=\"2\",name=\"FAN1\"} 1.0",
            "ipmi_fan_speed_ratio{id=\"3\",name=\"FAN2\"} 0.6",
            "ipmi_fan_speed_state{id=\"3\",name=\"FAN2\"} 2.0",
            "ipmi_voltage_volts{id=\"4\",name=\"12V\"} 12.1",
            "ipmi_power_watts{id=\"5\",name=\"PSU Out\"} 250.0",
            "ipmi_current_amperes{id=\"6\",name=\"PSU Amps\"} 2.5",
            "ipmi_sensor_value{id=\"7\",name=\"Humidity\",type=\"Other\"} 40.0",
            "ipmi_sensor_value{id=\"8\",name=\"Intrusion\",type=\"Physical Security\"} NaN",
            "ipmi_sensor_state{id=\"9\",name=\"PSU1\",type=\"Power Supply\"} 2.0",
            "ipmi_sensor_state{id=\"8\",name=\"Intrusion\",type=\"Physical Security\"} 0.0",
        ] {
            assert!(t.contains(line), "missing {line:?} in\n{t}");
        }
        // A discrete type freeipmi does not interpret has no state.
        let door = t
            .lines()
            .find(|l| l.starts_with("ipmi_sensor_state{id=\"10\""));
        assert!(door.is_some_and(|l| l.ends_with(" NaN")), "{t}");
    }

    #[test]
    fn an_unfinished_collector_is_down_with_no_sensors() {
        let t = render(&Scrape {
            sensors: None,
            duration_s: 5.0,
            ..Scrape::default()
        });
        assert!(t.contains("ipmi_up{collector=\"ipmi\"} 0.0"), "{t}");
        assert!(!t.contains("ipmi_temperature_celsius{"), "{t}");
        // The families are still declared, so dashboards see the names.
        assert!(t.contains("# TYPE ipmi_temperature_celsius gauge"), "{t}");
    }

    #[test]
    fn a_malformed_entry_is_skipped_not_a_panic() {
        assert!(Sensor::from_json(&serde_json::json!({"name": 3})).is_none());
        let ok = serde_json::json!({"name": "T", "number": 9, "sensor_type": 1,
            "reading": 20.5, "unit": "degrees C", "status": "ok"});
        assert_eq!(Sensor::from_json(&ok).unwrap().id, 9);
    }
}
