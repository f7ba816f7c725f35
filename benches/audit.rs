//! Audit writer benchmark: records/s and the latency a request waits for
//! its record, for `fsync = "always"` (group commit) and
//! `fsync = "interval:10ms"`, with 1, 16 and 256 concurrent writers, on the
//! disk under `target/` (not a tmpfs).
//!
//! Prints a table and `figure: NAME VALUE UNIT` lines.
//! `cargo bench --bench audit -- --quick` for a short run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipmigw::audit::fs::RealFs;
use ipmigw::audit::{AuditKey, AuditWriter, Decision, Durability, RequestRecord, WriterConfig};
use ipmigw::secret::SecretBytes;

fn record(i: u64) -> RequestRecord {
    RequestRecord::new(
        format!("req-{i:016x}"),
        "alice".into(),
        "5f".repeat(32),
        "10.20.30.40".into(),
        format!("node{:05}", i % 10_000),
        "chassis.status".into(),
        0x00,
        0x01,
        &[],
        Decision::Allow,
        Some("policies/operator.toml:10 role \"operator\" allow chassis.status".into()),
        None,
    )
}

struct Outcome {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    per_sync: f64,
}

fn run(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    durability: Durability,
    writers: usize,
    run_for: Duration,
) -> Outcome {
    let path = dir
        .join(format!("audit-{writers}-{:?}.jsonl", durability).replace([':', ' ', '(', ')'], ""));
    let mut cfg = WriterConfig::new(
        path.clone(),
        AuditKey::new(SecretBytes::new(vec![7; 32])).unwrap(),
    );
    cfg.durability = durability;
    let w = AuditWriter::open(cfg, Arc::new(RealFs)).unwrap();
    let before = w.stats();
    let start = Instant::now();
    let latencies = rt.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|t| {
                let w = w.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = t as u64 * 1_000_000_000;
                    while start.elapsed() < run_for {
                        let t0 = Instant::now();
                        w.request(record(i)).await.unwrap();
                        lat.push(t0.elapsed().as_secs_f64() * 1e6);
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = start.elapsed().as_secs_f64();
    let after = w.stats();
    rt.block_on(w.shutdown("bench")).unwrap();
    let _ = std::fs::remove_file(&path);
    let mut lat = latencies;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let records = (after.records - before.records) as f64;
    Outcome {
        rps: lat.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        per_sync: records / (after.syncs - before.syncs).max(1) as f64,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run_for = Duration::from_millis(if quick { 400 } else { 3_000 });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "audit writer on {} ({} per scenario)",
        dir.display(),
        if quick { "0.4 s" } else { "3 s" }
    );
    println!(
        "{:<16} {:>8} {:>12} {:>10} {:>10} {:>14}",
        "fsync", "writers", "records/s", "p50 µs", "p99 µs", "records/fsync"
    );
    let mut figures = Vec::new();
    for (name, durability) in [
        ("always", Durability::Always),
        (
            "interval:10ms",
            Durability::Interval(Duration::from_millis(10)),
        ),
    ] {
        for writers in [1, 16, 256] {
            let o = run(&rt, &dir, durability, writers, run_for);
            println!(
                "{name:<16} {writers:>8} {:>12.0} {:>10.0} {:>10.0} {:>14.1}",
                o.rps, o.p50_us, o.p99_us, o.per_sync
            );
            let tag = if durability == Durability::Always {
                "always"
            } else {
                "interval"
            };
            figures.push(format!(
                "figure: audit_{tag}_{writers}_rps {:.0} 1/s",
                o.rps
            ));
            figures.push(format!(
                "figure: audit_{tag}_{writers}_p50_us {:.0} us",
                o.p50_us
            ));
            figures.push(format!(
                "figure: audit_{tag}_{writers}_p99_us {:.0} us",
                o.p99_us
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for f in figures {
        println!("{f}");
    }
}
