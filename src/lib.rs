//! ipmigw: a hardened IPMI security gateway.
//!
//! The path of one request (see `docs` in the repository and README.md):
//!
//! ```text
//! client ── mTLS ──▶ front door (identity) ─▶ policy ─▶ audit (write-ahead)
//!                                                          │
//!                           BMC ◀── RMCP+ (suite 17 or 3) ─┘ bmc pool
//! ```
//!
//! Layers, with dependencies pointing one way (`cli` → `bmc` → `ipmi`):
//!
//! - [`ipmi`]: sans-IO protocol code. Bytes in, bytes out, typed values in
//!   between; no sockets, files, clocks or async runtime.
//! - [`bmc`]: tokio I/O toward BMCs: one UDP socket and one authenticated
//!   session per BMC, timeouts, retries, keepalive, re-login.
//! - [`cli`]: the `ipmigw` command line.
//! - [`secret`]: the zeroizing, never-printed holder for passwords and keys.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod bmc;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod ipmi;
pub mod ops;
pub mod pki;
pub mod policy;
pub mod secret;
pub mod sim;
