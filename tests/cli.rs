//! The command line as people and scripts meet it, process by process: JSON
//! output for several targets, a reader that leaves early, help that shows
//! each option where it applies, the man page and completions, `policy
//! explain` against what the gateway does, the audit tools across
//! rotations, and `response_len` in result records.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::gateway::{demo_files, Env, GatewayProcess};
use common::{ipmigw_as, ipmigw_bin, output_of};
use ipmigw::sim::{SimConfig, Simulator};
use serde_json::Value;

mod common;

/// `ipmigw ARGS` as `user` against `env`'s gateway: (exit, stdout, stderr).
async fn as_user(env: &Env, user: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = ipmigw_as(env.addr(), &env.pki(), user);
    c.args(args);
    output_of(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_for_several_targets_is_one_document_or_json_lines() {
    let env = Env::start(3, |_| {}).await;
    // Several targets: one object keyed by target.
    let (code, out, err) = as_user(
        &env,
        "alice",
        &["power", "status", "node01", "node02", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["node01"]["power"], "on", "{out}");
    assert_eq!(v["node02"]["power"], "on", "{out}");
    // A glob is keyed too, whatever it matches: one shape for scripts.
    let (code, out, _) = as_user(&env, "alice", &["power", "status", "node0*", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 3, "{out}");
    // One named target: the answer itself, also spelled before the verb.
    for args in [
        &["power", "status", "node01", "--json"][..],
        &["--json", "power", "status", "node01"][..],
    ] {
        let (code, out, err) = as_user(&env, "alice", args).await;
        assert_eq!((code, out.trim()), (0, r#"{"power":"on"}"#), "{err}");
    }
    // JSON Lines: one object per target and line.
    let (code, out, _) =
        as_user(&env, "alice", &["power", "status", "--all", "--json-lines"]).await;
    assert_eq!(code, 0);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["target"], "node01");
    assert_eq!(lines[0]["answer"]["power"], "on");
    // Failures are in the document, with the API's code and the exit status.
    let (code, out, err) =
        as_user(&env, "bob", &["power", "off", "node01", "node02", "--json"]).await;
    assert_eq!(code, 3, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["node02"]["error"]["code"], "denied", "{out}");
    assert_eq!(v["node02"]["error"]["exit"], 3, "{out}");
    // A name given twice is one target: a power cycle runs once.
    let (code, out, err) = as_user(&env, "alice", &["power", "cycle", "node03", "node03"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    // --all with names is a usage error, not a silently dropped name.
    let (code, _, err) = as_user(&env, "alice", &["power", "status", "--all", "nosuch"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--all"), "{err}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chassis_bootdev_show_reads_the_boot_device() {
    let env = Env::start(1, |_| {}).await;
    let (code, out, err) = as_user(&env, "alice", &["chassis", "bootdev", "show", "node01"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Boot device: "), "{out}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_prints_text_and_json_on_request() {
    let env = Env::start(1, |_| {}).await;
    let (code, out, err) = as_user(&env, "alice", &["whoami"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("user: alice\nroles: operator\ncertificate sha256: "),
        "{out}"
    );
    assert!(out.ends_with("source: 127.0.0.1\n"), "{out}");
    let (code, out, _) = as_user(&env, "alice", &["whoami", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["user"], "alice");
    env.stop().await;
}

/// Runs `cmd` with its stdout closed before it writes a byte: (exit, stderr).
fn with_stdout_closed(mut cmd: Command) -> (i32, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_leaves_early_ends_the_output_quietly() {
    let env = Env::start(2, |_| {}).await;
    let dir = env.dir.path().to_path_buf();
    let config = env.config();
    let key = dir.join("audit.key");
    let gateway_verbs: [&[&str]; 4] = [
        &["mc", "info", "node02"],
        &["power", "status", "node01", "node02"],
        &["bmcs"],
        &["sensors", "node01", "--json"],
    ];
    for args in gateway_verbs {
        let mut c = ipmigw_as(env.addr(), &env.pki(), "alice");
        c.args(args);
        let (code, err) = tokio::task::spawn_blocking(move || with_stdout_closed(c))
            .await
            .unwrap();
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    let local: [Vec<&str>; 6] = [
        vec!["check-config", "--config", config.to_str().unwrap()],
        vec![
            "audit",
            "verify",
            "--key-file",
            key.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        vec!["audit", "query", dir.to_str().unwrap()],
        vec!["--help"],
        vec!["man"],
        vec!["completions", "bash"],
    ];
    for args in local {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ipmigw"));
        c.args(&args);
        let (code, err) = with_stdout_closed(c);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    env.stop().await;
}

#[test]
fn help_shows_each_option_where_it_applies() {
    let help = |args: &[&str]| {
        let (code, out, err) = ipmigw_bin(&[args, &["--help"]].concat());
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    for verb in [
        &["sim"][..],
        &["demo"],
        &["serve"],
        &["audit", "verify"],
        &["pki", "init"],
        &["check-config"],
        &["policy", "explain"],
    ] {
        let out = help(verb);
        for opt in ["--gateway", "--cert", "--ca ", "--timeout", "--json"] {
            assert!(!out.contains(opt), "{verb:?} shows {opt}:\n{out}");
        }
    }
    let bmc = help(&["bmc"]);
    assert!(
        bmc.contains("--json") && !bmc.contains("--gateway"),
        "{bmc}"
    );
    let power = help(&["power"]);
    for opt in [
        "--gateway",
        "--cert",
        "--key",
        "--ca",
        "--timeout",
        "--json",
        "--json-lines",
    ] {
        assert!(power.contains(opt), "power lacks {opt}:\n{power}");
    }
    let raw = help(&["raw"]);
    assert!(
        raw.contains("0x06 application") && raw.contains("<NETFN>"),
        "{raw}"
    );
    let sim = help(&["sim"]);
    assert!(sim.contains("admin/Adm1nPass (administrator)"), "{sim}");
    // A client option where it does not apply is said, not ignored.
    let (code, _, err) = ipmigw_bin(&["--gateway", "https://x:1", "sim", "--count", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("--gateway does not apply"), "{err}");
}

#[test]
fn the_man_page_and_completions_come_from_the_command_tree() {
    let (code, man, _) = ipmigw_bin(&["man"]);
    assert_eq!(code, 0);
    assert!(
        man.starts_with(".ie \\n(.g .ds Aq") || man.contains(".TH ipmigw"),
        "{man}"
    );
    for verb in ["check\\-config", "audit", "completions", "bridge"] {
        assert!(man.contains(verb), "man lacks {verb}");
    }
    let (code, page, _) = ipmigw_bin(&["man", "audit", "verify"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH ipmigw-audit-verify 1"), "{page}");
    assert!(page.contains("\\-\\-key\\-file"), "{page}");
    let (code, _, err) = ipmigw_bin(&["man", "nonsense"]);
    assert_eq!(code, 1);
    assert!(err.contains("no verb \"nonsense\""), "{err}");
    for (shell, marker) in [
        ("bash", "_ipmigw()"),
        ("zsh", "#compdef ipmigw"),
        ("fish", "complete -c ipmigw"),
    ] {
        let (code, script, _) = ipmigw_bin(&["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("check-config"), "{shell}");
    }
    let (code, _, _) = ipmigw_bin(&["completions", "tcsh"]);
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_explain_decides_raw_requests_as_the_gateway_does() {
    let env = Env::start(1, |_| {}).await;
    let config = env.config();
    let cases: [(&str, &[&str]); 7] = [
        ("alice", &["6", "1"]),                      // Get Device ID: mc.info
        ("bob", &["0x06", "0x01"]),                  // the same for a viewer
        ("bob", &["0", "2", "0"]),                   // power off: denied to a viewer
        ("alice", &["0", "1"]),                      // chassis status
        ("alice", &["0x2e", "1", "0x57", "1", "0"]), // OEM: no role grants it
        (
            "alice",
            &[
                "6", "0x34", "0", "0x20", "0x18", "0xc8", "0x81", "0", "0x01", "0x7e",
            ],
        ), // Send Message
        ("bob", &["0x0a", "0x43", "0", "0", "0", "0", "0", "0xff"]), // Get SEL Entry: sel.read
    ];
    for (user, words) in cases {
        let mut raw = vec!["raw", "node01"];
        raw.extend(words);
        let (gw_code, out, err) = as_user(&env, user, &raw).await;
        let mut explain = vec!["policy", "explain", "--config", config.to_str().unwrap()];
        explain.extend([
            "--user", user, "--target", "node01", "--netfn", words[0], "--cmd", words[1],
        ]);
        if words.len() > 2 {
            explain.push("--data");
            explain.extend(&words[2..]);
        }
        let (code, said, why) = ipmigw_bin(&explain);
        // Allowed: the gateway sent it (0, or 4 for the BMC's completion code).
        let gateway_allowed = gw_code == 0 || gw_code == 4;
        assert!(
            gateway_allowed || gw_code == 3,
            "{user} {words:?}: {gw_code} {out}{err}"
        );
        assert_eq!(
            code == 0,
            gateway_allowed,
            "{user} {words:?}: explain said\n{said}{why}\nthe gateway: {gw_code} {out}{err}"
        );
        assert_eq!(code, if gateway_allowed { 0 } else { 3 }, "{said}{why}");
    }
    // alice on node01, asked by `how`.
    let explain_alice = |how: &[&str]| {
        let config = config.to_str().unwrap();
        let mut args = vec!["policy", "explain", "--config", config];
        args.extend(["--user", "alice", "--target", "node01"]);
        args.extend(how);
        ipmigw_bin(&args)
    };
    // By its raw name, and what the gateway calls it.
    let (code, said, _) = explain_alice(&["--command", "raw.0x06.0x01"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.starts_with("command: mc.info\nallow\n"), "{said}");
    // A session command is refused whatever the policy says.
    let (code, said, _) = explain_alice(&["--netfn", "6", "--cmd", "0x3c"]);
    assert_eq!(code, 3, "{said}");
    assert!(said.contains("session-management"), "{said}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_and_verify_follow_rotations_by_directory_or_base_name() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), 1))
        .await
        .unwrap();
    let config = demo_files(dir.path(), &sim, |_| {});
    let gw = GatewayProcess::start(&config, &[]).unwrap();
    let run = |args: &[&str]| {
        let mut c = ipmigw_as(gw.addr, &dir.path().join("pki"), "alice");
        c.args(args);
        output_of(c)
    };
    let (code, out, err) = run(&["power", "on", "node01"]).await;
    assert_eq!(code, 0, "{out}{err}");
    // SIGHUP: the active file is renamed NAME.<last seq> and a new one begun.
    gw.signal("HUP");
    let rotated = wait_for_rotation(dir.path()).await;
    assert_eq!(run(&["power", "status", "node01"]).await.0, 0);
    let trail = dir.path().join("audit.jsonl");
    let key = dir.path().join("audit.key");
    for which in [&trail, &dir.path().to_path_buf()] {
        let (code, out, err) = ipmigw_bin(&["audit", "query", which.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("chassis.power.on") && out.contains("chassis.status"),
            "{}: {out}",
            which.display()
        );
        let (code, out, err) = ipmigw_bin(&[
            "audit",
            "verify",
            "--key-file",
            key.to_str().unwrap(),
            which.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(rotated.to_str().unwrap()), "{out}");
        assert!(!out.contains("note: the files start at seq"), "{out}");
    }
    // Named again by a shell glob: each file is read once.
    let (code, out, _) = ipmigw_bin(&[
        "audit",
        "query",
        "--json",
        trail.to_str().unwrap(),
        rotated.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("chassis.power.on").count(), 1, "{out}");
    drop(gw);
    sim.stop().await;
}

/// The rotated file SIGHUP leaves beside the trail (within 10 s).
async fn wait_for_rotation(dir: &Path) -> std::path::PathBuf {
    for _ in 0..200 {
        let found = std::fs::read_dir(dir).unwrap().find_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            name.strip_prefix("audit.jsonl.")
                .is_some_and(|n| n.len() == 12)
                .then_some(p)
        });
        if let Some(p) = found {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no rotated file in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_records_count_the_response_bytes_of_typed_operations() {
    let env = Env::start(1, |_| {}).await;
    for args in [
        &["power", "status", "node01"][..],
        &["mc", "info", "node01"],
        &["sensors", "node01"],
        &["raw", "node01", "6", "1"],
    ] {
        let (code, _, err) = as_user(&env, "alice", args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let requests = env.events("request");
    let len_of = |command: &str| {
        let id = requests
            .iter()
            .find(|r| r["command"] == command)
            .unwrap_or_else(|| panic!("no request for {command}"))["request_id"]
            .clone();
        let result = env
            .events("result")
            .into_iter()
            .find(|r| r["request_id"] == id)
            .unwrap();
        result["response_len"].as_u64().unwrap()
    };
    // Get Chassis Status answers 3 or 4 data bytes.
    assert!(
        (3..=4).contains(&len_of("chassis.status")),
        "{}",
        len_of("chassis.status")
    );
    // Get Device ID (11 or more) and Get System GUID (16).
    let mc = len_of("mc.info");
    assert!(mc >= 11 + 16, "{mc}");
    // A sensor walk reads the repository and every sensor.
    assert!(len_of("sensor.read") > 100, "{}", len_of("sensor.read"));
    env.stop().await;
}

#[test]
fn check_config_counts_in_the_singular_for_one() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("p.toml"),
        "[[user]]\nname = \"u\"\nidentity = \"email:u@example.test\"\nroles = [\"r\"]\n\n[[role]]\nname = \"r\"\ntargets = [\"*\"]\nallow = [\"mc.info\"]\n",
    )
    .unwrap();
    let cfg = d.path().join("gw.toml");
    std::fs::write(
        &cfg,
        "policy = [\"p.toml\"]\n[[bmc]]\nname = \"n1\"\naddress = \"127.0.0.1:623\"\npassword_env = \"X\"\n",
    )
    .unwrap();
    let (code, out, err) = ipmigw_bin(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\n1 user, 1 role, 1 BMC\n"), "{out}");
}

/// Refused certificates are named as such, every time: TLS 1.3 refuses a
/// client certificate after the client's handshake, under its first
/// request, so the gateway must not reset the connection before the client
/// reads the alert, and answers a certificate that maps to no user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_says_why_its_certificate_was_refused() {
    use ipmigw::pki::{self, ClientCertSpec};
    let env = Env::start(1, |d| {
        let p = d.join("pki");
        pki::issue_client(&p, &ClientCertSpec::new("nobody")).unwrap();
        let mut expired = ClientCertSpec::new("old");
        expired.valid_for = time::Duration::days(-1);
        pki::issue_client(&p, &expired).unwrap();
        pki::issue_client(&p, &ClientCertSpec::new("carol")).unwrap();
        pki::revoke(&p, "carol").unwrap();
        // The same CA name, another key: its signatures do not verify.
        pki::init(
            &d.join("other"),
            &["mallory".into()],
            &["localhost".into()],
            &[],
        )
        .unwrap();
    })
    .await;
    let other = env.pki().parent().unwrap().join("other");
    let cases = [
        ("carol", env.pki(), 2, "it is revoked"),
        ("old", env.pki(), 2, "expired"),
        (
            "mallory",
            other,
            2,
            "not issued by the CA the gateway trusts",
        ),
        (
            "nobody",
            env.pki(),
            3,
            "maps this client certificate to no user",
        ),
    ];
    for (user, dir, code, says) in cases {
        // Several times: the reset that lost the alert was a race.
        for _ in 0..3 {
            let mut c = ipmigw_as(env.addr(), &env.pki(), user);
            c.env("IPMIGW_CERT", dir.join(format!("{user}.crt")))
                .env("IPMIGW_KEY", dir.join(format!("{user}.key")))
                .args(["power", "off", "node01"]);
            let (rc, _, err) = output_of(c).await;
            assert_eq!(rc, code, "{user}: {err}");
            assert!(err.contains(says), "{user}: {err}");
            assert!(!err.contains("outcome unknown"), "{user}: {err}");
        }
    }
}
