//! `ipmigw check-config` and `ipmigw policy explain` as a user runs them:
//! on the shipped example config and policies, and on broken files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ipmigw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipmigw"))
        .args(args)
        .output()
        .expect("run ipmigw")
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/ipmigw.reference.toml")
        .display()
        .to_string()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example_and_summarises_each_user() {
    let o = ipmigw(&["check-config", "--config", &example()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("4 users, 4 roles, 3 BMCs"), "{out}");
    assert!(out.contains("user bob (email:bob@example.com), roles: viewer\n  on node01, node02, db01:\n    mc.info, chassis.status, sensor.read, sdr.read, sel.read, fru.read, console.read\n"), "{out}");
    assert!(
        out.contains("user dave (email:dave@example.com), roles: auditor\n  no BMC commands"),
        "{out}"
    );
}

#[test]
fn explain_prints_the_decision_and_rule_with_exit_codes() {
    let cfg = example();
    let explain = |user: &str, target: &str, command: &str, source: Option<&str>| {
        let mut args = vec![
            "policy",
            "explain",
            "--config",
            &cfg,
            "--user",
            user,
            "--target",
            target,
            "--command",
            command,
        ];
        if let Some(s) = source {
            args.extend(["--source", s]);
        }
        let o = ipmigw(&args);
        let (out, err) = text(&o);
        (o.status.code(), out, err)
    };
    let (code, out, _) = explain("alice", "node01", "chassis.power.off", Some("10.20.1.2"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("allow\nrule: "), "{out}");
    assert!(
        out.contains("policies/operator.toml:10 role \"operator\" allow chassis.power.*"),
        "{out}"
    );
    assert!(out.contains("state_changing_rate 6/minute"), "{out}");

    let (code, out, _) = explain("bob", "node01", "chassis.power.off", Some("10.1.1.1"));
    assert_eq!(code, Some(3), "{out}");
    assert!(out.starts_with("deny\nrule: default deny\n"), "{out}");

    let (code, out, err) = explain("alice", "node01", "sel.read", Some("::ffff:192.168.1.1"));
    assert_eq!(code, Some(3), "{out}");
    // stderr gives the same reason as stdout's `why`, not a vaguer one.
    assert!(err.contains("source 192.168.1.1 is not in"), "{err}");
    assert!(
        out.starts_with("deny\nrule: ")
            && out.contains("site.example.toml:13 user \"alice\" source"),
        "{out}"
    );

    for (user, target, command) in [
        ("alice", "node01", "chassis.pwr"),
        ("nobody", "node01", "sel.read"),
    ] {
        let (code, out, err) = explain(user, target, command, None);
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(out.is_empty(), "{out}");
    }
}

fn scratch(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(d.path().join(name), body).unwrap();
    }
    let cfg = d.path().join(files[0].0);
    (d, cfg)
}

#[test]
fn check_config_reports_every_error_with_file_line_and_column() {
    let (_d, cfg) = scratch(&[
        ("gw.toml", "policy = [\"p.toml\", \"missing.toml\"]\n[[bmc]]\nname = \"n1\"\naddress = \"127.0.0.1:623\"\npassword_env = \"X\"\n"),
        ("p.toml", "[[role]]\nname = \"r\"\ntargets = [\"n9*\"]\nallow = [\"chassis.power\"]\n"),
    ]);
    let o = ipmigw(&["check-config", "--config", cfg.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.is_empty(), "{out}");
    let p = cfg.with_file_name("p.toml").display().to_string();
    assert!(
        err.contains(&format!(
            "{p}:3:12: role \"r\": target \"n9*\" matches no configured BMC"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:4:10: role \"r\": command pattern \"chassis.power\" matches no known command name"
        )),
        "{err}"
    );
    assert!(
        err.contains("missing.toml") && err.contains("cannot read"),
        "{err}"
    );
    assert!(err.contains("3 errors in the configuration"), "{err}");
}

#[test]
fn check_config_validates_the_audit_section_and_its_key() {
    use std::os::unix::fs::PermissionsExt;
    let (d, cfg) = scratch(&[
        (
            "gw.toml",
            "policy = [\"p.toml\"]\n[audit]\npath = \"audit.jsonl\"\nkey_file = \"audit.key\"\nfsync = \"interval:10ms\"\n[[bmc]]\nname = \"n1\"\naddress = \"127.0.0.1:623\"\npassword_env = \"X\"\n",
        ),
        ("p.toml", "[[role]]\nname = \"r\"\ntargets = [\"n1\"]\nallow = [\"mc.info\"]\n"),
        ("audit.key", &"ab".repeat(32)),
    ]);
    let key = d.path().join("audit.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = ipmigw(&["check-config", "--config", cfg.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("gw.toml:4:12: audit key file")
            && err.contains("accessible by group or others"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = ipmigw(&["check-config", "--config", cfg.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("audit: ") && out.contains("Interval(10ms)"),
        "{out}"
    );
}
