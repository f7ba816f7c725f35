//! Alerts: which conditions of a BMC are alerts now, when one fires and when
//! it resolves ([`Book`]), and the sinks that carry them away (a signed
//! webhook in [`webhook`], RFC 5424 syslog in [`syslog`]).
//!
//! A condition is a sensor past a threshold (warning or critical), a sensor
//! without a reading, or the BMC's session down. Each has a fingerprint
//! that depends only on what it is about (BMC, kind, sensor), so that a
//! receiver can de-duplicate repeats and pair a resolve with its firing.
//!
//! Never reads a BMC and never decides policy: a caller that has read the
//! sensors (through policy and audit) hands the readings in. Never puts a
//! secret into an alert.

pub mod syslog;
pub mod webhook;

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// One sensor as read: what the book judges.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The sensor's name.
    pub sensor: String,
    /// Converted reading, when there is one.
    pub value: Option<f64>,
    /// `ok`, `nc`, `cr`, `nr`, `ns` (no reading) or a discrete state.
    pub status: String,
    /// Readable thresholds by name (`lc`, `uc`, `unc`, ...).
    pub thresholds: Vec<(String, f64)>,
}

/// Whether an alert is active or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The condition holds.
    Firing,
    /// The condition has left.
    Resolved,
}

/// One alert, as sinks and `GET /v1/alerts` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Stable id of the condition: hex of SHA-256 over BMC, kind, sensor.
    pub fingerprint: String,
    /// The BMC's configured name.
    pub bmc: String,
    /// `threshold`, `unavailable` or `session_down`.
    pub kind: &'static str,
    /// `warning` or `critical`.
    pub severity: &'static str,
    /// The sensor, when the alert is about one.
    pub sensor: Option<String>,
    /// The reading that raised (or last held) the condition.
    pub value: Option<f64>,
    /// The threshold crossed, when there is one.
    pub threshold: Option<f64>,
    /// Firing or resolved.
    pub state: State,
    /// Unix seconds when the condition was first seen.
    pub first_seen: u64,
    /// Unix seconds when it resolved.
    pub resolved_at: Option<u64>,
}

