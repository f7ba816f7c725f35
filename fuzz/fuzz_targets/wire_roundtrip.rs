//! RMCP / ASF / session framing and IPMI messages: parse never panics; what
//! parses re-emits to bytes that parse to the same value.
#![no_main]
use ipmigw::ipmi::wire::asf::AsfMessage;
use ipmigw::ipmi::wire::message::{Request, Response};
use ipmigw::ipmi::wire::rmcp::RmcpHeader;
use ipmigw::ipmi::wire::session::{emit_v15_sessionless, SessionPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, rest)) = RmcpHeader::parse(data) {
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(RmcpHeader::parse(&out).unwrap().0, h);
        if let Ok(a) = AsfMessage::parse(rest) {
            let mut out = Vec::new();
            a.emit(&mut out);
            assert_eq!(AsfMessage::parse(&out).unwrap(), a);
        }
        if let Ok(SessionPacket::V15(p)) = SessionPacket::parse(rest) {
            if p.auth_type == 0 && p.seq == 0 && p.session_id == 0 {
                let mut out = Vec::new();
                emit_v15_sessionless(p.message, &mut out);
                assert_eq!(SessionPacket::parse(&out).unwrap(), SessionPacket::V15(p));
            }
        }
        if let Ok(SessionPacket::RmcpPlus(p)) = SessionPacket::parse(rest) {
            let mut out = Vec::new();
            p.header.emit(&mut out);
            out.extend_from_slice(p.payload);
            let SessionPacket::RmcpPlus(q) = SessionPacket::parse(&out).unwrap() else { panic!() };
            assert_eq!((q.header, q.payload), (p.header, p.payload));
        }
    }
    if let Ok(r) = Request::parse(data) {
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out.len(), r.buffer_len());
        assert_eq!(Request::parse(&out).unwrap(), r);
    }
    if let Ok(r) = Response::parse(data) {
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(Response::parse(&out).unwrap(), r);
    }
});
