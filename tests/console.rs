//! The console through a real gateway: WebSocket clients (writer, viewers,
//! a forced takeover) against the built-in simulator's SOL and its host;
//! the BMC-side events; recording and its audit records; refusals.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::gateway::{append_policy, client_tls_files, tls_from, tls_with, Env};
use ipmigw::ipmi::cmd::sol::GetPayloadActivationStatus;
use ipmigw::ipmi::cmd::Command as _;
use ipmigw::pki::{self, ClientCertSpec};
use ipmigw::sim::{SimConfig, Simulator};

mod common;

type Ws = tokio_tungstenite::WebSocketStream<common::gateway::Tls>;

/// Longest any single wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

/// The demo gateway; carol may also write and force consoles (admin-like),
/// and the keep-alive is short so that BMC-side changes are seen quickly.
async fn setup(console: &str) -> Env {
    setup_with(console, |_| {}).await
}

/// [`setup`], then `edit` on the files.
async fn setup_with(console: &str, edit: impl FnOnce(&std::path::Path)) -> Env {
    let console = console.to_string();
    Env::start(1, move |dir| {
        append_policy(
            dir,
            "users.toml",
            "\n[[user]]\nname = \"carol\"\nidentity = \"email:carol@example.test\"\nroles = [\"consoler\"]\n\n[[role]]\nname = \"consoler\"\ntargets = [\"*\"]\nallow = [\"console.*\", \"sol.activate\", \"sol.config.read\"]\n",
        );
        pki::issue_client(&dir.join("pki"), &ClientCertSpec::new("carol")).unwrap();
        let cfg = dir.join("gateway.toml");
        let mut c = std::fs::read_to_string(&cfg).unwrap();
        c.push_str(&format!("\n[console]\nkeepalive_ms = 300\n{console}\n"));
        std::fs::write(cfg, c).unwrap();
        edit(dir);
    })
    .await
}

/// Attaches as `user` with `query`: the socket, or the HTTP status of the
/// refusal and its body.
async fn attach(env: &Env, user: &str, query: &str) -> Result<Ws, (u16, Value)> {
    let tls = tls_from(env.addr(), &env.pki(), Some(user), None, b"http/1.1")
        .await
        .unwrap();
    let url = format!("wss://localhost/v1/bmcs/node01/console{query}");
    let req = url.into_client_request().unwrap();
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let body = r.body().clone().unwrap_or_default();
            Err((
                r.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("attach: {e}"),
    }
}

/// What a client saw.
#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    controls: Vec<Value>,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    fn has(&self, ty: &str) -> Option<&Value> {
        self.controls.iter().find(|c| c["type"] == ty)
    }
}

/// Reads until `done` holds (or fails the test after WAIT).
async fn read_until(ws: &mut Ws, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    let end = tokio::time::Instant::now() + WAIT;
    while !done(seen) {
        let m = tokio::time::timeout_at(end, ws.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {:?} / {:?}", seen.text(), seen.controls));
        match m {
            Some(Ok(Message::Binary(b))) => seen.bytes.extend(b),
            Some(Ok(Message::Text(t))) => seen.controls.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}; saw {:?}", seen.controls),
        }
    }
}

async fn type_keys(ws: &mut Ws, text: &str) {
    ws.send(Message::Binary(text.as_bytes().to_vec()))
        .await
        .unwrap();
}

