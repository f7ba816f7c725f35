//! The WebSocket side of one attachment (console-protocol.md): binary
//! frames carry bytes, text frames one JSON control message each.
//!
//! Never does: pass a viewer's bytes on, let a malformed frame or a slow
//! client affect another attachment, or outlive its limits (idle, maximum
//! duration) or the certificate's revocation.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{Attachment, Out};
use crate::gateway::api::ConnInfo;

/// Largest frame a client may send (keystrokes and control are small).
const MAX_FRAME: usize = 64 * 1024;
/// How often revocation is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the session may do beyond reading.
#[derive(Debug, Clone, Copy)]
pub struct Rights {
    /// `console.break`.
    pub brk: bool,
}

/// Serves one upgraded connection until either side ends it.
pub async fn serve(
    upgrade: hyper::upgrade::OnUpgrade,
    mut a: Attachment,
    rights: Rights,
    conn: Arc<ConnInfo>,
    idle: Duration,
    max: Duration,
) {
    let Ok(upgraded) = upgrade.await else {
        return;
    };
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        max_message_size: Some(MAX_FRAME),
        max_frame_size: Some(MAX_FRAME),
        ..Default::default()
    };
    let io = hyper_util::rt::TokioIo::new(upgraded);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(cfg)).await;
    let reason = session(&mut ws, &mut a, rights, &conn, idle, max).await;
    if let Some(reason) = reason {
        a.console
            .audit(json!({"action": "limit", "user": a.user, "reason": reason}));
        let _ = ws
            .send(control(json!({"type": "ended", "reason": reason})))
            .await;
    }
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

fn control(v: Value) -> Message {
    Message::Text(v.to_string())
}

type Ws = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// The attachment's loop; `Some(reason)` when the server ends it.
async fn session(
    ws: &mut Ws,
    a: &mut Attachment,
    rights: Rights,
    conn: &ConnInfo,
    idle: Duration,
    max: Duration,
) -> Option<String> {
    if ws.send(control(a.console.status(a.id))).await.is_err() {
        return None;
    }
    if !a.scrollback.is_empty() {
        let back = std::mem::take(&mut a.scrollback);
        let msg = json!({"type": "scrollback", "bytes": back.len()});
        if ws.send(control(msg)).await.is_err() || ws.send(Message::Binary(back)).await.is_err() {
            return None;
        }
    }
    let end = Instant::now() + max;
    let mut last_input = Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            out = a.rx.recv() => match out {
                Ok(out) => if let Some(r) = forward(ws, a, out).await { return r },
                Err(RecvError::Lagged(_)) => return Some("client too slow".into()),
                Err(RecvError::Closed) => return Some("console ended".into()),
            },
            msg = ws.next() => match msg {
                Some(Ok(m)) => {
                    if matches!(m, Message::Binary(_) | Message::Text(_)) {
                        last_input = Instant::now();
                    }
                    if let Some(r) = inbound(ws, a, rights, m).await { return r }
                }
                // A dying or misbehaving client ends only its own session.
                _ => return None,
            },
            _ = check.tick() => {
                if conn.revoked.load(std::sync::atomic::Ordering::Relaxed) {
                    return Some("revoked certificate".into());
                }
                if Instant::now() >= end {
                    return Some("max duration".into());
                }
                if last_input.elapsed() >= idle {
                    return Some("idle timeout".into());
                }
            }
        }
    }
}

/// Sends one console message to the client; `Some` to stop (with the
/// server's reason, or `None` when the client is gone).
async fn forward(ws: &mut Ws, a: &Attachment, out: Out) -> Option<Option<String>> {
    let msg = match out {
        Out::Bytes(b) => Message::Binary(b.to_vec()),
        Out::Control(v) | Out::Seat(v) => control(v),
        Out::Ended(reason) => return Some(Some(reason)),
    };
    let _ = a;
    ws.send(msg).await.err().map(|_| None)
}

/// Handles one client frame; `Some` to stop.
async fn inbound(
    ws: &mut Ws,
    a: &Attachment,
    rights: Rights,
    m: Message,
) -> Option<Option<String>> {
    let err = |code: &str, message: &str| {
        control(json!({"type": "error", "code": code, "message": message}))
    };
    let reply = match m {
        Message::Binary(bytes) => {
            if a.console.keys(a.id, &bytes) {
                None
            } else if a.console.is_writer(a.id) {
                Some(err(
                    "busy",
                    "keystrokes dropped: the BMC side is not keeping up",
                ))
            } else {
                Some(err("not_writer", "you do not hold the writer seat"))
            }
        }
        Message::Text(t) => match serde_json::from_str::<Value>(&t) {
            Ok(v) if v["type"] == "status" => Some(control(a.console.status(a.id))),
            Ok(v) if v["type"] == "break" => {
                if !rights.brk {
                    Some(err("denied", "console.break is not granted"))
                } else if a.console.serial_break(a.id, &a.user) {
                    None
                } else {
                    Some(err("not_writer", "only the writer may send a break"))
                }
            }
            Ok(_) => Some(err("unknown_type", "unknown control message")),
            Err(_) => Some(err("malformed", "a text frame must be one JSON object")),
        },
        Message::Close(_) => return Some(None),
        _ => None,
    };
    match reply {
        Some(msg) => ws.send(msg).await.err().map(|_| None),
        None => None,
    }
}
