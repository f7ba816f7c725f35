//! The console state machine against the BMC-side endpoint, in memory, on a
//! fake clock, with a step bound: login rules, privilege checks, replay and
//! MAC drops, session limits and expiry.

use std::time::{Duration, Instant};

use ipmigw::ipmi::crypto::CipherSuite;
use ipmigw::ipmi::session::bmc::{Application, BmcUser, Endpoint, EndpointConfig, Received};
use ipmigw::ipmi::session::console::{
    ActiveSession, ConsoleConfig, Handshake, LoginFailure, SessionError,
};
use ipmigw::ipmi::session::Privilege;
use ipmigw::ipmi::wire::message::{CompletionCode, NetFn, Request};
use ipmigw::ipmi::wire::rakp::RmcpPlusStatus;
use ipmigw::secret::SecretBytes;
use rand::{rngs::StdRng, SeedableRng};

const MAX_STEPS: usize = 16;

/// A tiny BMC: records chassis controls, answers Get Device ID.
#[derive(Default)]
struct Box0 {
    controls: Vec<u8>,
}

impl Application for Box0 {
    fn execute(&mut self, _: Instant, _: Privilege, req: &Request) -> (CompletionCode, Vec<u8>) {
        match (req.netfn, req.cmd) {
            (NetFn::APP, 0x01) => (
                CompletionCode::OK,
                vec![
                    0x20, 0x81, 0x01, 0x00, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x01, 0x10,
                ],
            ),
            (NetFn::CHASSIS, 0x02) => {
                self.controls.push(req.data[0]);
                (CompletionCode::OK, vec![])
            }
            _ => (CompletionCode::INVALID_COMMAND, vec![]),
        }
    }
}

struct Pair {
    bmc: Endpoint,
    app: Box0,
    now: Instant,
}

fn user(name: &str, pw: &str, privilege: Privilege) -> BmcUser {
    BmcUser {
        name: name.as_bytes().to_vec(),
        password: SecretBytes::from(pw.as_bytes()),
        privilege,
        enabled: true,
    }
}

impl Pair {
    fn new(cfg: EndpointConfig) -> Pair {
        let users = vec![
            user("admin", "Adm1nPass", Privilege::Administrator),
            user("operator", "0perPass", Privilege::Operator),
            user("viewer", "V1ewPass", Privilege::User),
            BmcUser {
                enabled: false,
                ..user("disabled", "D1sabled", Privilege::User)
            },
        ];
        Pair {
            bmc: Endpoint::new(cfg, users, Box::new(StdRng::seed_from_u64(9))),
            app: Box0::default(),
            now: Instant::now(),
        }
    }

    fn default() -> Pair {
        Pair::new(EndpointConfig::new([0x42; 16]))
    }

    fn login(&mut self, cfg: ConsoleConfig) -> Result<Box<ActiveSession>, LoginFailure> {
        // The console's own clock: it jumps to the handshake's timer when a
        // reply was discarded (re-sending the step), while the BMC's stands
        // still, as before.
        let mut console_now = self.now;
        let mut hs = Handshake::start(cfg, Box::new(StdRng::seed_from_u64(3)), console_now)
            .map_err(LoginFailure::from)?;
        for _ in 0..MAX_STEPS {
            if let Some(outcome) = hs.poll_outcome() {
                return outcome;
            }
            let Some(out) = hs.poll_transmit() else {
                console_now = hs.poll_timeout().expect("a running login has a timer");
                hs.handle_timeout(console_now);
                continue;
            };
            let Some(reply) = self.bmc.handle_datagram(self.now, &out, &mut self.app) else {
                panic!("BMC did not answer in step {:?}", hs.step());
            };
            let _ = hs.handle_datagram(console_now, &reply.bytes);
        }
        panic!("no login in {MAX_STEPS} steps")
    }

