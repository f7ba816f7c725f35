//! `ipmigw bmc` and the library client against OpenIPMI's ipmi_sim, cross-
//! checked with stock ipmitool. Skips (printing why) when the tools are not
//! installed, fails instead under IPMIGW_REQUIRE_INTEROP=1.

mod common;

use std::time::{Duration, Instant};

use common::{ipmigw_bin, IpmiSim};
use ipmigw::bmc::{reads, BmcClient, BmcConfig};
use ipmigw::ipmi::cmd::app::GetDeviceId;
use ipmigw::ipmi::cmd::chassis::GetChassisStatus;
use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::console::ConsoleConfig;
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "exit {}; stderr: {}", r.0, r.2);
    r.1
}

/// Rows of a `|`-separated table, cells trimmed.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.contains('|'))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// " Key : value" lines.
fn fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(" : "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn suite_3_login_and_power_round_trip_cross_checked_with_ipmitool() {
    let Some(sim) = IpmiSim::start() else { return };
    assert_eq!(
        ok(sim.ipmigw(&["power", "status"])).trim(),
        "Chassis Power is off"
    );
    assert_eq!(
        ok(sim.ipmigw(&["power", "on"])).trim(),
        "Chassis Power Control: Up/On"
    );
    assert_eq!(
        sim.ipmitool(&["power", "status"]).trim(),
        "Chassis Power is on"
    );
    assert_eq!(sim.chassis("power"), "1");
    assert_eq!(
        ok(sim.ipmigw(&["--json", "power", "status"])).trim(),
        r#"{"power":"on"}"#
    );
    sim.ipmitool(&["power", "off"]);
    assert_eq!(
        ok(sim.ipmigw(&["power", "status"])).trim(),
        "Chassis Power is off"
    );
    sim.ipmitool(&["power", "on"]);
    assert_eq!(
        ok(sim.ipmigw(&["power", "off"])).trim(),
        "Chassis Power Control: Down/Off"
    );
    assert_eq!(
        sim.ipmitool(&["power", "status"]).trim(),
        "Chassis Power is off"
    );
    let log = std::fs::read_to_string(sim.path("chassis.log")).unwrap();
    assert_eq!(
        log.lines().filter(|l| *l == "set power 1").count(),
        2,
        "{log}"
    );
}

#[test]
fn suite_17_is_refused_by_ipmi_sim_and_said_so() {
    let Some(sim) = IpmiSim::start() else { return };
    let (code, _, err) = sim.ipmigw(&["--cipher", "17", "power", "status"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("none of the cipher suites [17]")
            && err.contains("invalid authentication algorithm"),
        "{err}"
    );
    // With both allowed (the default) the login falls back to 3.
    assert_eq!(
        ok(sim.ipmigw(&["-v", "power", "status"])).trim(),
        "Chassis Power is off"
    );
}

#[test]
fn bootdev_set_and_read_back() {
    let Some(sim) = IpmiSim::start() else { return };
    assert_eq!(
        ok(sim.ipmigw(&["chassis", "bootdev", "pxe"])).trim(),
        "Set Boot Device to pxe"
    );
    assert_eq!(sim.chassis("boot"), "pxe");
    assert!(ok(sim.ipmigw(&["chassis", "bootdev"])).starts_with("Boot device: pxe"));
    assert!(sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Force PXE"));
    ok(sim.ipmigw(&["chassis", "bootdev", "bios", "--persistent"]));
    assert_eq!(sim.chassis("boot"), "bios");
    let json: serde_json::Value =
        serde_json::from_str(&ok(sim.ipmigw(&["--json", "chassis", "bootdev"]))).unwrap();
    assert_eq!(json["device"], "bios");
    assert!(sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .contains("Force Boot into BIOS Setup"));
}

#[test]
fn mc_info_matches_ipmitool() {
    let Some(sim) = IpmiSim::start() else { return };
    let ours = fields(&ok(sim.ipmigw(&["mc", "info"])));
    let theirs = fields(&sim.ipmitool(&["mc", "info"]));
    for key in [
        "Device ID",
        "Device Revision",
        "Firmware Revision",
        "IPMI Version",
        "Manufacturer ID",
        "Product ID",
        "Device Available",
        "Provides Device SDRs",
    ] {
        let a = ours.iter().find(|(k, _)| k == key).map(|x| &x.1);
        let b = theirs.iter().find(|(k, _)| k == key).map(|x| &x.1);
        assert!(a.is_some() && a == b, "{key}: ours {a:?}, ipmitool {b:?}");
    }
    let guid = sim.ipmitool(&["mc", "guid"]);
    let ours_guid = ours
        .iter()
        .find(|(k, _)| k == "System GUID")
        .unwrap()
        .1
        .clone();
    assert!(
        guid.contains(&ours_guid),
        "GUID {ours_guid} not in ipmitool's:\n{guid}"
    );
}

#[test]
fn sensors_match_ipmitool_sensor() {
    let Some(sim) = IpmiSim::start() else { return };
    let ours = table(&ok(sim.ipmigw(&["sensors"])));
    let theirs = table(&sim.ipmitool(&["sensor"]));
    assert_eq!(ours.len(), 3);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a[0], b[0], "name");
        for col in [1, 4, 5, 6, 7, 8, 9] {
            match (a[col].parse::<f64>(), b[col].parse::<f64>()) {
                (Ok(x), Ok(y)) => {
                    assert!((x - y).abs() < 1e-6, "{} column {col}: {x} vs {y}", a[0])
                }
                _ => assert_eq!(a[col], b[col], "{} column {col}", a[0]),
            }
        }
        assert_eq!(a[2], b[2], "unit");
        assert_eq!(a[3], b[3], "status");
    }
    // A reading moved through the sensor file shows up converted.
    std::fs::write(sim.path("sensors/v12_mv"), "12600\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let rows = table(&ok(sim.ipmigw(&["sensors"])));
    let v = rows.iter().find(|r| r[0] == "12V").unwrap();
    assert_eq!(v[1], "12.600");
}

#[test]
fn sel_matches_ipmitool_sel_list() {
    let Some(sim) = IpmiSim::start() else { return };
    let ours = table(&ok(sim.ipmigw(&["sel", "list"])));
    let theirs = table(&sim.ipmitool(&["sel", "list"]));
    assert!(ours.len() >= 3, "{ours:?}");
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a[0], b[0], "record id");
        assert_eq!(a[2], b[2].trim_end_matches(" UTC"), "time");
        assert_eq!(a[3..], b[3..], "sensor, event, direction");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(sim.ipmigw(&["--json", "sel", "list"]))).unwrap();
    assert_eq!(json[0]["description"], "Upper Non-critical going high");
}

