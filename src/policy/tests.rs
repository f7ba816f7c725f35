use std::net::IpAddr;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use proptest::prelude::*;

use super::*;
use crate::ipmi::cmd::name::NAMED_COMMANDS;

const BMCS: &[(&str, &[&str])] = &[
    ("node01", &["rack1"]),
    ("node02", &["rack1"]),
    ("node11", &[]),
    ("db01", &["db"]),
];

const SITE: &str = r#"[[group]]
name = "nodes"
bmcs = ["node*"]

[[user]]
name = "alice"
identity = "email:Alice@Example.com"
roles = ["operator", "no-off-on-db"]
source = ["10.20.0.0/16", "127.0.0.1/32"]

[[user]]
name = "bob"
identity = "cn:bob"
roles = ["viewer"]

[[user]]
name = "eve"
identity = "uri:spiffe://corp/eve"
roles = ["lab"]

[defaults]
source = ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]
"#;

const ROLES: &str = r#"[[role]]
name = "operator"
targets = ["group:rack1", "db01"]
allow = ["chassis.**", "mc.info", "sensor.read"]
deny = ["chassis.power.off"]

[[role]]
name = "no-off-on-db"
targets = ["db*"]
deny = ["chassis.power.*"]

[[role]]
name = "viewer"
targets = ["group:nodes"]
allow = ["chassis.status", "sensor.read"]

[[role]]
name = "lab"
targets = ["node11"]
allow = ["raw.0x2e.*", "chassis.*"]
source = ["10.99.0.0/16"]
"#;

fn policy() -> Policy {
    compile_text(&[("site.toml", SITE), ("roles.toml", ROLES)], BMCS)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ask<'a>(user: &'a str, source: &str, bmc: &'a str, command: &'a str) -> Request<'a> {
    Request {
        user,
        source: Some(ip(source)),
        bmc,
        command,
        state_changing: command.starts_with("chassis.power"),
    }
}

/// What a decision looks like in the table: `allow`, or the deny reason,
/// and the `file:line` of the deciding rule ("" for default deny).
fn summary(d: &Decision) -> (String, String) {
    let what = match d {
        Decision::Allow(_) => "allow".to_string(),
        Decision::Deny(Denial { reason, .. }) => format!("{reason:?}"),
    };
    let at = d
        .rule()
        .map(|r| format!("{}:{}", r.file, r.line))
        .unwrap_or_default();
    (what, at)
}

#[test]
fn decision_table() {
    let p = policy();
    #[rustfmt::skip]
    let table: &[(&str, &str, &str, &str, &str, &str)] = &[
        // user, source, bmc, command => outcome, rule
        ("alice", "10.20.1.1", "node01", "chassis.status", "allow", "roles.toml:4"),
        ("alice", "10.20.1.1", "node01", "chassis.power.on", "allow", "roles.toml:4"),
        ("alice", "10.20.1.1", "node01", "chassis.power.off", "Denied", "roles.toml:5"),
        // `**` matches at any depth, `*` does not cross a dot.
        ("alice", "10.20.1.1", "node02", "chassis.bootdev.set", "allow", "roles.toml:4"),
        ("eve", "10.99.0.5", "node11", "chassis.status", "allow", "roles.toml:20"),
        ("eve", "10.99.0.5", "node11", "chassis.power.on", "NoGrant", ""),
        ("eve", "10.99.0.5", "node11", "raw.0x2e.0x01", "allow", "roles.toml:20"),
        ("eve", "10.99.0.5", "node11", "raw.0x30.0x01", "NoGrant", ""),
        // A deny in another role of the same user wins, on that role's targets only.
        ("alice", "10.20.1.1", "db01", "chassis.power.on", "Denied", "roles.toml:10"),
        ("alice", "10.20.1.1", "db01", "chassis.status", "allow", "roles.toml:4"),
        // Targets: alice's operator role does not reach node11.
        ("alice", "10.20.1.1", "node11", "chassis.status", "NoGrant", ""),
        ("bob", "10.1.1.1", "node11", "sensor.read", "allow", "roles.toml:15"),
        ("bob", "10.1.1.1", "db01", "sensor.read", "NoGrant", ""),
        ("bob", "10.1.1.1", "node01", "sel.read", "NoGrant", ""),
        // Sources: the global list, then the user's, then the granting role's.
        ("bob", "192.168.1.1", "node01", "sensor.read", "SourceNotAllowed", "site.toml:22"),
        ("alice", "10.1.1.1", "node01", "chassis.status", "SourceNotAllowed", "site.toml:9"),
        ("alice", "::ffff:10.20.3.4", "node01", "chassis.status", "allow", "roles.toml:4"),
        ("alice", "::ffff:127.0.0.1", "node01", "chassis.status", "allow", "roles.toml:4"),
        ("eve", "10.1.1.1", "node11", "chassis.status", "SourceNotAllowed", "roles.toml:21"),
        ("bob", "::1", "node01", "sensor.read", "allow", "roles.toml:15"),
        // Unknowns.
        ("mallory", "10.1.1.1", "node01", "sensor.read", "UnknownUser", ""),
        ("bob", "10.1.1.1", "node99", "sensor.read", "UnknownTarget", ""),
    ];
    for &(user, source, bmc, command, outcome, rule) in table {
        let d = p.decide(&ask(user, source, bmc, command));
        assert_eq!(
            summary(&d),
            (outcome.to_string(), rule.to_string()),
            "{user} from {source} on {bmc}: {command}: {d:?}"
        );
    }
}

