//! Attacks an adversarial review made on the gateway, each replayed against
//! a live gateway (simulated BMCs, and OpenIPMI's ipmi_sim where the attack
//! was made on it): tunnels through Send Message, boot options beyond the
//! boot device, connection exhaustion, floods of denials, ambiguous
//! certificate identities, composite reads past a denied part, gaps in the
//! trail, rate state lost on reload.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::gateway::{append_policy, json, set_limits, tls_from, Env, Https, Version};
use ipmigw::ipmi::wire::message::{NetFn, Request};
use ipmigw::pki::{self, ClientCertSpec};
use serde_json::json;

mod common;

/// `ipmb(netfn, cmd, data)` as Send Message (channel 0) data, in hex.
fn send_message_hex(channel: u8, netfn: u8, cmd: u8, data: &[u8]) -> String {
    let mut d = vec![channel];
    Request::to_bmc(NetFn(netfn), cmd, 1, data.to_vec()).emit(&mut d);
    hex::encode(d)
}

fn raw(netfn: u8, cmd: u8, data_hex: &str) -> serde_json::Value {
    json!({"netfn": netfn, "cmd": cmd, "data": data_hex})
}

/// Users for these tests, beside the demo's alice (operator) and bob
/// (viewer): carol holds the shipped admin role, dave a role that grants
/// bridging and reads only.
fn more_users(dir: &Path) {
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/admin.toml"),
        dir.join("policies/admin.toml"),
    )
    .unwrap();
    append_policy(dir, "admin.toml", "");
    append_policy(
        dir,
        "extra.toml",
        r#"
[[user]]
name = "carol"
identity = "email:carol@example.test"
roles = ["admin"]

[[user]]
name = "dave"
identity = "email:dave@example.test"
roles = ["bridger"]

[[role]]
name = "bridger"
targets = ["*"]
allow = ["ipmb.send", "mc.info", "chassis.status", "sensor.read"]
"#,
    );
    for u in ["carol", "dave"] {
        pki::issue_client(&dir.join("pki"), &ClientCertSpec::new(u)).unwrap();
    }
}

/// Item 1: Send Message is decided by what it carries, as well as by
/// `ipmb.send`; undecodable and session-management cargo is refused; the
/// planted password is redacted from the trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_is_decided_by_what_it_carries() {
    let env = Env::start(1, more_users).await;
    let canary = b"Tunn3lCanary!!";
    let mut set_pw = vec![0x06, 0x02];
    set_pw.extend_from_slice(canary);
    let tunnel = send_message_hex(0, 0x06, 0x47, &set_pw);
    let path = "/v1/bmcs/node01/raw";

    // The shipped admin role grants no bridging at all.
    let mut carol = env.user("carol").await;
    let (status, _, body) = carol
        .call("POST", path, Some(raw(6, 0x34, &tunnel)))
        .await
        .unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    // A role with ipmb.send still needs the carried command's name.
    let mut dave = env.user("dave").await;
    let (status, _, body) = dave
        .call("POST", path, Some(raw(6, 0x34, &tunnel)))
        .await
        .unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("user.write"));
    let read = send_message_hex(0, 0x06, 0x01, &[]);
    let (status, _, body) = dave
        .call("POST", path, Some(raw(6, 0x34, &read)))
        .await
        .unwrap();
    assert_eq!(
        status,
        200,
        "a carried read that is granted goes through: {}",
        String::from_utf8_lossy(&body)
    );

    // Session management inside, and cargo that does not decode.
    let close = send_message_hex(0, 0x06, 0x3C, &[0, 0, 0, 0]);
    let (status, _, body) = dave
        .call("POST", path, Some(raw(6, 0x34, &close)))
        .await
        .unwrap();
    assert_eq!(
        (status, json(&body)["error"]["code"].as_str()),
        (403, Some("session_command_forbidden"))
    );
    let mut broken = hex::decode(&read).unwrap();
    *broken.last_mut().unwrap() ^= 0x55;
    let (status, _, body) = dave
        .call("POST", path, Some(raw(6, 0x34, &hex::encode(broken))))
        .await
        .unwrap();
    assert_eq!(
        (status, json(&body)["error"]["code"].as_str()),
        (403, Some("undecodable_bridged_message"))
    );

    let dir = env.stop().await;
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let canary_hex = hex::encode(canary);
    assert!(
        !trail.contains(&canary_hex) && !trail.contains("Tunn3lCanary"),
        "{trail}"
    );
    let records: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tunnels: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"] == "request" && r["command"] == "ipmb.send")
        .collect();
    assert_eq!(tunnels.len(), 5, "every bridged request is recorded");
    assert_eq!(tunnels[0]["commands"], json!(["ipmb.send", "user.write"]));
    assert!(
        tunnels[0]["data"].as_str().unwrap().contains("<redacted:"),
        "{}",
        tunnels[0]
    );
    assert_eq!(tunnels[2]["commands"], json!(["ipmb.send", "mc.info"]));
    assert_eq!(tunnels[2]["decision"], "allow");
}

