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
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{Attachment, Out};
use crate::gateway::api::ConnInfo;

/// Largest frame a client may send (keystrokes and control are small).
const MAX_FRAME: usize = 64 * 1024;
/// How often revocation is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest a send to one client may take before it is dropped.
const SEND_WITHIN: Duration = Duration::from_secs(10);

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
    let io = hyper_util::rt::TokioIo::new(upgraded);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(limits())).await;
    let reason = session(&mut ws, &mut a, rights, &conn, idle, max).await;
    if let Some(reason) = reason {
        a.console
            .audit(json!({"action": "limit", "user": a.user, "reason": reason}));
        let _ = send(&mut ws, control(json!({"type": "ended", "reason": reason}))).await;
    }
    let close = ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }));
    let _ = tokio::time::timeout(SEND_WITHIN, close).await;
}

/// The frame limits of every console socket.
fn limits() -> WebSocketConfig {
    WebSocketConfig {
        max_message_size: Some(MAX_FRAME),
        max_frame_size: Some(MAX_FRAME),
        ..Default::default()
    }
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
    if let Some(r) = send(ws, control(a.console.status(a.id))).await {
        return r;
    }
    if !a.scrollback.is_empty() {
        let back = std::mem::take(&mut a.scrollback);
        let msg = json!({"type": "scrollback", "bytes": back.len()});
        if let Some(r) = send(ws, control(msg)).await {
            return r;
        }
        if let Some(r) = send(ws, Message::Binary(back)).await {
            return r;
        }
    }
    let end = Instant::now() + max;
    let mut last_input = Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            out = a.rx.recv() => match out {
                Ok(out) => if let Some(r) = forward(ws, out).await { return r },
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
async fn forward(ws: &mut Ws, out: Out) -> Option<Option<String>> {
    let msg = match out {
        Out::Bytes(b) => Message::Binary(b.to_vec()),
        Out::Control(v) | Out::Seat(v) => control(v),
        Out::Ended(reason) => return Some(Some(reason)),
    };
    send(ws, msg).await
}

/// Sends within [`SEND_WITHIN`]: a client that stops reading must not hold
/// its seat (or its task) forever. `Some` to stop.
async fn send(ws: &mut Ws, msg: Message) -> Option<Option<String>> {
    match tokio::time::timeout(SEND_WITHIN, ws.send(msg)).await {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(None),
        Err(_) => Some(Some("client too slow".into())),
    }
}

/// One client frame, decoded (console-protocol.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// Keystrokes (a binary frame).
    Keys(Vec<u8>),
    /// `{"type":"break"}`.
    Break,
    /// `{"type":"status"}`.
    Status,
    /// A JSON object of another type.
    Unknown,
    /// A text frame that is not one JSON object.
    Malformed,
    /// The client closes.
    Close,
    /// Ping, pong and the like: nothing to do.
    Ignored,
}

/// Decodes one frame; never fails (whatever the client sends has an
/// answer).
pub fn decode(m: Message) -> ClientMsg {
    match m {
        Message::Binary(bytes) => ClientMsg::Keys(bytes),
        Message::Text(t) => match serde_json::from_str::<Value>(&t) {
            Ok(v) if v["type"] == "status" => ClientMsg::Status,
            Ok(v) if v["type"] == "break" => ClientMsg::Break,
            Ok(v) if v.is_object() => ClientMsg::Unknown,
            _ => ClientMsg::Malformed,
        },
        Message::Close(_) => ClientMsg::Close,
        _ => ClientMsg::Ignored,
    }
}

/// Decodes a client's byte stream as the gateway does (server role, the
/// same frame limits): the messages up to the first error. For the fuzz
/// target; bounded by the input.
pub fn decode_stream(bytes: &[u8]) -> Vec<ClientMsg> {
    let io = MemIo {
        input: std::io::Cursor::new(bytes),
    };
    let mut ws = tokio_tungstenite::tungstenite::WebSocket::from_raw_socket(
        io,
        Role::Server,
        Some(limits()),
    );
    let mut out = Vec::new();
    // Each message consumes at least two bytes of input.
    for _ in 0..=bytes.len() / 2 {
        match ws.read() {
            Ok(m) => out.push(decode(m)),
            Err(_) => break,
        }
    }
    out
}

/// Reads from a slice; writes go nowhere.
struct MemIo<'a> {
    input: std::io::Cursor<&'a [u8]>,
}

