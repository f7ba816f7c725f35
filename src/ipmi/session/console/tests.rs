//! Console state machine against the scripted peer, in memory, with a step
//! bound: every way the issue lists of a peer lying or failing.

use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::testpeer::{t0, Knobs, Peer};
use crate::ipmi::wire::message::{CompletionCode, Request};

const PASSWORD: &[u8] = b"Adm1nPass";
const MAX_STEPS: usize = 16;

fn cfg(password: &[u8]) -> ConsoleConfig {
    ConsoleConfig::new(
        b"admin",
        SecretBytes::from(password),
        Privilege::Administrator,
    )
}

fn rng() -> Box<dyn SessionRng> {
    Box::new(StdRng::seed_from_u64(1))
}

/// Runs the login to completion or failure, at most MAX_STEPS exchanges or
/// timeouts, on a fake clock that jumps to the handshake's timer whenever
/// nothing is in flight.
fn login(cfg: ConsoleConfig, peer: &mut Peer) -> Result<Box<ActiveSession>, LoginFailure> {
    let mut now = t0();
    let mut hs = Handshake::start(cfg, rng(), now).map_err(LoginFailure::from)?;
    for _ in 0..MAX_STEPS {
        if let Some(outcome) = hs.poll_outcome() {
            return outcome;
        }
        match hs.poll_transmit() {
            Some(out) => {
                let reply = peer.handle(&out).expect("peer answers every login step");
                // A discarded reply (one bad MAC may be a damaged datagram)
                // leaves nothing to send until the step times out.
                let _ = hs.handle_datagram(now, &reply);
            }
            None => {
                now = hs.poll_timeout().expect("a login in progress has a timer");
                hs.handle_timeout(now);
            }
        }
    }
    panic!("login did not finish in {MAX_STEPS} steps")
}

fn accept(ids: &[u8]) -> Knobs {
    Knobs {
        accept: ids.to_vec(),
        ..Knobs::default()
    }
}

#[test]
fn logs_in_with_17_and_runs_a_command() {
    let mut peer = Peer::new(PASSWORD, accept(&[3, 17]));
    let mut s = login(cfg(PASSWORD), &mut peer).unwrap();
    assert_eq!(s.suite(), CipherSuite::Suite17);
    assert_eq!(s.privilege(), Privilege::Administrator);
    // Set Session Privilege Level went inside the session.
    assert_eq!(peer.commands.len(), 1);
    assert_eq!(
        (peer.commands[0].cmd, peer.commands[0].data.clone()),
        (0x3B, vec![4])
    );
    let req = s.send_request(NetFn::APP, 0x01, vec![]);
    let reply = peer.handle(&req).unwrap();
    let resp = s.handle_datagram(&reply).unwrap();
    assert!(resp.completion_code.is_ok());
    assert_eq!(resp.data[6..9], [0x91, 0x12, 0x00]);
}

#[test]
fn falls_back_to_3_when_17_is_refused() {
    let mut peer = Peer::new(PASSWORD, accept(&[3]));
    let s = login(cfg(PASSWORD), &mut peer).unwrap();
    assert_eq!(s.suite(), CipherSuite::Suite3);
}

#[test]
fn refuses_when_no_suite_is_accepted() {
    let mut peer = Peer::new(PASSWORD, accept(&[2]));
    let err = login(cfg(PASSWORD), &mut peer).unwrap_err().error;
    assert!(
        matches!(err, SessionError::NoSuiteAccepted { ref proposed, .. } if proposed == &[17, 3]),
        "{err}"
    );
    assert!(peer.commands.is_empty());
}

#[test]
fn user_privilege_skips_set_session_privilege() {
    let mut peer = Peer::new(PASSWORD, accept(&[17]));
    let mut c = cfg(PASSWORD);
    c.privilege = Privilege::User;
    let s = login(c, &mut peer).unwrap();
    assert_eq!(s.privilege(), Privilege::User);
    assert!(peer.commands.is_empty());
}

#[test]
fn wrong_password_fails_sends_rakp3_error_and_no_command() {
    let mut peer = Peer::new(PASSWORD, accept(&[17]));
    let f = login(cfg(b"wrong"), &mut peer).unwrap_err();
    assert!(
        matches!(f.error, SessionError::AuthenticationFailed(_)),
        "{}",
        f.error
    );
    assert!(f.error.to_string().starts_with("authentication failed"));
    let farewell = f.farewell.expect("RAKP 3 with an error status");
    assert!(peer.handle(&farewell).is_none());
    assert_eq!(peer.rakp3_statuses, [0x0F]);
    assert!(peer.commands.is_empty());
}