#[test]
fn the_deciding_rule_names_role_and_pattern() {
    let p = policy();
    let d = p.decide(&ask("alice", "10.20.1.1", "node01", "chassis.power.off"));
    let r = d.rule().unwrap();
    assert_eq!(
        (r.kind, r.owner.as_str(), r.pattern.as_str()),
        ("deny", "role \"operator\"", "chassis.power.off")
    );
    assert_eq!(
        r.to_string(),
        "roles.toml:5 role \"operator\" deny chassis.power.off"
    );
}

#[test]
fn identities_and_visibility() {
    let p = policy();
    assert_eq!(
        p.user_for(&Identity::parse("email:alice@example.com").unwrap()),
        Some("alice")
    );
    assert_eq!(p.user_for(&Identity::parse("cn:bob").unwrap()), Some("bob"));
    assert_eq!(
        p.user_for(&Identity::parse("cn:Bob").unwrap()),
        None,
        "CN is case-sensitive"
    );
    assert_eq!(
        p.user_for(&Identity::parse("dns:bob").unwrap()),
        None,
        "the kind must match too"
    );
    assert_eq!(
        p.visible_bmcs("alice", Some(ip("10.20.0.1"))),
        ["node01", "node02", "db01"]
    );
    assert_eq!(
        p.visible_bmcs("alice", Some(ip("10.30.0.1"))),
        Vec::<&str>::new()
    );
    assert_eq!(p.visible_bmcs("bob", None), ["node01", "node02", "node11"]);
    assert_eq!(
        p.visible_bmcs("eve", Some(ip("10.1.1.1"))),
        Vec::<&str>::new(),
        "the only granting role refuses that source"
    );
    assert_eq!(p.visible_bmcs("eve", Some(ip("10.99.1.1"))), ["node11"]);
    assert!(p.visible_bmcs("nobody", None).is_empty());
}

fn limited_policy() -> Policy {
    let text = r#"[[user]]
name = "u"
identity = "cn:u"
roles = ["r"]

[[user]]
name = "v"
identity = "cn:v"
roles = ["r"]

[[user]]
name = "w"
identity = "cn:w"
roles = ["r"]

[[role]]
name = "r"
targets = ["*"]
allow = ["**"]
rate = "4/second"
state_changing_rate = "2/minute"

[defaults]
rate = "6/second"
bmc_rate = "8/second"
"#;
    compile_text(
        &[("rates.toml", text)],
        &[("a", &[]), ("b", &[]), ("c", &[])],
    )
    .unwrap()
}

fn permit(p: &Policy, user: &str, bmc: &str, command: &str, state_changing: bool) -> Permit {
    match p.decide(&Request {
        user,
        source: None,
        bmc,
        command,
        state_changing,
    }) {
        Decision::Allow(permit) => permit,
        d => panic!("{d:?}"),
    }
}

fn rate_refusal(d: Decision) -> (Duration, String) {
    match d {
        Decision::Deny(Denial {
            reason: DenyReason::RateLimited(wait),
            rule: Some(rule),
            ..
        }) => (wait, format!("{} {}", rule.kind, rule.pattern)),
        d => panic!("expected a rate refusal, got {d:?}"),
    }
}

