//! `ipmigw bridge`: stock ipmitool and freeipmi through a local RMCP+
//! bridge, the gateway (policy, audit) and on to the built-in simulator or
//! ipmi_sim. Interop tests: skipped without the tools, failing instead with
//! IPMIGW_REQUIRE_INTEROP=1.

use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipmigw::gateway::{self, demo, GatewayHandle};
use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::wire::rakp::{OpenSessionRequest, OpenSessionResponse, Rakp1, RmcpPlusStatus};
use ipmigw::ipmi::wire::rmcp::RmcpHeader;
use ipmigw::ipmi::wire::session::{PayloadKind, PayloadType, RmcpPlusHeader, SessionPacket};
use ipmigw::sim::{SimConfig, Simulator};

mod common;

const LOCAL_PASSWORD: &str = "LocalPass1-bridge";

struct Bridge {
    child: Child,
    port: u16,
    /// The bridge's stderr, line by line.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Bridge {
    /// A bridge with `user`'s certificate, started as the login `user`
    /// (so its local user name is `user` too), plus `extra` arguments.
    fn start(dir: &Path, gw: SocketAddr, user: &str, target: &str) -> Bridge {
        Bridge::start_with(dir, gw, user, target, &[])
    }

    fn start_with(dir: &Path, gw: SocketAddr, user: &str, target: &str, extra: &[&str]) -> Bridge {
        let pw = dir.join(format!("bridge-{user}.pw"));
        if !pw.exists() {
            common::private_file(&pw, LOCAL_PASSWORD);
        }
        let mut child = common::ipmigw_as(gw, &dir.join("pki"), user)
            .env("USER", user)
            .env_remove("LOGNAME")
            .args([
                "bridge",
                "--listen",
                "127.0.0.1:0",
                "--password-file",
                pw.to_str().unwrap(),
            ])
            .args(extra)
            .arg(target)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        std::thread::spawn(move || for _ in lines {});
        let addr = first
            .split("udp://")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("{first}"));
        let port = addr.parse::<SocketAddr>().unwrap().port();
        Bridge {
            child,
            port,
            stderr,
        }
    }

    /// Every stderr line that arrives within `limit`.
    fn stderr_lines(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits at most `limit` for a stderr line containing `text`.
    fn wait_for_stderr(&self, text: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ipmitool(port: u16, user: &str, password: &str, suite: &str, args: &[&str]) -> Output {
    Command::new("ipmitool")
        .args([
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-P",
            password,
            "-C",
            suite,
        ])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn first_column(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('|').next().unwrap_or("").trim().to_string())
        .collect()
}

fn tools() -> Option<()> {
    common::interop_tools()?;
    for t in ["ipmipower", "ipmi-sensors"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("IPMIGW_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "{t} missing"
            );
            eprintln!("SKIPPED: {t} missing");
            return None;
        }
    }
    Some(())
}

struct Env {
    dir: tempfile::TempDir,
    sim: Simulator,
    gw: GatewayHandle,
}

async fn setup() -> Env {
    setup_with(|_| {}).await
}

/// [`setup`], after `edit` has changed the demo files (it gets the dir).
async fn setup_with(edit: impl FnOnce(&Path)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), 2))
        .await
        .unwrap();
    for b in sim.bmcs() {
        b.with_model(|m, now| m.set_host_power(true, now));
    }
    let addrs: Vec<SocketAddr> = sim.bmcs().iter().map(|b| b.addr()).collect();
    let config = demo::write_files(dir.path(), &addrs, "127.0.0.1:0".parse().unwrap()).unwrap();
    // ipmitool sends several state-changing commands for one `chassis
    // bootdev`: the demo's 6/minute would throttle the comparison runs.
    let op = dir.path().join("policies/operator.toml");
    let text = std::fs::read_to_string(&op).unwrap().replace(
        "state_changing_rate = \"6/minute\"",
        "state_changing_rate = \"600/minute\"",
    );
    std::fs::write(&op, text).unwrap();
    edit(dir.path());
    let gw = gateway::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Env { dir, sim, gw }
}

