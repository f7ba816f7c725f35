//! `ipmigw serve`, `ipmigw pki init|revoke` and `ipmigw demo`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::out::outln;
use super::signals::{Received, Signals};
use super::CliError;
use crate::gateway::{self, demo};
use crate::sim::{SimConfig, Simulator};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The gateway config file.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    verb: PkiVerb,
}

#[derive(Debug, Subcommand)]
enum PkiVerb {
    /// Make a development CA, a server certificate and client certificates.
    Init {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
        /// Client certificates to issue (CN=NAME, e-mail NAME@example.test).
        #[arg(long, value_delimiter = ',')]
        users: Vec<String>,
        /// DNS names for the server certificate (default localhost).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// IP addresses for the server certificate (default 127.0.0.1).
        #[arg(long = "server-ip")]
        server_ips: Vec<IpAddr>,
    },
    /// Revoke a user's certificate: writes DIR/ca.crl (then SIGHUP the gateway).
    Revoke {
        /// The PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// User name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo's PKI, config, policy and audit trail go.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Simulated BMCs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
    bmcs: u16,
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
}

/// A write past `RLIMIT_FSIZE` raises SIGXFSZ, whose default action kills
/// the process with no log line. Handled (and so ignored), the write fails
/// with EFBIG instead and the audit trail takes its fail-closed path, as
/// for a full disk.
fn survive_file_size_limit() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        // The handler stays installed for the life of the process.
        Ok(s) => drop(s),
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGXFSZ"),
    }
}

pub async fn serve(a: ServeArgs) -> Result<(), CliError> {
    // One UDP socket per BMC plus client connections: use the hard limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    survive_file_size_limit();
    let gw = gateway::start(&a.config).await.map_err(CliError::usage)?;
    super::say(&format!(
        "ipmigw: serving on https://{} (SIGHUP reloads, SIGTERM stops)",
        gw.local_addr()
    ));
    let mut signals = Signals::new(true);
    loop {
        match signals.next().await {
            Received::Hangup => {
                if let Err(e) = gw.reload().await {
                    super::say(&format!(
                        "ipmigw: reload refused, previous configuration kept:\n{e}"
                    ));
                }
                if let Err(e) = gw.shared().audit.rotate().await {
                    super::say(&format!("ipmigw: audit rotation failed: {e}"));
                }
            }
            stop => {
                gw.shutdown(stop.name()).await;
                return Ok(());
            }
        }
    }
}

pub fn pki(a: PkiArgs) -> Result<(), CliError> {
    match a.verb {
        PkiVerb::Init {
            dir,
            users,
            server_names,
            server_ips,
        } => {
            let names = if server_names.is_empty() && server_ips.is_empty() {
                vec!["localhost".to_string()]
            } else {
                server_names
            };
            let ips = if server_ips.is_empty() {
                vec!["127.0.0.1".parse().expect("literal")]
            } else {
                server_ips
            };
            let files = crate::pki::init(&dir, &users, &names, &ips).map_err(CliError::usage)?;
            outln!("DEVELOPMENT PKI (not for production: the CA key is stored unprotected beside the certificates)");
            for f in files {
                outln!("  {}", f.display());
            }
            Ok(())
        }
        PkiVerb::Revoke { dir, name } => {
            let crl = crate::pki::revoke(&dir, &name).map_err(CliError::usage)?;
            outln!(
                "revoked {name}; wrote {} (send SIGHUP to the gateway to apply it)",
                crl.display()
            );
            Ok(())
        }
    }
}

