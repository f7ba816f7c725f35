//! Session headers (reference §1.4, §1.5): the IPMI 1.5 header, used here only
//! for session-less pre-login commands, and the RMCP+ (IPMI 2.0) header with
//! its payload and optional integrity trailer.
//!
//! This module only frames. Whether a trailer's AuthCode is right, whether a
//! payload decrypts, and whether a sequence number is acceptable are decided
//! by `crypto` and `session`, which know the keys and the window.

use super::{le16, le32, need, take, WireError};

/// Auth type / format byte that marks an RMCP+ session header.
pub const AUTH_FORMAT_RMCP_PLUS: u8 = 0x06;
/// Length of the RMCP+ session header for non-OEM payloads.
pub const RMCP_PLUS_HEADER_LEN: usize = 12;
/// Next-header byte at the end of the integrity trailer.
pub const NEXT_HEADER: u8 = 0x07;

mod field {
    use std::ops::Range;
    pub const AUTH_TYPE: usize = 0;
    pub const PAYLOAD_TYPE: usize = 1;
    pub const SESSION_ID: Range<usize> = 2..6;
    pub const SESSION_SEQ: Range<usize> = 6..10;
    pub const PAYLOAD_LEN: Range<usize> = 10..12;
}

/// RMCP+ payload type, bits 5:0 of the payload-type byte. Open set: unknown
/// values survive a round trip; the session layer decides what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadKind(pub u8);

impl PayloadKind {
    /// An IPMI message (§1.6).
    pub const IPMI: PayloadKind = PayloadKind(0x00);
    /// Serial over LAN.
    pub const SOL: PayloadKind = PayloadKind(0x01);
    /// OEM explicit; its header carries 6 more bytes, which we do not speak.
    pub const OEM_EXPLICIT: PayloadKind = PayloadKind(0x02);
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: PayloadKind = PayloadKind(0x10);
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: PayloadKind = PayloadKind(0x11);
    /// RAKP Message 1.
    pub const RAKP1: PayloadKind = PayloadKind(0x12);
    /// RAKP Message 2.
    pub const RAKP2: PayloadKind = PayloadKind(0x13);
    /// RAKP Message 3.
    pub const RAKP3: PayloadKind = PayloadKind(0x14);
    /// RAKP Message 4.
    pub const RAKP4: PayloadKind = PayloadKind(0x15);
}

/// The payload-type byte with its two security bits split out, so that code
/// cannot confuse "which payload" with "how it is protected".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadType {
    /// Which payload.
    pub kind: PayloadKind,
    /// Bit 7: the payload is encrypted.
    pub encrypted: bool,
    /// Bit 6: an integrity trailer follows the payload.
    pub authenticated: bool,
}

impl PayloadType {
    /// A session-setup payload: never encrypted or authenticated.
    pub fn setup(kind: PayloadKind) -> PayloadType {
        PayloadType {
            kind,
            encrypted: false,
            authenticated: false,
        }
    }

    fn from_byte(b: u8) -> PayloadType {
        PayloadType {
            kind: PayloadKind(b & 0x3F),
            encrypted: b & 0x80 != 0,
            authenticated: b & 0x40 != 0,
        }
    }

    fn to_byte(self) -> u8 {
        (self.kind.0 & 0x3F)
            | if self.encrypted { 0x80 } else { 0 }
            | if self.authenticated { 0x40 } else { 0 }
    }
}

/// RMCP+ session header (after the RMCP header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmcpPlusHeader {
    /// Payload type and security bits.
    pub payload_type: PayloadType,
    /// Receiver's session ID (the BMC's toward the BMC, the console's back).
    pub session_id: u32,
    /// Session sequence number; 0 outside a session.
    pub seq: u32,
    /// Length of the payload field (IV and confidentiality trailer included).
    pub payload_len: u16,
}

impl RmcpPlusHeader {
    /// Appends the 12 header bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(AUTH_FORMAT_RMCP_PLUS);
        out.push(self.payload_type.to_byte());
        out.extend_from_slice(&self.session_id.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
    }
}

/// A framed RMCP+ packet: header, payload and whatever follows the payload
/// (the integrity trailer, still unverified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmcpPlusPacket<'a> {
    /// The header.
    pub header: RmcpPlusHeader,
    /// The payload field, exactly `payload_len` bytes.
    pub payload: &'a [u8],
    /// Bytes after the payload (integrity pad, pad length, next header,
    /// AuthCode); empty for unauthenticated packets.
    pub trailer: &'a [u8],
    /// Every byte after the RMCP header: what an AuthCode covers, plus the
    /// AuthCode itself.
    pub session_bytes: &'a [u8],
}

/// IPMI 1.5 session header and message (pre-session use only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V15Packet<'a> {
    /// Auth type (0 = none, the only one we send).
    pub auth_type: u8,
    /// Session sequence number.
    pub seq: u32,
    /// Session ID.
    pub session_id: u32,
    /// 16-byte AuthCode, present when the auth type is not 0.
    pub auth_code: Option<&'a [u8]>,
    /// The IPMI message.
    pub message: &'a [u8],
}

