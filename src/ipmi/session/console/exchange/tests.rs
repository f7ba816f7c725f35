//! In-session tries on a fake clock against the scripted peer: lost
//! replies, late replies and a request allowed one try only.

use std::time::{Duration, Instant};

use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::ipmi::session::console::{ConsoleConfig, Handshake};
use crate::ipmi::session::testpeer::{t0, Knobs, Peer};
use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::{CompletionCode, NetFn};
use crate::secret::SecretBytes;

const TIMEOUT: Duration = Duration::from_millis(100);

/// A session with the peer, logged in at `now` without loss.
fn session(now: Instant) -> (Box<ActiveSession>, Peer) {
    let knobs = Knobs {
        accept: vec![17],
        ..Knobs::default()
    };
    let mut peer = Peer::new(b"pw", knobs);
    let cfg = ConsoleConfig::new(b"admin", SecretBytes::from(&b"pw"[..]), Privilege::User);
    let mut hs = Handshake::start(cfg, Box::new(StdRng::seed_from_u64(6)), now).unwrap();
    while let Some(d) = hs.poll_transmit() {
        let reply = peer.handle(&d).unwrap();
        hs.handle_datagram(now, &reply).unwrap();
    }
    (hs.poll_outcome().unwrap().unwrap(), peer)
}

fn chassis_status() -> RawRequest {
    RawRequest {
        netfn: NetFn::CHASSIS,
        cmd: 0x01,
        data: vec![],
    }
}

/// Runs `ex` to its end: each sent try reaches the peer, whose answer is
/// lost while `lose` says so; time jumps to the timer when nothing moves.
/// Returns the answer, the peer's answers that were lost, and the time
/// it took.
fn run(
    ex: &mut Exchange,
    s: &mut ActiveSession,
    peer: &mut Peer,
    start: Instant,
    mut lose: impl FnMut(usize) -> bool,
) -> (Answer, Vec<Vec<u8>>, Duration) {
    let mut now = start;
    let mut lost = Vec::new();
    for _ in 0..50 {
        if let Some(answer) = ex.poll_outcome() {
            return (answer, lost, now - start);
        }
        match ex.poll_transmit() {
            Some(d) => {
                let reply = peer.handle(&d).expect("the peer answers");
                if lose(peer.commands.len() - 1) {
                    lost.push(reply);
                } else {
                    ex.handle_datagram(s, &reply).unwrap();
                }
            }
            None => {
                let at = ex.poll_timeout().expect("a running request has a timer");
                ex.handle_timeout(s, at - Duration::from_millis(1));
                assert!(ex.poll_transmit().is_none(), "nothing before the timer");
                now = at;
                ex.handle_timeout(s, now);
            }
        }
    }
    panic!("request still running")
}

#[test]
fn a_lost_reply_is_asked_for_again_with_a_fresh_rq_seq() {
    let t = t0();
    let (mut s, mut peer) = session(t);
    let mut ex = Exchange::start(&mut s, chassis_status(), 3, TIMEOUT, t);
    let (answer, lost, took) = run(&mut ex, &mut s, &mut peer, t, |i| i < 2);
    let Answer::Reply(r) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(r.data, [0x01, 0x10, 0x00]);
    assert_eq!(ex.retransmits(), 2);
    assert_eq!(took, TIMEOUT * 2);
    let seqs: Vec<u8> = peer.commands.iter().map(|c| c.rq_seq).collect();
    assert_eq!(seqs.len(), 3);
    assert!(seqs[0] != seqs[1] && seqs[1] != seqs[2], "{seqs:?}");
    // The late answers to the first two tries match nothing now.
    for late in lost {
        assert_eq!(s.handle_datagram(&late).unwrap_err(), Drop::Unmatched);
    }
}

#[test]
fn a_late_reply_to_an_earlier_try_does_not_end_the_request() {
    let t = t0();
    let (mut s, mut peer) = session(t);
    let mut ex = Exchange::start(&mut s, chassis_status(), 2, TIMEOUT, t);
    let first = peer.handle(&ex.poll_transmit().unwrap()).unwrap();
    ex.handle_timeout(&mut s, t + TIMEOUT);
    let second = peer.handle(&ex.poll_transmit().unwrap()).unwrap();
    assert_eq!(ex.handle_datagram(&mut s, &first), Err(Drop::Unmatched));
    assert!(ex.poll_outcome().is_none());
    assert_eq!(ex.handle_datagram(&mut s, &second), Ok(()));
    assert!(matches!(ex.poll_outcome(), Some(Answer::Reply(_))));
    assert_eq!(ex.poll_timeout(), None);
}

#[test]
fn one_try_is_never_sent_again() {
    let t = t0();
    let (mut s, mut peer) = session(t);
    let off = RawRequest {
        netfn: NetFn::CHASSIS,
        cmd: 0x02,
        data: vec![0],
    };
    let mut ex = Exchange::start(&mut s, off, 1, TIMEOUT, t);
    let (answer, lost, took) = run(&mut ex, &mut s, &mut peer, t, |_| true);
    assert_eq!(answer, Answer::Unanswered { tries: 1 });
    assert_eq!(peer.commands.len(), 1, "sent once");
    assert_eq!((ex.retransmits(), took), (0, TIMEOUT));
    assert!(!s.has_pending(), "given up: the session expects nothing");
    assert_eq!(s.handle_datagram(&lost[0]).unwrap_err(), Drop::Unmatched);
}

#[test]
fn every_try_lost_is_unanswered_after_exactly_that_many_datagrams() {
    let t = t0();
    let (mut s, mut peer) = session(t);
    let mut ex = Exchange::start(&mut s, chassis_status(), 4, TIMEOUT, t);
    let (answer, _, took) = run(&mut ex, &mut s, &mut peer, t, |_| true);
    assert_eq!(answer, Answer::Unanswered { tries: 4 });
    assert_eq!(peer.commands.len(), 4);
    assert_eq!(took, TIMEOUT * 4);
    // An ended request ignores what comes after.
    let extra = peer.reply(&peer.commands[3].clone(), CompletionCode::OK, vec![]);
    assert_eq!(ex.handle_datagram(&mut s, &extra), Err(Drop::Unmatched));
    ex.handle_timeout(&mut s, t + TIMEOUT * 100);
    assert_eq!(ex.poll_transmit(), None);
}
