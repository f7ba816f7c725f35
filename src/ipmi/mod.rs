//! Sans-IO IPMI 2.0 / RMCP+ protocol code.
//!
//! Bytes in, bytes out, typed values in between. This module owns the wire
//! formats ([`wire`]), the RMCP+ cryptography ([`crypto`]), the session state
//! machines ([`session`]), the typed commands and their decoders ([`cmd`],
//! [`sdr`], [`fru`], [`sel`]) and the mapping from an IPMI request to the
//! policy's command name ([`cmd::name`]).
//!
//! It must never do I/O: no sockets, files, clocks, threads or async runtime.
//! Time, when needed, is passed in; randomness comes from a caller-supplied
//! CSPRNG. Every decoder of peer bytes returns a `Result` and never panics
//! (each has a fuzz target under `fuzz/`). No key or password is ever logged.

pub mod cmd;
pub mod crypto;
pub mod fru;
pub mod probe;
pub mod sdr;
pub mod sel;
pub mod session;
pub mod wire;
