use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::fs::{RealFs, TrailFile, TrailFs};
use super::verify::{verify, VerifyError};
use super::*;
use crate::secret::SecretBytes;

fn key(b: u8) -> AuditKey {
    AuditKey::new(SecretBytes::new(vec![b; 32])).unwrap()
}

fn config(dir: &Path) -> WriterConfig {
    let mut c = WriterConfig::new(dir.join("audit.jsonl"), key(1));
    c.retry = Duration::from_millis(10);
    c
}

fn request(i: usize) -> RequestRecord {
    RequestRecord::new(
        format!("r{i}"),
        "alice".into(),
        "ab".repeat(32),
        "127.0.0.1".into(),
        format!("node{:02}", i % 7),
        "chassis.status".into(),
        0x00,
        0x01,
        &[],
        Decision::Allow,
        Some("p.toml:3 role \"operator\" allow chassis.**".into()),
        None,
    )
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events(path: &Path) -> Vec<String> {
    lines(path)
        .iter()
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect()
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.jsonl")
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_receipts_and_the_trail_verifies_across_restarts() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    let r = w.request(request(1)).await.unwrap();
    assert_eq!(
        (r.seq(), r.request_id(), r.allows()),
        (2, "r1", true),
        "seq 1 is startup"
    );
    w.append(Event::Result(ResultRecord {
        request_id: "r1".into(),
        completion_code: Some(0),
        response_len: 3,
        latency_us: 1200,
        error: None,
    }))
    .await
    .unwrap();
    w.shutdown("test").await.unwrap();
    assert_eq!(w.request(request(2)).await, Err(AuditError::Closed));

    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    let r = w.request(request(3)).await.unwrap();
    assert_eq!(
        r.seq(),
        7,
        "startup, request, result, shutdown, checkpoint, startup, then this"
    );
    w.shutdown("test").await.unwrap();

    assert_eq!(
        events(&cfg.path),
        [
            "startup",
            "request",
            "result",
            "shutdown",
            "checkpoint",
            "startup",
            "request",
            "shutdown",
            "checkpoint"
        ]
    );
    let seqs: Vec<u64> = lines(&cfg.path)
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    let report = verify(std::slice::from_ref(&cfg.path), &[key(1)], None).unwrap();
    assert_eq!(
        (report.records, report.seqs, report.from_genesis),
        (9, Some((1, 9)), true)
    );
    let req = &lines(&cfg.path)[1];
    for field in [
        "seq",
        "ts",
        "event",
        "key_id",
        "prev",
        "mac",
        "request_id",
        "user",
        "cert_sha256",
        "source",
        "target",
        "command",
        "netfn",
        "cmd",
        "data",
        "decision",
        "rule",
    ] {
        assert!(
            req.get(field).is_some(),
            "request record lacks {field}: {req}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_fsyncs() {
    let d = tempfile::tempdir().unwrap();
    let w = AuditWriter::open(config(d.path()), Arc::new(RealFs)).unwrap();
    let before = w.stats();
    let tasks: Vec<_> = (0..512)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move { w.request(request(i)).await.unwrap().seq() })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 512, "every receipt has its own seq");
    let s = w.stats();
    let syncs = s.syncs - before.syncs;
    assert!(syncs < 512, "group commit: {syncs} fsyncs for 512 records");
    w.shutdown("test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_mode_acknowledges_then_syncs() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.durability = Durability::parse("interval:5ms").unwrap();
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    let syncs = w.stats().syncs;
    for i in 0..20 {
        w.request(request(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(w.stats().syncs > syncs, "the interval fsync ran");
    assert!(w.stats().syncs - syncs < 20);
    w.shutdown("test").await.unwrap();
    verify(&[cfg.path], &[key(1)], None).unwrap();
    for bad in [
        "sometimes",
        "interval:",
        "interval:0ms",
        "interval:11s",
        "interval:10",
    ] {
        assert!(Durability::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_recorded_and_the_chain_continues() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    w.request(request(1)).await.unwrap();
    drop(w);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let torn = "{\"seq\":3,\"ts\":\"2026-11-26T00:00:00.000000Z\",\"event\":\"requ";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&cfg.path)
        .unwrap()
        .write_all(torn.as_bytes())
        .unwrap();
    match verify(std::slice::from_ref(&cfg.path), &[key(1)], None) {
        Ok(r) => assert_eq!(
            r.torn_tail.map(|t| (t.line, t.bytes)),
            Some((3, torn.len()))
        ),
        Err(e) => panic!("a torn tail is not tampering: {e}"),
    }
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    w.shutdown("test").await.unwrap();
    let ls = lines(&cfg.path);
    assert_eq!(
        events(&cfg.path),
        [
            "startup",
            "request",
            "audit_repair",
            "startup",
            "shutdown",
            "checkpoint"
        ]
    );
    assert_eq!(ls[2]["seq"], 3);
    assert_eq!(ls[2]["torn_bytes"], torn.len());
    let r = verify(std::slice::from_ref(&cfg.path), &[key(1)], None).unwrap();
    assert!(r.torn_tail.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_refuses_to_continue_a_tampered_tail() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    AuditWriter::open(cfg.clone(), Arc::new(RealFs))
        .unwrap()
        .shutdown("t")
        .await
        .unwrap();
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace("\"reason\":\"shutdown\"", "\"reason\":\"shutdowN\"");
    std::fs::write(&cfg.path, text).unwrap();
    let e = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap_err();
    assert!(
        e.to_string().contains("MAC mismatch") && e.to_string().contains("audit verify"),
        "{e}"
    );
}

/// A line that continues the chain of the trail at `path`, MACed with
/// `mac_key` but claiming `key_id`.
fn next_line(path: &Path, mac_key: &AuditKey, key_id: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let last = text.lines().last().unwrap();
    let h = line::parse(last.as_bytes()).unwrap();
    let prev = line::hash_line(last.as_bytes());
    line::build(h.seq + 1000, &h.ts, "startup", mac_key, "", &prev).replacen(
        &format!("\"key_id\":\"{}\"", mac_key.id()),
        &format!("\"key_id\":\"{key_id}\""),
        1,
    )
}

fn refused(cfg: &WriterConfig) -> String {
    match AuditWriter::open(cfg.clone(), Arc::new(RealFs)) {
        Err(e @ AuditError::Startup { .. }) => e.to_string(),
        r => panic!("expected a startup refusal, got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_refuses_a_last_line_it_cannot_verify() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    AuditWriter::open(cfg.clone(), Arc::new(RealFs))
        .unwrap()
        .shutdown("t")
        .await
        .unwrap();
    let intact = std::fs::read(&cfg.path).unwrap();
    let rotated = d.path().join("audit.jsonl.000000000003");
    let cases = [
        (
            "a made-up key_id",
            next_line(&cfg.path, &key(1), "0123456789abcdef"),
            "0123456789abcdef".to_string(),
            "not among the given keys",
        ),
        (
            "a key the writer does not have",
            next_line(&cfg.path, &key(2), key(2).id()),
            key(2).id().to_string(),
            "not among the given keys",
        ),
        (
            "the right key_id and a bad MAC",
            next_line(&cfg.path, &key(2), key(1).id()),
            key(1).id().to_string(),
            "MAC mismatch",
        ),
    ];
    for (name, forged, found, why) in cases {
        // In the active file, and in the newest rotated file when the
        // active file is empty.
        for file in [&cfg.path, &rotated] {
            let _ = std::fs::remove_file(&rotated);
            let mut text = intact.clone();
            text.extend_from_slice(forged.as_bytes());
            text.push(b'\n');
            std::fs::write(file, &text).unwrap();
            if file == &rotated {
                std::fs::write(&cfg.path, "").unwrap();
            }
            let e = refused(&cfg);
            for part in [
                format!("{}: last record at byte {}", file.display(), intact.len()),
                format!("key_id {found}"),
                format!("the configured audit key (key_id {})", key(1).id()),
                why.to_string(),
                "move the trail files aside".to_string(),
                "ipmigw audit verify --key-file".to_string(),
            ] {
                assert!(
                    e.contains(&part),
                    "{name} in {}: lacks {part:?}: {e}",
                    file.display()
                );
            }
            assert_eq!(
                std::fs::read(file).unwrap(),
                text,
                "{name}: the writer wrote to a trail it refused"
            );
        }
    }

    // Moved aside, the old files leave room for a new trail.
    let archive = d.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    for f in [&cfg.path, &rotated] {
        std::fs::rename(f, archive.join(f.file_name().unwrap())).unwrap();
    }
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    w.shutdown("t").await.unwrap();
    assert_eq!(lines(&cfg.path)[0]["seq"], 1);

    // An intact trail reopens and continues as before.
    std::fs::write(&cfg.path, &intact).unwrap();
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    w.shutdown("t").await.unwrap();
    assert_eq!(events(&cfg.path)[3], "startup");
    let r = verify(std::slice::from_ref(&cfg.path), &[key(1)], None).unwrap();
    assert_eq!((r.seqs, r.from_genesis), (Some((1, 6)), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_size_and_on_request_keeps_one_chain() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.rotate_bytes = Some(8 * 1024);
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    for i in 0..100 {
        w.request(request(i)).await.unwrap();
    }
    w.rotate().await.unwrap();
    w.request(request(100)).await.unwrap();
    w.shutdown("test").await.unwrap();
    drop(w);
    // Restart after a rotation that left the active file empty (the first
    // writer gone without a shutdown record, as in a crash: its lock goes
    // with its thread).
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    w.rotate().await.unwrap();
    drop(w);
    let mut w2 = AuditWriter::open(cfg.clone(), Arc::new(RealFs));
    for _ in 0..100 {
        if w2.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        w2 = AuditWriter::open(cfg.clone(), Arc::new(RealFs));
    }
    assert!(w2.is_ok(), "{:?}", w2.err());
    w2.unwrap().shutdown("test").await.unwrap();
    let files = all_files(d.path());
    assert!(files.len() >= 5, "{files:?}");
    let mut shuffled = files.clone();
    shuffled.reverse();
    let r = verify(&shuffled, &[key(1)], None).unwrap();
    assert_eq!(r.seqs.unwrap().0, 1);
    assert_eq!(r.records, r.seqs.unwrap().1);
    assert_eq!(
        r.files.last().unwrap(),
        &cfg.path,
        "the active file is last in chain order"
    );
    // A missing middle file breaks the chain at the next file's first line
    // (files[0] is the active file, files[1] the oldest rotated one).
    let without: Vec<PathBuf> = files.iter().filter(|f| **f != files[2]).cloned().collect();
    match verify(&without, &[key(1)], None) {
        Err(VerifyError::Broken(b)) => assert_eq!(b.line, 1, "{b}"),
        r => panic!("{r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_anchored_and_truncation_is_detected() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.checkpoint_every = 50;
    let anchor = d.path().join("anchor.jsonl");
    cfg.anchor_path = Some(anchor.clone());
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    for i in 0..200 {
        w.request(request(i)).await.unwrap();
    }
    w.shutdown("test").await.unwrap();
    let r = verify(std::slice::from_ref(&cfg.path), &[key(1)], Some(&anchor)).unwrap();
    assert!(r.anchors_checked >= 4, "{r:?}");
    // Someone with the key cuts the last 10 records: MACs and chain still
    // hold, the anchor does not.
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    let cut = kept[..kept.len() - 10].join("\n") + "\n";
    std::fs::write(&cfg.path, cut).unwrap();
    assert!(
        verify(std::slice::from_ref(&cfg.path), &[key(1)], None).is_ok(),
        "without the anchor, whole-line truncation is invisible"
    );
    match verify(std::slice::from_ref(&cfg.path), &[key(1)], Some(&anchor)) {
        Err(VerifyError::Broken(b)) => {
            assert_eq!(b.line, kept.len() as u64 - 10, "{b}");
            assert!(b.what.starts_with("truncated"), "{b}");
        }
        r => panic!("{r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_trail() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    let canary = b"CanaryPassw0rd!!";
    // Set User Password (user 3, set password) and Set Channel Security Keys (Kg).
    let mut set_password = vec![0x03, 0x02];
    set_password.extend_from_slice(canary);
    let mut set_kg = vec![0x01, 0x01, 0x00];
    set_kg.extend_from_slice(canary);
    for (cmd, data) in [(0x47u8, set_password), (0x56, set_kg)] {
        let mut r = request(1);
        r = RequestRecord::new(
            r.request_id,
            r.user,
            r.cert_sha256,
            r.source,
            r.target,
            "user.write".into(),
            0x06,
            cmd,
            &data,
            Decision::Deny,
            None,
            Some("default deny".into()),
        );
        w.request(r).await.unwrap();
    }
    w.append(Event::BmcSession(BmcSessionRecord {
        bmc: "node01".into(),
        action: "failure".into(),
        cipher_suite: Some(17),
        session_id: None,
        reason: Some("RAKP2 HMAC mismatch (wrong password or Kg)".into()),
    }))
    .await
    .unwrap();
    w.shutdown("t").await.unwrap();
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let hex_canary = hex::encode(canary);
    assert!(
        !text.contains("CanaryPassw0rd") && !text.contains(&hex_canary),
        "{text}"
    );
    assert!(text.contains("\"data\":\"0302<redacted:16>\""), "{text}");
    assert!(text.contains("\"data\":\"010100<redacted:16>\""), "{text}");
    assert_eq!(redact_request_data(0x06, 0x01, &[1, 2]), "0102");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_exported_to_syslog_and_drops_are_audited() {
    let d = tempfile::tempdir().unwrap();
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut cfg = config(d.path());
    cfg.syslog = Some(
        export::SyslogTarget::parse(&format!("udp://{}", server.local_addr().unwrap())).unwrap(),
    );
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    w.request(request(1)).await.unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while got.len() < 2 {
        let n = server.recv(&mut buf).unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        got[0].starts_with("<110>1 ")
            && got[0].contains(" ipmigw ")
            && got[0].contains(" audit - {\"seq\":1,"),
        "{}",
        got[0]
    );
    assert!(got[1].contains("\"event\":\"request\""), "{}", got[1]);
    w.shutdown("t").await.unwrap();

    // A syslog that never reads: the exporter blocks, its queue fills, lines
    // are dropped and counted, and requests never wait.
    let sock = d.path().join("log.sock");
    let _stuck = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    let mut cfg = config(d.path());
    cfg.path = d.path().join("second.jsonl");
    cfg.export_queue = 4;
    cfg.durability = Durability::Interval(Duration::from_millis(10));
    cfg.syslog = Some(export::SyslogTarget::parse(&format!("unix://{}", sock.display())).unwrap());
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    let start = Instant::now();
    for i in 0..3000 {
        w.request(request(i)).await.unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(w.stats().export_dropped > 0);
    w.request(request(9999)).await.unwrap();
    w.shutdown("t").await.unwrap();
    let dropped: Vec<serde_json::Value> = lines(&cfg.path)
        .into_iter()
        .filter(|v| v["event"] == "export_dropped")
        .collect();
    assert!(!dropped.is_empty(), "drops are audited");
    assert_eq!(dropped[0]["sink"], "syslog");
    for bad in [
        "udp://nohost",
        "http://1.2.3.4:5",
        "unix://relative",
        "tcp://1.2.3.4",
    ] {
        assert!(export::SyslogTarget::parse(bad).is_err(), "{bad}");
    }
}

/// What to break, and how.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Faults {
    /// errno for every write.
    pub(super) write: Option<i32>,
    /// Every write writes half its buffer, then the file makes no progress.
    pub(super) short_write: bool,
    /// errno for every fsync.
    pub(super) sync: Option<i32>,
    /// errno for every open.
    pub(super) open: Option<i32>,
    /// Every fsync waits until this is cleared (a slow disk).
    pub(super) hold_sync: bool,
    /// Every write panics (a bug in the code under the writer).
    pub(super) panic: bool,
}

#[derive(Default)]
struct FaultState {
    faults: Faults,
    /// Writes through a descriptor after its fsync failed (must stay 0).
    writes_after_failed_sync: usize,
    /// fsyncs waiting for `hold_sync` to clear.
    held: usize,
    /// The threads that wrote and synced, in order.
    io_threads: Vec<std::thread::ThreadId>,
}

#[derive(Clone, Default)]
pub(super) struct FaultFs(Arc<Mutex<FaultState>>);

impl FaultFs {
    /// Breaks (or, with the default, repairs) the file system from now on.
    pub(super) fn set(&self, faults: Faults) {
        self.0.lock().unwrap().faults = faults;
    }
}

struct FaultFile {
    inner: Box<dyn TrailFile>,
    state: Arc<Mutex<FaultState>>,
    sync_failed: bool,
    stalled: bool,
}

impl TrailFile for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = {
            let mut s = self.state.lock().unwrap();
            if self.sync_failed {
                s.writes_after_failed_sync += 1;
            }
            s.io_threads.push(std::thread::current().id());
            s.faults
        };
        assert!(!f.panic, "a write that panics");
        if let Some(errno) = f.write {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if f.short_write {
            if self.stalled {
                return Ok(0);
            }
            self.stalled = true;
            let half = (buf.len() / 2).max(1);
            return self.inner.write(&buf[..half]);
        }
        self.inner.write(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        s.io_threads.push(std::thread::current().id());
        if s.faults.hold_sync {
            s.held += 1;
            // Bounded, should a test forget to let go.
            let until = Instant::now() + Duration::from_secs(60);
            while s.faults.hold_sync && Instant::now() < until {
                drop(s);
                std::thread::sleep(Duration::from_millis(1));
                s = self.state.lock().unwrap();
            }
            s.held -= 1;
        }
        if let Some(errno) = s.faults.sync {
            self.sync_failed = true;
            return Err(io::Error::from_raw_os_error(errno));
        }
        drop(s);
        self.inner.sync()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
}

impl TrailFs for FaultFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn TrailFile>> {
        if let Some(errno) = self.0.lock().unwrap().faults.open {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(Box::new(FaultFile {
            inner: RealFs.open_append(path)?,
            state: self.0.clone(),
            sync_failed: false,
            stalled: false,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.list(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
}

impl FaultFs {
    /// Holds every fsync from now on; returns once one (of a request for
    /// `request(i)`, now led by a task of its own) is being held, and a
    /// guard that lets them go when dropped (also when a test fails: the
    /// runtime would wait for the held thread forever).
    async fn hold_syncs_until_one_waits(
        &self,
        w: &AuditWriter,
        i: usize,
    ) -> (tokio::task::JoinHandle<Receipt>, SyncsHeld) {
        let guard = SyncsHeld(self.clone());
        self.0.lock().unwrap().faults.hold_sync = true;
        let w = w.clone();
        let leader = tokio::spawn(async move { w.request(request(i)).await.unwrap() });
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.lock().unwrap().held == 0 {
            assert!(
                Instant::now() < deadline,
                "the leader never reached its fsync"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (leader, guard)
    }
}

/// Lets held fsyncs go when dropped.
struct SyncsHeld(FaultFs);

impl Drop for SyncsHeld {
    fn drop(&mut self) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .hold_sync = false;
    }
}

fn result_event(id: &str) -> Event {
    Event::Result(ResultRecord {
        request_id: id.into(),
        completion_code: Some(0),
        response_len: 1,
        latency_us: 100,
        error: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_request_is_written_and_synced_on_its_callers_own_thread() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultFs::default();
    let w = AuditWriter::open(config(d.path()), Arc::new(fs.clone())).unwrap();
    for i in 0..20 {
        fs.0.lock().unwrap().io_threads.clear();
        let w = w.clone();
        let caller = tokio::spawn(async move {
            let caller = std::thread::current().id();
            w.request(request(i)).await.unwrap();
            caller
        })
        .await
        .unwrap();
        let io = fs.0.lock().unwrap().io_threads.clone();
        assert_eq!(io.len(), 2, "one write, one fsync: {io:?}");
        assert!(
            io.iter().all(|t| *t == caller),
            "round {i}: no hand-off to another thread: caller {caller:?}, I/O on {io:?}"
        );
    }
    w.shutdown("t").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_nobody_waits_for_go_with_the_next_commit_or_alone_after_lingering() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    // A gateway answering one request after another: the result of one is
    // queued shortly before the next request.
    let rounds = 20;
    let before = w.stats().syncs;
    for i in 0..rounds {
        w.append_queued(result_event(&format!("r{i}"))).unwrap();
        std::thread::sleep(Duration::from_micros(100));
        w.request(request(i + 1)).await.unwrap();
    }
    let syncs = w.stats().syncs - before;
    assert!(
        syncs < rounds as u64 * 3 / 2,
        "{syncs} fsyncs for {rounds} requests: results must ride with the next request"
    );
    // With no request after it, it still reaches the disk on its own.
    w.append_queued(result_event("last")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while events(&cfg.path).last().map(String::as_str) != Some("result") {
        assert!(
            Instant::now() < deadline,
            "a lingering record was never written"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    w.shutdown("t").await.unwrap();
    let evs = events(&cfg.path);
    let results = evs.iter().filter(|e| *e == "result").count();
    assert_eq!(results, rounds + 1, "{evs:?}");
    verify(std::slice::from_ref(&cfg.path), &[key(1)], None).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gone_while_holding_the_turn_passes_it_on() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let fs = FaultFs::default();
    let w = AuditWriter::open(cfg.clone(), Arc::new(fs.clone())).unwrap();
    let (leader, syncs_held) = fs.hold_syncs_until_one_waits(&w, 1).await;
    // Two followers queue behind the leader; the first will get the turn.
    let mut gone = Box::pin(w.request(request(2)));
    assert!(
        tokio::time::timeout(Duration::from_millis(5), &mut gone)
            .await
            .is_err(),
        "queued behind the leader"
    );
    let w3 = w.clone();
    let last = tokio::spawn(async move { w3.request(request(3)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(syncs_held);
    leader.await.unwrap();
    // The turn now waits in `gone`, which its caller drops unpolled.
    drop(gone);
    let r = tokio::time::timeout(Duration::from_secs(5), last)
        .await
        .expect("the turn was passed on: the queue did not stall")
        .unwrap()
        .unwrap();
    w.shutdown("t").await.unwrap();
    let ids: Vec<String> = lines(&cfg.path)
        .iter()
        .filter(|l| l["event"] == "request")
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["r1", "r2", "r3"],
        "queue order, also for the caller gone"
    );
    assert_eq!(r.request_id(), "r3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_records_are_refused_as_overloaded_but_shutdown_waits() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.queue = 2;
    let fs = FaultFs::default();
    let w = AuditWriter::open(cfg.clone(), Arc::new(fs.clone())).unwrap();
    let (leader, syncs_held) = fs.hold_syncs_until_one_waits(&w, 1).await;
    w.append_queued(result_event("a")).unwrap();
    w.append_queued(result_event("b")).unwrap();
    assert_eq!(
        w.append_queued(result_event("c")),
        Err(AuditError::Overloaded)
    );
    assert_eq!(w.request(request(2)).await, Err(AuditError::Overloaded));
    let w2 = w.clone();
    let shutdown = tokio::spawn(async move { w2.shutdown("t").await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(syncs_held);
    assert_eq!(leader.await.unwrap().request_id(), "r1");
    shutdown.await.unwrap().unwrap();
    let evs = events(&cfg.path);
    assert_eq!(
        evs[evs.len() - 5..],
        ["request", "result", "result", "shutdown", "checkpoint"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_writing_closes_the_trail_instead_of_stalling_it() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultFs::default();
    let w = AuditWriter::open(config(d.path()), Arc::new(fs.clone())).unwrap();
    fs.set(Faults {
        panic: true,
        ..Faults::default()
    });
    let w2 = w.clone();
    let leader = tokio::spawn(async move { w2.request(request(1)).await }).await;
    assert!(leader.is_err(), "the leader's task panicked: {leader:?}");
    fs.set(Faults::default());
    let next = tokio::time::timeout(Duration::from_secs(5), w.request(request(2)))
        .await
        .expect("later callers are answered, not left waiting for a turn");
    assert_eq!(next, Err(AuditError::Closed));
    assert!(!w.is_available(), "the health check says so");
}

/// Outside a multi-threaded runtime nobody can block a worker in place:
/// a current-thread runtime's callers commit through the blocking pool,
/// plain threads on their own thread, and all share one queue and chain.
#[tokio::test]
async fn current_thread_runtimes_and_plain_threads_write_one_chain() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        w.append_blocking(result_event(&format!("b{t}-{i}")))
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move { w.request(request(i)).await.unwrap().seq() })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    for t in threads {
        seqs.extend(t.join().unwrap());
    }
    w.shutdown("t").await.unwrap();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 40, "every record its own seq");
    let r = verify(std::slice::from_ref(&cfg.path), &[key(1)], None).unwrap();
    assert_eq!(r.records, 43, "startup, 40 records, shutdown, checkpoint");
}

pub(super) const EIO: i32 = 5;
pub(super) const ENOSPC: i32 = 28;
const EROFS: i32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_closes_the_trail_until_a_recovery_record_is_durable() {
    let cases: [(&str, Faults); 5] = [
        (
            "EIO on write",
            Faults {
                write: Some(EIO),
                ..Faults::default()
            },
        ),
        (
            "short write",
            Faults {
                short_write: true,
                ..Faults::default()
            },
        ),
        (
            "EIO on fsync",
            Faults {
                sync: Some(EIO),
                ..Faults::default()
            },
        ),
        (
            "ENOSPC",
            Faults {
                write: Some(ENOSPC),
                ..Faults::default()
            },
        ),
        (
            "read-only file system",
            Faults {
                write: Some(EROFS),
                open: Some(EROFS),
                ..Faults::default()
            },
        ),
    ];
    for (name, faults) in cases {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        let fs = FaultFs::default();
        let w = AuditWriter::open(cfg.clone(), Arc::new(fs.clone())).unwrap();
        w.request(request(0)).await.unwrap();
        fs.0.lock().unwrap().faults = faults;
        assert!(
            matches!(w.request(request(1)).await, Err(AuditError::Unavailable(_))),
            "{name}: the failing record is refused"
        );
        assert!(!w.is_available(), "{name}");
        // While the fault lasts, recovery keeps failing and every record is refused.
        tokio::time::sleep(Duration::from_millis(60)).await;
        for i in 2..5 {
            assert!(
                matches!(w.request(request(i)).await, Err(AuditError::Unavailable(_))),
                "{name}: record {i} refused while failing"
            );
        }
        fs.0.lock().unwrap().faults = Faults::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !w.is_available() {
            assert!(Instant::now() < deadline, "{name}: never recovered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = w.request(request(9)).await.unwrap();
        w.shutdown("t").await.unwrap();
        assert_eq!(
            fs.0.lock().unwrap().writes_after_failed_sync,
            0,
            "{name}: wrote through a descriptor whose fsync failed"
        );
        let evs = events(&cfg.path);
        let recovered = evs
            .iter()
            .position(|e| e == "audit_recovered")
            .unwrap_or_else(|| panic!("{name}: {evs:?}"));
        let seqs: Vec<u64> = lines(&cfg.path)
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert!(
            seqs[recovered] < after.seq(),
            "{name}: audit_recovered comes before any new record"
        );
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{name}: seq is gap-free"
        );
        let r = verify(std::slice::from_ref(&cfg.path), &[key(1)], None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.torn_tail.is_none(), "{name}");
        assert!(w.stats().failures >= 1);
    }
}

/// Waits (bounded) until `cond` holds.
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The `request_id`s of the `result` records, in trail order, and where
/// `audit_recovered` is among all lines.
fn results_and_recovery(path: &Path) -> (Vec<String>, Vec<String>) {
    let ls = lines(path);
    let results = ls
        .iter()
        .filter(|l| l["event"] == "result")
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    let order = ls
        .iter()
        .filter(|l| l["event"] != "checkpoint")
        .map(|l| match l["event"].as_str().unwrap() {
            "result" => format!("result {}", l["request_id"].as_str().unwrap()),
            "request" => format!("request {}", l["request_id"].as_str().unwrap()),
            e => e.to_string(),
        })
        .collect();
    (results, order)
}

/// A `result` queued while the disk is full says what came of a command
/// whose request record is durable: it is held, not dropped, and written
/// first when the trail recovers; past the bound, the count is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_queued_while_the_trail_is_closed_are_written_first_on_recovery() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.held = 3;
    let fs = FaultFs::default();
    let w = AuditWriter::open(cfg.clone(), Arc::new(fs.clone())).unwrap();
    w.request(request(1)).await.unwrap();
    fs.set(Faults {
        write: Some(ENOSPC),
        ..Faults::default()
    });
    assert!(matches!(
        w.request(request(2)).await,
        Err(AuditError::Unavailable(_))
    ));
    for id in ["r1", "x2", "x3", "x4", "x5"] {
        w.append_queued(result_event(id))
            .unwrap_or_else(|e| panic!("{id} refused while the trail is closed: {e}"));
    }
    wait_for("two results past the bound counted", || {
        w.stats().held_dropped == 2
    })
    .await;
    fs.set(Faults::default());
    wait_for("recovered", || w.is_available()).await;
    w.request(request(9)).await.unwrap();
    w.shutdown("t").await.unwrap();
    let (results, order) = results_and_recovery(&cfg.path);
    assert_eq!(results, ["r1", "x2", "x3"], "held in order, none twice");
    let at = order.iter().position(|e| e == "audit_recovered").unwrap();
    assert_eq!(
        order[at..at + 6],
        [
            "audit_recovered",
            "result r1",
            "result x2",
            "result x3",
            "audit_dropped",
            "request r9"
        ],
        "{order:?}"
    );
    let dropped = lines(&cfg.path)
        .into_iter()
        .find(|l| l["event"] == "audit_dropped")
        .unwrap();
    assert_eq!(dropped["dropped"], 2);
    assert_eq!(w.stats().held_dropped, 2);
    verify(std::slice::from_ref(&cfg.path), &[key(1)], None).unwrap();
}

/// A result in the very batch whose write or fsync fails is held too; when
/// its line reached the file anyway (the fsync failed after the write), the
/// recovered trail has it once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_in_the_failing_batch_is_written_exactly_once() {
    for (name, faults, before_recovery) in [
        (
            "write fails",
            Faults {
                write: Some(EIO),
                ..Faults::default()
            },
            false,
        ),
        (
            "fsync fails",
            Faults {
                sync: Some(EIO),
                ..Faults::default()
            },
            true,
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        let fs = FaultFs::default();
        let w = AuditWriter::open(cfg.clone(), Arc::new(fs.clone())).unwrap();
        w.request(request(1)).await.unwrap();
        fs.set(faults);
        // Nobody else writes: the ticker commits it alone, and that fails.
        w.append_queued(result_event("r1")).unwrap();
        wait_for("the trail closed", || !w.is_available()).await;
        fs.set(Faults::default());
        wait_for("recovered", || w.is_available()).await;
        w.shutdown("t").await.unwrap();
        let (results, order) = results_and_recovery(&cfg.path);
        assert_eq!(results, ["r1"], "{name}: {order:?}");
        let at = |e: &str| order.iter().position(|x| x == e).unwrap();
        assert_eq!(
            at("result r1") < at("audit_recovered"),
            before_recovery,
            "{name}: {order:?}"
        );
        verify(std::slice::from_ref(&cfg.path), &[key(1)], None).unwrap();
    }
}

/// A disk that hangs instead of failing: the trail stays open, but the
/// health check says why requests wait, and recovers when the disk does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_that_does_not_return_makes_the_writer_unhealthy() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.stall_after = Duration::from_millis(100);
    let fs = FaultFs::default();
    let w = AuditWriter::open(cfg.clone(), Arc::new(fs.clone())).unwrap();
    assert_eq!(w.health(), Ok(()));
    assert_eq!(w.stalled_for(), None);
    let (held, syncs_held) = fs.hold_syncs_until_one_waits(&w, 1).await;
    // Below the threshold: a slow fsync is not a stall.
    assert_eq!(w.health(), Ok(()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let why = w.health().unwrap_err();
    assert!(why.starts_with("audit fsync stalled for "), "{why}");
    let ms: u64 = why["audit fsync stalled for ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms >= 100, "{why}");
    assert!(w.is_available(), "stalled, not failed");
    drop(syncs_held);
    held.await.unwrap();
    assert_eq!(w.stalled_for(), None);
    assert_eq!(w.health(), Ok(()));
    w.shutdown("t").await.unwrap();
}

/// A 100,000-record trail, written once and shared by the tamper tests.
fn big_trail() -> &'static (tempfile::TempDir, PathBuf, Vec<String>) {
    static TRAIL: std::sync::OnceLock<(tempfile::TempDir, PathBuf, Vec<String>)> =
        std::sync::OnceLock::new();
    TRAIL.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path());
        cfg.durability = Durability::Interval(Duration::from_millis(50));
        cfg.checkpoint_every = 0;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let w = AuditWriter::open(cfg.clone(), Arc::new(RealFs)).unwrap();
            let tasks: Vec<_> = (0..16)
                .map(|t| {
                    let w = w.clone();
                    tokio::spawn(async move {
                        for i in 0..6250 - (t == 0) as usize * 3 {
                            w.request(request(t * 10_000 + i)).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            w.shutdown("t").await.unwrap();
        });
        let lines: Vec<String> = std::fs::read_to_string(&cfg.path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len(), 100_000);
        (d, cfg.path, lines)
    })
}

fn tampered(name: &str, lines: &[String], trailing_newline: bool) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    let mut text = lines.join("\n");
    if trailing_newline {
        text.push('\n');
    }
    std::fs::write(&p, text).unwrap();
    (d, p)
}

fn broken_at(path: &Path, keys: &[AuditKey]) -> (u64, String) {
    match verify(&[path.to_path_buf()], keys, None) {
        Err(VerifyError::Broken(b)) => (b.line, b.what),
        r => panic!("expected a break, got {r:?}"),
    }
}

#[test]
fn tamper_matrix_names_the_exact_line() {
    let (_d, path, lines) = big_trail();
    let r = verify(std::slice::from_ref(path), &[key(1)], None).unwrap();
    assert_eq!((r.records, r.seqs), (100_000, Some((1, 100_000))));

    // Flip one byte in line 54,321 (inside the user name).
    let mut l = lines.clone();
    l[54_320] = l[54_320].replacen("alice", "alicf", 1);
    let (_t, p) = tampered("flip", &l, true);
    assert_eq!(
        broken_at(&p, &[key(1)]),
        (
            54_321,
            "MAC mismatch: the line was altered or forged".into()
        )
    );

    // Delete line 70,000.
    let mut l = lines.clone();
    l.remove(69_999);
    let (_t, p) = tampered("delete", &l, true);
    let (line, what) = broken_at(&p, &[key(1)]);
    assert_eq!(line, 70_000, "{what}");
    assert!(what.starts_with("chain broken"), "{what}");

    // Swap lines 500 and 501.
    let mut l = lines.clone();
    l.swap(499, 500);
    let (_t, p) = tampered("swap", &l, true);
    assert_eq!(broken_at(&p, &[key(1)]).0, 500);

    // Insert a forged line (no key: the MAC is made up) before line 12,345.
    let mut l = lines.clone();
    let forged = l[12_343].replacen("alice", "mallory", 1);
    l.insert(12_344, forged);
    let (_t, p) = tampered("insert", &l, true);
    assert_eq!(
        broken_at(&p, &[key(1)]),
        (
            12_345,
            "MAC mismatch: the line was altered or forged".into()
        )
    );

    // Insert a line forged with the key but outside the chain.
    let mut l = lines.clone();
    let h = line::parse(l[99].as_bytes()).unwrap();
    let forged = line::build(
        h.seq + 1,
        &h.ts,
        "request",
        &key(1),
        "\"user\":\"mallory\"",
        &line::hash_line(l[99].as_bytes()),
    );
    l.insert(100, forged);
    let (_t, p) = tampered("keyed-insert", &l, true);
    let (line, what) = broken_at(&p, &[key(1)]);
    assert_eq!(
        line, 102,
        "the forged line chains; the next one does not: {what}"
    );

    // Truncate mid-line: a torn tail, not tampering.
    let mut l = lines.clone();
    let last = l.pop().unwrap();
    l.push(last[..last.len() / 2].to_string());
    let (_t, p) = tampered("truncate", &l, false);
    let r = verify(&[p], &[key(1)], None).unwrap();
    assert_eq!(r.torn_tail.map(|t| t.line), Some(100_000));

    // A torn line that is not last is a break.
    let mut l = lines.clone();
    l[10] = l[10][..40].to_string();
    let (_t, p) = tampered("torn-middle", &l, true);
    assert_eq!(broken_at(&p, &[key(1)]).0, 11);

    // The wrong key.
    let (line, what) = broken_at(path, &[key(2)]);
    assert_eq!(line, 1);
    assert!(what.contains("not among the given keys"), "{what}");
    // Both keys (a rotation): fine.
    assert!(verify(std::slice::from_ref(path), &[key(2), key(1)], None).is_ok());
}

/// One writer per trail, however the trail is named: a second writer
/// through a symlink in another directory is refused too (two writers
/// broke the chain).
#[tokio::test]
async fn a_second_writer_is_refused_also_through_a_symlink() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("a")).unwrap();
    std::fs::create_dir_all(d.path().join("b")).unwrap();
    let real = WriterConfig::new(d.path().join("a/audit.jsonl"), key(1));
    let w = AuditWriter::open(real.clone(), Arc::new(RealFs)).unwrap();
    let e = AuditWriter::open(real.clone(), Arc::new(RealFs)).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    std::os::unix::fs::symlink(
        d.path().join("a/audit.jsonl"),
        d.path().join("b/audit.jsonl"),
    )
    .unwrap();
    let linked = WriterConfig::new(d.path().join("b/audit.jsonl"), key(1));
    assert!(AuditWriter::open(linked.clone(), Arc::new(RealFs)).is_err());
    w.shutdown("t").await.unwrap();
    let w = AuditWriter::open(linked, Arc::new(RealFs)).unwrap();
    w.shutdown("t").await.unwrap();
}