/// The trail's `console` records with `action`, once at least `n` are
/// there: console records are queued (the console never waits on the
/// trail), so they are polled for, boundedly, not assumed.
async fn console_records(env: &Env, action: &str, n: usize) -> Vec<Value> {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        let got: Vec<Value> = env
            .events("console")
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect();
        if got.len() >= n || tokio::time::Instant::now() >= end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The writer types a newline and sees the login prompt: the console
/// still works for it.
async fn still_works(w: &mut Ws) {
    let mut seen = Seen::default();
    type_keys(w, "\r").await;
    read_until(w, &mut seen, |s| s.text().contains("login: ")).await;
}

/// The writer gets a login prompt and its echo; two viewers see the same
/// output; a viewer's keystrokes are refused and never reach the host.
#[tokio::test]
async fn a_writer_and_two_viewers_share_one_console() {
    let env = setup("").await;
    let mut w = attach(&env, "alice", "").await.unwrap();
    let mut ws = Seen::default();
    read_until(&mut w, &mut ws, |s| s.has("status").is_some()).await;
    assert_eq!(ws.has("status").unwrap()["mode"], "write");
    type_keys(&mut w, "\r").await;
    read_until(&mut w, &mut ws, |s| s.text().contains("login: ")).await;

    let mut v1 = attach(&env, "bob", "?mode=read").await.unwrap();
    let mut v2 = attach(&env, "carol", "?mode=read").await.unwrap();
    let (mut s1, mut s2) = (Seen::default(), Seen::default());
    read_until(&mut v1, &mut s1, |s| s.text().contains("login: ")).await;
    assert!(s1.has("scrollback").is_some(), "scrollback announced");
    let st = s1.has("status").unwrap();
    assert_eq!(
        (st["mode"].as_str(), st["writer"].as_str()),
        (Some("read"), Some("alice"))
    );

    type_keys(&mut v1, "intruder\r").await;
    read_until(&mut v1, &mut s1, |s| s.has("error").is_some()).await;
    assert_eq!(s1.has("error").unwrap()["code"], "not_writer");

    type_keys(&mut w, "root\r").await;
    for (sock, seen) in [(&mut w, &mut ws), (&mut v1, &mut s1), (&mut v2, &mut s2)] {
        read_until(sock, seen, |s| s.text().contains("Password:")).await;
    }
    let host = String::from_utf8_lossy(&env.sim.bmcs()[0].host_input()).into_owned();
    assert!(host.contains("root"), "{host:?}");
    assert!(!host.contains("intruder"), "a viewer typed: {host:?}");
    // Refused input is audited: the first frame at once, the count at
    // detach (a typing viewer cannot flood the trail).
    for _ in 0..3 {
        type_keys(&mut v1, "more").await;
    }
    read_until(&mut v1, &mut s1, |s| {
        s.controls.iter().filter(|c| c["type"] == "error").count() == 4
    })
    .await;
    let refused = console_records(&env, "input_refused", 1).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["user"], "bob");
    drop(v1);
    let detaches = console_records(&env, "detach", 1).await;
    assert_eq!(detaches[0]["user"], "bob");
    assert_eq!(detaches[0]["refused_inputs"], 4);
    drop((w, v2));
    env.stop().await;
}

/// A forced takeover: the new writer types, the displaced one is told and
/// can no longer type; the trail names both.
#[tokio::test]
async fn a_forced_takeover_moves_the_seat_and_is_audited() {
    let env = setup("").await;
    let mut a = attach(&env, "alice", "").await.unwrap();
    let mut sa = Seen::default();
    read_until(&mut a, &mut sa, |s| s.has("status").is_some()).await;

    let (status, body) = attach(&env, "carol", "?mode=write").await.err().unwrap();
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str().or(body["code"].as_str())
        ),
        (409, Some("writer_seat_taken"))
    );

    let mut c = attach(&env, "carol", "?mode=write&force=1").await.unwrap();
    read_until(&mut a, &mut sa, |s| {
        s.has("writer").is_some_and(|w| w["writer"] == "carol")
    })
    .await;
    let w = sa
        .controls
        .iter()
        .rev()
        .find(|c| c["type"] == "writer")
        .unwrap();
    assert_eq!(
        (w["previous"].as_str(), w["forced"].as_bool()),
        (Some("alice"), Some(true))
    );

    type_keys(&mut a, "x").await;
    read_until(&mut a, &mut sa, |s| s.has("error").is_some()).await;
    let mut sc = Seen::default();
    type_keys(&mut c, "\r").await;
    read_until(&mut c, &mut sc, |s| s.text().contains("login: ")).await;
    drop((a, c));
    let takeovers = console_records(&env, "takeover", 1).await;
    assert_eq!(takeovers.len(), 1, "{takeovers:?}");
    assert_eq!(
        (
            takeovers[0]["user"].as_str(),
            takeovers[0]["previous"].as_str()
        ),
        (Some("carol"), Some("alice"))
    );
    env.stop().await;
}

/// Policy: bob (viewer) may not write, and may not open a console nobody
/// holds; the denials are audited.
#[tokio::test]
async fn policy_refuses_before_the_upgrade() {
    let env = setup("").await;
    let (status, _) = attach(&env, "bob", "?mode=write").await.err().unwrap();
    assert_eq!(status, 403);
    let (status, _) = attach(&env, "bob", "?mode=read").await.err().unwrap();
    assert_eq!(status, 403, "a viewer cannot open (sol.activate)");
    let (status, _) = attach(&env, "alice", "?mode=write&force=1")
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403, "operator has no console.force");
    let denials = env
        .events("request")
        .into_iter()
        .filter(|r| r["decision"] == "deny" && r["target"] == "node01")
        .count();
    assert!(denials >= 3, "{:?}", env.events("request"));
    env.stop().await;
}

