//! RMCP+ session state machines, apart from sockets and timers.
//!
//! [`console`] is the gateway's side toward a BMC: login ([`console::Handshake`])
//! and the established session ([`console::ActiveSession`]). [`bmc`] is the
//! BMC's side ([`bmc::Endpoint`]). [`window`] is the inbound sequence window
//! both sides use; [`sol`] is the SOL packet protocol both sides use, and
//! [`console::sol`] the console's SOL engine on top of a session. The caller owns the socket and the clock: it passes `now`
//! in, wakes the machines at their `poll_timeout`, and sends what they emit.
//! Timer policy (login re-sends, session expiry) lives here, so every
//! driver gets the same one; these types never read a clock or touch a
//! socket.

pub mod bmc;
pub mod console;
pub mod sol;
pub mod window;

#[cfg(test)]
pub(crate) mod testpeer;

/// IPMI privilege level (reference §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    /// CALLBACK (1).
    Callback = 1,
    /// USER (2): reads.
    User = 2,
    /// OPERATOR (3): most state changes.
    Operator = 3,
    /// ADMINISTRATOR (4): configuration.
    Administrator = 4,
    /// OEM (5).
    Oem = 5,
}

impl Privilege {
    /// The 4-bit level.
    pub fn level(self) -> u8 {
        self as u8
    }

    /// From a 4-bit level; 0 and 6..15 are not privileges.
    pub fn from_level(v: u8) -> Option<Privilege> {
        Some(match v & 0x0F {
            1 => Privilege::Callback,
            2 => Privilege::User,
            3 => Privilege::Operator,
            4 => Privilege::Administrator,
            5 => Privilege::Oem,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Privilege::Callback => "callback",
            Privilege::User => "user",
            Privilege::Operator => "operator",
            Privilege::Administrator => "administrator",
            Privilege::Oem => "oem",
        })
    }
}
