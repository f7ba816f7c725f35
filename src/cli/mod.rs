//! The `ipmigw` command line: clap types, one file per verb group, output
//! formatting and the one mapping from errors to exit codes.
//!
//! Exit codes (design.md): 0 ok, 1 usage or configuration error, 2
//! connection error, 3 denied by policy or rate limit, 4 BMC error. Never
//! prints a secret.

mod audit;
mod bmc;
mod bridge;
mod client;
mod console;
mod gateway;
mod help;
pub(crate) mod out;
mod policy;
mod scan;
mod signals;
mod sim;
mod terminal;

use clap::{Args, Parser, Subcommand};

pub use crate::ops::error::{EXIT_BMC, EXIT_CONNECTION, EXIT_DENIED, EXIT_OK, EXIT_USAGE};

/// ipmigw: a hardened IPMI security gateway.
#[derive(Debug, Parser)]
#[command(name = "ipmigw", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(flatten)]
    before: client::Before,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Diagnostics straight to one BMC over RMCP+ (no gateway involved).
    Bmc(bmc::BmcArgs),
    /// Serve simulated BMCs (RMCP+ on UDP) until Ctrl-C or SIGTERM.
    Sim(sim::SimArgs),
    /// Security posture of BMCs: what attackers look for (exit 5 on findings).
    Scan(scan::ScanArgs),
    /// Validate the gateway config and its policy files; print what each user may do.
    CheckConfig(policy::CheckConfigArgs),
    /// Ask the policy: `policy explain` decides one request and names the rule.
    Policy(policy::PolicyArgs),
    /// Audit trail tools: verify, query, keygen.
    Audit(audit::AuditArgs),
    /// Run the gateway: ipmigw serve --config FILE (SIGHUP reloads, SIGTERM drains).
    Serve(gateway::ServeArgs),
    /// Development PKI: pki init|revoke (NOT for production).
    Pki(gateway::PkiArgs),
    /// Simulated BMCs, a development PKI, a policy and a gateway on loopback.
    Demo(gateway::DemoArgs),
    /// A local RMCP+ BMC for ipmitool/freeipmi that forwards every command
    /// through the gateway: bridge [--listen 127.0.0.1:PORT] TARGET.
    Bridge(BridgeVerb),
    /// Print a shell completion script: completions bash|zsh|fish|elvish|powershell.
    Completions(help::CompletionsArgs),
    /// Print the man page (roff): `ipmigw man`, or one verb's: `ipmigw man audit verify`.
    Man(help::ManArgs),
    /// A BMC's serial console through the gateway: console NODE [--read-only]
    /// [--force] (~. leaves, ~? lists escapes), or console replay FILE.
    Console(console::ConsoleArgs),
    #[command(flatten)]
    Client(client::ClientVerb),
}

/// `bridge`: its own options and the gateway's.
#[derive(Debug, Args)]
struct BridgeVerb {
    #[command(flatten)]
    args: bridge::BridgeArgs,
    #[command(flatten)]
    gateway: client::ClientOpts,
}

/// An error on its way to the user: what to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code (1-4).
    pub code: u8,
    /// The message, naming its subject (file, BMC, command).
    pub message: String,
}

impl CliError {
    /// A usage or configuration error (exit 1).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

/// Parses `std::env::args`, runs, prints errors, returns the exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_USAGE,
            };
            // A closed pipe (`ipmigw --help | head -1`) is no error here.
            let _ = e.print();
            return code;
        }
    };
    init_tracing(cli.verbose);
    let code = match run(cli) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            say(&format!("ipmigw: {}", e.message));
            e.code
        }
    };
    // Output lost to a full disk is a failure; to a reader that left, not.
    if code == EXIT_OK && out::failed() {
        EXIT_USAGE
    } else {
        code
    }
}

/// Runs a parsed command line.
fn run(cli: Cli) -> Result<(), CliError> {
    let Cli {
        before, command, ..
    } = cli;
    check_before(&before, &command)?;
    match command {
        Verb::Completions(a) => return help::completions(a),
        Verb::Man(a) => return help::man(a),
        _ => {}
    }
    // Servers get worker threads; one-shot verbs start faster on one thread
    // (no thread spawns, no cgroup reads to size a pool).
    let server = matches!(
        command,
        Verb::Serve(_) | Verb::Demo(_) | Verb::Sim(_) | Verb::Bridge(_)
    );
    let mut builder = if server {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        match command {
            Verb::Bmc(mut args) => {
                args.json |= before.json;
                bmc::run(args).await
            }
            Verb::Serve(args) => gateway::serve(args).await,
            Verb::Pki(args) => gateway::pki(args),
            Verb::Demo(args) => gateway::demo(args).await,
            Verb::Client(verb) => client::run(before, verb).await,
            Verb::Console(args) => console::run(&before, args).await,
            Verb::Bridge(b) => bridge::run(before.apply(b.gateway), b.args).await,
            Verb::Sim(args) => sim::run(args).await,
            Verb::Scan(args) => scan::run(args).await,
            Verb::CheckConfig(args) => policy::check_config(args),
            Verb::Policy(args) => policy::run(args),
            Verb::Audit(args) => audit::run(args),
            Verb::Completions(_) | Verb::Man(_) => Ok(()),
        }
    })
}

/// Client options given before the verb apply to the verbs that talk to
/// the gateway (and `--json` to `bmc`); anywhere else they are a mistake
/// worth saying, not something to ignore.
fn check_before(before: &client::Before, command: &Verb) -> Result<(), CliError> {
    let (gateway_ok, json_ok) = match command {
        Verb::Client(_) => (true, true),
        Verb::Bridge(_) | Verb::Console(_) => (true, false),
        Verb::Bmc(_) => (false, true),
        _ => (false, false),
    };
    let mut wrong = if gateway_ok {
        Vec::new()
    } else {
        before.gateway_flags()
    };
    if before.json && !json_ok {
        wrong.push("--json");
    }
    match wrong.is_empty() {
        true => Ok(()),
        false => Err(CliError::usage(format!(
            "{} does not apply to this verb (see its --help)",
            wrong.join(", ")
        ))),
    }
}

/// Writes a line to stderr, ignoring failure (`eprintln!` panics when
/// stderr cannot be written: a full disk must not stop a server).
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A failed write to stderr (a full disk, a file-size limit, a closed
    // pipe) must not become a panic: the subscriber would otherwise report
    // it with eprintln!, which panics when stderr fails again, and a server
    // thread (the audit writer's among them) would die with it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
