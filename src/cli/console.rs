//! `ipmigw console NODE`: the gateway's console of one BMC in this
//! terminal (raw mode, ipmitool's escapes after a newline), and
//! `ipmigw console replay FILE` (see [`replay`]).
//!
//! The gateway speaks the console protocol (console-protocol.md): binary
//! WebSocket frames are bytes, text frames JSON control. Host output goes
//! to stdout untouched; everything the client itself says (who writes,
//! notices, errors) goes to stderr on a line of its own, so that a screen
//! is not corrupted and a script can keep the two apart.
//!
//! Never does: send a keystroke while attached read-only, leave the
//! terminal raw (see [`super::terminal`]), or print a credential.

mod replay;

use std::io::Write;

use clap::{Args, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, ClientOpts, ConsoleSocket};
use super::terminal::RawTerminal;
use super::{CliError, EXIT_BMC, EXIT_CONNECTION, EXIT_DENIED};

/// `console NODE [--read-only] [--force]`, or `console replay FILE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ConsoleArgs {
    #[command(subcommand)]
    sub: Option<ConsoleSub>,
    /// The BMC whose serial console to attach to.
    #[arg(value_name = "NODE", required = true)]
    node: Option<String>,
    /// Watch only: keystrokes are not sent (needs console.read).
    #[arg(long, conflicts_with = "force")]
    read_only: bool,
    /// Take the writer seat from whoever holds it (needs console.force).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    gateway: ClientOpts,
}

#[derive(Debug, Subcommand)]
enum ConsoleSub {
    /// Play a console recording (asciicast v2) in this terminal.
    Replay(replay::ReplayArgs),
}

/// Runs `console`.
pub async fn run(before: &super::client::Before, a: ConsoleArgs) -> Result<(), CliError> {
    if let Some(ConsoleSub::Replay(r)) = a.sub {
        return replay::run(r).await;
    }
    let node = a.node.unwrap_or_default();
    let mode = if a.read_only { "read" } else { "write" };
    let force = if a.force { "&force=1" } else { "" };
    let path = format!(
        "/v1/bmcs/{}/console?mode={mode}{force}",
        client::encode(&node)
    );
    // Refusals are printed before the terminal turns raw.
    let ws = client::console_socket(&before.apply(a.gateway), &path).await?;
    let term = RawTerminal::enter()
        .map_err(|e| CliError::usage(format!("cannot set the terminal to raw mode: {e}")))?;
    let keys = stdin_reader();
    let mut s = Session {
        node,
        read_only: a.read_only,
        you: None,
        told_read_only: false,
        raw: term.is_raw(),
    };
    let outcome = s.run(ws, keys).await;
    drop(term);
    outcome
}

/// Keystrokes from stdin, read on a thread of its own (a blocking read
/// that the runtime would otherwise wait for at exit); `None` at EOF.
fn stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        loop {
            match std::io::Read::read(&mut std::io::stdin().lock(), &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// What the escape reader makes of keystrokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Bytes for the console.
    Send(Vec<u8>),
    /// `~B`: a serial break.
    Break,
    /// `~?`: list the escapes.
    Help,
    /// `~.`: leave.
    Quit,
}

/// ipmitool's escapes: `~` right after a newline (or at the start) begins
/// one; `~.` quit, `~B` break, `~?` help, `~~` a literal `~`; `~` before
/// anything else sends both.
#[derive(Debug)]
pub(crate) struct Escapes {
    after_newline: bool,
    pending: bool,
}

const ESCAPE: u8 = b'~';

impl Escapes {
    pub(crate) fn new() -> Escapes {
        Escapes {
            after_newline: true,
            pending: false,
        }
    }

    /// The actions for `input`, in order.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        let mut send = Vec::new();
        for &b in input {
            if self.pending {
                self.pending = false;
                let action = match b {
                    b'.' => Some(Action::Quit),
                    b'B' => Some(Action::Break),
                    b'?' => Some(Action::Help),
                    ESCAPE => {
                        send.push(ESCAPE);
                        None
                    }
                    other => {
                        send.extend([ESCAPE, other]);
                        None
                    }
                };
                if let Some(action) = action {
                    if !send.is_empty() {
                        out.push(Action::Send(std::mem::take(&mut send)));
                    }
                    let quit = action == Action::Quit;
                    out.push(action);
                    if quit {
                        return out;
                    }
                    // As in ssh: a command escape leaves the line start as
                    // it was, so `~?` can be followed by `~.`.
                    continue;
                }
            } else if b == ESCAPE && self.after_newline {
                self.pending = true;
                continue;
            } else {
                send.push(b);
            }
            self.after_newline = b == b'\r' || b == b'\n';
        }
        if !send.is_empty() {
            out.push(Action::Send(send));
        }
        out
    }
}

