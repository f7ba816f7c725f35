//! RMCP+ session-setup payloads (reference §2.3-§2.5, §2.8): Open Session
//! Request/Response and RAKP messages 1-4.
//!
//! Algorithms travel as raw numbers here; `crypto::CipherSuite` decides which
//! combinations are acceptable.

use super::{le32, need, take, WireError};

/// Longest user name RAKP 1 can carry.
pub const MAX_USERNAME_LEN: usize = 16;
/// Length of the random numbers Rm and Rc, and of the GUID.
pub const NONCE_LEN: usize = 16;
/// Largest auth code any algorithm we accept produces (HMAC-SHA256).
pub const MAX_AUTH_CODE_LEN: usize = 32;
/// Bit 4 of the RAKP 1 role byte: look the user up by name only.
pub const ROLE_NAME_ONLY_LOOKUP: u8 = 0x10;

/// RMCP+ status code (reference §2.8). Open set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmcpPlusStatus(pub u8);

impl RmcpPlusStatus {
    /// No errors.
    pub const OK: RmcpPlusStatus = RmcpPlusStatus(0x00);
    /// Insufficient resources to create a session.
    pub const INSUFFICIENT_RESOURCES: RmcpPlusStatus = RmcpPlusStatus(0x01);
    /// Invalid session ID.
    pub const INVALID_SESSION_ID: RmcpPlusStatus = RmcpPlusStatus(0x02);
    /// Invalid authentication algorithm.
    pub const INVALID_AUTH_ALGORITHM: RmcpPlusStatus = RmcpPlusStatus(0x04);
    /// Invalid integrity algorithm.
    pub const INVALID_INTEGRITY_ALGORITHM: RmcpPlusStatus = RmcpPlusStatus(0x05);
    /// Invalid role.
    pub const INVALID_ROLE: RmcpPlusStatus = RmcpPlusStatus(0x09);
    /// Unauthorized role or privilege level requested.
    pub const UNAUTHORIZED_ROLE: RmcpPlusStatus = RmcpPlusStatus(0x0A);
    /// Invalid name length.
    pub const INVALID_NAME_LENGTH: RmcpPlusStatus = RmcpPlusStatus(0x0C);
    /// Unauthorized name.
    pub const UNAUTHORIZED_NAME: RmcpPlusStatus = RmcpPlusStatus(0x0D);
    /// Invalid integrity check value.
    pub const INVALID_INTEGRITY_CHECK: RmcpPlusStatus = RmcpPlusStatus(0x0F);
    /// Invalid confidentiality algorithm.
    pub const INVALID_CONFIDENTIALITY_ALGORITHM: RmcpPlusStatus = RmcpPlusStatus(0x10);
    /// No cipher suite match with proposed security algorithms.
    pub const NO_CIPHER_SUITE_MATCH: RmcpPlusStatus = RmcpPlusStatus(0x11);
    /// Illegal or unrecognized parameter.
    pub const ILLEGAL_PARAMETER: RmcpPlusStatus = RmcpPlusStatus(0x12);

    /// True for 0.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// What the code means.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x00 => "no errors",
            0x01 => "insufficient resources to create a session",
            0x02 => "invalid session ID",
            0x03 => "invalid payload type",
            0x04 => "invalid authentication algorithm",
            0x05 => "invalid integrity algorithm",
            0x06 => "no matching authentication payload",
            0x07 => "no matching integrity payload",
            0x08 => "inactive session ID",
            0x09 => "invalid role",
            0x0A => "unauthorized role or privilege level requested",
            0x0B => "insufficient resources to create a session at the requested role",
            0x0C => "invalid name length",
            0x0D => "unauthorized name",
            0x0E => "unauthorized GUID",
            0x0F => "invalid integrity check value",
            0x10 => "invalid confidentiality algorithm",
            0x11 => "no cipher suite match with proposed security algorithms",
            0x12 => "illegal or unrecognized parameter",
            _ => "unknown status",
        }
    }

    /// True when the BMC refused the proposed algorithms, so that another
    /// cipher suite may succeed (vendors use several codes for this, §2.8).
    pub fn is_algorithm_refusal(self) -> bool {
        matches!(
            self.0,
            0x01 | 0x04 | 0x05 | 0x06 | 0x07 | 0x0A | 0x10 | 0x11 | 0x12
        )
    }
}

