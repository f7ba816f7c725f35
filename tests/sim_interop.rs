//! The built-in simulator against stock ipmitool (suites 3 and 17) and
//! freeipmi, against our own `ipmigw bmc` client, and under every fault
//! knob. ipmitool/freeipmi parts skip with a printed reason when the tools
//! are missing, and fail instead under IPMIGW_REQUIRE_INTEROP=1.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::ipmigw_bin;
use ipmigw::bmc::{reads, BmcClient, BmcConfig, BmcError};
use ipmigw::ipmi::cmd::app::{format_guid, GetDeviceId};
use ipmigw::ipmi::cmd::chassis::{ChassisControl, GetChassisStatus, PowerAction};
use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::console::ConsoleConfig;
use ipmigw::ipmi::session::Privilege;
use ipmigw::ipmi::wire::rakp::OpenSessionRequest;
use ipmigw::ipmi::wire::rmcp::RmcpHeader;
use ipmigw::ipmi::wire::session::{PayloadKind, PayloadType, RmcpPlusHeader};
use ipmigw::secret::SecretBytes;
use ipmigw::sim::{Faults, SimConfig, Simulator};

/// Simulated BMCs served by a runtime of their own, so tests can block on
/// external tools. Stopped on drop.
struct Sim {
    rt: tokio::runtime::Runtime,
    sim: Option<Simulator>,
}

impl Sim {
    fn start(count: usize, tweak: impl FnOnce(&mut SimConfig)) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), count);
        tweak(&mut cfg);
        let sim = rt.block_on(Simulator::start(cfg)).unwrap();
        Sim { rt, sim: Some(sim) }
    }

    fn sim(&self) -> &Simulator {
        self.sim.as_ref().unwrap()
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.sim().bmc(i).addr()
    }

    fn ipmitool(
        &self,
        i: usize,
        suite: &str,
        user: &str,
        pw: &str,
        args: &[&str],
    ) -> (bool, String) {
        let a = self.addr(i);
        let out = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &a.port().to_string(),
                "-U",
                user,
                "-P",
                pw,
                "-C",
                suite,
                "-N",
                "1",
                "-R",
                "2",
            ])
            .args(args)
            .output()
            .expect("run ipmitool");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    fn admin(&self, i: usize, suite: &str, args: &[&str]) -> String {
        let (ok, text) = self.ipmitool(i, suite, "admin", "Adm1nPass", args);
        assert!(ok, "ipmitool -C {suite} {args:?} failed:\n{text}");
        text
    }

    fn client(&self, i: usize, tweak: impl FnOnce(&mut BmcConfig)) -> Result<BmcClient, BmcError> {
        let console = ConsoleConfig::new(
            b"admin",
            SecretBytes::from(&b"Adm1nPass"[..]),
            Privilege::Administrator,
        );
        let mut cfg = BmcConfig::new(self.addr(i), console);
        tweak(&mut cfg);
        self.rt.block_on(BmcClient::connect(cfg))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.sim.take() {
            self.rt.block_on(s.stop());
        }
    }
}

fn have(tool: &str) -> bool {
    if Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var("IPMIGW_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("IPMIGW_REQUIRE_INTEROP=1 but {tool} is missing");
    }
    eprintln!("SKIPPED: {tool} not installed (apt-get install -y ipmitool freeipmi-tools)");
    false
}

