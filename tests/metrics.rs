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
            "\n[[user]]\nname = \"prom\"\nidentity = \"email:prom@example.test\"\nroles = [\"scraper\"]\n\n[[role]]\nname = \"scraper\"\ntargets = [\"*\"]\nallow = [\"metrics.read\", \"sensor.read\", \"sdr.read\", \"mc.info\", \"chassis.status\", \"sel.read\"]\n",
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
    // ipmi_exporter's own name `ipmi_sel_logs_count` trips promtool's lint
    // (a `_count` suffix on a gauge); kept for compatibility, so that one
    // finding is accepted and every other fails the check.
    let findings = text(&out.stdout) + &text(&out.stderr);
    let others = findings
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("ipmi_sel_logs_count "))
        .count();
    assert!(
        out.status.success() || others == 0,
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
    assert!(text(&out.stdout).contains("SUCCESS: 5 rules found"));
}

/// Whether a real tool is installed; panics when it is missing and interop
/// is required (IPMIGW_REQUIRE_INTEROP=1), so CI cannot skip silently.
fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("IPMIGW_REQUIRE_INTEROP").is_none(),
            "{name} is required (IPMIGW_REQUIRE_INTEROP=1) but missing"
        );
        eprintln!("SKIPPED: {name} is not installed");
    }
    found
}

/// A loopback TCP port that was free a moment ago (for tools that take a
/// listen address and do not report the port they picked).
fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A plain HTTP/1.0 GET on loopback: (status, body); `None` when the
/// server does not answer (yet).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let t = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = t.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), io)
        .await
        .ok()
        .flatten()
}

/// Prometheus's configuration: the gateway's own metrics and, through it,
/// each BMC's, over mTLS with `prom`'s client certificate.
fn prometheus_config(env: &Env, bmcs: &[&str]) -> String {
    let pki = env.pki();
    let gw = env.addr();
    let targets: Vec<String> = bmcs.iter().map(|b| format!("\"{b}\"")).collect();
    let tls = [
        "    tls_config:".to_string(),
        format!("      ca_file: {}", pki.join("ca.crt").display()),
        format!("      cert_file: {}", pki.join("prom.crt").display()),
        format!("      key_file: {}", pki.join("prom.key").display()),
        "      server_name: localhost".to_string(),
    ]
    .join("\n");
    let lines = [
        "global:".to_string(),
        "  scrape_interval: 1s".into(),
        "  scrape_timeout: 1s".into(),
        "scrape_configs:".into(),
        "  - job_name: ipmigw".into(),
        "    scheme: https".into(),
        "    metrics_path: /metrics".into(),
        tls.clone(),
        "    static_configs:".into(),
        format!("      - targets: [\"{gw}\"]"),
        "  - job_name: ipmi".into(),
        "    scheme: https".into(),
        "    metrics_path: /metrics/bmc".into(),
        tls,
        "    static_configs:".into(),
        format!("      - targets: [{}]", targets.join(", ")),
        "    relabel_configs:".into(),
        "      - source_labels: [__address__]".into(),
        "        target_label: __param_target".into(),
        "      - source_labels: [__param_target]".into(),
        "        target_label: instance".into(),
        "      - target_label: __address__".into(),
        format!("        replacement: \"{gw}\""),
    ];
    lines.join("\n") + "\n"
}