    fn call(
        &mut self,
        s: &mut ActiveSession,
        netfn: NetFn,
        cmd: u8,
        data: Vec<u8>,
    ) -> (CompletionCode, Vec<u8>) {
        let d = s.send_request(netfn, cmd, data);
        let reply = self
            .bmc
            .handle_datagram(self.now, &d, &mut self.app)
            .expect("an answer");
        let r = s.handle_datagram(&reply.bytes).expect("a valid reply");
        (r.completion_code, r.data)
    }
}

fn console(name: &str, pw: &str, privilege: Privilege) -> ConsoleConfig {
    ConsoleConfig::new(name.as_bytes(), SecretBytes::from(pw.as_bytes()), privilege)
}

#[test]
fn admin_logs_in_with_17_and_controls_power() {
    let mut p = Pair::default();
    let mut s = p
        .login(console("admin", "Adm1nPass", Privilege::Administrator))
        .unwrap();
    assert_eq!(s.suite(), CipherSuite::Suite17);
    assert_eq!(p.bmc.active_sessions(), [Privilege::Administrator]);
    let (cc, data) = p.call(&mut s, NetFn::APP, 0x01, vec![]);
    assert!(cc.is_ok() && data.len() == 11);
    let (cc, _) = p.call(&mut s, NetFn::CHASSIS, 0x02, vec![1]);
    assert!(cc.is_ok());
    assert_eq!(p.app.controls, [1]);
    assert_eq!(p.bmc.stats().logins, 1);
}

