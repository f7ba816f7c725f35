//! The console's SOL engine against the real BMC side (`bmc::Endpoint`
//! with SOL on), in memory, on a fake clock, with a step bound: activation,
//! both directions, lost and repeated packets, partial acceptance, a
//! payload held elsewhere, another port, and BMCs that go quiet.

use std::time::{Duration, Instant};

use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::bmc::{
    Application, BmcUser, Endpoint, EndpointConfig, SolActivity, SolSettings,
};
use crate::ipmi::session::console::{ConsoleConfig, Handshake, SessionRng};
use crate::ipmi::session::testpeer::t0;
use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::Request;
use crate::secret::SecretBytes;

const PORT: u16 = 47623;
const MAX_STEPS: usize = 2000;

struct NoApp;

impl Application for NoApp {
    fn execute(&mut self, _: Instant, _: Privilege, _: &Request) -> (CompletionCode, Vec<u8>) {
        (CompletionCode::INVALID_COMMAND, vec![])
    }
}

/// A BMC endpoint and the network between it and the consoles.
struct Net {
    bmc: Endpoint,
    now: Instant,
    /// SOL datagrams toward the BMC still to lose.
    lose_to_bmc: u32,
    /// SOL datagrams toward the console still to lose.
    lose_to_console: u32,
    /// Every datagram is lost, both ways.
    silent: bool,
    /// SOL datagrams for a console not being driven now.
    held: Vec<Vec<u8>>,
    logins: u64,
    /// For an owner-decided activation: accept it (else refuse, 0x80).
    accept: bool,
    /// Activations the endpoint left to its owner.
    asked: u32,
}

fn is_sol(d: &[u8]) -> bool {
    d.len() > 5 && d[5] & 0x3F == 1
}

fn settings() -> SolSettings {
    let mut s = SolSettings::new(PORT);
    s.retry = SolRetry {
        count: 3,
        interval: Duration::from_millis(200),
    };
    s
}

impl Net {
    fn new(sol: SolSettings) -> Net {
        let mut cfg = EndpointConfig::new([0x42; 16]);
        cfg.sol = Some(sol);
        let users = vec![BmcUser {
            name: b"admin".to_vec(),
            password: SecretBytes::from(&b"Adm1nPass"[..]),
            privilege: Privilege::Administrator,
            enabled: true,
        }];
        Net {
            bmc: Endpoint::new(cfg, users, Box::new(StdRng::seed_from_u64(3))),
            now: t0(),
            lose_to_bmc: 0,
            lose_to_console: 0,
            silent: false,
            held: Vec::new(),
            logins: 0,
            accept: true,
            asked: 0,
        }
    }

    fn login(&mut self, suite: CipherSuite) -> Box<ActiveSession> {
        let mut cfg = ConsoleConfig::new(
            b"admin",
            SecretBytes::from(&b"Adm1nPass"[..]),
            Privilege::Administrator,
        );
        cfg.cipher_suites = vec![suite];
        // Each console its own session IDs.
        self.logins += 1;
        let rng: Box<dyn SessionRng> = Box::new(StdRng::seed_from_u64(self.logins));
        let mut hs = Handshake::start(cfg, rng, self.now).unwrap();
        for _ in 0..MAX_STEPS {
            if let Some(done) = hs.poll_outcome() {
                return done.map_err(|f| f.error).unwrap();
            }
            let out = hs.poll_transmit().expect("a login step to send");
            let reply = self
                .bmc
                .handle_datagram(self.now, &out, &mut NoApp)
                .unwrap();
            let _ = hs.handle_datagram(self.now, &reply.bytes);
        }
        panic!("no login")
    }

    fn start(&mut self, cfg: SolConfig, suite: CipherSuite) -> SolConsole {
        let session = self.login(suite);
        let mut sol = SolConsole::start(session, cfg, self.now);
        self.settle(&mut sol);
        sol
    }

