//! The BMC side of one console: a dedicated RMCP+ session, logged in with
//! credentials only the gateway holds, and the sans-IO [`SolConsole`]
//! driven over a UDP socket on its own timers. A payload the BMC
//! deactivates, a BMC that goes silent or restarts, is audited, told to the
//! attached users, and the console is reopened.
//!
//! Never does: follow the BMC to another address, or retry without a
//! bound (reopens are counted and spaced).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::{Console, ConsoleSection, Input};
use crate::gateway::settings::BmcSpec;
use crate::ipmi::session::console::sol::{SolConfig, SolConsole, SolEnd, SolEvent, SolState};
use crate::ipmi::session::console::{ActiveSession, ConsoleConfig, Handshake};

/// Reopen attempts in a row before the console is given up.
const MAX_REOPENS: u32 = 10;
/// Wait between reopen attempts.
const REOPEN_WAIT: Duration = Duration::from_millis(500);
/// How often the recording's pending chunk is written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Why one SOL run stopped.
enum Stopped {
    /// Nobody is attached (or the gateway stops).
    Detached,
    /// The BMC side ended; reopen. Whether the payload had been active
    /// (the failure count starts over).
    Bmc(String, bool),
}

/// Runs the console until nobody is attached or the BMC stays gone.
pub async fn run(
    console: Arc<Console>,
    spec: BmcSpec,
    cfg: ConsoleSection,
    mut input: mpsc::Receiver<Input>,
) {
    let mut failures = 0;
    let mut opened_before = false;
    loop {
        match run_once(&console, &spec, &cfg, &mut input, opened_before).await {
            Ok(Stopped::Detached) => break,
            Ok(Stopped::Bmc(why, activated)) => {
                opened_before = true;
                failures = if activated { 0 } else { failures + 1 };
                console.audit(json!({"action": "bmc_ended", "reason": why}));
                console.set_phase("reopening", Some(&format!("{why}; reopening")));
            }
            Err(why) => {
                failures += 1;
                tracing::warn!(bmc = %console.bmc, error = %why, "console open failed");
                if failures >= MAX_REOPENS {
                    console.audit(json!({"action": "ended", "reason": why}));
                    console.end(&format!("BMC gone: {why}"));
                    return;
                }
            }
        }
        if failures >= MAX_REOPENS {
            console.audit(json!({"action": "ended", "reason": "BMC gone"}));
            console.end("BMC gone");
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(REOPEN_WAIT) => {}
            i = input.recv() => if matches!(i, None | Some(Input::Stop)) { break },
        }
    }
    console.end("detached");
}

/// One session and one SOL activation.
async fn run_once(
    console: &Console,
    spec: &BmcSpec,
    cfg: &ConsoleSection,
    input: &mut mpsc::Receiver<Input>,
    reopen: bool,
) -> Result<Stopped, String> {
    let bind = if spec.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(spec.addr).await.map_err(|e| e.to_string())?;
    let session = login(&socket, spec).await?;
    let mut sc = SolConfig::new(spec.addr.port());
    sc.keepalive = Duration::from_millis(cfg.keepalive_ms.max(100));
    sc.request_timeout = spec.timeout;
    let mut sol = SolConsole::start(session, sc, std::time::Instant::now());
    let stopped = pump(console, &socket, &mut sol, input, reopen).await;
    let mut session = sol.into_session();
    let _ = socket.send(&session.close_session_request()).await;
    stopped
}

/// Logs in with the gateway's credentials for the BMC.
async fn login(socket: &UdpSocket, spec: &BmcSpec) -> Result<Box<ActiveSession>, String> {
    let mut c: ConsoleConfig = spec.console();
    c.step_timeout = spec.timeout;
    c.retries = spec.retries;
    let mut hs = Handshake::start(c, Box::new(rand::rngs::OsRng), std::time::Instant::now())
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(d) = hs.poll_transmit() {
            let _ = socket.send(&d).await;
        }
        if let Some(outcome) = hs.poll_outcome() {
            return outcome.map_err(|f| f.error.to_string());
        }
        let at = hs
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = socket.recv(&mut buf) => if let Ok(n) = r {
                let _ = hs.handle_datagram(std::time::Instant::now(), &buf[..n]);
            },
            _ = sleep_until(at) => hs.handle_timeout(std::time::Instant::now()),
        }
    }
}

