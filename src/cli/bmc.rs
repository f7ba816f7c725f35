//! `ipmigw bmc …`: diagnostics straight to one BMC over RMCP+, with the same
//! verbs the gateway client has. For operators holding the BMC credentials
//! (the gateway's own host); people go through the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::out::outln;
use super::{CliError, EXIT_BMC, EXIT_CONNECTION, EXIT_USAGE};
use crate::bmc::{BmcClient, BmcConfig, BmcError};
use crate::ipmi::cmd::name::classify;
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::console::{ConsoleConfig, SessionError};
use crate::ipmi::session::Privilege;
use crate::ops::codec::{Here, OpVerb};
use crate::ops::Op;

/// The IPMI port.
const DEFAULT_PORT: u16 = 623;

#[derive(Debug, Args)]
pub struct BmcArgs {
    /// BMC address: HOST, HOST:PORT, IP or [IPv6]:PORT (port 623 by default).
    #[arg(long, short = 'H')]
    host: String,
    /// BMC user name.
    #[arg(long, short = 'U')]
    user: String,
    /// File holding the password (mode 0600 or stricter; at most 20 bytes).
    #[arg(long)]
    password_file: PathBuf,
    /// Use only this cipher suite (default: 17, falling back to 3).
    #[arg(long, value_parser = ["17", "3"])]
    cipher: Option<String>,
    /// File holding the BMC key Kg (raw, or 0x followed by hex).
    #[arg(long)]
    kg_file: Option<PathBuf>,
    /// Session privilege.
    #[arg(long, value_enum, default_value_t = PrivilegeArg::Operator)]
    privilege: PrivilegeArg,
    /// Per-try timeout in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    timeout_ms: u64,
    /// Retries of read-only commands (state-changing ones are never re-sent).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    retries: u32,
    /// JSON output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    verb: OpVerb<Here, Here>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PrivilegeArg {
    User,
    Operator,
    Administrator,
}

pub async fn run(args: BmcArgs) -> Result<(), CliError> {
    // Bad raw input is refused before anything is sent.
    let op = args.verb.op().map_err(|e| CliError::usage(e.message))?;
    let cfg = config(&args).await?;
    let client = BmcClient::connect(cfg).await.map_err(bmc_error)?;
    let result = answer(&client, &op, args.json).await;
    client.close().await;
    let text = result.map_err(bmc_error)?;
    if !text.is_empty() {
        outln!("{text}");
    }
    Ok(())
}

/// Runs `op` and renders its answer; a raw request's non-zero completion
/// code is an error (in text mode: JSON shows it).
async fn answer(c: &BmcClient, op: &Op, json: bool) -> Result<String, BmcError> {
    let a = op.run(c).await?;
    if let (Some(cc), Op::Raw(req), false) = (a.completion_code, op, json) {
        if cc != 0 {
            return Err(BmcError::Completion {
                addr: c.addr(),
                command: classify(req.netfn, req.cmd, &req.data).name.to_string(),
                code: crate::ipmi::wire::message::CompletionCode(cc),
            });
        }
    }
    Ok(if json { op.json_text(&a.json) } else { a.text })
}

async fn config(args: &BmcArgs) -> Result<BmcConfig, CliError> {
    let addr = resolve(&args.host).await?;
    let password = crate::bmc::credentials::read_password_file(&args.password_file)
        .map_err(CliError::usage)?;
    let privilege = match args.privilege {
        PrivilegeArg::User => Privilege::User,
        PrivilegeArg::Operator => Privilege::Operator,
        PrivilegeArg::Administrator => Privilege::Administrator,
    };
    let mut console = ConsoleConfig::new(args.user.as_bytes(), password, privilege);
    if let Some(k) = &args.kg_file {
        console.kg = Some(crate::bmc::credentials::read_kg_file(k).map_err(CliError::usage)?);
    }
    if let Some(c) = &args.cipher {
        let id: u8 = c
            .parse()
            .map_err(|_| CliError::usage(format!("--cipher {c}: expected 17 or 3")))?;
        console.cipher_suites =
            vec![CipherSuite::try_from(id).map_err(|e| CliError::usage(e.to_string()))?];
    }
    console
        .validate()
        .map_err(|e| CliError::usage(format!("BMC {addr}: {e}")))?;
    let mut cfg = BmcConfig::new(addr, console);
    cfg.timeout = Duration::from_millis(args.timeout_ms);
    cfg.retries = args.retries;
    Ok(cfg)
}

/// Resolves HOST[:PORT] with 623 as the default port.
async fn resolve(host: &str) -> Result<SocketAddr, CliError> {
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{DEFAULT_PORT}")
    };
    let mut addrs = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| CliError::usage(format!("--host {host}: cannot resolve: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| CliError::usage(format!("--host {host}: no address found")))
}

fn bmc_error(e: BmcError) -> CliError {
    let code = match &e {
        BmcError::NoAnswer { .. }
        | BmcError::Io { .. }
        | BmcError::Closed(_)
        | BmcError::Busy(_) => EXIT_CONNECTION,
        BmcError::Login {
            source:
                SessionError::EmptyUsername
                | SessionError::UsernameTooLong(_)
                | SessionError::PasswordTooLong(_)
                | SessionError::KgTooLong(_)
                | SessionError::NoCipherSuites
                | SessionError::InsecureSuite(_),
            ..
        } => EXIT_USAGE,
        _ => EXIT_BMC,
    };
    CliError {
        code,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hosts_get_port_623() {
        assert_eq!(
            resolve("127.0.0.1").await.unwrap(),
            "127.0.0.1:623".parse().unwrap()
        );
        assert_eq!(resolve("127.0.0.1:9001").await.unwrap().port(), 9001);
        assert_eq!(resolve("[::1]:9001").await.unwrap().port(), 9001);
        assert_eq!(resolve("::1").await.unwrap().port(), 623);
        assert_eq!(resolve("localhost:9").await.unwrap().port(), 9);
    }
}