/// Item 1 against OpenIPMI's ipmi_sim, where the review created an
/// ADMINISTRATOR user through the tunnel with the gateway's session at
/// operator privilege: a role that grants `ipmb.send` (as the shipped admin
/// role used to) no longer carries Set User Name/Password/Access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ipmi_sim_user_table_cannot_be_reached_through_send_message() {
    let Some(bmc) = common::IpmiSim::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = ipmigw::gateway::demo::write_files(
        dir.path(),
        &[bmc.addr()],
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    append_policy(
        dir.path(),
        "tunnel.toml",
        "[[user]]\nname = \"eve\"\nidentity = \"email:eve@example.test\"\nroles = [\"tunnel\"]\n\n[[role]]\nname = \"tunnel\"\ntargets = [\"*\"]\nallow = [\"ipmb.send\", \"mc.info\"]\n",
    );
    pki::issue_client(&dir.path().join("pki"), &ClientCertSpec::new("eve")).unwrap();
    let gw = ipmigw::gateway::start(&config).await.unwrap();
    let mut eve = Https::connect(
        gw.local_addr(),
        &dir.path().join("pki"),
        Some("eve"),
        None,
        Version::Http1,
    )
    .await
    .unwrap();
    let mut name = vec![6u8];
    name.extend_from_slice(b"eve\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let mut password = vec![6u8, 0x02];
    password.extend_from_slice(b"Ev1lTunnelPw\0\0\0\0");
    let plants = [
        (0x45u8, name),                    // Set User Name
        (0x47, password),                  // Set User Password
        (0x43, vec![0x91, 6, 0x04, 0x00]), // Set User Access: channel 1, ADMINISTRATOR
    ];
    for (cmd, data) in &plants {
        let tunnel = send_message_hex(0, 0x06, *cmd, data);
        let (status, _, body) = eve
            .call("POST", "/v1/bmcs/node01/raw", Some(raw(6, 0x34, &tunnel)))
            .await
            .unwrap();
        assert_eq!(
            status,
            403,
            "cmd {cmd:#x}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // What the gateway lets through still works against ipmi_sim.
    let read = send_message_hex(0, 0x06, 0x01, &[]);
    let (status, _, body) = eve
        .call("POST", "/v1/bmcs/node01/raw", Some(raw(6, 0x34, &read)))
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let users = bmc.ipmitool(&["user", "list", "1"]);
    assert!(!users.contains("eve"), "ipmi_sim's users:\n{users}");
    gw.shutdown("test").await;
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(!trail.contains("Ev1lTunnelPw") && !trail.contains(&hex::encode(b"Ev1lTunnelPw")));
}

/// Item 2: an operator sets the boot device (API and raw steps), but not
/// CMOS clear, password bypass, lock-outs or other parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_options_beyond_the_boot_device_are_not_an_operators() {
    let env = Env::start(1, |_| {}).await;
    let mut alice = env.user("alice").await;
    let (status, _, body) = alice
        .call(
            "PUT",
            "/v1/bmcs/node01/boot",
            Some(json!({"device": "pxe", "persistent": true})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    for (data, ok) in [
        ("0001", true),          // set in progress
        ("050004000000", true),  // pxe, next boot only, as ipmitool sends it
        ("0000", true),          // set complete
        ("058084000000", false), // CMOS clear
        ("058004080000", false), // user password bypass
        ("058005000000", false), // lock out the reset button
        ("0700010203", false),   // boot initiator mailbox
        ("6100", false),         // OEM parameter
    ] {
        let (status, _, body) = alice
            .call("POST", "/v1/bmcs/node01/raw", Some(raw(0, 0x08, data)))
            .await
            .unwrap();
        // An operator may not send raw commands; the named bootdev steps
        // are not raw: they are chassis.bootdev.set.
        assert_eq!(
            status == 200,
            ok,
            "{data}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let flags = env.sim.bmc(0).with_model(|m, _| m.boot_flag_bytes());
    assert_eq!(
        flags[1] & 0x80,
        0,
        "CMOS clear never reached the BMC: {flags:02x?}"
    );
    let dir = env.stop().await;
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(trail.contains("\"command\":\"chassis.bootopt.flags\""));
    assert!(trail.contains("\"command\":\"chassis.bootopt.param.0x07\""));
    assert!(trail.contains("\"command\":\"chassis.bootopt.param.0x61\""));
}

/// Item 3: a certificate that maps to no user is closed at once; an idle
/// connection is closed after `idle_timeout_ms`; thousands of connections
/// from one source, or with one identity, leave another user served; a
/// reload applies new caps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_or_identity_cannot_hold_every_connection() {
    let _ = rlimit::increase_nofile_limit(20_000);
    let env = Env::start(1, |d| {
        set_limits(
            d,
            "drain_ms = 2000\nidle_timeout_ms = 60000\nhandshake_rate = \"100000/second\"\nmax_connections_per_source = 64\nmax_connections_per_identity = 32\nmax_handshakes = 64\nmax_handshakes_per_source = 8",
        );
        pki::issue_client(&d.join("pki"), &ClientCertSpec::new("nobody")).unwrap();
    })
    .await;
    let (addr, pki) = (env.addr(), env.pki());

    // No user for this certificate: the server ends the connection.
    let mut stranger = tls_from(addr, &pki, Some("nobody"), None, b"http/1.1")
        .await
        .unwrap();
    assert_closed_within(&mut stranger, Duration::from_secs(3)).await;

    // 4,000 connections from one source: most never get a slot.
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..4000 {
        if let Ok(s) = common::gateway::tcp_from(addr, Some(attacker)).await {
            held.push(s);
        }
    }
    let honest: IpAddr = "127.0.0.2".parse().unwrap();
    let started = Instant::now();
    let mut alice = Https::connect(addr, &pki, Some("alice"), Some(honest), Version::Http1)
        .await
        .unwrap();
    let (status, _, _) = alice.call("GET", "/v1/whoami", None).await.unwrap();
    let waited = started.elapsed();
    println!(
        "another source served after {waited:?} with {} attacker sockets open",
        held.len()
    );
    assert_eq!(status, 200);
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    drop(held);

    // One identity (bob) from many sources: capped per identity; the
    // connections over the cap are answered 429 and closed.
    let mut bobs = Vec::new();
    for i in 0..400u32 {
        let from: IpAddr = format!("127.0.{}.{}", 1 + i / 200, 1 + i % 200)
            .parse()
            .unwrap();
        if let Ok(tls) = tls_from(addr, &pki, Some("bob"), Some(from), b"h2").await {
            bobs.push(tls);
        }
    }
    let mut statuses = std::collections::BTreeMap::new();
    let mut kept = Vec::new();
    for tls in bobs {
        let status = match Https::over(tls, Version::Http2).await {
            Ok(mut c) => {
                let s = c.call("GET", "/v1/whoami", None).await.map_or(0, |r| r.0);
                kept.push(c);
                s
            }
            Err(_) => 0,
        };
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&200), Some(&32), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&368), "{statuses:?}");
    let mut alice = env.user("alice").await;
    assert_eq!(alice.call("GET", "/v1/whoami", None).await.unwrap().0, 200);
    drop((kept, alice));

    // Silent connections from many sources fill the handshake slots, not
    // the connection slots: an honest handshake evicts the oldest of them.
    let mut silent = Vec::new();
    for i in 0..200u32 {
        let from: IpAddr = format!("127.0.3.{}", 1 + i % 20).parse().unwrap();
        if let Ok(s) = common::gateway::tcp_from(addr, Some(from)).await {
            silent.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut alice = Https::connect(addr, &pki, Some("alice"), Some(honest), Version::Http1)
        .await
        .unwrap();
    assert_eq!(alice.call("GET", "/v1/whoami", None).await.unwrap().0, 200);
    drop((silent, alice));

    // A reload applies a new per-source cap and idle timeout at once.
    let cfg = std::fs::read_to_string(env.config())
        .unwrap()
        .replace(
            "max_connections_per_source = 64",
            "max_connections_per_source = 2",
        )
        .replace("idle_timeout_ms = 60000", "idle_timeout_ms = 500");
    std::fs::write(env.config(), cfg).unwrap();
    env.gw.reload().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(env.user("alice").await);
    }
    let mut third = Https::connect(addr, &pki, Some("alice"), None, Version::Http1)
        .await
        .unwrap();
    let (status, _, body) = third.call("GET", "/v1/whoami", None).await.unwrap();
    assert_eq!(
        (status, json(&body)["error"]["code"].as_str()),
        (429, Some("too_many_connections")),
        "a third connection from one source is refused after the reload"
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Idle after the handshake, before any HTTP byte: closed. So is an
    // HTTP/1.1 connection some time after its request.
    let mut idle = tls_from(addr, &pki, Some("alice"), None, b"h2")
        .await
        .unwrap();
    assert_closed_within(&mut idle, Duration::from_secs(5)).await;
    let mut quiet = env.user("alice").await;
    assert_eq!(quiet.call("GET", "/v1/whoami", None).await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        quiet.call("GET", "/v1/whoami", None).await.is_err(),
        "closed while idle"
    );
    env.stop().await;
}

async fn assert_closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, limit: Duration) {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 256];
    let started = Instant::now();
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue, // session tickets, GOAWAY
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
}

/// Item 4: a viewer flooding denied commands gets 429 after the refusal
/// rate, the trail grows by at most the rate plus one summary, and an
/// honest user is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_denials_is_counted_not_written_line_by_line() {
    let env = Env::start(1, |d| {
        set_limits(d, "drain_ms = 2000\nrefusal_rate = \"20/minute\"\nrefusal_rate_per_source = \"1000/minute\"");
    })
    .await;
    let before = env.audit_lines().len();
    let bob = env.user_h2("bob").await;
    let flood = 2000;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..flood {
        let mut c = bob.stream();
        tasks.spawn(async move {
            let body = raw(0x30, (i % 256) as u8, "");
            c.call("POST", "/v1/bmcs/node01/raw", Some(body))
                .await
                .map(|r| r.0)
        });
    }
    let mut alice = env.user("alice").await;
    let (status, _, _) = alice
        .call("GET", "/v1/bmcs/node01/power", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "an honest user is served during the flood");
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        *statuses.entry(r.unwrap().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&403), Some(&20), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&(flood - 20)), "{statuses:?}");
    let dir = env.stop().await;
    let trail: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denials = trail
        .iter()
        .filter(|l| l["event"] == "request" && l["decision"] == "deny")
        .count();
    assert_eq!(denials, 20);
    let counted: u64 = trail
        .iter()
        .filter(|l| l["event"] == "denial_summary")
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, flood - 20, "every refusal is counted");
    let summaries = trail
        .iter()
        .filter(|l| l["event"] == "denial_summary")
        .count();
    assert!(summaries <= 128 + 1, "{summaries} summaries");
    let grew = trail.len() - before;
    assert!(
        grew < 20 + summaries + 40,
        "the trail grew by {grew} records"
    );
}

