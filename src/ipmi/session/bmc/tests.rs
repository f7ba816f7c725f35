//! The endpoint's login rules driven packet by packet, on a fake clock:
//! which names get a RAKP 2 HMAC, and the back-off after failed logins.
//! [`open`] and [`rakp1`] also serve the bridge's tests.

use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::ipmi::session::testpeer::t0;

const GUID: [u8; 16] = [0x42; 16];
const NAME: &[u8] = b"alice";
const PASSWORD: &[u8] = b"Right-Passw0rd-16";
const CONSOLE_SID: u32 = 0x0A0B_0C0D;
/// ADMINISTRATOR with name-only lookup, as ipmitool asks by default.
const ROLE: u8 = 0x14;
const SUITE: CipherSuite = CipherSuite::Suite17;

const LOCKOUT: Lockout = Lockout {
    after_failures: 3,
    base: Duration::from_secs(1),
    max: Duration::from_secs(5),
};

struct NoApp;

impl Application for NoApp {
    fn execute(&mut self, _: Instant, _: Privilege, _: &Request) -> (CompletionCode, Vec<u8>) {
        (CompletionCode::INVALID_COMMAND, vec![])
    }
}

fn endpoint(lockout: Option<Lockout>) -> Endpoint {
    let mut cfg = EndpointConfig::new(GUID);
    cfg.lockout = lockout;
    let users = vec![BmcUser {
        name: NAME.to_vec(),
        password: SecretBytes::from(PASSWORD),
        privilege: Privilege::Administrator,
        enabled: true,
    }];
    Endpoint::new(cfg, users, Box::new(StdRng::seed_from_u64(5)))
}

/// Sends one setup payload; returns the kind and payload of the answer.
fn exchange(
    ep: &mut Endpoint,
    now: Instant,
    kind: PayloadKind,
    payload: &[u8],
) -> Option<(PayloadKind, Vec<u8>)> {
    let out = ep.handle_datagram(now, &setup_datagram(kind, payload), &mut NoApp)?;
    let (_, rest) = RmcpHeader::parse(&out.bytes).unwrap();
    match SessionPacket::parse(rest).unwrap() {
        SessionPacket::RmcpPlus(p) => Some((p.header.payload_type.kind, p.payload.to_vec())),
        SessionPacket::V15(_) => panic!("an IPMI 1.5 answer to RMCP+ setup"),
    }
}

/// Open Session: the BMC session ID, or the refusing status.
pub(crate) fn open(ep: &mut Endpoint, now: Instant) -> Result<u32, RmcpPlusStatus> {
    open_as(ep, now, CONSOLE_SID)
}

/// Open Session from another console session ID: a request repeating a
/// half-open session's console SID gets that session back.
fn open_as(ep: &mut Endpoint, now: Instant, console_sid: u32) -> Result<u32, RmcpPlusStatus> {
    let mut p = Vec::new();
    OpenSessionRequest {
        tag: 1,
        max_privilege: 0,
        console_sid,
        algorithms: SUITE.algorithms(),
    }
    .emit(&mut p);
    let (kind, reply) = exchange(ep, now, PayloadKind::OPEN_SESSION_REQUEST, &p).unwrap();
    assert_eq!(kind, PayloadKind::OPEN_SESSION_RESPONSE);
    let r = OpenSessionResponse::parse(&reply).unwrap();
    r.accepted.map(|a| a.bmc_sid).ok_or(r.status)
}

/// RAKP 1 for `name`: the parsed RAKP 2 and its raw payload.
pub(crate) fn rakp1(
    ep: &mut Endpoint,
    now: Instant,
    bmc_sid: u32,
    name: &[u8],
) -> (Rakp2, Vec<u8>) {
    let mut p = Vec::new();
    Rakp1 {
        tag: 2,
        bmc_sid,
        console_random: [7; 16],
        role: ROLE,
        username: name.to_vec(),
    }
    .emit(&mut p);
    let (kind, reply) = exchange(ep, now, PayloadKind::RAKP1, &p).unwrap();
    assert_eq!(kind, PayloadKind::RAKP2);
    (Rakp2::parse(&reply).unwrap(), reply)
}