/// The later steps of a change already charged skip only the
/// state-changing limit (every message still counts against the others);
/// the step that ends a change is never refused by a limit.
#[test]
fn a_change_in_several_messages_is_charged_once() {
    let p = limited_policy();
    let clock = FakeRelativeClock::default();
    let limits = Limits::new(&p, clock.clone());
    let set = || permit(&p, "u", "a", "chassis.bootdev.set", true);
    for _ in 0..2 {
        assert!(limits.check_charged(&p, set(), Charge::Full).is_allow());
        assert!(limits
            .check_charged(&p, set(), Charge::WithinChange)
            .is_allow());
        assert!(limits
            .check_charged(&p, set(), Charge::EndOfChange)
            .is_allow());
    }
    // The role's 4/second refills; the 2 changes a minute do not.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        rate_refusal(limits.check_charged(&p, set(), Charge::Full)).1,
        "state_changing_rate 2/minute",
        "two changes, whatever the steps"
    );
    // Parts of a change are messages: the role's 4/second still counts
    // them (the refused change above took one of its cells).
    let (_, rule) = (0..4)
        .map(|_| limits.check_charged(&p, set(), Charge::WithinChange))
        .find(|d| !d.is_allow())
        .map(rate_refusal)
        .expect("a message limit");
    assert_eq!(rule, "rate 4/second");
    assert!(
        limits
            .check_charged(&p, set(), Charge::EndOfChange)
            .is_allow(),
        "ending a change is never refused by a limit"
    );
}

#[test]
fn rates_apply_per_role_user_and_bmc_with_exact_retry_times() {
    let p = limited_policy();
    let clock = FakeRelativeClock::default();
    let limits = Limits::new(&p, clock.clone());
    // State-changing: 2 per minute per user and BMC.
    for _ in 0..2 {
        assert!(limits
            .check(&p, permit(&p, "u", "a", "chassis.power.on", true))
            .is_allow());
    }
    assert_eq!(
        rate_refusal(limits.check(&p, permit(&p, "u", "a", "chassis.power.on", true))),
        (
            Duration::from_secs(30),
            "state_changing_rate 2/minute".into()
        )
    );
    // The role rate: 4/s per user and BMC.
    for _ in 0..4 {
        assert!(limits
            .check(&p, permit(&p, "v", "b", "sensor.read", false))
            .is_allow());
    }
    assert_eq!(
        rate_refusal(limits.check(&p, permit(&p, "v", "b", "sensor.read", false))),
        (Duration::from_millis(250), "rate 4/second".into())
    );
    // Per user, all BMCs: 6/s. A refusal stops the chain, so v's refused
    // request above spent no cell of its per-user limit: v has used 4.
    for _ in 0..2 {
        assert!(limits
            .check(&p, permit(&p, "v", "c", "sensor.read", false))
            .is_allow());
    }
    let (wait, rule) = rate_refusal(limits.check(&p, permit(&p, "v", "c", "sensor.read", false)));
    assert_eq!(rule, "rate 6/second");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(167),
        "{wait:?}"
    );
    // Per BMC, all users: 8/s, half of it per user; b has had 4 from v.
    for _ in 0..4 {
        assert!(limits
            .check(&p, permit(&p, "w", "b", "sensor.read", false))
            .is_allow());
    }
    assert_eq!(
        rate_refusal(limits.check(&p, permit(&p, "u", "b", "sensor.read", false))).1,
        "bmc_rate 8/second"
    );
    // Reads never use up a BMC's budget for changes.
    assert!(limits
        .check(&p, permit(&p, "u", "b", "chassis.power.on", true))
        .is_allow());
    // Refill.
    clock.advance(Duration::from_secs(1));
    assert!(limits
        .check(&p, permit(&p, "v", "b", "sensor.read", false))
        .is_allow());
    assert_eq!(
        rate_refusal(limits.check(&p, permit(&p, "u", "a", "chassis.power.on", true))).0,
        Duration::from_secs(29),
        "one state-changing cell every 30 s"
    );
    clock.advance(Duration::from_secs(29));
    assert!(limits
        .check(&p, permit(&p, "u", "a", "chassis.power.on", true))
        .is_allow());
}