/// Item 5: the identity comes from the configured kinds in order; a CN
/// never overrides a SAN; two values of the deciding kind are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_the_first_configured_kind_and_never_a_union() {
    let env = Env::start(1, |d| {
        let cfg = d.join("gateway.toml");
        let c = std::fs::read_to_string(&cfg).unwrap().replace(
            "crl = [\"pki/ca.crl\"]\n",
            "crl = [\"pki/ca.crl\"]\nidentity = [\"email\", \"uri\", \"cn\"]\n",
        );
        std::fs::write(cfg, c).unwrap();
        append_policy(
            d,
            "cn.toml",
            "[[user]]\nname = \"root\"\nidentity = \"cn:root\"\nroles = [\"operator\"]\n",
        );
        let pki_dir = d.join("pki");
        // SAN eve (nobody), CN root (a user): eve's certificate.
        let mut eve = ClientCertSpec::new("eve");
        eve.common_name = Some("root".into());
        pki::issue_client(&pki_dir, &eve).unwrap();
        // Two e-mail SANs: alice's and bob's.
        let mut two = ClientCertSpec::new("two");
        two.email = Some("alice@example.test".into());
        two.extra_emails = vec!["bob@example.test".into()];
        pki::issue_client(&pki_dir, &two).unwrap();
        // No SAN at all, CN root: root (cn is listed).
        let mut root = ClientCertSpec::new("root");
        root.email = None;
        pki::issue_client(&pki_dir, &root).unwrap();
    })
    .await;
    for refused in ["eve", "two"] {
        let mut s = tls_from(env.addr(), &env.pki(), Some(refused), None, b"http/1.1")
            .await
            .unwrap();
        assert_closed_within(&mut s, Duration::from_secs(3)).await;
    }
    let mut root = env.user("root").await;
    let (status, _, body) = root.call("GET", "/v1/whoami", None).await.unwrap();
    assert_eq!((status, json(&body)["user"].as_str()), (200, Some("root")));
    let dir = env.stop().await;
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(trail.contains("ambiguous_certificate_identity"), "{trail}");
    assert!(trail.contains("no_user_for_certificate"), "{trail}");
}