    /// Delivers datagrams both ways until none is left.
    fn settle(&mut self, sol: &mut SolConsole) {
        for _ in 0..MAX_STEPS {
            let mut moved = false;
            while let Some(d) = sol.poll_transmit() {
                moved = true;
                if self.lost(&d, true) {
                    continue;
                }
                if let Some(reply) = self.bmc_takes(&d) {
                    self.deliver(sol, reply.bytes);
                }
            }
            while let Some(out) = self.bmc.poll_sol_transmit() {
                self.held.push(out.bytes);
            }
            // SOL datagrams for another console wait for it.
            let mine = sol.session().console_session_id().to_le_bytes();
            let (now, later) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|d| d.get(6..10) == Some(&mine[..]));
            self.held = later;
            for d in now {
                moved = true;
                self.deliver(sol, d);
            }
            if !moved {
                return;
            }
        }
        panic!("no quiet after {MAX_STEPS} steps")
    }

    /// One datagram to the BMC, as its owner would run it: commands are
    /// NoApp's, except an owner-decided activation.
    fn bmc_takes(&mut self, d: &[u8]) -> Option<crate::ipmi::session::bmc::Outgoing> {
        use crate::ipmi::session::bmc::Received;
        match self.bmc.receive(self.now, d)? {
            Received::Reply(out) => Some(out),
            Received::Command(cmd) if cmd.request().cmd == 0x48 => {
                self.asked += 1;
                if self.accept {
                    self.bmc.sol_accept(cmd)
                } else {
                    self.bmc.answer(cmd, CompletionCode(0x80), vec![])
                }
            }
            Received::Command(cmd) => {
                let (cc, data) = NoApp.execute(self.now, cmd.privilege(), cmd.request());
                self.bmc.answer(cmd, cc, data)
            }
        }
    }

    fn deliver(&mut self, sol: &mut SolConsole, d: Vec<u8>) {
        if !self.lost(&d, false) {
            let _ = sol.handle_datagram(self.now, &d);
        }
    }

    fn lost(&mut self, d: &[u8], to_bmc: bool) -> bool {
        if self.silent {
            return true;
        }
        let budget = if to_bmc {
            &mut self.lose_to_bmc
        } else {
            &mut self.lose_to_console
        };
        if is_sol(d) && *budget > 0 {
            *budget -= 1;
            return true;
        }
        false
    }

    /// Moves the clock to the next timer of either side and runs it.
    fn tick(&mut self, sol: &mut SolConsole) -> bool {
        let next = [sol.poll_timeout(), self.bmc.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = next else { return false };
        self.now = self.now.max(at);
        sol.handle_timeout(self.now);
        self.bmc.handle_timeout(self.now);
        self.settle(sol);
        true
    }

    /// Runs timers until `done` holds (bounded).
    fn run_until(
        &mut self,
        sol: &mut SolConsole,
        mut done: impl FnMut(&mut Net, &mut SolConsole) -> bool,
    ) {
        for _ in 0..MAX_STEPS {
            if done(self, sol) {
                return;
            }
            assert!(self.tick(sol), "no timer left and not done");
        }
        panic!("not done after {MAX_STEPS} timer steps")
    }
}

fn events(sol: &mut SolConsole) -> Vec<SolEvent> {
    std::iter::from_fn(|| sol.poll_event()).collect()
}

fn ended(sol: &mut SolConsole) -> Option<SolEnd> {
    events(sol).into_iter().find_map(|e| match e {
        SolEvent::Ended(why) => Some(why),
        _ => None,
    })
}

#[test]
fn activates_reads_bmc_retry_carries_both_ways_and_deactivates() {
    for suite in [CipherSuite::Suite17, CipherSuite::Suite3] {
        let mut net = Net::new(settings());
        let mut sol = net.start(SolConfig::new(PORT), suite);
        assert_eq!(sol.state(), SolState::Active);
        let ev = events(&mut sol);
        assert!(
            matches!(ev[..], [SolEvent::Activated(a)] if a.port == PORT && a.inbound_size == 255),
            "{ev:?}"
        );
        assert_eq!(sol.retry().interval, Duration::from_millis(200), "param 4");
        assert_eq!(sol.retry().count, 3);
        let owner = net.bmc.sol_owner().expect("payload held");
        assert_eq!(owner, sol.session().bmc_session_id());
        assert_eq!(
            net.bmc.poll_sol_activity(),
            Some(SolActivity::Activated { session: owner })
        );
        assert_eq!(sol.write(net.now, b"root\r"), 5);
        net.settle(&mut sol);
        assert_eq!(net.bmc.sol_read(), b"root\r");
        let banner = vec![b'x'; 700];
        assert_eq!(net.bmc.sol_write(net.now, &banner), 700);
        net.settle(&mut sol);
        assert_eq!(sol.read(), banner, "three packets, in order");
        sol.send_break(net.now);
        net.settle(&mut sol);
        assert_eq!(net.bmc.poll_sol_activity(), Some(SolActivity::Break));
        sol.deactivate(net.now);
        net.settle(&mut sol);
        assert_eq!(ended(&mut sol), Some(SolEnd::Closed));
        assert_eq!(net.bmc.sol_owner(), None);
        assert_eq!(sol.poll_timeout(), None);
    }
}

