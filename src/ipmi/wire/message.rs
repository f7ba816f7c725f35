//! IPMI LAN messages (reference §1.6): requests and responses with both
//! checksums, the netFn and completion-code code sets.

use super::{checksum, need, ChecksumKind, WireError};

/// Slave address of the BMC on IPMB.
pub const BMC_SLAVE_ADDR: u8 = 0x20;
/// Software ID of a remote console (0x81..0x8D is the remote-console range).
pub const REMOTE_CONSOLE_SWID: u8 = 0x81;
/// Bytes of an IPMI message around its data: 6 in front, checksum behind.
pub const MESSAGE_OVERHEAD: usize = 7;

/// Network function (request form, even). Open set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetFn(pub u8);

impl NetFn {
    /// Chassis.
    pub const CHASSIS: NetFn = NetFn(0x00);
    /// Bridge.
    pub const BRIDGE: NetFn = NetFn(0x02);
    /// Sensor/Event.
    pub const SENSOR_EVENT: NetFn = NetFn(0x04);
    /// Application.
    pub const APP: NetFn = NetFn(0x06);
    /// Firmware.
    pub const FIRMWARE: NetFn = NetFn(0x08);
    /// Storage.
    pub const STORAGE: NetFn = NetFn(0x0A);
    /// Transport.
    pub const TRANSPORT: NetFn = NetFn(0x0C);
    /// Group extension (first data byte names the defining body).
    pub const GROUP_EXTENSION: NetFn = NetFn(0x2C);
    /// OEM/Group (first 3 data bytes are an IANA number).
    pub const OEM_GROUP: NetFn = NetFn(0x2E);

    /// The response netFn (request | 1).
    pub fn response(self) -> NetFn {
        NetFn(self.0 | 1)
    }

    /// True for odd (response) netFns.
    pub fn is_response(self) -> bool {
        self.0 & 1 == 1
    }
}

/// IPMI completion code (reference §7). Open set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompletionCode(pub u8);

impl CompletionCode {
    /// Command completed normally.
    pub const OK: CompletionCode = CompletionCode(0x00);
    /// Node busy.
    pub const NODE_BUSY: CompletionCode = CompletionCode(0xC0);
    /// Invalid or unsupported command.
    pub const INVALID_COMMAND: CompletionCode = CompletionCode(0xC1);
    /// Timeout while processing.
    pub const TIMEOUT: CompletionCode = CompletionCode(0xC3);
    /// Reservation cancelled or invalid.
    pub const RESERVATION_CANCELLED: CompletionCode = CompletionCode(0xC5);
    /// Request data truncated.
    pub const REQUEST_TRUNCATED: CompletionCode = CompletionCode(0xC6);
    /// Request data length invalid.
    pub const REQUEST_LENGTH_INVALID: CompletionCode = CompletionCode(0xC7);
    /// Request data field length limit exceeded.
    pub const REQUEST_TOO_LONG: CompletionCode = CompletionCode(0xC8);
    /// Parameter out of range.
    pub const PARAMETER_OUT_OF_RANGE: CompletionCode = CompletionCode(0xC9);
    /// Cannot return the number of requested data bytes.
    pub const CANNOT_RETURN_BYTES: CompletionCode = CompletionCode(0xCA);
    /// Requested sensor, data or record not present.
    pub const NOT_PRESENT: CompletionCode = CompletionCode(0xCB);
    /// Invalid data field in request.
    pub const INVALID_DATA_FIELD: CompletionCode = CompletionCode(0xCC);
    /// Command illegal for the sensor or record type.
    pub const ILLEGAL_FOR_TYPE: CompletionCode = CompletionCode(0xCD);
    /// Cannot execute duplicated request.
    pub const DUPLICATED_REQUEST: CompletionCode = CompletionCode(0xCF);
    /// Insufficient privilege level.
    pub const INSUFFICIENT_PRIVILEGE: CompletionCode = CompletionCode(0xD4);
    /// Not supported in present state.
    pub const NOT_SUPPORTED_IN_STATE: CompletionCode = CompletionCode(0xD5);
    /// Unspecified error.
    pub const UNSPECIFIED: CompletionCode = CompletionCode(0xFF);

