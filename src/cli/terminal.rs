//! The local terminal of `ipmigw console`: raw mode while a console is
//! attached, and the settings it had put back on every way out (normal
//! return, error, signal, panic).
//!
//! Never does: leave a terminal raw behind it, or touch a standard input
//! that is not a terminal (pipes and files are read as they are).

use std::io::IsTerminal;
use std::sync::{Mutex, Once};

use rustix::termios::{tcgetattr, tcsetattr, OptionalActions, Termios};

/// The settings to put back, for the panic hook (a panic unwinds through
/// the guard too, but a panic hook runs first and prints on a raw screen).
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// Raw mode on standard input while it lives; the saved settings are put
/// back when it is dropped.
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    /// Puts standard input in raw mode when it is a terminal (otherwise
    /// does nothing): no echo, no line editing, no signals from Ctrl-C or
    /// Ctrl-Z (they go to the remote console), no CR/NL translation.
    pub fn enter() -> std::io::Result<RawTerminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(RawTerminal { saved: None });
        }
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved.clone());
        install_panic_hook();
        tcsetattr(&stdin, OptionalActions::Flush, &raw)?;
        Ok(RawTerminal { saved: Some(saved) })
    }

    /// Whether the terminal is raw (so output lines need `\r\n`).
    pub fn is_raw(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            restore(&saved);
            *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

fn restore(saved: &Termios) {
    // Drain: output already written is shown before the settings change.
    let _ = tcsetattr(std::io::stdin(), OptionalActions::Drain, saved);
}

/// Restores the terminal before the default hook prints the panic, so
/// that the message is readable and the shell usable.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(saved) = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take() {
                restore(&saved);
            }
            previous(info);
        }));
    });
}
