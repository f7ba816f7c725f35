//! The signals long-running verbs (`serve`, `demo`, `sim`, `bridge`) obey:
//! Ctrl-C and SIGTERM stop, SIGHUP reloads where a verb reloads.
//!
//! The listeners are registered once and kept, so a signal that arrives
//! while a reload runs is still seen afterwards.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Ctrl-C.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP.
    Hangup,
}

impl Received {
    /// The signal's name, for shutdown records.
    pub fn name(self) -> &'static str {
        match self {
            Received::Interrupt => "SIGINT",
            Received::Terminate => "SIGTERM",
            Received::Hangup => "SIGHUP",
        }
    }
}

/// Registered listeners.
pub struct Signals {
    term: Option<Signal>,
    hup: Option<Signal>,
}

async fn recv(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

impl Signals {
    /// Listens for Ctrl-C and SIGTERM, and for SIGHUP when `reloads`.
    pub fn new(reloads: bool) -> Signals {
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            hup: if reloads {
                signal(SignalKind::hangup()).ok()
            } else {
                None
            },
        }
    }

    /// The next signal.
    pub async fn next(&mut self) -> Received {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Received::Interrupt,
            _ = recv(&mut self.term) => Received::Terminate,
            _ = recv(&mut self.hup) => Received::Hangup,
        }
    }
}
