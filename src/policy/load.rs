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
    let mut c = Compiler::new(bmcs, diags);
    c.groups(&files, bmcs);
    for (src, f) in &files {
        for r in &f.role {
            c.role(src, r);
        }
    }
    for (src, f) in &files {
        for u in &f.user {
            c.user(src, u);
        }
    }
    let defaults = c.defaults(&files);
    c.finish(defaults)
}

/// A BMC bitset: bit i is the i-th configured BMC.
type BmcSet = Vec<u64>;

/// The state of one compilation: what is compiled so far, and where
/// problems go. Each phase reports into `diags` and carries on, so that
/// one run shows every problem.
struct Compiler<'d> {
    diags: &'d mut Vec<Diag>,
    bmc_names: Vec<String>,
    words: usize,
    groups: HashMap<String, BmcSet>,
    roles: Vec<Role>,
    role_index: HashMap<String, usize>,
    users: Vec<User>,
    user_index: HashMap<String, usize>,
    identity_index: HashMap<Identity, usize>,
}

/// What `[defaults]` sets.
#[derive(Default)]
struct DefaultsCompiled {
    source: Option<Allowlist>,
    user_rate: Option<(Rate, Rule)>,
    bmc_rate: Option<(Rate, Rule)>,
}

fn set_bit(set: &mut BmcSet, i: usize) {
    set[i / 64] |= 1 << (i % 64);
}