    /// True for 0x00.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// The generic meaning of the code, for messages.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x00 => "ok",
            0x01..=0x7E => "device-specific error",
            0x80..=0xBE => "command-specific error",
            0xC0 => "node busy",
            0xC1 => "invalid or unsupported command",
            0xC2 => "command invalid for given LUN",
            0xC3 => "timeout while processing command",
            0xC4 => "out of space",
            0xC5 => "reservation cancelled or invalid",
            0xC6 => "request data truncated",
            0xC7 => "request data length invalid",
            0xC8 => "request data field length limit exceeded",
            0xC9 => "parameter out of range",
            0xCA => "cannot return number of requested data bytes",
            0xCB => "requested sensor, data or record not present",
            0xCC => "invalid data field in request",
            0xCD => "command illegal for specified sensor or record type",
            0xCE => "command response could not be provided",
            0xCF => "cannot execute duplicated request",
            0xD0 => "SDR repository in update mode",
            0xD1 => "device in firmware update mode",
            0xD2 => "BMC initialization in progress",
            0xD3 => "destination unavailable",
            0xD4 => "insufficient privilege level",
            0xD5 => "command not supported in present state",
            0xD6 => "command sub-function disabled or unavailable",
            0xFF => "unspecified error",
            _ => "reserved completion code",
        }
    }
}

impl std::fmt::Display for CompletionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.description())
    }
}

/// An IPMI request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Responder's slave address (0x20, the BMC).
    pub rs_addr: u8,
    /// Request netFn (even).
    pub netfn: NetFn,
    /// Responder LUN (bits 1:0).
    pub rs_lun: u8,
    /// Requester address / software ID.
    pub rq_addr: u8,
    /// Request sequence number, 0..=63.
    pub rq_seq: u8,
    /// Requester LUN.
    pub rq_lun: u8,
    /// Command.
    pub cmd: u8,
    /// Request data.
    pub data: Vec<u8>,
}

/// An IPMI response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Requester address the response goes back to.
    pub rq_addr: u8,
    /// Response netFn (odd).
    pub netfn: NetFn,
    /// Requester LUN.
    pub rq_lun: u8,
    /// Responder address.
    pub rs_addr: u8,
    /// Echo of the request's rqSeq.
    pub rq_seq: u8,
    /// Responder LUN.
    pub rs_lun: u8,
    /// Echo of the command.
    pub cmd: u8,
    /// First data byte of every response.
    pub completion_code: CompletionCode,
    /// Response data after the completion code.
    pub data: Vec<u8>,
}

impl Request {
    /// A request from the remote console to the BMC, LUN 0.
    pub fn to_bmc(netfn: NetFn, cmd: u8, rq_seq: u8, data: Vec<u8>) -> Request {
        Request {
            rs_addr: BMC_SLAVE_ADDR,
            netfn,
            rs_lun: 0,
            rq_addr: REMOTE_CONSOLE_SWID,
            rq_seq: rq_seq & 0x3F,
            rq_lun: 0,
            cmd,
            data,
        }
    }

    /// Parses and checks both checksums.
    pub fn parse(b: &[u8]) -> Result<Request, WireError> {
        let m = Frame::parse(b)?;
        if m.netfn.is_response() {
            return Err(WireError::BadField {
                field: "request netFn",
                value: m.netfn.0.into(),
            });
        }
        Ok(Request {
            rs_addr: m.addr1,
            netfn: m.netfn,
            rs_lun: m.lun1,
            rq_addr: m.addr2,
            rq_seq: m.seq,
            rq_lun: m.lun2,
            cmd: m.cmd,
            data: m.data.to_vec(),
        })
    }

    /// Appends the message with both checksums.
    pub fn emit(&self, out: &mut Vec<u8>) {
        emit_frame(
            out,
            [
                self.rs_addr,
                self.netfn.0,
                self.rs_lun,
                self.rq_addr,
                self.rq_seq,
                self.rq_lun,
                self.cmd,
            ],
            None,
            &self.data,
        );
    }

    /// Emitted length.
    pub fn buffer_len(&self) -> usize {
        MESSAGE_OVERHEAD + self.data.len()
    }

    /// The response a BMC would send to this request.
    pub fn response(&self, completion_code: CompletionCode, data: Vec<u8>) -> Response {
        Response {
            rq_addr: self.rq_addr,
            netfn: self.netfn.response(),
            rq_lun: self.rq_lun,
            rs_addr: self.rs_addr,
            rq_seq: self.rq_seq,
            rs_lun: self.rs_lun,
            cmd: self.cmd,
            completion_code,
            data,
        }
    }
}