impl std::fmt::Display for RmcpPlusStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.description())
    }
}

/// The three algorithm numbers of an Open Session exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmTriple {
    /// Authentication algorithm (0 none, 1 RAKP-HMAC-SHA1, 2 MD5, 3 SHA256).
    pub auth: u8,
    /// Integrity algorithm (0 none, 1 HMAC-SHA1-96, 4 HMAC-SHA256-128, …).
    pub integrity: u8,
    /// Confidentiality algorithm (0 none, 1 AES-CBC-128, …).
    pub confidentiality: u8,
}

impl AlgorithmTriple {
    fn emit(&self, out: &mut Vec<u8>) {
        for (kind, alg) in [
            (0u8, self.auth),
            (1, self.integrity),
            (2, self.confidentiality),
        ] {
            out.extend_from_slice(&[kind, 0, 0, 8, alg & 0x3F, 0, 0, 0]);
        }
    }

    fn parse(b: &[u8]) -> Result<AlgorithmTriple, WireError> {
        need(b, 24, "algorithm records")?;
        let mut algs = [0u8; 3];
        for (i, alg) in algs.iter_mut().enumerate() {
            let rec = &b[i * 8..i * 8 + 8];
            if rec[0] != i as u8 {
                return Err(WireError::BadField {
                    field: "algorithm record type",
                    value: rec[0].into(),
                });
            }
            if rec[3] != 8 {
                return Err(WireError::BadField {
                    field: "algorithm record length",
                    value: rec[3].into(),
                });
            }
            *alg = rec[4] & 0x3F;
        }
        Ok(AlgorithmTriple {
            auth: algs[0],
            integrity: algs[1],
            confidentiality: algs[2],
        })
    }
}

/// Open Session Request (payload 0x10), 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSessionRequest {
    /// Message tag, echoed in the response.
    pub tag: u8,
    /// Requested maximum privilege (0 = highest matching).
    pub max_privilege: u8,
    /// Console-chosen session ID (non-zero, random).
    pub console_sid: u32,
    /// Proposed algorithms.
    pub algorithms: AlgorithmTriple,
}

impl OpenSessionRequest {
    /// Length on the wire.
    pub const LEN: usize = 32;

    /// Parses a request.
    pub fn parse(b: &[u8]) -> Result<OpenSessionRequest, WireError> {
        need(b, Self::LEN, "Open Session Request")?;
        Ok(OpenSessionRequest {
            tag: b[0],
            max_privilege: b[1] & 0x0F,
            console_sid: le32(b, 4),
            algorithms: AlgorithmTriple::parse(&b[8..32])?,
        })
    }

    /// Appends the payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.tag, self.max_privilege & 0x0F, 0, 0]);
        out.extend_from_slice(&self.console_sid.to_le_bytes());
        self.algorithms.emit(out);
    }
}

/// The part of an Open Session Response present when the status is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSessionAccepted {
    /// Maximum privilege the BMC will allow.
    pub max_privilege: u8,
    /// BMC-chosen session ID, carried by every later console→BMC packet.
    pub bmc_sid: u32,
    /// Algorithms as chosen by the BMC.
    pub algorithms: AlgorithmTriple,
}

/// Open Session Response (payload 0x11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSessionResponse {
    /// Echo of the request's tag.
    pub tag: u8,
    /// RMCP+ status.
    pub status: RmcpPlusStatus,
    /// Echo of the console session ID (absent in some error replies).
    pub console_sid: Option<u32>,
    /// Present when the status is 0.
    pub accepted: Option<OpenSessionAccepted>,
}

impl OpenSessionResponse {
    /// Length of a successful response.
    pub const LEN: usize = 36;

    /// Parses a response; a status of 0 requires the full 36 bytes.
    pub fn parse(b: &[u8]) -> Result<OpenSessionResponse, WireError> {
        need(b, 2, "Open Session Response")?;
        let status = RmcpPlusStatus(b[1]);
        let console_sid = if b.len() >= 8 { Some(le32(b, 4)) } else { None };
        let accepted = if status.is_ok() {
            need(b, Self::LEN, "Open Session Response")?;
            Some(OpenSessionAccepted {
                max_privilege: b[2] & 0x0F,
                bmc_sid: le32(b, 8),
                algorithms: AlgorithmTriple::parse(&b[12..36])?,
            })
        } else {
            None
        };
        Ok(OpenSessionResponse {
            tag: b[0],
            status,
            console_sid,
            accepted,
        })
    }

