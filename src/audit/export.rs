//! Syslog export (RFC 5424) of every audit line, off the request path: a
//! bounded queue feeds one thread; when the queue is full the line is
//! dropped and counted (the writer then audits the count). A slow or dead
//! syslog server never blocks a request.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Where syslog lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `udp://HOST:PORT`: one datagram per line.
    Udp(SocketAddr),
    /// `tcp://HOST:PORT`: octet-counted frames (RFC 6587).
    Tcp(SocketAddr),
    /// `unix:///dev/log`: a datagram socket.
    Unix(PathBuf),
}

impl SyslogTarget {
    /// Parses `udp://127.0.0.1:514`, `tcp://[::1]:601` or `unix:///dev/log`.
    pub fn parse(s: &str) -> Result<SyslogTarget, String> {
        let expected =
            || format!("syslog {s:?}: expected udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH");
        if let Some(p) = s.strip_prefix("unix://") {
            return if p.starts_with('/') {
                Ok(SyslogTarget::Unix(p.into()))
            } else {
                Err(expected())
            };
        }
        let (scheme, addr) = s.split_once("://").ok_or_else(expected)?;
        let addr: SocketAddr = addr.parse().map_err(|_| expected())?;
        match scheme {
            "udp" => Ok(SyslogTarget::Udp(addr)),
            "tcp" => Ok(SyslogTarget::Tcp(addr)),
            _ => Err(expected()),
        }
    }
}

pub(super) struct Exporter {
    tx: SyncSender<String>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Exporter {
    pub(super) fn spawn(target: SyslogTarget, queue: usize) -> Exporter {
        let (tx, rx) = mpsc::sync_channel::<String>(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
            .unwrap_or_else(|| "-".into());
        let pid = std::process::id();
        let spawned = std::thread::Builder::new()
            .name("audit-syslog".into())
            .spawn(move || {
                let mut sink = Sink::new(target);
                for line in rx {
                    // PRI 110: facility 13 (log audit), severity 6 (informational).
                    let msg = format!(
                        "<110>1 {} {host} ipmigw {pid} audit - {line}",
                        super::line::now_rfc3339()
                    );
                    if !sink.send(msg.as_bytes()) {
                        counter.fetch_add(1, Relaxed);
                    }
                }
            });
        if spawned.is_err() {
            tracing::error!(
                "cannot start the syslog export thread; every record will count as dropped"
            );
        }
        Exporter { tx, dropped }
    }

    pub(super) fn send(&self, line: &str) {
        if self.tx.try_send(line.to_string()).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

struct Sink {
    target: SyslogTarget,
    conn: Option<Conn>,
}

impl Sink {
    fn new(target: SyslogTarget) -> Sink {
        Sink { target, conn: None }
    }

    fn connect(&self) -> std::io::Result<Conn> {
        Ok(match &self.target {
            SyslogTarget::Udp(a) => {
                let bind: SocketAddr = if a.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let s = UdpSocket::bind(bind)?;
                s.connect(a)?;
                Conn::Udp(s)
            }
            SyslogTarget::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, Duration::from_secs(2))?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
                Conn::Tcp(s)
            }
            SyslogTarget::Unix(p) => {
                let s = UnixDatagram::unbound()?;
                s.connect(p)?;
                Conn::Unix(s)
            }
        })
    }

    /// Sends one message; false when it was lost (the caller counts it).
    fn send(&mut self, msg: &[u8]) -> bool {
        if self.conn.is_none() {
            self.conn = self.connect().ok();
        }
        let ok = match self.conn.as_mut() {
            None => false,
            Some(Conn::Udp(s)) => s.send(msg).is_ok(),
            Some(Conn::Unix(s)) => s.send(msg).is_ok(),
            Some(Conn::Tcp(s)) => {
                let mut frame = format!("{} ", msg.len()).into_bytes();
                frame.extend_from_slice(msg);
                s.write_all(&frame).is_ok()
            }
        };
        if !ok {
            self.conn = None;
        }
        ok
    }
}