#[test]
fn check_config_diagnostics_carry_positions() {
    let bad = r#"[[user]]
name = "x"
identity = "cn:x"
roles = ["nope"]

[[user]]
name = "y"
identity = "cn:x"

[[role]]
name = "r"
targets = ["zz*", "group:missing"]
allow = ["chassis.pwr.*", "raw.0x2e.*", "raw.zz"]
source = ["10.0.0.1/8"]
rate = "ten/minute"
"#;
    let e = compile_text(&[("bad.toml", bad)], BMCS).unwrap_err();
    let lines: Vec<String> =
        e.0.iter()
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.col, d.message))
            .collect();
    let expect = [
        (
            "bad.toml:12:12:",
            "target \"zz*\" matches no configured BMC",
        ),
        ("bad.toml:12:19:", "unknown group \"missing\""),
        (
            "bad.toml:13:10:",
            "\"chassis.pwr.*\" matches no known command name",
        ),
        (
            "bad.toml:13:41:",
            "\"raw.zz\" matches no known command name",
        ),
        (
            "bad.toml:14:11:",
            "host bits set (did you mean 10.0.0.0/8?)",
        ),
        ("bad.toml:15:8:", "expected N/second"),
        ("bad.toml:4:10:", "unknown role \"nope\""),
        ("bad.toml:8:12:", "one certificate would map to two users"),
    ];
    for (at, what) in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(at) && l.contains(what)),
            "missing {at} {what} in:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expect.len(), "{}", lines.join("\n"));
}

#[test]
fn unknown_keys_and_second_defaults_are_errors() {
    let e = compile_text(
        &[("a.toml", "[[role]]\nname = \"r\"\nalow = [\"mc.info\"]\n")],
        BMCS,
    )
    .unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].col), (3, 1), "{e}");
    assert!(e.0[0].message.contains("unknown field `alow`"), "{e}");
    let d = "[defaults]\nrate = \"1/second\"\n";
    let e = compile_text(&[("a.toml", d), ("b.toml", d)], BMCS).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("b.toml:1:1: [defaults] is defined in more than one policy file"),
        "{e}"
    );
}

/// Where a role's rule list ends up: allows and denies, as pattern indices.
#[derive(Debug, Clone)]
struct RoleSpec {
    allow: Vec<usize>,
    deny: Vec<usize>,
    targets_all: bool,
}

const PATTERNS: &[&str] = &[
    "**",
    "chassis.**",
    "chassis.*",
    "chassis.power.*",
    "chassis.power.off",
    "chassis.power.o*",
    "*.read",
    "sensor.read",
    "sel.*",
    "mc.**",
    "raw.0x2e.*",
    "raw.**",
];

const PROBES: &[&str] = &[
    "chassis.status",
    "chassis.power.off",
    "chassis.power.on",
    "chassis.power.cycle",
    "chassis.bootdev.set",
    "sensor.read",
    "sel.read",
    "sel.clear",
    "mc.info",
    "mc.reset.cold",
    "fru.read",
    "raw.0x2e.0x01",
    "raw.0x30.0x02",
];

fn render(files: &[Vec<(usize, RoleSpec)>]) -> Vec<(String, String)> {
    files
        .iter()
        .enumerate()
        .map(|(fi, roles)| {
            let mut t = String::new();
            for (ri, r) in roles {
                let list = |ix: &[usize]| ix.iter().map(|&i| format!("{:?}", PATTERNS[i])).collect::<Vec<_>>().join(", ");
                let targets = if r.targets_all { "\"*\"" } else { "\"db01\"" };
                t += &format!(
                    "[[role]]\nname = \"r{ri}\"\ntargets = [{targets}]\nallow = [{}]\ndeny = [{}]\n\n",
                    list(&r.allow),
                    list(&r.deny)
                );
            }
            (format!("f{fi}.toml"), t)
        })
        .collect()
}

fn reference(roles: &[RoleSpec], bmc_is_db: bool, cmd: &str) -> bool {
    let applies = |r: &&RoleSpec| r.targets_all || bmc_is_db;
    let hit = |ix: &[usize]| {
        ix.iter().any(|&i| {
            glob::CommandPattern::parse(PATTERNS[i])
                .unwrap()
                .matches(cmd)
        })
    };
    let denied = roles.iter().filter(applies).any(|r| hit(&r.deny));
    let granted = roles.iter().filter(applies).any(|r| hit(&r.allow));
    granted && !denied
}