#[test]
fn tampered_rakp2_hmac_stops_the_login() {
    let mut peer = Peer::new(
        PASSWORD,
        Knobs {
            corrupt_rakp2: true,
            ..accept(&[17])
        },
    );
    let f = login(cfg(PASSWORD), &mut peer).unwrap_err();
    assert!(matches!(f.error, SessionError::AuthenticationFailed(_)));
    assert!(peer.commands.is_empty());
}

#[test]
fn tampered_rakp4_icv_stops_the_login() {
    for kg_set in [false, true] {
        let mut peer = Peer::new(
            PASSWORD,
            Knobs {
                corrupt_rakp4: true,
                kg_set,
                ..accept(&[3])
            },
        );
        let f = login(cfg(PASSWORD), &mut peer).unwrap_err();
        assert!(
            matches!(f.error, SessionError::Rakp4Invalid(_)),
            "{}",
            f.error
        );
        assert_eq!(f.error.to_string().contains("Kg"), kg_set);
        assert!(
            peer.commands.is_empty(),
            "no command before RAKP 4 verified"
        );
    }
}

#[test]
fn algorithm_downgrade_is_refused() {
    let mut peer = Peer::new(
        PASSWORD,
        Knobs {
            downgrade_to: Some(CipherSuite::Suite2.algorithms()),
            ..accept(&[17, 3])
        },
    );
    // 17 and then 3 are both answered with suite 2's algorithms: refused.
    let f = login(cfg(PASSWORD), &mut peer).unwrap_err();
    assert!(
        matches!(f.error, SessionError::Downgrade { proposed: 3, .. }),
        "{}",
        f.error
    );
    assert!(peer.commands.is_empty());
}

/// A BMC that answers suite 17 with suite 3's algorithms lacks 17: the
/// console goes on with 3 (its next allowed suite) in a new Open Session,
/// and never takes the algorithms it did not propose.
#[test]
fn a_suite_answered_with_another_suites_algorithms_falls_back() {
    let mut peer = Peer::new(
        PASSWORD,
        Knobs {
            downgrade_to: Some(CipherSuite::Suite3.algorithms()),
            downgrade_only: Some(17),
            ..accept(&[17, 3])
        },
    );
    let s = login(cfg(PASSWORD), &mut peer).unwrap();
    assert_eq!(s.suite(), CipherSuite::Suite3);
    // With 17 alone allowed, the same answer is a refused downgrade.
    let mut only17 = cfg(PASSWORD);
    only17.cipher_suites = vec![CipherSuite::Suite17];
    let f = login(only17, &mut peer).unwrap_err();
    assert!(
        matches!(f.error, SessionError::Downgrade { proposed: 17, .. }),
        "{}",
        f.error
    );
}

#[test]
fn weak_suites_need_the_insecure_opt_in() {
    let mut c = cfg(PASSWORD);
    c.cipher_suites = vec![CipherSuite::Suite2];
    assert_eq!(c.validate(), Err(SessionError::InsecureSuite(2)));
    c.insecure_allow_weak_suites = true;
    let mut peer = Peer::new(PASSWORD, accept(&[2]));
    assert_eq!(login(c, &mut peer).unwrap().suite(), CipherSuite::Suite2);
    assert!(
        CipherSuite::try_from(0).is_err(),
        "suite 0 cannot even be named"
    );
}

#[test]
fn config_errors_never_show_the_password() {
    let mut c = cfg(b"0123456789012345678901");
    let e = c.validate().unwrap_err();
    assert_eq!(e, SessionError::PasswordTooLong(22));
    assert!(!e.to_string().contains("0123456789"));
    assert!(!format!("{c:?}").contains("0123456789"));
    c.password = SecretBytes::from(PASSWORD);
    c.username = b"seventeen-bytes-x".to_vec();
    assert_eq!(c.validate(), Err(SessionError::UsernameTooLong(17)));
    c.username.clear();
    assert_eq!(c.validate(), Err(SessionError::EmptyUsername));
}