/// Item 5, config side: a policy identity of a kind `[tls] identity` does
/// not list is a check-config error.
#[test]
fn a_user_no_certificate_could_name_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = ipmigw::gateway::demo::write_files(
        dir.path(),
        &["127.0.0.1:9".parse::<SocketAddr>().unwrap()],
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    append_policy(
        dir.path(),
        "cn.toml",
        "[[user]]\nname = \"root\"\nidentity = \"cn:root\"\nroles = [\"operator\"]\n",
    );
    let (code, out, err) =
        common::ipmigw_bin(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("policy user \"root\" has identity cn:root"),
        "{err}"
    );
}

/// Items 7 and 8: concurrent sensor walks and a viewer's raw reservations
/// do not break each other; a denied part of a composite read denies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_reads_are_serialised_and_every_part_is_decided() {
    let env = Env::start(1, |d| {
        append_policy(
            d,
            "extra.toml",
            "[[user]]\nname = \"carol\"\nidentity = \"email:carol@example.test\"\nroles = [\"nosdr\"]\n\n[[role]]\nname = \"nosdr\"\ntargets = [\"*\"]\nallow = [\"sensor.read\", \"raw.**\"]\n\n[[user]]\nname = \"dave\"\nidentity = \"email:dave@example.test\"\nroles = [\"viewer\", \"reserver\"]\n\n[[role]]\nname = \"reserver\"\ntargets = [\"*\"]\nallow = [\"sdr.read\"]\n",
        );
        for u in ["carol", "dave"] {
            pki::issue_client(&d.join("pki"), &ClientCertSpec::new(u)).unwrap();
        }
    })
    .await;
    let mut carol = env.user("carol").await;
    let (status, _, _) = carol
        .call("GET", "/v1/bmcs/node01/sensors", None)
        .await
        .unwrap();
    assert_eq!(status, 403, "sensors need sdr.read too");

    let alice = env.user_h2("alice").await;
    let dave = env.user_h2("dave").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reserver = {
        let (mut d, stop) = (dave.stream(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2000 {
                // Reserve SDR Repository, as fast as it goes.
                let _ = d
                    .call("POST", "/v1/bmcs/node01/raw", Some(raw(0x0A, 0x22, "")))
                    .await;
                n += 1;
            }
            n
        })
    };
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut c = alice.stream();
        readers.spawn(async move {
            let what = if i % 2 == 0 { "sensors" } else { "sel" };
            let mut ok = 0;
            for _ in 0..5 {
                let (status, _, body) = c
                    .call("GET", &format!("/v1/bmcs/node01/{what}"), None)
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
                ok += 1;
            }
            ok
        });
    }
    let mut total = 0;
    while let Some(r) = readers.join_next().await {
        total += r.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reservations = reserver.await.unwrap();
    assert_eq!(total, 40, "every read succeeded");
    println!("40 reads beside {reservations} raw reservations");
    let dir = env.stop().await;
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        trail.contains("\"commands\":[\"sensor.read\",\"sdr.read\"]"),
        "the record names every part"
    );
}

