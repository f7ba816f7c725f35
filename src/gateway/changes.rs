//! Changes that stock tools make in several messages, counted once by the
//! state-changing rate limit. `ipmitool chassis bootdev pxe` sends five Set
//! System Boot Options requests (set in progress, boot info acknowledge,
//! boot flags, commit write, set complete) for one boot-device change; a
//! `6/minute` limit must mean six such changes, and a limit must never stop
//! one halfway and leave the BMC "set in progress".
//!
//! The rule, per client connection (one user) and BMC:
//! - a change is opened only by the set-in-progress step, and that step is
//!   charged as one change (every limit applies to it);
//! - while open (at most [`CHANGE_WINDOW`] after it began), each of the
//!   other steps (acknowledge, boot flags, commit) is spared the
//!   state-changing limit once; a step that repeats is charged in full, so
//!   one charged change buys at most one boot-flags write;
//! - set complete ends it and is spared every limit; outside a change it
//!   is charged in full.
//!
//! Every step is still decided by policy under its own name, audited, and
//! counted by the per-message limits (`rate`, the per-user and per-BMC
//! rates). Raw requests only: the typed boot operation sends its own
//! messages under one decision already.
//!
//! Never does: open a change for a request that was refused, spare a limit
//! for a command that is not one of these steps, or let a change outlive
//! its connection, its window or its BMC's entry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ipmi::cmd::name::BootStep;
use crate::policy::Charge;

/// How long a change may take from its first step to its last. ipmitool
/// sends all five in well under a second; a slow BMC behind a busy gateway
/// may take a few seconds a step.
pub const CHANGE_WINDOW: Duration = Duration::from_secs(20);
/// Changes open at once on one connection (one per BMC); past it a new
/// change is not opened (its steps are charged as single messages).
pub const MAX_OPEN_CHANGES: usize = 64;

/// The changes open on one connection.
#[derive(Debug, Default)]
pub struct OpenChanges {
    open: Mutex<Vec<Open>>,
}

#[derive(Debug)]
struct Open {
    bmc: String,
    began: Instant,
    /// Steps already spared.
    spared: Vec<BootStep>,
}

impl OpenChanges {
    /// Decides a request that is `step` of a change on `bmc` (or no step):
    /// `decide` gets the charge and says whether the request was allowed;
    /// an allowed step then opens, advances or ends the change. The lock is
    /// held throughout, so that concurrent steps cannot both be spared.
    pub fn decide<T, E>(
        &self,
        bmc: &str,
        step: Option<BootStep>,
        now: Instant,
        decide: impl FnOnce(Charge) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(step) = step else {
            return decide(Charge::Full);
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|o| now.saturating_duration_since(o.began) < CHANGE_WINDOW);
        let at = open.iter().position(|o| o.bmc == bmc);
        let charge = match (step, at) {
            (BootStep::End, Some(_)) => Charge::EndOfChange,
            (BootStep::Begin, _) | (_, None) => Charge::Full,
            (_, Some(i)) if open[i].spared.contains(&step) => Charge::Full,
            (_, Some(_)) => Charge::WithinChange,
        };
        let allowed = decide(charge)?;
        match (step, at) {
            (BootStep::Begin, at) => {
                if let Some(i) = at {
                    open.swap_remove(i);
                }
                if open.len() < MAX_OPEN_CHANGES {
                    open.push(Open {
                        bmc: bmc.to_string(),
                        began: now,
                        spared: Vec::new(),
                    });
                }
            }
            (BootStep::End, Some(i)) => {
                open.swap_remove(i);
            }
            (_, Some(i)) if charge == Charge::WithinChange => open[i].spared.push(step),
            _ => {}
        }
        Ok(allowed)
    }

    /// Changes open now (for tests).
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no change is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BootStep::*;

    /// The charges `steps` get on `bmc`, each allowed.
    fn charges(c: &OpenChanges, bmc: &str, now: Instant, steps: &[BootStep]) -> Vec<Charge> {
        steps
            .iter()
            .map(|s| c.decide(bmc, Some(*s), now, Ok::<_, ()>).unwrap())
            .collect()
    }

    #[test]
    fn ipmitools_five_messages_are_one_change() {
        use Charge::*;
        let c = OpenChanges::default();
        let t = Instant::now();
        assert_eq!(
            charges(&c, "node01", t, &[Begin, Acknowledge, Flags, Commit, End]),
            [Full, WithinChange, WithinChange, WithinChange, EndOfChange]
        );
        assert!(c.is_empty(), "set complete ended it");
        // Without set in progress (ipmitool after its first one failed, or
        // freeipmi), every step is charged as a message of its own.
        assert_eq!(
            charges(&c, "node01", t, &[Acknowledge, Flags, End]),
            [Full; 3]
        );
    }

    #[test]
    fn one_charged_change_buys_one_boot_flags_write() {
        use Charge::*;
        let c = OpenChanges::default();
        let t = Instant::now();
        assert_eq!(
            charges(&c, "node01", t, &[Begin, Flags, Flags, Acknowledge, Flags]),
            [Full, WithinChange, Full, WithinChange, Full]
        );
        // A new set in progress is a new change, charged again.
        assert_eq!(
            charges(&c, "node01", t, &[Begin, Flags]),
            [Full, WithinChange]
        );
    }

    #[test]
    fn a_change_is_per_bmc_and_ends_with_its_window() {
        use Charge::*;
        let c = OpenChanges::default();
        let t = Instant::now();
        charges(&c, "node01", t, &[Begin]);
        assert_eq!(charges(&c, "node02", t, &[Flags, End]), [Full, Full]);
        let late = t + CHANGE_WINDOW;
        assert_eq!(charges(&c, "node01", late, &[Flags, End]), [Full, Full]);
        assert!(c.is_empty());
    }

    #[test]
    fn a_refused_step_opens_spends_and_ends_nothing() {
        use Charge::*;
        let c = OpenChanges::default();
        let t = Instant::now();
        let refuse = |step| c.decide("node01", Some(step), t, |_| Err::<(), _>(()));
        assert!(refuse(Begin).is_err());
        assert!(c.is_empty(), "a refused set in progress opens no change");
        charges(&c, "node01", t, &[Begin]);
        assert!(refuse(Flags).is_err());
        assert!(refuse(End).is_err());
        assert_eq!(
            charges(&c, "node01", t, &[Flags, End]),
            [WithinChange, EndOfChange]
        );
        // A request that is no step is always charged in full.
        assert_eq!(c.decide("node01", None, t, Ok::<_, ()>), Ok(Full));
    }

    #[test]
    fn open_changes_are_bounded() {
        let c = OpenChanges::default();
        let t = Instant::now();
        for i in 0..MAX_OPEN_CHANGES + 10 {
            charges(&c, &format!("node{i}"), t, &[Begin]);
        }
        assert_eq!(c.len(), MAX_OPEN_CHANGES);
        let extra = format!("node{}", MAX_OPEN_CHANGES + 1);
        assert_eq!(charges(&c, &extra, t, &[Flags]), [Charge::Full]);
    }
}