    /// Appends the payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let a = self.accepted;
        out.extend_from_slice(&[self.tag, self.status.0]);
        // Error answers may stop after the status; emit only what we have so
        // that a parsed value re-emits to the same meaning.
        if self.console_sid.is_none() && a.is_none() {
            return;
        }
        out.extend_from_slice(&[a.map_or(0, |a| a.max_privilege), 0]);
        out.extend_from_slice(&self.console_sid.unwrap_or(0).to_le_bytes());
        match a {
            Some(a) => {
                out.extend_from_slice(&a.bmc_sid.to_le_bytes());
                a.algorithms.emit(out);
            }
            // A refusal still carries the BMC session ID field (0: none).
            // Scanners that read the table's fixed offsets (nmap's ipmi
            // library unpacks through it) fail on a reply that stops at
            // the console's ID, and no reader is hurt by the zero.
            None => out.extend_from_slice(&[0; 4]),
        }
    }
}

/// RAKP Message 1 (payload 0x12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp1 {
    /// Message tag.
    pub tag: u8,
    /// BMC session ID from the Open Session Response.
    pub bmc_sid: u32,
    /// Console random number Rm.
    pub console_random: [u8; NONCE_LEN],
    /// Whole role byte: privilege in bits 3:0, name-only lookup in bit 4.
    pub role: u8,
    /// User name, at most 16 bytes.
    pub username: Vec<u8>,
}

impl Rakp1 {
    /// Parses RAKP 1; a name longer than 16 bytes is refused.
    pub fn parse(b: &[u8]) -> Result<Rakp1, WireError> {
        need(b, 28, "RAKP 1")?;
        let n = usize::from(b[27]);
        if n > MAX_USERNAME_LEN {
            return Err(WireError::BadField {
                field: "RAKP 1 user name length",
                value: n as u32,
            });
        }
        let username = take(b, 28..28 + n, "RAKP 1 user name")?.to_vec();
        let mut rm = [0u8; NONCE_LEN];
        rm.copy_from_slice(&b[8..24]);
        Ok(Rakp1 {
            tag: b[0],
            bmc_sid: le32(b, 4),
            console_random: rm,
            role: b[24],
            username,
        })
    }

    /// Appends the payload. The caller keeps names within 16 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let name = &self.username[..self.username.len().min(MAX_USERNAME_LEN)];
        out.extend_from_slice(&[self.tag, 0, 0, 0]);
        out.extend_from_slice(&self.bmc_sid.to_le_bytes());
        out.extend_from_slice(&self.console_random);
        out.extend_from_slice(&[self.role, 0, 0, name.len() as u8]);
        out.extend_from_slice(name);
    }
}

/// RAKP Message 2 (payload 0x13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status.
    pub status: RmcpPlusStatus,
    /// Console session ID.
    pub console_sid: u32,
    /// BMC random number Rc.
    pub bmc_random: [u8; NONCE_LEN],
    /// BMC GUID, as on the wire.
    pub bmc_guid: [u8; NONCE_LEN],
    /// Key-exchange auth code (full HMAC).
    pub auth_code: Vec<u8>,
}

impl Rakp2 {
    /// Parses RAKP 2. With a non-zero status only the first 8 bytes count.
    pub fn parse(b: &[u8]) -> Result<Rakp2, WireError> {
        need(b, 2, "RAKP 2")?;
        let status = RmcpPlusStatus(b[1]);
        if !status.is_ok() {
            return Ok(Rakp2 {
                tag: b[0],
                status,
                console_sid: if b.len() >= 8 { le32(b, 4) } else { 0 },
                bmc_random: [0; NONCE_LEN],
                bmc_guid: [0; NONCE_LEN],
                auth_code: Vec::new(),
            });
        }
        need(b, 40, "RAKP 2")?;
        let code = &b[40..];
        if code.len() > MAX_AUTH_CODE_LEN {
            return Err(WireError::BadLength {
                what: "RAKP 2 auth code",
                declared: code.len(),
                available: MAX_AUTH_CODE_LEN,
            });
        }
        let mut rc = [0u8; NONCE_LEN];
        rc.copy_from_slice(&b[8..24]);
        let mut guid = [0u8; NONCE_LEN];
        guid.copy_from_slice(&b[24..40]);
        Ok(Rakp2 {
            tag: b[0],
            status,
            console_sid: le32(b, 4),
            bmc_random: rc,
            bmc_guid: guid,
            auth_code: code.to_vec(),
        })
    }