impl Response {
    /// Parses and checks both checksums; a response must hold at least its
    /// completion code.
    pub fn parse(b: &[u8]) -> Result<Response, WireError> {
        let m = Frame::parse(b)?;
        if !m.netfn.is_response() {
            return Err(WireError::BadField {
                field: "response netFn",
                value: m.netfn.0.into(),
            });
        }
        let (&cc, data) = m.data.split_first().ok_or(WireError::Truncated {
            what: "IPMI response completion code",
            need: MESSAGE_OVERHEAD + 1,
            got: b.len(),
        })?;
        Ok(Response {
            rq_addr: m.addr1,
            netfn: m.netfn,
            rq_lun: m.lun1,
            rs_addr: m.addr2,
            rq_seq: m.seq,
            rs_lun: m.lun2,
            cmd: m.cmd,
            completion_code: CompletionCode(cc),
            data: data.to_vec(),
        })
    }

    /// Appends the message with both checksums.
    pub fn emit(&self, out: &mut Vec<u8>) {
        emit_frame(
            out,
            [
                self.rq_addr,
                self.netfn.0,
                self.rq_lun,
                self.rs_addr,
                self.rq_seq,
                self.rs_lun,
                self.cmd,
            ],
            Some(self.completion_code.0),
            &self.data,
        );
    }
}

struct Frame<'a> {
    addr1: u8,
    netfn: NetFn,
    lun1: u8,
    addr2: u8,
    seq: u8,
    lun2: u8,
    cmd: u8,
    data: &'a [u8],
}

impl<'a> Frame<'a> {
    fn parse(b: &'a [u8]) -> Result<Frame<'a>, WireError> {
        need(b, MESSAGE_OVERHEAD, "IPMI message")?;
        if checksum(&b[0..2]) != b[2] {
            return Err(WireError::Checksum(ChecksumKind::Header));
        }
        let last = b.len() - 1;
        if checksum(&b[3..last]) != b[last] {
            return Err(WireError::Checksum(ChecksumKind::Data));
        }
        Ok(Frame {
            addr1: b[0],
            netfn: NetFn(b[1] >> 2),
            lun1: b[1] & 3,
            addr2: b[3],
            seq: b[4] >> 2,
            lun2: b[4] & 3,
            cmd: b[5],
            data: &b[6..last],
        })
    }
}

fn emit_frame(out: &mut Vec<u8>, h: [u8; 7], cc: Option<u8>, data: &[u8]) {
    let [a1, netfn, lun1, a2, seq, lun2, cmd] = h;
    let start = out.len();
    out.extend_from_slice(&[a1, (netfn << 2) | (lun1 & 3)]);
    out.push(checksum(&out[start..start + 2]));
    out.extend_from_slice(&[a2, (seq << 2) | (lun2 & 3), cmd]);
    if let Some(cc) = cc {
        out.push(cc);
    }
    out.extend_from_slice(data);
    let sum = checksum(&out[start + 3..]);
    out.push(sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::wire::all_truncations_fail;

    #[test]
    fn reference_worked_example() {
        // Get Channel Authentication Capabilities, reference §1.6.
        let bytes = [0x20, 0x18, 0xC8, 0x81, 0x94, 0x38, 0x8E, 0x03, 0x22];
        let r = Request::parse(&bytes).unwrap();
        assert_eq!(r.netfn, NetFn::APP);
        assert_eq!(r.rq_seq, 0x25);
        assert_eq!(r.cmd, 0x38);
        assert_eq!(r.data, [0x8E, 0x03]);
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(r.buffer_len(), bytes.len());
        all_truncations_fail!(&bytes, Request::parse);
    }

    #[test]
    fn get_device_id_request_matches_the_vector() {
        let mut out = Vec::new();
        Request::to_bmc(NetFn::APP, 0x01, 1, vec![]).emit(&mut out);
        assert_eq!(out, [0x20, 0x18, 0xc8, 0x81, 0x04, 0x01, 0x7a]);
    }

    #[test]
    fn response_round_trip_and_checksums() {
        let req = Request::to_bmc(NetFn::CHASSIS, 0x01, 9, vec![]);
        let resp = req.response(CompletionCode::OK, vec![0x01, 0x10, 0x00, 0x70]);
        let mut out = Vec::new();
        resp.emit(&mut out);
        let back = Response::parse(&out).unwrap();
        assert_eq!(back, resp);
        assert_eq!(back.netfn, NetFn(0x01));
        all_truncations_fail!(&out, Response::parse);

        let mut bad = out.clone();
        bad[1] ^= 4;
        assert_eq!(
            Response::parse(&bad),
            Err(WireError::Checksum(ChecksumKind::Header))
        );
        let mut bad = out.clone();
        bad[7] ^= 1;
        assert_eq!(
            Response::parse(&bad),
            Err(WireError::Checksum(ChecksumKind::Data))
        );
        // A request is not a response, and the other way round.
        assert!(Request::parse(&out).is_err());
    }
}
