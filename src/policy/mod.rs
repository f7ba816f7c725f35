//! Policy decisions: who (certificate identity → user), from where (source
//! allowlists), on which BMC (targets), may run which command (command-name
//! globs), how often (rate limits). Default deny; a deny that applies wins
//! over any allow, whatever the order of files, roles or rules; every
//! decision names the rule that made it.
//!
//! Pure: no I/O beyond reading the policy files at load, no HTTP, no bytes.
//! It sees identities, addresses, BMC names and command names (from
//! `ipmi::cmd::name`), and time only through the rate limiters' clock.
//! A [`Permit`] can only be made here.

pub mod glob;
mod load;
pub mod rate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use ipnet::IpNet;

use glob::CommandPattern;
pub use load::{compile_text, load};
use rate::{Limiter, Rate};

use crate::ipmi::cmd::name::{Classified, NAMED_COMMANDS};

/// Where a rule was written and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Policy file.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// What kind of rule: `allow`, `deny`, `source`, …
    pub kind: &'static str,
    /// The role or user it belongs to, e.g. `role "operator"`.
    pub owner: String,
    /// The pattern, CIDR list or rate as written.
    pub pattern: String,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} {} {} {}",
            self.file, self.line, self.owner, self.kind, self.pattern
        )
    }
}

/// A certificate identity a user is matched by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// SAN email.
    Email(String),
    /// SAN URI (e.g. SPIFFE).
    Uri(String),
    /// SAN DNS name.
    Dns(String),
    /// Subject common name.
    Cn(String),
}

impl Identity {
    /// Parses `email:…`, `uri:…`, `dns:…` or `cn:…`.
    pub fn parse(s: &str) -> Result<Identity, String> {
        let (kind, v) = s.split_once(':').ok_or_else(|| {
            format!("identity {s:?}: expected email:, uri:, dns: or cn: followed by a value")
        })?;
        if v.is_empty() {
            return Err(format!("identity {s:?}: empty value"));
        }
        Ok(match kind {
            "email" => Identity::Email(v.to_ascii_lowercase()),
            "uri" => Identity::Uri(v.to_string()),
            "dns" => Identity::Dns(v.to_ascii_lowercase()),
            "cn" => Identity::Cn(v.to_string()),
            _ => {
                return Err(format!(
                    "identity {s:?}: expected email:, uri:, dns: or cn: followed by a value"
                ))
            }
        })
    }
}

/// The kinds of certificate identity, for `[tls] identity` precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// SAN email.
    Email,
    /// SAN URI.
    Uri,
    /// SAN DNS name.
    Dns,
    /// Subject common name.
    Cn,
}

impl IdentityKind {
    /// The default precedence: SAN e-mail, then SAN URI. A subject CN is
    /// easy to get wrong in a CA's profile, so it counts only when listed.
    pub const DEFAULT: [IdentityKind; 2] = [IdentityKind::Email, IdentityKind::Uri];

    /// Parses `email`, `uri`, `dns` or `cn`.
    pub fn parse(s: &str) -> Option<IdentityKind> {
        Some(match s {
            "email" => IdentityKind::Email,
            "uri" => IdentityKind::Uri,
            "dns" => IdentityKind::Dns,
            "cn" => IdentityKind::Cn,
            _ => return None,
        })
    }

    /// The name used in config and identities.
    pub fn name(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Uri => "uri",
            IdentityKind::Dns => "dns",
            IdentityKind::Cn => "cn",
        }
    }
}

impl Identity {
    /// Its kind.
    pub fn kind(&self) -> IdentityKind {
        match self {
            Identity::Email(_) => IdentityKind::Email,
            Identity::Uri(_) => IdentityKind::Uri,
            Identity::Dns(_) => IdentityKind::Dns,
            Identity::Cn(_) => IdentityKind::Cn,
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Email(v) => write!(f, "email:{v}"),
            Identity::Uri(v) => write!(f, "uri:{v}"),
            Identity::Dns(v) => write!(f, "dns:{v}"),
            Identity::Cn(v) => write!(f, "cn:{v}"),
        }
    }
}