    /// Appends the payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.tag, self.status.0, 0, 0]);
        out.extend_from_slice(&self.console_sid.to_le_bytes());
        if self.status.is_ok() {
            out.extend_from_slice(&self.bmc_random);
            out.extend_from_slice(&self.bmc_guid);
            out.extend_from_slice(&self.auth_code);
        }
    }
}

/// RAKP Message 3 (payload 0x14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp3 {
    /// Message tag.
    pub tag: u8,
    /// Console's verdict on RAKP 2.
    pub status: RmcpPlusStatus,
    /// BMC session ID.
    pub bmc_sid: u32,
    /// Key-exchange auth code; empty when the status is not 0.
    pub auth_code: Vec<u8>,
}

impl Rakp3 {
    /// Parses RAKP 3.
    pub fn parse(b: &[u8]) -> Result<Rakp3, WireError> {
        need(b, 8, "RAKP 3")?;
        let code = &b[8..];
        if code.len() > MAX_AUTH_CODE_LEN {
            return Err(WireError::BadLength {
                what: "RAKP 3 auth code",
                declared: code.len(),
                available: MAX_AUTH_CODE_LEN,
            });
        }
        Ok(Rakp3 {
            tag: b[0],
            status: RmcpPlusStatus(b[1]),
            bmc_sid: le32(b, 4),
            auth_code: code.to_vec(),
        })
    }

    /// Appends the payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.tag, self.status.0, 0, 0]);
        out.extend_from_slice(&self.bmc_sid.to_le_bytes());
        out.extend_from_slice(&self.auth_code);
    }
}

/// RAKP Message 4 (payload 0x15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status.
    pub status: RmcpPlusStatus,
    /// Console session ID.
    pub console_sid: u32,
    /// Integrity check value (truncated HMAC under SIK).
    pub icv: Vec<u8>,
}

impl Rakp4 {
    /// Parses RAKP 4.
    pub fn parse(b: &[u8]) -> Result<Rakp4, WireError> {
        need(b, 2, "RAKP 4")?;
        let status = RmcpPlusStatus(b[1]);
        if !status.is_ok() {
            return Ok(Rakp4 {
                tag: b[0],
                status,
                console_sid: if b.len() >= 8 { le32(b, 4) } else { 0 },
                icv: Vec::new(),
            });
        }
        need(b, 8, "RAKP 4")?;
        let icv = &b[8..];
        if icv.len() > MAX_AUTH_CODE_LEN {
            return Err(WireError::BadLength {
                what: "RAKP 4 integrity check value",
                declared: icv.len(),
                available: MAX_AUTH_CODE_LEN,
            });
        }
        Ok(Rakp4 {
            tag: b[0],
            status,
            console_sid: le32(b, 4),
            icv: icv.to_vec(),
        })
    }

