//! Inbound sequence-number window (reference §5.1): a packet is accepted
//! when its number is at most 15 above and 16 below the highest accepted so
//! far and has not been seen before. The bitmap rejects replays inside the
//! window, which ipmi_sim and OpenBMC do not.
//!
//! Callers check a packet only after its MAC verified, so forged packets can
//! neither move the window nor use up its slots.

/// How far above the highest accepted number a packet may be.
pub const WINDOW_AHEAD: u32 = 15;
/// How far below the highest accepted number a packet may be.
pub const WINDOW_BEHIND: u32 = 16;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Sequence number 0 is reserved for session setup.
    #[error("sequence number 0 inside a session")]
    Zero,
    /// Already accepted once: a replay or a duplicate.
    #[error("sequence number {0} seen before")]
    Replayed(u32),
    /// Too far above or below the window.
    #[error("sequence number {got} outside the window around {highest}")]
    OutOfWindow {
        /// The refused number.
        got: u32,
        /// The highest number accepted so far.
        highest: u32,
    },
}

/// Sliding window with a duplicate bitmap. Bit `i` of `seen` stands for
/// `highest - i`.
#[derive(Debug, Clone, Default)]
pub struct SeqWindow {
    highest: Option<u32>,
    seen: u64,
}

impl SeqWindow {
    /// An empty window: the first authentic packet sets its base. The keys
    /// are fresh per session, so nothing older than that packet can exist.
    pub fn new() -> SeqWindow {
        SeqWindow::default()
    }

    /// Accepts `seq` and records it, or says why not. Wrap-around is
    /// handled with modular distance; 0 is never valid.
    pub fn accept(&mut self, seq: u32) -> Result<(), WindowError> {
        if seq == 0 {
            return Err(WindowError::Zero);
        }
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.seen = 1;
            return Ok(());
        };
        let ahead = seq.wrapping_sub(highest);
        let behind = highest.wrapping_sub(seq);
        if ahead != 0 && ahead <= WINDOW_AHEAD {
            self.seen = if ahead >= 64 { 0 } else { self.seen << ahead };
            self.seen |= 1;
            self.highest = Some(seq);
            Ok(())
        } else if behind <= WINDOW_BEHIND {
            let bit = 1u64 << behind;
            if self.seen & bit != 0 {
                return Err(WindowError::Replayed(seq));
            }
            self.seen |= bit;
            Ok(())
        } else {
            Err(WindowError::OutOfWindow { got: seq, highest })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_reordered_packets_pass_once() {
        let mut w = SeqWindow::new();
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(7), Ok(()));
        assert_eq!(w.accept(6), Ok(()), "late but new");
        assert_eq!(w.accept(6), Err(WindowError::Replayed(6)));
        assert_eq!(w.accept(7), Err(WindowError::Replayed(7)));
        assert_eq!(w.accept(5), Err(WindowError::Replayed(5)));
    }

    #[test]
    fn window_edges() {
        let mut w = SeqWindow::new();
        w.accept(100).unwrap();
        assert!(
            matches!(w.accept(116), Err(WindowError::OutOfWindow { .. })),
            "16 ahead"
        );
        assert_eq!(w.accept(115), Ok(()), "15 ahead");
        // highest is now 115: 99 is 16 behind, 98 is 17 behind.
        assert_eq!(w.accept(99), Ok(()));
        assert!(matches!(w.accept(98), Err(WindowError::OutOfWindow { .. })));
        assert_eq!(w.accept(0), Err(WindowError::Zero));
    }

    #[test]
    fn far_ahead_is_refused_and_does_not_move_the_window() {
        let mut w = SeqWindow::new();
        w.accept(1).unwrap();
        assert!(w.accept(1_000).is_err());
        assert_eq!(w.accept(2), Ok(()));
    }

    #[test]
    fn wraps_around_u32() {
        let mut w = SeqWindow::new();
        w.accept(u32::MAX - 1).unwrap();
        w.accept(u32::MAX).unwrap();
        assert_eq!(w.accept(1), Ok(()), "skips 0 across the wrap");
        assert_eq!(w.accept(u32::MAX), Err(WindowError::Replayed(u32::MAX)));
    }
}