/// A source allowlist and the rule that set it.
#[derive(Debug, Clone)]
struct Allowlist {
    nets: Vec<IpNet>,
    rule: Rule,
}

impl Allowlist {
    fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Debug)]
struct User {
    name: String,
    identity: Identity,
    roles: Vec<usize>,
    source: Option<Allowlist>,
}

#[derive(Debug)]
struct Role {
    name: String,
    /// Bit i set: the role applies to BMC i.
    targets: Vec<u64>,
    allow: Vec<(CommandPattern, Rule)>,
    deny: Vec<(CommandPattern, Rule)>,
    source: Option<Allowlist>,
    rate: Option<(Rate, Rule)>,
    state_changing_rate: Option<(Rate, Rule)>,
}

impl Role {
    fn targets(&self, bmc: usize) -> bool {
        self.targets
            .get(bmc / 64)
            .is_some_and(|w| w & (1 << (bmc % 64)) != 0)
    }
}

/// A compiled, validated policy.
#[derive(Debug)]
pub struct Policy {
    users: Vec<User>,
    user_index: HashMap<String, usize>,
    identity_index: HashMap<Identity, usize>,
    roles: Vec<Role>,
    bmcs: Vec<String>,
    bmc_index: HashMap<String, usize>,
    global_source: Option<Allowlist>,
    user_rate: Option<(Rate, Rule)>,
    bmc_rate: Option<(Rate, Rule)>,
}

/// What is being asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// User name (already mapped from the certificate).
    pub user: &'a str,
    /// Client address; `None` skips source checks (`policy explain` only).
    pub source: Option<IpAddr>,
    /// BMC name.
    pub bmc: &'a str,
    /// Command name from `ipmi::cmd::name`.
    pub command: &'a str,
    /// Whether the command changes state.
    pub state_changing: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No such user.
    UnknownUser,
    /// No such BMC (answered like an invisible one).
    UnknownTarget,
    /// The client address is not allowed.
    SourceNotAllowed,
    /// No role of the user grants the command on that BMC.
    NoGrant,
    /// A deny rule matched.
    Denied,
    /// Over a rate limit; retry after this long.
    RateLimited(Duration),
}

/// A refusal: a value, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub reason: DenyReason,
    /// The rule that decided, when one did (default deny has none).
    pub rule: Option<Rule>,
    /// A sentence for operators (never shown to callers who may not see rules).
    pub detail: String,
}

/// Proof that policy allowed a request: which BMC, every command name it
/// may send, and the rules that granted them. Only [`Policy::decide`] and
/// [`Policy::decide_all`] make one; the audit trail turns it into the proof
/// the BMC pool asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    rule: Rule,
    /// The rules of the other names, when they differ.
    more_rules: Vec<Rule>,
    names: Vec<String>,
    bmc_name: String,
    user: usize,
    bmc: usize,
    role: usize,
    state_changing: bool,
}

impl Permit {
    /// The allow rule that granted it (the first name's).
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Every rule that granted one of its names, once each.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        std::iter::once(&self.rule).chain(&self.more_rules)
    }

    /// Every command name allowed.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The BMC.
    pub fn bmc(&self) -> &str {
        &self.bmc_name
    }

    /// Whether it changes state.
    pub fn state_changing(&self) -> bool {
        self.state_changing
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the named rule.
    Allow(Permit),
    /// Refused.
    Deny(Denial),
}

impl Decision {
    /// True for Allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The deciding rule, if any.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Decision::Allow(p) => Some(&p.rule),
            Decision::Deny(d) => d.rule.as_ref(),
        }
    }
}

