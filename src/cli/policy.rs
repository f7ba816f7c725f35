//! `ipmigw check-config` and `ipmigw policy explain`: the policy author's
//! tools. They read the config and policy files and never contact a BMC.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{CliError, EXIT_DENIED};
use crate::config::ConfigError;
use crate::gateway::settings::GatewayConfig;
use crate::ipmi::cmd::name::name_is_state_changing;
use crate::policy::{self, Decision, Policy, Request};

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The gateway config file.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    verb: PolicyVerb,
}

#[derive(Debug, Subcommand)]
enum PolicyVerb {
    /// Decide one request and print the rule that decided it (exit 0 allow, 3 deny).
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The gateway config file.
    #[arg(long)]
    config: PathBuf,
    /// Policy user name.
    #[arg(long)]
    user: String,
    /// BMC name.
    #[arg(long)]
    target: String,
    /// Command name, e.g. chassis.power.off or raw.0x2e.0x01.
    #[arg(long)]
    command: String,
    /// Client address; without it, source allowlists are not checked.
    #[arg(long)]
    source: Option<IpAddr>,
}

fn config_error(e: ConfigError) -> CliError {
    let n = e.0.len();
    CliError::usage(format!(
        "{e}\n{n} error{} in the configuration",
        if n == 1 { "" } else { "s" }
    ))
}

/// Loads a config and its policy files, with every problem as file:line:col.
fn load(path: &Path) -> Result<(GatewayConfig, Policy), CliError> {
    let cfg = GatewayConfig::load(path).map_err(config_error)?;
    let policy = policy::load(&cfg.policy_paths, &cfg.bmc_names()).map_err(config_error)?;
    Ok((cfg, policy))
}

pub fn check_config(a: CheckConfigArgs) -> Result<(), CliError> {
    let (cfg, policy) = load(&a.config)?;
    let servable = cfg.file.listen.is_some() || cfg.file.tls.is_some();
    let mut diags = Vec::new();
    let dir = a.config.parent().unwrap_or(Path::new("."));
    let audit = cfg
        .file
        .audit
        .as_ref()
        .and_then(|s| s.writer_config(&cfg.source, dir, &mut diags));
    if !diags.is_empty() {
        return Err(config_error(ConfigError(diags)));
    }
    if servable {
        // Everything `serve` reads: TLS files and CRLs, BMC secrets, limits.
        crate::gateway::load(&a.config).map_err(CliError::usage)?;
    }
    print!("{}", summary(&cfg, &policy));
    if let Some(w) = audit {
        println!(
            "\naudit: {} (key {}, fsync {:?})",
            w.path.display(),
            w.key.id(),
            w.durability
        );
    }
    if !servable {
        println!("\nnote: no [listen] or [tls]: config and policy checked; `ipmigw serve` also needs [listen], [tls] and [audit]");
    }
    Ok(())
}

/// The check-config summary: counts, then for each user what they may do.
fn summary(cfg: &GatewayConfig, policy: &Policy) -> String {
    use std::fmt::Write;
    let (users, roles, bmcs) = policy.counts();
    let mut out = String::new();
    let _ = writeln!(out, "{}: ok", cfg.source.name);
    let files: Vec<String> = cfg
        .policy_paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let _ = writeln!(out, "policy files: {}", files.join(", "));
    let _ = writeln!(out, "{users} users, {roles} roles, {bmcs} BMCs");
    for user in policy.users() {
        let id = policy
            .identity_of(user)
            .map(|i| i.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nuser {user} ({id}), roles: {}",
            policy.roles_of(user).join(", ")
        );
        let grants = policy.grants_of(user);
        let (groups, raw) = (grants.by_bmcs, grants.raw);
        if groups.is_empty() && raw.is_empty() {
            let _ = writeln!(out, "  no BMC commands");
        }
        for (targets, cmds) in groups {
            let _ = writeln!(out, "  on {}:", abbreviate(&targets));
            let _ = writeln!(out, "    {}", cmds.join(", "));
        }
        if !raw.is_empty() {
            let _ = writeln!(out, "  raw patterns granted: {}", raw.join(", "));
        }
    }
    out
}

fn abbreviate(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    format!("{}, … ({} BMCs)", names[..SHOWN].join(", "), names.len())
}

pub fn run(a: PolicyArgs) -> Result<(), CliError> {
    match a.verb {
        PolicyVerb::Explain(e) => explain(e),
    }
}

fn explain(a: ExplainArgs) -> Result<(), CliError> {
    let (_, policy) = load(&a.config)?;
    let state_changing = name_is_state_changing(&a.command).ok_or_else(|| {
        CliError::usage(format!(
            "--command {:?}: not a command name (expected e.g. chassis.power.off, sel.read or raw.0x2e.0x01)",
            a.command
        ))
    })?;
    if !policy.users().any(|u| u == a.user) {
        return Err(CliError::usage(format!(
            "--user {:?}: no such user in the policy",
            a.user
        )));
    }
    let req = Request {
        user: &a.user,
        source: a.source,
        bmc: &a.target,
        command: &a.command,
        state_changing,
    };
    let decision = policy.decide(&req);
    print!("{}", explanation(&policy, &decision, a.source.is_none()));
    match decision {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(_) => Err(CliError {
            code: EXIT_DENIED,
            message: format!("{} may not run {} on {}", a.user, a.command, a.target),
        }),
    }
}

fn explanation(policy: &Policy, d: &Decision, no_source: bool) -> String {
    let mut out = String::new();
    match d {
        Decision::Allow(p) => {
            out += &format!("allow\nrule: {}\n", p.rule());
            for r in policy.rates_for(p) {
                out += &format!("rate: {r}\n");
            }
        }
        Decision::Deny(denial) => {
            out += "deny\n";
            match &denial.rule {
                Some(r) => out += &format!("rule: {r}\n"),
                None => out += "rule: default deny\n",
            }
            out += &format!("why: {}\n", denial.detail);
        }
    }
    if no_source {
        out += "note: no --source given; source allowlists were not checked\n";
    }
    out
}
