//! Pre-login probes of a BMC's security posture, as bytes: the requests a
//! scanner sends before (or instead of) a login, and decoders of the
//! answers into what they reveal: Get Channel Authentication Capabilities
//! bits, the cipher suite records of Get Channel Cipher Suites, Open
//! Session and RAKP answers, and one unauthenticated suite-0 command.
//!
//! Sans-IO like the rest of `ipmi`: the caller sends, waits and retries.
//! Never does: keep or expose a RAKP 2 auth code (the offline-crackable
//! password hash of CVE-2013-4786): [`Rakp2Seen`] holds only its length.

use super::cmd::registry::{id, CommandId};
use super::session::console::setup_datagram;
use super::wire::message::{NetFn, Request, Response};
use super::wire::rakp::{
    AlgorithmTriple, OpenSessionRequest, OpenSessionResponse, Rakp1, Rakp2, Rakp3, Rakp4,
    RmcpPlusStatus,
};
use super::wire::rmcp::{RmcpClass, RmcpHeader};
use super::wire::session::{
    emit_v15_sessionless, PayloadKind, PayloadType, RmcpPlusHeader, SessionPacket,
};
use super::wire::WireError;

/// Channel byte asking about the channel the request came in on, with the
/// IPMI 2.0 extended data (bit 7).
const THIS_CHANNEL_V20: u8 = 0x8E;

/// What Get Channel Authentication Capabilities says (IPMI v2.0 §22.13).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthCaps {
    /// Channel number.
    pub channel: u8,
    /// IPMI 1.5 auth types offered: bit 0 none, 1 MD2, 2 MD5, 4 straight
    /// password, 5 OEM.
    pub v15_auth_types: u8,
    /// Bit 7 of byte 2: the extended (IPMI 2.0) capabilities are valid.
    pub v20_extended: bool,
    /// Kg is set to something other than the default all-zero key.
    pub kg_set: bool,
    /// Per-message authentication disabled.
    pub per_message_auth_off: bool,
    /// User-level authentication disabled.
    pub user_level_auth_off: bool,
    /// Non-null user names enabled.
    pub non_null_users: bool,
    /// Null user names enabled.
    pub null_users: bool,
    /// Anonymous login (null name, null password) enabled.
    pub anonymous: bool,
    /// IPMI 1.5 connections supported (extended data).
    pub v15_connections: bool,
    /// IPMI 2.0 connections supported (extended data).
    pub v20_connections: bool,
    /// OEM IANA number.
    pub oem_id: u32,
    /// The response data, completion code first (the evidence).
    pub raw: Vec<u8>,
}

/// One cipher suite record of Get Channel Cipher Suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SuiteRecord {
    /// Suite ID.
    pub id: u8,
    /// Authentication, integrity and confidentiality algorithm numbers.
    pub auth: u8,
    /// Integrity algorithm number.
    pub integrity: u8,
    /// Confidentiality algorithm number (2 and 3 are xRC4).
    pub confidentiality: u8,
}

/// A RAKP 2 as far as a scanner may know it: never the auth code itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rakp2Seen {
    /// RMCP+ status.
    pub status: RmcpPlusStatus,
    /// Echo of the console session ID.
    pub console_sid: u32,
    /// Length of the auth code the BMC sent (0 for suite 0).
    pub auth_code_len: usize,
}

/// Get Channel Authentication Capabilities as an IPMI 1.5 session-less
/// datagram (what every BMC answers, 1.5-only ones included), asking for
/// ADMINISTRATOR.
pub fn auth_caps_request(rq_seq: u8) -> Vec<u8> {
    sessionless(
        id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES,
        rq_seq,
        vec![THIS_CHANNEL_V20, 0x04],
    )
}

/// Get Channel Cipher Suites for IPMI payloads, list by suite, chunk
/// `index` (each chunk is up to 16 bytes of the record stream).
pub fn cipher_suites_request(index: u8, rq_seq: u8) -> Vec<u8> {
    sessionless(
        id::GET_CHANNEL_CIPHER_SUITES,
        rq_seq,
        vec![0x0E, 0x00, 0x80 | (index & 0x3F)],
    )
}

fn sessionless(cmd: CommandId, rq_seq: u8, data: Vec<u8>) -> Vec<u8> {
    let mut msg = Vec::new();
    Request::to_bmc(cmd.netfn, cmd.cmd, rq_seq, data).emit(&mut msg);
    let mut out = Vec::with_capacity(14 + msg.len());
    RmcpHeader::IPMI.emit(&mut out);
    emit_v15_sessionless(&msg, &mut out);
    out
}