#[test]
fn lost_packets_are_resent_and_delivered_once() {
    let mut net = Net::new(settings());
    let mut sol = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    net.lose_to_bmc = 2;
    sol.write(net.now, b"abc");
    net.settle(&mut sol);
    net.run_until(&mut sol, |n, _| {
        n.lose_to_bmc == 0 && !n.bmc.sol_read().is_empty()
    });
    assert!(
        net.bmc.sol_read().is_empty(),
        "read once above, nothing twice"
    );
    assert_eq!(sol.link_stats().retransmits, 2);
    // The ACK back is lost: the console re-sends, the BMC re-ACKs and
    // delivers nothing twice.
    net.lose_to_console = 1;
    sol.write(net.now, b"def");
    net.settle(&mut sol);
    assert_eq!(net.bmc.sol_read(), b"def");
    net.run_until(&mut sol, |_, s| s.link_stats().retransmits == 3);
    net.settle(&mut sol);
    assert!(net.bmc.sol_read().is_empty());
    assert_eq!(net.bmc.sol_link_stats().unwrap().duplicates, 1);
    // Host output lost on the way is re-sent by the BMC, shown once.
    net.lose_to_console = 1;
    net.bmc.sol_write(net.now, b"login: ");
    net.settle(&mut sol);
    net.run_until(&mut sol, |_, s| s.link_stats().received_chars > 0);
    assert_eq!(sol.read(), b"login: ");
}

#[test]
fn a_full_bmc_takes_part_and_the_rest_follows_in_order() {
    let mut small = settings();
    small.receive_capacity = 4;
    let mut net = Net::new(small);
    let mut sol = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    assert_eq!(sol.write(net.now, b"0123456789"), 10);
    net.settle(&mut sol);
    let mut got = net.bmc.sol_read();
    assert_eq!(got, b"0123");
    net.run_until(&mut sol, |n, _| {
        got.extend(n.bmc.sol_read());
        got.len() == 10
    });
    assert_eq!(got, b"0123456789");
    assert!(sol.link_stats().nacks >= 1);
}

/// A front end's endpoint (the bridge) leaves a valid activation to its
/// owner, who accepts or refuses it; one the endpoint itself must refuse
/// (a payload already held) never reaches the owner.
#[test]
fn an_owner_decided_activation_is_the_owners_to_accept_or_refuse() {
    let mut s = settings();
    s.owner_decides = true;
    let mut net = Net::new(s);
    net.accept = false;
    let mut refused = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    assert_eq!(net.asked, 1);
    assert_eq!(
        ended(&mut refused),
        Some(SolEnd::Failed(SolError::AlreadyActive))
    );
    assert_eq!(net.bmc.sol_owner(), None, "a refusal activates nothing");
    net.accept = true;
    let mut sol = net.start(SolConfig::new(PORT), CipherSuite::Suite3);
    assert_eq!(net.asked, 2);
    assert_eq!(sol.state(), SolState::Active);
    assert_eq!(net.bmc.sol_owner(), Some(sol.session().bmc_session_id()));
    assert_eq!(sol.write(net.now, b"ls\r"), 3);
    net.settle(&mut sol);
    assert_eq!(net.bmc.sol_read(), b"ls\r");
    let mut second = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    assert_eq!(net.asked, 2, "the endpoint refused it itself");
    assert_eq!(
        ended(&mut second),
        Some(SolEnd::Failed(SolError::AlreadyActive))
    );
}

#[test]
fn a_payload_held_elsewhere_is_refused_or_taken_over() {
    let mut net = Net::new(settings());
    let mut first = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    let mut second = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    assert_eq!(
        ended(&mut second),
        Some(SolEnd::Failed(SolError::AlreadyActive))
    );
    let mut cfg = SolConfig::new(PORT);
    cfg.take_over = true;
    let mut third = net.start(cfg, CipherSuite::Suite17);
    let ev = events(&mut third);
    assert!(
        matches!(ev[..], [SolEvent::TookOver, SolEvent::Activated(_)]),
        "{ev:?}"
    );
    assert_eq!(net.bmc.sol_owner(), Some(third.session().bmc_session_id()));
    // The first console was told SOL is inactive for it.
    net.settle(&mut first);
    assert_eq!(ended(&mut first), Some(SolEnd::DeactivatedByBmc));
}

#[test]
fn another_port_is_refused_and_leaves_no_payload() {
    let mut net = Net::new(settings());
    let mut sol = net.start(SolConfig::new(PORT + 1), CipherSuite::Suite17);
    assert_eq!(
        ended(&mut sol),
        Some(SolEnd::Failed(SolError::OtherPort {
            session: PORT + 1,
            payload: PORT
        }))
    );
    assert_eq!(net.bmc.sol_owner(), None, "deactivated again");
    // A byte-swapped port (a known BMC mistake) is the session's.
    let mut net = Net::new(SolSettings::new(PORT.swap_bytes()));
    let mut sol = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    assert_eq!(sol.state(), SolState::Active);
    assert!(ended(&mut sol).is_none());
}