/// The BMC deactivates the payload (someone took the console directly):
/// audited, clients told, and the console reopened.
#[tokio::test]
async fn a_payload_deactivated_by_the_bmc_is_audited_and_reopened() {
    let env = setup("").await;
    let mut a = attach(&env, "alice", "").await.unwrap();
    let mut sa = Seen::default();
    read_until(&mut a, &mut sa, |s| s.has("status").is_some()).await;
    type_keys(&mut a, "\r").await;
    read_until(&mut a, &mut sa, |s| s.text().contains("login: ")).await;
    env.sim.bmcs()[0].sol_deactivate();
    read_until(&mut a, &mut sa, |s| {
        s.controls
            .iter()
            .any(|c| c["type"] == "notice" && c["text"].as_str().unwrap_or("").contains("reopened"))
    })
    .await;
    let ended: Vec<Value> = env
        .events("console")
        .into_iter()
        .filter(|e| e["action"] == "bmc_ended")
        .collect();
    assert!(!ended.is_empty(), "{:?}", env.events("console"));
    sa.bytes.clear();
    type_keys(&mut a, "\r").await;
    read_until(&mut a, &mut sa, |s| s.text().contains("login: ")).await;
    drop(a);
    env.stop().await;
}

/// `flood 10000`: every line once and in order; the recording's output
/// equals what the client received, and its chunks are in the trail.
#[tokio::test]
async fn a_flood_arrives_whole_and_the_recording_matches() {
    let env = setup("").await;
    let mut a = attach(&env, "alice", "").await.unwrap();
    let mut sa = Seen::default();
    read_until(&mut a, &mut sa, |s| s.has("status").is_some()).await;
    type_keys(&mut a, "flood 10000\r").await;
    read_until(&mut a, &mut sa, |s| s.text().contains("flood done")).await;
    let text = sa.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("flood 0")).collect();
    assert_eq!(lines.len(), 10_000);
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&format!("flood {:06} of 010000", i + 1)),
            "line {i}: {l}"
        );
    }
    a.close(None).await.unwrap();
    drop(a);
    let dir = env.stop().await;
    let recs = dir.path().join("audit.consoles");
    let file = std::fs::read_dir(&recs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cast = std::fs::read_to_string(&file).unwrap();
    let mut out = String::new();
    for line in cast.lines().skip(1) {
        let ev: Value = serde_json::from_str(line).unwrap();
        if ev[1] == "o" {
            out.push_str(ev[2].as_str().unwrap());
        }
    }
    assert_eq!(out, text, "the recording's output is what the client got");

    let key = dir.path().join("audit.key");
    let trail = dir.path().join("audit.jsonl");
    let args = [
        "audit",
        "verify",
        "--key-file",
        key.to_str().unwrap(),
        trail.to_str().unwrap(),
    ];
    let (code, stdout, _) = common::ipmigw_bin(&args);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("recordings: 1 intact"), "{stdout}");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(&file, bytes).unwrap();
    let (code, stdout, stderr) = common::ipmigw_bin(&args);
    assert_eq!(code, 3, "{stdout}{stderr}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        stdout.contains(name) && stdout.contains("changed"),
        "{stdout}"
    );
    // The whole directory gone is as much a finding as one file changed.
    std::fs::rename(&recs, dir.path().join("moved-away")).unwrap();
    let (code, stdout, stderr) = common::ipmigw_bin(&args);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.contains(name), "{stdout}");
}

/// Limits: a user over max_per_user is refused with 429, and the idle
/// timeout ends a session with `ended`.
#[tokio::test]
async fn limits_refuse_and_end_sessions() {
    let env = setup("max_per_user = 1\nidle_timeout_s = 1").await;
    let mut a = attach(&env, "alice", "").await.unwrap();
    let (status, _) = attach(&env, "alice", "?mode=read").await.err().unwrap();
    assert_eq!(status, 429);
    let mut sa = Seen::default();
    read_until(&mut a, &mut sa, |s| s.has("ended").is_some()).await;
    assert_eq!(sa.has("ended").unwrap()["reason"], "idle timeout");
    let limits = console_records(&env, "limit", 1).await;
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(limits[0]["reason"], "idle timeout");
    let refused = console_records(&env, "refused", 1).await;
    assert_eq!(refused[0]["reason"], "limit max_per_user");
    drop(a);
    env.stop().await;
}