/// An established session and the peer, with one request outstanding.
fn active_with_pending() -> (Box<ActiveSession>, Peer, Request) {
    let mut peer = Peer::new(PASSWORD, accept(&[17]));
    let mut s = login(cfg(PASSWORD), &mut peer).unwrap();
    let bytes = s.send_request(NetFn::CHASSIS, 0x01, vec![]);
    peer.handle(&bytes).unwrap();
    let req = peer.commands.last().unwrap().clone();
    (s, peer, req)
}

#[test]
fn bad_integrity_field_is_dropped() {
    let (mut s, mut peer, req) = active_with_pending();
    let good = peer.reply(&req, CompletionCode::OK, vec![1, 0, 0]);
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert_eq!(
        s.handle_datagram(&bad).unwrap_err(),
        Drop::Crypto(CryptoError::BadAuthCode)
    );
    // The forged packet did not burn the sequence number: the real one passes.
    assert!(s.handle_datagram(&good).is_ok());
}

#[test]
fn replayed_and_far_ahead_sequence_numbers_are_dropped() {
    let (mut s, mut peer, req) = active_with_pending();
    let first = peer.reply(&req, CompletionCode::OK, vec![1, 0, 0]);
    assert!(s.handle_datagram(&first).is_ok());
    // Same request again, so only the window can refuse the replay.
    let bytes = s.send_request(NetFn::CHASSIS, 0x01, vec![]);
    peer.handle(&bytes).unwrap();
    let req2 = peer.commands.last().unwrap().clone();
    let replay_seq = peer.out_seq; // already used by the reply to req2 in handle()
    let replay = peer.reply_with_seq(&req2, CompletionCode::OK, vec![1, 0, 0], replay_seq - 1);
    assert!(matches!(
        s.handle_datagram(&replay),
        Err(Drop::Window(WindowError::Replayed(_)))
    ));
    let far = peer.reply_with_seq(&req2, CompletionCode::OK, vec![1, 0, 0], replay_seq + 1000);
    assert!(matches!(
        s.handle_datagram(&far),
        Err(Drop::Window(WindowError::OutOfWindow { .. }))
    ));
    let ok = peer.reply_with_seq(&req2, CompletionCode::OK, vec![1, 0, 0], replay_seq + 1);
    assert!(s.handle_datagram(&ok).is_ok());
}

#[test]
fn wrong_session_id_is_dropped() {
    let (mut s, mut peer, req) = active_with_pending();
    let mut d = peer.reply(&req, CompletionCode::OK, vec![1, 0, 0]);
    d[6] ^= 0xFF; // session ID field, first byte
    assert_eq!(s.handle_datagram(&d).unwrap_err(), Drop::WrongSessionId);
}

#[test]
fn replies_are_matched_by_rq_seq_and_a_late_reply_after_retry_is_dropped() {
    let (mut s, mut peer, first_req) = active_with_pending();
    // The first reply is "lost"; the caller retries a read-only command.
    let retry = s.send_request(NetFn::CHASSIS, 0x01, vec![]);
    peer.handle(&retry).unwrap();
    let retry_req = peer.commands.last().unwrap().clone();
    assert_ne!(first_req.rq_seq, retry_req.rq_seq);
    let late = peer.reply(&first_req, CompletionCode::OK, vec![0, 0, 0]);
    assert_eq!(s.handle_datagram(&late).unwrap_err(), Drop::Unmatched);
    let answer = peer.reply(&retry_req, CompletionCode::OK, vec![1, 0, 0]);
    assert_eq!(s.handle_datagram(&answer).unwrap().data, [1, 0, 0]);
    // Nothing outstanding: any further reply is unmatched.
    let extra = peer.reply(&retry_req, CompletionCode::OK, vec![1, 0, 0]);
    assert_eq!(s.handle_datagram(&extra).unwrap_err(), Drop::Unmatched);
}

#[test]
fn garbage_never_panics_the_login() {
    let now = t0();
    let mut hs = Handshake::start(cfg(PASSWORD), rng(), now).unwrap();
    assert!(hs.poll_transmit().is_some());
    for len in 0..64usize {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
        assert!(hs.handle_datagram(now, &junk).is_err());
        assert_eq!(hs.poll_transmit(), None);
    }
    assert_eq!(hs.step(), Some(LoginStep::AuthCaps));
    assert!(hs.poll_outcome().is_none());
}