const HELP: &str = "Supported escape sequences:\n  ~.  - terminate connection\n  ~B  - send break\n  ~?  - this message\n  ~~  - send the escape character by typing it twice\n  (Note that escapes are only recognized immediately after newline.)";

/// One attachment's state.
struct Session {
    node: String,
    read_only: bool,
    /// Our user name, as the gateway's status names it.
    you: Option<String>,
    told_read_only: bool,
    raw: bool,
}

/// How the session loop goes on.
enum Step {
    Go,
    Done(Result<(), CliError>),
}

impl Session {
    async fn run(
        &mut self,
        mut ws: ConsoleSocket,
        mut keys: mpsc::Receiver<Vec<u8>>,
    ) -> Result<(), CliError> {
        let mut signals = SignalSet::new();
        let mut escapes = Escapes::new();
        let mut stdin_open = true;
        loop {
            let step = tokio::select! {
                m = ws.next() => self.inbound(m),
                k = keys.recv(), if stdin_open => match k {
                    Some(bytes) => self.keys(&mut ws, &mut escapes, &bytes).await,
                    // Input ended (a pipe): leave as with ~.
                    None => {
                        stdin_open = false;
                        Step::Done(Ok(()))
                    }
                },
                name = signals.next() => Step::Done(Err(CliError {
                    code: EXIT_CONNECTION,
                    message: format!("console {}: stopped by {name}", self.node),
                })),
            };
            if let Step::Done(r) = step {
                let _ = ws.close(None).await;
                return r;
            }
        }
    }

    /// Keystrokes through the escape reader.
    async fn keys(&mut self, ws: &mut ConsoleSocket, esc: &mut Escapes, bytes: &[u8]) -> Step {
        for action in esc.feed(bytes) {
            let sent = match action {
                Action::Quit => return Step::Done(Ok(())),
                Action::Help => {
                    self.say(HELP);
                    Ok(())
                }
                Action::Send(_) | Action::Break if self.read_only => {
                    if !self.told_read_only {
                        self.told_read_only = true;
                        self.say("read-only: keystrokes are not sent (~. leaves)");
                    }
                    Ok(())
                }
                Action::Send(b) => ws.send(Message::Binary(b)).await,
                Action::Break => {
                    ws.send(Message::Text(json!({"type": "break"}).to_string()))
                        .await
                }
            };
            if let Err(e) = sent {
                return Step::Done(Err(lost(&self.node, &e.to_string())));
            }
        }
        Step::Go
    }

    /// One message from the gateway.
    fn inbound(
        &mut self,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Step {
        match m {
            Some(Ok(Message::Binary(b))) => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&b).and_then(|()| out.flush()).is_err() {
                    // A closed stdout: nobody watches any more.
                    return Step::Done(Ok(()));
                }
                Step::Go
            }
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(&t) {
                Ok(v) => self.control(&v),
                Err(_) => Step::Go,
            },
            Some(Ok(Message::Close(_))) | None => {
                Step::Done(Err(lost(&self.node, "the gateway closed the console")))
            }
            Some(Ok(_)) => Step::Go,
            Some(Err(e)) => Step::Done(Err(lost(&self.node, &e.to_string()))),
        }
    }

    /// One control message.
    fn control(&mut self, v: &Value) -> Step {
        let text = |k: &str| v[k].as_str().map(str::to_string);
        match v["type"].as_str().unwrap_or("") {
            "status" => self.status(v),
            "writer" => self.writer_changed(text("writer"), text("previous"), v["forced"] == true),
            "notice" => self.say(&text("text").unwrap_or_default()),
            "error" => self.say(&text("message").unwrap_or_default()),
            "ended" => {
                let reason = text("reason").unwrap_or_else(|| "ended".into());
                return Step::Done(Err(ended(&self.node, &reason)));
            }
            _ => {}
        }
        Step::Go
    }

    fn status(&mut self, v: &Value) {
        if self.you.is_none() {
            self.you = v["you"].as_str().map(str::to_string);
            let writer = v["writer"].as_str().unwrap_or("nobody");
            let line = if v["mode"] == "write" {
                format!(
                    "console {}: you hold the writer seat; ~? for help, ~. to leave",
                    self.node
                )
            } else {
                format!(
                    "console {}: read-only; writer: {writer}; ~. to leave",
                    self.node
                )
            };
            self.say(&line);
        }
    }

    fn writer_changed(&mut self, writer: Option<String>, previous: Option<String>, forced: bool) {
        let me = self.you.clone();
        match (&writer, &previous) {
            (Some(w), Some(p)) if forced && me.as_ref() == Some(p) && w != p => {
                self.read_only = true;
                self.say(&format!("{w} took the writer seat; you are read-only now"));
            }
            (Some(w), _) if me.as_ref() != Some(w) => self.say(&format!("writer: {w}")),
            (None, Some(p)) => self.say(&format!("{p} left the writer seat")),
            _ => {}
        }
    }

    /// A line of our own on stderr: on a raw terminal it starts on a new
    /// line and returns the carriage, so that the screen stays readable.
    fn say(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let body = format!("[ipmigw: {text}]");
        let _ = if self.raw {
            write!(err, "\r\n{}\r\n", body.replace('\n', "\r\n"))
        } else {
            writeln!(err, "{body}")
        };
        let _ = err.flush();
    }
}