fn role_spec() -> impl Strategy<Value = RoleSpec> {
    (
        prop::collection::vec(0..PATTERNS.len(), 0..4),
        prop::collection::vec(0..PATTERNS.len(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(allow, deny, targets_all)| RoleSpec {
            allow,
            deny,
            targets_all,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Deny wins whatever the order of files, roles and rules: every
    /// shuffle gives the reference answer on every probe.
    #[test]
    fn deny_wins_under_any_order(
        roles in prop::collection::vec(role_spec(), 1..5),
        shuffles in prop::collection::vec(any::<u64>(), 3),
    ) {
        use rand::{seq::SliceRandom, SeedableRng};
        for seed in shuffles {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let mut order: Vec<(usize, RoleSpec)> = roles.iter().cloned().enumerate().collect();
            order.shuffle(&mut rng);
            for (_, r) in order.iter_mut() {
                r.allow.shuffle(&mut rng);
                r.deny.shuffle(&mut rng);
            }
            // Split the roles over up to three files, files in shuffled order.
            let mut files: Vec<Vec<(usize, RoleSpec)>> = vec![vec![]; 3];
            for (i, r) in order.into_iter().enumerate() {
                files[(i + seed as usize) % 3].push(r);
            }
            files.shuffle(&mut rng);
            let mut texts = render(&files);
            let mut role_names: Vec<String> = (0..roles.len()).map(|i| format!("\"r{i}\"")).collect();
            role_names.shuffle(&mut rng);
            texts.push(("users.toml".into(), format!("[[user]]\nname = \"u\"\nidentity = \"cn:u\"\nroles = [{}]\n", role_names.join(", "))));
            let refs: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
            let p = compile_text(&refs, &[("node01", &[]), ("db01", &[])]).unwrap();
            for bmc in ["node01", "db01"] {
                for cmd in PROBES {
                    let d = p.decide(&Request { user: "u", source: None, bmc, command: cmd, state_changing: false });
                    prop_assert_eq!(d.is_allow(), reference(&roles, bmc == "db01", cmd), "{} on {}: {:?}", cmd, bmc, d);
                }
            }
        }
    }
}

fn shipped(role: &str) -> Policy {
    let files = [
        (
            "policies/viewer.toml",
            include_str!("../../policies/viewer.toml"),
        ),
        (
            "policies/operator.toml",
            include_str!("../../policies/operator.toml"),
        ),
        (
            "policies/admin.toml",
            include_str!("../../policies/admin.toml"),
        ),
        (
            "policies/auditor.toml",
            include_str!("../../policies/auditor.toml"),
        ),
        (
            "u.toml",
            &*format!("[[user]]\nname = \"u\"\nidentity = \"cn:u\"\nroles = [\"{role}\"]\n"),
        ),
    ];
    compile_text(&files, &[("node01", &[])]).unwrap_or_else(|e| panic!("{e}"))
}

fn granted(role: &str) -> Vec<&'static str> {
    let p = shipped(role);
    let raw = [
        "raw.0x06.0x01",
        "raw.0x2e.0x01",
        "raw.0x30.0xff",
        "raw.0x3e.0x00",
    ];
    NAMED_COMMANDS
        .iter()
        .chain(raw.iter())
        .copied()
        .filter(|c| {
            p.decide(&Request {
                user: "u",
                source: Some(ip("10.0.0.1")),
                bmc: "node01",
                command: c,
                state_changing: false,
            })
            .is_allow()
        })
        .collect()
}

#[test]
fn shipped_policies_grant_what_their_comments_say() {
    let never_for_viewer_or_operator = |c: &str| {
        c.starts_with("user.")
            || c.starts_with("mc.reset.")
            || c.starts_with("raw.")
            || ["lan.write", "channel.write", "ipmb.send", "i2c.write_read"].contains(&c)
    };
    let viewer = granted("viewer");
    let operator = granted("operator");
    let admin = granted("admin");
    for c in viewer.iter().chain(&operator) {
        assert!(
            !never_for_viewer_or_operator(c),
            "{c} is granted by a shipped viewer/operator policy"
        );
    }
    assert_eq!(
        viewer,
        [
            "mc.info",
            "chassis.status",
            "sensor.read",
            "sdr.read",
            "sel.read",
            "fru.read",
            "console.read"
        ]
    );
    let mut extra: Vec<&str> = operator
        .iter()
        .filter(|c| !viewer.contains(c))
        .copied()
        .collect();
    extra.sort_unstable();
    assert_eq!(
        extra,
        [
            "chassis.bootdev.get",
            "chassis.bootdev.set",
            "chassis.power.cycle",
            "chassis.power.diag",
            "chassis.power.off",
            "chassis.power.on",
            "chassis.power.reset",
            "chassis.power.soft",
            "console.break",
            "console.write",
            "sol.activate",
            "sol.config.read"
        ]
    );
    assert!(
        viewer.iter().all(|c| operator.contains(c)),
        "operator is a superset of viewer"
    );
    let not_admin: Vec<&str> = NAMED_COMMANDS
        .iter()
        .filter(|c| !admin.contains(c))
        .copied()
        .collect();
    assert_eq!(
        not_admin,
        [
            "chassis.bootopt.flags",
            // The gateway's own metrics are granted to scrapers, not admins.
            "metrics.read",
            "user.write",
            "lan.write",
            "channel.write",
            "ipmb.send",
            "i2c.write_read"
        ]
    );
    assert!(admin.iter().all(|c| !c.starts_with("raw.")));
    // No shipped role grants a boot option beyond the device, bridging or
    // a raw command, whatever its name's bytes.
    for role in ["viewer", "operator", "admin", "auditor"] {
        let p = shipped(role);
        for name in [
            "chassis.bootopt.param.0x07",
            "chassis.bootopt.param.0x61",
            "raw.0x2e.0x01.343",
            "raw.0x30.0x01",
        ] {
            let d = p.decide(&Request {
                user: "u",
                source: None,
                bmc: "node01",
                command: name,
                state_changing: true,
            });
            assert!(!d.is_allow(), "{role} grants {name}");
        }
    }
    assert!(granted("auditor").is_empty());
    assert!(shipped("auditor").visible_bmcs("u", None).is_empty());
}

/// SIGHUP used to hand every user a fresh burst: six more power actions
/// right after a 429. State now carries over for what still exists, even
/// when users and BMCs move in the files.
#[test]
fn rate_state_survives_a_reload() {
    let p = limited_policy();
    let clock = FakeRelativeClock::default();
    let limits = Limits::new(&p, clock.clone());
    for _ in 0..2 {
        assert!(limits
            .check(&p, permit(&p, "u", "a", "chassis.power.on", true))
            .is_allow());
    }
    rate_refusal(limits.check(&p, permit(&p, "u", "a", "chassis.power.on", true)));
    // The same policy with users and BMCs in another order, and one more.
    let text = r#"[[user]]
name = "w"
identity = "cn:w"
roles = ["r"]

[[user]]
name = "u"
identity = "cn:u"
roles = ["r"]

[[role]]
name = "r"
targets = ["*"]
allow = ["**"]
rate = "4/second"
state_changing_rate = "2/minute"

[defaults]
rate = "6/second"
bmc_rate = "8/second"
"#;
    let reloaded = compile_text(
        &[("rates.toml", text)],
        &[("z", &[]), ("a", &[]), ("b", &[])],
    )
    .unwrap();
    let after = Limits::reloaded(&reloaded, clock.clone(), &p, &limits);
    rate_refusal(after.check(
        &reloaded,
        permit(&reloaded, "u", "a", "chassis.power.on", true),
    ));
    // Another user and BMC are unaffected; a changed rate starts afresh.
    assert!(after
        .check(
            &reloaded,
            permit(&reloaded, "w", "z", "chassis.power.on", true)
        )
        .is_allow());
    let faster = compile_text(
        &[("rates.toml", &text.replace("2/minute", "3/minute"))],
        &[("a", &[])],
    )
    .unwrap();
    // (The role's 4/second has been spent by the refused tries; let it refill.)
    clock.advance(Duration::from_secs(1));
    let changed = Limits::reloaded(&faster, clock, &reloaded, &after);
    let d = changed.check(&faster, permit(&faster, "u", "a", "chassis.power.on", true));
    assert!(d.is_allow(), "{d:?}");
}

/// A viewer reading one BMC as fast as it may took the whole per-BMC
/// budget and starved an operator's power action: reads and changes have
/// separate per-BMC budgets, and one user gets half of the read budget.
#[test]
fn one_reader_cannot_take_a_bmcs_whole_budget() {
    let text = r#"[[user]]
name = "v"
identity = "cn:v"
roles = ["free"]

[[user]]
name = "w"
identity = "cn:w"
roles = ["free"]

[[user]]
name = "u"
identity = "cn:u"
roles = ["free"]

[[role]]
name = "free"
targets = ["*"]
allow = ["**"]

[defaults]
bmc_rate = "8/second"
"#;
    let p = compile_text(&[("free.toml", text)], &[("c", &[])]).unwrap();
    let limits = Limits::new(&p, FakeRelativeClock::default());
    let mut allowed = 0;
    for _ in 0..8 {
        if limits
            .check(&p, permit(&p, "v", "c", "sdr.read", false))
            .is_allow()
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4, "half of bmc_rate 8/second");
    assert!(limits
        .check(&p, permit(&p, "w", "c", "sensor.read", false))
        .is_allow());
    assert!(limits
        .check(&p, permit(&p, "u", "c", "chassis.power.off", true))
        .is_allow());
}
