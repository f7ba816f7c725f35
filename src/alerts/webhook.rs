//! The webhook sink: each alert is POSTed as JSON to a configured URL with
//! an `X-Ipmigw-Signature: sha256=HEX` header, the HMAC-SHA256 of the body
//! under a shared key, so that the receiver can tell our alerts from
//! forged ones. Alerts wait in a bounded queue; a failed POST is retried
//! with exponential back-off; an alert that finds the queue full, or that
//! every attempt failed to deliver, is dropped and counted.
//!
//! Never blocks the caller (the poller), never logs the key or a body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::Alert;
use crate::secret::SecretBytes;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "x-ipmigw-signature";

/// Longest one POST may take, connection included.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how alerts are delivered.
#[derive(Debug)]
pub struct WebhookConfig {
    /// The receiver (plain HTTP: put it on loopback or behind a local
    /// TLS-terminating relay).
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
    /// The HMAC key shared with the receiver.
    pub key: SecretBytes,
    /// Alerts waiting at most; more are dropped.
    pub queue: usize,
    /// POST attempts per alert.
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each next one.
    pub backoff: Duration,
}

/// `sha256=HEX`: the HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is `body`'s signature under `key` (compared in
/// constant time).
pub fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(sig) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Counters of a sink, for `/metrics`.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Alerts delivered.
    pub delivered: AtomicU64,
    /// Alerts dropped: queue full, or every attempt failed.
    pub dropped: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
}

/// A running webhook sink.
#[derive(Debug, Clone)]
pub struct Webhook {
    tx: mpsc::Sender<Alert>,
    counts: Arc<SinkCounts>,
}

impl Webhook {
    /// Starts the delivery task (needs a Tokio runtime).
    pub fn start(cfg: WebhookConfig) -> Webhook {
        let (tx, mut rx) = mpsc::channel::<Alert>(cfg.queue.max(1));
        let counts = Arc::new(SinkCounts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            while let Some(alert) = rx.recv().await {
                let body = serde_json::to_vec(&alert).unwrap_or_default();
                let counter = match deliver(&cfg, &c, body).await {
                    true => &c.delivered,
                    false => &c.dropped,
                };
                counter.fetch_add(1, Relaxed);
            }
        });
        Webhook { tx, counts }
    }

    /// Queues an alert; drops (and counts) it when the queue is full.
    pub fn send(&self, alert: &Alert) {
        if self.tx.try_send(alert.clone()).is_err() {
            self.counts.dropped.fetch_add(1, Relaxed);
        }
    }

    /// The sink's counters.
    pub fn counts(&self) -> &SinkCounts {
        &self.counts
    }
}

/// POSTs `body` until the receiver answers 2xx or the attempts run out.
async fn deliver(cfg: &WebhookConfig, counts: &SinkCounts, body: Vec<u8>) -> bool {
    let signature = sign(cfg.key.expose(), &body);
    let body = Bytes::from(body);
    let mut wait = cfg.backoff;
    for attempt in 1..=cfg.attempts.max(1) {
        let ok = tokio::time::timeout(POST_TIMEOUT, post(cfg, &signature, body.clone()))
            .await
            .is_ok_and(|r| r.is_ok_and(|status| (200..300).contains(&status)));
        if ok {
            return true;
        }
        if attempt < cfg.attempts {
            counts.retries.fetch_add(1, Relaxed);
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    tracing::warn!(receiver = %cfg.addr, "alert webhook: every attempt failed; alert dropped");
    false
}

/// One POST; the receiver's status.
async fn post(cfg: &WebhookConfig, signature: &str, body: Bytes) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::post(cfg.path.as_str())
        .header("host", cfg.addr.to_string())
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let status = send
        .send_request(req)
        .await
        .map_err(|e| e.to_string())?
        .status()
        .as_u16();
    conn.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{fingerprint, State};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn alert(state: State) -> Alert {
        Alert {
            fingerprint: fingerprint("node01", "threshold", Some("CPU1 Temp")),
            bmc: "node01".into(),
            kind: "threshold",
            severity: "critical",
            sensor: Some("CPU1 Temp".into()),
            value: Some(97.0),
            threshold: Some(95.0),
            state,
            first_seen: 1,
            resolved_at: None,
        }
    }

    /// A receiver that answers `statuses` in turn (then 200) and hands
    /// each request's (signature, body) to the test.
    async fn receiver(statuses: Vec<u16>) -> (SocketAddr, mpsc::Receiver<(String, Vec<u8>)>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((h, b)) = text.split_once("\r\n\r\n") {
                        let len: usize = h
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if b.len() >= len || n == 0 {
                            break (h.to_string(), b.as_bytes().to_vec());
                        }
                    }
                    if n == 0 {
                        return;
                    }
                };
                let status = statuses.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let sig = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("x-ipmigw-signature:")
                            .map(|v| v.trim().to_string())
                    })
                    .unwrap_or_default();
                if status == 200 {
                    let _ = tx.send((sig, body)).await;
                }
            }
        });
        (addr, rx)
    }

    fn config(addr: SocketAddr, queue: usize) -> WebhookConfig {
        WebhookConfig {
            addr,
            path: "/hook".into(),
            key: SecretBytes::new(b"shared-key".to_vec()),
            queue,
            attempts: 4,
            backoff: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn alerts_arrive_signed_after_retries_and_a_wrong_key_is_detected() {
        let (addr, mut got) = receiver(vec![503, 500]).await;
        let hook = Webhook::start(config(addr, 8));
        hook.send(&alert(State::Firing));
        hook.send(&alert(State::Resolved));
        for want in ["firing", "resolved"] {
            let (sig, body) = tokio::time::timeout(Duration::from_secs(10), got.recv())
                .await
                .unwrap()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["state"], want);
            assert_eq!(v["fingerprint"], alert(State::Firing).fingerprint);
            assert!(verify(b"shared-key", &body, &sig), "{sig}");
            assert!(
                !verify(b"wrong-key", &body, &sig),
                "a wrong key must not verify"
            );
            let mut forged = body.clone();
            forged[0] ^= 1;
            assert!(
                !verify(b"shared-key", &forged, &sig),
                "a changed body must not verify"
            );
        }
        // The sink counts a delivery once the receiver's answer is in,
        // which can be after the receiver has handed the body over.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while hook.counts().delivered.load(Relaxed) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(hook.counts().retries.load(Relaxed), 2);
        assert_eq!(hook.counts().delivered.load(Relaxed), 2);
        assert_eq!(hook.counts().dropped.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_queue_and_a_dead_receiver_drop_and_count() {
        // Nothing listens here once the listener is gone.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let hook = Webhook::start(config(addr, 1));
        for _ in 0..5 {
            hook.send(&alert(State::Firing));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while hook.counts().dropped.load(Relaxed) < 5 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Queue-full drops at once; the queued ones after their attempts.
        assert_eq!(hook.counts().dropped.load(Relaxed), 5);
        assert_eq!(hook.counts().delivered.load(Relaxed), 0);
    }
}
