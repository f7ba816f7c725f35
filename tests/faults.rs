//! The gateway under faults, each replayed the way a fault campaign found
//! it (issue "bounded time under every fault"): concurrent multi-step
//! reads, dead BMCs, callers that leave, SIGTERM with work queued, a second
//! gateway on one trail, a file-size limit, too few file descriptors, a
//! stopped or slow gateway seen from the client, sessions left behind by a
//! crash, refusals before the handshake, re-logins, a corrupted login
//! datagram. Run alone with `cargo test --test faults`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::gateway::{demo_files, json, set_limits, Env, GatewayProcess};
use ipmigw::sim::{Faults, SimConfig, Simulator};
use serde_json::json;

mod common;

fn trail(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn sim(count: usize) -> Simulator {
    let sim = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), count))
        .await
        .unwrap();
    for b in sim.bmcs() {
        b.with_model(|m, now| m.set_host_power(true, now));
    }
    sim
}

fn slow(ms: u64) -> Faults {
    Faults {
        delay: Duration::from_millis(ms),
        ..Faults::default()
    }
}

/// 1. Eight `ipmigw sensors` and `sel list` at once on one BMC used to
/// break each other's reservations; identical concurrent reads now share
/// one walk of the BMC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sensor_and_sel_readers_all_succeed() {
    let env = Env::start(1, |_| {}).await;
    for round in 0..3 {
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..8 {
            let mut c = common::ipmigw_as(env.addr(), &env.pki(), "alice");
            c.args(if i % 2 == 0 {
                &["sensors", "node01"][..]
            } else {
                &["sel", "list", "node01"]
            });
            runs.spawn(common::output_of(c));
        }
        while let Some(r) = runs.join_next().await {
            let (code, out, err) = r.unwrap();
            assert_eq!(code, 0, "round {round}: {out}{err}");
        }
    }
    // Eight identical reads started together: fewer walks than callers.
    let before = env.sim.bmc(0).stats().commands;
    let alice = env.user_h2("alice").await;
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut c = alice.stream();
        reads.spawn(async move {
            c.call("GET", "/v1/bmcs/node01/sensors", None)
                .await
                .unwrap()
                .0
        });
    }
    while let Some(r) = reads.join_next().await {
        assert_eq!(r.unwrap(), 200);
    }
    let shared = env.sim.bmc(0).stats().commands - before;
    let mut one = env.user("alice").await;
    let before = env.sim.bmc(0).stats().commands;
    assert_eq!(
        one.call("GET", "/v1/bmcs/node01/sensors", None)
            .await
            .unwrap()
            .0,
        200
    );
    let single = env.sim.bmc(0).stats().commands - before;
    println!("8 concurrent sensor reads: {shared} BMC commands; one read: {single}");
    assert!(
        shared < 8 * single,
        "{shared} commands for 8 reads of {single}"
    );
    env.stop().await;
}

/// 2. Ten callers on each of five dead BMCs are all answered within the
/// request deadline (one login attempt is shared, the rest are answered
/// at once), while 45 live BMCs answer at their normal speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_bmcs_answer_within_the_deadline_while_live_ones_are_served() {
    let env = Env::start(50, |_| {}).await;
    for i in 0..5 {
        env.sim.bmc(i).set_faults(Faults {
            drop_requests: 1.0,
            ..Faults::default()
        });
    }
    let alice = env.user_h2("alice").await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50usize {
        let (dead, n) = if i < 50 { (true, i % 5) } else { (false, i) };
        let _ = dead;
        let mut c = alice.stream();
        calls.spawn(async move {
            let t = Instant::now();
            let s = c
                .call("GET", &format!("/v1/bmcs/node{:02}/power", n + 1), None)
                .await;
            (true, s.map(|r| r.0), t.elapsed())
        });
    }
    for n in 5..50usize {
        let mut c = alice.stream();
        calls.spawn(async move {
            let t = Instant::now();
            let s = c
                .call("GET", &format!("/v1/bmcs/node{:02}/power", n + 1), None)
                .await;
            (false, s.map(|r| r.0), t.elapsed())
        });
    }
    let (mut dead_slowest, mut live_slowest) = (Duration::ZERO, Duration::ZERO);
    while let Some(r) = calls.join_next().await {
        let (dead, status, took) = r.unwrap();
        if dead {
            assert_eq!(status, Ok(504));
            dead_slowest = dead_slowest.max(took);
        } else {
            assert_eq!(status, Ok(200));
            live_slowest = live_slowest.max(took);
        }
    }
    println!("50 callers on 5 dead BMCs: slowest {dead_slowest:?}; 45 live BMCs: slowest {live_slowest:?}");
    assert!(dead_slowest < Duration::from_secs(11), "{dead_slowest:?}");
    // While down, a dead BMC is answered at once.
    let mut c = alice.stream();
    let t = Instant::now();
    let (s, _, body) = c.call("GET", "/v1/bmcs/node01/power", None).await.unwrap();
    assert_eq!(
        (s, json(&body)["error"]["code"].as_str()),
        (504, Some("bmc_unreachable"))
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    env.stop().await;
}

