//! Rate limits: `N/second|minute|hour` strings and GCRA limiters (governor)
//! that refuse, never queue, and say when a refused request would pass.
//! Limiters are keyed by small integer IDs (user, BMC) and stay bounded:
//! past [`MAX_KEYS`] keys they drop the keys whose state has fully refilled.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// Keys one limiter keeps before it sheds fully refilled ones.
pub const MAX_KEYS: usize = 100_000;
/// How often (in checks) a limiter sheds refilled keys anyway.
const SHED_EVERY: u64 = 65_536;

/// A parsed rate: `count` per `period`, allowing a burst of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// Parses `60/minute`, `20/second`, `1000/hour` (also `s`, `m`, `h`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let expected = "expected N/second, N/minute or N/hour with N from 1 to 1000000";
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("rate {s:?}: {expected}"))?;
        let count: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|c| (1..=1_000_000).contains(c))
            .ok_or_else(|| format!("rate {s:?}: {expected}"))?;
        let period = match unit.trim() {
            "second" | "s" | "sec" => Duration::from_secs(1),
            "minute" | "m" | "min" => Duration::from_secs(60),
            "hour" | "h" => Duration::from_secs(3600),
            _ => return Err(format!("rate {s:?}: {expected}")),
        };
        Ok(Rate { count, period })
    }

    /// Half this rate (rounded up): one user's share of a shared rate.
    pub fn share(&self) -> Rate {
        Rate {
            count: self.count.div_ceil(2),
            period: self.period,
        }
    }

    fn quota(&self) -> Quota {
        let count = NonZeroU32::new(self.count).unwrap_or(NonZeroU32::MIN);
        let per_cell = self.period / count.get();
        Quota::with_period(per_cell.max(Duration::from_nanos(1)))
            .expect("period is positive")
            .allow_burst(count)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "second",
            60 => "minute",
            _ => "hour",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// One keyed GCRA limiter.
pub struct Limiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    rate: Rate,
    inner: RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Limiter<K, C> {
    /// A limiter for `rate` on `clock`.
    pub fn new(rate: Rate, clock: C) -> Self {
        Limiter {
            rate,
            inner: RateLimiter::dashmap_with_clock(rate.quota(), clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one cell for `key`, or says how long until one is free.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let n = self.checks.fetch_add(1, Relaxed);
        if n % SHED_EVERY == SHED_EVERY - 1
            || (n.is_multiple_of(1024) && self.inner.len() > MAX_KEYS)
        {
            self.shed();
        }
        self.inner
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops keys whose state has fully refilled (indistinguishable from new).
    pub fn shed(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for Limiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn rate_strings() {
        assert_eq!(
            Rate::parse("60/minute").unwrap(),
            Rate {
                count: 60,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(Rate::parse("20/second").unwrap().to_string(), "20/second");
        assert_eq!(
            Rate::parse("5/h").unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in [
            "60",
            "0/minute",
            "x/minute",
            "10/fortnight",
            "-1/second",
            "2000000/second",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn burst_refill_and_exact_retry_time() {
        let clock = FakeRelativeClock::default();
        let l: Limiter<u64, _> = Limiter::new(Rate::parse("6/minute").unwrap(), clock.clone());
        for _ in 0..6 {
            assert!(l.check(&1).is_ok(), "burst of 6");
        }
        assert_eq!(
            l.check(&1),
            Err(Duration::from_secs(10)),
            "one cell refills every 10 s"
        );
        assert!(l.check(&2).is_ok(), "other keys are independent");
        clock.advance(Duration::from_secs(4));
        assert_eq!(l.check(&1), Err(Duration::from_secs(6)));
        clock.advance(Duration::from_secs(6));
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_err());
        clock.advance(Duration::from_secs(60));
        for _ in 0..6 {
            assert!(l.check(&1).is_ok(), "full burst again after a full period");
        }
    }

    #[test]
    fn a_million_keys_stay_bounded() {
        let clock = FakeRelativeClock::default();
        let l: Limiter<u64, _> = Limiter::new(Rate::parse("10/second").unwrap(), clock.clone());
        let mut peak = 0;
        for k in 0..1_000_000u64 {
            let _ = l.check(&k);
            if k % 10_000 == 0 {
                // Time passes: earlier keys refill and become sheddable.
                clock.advance(Duration::from_secs(1));
                peak = peak.max(l.len());
            }
        }
        assert!(peak <= MAX_KEYS + 2048, "peak {peak} keys");
        l.shed();
        assert!(l.len() <= 10_000, "{} keys after shedding", l.len());
    }
}
