//! The login's timers: when a step's datagram is sent again, when a
//! stalled login starts over, and what a BMC that went quiet is told to
//! mean. The policy lives here, next to the states it reads, so that every
//! driver (the BMC task, tests on a fake clock) gets the same one.
//!
//! Never does: read a clock (every verb takes `now`), sleep, touch a socket,
//! or decide by a state's name: the step a login stalled in is a
//! [`LoginStep`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{
    ActiveSession, Attempt, ConsoleConfig, Drop, LoginFailure, LoginStep, Progress, SessionError,
    SessionRng,
};

/// A login in progress toward one BMC.
///
/// Driven like a quinn-proto connection: feed it what arrives
/// ([`handle_datagram`](Self::handle_datagram)) and the passing of time
/// ([`handle_timeout`](Self::handle_timeout) once
/// [`poll_timeout`](Self::poll_timeout) is reached), send everything
/// [`poll_transmit`](Self::poll_transmit) returns, and take the result from
/// [`poll_outcome`](Self::poll_outcome).
///
/// Each step waits `step_timeout`; its datagram is then re-sent, up to
/// `retries` times. A step still unanswered stalls the attempt: a BMC that
/// never answered the first step is "no answer" at once (after
/// `1 + retries` datagrams), and any other stall starts the login over, up
/// to `1 + retries` attempts in all.
pub struct Handshake {
    /// The attempt running; `None` once the login ended.
    attempt: Option<Attempt>,
    step_timeout: Duration,
    retries: u32,
    /// Attempts started, the running one included.
    attempts: u32,
    /// The current step's datagram, sent again when the step times out.
    last: Vec<u8>,
    /// Times `last` was sent again.
    resends: u32,
    /// When the current step times out; `None` once the login ended.
    deadline: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    outcome: Option<Result<Box<ActiveSession>, LoginFailure>>,
    retransmits: u32,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("step", &self.step())
            .field("attempts", &self.attempts)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Validates `cfg` and begins the login at `now`: its first datagram
    /// waits in [`poll_transmit`](Self::poll_transmit). `rng` serves every
    /// attempt and then the session.
    pub fn start(
        cfg: ConsoleConfig,
        rng: Box<dyn SessionRng>,
        now: Instant,
    ) -> Result<Handshake, SessionError> {
        let (step_timeout, retries) = (cfg.step_timeout, cfg.retries);
        let (attempt, first) = Attempt::start(cfg, rng)?;
        let mut hs = Handshake {
            attempt: Some(attempt),
            step_timeout,
            retries,
            attempts: 1,
            last: Vec::new(),
            resends: 0,
            deadline: None,
            transmit: VecDeque::new(),
            outcome: None,
            retransmits: 0,
        };
        hs.send(first, now);
        Ok(hs)
    }

    /// The step the login waits in; `None` once it ended.
    pub fn step(&self) -> Option<LoginStep> {
        self.attempt.as_ref().and_then(Attempt::step)
    }

    /// Feeds one datagram from the BMC. `Err` says why it was dropped
    /// without effect (for counters); the login then goes on waiting.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), Drop> {
        let Some(attempt) = self.attempt.as_mut() else {
            return Err(Drop::UnexpectedKind);
        };
        match attempt.handle(datagram) {
            Ok(Progress::Send(bytes)) => self.send(bytes, now),
            Ok(Progress::Established(session)) => self.finish(Ok(session)),
            // A discarded RAKP 2 or 4 (one bad MAC may be a damaged
            // datagram) leaves the step waiting: its timeout re-sends the
            // request and a BMC answers it again.
            Ok(Progress::Ignored(drop)) => return Err(drop),
            Err(failure) => self.finish(Err(failure)),
        }
        Ok(())
    }

    /// The next datagram to send to the BMC, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work; `None` once
    /// the login ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Re-sends the current step's datagram, starts the login over, or
    /// ends it, if the step's time is up at `now` (earlier calls do
    /// nothing).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        if self.resends < self.retries {
            self.resends += 1;
            self.retransmits += 1;
            self.transmit.push_back(self.last.clone());
            self.deadline = Some(now + self.step_timeout);
            return;
        }
        self.stalled(now);
    }

    /// The result, once: the established session, or why the login failed
    /// with the datagram (if any) that tells the BMC so. The caller sends
    /// that farewell; nothing else is sent after it.
    pub fn poll_outcome(&mut self) -> Option<Result<Box<ActiveSession>, LoginFailure>> {
        self.outcome.take()
    }

    /// Datagrams sent again because a step timed out (restarts aside).
    pub fn retransmits(&self) -> u32 {
        self.retransmits
    }

    /// The current step gave up waiting: start over or end.
    fn stalled(&mut self, now: Instant) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let step = attempt.step();
        let tries = 1 + self.retries;
        // Starting over would only wait longer for a BMC that never
        // answered at all (absent, or not on this port).
        if step == Some(LoginStep::AuthCaps) || self.attempts >= tries {
            return self.finish(Err(silence(step, tries).into()));
        }
        let (cfg, rng) = attempt.into_parts();
        match Attempt::start(cfg, rng) {
            Ok((next, first)) => {
                self.attempts += 1;
                self.attempt = Some(next);
                self.send(first, now);
            }
            Err(e) => self.finish(Err(e.into())),
        }
    }

    /// Queues the datagram of a new step and starts the step's clock.
    fn send(&mut self, bytes: Vec<u8>, now: Instant) {
        self.transmit.push_back(bytes.clone());
        self.last = bytes;
        self.resends = 0;
        self.deadline = Some(now + self.step_timeout);
    }

    fn finish(&mut self, outcome: Result<Box<ActiveSession>, LoginFailure>) {
        self.attempt = None;
        self.deadline = None;
        self.outcome = Some(outcome);
    }
}

/// Why a login whose last attempt stalled waiting in `step` failed.
fn silence(step: Option<LoginStep>, tries: u32) -> SessionError {
    // A BMC that answered Open Session but then went quiet is alive and
    // refusing us: many stay silent on a bad user or password rather than
    // say which (reference §10).
    match step {
        Some(LoginStep::Rakp2) => SessionError::AuthenticationFailed(
            "the BMC did not answer RAKP 1 (unknown user name or privilege?)",
        ),
        Some(LoginStep::Rakp4) => {
            SessionError::AuthenticationFailed("the BMC did not answer RAKP 3 (wrong password?)")
        }
        _ => SessionError::NoAnswer { tries },
    }
}

#[cfg(test)]
mod tests;
