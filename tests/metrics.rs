//! Prometheus routes end to end: `/metrics` for a user granted
//! `metrics.read` (and refused to one who is not), `/metrics/bmc` with
//! ipmi_exporter's names through the warm session, one audit record per
//! scrape, and the expositions accepted by `promtool check metrics` (when
//! promtool is installed; required with IPMIGW_REQUIRE_INTEROP=1).

use std::io::Write;
use std::process::{Command, Stdio};

use common::gateway::{append_policy, Env};
use ipmigw::pki::{self, ClientCertSpec};

mod common;

/// The demo gateway plus `prom`, a scraper allowed metrics and sensor reads.
async fn setup() -> Env {
    Env::start(2, |dir| {
        append_policy(
            dir,
            "users.toml",
            "\n[[user]]\nname = \"prom\"\nidentity = \"email:prom@example.test\"\nroles = [\"scraper\"]\n\n[[role]]\nname = \"scraper\"\ntargets = [\"*\"]\nallow = [\"metrics.read\", \"sensor.read\", \"sdr.read\"]\n",
        );
        pki::issue_client(&dir.join("pki"), &ClientCertSpec::new("prom")).unwrap();
    })
    .await
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

/// Runs `promtool check metrics` on an exposition; `None` when promtool is
/// missing and interop is not required.
fn promtool_check(exposition: &str) -> Option<String> {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("IPMIGW_REQUIRE_INTEROP").is_none(),
            "promtool is required (IPMIGW_REQUIRE_INTEROP=1) but missing"
        );
        return None;
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(exposition.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    Some(text(&out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_metrics_need_metrics_read() {
    let env = setup().await;
    let mut prom = env.user("prom").await;
    let (status, headers, body) = prom.call("GET", "/metrics", None).await.unwrap();
    assert_eq!(status, 200, "{}", text(&body));
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let body = text(&body);
    assert!(body.contains("\nipmigw_audit_available 1\n"), "{body}");
    assert!(body.contains("ipmigw_build_info{version="), "{body}");
    // Not promtool-linted: promtool reads the Prometheus text format, in
    // which OpenMetrics counters (HELP on the name without `_total`) look
    // undocumented; Prometheus itself negotiates OpenMetrics.

    // bob (viewer) holds no metrics.read: refused, and the refusal counted.
    let mut bob = env.user("bob").await;
    let (status, _, _) = bob.call("GET", "/metrics", None).await.unwrap();
    assert_eq!(status, 403);
    let (_, _, body) = prom.call("GET", "/metrics", None).await.unwrap();
    assert!(
        text(&body).contains("ipmigw_denials_total{reason=\"denied\"} 1"),
        "{}",
        text(&body)
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmc_metrics_use_exporter_names_and_one_audit_record() {
    let env = setup().await;
    let mut prom = env.user("prom").await;
    let before = env.events("request").len();
    let (status, _, body) = prom
        .call_with(
            "GET",
            "/metrics/bmc?target=node01",
            None,
            Some(("x-prometheus-scrape-timeout-seconds", "10".into())),
        )
        .await
        .unwrap();
    let body = text(&body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ipmi_up{collector=\"ipmi\"} 1.0"), "{body}");
    assert!(body.contains("ipmi_temperature_celsius{id="), "{body}");
    assert!(body.contains("ipmi_scrape_duration_seconds "), "{body}");
    promtool_check(&body);
    // One scrape is one request record, however many IPMI commands it sent.
    let records = env.events("request");
    assert_eq!(records.len() - before, 1, "{:?}", &records[before..]);
    assert_eq!(records[before]["user"], "prom");

    // The allowed read is counted by command, decision and outcome.
    let (_, _, metrics) = prom.call("GET", "/metrics", None).await.unwrap();
    let metrics = text(&metrics);
    assert!(
        metrics.contains(
            "ipmigw_requests_total{command=\"sensor.read\",decision=\"allow\",outcome=\"ok\"} 1"
        ),
        "{metrics}"
    );

    // An unknown target and a missing one are refused like the API's.
    let (status, _, _) = prom
        .call("GET", "/metrics/bmc?target=nope", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = prom.call("GET", "/metrics/bmc", None).await.unwrap();
    assert_eq!(status, 400);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_without_sensor_read_is_denied() {
    let env = Env::start(1, |dir| {
        append_policy(
            dir,
            "users.toml",
            "\n[[user]]\nname = \"prom\"\nidentity = \"email:prom@example.test\"\nroles = [\"gwonly\"]\n\n[[role]]\nname = \"gwonly\"\ntargets = [\"*\"]\nallow = [\"metrics.read\"]\n",
        );
        pki::issue_client(&dir.join("pki"), &ClientCertSpec::new("prom")).unwrap();
    })
    .await;
    let mut prom = env.user("prom").await;
    let (status, _, body) = prom
        .call("GET", "/metrics/bmc?target=node01", None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{}", text(&body));
    env.stop().await;
}

#[test]
fn shipped_alert_rules_pass_promtool() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/ipmigw.rules.yml"
    );
    let Ok(out) = Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
    else {
        assert!(
            std::env::var_os("IPMIGW_REQUIRE_INTEROP").is_none(),
            "promtool is required (IPMIGW_REQUIRE_INTEROP=1) but missing"
        );
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("SUCCESS: 4 rules found"));
}