/// The WebSocket handshake over `tls`: the socket, or what went wrong.
async fn handshake(tls: common::gateway::Tls, query: &str) -> Result<Ws, String> {
    let url = format!("wss://localhost/v1/bmcs/node01/console{query}");
    let req = url.into_client_request().unwrap();
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// The writer attached and at the login prompt.
async fn writer(env: &Env) -> Ws {
    let mut w = attach(env, "alice", "").await.unwrap();
    still_works(&mut w).await;
    w
}

/// Certificates the gateway does not trust (another CA with alice's
/// name) or that map to no user get no console; the writer goes on.
#[tokio::test]
async fn an_unknown_certificate_gets_no_console() {
    let env = setup("").await;
    let mut w = writer(&env).await;
    let other = env.dir.path().join("other-ca");
    pki::init(&other, &["alice".into()], &["localhost".into()], &[]).unwrap();
    pki::issue_client(&env.pki(), &ClientCertSpec::new("mallory")).unwrap();
    let ca = env.pki().join("ca.crt");
    for dir in [other, env.pki()] {
        let name = if dir == env.pki() { "mallory" } else { "alice" };
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let cfg = client_tls_files(&ca, Some((&crt, &key)), b"http/1.1");
        let r = match tls_with(env.addr(), cfg, None, None).await {
            Ok(tls) => handshake(tls, "?mode=read").await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(r.is_err(), "{name} from {}: attached", dir.display());
    }
    still_works(&mut w).await;
    assert_eq!(env.sim.bmcs()[0].session_count(), 1, "one BMC session");
    drop(w);
    env.stop().await;
}

/// One identity attaching again and again (bounded) hits max_per_user;
/// each refusal is answered 429 and audited, and the writer is unharmed.
#[tokio::test]
async fn a_flood_of_attaches_hits_the_limits_not_the_writer() {
    let env = setup("max_per_user = 2").await;
    let mut w = writer(&env).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        match attach(&env, "carol", "?mode=read").await {
            Ok(ws) => held.push(ws),
            Err((status, body)) => {
                assert_eq!(status, 429, "{body}");
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (2, 10));
    still_works(&mut w).await;
    let records = console_records(&env, "refused", 10).await;
    assert_eq!(records.len(), 10, "{records:?}");
    assert!(records.iter().all(|r| r["user"] == "carol"));
    // Seats come back when attachments end.
    drop(held);
    let end = tokio::time::Instant::now() + WAIT;
    let again = loop {
        match attach(&env, "carol", "?mode=read").await {
            Ok(ws) => break ws,
            Err(e) => assert!(tokio::time::Instant::now() < end, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop((w, again));
    env.stop().await;
}

/// Malformed control text gets an error and the session goes on; an
/// oversized frame and bytes that are no WebSocket frame end only the
/// sender's session.
#[tokio::test]
async fn malformed_and_oversized_frames_end_only_their_sender() {
    let env = setup("").await;
    let mut w = writer(&env).await;
    let mut v = attach(&env, "bob", "?mode=read").await.unwrap();
    let mut sv = Seen::default();
    v.send(Message::Text("{not json".into())).await.unwrap();
    read_until(&mut v, &mut sv, |s| s.has("error").is_some()).await;
    assert_eq!(sv.has("error").unwrap()["code"], "malformed");
    v.send(Message::Text(r#"{"type":"status"}"#.into()))
        .await
        .unwrap();
    read_until(&mut v, &mut sv, |s| {
        s.controls.iter().filter(|c| c["type"] == "status").count() == 2
    })
    .await;

    let mut big = attach(&env, "carol", "?mode=read").await.unwrap();
    let _ = big.send(Message::Binary(vec![b'x'; 200 * 1024])).await;
    assert!(
        closed(&mut big).await,
        "an oversized frame ends the session"
    );

    let mut junk = attach(&env, "carol", "?mode=read").await.unwrap();
    let raw = junk.get_mut();
    tokio::io::AsyncWriteExt::write_all(raw, &[0xFF; 64])
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::flush(raw).await.unwrap();
    assert!(closed(&mut junk).await, "junk ends the session");

    still_works(&mut w).await;
    read_until(&mut v, &mut sv, |s| s.text().contains("login: ")).await;
    assert!(env.sim.bmcs()[0].host_input().iter().all(|b| *b != 0xFF));
    drop((w, v));
    env.stop().await;
}

/// Whether the server ends the socket within WAIT (whatever it sent
/// before).
async fn closed(ws: &mut Ws) -> bool {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The writer's TCP connection is reset mid-session: the console stays up
/// for the viewer, the seat is freed (told, audited) and another writer
/// takes it without force.
#[tokio::test]
async fn a_writer_that_vanishes_frees_the_seat() {
    let env = setup("").await;
    let w = writer(&env).await;
    let mut v = attach(&env, "bob", "?mode=read").await.unwrap();
    let mut sv = Seen::default();
    read_until(&mut v, &mut sv, |s| s.has("status").is_some()).await;
    w.get_ref().get_ref().0.set_zero_linger().unwrap();
    drop(w);
    read_until(&mut v, &mut sv, |s| {
        s.controls
            .iter()
            .any(|c| c["type"] == "writer" && c["writer"].is_null() && c["previous"] == "alice")
    })
    .await;
    let detach = console_records(&env, "detach", 1).await;
    assert_eq!(detach[0]["user"], "alice");
    let mut c = attach(&env, "carol", "?mode=write").await.unwrap();
    let mut sc = Seen::default();
    read_until(&mut c, &mut sc, |s| s.has("status").is_some()).await;
    assert_eq!(sc.has("status").unwrap()["mode"], "write");
    sv.bytes.clear();
    still_works(&mut c).await;
    read_until(&mut v, &mut sv, |s| s.text().contains("login: ")).await;
    drop((c, v));
    env.stop().await;
}

/// The BMC restarts (the simulator stopped and started again on the same
/// port, every session gone): the gateway notices, tells the client,
/// audits it and reopens; the console works again.
#[tokio::test]
async fn a_bmc_restarted_mid_session_is_reopened_and_clients_told() {
    let mut env = setup("").await;
    let mut w = writer(&env).await;
    let addr = env.sim.bmc(0).addr();
    let stand_in = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), 1))
        .await
        .unwrap();
    std::mem::replace(&mut env.sim, stand_in).stop().await;
    let restarted = Simulator::start(SimConfig::new(addr, 1)).await.unwrap();
    restarted
        .bmc(0)
        .with_model(|m, now| m.set_host_power(true, now));
    std::mem::replace(&mut env.sim, restarted).stop().await;

    let mut sw = Seen::default();
    read_until(&mut w, &mut sw, |s| {
        s.controls
            .iter()
            .any(|c| c["type"] == "notice" && c["text"].as_str().unwrap_or("").contains("reopened"))
    })
    .await;
    let notices: Vec<&str> = sw
        .controls
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert!(
        notices.iter().any(|n| n.contains("reopening")),
        "{notices:?}"
    );
    let ended = console_records(&env, "bmc_ended", 1).await;
    assert!(!ended.is_empty(), "{:?}", env.events("console"));
    let reopened = console_records(&env, "activated", 2).await;
    assert_eq!(reopened.last().unwrap()["reopen"], true, "{reopened:?}");
    still_works(&mut w).await;
    assert!(
        env.sim.bmc(0).sol_active(),
        "the restarted BMC's payload is held"
    );
    drop(w);
    env.stop().await;
}

/// The raw path cannot open or close payloads behind the console's back:
/// Activate/Deactivate Payload, its status and Suspend/Resume are refused
/// with a clear error, audited, and never reach the BMC.
#[tokio::test]
async fn payload_commands_are_refused_on_the_raw_path() {
    let env = setup("").await;
    let mut carol = env.user("carol").await;
    let commands = env.sim.bmc(0).stats().commands;
    let cases: [(u8, &str); 4] = [
        (0x48, "0101c0000000"),
        (0x49, "010100000000"),
        (0x4A, "01"),
        (0x55, "010100"),
    ];
    for (cmd, data) in cases {
        let body = serde_json::json!({"netfn": 6, "cmd": cmd, "data": data});
        let (status, _, answer) = carol
            .call("POST", "/v1/bmcs/node01/raw", Some(body))
            .await
            .unwrap();
        let answer = common::gateway::json(&answer);
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("payload_command_forbidden")),
            "{cmd:#x}: {answer}"
        );
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("console"));
    }
    assert!(!env.sim.bmc(0).sol_active());
    assert_eq!(
        env.sim.bmc(0).stats().commands,
        commands,
        "nothing reached the BMC"
    );
    let denied: Vec<Value> = env
        .events("request")
        .into_iter()
        .filter(|r| r["decision"] == "deny" && r["netfn"] == 6)
        .collect();
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert_eq!(denied[0]["command"], "sol.activate");
    env.stop().await;
}

// === the gateway in front of OpenIPMI ipmi_sim's SOL ===

/// node01 of the demo gateway pointed at ipmi_sim: its admin, suite 3
/// (ipmi_sim has no suite 17).
fn point_at(dir: &std::path::Path, sim: std::net::SocketAddr) {
    let cfg = dir.join("gateway.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut out = String::new();
    let mut in_node01 = false;
    for line in text.lines() {
        if line.starts_with("name = ") {
            in_node01 = line == "name = \"node01\"";
        }
        if in_node01 && line.starts_with("address = ") {
            out.push_str(&format!("address = \"{sim}\"\ncipher_suites = [3]\n"));
        } else if in_node01 && line.starts_with("username = ") {
            out.push_str("username = \"admin\"\n");
        } else if line.starts_with("privilege = ") {
            out.push_str("privilege = \"administrator\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(&cfg, out).unwrap();
    common::private_file(&dir.join("secrets/node01.password"), common::ADMIN_PASSWORD);
}

/// The gateway holds ipmi_sim's real SOL: login through the console,
/// `flood 100` whole and in order, quiet keep-alives keep it up, and
/// detaching leaves no payload active on ipmi_sim.
#[tokio::test]
async fn the_console_in_front_of_ipmi_sim_sol() {
    let host = common::host_line::HostLine::start();
    let extra = format!("sol \"tcp:127.0.0.1:{}\" 115200\n", host.port);
    let Some(sim) = common::IpmiSim::start_with(&extra) else {
        return;
    };
    let addr = sim.addr();
    let env = setup_with("", move |dir| point_at(dir, addr)).await;
    let mut w = attach(&env, "alice", "").await.unwrap();
    let mut seen = Seen::default();
    type_keys(&mut w, "hello\r").await;
    read_until(&mut w, &mut seen, |s| s.text().contains("Password: ")).await;
    type_keys(&mut w, "pw\r").await;
    read_until(&mut w, &mut seen, |s| {
        s.text().contains("hello@simhost1:~$ ")
    })
    .await;
    seen.bytes.clear();
    type_keys(&mut w, "flood 100\r").await;
    read_until(&mut w, &mut seen, |s| s.text().contains("flood done")).await;
    let text = seen.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("flood 0")).collect();
    assert_eq!(lines.len(), 100, "{text}");
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&format!("flood {:06} of 000100", i + 1)),
            "{l}"
        );
    }
    // Quiet through several keep-alives: ipmi_sim answers them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    w.send(Message::Text(r#"{"type":"status"}"#.into()))
        .await
        .unwrap();
    // The attach status came first; this is the answer to the request.
    read_until(&mut w, &mut seen, |s| {
        s.controls.iter().filter(|c| c["type"] == "status").count() >= 2
    })
    .await;
    let last = seen.controls.iter().rev().find(|c| c["type"] == "status");
    assert_eq!(last.unwrap()["state"], "active", "{:?}", seen.controls);
    assert!(seen.has("notice").is_none(), "{:?}", seen.controls);
    w.close(None).await.unwrap();
    drop(w);
    // Detaching deactivates the payload on ipmi_sim (bounded poll).
    let end = std::time::Instant::now() + WAIT;
    loop {
        let status = sim.ipmitool(&["raw", "0x06", "0x4a", "0x01"]);
        let bytes: Vec<u8> = status
            .split_whitespace()
            .filter_map(|w| u8::from_str_radix(w, 16).ok())
            .collect();
        let parsed = GetPayloadActivationStatus.parse_response(&bytes);
        if parsed.is_ok_and(|st| !st.is_active(1)) {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "payload still active: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.stop().await;
    drop(host);
}

/// A reload that revokes a writer's certificate ends its console at once:
/// the WebSocket outlives the HTTP connection it was upgraded from, and is
/// still checked (found by the attacker review: it kept typing).
#[tokio::test]
async fn a_certificate_revoked_by_a_reload_ends_its_console() {
    let env = setup("").await;
    let mut a = attach(&env, "alice", "").await.unwrap();
    let mut sa = Seen::default();
    read_until(&mut a, &mut sa, |s| s.has("status").is_some()).await;
    ipmigw::pki::revoke(&env.pki(), "alice").unwrap();
    env.gw.reload().await.unwrap();
    read_until(&mut a, &mut sa, |s| s.has("ended").is_some()).await;
    assert_eq!(sa.has("ended").unwrap()["reason"], "revoked certificate");
}
