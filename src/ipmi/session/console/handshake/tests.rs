//! The login's timers on a fake clock, against the scripted peer: lost
//! datagrams, silent BMCs and a damaged RAKP 2, with time advanced by hand
//! (nothing sleeps).

use std::time::Duration;

use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::testpeer::{t0, Knobs, Peer};
use crate::ipmi::session::Privilege;
use crate::secret::SecretBytes;

const PASSWORD: &[u8] = b"Adm1nPass";
const STEP: Duration = Duration::from_millis(250);
const RETRIES: u32 = 2;
/// Sends, deliveries and timeouts a run may take before it counts as hung.
const MAX_EVENTS: usize = 200;

fn cfg() -> ConsoleConfig {
    let mut c = ConsoleConfig::new(
        b"admin",
        SecretBytes::from(PASSWORD),
        Privilege::Administrator,
    );
    c.step_timeout = STEP;
    c.retries = RETRIES;
    c
}

fn peer() -> Peer {
    Peer::new(
        PASSWORD,
        Knobs {
            accept: vec![17, 3],
            ..Knobs::default()
        },
    )
}

/// The RMCP+ payload type of a datagram; `None` for IPMI 1.5 (the
/// Get Channel Authentication Capabilities exchange).
fn payload_type(d: &[u8]) -> Option<u8> {
    (d.len() > 5 && d[4] == 0x06).then(|| d[5] & 0x3F)
}

const AUTH_CAPS: Option<u8> = None;
const OPEN_SESSION: Option<u8> = Some(0x10);
const RAKP1: Option<u8> = Some(0x12);
const RAKP2: Option<u8> = Some(0x13);
const RAKP3: Option<u8> = Some(0x14);
const IN_SESSION: Option<u8> = Some(0x00);

/// What the scripted network does to one datagram.
enum Fate {
    Deliver,
    Lose,
}

/// One login over a scripted network.
struct Run {
    outcome: Result<Box<ActiveSession>, LoginFailure>,
    /// Every datagram the console sent, re-sends included, in order.
    sent: Vec<Vec<u8>>,
    /// Fake time from start to the outcome.
    elapsed: Duration,
    retransmits: u32,
}

impl Run {
    fn sent_of(&self, kind: Option<u8>) -> usize {
        self.sent.iter().filter(|d| payload_type(d) == kind).count()
    }

    fn error(&self) -> &SessionError {
        &self.outcome.as_ref().unwrap_err().error
    }
}

/// Runs a login against `peer`: `to_bmc` decides each sent datagram's fate
/// (by index and bytes), `to_console` each answer's (and may damage it).
/// Time stands still while datagrams are in flight and jumps to the
/// handshake's timer when none are.
fn run(
    peer: &mut Peer,
    mut to_bmc: impl FnMut(usize, &[u8]) -> Fate,
    mut to_console: impl FnMut(&mut Vec<u8>) -> Fate,
) -> Run {
    let start = t0();
    let mut now = start;
    let mut hs = Handshake::start(cfg(), Box::new(StdRng::seed_from_u64(4)), now).unwrap();
    let mut sent = Vec::new();
    for _ in 0..MAX_EVENTS {
        if let Some(outcome) = hs.poll_outcome() {
            assert_eq!(hs.poll_timeout(), None, "an ended login keeps no timer");
            return Run {
                outcome,
                sent,
                elapsed: now - start,
                retransmits: hs.retransmits(),
            };
        }
        let Some(d) = hs.poll_transmit() else {
            let at = hs.poll_timeout().expect("a login in progress has a timer");
            // Just before the timer nothing happens.
            hs.handle_timeout(at - Duration::from_millis(1));
            assert!(hs.poll_transmit().is_none() && hs.poll_outcome().is_none());
            now = at;
            hs.handle_timeout(now);
            continue;
        };
        sent.push(d.clone());
        if let Fate::Lose = to_bmc(sent.len() - 1, &d) {
            continue;
        }
        let Some(mut reply) = peer.handle(&d) else {
            continue;
        };
        if let Fate::Deliver = to_console(&mut reply) {
            let _ = hs.handle_datagram(now, &reply);
        }
    }
    panic!("login still running after {MAX_EVENTS} events")
}

fn deliver(_: &mut Vec<u8>) -> Fate {
    Fate::Deliver
}

#[test]
fn a_lost_datagram_at_each_step_is_sent_again_and_the_login_completes() {
    // The login's datagrams in order: Get Channel Authentication
    // Capabilities, Open Session, RAKP 1, RAKP 3, Set Session Privilege.
    for lost in 0..5 {
        let mut p = peer();
        let r = run(
            &mut p,
            |i, _| if i == lost { Fate::Lose } else { Fate::Deliver },
            deliver,
        );
        let s = r
            .outcome
            .as_ref()
            .unwrap_or_else(|f| panic!("datagram {lost} lost: {}", f.error));
        assert_eq!(s.suite(), CipherSuite::Suite17);
        assert_eq!(s.privilege(), Privilege::Administrator);
        assert_eq!(r.sent.len(), 6, "datagram {lost}: five steps, one re-send");
        assert_eq!(r.sent[lost], r.sent[lost + 1], "the same bytes again");
        assert_eq!(r.retransmits, 1);
        assert_eq!(r.elapsed, STEP, "re-sent when its step timed out");
    }
}

