//! Records nobody waits for (`result`, `tls`, `bmc_session`, ...) that
//! reached the writer while the trail was closed, kept until it recovers.
//! A `result` whose `request` record is durable says what came of a
//! command that may have reached a BMC: dropping it because the disk was
//! full for a minute would leave the trail silent about something that
//! was executed.
//!
//! Bounded: past the limit records are counted, not kept, and the count is
//! itself recorded on recovery. Never holds a record someone waits for
//! (that caller is refused and sends nothing) and never reorders what it
//! holds.

use std::collections::VecDeque;

/// One held record. `seq` is the sequence number it was given in a batch
/// whose write or fsync failed: such a line may be on disk after all, and
/// recovery, which reads where the chain stands, knows whether it is.
pub(super) struct HeldRecord {
    pub(super) seq: Option<u64>,
    pub(super) event: &'static str,
    pub(super) fields: String,
}

/// The held records, oldest first, and how many did not fit.
pub(super) struct Held {
    records: VecDeque<HeldRecord>,
    cap: usize,
    dropped: u64,
}

impl Held {
    pub(super) fn new(cap: usize) -> Held {
        Held {
            records: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    /// Keeps a record, or counts it when the limit is reached: then the
    /// count since the last [`Held::take`] is the error.
    pub(super) fn push(&mut self, r: HeldRecord) -> Result<(), u64> {
        if self.records.len() < self.cap {
            self.records.push_back(r);
            Ok(())
        } else {
            self.dropped += 1;
            Err(self.dropped)
        }
    }

    /// Everything held, for the recovery batch, leaving this empty. Lines
    /// of a failed batch with a seq below `next_seq` (where the reopened
    /// chain continues) are on disk already and are left out; the rest
    /// keep their order. Returns the records and the count dropped.
    pub(super) fn take(&mut self, next_seq: u64) -> (Vec<HeldRecord>, u64) {
        let records = std::mem::take(&mut self.records)
            .into_iter()
            .filter(|r| r.seq.is_none_or(|s| s >= next_seq))
            .collect();
        (records, std::mem::take(&mut self.dropped))
    }

    /// Puts back what [`Held::take`] returned when the recovery batch could
    /// not be written (it goes first again, before anything held since).
    pub(super) fn restore(&mut self, records: Vec<HeldRecord>, dropped: u64) {
        for r in records.into_iter().rev() {
            self.records.push_front(r);
        }
        while self.records.len() > self.cap {
            self.records.pop_back();
            self.dropped += 1;
        }
        self.dropped += dropped;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dropped == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: Option<u64>, i: usize) -> HeldRecord {
        HeldRecord {
            seq,
            event: "result",
            fields: format!("\"i\":{i}"),
        }
    }

    fn fields(v: &[HeldRecord]) -> Vec<&str> {
        v.iter().map(|r| r.fields.as_str()).collect()
    }

    #[test]
    fn bounded_in_order_and_what_is_on_disk_is_left_out() {
        let mut h = Held::new(3);
        assert!(h.is_empty());
        assert_eq!(h.push(rec(Some(10), 0)), Ok(()));
        assert_eq!(h.push(rec(Some(11), 1)), Ok(()));
        assert_eq!(h.push(rec(None, 2)), Ok(()));
        assert_eq!(h.push(rec(None, 3)), Err(1), "past the bound: counted");
        assert_eq!(h.push(rec(None, 4)), Err(2));
        // The chain continues at 11: line 10 reached the disk, 11 did not.
        let (got, dropped) = h.take(11);
        assert_eq!(fields(&got), ["\"i\":1", "\"i\":2"]);
        assert_eq!(dropped, 2);
        assert!(h.is_empty());
    }

    #[test]
    fn a_failed_recovery_puts_everything_back_first() {
        let mut h = Held::new(3);
        let _ = h.push(rec(None, 0));
        let _ = h.push(rec(None, 1));
        let (got, dropped) = h.take(1);
        // Held while the recovery batch was being written.
        let _ = h.push(rec(None, 2));
        let _ = h.push(rec(None, 3));
        h.restore(got, dropped);
        let (got, dropped) = h.take(1);
        assert_eq!(fields(&got), ["\"i\":0", "\"i\":1", "\"i\":2"]);
        assert_eq!(dropped, 1, "the newest one past the bound");
    }
}
