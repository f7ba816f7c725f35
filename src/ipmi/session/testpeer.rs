//! A scripted BMC for in-memory console tests: it answers login and a few
//! commands correctly, and has knobs to misbehave the ways an attacker or a
//! broken BMC would. The full BMC side lives in the simulator; this is only
//! enough peer to prove the console refuses what it must.

use rand::{rngs::StdRng, RngCore, SeedableRng};

use crate::ipmi::crypto::integrity::{open, seal};
use crate::ipmi::crypto::keys::{self, RakpInputs, SessionKeys};
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::console::setup_datagram as setup;
use crate::ipmi::wire::message::{CompletionCode, Request};
use crate::ipmi::wire::rakp::*;
use crate::ipmi::wire::rmcp::RmcpHeader;
use crate::ipmi::wire::session::*;
use crate::secret::SecretBytes;

pub(crate) use crate::test_clock::t0;

#[derive(Default, Clone)]
pub struct Knobs {
    /// Suites the peer accepts; others get status 0x11.
    pub accept: Vec<u8>,
    /// Answer Open Session with these algorithms instead of the proposed.
    pub downgrade_to: Option<AlgorithmTriple>,
    /// Only downgrade proposals of this suite (others are answered as asked).
    pub downgrade_only: Option<u8>,
    /// Flip a bit of the RAKP 2 HMAC.
    pub corrupt_rakp2: bool,
    /// Flip a bit of the RAKP 4 ICV.
    pub corrupt_rakp4: bool,
    /// Claim a Kg is set in auth caps.
    pub kg_set: bool,
}

pub struct Peer {
    pub knobs: Knobs,
    password: SecretBytes,
    rng: StdRng,
    guid: [u8; 16],
    console_sid: u32,
    bmc_sid: u32,
    suite: Option<CipherSuite>,
    rm: [u8; 16],
    rc: [u8; 16],
    role: u8,
    username: Vec<u8>,
    pub keys: Option<SessionKeys>,
    pub out_seq: u32,
    /// In-session requests received (after their MAC verified).
    pub commands: Vec<Request>,
    /// RAKP 3 status bytes received.
    pub rakp3_statuses: Vec<u8>,
}

impl Peer {
    pub fn new(password: &[u8], knobs: Knobs) -> Peer {
        Peer {
            knobs,
            password: SecretBytes::from(password),
            rng: StdRng::seed_from_u64(7),
            guid: [0x5E; 16],
            console_sid: 0,
            bmc_sid: 0,
            suite: None,
            rm: [0; 16],
            rc: [0; 16],
            role: 0,
            username: vec![],
            keys: None,
            out_seq: 0,
            commands: vec![],
            rakp3_statuses: vec![],
        }
    }

    /// Answers one datagram from the console, if it deserves an answer.
    pub fn handle(&mut self, d: &[u8]) -> Option<Vec<u8>> {
        let (_, rest) = RmcpHeader::parse(d).ok()?;
        match SessionPacket::parse(rest).ok()? {
            SessionPacket::V15(p) => {
                let req = Request::parse(p.message).ok()?;
                let caps = vec![
                    0x01,
                    0x80,
                    0x04 | if self.knobs.kg_set { 0x20 } else { 0 },
                    0x02,
                    0,
                    0,
                    0,
                    0,
                ];
                let mut msg = Vec::new();
                req.response(CompletionCode::OK, caps).emit(&mut msg);
                let mut out = Vec::new();
                RmcpHeader::IPMI.emit(&mut out);
                emit_v15_sessionless(&msg, &mut out);
                Some(out)
            }
            SessionPacket::RmcpPlus(p) => match p.header.payload_type.kind {
                PayloadKind::OPEN_SESSION_REQUEST => self.open_session(p.payload),
                PayloadKind::RAKP1 => self.rakp1(p.payload),
                PayloadKind::RAKP3 => self.rakp3(p.payload),
                PayloadKind::IPMI => self.command(&p),
                _ => None,
            },
        }
    }

