//! `ipmigw audit verify|query|keygen` as an auditor runs them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use ipmigw::audit::fs::RealFs;
use ipmigw::audit::{
    AuditKey, AuditWriter, Decision, Event, RequestRecord, ResultRecord, WriterConfig,
};

fn ipmigw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipmigw"))
        .args(args)
        .output()
        .expect("run ipmigw")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A key made by `ipmigw audit keygen` and a small trail written with it.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let key_file = dir.join("audit.key");
    let o = ipmigw(&["audit", "keygen", "--out", key_file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = ipmigw(&["audit", "keygen", "--out", key_file.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "keygen never overwrites a key"
    );

    let path = dir.join("audit.jsonl");
    let key = AuditKey::from_file(&key_file).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let w = AuditWriter::open(WriterConfig::new(path.clone(), key), Arc::new(RealFs)).unwrap();
        let reqs = [
            (
                "r1",
                "alice",
                "node01",
                "chassis.power.on",
                0x00,
                0x02,
                &[1u8][..],
                Decision::Allow,
            ),
            (
                "r2",
                "bob",
                "node01",
                "chassis.power.off",
                0x00,
                0x02,
                &[0u8][..],
                Decision::Deny,
            ),
            (
                "r3",
                "alice",
                "node02",
                "sel.read",
                0x0a,
                0x43,
                &[0u8, 0, 0, 0, 0, 0xff][..],
                Decision::Allow,
            ),
        ];
        for (id, user, target, command, netfn, cmd, data, decision) in reqs {
            let rec = RequestRecord::new(
                id.into(),
                user.into(),
                "aa".repeat(32),
                "10.0.0.7".into(),
                target.into(),
                command.into(),
                netfn,
                cmd,
                data,
                decision,
                None,
                None,
            );
            w.request(rec).await.unwrap();
            if decision == Decision::Allow {
                let (cc, error) = if id == "r3" {
                    (None, Some("timeout".to_string()))
                } else {
                    (Some(0), None)
                };
                w.append(Event::Result(ResultRecord {
                    request_id: id.into(),
                    completion_code: cc,
                    response_len: 0,
                    latency_us: 2500,
                    error,
                }))
                .await
                .unwrap();
            }
        }
        w.shutdown("test").await.unwrap();
    });
    (key_file, path)
}

#[test]
fn verify_reports_intact_broken_and_torn_trails_with_distinct_answers() {
    let d = tempfile::tempdir().unwrap();
    let (key, trail) = setup(d.path());
    let (k, t) = (key.to_str().unwrap(), trail.to_str().unwrap());

    let o = ipmigw(&["audit", "verify", "--key-file", k, t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).starts_with("intact: 8 records, seq 1..8, "),
        "{}",
        text(&o)
    );

    let original = std::fs::read_to_string(&trail).unwrap();
    std::fs::write(
        &trail,
        original.replacen("\"user\":\"bob\"", "\"user\":\"eve\"", 1),
    )
    .unwrap();
    let o = ipmigw(&["audit", "verify", "--key-file", k, t]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).starts_with(&format!("broken: {t}:4: seq 4: MAC mismatch")),
        "{}",
        text(&o)
    );

    std::fs::write(&trail, format!("{original}{{\"seq\":9,\"ts\"")).unwrap();
    let o = ipmigw(&["audit", "verify", "--key-file", k, t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("torn tail: {t}:9 (")),
        "{}",
        text(&o)
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = ipmigw(&["audit", "verify", "--key-file", k, t]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a key others can read is refused: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("accessible by group or others"),
        "{}",
        text(&o)
    );
}

#[test]
fn query_joins_results_and_filters() {
    let d = tempfile::tempdir().unwrap();
    let (_key, trail) = setup(d.path());
    let t = trail.to_str().unwrap();

    let o = ipmigw(&["audit", "query", t]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows[0].starts_with("TIME") && rows[0].contains("LATENCY"),
        "{out}"
    );
    assert!(
        rows[1].contains("alice")
            && rows[1].contains("chassis.power.on")
            && rows[1].contains("cc=0x00")
            && rows[1].contains("2.5 ms"),
        "{out}"
    );
    assert!(
        rows[2].contains("deny") && rows[2].trim_end().ends_with("-"),
        "{out}"
    );
    assert!(rows[3].contains("timeout"), "{out}");

    let o = ipmigw(&[
        "audit",
        "query",
        "--user",
        "alice",
        "--command",
        "chassis.power.*",
        "--json",
        t,
    ]);
    let out = text(&o);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["request_id"], "r1");
    assert_eq!(lines[0]["result"]["completion_code"], 0);

    let o = ipmigw(&[
        "audit",
        "query",
        "--decision",
        "deny",
        "--since",
        "2000-01-01",
        "--until",
        "2999-01-01T00:00:00Z",
        t,
    ]);
    assert_eq!(text(&o).lines().count(), 2, "{}", text(&o));
    let o = ipmigw(&["audit", "query", "--until", "2000-01-01", t]);
    assert_eq!(text(&o).lines().count(), 1, "{}", text(&o));
    let o = ipmigw(&["audit", "query", "--since", "yesterday", t]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--since \"yesterday\": expected an RFC 3339 time"),
        "{}",
        text(&o)
    );
}