pub async fn demo(a: DemoArgs) -> Result<(), CliError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    survive_file_size_limit();
    let dir = a
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join("ipmigw-demo"));
    // A busy address is said before anything is started or written (a
    // running demo's files stay as they are).
    std::net::TcpListener::bind(a.listen).map_err(|e| {
        CliError::usage(format!(
            "--listen {}: {e} (another demo running? pick another address with --listen 127.0.0.1:PORT, or 127.0.0.1:0 for any free port)",
            a.listen
        ))
    })?;
    let sim = Simulator::start(SimConfig::new(
        "127.0.0.1:0".parse().expect("literal"),
        a.bmcs as usize,
    ))
    .await
    .map_err(|e| CliError::usage(format!("simulated BMCs: {e}")))?;
    // Hosts start running, as in a datacenter.
    for b in sim.bmcs() {
        b.with_model(|m, now| m.set_host_power(true, now));
    }
    let addrs: Vec<SocketAddr> = sim.bmcs().iter().map(|b| b.addr()).collect();
    let started = async {
        let config = demo::write_files(&dir, &addrs, a.listen)?;
        gateway::start(&config).await
    };
    let gw = match started.await {
        Ok(g) => g,
        Err(e) => {
            sim.stop().await;
            return Err(CliError::usage(e));
        }
    };
    print_suggestions(&dir, addrs.len(), gw.local_addr());
    let mut signals = Signals::new(true);
    loop {
        match signals.next().await {
            Received::Hangup => {
                let _ = gw.reload().await;
            }
            stop => {
                gw.shutdown(stop.name()).await;
                sim.stop().await;
                outln!("ipmigw demo: stopped (gateway, audit trail closed, simulated BMCs)");
                return Ok(());
            }
        }
    }
}

/// What to try, each line ready to paste (the demo's test runs every one).
fn print_suggestions(dir: &Path, bmcs: usize, gateway: SocketAddr) {
    let d = dir.display();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|p| p.display().to_string()))
        .unwrap_or_default();
    let last = demo::bmc_name(bmcs - 1);
    let bridge_port = free_udp_port(DEMO_BRIDGE_PORT);
    let pw = demo::BRIDGE_PASSWORD_FILE;
    outln!("ipmigw demo: {bmcs} simulated BMCs (node01-{last}), a development PKI and a gateway on https://{gateway}");
    outln!("Everything is on loopback; files are in {d} (development PKI: not for production).\n");
    outln!("In another terminal, be alice (operator on every demo BMC):\n");
    outln!("  export PATH=\"{exe}:$PATH\"");
    outln!("  export IPMIGW_GATEWAY=https://{gateway} IPMIGW_CA={d}/pki/ca.crt IPMIGW_CERT={d}/pki/alice.crt IPMIGW_KEY={d}/pki/alice.key\n");
    outln!("Then try:\n");
    outln!("  ipmigw power status --all");
    outln!("  ipmigw power cycle node01");
    outln!("  ipmigw sensors node02");
    outln!("  IPMIGW_CERT={d}/pki/bob.crt IPMIGW_KEY={d}/pki/bob.key ipmigw power off node01   # bob is a viewer: denied, exit 3");
    outln!("  ipmigw audit query {d}");
    outln!("  ipmigw audit verify --key-file {d}/audit.key {d}\n");
    outln!(
        "Stock ipmitool through the gateway, as alice (policy and audit apply to every command):\n"
    );
    outln!("  ipmigw bridge --listen 127.0.0.1:{bridge_port} --user alice --password-file {d}/{pw} node01 &");
    outln!("  ipmitool -I lanplus -H 127.0.0.1 -p {bridge_port} -U alice -f {d}/{pw} -C 17 power status\n");
    outln!("Ctrl-C stops the gateway and the simulated BMCs.");
}

/// The bridge port the demo suggests, when it is free.
const DEMO_BRIDGE_PORT: u16 = 6230;

/// `preferred` when a UDP socket can bind it on loopback now, else a port
/// the system picks: a suggestion that works when it is printed.
fn free_udp_port(preferred: u16) -> u16 {
    let bind = |port| std::net::UdpSocket::bind(("127.0.0.1", port));
    bind(preferred)
        .or_else(|_| bind(0))
        .and_then(|s| s.local_addr())
        .map_or(preferred, |a| a.port())
}