fn audit(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_and_freeipmi_through_the_bridge_match_the_bmc() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let direct_port = env.sim.bmc(0).addr().port();
    let direct = move |suite: &str, args: &[&str]| {
        ipmitool(direct_port, "admin", common::ADMIN_PASSWORD, suite, args)
    };
    let checks = tokio::task::spawn_blocking(move || {
        let bridge = Bridge::start(&dir, gw_addr, "alice", "node01");
        let via = |suite: &str, args: &[&str]| {
            ipmitool(bridge.port, "alice", LOCAL_PASSWORD, suite, args)
        };
        for suite in ["17", "3"] {
            for args in [
                &["power", "status"][..],
                &["mc", "info"],
                &["fru", "print"],
                &["chassis", "bootdev", "pxe"],
            ] {
                let (a, b) = (direct(suite, args), via(suite, args));
                assert!(
                    b.status.success(),
                    "-C {suite} {args:?} through the bridge: {}",
                    String::from_utf8_lossy(&b.stderr)
                );
                assert_eq!(stdout(&a), stdout(&b), "-C {suite} {args:?}");
            }
            for args in [&["sdr", "list"][..], &["sensor", "list"], &["sel", "list"]] {
                let (a, b) = (direct(suite, args), via(suite, args));
                assert!(
                    b.status.success(),
                    "-C {suite} {args:?}: {}",
                    String::from_utf8_lossy(&b.stderr)
                );
                // Readings drift between the two reads; names and rows do not.
                assert_eq!(
                    first_column(&stdout(&a)),
                    first_column(&stdout(&b)),
                    "-C {suite} {args:?}"
                );
            }
        }
        for (action, want) in [
            ("off", "Chassis Power is off"),
            ("on", "Chassis Power is on"),
        ] {
            assert!(via("17", &["power", action]).status.success());
            assert_eq!(
                stdout(&direct("17", &["power", "status"])).trim(),
                want,
                "the BMC saw power {action}"
            );
        }
        let out = Command::new("ipmipower")
            .args([
                "-D",
                "LAN_2_0",
                "-h",
                &format!("127.0.0.1:{}", bridge.port),
                "-u",
                "alice",
                "-p",
                LOCAL_PASSWORD,
                "--stat",
            ])
            .output()
            .unwrap();
        assert_eq!(
            stdout(&out).trim(),
            "127.0.0.1: on",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new("ipmi-sensors")
            .args([
                "-D",
                "LAN_2_0",
                "-h",
                &format!("127.0.0.1:{}", bridge.port),
                "-u",
                "alice",
                "-p",
                LOCAL_PASSWORD,
                "--quiet-cache",
                "--sdr-cache-directory",
                cache.path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success() && stdout(&out).contains("CPU1 Temp"),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        // A wrong local password is refused locally.
        assert!(!ipmitool(
            bridge.port,
            "alice",
            "WrongPass",
            "17",
            &["power", "status"]
        )
        .status
        .success());
    });
    checks.await.unwrap();
    let lines = audit(env.dir.path());
    let forwarded: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "request" && l["user"] == "alice")
        .collect();
    assert!(forwarded
        .iter()
        .any(|l| l["command"] == "chassis.power.off" && l["decision"] == "allow"));
    assert!(forwarded.iter().any(|l| l["command"] == "sdr.read"));
    // One request record per forwarded command, each with its result (or a deny).
    for r in &forwarded {
        let answered = r["decision"] == "deny"
            || lines
                .iter()
                .any(|l| l["event"] == "result" && l["request_id"] == r["request_id"]);
        assert!(answered, "{r}");
    }
    assert!(
        !lines.iter().any(|l| l.to_string().contains(LOCAL_PASSWORD)),
        "the local password never reaches the gateway"
    );
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_gets_insufficient_privilege_and_the_denial_is_audited() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let out = tokio::task::spawn_blocking(move || {
        let bridge = Bridge::start(&dir, gw_addr, "bob", "node02");
        let status = ipmitool(
            bridge.port,
            "bob",
            LOCAL_PASSWORD,
            "17",
            &["power", "status"],
        );
        assert!(status.status.success());
        ipmitool(bridge.port, "bob", LOCAL_PASSWORD, "17", &["power", "off"])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Insufficient privilege level"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.sim.bmc(1).power_on(), "nothing reached the BMC");
    let lines = audit(env.dir.path());
    let denial = lines
        .iter()
        .find(|l| {
            l["event"] == "request" && l["user"] == "bob" && l["command"] == "chassis.power.off"
        })
        .expect("audited");
    assert_eq!(denial["decision"], "deny");
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_in_front_of_ipmi_sim() {
    let Some(bmc) = common::IpmiSim::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config =
        demo::write_files(dir.path(), &[bmc.addr()], "127.0.0.1:0".parse().unwrap()).unwrap();
    let gw = gateway::start(&config).await.unwrap();
    let (d, addr): (PathBuf, SocketAddr) = (dir.path().to_path_buf(), gw.local_addr());
    let direct_port = bmc.port;
    tokio::task::spawn_blocking(move || {
        let bridge = Bridge::start(&d, addr, "alice", "node01");
        for suite in ["17", "3"] {
            let b = ipmitool(bridge.port, "alice", LOCAL_PASSWORD, suite, &["mc", "info"]);
            assert!(
                b.status.success(),
                "-C {suite}: {}",
                String::from_utf8_lossy(&b.stderr)
            );
            let a = ipmitool(
                direct_port,
                "admin",
                common::ADMIN_PASSWORD,
                "3",
                &["mc", "info"],
            );
            assert_eq!(stdout(&a), stdout(&b), "-C {suite}");
        }
        assert!(
            ipmitool(bridge.port, "alice", LOCAL_PASSWORD, "17", &["power", "on"])
                .status
                .success()
        );
    })
    .await
    .unwrap();
    assert_eq!(bmc.chassis("power"), "1");
    gw.shutdown("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bridge_process_serves_a_map_of_targets() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let direct: Vec<u16> = env.sim.bmcs().iter().map(|b| b.addr().port()).collect();
    tokio::task::spawn_blocking(move || {
        let map = dir.join("bridges.txt");
        std::fs::write(&map, "# two BMCs\nnode01\nnode02   # the second\n").unwrap();
        let pw = dir.join("map.pw");
        common::private_file(&pw, LOCAL_PASSWORD);
        let mut child = common::ipmigw_as(gw_addr, &dir.join("pki"), "alice")
            .args([
                "bridge",
                "--user",
                "me",
                "--listen",
                "127.0.0.1:0",
                "--password-file",
                pw.to_str().unwrap(),
                "--map",
                map.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut ports = Vec::new();
        for _ in 0..2 {
            let l = lines.next().unwrap().unwrap();
            let addr: SocketAddr = l
                .split("udp://")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap()
                .parse()
                .unwrap();
            ports.push(addr.port());
        }
        std::thread::spawn(move || for _ in lines {});
        for (via, direct) in ports.iter().zip(&direct) {
            let a = ipmitool(
                *direct,
                "admin",
                common::ADMIN_PASSWORD,
                "17",
                &["mc", "info"],
            );
            let b = ipmitool(*via, "me", LOCAL_PASSWORD, "17", &["mc", "info"]);
            assert_eq!(stdout(&a), stdout(&b));
        }
        let _ = child.kill();
        let _ = child.wait();
    })
    .await
    .unwrap();
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// Open Session and RAKP 1 for `name`, sent by hand: the RAKP 2 payload the
/// bridge answers with, exactly as it came.
fn rakp2_for(port: u16, name: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    let ask = |kind: PayloadKind, payload: &[u8]| -> Vec<u8> {
        let mut d = Vec::new();
        RmcpHeader::IPMI.emit(&mut d);
        RmcpPlusHeader {
            payload_type: PayloadType::setup(kind),
            session_id: 0,
            seq: 0,
            payload_len: payload.len() as u16,
        }
        .emit(&mut d);
        d.extend_from_slice(payload);
        sock.send(&d).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("the bridge answers");
        let (_, rest) = RmcpHeader::parse(&buf[..n]).unwrap();
        match SessionPacket::parse(rest).unwrap() {
            SessionPacket::RmcpPlus(p) => p.payload.to_vec(),
            SessionPacket::V15(_) => panic!("an IPMI 1.5 answer"),
        }
    };
    let mut p = Vec::new();
    OpenSessionRequest {
        tag: 1,
        max_privilege: 0,
        console_sid: 0x1234_5678,
        algorithms: CipherSuite::Suite17.algorithms(),
    }
    .emit(&mut p);
    let opened = OpenSessionResponse::parse(&ask(PayloadKind::OPEN_SESSION_REQUEST, &p)).unwrap();
    let bmc_sid = opened.accepted.expect("a session").bmc_sid;
    let mut p = Vec::new();
    Rakp1 {
        tag: 2,
        bmc_sid,
        console_random: [9; 16],
        role: 0x14,
        username: name.to_vec(),
    }
    .emit(&mut p);
    ask(PayloadKind::RAKP1, &p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_bridge_user_name_gets_a_rakp2_hmac() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    tokio::task::spawn_blocking(move || {
        // Started by login "alice" but told to answer to "ops".
        let bridge = Bridge::start_with(&dir, gw_addr, "alice", "node01", &["--user", "ops"]);
        let other = ipmitool(
            bridge.port,
            "alice",
            LOCAL_PASSWORD,
            "17",
            &["-v", "power", "status"],
        );
        assert!(
            !other.status.success(),
            "another name with the right password"
        );
        let err = String::from_utf8_lossy(&other.stderr);
        assert!(err.contains("unauthorized name"), "{err}");
        // What any local process gets for a wrong name: tag, status 0x0D,
        // reserved, console SID; no random, no GUID, no HMAC to crack.
        let refusal = rakp2_for(bridge.port, b"mallory");
        assert_eq!(refusal.len(), 8, "{refusal:02x?}");
        assert_eq!(
            RmcpPlusStatus(refusal[1]),
            RmcpPlusStatus::UNAUTHORIZED_NAME
        );
        let ok = ipmitool(
            bridge.port,
            "ops",
            LOCAL_PASSWORD,
            "17",
            &["power", "status"],
        );
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(stdout(&ok).trim(), "Chassis Power is on");
        // The right name still gets the full RAKP 2 (16 + 16 + 32-byte HMAC).
        assert_eq!(rakp2_for(bridge.port, b"ops").len(), 8 + 16 + 16 + 32);
    })
    .await
    .unwrap();
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_make_the_bridge_refuse_even_the_right_one_for_a_while() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    tokio::task::spawn_blocking(move || {
        let bridge = Bridge::start(&dir, gw_addr, "alice", "node01");
        let status =
            |pw: &str| ipmitool(bridge.port, "alice", pw, "17", &["-v", "power", "status"]);
        // ipmitool checks RAKP 2 itself and stops without a RAKP 3: the
        // bridge counts each such login when its half-open session expires
        // (5 s), and after the third refuses logins for 1 s.
        for _ in 0..3 {
            assert!(!status("WrongPass-WrongPass").status.success());
        }
        let line = bridge.wait_for_stderr("refusing logins", Duration::from_secs(10));
        let locked_at = Instant::now();
        assert!(line.is_some(), "no back-off after three wrong passwords");
        let refused = status(LOCAL_PASSWORD);
        // A tool run that outlasted the 1 s back-off proves nothing.
        if locked_at.elapsed() < Duration::from_millis(900) {
            let err = String::from_utf8_lossy(&refused.stderr);
            assert!(
                !refused.status.success(),
                "the right password during the back-off"
            );
            assert!(err.contains("insufficient resources"), "{err}");
        } else {
            eprintln!("SKIPPED the refusal check: ipmitool took over 900 ms");
        }
        std::thread::sleep(Duration::from_millis(1100).saturating_sub(locked_at.elapsed()));
        let ok = status(LOCAL_PASSWORD);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    })
    .await
    .unwrap();
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// Waits at most 10 s for `child` to exit; kills it and fails otherwise.
fn exit_code(mut child: Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("still running after 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_password_file_needs_allow_weak_password() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    tokio::task::spawn_blocking(move || {
        let pw = dir.join("bridge-alice.pw");
        common::private_file(&pw, "letmein\n");
        let mut child = common::ipmigw_as(gw_addr, &dir.join("pki"), "alice")
            .env("USER", "alice")
            .args([
                "bridge",
                "--listen",
                "127.0.0.1:0",
                "--password-file",
                pw.to_str().unwrap(),
                "node01",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let code = exit_code(child);
        let stderr = std::io::read_to_string(err).unwrap();
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("shorter than 16") && stderr.contains("--allow-weak-password"),
            "{stderr}"
        );
        assert!(!stderr.contains("letmein"), "{stderr}");
        // The same file (the bridge's own for alice) with the opt-in works.
        let bridge =
            Bridge::start_with(&dir, gw_addr, "alice", "node01", &["--allow-weak-password"]);
        let ok = ipmitool(bridge.port, "alice", "letmein", "17", &["power", "status"]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    })
    .await
    .unwrap();
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// ipmipower re-sends a request whose answer is slow, under a new session
/// sequence number but the same rqSeq; the bridge used to forward every
/// copy (one `--off` became nine power-offs). A copy now gets the first
/// answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_power_command_runs_once() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let bridge = Bridge::start(&dir, gw_addr, "alice", "node01");
    // Warm the gateway's session, then make the BMC slow to answer.
    let out = ipmitool(
        bridge.port,
        "alice",
        LOCAL_PASSWORD,
        "17",
        &["power", "status"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.sim.bmc(0).set_faults(ipmigw::sim::Faults {
        delay: Duration::from_millis(500),
        ..Default::default()
    });
    let before = env.sim.bmc(0).with_model(|m, _| m.controls());
    let port = bridge.port;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ipmipower")
            .args(["-D", "LAN_2_0", "-h", &format!("127.0.0.1:{port}")])
            .args(["-u", "alice", "-p", LOCAL_PASSWORD, "--off"])
            .args([
                "--session-timeout",
                "20000",
                "--retransmission-timeout",
                "400",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let ran = env.sim.bmc(0).with_model(|m, _| m.controls()) - before;
    assert_eq!(
        ran,
        1,
        "power-offs run: ipmipower said {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.sim.bmc(0).power_on());
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// ipmitool run directly against simulated BMC `port` as its admin.
fn direct(port: u16, args: &[&str]) -> String {
    let out = ipmitool(port, "admin", common::ADMIN_PASSWORD, "17", args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// `ipmitool chassis bootdev` sends five messages for one change; under a
/// 3/minute state-changing limit three changes pass whole, and the fourth
/// is refused cleanly: ipmitool exits non-zero (it ignores completion
/// codes there, so the refused boot-flags write gets no answer), the BMC's
/// boot device is the third's and it is not left "set in progress".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_device_change_counts_once_and_a_refused_one_fails() {
    if tools().is_none() {
        return;
    }
    let env = setup_with(|dir| {
        let op = dir.join("policies/operator.toml");
        let text = std::fs::read_to_string(&op).unwrap().replace(
            "state_changing_rate = \"600/minute\"",
            "state_changing_rate = \"3/minute\"",
        );
        std::fs::write(&op, text).unwrap();
    })
    .await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let sim_port = env.sim.bmc(0).addr().port();
    tokio::task::spawn_blocking(move || {
        let bridge = Bridge::start(&dir, gw_addr, "alice", "node01");
        let bootdev = |extra: &[&str], dev: &str| {
            let args = [extra, &["chassis", "bootdev", dev]].concat();
            ipmitool(bridge.port, "alice", LOCAL_PASSWORD, "17", &args)
        };
        for dev in ["pxe", "disk", "cdrom"] {
            let out = bootdev(&[], dev);
            assert!(out.status.success(), "{dev}: {}", stderr(&out));
            assert_eq!(stdout(&out).trim(), format!("Set Boot Device to {dev}"));
        }
        // Fewer retries than ipmitool's default (ten seconds) for the
        // unanswered boot-flags write.
        let started = Instant::now();
        let out = bootdev(&["-N", "1", "-R", "2"], "bios");
        assert!(!out.status.success(), "the fourth change: {}", stdout(&out));
        assert!(
            stderr(&out).contains("Boot Parameter 5"),
            "{}",
            stderr(&out)
        );
        assert!(started.elapsed() < Duration::from_secs(15));
        assert!(bridge
            .wait_for_stderr("rate limited", Duration::from_secs(5))
            .is_some());
        assert!(direct(sim_port, &["chassis", "bootparam", "get", "5"]).contains("CD/DVD"));
        assert!(
            direct(sim_port, &["chassis", "bootparam", "get", "0"]).contains("set complete"),
            "the BMC is not left set in progress"
        );
    })
    .await
    .unwrap();
    let lines = audit(env.dir.path());
    let boot: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "request" && l["command"] == "chassis.bootdev.set")
        .collect();
    let allowed = boot.iter().filter(|l| l["decision"] == "allow").count();
    assert_eq!(allowed, 15, "three changes of five messages each");
    let flags_refused = boot.iter().any(|l| {
        l["decision"] == "deny"
            && l["data"].as_str().unwrap().starts_with("05")
            && l["rule"].as_str().unwrap().contains("state_changing_rate")
    });
    assert!(
        flags_refused,
        "the fourth boot-flags write is a rate-limit deny"
    );
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// Boot flags no role grants (CMOS clear, keyboard lock-out), refused by
/// policy, fail the tool too: ipmitool exits 0 on any completion code for
/// `chassis bootdev`, so the refused write goes unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_dangerous_boot_flags_fail_the_tool() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let sim_port = env.sim.bmc(0).addr().port();
    tokio::task::spawn_blocking(move || {
        let bridge = Bridge::start(&dir, gw_addr, "alice", "node01");
        let before = direct(sim_port, &["chassis", "bootparam", "get", "5"]);
        for option in ["options=clear-cmos", "options=lockkbd"] {
            let args = ["-N", "1", "-R", "2", "chassis", "bootdev", "disk", option];
            let out = ipmitool(bridge.port, "alice", LOCAL_PASSWORD, "17", &args);
            assert!(
                !out.status.success(),
                "{option}: exit 0 although refused: {}",
                stderr(&out)
            );
        }
        assert_eq!(
            direct(sim_port, &["chassis", "bootparam", "get", "5"]),
            before,
            "the BMC's boot flags are unchanged"
        );
    })
    .await
    .unwrap();
    let refused = audit(env.dir.path()).iter().any(|l| {
        l["event"] == "request"
            && l["decision"] == "deny"
            && l["command"] == "chassis.bootopt.flags"
    });
    assert!(refused, "the refusal is audited as chassis.bootopt.flags");
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// A TCP port on loopback that was free a moment ago.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway process restarts under a running bridge: while it is away
/// every command is answered at once (node busy) and the bridge says so
/// once, not per command; once it is back the bridge reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_reconnects_after_the_gateway_restarts() {
    use common::gateway::{demo_files, GatewayProcess};
    if tools().is_none() {
        return;
    }
    let sim = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), 1))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let port = free_tcp_port();
    let config = demo_files(&dir, &sim, |d| {
        let cfg = d.join("gateway.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(cfg, text).unwrap();
    });
    tokio::task::spawn_blocking(move || {
        let mut gw = GatewayProcess::start(&config, &[]).unwrap();
        let bridge = Bridge::start(&dir, gw.addr, "alice", "node01");
        let status = || {
            ipmitool(
                bridge.port,
                "alice",
                LOCAL_PASSWORD,
                "17",
                &["power", "status"],
            )
        };
        assert!(status().status.success(), "{}", stderr(&status()));
        gw.signal("TERM");
        assert!(
            gw.wait(Duration::from_secs(15)).is_some(),
            "the gateway stops"
        );
        for _ in 0..3 {
            let started = Instant::now();
            let out = status();
            assert!(!out.status.success());
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "answered at once while the gateway is away: {:?}",
                started.elapsed()
            );
        }
        let told = bridge.stderr_lines(Duration::from_millis(500));
        let outages = told
            .iter()
            .filter(|l| l.contains("lost the gateway"))
            .count();
        assert_eq!(outages, 1, "told once per outage: {told:#?}");
        let _gw = GatewayProcess::start(&config, &[]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let back = loop {
            let out = status();
            if out.status.success() {
                break out;
            }
            assert!(Instant::now() < deadline, "no reconnect: {}", stderr(&out));
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(stdout(&back).trim(), "Chassis Power is off");
        assert!(bridge
            .wait_for_stderr("the gateway is back", Duration::from_secs(5))
            .is_some());
    })
    .await
    .unwrap();
    sim.stop().await;
}

/// Get System GUID goes to the BMC (a named read), so every bridge shows
/// the machine's GUID, not one it made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_system_guid_is_the_bmcs() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let sim_port = env.sim.bmc(1).addr().port();
    tokio::task::spawn_blocking(move || {
        let want = direct(sim_port, &["mc", "guid"]);
        for _ in 0..2 {
            let bridge = Bridge::start(&dir, gw_addr, "bob", "node02");
            let out = ipmitool(bridge.port, "bob", LOCAL_PASSWORD, "17", &["mc", "guid"]);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(stdout(&out), want);
        }
    })
    .await
    .unwrap();
    let lines = audit(env.dir.path());
    assert!(lines.iter().any(|l| l["event"] == "request"
        && l["user"] == "bob"
        && l["cmd"] == 0x37
        && l["command"] == "mc.info"
        && l["decision"] == "allow"));
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// A target the gateway does not let the user act on is refused at start,
/// with a message that says so (not "insufficient privilege" later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_target_is_refused_at_start() {
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    tokio::task::spawn_blocking(move || {
        let pw = dir.join("bridge.pw");
        common::private_file(&pw, LOCAL_PASSWORD);
        let map = dir.join("map.txt");
        std::fs::write(&map, "node01\nnode99\n").unwrap();
        for target in [&["node99"][..], &["--map", map.to_str().unwrap()]] {
            let mut child = common::ipmigw_as(gw_addr, &dir.join("pki"), "alice")
                .args(["bridge", "--user", "alice", "--listen", "127.0.0.1:0"])
                .args(["--password-file", pw.to_str().unwrap()])
                .args(target)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
            let code = exit_code(child);
            let (out, err) = (
                std::io::read_to_string(out).unwrap(),
                std::io::read_to_string(err).unwrap(),
            );
            assert_eq!(code, 1, "{target:?}: {err}");
            assert!(
                err.contains("node99") && err.contains("no BMC of that name"),
                "{err}"
            );
            assert!(
                err.contains("node01, node02"),
                "names the user's BMCs: {err}"
            );
            assert!(!out.contains("udp://"), "no listener was opened: {out}");
        }
    })
    .await
    .unwrap();
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// freeipmi's `bmc-info` works for a viewer through the bridge (Device
/// GUID, System GUID and System Info Parameters are `mc.info`), and an
/// ipmitool run's PICMG/HPM.2/VITA probes are reads, not deny records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmc_info_works_for_a_viewer_and_probes_are_not_denials() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    let sim_port = env.sim.bmc(0).addr().port();
    tokio::task::spawn_blocking(move || {
        let bmc_info = |port: u16, user: &str, pw: &str| {
            let out = Command::new("bmc-info")
                .args(["-D", "LAN_2_0", "-u", user, "-p", pw])
                .arg(format!("-h127.0.0.1:{port}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "bmc-info as {user}: {}", stderr(&out));
            stdout(&out)
        };
        let guids = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains("GUID"))
                .map(str::to_string)
                .collect()
        };
        let want = guids(&bmc_info(sim_port, "admin", common::ADMIN_PASSWORD));
        assert_eq!(want.len(), 2, "Device and System GUID: {want:?}");
        let bob = Bridge::start(&dir, gw_addr, "bob", "node01");
        assert_eq!(guids(&bmc_info(bob.port, "bob", LOCAL_PASSWORD)), want);
        let alice = Bridge::start(&dir, gw_addr, "alice", "node01");
        let out = ipmitool(
            alice.port,
            "alice",
            LOCAL_PASSWORD,
            "17",
            &["power", "status"],
        );
        assert!(out.status.success());
        assert_eq!(stderr(&out), "", "no probe failure shown");
        let told = alice.stderr_lines(Duration::from_millis(300));
        assert!(told.is_empty(), "the bridge refused nothing: {told:?}");
    })
    .await
    .unwrap();
    let lines = audit(env.dir.path());
    let alice_denied: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "request" && l["user"] == "alice" && l["decision"] == "deny")
        .collect();
    assert!(alice_denied.is_empty(), "{alice_denied:#?}");
    for (netfn, cmd) in [(6, 0x08), (6, 0x37), (0x2C, 0x00), (0x2C, 0x3E)] {
        assert!(
            lines.iter().any(|l| l["event"] == "request"
                && l["netfn"] == netfn
                && l["cmd"] == cmd
                && l["command"] == "mc.info"
                && l["decision"] == "allow"),
            "{netfn:#x}/{cmd:#x} is an allowed mc.info read"
        );
    }
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}

/// `sol activate` through the bridge attaches to the gateway's console as
/// the writer with the bridge user's rights: a viewer (bob, console.read
/// only) is refused as a BMC refuses a user without the privilege, the
/// gateway records the denial, and no payload is activated on the BMC.
/// `sol deactivate` with nothing active says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_sol_activate_is_refused_and_nothing_is_activated() {
    if tools().is_none() {
        return;
    }
    let env = setup().await;
    let (dir, gw_addr) = (env.dir.path().to_path_buf(), env.gw.local_addr());
    tokio::task::spawn_blocking(move || {
        let bridge = Bridge::start(&dir, gw_addr, "bob", "node01");
        let sol = |what: &str| ipmitool(bridge.port, "bob", LOCAL_PASSWORD, "17", &["sol", what]);
        let out = sol("activate");
        assert!(!out.status.success());
        assert!(
            stderr(&out)
                .to_lowercase()
                .contains("insufficient privilege"),
            "{}",
            stderr(&out)
        );
        assert!(bridge
            .wait_for_stderr("sol activate refused", Duration::from_secs(5))
            .is_some());
        let out = sol("deactivate");
        assert!(
            stderr(&out).contains("already de-activated"),
            "{}",
            stderr(&out)
        );
    })
    .await
    .unwrap();
    assert!(!env.sim.bmcs()[0].sol_active(), "no payload on the BMC");
    let lines = audit(env.dir.path());
    assert!(
        lines.iter().any(|l| l["event"] == "request"
            && l["user"] == "bob"
            && l["command"] == "console.write"
            && l["decision"] == "deny"),
        "the gateway recorded the refused attach"
    );
    env.gw.shutdown("test").await;
    env.sim.stop().await;
}