impl<'d> Compiler<'d> {
    fn new(bmcs: &[(String, Vec<String>)], diags: &'d mut Vec<Diag>) -> Compiler<'d> {
        let bmc_names: Vec<String> = bmcs.iter().map(|(n, _)| n.clone()).collect();
        Compiler {
            diags,
            words: bmc_names.len().div_ceil(64).max(1),
            bmc_names,
            groups: HashMap::new(),
            roles: Vec::new(),
            role_index: HashMap::new(),
            users: Vec::new(),
            user_index: HashMap::new(),
            identity_index: HashMap::new(),
        }
    }

    /// Groups: name -> BMC bitset, from the BMC entries' own groups plus
    /// explicit `[[group]]` entries.
    fn groups(&mut self, files: &[(&Source, PolicyFile)], bmcs: &[(String, Vec<String>)]) {
        let words = self.words;
        for (i, (_, gs)) in bmcs.iter().enumerate() {
            for g in gs {
                set_bit(
                    self.groups
                        .entry(g.clone())
                        .or_insert_with(|| vec![0; words]),
                    i,
                );
            }
        }
        let mut defined = HashSet::new();
        for (src, f) in files {
            for g in &f.group {
                let name = g.name.get_ref();
                if !defined.insert(name.clone()) {
                    self.diags
                        .push(src.at(&g.name, format!("group {name:?} is defined twice")));
                }
                let mut set = self.groups.remove(name).unwrap_or_else(|| vec![0; words]);
                for pat in &g.bmcs {
                    let hits = match_bmcs(pat.get_ref(), &self.bmc_names);
                    if hits.is_empty() {
                        let what = format!(
                            "group {name:?}: BMC pattern {:?} matches no configured BMC",
                            pat.get_ref()
                        );
                        self.diags.push(src.at(pat, what));
                    }
                    hits.into_iter().for_each(|i| set_bit(&mut set, i));
                }
                self.groups.insert(name.clone(), set);
            }
        }
    }

    fn role(&mut self, src: &Source, r: &RoleDef) {
        let name = r.name.get_ref().clone();
        if self.role_index.contains_key(&name) {
            self.diags
                .push(src.at(&r.name, format!("role {name:?} is defined twice")));
            return;
        }
        let owner = format!("role {name:?}");
        let targets = self.role_targets(src, &r.targets, &owner);
        let allow = self.rules(src, &r.allow, "allow", &owner);
        let deny = self.rules(src, &r.deny, "deny", &owner);
        let diags = &mut *self.diags;
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
        self.role_index.insert(name.clone(), self.roles.len());
        self.roles.push(Role {
            name,
            targets,
            allow,
            deny,
            source,
            rate,
            state_changing_rate,
        });
    }

    /// A role's `targets`: BMC name patterns and `group:NAME`s.
    fn role_targets(&mut self, src: &Source, list: &[Spanned<String>], owner: &str) -> BmcSet {
        let mut targets = vec![0u64; self.words];
        for t in list {
            let t_str = t.get_ref();
            if let Some(g) = t_str.strip_prefix("group:") {
                match self.groups.get(g) {
                    Some(set) => targets.iter_mut().zip(set).for_each(|(a, b)| *a |= b),
                    None => self
                        .diags
                        .push(src.at(t, format!("{owner}: unknown group {g:?}"))),
                }
                continue;
            }
            let hits = match_bmcs(t_str, &self.bmc_names);
            if t_str.is_empty() {
                self.diags
                    .push(src.at(t, format!("{owner}: empty target pattern")));
            } else if hits.is_empty() {
                let what = format!("{owner}: target {t_str:?} matches no configured BMC");
                self.diags.push(src.at(t, what));
            }
            hits.into_iter().for_each(|i| set_bit(&mut targets, i));
        }
        targets
    }

    /// A role's `allow` or `deny` list, each pattern with the rule that
    /// names where it was written.
    fn rules(
        &mut self,
        src: &Source,
        list: &[Spanned<String>],
        kind: &'static str,
        owner: &str,
    ) -> Vec<(CommandPattern, Rule)> {
        list.iter()
            .filter_map(|p| match command_pattern(p.get_ref()) {
                Ok(c) => Some((
                    c,
                    Rule {
                        file: src.name.clone(),
                        line: src.line_col(p.span().start).0,
                        kind,
                        owner: owner.to_string(),
                        pattern: p.get_ref().clone(),
                    },
                )),
                Err(e) => {
                    self.diags.push(src.at(p, format!("{owner}: {e}")));
                    None
                }
            })
            .collect()
    }

    fn user(&mut self, src: &Source, u: &UserDef) {
        let name = u.name.get_ref().clone();
        if self.user_index.contains_key(&name) {
            self.diags
                .push(src.at(&u.name, format!("user {name:?} is defined twice")));
            return;
        }
        let owner = format!("user {name:?}");
        let identity = match Identity::parse(u.identity.get_ref()) {
            Ok(id) => id,
            Err(e) => {
                self.diags
                    .push(src.at(&u.identity, format!("{owner}: {e}")));
                return;
            }
        };
        if let Some(&other) = self.identity_index.get(&identity) {
            let what = format!(
                "{owner}: identity {identity} is already user {:?}'s: one certificate would map to two users",
                self.users[other].name
            );
            self.diags.push(src.at(&u.identity, what));
            return;
        }
        let mut roles = Vec::new();
        for r in &u.roles {
            match self.role_index.get(r.get_ref()) {
                Some(&i) => roles.push(i),
                None => {
                    let what = format!("{owner}: unknown role {:?}", r.get_ref());
                    self.diags.push(src.at(r, what))
                }
            }
        }
        let source = u
            .source
            .as_ref()
            .and_then(|s| allowlist(src, s, &owner, self.diags));
        self.identity_index
            .insert(identity.clone(), self.users.len());
        self.user_index.insert(name.clone(), self.users.len());
        self.users.push(User {
            name,
            identity,
            roles,
            source,
        });
    }

    /// `[defaults]`: at most one across all files.
    fn defaults(&mut self, files: &[(&Source, PolicyFile)]) -> DefaultsCompiled {
        let mut out = DefaultsCompiled::default();
        let mut seen = false;
        for (src, f) in files {
            let Some(d) = &f.defaults else { continue };
            if seen {
                self.diags
                    .push(src.at(d, "[defaults] is defined in more than one policy file"));
                continue;
            }
            seen = true;
            let d = d.get_ref();
            let diags = &mut *self.diags;
            out.source = d
                .source
                .as_ref()
                .and_then(|s| allowlist(src, s, "defaults", diags));
            out.user_rate = d
                .rate
                .as_ref()
                .and_then(|v| parse_rate(src, v, "defaults", "rate", diags));
            out.bmc_rate = d
                .bmc_rate
                .as_ref()
                .and_then(|v| parse_rate(src, v, "defaults", "bmc_rate", diags));
        }
        out
    }

    fn finish(self, defaults: DefaultsCompiled) -> Policy {
        let bmc_index = self
            .bmc_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Policy {
            users: self.users,
            user_index: self.user_index,
            identity_index: self.identity_index,
            roles: self.roles,
            bmcs: self.bmc_names,
            bmc_index,
            global_source: defaults.source,
            user_rate: defaults.user_rate,
            bmc_rate: defaults.bmc_rate,
        }
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
