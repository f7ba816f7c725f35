//! The refusal gate: every refused request and connection is audited, but a
//! flood of them must not become a flood of durable records (each one an
//! fsync, each one disk). Refusals are recorded one by one up to a rate per
//! identity and per source; past it the caller gets 429 and the refusal is
//! counted into a summary, written as one `denial_summary` record per kind
//! and interval. So the trail grows at a bounded rate under any flood, and
//! nothing refused goes unrecorded.
//!
//! Never decides whether to refuse (policy and the front door do); only how
//! a refusal is recorded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::DefaultClock;

use crate::audit::{line::now_rfc3339, DenialSummary, Event};
use crate::policy::rate::{Limiter, Rate};

/// Kinds of refusal counted between two flushes; more kinds than this share
/// one overflow summary.
pub const MAX_SUMMARY_KINDS: usize = 128;
/// Kinds counted for one identity; more share one summary per identity and
/// source, so that one caller cannot fill the table by varying targets.
pub const MAX_KINDS_PER_IDENTITY: usize = 8;
/// How often counted refusals are written as summaries.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// Longest identity, target or command kept in a summary key (callers choose
/// these strings; the key table must stay small).
const MAX_KEY_CHARS: usize = 128;

/// What one refusal was.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefusalKind {
    /// Policy user, or the certificate fingerprint when it maps to none.
    pub identity: String,
    /// Client address.
    pub source: IpAddr,
    /// BMC as asked, or `-`.
    pub target: String,
    /// Command name, or `-`.
    pub command: String,
    /// Reason code (`denied`, `not_found`, `bad_request`, ...).
    pub reason: String,
}

struct Tally {
    count: u64,
    first: String,
    last: String,
}

/// Rate limits on recorded refusals, and the tallies of the rest.
pub struct RefusalGate {
    per_identity: Limiter<String>,
    per_source: Limiter<IpAddr>,
    tallies: Mutex<HashMap<Key, Tally>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    identity: String,
    source: Option<IpAddr>,
    target: String,
    command: String,
    reason: String,
}

impl std::fmt::Debug for RefusalGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalGate").finish_non_exhaustive()
    }
}

impl RefusalGate {
    /// A gate recording at most `per_identity` and `per_source` refusals
    /// one by one.
    pub fn new(per_identity: Rate, per_source: Rate) -> RefusalGate {
        RefusalGate {
            per_identity: Limiter::new(per_identity, DefaultClock::default()),
            per_source: Limiter::new(per_source, DefaultClock::default()),
            tallies: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when this refusal may be recorded in full; otherwise it has
    /// been counted for the next summary, and the caller answers 429 with
    /// the returned wait.
    pub fn admit(&self, kind: &RefusalKind) -> Result<(), Duration> {
        // Both limits must have room; the source is checked first so that
        // one source with many certificates cannot spend other sources' room.
        let verdict = self
            .per_source
            .check(&kind.source)
            .and_then(|()| self.per_identity.check(&kind.identity));
        if let Err(wait) = verdict {
            self.count(kind);
            return Err(wait);
        }
        Ok(())
    }

    fn count(&self, kind: &RefusalKind) {
        let clip = |s: &str| s.chars().take(MAX_KEY_CHARS).collect::<String>();
        let mut key = Key {
            identity: clip(&kind.identity),
            source: Some(kind.source),
            target: clip(&kind.target),
            command: clip(&kind.command),
            reason: clip(&kind.reason),
        };
        let now = now_rfc3339();
        let mut tallies = self.tallies.lock().expect("refusal tallies");
        let of_identity = || {
            tallies
                .keys()
                .filter(|k| k.identity == key.identity)
                .count()
        };
        if !tallies.contains_key(&key) && of_identity() >= MAX_KINDS_PER_IDENTITY {
            key = Key {
                target: "*".into(),
                command: "*".into(),
                reason: "*".into(),
                ..key
            };
        }
        if !tallies.contains_key(&key) && tallies.len() >= MAX_SUMMARY_KINDS {
            // Too many kinds: fold into one overflow tally for everyone.
            key = Key {
                identity: "*".into(),
                source: None,
                target: "*".into(),
                command: "*".into(),
                reason: "*".into(),
            };
        }
        let t = tallies.entry(key).or_insert_with(|| Tally {
            count: 0,
            first: now.clone(),
            last: String::new(),
        });
        t.count += 1;
        t.last = now;
    }

    /// Takes the tallies so far, as summary events.
    pub fn drain(&self) -> Vec<Event> {
        let tallies = std::mem::take(&mut *self.tallies.lock().expect("refusal tallies"));
        tallies
            .into_iter()
            .map(|(k, t)| {
                Event::DenialSummary(DenialSummary {
                    identity: k.identity,
                    source: k.source.map_or("*".into(), |s| s.to_string()),
                    target: k.target,
                    command: k.command,
                    reason: k.reason,
                    count: t.count,
                    first: t.first,
                    last: t.last,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(identity: &str, source: [u8; 4], command: &str) -> RefusalKind {
        RefusalKind {
            identity: identity.into(),
            source: IpAddr::from(source),
            target: "node01".into(),
            command: command.into(),
            reason: "denied".into(),
        }
    }

    #[test]
    fn past_the_rate_refusals_are_counted_not_admitted() {
        let rate = Rate::parse("5/minute").unwrap();
        let gate = RefusalGate::new(rate, Rate::parse("100/minute").unwrap());
        let k = kind("bob", [10, 0, 0, 1], "raw.0x30.0x01");
        let admitted = (0..50).filter(|_| gate.admit(&k).is_ok()).count();
        assert_eq!(admitted, 5);
        // Another identity from another source is unaffected.
        assert!(gate.admit(&kind("alice", [10, 0, 0, 2], "x")).is_ok());
        let summaries = gate.drain();
        assert_eq!(summaries.len(), 1);
        let Event::DenialSummary(s) = &summaries[0] else {
            panic!()
        };
        assert_eq!((s.identity.as_str(), s.count), ("bob", 45));
        assert!(gate.drain().is_empty(), "drained");
    }

    #[test]
    fn many_kinds_fold_into_one_overflow_summary() {
        let gate = RefusalGate::new(
            Rate::parse("1/hour").unwrap(),
            Rate::parse("1/hour").unwrap(),
        );
        // One identity varying its commands gets a handful of kinds.
        for i in 0..10_000u32 {
            let _ = gate.admit(&kind("eve", [10, 0, 0, 9], &format!("raw.0x30.{i}")));
        }
        assert_eq!(gate.drain().len(), MAX_KINDS_PER_IDENTITY + 1);
        // Many identities fill the table, then share one overflow.
        for i in 0..10_000u32 {
            let _ = gate.admit(&kind(&format!("u{i}"), [10, 0, 0, 9], "raw.0x30.0x01"));
        }
        let summaries = gate.drain();
        assert_eq!(summaries.len(), MAX_SUMMARY_KINDS + 1);
        let total: u64 = summaries
            .iter()
            .map(|e| match e {
                Event::DenialSummary(s) => s.count,
                _ => 0,
            })
            .sum();
        assert_eq!(total, 10_000, "every refusal is counted");
    }
}
