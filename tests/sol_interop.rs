//! Serial over LAN with real peers. Stock `ipmitool sol activate` against
//! the built-in simulator, driven as a person would in tmux (type at the
//! login prompt, read the screen, `flood 100`, `~.`), plus `sol info` and
//! `sol deactivate` after a client that died; and our console engine
//! against OpenIPMI's `ipmi_sim` with its SOL wired to the simulated host
//! (the project's `SimHost` on a TCP port, as `bmc-lab start --sol` does
//! with its own host). Skipped with a printed reason when ipmitool, tmux or
//! ipmi_sim are missing, unless IPMIGW_REQUIRE_INTEROP=1.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::host_line::HostLine;
use ipmigw::ipmi::cmd::sol::GetPayloadActivationStatus;
use ipmigw::ipmi::cmd::Command as _;
use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::console::sol::{SolConfig, SolConsole, SolEnd, SolEvent, SolState};
use ipmigw::ipmi::session::console::{ActiveSession, ConsoleConfig, Handshake};
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;
use ipmigw::sim::{SimConfig, Simulator};

/// Longest wait for one screen or console condition.
const WAIT: Duration = Duration::from_secs(20);
/// Keep-alive interval of our consoles in these tests.
const KEEPALIVE: Duration = Duration::from_secs(1);

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// True when every tool is there; otherwise skips (or fails when interop
/// is required).
fn tools(needed: &[&str]) -> bool {
    let missing: Vec<_> = needed.iter().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("missing {missing:?} (apt-get install -y ipmitool tmux openipmi)");
    if std::env::var("IPMIGW_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("IPMIGW_REQUIRE_INTEROP=1 but {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// The built-in simulator on a runtime of its own. Stopped on drop.
struct Sim {
    rt: tokio::runtime::Runtime,
    sim: Option<Simulator>,
}

impl Sim {
    fn start() -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
        let sim = rt.block_on(Simulator::start(cfg)).unwrap();
        Sim { rt, sim: Some(sim) }
    }

    fn bmc(&self) -> &ipmigw::sim::SimBmcHandle {
        self.sim.as_ref().unwrap().bmc(0)
    }

    fn port(&self) -> u16 {
        self.bmc().addr().port()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.sim.take() {
            self.rt.block_on(s.stop());
        }
    }
}

fn ipmitool_args(port: u16) -> Vec<String> {
    [
        "-I",
        "lanplus",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "admin",
        "-P",
        "Adm1nPass",
        "-C",
        "17",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn ipmitool(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new("ipmitool")
        .args(ipmitool_args(port))
        .args(args)
        .output()
        .expect("run ipmitool");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A tmux server of this test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, cmd: &str) -> Tmux {
        let t = Tmux {
            socket: format!("ipmigw-sol-{}-{name}", std::process::id()),
        };
        let ok = t
            .cmd(&["new-session", "-d", "-s", "t", "-x", "160", "-y", "50", cmd])
            .status()
            .expect("run tmux")
            .success();
        assert!(ok, "tmux new-session failed");
        t
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        c
    }

    /// The screen and its scrollback.
    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-J", "-S", "-5000", "-t", "t"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().unwrap().success());
    }

    /// Types literal text (no key names).
    fn type_text(&self, text: &str) {
        assert!(self
            .cmd(&["send-keys", "-t", "t", "-l", text])
            .status()
            .unwrap()
            .success());
    }

    fn wait_for(&self, what: &str) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(Instant::now() < end, "no {what:?} on screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).output();
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ipmitool_sol_activate_as_a_person_would() {
    if !tools(&["ipmitool", "tmux"]) {
        return;
    }
    let sim = Sim::start();
    let cmd = format!(
        "ipmitool {} sol activate; sleep 30",
        ipmitool_args(sim.port()).join(" ")
    );
    let tmux = Tmux::start("activate", &cmd);
    tmux.wait_for("SOL Session operational");
    tmux.wait_for("simhost1 login: ");
    assert!(sim.bmc().sol_active());
    tmux.type_text("root");
    tmux.wait_for("login: root");
    tmux.keys(&["Enter"]);
    tmux.wait_for("Password: ");
    tmux.type_text("not-shown");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("root@simhost1:~$ ");
    assert!(!s.contains("not-shown"), "the password was echoed:\n{s}");
    tmux.type_text("flood 100");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("flood done");
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("flood 0")).collect();
    let want: Vec<String> = (1..=100)
        .map(|i| format!("flood {i:06} of 000100 abcdefghijklmnopqrstuvwxyz"))
        .collect();
    assert_eq!(lines, want, "every line once, in order");
    // Enter, then ~. leaves ipmitool, which deactivates the payload.
    tmux.keys(&["Enter"]);
    tmux.type_text("~.");
    tmux.wait_for("terminated ipmitool");
    wait_until("the payload to go inactive", || !sim.bmc().sol_active());
    let (ok, text) = ipmitool(sim.port(), &["raw", "0x06", "0x4a", "0x01"]);
    assert!(ok, "{text}");
    let st = GetPayloadActivationStatus
        .parse_response(&hex_bytes(&text))
        .unwrap();
    assert!(!st.is_active(1), "Get Payload Activation Status: {text}");
    let typed = sim.bmc().host_input();
    assert_eq!(
        typed.iter().filter(|b| **b == b'\r').count(),
        4,
        "each Enter reached the host once: {typed:?}"
    );
    assert!(typed.starts_with(b"root\rnot-shown\rflood 100\r"));
}

#[test]
fn ipmitool_sol_info_and_deactivate_after_a_dead_client() {
    if !tools(&["ipmitool", "tmux"]) {
        return;
    }
    let sim = Sim::start();
    let (ok, info) = ipmitool(sim.port(), &["sol", "info"]);
    assert!(ok, "{info}");
    assert!(info.contains("Enabled") && info.contains("true"), "{info}");
    assert!(
        info.contains(&format!("Payload Port                    : {}", sim.port())),
        "{info}"
    );
    let cmd = format!(
        "ipmitool {} sol activate",
        ipmitool_args(sim.port()).join(" ")
    );
    let tmux = Tmux::start("dead", &cmd);
    tmux.wait_for("simhost1 login: ");
    // The client dies without deactivating: the payload stays active.
    drop(tmux);
    assert!(sim.bmc().sol_active());
    let (ok, text) = ipmitool(sim.port(), &["sol", "activate"]);
    assert!(!ok && text.contains("already active"), "{text}");
    let (ok, text) = ipmitool(sim.port(), &["sol", "deactivate"]);
    assert!(ok, "{text}");
    assert!(!sim.bmc().sol_active());
    let (_, text) = ipmitool(sim.port(), &["sol", "deactivate"]);
    assert!(text.contains("already de-activated"), "{text}");
}

/// "ipmitool raw" output ("  01 00 00") as bytes.
fn hex_bytes(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .filter_map(|w| u8::from_str_radix(w, 16).ok())
        .collect()
}

// === our console engine against ipmi_sim ===

/// A console of ours on a blocking UDP socket: the sans-IO machines and a
/// short drive loop.
struct Driver {
    socket: UdpSocket,
}

impl Driver {
    fn new(bmc: SocketAddr) -> Driver {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(bmc).unwrap();
        Driver { socket }
    }

    fn recv(&self, until: Instant) -> Option<Vec<u8>> {
        let wait = until.saturating_duration_since(Instant::now());
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 2048];
        self.socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    fn login(&self) -> Box<ActiveSession> {
        let mut cfg = ConsoleConfig::new(
            b"admin",
            SecretBytes::from(&b"Adm1nPass"[..]),
            Privilege::Administrator,
        );
        cfg.cipher_suites = vec![CipherSuite::Suite3];
        let mut hs = Handshake::start(cfg, Box::new(rand::rngs::OsRng), Instant::now()).unwrap();
        loop {
            if let Some(done) = hs.poll_outcome() {
                return done.map_err(|f| f.error).expect("login to ipmi_sim");
            }
            while let Some(d) = hs.poll_transmit() {
                self.socket.send(&d).unwrap();
            }
            let at = hs.poll_timeout().unwrap_or_else(Instant::now);
            match self.recv(at) {
                Some(d) => {
                    let _ = hs.handle_datagram(Instant::now(), &d);
                }
                None => hs.handle_timeout(Instant::now()),
            }
        }
    }

    /// Runs `sol` until `done` says so (given the output so far) or it
    /// ends; returns the output.
    fn run(&self, sol: &mut SolConsole, limit: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let end = Instant::now() + limit;
        let mut out = Vec::new();
        while Instant::now() < end && sol.state() != SolState::Ended && !done(&out) {
            while let Some(d) = sol.poll_transmit() {
                self.socket.send(&d).unwrap();
            }
            let at = sol.poll_timeout().unwrap_or(end).min(end);
            match self.recv(at) {
                Some(d) => {
                    let _ = sol.handle_datagram(Instant::now(), &d);
                }
                None => sol.handle_timeout(Instant::now()),
            }
            out.extend(sol.read());
        }
        while let Some(d) = sol.poll_transmit() {
            self.socket.send(&d).unwrap();
        }
        out
    }

    /// Activates SOL and waits for a prompt; on ipmi_sim's known
    /// "activation without data" quirk (nothing comes back for a typed
    /// Enter) reopens once.
    fn open(&self, port: u16, take_over: bool) -> SolConsole {
        for attempt in 0..2 {
            let mut cfg = SolConfig::new(port);
            cfg.take_over = take_over;
            // Short, so that the tests see keep-alives answered.
            cfg.keepalive = KEEPALIVE;
            let mut sol = SolConsole::start(self.login(), cfg, Instant::now());
            let out = self.until_prompt(&mut sol);
            if prompted(&out) {
                return sol;
            }
            eprintln!(
                "attempt {attempt}: no prompt ({:?}, {:?}, got {:?}); reopening",
                sol.state(),
                sol.link_stats(),
                String::from_utf8_lossy(&out)
            );
            sol.deactivate(Instant::now());
            self.run(&mut sol, WAIT, |_| false);
            self.close(sol);
        }
        panic!("ipmi_sim's SOL carried no data twice")
    }

    fn wait_active(&self, sol: &mut SolConsole) {
        let end = Instant::now() + WAIT;
        while sol.state() != SolState::Active && Instant::now() < end {
            self.run(sol, Duration::from_millis(50), |_| false);
        }
        assert_eq!(sol.state(), SolState::Active);
    }

    fn until_prompt(&self, sol: &mut SolConsole) -> Vec<u8> {
        self.wait_active(sol);
        sol.write(Instant::now(), b"\r");
        self.run(sol, Duration::from_secs(5), prompted)
    }

    fn close(&self, sol: SolConsole) {
        let mut session = sol.into_session();
        self.socket.send(&session.close_session_request()).unwrap();
    }
}

/// The host's login or shell prompt (Enter brings up whichever it is at).
fn prompted(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    text.contains("simhost1 login: ") || text.contains("@simhost1:~$ ")
}

fn ended(sol: &mut SolConsole) -> Option<SolEnd> {
    std::iter::from_fn(|| sol.poll_event()).find_map(|e| match e {
        SolEvent::Ended(why) => Some(why),
        _ => None,
    })
}

#[test]
fn our_console_against_ipmi_sim_sol() {
    let host = HostLine::start();
    let extra = format!("sol \"tcp:127.0.0.1:{}\" 115200\n", host.port);
    let Some(sim) = common::IpmiSim::start_with(&extra) else {
        return;
    };
    let drv = Driver::new(sim.addr());
    let mut sol = drv.open(sim.port, false);
    let saw = |want: &'static str| move |o: &[u8]| String::from_utf8_lossy(o).contains(want);
    sol.write(Instant::now(), b"hello\r");
    let out = drv.run(&mut sol, WAIT, saw("Password: "));
    assert!(String::from_utf8_lossy(&out).contains("hello\r\n"), "echo");
    sol.write(Instant::now(), b"pw\r");
    let out = drv.run(&mut sol, WAIT, saw("hello@simhost1:~$ "));
    assert!(!String::from_utf8_lossy(&out).contains("pw"), "no echo");
    sol.write(Instant::now(), b"flood 100\r");
    let out = drv.run(&mut sol, WAIT, |o| {
        String::from_utf8_lossy(o).contains("flood done")
    });
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| l.starts_with("flood 0"))
        .collect();
    assert_eq!(lines.len(), 100, "{text}");
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&format!("flood {:06} of 000100", i + 1)),
            "{l}"
        );
    }
    // Quiet for three keep-alive intervals: ipmi_sim answers them (Get
    // Payload Instance Info, or the activation status if it lacks that)
    // and the console stays up.
    drv.run(&mut sol, KEEPALIVE * 3 + KEEPALIVE / 2, |_| false);
    assert_eq!(sol.state(), SolState::Active, "{:?}", ended(&mut sol));
    // A client that dies leaves the payload active (ipmi_sim keeps it):
    // a plain activation is refused, a take-over clears it.
    let mut second = SolConsole::start(drv.login(), SolConfig::new(sim.port), Instant::now());
    drv.run(&mut second, WAIT, |_| false);
    assert!(matches!(ended(&mut second), Some(SolEnd::Failed(_))));
    drv.close(second);
    drop(sol);
    let mut third = drv.open(sim.port, true);
    third.deactivate(Instant::now());
    drv.run(&mut third, WAIT, |_| false);
    assert_eq!(ended(&mut third), Some(SolEnd::Closed));
    drv.close(third);
    let status = sim.ipmitool(&["raw", "0x06", "0x4a", "0x01"]);
    let st = GetPayloadActivationStatus
        .parse_response(&hex_bytes(&status))
        .unwrap();
    assert!(!st.is_active(1), "{status}");
    let typed = host.finish();
    let typed = String::from_utf8_lossy(&typed);
    assert_eq!(typed.matches("flood 100\r").count(), 1, "{typed:?}");
}

