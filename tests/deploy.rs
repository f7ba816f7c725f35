//! What deploy/ ships: the systemd unit stays hardened (`systemd-analyze
//! security` rates it 2.0 or better; skipped, with a reason, without
//! systemd-analyze), and the example config serves as a package lays it out.

use std::path::Path;
use std::process::Command;

#[test]
fn systemd_unit_exposure_is_at_most_2() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ipmigw.service");
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED: systemd-analyze not available: {e}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(score <= 2.0, "{line}");
}

/// deploy/ipmigw.example.toml as a package installs it: its absolute paths
/// laid under a scratch root, with the files they name made the way its
/// comments say. `check-config` accepts it as servable and `serve` serves
/// it.
#[test]
fn the_example_config_is_servable_with_the_paths_a_package_uses() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display().to_string();
    let text = std::fs::read_to_string(repo.join("deploy/ipmigw.example.toml"))
        .unwrap()
        .replace("\"/etc/ipmigw/", &format!("\"{r}/etc/ipmigw/"))
        .replace("\"/var/lib/ipmigw/", &format!("\"{r}/var/lib/ipmigw/"))
        .replace(
            "\"/usr/share/ipmigw/policies/",
            &format!("\"{}/policies/", repo.display()),
        );
    assert!(
        !text.contains("= \"/etc") && !text.contains("\"/var"),
        "{text}"
    );
    let etc = root.path().join("etc/ipmigw");
    let tls = etc.join("tls");
    for d in [&tls, &etc.join("secrets"), &etc.join("policies")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir_all(root.path().join("var/lib/ipmigw")).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ipmigw"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, out) = run(&[
        "pki",
        "init",
        "--dir",
        tls.to_str().unwrap(),
        "--users",
        "alice",
    ]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::rename(tls.join("ca.crt"), tls.join("client-ca.crt")).unwrap();
    std::fs::rename(tls.join("ca.crl"), tls.join("client-ca.crl")).unwrap();
    let key = etc.join("audit.key");
    let (code, out) = run(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    for bmc in ["node01", "node02", "db01"] {
        let p = etc.join(format!("secrets/{bmc}.password"));
        std::fs::write(&p, "0perPass").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::copy(
        repo.join("policies/site.example.toml"),
        etc.join("policies/site.toml"),
    )
    .unwrap();
    let config = etc.join("gateway.toml");
    std::fs::write(&config, &text).unwrap();
    let (code, out) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("4 users, 4 roles, 3 BMCs"), "{out}");
    assert!(out.contains("\naudit: ") && !out.contains("note:"), "{out}");
    // Served (on any free loopback port instead of 0.0.0.0:8443).
    let local = config.with_file_name("local.toml");
    std::fs::write(&local, text.replace("0.0.0.0:8443", "127.0.0.1:0")).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ipmigw"))
        .args(["serve", "--config", local.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = std::io::BufRead::lines(std::io::BufReader::new(serve.stderr.take().unwrap()))
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        first.starts_with("ipmigw: serving on https://127.0.0.1:"),
        "{first}"
    );
}
