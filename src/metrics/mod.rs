//! Prometheus metrics: the gateway's own registry (requests, decisions,
//! latency, the audit trail's availability, build info) and, in [`bmc`],
//! the rendering of one BMC's sensors under ipmi_exporter's metric and
//! label names so that existing dashboards and alert rules keep working.
//!
//! Counts and renders only: never decides policy, never talks to a BMC,
//! never writes the audit trail, and never puts a secret, a certificate or
//! a user name into a label (labels are command names, decisions and
//! outcomes, whose sets are small and fixed, so a caller cannot grow the
//! registry without bound).

pub mod bmc;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of the exposition (prometheus-client writes
/// OpenMetrics text, which Prometheus negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label set of a family: fixed keys, values from small closed sets.
pub type Labels = Vec<(&'static str, String)>;

type Hist = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s: a warm-session read is milliseconds, a BMC that
    // retransmits or times out is seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The gateway's metrics, shared by every connection.
pub struct GatewayMetrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Hist,
    denials: Family<Labels, Counter>,
    rate_limited: Counter,
    audit_available: Gauge<i64>,
    bmc_scrapes: Family<Labels, Counter>,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayMetrics")
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// A registry with every gateway family registered (empty families
    /// still print their HELP and TYPE, so dashboards see the names).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "ipmigw_requests",
            "API requests by command name, decision and outcome",
            requests.clone(),
        );
        let latency: Hist = Family::new_with_constructor(latency_histogram);
        registry.register(
            "ipmigw_request_duration_seconds",
            "Time from an allowed request's decision to its answer, by command name",
            latency.clone(),
        );
        let denials = Family::<Labels, Counter>::default();
        registry.register(
            "ipmigw_denials",
            "Requests refused by policy or input checks, by reason",
            denials.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "ipmigw_rate_limited",
            "Requests refused by a rate limit",
            rate_limited.clone(),
        );
        let audit_available = Gauge::<i64>::default();
        registry.register(
            "ipmigw_audit_available",
            "1 while the audit trail accepts records, 0 once it has failed closed",
            audit_available.clone(),
        );
        let bmc_scrapes = Family::<Labels, Counter>::default();
        registry.register(
            "ipmigw_bmc_scrapes",
            "Scrapes of /metrics/bmc by result",
            bmc_scrapes.clone(),
        );
        // A gauge of 1, not an OpenMetrics info: promtool's text parser
        // (and older Prometheus) reject the info type.
        let info = Family::<Labels, Gauge<i64>>::default();
        info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        registry.register("ipmigw_build_info", "Build information", info);
        GatewayMetrics {
            registry,
            requests,
            latency,
            denials,
            rate_limited,
            audit_available,
            bmc_scrapes,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, command: &str, decision: &str, status: u16, seconds: Option<f64>) {
        let outcome = outcome_of(status);
        self.requests
            .get_or_create(&vec![
                ("command", command.to_string()),
                ("decision", decision.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        if let Some(s) = seconds {
            self.latency
                .get_or_create(&vec![("command", command.to_string())])
                .observe(s);
        }
    }

    /// Counts one refusal; `reason` is an error code from `ops::error`.
    pub fn denial(&self, reason: &str) {
        self.denials
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
        if reason == "rate_limited" {
            self.rate_limited.inc();
        }
    }

    /// Counts one scrape of a BMC (`ok`, `partial`, `failed`).
    pub fn bmc_scrape(&self, result: &'static str) {
        self.bmc_scrapes
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// The exposition, with the gauges that are read rather than counted
    /// set to their current values.
    pub fn render(&self, audit_available: bool) -> String {
        self.audit_available.set(i64::from(audit_available));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// An HTTP status folded into a small closed set, so that labels stay few.
fn outcome_of(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        403 => "denied",
        429 => "rate_limited",
        400..=499 => "client_error",
        502 | 504 => "bmc_error",
        503 => "unavailable",
        _ => "error",
    }
}

/// A gauge holding a float (NaN included), as ipmi_exporter's are.
pub type FloatGauge = Gauge<f64, AtomicU64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_metrics_expose_counts_and_audit_state() {
        let m = GatewayMetrics::new();
        m.request("sensor.read", "allow", 200, Some(0.004));
        m.request("sensor.read", "allow", 200, Some(0.002));
        m.request("chassis.power.off", "deny", 403, None);
        m.denial("rate_limited");
        let text = m.render(true);
        assert!(text.contains(
            "ipmigw_requests_total{command=\"sensor.read\",decision=\"allow\",outcome=\"ok\"} 2"
        ));
        assert!(text.contains(
            "ipmigw_requests_total{command=\"chassis.power.off\",decision=\"deny\",outcome=\"denied\"} 1"
        ));
        assert!(text.contains("ipmigw_request_duration_seconds_count{command=\"sensor.read\"} 2"));
        assert!(text.contains("ipmigw_rate_limited_total 1"));
        assert!(text.contains("ipmigw_audit_available 1\n"));
        assert!(text.contains("ipmigw_build_info{version="));
        assert!(m.render(false).contains("ipmigw_audit_available 0\n"));
    }

    #[test]
    fn outcomes_are_a_closed_set() {
        assert_eq!(outcome_of(204), "ok");
        assert_eq!(outcome_of(404), "client_error");
        assert_eq!(outcome_of(504), "bmc_error");
        assert_eq!(outcome_of(599), "error");
    }
}