fn deny(reason: DenyReason, rule: Option<Rule>, detail: String) -> Decision {
    Decision::Deny(Denial {
        reason,
        rule,
        detail,
    })
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are checked as IPv4.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Policy {
    /// Decides a request without rate limits: source, user, target, deny
    /// rules, then allow rules.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let Some(&u) = self.user_index.get(req.user) else {
            return deny(
                DenyReason::UnknownUser,
                None,
                format!("no user {:?} in the policy", req.user),
            );
        };
        let user = &self.users[u];
        let source = req.source.map(normalize);
        if let Some(refusal) = self.source_refusal(user, source) {
            return refusal;
        }
        let Some(&b) = self.bmc_index.get(req.bmc) else {
            return deny(
                DenyReason::UnknownTarget,
                None,
                format!("no BMC {:?}", req.bmc),
            );
        };
        if let Some(denial) = self.first_deny(user, b, req) {
            return denial;
        }
        self.first_grant(u, b, source, req)
    }

    /// The global and the user's own source allowlists.
    fn source_refusal(&self, user: &User, source: Option<IpAddr>) -> Option<Decision> {
        let ip = source?;
        let list = [&self.global_source, &user.source]
            .into_iter()
            .flatten()
            .find(|list| !list.contains(ip))?;
        Some(deny(
            DenyReason::SourceNotAllowed,
            Some(list.rule.clone()),
            format!("source {ip} is not in {}", list.rule.pattern),
        ))
    }

    /// Deny wins: every applicable deny is looked at before any allow.
    fn first_deny(&self, user: &User, b: usize, req: &Request<'_>) -> Option<Decision> {
        user.roles
            .iter()
            .map(|&r| &self.roles[r])
            .filter(|role| role.targets(b))
            .find_map(|role| role.deny.iter().find(|(p, _)| p.matches(req.command)))
            .map(|(_, rule)| {
                deny(
                    DenyReason::Denied,
                    Some(rule.clone()),
                    format!("{} denies {} on {}", rule.owner, req.command, req.bmc),
                )
            })
    }

    /// The first role that targets the BMC, allows the command and (with
    /// its own source list) the source; else why not.
    fn first_grant(
        &self,
        u: usize,
        b: usize,
        source: Option<IpAddr>,
        req: &Request<'_>,
    ) -> Decision {
        let user = &self.users[u];
        let mut source_refusal = None;
        for &r in &user.roles {
            let role = &self.roles[r];
            if !role.targets(b) {
                continue;
            }
            let Some((_, rule)) = role.allow.iter().find(|(p, _)| p.matches(req.command)) else {
                continue;
            };
            if let (Some(list), Some(ip)) = (&role.source, source) {
                if !list.contains(ip) {
                    source_refusal.get_or_insert_with(|| list.rule.clone());
                    continue;
                }
            }
            return Decision::Allow(Permit {
                rule: rule.clone(),
                more_rules: Vec::new(),
                names: vec![req.command.to_string()],
                bmc_name: self.bmcs[b].clone(),
                user: u,
                bmc: b,
                role: r,
                state_changing: req.state_changing,
            });
        }
        if let Some(rule) = source_refusal {
            let detail = format!("the granting role only allows sources {}", rule.pattern);
            return deny(DenyReason::SourceNotAllowed, Some(rule), detail);
        }
        deny(
            DenyReason::NoGrant,
            None,
            format!(
                "no role of user {:?} grants {} on {}",
                user.name, req.command, req.bmc
            ),
        )
    }

    /// Decides a request that sends several commands (a Send Message and
    /// what it carries, the parts of a composite read): each name must be
    /// allowed; the first denial decides, and is returned with its name.
    pub fn decide_all(
        &self,
        req: &Request<'_>,
        names: &[&str],
    ) -> Result<Permit, Box<(Denial, String)>> {
        let mut permit: Option<Permit> = None;
        for name in names {
            let one = Request {
                command: name,
                ..*req
            };
            match self.decide(&one) {
                Decision::Allow(p) => match &mut permit {
                    None => permit = Some(p),
                    Some(first) => {
                        first.names.push(name.to_string());
                        if p.rule != first.rule && !first.more_rules.contains(&p.rule) {
                            first.more_rules.push(p.rule);
                        }
                    }
                },
                Decision::Deny(d) => return Err(Box::new((d, name.to_string()))),
            }
        }
        permit.ok_or_else(|| {
            let detail = "a request with no command name".to_string();
            Box::new((
                Denial {
                    reason: DenyReason::NoGrant,
                    rule: None,
                    detail,
                },
                String::new(),
            ))
        })
    }

    /// Decides a classified request: every name it needs (its own, what a
    /// Send Message carries, the other commands a composite read sends)
    /// must be allowed. The gateway and `policy explain` both decide here,
    /// from the one classifier, so that they cannot disagree. Refusals
    /// that no policy can lift (`Classified::refusal`) are the caller's to
    /// check first.
    pub fn decide_classified(
        &self,
        user: &str,
        source: Option<IpAddr>,
        bmc: &str,
        classified: &Classified,
    ) -> Result<Permit, Box<(Denial, String)>> {
        let req = Request {
            user,
            source,
            bmc,
            command: classified.name.as_str(),
            state_changing: classified.state_changing,
        };
        let names: Vec<&str> = classified.names().map(|n| n.as_str()).collect();
        self.decide_all(&req, &names)
    }

    /// The BMCs a user may see: those on which some role of theirs grants
    /// something (from `source`, when given).
    pub fn visible_bmcs(&self, user: &str, source: Option<IpAddr>) -> Vec<&str> {
        let Some(&u) = self.user_index.get(user) else {
            return vec![];
        };
        (0..self.bmcs.len())
            .filter(|&b| self.visible_to(u, b, source))
            .map(|b| self.bmcs[b].as_str())
            .collect()
    }

    /// Whether `user` may see BMC `bmc` (some role grants something on it,
    /// from `source`); unknown and invisible BMCs look the same to callers.
    pub fn is_visible(&self, user: &str, bmc: &str, source: Option<IpAddr>) -> bool {
        match (self.user_index.get(user), self.bmc_index.get(bmc)) {
            (Some(&u), Some(&b)) => self.visible_to(u, b, source),
            _ => false,
        }
    }

    fn visible_to(&self, u: usize, b: usize, source: Option<IpAddr>) -> bool {
        let user = &self.users[u];
        let source = source.map(normalize);
        if let Some(ip) = source {
            if [&self.global_source, &user.source]
                .into_iter()
                .flatten()
                .any(|l| !l.contains(ip))
            {
                return false;
            }
        }
        user.roles.iter().any(|&r| {
            let role = &self.roles[r];
            role.targets(b)
                && !role.allow.is_empty()
                && source.is_none_or(|ip| role.source.as_ref().is_none_or(|l| l.contains(ip)))
        })
    }

    /// The user a certificate identity maps to.
    pub fn user_for(&self, id: &Identity) -> Option<&str> {
        self.identity_index
            .get(id)
            .map(|&u| self.users[u].name.as_str())
    }

    /// User names, in policy order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| u.name.as_str())
    }

    /// Role names of a user.
    pub fn roles_of(&self, user: &str) -> Vec<&str> {
        self.user_index
            .get(user)
            .map(|&u| {
                self.users[u]
                    .roles
                    .iter()
                    .map(|&r| self.roles[r].name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The identity of a user.
    pub fn identity_of(&self, user: &str) -> Option<&Identity> {
        self.user_index.get(user).map(|&u| &self.users[u].identity)
    }

    /// What a user may do, for summaries: BMCs grouped by the set of named
    /// commands granted on them (sources not considered), plus the raw
    /// patterns granted anywhere. BMCs with no grant are left out.
    pub fn grants_of(&self, user: &str) -> Grants<'_> {
        let Some(&u) = self.user_index.get(user) else {
            return Grants::default();
        };
        let mut groups: Vec<(Vec<&str>, Vec<&'static str>)> = Vec::new();
        for bmc in &self.bmcs {
            let cmds: Vec<&'static str> = NAMED_COMMANDS
                .iter()
                .copied()
                .filter(|c| {
                    self.decide(&Request {
                        user,
                        source: None,
                        bmc,
                        command: c,
                        state_changing: false,
                    })
                    .is_allow()
                })
                .collect();
            if cmds.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(_, c)| *c == cmds) {
                Some((bmcs, _)) => bmcs.push(bmc),
                None => groups.push((vec![bmc], cmds)),
            }
        }
        let mut raw: Vec<&str> = self.users[u]
            .roles
            .iter()
            .flat_map(|&r| self.roles[r].allow.iter())
            .map(|(_, rule)| rule.pattern.as_str())
            .filter(|p| p.starts_with("raw") || p.starts_with("**"))
            .collect();
        raw.sort_unstable();
        raw.dedup();
        Grants {
            by_bmcs: groups,
            raw,
        }
    }

    /// The rate rules that apply to a permitted request, most specific first.
    pub fn rates_for(&self, permit: &Permit) -> Vec<&Rule> {
        let role = &self.roles[permit.role];
        let sc = role
            .state_changing_rate
            .as_ref()
            .filter(|_| permit.state_changing);
        [
            role.rate.as_ref(),
            sc,
            self.user_rate.as_ref(),
            self.bmc_rate.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|(_, rule)| rule)
        .collect()
    }

    /// Numbers of users, roles and BMCs.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.users.len(), self.roles.len(), self.bmcs.len())
    }
}

/// What one user may do, for summaries ([`Policy::grants_of`]).
#[derive(Debug, Default)]
pub struct Grants<'a> {
    /// BMCs with the same granted named commands, and those commands.
    pub by_bmcs: Vec<(Vec<&'a str>, Vec<&'static str>)>,
    /// Allow patterns that can grant raw commands.
    pub raw: Vec<&'a str>,
}