/// Moves datagrams, keystrokes and output until the SOL engine ends.
async fn pump(
    console: &Console,
    socket: &UdpSocket,
    sol: &mut SolConsole,
    input: &mut mpsc::Receiver<Input>,
    reopen: bool,
) -> Result<Stopped, String> {
    let mut buf = vec![0u8; 2048];
    let mut keys: VecDeque<u8> = VecDeque::new();
    let mut stopping = false;
    let mut activated = false;
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        // Keystrokes first, so that their packet leaves in this turn and
        // not at the engine's next timer (up to the retry interval later).
        feed(sol, &mut keys);
        while let Some(d) = sol.poll_transmit() {
            let _ = socket.send(&d).await;
        }
        if let Some(end) = events(console, sol, reopen, &mut activated) {
            return match end {
                SolEnd::Closed => Ok(Stopped::Detached),
                _ if stopping => Ok(Stopped::Detached),
                SolEnd::Failed(e) if !activated => Err(e.to_string()),
                other => Ok(Stopped::Bmc(describe(&other), activated)),
            };
        }
        let out = sol.read();
        if !out.is_empty() {
            console.output(&out);
        }
        let at = sol
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let wants_input = !stopping && keys.len() < 4096;
        tokio::select! {
            r = socket.recv(&mut buf) => if let Ok(n) = r {
                let _ = sol.handle_datagram(std::time::Instant::now(), &buf[..n]);
            },
            i = input.recv(), if wants_input => match i {
                Some(Input::Keys(k)) => keys.extend(k),
                Some(Input::Break) => sol.send_break(std::time::Instant::now()),
                Some(Input::Stop) | None => {
                    stopping = true;
                    if sol.state() == SolState::Active {
                        sol.deactivate(std::time::Instant::now());
                    } else {
                        return Ok(Stopped::Detached);
                    }
                }
            },
            _ = sleep_until(at) => sol.handle_timeout(std::time::Instant::now()),
            _ = flush.tick() => console.flush_recording(),
        }
    }
}

/// Keystrokes into the engine as far as it has room.
fn feed(sol: &mut SolConsole, keys: &mut VecDeque<u8>) {
    if keys.is_empty() || sol.state() != SolState::Active {
        return;
    }
    let (a, _) = keys.as_slices();
    let n = sol.write(std::time::Instant::now(), a);
    keys.drain(..n);
}

/// Handles the engine's events; the end, if it ended.
fn events(
    console: &Console,
    sol: &mut SolConsole,
    reopen: bool,
    activated: &mut bool,
) -> Option<SolEnd> {
    while let Some(ev) = sol.poll_event() {
        match ev {
            SolEvent::Activated(_) => {
                *activated = true;
                let notice = reopen.then_some("console reopened");
                console.set_phase("active", notice);
                console.audit(json!({"action": "activated", "reopen": reopen}));
            }
            SolEvent::TookOver => {
                console.audit(json!({"action": "took_over_stale_payload"}));
            }
            SolEvent::Status(_) => {}
            SolEvent::Ended(end) => return Some(end),
        }
    }
    None
}

fn describe(end: &SolEnd) -> String {
    match end {
        SolEnd::Closed => "closed".into(),
        SolEnd::DeactivatedByBmc => "payload deactivated by the BMC".into(),
        SolEnd::Inactive => "payload no longer active on the BMC (reset?)".into(),
        SolEnd::TakenElsewhere { session } => {
            format!("console taken directly on the BMC (session {session:#010x})")
        }
        SolEnd::Failed(e) => format!("BMC silent or failing: {e}"),
    }
}
