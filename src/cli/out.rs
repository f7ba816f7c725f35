//! Standard output for every verb. A reader that goes away early (`| head
//! -3`, `| true`) ends the output quietly, as it does for other Unix tools,
//! instead of a panic and exit 101 (Rust ignores SIGPIPE, so a write to a
//! closed pipe is an error, which `println!` turns into a panic). The verb
//! still runs to its end, so that the exit status says how it went, not
//! whether somebody read all of its output.
//!
//! Never panics on a failed write; never writes to stderr except to name a
//! write error that is not a closed pipe (a full disk, once).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout is gone: later output is dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Set when stdout failed for another reason than a closed pipe.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout as it is (no newline added), unless stdout has
/// gone away.
pub(crate) fn write(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            FAILED.store(true, Ordering::Relaxed);
            super::say(&format!("ipmigw: cannot write the output: {e}"));
        }
    }
}

/// True when output was lost to a write error other than a closed pipe
/// (the output is then incomplete where somebody meant to keep it).
pub(crate) fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => {
        $crate::cli::out::write("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(&format!($($arg)*))
    };
}

pub(crate) use {out, outln};
