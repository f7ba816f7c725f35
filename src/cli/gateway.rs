//! `ipmigw serve`, `ipmigw pki init|revoke` and `ipmigw demo`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Subcommand};

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
            println!("DEVELOPMENT PKI (not for production: the CA key is stored unprotected beside the certificates)");
            for f in files {
                println!("  {}", f.display());
            }
            Ok(())
        }
        PkiVerb::Revoke { dir, name } => {
            let crl = crate::pki::revoke(&dir, &name).map_err(CliError::usage)?;
            println!(
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
    let config = demo::write_files(&dir, &addrs, a.listen).map_err(CliError::usage)?;
    let gw = match gateway::start(&config).await {
        Ok(g) => g,
        Err(e) => {
            sim.stop().await;
            return Err(CliError::usage(format!(
                "{e}\n(another demo running? pick another address with --listen 127.0.0.1:PORT)"
            )));
        }
    };
    let d = dir.display();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|p| p.display().to_string()))
        .unwrap_or_default();
    let last = demo::bmc_name(addrs.len() - 1);
    println!("ipmigw demo: {} simulated BMCs (node01-{last}), a development PKI and a gateway on https://{}", addrs.len(), gw.local_addr());
    println!(
        "Everything is on loopback; files are in {d} (development PKI: not for production).\n"
    );
    println!("In another terminal, be alice (operator on every demo BMC):\n");
    println!("  export PATH=\"{exe}:$PATH\"");
    println!("  export IPMIGW_GATEWAY=https://{} IPMIGW_CA={d}/pki/ca.crt IPMIGW_CERT={d}/pki/alice.crt IPMIGW_KEY={d}/pki/alice.key\n", gw.local_addr());
    println!("Then try:\n");
    println!("  ipmigw power status --all");
    println!("  ipmigw power cycle node01");
    println!("  ipmigw sensors node02");
    println!("  IPMIGW_CERT={d}/pki/bob.crt IPMIGW_KEY={d}/pki/bob.key ipmigw power off node01   # bob is a viewer: denied, exit 3");
    println!("  ipmigw audit query {d}/audit.jsonl");
    println!("  ipmigw audit verify --key-file {d}/audit.key {d}/audit.jsonl\n");
    println!("Ctrl-C stops the gateway and the simulated BMCs.");
    let mut signals = Signals::new(true);
    loop {
        match signals.next().await {
            Received::Hangup => {
                let _ = gw.reload().await;
            }
            stop => {
                gw.shutdown(stop.name()).await;
                sim.stop().await;
                println!("ipmigw demo: stopped (gateway, audit trail closed, simulated BMCs)");
                return Ok(());
            }
        }
    }
}