#[test]
fn fru_matches_ipmitool_fru_print() {
    let Some(sim) = IpmiSim::start() else { return };
    let ours = fields(&ok(sim.ipmigw(&["fru"])));
    let theirs = fields(&sim.ipmitool(&["fru", "print"]));
    assert!(theirs.len() >= 10, "{theirs:?}");
    assert_eq!(ours, theirs);
}

#[test]
fn wrong_password_fails_cleanly_and_sends_no_command() {
    let Some(sim) = IpmiSim::start() else { return };
    let bad = sim.password_file("bad.pw", "not-the-password");
    let addr = sim.addr().to_string();
    let t = Instant::now();
    let (code, out, err) = ipmigw_bin(&[
        "bmc",
        "-H",
        &addr,
        "-U",
        "admin",
        "--password-file",
        bad.to_str().unwrap(),
        "power",
        "off",
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"));
    assert!(t.elapsed() < Duration::from_secs(5));
    let log = std::fs::read_to_string(sim.path("chassis.log")).unwrap();
    assert!(!log.contains("set"), "a command reached the chassis: {log}");
    let (code, _, err) = ipmigw_bin(&[
        "bmc",
        "-H",
        &addr,
        "-U",
        "nobody",
        "--password-file",
        bad.to_str().unwrap(),
        "power",
        "status",
    ]);
    assert_eq!(code, 4);
    assert!(err.contains("authentication failed"), "{err}");
}

#[test]
fn unreachable_port_gives_a_bounded_no_answer() {
    // Needs no simulator: nothing listens on this port.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "x").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = common::free_udp_port();
    let t = Instant::now();
    let (code, _, err) = ipmigw_bin(&[
        "bmc",
        "-H",
        &format!("127.0.0.1:{port}"),
        "-U",
        "admin",
        "--password-file",
        pw.to_str().unwrap(),
        "--timeout-ms",
        "200",
        "--retries",
        "2",
        "power",
        "status",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("no answer from 127.0.0.1:{port} after 3 tries")),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

/// `ipmigw bmc power status` against a port nothing listens on, with `pw`.
fn status_with_password_file(pw: &str) -> (i32, String, String) {
    ipmigw_bin(&[
        "bmc",
        "-H",
        "127.0.0.1:9",
        "-U",
        "admin",
        "--password-file",
        pw,
        "power",
        "status",
    ])
}

#[test]
fn bad_password_files_are_refused_before_any_packet() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "Adm1nPass").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, _, err) = status_with_password_file(pw.to_str().unwrap());
    assert_eq!(code, 1);
    assert!(
        err.contains(pw.to_str().unwrap()) && err.contains("group or others"),
        "{err}"
    );
    std::fs::write(&pw, "123456789012345678901").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (code, _, err) = status_with_password_file(pw.to_str().unwrap());
    assert_eq!(code, 1);
    assert!(
        err.contains("21 bytes") && err.contains("at most 20"),
        "{err}"
    );
    let (code, _, err) = status_with_password_file("/nonexistent/pw");
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/pw") && err.contains("does not exist"),
        "{err}"
    );
    let (code, _, _) = ipmigw_bin(&["bmc", "--bogus"]);
    assert_eq!(code, 1, "usage errors exit 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_client_reads_everything_and_counts_no_drops() {
    let Some(sim) = IpmiSim::start() else { return };
    let c = sim.client().await;
    let id = c.execute(&GetDeviceId).await.unwrap();
    assert_eq!((id.manufacturer_id, id.product_id), (4753, 0x1001));
    let sensors = reads::read_sensors(&c).await.unwrap();
    let temp = sensors.iter().find(|s| s.name == "CPU Temp").unwrap();
    assert_eq!(temp.reading, Some(45.0));
    let fan = sensors.iter().find(|s| s.name == "Fan 1").unwrap();
    assert_eq!(fan.reading, Some(5400.0));
    assert!(reads::read_sel(&c).await.unwrap().len() >= 3);
    let fru = ipmigw::ipmi::fru::parse(&reads::read_fru(&c, 0).await.unwrap()).unwrap();
    assert_eq!(
        fru.product.unwrap().serial_number,
        format!("LAB{:05}", sim.port)
    );
    let s = c.stats();
    assert_eq!(
        (
            s.bad_integrity,
            s.out_of_window,
            s.unexpected_source,
            s.relogins
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_again_after_the_bmc_forgets_the_session() {
    let Some(mut sim) = IpmiSim::start() else {
        return;
    };
    let console = ConsoleConfig::new(
        b"admin",
        SecretBytes::from(&b"Adm1nPass"[..]),
        Privilege::Operator,
    );
    let mut cfg = BmcConfig::new(sim.addr(), console);
    cfg.timeout = Duration::from_millis(200);
    cfg.retries = 1;
    let c = BmcClient::connect(cfg).await.unwrap();
    assert!(!c.execute(&GetChassisStatus).await.unwrap().power_on);
    tokio::task::block_in_place(|| sim.restart());
    assert!(!c.execute(&GetChassisStatus).await.unwrap().power_on);
    assert_eq!(c.stats().relogins, 1);
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_suite_3_and_17_are_offered_by_default() {
    let Some(sim) = IpmiSim::start() else { return };
    let mut console = ConsoleConfig::new(
        b"admin",
        SecretBytes::from(&b"Adm1nPass"[..]),
        Privilege::User,
    );
    console.cipher_suites = vec![CipherSuite::Suite2];
    let err = BmcClient::connect(BmcConfig::new(sim.addr(), console))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("insecure opt-in"), "{err}");
}

/// The hex bytes printed on the lines after `header` in ipmitool -vvvv output.
fn hex_block(text: &str, header: &str) -> Vec<u8> {
    let mut lines = text.lines().skip_while(|l| !l.contains(header)).skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        let bytes: Option<Vec<u8>> = l
            .split_whitespace()
            .map(|t| u8::from_str_radix(t, 16).ok().filter(|_| t.len() == 2))
            .collect();
        match bytes {
            Some(b) if !b.is_empty() => out.extend(b),
            _ => break,
        }
    }
    assert!(!out.is_empty(), "no hex block after {header:?}");
    out
}

#[test]
fn rakp_codes_and_session_keys_match_a_real_ipmitool_login() {
    use ipmigw::ipmi::crypto::keys::{verify_rakp2, RakpInputs, SessionKeys};
    use ipmigw::ipmi::crypto::AuthAlgorithm;

    let Some(sim) = IpmiSim::start() else { return };
    let out = sim
        .ipmitool_command()
        .args(["-vvvv", "mc", "info"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // RAKP 2 input: SIDm(4) SIDc(4) Rm(16) Rc(16) GUIDc(16) role(1) N(1) name(N).
    let r2 = hex_block(&text, "rakp2 mac input buffer");
    assert_eq!(r2.len(), 58 + 5);
    let arr = |b: &[u8]| -> [u8; 16] { b.try_into().unwrap() };
    let (rm, rc, guid) = (arr(&r2[8..24]), arr(&r2[24..40]), arr(&r2[40..56]));
    let inputs = RakpInputs {
        console_sid: u32::from_le_bytes(r2[0..4].try_into().unwrap()),
        bmc_sid: u32::from_le_bytes(r2[4..8].try_into().unwrap()),
        console_random: &rm,
        bmc_random: &rc,
        bmc_guid: &guid,
        role: r2[56],
        username: &r2[58..],
    };
    assert_eq!(inputs.username, b"admin");
    let code_hex = text
        .lines()
        .find_map(|l| {
            l.split_once("Key exchange auth code [sha1] : 0x")
                .map(|(_, h)| h.trim().to_string())
        })
        .expect("RAKP 2 auth code line");
    let code = hex::decode(code_hex).unwrap();
    let pw = SecretBytes::from(&b"Adm1nPass"[..]);
    assert!(
        verify_rakp2(AuthAlgorithm::HmacSha1, &pw, &inputs, &code),
        "our RAKP 2 check rejects the BMC's code"
    );
    let wrong = SecretBytes::from(&b"Adm1nPasz"[..]);
    assert!(!verify_rakp2(
        AuthAlgorithm::HmacSha1,
        &wrong,
        &inputs,
        &code
    ));
    // Our SIK, from the same inputs, reproduces the BMC's RAKP 4 ICV.
    let keys = SessionKeys::derive(CipherSuite::Suite3, &pw, None, &inputs);
    let bmc_icv = hex_block(&text, "rakp4 mac as computed by the BMC");
    assert!(
        keys.verify_rakp4(&inputs, &bmc_icv[..12]),
        "SIK/RAKP 4 recipe disagrees with ipmi_sim"
    );
    // The SIK input ipmitool printed is exactly Rm ‖ Rc ‖ role ‖ N ‖ name.
    let sik_in = hex_block(&text, "session integrity key input");
    assert_eq!(
        sik_in,
        [&rm[..], &rc[..], &[inputs.role, 5], b"admin"].concat()
    );
}
