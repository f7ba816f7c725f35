//! A request's ticket: shared between the caller and the BMC's task, so
//! that work whose caller has gone never reaches the BMC. The task commits
//! the ticket right before the first datagram goes out; the caller may
//! withdraw it until then. Exactly one of the two wins. A committed read
//! may still be abandoned: it stops between two of its commands.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// The ticket of one operation (all the commands it sends).
#[derive(Debug, Default)]
pub struct Ticket {
    state: AtomicU8,
    abandoned: AtomicBool,
}

const QUEUED: u8 = 0;
const COMMITTED: u8 = 1;
const WITHDRAWN: u8 = 2;

impl Ticket {
    /// A fresh ticket.
    pub fn new() -> Arc<Ticket> {
        Arc::new(Ticket::default())
    }

    /// The task's side: true when the request may be sent (it was not
    /// withdrawn; a ticket once committed stays committed).
    pub(crate) fn commit(&self) -> bool {
        match self
            .state
            .compare_exchange(QUEUED, COMMITTED, Relaxed, Relaxed)
        {
            Ok(_) => true,
            Err(state) => state == COMMITTED,
        }
    }

    /// The caller's side: true when nothing was or will be sent for it.
    pub fn withdraw(&self) -> bool {
        match self
            .state
            .compare_exchange(QUEUED, WITHDRAWN, Relaxed, Relaxed)
        {
            Ok(_) => true,
            Err(state) => state == WITHDRAWN,
        }
    }

    /// True once something was sent for it.
    pub fn committed(&self) -> bool {
        self.state.load(Relaxed) == COMMITTED
    }

    /// True once withdrawn.
    pub fn withdrawn(&self) -> bool {
        self.state.load(Relaxed) == WITHDRAWN
    }

    /// Nobody waits for the answer any more: a multi-step read stops before
    /// its next command (a state-changing command is one command, and is
    /// never cut short).
    pub fn abandon(&self) {
        self.abandoned.store(true, Relaxed);
    }

    /// True once abandoned.
    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_of_commit_and_withdraw_wins() {
        let t = Ticket::new();
        assert!(t.commit() && t.commit(), "commit is sticky");
        assert!(!t.withdraw());
        let t = Ticket::new();
        assert!(t.withdraw() && t.withdraw(), "withdraw is sticky");
        assert!(!t.commit());
        assert!(t.withdrawn() && !t.committed());
    }
}