#[test]
fn a_silent_bmc_ends_sol_by_retries_or_keepalive() {
    let mut net = Net::new(settings());
    let mut sol = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    net.silent = true;
    sol.write(net.now, b"x");
    net.run_until(&mut sol, |_, s| s.state() == SolState::Ended);
    assert_eq!(
        ended(&mut sol),
        Some(SolEnd::Failed(SolError::Unacknowledged { chars: 1 }))
    );
    // Nothing typed: the keep-alive finds the silence.
    let mut net = Net::new(settings());
    let mut cfg = SolConfig::new(PORT);
    cfg.keepalive = Duration::from_secs(5);
    let mut sol = net.start(cfg, CipherSuite::Suite17);
    let activated = net.now;
    net.silent = true;
    net.run_until(&mut sol, |_, s| s.state() == SolState::Ended);
    assert!(net.now >= activated + Duration::from_secs(5));
    assert!(matches!(
        ended(&mut sol),
        Some(SolEnd::Failed(SolError::NoAnswer { tries: 3, .. }))
    ));
}

#[test]
fn the_keepalive_finds_a_payload_gone_without_a_word() {
    let mut net = Net::new(settings());
    let mut cfg = SolConfig::new(PORT);
    cfg.keepalive = Duration::from_secs(5);
    let mut sol = net.start(cfg, CipherSuite::Suite17);
    // Deactivated on the BMC, and the "SOL inactive" packet lost.
    net.bmc.sol_deactivate();
    net.lose_to_console = 1;
    net.settle(&mut sol);
    assert_eq!(sol.state(), SolState::Active);
    net.run_until(&mut sol, |_, s| s.state() == SolState::Ended);
    assert_eq!(ended(&mut sol), Some(SolEnd::Inactive));
    // While the BMC answers and holds it, the keep-alive changes nothing.
    let mut net = Net::new(settings());
    let mut sol = net.start(cfg, CipherSuite::Suite17);
    let until = net.now + Duration::from_secs(30);
    net.run_until(&mut sol, |n, _| n.now >= until);
    assert_eq!(sol.state(), SolState::Active);
}

#[test]
fn the_keepalive_finds_the_payload_taken_by_another_session() {
    let mut net = Net::new(settings());
    let mut cfg = SolConfig::new(PORT);
    cfg.keepalive = Duration::from_secs(5);
    let mut first = net.start(cfg, CipherSuite::Suite17);
    let mut other = SolConfig::new(PORT);
    other.take_over = true;
    let thief = net.start(other, CipherSuite::Suite17);
    // The BMC's "SOL inactive" to the first console is lost.
    net.held.clear();
    net.settle(&mut first);
    assert_eq!(first.state(), SolState::Active);
    net.run_until(&mut first, |_, s| s.state() == SolState::Ended);
    assert_eq!(
        ended(&mut first),
        Some(SolEnd::TakenElsewhere {
            session: thief.session().bmc_session_id()
        })
    );
}

#[test]
fn the_bmc_saying_sol_inactive_ends_it_and_a_closed_session_frees_it() {
    let mut net = Net::new(settings());
    let mut sol = net.start(SolConfig::new(PORT), CipherSuite::Suite3);
    net.bmc.sol_deactivate();
    net.settle(&mut sol);
    assert_eq!(ended(&mut sol), Some(SolEnd::DeactivatedByBmc));
    // The BMC tears SOL down with its session.
    let sol = net.start(SolConfig::new(PORT), CipherSuite::Suite3);
    assert!(net.bmc.sol_owner().is_some());
    let mut session = sol.into_session();
    let close = session.close_session_request();
    net.bmc.handle_datagram(net.now, &close, &mut NoApp);
    assert_eq!(net.bmc.sol_owner(), None);
}

/// The BMC side takes SOL packets only from the session holding the
/// payload: keystrokes from a console that lost it (taken over, not yet
/// told) are counted as refused and never reach the host.
#[test]
fn sol_packets_from_a_session_without_the_payload_are_refused() {
    let mut net = Net::new(settings());
    let mut first = net.start(SolConfig::new(PORT), CipherSuite::Suite17);
    let mut cfg = SolConfig::new(PORT);
    cfg.take_over = true;
    let second = net.start(cfg, CipherSuite::Suite17);
    assert_eq!(net.bmc.sol_owner(), Some(second.session().bmc_session_id()));
    assert_eq!(first.state(), SolState::Active, "not told yet");
    let refused = net.bmc.stats().sol_refused;
    assert_eq!(first.write(net.now, b"evil\r"), 5);
    let sent: Vec<Vec<u8>> = std::iter::from_fn(|| first.poll_transmit()).collect();
    assert!(sent.iter().any(|d| is_sol(d)), "keystrokes went out");
    for d in sent {
        let _ = net.bmc.handle_datagram(net.now, &d, &mut NoApp);
    }
    assert!(net.bmc.stats().sol_refused > refused);
    assert!(net.bmc.sol_read().is_empty(), "nothing reached the host");
}