#[test]
fn ipmitool_verbs_with_suites_3_and_17() {
    if !have("ipmitool") {
        return;
    }
    let s = Sim::start(1, |_| {});
    let bmc = s.sim().bmc(0);
    for suite in ["3", "17"] {
        assert_eq!(
            s.admin(0, suite, &["power", "status"]).trim(),
            "Chassis Power is off",
            "suite {suite}"
        );
        s.admin(0, suite, &["power", "on"]);
        assert!(bmc.power_on());
        assert_eq!(
            s.admin(0, suite, &["power", "status"]).trim(),
            "Chassis Power is on"
        );
        assert!(s.admin(0, suite, &["power", "cycle"]).contains("Cycle"));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(bmc.power_on(), "back on after the cycle");
        assert!(s
            .admin(0, suite, &["chassis", "status"])
            .contains("System Power         : on"));
        s.admin(0, suite, &["power", "off"]);
        assert!(!bmc.power_on());
        assert!(s
            .admin(0, suite, &["chassis", "bootdev", "pxe"])
            .contains("Set Boot Device to pxe"));
        assert!(s
            .admin(0, suite, &["chassis", "bootparam", "get", "5"])
            .contains("Force PXE"));
        assert!(s
            .admin(0, suite, &["mc", "info"])
            .contains("Manufacturer ID           : 32473"));
        let guid = bmc.with_model(|m, _| m.guid());
        assert!(s
            .admin(0, suite, &["mc", "guid"])
            .contains(&format_guid(&guid)));
        let sdr = s.admin(0, suite, &["sdr", "list"]);
        assert_eq!(sdr.lines().count(), 13, "{sdr}");
        assert!(sdr.contains("Inlet Temp"));
        let sensors = s.admin(0, suite, &["sensor", "list"]);
        assert!(
            sensors
                .lines()
                .any(|l| l.starts_with("12V") && l.contains("13.200")),
            "{sensors}"
        );
        let sel = s.admin(0, suite, &["sel", "list"]);
        assert!(
            sel.contains("Power Unit") && sel.contains("Power off/down"),
            "{sel}"
        );
        let fru = s.admin(0, suite, &["fru", "print"]);
        assert!(fru.contains("Product Serial        : SIM000001"), "{fru}");
        let (ok, text) = s.ipmitool(0, suite, "admin", "wrong", &["power", "status"]);
        assert!(!ok, "wrong password accepted: {text}");
        let (ok, text) = s.ipmitool(0, suite, "user", "Us3rPass", &["-L", "USER", "power", "on"]);
        assert!(
            !ok && text.contains("Insufficient privilege level"),
            "{text}"
        );
        assert!(!bmc.power_on(), "the USER session could not power on");
    }
    assert!(bmc.stats().privilege_refused >= 2);
}

