//! A Prometheus scrape of one BMC as one operation: the collectors
//! ipmi_exporter runs (`bmc`, `chassis`, `sel`, `ipmi` sensors), the quick
//! single-command ones first, each finished or not within the scrape's
//! time, so that a slow sensor walk still leaves the others' results (and
//! the renderer marks the unfinished ones `ipmi_up 0`).
//!
//! One operation, so one policy decision and one audit record per scrape
//! whatever it sends. Never decides which collectors a caller may run (the
//! API does, from policy) and never renders the exposition (`metrics::bmc`).

use serde_json::{json, Value};
use tokio::time::{timeout_at, Instant};

use super::sensor_json;
use crate::bmc::{reads, BmcError, Transact};
use crate::ipmi::cmd::app::GetDeviceId;
use crate::ipmi::cmd::chassis::GetChassisStatus;
use crate::ipmi::cmd::storage::GetSelInfo;

/// The collectors a scrape runs and the time it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collectors {
    /// Sensors (SDR walk, cached, plus readings): `sensor.read`, `sdr.read`.
    pub ipmi: bool,
    /// Device ID: `mc.info`.
    pub bmc: bool,
    /// Chassis power: `chassis.status`.
    pub chassis: bool,
    /// SEL entries and free space: `sel.read`.
    pub sel: bool,
    /// Milliseconds from the start after which no collector starts or
    /// goes on.
    pub budget_ms: u64,
}

/// Flight keys (identical concurrent scrapes share one walk of the BMC):
/// one per set of collectors, so no caller gets a collector it was not
/// allowed.
const FLIGHT_KEYS: [&str; 16] = [
    "scrape-0",
    "scrape-1",
    "scrape-2",
    "scrape-3",
    "scrape-4",
    "scrape-5",
    "scrape-6",
    "scrape-7",
    "scrape-8",
    "scrape-9",
    "scrape-10",
    "scrape-11",
    "scrape-12",
    "scrape-13",
    "scrape-14",
    "scrape-15",
];

impl Collectors {
    /// Every collector, with `budget_ms`.
    pub fn all(budget_ms: u64) -> Collectors {
        Collectors {
            ipmi: true,
            bmc: true,
            chassis: true,
            sel: true,
            budget_ms,
        }
    }

    /// The names of the enabled collectors, in ipmi_exporter's words.
    pub fn enabled(&self) -> Vec<&'static str> {
        [
            (self.bmc, "bmc"),
            (self.chassis, "chassis"),
            (self.sel, "sel"),
            (self.ipmi, "ipmi"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }

    /// The policy names a scrape with these collectors needs, beyond the
    /// representative `sensor.read`: `metrics.read` always (the design's
    /// grant for /metrics/bmc), then each collector's reads.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        let each: [(bool, &'static str); 5] = [
            (true, "metrics.read"),
            (self.ipmi, "sdr.read"),
            (self.bmc, "mc.info"),
            (self.chassis, "chassis.status"),
            (self.sel, "sel.read"),
        ];
        each.into_iter().filter_map(|(on, n)| on.then_some(n))
    }

    /// The key under which identical concurrent scrapes share a flight.
    pub fn flight_key(&self) -> &'static str {
        let mask = usize::from(self.ipmi)
            | usize::from(self.bmc) << 1
            | usize::from(self.chassis) << 2
            | usize::from(self.sel) << 3;
        FLIGHT_KEYS[mask]
    }
}

/// What one collector gave: its JSON, or why it has none.
enum Outcome {
    Done(Value),
    Failed(BmcError),
    OutOfTime,
}

/// Runs one collector unless the scrape's time is up, and only until it is.
async fn collect<F>(deadline: Instant, f: F) -> Outcome
where
    F: std::future::Future<Output = Result<Value, BmcError>>,
{
    if Instant::now() >= deadline {
        return Outcome::OutOfTime;
    }
    match timeout_at(deadline, f).await {
        Ok(Ok(v)) => Outcome::Done(v),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::OutOfTime,
    }
}

/// Runs the enabled collectors: `{"bmc": .., "chassis": .., "sel": ..,
/// "ipmi": [sensors]}`, `null` for a collector that failed or ran out of
/// time. An error only when every enabled collector failed on the BMC (a
/// session that is down), so that the audit result says so.
pub async fn run<T: Transact>(t: &T, c: &Collectors) -> Result<Value, BmcError> {
    let deadline = Instant::now() + std::time::Duration::from_millis(c.budget_ms);
    let mut out = serde_json::Map::new();
    let mut first_error = None;
    let mut any_answer = false;
    for name in c.enabled() {
        let outcome = match name {
            "bmc" => collect(deadline, bmc_info(t)).await,
            "chassis" => collect(deadline, chassis(t)).await,
            "sel" => collect(deadline, sel_info(t)).await,
            _ => collect(deadline, sensors(t)).await,
        };
        let v = match outcome {
            Outcome::Done(v) => {
                any_answer = true;
                v
            }
            Outcome::Failed(e) => {
                first_error.get_or_insert(e);
                Value::Null
            }
            Outcome::OutOfTime => {
                any_answer = true;
                Value::Null
            }
        };
        out.insert(name.to_string(), v);
    }
    match first_error {
        Some(e) if !any_answer => Err(e),
        _ => Ok(Value::Object(out)),
    }
}

async fn bmc_info<T: Transact>(t: &T) -> Result<Value, BmcError> {
    let d = reads::run(t, &GetDeviceId).await?;
    Ok(json!({
        "firmware_revision": format!("{}.{:02}", d.firmware_major, d.firmware_minor),
        "manufacturer_id": d.manufacturer_id,
    }))
}

async fn chassis<T: Transact>(t: &T) -> Result<Value, BmcError> {
    let s = reads::run(t, &GetChassisStatus).await?;
    Ok(json!({"power_on": s.power_on}))
}

async fn sel_info<T: Transact>(t: &T) -> Result<Value, BmcError> {
    let s = reads::run(t, &GetSelInfo).await?;
    Ok(json!({"entries": s.entries, "free_bytes": s.free_bytes}))
}

async fn sensors<T: Transact>(t: &T) -> Result<Value, BmcError> {
    let list = reads::read_sensors(t).await?;
    Ok(Value::Array(list.iter().map(sensor_json).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_collectors_and_always_need_metrics_read() {
        let mut c = Collectors::all(1000);
        let all: Vec<_> = c.names().collect();
        assert_eq!(
            all,
            [
                "metrics.read",
                "sdr.read",
                "mc.info",
                "chassis.status",
                "sel.read"
            ]
        );
        c.bmc = false;
        c.sel = false;
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            ["metrics.read", "sdr.read", "chassis.status"]
        );
        assert_eq!(c.enabled(), ["chassis", "ipmi"]);
    }

    #[test]
    fn different_collector_sets_never_share_a_flight() {
        let mut keys = std::collections::HashSet::new();
        for mask in 0..16u8 {
            let c = Collectors {
                ipmi: mask & 1 != 0,
                bmc: mask & 2 != 0,
                chassis: mask & 4 != 0,
                sel: mask & 8 != 0,
                budget_ms: u64::from(mask),
            };
            assert!(keys.insert(c.flight_key()), "mask {mask}");
        }
    }
}