/// Item 9: every refused request is in the trail, and an allowed request
/// whose client hangs up still gets its result record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_and_every_result_is_recorded() {
    let env = Env::start(2, |d| {
        append_policy(d, "extra.toml", "[[user]]\nname = \"carol\"\nidentity = \"email:carol@example.test\"\nroles = [\"lab\"]\n\n[[role]]\nname = \"lab\"\ntargets = [\"node02\"]\nallow = [\"chassis.status\"]\n");
        pki::issue_client(&d.join("pki"), &ClientCertSpec::new("carol")).unwrap();
    })
    .await;
    let mut carol = env.user("carol").await;
    let (s404, _, b404) = carol
        .call("GET", "/v1/bmcs/node01/power", None)
        .await
        .unwrap();
    let (s404b, _, b404b) = carol
        .call("GET", "/v1/bmcs/nosuch/power", None)
        .await
        .unwrap();
    assert_eq!(
        (s404, &b404),
        (s404b, &b404b),
        "invisible and unknown look the same"
    );
    let mut alice = env.user("alice").await;
    let (s, _, _) = alice
        .call(
            "POST",
            "/v1/bmcs/node01/raw",
            Some(raw(6, 0x3C, "00000000")),
        )
        .await
        .unwrap();
    assert_eq!(s, 403);
    let (s, _, _) = alice
        .call(
            "POST",
            "/v1/bmcs/node01/power",
            Some(json!({"action": "explode"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 400);
    for bad in [json!(5), json!(null), json!(["00"])] {
        let (s, _, body) = alice
            .call(
                "POST",
                "/v1/bmcs/node01/raw",
                Some(json!({"netfn": 6, "cmd": 1, "data": bad})),
            )
            .await
            .unwrap();
        assert_eq!(s, 400, "data {bad}: {}", String::from_utf8_lossy(&body));
    }

    // A name no BMC has, as long as a URL may be: recorded, clipped.
    let long = "x".repeat(8000);
    let (s, _, _) = carol
        .call("GET", &format!("/v1/bmcs/{long}/power"), None)
        .await
        .unwrap();
    assert_eq!(s, 404);

    // Requests whose clients reset their streams at once: each one that was
    // recorded as allowed also gets its result record.
    let h2 = env.user_h2("alice").await;
    for _ in 0..20 {
        let mut c = h2.stream();
        let call = tokio::spawn(async move { c.call("GET", "/v1/bmcs/node02/power", None).await });
        tokio::time::sleep(Duration::from_millis(2)).await;
        call.abort();
    }
    drop(h2);

    // A power action whose client resets right after sending it (on a warm
    // session, so that only the command itself is slow).
    assert_eq!(
        alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    env.sim.bmc(0).set_faults(ipmigw::sim::Faults {
        delay: Duration::from_millis(600),
        ..Default::default()
    });
    let h2 = env.user_h2("alice").await;
    let mut c = h2.stream();
    let call = tokio::spawn(async move {
        c.call(
            "POST",
            "/v1/bmcs/node01/power",
            Some(json!({"action": "off"})),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    drop(h2);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(!env.sim.bmc(0).power_on(), "the action was done");
    let dir = env.stop().await;
    let trail: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<String> = trail
        .iter()
        .filter(|l| l["event"] == "request" && l["decision"] == "deny")
        .map(|l| l["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "not_found").count(),
        3,
        "{reasons:?}"
    );
    assert!(trail
        .iter()
        .filter(|l| l["event"] == "request")
        .all(|l| l["target"].as_str().unwrap().len() <= 128 && l.to_string().len() < 2048));
    let results: std::collections::HashSet<&str> = trail
        .iter()
        .filter(|l| l["event"] == "result")
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    let unanswered: Vec<&serde_json::Value> = trail
        .iter()
        .filter(|l| l["event"] == "request" && l["decision"] == "allow")
        .filter(|l| !results.contains(l["request_id"].as_str().unwrap()))
        .collect();
    assert!(
        unanswered.is_empty(),
        "allowed without a result: {unanswered:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "session_command_forbidden"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| *r == "bad_request").count(),
        4,
        "{reasons:?}"
    );
    let off = trail
        .iter()
        .find(|l| l["event"] == "request" && l["command"] == "chassis.power.off")
        .expect("the power off request");
    let id = off["request_id"].as_str().unwrap();
    assert!(
        trail
            .iter()
            .any(|l| l["event"] == "result" && l["request_id"] == id),
        "a result record for {id}"
    );
}

/// Item 10: SIGHUP (a reload) does not hand out a fresh burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_rate_limit_state() {
    let env = Env::start(1, |_| {}).await;
    let mut alice = env.user("alice").await;
    let mut ok = 0;
    for _ in 0..10 {
        let (s, _, _) = alice
            .call(
                "POST",
                "/v1/bmcs/node01/power",
                Some(json!({"action": "on"})),
            )
            .await
            .unwrap();
        if s == 200 {
            ok += 1;
        } else {
            assert_eq!(s, 429);
            break;
        }
    }
    assert_eq!(ok, 6, "the operator role's 6/minute");
    env.gw.reload().await.unwrap();
    let mut alice = env.user("alice").await;
    let (s, _, _) = alice
        .call(
            "POST",
            "/v1/bmcs/node01/power",
            Some(json!({"action": "on"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 429, "still limited after the reload");
    env.stop().await;
}

/// Item 13: HEAD is answered (405, or the health check) over HTTP/2
/// instead of a stream reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_over_http2() {
    let env = Env::start(1, |_| {}).await;
    let mut c = env.user_h2("alice").await;
    let (s, h, body) = c.call("HEAD", "/v1/bmcs/node01/power", None).await.unwrap();
    assert_eq!((s, body.len()), (405, 0));
    assert_eq!(h.get("allow").unwrap(), "GET");
    let (s, _, _) = c.call("HEAD", "/healthz", None).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        c.call("GET", "/v1/whoami", None).await.unwrap().0,
        200,
        "the connection lives on"
    );
    let dir = env.stop().await;
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        trail.contains("\"route\":\"HEAD /v1/bmcs/node01/power\""),
        "the refused HEAD is in the trail"
    );
}

/// A reload applies new refusal rates at once (it used to keep the rates
/// the gateway started with, and say it had reloaded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_refusal_rates() {
    let env = Env::start(1, |d| {
        set_limits(d, "drain_ms = 2000\nrefusal_rate = \"5/minute\"")
    })
    .await;
    let mut bob = env.user("bob").await;
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let st = bob
            .call("POST", "/v1/bmcs/node01/raw", Some(raw(0x30, 1, "")))
            .await
            .unwrap()
            .0;
        *statuses.entry(st).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&403), Some(&5), "{statuses:?}");
    let cfg = std::fs::read_to_string(env.config()).unwrap().replace(
        "refusal_rate = \"5/minute\"",
        "refusal_rate = \"100/minute\"",
    );
    std::fs::write(env.config(), cfg).unwrap();
    env.gw.reload().await.unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let st = bob
            .call("POST", "/v1/bmcs/node01/raw", Some(raw(0x30, 1, "")))
            .await
            .unwrap()
            .0;
        *statuses.entry(st).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&403), Some(&20), "{statuses:?}");
    env.stop().await;
}

/// Item 14: `bmc_session` records name the suite agreed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmc_session_records_name_the_suite() {
    let env = Env::start(1, |_| {}).await;
    let mut alice = env.user("alice").await;
    assert_eq!(
        alice
            .call("GET", "/v1/bmcs/node01/power", None)
            .await
            .unwrap()
            .0,
        200
    );
    let dir = env.stop().await;
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        trail.contains("\"action\":\"login\",\"cipher_suite\":17"),
        "{trail}"
    );
    assert!(
        trail.contains("\"action\":\"logout\",\"cipher_suite\":17"),
        "{trail}"
    );
}
