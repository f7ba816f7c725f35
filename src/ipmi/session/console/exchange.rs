//! One in-session request on the caller's clock: when a try has waited long
//! enough, whether it is sealed again, and when the request is given up.
//!
//! Whether a request may be sent more than once is the caller's call (it
//! passes `tries`; 1 for a command that changes state): this module only
//! keeps count. Never does: read a clock, re-send the same bytes (each try
//! gets a fresh rqSeq and sequence number, so a late answer to an earlier
//! try is dropped as unmatched), or answer for the BMC.

use std::time::{Duration, Instant};

use super::{ActiveSession, Drop};
use crate::ipmi::cmd::RawRequest;
use crate::ipmi::wire::message::Response;

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The BMC's authentic reply.
    Reply(Response),
    /// No authentic reply to any try; the session no longer expects one.
    Unanswered {
        /// Datagrams sent.
        tries: u32,
    },
}

/// One request in an [`ActiveSession`], with its tries and their timer.
///
/// Driven like [`Handshake`](super::Handshake): send what
/// [`poll_transmit`](Self::poll_transmit) returns, feed what arrives and
/// the passing of time, take the result from
/// [`poll_outcome`](Self::poll_outcome). The session is passed to each verb
/// rather than held, so that the caller keeps owning it.
#[derive(Debug)]
pub struct Exchange {
    req: RawRequest,
    timeout: Duration,
    tries: u32,
    sent: u32,
    deadline: Option<Instant>,
    transmit: Option<Vec<u8>>,
    outcome: Option<Answer>,
}

impl Exchange {
    /// Seals `req` in `session` as its one outstanding request, the first
    /// of at most `tries` (at least one), each waiting `timeout` from `now`.
    pub fn start(
        session: &mut ActiveSession,
        req: RawRequest,
        tries: u32,
        timeout: Duration,
        now: Instant,
    ) -> Exchange {
        let mut ex = Exchange {
            req,
            timeout,
            tries: tries.max(1),
            sent: 0,
            deadline: None,
            transmit: None,
            outcome: None,
        };
        ex.send(session, now);
        ex
    }

    /// Feeds one datagram from the BMC. `Err` says why it was dropped (for
    /// counters); the try then goes on waiting.
    pub fn handle_datagram(
        &mut self,
        session: &mut ActiveSession,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        if self.outcome.is_some() || self.deadline.is_none() {
            return Err(Drop::Unmatched);
        }
        let resp = session.handle_datagram(datagram)?;
        self.take_reply(resp)
    }

    /// Ends the exchange with `resp`, a reply the session already matched
    /// to the outstanding request (see
    /// [`ActiveSession::handle_inbound`]).
    pub fn take_reply(&mut self, resp: Response) -> Result<(), Drop> {
        if self.outcome.is_some() || self.deadline.is_none() {
            return Err(Drop::Unmatched);
        }
        self.deadline = None;
        self.outcome = Some(Answer::Reply(resp));
        Ok(())
    }

    /// Seals the request again, or gives it up, if the try's time is up at
    /// `now` (earlier calls do nothing).
    pub fn handle_timeout(&mut self, session: &mut ActiveSession, now: Instant) {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        if self.sent < self.tries {
            self.send(session, now);
            return;
        }
        // A reply to any try is unmatched from now on.
        session.cancel_pending();
        self.deadline = None;
        self.outcome = Some(Answer::Unanswered { tries: self.sent });
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.take()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work; `None` once
    /// the request ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The result, once.
    pub fn poll_outcome(&mut self) -> Option<Answer> {
        self.outcome.take()
    }

    /// Tries sent after the first.
    pub fn retransmits(&self) -> u32 {
        self.sent.saturating_sub(1)
    }

    fn send(&mut self, session: &mut ActiveSession, now: Instant) {
        let r = &self.req;
        self.transmit = Some(session.send_request(r.netfn, r.cmd, r.data.clone()));
        self.sent += 1;
        self.deadline = Some(now + self.timeout);
    }
}

#[cfg(test)]
mod tests;
