//! The one real clock read of the sans-IO unit tests: the origin of their
//! fake clock (an `Instant` cannot be made any other way); from there on
//! time moves only when a test moves it. Test builds only, and outside
//! `ipmi`, so that the protocol core reads no clock, not even in its tests.

use std::time::Instant;

/// Now, once per test: the fake clock's origin.
pub(crate) fn t0() -> Instant {
    Instant::now()
}
