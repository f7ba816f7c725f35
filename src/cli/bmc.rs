//! `ipmigw bmc …`: diagnostics straight to one BMC over RMCP+, with the same
//! verbs the gateway client has. For operators holding the BMC credentials
//! (the gateway's own host); people go through the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{secrets, CliError, EXIT_BMC, EXIT_CONNECTION, EXIT_USAGE};
use crate::bmc::{BmcClient, BmcConfig, BmcError};
use crate::ipmi::cmd::chassis::PowerAction;
use crate::ipmi::cmd::name::{classify, is_session_management};
use crate::ipmi::cmd::RawRequest;
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::console::{ConsoleConfig, SessionError};
use crate::ipmi::session::Privilege;
use crate::ipmi::wire::message::NetFn;
use crate::ops::{self, Op};

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
    /// JSON output (the global --json, filled in by `cli::main`).
    #[arg(skip)]
    pub(crate) json: bool,
    #[command(subcommand)]
    verb: BmcVerb,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PrivilegeArg {
    User,
    Operator,
    Administrator,
}

#[derive(Debug, Subcommand)]
enum BmcVerb {
    /// Power status or control.
    Power {
        #[arg(value_parser = ["status", "on", "off", "cycle", "reset", "soft", "diag"])]
        action: String,
    },
    /// Chassis status and boot device.
    Chassis {
        #[command(subcommand)]
        verb: ChassisVerb,
    },
    /// Management controller.
    Mc {
        #[command(subcommand)]
        verb: McVerb,
    },
    /// Every sensor with its reading and thresholds.
    Sensors,
    /// System event log.
    Sel {
        #[command(subcommand)]
        verb: SelVerb,
    },
    /// FRU inventory of device 0.
    Fru,
    /// A raw request: NETFN CMD [DATA...] (0x-prefixed hex or decimal).
    Raw {
        netfn: String,
        cmd: String,
        data: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ChassisVerb {
    /// Chassis status.
    Status,
    /// Sets the boot device (or shows it, without DEV).
    Bootdev {
        #[arg(value_parser = ["pxe", "disk", "safe", "diag", "cdrom", "bios", "floppy", "none"])]
        device: Option<String>,
        /// Keep the setting for every boot, not just the next.
        #[arg(long)]
        persistent: bool,
        /// Boot in EFI mode.
        #[arg(long)]
        efi: bool,
    },
}

#[derive(Debug, Subcommand)]
enum McVerb {
    /// Device ID and GUID.
    Info,
}

#[derive(Debug, Subcommand)]
enum SelVerb {
    /// List every entry.
    List,
}

pub async fn run(args: BmcArgs) -> Result<(), CliError> {
    let cfg = config(&args).await?;
    // Refuse bad raw input before touching the network.
    let raw = match &args.verb {
        BmcVerb::Raw { netfn, cmd, data } => Some(parse_raw(netfn, cmd, data)?),
        _ => None,
    };
    let client = BmcClient::connect(cfg).await.map_err(bmc_error)?;
    let result = verb(&client, &args, raw).await;
    client.close().await;
    let text = result.map_err(bmc_error)?;
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(())
}

/// The operation a verb asks for.
fn op(verb: &BmcVerb, raw: Option<RawRequest>) -> Op {
    match verb {
        BmcVerb::Power { action } if action == "status" => Op::PowerStatus,
        BmcVerb::Power { action } => {
            Op::Power(PowerAction::from_name(action).expect("clap allows only known actions"))
        }
        BmcVerb::Chassis {
            verb: ChassisVerb::Status,
        } => Op::ChassisStatus,
        BmcVerb::Chassis {
            verb: ChassisVerb::Bootdev { device: None, .. },
        } => Op::BootGet,
        BmcVerb::Chassis {
            verb:
                ChassisVerb::Bootdev {
                    device: Some(d),
                    persistent,
                    efi,
                },
        } => Op::BootSet(
            ops::boot_flags(d, *persistent, *efi).expect("clap allows only known devices"),
        ),
        BmcVerb::Mc { verb: McVerb::Info } => Op::McInfo,
        BmcVerb::Sensors => Op::Sensors,
        BmcVerb::Sel {
            verb: SelVerb::List,
        } => Op::Sel,
        BmcVerb::Fru => Op::Fru,
        BmcVerb::Raw { .. } => Op::Raw(raw.expect("parsed before connecting")),
    }
}

async fn verb(c: &BmcClient, args: &BmcArgs, raw: Option<RawRequest>) -> Result<String, BmcError> {
    let op = op(&args.verb, raw);
    let a = op.run(c).await?;
    if let (Some(cc), Op::Raw(req), false) = (a.completion_code, &op, args.json) {
        if cc != 0 {
            return Err(BmcError::Completion {
                addr: c.addr(),
                command: classify(req.netfn, req.cmd, &req.data).name.to_string(),
                code: crate::ipmi::wire::message::CompletionCode(cc),
            });
        }
    }
    Ok(if args.json {
        // One-line answers stay on one line (scripts grep them); records are pretty.
        match op {
            Op::PowerStatus | Op::Power(_) | Op::BootSet(_) | Op::Raw(_) => a.json.to_string(),
            _ => serde_json::to_string_pretty(&a.json).unwrap_or_default(),
        }
    } else {
        a.text
    })
}

async fn config(args: &BmcArgs) -> Result<BmcConfig, CliError> {
    let addr = resolve(&args.host).await?;
    let password = secrets::read_password_file(&args.password_file).map_err(CliError::usage)?;
    let privilege = match args.privilege {
        PrivilegeArg::User => Privilege::User,
        PrivilegeArg::Operator => Privilege::Operator,
        PrivilegeArg::Administrator => Privilege::Administrator,
    };
    let mut console = ConsoleConfig::new(args.user.as_bytes(), password, privilege);
    if let Some(k) = &args.kg_file {
        console.kg = Some(secrets::read_kg_file(k).map_err(CliError::usage)?);
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

pub(crate) fn parse_byte(s: &str, what: &str) -> Result<u8, CliError> {
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u8::from_str_radix(h, 16)
    } else {
        s.parse::<u8>()
    };
    v.map_err(|_| {
        CliError::usage(format!(
            "raw {what} {s:?}: expected a byte, 0x00-0xff or 0-255"
        ))
    })
}

pub(crate) fn parse_raw(netfn: &str, cmd: &str, data: &[String]) -> Result<RawRequest, CliError> {
    let netfn = parse_byte(netfn, "NETFN")?;
    if netfn > 0x3F || netfn & 1 == 1 {
        return Err(CliError::usage(format!(
            "raw NETFN {netfn:#04x}: expected an even request netFn 0x00-0x3e"
        )));
    }
    let cmd = parse_byte(cmd, "CMD")?;
    if is_session_management(NetFn(netfn), cmd) {
        return Err(CliError::usage(format!(
            "raw {netfn:#04x} {cmd:#04x}: session-management commands are handled by ipmigw itself"
        )));
    }
    let data = data
        .iter()
        .map(|d| parse_byte(d, "DATA"))
        .collect::<Result<Vec<_>, _>>()?;
    if data.len() > 200 {
        return Err(CliError::usage(format!(
            "raw: {} data bytes; at most 200",
            data.len()
        )));
    }
    Ok(RawRequest {
        netfn: NetFn(netfn),
        cmd,
        data,
    })
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

    #[test]
    fn raw_arguments() {
        let r = parse_raw("0x06", "1", &[]).unwrap();
        assert_eq!((r.netfn, r.cmd), (NetFn::APP, 1));
        let r = parse_raw("0x00", "0x08", &["0x05".into(), "128".into()]).unwrap();
        assert_eq!(r.data, [5, 128]);
        assert!(parse_raw("0x07", "1", &[]).is_err(), "response netFn");
        assert!(parse_raw("0x06", "0x3c", &[])
            .unwrap_err()
            .message
            .contains("session-management"));
        assert!(parse_raw("0x06", "0x100", &[]).is_err());
        assert!(parse_raw("0x06", "1", &["zz".into()])
            .unwrap_err()
            .message
            .contains("DATA"));
    }

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
