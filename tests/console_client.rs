//! The console as a person uses it, in a real terminal (tmux): `ipmigw
//! console` against a gateway in front of the simulator, and stock
//! `ipmitool sol activate` through `ipmigw bridge`. Typing at the login
//! prompt, the echo, a flood in order, `~.` leaving with the terminal's
//! settings as they were, a read-only viewer that cannot type.
//!
//! Skipped when tmux or ipmitool is missing, unless
//! IPMIGW_REQUIRE_INTEROP=1 (then they fail).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::gateway::Env;
use common::ChildGuard;

mod common;

/// Longest wait for anything on a screen.
const WAIT: Duration = Duration::from_secs(30);

fn tools() -> Option<()> {
    let have = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<_> = ["tmux", "ipmitool"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    if std::env::var("IPMIGW_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("IPMIGW_REQUIRE_INTEROP=1 but {missing:?} missing");
    }
    eprintln!("SKIPPED: {missing:?} missing");
    None
}

/// One terminal: a tmux server of its own (its own socket), killed with it.
struct Term {
    socket: String,
    dir: PathBuf,
}

impl Term {
    /// A 120x40 terminal running `script` under bash; the script's files
    /// (stty before/after, exit code) land in `dir`.
    fn start(dir: &Path, name: &str, env: &[(&str, String)], command: &str) -> Term {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("tmux.conf");
        std::fs::write(&conf, "set -g history-limit 20000\n").unwrap();
        let mut script = String::from("cd \"$(dirname \"$0\")\"\n");
        for (k, v) in env {
            script.push_str(&format!("export {k}='{v}'\n"));
        }
        script.push_str(&format!(
            "stty -a > stty.before\n{command}\necho $? > exit.code\nstty -a > stty.after\nexec sleep 600\n"
        ));
        std::fs::write(dir.join("run.sh"), script).unwrap();
        let socket = format!("ipmigw-test-{}-{name}", std::process::id());
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", conf.to_str().unwrap()])
            .args(["new-session", "-d", "-x", "120", "-y", "40"])
            .arg(format!(
                "bash --noprofile --norc {}",
                dir.join("run.sh").display()
            ))
            .status()
            .unwrap();
        assert!(ok.success(), "tmux new-session");
        Term { socket, dir }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
    }

    fn enter(&self) {
        self.tmux(&["send-keys", "Enter"]);
    }

    /// The screen and its history, lines joined where they wrapped.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-"])
    }

    /// Waits until the screen holds `text`; the screen then.
    fn wait_for(&self, text: &str) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(Instant::now() < end, "no {text:?} on the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The command's exit code, once it ended.
    fn exit_code(&self) -> i32 {
        let end = Instant::now() + WAIT;
        loop {
            if let Ok(t) = std::fs::read_to_string(self.dir.join("exit.code")) {
                if !t.trim().is_empty() {
                    return t.trim().parse().unwrap();
                }
            }
            assert!(
                Instant::now() < end,
                "the command did not end:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The terminal's settings before the command and after it.
    fn stty(&self) -> (String, String) {
        let end = Instant::now() + WAIT;
        loop {
            let after = std::fs::read_to_string(self.dir.join("stty.after")).unwrap_or_default();
            if !after.is_empty() {
                let before = std::fs::read_to_string(self.dir.join("stty.before")).unwrap();
                return (before, after);
            }
            assert!(Instant::now() < end, "no stty after");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        // Our own server only (its own socket): ends what runs in it.
        self.tmux(&["kill-server"]);
    }
}

/// The environment that makes `ipmigw` act as `user` of `env`'s gateway.
fn as_user(env: &Env, user: &str) -> Vec<(&'static str, String)> {
    let pki = env.pki();
    let p = |f: String| pki.join(f).display().to_string();
    vec![
        ("PATH", path_with_ipmigw()),
        ("IPMIGW_GATEWAY", format!("https://{}", env.addr())),
        ("IPMIGW_CA", p("ca.crt".into())),
        ("IPMIGW_CERT", p(format!("{user}.crt"))),
        ("IPMIGW_KEY", p(format!("{user}.key"))),
    ]
}

fn path_with_ipmigw() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_ipmigw")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Every `flood` line of `n` appears once, in order.
fn assert_flood_in_order(screen: &str, n: u64) {
    let lines: Vec<u64> = screen
        .lines()
        .filter_map(|l| {
            // `flood 000001 of 000300 abc...`, not the command typed.
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                ["flood", i, "of", ..] => i.parse().ok(),
                _ => None,
            }
        })
        .collect();
    let want: Vec<u64> = (1..=n).collect();
    assert_eq!(lines, want, "flood lines once and in order");
}

/// Login, echo, a flood of 1,000 lines in order, a read-only viewer who
/// sees the writer's name and cannot type, and `~.` leaving with the
/// terminal as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmigw_console_in_a_terminal() {
    if tools().is_none() {
        return;
    }
    let env = Env::start(1, |_| {}).await;
    let dir = env.dir.path().to_path_buf();
    let (alice, bob) = (as_user(&env, "alice"), as_user(&env, "bob"));
    tokio::task::spawn_blocking(move || {
        let w = Term::start(&dir, "alice", &alice, "ipmigw console node01");
        w.wait_for("you hold the writer seat");
        w.enter();
        w.wait_for("login: ");
        w.type_text("root");
        w.wait_for("login: root");
        w.enter();
        w.wait_for("Password:");
        w.type_text("secret");
        w.enter();
        w.wait_for("root@simhost1");

        let v = Term::start(&dir, "bob", &bob, "ipmigw console --read-only node01");
        v.wait_for("read-only; writer: alice");
        v.type_text("intruder");
        v.enter();
        v.wait_for("keystrokes are not sent");

        w.type_text("flood 1000");
        w.enter();
        let screen = w.wait_for("flood done");
        assert_flood_in_order(&screen, 1000);
        assert_flood_in_order(&v.wait_for("flood done"), 1000);

        v.enter();
        v.type_text("~.");
        assert_eq!(v.exit_code(), 0);
        w.enter();
        w.type_text("~.");
        assert_eq!(w.exit_code(), 0, "{}", w.screen());
        for t in [&w, &v] {
            let (before, after) = t.stty();
            assert_eq!(before, after, "the terminal's settings are restored");
        }
    })
    .await
    .unwrap();
    let typed = String::from_utf8_lossy(&env.sim.bmcs()[0].host_input()).into_owned();
    assert!(
        typed.contains("root") && typed.contains("flood 1000"),
        "{typed:?}"
    );
    assert!(!typed.contains("intruder"), "the viewer typed: {typed:?}");
    assert!(!typed.contains('~'), "escapes are not sent: {typed:?}");
    env.stop().await;
}

/// A refused attach prints the gateway's reason and exits 3 without
/// touching the terminal's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_console_exits_3_and_leaves_the_terminal_alone() {
    if tools().is_none() {
        return;
    }
    let env = Env::start(1, |_| {}).await;
    let dir = env.dir.path().to_path_buf();
    let bob = as_user(&env, "bob");
    tokio::task::spawn_blocking(move || {
        // bob is a viewer: the writer seat needs console.write.
        let t = Term::start(&dir, "bob", &bob, "ipmigw console node01");
        assert_eq!(t.exit_code(), 3, "{}", t.screen());
        let (before, after) = t.stty();
        assert_eq!(before, after);
    })
    .await
    .unwrap();
    env.stop().await;
}

/// Stock `ipmitool sol activate` through the bridge: login, echo, a flood
/// in order, `~.` ends ipmitool with the terminal as it was, and no
/// payload stays active on the BMC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_sol_activate_through_the_bridge_in_a_terminal() {
    if tools().is_none() {
        return;
    }
    let env = Env::start(1, |_| {}).await;
    let dir = env.dir.path().to_path_buf();
    let pw = dir.join("bridge.pw");
    common::private_file(&pw, "LocalPass1-bridge");
    let mut bridge = ChildGuard(
        common::ipmigw_as(env.addr(), &env.pki(), "alice")
            .env("USER", "alice")
            .args(["bridge", "--listen", "127.0.0.1:0", "--password-file"])
            .arg(&pw)
            .arg("node01")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    std::io::BufReader::new(bridge.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .rsplit_once("udp://127.0.0.1:")
        .and_then(|(_, r)| r.split(' ').next())
        .unwrap_or_else(|| panic!("bridge said {first:?}"))
        .to_string();
    let cmd = format!(
        "ipmitool -I lanplus -H 127.0.0.1 -p {port} -U alice -f {} -C 17 sol activate",
        pw.display()
    );
    let sim_active = {
        let t = tokio::task::spawn_blocking(move || {
            let t = Term::start(&dir, "ipmitool", &[], &cmd);
            t.wait_for("SOL Session operational");
            t.enter();
            t.wait_for("login: ");
            t.type_text("root");
            t.wait_for("login: root");
            t.enter();
            t.wait_for("Password:");
            t.type_text("secret");
            t.enter();
            t.wait_for("root@simhost1");
            t.type_text("flood 300");
            t.enter();
            assert_flood_in_order(&t.wait_for("flood done"), 300);
            t
        })
        .await
        .unwrap();
        assert!(
            env.sim.bmcs()[0].sol_active(),
            "the gateway holds the payload"
        );
        tokio::task::spawn_blocking(move || {
            t.enter();
            t.type_text("~.");
            assert_eq!(t.exit_code(), 0, "{}", t.screen());
            let (before, after) = t.stty();
            assert_eq!(before, after, "ipmitool restored the terminal");
        })
        .await
        .unwrap();
        let end = Instant::now() + WAIT;
        while env.sim.bmcs()[0].sol_active() && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        env.sim.bmcs()[0].sol_active()
    };
    assert!(!sim_active, "~. left a payload active on the BMC");
    let typed = String::from_utf8_lossy(&env.sim.bmcs()[0].host_input()).into_owned();
    assert!(typed.contains("flood 300"), "{typed:?}");
    drop(bridge);
    env.stop().await;
}

/// A keystroke's packet leaves the gateway at once, not at the SOL
/// engine's next timer: each echo is back in well under the BMC's retry
/// interval (500 ms on the simulator), which it took before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystrokes_leave_the_gateway_at_once() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let env = Env::start(1, |_| {}).await;
    let tls = common::gateway::tls_from(env.addr(), &env.pki(), Some("alice"), None, b"http/1.1")
        .await
        .unwrap();
    let req = "wss://localhost/v1/bmcs/node01/console"
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(Message::Binary(b"\r".to_vec())).await.unwrap();
    echoed(&mut ws, b"login: ").await;
    let mut took = Vec::new();
    for c in b"abcdefghij" {
        let t = Instant::now();
        ws.send(Message::Binary(vec![*c])).await.unwrap();
        echoed(&mut ws, &[*c]).await;
        took.push(t.elapsed());
    }
    took.sort();
    assert!(
        took[took.len() / 2] < Duration::from_millis(150),
        "echo times {took:?}"
    );
    drop(ws);
    env.stop().await;
}

/// Reads the console until `want` has arrived.
async fn echoed(ws: &mut tokio_tungstenite::WebSocketStream<common::gateway::Tls>, want: &[u8]) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + WAIT;
    while !seen.windows(want.len()).any(|w| w == want) {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.extend(b),
            Ok(Some(Ok(_))) => {}
            other => panic!("no {want:?}: {other:?}"),
        }
    }
}