// === our console against the built-in simulator's fault knobs ===

fn sim_with(faults: ipmigw::sim::Faults) -> Sim {
    let sim = Sim::start();
    sim.bmc().set_faults(faults);
    sim
}

#[test]
fn flood_through_lossy_sol_arrives_once_and_in_order() {
    let sim = sim_with(ipmigw::sim::Faults {
        // Each loss costs a 500 ms retry interval: enough to see re-sends
        // both ways, few enough to keep the test short.
        drop_sol: 0.1,
        ..Default::default()
    });
    let drv = Driver::new(sim.bmc().addr());
    let mut sol = drv.open(sim.port(), false);
    sol.write(Instant::now(), b"flood 500\r");
    let out = drv.run(&mut sol, Duration::from_secs(120), |o| {
        String::from_utf8_lossy(o).contains("flood done")
    });
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| l.starts_with("flood 0"))
        .collect();
    let want: Vec<String> = (1..=500)
        .map(|i| format!("flood {i:06} of 000500 abcdefghijklmnopqrstuvwxyz"))
        .collect();
    assert_eq!(lines, want, "every line once, in order");
    assert!(sol.link_stats().duplicates > 0 || sol.link_stats().retransmits > 0);
    let typed = sim.bmc().host_input();
    assert_eq!(
        String::from_utf8_lossy(&typed)
            .matches("flood 500\r")
            .count(),
        1
    );
    sol.deactivate(Instant::now());
    drv.run(&mut sol, WAIT, |_| false);
    assert_eq!(ended(&mut sol), Some(SolEnd::Closed));
    assert!(!sim.bmc().sol_active());
}

