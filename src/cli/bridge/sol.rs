//! Serial over LAN through the bridge: the local endpoint holds the SOL
//! payload toward the tool (ipmitool's `sol activate`), and the bytes go
//! to and from the gateway's console of the BMC over one WebSocket,
//! attached as the writer with the bridge user's certificate, so that the
//! gateway's policy, seat rules, recording and audit apply.
//!
//! Activation is decided here ([`SolSettings::owner_decides`]): the
//! console is attached first, and a refusal becomes the completion code a
//! BMC would give. The Activate answer names the bridge's own port.
//!
//! Never does: keep the console attached once the local payload is gone
//! (deactivated, session closed or expired), so that the gateway's last
//! detach deactivates the payload on the BMC; or buffer without bound
//! (the gateway's output waits in the socket while the tool is behind).

use std::collections::VecDeque;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::client::ConsoleSocket;
use crate::ipmi::session::bmc::{Endpoint, SolSettings};

/// Host output held for the local payload, at most, before the gateway's
/// socket is left unread.
const MAX_PENDING: usize = 64 * 1024;

/// Completion codes of a refused activation.
const CC_ALREADY_ACTIVE: u8 = 0x80;
const CC_INSUFFICIENT_PRIVILEGE: u8 = 0xD4;
const CC_NODE_BUSY: u8 = 0xC0;
const CC_UNSPECIFIED: u8 = 0xFF;

/// SOL settings of a local BMC on `port`: the owner decides activations.
pub(super) fn settings(port: u16) -> SolSettings {
    let mut s = SolSettings::new(port);
    s.owner_decides = true;
    s
}

/// The completion code for an activation the gateway refused with HTTP
/// `status` (`None`: no answer).
pub(super) fn refusal_cc(status: Option<u16>) -> u8 {
    match status {
        // Someone else holds the writer seat: as a payload active elsewhere.
        Some(409) => CC_ALREADY_ACTIVE,
        Some(403 | 404) => CC_INSUFFICIENT_PRIVILEGE,
        Some(429 | 503) => CC_NODE_BUSY,
        _ => CC_UNSPECIFIED,
    }
}

/// The console leg of an active local payload.
pub(super) struct Leg {
    ws: ConsoleSocket,
    /// Host output from the gateway the endpoint has not taken yet.
    pending: VecDeque<u8>,
    /// Our user name at the gateway (from its status message).
    you: Option<String>,
}

/// What a message from the gateway means for the local payload.
pub(super) enum Heard {
    /// Go on.
    Go,
    /// The console is over for us: deactivate the local payload.
    End(String),
}

impl Leg {
    pub(super) fn new(ws: ConsoleSocket) -> Leg {
        Leg {
            ws,
            pending: VecDeque::new(),
            you: None,
        }
    }

    /// The next message, while there is room for more output.
    pub(super) async fn next(&mut self) -> Option<Result<Message, String>> {
        if self.pending.len() >= MAX_PENDING {
            return std::future::pending().await;
        }
        self.ws.next().await.map(|r| r.map_err(|e| e.to_string()))
    }

    /// Takes one message from the gateway.
    pub(super) fn heard(&mut self, m: Option<Result<Message, String>>) -> Heard {
        match m {
            Some(Ok(Message::Binary(b))) => {
                self.pending.extend(b);
                Heard::Go
            }
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                self.control(&v)
            }
            Some(Ok(Message::Close(_))) | None => {
                Heard::End("the gateway closed the console".into())
            }
            Some(Ok(_)) => Heard::Go,
            Some(Err(e)) => Heard::End(format!("console connection: {e}")),
        }
    }

    fn control(&mut self, v: &Value) -> Heard {
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        match v["type"].as_str().unwrap_or("") {
            "status" => {
                self.you = v["you"].as_str().map(str::to_string);
                Heard::Go
            }
            "writer" if v["forced"] == true && v["previous"].as_str() == self.you.as_deref() => {
                Heard::End(format!("{} took the writer seat", text("writer")))
            }
            "ended" => Heard::End(format!("console ended: {}", text("reason"))),
            "notice" => notice(&text("text")),
            "error" => notice(&text("message")),
            _ => Heard::Go,
        }
    }

    /// Moves held output into the endpoint as far as it has room.
    pub(super) fn feed(&mut self, endpoint: &mut Endpoint, now: Instant) {
        while !self.pending.is_empty() {
            let (a, _) = self.pending.as_slices();
            let n = endpoint.sol_write(now, a);
            if n == 0 {
                return;
            }
            self.pending.drain(..n);
        }
    }

    /// Sends keystrokes; `Err` when the gateway is gone.
    pub(super) async fn keys(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        self.ws
            .send(Message::Binary(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    /// Asks for a serial break.
    pub(super) async fn brk(&mut self) -> Result<(), String> {
        self.ws
            .send(Message::Text(json!({"type": "break"}).to_string()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Detaches from the console.
    pub(super) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A notice is told to the bridge's owner (the tool has no place for it).
fn notice(text: &str) -> Heard {
    eprintln!("ipmigw bridge: console: {text}");
    Heard::Go
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_a_bmcs_completion_codes() {
        assert_eq!(refusal_cc(Some(409)), 0x80, "seat taken: active elsewhere");
        assert_eq!(refusal_cc(Some(403)), 0xD4);
        assert_eq!(refusal_cc(Some(404)), 0xD4);
        assert_eq!(refusal_cc(Some(429)), 0xC0);
        assert_eq!(refusal_cc(Some(503)), 0xC0);
        assert_eq!(refusal_cc(None), 0xFF);
    }

    #[test]
    fn the_local_payload_is_the_bridges_to_decide_on_its_own_port() {
        let s = settings(6230);
        assert!(s.owner_decides);
        assert_eq!(s.port, 6230);
    }
}