/// Which rate limits a permitted request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Every limit that applies (the normal case).
    Full,
    /// A later step of a change already charged as one (a stock tool's
    /// multi-message boot-device change): every limit but the role's
    /// `state_changing_rate`, which counts changes, not messages.
    WithinChange,
    /// The step that ends a change already charged (boot options "set
    /// complete"): no limit, so that a limit never leaves a BMC halfway
    /// through a change. At most one per charged change.
    EndOfChange,
}

/// One rate's limiter, shared with the next configuration when a reload
/// keeps the rate (so SIGHUP does not hand out a fresh burst).
type Kept<C> = Option<(Rate, Arc<Limiter<u64, C>>)>;

fn limiter<C: Clock + Clone>(k: &Kept<C>) -> Option<&Limiter<u64, C>> {
    k.as_ref().map(|(_, l)| &**l)
}

/// Rate limiters for a policy (the stateful half of a decision). Keys are
/// hashes of user, role and BMC *names*, not positions in the policy, so
/// that their state carries over a reload for users, roles and BMCs that
/// still exist.
pub struct Limits<C: Clock + Clone = DefaultClock> {
    /// By role index: `rate` and `state_changing_rate`.
    per_role: Vec<(Kept<C>, Kept<C>)>,
    per_user: Kept<C>,
    /// `bmc_rate`: one bucket for reads and one for changes per BMC, so
    /// that reads, however many, never hold back a power action.
    per_bmc: Kept<C>,
    /// Half of `bmc_rate` per user and BMC, for reads: no one user takes
    /// a BMC's whole read budget from the others.
    bmc_share: Kept<C>,
}

