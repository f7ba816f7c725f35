//! `ipmigw scan` against the simulator: every finding id has a profile
//! that produces it and one that does not; the simulator without flags has
//! no high or critical finding; the CLI's outputs and exit codes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{ipmigw_bin, private_file};
use ipmigw::scan::{self, ProbeSettings, ScanReport, ScanSettings, Severity, Target};
use ipmigw::secret::SecretBytes;
use ipmigw::sim::{self, SimConfig, SimUser, Simulator};

/// How one scan of one simulated BMC is set up.
#[derive(Default)]
struct Case {
    profiles: &'static [&'static str],
    suites: Option<Vec<u8>>,
    users: Option<Vec<(&'static str, &'static str)>>,
    prove: bool,
    default_creds: bool,
    login: bool,
}

fn settings(prove: bool, default_creds: bool) -> ScanSettings {
    ScanSettings {
        probe: ProbeSettings {
            timeout: Duration::from_millis(300),
            retries: 2,
            prove,
            rakp_names: scan::WELL_KNOWN_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        },
        concurrency: 16,
        budget: Duration::from_secs(30),
        default_creds,
        audit: None,
    }
}

async fn run(case: Case) -> (ScanReport, BTreeSet<&'static str>) {
    let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
    if let Some(users) = &case.users {
        cfg.users = users
            .iter()
            .map(|(n, p)| SimUser {
                name: n.to_string(),
                password: p.to_string(),
                privilege: "administrator".into(),
                enabled: true,
            })
            .collect();
    }
    if let Some(s) = &case.suites {
        cfg.suites = s.iter().map(|id| (*id).try_into().unwrap()).collect();
    }
    sim::apply_insecure(&mut cfg, case.profiles).unwrap();
    let login_user = cfg.users.iter().find(|u| !u.name.is_empty()).cloned();
    let s = Simulator::start(cfg).await.unwrap();
    let login = case.login.then(|| {
        let u = login_user.expect("a user to log in as");
        (u.name.clone(), SecretBytes::from(u.password.as_bytes()))
    });
    let t = Target {
        name: "sim".into(),
        addr: s.bmc(0).addr(),
        login,
    };
    let report = scan::scan(vec![t], settings(case.prove, case.default_creds)).await;
    s.stop().await;
    assert_eq!(report.bmcs[0].status, "ok", "{report:?}");
    let ids = report.bmcs[0].findings.iter().map(|f| f.id).collect();
    (report, ids)
}

/// Asserts that `id` is found with `with` and not with `without`.
async fn pair(id: &str, with: Case, without: Case) {
    let (_, yes) = run(with).await;
    assert!(yes.contains(id), "{id} not found: {yes:?}");
    let (_, no) = run(without).await;
    assert!(!no.contains(id), "{id} found without its profile: {no:?}");
}

#[tokio::test]
async fn plain_simulator_has_no_high_or_critical_finding() {
    let (r, ids) = run(Case {
        prove: true,
        login: true,
        ..Case::default()
    })
    .await;
    assert!(r.worst() < Some(Severity::High), "{ids:?}");
    // What it does have: the RAKP exposure every IPMI 2.0 BMC has for a
    // well-known name, the default Kg, and default-looking extra users.
    assert!(ids.contains("rakp-hash-exposure") && ids.contains("kg-default"));
    let a = r.bmcs[0].observations.authenticated.clone().unwrap();
    assert_eq!(a.lockout_threshold, Some(5), "the simulator's lockout");
    assert_eq!(a.manufacturer, Some(32473));
    let names: Vec<&str> = a.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["admin", "operator", "user"]);
}

#[tokio::test]
async fn cipher_zero_findings_and_the_proof() {
    let zero = || Case {
        profiles: &["cipher0"],
        prove: true,
        ..Case::default()
    };
    let plain = || Case {
        prove: true,
        ..Case::default()
    };
    for id in ["cipher0-offered", "cipher0-open-session", "cipher0-login"] {
        pair(id, zero(), plain()).await;
    }
    // Without --prove, suite 0 is reported from the Open Session answer
    // only: high, never critical.
    let (r, ids) = run(Case {
        profiles: &["cipher0"],
        ..Case::default()
    })
    .await;
    assert!(ids.contains("cipher0-open-session") && !ids.contains("cipher0-login"));
    assert_eq!(r.worst(), Some(Severity::High));
}

