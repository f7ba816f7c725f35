//! PROXY protocol version 2 (the binary header HAProxy, Envoy and cloud
//! load balancers put in front of a TCP stream), sans-IO: bytes in, the
//! carried client address out. Accepted only from addresses listed in
//! `listen.proxy_protocol_from`; the caller enforces that.
//!
//! Never trusts a length beyond [`MAX_HEADER`]; never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Fixed part: signature, version/command, family, length.
pub const FIXED: usize = 16;
/// Largest header accepted (addresses plus TLVs).
pub const MAX_HEADER: usize = FIXED + 512;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// A proxied connection from this client address.
    Client(SocketAddr),
    /// LOCAL (health checks from the balancer itself), or an address family
    /// that carries no IP (UNIX, UNSPEC): use the balancer's own address.
    Local,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Not a PROXY v2 signature.
    #[error("not a PROXY protocol v2 header")]
    Signature,
    /// Version other than 2, or an unknown command.
    #[error("unsupported PROXY protocol version or command")]
    Version,
    /// Longer than we accept.
    #[error("PROXY header too long")]
    TooLong,
    /// Address block shorter than its family needs.
    #[error("PROXY header address block too short")]
    Short,
}

/// From the fixed 16 bytes: how many more bytes the header has.
pub fn remaining_len(fixed: &[u8; FIXED]) -> Result<usize, ProxyError> {
    if fixed[..12] != SIGNATURE {
        return Err(ProxyError::Signature);
    }
    if fixed[12] >> 4 != 2 || fixed[12] & 0x0F > 1 {
        return Err(ProxyError::Version);
    }
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    if FIXED + len > MAX_HEADER {
        return Err(ProxyError::TooLong);
    }
    Ok(len)
}

/// Parses a whole header (fixed part plus `remaining_len` bytes).
pub fn parse(header: &[u8]) -> Result<Proxied, ProxyError> {
    let fixed: &[u8; FIXED] = header
        .get(..FIXED)
        .and_then(|f| f.try_into().ok())
        .ok_or(ProxyError::Short)?;
    let len = remaining_len(fixed)?;
    let body = header.get(FIXED..FIXED + len).ok_or(ProxyError::Short)?;
    if fixed[12] & 0x0F == 0 {
        return Ok(Proxied::Local);
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fixed[13] >> 4 {
        // AF_INET: src 4, dst 4, src port 2, dst port 2.
        1 => {
            let b = body.get(..12).ok_or(ProxyError::Short)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Ok(Proxied::Client(SocketAddr::new(
                IpAddr::V4(ip),
                port(&b[8..10]),
            )))
        }
        // AF_INET6: src 16, dst 16, ports.
        2 => {
            let b = body.get(..36).ok_or(ProxyError::Short)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[..16]);
            Ok(Proxied::Client(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a)),
                port(&b[32..34]),
            )))
        }
        _ => Ok(Proxied::Local),
    }
}

/// Builds a v2 PROXY header (for tests and the benchmark's balancer stand-in).
pub fn encode(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.push(0x21);
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&c.ip().octets());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&c.port().to_be_bytes());
            h.extend_from_slice(&s.port().to_be_bytes());
        }
        (c, s) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(c).octets());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&c.port().to_be_bytes());
            h.extend_from_slice(&s.port().to_be_bytes());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_v6_local_and_refusals() {
        let c: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let s: SocketAddr = "10.0.0.1:8443".parse().unwrap();
        assert_eq!(parse(&encode(c, s)), Ok(Proxied::Client(c)));
        let c6: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
        let s6: SocketAddr = "[2001:db8::1]:8443".parse().unwrap();
        assert_eq!(parse(&encode(c6, s6)), Ok(Proxied::Client(c6)));
        let mut local = encode(c, s);
        local[12] = 0x20;
        assert_eq!(parse(&local), Ok(Proxied::Local));
        let mut bad = encode(c, s);
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(ProxyError::Signature));
        let mut v1 = encode(c, s);
        v1[12] = 0x11;
        assert_eq!(parse(&v1), Err(ProxyError::Version));
        let mut long = encode(c, s);
        long[14..16].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
        let h = encode(c, s);
        for cut in 0..h.len() {
            assert!(parse(&h[..cut]).is_err(), "truncated at {cut}");
        }
        // A text (v1) header is not v2.
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Err(ProxyError::Signature)
        );
    }
}