#[test]
fn suite_3_only_bmc_negotiates_3_and_says_why_17_was_refused() {
    let mut cfg = EndpointConfig::new([1; 16]);
    cfg.suites = vec![CipherSuite::Suite3];
    let mut p = Pair::new(cfg);
    let s = p
        .login(console("admin", "Adm1nPass", Privilege::User))
        .unwrap();
    assert_eq!(s.suite(), CipherSuite::Suite3);
    let mut c = console("admin", "Adm1nPass", Privilege::User);
    c.cipher_suites = vec![CipherSuite::Suite17];
    let err = p.login(c).unwrap_err().error;
    assert!(
        matches!(
            err,
            SessionError::NoSuiteAccepted {
                status: RmcpPlusStatus::INVALID_AUTH_ALGORITHM,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_user_session_cannot_power_off() {
    let mut p = Pair::default();
    let mut s = p
        .login(console("viewer", "V1ewPass", Privilege::User))
        .unwrap();
    let (cc, _) = p.call(&mut s, NetFn::CHASSIS, 0x02, vec![0]);
    assert_eq!(cc, CompletionCode::INSUFFICIENT_PRIVILEGE);
    assert!(p.app.controls.is_empty());
    // Nor raise itself above its limit (0x81).
    let (cc, _) = p.call(&mut s, NetFn::APP, 0x3B, vec![3]);
    assert_eq!(cc, CompletionCode(0x81));
    assert_eq!(p.bmc.stats().privilege_refused, 1);
}

#[test]
fn sessions_start_at_user_until_raised() {
    let mut p = Pair::default();
    let mut s = p
        .login(console("operator", "0perPass", Privilege::User))
        .unwrap();
    // The login asked for USER only, so the session's ceiling is USER.
    let (cc, _) = p.call(&mut s, NetFn::CHASSIS, 0x02, vec![1]);
    assert_eq!(cc, CompletionCode::INSUFFICIENT_PRIVILEGE);
    let mut s = p
        .login(console("operator", "0perPass", Privilege::Operator))
        .unwrap();
    let (cc, _) = p.call(&mut s, NetFn::CHASSIS, 0x02, vec![1]);
    assert!(cc.is_ok());
}

#[test]
fn login_refusals() {
    let mut p = Pair::default();
    let wrong = p
        .login(console("admin", "nope", Privilege::Administrator))
        .unwrap_err();
    assert!(matches!(wrong.error, SessionError::AuthenticationFailed(_)));
    // The console's RAKP 3 error frees the half-open session.
    p.bmc
        .handle_datagram(p.now, &wrong.farewell.unwrap(), &mut p.app);
    assert_eq!(p.bmc.session_count(), 0);
    for (name, privilege) in [
        ("nobody", Privilege::User),
        ("disabled", Privilege::User),
        ("viewer", Privilege::Operator),
    ] {
        let err = p
            .login(console(name, "D1sabled", privilege))
            .unwrap_err()
            .error;
        assert!(
            matches!(err, SessionError::AuthenticationFailed(_)),
            "{name}: {err}"
        );
    }
    assert_eq!(
        p.bmc.session_count(),
        0,
        "refused logins leave no session behind"
    );
    assert_eq!(p.bmc.stats().logins, 0);
}

#[test]
fn session_limit_is_answered_with_insufficient_resources() {
    let mut cfg = EndpointConfig::new([2; 16]);
    cfg.max_sessions = 2;
    let mut p = Pair::new(cfg);
    let _a = p
        .login(console("admin", "Adm1nPass", Privilege::User))
        .unwrap();
    let _b = p
        .login(console("admin", "Adm1nPass", Privilege::User))
        .unwrap();
    let err = p
        .login(console("admin", "Adm1nPass", Privilege::User))
        .unwrap_err()
        .error;
    assert!(
        matches!(
            err,
            SessionError::Refused {
                status: RmcpPlusStatus::INSUFFICIENT_RESOURCES,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        p.bmc.stats().sessions_full,
        2,
        "one refusal per suite tried (17, then 3)"
    );
    // Idle sessions expire (60 s default), freeing the slots.
    p.now += Duration::from_secs(61);
    p.bmc.handle_timeout(p.now);
    assert_eq!(p.bmc.session_count(), 0);
    assert!(p
        .login(console("admin", "Adm1nPass", Privilege::User))
        .is_ok());
}

#[test]
fn replayed_forged_and_foreign_packets_get_no_answer() {
    let mut p = Pair::default();
    let mut s = p
        .login(console("admin", "Adm1nPass", Privilege::Administrator))
        .unwrap();
    let d = s.send_request(NetFn::CHASSIS, 0x02, vec![0]);
    assert!(p.bmc.handle_datagram(p.now, &d, &mut p.app).is_some());
    assert!(
        p.bmc.handle_datagram(p.now, &d, &mut p.app).is_none(),
        "replay"
    );
    assert_eq!(
        p.app.controls,
        [0],
        "the replayed power off did not run twice"
    );
    let mut forged = s.send_request(NetFn::CHASSIS, 0x02, vec![0]);
    *forged.last_mut().unwrap() ^= 1;
    assert!(p.bmc.handle_datagram(p.now, &forged, &mut p.app).is_none());
    let mut other = s.send_request(NetFn::CHASSIS, 0x02, vec![0]);
    other[6] ^= 0x55;
    assert!(p.bmc.handle_datagram(p.now, &other, &mut p.app).is_none());
    let st = p.bmc.stats();
    assert_eq!(
        (st.out_of_window, st.bad_integrity, st.unknown_session),
        (1, 1, 1)
    );
    assert_eq!(p.app.controls, [0]);
}

/// The bridge's way: the endpoint hands the application's commands back
/// and seals the answer when it comes; its own commands and refusals are
/// answered at once, and an answer whose session ended goes nowhere.
#[test]
fn an_application_command_can_be_answered_later() {
    let mut p = Pair::default();
    let mut s = p
        .login(console("admin", "Adm1nPass", Privilege::Operator))
        .unwrap();
    let d = s.send_request(NetFn::CHASSIS, 0x02, vec![1]);
    let Some(Received::Command(cmd)) = p.bmc.receive(p.now, &d) else {
        panic!("chassis control is the application's");
    };
    assert_eq!(
        (cmd.request().netfn, cmd.request().cmd),
        (NetFn::CHASSIS, 0x02)
    );
    assert_eq!(cmd.privilege(), Privilege::Operator);
    assert!(p.app.controls.is_empty(), "nothing ran it yet");
    let out = p.bmc.answer(cmd, CompletionCode::OK, vec![]).unwrap();
    let r = s.handle_datagram(&out.bytes).expect("an authentic reply");
    assert!(r.completion_code.is_ok());
    // Session commands and privilege refusals never reach the application.
    let info = s.send_request(NetFn::APP, 0x3D, vec![0]);
    assert!(matches!(
        p.bmc.receive(p.now, &info),
        Some(Received::Reply(_))
    ));
    let mut viewer = p
        .login(console("viewer", "V1ewPass", Privilege::User))
        .unwrap();
    let off = viewer.send_request(NetFn::CHASSIS, 0x02, vec![0]);
    let Some(Received::Reply(refusal)) = p.bmc.receive(p.now, &off) else {
        panic!("a USER session's power off is refused by the endpoint");
    };
    let r = viewer.handle_datagram(&refusal.bytes).unwrap();
    assert_eq!(r.completion_code, CompletionCode::INSUFFICIENT_PRIVILEGE);
    // The session ends while its command runs: the answer is not sealed.
    let d = s.send_request(NetFn::APP, 0x01, vec![]);
    let Some(Received::Command(late)) = p.bmc.receive(p.now, &d) else {
        panic!("Get Device ID is the application's");
    };
    p.now += Duration::from_secs(61);
    p.bmc.handle_timeout(p.now);
    assert_eq!(p.bmc.session_count(), 0);
    assert!(p.bmc.answer(late, CompletionCode::OK, vec![]).is_none());
}

#[test]
fn close_session_ends_it() {
    let mut p = Pair::default();
    let mut s = p
        .login(console("admin", "Adm1nPass", Privilege::User))
        .unwrap();
    let close = s.close_session_request();
    assert!(p.bmc.handle_datagram(p.now, &close, &mut p.app).is_some());
    assert_eq!(p.bmc.session_count(), 0);
    let d = s.send_request(NetFn::APP, 0x01, vec![]);
    assert!(p.bmc.handle_datagram(p.now, &d, &mut p.app).is_none());
}

#[test]
fn garbage_is_dropped_without_a_reply_or_panic() {
    let mut p = Pair::default();
    let mut x: u32 = 7;
    for len in 0..300usize {
        let junk: Vec<u8> = (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i < 5 {
                    [0x06, 0x00, 0xFF, 0x07, 0x06][i]
                } else {
                    (x >> 16) as u8
                }
            })
            .collect();
        assert!(p.bmc.handle_datagram(p.now, &junk, &mut p.app).is_none() || len < 20);
    }
    assert!(p.bmc.stats().malformed > 0);
}

/// Sends a raw Open Session Request proposing `algorithms`; returns the status.
fn open_session_status(
    p: &mut Pair,
    algorithms: ipmigw::ipmi::wire::rakp::AlgorithmTriple,
) -> RmcpPlusStatus {
    use ipmigw::ipmi::wire::rakp::{OpenSessionRequest, OpenSessionResponse};
    use ipmigw::ipmi::wire::rmcp::RmcpHeader;
    use ipmigw::ipmi::wire::session::{PayloadKind, PayloadType, RmcpPlusHeader, SessionPacket};
    let mut payload = Vec::new();
    OpenSessionRequest {
        tag: 1,
        max_privilege: 4,
        console_sid: 0x1234,
        algorithms,
    }
    .emit(&mut payload);
    let mut d = Vec::new();
    RmcpHeader::IPMI.emit(&mut d);
    RmcpPlusHeader {
        payload_type: PayloadType::setup(PayloadKind::OPEN_SESSION_REQUEST),
        session_id: 0,
        seq: 0,
        payload_len: payload.len() as u16,
    }
    .emit(&mut d);
    d.extend(payload);
    let reply = p
        .bmc
        .handle_datagram(p.now, &d, &mut p.app)
        .expect("an answer");
    let SessionPacket::RmcpPlus(r) = SessionPacket::parse(&reply.bytes[4..]).unwrap() else {
        panic!()
    };
    OpenSessionResponse::parse(r.payload).unwrap().status
}

#[test]
fn suite_0_and_mixed_triples_are_refused_by_name() {
    use ipmigw::ipmi::wire::rakp::AlgorithmTriple;
    let mut p = Pair::default();
    let t = |auth, integrity, confidentiality| AlgorithmTriple {
        auth,
        integrity,
        confidentiality,
    };
    assert_eq!(
        open_session_status(&mut p, t(0, 0, 0)),
        RmcpPlusStatus::INVALID_AUTH_ALGORITHM,
        "suite 0"
    );
    // SHA256 authentication with SHA1 integrity: each exists, the triple does not.
    assert_eq!(
        open_session_status(&mut p, t(3, 1, 1)),
        RmcpPlusStatus::INVALID_INTEGRITY_ALGORITHM
    );
    // Suite 16 (no confidentiality): every configured suite encrypts.
    assert_eq!(
        open_session_status(&mut p, t(3, 4, 0)),
        RmcpPlusStatus::INVALID_CONFIDENTIALITY_ALGORITHM
    );
    assert_eq!(
        open_session_status(&mut p, t(3, 4, 1)),
        RmcpPlusStatus::OK,
        "suite 17"
    );
    assert_eq!(p.bmc.session_count(), 1);
}

/// The bridge's way with Get System GUID: inside a session it is the
/// application's (forwarded to the real BMC), not the endpoint's own GUID.
#[test]
fn a_forwarding_endpoint_hands_get_system_guid_to_the_application() {
    let mut plain = Pair::default();
    let mut s = plain
        .login(console("viewer", "V1ewPass", Privilege::User))
        .unwrap();
    let (cc, guid) = plain.call(&mut s, NetFn::APP, 0x37, vec![]);
    assert_eq!(
        (cc, guid),
        (CompletionCode::OK, vec![0x42; 16]),
        "a BMC's own"
    );
    let mut cfg = EndpointConfig::new([0x42; 16]);
    cfg.forward_system_guid = true;
    let mut p = Pair::new(cfg);
    let mut s = p
        .login(console("viewer", "V1ewPass", Privilege::User))
        .unwrap();
    let d = s.send_request(NetFn::APP, 0x37, vec![]);
    let Some(Received::Command(cmd)) = p.bmc.receive(p.now, &d) else {
        panic!("Get System GUID is the application's");
    };
    let real = vec![7u8; 16];
    let out = p.bmc.answer(cmd, CompletionCode::OK, real.clone()).unwrap();
    assert_eq!(s.handle_datagram(&out.bytes).unwrap().data, real);
}

/// A withheld command gets no answer, and neither does a copy re-sent
/// within the repeat window (it is not run again either); a new command
/// is the application's as usual.
#[test]
fn a_withheld_command_and_its_resent_copies_get_no_answer() {
    let mut cfg = EndpointConfig::new([0x42; 16]);
    cfg.repeat_window = Some(Duration::from_secs(10));
    let mut p = Pair::new(cfg);
    let mut s = p
        .login(console("admin", "Adm1nPass", Privilege::Administrator))
        .unwrap();
    let boot_flags = vec![0x05, 0x80, 0x04, 0, 0, 0];
    let d = s.send_request(NetFn::CHASSIS, 0x08, boot_flags.clone());
    let Some(Received::Command(cmd)) = p.bmc.receive(p.now, &d) else {
        panic!("Set System Boot Options is the application's");
    };
    p.bmc.withhold(cmd);
    // ipmitool re-sends the request (a new session sequence number).
    p.now += Duration::from_secs(1);
    let again = s.send_request(NetFn::CHASSIS, 0x08, boot_flags.clone());
    assert!(
        p.bmc.receive(p.now, &again).is_none(),
        "the copy is withheld too"
    );
    let other = s.send_request(NetFn::CHASSIS, 0x01, vec![]);
    assert!(matches!(
        p.bmc.receive(p.now, &other),
        Some(Received::Command(_))
    ));
    // After the window the same bytes are a new command.
    p.now += Duration::from_secs(11);
    let later = s.send_request(NetFn::CHASSIS, 0x08, boot_flags);
    assert!(matches!(
        p.bmc.receive(p.now, &later),
        Some(Received::Command(_))
    ));
}