/// What follows an RMCP header of class IPMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPacket<'a> {
    /// IPMI 1.5 framing.
    V15(V15Packet<'a>),
    /// RMCP+ framing.
    RmcpPlus(RmcpPlusPacket<'a>),
}

impl<'a> SessionPacket<'a> {
    /// Frames the bytes after an IPMI-class RMCP header.
    pub fn parse(b: &'a [u8]) -> Result<SessionPacket<'a>, WireError> {
        need(b, 1, "session header")?;
        if b[field::AUTH_TYPE] == AUTH_FORMAT_RMCP_PLUS {
            parse_rmcp_plus(b).map(SessionPacket::RmcpPlus)
        } else {
            parse_v15(b).map(SessionPacket::V15)
        }
    }
}

fn parse_rmcp_plus(b: &[u8]) -> Result<RmcpPlusPacket<'_>, WireError> {
    need(b, RMCP_PLUS_HEADER_LEN, "RMCP+ session header")?;
    let payload_type = PayloadType::from_byte(b[field::PAYLOAD_TYPE]);
    if payload_type.kind == PayloadKind::OEM_EXPLICIT {
        return Err(WireError::BadField {
            field: "payload type",
            value: payload_type.kind.0.into(),
        });
    }
    let payload_len = le16(b, field::PAYLOAD_LEN.start);
    let end = RMCP_PLUS_HEADER_LEN + usize::from(payload_len);
    let payload = take(b, RMCP_PLUS_HEADER_LEN..end, "RMCP+ payload")?;
    Ok(RmcpPlusPacket {
        header: RmcpPlusHeader {
            payload_type,
            session_id: le32(b, field::SESSION_ID.start),
            seq: le32(b, field::SESSION_SEQ.start),
            payload_len,
        },
        payload,
        trailer: &b[end..],
        session_bytes: b,
    })
}

fn parse_v15(b: &[u8]) -> Result<V15Packet<'_>, WireError> {
    need(b, 10, "IPMI 1.5 session header")?;
    let auth_type = b[0];
    if !matches!(auth_type, 0 | 1 | 2 | 4 | 5) {
        return Err(WireError::BadField {
            field: "IPMI 1.5 auth type",
            value: auth_type.into(),
        });
    }
    let seq = le32(b, 1);
    let session_id = le32(b, 5);
    let (auth_code, len_at) = if auth_type == 0 {
        (None, 9)
    } else {
        (Some(take(b, 9..25, "IPMI 1.5 AuthCode")?), 25)
    };
    let len = usize::from(
        *take(b, len_at..len_at + 1, "IPMI 1.5 message length")?
            .first()
            .unwrap_or(&0),
    );
    let message = take(b, len_at + 1..len_at + 1 + len, "IPMI 1.5 message")?;
    Ok(V15Packet {
        auth_type,
        seq,
        session_id,
        auth_code,
        message,
    })
}

/// Appends an IPMI 1.5 session header with auth type none, session 0,
/// sequence 0, then the message: the form of pre-session commands.
pub fn emit_v15_sessionless(message: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    // IPMI messages on LAN are far below 256 bytes; callers build them.
    out.push(u8::try_from(message.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::wire::all_truncations_fail;

    #[test]
    fn v15_get_channel_auth_caps_from_the_reference() {
        // Reference §1.6 worked example, after the RMCP header.
        let bytes = [
            0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x20, 0x18, 0xC8, 0x81, 0x94, 0x38, 0x8E, 0x03,
            0x22,
        ];
        let SessionPacket::V15(p) = SessionPacket::parse(&bytes).unwrap() else {
            panic!("not 1.5")
        };
        assert_eq!((p.auth_type, p.seq, p.session_id), (0, 0, 0));
        assert_eq!(p.message, &bytes[10..]);
        let mut out = Vec::new();
        emit_v15_sessionless(p.message, &mut out);
        assert_eq!(out, bytes);
        all_truncations_fail!(&bytes, SessionPacket::parse);
    }

    #[test]
    fn rmcp_plus_header_fields_and_trailer() {
        // Reference §11.1 datagram without its RMCP header.
        let bytes = hex::decode(
            "06c078563412010000002000404142434445464748494a4b4c4d4e4f76897a66f2d15784c96fc864677b9ba8ffff02071adaa34f1a5329fc0c181fad",
        )
        .unwrap();
        let SessionPacket::RmcpPlus(p) = SessionPacket::parse(&bytes).unwrap() else {
            panic!("not RMCP+")
        };
        assert_eq!(p.header.payload_type.kind, PayloadKind::IPMI);
        assert!(p.header.payload_type.encrypted && p.header.payload_type.authenticated);
        assert_eq!(p.header.session_id, 0x1234_5678);
        assert_eq!(p.header.seq, 1);
        assert_eq!(p.payload.len(), 32);
        assert_eq!(p.trailer.len(), 4 + 12);
        let mut out = Vec::new();
        p.header.emit(&mut out);
        assert_eq!(out, bytes[..12]);
        all_truncations_fail!(&bytes[..44], SessionPacket::parse);
    }

    #[test]
    fn oem_explicit_payloads_are_refused() {
        let bytes = [0x06, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            SessionPacket::parse(&bytes),
            Err(WireError::BadField {
                field: "payload type",
                ..
            })
        ));
    }
}
