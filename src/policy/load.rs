//! Reading policy files (TOML, the shape in the policy issue) and compiling
//! them into a [`Policy`], with every problem reported as file:line:col.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::glob::{BmcPattern, CommandPattern};
use super::rate::Rate;
use super::{Allowlist, Identity, Policy, Role, Rule, User};
use crate::config::{ConfigError, Diag, Source};
use crate::ipmi::cmd::name::{NAMED_COMMANDS, NAME_FAMILIES};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    group: Vec<GroupDef>,
    #[serde(default)]
    user: Vec<UserDef>,
    #[serde(default)]
    role: Vec<RoleDef>,
    defaults: Option<Spanned<Defaults>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDef {
    name: Spanned<String>,
    bmcs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDef {
    name: Spanned<String>,
    identity: Spanned<String>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
    source: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDef {
    name: Spanned<String>,
    #[serde(default)]
    targets: Vec<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    source: Option<Spanned<Vec<Spanned<String>>>>,
    rate: Option<Spanned<String>>,
    state_changing_rate: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    source: Option<Spanned<Vec<Spanned<String>>>>,
    rate: Option<Spanned<String>>,
    bmc_rate: Option<Spanned<String>>,
}

/// Loads policy files against the BMCs they speak of: each BMC's name and
/// the groups its entry puts it in.
pub fn load(paths: &[PathBuf], bmcs: &[(String, Vec<String>)]) -> Result<Policy, ConfigError> {
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    for p in paths {
        match Source::read(p) {
            Ok(s) => sources.push(s),
            Err(d) => diags.push(d),
        }
    }
    let policy = compile(&sources, bmcs, &mut diags);
    if diags.is_empty() {
        Ok(policy)
    } else {
        Err(ConfigError(diags))
    }
}

/// Compiles parsed policy sources; problems go to `diags`.
pub(crate) fn compile(
    sources: &[Source],
    bmcs: &[(String, Vec<String>)],
    diags: &mut Vec<Diag>,
) -> Policy {
    let files: Vec<(&Source, PolicyFile)> = sources
        .iter()
        .filter_map(|s| match s.parse::<PolicyFile>() {
            Ok(f) => Some((s, f)),
            Err(d) => {
                diags.push(d);
                None
            }
        })
        .collect();
    let bmc_names: Vec<String> = bmcs.iter().map(|(n, _)| n.clone()).collect();
    let words = bmc_names.len().div_ceil(64).max(1);

    // Groups: name -> BMC bitset (explicit [[group]] entries plus [[bmc]] groups).
    let mut groups: HashMap<String, Vec<u64>> = HashMap::new();
    for (i, (_, gs)) in bmcs.iter().enumerate() {
        for g in gs {
            groups.entry(g.clone()).or_insert_with(|| vec![0; words])[i / 64] |= 1 << (i % 64);
        }
    }
    let mut group_defs = HashSet::new();
    for (src, f) in &files {
        for g in &f.group {
            let name = g.name.get_ref();
            if !group_defs.insert(name.clone()) {
                diags.push(src.at(&g.name, format!("group {name:?} is defined twice")));
            }
            let set = groups.entry(name.clone()).or_insert_with(|| vec![0; words]);
            for pat in &g.bmcs {
                let hits = match_bmcs(pat.get_ref(), &bmc_names);
                if hits.is_empty() {
                    diags.push(src.at(
                        pat,
                        format!(
                            "group {name:?}: BMC pattern {:?} matches no configured BMC",
                            pat.get_ref()
                        ),
                    ));
                }
                for i in hits {
                    set[i / 64] |= 1 << (i % 64);
                }
            }
        }
    }

    // Roles.
    let mut roles = Vec::new();
    let mut role_index: HashMap<String, usize> = HashMap::new();
    for (src, f) in &files {
        for r in &f.role {
            let name = r.name.get_ref().clone();
            if role_index.contains_key(&name) {
                diags.push(src.at(&r.name, format!("role {name:?} is defined twice")));
                continue;
            }
            let owner = format!("role {name:?}");
            let mut targets = vec![0u64; words];
            for t in &r.targets {
                let t_str = t.get_ref();
                if let Some(g) = t_str.strip_prefix("group:") {
                    match groups.get(g) {
                        Some(set) => targets.iter_mut().zip(set).for_each(|(a, b)| *a |= b),
                        None => diags.push(src.at(t, format!("{owner}: unknown group {g:?}"))),
                    }
                } else {
                    let hits = match_bmcs(t_str, &bmc_names);
                    if t_str.is_empty() {
                        diags.push(src.at(t, format!("{owner}: empty target pattern")));
                    } else if hits.is_empty() {
                        diags.push(src.at(
                            t,
                            format!("{owner}: target {t_str:?} matches no configured BMC"),
                        ));
                    }
                    for i in hits {
                        targets[i / 64] |= 1 << (i % 64);
                    }
                }
            }
            let patterns = |list: &[Spanned<String>], kind: &'static str, diags: &mut Vec<Diag>| {
                list.iter()
                    .filter_map(|p| match command_pattern(p.get_ref()) {
                        Ok(c) => Some((
                            c,
                            Rule {
                                file: src.name.clone(),
                                line: src.line_col(p.span().start).0,
                                kind,
                                owner: owner.clone(),
                                pattern: p.get_ref().clone(),
                            },
                        )),
                        Err(e) => {
                            diags.push(src.at(p, format!("{owner}: {e}")));
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            };
            let allow = patterns(&r.allow, "allow", diags);
            let deny = patterns(&r.deny, "deny", diags);
            let source = r
                .source
                .as_ref()
                .and_then(|s| allowlist(src, s, &owner, diags));
            let rate = r
                .rate
                .as_ref()
                .and_then(|v| parse_rate(src, v, &owner, "rate", diags));
            let state_changing_rate = r
                .state_changing_rate
                .as_ref()
                .and_then(|v| parse_rate(src, v, &owner, "state_changing_rate", diags));
            role_index.insert(name.clone(), roles.len());
            roles.push(Role {
                name,
                targets,
                allow,
                deny,
                source,
                rate,
                state_changing_rate,
            });
        }
    }

    // Users.
    let mut users = Vec::new();
    let mut user_index = HashMap::new();
    let mut identity_index: HashMap<Identity, usize> = HashMap::new();
    for (src, f) in &files {
        for u in &f.user {
            let name = u.name.get_ref().clone();
            if user_index.contains_key(&name) {
                diags.push(src.at(&u.name, format!("user {name:?} is defined twice")));
                continue;
            }
            let owner = format!("user {name:?}");
            let identity = match Identity::parse(u.identity.get_ref()) {
                Ok(id) => id,
                Err(e) => {
                    diags.push(src.at(&u.identity, format!("{owner}: {e}")));
                    continue;
                }
            };
            if let Some(&other) = identity_index.get(&identity) {
                let other: &User = &users[other];
                diags.push(src.at(&u.identity, format!("{owner}: identity {identity} is already user {:?}'s: one certificate would map to two users", other.name)));
                continue;
            }
            let mut role_ids = Vec::new();
            for r in &u.roles {
                match role_index.get(r.get_ref()) {
                    Some(&i) => role_ids.push(i),
                    None => {
                        diags.push(src.at(r, format!("{owner}: unknown role {:?}", r.get_ref())))
                    }
                }
            }
            let source = u
                .source
                .as_ref()
                .and_then(|s| allowlist(src, s, &owner, diags));
            identity_index.insert(identity.clone(), users.len());
            user_index.insert(name.clone(), users.len());
            users.push(User {
                name,
                identity,
                roles: role_ids,
                source,
            });
        }
    }

    // Defaults (at most one [defaults] across all files).
    let mut global_source = None;
    let mut user_rate = None;
    let mut bmc_rate = None;
    let mut defaults_seen = false;
    for (src, f) in &files {
        let Some(d) = &f.defaults else { continue };
        if defaults_seen {
            diags.push(src.at(d, "[defaults] is defined in more than one policy file"));
            continue;
        }
        defaults_seen = true;
        let d = d.get_ref();
        global_source = d
            .source
            .as_ref()
            .and_then(|s| allowlist(src, s, "defaults", diags));
        user_rate = d
            .rate
            .as_ref()
            .and_then(|v| parse_rate(src, v, "defaults", "rate", diags));
        bmc_rate = d
            .bmc_rate
            .as_ref()
            .and_then(|v| parse_rate(src, v, "defaults", "bmc_rate", diags));
    }

    let bmc_index = bmc_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    Policy {
        users,
        user_index,
        identity_index,
        roles,
        bmcs: bmc_names,
        bmc_index,
        global_source,
        user_rate,
        bmc_rate,
    }
}

fn match_bmcs(pattern: &str, names: &[String]) -> Vec<usize> {
    match BmcPattern::parse(pattern) {
        Ok(p) => names
            .iter()
            .enumerate()
            .filter(|(_, n)| p.matches(n))
            .map(|(i, _)| i)
            .collect(),
        Err(_) => vec![],
    }
}

/// Compiles a command pattern and checks it can match some command: a fixed
/// name, or one of a generated family (`raw.0xNN.0xMM`,
/// `chassis.bootopt.param.0xNN`, ...).
fn command_pattern(p: &str) -> Result<CommandPattern, String> {
    let c = CommandPattern::parse(p)?;
    if NAMED_COMMANDS.iter().any(|n| c.matches(n))
        || NAME_FAMILIES.iter().any(|f| c.may_match_family(f))
    {
        return Ok(c);
    }
    Err(format!(
        "command pattern {p:?} matches no known command name"
    ))
}

fn allowlist(
    src: &Source,
    list: &Spanned<Vec<Spanned<String>>>,
    owner: &str,
    diags: &mut Vec<Diag>,
) -> Option<Allowlist> {
    let mut nets = Vec::new();
    for c in list.get_ref() {
        match c.get_ref().parse::<IpNet>() {
            Ok(n) if n.trunc() != n => diags.push(src.at(
                c,
                format!(
                    "{owner}: CIDR {:?} has host bits set (did you mean {}?)",
                    c.get_ref(),
                    n.trunc()
                ),
            )),
            Ok(n) => nets.push(n),
            Err(_) => diags.push(src.at(
                c,
                format!(
                    "{owner}: {:?} is not a CIDR (expected e.g. 10.0.0.0/8 or ::1/128)",
                    c.get_ref()
                ),
            )),
        }
    }
    let shown: Vec<&str> = list
        .get_ref()
        .iter()
        .map(|c| c.get_ref().as_str())
        .collect();
    Some(Allowlist {
        nets,
        rule: Rule {
            file: src.name.clone(),
            line: src.line_col(list.span().start).0,
            kind: "source",
            owner: owner.to_string(),
            pattern: format!("[{}]", shown.join(", ")),
        },
    })
}

fn parse_rate(
    src: &Source,
    v: &Spanned<String>,
    owner: &str,
    kind: &'static str,
    diags: &mut Vec<Diag>,
) -> Option<(Rate, Rule)> {
    match Rate::parse(v.get_ref()) {
        Ok(r) => Some((
            r,
            Rule {
                file: src.name.clone(),
                line: src.line_col(v.span().start).0,
                kind,
                owner: owner.to_string(),
                pattern: v.get_ref().clone(),
            },
        )),
        Err(e) => {
            diags.push(src.at(v, format!("{owner}: {e}")));
            None
        }
    }
}

/// For tests and benches: compiles policy text against BMC names.
pub fn compile_text(
    files: &[(&str, &str)],
    bmcs: &[(&str, &[&str])],
) -> Result<Policy, ConfigError> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(n, t)| Source {
            name: Arc::from(*n),
            text: t.to_string(),
        })
        .collect();
    let bmcs: Vec<(String, Vec<String>)> = bmcs
        .iter()
        .map(|(n, g)| (n.to_string(), g.iter().map(|s| s.to_string()).collect()))
        .collect();
    let mut diags = Vec::new();
    let p = compile(&sources, &bmcs, &mut diags);
    if diags.is_empty() {
        Ok(p)
    } else {
        Err(ConfigError(diags))
    }
}