impl<C: Clock + Clone> std::fmt::Debug for Limits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

/// A stable key for a tuple of names (SipHash with fixed keys: the names
/// come from the operator's files, not from callers).
fn name_key(parts: &[&str]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl<C: Clock + Clone> Limits<C> {
    /// Limiters for every rate in `policy`, on `clock`.
    pub fn new(policy: &Policy, clock: C) -> Self {
        Self::carry_over(policy, clock, None)
    }

    /// Limiters for `policy` that keep the state of `previous` (made for
    /// `old`) wherever a role, the per-user or the per-BMC rate is the same.
    pub fn reloaded(policy: &Policy, clock: C, old: &Policy, previous: &Limits<C>) -> Self {
        Self::carry_over(policy, clock, Some((old, previous)))
    }

    fn carry_over(policy: &Policy, clock: C, prev: Option<(&Policy, &Limits<C>)>) -> Self {
        let keep = |rate: &Option<(Rate, Rule)>, old: Option<&Kept<C>>| -> Kept<C> {
            let (r, _) = rate.as_ref()?;
            match old.and_then(Option::as_ref) {
                Some((o, l)) if o == r => Some((*r, l.clone())),
                _ => Some((*r, Arc::new(Limiter::new(*r, clock.clone())))),
            }
        };
        let old_role = |name: &str| {
            let (op, ol) = prev?;
            let i = op.roles.iter().position(|r| r.name == name)?;
            ol.per_role.get(i)
        };
        Limits {
            per_role: policy
                .roles
                .iter()
                .map(|r| {
                    let old = old_role(&r.name);
                    (
                        keep(&r.rate, old.map(|o| &o.0)),
                        keep(&r.state_changing_rate, old.map(|o| &o.1)),
                    )
                })
                .collect(),
            per_user: keep(&policy.user_rate, prev.map(|(_, l)| &l.per_user)),
            per_bmc: keep(&policy.bmc_rate, prev.map(|(_, l)| &l.per_bmc)),
            bmc_share: keep(
                &policy
                    .bmc_rate
                    .as_ref()
                    .map(|(r, rule)| (r.share(), rule.clone())),
                prev.map(|(_, l)| &l.bmc_share),
            ),
        }
    }

    /// Applies the rates to a permit: the granting role's rate per user and
    /// BMC (and its state-changing rate), the per-user total and the per-BMC
    /// total. Refusals name the rate's rule and when the request would pass.
    pub fn check(&self, policy: &Policy, permit: Permit) -> Decision {
        self.check_charged(policy, permit, Charge::Full)
    }

    /// [`check`](Self::check), counting the permit as `charge` says.
    pub fn check_charged(&self, policy: &Policy, permit: Permit, charge: Charge) -> Decision {
        if charge == Charge::EndOfChange {
            return Decision::Allow(permit);
        }
        let counts_as_change = permit.state_changing && charge == Charge::Full;
        let role = &policy.roles[permit.role];
        let user = policy.users[permit.user].name.as_str();
        let bmc = policy.bmcs[permit.bmc].as_str();
        let pair = name_key(&[user, bmc]);
        let (rate, sc_rate) = &self.per_role[permit.role];
        // Checked in order, stopping at the first refusal (`or_else` is
        // lazy), so that a request refused by one limit does not spend
        // cells of the later ones.
        let refused = limiter(rate)
            .and_then(|l| l.check(&pair).err())
            .map(|w| (w, &role.rate))
            .or_else(|| {
                let l = limiter(sc_rate).filter(|_| counts_as_change)?;
                l.check(&pair).err().map(|w| (w, &role.state_changing_rate))
            })
            .or_else(|| {
                let l = limiter(&self.per_user)?;
                l.check(&name_key(&[user]))
                    .err()
                    .map(|w| (w, &policy.user_rate))
            })
            .map(|(w, r)| (w, r, ""))
            .or_else(|| {
                let l = limiter(&self.bmc_share).filter(|_| !permit.state_changing)?;
                l.check(&pair)
                    .err()
                    .map(|w| (w, &policy.bmc_rate, " (one user's share: half)"))
            })
            .or_else(|| {
                let l = limiter(&self.per_bmc)?;
                let kind = if permit.state_changing {
                    "changes"
                } else {
                    "reads"
                };
                l.check(&name_key(&[bmc, kind]))
                    .err()
                    .map(|w| (w, &policy.bmc_rate, ""))
            });
        if let Some((wait, Some((_, rule)), part)) = refused {
            let detail = format!(
                "{} {} {}{part} exceeded; retry after {:.3} s",
                rule.owner,
                rule.kind,
                rule.pattern,
                wait.as_secs_f64()
            );
            return deny(DenyReason::RateLimited(wait), Some(rule.clone()), detail);
        }
        Decision::Allow(permit)
    }
}

#[cfg(test)]
mod tests;