#[test]
fn a_lost_answer_at_each_step_is_asked_for_again() {
    for lost in [AUTH_CAPS, OPEN_SESSION, RAKP1, RAKP3, IN_SESSION] {
        let mut p = peer();
        let mut once = true;
        let r = run(
            &mut p,
            |_, _| Fate::Deliver,
            |reply| {
                let answers = |req: Option<u8>| req.map(|t| if t == 0 { 0 } else { t + 1 });
                if once && payload_type(reply) == answers(lost) {
                    once = false;
                    return Fate::Lose;
                }
                Fate::Deliver
            },
        );
        assert!(r.outcome.is_ok(), "answer to {lost:?} lost: {}", r.error());
        assert_eq!(r.sent_of(lost), 2, "answer to {lost:?} lost");
        assert_eq!(r.retransmits, 1);
    }
}

#[test]
fn a_bmc_that_never_answers_is_no_answer_after_one_plus_retries_datagrams() {
    let mut p = peer();
    let r = run(&mut p, |_, _| Fate::Lose, deliver);
    assert_eq!(*r.error(), SessionError::NoAnswer { tries: 1 + RETRIES });
    assert_eq!(r.sent.len(), 1 + RETRIES as usize);
    assert_eq!(r.sent_of(AUTH_CAPS), r.sent.len(), "the first step only");
    assert!(r.sent.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(r.elapsed, STEP * (1 + RETRIES));
    assert!(r.outcome.unwrap_err().farewell.is_none());
}

/// A BMC that answers Open Session and then stays silent is refusing the
/// login; which step it went quiet after says what it probably refused.
#[test]
fn a_bmc_silent_after_rakp_1_or_3_is_diagnosed_after_every_attempt() {
    let tries = (1 + RETRIES) as usize;
    for (silent_on, hint) in [
        (
            RAKP1,
            "did not answer RAKP 1 (unknown user name or privilege?)",
        ),
        (RAKP3, "did not answer RAKP 3 (wrong password?)"),
    ] {
        let mut p = peer();
        let r = run(
            &mut p,
            |_, d| {
                if payload_type(d) == silent_on {
                    Fate::Lose
                } else {
                    Fate::Deliver
                }
            },
            deliver,
        );
        assert!(
            matches!(r.error(), SessionError::AuthenticationFailed(why) if why.ends_with(hint)),
            "{}",
            r.error()
        );
        assert_eq!(r.sent_of(OPEN_SESSION), tries, "one login per attempt");
        assert_eq!(r.sent_of(silent_on), tries * tries, "each step re-sent");
        assert_eq!(p.commands.len(), 0);
    }
}

#[test]
fn one_damaged_rakp_2_is_discarded_and_the_next_one_logs_in() {
    let mut p = peer();
    let mut damaged = false;
    let r = run(
        &mut p,
        |_, _| Fate::Deliver,
        |reply| {
            if !damaged && payload_type(reply) == RAKP2 {
                damaged = true;
                *reply.last_mut().unwrap() ^= 0x01; // the HMAC's last byte
            }
            Fate::Deliver
        },
    );
    assert!(damaged);
    let s = r.outcome.as_ref().unwrap_or_else(|f| panic!("{}", f.error));
    assert_eq!(s.suite(), CipherSuite::Suite17);
    assert_eq!(r.sent_of(RAKP1), 2, "RAKP 1 asked again after its timeout");
    assert_eq!(r.sent_of(RAKP3), 1);
    assert_eq!(p.rakp3_statuses, [0x00], "no error told to the BMC");
}

#[test]
fn a_second_damaged_rakp_2_is_a_wrong_password_with_a_farewell() {
    let mut p = Peer::new(
        PASSWORD,
        Knobs {
            accept: vec![17],
            corrupt_rakp2: true,
            ..Knobs::default()
        },
    );
    let r = run(&mut p, |_, _| Fate::Deliver, deliver);
    let f = r.outcome.unwrap_err();
    assert!(
        matches!(f.error, SessionError::AuthenticationFailed(why) if why.starts_with("wrong password")),
        "{}",
        f.error
    );
    assert_eq!(r.retransmits, 1, "one re-send of RAKP 1, then final");
    assert!(p
        .handle(&f.farewell.expect("RAKP 3 with an error"))
        .is_none());
    assert_eq!(p.rakp3_statuses, [0x0F]);
}

#[test]
fn an_ended_login_ignores_datagrams_and_timeouts() {
    let mut p = peer();
    let now = t0();
    let mut hs = Handshake::start(cfg(), Box::new(StdRng::seed_from_u64(5)), now).unwrap();
    let caps = hs.poll_transmit().unwrap();
    let reply = p.handle(&caps).unwrap();
    hs.handle_timeout(now + STEP * 100);
    // The re-send went out; then the answer arrives and the login moves on.
    assert_eq!(hs.poll_transmit(), Some(caps));
    assert_eq!(hs.handle_datagram(now, &reply), Ok(()));
    assert_eq!(hs.step(), Some(LoginStep::OpenSession));
    for _ in 0..(2 + RETRIES) * (2 + RETRIES) {
        let Some(at) = hs.poll_timeout() else { break };
        hs.handle_timeout(at);
    }
    assert!(matches!(
        hs.poll_outcome(),
        Some(Err(LoginFailure {
            error: SessionError::NoAnswer { .. },
            ..
        }))
    ));
    while hs.poll_transmit().is_some() {}
    assert_eq!(hs.step(), None);
    assert_eq!(hs.handle_datagram(now, &reply), Err(Drop::UnexpectedKind));
    hs.handle_timeout(now + STEP * 1000);
    assert_eq!(hs.poll_transmit(), None);
    assert!(hs.poll_outcome().is_none(), "the outcome is taken once");
}