/// The IPMI response in a session-less datagram (IPMI 1.5 framing, or an
/// unauthenticated RMCP+ IPMI payload).
pub fn sessionless_response(d: &[u8]) -> Result<Response, WireError> {
    let rest = ipmi_class(d)?;
    match SessionPacket::parse(rest)? {
        SessionPacket::V15(p) => Response::parse(p.message),
        SessionPacket::RmcpPlus(p) => {
            let pt = p.header.payload_type;
            if pt.kind != PayloadKind::IPMI || pt.encrypted || pt.authenticated {
                return Err(unexpected("payload type", pt.kind.0));
            }
            Response::parse(p.payload)
        }
    }
}

/// Decodes an auth caps answer. A non-zero completion code is an error
/// carrying it.
pub fn parse_auth_caps(d: &[u8]) -> Result<AuthCaps, WireError> {
    let r = sessionless_response(d)?;
    expect_answer(&r, id::GET_CHANNEL_AUTHENTICATION_CAPABILITIES)?;
    let b = &r.data;
    if b.len() < 8 {
        return Err(WireError::Truncated {
            what: "auth caps response",
            need: 8,
            got: b.len(),
        });
    }
    let ext = b[1] & 0x80 != 0;
    let mut raw = vec![r.completion_code.0];
    raw.extend_from_slice(b);
    Ok(AuthCaps {
        channel: b[0] & 0x0F,
        v15_auth_types: b[1] & 0x37,
        v20_extended: ext,
        kg_set: b[2] & 0x20 != 0,
        per_message_auth_off: b[2] & 0x10 != 0,
        user_level_auth_off: b[2] & 0x08 != 0,
        non_null_users: b[2] & 0x04 != 0,
        null_users: b[2] & 0x02 != 0,
        anonymous: b[2] & 0x01 != 0,
        v15_connections: ext && b[3] & 0x01 != 0,
        v20_connections: ext && b[3] & 0x02 != 0,
        oem_id: u32::from_le_bytes([b[4], b[5], b[6], 0]),
        raw,
    })
}

/// Decodes one Get Channel Cipher Suites answer: the chunk of the record
/// stream it carries (after the channel number).
pub fn parse_cipher_suites_chunk(d: &[u8]) -> Result<Vec<u8>, WireError> {
    let r = sessionless_response(d)?;
    expect_answer(&r, id::GET_CHANNEL_CIPHER_SUITES)?;
    match r.data.split_first() {
        Some((_, chunk)) if chunk.len() <= 16 => Ok(chunk.to_vec()),
        Some((_, chunk)) => Err(WireError::BadLength {
            what: "cipher suite chunk",
            declared: chunk.len(),
            available: 16,
        }),
        None => Err(WireError::Truncated {
            what: "cipher suites response",
            need: 1,
            got: 0,
        }),
    }
}

/// The suite records in a whole record stream (standard records 0xC0 and
/// OEM records 0xC1, whose IANA number is skipped). Stops at the first
/// byte that starts no record.
pub fn suite_records(stream: &[u8]) -> Vec<SuiteRecord> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < stream.len() {
        let skip = match stream[i] {
            0xC0 => 0,
            0xC1 => 3,
            _ => break,
        };
        let suite = stream[i + 1];
        i += 2 + skip;
        let mut rec = SuiteRecord {
            id: suite,
            auth: 0,
            integrity: 0,
            confidentiality: 0,
        };
        // Algorithm tags follow until the next record: 00xxxxxx
        // authentication, 01xxxxxx integrity, 10xxxxxx confidentiality.
        while let Some(&t) = stream.get(i).filter(|t| **t & 0xC0 != 0xC0) {
            match t >> 6 {
                0 => rec.auth = t & 0x3F,
                1 => rec.integrity = t & 0x3F,
                _ => rec.confidentiality = t & 0x3F,
            }
            i += 1;
        }
        out.push(rec);
    }
    out
}

/// An Open Session Request for `algorithms`, asking for ADMINISTRATOR.
pub fn open_session_request(console_sid: u32, algorithms: AlgorithmTriple) -> Vec<u8> {
    let mut p = Vec::with_capacity(OpenSessionRequest::LEN);
    OpenSessionRequest {
        tag: 0,
        max_privilege: 0x04,
        console_sid,
        algorithms,
    }
    .emit(&mut p);
    setup_datagram(PayloadKind::OPEN_SESSION_REQUEST, &p)
}

