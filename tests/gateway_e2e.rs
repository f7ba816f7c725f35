//! The gateway end to end on loopback: simulated BMCs, the development PKI,
//! the demo policy (alice operator, bob viewer, carol on node02 only), a
//! gateway in-process, and the `ipmigw` client as a real process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use common::ChildGuard;

use common::gateway::{append_policy, client_tls_files, tls_with, Env, Https, Version};
use ipmigw::gateway::{self, demo};
use ipmigw::pki::{self, ClientCertSpec};
use ipmigw::sim::{SimConfig, Simulator};

mod common;

/// The demo gateway, with carol allowed only chassis status on node02.
async fn setup(bmcs: usize) -> Env {
    Env::start(bmcs, |dir| {
        append_policy(
            dir,
            "users.toml",
            "\n[[user]]\nname = \"carol\"\nidentity = \"email:carol@example.test\"\nroles = [\"lab\"]\n\n[[role]]\nname = \"lab\"\ntargets = [\"node02\"]\nallow = [\"chassis.status\"]\n",
        );
        pki::issue_client(&dir.join("pki"), &ClientCertSpec::new("carol")).unwrap();
    })
    .await
}

async fn connect(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Https, String> {
    connect_with(addr, ca, identity, None).await
}

async fn connect_with(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    proxy_header: Option<Vec<u8>>,
) -> Result<Https, String> {
    let cfg = client_tls_files(ca, identity, Version::Http1.alpn());
    let tls = tls_with(addr, cfg, None, proxy_header).await?;
    Https::over(tls, Version::Http1).await
}

async fn user(env: &Env, name: &str) -> Https {
    env.user(name).await
}

/// Runs the `ipmigw` client as `user` (a real process).
async fn cli(env: &Env, user: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = common::ipmigw_as(env.addr(), &env.pki(), user);
    c.args(args);
    common::output_of(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_operates_bob_is_denied_and_everything_is_audited() {
    let env = setup(3).await;
    let (code, out, err) = cli(&env, "alice", &["power", "status", "--all"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "node01: Chassis Power is on\nnode02: Chassis Power is on\nnode03: Chassis Power is on\n"
    );

    let (code, out, err) = cli(&env, "alice", &["power", "off", "node01"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "Chassis Power Control: Down/Off\n"),
        "{err}"
    );
    assert!(!env.sim.bmc(0).power_on(), "the BMC saw the power off");
    let (code, _, err) = cli(&env, "alice", &["power", "cycle", "node02"]).await;
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = cli(&env, "bob", &["power", "off", "node03"]).await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("denied: bob may not run chassis.power.off on node03"),
        "{err}"
    );
    assert!(env.sim.bmc(2).power_on(), "nothing reached the BMC");

    let (code, out, _) = cli(&env, "bob", &["--json", "power", "status", "node03"]).await;
    assert_eq!((code, out.trim()), (0, "{\"power\":\"on\"}"));
    let (code, out, _) = cli(&env, "bob", &["sensors", "node01"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Inlet Temp"), "{out}");

    let lines = env.audit_lines();
    let bob_off = lines
        .iter()
        .find(|l| {
            l["event"] == "request" && l["user"] == "bob" && l["command"] == "chassis.power.off"
        })
        .expect("bob's denial is audited");
    assert_eq!(bob_off["decision"], "deny");
    assert!(bob_off["reason"]
        .as_str()
        .unwrap()
        .contains("no role of user \"bob\" grants chassis.power.off"));
    let alice_off = lines
        .iter()
        .find(|l| {
            l["event"] == "request" && l["command"] == "chassis.power.off" && l["user"] == "alice"
        })
        .unwrap();
    assert_eq!(alice_off["decision"], "allow");
    assert!(
        alice_off["rule"]
            .as_str()
            .unwrap()
            .contains("operator.toml"),
        "{alice_off}"
    );
    assert_eq!(alice_off["data"], "00");
    let result = lines
        .iter()
        .find(|l| l["event"] == "result" && l["request_id"] == alice_off["request_id"])
        .unwrap();
    assert_eq!(result["completion_code"], 0);
    assert!(lines
        .iter()
        .any(|l| l["event"] == "tls" && l["outcome"] == "accepted" && l["user"] == "bob"));

    // No secret in the trail, and the trail verifies.
    let trail = std::fs::read_to_string(env.dir.path().join("audit.jsonl")).unwrap();
    assert!(!trail.contains(demo::SIM_OPERATOR_PASSWORD));
    let (k, t) = (
        env.dir.path().join("audit.key"),
        env.dir.path().join("audit.jsonl"),
    );
    let (code, out, err) = cli(
        &env,
        "alice",
        &[
            "audit",
            "verify",
            "--key-file",
            k.to_str().unwrap(),
            t.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let env = setup(2).await;
    let mut alice = user(&env, "alice").await;
    // operator.toml: state_changing_rate = "6/minute" (a burst of 6).
    for i in 0..6 {
        let (status, _, body) = alice
            .call(
                "POST",
                "/v1/bmcs/node01/power",
                Some(serde_json::json!({"action": "on"})),
            )
            .await
            .unwrap();
        assert_eq!(
            status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, headers, body) = alice
        .call(
            "POST",
            "/v1/bmcs/node01/power",
            Some(serde_json::json!({"action": "on"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("retry-after").unwrap(), "10");
    let (code, _, err) = cli(&env, "alice", &["power", "on", "node01"]).await;
    assert_eq!(code, 3);
    assert!(
        err.contains("rate limited") && err.contains("retry after"),
        "{err}"
    );
    // Reads are not state-changing and still pass.
    assert_eq!(
        alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_invisible_bmcs_get_the_same_404_and_raw_is_checked() {
    let env = setup(2).await;
    let mut carol = user(&env, "carol").await;
    let (s1, _, invisible) = carol
        .call("GET", "/v1/bmcs/node01/power", None)
        .await
        .unwrap();
    let (s2, _, unknown) = carol
        .call("GET", "/v1/bmcs/node99/power", None)
        .await
        .unwrap();
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(invisible, unknown, "byte-identical");
    let (s, _, body) = carol.call("GET", "/v1/bmcs", None).await.unwrap();
    assert_eq!(
        (s, String::from_utf8_lossy(&body).trim()),
        (200, "{\"bmcs\":[\"node02\"]}")
    );
    assert_eq!(
        carol
            .call("GET", "/v1/bmcs/node02/chassis", None)
            .await
            .unwrap()
            .0,
        200
    );

    let mut alice = user(&env, "alice").await;
    let (s, _, body) = alice
        .call(
            "POST",
            "/v1/bmcs/node01/raw",
            Some(serde_json::json!({"netfn": 6, "cmd": 1, "data": ""})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["completion_code"], 0);
    assert!(v["data"].as_str().unwrap().len() >= 22, "{v}");
    for cmd in [0x3B, 0x3C, 0x38] {
        let (s, _, body) = alice
            .call(
                "POST",
                "/v1/bmcs/node01/raw",
                Some(serde_json::json!({"netfn": 6, "cmd": cmd, "data": "04"})),
            )
            .await
            .unwrap();
        assert_eq!(s, 403);
        assert!(String::from_utf8_lossy(&body).contains("session_command_forbidden"));
    }
    // alice's operator role has no raw grants beyond named commands: an OEM command is denied.
    let (s, _, _) = alice
        .call(
            "POST",
            "/v1/bmcs/node01/raw",
            Some(serde_json::json!({"netfn": 0x2e, "cmd": 1, "data": ""})),
        )
        .await
        .unwrap();
    assert_eq!(s, 403);
    let (code, out, err) = cli(&env, "alice", &["raw", "node01", "0x06", "0x01"]).await;
    assert_eq!(code, 0, "{out}{err}");
    // Bad input: 400, and a body over the limit: 413.
    assert_eq!(
        alice
            .call(
                "POST",
                "/v1/bmcs/node01/power",
                Some(serde_json::json!({"action": "explode"}))
            )
            .await
            .unwrap()
            .0,
        400
    );
    // Headers over the limit: 431 (or the connection is dropped), never served.
    let mut fresh = user(&env, "alice").await;
    let r = fresh
        .call_with(
            "GET",
            "/v1/whoami",
            None,
            Some(("x-padding", "y".repeat(40_000))),
        )
        .await;
    assert!(
        matches!(r, Ok((431, _, _)) | Err(_)),
        "{:?}",
        r.map(|r| r.0)
    );
    let big = serde_json::json!({"action": "on", "pad": "x".repeat(70_000)});
    assert_eq!(
        alice
            .call("POST", "/v1/bmcs/node01/power", Some(big))
            .await
            .unwrap()
            .0,
        413
    );
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_and_audited() {
    let env = setup(2).await;
    let p = env.pki();
    let ca = p.join("ca.crt");
    // No client certificate.
    let r = match connect(env.addr(), &ca, None).await {
        Ok(mut c) => c.call("GET", "/v1/whoami", None).await.map(|r| r.0),
        Err(e) => Err(e),
    };
    assert!(r.is_err(), "no certificate: {r:?}");
    // Expired, serverAuth-only, from another CA (with alice's identity).
    let mut expired = ClientCertSpec::new("old");
    expired.valid_for = time::Duration::days(-1);
    pki::issue_client(&p, &expired).unwrap();
    let mut server_only = ClientCertSpec::new("srv");
    server_only.server_auth_only = true;
    pki::issue_client(&p, &server_only).unwrap();
    let other = env.dir.path().join("other-ca");
    pki::init(&other, &["alice".into()], &["localhost".into()], &[]).unwrap();
    for (name, dir) in [
        ("old", p.clone()),
        ("srv", p.clone()),
        ("alice", other.clone()),
    ] {
        let r = match connect(
            env.addr(),
            &ca,
            Some((
                &dir.join(format!("{name}.crt")),
                &dir.join(format!("{name}.key")),
            )),
        )
        .await
        {
            Ok(mut c) => c.call("GET", "/v1/whoami", None).await.map(|r| r.0),
            Err(e) => Err(e),
        };
        assert!(
            r.is_err() || r == Ok(403),
            "{name} from {}: {r:?}",
            dir.display()
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = env
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "tls" && l["outcome"] == "refused")
        .count();
    assert!(refused >= 4, "every refusal is audited ({refused})");

    // Revocation: carol is connected; revoke + reload closes her connection.
    let mut carol = user(&env, "carol").await;
    assert_eq!(carol.call("GET", "/v1/whoami", None).await.unwrap().0, 200);
    pki::revoke(&p, "carol").unwrap();
    env.gw.reload().await.unwrap();
    let started = std::time::Instant::now();
    let after = carol.call("GET", "/v1/whoami", None).await;
    assert!(after.as_ref().map_or(true, |r| r.0 == 403), "{after:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        connect(
            env.addr(),
            &ca,
            Some((&p.join("carol.crt"), &p.join("carol.key")))
        )
        .await
        .is_err()
            || user(&env, "carol")
                .await
                .call("GET", "/v1/whoami", None)
                .await
                .is_err()
    );

    // An expired CRL: every new connection is refused.
    pki::renew_crl(
        &p,
        time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    )
    .unwrap();
    env.gw.reload().await.unwrap();
    let r = match connect(
        env.addr(),
        &ca,
        Some((&p.join("alice.crt"), &p.join("alice.key"))),
    )
    .await
    {
        Ok(mut c) => c.call("GET", "/v1/whoami", None).await.map(|r| r.0),
        Err(e) => Err(e),
    };
    assert!(r.is_err() || r == Ok(403), "expired CRL: {r:?}");
    pki::renew_crl(
        &p,
        time::OffsetDateTime::now_utc() + time::Duration::days(1),
    )
    .unwrap();
    env.gw.reload().await.unwrap();

    // A bad config on reload keeps the old one.
    let users = env.dir.path().join("policies/users.toml");
    let good = std::fs::read_to_string(&users).unwrap();
    std::fs::write(
        &users,
        good.replace("roles = [\"operator\"]", "roles = [\"operatr\"]"),
    )
    .unwrap();
    let e = env.gw.reload().await.unwrap_err();
    assert!(e.contains("unknown role \"operatr\""), "{e}");
    let (code, _, err) = cli(&env, "alice", &["power", "status", "node01"]).await;
    assert_eq!(code, 0, "the old policy still serves: {err}");
    assert!(env
        .audit_lines()
        .iter()
        .any(|l| l["event"] == "config_reload" && l["ok"] == false));
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_gateway_to_ipmi_sim() {
    let Some(bmc) = common::IpmiSim::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config =
        demo::write_files(dir.path(), &[bmc.addr()], "127.0.0.1:0".parse().unwrap()).unwrap();
    let gw = gateway::start(&config).await.unwrap();
    let pki = dir.path().join("pki");
    let run = |args: Vec<String>| {
        let mut c = common::ipmigw_as(gw.local_addr(), &pki, "alice");
        c.args(args);
        common::output_of(c)
    };
    let (code, out, err) = run(vec!["power".into(), "on".into(), "node01".into()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(vec!["power".into(), "status".into(), "node01".into()]).await;
    assert_eq!((code, out.as_str()), (0, "Chassis Power is on\n"), "{err}");
    assert_eq!(bmc.chassis("power"), "1", "ipmi_sim's chassis state");
    let (code, out, err) = run(vec!["mc".into(), "info".into(), "node01".into()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Device ID"), "{out}");
    gw.shutdown("test").await;
}

/// Starts `ipmigw demo` on any free port; its printed lines up to "Ctrl-C
/// stops", the rest of its output, and the process (killed on drop).
fn start_demo(
    dir: &Path,
) -> (
    Vec<String>,
    std::io::Lines<BufReader<ChildStdout>>,
    ChildGuard,
) {
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_ipmigw"))
            .args(["demo", "--dir", dir.to_str().unwrap(), "--bmcs", "2"])
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Ctrl-C stops");
        printed.push(line);
        if done {
            break;
        }
    }
    (printed, lines, child)
}

/// A printed command as a user pastes it: in sh, with the printed exports
/// and our binary first on PATH.
fn as_pasted(cmd: &str, vars: &[(String, String)]) -> Command {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ipmigw"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd).envs(vars.iter().cloned()).env(
        "PATH",
        format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()),
    );
    c
}

#[test]
fn the_demo_starts_serves_its_printed_commands_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (printed, lines, mut child) = start_demo(dir.path());
    let exports = printed
        .iter()
        .find(|l| l.trim_start().starts_with("export IPMIGW_GATEWAY="))
        .unwrap_or_else(|| panic!("{printed:?}"));
    let vars: Vec<(String, String)> = exports
        .trim_start()
        .trim_start_matches("export ")
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let tries: Vec<&String> = printed
        .iter()
        .filter(|l| {
            (l.starts_with("  ipmigw ") || l.starts_with("  IPMIGW_CERT="))
                && !l.contains(" bridge ")
        })
        .collect();
    assert_eq!(tries.len(), 6, "{printed:?}");
    let mut codes = Vec::new();
    for t in &tries {
        let cmd = t.split("   #").next().unwrap().trim();
        let out = as_pasted(cmd, &vars).output().unwrap();
        codes.push(out.status.code().unwrap_or(-1));
        let stdout = String::from_utf8_lossy(&out.stdout);
        if cmd.contains("power status") {
            assert_eq!(
                stdout,
                "node01: Chassis Power is on\nnode02: Chassis Power is on\n"
            );
        }
        if cmd.contains("audit query") {
            assert!(stdout.contains("chassis.power.cycle"), "{stdout}");
        }
    }
    assert_eq!(codes, [0, 0, 0, 3, 0, 0], "{tries:?}");
    the_printed_bridge_serves_ipmitool(&printed, &vars);
    let status = common::terminate(&mut child, Duration::from_secs(15)).expect("demo stops");
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.starts_with("ipmigw demo: stopped")),
        "{rest:?}"
    );
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(trail
        .lines()
        .last()
        .unwrap()
        .contains("\"event\":\"checkpoint\""));
    assert!(trail.contains("\"event\":\"shutdown\""));
}

/// The demo's bridge line, pasted (without its `&`), serves the printed
/// ipmitool line.
fn the_printed_bridge_serves_ipmitool(printed: &[String], vars: &[(String, String)]) {
    let line = |start: &str| {
        printed
            .iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} in {printed:?}"))
            .trim()
            .to_string()
    };
    let bridge_cmd = line("  ipmigw bridge ");
    let bridge_cmd = bridge_cmd
        .strip_suffix('&')
        .expect("runs in the background");
    let ipmitool_cmd = line("  ipmitool ");
    if common::interop_tools().is_none() {
        return;
    }
    let mut bridge = ChildGuard(
        as_pasted(&format!("exec {bridge_cmd}"), vars)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let first = BufReader::new(bridge.stdout.take().unwrap())
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    assert!(first.contains("on udp://127.0.0.1:"), "{first}");
    let out = as_pasted(&ipmitool_cmd, vars).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("Chassis Power is "),
        "{ipmitool_cmd}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_second_demo_on_a_busy_port_fails_before_writing_anything() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("demo");
    let started = std::time::Instant::now();
    let (code, out, err) =
        common::ipmigw_bin(&["demo", "--dir", dir.to_str().unwrap(), "--listen", &addr]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("--listen {addr}")), "{err}");
    assert!(err.contains("another demo running?"), "{err}");
    assert!(!dir.exists(), "the demo wrote {}", dir.display());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_is_trusted_only_from_listed_balancers() {
    let env = setup(2).await;
    // A second gateway behind a balancer on 127.0.0.1, with a trail of its
    // own (one writer per trail).
    let text = std::fs::read_to_string(env.config()).unwrap();
    let cfg = env.dir.path().join("gateway2.toml");
    std::fs::write(
        &cfg,
        text.replace(
            "[listen]\n",
            "[listen]\nproxy_protocol_from = [\"127.0.0.1/32\"]\n",
        )
        .replace("\"audit.jsonl\"", "\"audit2.jsonl\"")
        .replace("audit-anchor.jsonl", "audit2-anchor.jsonl"),
    )
    .unwrap();
    let gw = gateway::start(&cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let p = env.pki();
    let alice = (p.join("alice.crt"), p.join("alice.key"));
    let header =
        ipmigw::gateway::proxy::encode("10.20.0.5:40000".parse().unwrap(), gw.local_addr());
    let mut c = connect_with(
        gw.local_addr(),
        &p.join("ca.crt"),
        Some((&alice.0, &alice.1)),
        Some(header),
    )
    .await
    .unwrap();
    let (s, _, body) = c.call("GET", "/v1/whoami", None).await.unwrap();
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["source"], "10.20.0.5",
        "policy sees the carried client address"
    );
    // The demo policy allows 127.0.0.0/8 only: from 10.20.0.5 alice sees nothing.
    assert_eq!(
        c.call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        404
    );
    // Without a header from a trusted balancer: refused.
    assert!(connect(
        gw.local_addr(),
        &p.join("ca.crt"),
        Some((&alice.0, &alice.1))
    )
    .await
    .is_err());
    // The first gateway does not trust 127.0.0.1: a header there breaks TLS.
    let header = ipmigw::gateway::proxy::encode("10.20.0.5:40000".parse().unwrap(), env.addr());
    assert!(connect_with(
        env.addr(),
        &p.join("ca.crt"),
        Some((&alice.0, &alice.1)),
        Some(header)
    )
    .await
    .is_err());
    gw.shutdown("test").await;
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_password_canary_never_appears_in_logs_answers_or_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), 2))
        .await
        .unwrap();
    let addrs: Vec<SocketAddr> = sim.bmcs().iter().map(|b| b.addr()).collect();
    let config = demo::write_files(dir.path(), &addrs, "127.0.0.1:0".parse().unwrap()).unwrap();
    // node02's password is wrong, and a canary.
    let canary = "CanaryS3cret!";
    let pw = dir.path().join("secrets/node02.password");
    std::fs::remove_file(&pw).unwrap();
    common::private_file(&pw, canary);
    let mut gw = std::process::Command::new(env!("CARGO_BIN_EXE_ipmigw"))
        .args(["-vv", "serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = gw.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(a) = line.strip_prefix("ipmigw: serving on https://") {
                let _ = tx.send(a.split(' ').next().unwrap().to_string());
            }
            all += &line;
            all.push('\n');
        }
        all
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("gateway starts");
    let addr: SocketAddr = addr.parse().unwrap();
    let pki = dir.path().join("pki");
    let client = |args: &'static [&'static str]| {
        let mut c = common::ipmigw_as(addr, &pki, "alice");
        c.args(args);
        async move {
            let (code, out, err) = common::output_of(c).await;
            (code, out + &err)
        }
    };
    let (code, out) = client(&["power", "status", "node01"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = client(&["--json", "power", "status", "node02"]).await;
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("could not log in to the BMC"), "{out}");
    let (_, who) = client(&["whoami"]).await;
    std::process::Command::new("kill")
        .args(["-TERM", &gw.id().to_string()])
        .status()
        .unwrap();
    let status = gw.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logs = reader.join().unwrap();
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        logs.contains("BMC operation failed"),
        "debug logs were captured: {logs}"
    );
    for (what, text) in [
        ("gateway logs", &logs),
        ("client output", &out),
        ("whoami", &who),
        ("audit trail", &trail),
    ] {
        assert!(
            !text.contains(canary),
            "{what} contains the canary:\n{text}"
        );
        assert!(
            !text.contains(demo::SIM_OPERATOR_PASSWORD),
            "{what} contains a BMC password"
        );
    }
    assert!(
        trail.contains("\"event\":\"bmc_session\",") && trail.contains("\"action\":\"failure\""),
        "{trail}"
    );
    assert!(
        trail.contains("\"action\":\"logout\""),
        "sessions are closed at shutdown: {trail}"
    );
    sim.stop().await;
}