impl std::io::Read for MemIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl std::io::Write for MemIo<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Handles one client frame; `Some` to stop.
async fn inbound(
    ws: &mut Ws,
    a: &mut Attachment,
    rights: Rights,
    m: Message,
) -> Option<Option<String>> {
    let err = |code: &str, message: &str| {
        control(json!({"type": "error", "code": code, "message": message}))
    };
    let reply = match decode(m) {
        ClientMsg::Keys(bytes) => keys(a, &bytes).map(|(c, m)| err(c, m)),
        ClientMsg::Status => Some(control(a.console.status(a.id))),
        ClientMsg::Break => {
            if !rights.brk {
                Some(err("denied", "console.break is not granted"))
            } else if a.console.serial_break(a.id, &a.user) {
                None
            } else {
                Some(err("not_writer", "only the writer may send a break"))
            }
        }
        ClientMsg::Unknown => Some(err("unknown_type", "unknown control message")),
        ClientMsg::Malformed => Some(err("malformed", "a text frame must be one JSON object")),
        ClientMsg::Close => return Some(None),
        ClientMsg::Ignored => None,
    };
    match reply {
        Some(msg) => send(ws, msg).await,
        None => None,
    }
}

/// Keystrokes from the client: to the BMC when it writes; otherwise the
/// error to answer (a refusal is audited, the first at once).
fn keys(a: &mut Attachment, bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if a.console.keys(a.id, bytes) {
        return None;
    }
    if a.console.is_writer(a.id) {
        return Some(("busy", "keystrokes dropped: the BMC side is not keeping up"));
    }
    a.refused_inputs += 1;
    if a.refused_inputs == 1 {
        a.console
            .audit(json!({"action": "input_refused", "user": a.user,
            "reason": "no writer seat"}));
    }
    Some(("not_writer", "you do not hold the writer seat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame (FIN set, masked as clients must).
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        f
    }

    #[test]
    fn client_frames_decode_to_their_messages() {
        let mut s = frame(2, b"ls\r");
        s.extend(frame(1, br#"{"type":"status"}"#));
        s.extend(frame(1, br#"{"type":"break"}"#));
        s.extend(frame(1, br#"{"type":"reboot"}"#));
        s.extend(frame(1, b"not json"));
        s.extend(frame(1, b"[1]"));
        assert_eq!(
            decode_stream(&s),
            [
                ClientMsg::Keys(b"ls\r".to_vec()),
                ClientMsg::Status,
                ClientMsg::Break,
                ClientMsg::Unknown,
                ClientMsg::Malformed,
                ClientMsg::Malformed,
            ]
        );
    }

    /// What breaks the framing ends the stream there: an unmasked client
    /// frame, reserved bits, a frame over the limit; a message before it
    /// still counts.
    #[test]
    fn broken_or_oversized_frames_end_the_stream() {
        let good = frame(2, b"a");
        let mut unmasked = good.clone();
        unmasked.extend([0x82, 0x01, b'b']);
        assert_eq!(decode_stream(&unmasked), [ClientMsg::Keys(b"a".to_vec())]);
        let mut reserved = frame(2, b"x");
        reserved[0] |= 0x40;
        assert!(decode_stream(&reserved).is_empty());
        let big = frame(2, &vec![0u8; MAX_FRAME + 1]);
        assert!(decode_stream(&big).is_empty());
        assert!(decode_stream(&[0xFF; 3]).is_empty());
        assert!(decode_stream(&[]).is_empty());
    }
}
