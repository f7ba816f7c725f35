//! A scan's reports: the human table, JSON, and SARIF 2.1.0 for security
//! dashboards (one rule per finding id, one result per finding and BMC,
//! the BMC as a logical location).
//!
//! Never does: put anything in a report that the findings do not hold (no
//! hash, no password).

use serde_json::{json, Value};

use super::findings::{Severity, RULES};
use super::ScanReport;

/// The table: one line per finding (or per BMC without findings).
pub fn table(r: &ScanReport) -> String {
    let mut out = format!(
        "{:<22} {:<9} {:<22} {}\n",
        "BMC", "SEVERITY", "FINDING", "EVIDENCE"
    );
    for b in &r.bmcs {
        let name = if b.target == b.addr {
            b.addr.clone()
        } else {
            format!("{} ({})", b.target, b.addr)
        };
        if b.status != "ok" {
            out.push_str(&format!("{name:<22} {:<9} {:<22} {}\n", "-", b.status, ""));
            continue;
        }
        if b.findings.is_empty() {
            out.push_str(&format!("{name:<22} {:<9} {:<22} {}\n", "-", "clean", ""));
        }
        for f in &b.findings {
            out.push_str(&format!(
                "{name:<22} {:<9} {:<22} {}\n",
                f.severity.name(),
                f.id,
                f.evidence
            ));
        }
        for n in &b.observations.notes {
            out.push_str(&format!("{name:<22} {:<9} {:<22} {n}\n", "-", "note"));
        }
    }
    let counts: Vec<String> = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .iter()
    .map(|s| {
        let n = r
            .bmcs
            .iter()
            .flat_map(|b| &b.findings)
            .filter(|f| f.severity == *s)
            .count();
        format!("{n} {}", s.name())
    })
    .collect();
    out.push_str(&format!(
        "{} BMC(s), {}; {} packets in {} ms\n",
        r.bmcs.len(),
        counts.join(", "),
        r.packets_sent,
        r.elapsed_ms
    ));
    out
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// SARIF 2.1.0.
pub fn sarif(r: &ScanReport) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id,
                "shortDescription": {"text": rule.title},
                "help": {"text": rule.fix},
                "defaultConfiguration": {"level": level(rule.severity)},
                "properties": {"severity": rule.severity.name()},
            })
        })
        .collect();
    let mut results = Vec::new();
    for b in &r.bmcs {
        for f in &b.findings {
            let index = RULES.iter().position(|x| x.id == f.id).unwrap_or(0);
            results.push(json!({
                "ruleId": f.id,
                "ruleIndex": index,
                "level": level(f.severity),
                "message": {"text": format!("{} ({}): {}. Evidence: {}", b.target, b.addr, f.title, f.evidence)},
                "locations": [{"logicalLocations": [{"name": b.target, "fullyQualifiedName": b.addr, "kind": "bmc"}]}],
                "properties": {"severity": f.severity.name(), "fix": f.fix},
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "ipmigw scan",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
