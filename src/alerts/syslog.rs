//! The syslog sink: each alert as one RFC 5424 message over UDP (facility
//! local0; severity critical, warning, or notice for a resolve), its JSON
//! as the message, for collectors that watch syslog rather than webhooks.
//!
//! Never blocks: a datagram the socket cannot take now is dropped and
//! counted.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Alert, State};

/// Facility local0 (16), times 8, as RFC 5424 composes PRI.
const LOCAL0: u8 = 16 * 8;

/// A syslog sink sending to one collector.
#[derive(Debug)]
pub struct Syslog {
    socket: UdpSocket,
    dest: SocketAddr,
    dropped: AtomicU64,
}

impl Syslog {
    /// A sink sending from an unbound local port to `dest`.
    pub fn new(dest: SocketAddr) -> std::io::Result<Syslog> {
        let local: SocketAddr = if dest.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        Ok(Syslog {
            socket,
            dest,
            dropped: AtomicU64::new(0),
        })
    }

    /// Sends one alert; a send that fails is counted, not retried (UDP
    /// syslog is best effort; the audit trail is the record).
    pub fn send(&self, alert: &Alert) {
        let line = message(alert, time::OffsetDateTime::now_utc());
        if self.socket.send_to(line.as_bytes(), self.dest).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Alerts not sent.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

/// `<PRI>1 TIMESTAMP - ipmigw - alert - JSON` (RFC 5424: no hostname, no
/// process id, no structured data).
pub fn message(alert: &Alert, now: time::OffsetDateTime) -> String {
    let severity = match (alert.state, alert.severity) {
        (State::Resolved, _) => 5,
        (_, "critical") => 2,
        _ => 4,
    };
    let ts = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into());
    let json = serde_json::to_string(alert).unwrap_or_default();
    format!("<{}>1 {ts} - ipmigw - alert - {json}", LOCAL0 + severity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Book;
    use crate::alerts::Reading;

    #[test]
    fn alerts_reach_a_collector_as_rfc5424() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let sink = Syslog::new(collector.local_addr().unwrap()).unwrap();
        let mut book = Book::new();
        let hot = Reading {
            sensor: "CPU1 Temp".into(),
            value: Some(97.0),
            status: "cr".into(),
            thresholds: vec![("uc".into(), 95.0)],
        };
        let fired = book.observe("node01", &[hot], 1);
        sink.send(&fired[0]);
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("<130>1 "), "{text}");
        assert!(text.contains(" - ipmigw - alert - {"), "{text}");
        assert!(text.contains("\"state\":\"firing\""), "{text}");
        assert_eq!(sink.dropped(), 0);
        let mut resolved = fired[0].clone();
        resolved.state = State::Resolved;
        let t = message(&resolved, time::OffsetDateTime::UNIX_EPOCH);
        assert!(t.starts_with("<133>1 1970-01-01T00:00:00Z - ipmigw"), "{t}");
    }
}