/// RAKP 3 with `code` as the HMAC and `status` as the console's verdict:
/// the RAKP 4 status, or None when the BMC stays silent.
fn rakp3(
    ep: &mut Endpoint,
    now: Instant,
    bmc_sid: u32,
    status: RmcpPlusStatus,
    code: Vec<u8>,
) -> Option<RmcpPlusStatus> {
    let mut p = Vec::new();
    Rakp3 {
        tag: 3,
        status,
        bmc_sid,
        auth_code: code,
    }
    .emit(&mut p);
    let (kind, reply) = exchange(ep, now, PayloadKind::RAKP3, &p)?;
    assert_eq!(kind, PayloadKind::RAKP4);
    Some(Rakp4::parse(&reply).unwrap().status)
}

/// A whole login as `name` with `password`: Ok, or the first refusing
/// status. A wrong password shows as a wrong RAKP 3 HMAC.
fn login(
    ep: &mut Endpoint,
    now: Instant,
    name: &[u8],
    password: &[u8],
) -> Result<(), RmcpPlusStatus> {
    let bmc_sid = open(ep, now)?;
    let (r2, _) = rakp1(ep, now, bmc_sid, name);
    if !r2.status.is_ok() {
        return Err(r2.status);
    }
    let inputs = RakpInputs {
        console_sid: CONSOLE_SID,
        bmc_sid,
        console_random: &[7; 16],
        bmc_random: &r2.bmc_random,
        bmc_guid: &GUID,
        role: ROLE,
        username: name,
    };
    let code = keys::rakp3_auth_code(SUITE.auth(), &SecretBytes::from(password), &inputs);
    match rakp3(ep, now, bmc_sid, RmcpPlusStatus::OK, code.expose().to_vec()) {
        Some(RmcpPlusStatus::OK) => Ok(()),
        Some(status) => Err(status),
        None => panic!("no RAKP 4"),
    }
}

fn wrong_password(ep: &mut Endpoint, now: Instant) {
    assert_eq!(
        login(ep, now, NAME, b"wrong"),
        Err(RmcpPlusStatus::INVALID_INTEGRITY_CHECK)
    );
}

const BUSY: Result<(), RmcpPlusStatus> = Err(RmcpPlusStatus::INSUFFICIENT_RESOURCES);

#[test]
fn the_configured_name_gets_an_hmac_and_any_other_name_only_a_refusal() {
    let t = t0();
    let mut ep = endpoint(None);
    let sid = open(&mut ep, t).unwrap();
    let (r2, raw) = rakp1(&mut ep, t, sid, NAME);
    assert!(r2.status.is_ok());
    assert_eq!(r2.auth_code.len(), keys::auth_code_len(SUITE.auth()));
    for name in [&b"mallory"[..], b"root", b"Alice", b"alice ", b"ALICE"] {
        let sid = open(&mut ep, t).unwrap();
        let (r2, raw_refusal) = rakp1(&mut ep, t, sid, name);
        assert_eq!(
            r2.status,
            RmcpPlusStatus::UNAUTHORIZED_NAME,
            "{}",
            String::from_utf8_lossy(name)
        );
        // Tag, status, reserved, console SID: no random, GUID or HMAC on
        // the wire, so nothing to crack.
        assert_eq!(raw_refusal.len(), 8);
    }
    assert_eq!(raw.len(), 40 + r2.auth_code.len());
    assert_eq!(ep.session_count(), 1, "refused names leave no session");
}

#[test]
fn backoff_starts_at_the_threshold_doubles_and_stops_at_the_cap() {
    assert_eq!(LOCKOUT.backoff(0), None);
    assert_eq!(LOCKOUT.backoff(2), None);
    let secs = |n| LOCKOUT.backoff(n).map(|d| d.as_secs());
    assert_eq!(
        (3..=8).map(secs).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(4), Some(5), Some(5), Some(5)]
    );
    assert_eq!(LOCKOUT.backoff(u32::MAX), Some(LOCKOUT.max), "no overflow");
    let zero = Lockout {
        after_failures: 0,
        ..LOCKOUT
    };
    assert_eq!(zero.backoff(1), Some(LOCKOUT.base));
}