/// 3. Work whose caller has gone is withdrawn before it reaches the BMC,
/// and the trail says so; what was already sent completes and is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_of_a_caller_who_left_is_never_sent() {
    let env = Env::start(1, |_| {}).await;
    let mut warm = env.user("alice").await;
    assert_eq!(
        warm.call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    env.sim.bmc(0).set_faults(slow(600));
    let before = env.sim.bmc(0).with_model(|m, _| m.controls());
    let alice = env.user_h2("alice").await;
    let mut calls = Vec::new();
    for _ in 0..5 {
        let mut c = alice.stream();
        calls.push(tokio::spawn(async move {
            c.call(
                "POST",
                "/v1/bmcs/node01/power",
                Some(json!({"action": "on"})),
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in &calls {
        c.abort();
    }
    drop(alice);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let ran = env.sim.bmc(0).with_model(|m, _| m.controls()) - before;
    let dir = env.stop().await;
    let t = trail(dir.path());
    let ids: Vec<String> = t
        .iter()
        .filter(|l| l["event"] == "request" && l["command"] == "chassis.power.on")
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    let outcomes: BTreeMap<String, usize> = t
        .iter()
        .filter(|l| {
            l["event"] == "result" && ids.contains(&l["request_id"].as_str().unwrap().to_string())
        })
        .fold(BTreeMap::new(), |mut m, l| {
            *m.entry(l["error"].as_str().unwrap_or("ok").to_string())
                .or_default() += 1;
            m
        });
    println!(
        "{} recorded, {ran} reached the BMC, results {outcomes:?}",
        ids.len()
    );
    assert_eq!(
        outcomes.values().sum::<usize>(),
        ids.len(),
        "every request has its result"
    );
    assert_eq!(
        outcomes.get("cancelled").copied().unwrap_or(0),
        ids.len() - ran as usize
    );
    assert!(ran <= 1, "{ran} power commands reached the BMC");
}

/// 4. SIGTERM with a slow BMC and queued work ends within `drain_ms`; the
/// queued work is cancelled (and recorded as such), and nothing reaches
/// the BMC after the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_and_sends_nothing_after_its_deadline() {
    let sim = sim(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = demo_files(dir.path(), &sim, |d| {
        let cfg = d.join("gateway.toml");
        let c = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("timeout_ms = 1000", "timeout_ms = 5000");
        std::fs::write(cfg, c).unwrap();
    });
    let mut gw = GatewayProcess::start(&config, &[]).unwrap();
    let pki = dir.path().join("pki");
    let mut warm = common::gateway::Https::connect(
        gw.addr,
        &pki,
        Some("alice"),
        None,
        common::gateway::Version::Http1,
    )
    .await
    .unwrap();
    assert_eq!(
        warm.call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    sim.bmc(0).set_faults(slow(1500));
    let before = sim.bmc(0).with_model(|m, _| m.controls());
    let alice = common::gateway::Https::connect(
        gw.addr,
        &pki,
        Some("alice"),
        None,
        common::gateway::Version::Http2,
    )
    .await
    .unwrap();
    let mut calls = Vec::new();
    for _ in 0..6 {
        let mut c = alice.stream();
        calls.push(tokio::spawn(async move {
            c.call(
                "POST",
                "/v1/bmcs/node01/power",
                Some(json!({"action": "on"})),
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    gw.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.wait(Duration::from_secs(15));
        (s, gw)
    })
    .await
    .unwrap();
    let took = t.elapsed();
    assert!(
        status.0.is_some_and(|s| s.success()),
        "{:?}",
        status.1.stderr()
    );
    println!("SIGTERM to exit: {took:?} (drain_ms 2000)");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let at_exit = sim.bmc(0).with_model(|m, _| m.controls());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.bmc(0).with_model(|m, _| m.controls()),
        at_exit,
        "nothing after the deadline"
    );
    assert!(at_exit - before <= 1);
    let t = trail(dir.path());
    let cancelled = t
        .iter()
        .filter(|l| l["event"] == "result" && l["error"] == "cancelled")
        .count();
    assert!(cancelled >= 5, "{cancelled} cancelled results");
    assert_eq!(t.last().unwrap()["event"], "checkpoint");
    assert!(t.iter().any(|l| l["event"] == "shutdown"));
    for c in calls {
        let _ = c.await;
    }
    sim.stop().await;
}

/// 5. A second gateway on the same trail refuses to start, naming the
/// holder; once the first has written its shutdown record, it starts, and
/// the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_trail_refuses_to_start() {
    let sim = sim(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = demo_files(dir.path(), &sim, |_| {});
    let mut first = GatewayProcess::start(&config, &[]).unwrap();
    let err = match GatewayProcess::start(&config, &[]) {
        Err(e) => e,
        Ok(_) => panic!("two gateways on one trail"),
    };
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");
    first.signal("TERM");
    assert!(first
        .wait(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    let mut second = GatewayProcess::start(&config, &[]).unwrap();
    second.signal("TERM");
    assert!(second.wait(Duration::from_secs(15)).is_some());
    let (code, out, err) = common::ipmigw_bin(&[
        "audit",
        "verify",
        "--key-file",
        dir.path().join("audit.key").to_str().unwrap(),
        dir.path().join("audit.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    sim.stop().await;
}

/// 6. Past `RLIMIT_FSIZE` a write fails closed (503) instead of SIGXFSZ
/// killing the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_size_limit_fails_closed_instead_of_killing_the_gateway() {
    let sim = sim(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = demo_files(dir.path(), &sim, |_| {});
    let mut gw = GatewayProcess::start(&config, &["prlimit", "--fsize=40000", "--"]).unwrap();
    let pki = dir.path().join("pki");
    let mut alice = common::gateway::Https::connect(
        gw.addr,
        &pki,
        Some("alice"),
        None,
        common::gateway::Version::Http1,
    )
    .await
    .unwrap();
    let mut statuses = BTreeMap::new();
    for _ in 0..200 {
        let s = alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .map_or(0, |r| r.0);
        *statuses.entry(s).or_insert(0) += 1;
        if s == 503 {
            break;
        }
    }
    assert!(statuses.contains_key(&503), "{statuses:?}");
    assert_eq!(
        gw.child.try_wait().unwrap(),
        None,
        "still running: {}",
        gw.stderr()
    );
    let (s, _, _) = alice.call("GET", "/healthz", None).await.unwrap();
    assert_eq!(s, 503);
    gw.signal("TERM");
    assert!(gw.wait(Duration::from_secs(15)).is_some());
    sim.stop().await;
}

/// 7. Out of file descriptors, accept backs off instead of spinning, and
/// connections are served again once some close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_spin() {
    let sim = sim(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = demo_files(dir.path(), &sim, |_| {});
    let gw = GatewayProcess::start(&config, &["prlimit", "--nofile=128:128", "--"]).unwrap();
    let mut held = Vec::new();
    for _ in 0..400 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(gw.addr),
        )
        .await
        {
            held.push(s);
        }
    }
    let before = gw.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = gw.cpu_ticks() - before;
    println!(
        "gateway CPU over 2 s with {} connections at the fd limit: {used} ticks",
        held.len()
    );
    assert!(used < 100, "{used} ticks of CPU in 2 s: accept is spinning");
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pki = dir.path().join("pki");
    let mut alice = common::gateway::Https::connect(
        gw.addr,
        &pki,
        Some("alice"),
        None,
        common::gateway::Version::Http1,
    )
    .await
    .unwrap();
    assert_eq!(alice.call("GET", "/v1/whoami", None).await.unwrap().0, 200);
    assert!(
        gw.stderr().matches("out of file descriptors").count() <= 2,
        "{}",
        gw.stderr()
    );
    sim.stop().await;
}

/// 8. The client gives up after `--timeout`; a state-changing request
/// whose answer was lost is reported as outcome unknown, with the id to
/// find it in the trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_times_out_and_names_what_it_cannot_know() {
    let env = Env::start(1, |_| {}).await;
    let mut warm = env.user("alice").await;
    assert_eq!(
        warm.call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    env.sim.bmc(0).set_faults(slow(4000));
    let mut c = common::ipmigw_as(env.addr(), &env.pki(), "alice");
    c.args(["--timeout", "1", "power", "off", "node01"]);
    let t = Instant::now();
    let (code, _, err) = common::output_of(c).await;
    assert_eq!(code, 2, "{err}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(
        err.contains("outcome unknown") && err.contains("--request-id c-"),
        "{err}"
    );
    let id = err
        .split("--request-id ")
        .nth(1)
        .unwrap()
        .split(['`', ' ', '\n'])
        .next()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dir = env.stop().await;
    let (code, out, err) = common::ipmigw_bin(&[
        "audit",
        "query",
        "--request-id",
        &id,
        "--json",
        dir.path().join("audit.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let row: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("the request is found")).unwrap();
    assert_eq!(row["command"], "chassis.power.off");
    assert!(row["result"].is_object(), "and its result: {row}");

    // A stopped gateway: every verb ends at the timeout.
    let sim = sim(1).await;
    let d2 = tempfile::tempdir().unwrap();
    let config = demo_files(d2.path(), &sim, |_| {});
    let gw = GatewayProcess::start(&config, &[]).unwrap();
    gw.signal("STOP");
    let mut c = common::ipmigw_as(gw.addr, &d2.path().join("pki"), "alice");
    c.args(["--timeout", "2", "power", "status", "node01"]);
    let t = Instant::now();
    let (code, _, err) = common::output_of(c).await;
    gw.signal("CONT");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("within 2 s"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    sim.stop().await;
}

/// 9. After crashes, the sessions the dead instances left are closed by
/// the next one: it is not locked out of a BMC with few session slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_left_by_a_crash_are_closed_at_the_next_start() {
    let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
    cfg.max_sessions = 2;
    let sim = Simulator::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = demo_files(dir.path(), &sim, |_| {});
    let pki = dir.path().join("pki");
    for round in 0..4 {
        let mut gw = GatewayProcess::start(&config, &[]).unwrap();
        let mut alice = common::gateway::Https::connect(
            gw.addr,
            &pki,
            Some("alice"),
            None,
            common::gateway::Version::Http1,
        )
        .await
        .unwrap();
        let t = Instant::now();
        let (s, _, body) = alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap();
        assert_eq!(s, 200, "round {round}: {}", String::from_utf8_lossy(&body));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "round {round}: {:?}",
            t.elapsed()
        );
        // Let the stale-session sweep run before the next crash.
        tokio::time::sleep(Duration::from_millis(300)).await;
        gw.signal("KILL");
        gw.wait(Duration::from_secs(5));
        assert!(sim.bmc(0).session_count() <= 2);
    }
    let closed = trail(dir.path())
        .iter()
        .filter(|l| l["action"] == "stale_closed")
        .count();
    assert!(closed >= 3, "{closed} stale sessions closed");
    sim.stop().await;
}

/// 10a. A connection refused for the handshake rate gets a TLS alert the
/// client names: exit 3, "rate limited".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_rate_refusal_is_named_by_the_client() {
    let env = Env::start(1, |d| {
        set_limits(d, "drain_ms = 2000\nhandshake_rate = \"2/minute\"")
    })
    .await;
    let mut codes = Vec::new();
    let mut last_err = String::new();
    for _ in 0..4 {
        let mut c = common::ipmigw_as(env.addr(), &env.pki(), "alice");
        c.args(["whoami"]);
        let (code, _, err) = common::output_of(c).await;
        codes.push(code);
        last_err = err;
    }
    assert_eq!(codes, [0, 0, 3, 3], "{last_err}");
    assert!(last_err.contains("rate limited"), "{last_err}");
    let dir = env.stop().await;
    assert!(trail(dir.path())
        .iter()
        .any(|l| l["event"] == "tls" && l["reason"] == "handshake rate exceeded"));
}

/// 10b. A BMC that forgot the session (rebooted) is logged into again, and
/// the trail says so; a login with one corrupted RAKP datagram succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relogins_are_audited_and_one_corrupted_login_datagram_is_survived() {
    let env = Env::start(2, |_| {}).await;
    let mut alice = env.user("alice").await;
    assert_eq!(
        alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    env.sim.bmc(0).forget_sessions();
    assert_eq!(
        alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    env.sim.bmc(1).set_faults(Faults {
        corrupt_rakp_auth: 1,
        ..Faults::default()
    });
    let (s, _, body) = alice
        .call("GET", "/v1/bmcs/node02/power", None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let dir = env.stop().await;
    let t = trail(dir.path());
    let actions: Vec<(&str, &str)> = t
        .iter()
        .filter(|l| l["event"] == "bmc_session")
        .map(|l| (l["bmc"].as_str().unwrap(), l["action"].as_str().unwrap()))
        .collect();
    let node01: Vec<&str> = actions
        .iter()
        .filter(|a| a.0 == "node01")
        .map(|a| a.1)
        .collect();
    assert_eq!(
        node01,
        ["login", "lost", "relogin", "stale_closed", "logout"],
        "{actions:?}"
    );
    let _ = SocketAddr::from(([127, 0, 0, 1], 0));
}

/// 9b. A BMC that stops answering for a while (paused, congested) still
/// counts the session the gateway gave up: after logging in again the
/// gateway closes it, so that a few blips do not fill the BMC's slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_given_up_in_a_blip_are_closed_after_the_next_login() {
    let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
    cfg.max_sessions = 2;
    let sim = Simulator::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = demo_files(dir.path(), &sim, |d| {
        let cfg = d.join("gateway.toml");
        let c = std::fs::read_to_string(&cfg).unwrap().replace(
            "timeout_ms = 1000\nretries = 3",
            "timeout_ms = 200\nretries = 1",
        );
        std::fs::write(cfg, c).unwrap();
    });
    let gw = ipmigw::gateway::start(&config).await.unwrap();
    let pki = dir.path().join("pki");
    let mut alice = common::gateway::Https::connect(
        gw.local_addr(),
        &pki,
        Some("alice"),
        None,
        common::gateway::Version::Http1,
    )
    .await
    .unwrap();
    for round in 0..3 {
        let (s, _, body) = alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap();
        assert_eq!(s, 200, "round {round}: {}", String::from_utf8_lossy(&body));
        sim.bmc(0).set_faults(Faults {
            drop_requests: 1.0,
            ..Faults::default()
        });
        let (s, _, _) = alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap();
        assert_eq!(s, 504, "round {round}: the BMC is silent");
        sim.bmc(0).set_faults(Faults::default());
        // Past the login back-off.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let (s, _, body) = alice
        .call("GET", "/v1/bmcs/node01/power", None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        sim.bmc(0).session_count() <= 2,
        "{} sessions",
        sim.bmc(0).session_count()
    );
    gw.shutdown("test").await;
    let closed = trail(dir.path())
        .iter()
        .filter(|l| l["action"] == "stale_closed")
        .count();
    assert!(closed >= 3, "{closed} given-up sessions closed");
    sim.stop().await;
}
