//! `ipmigw check-config` and `ipmigw policy explain`: the policy author's
//! tools. They read the config and policy files and never contact a BMC.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::out::{out, outln};
use super::{CliError, EXIT_DENIED};
use crate::config::ConfigError;
use crate::gateway::settings::GatewayConfig;
use crate::ipmi::cmd::name::{classify, Classified};
use crate::ipmi::wire::message::NetFn;
use crate::ops::codec::{parse_byte, raw_request};
use crate::ops::error::ErrorKind;
use crate::policy::{self, Denial, Permit, Policy};

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
    /// Command name (chassis.power.off, sel.read), or the name of a raw
    /// request (raw.0x06.0x01, raw.0x2c.0x01.0xdc, raw.0x2e.0x01.343),
    /// which is classified as the gateway classifies that request.
    #[arg(long, value_name = "NAME", required_unless_present = "netfn")]
    command: Option<String>,
    /// A raw request's netFn (with --cmd and --data), decided as the
    /// gateway decides `ipmigw raw TARGET NETFN CMD DATA...` and what the
    /// bridge forwards.
    #[arg(long, requires = "cmd", conflicts_with = "command")]
    netfn: Option<String>,
    /// A raw request's command.
    #[arg(long, requires = "netfn")]
    cmd: Option<String>,
    /// A raw request's data bytes (0x05 or 5; several, or comma-separated).
    #[arg(long, requires = "netfn", num_args = 1.., value_delimiter = ',')]
    data: Vec<String>,
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
    out!("{}", summary(&cfg, &policy));
    if let Some(w) = audit {
        outln!(
            "\naudit: {} (key {}, fsync {:?})",
            w.path.display(),
            w.key.id(),
            w.durability
        );
    }
    if !servable {
        outln!("\nnote: no [listen] or [tls]: config and policy checked; `ipmigw serve` also needs [listen], [tls] and [audit]");
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
    let _ = writeln!(
        out,
        "{}, {}, {}",
        count(users, "user", "users"),
        count(roles, "role", "roles"),
        count(bmcs, "BMC", "BMCs")
    );
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

/// `1 BMC`, `2 BMCs`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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
    let classified = classify_asked(&a)?;
    if !policy.users().any(|u| u == a.user) {
        return Err(CliError::usage(format!(
            "--user {:?}: no such user in the policy",
            a.user
        )));
    }
    let asked = classified.name.to_string();
    let denied = |why: String| CliError {
        code: EXIT_DENIED,
        message: format!("{} may not run {asked} on {}: {why}", a.user, a.target),
    };
    out!("{}", names_line(&a, &classified));
    if let Some(r) = classified.refusal {
        outln!(
            "deny\nrule: none (refused whatever the policy says)\nwhy: {}",
            r.describe()
        );
        return Err(denied(r.describe().into()));
    }
    let decision = policy.decide_classified(&a.user, a.source, &a.target, &classified);
    out!("{}", explanation(&policy, &decision, a.source.is_none()));
    match decision {
        Ok(_) => Ok(()),
        Err(d) => Err(denied(d.0.detail.clone())),
    }
}

/// What the gateway would name the request: from the name given, or by
/// classifying the raw request (given as --netfn/--cmd/--data, or by its
/// raw name) exactly as the gateway does.
fn classify_asked(a: &ExplainArgs) -> Result<Classified, CliError> {
    let (netfn, cmd, data) = match (&a.netfn, &a.cmd, &a.command) {
        (Some(netfn), Some(cmd), _) => {
            let byte = |s: &str, what| parse_byte(s, what).map_err(|e| CliError::usage(e.message));
            let data = a.data.iter().map(|d| byte(d, "DATA")).collect::<Result<_, _>>()?;
            (byte(netfn, "NETFN")?, byte(cmd, "CMD")?, data)
        }
        (_, _, Some(name)) if name.starts_with("raw.") => raw_from_name(name)?,
        (_, _, Some(name)) => {
            return Classified::of_name(name).ok_or_else(|| {
                CliError::usage(format!(
                    "--command {name:?}: not a command name (expected e.g. chassis.power.off, sel.read or raw.0x2e.0x01)"
                ))
            })
        }
        _ => return Err(CliError::usage("give --command NAME, or --netfn and --cmd")),
    };
    match raw_request(netfn, cmd, data.clone()) {
        Ok(r) => Ok(classify(r.netfn, r.cmd, &r.data)),
        // Refused before policy, as the gateway refuses it: classify says so.
        Err(e) if e.kind == ErrorKind::SessionCommandForbidden => {
            Ok(classify(NetFn(netfn), cmd, &data))
        }
        Err(e) => Err(CliError::usage(e.message)),
    }
}

/// `raw.0xNN.0xMM`, `raw.0x2c.0xMM.0xBB` (defining body) or
/// `raw.0x2e.0xMM.NNNN` (IANA number): the request such a name stands for.
fn raw_from_name(name: &str) -> Result<(u8, u8, Vec<u8>), CliError> {
    let bad = || {
        CliError::usage(format!(
            "--command {name:?}: expected raw.0xNN.0xMM, raw.0x2c.0xMM.0xBB or raw.0x2e.0xMM.IANA"
        ))
    };
    let byte = |s: &str| {
        s.starts_with("0x")
            .then(|| parse_byte(s, "byte").ok())
            .flatten()
            .ok_or_else(bad)
    };
    let parts: Vec<&str> = name.split('.').skip(1).collect();
    let (netfn, cmd, extra) = match parts[..] {
        [n, c] => (byte(n)?, byte(c)?, None),
        [n, c, x] => (byte(n)?, byte(c)?, Some(x)),
        _ => return Err(bad()),
    };
    let data = match (netfn, extra) {
        (_, None) => Vec::new(),
        (0x2C, Some(body)) => vec![byte(body)?],
        (0x2E, Some(iana)) => {
            let n: u32 = iana.parse().ok().filter(|n| *n < 1 << 24).ok_or_else(bad)?;
            n.to_le_bytes()[..3].to_vec()
        }
        _ => return Err(bad()),
    };
    Ok((netfn, cmd, data))
}

/// The names the request is decided under, when they differ from what was
/// typed (a raw request the gateway names, or what it carries).
fn names_line(a: &ExplainArgs, c: &Classified) -> String {
    let names: Vec<&str> = c.names().map(|n| n.as_str()).collect();
    if a.command.as_deref() == Some(names.join(",").as_str()) {
        return String::new();
    }
    format!("command: {}\n", names.join(", "))
}

fn explanation(
    policy: &Policy,
    d: &Result<Permit, Box<(Denial, String)>>,
    no_source: bool,
) -> String {
    let mut out = String::new();
    match d {
        Ok(p) => {
            out += &format!("allow\nrule: {}\n", p.rule());
            for r in policy.rates_for(p) {
                out += &format!("rate: {r}\n");
            }
        }
        Err(denial) => {
            let denial = &denial.0;
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