#[test]
fn after_three_failures_even_the_right_password_waits_out_the_backoff() {
    let t0 = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    wrong_password(&mut ep, t0);
    assert_eq!(
        login(&mut ep, t0, b"mallory", PASSWORD),
        Err(RmcpPlusStatus::UNAUTHORIZED_NAME)
    );
    assert_eq!(ep.locked_until(t0), None, "two failures: no back-off yet");
    wrong_password(&mut ep, t0);
    assert_eq!(ep.locked_until(t0), Some(t0 + Duration::from_secs(1)));
    assert_eq!(ep.stats().lockouts, 1);

    let t = t0 + Duration::from_millis(999);
    assert_eq!(login(&mut ep, t, NAME, PASSWORD), BUSY);
    assert_eq!(
        ep.session_count(),
        0,
        "a refused Open Session takes no slot"
    );
    assert_eq!(ep.stats().locked_out, 1);

    let t = t0 + Duration::from_secs(1);
    assert_eq!(ep.locked_until(t), None);
    assert_eq!(login(&mut ep, t, NAME, PASSWORD), Ok(()));
    assert_eq!(ep.stats().logins, 1);
}

#[test]
fn each_further_failure_doubles_the_wait_up_to_the_cap() {
    let mut t = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    wrong_password(&mut ep, t);
    wrong_password(&mut ep, t);
    for want in [1, 2, 4, 5, 5] {
        wrong_password(&mut ep, t);
        let wait = Duration::from_secs(want);
        assert_eq!(ep.locked_until(t), Some(t + wait), "{want} s");
        assert_eq!(
            login(&mut ep, t + wait - Duration::from_millis(1), NAME, PASSWORD),
            BUSY,
            "still locked just before {want} s"
        );
        t += wait;
    }
    assert_eq!(ep.stats().lockouts, 5);
    assert_eq!(ep.stats().logins, 0);
}

#[test]
fn a_successful_login_resets_the_count_and_the_backoff() {
    let mut t = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    for _ in 0..4 {
        wrong_password(&mut ep, t);
        t += Duration::from_secs(2);
    }
    assert_eq!(login(&mut ep, t, NAME, PASSWORD), Ok(()));
    // Two failures in a row again are below the threshold: no back-off.
    wrong_password(&mut ep, t);
    wrong_password(&mut ep, t);
    assert_eq!(ep.locked_until(t), None);
    assert_eq!(login(&mut ep, t, NAME, PASSWORD), Ok(()));
    // And the third one starts again at the base, not at 4 s.
    for _ in 0..3 {
        wrong_password(&mut ep, t);
    }
    assert_eq!(ep.locked_until(t), Some(t + LOCKOUT.base));
}

#[test]
fn a_console_reporting_a_bad_rakp2_counts_as_a_failure() {
    let t = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    for _ in 0..3 {
        let sid = open(&mut ep, t).unwrap();
        assert!(rakp1(&mut ep, t, sid, NAME).0.status.is_ok());
        // ipmitool with a wrong password: RAKP 3 says the HMAC was bad.
        let answer = rakp3(
            &mut ep,
            t,
            sid,
            RmcpPlusStatus::INVALID_INTEGRITY_CHECK,
            vec![],
        );
        assert_eq!(answer, None);
    }
    assert_eq!(login(&mut ep, t, NAME, PASSWORD), BUSY);
}

#[test]
fn sessions_opened_before_the_backoff_get_no_rakp2_and_no_rakp4_during_it() {
    let t = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    let early = open_as(&mut ep, t, CONSOLE_SID + 1).unwrap();
    let primed = open(&mut ep, t).unwrap();
    let (r2, _) = rakp1(&mut ep, t, primed, NAME);
    assert!(r2.status.is_ok());
    for _ in 0..3 {
        wrong_password(&mut ep, t);
    }
    let (refusal, raw) = rakp1(&mut ep, t, early, NAME);
    assert_eq!(refusal.status, RmcpPlusStatus::INSUFFICIENT_RESOURCES);
    assert_eq!(raw.len(), 8, "no HMAC during the back-off");
    let inputs = RakpInputs {
        console_sid: CONSOLE_SID,
        bmc_sid: primed,
        console_random: &[7; 16],
        bmc_random: &r2.bmc_random,
        bmc_guid: &GUID,
        role: ROLE,
        username: NAME,
    };
    let code = keys::rakp3_auth_code(SUITE.auth(), &SecretBytes::from(PASSWORD), &inputs);
    assert_eq!(
        rakp3(
            &mut ep,
            t,
            primed,
            RmcpPlusStatus::OK,
            code.expose().to_vec()
        ),
        Some(RmcpPlusStatus::INSUFFICIENT_RESOURCES)
    );
    assert_eq!(ep.session_count(), 0, "both half-open sessions are gone");
    assert_eq!(ep.stats().logins, 0);
}