/// Asks Prometheus's HTTP API for `query` until `done` accepts the result
/// vector (bounded: 60 tries, 500 ms apart).
async fn prometheus_wait(
    addr: std::net::SocketAddr,
    log: &std::path::Path,
    query: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let path = format!("/api/v1/query?query={encoded}");
    let mut last = Vec::new();
    for _ in 0..60 {
        if let Some((200, body)) = http_get(addr, &path).await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            last = v["data"]["result"].as_array().cloned().unwrap_or_default();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("Prometheus never answered {query} as expected; last: {last:?}\nlog:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_the_gateway_and_each_bmc() {
    if !tool("prometheus") {
        return;
    }
    let env = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, prometheus_config(&env, &["node01", "node02"])).unwrap();
    let port = free_tcp_port();
    let log_path = dir.path().join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _prometheus = common::ChildGuard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let api: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let temps = prometheus_wait(api, &log_path, "ipmi_temperature_celsius", |r| {
        ["node01", "node02"]
            .iter()
            .all(|b| r.iter().any(|s| s["metric"]["instance"] == *b))
    })
    .await;
    assert!(
        temps.iter().all(|s| s["metric"]["name"].is_string()),
        "{temps:?}"
    );
    let audit = prometheus_wait(api, &log_path, "ipmigw_audit_available == 1", |r| {
        r.len() == 1
    })
    .await;
    assert_eq!(audit[0]["value"][1], "1", "{audit:?}");
    let up = prometheus_wait(api, &log_path, "up{job=\"ipmi\"} == 1", |r| r.len() == 2).await;
    assert_eq!(up.len(), 2);
    env.stop().await;
}

/// An exposition's samples: `name{sorted labels}` -> value (comments and
/// OpenMetrics' `# EOF` skipped).
fn samples(exposition: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let mut l: Vec<String> = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .map(|kv| kv.trim_end_matches('"').replacen("=\"", "=", 1))
                    .collect();
                l.sort();
                (n, l.join(","))
            }
            None => (series, String::new()),
        };
        out.insert(
            format!("{name}{{{labels}}}"),
            value.parse().unwrap_or(f64::NAN),
        );
    }
    out
}

/// A series' metric name and label names (`name{a,b}`).
fn shape(series: &str) -> String {
    let (name, labels) = series.split_once('{').unwrap();
    let keys: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    format!("{name}{{{}}}", keys.join(","))
}