    /// Appends the payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.tag, self.status.0, 0, 0]);
        out.extend_from_slice(&self.console_sid.to_le_bytes());
        out.extend_from_slice(&self.icv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::wire::all_truncations_fail;

    const SUITE3: AlgorithmTriple = AlgorithmTriple {
        auth: 1,
        integrity: 1,
        confidentiality: 1,
    };

    #[test]
    fn open_session_request_bytes_for_suite_3() {
        let req = OpenSessionRequest {
            tag: 0x11,
            max_privilege: 4,
            console_sid: 0xA0A2A3A4,
            algorithms: SUITE3,
        };
        let mut out = Vec::new();
        req.emit(&mut out);
        let want = hex::decode("11040000a4a3a2a0000000080100000001000008010000000200000801000000")
            .unwrap();
        assert_eq!(out, want);
        assert_eq!(OpenSessionRequest::parse(&out).unwrap(), req);
        all_truncations_fail!(&out, OpenSessionRequest::parse);
    }

    #[test]
    fn open_session_response_ok_and_error() {
        let resp = OpenSessionResponse {
            tag: 1,
            status: RmcpPlusStatus::OK,
            console_sid: Some(0x01020304),
            accepted: Some(OpenSessionAccepted {
                max_privilege: 4,
                bmc_sid: 0x12345678,
                algorithms: SUITE3,
            }),
        };
        let mut out = Vec::new();
        resp.emit(&mut out);
        assert_eq!(out.len(), OpenSessionResponse::LEN);
        assert_eq!(OpenSessionResponse::parse(&out).unwrap(), resp);
        all_truncations_fail!(&out, OpenSessionResponse::parse);

        let err = OpenSessionResponse::parse(&[1, 0x04]).unwrap();
        assert_eq!(err.status, RmcpPlusStatus::INVALID_AUTH_ALGORITHM);
        assert!(err.status.is_algorithm_refusal());
        assert!(err.accepted.is_none());
        // Found by fuzzing: a short error answer must re-emit as short.
        let mut short = Vec::new();
        err.emit(&mut short);
        assert_eq!(short, [1, 0x04]);
        assert_eq!(OpenSessionResponse::parse(&short).unwrap(), err);

        // A refusal we make reaches the BMC session ID field (zero), as
        // nmap's ipmi-cipher-zero script reads it (12 bytes at least).
        let refusal = OpenSessionResponse {
            tag: 7,
            status: RmcpPlusStatus::NO_CIPHER_SUITE_MATCH,
            console_sid: Some(0xA1B2C3D4),
            accepted: None,
        };
        let mut r = Vec::new();
        refusal.emit(&mut r);
        assert_eq!(r, [7, 0x11, 0, 0, 0xD4, 0xC3, 0xB2, 0xA1, 0, 0, 0, 0]);
        assert_eq!(OpenSessionResponse::parse(&r).unwrap(), refusal);

        let mut bad = out.clone();
        bad[12 + 3] = 9; // record length
        assert!(OpenSessionResponse::parse(&bad).is_err());
    }

    #[test]
    fn rakp_round_trips() {
        let r1 = Rakp1 {
            tag: 2,
            bmc_sid: 0x12345678,
            console_random: *b"0123456789abcdef",
            role: 0x14,
            username: b"admin".to_vec(),
        };
        let mut out = Vec::new();
        r1.emit(&mut out);
        assert_eq!(out.len(), 33);
        assert_eq!(Rakp1::parse(&out).unwrap(), r1);
        all_truncations_fail!(&out, Rakp1::parse);
        let mut long = out.clone();
        long[27] = 17;
        long.extend_from_slice(&[b'x'; 12]);
        assert!(Rakp1::parse(&long).is_err());

        let r2 = Rakp2 {
            tag: 2,
            status: RmcpPlusStatus::OK,
            console_sid: 7,
            bmc_random: [1; 16],
            bmc_guid: [2; 16],
            auth_code: vec![3; 20],
        };
        out.clear();
        r2.emit(&mut out);
        assert_eq!(Rakp2::parse(&out).unwrap(), r2);
        all_truncations_fail!(&out[..40], Rakp2::parse);
        out.extend_from_slice(&[0; 13]);
        assert!(Rakp2::parse(&out).is_err(), "auth code over 32 bytes");

        let r3 = Rakp3 {
            tag: 3,
            status: RmcpPlusStatus::OK,
            bmc_sid: 9,
            auth_code: vec![4; 32],
        };
        out.clear();
        r3.emit(&mut out);
        assert_eq!(Rakp3::parse(&out).unwrap(), r3);

        let r4 = Rakp4 {
            tag: 3,
            status: RmcpPlusStatus::OK,
            console_sid: 9,
            icv: vec![5; 12],
        };
        out.clear();
        r4.emit(&mut out);
        assert_eq!(Rakp4::parse(&out).unwrap(), r4);
        all_truncations_fail!(&out[..8], Rakp4::parse);
    }
}