#[tokio::test]
async fn auth_caps_profiles() {
    let p = |profiles| Case {
        profiles,
        ..Case::default()
    };
    pair("anonymous-login", p(&["anonymous"]), p(&[])).await;
    pair("null-user", p(&["anonymous"]), p(&["ipmi15-md5"])).await;
    pair("ipmi15-auth-none", p(&["ipmi15-none"]), p(&["ipmi15-md5"])).await;
    pair("ipmi15-auth-md5", p(&["ipmi15-md5"]), p(&["ipmi15-none"])).await;
}

#[tokio::test]
async fn suites_users_and_lockout() {
    pair(
        "cipher-weak",
        Case {
            suites: Some(vec![17, 3, 2]),
            ..Case::default()
        },
        Case::default(),
    )
    .await;
    let named = || Some(vec![("opsbot", "S3cretPass1")]);
    pair(
        "rakp-hash-exposure",
        Case::default(),
        Case {
            users: named(),
            ..Case::default()
        },
    )
    .await;
    let login = |profiles, users| Case {
        profiles,
        users,
        login: true,
        ..Case::default()
    };
    pair(
        "no-lockout",
        login(&["no-lockout"], named()),
        login(&[], named()),
    )
    .await;
    pair("user-default-name", login(&[], None), login(&[], named())).await;
    pair(
        "user-extra-lan",
        login(&[], None),
        login(&["no-lockout"], named()),
    )
    .await;
}

#[tokio::test]
async fn default_credentials_are_tried_only_when_asked() {
    let with = |profiles| Case {
        profiles,
        default_creds: true,
        ..Case::default()
    };
    pair("default-creds", with(&["default-creds"]), with(&[])).await;
    let (r, ids) = run(Case {
        profiles: &["default-creds"],
        ..Case::default()
    })
    .await;
    assert!(
        !ids.contains("default-creds"),
        "not without --default-creds"
    );
    assert!(r.bmcs[0]
        .probes
        .iter()
        .all(|p| !p.probe.contains("default credentials")));
}

/// The anonymous profile's null user gets a RAKP 2 (a login under way)
/// for the empty name; the plain simulator refuses the empty name.
#[tokio::test]
async fn anonymous_profile_answers_the_empty_name() {
    use ipmigw::ipmi::crypto::CipherSuite;
    use ipmigw::ipmi::probe;
    for (profiles, ok) in [(&["anonymous"][..], true), (&[][..], false)] {
        let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
        sim::apply_insecure(&mut cfg, profiles).unwrap();
        let s = Simulator::start(cfg).await.unwrap();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(s.bmc(0).addr()).await.unwrap();
        let mut buf = [0u8; 512];
        let mut ask = async |d: Vec<u8>| {
            sock.send(&d).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            buf[..n].to_vec()
        };
        let algs = CipherSuite::Suite17.algorithms();
        let open = probe::parse_open_session(&ask(probe::open_session_request(3, algs)).await);
        let sid = open.unwrap().accepted.unwrap().bmc_sid;
        let r2 = probe::parse_rakp2(&ask(probe::rakp1_request(sid, [1; 16], b"")).await).unwrap();
        assert_eq!(r2.status.is_ok(), ok, "{profiles:?}");
        s.stop().await;
    }
}