/// Starts ipmi_exporter on a loopback port of its choosing with the BMC's
/// `user` account in its module; returns the guard and its address.
fn start_ipmi_exporter(dir: &std::path::Path) -> (common::ChildGuard, std::net::SocketAddr) {
    let config = dir.join("ipmi_exporter.yml");
    common::private_file(
        &config,
        "modules:\n  default:\n    user: \"user\"\n    pass: \"Us3rPass\"\n    driver: \"LAN_2_0\"\n    privilege: \"user\"\n    timeout: 5000\n    collectors: [bmc, ipmi, chassis, sel]\n",
    );
    let log_path = dir.join("exporter.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = common::ChildGuard(
        Command::new("prometheus-ipmi-exporter")
            .arg(format!("--config.file={}", config.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // It logs the address it bound: `msg="Listening on" address=IP:PORT`.
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| l.contains("Listening on"))
            .find_map(|l| {
                l.split("address=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
        if let Some(addr) = found {
            return (child, addr);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "ipmi_exporter did not start: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_bmc_metrics_cover_ipmi_exporters_and_agree() {
    if !tool("prometheus-ipmi-exporter") || !tool("ipmimonitoring") {
        return;
    }
    let env = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let (_exporter, addr) = start_ipmi_exporter(dir.path());
    let bmc = env.sim.bmc(0).addr();
    let (status, theirs) = http_get(addr, &format!("/ipmi?target={bmc}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{theirs}");
    let mut prom = env.user("prom").await;
    let (status, _, ours) = prom
        .call("GET", "/metrics/bmc?target=node01", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (theirs, ours) = (samples(&theirs), samples(&text(&ours)));
    assert!(theirs.len() > 20, "{theirs:?}");
    let our_shapes: std::collections::BTreeSet<String> = ours.keys().map(|s| shape(s)).collect();
    for (series, value) in &theirs {
        assert!(
            our_shapes.contains(&shape(series)),
            "no {} in ours: {ours:?}",
            shape(series)
        );
        if series.starts_with("ipmi_scrape_duration_seconds") {
            continue; // a timing, not a reading
        }
        let Some(mine) = ours.get(series) else {
            panic!("ipmi_exporter has {series}, we do not: {ours:?}");
        };
        // Readings drift between the two reads of the simulated BMC: equal
        // within 5% (states and info exactly, NaN as NaN).
        let agree = (value.is_nan() && mine.is_nan()) || (value - mine).abs() <= value.abs() * 0.05;
        assert!(agree, "{series}: ipmi_exporter {value}, ours {mine}");
    }
    env.stop().await;
}

/// One scrape of `target` as `prom`, with Prometheus's timeout header.
async fn scrape(env: &Env, target: &str, timeout_s: &str) -> String {
    let mut prom = env.user("prom").await;
    let (status, _, body) = prom
        .call_with(
            "GET",
            &format!("/metrics/bmc?target={target}"),
            None,
            Some(("x-prometheus-scrape-timeout-seconds", timeout_s.into())),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", text(&body));
    text(&body)
}

/// The commands the simulated BMC `i` has answered so far.
fn commands(env: &Env, i: usize) -> u64 {
    env.sim.bmc(i).stats().commands
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdr_is_read_once_until_the_repository_changes() {
    let env = setup().await;
    scrape(&env, "node01", "10").await; // logs in and walks the SDR
    let c0 = commands(&env, 0);
    let body = scrape(&env, "node01", "10").await;
    let cached = commands(&env, 0) - c0;
    assert!(body.contains("ipmi_temperature_celsius{id="), "{body}");
    // Device ID, chassis status, SEL info, SDR repository info and one
    // reading per BMC-owned sensor (13): no Reserve, no Get SDR.
    assert_eq!(cached, 17, "a cached scrape sends {cached} commands");
    env.sim.bmc(0).with_model(|m, _| m.touch_sdr(1_000));
    let c1 = commands(&env, 0);
    scrape(&env, "node01", "10").await;
    let walked = commands(&env, 0) - c1;
    assert!(
        walked > cached + 14,
        "a changed repository is walked again: {walked} commands"
    );
    let c2 = commands(&env, 0);
    scrape(&env, "node01", "10").await;
    assert_eq!(commands(&env, 0) - c2, cached, "and cached again after");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_of_one_bmc_share_one_read() {
    let env = setup().await;
    scrape(&env, "node01", "10").await;
    let c0 = commands(&env, 0);
    scrape(&env, "node01", "10").await;
    let one = commands(&env, 0) - c0;
    // Slow answers, so that the scrapes overlap.
    env.sim.bmc(0).set_faults(ipmigw::sim::Faults {
        delay: std::time::Duration::from_millis(20),
        ..Default::default()
    });
    let c1 = commands(&env, 0);
    let (a, b, c, d) = tokio::join!(
        scrape(&env, "node01", "10"),
        scrape(&env, "node01", "10"),
        scrape(&env, "node01", "10"),
        scrape(&env, "node01", "10")
    );
    for body in [a, b, c, d] {
        assert!(body.contains("ipmi_up{collector=\"ipmi\"} 1"), "{body}");
    }
    let four = commands(&env, 0) - c1;
    assert!(
        four <= 2 * one,
        "4 concurrent scrapes sent {four} commands, one sends {one}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_timeout_gives_partial_results() {
    let env = setup().await;
    scrape(&env, "node01", "10").await;
    env.sim.bmc(0).set_faults(ipmigw::sim::Faults {
        delay: std::time::Duration::from_millis(60),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    // 0.8 s less the gateway's 250 ms margin: time for the three single
    // commands (~180 ms), not for 14 more.
    let body = scrape(&env, "node01", "0.8").await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    for line in [
        "ipmi_up{collector=\"bmc\"} 1",
        "ipmi_up{collector=\"chassis\"} 1",
        "ipmi_up{collector=\"sel\"} 1",
        "ipmi_up{collector=\"ipmi\"} 0",
        "ipmi_chassis_power_state 1",
    ] {
        assert!(body.contains(line), "missing {line} in {body}");
    }
    assert!(!body.contains("ipmi_temperature_celsius{"), "{body}");
    env.stop().await;
}

/// The `ipmi_*`/`ipmigw_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in expr.chars().chain([' ']) {
        if ch.is_ascii_alphanumeric() || ch == '_' || ch == ':' {
            word.push(ch);
            continue;
        }
        // Not a label name (`name=`) nor a label value (`"..."`).
        let is_metric = word.starts_with("ipmi_") || word.starts_with("ipmigw_");
        if is_metric && ch != '=' && ch != '"' {
            out.push(std::mem::take(&mut word));
        }
        word.clear();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_uses_only_names_we_export() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/ipmigw-dashboard.json"
    );
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("the dashboard is valid JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let env = setup().await;
    let mut prom = env.user("prom").await;
    let (_, _, gw) = prom.call("GET", "/metrics", None).await.unwrap();
    let exposition = text(&gw) + &scrape(&env, "node01", "10").await;
    // Sample names, and the family names of TYPE lines (a counter's or a
    // histogram's samples add `_total`, `_bucket`, ... to them).
    let mut names = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        match line.strip_prefix("# TYPE ") {
            Some(t) => names.extend(t.split(' ').next().map(str::to_string)),
            None if !line.starts_with('#') => {
                names.extend(line.split(['{', ' ']).next().map(str::to_string))
            }
            None => {}
        }
    }
    for expr in &exprs {
        let used = metric_names(expr);
        assert!(!used.is_empty(), "no metric in {expr}");
        for name in used {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                names.contains(&name) || names.contains(family),
                "{name} (in {expr}) is not in our exposition"
            );
        }
    }
    env.stop().await;
}

/// One read of `node01`'s sensors through the gateway (policy, audit) as
/// the alert book takes them.
async fn poll_readings(env: &Env) -> Vec<ipmigw::alerts::Reading> {
    let mut prom = env.user("prom").await;
    let (status, _, body) = prom
        .call("GET", "/v1/bmcs/node01/sensors", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", text(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| ipmigw::alerts::Reading {
            sensor: s["name"].as_str().unwrap().to_string(),
            value: s["reading"].as_f64(),
            status: s["status"].as_str().unwrap().to_string(),
            thresholds: s["thresholds"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, t)| Some((k.clone(), t.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_sensor_fires_and_resolves_a_signed_webhook_alert() {
    use ipmigw::alerts::webhook::{verify, Webhook, WebhookConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = setup().await;
    // The receiver: one request per connection, (signature, body) out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut got) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(8);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16384];
            let mut n = 0;
            let (sig, body) = loop {
                let m = s.read(&mut buf[n..]).await.unwrap_or(0);
                n += m;
                let t = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Some((h, b)) = t.split_once("\r\n\r\n") {
                    let lower = h.to_ascii_lowercase();
                    let field = |name: &str| {
                        lower
                            .lines()
                            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                    };
                    let len: usize = field("content-length:")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if b.len() >= len || m == 0 {
                        break (
                            field("x-ipmigw-signature:").unwrap_or_default(),
                            b.as_bytes().to_vec(),
                        );
                    }
                }
                if m == 0 {
                    break (String::new(), Vec::new());
                }
            };
            let _ = s
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await;
            let _ = tx.send((sig, body)).await;
        }
    });
    let hook = Webhook::start(WebhookConfig {
        addr,
        path: "/alerts".into(),
        key: ipmigw::secret::SecretBytes::new(b"hook-key".to_vec()),
        queue: 16,
        attempts: 3,
        backoff: std::time::Duration::from_millis(50),
    });
    let mut book = ipmigw::alerts::Book::new();
    for a in book.observe("node01", &poll_readings(&env).await, 1) {
        hook.send(&a);
    }
    // The simulator's knob: CPU1 Temp over its upper critical (95).
    env.sim
        .bmc(0)
        .with_model(|m, now| assert!(m.force_sensor("CPU1 Temp", Some(97.0), now)));
    for a in book.observe("node01", &poll_readings(&env).await, 2) {
        hook.send(&a);
    }
    env.sim
        .bmc(0)
        .with_model(|m, now| m.force_sensor("CPU1 Temp", None, now));
    for a in book.observe("node01", &poll_readings(&env).await, 3) {
        hook.send(&a);
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (sig, body) = tokio::time::timeout(std::time::Duration::from_secs(10), got.recv())
            .await
            .expect("the webhook received both alerts")
            .unwrap();
        assert!(verify(b"hook-key", &body, &sig), "signature {sig}");
        assert!(
            !verify(b"other-key", &body, &sig),
            "a wrong key is detected"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["bmc"].as_str(), v["sensor"].as_str()),
            (Some("node01"), Some("CPU1 Temp")),
            "{v}"
        );
        seen.push(v);
    }
    assert_eq!(seen[0]["state"], "firing");
    assert_eq!(seen[0]["severity"], "critical");
    assert_eq!(seen[0]["threshold"], 95.0);
    assert_eq!(seen[1]["state"], "resolved");
    assert_eq!(seen[0]["fingerprint"], seen[1]["fingerprint"]);
    env.stop().await;
}