fn lost(node: &str, why: &str) -> CliError {
    CliError {
        code: EXIT_CONNECTION,
        message: format!("console {node}: {why}"),
    }
}

/// The exit for the gateway's `ended` reason: limits and revocation as a
/// refusal (3), the gateway going away as a connection error (2), the BMC
/// side as a BMC error (4).
fn ended(node: &str, reason: &str) -> CliError {
    let code = match reason {
        "idle timeout" | "max duration" | "revoked certificate" => EXIT_DENIED,
        "gateway shutdown" | "client too slow" => EXIT_CONNECTION,
        _ => EXIT_BMC,
    };
    CliError {
        code,
        message: format!("console {node} ended: {reason}"),
    }
}

/// SIGTERM and SIGHUP end the console (Ctrl-C is a keystroke in raw mode).
struct SignalSet {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl SignalSet {
    fn new() -> SignalSet {
        use tokio::signal::unix::{signal, SignalKind};
        SignalSet {
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    async fn next(&mut self) -> &'static str {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => "SIGTERM",
            _ = recv(&mut self.hup) => "SIGHUP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(s: &str) -> Action {
        Action::Send(s.as_bytes().to_vec())
    }

    #[test]
    fn escapes_are_recognised_only_after_a_newline() {
        let mut e = Escapes::new();
        assert_eq!(e.feed(b"~."), vec![Action::Quit], "at the start");
        let mut e = Escapes::new();
        assert_eq!(e.feed(b"ls ~.\r"), vec![send("ls ~.\r")]);
        assert_eq!(e.feed(b"~."), vec![Action::Quit]);
        let mut e = Escapes::new();
        assert_eq!(e.feed(b"a\n~B"), vec![send("a\n"), Action::Break]);
        assert_eq!(
            e.feed(b"~?~."),
            vec![Action::Help, Action::Quit],
            "still at a line start"
        );
        let mut e = Escapes::new();
        assert_eq!(e.feed(b"x~~~."), vec![send("x~~~.")], "not after a newline");
    }

    #[test]
    fn escapes_split_across_reads_still_count() {
        let mut e = Escapes::new();
        assert_eq!(e.feed(b"x\r"), vec![send("x\r")]);
        assert_eq!(e.feed(b"~"), vec![]);
        assert_eq!(e.feed(b"?"), vec![Action::Help]);
        assert_eq!(e.feed(b"\r~"), vec![send("\r")]);
        assert_eq!(e.feed(b"."), vec![Action::Quit]);
    }

    #[test]
    fn a_doubled_tilde_sends_one_and_others_send_both() {
        let mut e = Escapes::new();
        assert_eq!(e.feed(b"~~"), vec![send("~")]);
        assert_eq!(e.feed(b"~."), vec![send("~.")], "no longer after a newline");
        let mut e = Escapes::new();
        assert_eq!(e.feed(b"~x\r~\r"), vec![send("~x\r~\r")]);
        assert_eq!(e.feed(b"~."), vec![Action::Quit], "~\\r ends a line too");
    }

    #[test]
    fn nothing_after_quit_is_sent() {
        let mut e = Escapes::new();
        assert_eq!(
            e.feed(b"ab\r~.rm -rf /\r"),
            vec![send("ab\r"), Action::Quit]
        );
    }

    #[test]
    fn end_reasons_map_to_the_exit_codes_of_other_verbs() {
        assert_eq!(ended("n", "idle timeout").code, EXIT_DENIED);
        assert_eq!(ended("n", "revoked certificate").code, EXIT_DENIED);
        assert_eq!(ended("n", "gateway shutdown").code, EXIT_CONNECTION);
        assert_eq!(ended("n", "BMC gone").code, EXIT_BMC);
    }
}