    fn open_session(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let req = OpenSessionRequest::parse(payload).ok()?;
        self.console_sid = req.console_sid;
        let suite = CipherSuite::from_algorithms(req.algorithms)?;
        let accepted = self.knobs.accept.contains(&suite.id());
        let mut out = Vec::new();
        let resp = if accepted {
            self.suite = Some(suite);
            self.bmc_sid = self.rng.next_u32() | 1;
            OpenSessionResponse {
                tag: req.tag,
                status: RmcpPlusStatus::OK,
                console_sid: Some(req.console_sid),
                accepted: Some(OpenSessionAccepted {
                    max_privilege: 4,
                    bmc_sid: self.bmc_sid,
                    algorithms: match self.knobs.downgrade_only {
                        Some(id) if id != suite.id() => req.algorithms,
                        _ => self.knobs.downgrade_to.unwrap_or(req.algorithms),
                    },
                }),
            }
        } else {
            OpenSessionResponse {
                tag: req.tag,
                status: RmcpPlusStatus::NO_CIPHER_SUITE_MATCH,
                console_sid: Some(req.console_sid),
                accepted: None,
            }
        };
        resp.emit(&mut out);
        Some(setup(PayloadKind::OPEN_SESSION_RESPONSE, &out))
    }

    fn inputs(&self) -> RakpInputs<'_> {
        RakpInputs {
            console_sid: self.console_sid,
            bmc_sid: self.bmc_sid,
            console_random: &self.rm,
            bmc_random: &self.rc,
            bmc_guid: &self.guid,
            role: self.role,
            username: &self.username,
        }
    }

    fn rakp1(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let r1 = Rakp1::parse(payload).ok()?;
        self.rm = r1.console_random;
        self.role = r1.role;
        self.username = r1.username;
        self.rng.fill_bytes(&mut self.rc);
        let suite = self.suite?;
        let mut code = keys::rakp2_auth_code(suite.auth(), &self.password, &self.inputs())
            .expose()
            .to_vec();
        if self.knobs.corrupt_rakp2 {
            code[0] ^= 1;
        }
        let r2 = Rakp2 {
            tag: r1.tag,
            status: RmcpPlusStatus::OK,
            console_sid: self.console_sid,
            bmc_random: self.rc,
            bmc_guid: self.guid,
            auth_code: code,
        };
        let mut out = Vec::new();
        r2.emit(&mut out);
        Some(setup(PayloadKind::RAKP2, &out))
    }

    fn rakp3(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let r3 = Rakp3::parse(payload).ok()?;
        self.rakp3_statuses.push(r3.status.0);
        if !r3.status.is_ok() {
            return None;
        }
        let suite = self.suite?;
        let ok = keys::verify_rakp3(suite.auth(), &self.password, &self.inputs(), &r3.auth_code);
        let mut r4 = Rakp4 {
            tag: r3.tag,
            status: if ok {
                RmcpPlusStatus::OK
            } else {
                RmcpPlusStatus::INVALID_INTEGRITY_CHECK
            },
            console_sid: self.console_sid,
            icv: vec![],
        };
        if ok {
            let k = SessionKeys::derive(suite, &self.password, None, &self.inputs());
            r4.icv = k.rakp4_icv(&self.inputs());
            if self.knobs.corrupt_rakp4 {
                r4.icv[0] ^= 1;
            }
            self.keys = Some(k);
        }
        let mut out = Vec::new();
        r4.emit(&mut out);
        Some(setup(PayloadKind::RAKP4, &out))
    }

    fn command(&mut self, p: &RmcpPlusPacket<'_>) -> Option<Vec<u8>> {
        if p.header.session_id != self.bmc_sid {
            return None;
        }
        let v = open(self.keys.as_ref()?, p).ok()?;
        let req = Request::parse(v.plaintext()).ok()?;
        let data = match (req.netfn.0, req.cmd) {
            (0x06, 0x3B) => vec![req.data[0] & 0x0F],
            (0x06, 0x01) => vec![
                0x01, 0x81, 0x01, 0x00, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x01, 0x10,
            ],
            (0x00, 0x01) => vec![0x01, 0x10, 0x00],
            _ => vec![],
        };
        self.commands.push(req.clone());
        Some(self.reply(&req, CompletionCode::OK, data))
    }

    /// Seals a response in the session, with the next outbound sequence.
    pub fn reply(&mut self, req: &Request, cc: CompletionCode, data: Vec<u8>) -> Vec<u8> {
        self.out_seq += 1;
        self.reply_with_seq(req, cc, data, self.out_seq)
    }

    /// Seals a response with a chosen sequence number.
    pub fn reply_with_seq(
        &mut self,
        req: &Request,
        cc: CompletionCode,
        data: Vec<u8>,
        seq: u32,
    ) -> Vec<u8> {
        let mut msg = Vec::new();
        req.response(cc, data).emit(&mut msg);
        let mut iv = [0u8; 16];
        self.rng.fill_bytes(&mut iv);
        seal(
            self.keys.as_ref().expect("session up"),
            PayloadKind::IPMI,
            self.console_sid,
            seq,
            &msg,
            &iv,
        )
    }
}