#[test]
fn cli_outputs_and_exit_codes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 2);
    sim::apply_insecure(&mut cfg, &["no-lockout"]).unwrap();
    let plain = rt.block_on(Simulator::start(cfg)).unwrap();
    let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
    sim::apply_insecure(&mut cfg, &["cipher0", "no-lockout"]).unwrap();
    let weak = rt.block_on(Simulator::start(cfg)).unwrap();
    let (a, b) = (
        plain.bmc(0).addr().to_string(),
        plain.bmc(1).addr().to_string(),
    );
    let w = weak.bmc(0).addr().to_string();

    let (code, out, err) = ipmigw_bin(&["scan", &a, &b]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("rakp-hash-exposure") && out.contains("2 BMC(s)"),
        "{out}"
    );
    let (code, _, err) = ipmigw_bin(&["scan", &a, "--fail-on", "medium"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("at or above medium"), "{err}");

    let d = tempfile::tempdir().unwrap();
    let sarif = d.path().join("scan.sarif");
    let (code, out, err) = ipmigw_bin(&[
        "scan",
        &w,
        "--prove",
        "--json",
        "--sarif",
        sarif.to_str().unwrap(),
    ]);
    assert_eq!(code, 5, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &j["bmcs"][0]["findings"][0];
    assert_eq!(
        (f["id"].as_str(), f["severity"].as_str()),
        (Some("cipher0-login"), Some("critical"))
    );
    assert!(j["packets_sent"].as_u64().unwrap() > 5);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(s["version"], "2.1.0");
    let run = &s["runs"][0];
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "cipher0-login");
    assert_eq!(result["level"], "error");
    let index = result["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(run["tool"]["driver"]["rules"][index]["id"], "cipher0-login");
    assert!(!out.contains("Adm1nPass") && !sarif_text_has_secret(&sarif));

    // Silence is "unreachable", not clean, and bounded in time.
    let port = common::free_udp_port();
    let started = std::time::Instant::now();
    let (code, out, _) = ipmigw_bin(&[
        "scan",
        &format!("127.0.0.1:{port}"),
        "--timeout-ms",
        "100",
        "--retries",
        "1",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("unreachable"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let (code, _, err) = ipmigw_bin(&["scan"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = ipmigw_bin(&["sim", "--insecure", "cipher0,bogus"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("\"bogus\"") && err.contains("no-lockout"),
        "{err}"
    );
    rt.block_on(plain.stop());
    rt.block_on(weak.stop());
}

fn sarif_text_has_secret(p: &std::path::Path) -> bool {
    std::fs::read_to_string(p).unwrap().contains("Adm1nPass")
}

/// With the gateway's config, targets are its BMC names (with their
/// credentials, for the authenticated checks) and every probe is on the
/// audit trail, the plan before the first packet.
#[test]
fn config_targets_and_the_audit_trail() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
    sim::apply_insecure(&mut cfg, &["no-lockout"]).unwrap();
    let s = rt.block_on(Simulator::start(cfg)).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (code, _, err) = ipmigw_bin(&[
        "audit",
        "keygen",
        "--out",
        d.path().join("audit.key").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    private_file(&d.path().join("bmc.pw"), "Adm1nPass");
    std::fs::write(d.path().join("p.toml"), "").unwrap();
    let config = format!(
        "policy = [\"p.toml\"]\n[audit]\npath = \"audit.log\"\nkey_file = \"audit.key\"\n\
         [[bmc]]\nname = \"rack1\"\naddress = \"{}\"\nusername = \"admin\"\npassword_file = \"bmc.pw\"\n",
        s.bmc(0).addr()
    );
    let config_path = d.path().join("gw.toml");
    std::fs::write(&config_path, config).unwrap();
    let (code, out, err) = ipmigw_bin(&[
        "scan",
        "--all",
        "--config",
        config_path.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["bmcs"][0]["target"], "rack1");
    let users = &j["bmcs"][0]["observations"]["authenticated"]["users"];
    assert_eq!(users.as_array().map(Vec::len), Some(3), "{out}");
    let trail = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
    let scans: Vec<&str> = trail.lines().filter(|l| l.contains("\"scan\"")).collect();
    assert!(scans[0].contains("plan: auth caps"), "{trail}");
    assert!(
        scans.iter().any(|l| l.contains("RAKP 1 as admin")),
        "{trail}"
    );
    assert!(!trail.contains("Adm1nPass"));
    let (code, out, err) = ipmigw_bin(&[
        "audit",
        "verify",
        "--key-file",
        d.path().join("audit.key").to_str().unwrap(),
        d.path().join("audit.log").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    rt.block_on(s.stop());
}