#[test]
fn freeipmi_tools_need_no_workaround_flags() {
    if !have("ipmipower") {
        return;
    }
    let s = Sim::start(3, |_| {});
    let first = s.addr(0).port();
    let range = format!("127.0.0.1:[{}-{}]", first, first + 2);
    let consecutive = (0..3).all(|i| s.addr(i).port() == first + i as u16);
    let run = |tool: &str, args: &[&str]| {
        let out = Command::new(tool)
            .args(["-D", "LAN_2_0", "-u", "admin", "-p", "Adm1nPass"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{tool} {args:?}:\n{text}");
        text
    };
    let h = format!("127.0.0.1:{first}");
    assert_eq!(
        run("ipmipower", &["-h", &h, "--stat"]).trim(),
        "127.0.0.1: off"
    );
    assert_eq!(
        run("ipmipower", &["-h", &h, "-I", "17", "--on"]).trim(),
        "127.0.0.1: ok"
    );
    assert!(s.sim().bmc(0).power_on());
    assert_eq!(
        run("ipmipower", &["-h", &h, "-I", "3", "--stat"]).trim(),
        "127.0.0.1: on"
    );
    assert_eq!(
        run("ipmipower", &["-h", &h, "--off"]).trim(),
        "127.0.0.1: ok"
    );
    assert!(!s.sim().bmc(0).power_on());
    if consecutive {
        let fan = run("ipmipower", &["-h", &range, "--stat"]);
        assert_eq!(
            fan.lines().filter(|l| l.ends_with(": off")).count(),
            3,
            "{fan}"
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = format!("--sdr-cache-directory={}", cache.path().display());
    let sensors = run(
        "ipmi-sensors",
        &["-h", &h, "-l", "USER", &cache_arg, "--quiet-cache"],
    );
    assert!(
        sensors.contains("Inlet Temp") && sensors.contains("Fan4"),
        "{sensors}"
    );
    let sel = run("ipmi-sel", &["-h", &h, &cache_arg, "--quiet-cache"]);
    assert!(sel.contains("Power Unit"), "{sel}");
    let info = run("bmc-info", &["-h", &h, "--get-device-id"]);
    assert!(
        info.contains("32473") && info.contains("IPMI Version          : 2.0"),
        "{info}"
    );
    let fru = run("ipmi-fru", &["-h", &h, &cache_arg, "--quiet-cache"]);
    assert!(
        fru.contains("FRU Board Product Name: Simulated Board"),
        "{fru}"
    );
}

/// The row of `name` in a `|`-separated table (name first, or after
/// freeipmi's record ID), its cells trimmed, from the name on.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find_map(|cells| {
            let at = cells.iter().take(2).position(|c| *c == name)?;
            Some(cells[at..].to_vec())
        })
        .unwrap_or_else(|| panic!("no {name} in\n{table}"))
}

/// A powered-off host's fans, rails and CPU temperatures have no reading,
/// as on real BMCs: ipmitool, freeipmi and `ipmigw` show "no reading",
/// not 0 RPM and 0 V passing as `ok` below their lower thresholds.
#[test]
fn a_powered_off_hosts_sensors_have_no_reading() {
    if !have("ipmitool") || !have("ipmi-sensors") {
        return;
    }
    let s = Sim::start(1, |_| {});
    assert!(!s.sim().bmc(0).power_on());
    let sdr = s.admin(0, "17", &["sdr", "list"]);
    for name in ["Fan1", "12V", "CPU1 Temp", "Power"] {
        assert_eq!(row(&sdr, name)[1..], ["no reading", "ns"], "{sdr}");
    }
    assert_eq!(
        row(&sdr, "Inlet Temp")[2],
        "ok",
        "the inlet reads while off"
    );
    let list = s.admin(0, "17", &["sensor", "list"]);
    assert_eq!(row(&list, "Fan1")[1..4], ["na", "RPM", "na"], "{list}");
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new("ipmi-sensors")
        .args([
            "-D",
            "LAN_2_0",
            "-u",
            "admin",
            "-p",
            "Adm1nPass",
            "--quiet-cache",
        ])
        .arg(format!("-h127.0.0.1:{}", s.addr(0).port()))
        .arg(format!("--sdr-cache-directory={}", cache.path().display()))
        .output()
        .unwrap();
    let freeipmi = String::from_utf8_lossy(&out.stdout);
    let fan = row(&freeipmi, "Fan1");
    assert_eq!((fan[2], fan[4]), ("N/A", "N/A"), "{freeipmi}");
    // `ipmigw` (the gateway's and the direct client's sensors verb).
    let dir = tempfile::tempdir().unwrap();
    let pw = pw_file(dir.path());
    let host = s.addr(0).to_string();
    let sensors = |json: &[&str]| {
        let args = [
            &["bmc", "-H", &host, "-U", "admin", "--password-file", &pw][..],
            json,
            &["sensors"],
        ]
        .concat();
        let (code, out, err) = ipmigw_bin(&args);
        assert_eq!(code, 0, "{err}");
        out
    };
    let text = sensors(&[]);
    assert_eq!(row(&text, "Fan1")[1..4], ["na", "RPM", "ns"], "{text}");
    let v: serde_json::Value = serde_json::from_str(&sensors(&["--json"])).unwrap();
    let fan = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Fan1")
        .unwrap();
    assert_eq!(
        (&fan["reading"], &fan["status"]),
        (&serde_json::Value::Null, &"ns".into())
    );
    // Powered on, the same sensors read and are within their thresholds.
    s.admin(0, "17", &["power", "on"]);
    std::thread::sleep(Duration::from_millis(300));
    let sdr = s.admin(0, "17", &["sdr", "list"]);
    for name in ["Fan1", "12V", "CPU1 Temp"] {
        let r = row(&sdr, name);
        assert!(r[1] != "no reading" && r[2] == "ok", "{name}: {sdr}");
    }
}

fn pw_file(dir: &std::path::Path) -> String {
    let p = dir.join("pw");
    std::fs::write(&p, "Adm1nPass").unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    p.display().to_string()
}

#[test]
fn our_client_runs_every_verb_against_the_simulator() {
    let s = Sim::start(1, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let pw = pw_file(dir.path());
    let host = s.addr(0).to_string();
    let gw = |args: &[&str]| {
        let r = ipmigw_bin(
            &[
                &[
                    "bmc",
                    "-H",
                    &host,
                    "-U",
                    "admin",
                    "--password-file",
                    &pw,
                    "--privilege",
                    "administrator",
                ],
                args,
            ]
            .concat(),
        );
        assert_eq!(r.0, 0, "{args:?}: {}", r.2);
        r.1
    };
    assert_eq!(gw(&["power", "status"]).trim(), "Chassis Power is off");
    assert_eq!(gw(&["power", "on"]).trim(), "Chassis Power Control: Up/On");
    assert_eq!(
        gw(&["power", "reset"]).trim(),
        "Chassis Power Control: Reset"
    );
    assert_eq!(s.sim().bmc(0).with_model(|m, _| m.resets()), 1);
    gw(&["power", "cycle"]);
    gw(&["power", "soft"]);
    assert!(!s.sim().bmc(0).power_on());
    gw(&["power", "on"]);
    gw(&["power", "off"]);
    assert!(gw(&["chassis", "status"]).contains("System Power         : off"));
    gw(&["chassis", "bootdev", "cdrom", "--persistent", "--efi"]);
    assert_eq!(
        s.sim().bmc(0).with_model(|m, _| m.boot_flags()),
        (5, true, true, true)
    );
    assert!(gw(&["chassis", "bootdev"]).starts_with("Boot device: cdrom (persistent, EFI)"));
    assert!(gw(&["mc", "info"]).contains("Manufacturer ID           : 32473"));
    let sensors = gw(&["sensors"]);
    assert_eq!(sensors.lines().count(), 13, "{sensors}");
    assert!(gw(&["sel", "list"]).contains("Power Unit #0x00 | Power off/down | Asserted"));
    assert!(gw(&["fru"]).contains("Product Serial        : SIM000001"));
    assert_eq!(gw(&["raw", "0x06", "0x04"]).trim(), "55 00");
    let json: serde_json::Value = serde_json::from_str(&gw(&["--json", "sensors"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 13);
    let (code, _, err) = ipmigw_bin(&[
        "bmc",
        "-H",
        &host,
        "-U",
        "admin",
        "--password-file",
        &pw,
        "raw",
        "0x30",
        "0x01",
    ]);
    assert_eq!(code, 4, "OEM command refused by the BMC");
    assert!(err.contains("0xd4") || err.contains("0xc1"), "{err}");
}

#[test]
fn dropped_requests_are_retried_and_counted() {
    let s = Sim::start(1, |c| {
        c.faults.drop_requests = 0.5;
    });
    let c = s
        .client(0, |c| {
            c.timeout = Duration::from_millis(60);
            c.retries = 12;
        })
        .unwrap();
    let sensors = s.rt.block_on(reads::read_sensors(&c)).unwrap();
    assert_eq!(sensors.len(), 13);
    assert!(c.stats().retries > 0, "{:?}", c.stats());
    s.rt.block_on(c.close());
}

#[test]
fn a_lost_reply_to_power_on_is_outcome_unknown_and_not_resent() {
    let s = Sim::start(1, |_| {});
    let c = s
        .client(0, |c| c.timeout = Duration::from_millis(100))
        .unwrap();
    s.sim().bmc(0).set_faults(Faults {
        drop_replies: 1.0,
        ..Faults::default()
    });
    let err =
        s.rt.block_on(c.execute(&ChassisControl(PowerAction::On)))
            .unwrap_err();
    assert!(matches!(err, BmcError::OutcomeUnknown { .. }), "{err}");
    assert!(
        s.sim().bmc(0).power_on(),
        "the command ran; only the reply was lost"
    );
    let before = s.sim().bmc(0).with_model(|m, _| m.sel().len());
    s.sim().bmc(0).set_faults(Faults::default());
    assert!(
        s.rt.block_on(c.execute(&GetChassisStatus))
            .unwrap()
            .power_on
    );
    assert_eq!(
        s.sim().bmc(0).with_model(|m, _| m.sel().len()),
        before,
        "no second power-on event"
    );
}

#[test]
fn slow_bmcs_time_out_and_patient_clients_wait() {
    let s = Sim::start(1, |c| c.faults.delay = Duration::from_millis(150));
    let err = s
        .client(0, |c| {
            c.timeout = Duration::from_millis(50);
            c.retries = 1;
        })
        .unwrap_err();
    assert!(matches!(err, BmcError::NoAnswer { tries: 2, .. }), "{err}");
    let c = s
        .client(0, |c| c.timeout = Duration::from_millis(400))
        .unwrap();
    assert!(s.rt.block_on(c.execute(&GetDeviceId)).is_ok());
}

/// Opens a session by hand and stops there: a half-open session.
fn open_session_only(addr: SocketAddr) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut payload = Vec::new();
    OpenSessionRequest {
        tag: 1,
        max_privilege: 0,
        console_sid: 0x0BAD_CAFE,
        algorithms: CipherSuite::Suite17.algorithms(),
    }
    .emit(&mut payload);
    let mut d = Vec::new();
    RmcpHeader::IPMI.emit(&mut d);
    RmcpPlusHeader {
        payload_type: PayloadType::setup(PayloadKind::OPEN_SESSION_REQUEST),
        session_id: 0,
        seq: 0,
        payload_len: payload.len() as u16,
    }
    .emit(&mut d);
    d.extend_from_slice(&payload);
    sock.send_to(&d, addr).unwrap();
    let mut buf = [0u8; 512];
    sock.recv(&mut buf).expect("an Open Session Response");
}

/// The simulator wakes at its endpoint's timer: sessions nobody talks to
/// any more expire on time, with no datagram to make it look.
#[test]
fn idle_and_half_open_sessions_expire_without_traffic() {
    let idle = Duration::from_millis(300);
    let s = Sim::start(1, |c| c.idle_timeout = idle);
    let bmc = s.sim().bmc(0);
    let c = s
        .client(0, |c| c.keepalive = Duration::from_secs(60))
        .unwrap();
    open_session_only(bmc.addr());
    assert_eq!(bmc.session_count(), 2, "one active, one half-open");
    let quiet_since = std::time::Instant::now();
    while bmc.session_count() > 0 && quiet_since.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(bmc.session_count(), 0, "expired without traffic");
    assert_eq!(bmc.stats().expired, 2);
    assert!(quiet_since.elapsed() >= idle - Duration::from_millis(50));
    let st = bmc.stats();
    assert_eq!(
        (st.malformed, st.unknown_session, st.commands),
        (0, 0, 1),
        "nothing reached the BMC after the login's Set Session Privilege"
    );
    s.rt.block_on(c.close());
}

#[test]
fn a_rebooted_bmc_gets_a_new_login() {
    let s = Sim::start(1, |_| {});
    let c = s
        .client(0, |c| {
            c.timeout = Duration::from_millis(80);
            c.retries = 1;
        })
        .unwrap();
    assert!(s.rt.block_on(c.execute(&GetDeviceId)).is_ok());
    s.sim().bmc(0).forget_sessions();
    assert!(s.rt.block_on(c.execute(&GetDeviceId)).is_ok());
    assert_eq!(c.stats().relogins, 1);
    assert!(
        s.sim().bmc(0).stats().unknown_session >= 1,
        "the stale session's packets were dropped"
    );
}

#[test]
fn corrupted_replies_are_dropped_by_the_client() {
    let s = Sim::start(1, |_| {});
    let c = s
        .client(0, |c| {
            c.timeout = Duration::from_millis(60);
            c.retries = 2;
        })
        .unwrap();
    s.sim().bmc(0).set_faults(Faults {
        corrupt_replies: 1.0,
        ..Faults::default()
    });
    let err = s.rt.block_on(c.execute(&GetDeviceId)).unwrap_err();
    assert!(
        matches!(err, BmcError::NoAnswer { .. } | BmcError::Login { .. }),
        "{err}"
    );
    let st = c.stats();
    assert!(
        st.bad_integrity + st.malformed + st.wrong_session >= 3,
        "{st:?}"
    );
}

#[test]
fn silent_login_errors_still_read_as_authentication_failures() {
    let s = Sim::start(1, |c| c.faults.silent_login_errors = true);
    let console = ConsoleConfig::new(b"nobody", SecretBytes::from(&b"x"[..]), Privilege::User);
    let mut cfg = BmcConfig::new(s.addr(0), console);
    cfg.timeout = Duration::from_millis(60);
    cfg.retries = 1;
    let err = s.rt.block_on(BmcClient::connect(cfg)).unwrap_err();
    assert!(
        err.to_string().contains("authentication failed") && err.to_string().contains("RAKP 1"),
        "{err}"
    );
    // (1 + retries) logins, each sending RAKP 1 (1 + retries) times.
    assert_eq!(s.sim().bmc(0).stats().login_failures, 4);
}

#[test]
fn garbage_gets_no_answer_and_is_counted() {
    let s = Sim::start(1, |_| {});
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for junk in [
        &b""[..],
        b"\x06\x00\xff\x07",
        b"\x06\x00\xff\x07\x06\x00\x01\x02\x03\x04",
        &[0xFF; 900],
        b"\x06\x00\xff\x07\x06\xc0\x01\x00\x00\x00\x01\x00\x00\x00\x10\x00",
    ] {
        sock.send_to(junk, s.addr(0)).unwrap();
    }
    let mut buf = [0u8; 64];
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "something answered garbage"
    );
    let st = s.sim().bmc(0).stats();
    assert!(st.malformed + st.unknown_session >= 4, "{st:?}");
}

#[test]
fn ipmigw_sim_binary_serves_a_users_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[user]]\nname = \"ops\"\npassword = \"S3cret-ops\"\nprivilege = \"operator\"\n",
    )
    .unwrap();
    // Port 0: the simulator binds a free port and prints it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipmigw"))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--users",
            users.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut printed, &mut banner).unwrap();
    let Some(host) = banner
        .split(" on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .map(str::to_string)
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no address in the simulator's first line: {banner:?}");
    };
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "S3cret-ops").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut answered = false;
    for _ in 0..50 {
        let (code, out, _) = ipmigw_bin(&[
            "bmc",
            "-H",
            &host,
            "-U",
            "ops",
            "--password-file",
            pw.to_str().unwrap(),
            "--timeout-ms",
            "100",
            "--retries",
            "0",
            "power",
            "on",
        ]);
        if code == 0 {
            assert_eq!(out.trim(), "Chassis Power Control: Up/On");
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The default admin does not exist when a users file is given.
    std::fs::write(&pw, "Adm1nPass").unwrap();
    let (code, _, err) = ipmigw_bin(&[
        "bmc",
        "-H",
        &host,
        "-U",
        "admin",
        "--password-file",
        pw.to_str().unwrap(),
        "--timeout-ms",
        "200",
        "power",
        "status",
    ]);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.wait();
    let mut stdout = banner.clone();
    std::io::Read::read_to_string(&mut printed, &mut stdout).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        answered,
        "the simulator never answered; it printed:\n{stdout}"
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        stdout.contains("user ops") && stdout.contains("S3cret-ops"),
        "{stdout}"
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "did not stop cleanly on SIGTERM"
    );
    assert!(stderr.contains("stopped"), "{stderr}");

    std::fs::write(
        &users,
        "[[user]]\nname = \"ops\"\npassword = \"x\"\nprivilege = \"root\"\n",
    )
    .unwrap();
    let (code, _, err) = ipmigw_bin(&["sim", "--users", users.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(users.to_str().unwrap()) && err.contains("\"root\""),
        "{err}"
    );
    std::fs::write(&users, "[[user]]\nname = \"ops\"\npasword = \"x\"\n").unwrap();
    let (code, _, err) = ipmigw_bin(&["sim", "--users", users.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("line 3") || err.contains("pasword"), "{err}");
}