#[test]
fn without_a_lockout_failures_never_refuse_a_login() {
    let t = t0();
    let mut ep = endpoint(None);
    for _ in 0..20 {
        wrong_password(&mut ep, t);
    }
    assert_eq!(ep.locked_until(t), None);
    assert_eq!(login(&mut ep, t, NAME, PASSWORD), Ok(()));
    assert_eq!(ep.stats().lockouts, 0);
}

#[test]
fn a_known_name_with_the_wrong_role_is_not_a_guess() {
    let t = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    for _ in 0..5 {
        let sid = open(&mut ep, t).unwrap();
        let mut p = Vec::new();
        Rakp1 {
            tag: 2,
            bmc_sid: sid,
            console_random: [7; 16],
            // OPERATOR, name-and-privilege lookup: alice is an administrator.
            role: 0x03,
            username: NAME.to_vec(),
        }
        .emit(&mut p);
        let (_, reply) = exchange(&mut ep, t, PayloadKind::RAKP1, &p).unwrap();
        assert_eq!(
            Rakp2::parse(&reply).unwrap().status,
            RmcpPlusStatus::UNAUTHORIZED_NAME
        );
    }
    assert_eq!(ep.locked_until(t), None);
}

#[test]
fn an_unanswered_rakp2_counts_as_a_failure_when_its_session_expires() {
    let t = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    // Three tools with a wrong password: each checks RAKP 2 and gives up.
    for console_sid in 1..=3 {
        let sid = open_as(&mut ep, t, console_sid).unwrap();
        assert!(rakp1(&mut ep, t, sid, NAME).0.status.is_ok());
    }
    // And one that never got past Open Session: no HMAC, no guess.
    open_as(&mut ep, t, 4).unwrap();
    let almost = t + SETUP_TIMEOUT - Duration::from_millis(1);
    ep.handle_timeout(almost);
    assert_eq!(ep.locked_until(almost), None);
    assert_eq!(ep.session_count(), 4);
    let expiry = t + SETUP_TIMEOUT;
    ep.handle_timeout(expiry);
    assert_eq!(ep.session_count(), 0);
    assert_eq!(ep.locked_until(expiry), Some(expiry + LOCKOUT.base));
    assert_eq!(login(&mut ep, expiry, NAME, PASSWORD), BUSY);
}

#[test]
fn a_half_open_session_without_rakp1_is_not_a_failure() {
    let t = t0();
    let mut ep = endpoint(Some(LOCKOUT));
    for console_sid in 1..=DEFAULT_MAX_SESSIONS as u32 {
        open_as(&mut ep, t, console_sid).unwrap();
    }
    ep.handle_timeout(t + SETUP_TIMEOUT);
    assert_eq!(ep.stats().expired, DEFAULT_MAX_SESSIONS as u64);
    assert_eq!(ep.locked_until(t + SETUP_TIMEOUT), None);
}

/// Get System GUID outside a session, as bytes on the wire: the answer's
/// data, or None when the endpoint stays silent.
fn sessionless_guid(ep: &mut Endpoint, now: Instant) -> Option<Vec<u8>> {
    let mut msg = Vec::new();
    Request::to_bmc(NetFn::APP, 0x37, 1, vec![]).emit(&mut msg);
    let out = ep.handle_datagram(now, &setup_datagram(PayloadKind::IPMI, &msg), &mut NoApp)?;
    let (_, rest) = RmcpHeader::parse(&out.bytes).unwrap();
    let SessionPacket::RmcpPlus(p) = SessionPacket::parse(rest).unwrap() else {
        panic!("an IPMI 1.5 answer to an RMCP+ request");
    };
    Some(Response::parse(p.payload).unwrap().data)
}

/// A BMC answers Get System GUID outside a session with its own GUID; a
/// front end that forwards it (the bridge) never shows its own GUID as the
/// managed system's, so it leaves the session-less one unanswered.
#[test]
fn a_forwarding_endpoint_keeps_its_own_guid_to_itself() {
    let now = t0();
    let mut ep = endpoint(None);
    assert_eq!(sessionless_guid(&mut ep, now), Some(GUID.to_vec()));
    let mut cfg = EndpointConfig::new(GUID);
    cfg.forward_system_guid = true;
    let mut fwd = Endpoint::new(cfg, vec![], Box::new(StdRng::seed_from_u64(6)));
    assert_eq!(sessionless_guid(&mut fwd, now), None);
    assert_eq!(fwd.stats().sessionless_refused, 1);
}