#[test]
fn the_simulator_deactivating_or_going_silent_ends_our_console() {
    let sim = sim_with(ipmigw::sim::Faults::default());
    let drv = Driver::new(sim.bmc().addr());
    let mut sol = drv.open(sim.port(), false);
    sim.bmc().sol_deactivate();
    drv.run(&mut sol, WAIT, |_| false);
    assert_eq!(ended(&mut sol), Some(SolEnd::DeactivatedByBmc));
    drv.close(sol);
    // Activation works, then nothing: the typed byte is never acknowledged.
    sim.bmc().set_faults(ipmigw::sim::Faults {
        sol_silent: true,
        ..Default::default()
    });
    let mut cfg = SolConfig::new(sim.port());
    cfg.retry = Some(ipmigw::ipmi::cmd::sol::SolRetry {
        count: 2,
        interval: Duration::from_millis(200),
    });
    let mut sol = SolConsole::start(drv.login(), cfg, Instant::now());
    drv.wait_active(&mut sol);
    sol.write(Instant::now(), b"\r");
    drv.run(&mut sol, WAIT, |_| false);
    assert!(matches!(
        ended(&mut sol),
        Some(SolEnd::Failed(
            ipmigw::ipmi::session::console::sol::SolError::Unacknowledged { chars: 1 }
        ))
    ));
}