/// Decodes an Open Session Response.
pub fn parse_open_session(d: &[u8]) -> Result<OpenSessionResponse, WireError> {
    OpenSessionResponse::parse(setup_payload(d, PayloadKind::OPEN_SESSION_RESPONSE)?)
}

/// A RAKP 1 for `name`, ADMINISTRATOR by name only.
pub fn rakp1_request(bmc_sid: u32, console_random: [u8; 16], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(28 + name.len());
    Rakp1 {
        tag: 0,
        bmc_sid,
        console_random,
        role: 0x14,
        username: name.to_vec(),
    }
    .emit(&mut p);
    setup_datagram(PayloadKind::RAKP1, &p)
}

/// Decodes a RAKP 2, forgetting its auth code at once.
pub fn parse_rakp2(d: &[u8]) -> Result<Rakp2Seen, WireError> {
    let r = Rakp2::parse(setup_payload(d, PayloadKind::RAKP2)?)?;
    Ok(Rakp2Seen {
        status: r.status,
        console_sid: r.console_sid,
        auth_code_len: r.auth_code.len(),
    })
}

/// A RAKP 3 with no auth code: with status 0 a suite-0 login (nothing to
/// prove), with another status the console giving up (which frees the
/// BMC's half-open session at once).
pub fn rakp3_request(bmc_sid: u32, status: RmcpPlusStatus) -> Vec<u8> {
    let mut p = Vec::with_capacity(8);
    Rakp3 {
        tag: 0,
        status,
        bmc_sid,
        auth_code: vec![],
    }
    .emit(&mut p);
    setup_datagram(PayloadKind::RAKP3, &p)
}

/// Decodes a RAKP 4's status.
pub fn parse_rakp4(d: &[u8]) -> Result<RmcpPlusStatus, WireError> {
    Ok(Rakp4::parse(setup_payload(d, PayloadKind::RAKP4)?)?.status)
}

/// Get Device ID inside a suite-0 session: an IPMI payload with neither
/// integrity nor confidentiality, as such a session carries.
pub fn suite0_device_id_request(bmc_sid: u32, seq: u32, rq_seq: u8) -> Vec<u8> {
    let mut msg = Vec::new();
    let cmd = id::GET_DEVICE_ID;
    Request::to_bmc(cmd.netfn, cmd.cmd, rq_seq, vec![]).emit(&mut msg);
    let mut out = Vec::with_capacity(16 + msg.len());
    RmcpHeader::IPMI.emit(&mut out);
    RmcpPlusHeader {
        payload_type: PayloadType {
            kind: PayloadKind::IPMI,
            encrypted: false,
            authenticated: false,
        },
        session_id: bmc_sid,
        seq,
        payload_len: msg.len() as u16,
    }
    .emit(&mut out);
    out.extend_from_slice(&msg);
    out
}

/// Decodes the answer to [`suite0_device_id_request`]: the response when
/// it is one to Get Device ID (any completion code).
pub fn parse_suite0_answer(d: &[u8]) -> Result<Response, WireError> {
    let r = sessionless_response(d)?;
    if CommandId::new(NetFn(r.netfn.0 & !1), r.cmd) != id::GET_DEVICE_ID {
        return Err(unexpected("command", r.cmd));
    }
    Ok(r)
}

fn setup_payload(d: &[u8], kind: PayloadKind) -> Result<&[u8], WireError> {
    match SessionPacket::parse(ipmi_class(d)?)? {
        SessionPacket::RmcpPlus(p) if p.header.payload_type.kind == kind => Ok(p.payload),
        SessionPacket::RmcpPlus(p) => Err(unexpected("payload type", p.header.payload_type.kind.0)),
        SessionPacket::V15(p) => Err(unexpected("auth type", p.auth_type)),
    }
}

fn ipmi_class(d: &[u8]) -> Result<&[u8], WireError> {
    let (rmcp, rest) = RmcpHeader::parse(d)?;
    if rmcp.class != RmcpClass::Ipmi || rmcp.is_ack {
        return Err(unexpected("RMCP class", d.get(3).copied().unwrap_or(0)));
    }
    Ok(rest)
}

fn expect_answer(r: &Response, cmd: CommandId) -> Result<(), WireError> {
    if CommandId::new(NetFn(r.netfn.0 & !1), r.cmd) != cmd {
        return Err(unexpected("command", r.cmd));
    }
    if !r.completion_code.is_ok() {
        return Err(unexpected("completion code", r.completion_code.0));
    }
    Ok(())
}

fn unexpected(field: &'static str, value: u8) -> WireError {
    WireError::BadField {
        field,
        value: value.into(),
    }
}

#[cfg(test)]
mod tests;
