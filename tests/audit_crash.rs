//! Crash safety of the audit writer: a child process writes requests under
//! load and reports each receipt over a pipe; the parent kills it with
//! SIGKILL at a random moment, 50 times, each child continuing the same
//! trail. Afterwards the trail verifies (a torn tail allowed), `seq` is
//! gap-free, and every receipt any child reported has its record on disk.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipmigw::audit::fs::RealFs;
use ipmigw::audit::verify::verify;
use ipmigw::audit::{AuditKey, AuditWriter, Decision, RequestRecord, WriterConfig};
use ipmigw::secret::SecretBytes;
use rand::Rng;

const DIR_VAR: &str = "IPMIGW_AUDIT_CRASH_DIR";

fn key() -> AuditKey {
    AuditKey::new(SecretBytes::new(vec![9; 32])).unwrap()
}

fn trail(dir: &Path) -> PathBuf {
    dir.join("audit.jsonl")
}

/// The child: only does something when the parent starts it.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = WriterConfig::new(trail(Path::new(&dir)), key());
        cfg.checkpoint_every = 25;
        cfg.anchor_path = Some(Path::new(&dir).join("anchor.jsonl"));
        let w = AuditWriter::open(cfg, Arc::new(RealFs)).expect("writer opens the trail");
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        writeln!(out.lock().unwrap(), "ready").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (w, out) = (w.clone(), out.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let id = format!("c{}-{t}-{n}", std::process::id());
                        let rec = RequestRecord::new(
                            id,
                            "alice".into(),
                            "00".repeat(32),
                            "127.0.0.1".into(),
                            "node01".into(),
                            "chassis.status".into(),
                            0,
                            1,
                            &[],
                            Decision::Allow,
                            None,
                            None,
                        );
                        let r = w.request(rec).await.expect("record");
                        let mut o = out.lock().unwrap();
                        writeln!(o, "receipt {} {}", r.seq(), r.request_id()).unwrap();
                        o.flush().unwrap();
                        n += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn sigkill_at_random_points_loses_no_receipted_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut receipts: Vec<(u64, String)> = Vec::new();
    for round in 0..50 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.ends_with("ready") {
                    let _ = tx.send(());
                } else if let Some(rest) = line.strip_prefix("receipt ") {
                    let (seq, id) = rest.split_once(' ').unwrap();
                    got.push((seq.parse::<u64>().unwrap(), id.to_string()));
                }
            }
            got
        });
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("round {round}: child never got ready"));
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..40)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        receipts.extend(got);
    }
    assert!(
        receipts.len() > 500,
        "the children wrote under load: {} receipts",
        receipts.len()
    );

    let path = trail(dir.path());
    let report = verify(
        std::slice::from_ref(&path),
        &[key()],
        Some(&dir.path().join("anchor.jsonl")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.seqs.map(|s| s.0), Some(1));
    assert_eq!(report.records, report.seqs.unwrap().1, "seq is gap-free");
    let on_disk: HashMap<u64, String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "request")
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                v["request_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (seq, id) in &receipts {
        assert_eq!(
            on_disk.get(seq),
            Some(id),
            "receipt seq {seq} ({id}) has no record on disk"
        );
    }
    let startups = std::fs::read_to_string(&path)
        .unwrap()
        .matches("\"event\":\"startup\"")
        .count();
    assert_eq!(startups, 50);
}