/// The fingerprint of a condition: the same BMC, kind and sensor always
/// give the same one, across polls and restarts.
pub fn fingerprint(bmc: &str, kind: &str, sensor: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [bmc, kind, sensor.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// A condition a reading shows: (kind, severity, threshold crossed).
fn condition(r: &Reading) -> Option<(&'static str, &'static str, Option<f64>)> {
    let severity = match r.status.as_str() {
        "nc" => "warning",
        "cr" | "nr" => "critical",
        "ns" => return Some(("unavailable", "warning", None)),
        _ => return None,
    };
    Some(("threshold", severity, crossed(r, severity)))
}

/// The threshold a reading is past, on the side it is past: for a critical
/// state the critical (or non-recoverable) one, for a warning the
/// non-critical one.
fn crossed(r: &Reading, severity: &str) -> Option<f64> {
    let v = r.value?;
    let get = |n: &str| r.thresholds.iter().find(|(k, _)| k == n).map(|(_, t)| *t);
    let (upper, lower) = match severity {
        "critical" => (["uc", "unr"], ["lc", "lnr"]),
        _ => (["unc", "uc"], ["lnc", "lc"]),
    };
    let above = upper.iter().filter_map(|n| get(n)).find(|t| v >= *t);
    let below = lower.iter().filter_map(|n| get(n)).find(|t| v <= *t);
    above.or(below)
}

/// The active alerts of every BMC, and the transitions each poll makes.
#[derive(Debug, Default)]
pub struct Book {
    active: BTreeMap<String, Alert>,
}

impl Book {
    /// An empty book.
    pub fn new() -> Book {
        Book::default()
    }

    /// Judges one poll of `bmc`'s sensors at `now` (unix seconds): returns
    /// the alerts that fired (or changed severity) and those that resolved.
    /// A sensor absent from the poll keeps its alerts (a partial read
    /// proves nothing); the session is up, since the read answered.
    pub fn observe(&mut self, bmc: &str, readings: &[Reading], now: u64) -> Vec<Alert> {
        let mut out = self.session(bmc, true, now);
        for r in readings {
            let current = condition(r);
            for kind in ["threshold", "unavailable"] {
                let fp = fingerprint(bmc, kind, Some(&r.sensor));
                match current.filter(|(k, _, _)| *k == kind) {
                    Some((_, severity, threshold)) => {
                        let alert = Alert {
                            fingerprint: fp,
                            bmc: bmc.into(),
                            kind,
                            severity,
                            sensor: Some(r.sensor.clone()),
                            value: r.value,
                            threshold,
                            state: State::Firing,
                            first_seen: now,
                            resolved_at: None,
                        };
                        out.extend(self.fire(alert));
                    }
                    None => out.extend(self.resolve(&fp, r.value, now)),
                }
            }
        }
        out
    }

    /// Records whether `bmc`'s session is up: a down session fires a
    /// critical `session_down` alert, an up one resolves it.
    pub fn session(&mut self, bmc: &str, up: bool, now: u64) -> Vec<Alert> {
        let fp = fingerprint(bmc, "session_down", None);
        if up {
            return self.resolve(&fp, None, now).into_iter().collect();
        }
        let alert = Alert {
            fingerprint: fp,
            bmc: bmc.into(),
            kind: "session_down",
            severity: "critical",
            sensor: None,
            value: None,
            threshold: None,
            state: State::Firing,
            first_seen: now,
            resolved_at: None,
        };
        self.fire(alert).into_iter().collect()
    }

    /// Keeps a firing alert; reports it when it is new or its severity
    /// changed (first seen stays the first poll's).
    fn fire(&mut self, mut alert: Alert) -> Option<Alert> {
        match self.active.get_mut(&alert.fingerprint) {
            Some(held) if held.severity == alert.severity => {
                held.value = alert.value;
                None
            }
            Some(held) => {
                alert.first_seen = held.first_seen;
                *held = alert.clone();
                Some(alert)
            }
            None => {
                self.active.insert(alert.fingerprint.clone(), alert.clone());
                Some(alert)
            }
        }
    }

    fn resolve(&mut self, fingerprint: &str, value: Option<f64>, now: u64) -> Option<Alert> {
        let mut alert = self.active.remove(fingerprint)?;
        alert.state = State::Resolved;
        alert.resolved_at = Some(now);
        if value.is_some() {
            alert.value = value;
        }
        Some(alert)
    }

    /// The active alerts of the BMCs `visible` accepts.
    pub fn active(&self, visible: impl Fn(&str) -> bool) -> Vec<Alert> {
        self.active
            .values()
            .filter(|a| visible(&a.bmc))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(value: f64, status: &str) -> Reading {
        Reading {
            sensor: "CPU1 Temp".into(),
            value: Some(value),
            status: status.into(),
            thresholds: vec![
                ("unc".into(), 85.0),
                ("uc".into(), 95.0),
                ("unr".into(), 100.0),
            ],
        }
    }

    #[test]
    fn a_crossing_fires_once_escalates_and_resolves() {
        let mut b = Book::new();
        assert!(b.observe("node01", &[temp(50.0, "ok")], 10).is_empty());
        let fired = b.observe("node01", &[temp(90.0, "nc")], 20);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].severity, fired[0].threshold),
            ("warning", Some(85.0))
        );
        assert!(
            b.observe("node01", &[temp(91.0, "nc")], 30).is_empty(),
            "no repeat"
        );
        let worse = b.observe("node01", &[temp(97.0, "cr")], 40);
        assert_eq!(
            (worse[0].severity, worse[0].threshold),
            ("critical", Some(95.0))
        );
        assert_eq!(worse[0].first_seen, 20, "first seen is kept");
        assert_eq!(worse[0].fingerprint, fired[0].fingerprint, "same condition");
        assert_eq!(b.active(|_| true).len(), 1);
        let done = b.observe("node01", &[temp(60.0, "ok")], 50);
        assert_eq!(done[0].state, State::Resolved);
        assert_eq!((done[0].resolved_at, done[0].value), (Some(50), Some(60.0)));
        assert!(b.active(|_| true).is_empty());
    }

    #[test]
    fn unavailable_sensors_and_a_down_session_are_alerts() {
        let mut b = Book::new();
        let mut r = temp(0.0, "ns");
        r.value = None;
        assert_eq!(b.observe("n", &[r], 1)[0].kind, "unavailable");
        let down = b.session("n", false, 2);
        assert_eq!(
            (down[0].kind, down[0].severity),
            ("session_down", "critical")
        );
        assert!(b.session("n", false, 3).is_empty());
        let back = b.observe("n", &[temp(50.0, "ok")], 4);
        let kinds: Vec<_> = back.iter().map(|a| (a.kind, a.state)).collect();
        assert!(
            kinds.contains(&("session_down", State::Resolved)),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&("unavailable", State::Resolved)),
            "{kinds:?}"
        );
        assert!(b.active(|bmc| bmc != "n").is_empty() && b.active(|_| true).is_empty());
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = fingerprint("node01", "threshold", Some("CPU1 Temp"));
        assert_eq!(a, fingerprint("node01", "threshold", Some("CPU1 Temp")));
        assert_ne!(a, fingerprint("node02", "threshold", Some("CPU1 Temp")));
        assert_ne!(a, fingerprint("node01", "unavailable", Some("CPU1 Temp")));
        // Separators keep "ab"+"c" apart from "a"+"bc".
        assert_ne!(fingerprint("ab", "c", None), fingerprint("a", "bc", None));
        assert_eq!(a.len(), 32);
    }
}
