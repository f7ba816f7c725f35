//! Typed IPMI commands: each knows its netFn/cmd, builds its request data and
//! decodes its response data (the bytes after the completion code). Decoders
//! take peer bytes and never panic.
//!
//! [`registry`] describes every known command once; [`name`] maps any
//! request to the command names the policy speaks.

pub mod app;
pub mod chassis;
pub mod name;
pub mod privilege;
pub mod registry;
pub mod sensor_event;
pub mod sol;
pub mod storage;

use crate::ipmi::wire::message::NetFn;
use crate::ipmi::wire::WireError;

/// A request as the session layer sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// Request netFn.
    pub netfn: NetFn,
    /// Command.
    pub cmd: u8,
    /// Request data.
    pub data: Vec<u8>,
}

/// A typed command.
pub trait Command {
    /// The decoded response.
    type Response;
    /// The request to send.
    fn request(&self) -> RawRequest;
    /// Decodes the response data after a completion code of 0.
    fn parse_response(&self, data: &[u8]) -> Result<Self::Response, WireError>;
}

/// Fails unless `data` holds at least `n` bytes.
pub(crate) fn need(data: &[u8], n: usize, what: &'static str) -> Result<(), WireError> {
    crate::ipmi::wire::need(data, n, what)
}
