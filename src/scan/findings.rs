//! What a scan saw of one BMC ([`Observations`]) and what that means
//! ([`Finding`]s): a pure function from the one to the other, so that each
//! rule is tested without a network.
//!
//! Never does: hold or print a password hash; a RAKP 2 is reduced to the
//! fact that a name got one.

use serde::Serialize;

use crate::ipmi::probe::{AuthCaps, SuiteRecord};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Hardening.
    Low,
    /// A weakness an attacker needs more for.
    Medium,
    /// A weakness that leads to credentials or a session.
    High,
    /// Proven access without credentials.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One rule: id, severity, title and how to fix it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    /// Stable id (SARIF rule id, metric label).
    pub id: &'static str,
    /// Severity of every finding of this rule.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub title: &'static str,
    /// How to fix it.
    pub fix: &'static str,
}

const fn rule(
    id: &'static str,
    severity: Severity,
    title: &'static str,
    fix: &'static str,
) -> Rule {
    Rule {
        id,
        severity,
        title,
        fix,
    }
}

/// Every rule a scan applies.
pub const RULES: &[Rule] = &[
    rule("cipher0-login", Severity::Critical,
        "cipher suite 0 login with a wrong password runs commands (CVE-2013-4782)",
        "disable cipher suite 0 on the LAN channel (ipmitool lan set 1 cipher_privs with X for suite 0) or update the firmware"),
    rule("cipher0-open-session", Severity::High,
        "Open Session with cipher suite 0 (no authentication) is accepted",
        "disable cipher suite 0 on the LAN channel"),
    rule("cipher0-offered", Severity::High,
        "cipher suite 0 is listed by Get Channel Cipher Suites",
        "disable cipher suite 0 on the LAN channel"),
    rule("default-creds", Severity::Critical,
        "a vendor default user name and password logs in",
        "change the password of the account or disable it"),
    rule("anonymous-login", Severity::High,
        "anonymous login (null user name, null password) is enabled",
        "disable user 1 (the null user) and set a password on it"),
    rule("null-user", Severity::High,
        "null user names are enabled",
        "disable user 1 (the null user)"),
    rule("ipmi15-auth-none", Severity::High,
        "IPMI 1.5 sessions without authentication are offered",
        "disable IPMI 1.5 or at least auth type NONE on the LAN channel (ipmitool lan set 1 auth)"),
    rule("ipmi15-auth-straight", Severity::High,
        "IPMI 1.5 straight password authentication (cleartext password) is offered",
        "disable the straight password auth type on the LAN channel"),
    rule("ipmi15-auth-md2", Severity::Medium,
        "IPMI 1.5 MD2 authentication is offered",
        "disable IPMI 1.5 on the LAN channel; use RMCP+ suites 17 or 3"),
    rule("ipmi15-auth-md5", Severity::Medium,
        "IPMI 1.5 MD5 authentication is offered",
        "disable IPMI 1.5 on the LAN channel; use RMCP+ suites 17 or 3"),
    rule("per-message-auth-off", Severity::Medium,
        "per-message authentication is disabled (IPMI 1.5 packets after login are not authenticated)",
        "enable per-message authentication on the LAN channel"),
    rule("user-level-auth-off", Severity::Medium,
        "user-level authentication is disabled (USER-level commands are not authenticated)",
        "enable user-level authentication on the LAN channel"),
    rule("cipher-weak", Severity::Medium,
        "cipher suites without integrity, without confidentiality or with RC4 are offered",
        "offer only cipher suites 17 and 3 on the LAN channel"),
    rule("rakp-hash-exposure", Severity::Medium,
        "RAKP 2 hands out an offline-crackable password hash for well-known user names (CVE-2013-4786)",
        "rename well-known accounts, use long random passwords, and keep IPMI on an isolated network (every IPMI 2.0 BMC answers RAKP 1)"),
    rule("no-lockout", Severity::Medium,
        "no bad-password lockout (LAN parameter 26 threshold is 0)",
        "set a bad password threshold (ipmitool lan set 1 bad_pass_thresh)"),
    rule("user-default-name", Severity::Medium,
        "an enabled user has an empty or vendor default name",
        "rename or disable the account"),
    rule("user-extra-lan", Severity::Low,
        "users other than the gateway's are enabled for LAN access",
        "disable LAN access for every account but the gateway's"),
    rule("kg-default", Severity::Low,
        "the BMC key Kg is the default all-zero key",
        "set a random Kg (ipmitool channel setkg) and give it to the gateway"),
];

/// The rule with this id.
pub fn rule_of(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One finding on one BMC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule id.
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// What is wrong.
    pub title: &'static str,
    /// What proves it (answer bytes in hex, or what was asked and answered).
    pub evidence: String,
    /// How to fix it.
    pub fix: &'static str,
}

/// How the suite-0 proof went (`--prove`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suite0Proof {
    /// The user name used (any known name; the password is never sent).
    pub user: String,
    /// RAKP 2 status, RAKP 4 status.
    pub rakp: Option<(u8, u8)>,
    /// Get Device ID's completion code, when the command was answered.
    pub command_cc: Option<u8>,
    /// Get Device ID's answer bytes.
    pub answer_hex: String,
}

/// What the probes of one BMC saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observations {
    /// Get Channel Authentication Capabilities.
    pub auth_caps: Option<AuthCaps>,
    /// Cipher suite records, and the raw record stream (hex).
    pub suites: Option<Vec<SuiteRecord>>,
    /// The cipher suite record stream, hex.
    pub suites_hex: String,
    /// Open Session for suite 0: the RMCP+ status (0 = accepted).
    pub suite0_status: Option<u8>,
    /// The suite-0 login proof, with `--prove`.
    pub suite0_proof: Option<Suite0Proof>,
    /// Names that got a RAKP 2 with an auth code (the hash not kept).
    pub rakp_exposed: Vec<String>,
    /// The suite the RAKP check used.
    pub rakp_suite: Option<u8>,
    /// Default credentials that logged in (`--default-creds`).
    pub default_creds: Vec<String>,
    /// Results of the authenticated checks.
    pub authenticated: Option<super::auth::AuthChecks>,
    /// Probes that could not run as planned, and why.
    pub notes: Vec<String>,
}

impl Observations {
    /// Every finding these observations prove, most severe first.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(c) = &self.auth_caps {
            caps_findings(c, &mut out);
        }
        if let Some(s) = &self.suites {
            suite_findings(s, &self.suites_hex, &mut out);
        }
        self.suite0_findings(&mut out);
        if !self.rakp_exposed.is_empty() {
            push(
                &mut out,
                "rakp-hash-exposure",
                format!(
                    "RAKP 2 with an HMAC (suite {}) for: {}",
                    self.rakp_suite.unwrap_or(3),
                    self.rakp_exposed.join(", ")
                ),
            );
        }
        if !self.default_creds.is_empty() {
            push(
                &mut out,
                "default-creds",
                format!(
                    "logged in with the vendor default password as {}",
                    self.default_creds.join(", ")
                ),
            );
        }
        if let Some(a) = &self.authenticated {
            a.findings(&mut out);
        }
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
        out
    }

    fn suite0_findings(&self, out: &mut Vec<Finding>) {
        if self.suite0_status == Some(0) {
            push(
                out,
                "cipher0-open-session",
                "Open Session for suite 0 (0/0/0) answered with status 0x00".into(),
            );
        }
        let Some(p) = &self.suite0_proof else { return };
        if p.command_cc == Some(0) {
            push(
                out,
                "cipher0-login",
                format!(
                    "suite 0 login as {:?} with no password proof, then Get Device ID answered: {}",
                    p.user, p.answer_hex
                ),
            );
        }
    }
}

/// Adds a finding of rule `id`.
pub(crate) fn push(out: &mut Vec<Finding>, id: &str, evidence: String) {
    if let Some(r) = rule_of(id) {
        out.push(Finding {
            id: r.id,
            severity: r.severity,
            title: r.title,
            evidence,
            fix: r.fix,
        });
    }
}

fn caps_findings(c: &AuthCaps, out: &mut Vec<Finding>) {
    let ev = |what: &str| {
        format!(
            "Get Channel Auth Caps answer {}: {what}",
            hex::encode(&c.raw)
        )
    };
    for (bit, id, name) in [
        (0x01, "ipmi15-auth-none", "auth type NONE"),
        (0x02, "ipmi15-auth-md2", "auth type MD2"),
        (0x04, "ipmi15-auth-md5", "auth type MD5"),
        (0x10, "ipmi15-auth-straight", "auth type straight password"),
    ] {
        if c.v15_auth_types & bit != 0 {
            push(
                out,
                id,
                ev(&format!(
                    "{name} offered (byte 2 bit {})",
                    bit.trailing_zeros()
                )),
            );
        }
    }
    if c.anonymous {
        push(
            out,
            "anonymous-login",
            ev("anonymous login enabled (byte 3 bit 0)"),
        );
    }
    if c.null_users {
        push(
            out,
            "null-user",
            ev("null user names enabled (byte 3 bit 1)"),
        );
    }
    // Both bits only mean something for IPMI 1.5 sessions.
    if c.v15_auth_types != 0 && c.per_message_auth_off {
        push(
            out,
            "per-message-auth-off",
            ev("per-message authentication disabled (byte 3 bit 4)"),
        );
    }
    if c.v15_auth_types != 0 && c.user_level_auth_off {
        push(
            out,
            "user-level-auth-off",
            ev("user-level authentication disabled (byte 3 bit 3)"),
        );
    }
    if c.v20_connections && !c.kg_set {
        push(
            out,
            "kg-default",
            ev("KG status 0: default all-zero key (byte 3 bit 5)"),
        );
    }
}

/// True for a suite with no integrity, no confidentiality or RC4
/// (confidentiality 2 and 3), suite 0 aside (its own rule).
pub fn is_weak(r: &SuiteRecord) -> bool {
    r.id != 0 && (r.integrity == 0 || r.confidentiality == 0 || matches!(r.confidentiality, 2 | 3))
}

fn suite_findings(suites: &[SuiteRecord], stream_hex: &str, out: &mut Vec<Finding>) {
    if suites.iter().any(|r| r.id == 0) {
        push(
            out,
            "cipher0-offered",
            format!("cipher suite records {stream_hex}: suite 0 listed"),
        );
    }
    let weak: Vec<String> = suites
        .iter()
        .filter(|r| is_weak(r))
        .map(|r| r.id.to_string())
        .collect();
    if !weak.is_empty() {
        push(
            out,
            "cipher-weak",
            format!(
                "cipher suite records {stream_hex}: weak suites {}",
                weak.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v15: u8, status: u8) -> AuthCaps {
        AuthCaps {
            channel: 1,
            v15_auth_types: v15,
            v20_extended: true,
            kg_set: status & 0x20 != 0,
            per_message_auth_off: status & 0x10 != 0,
            user_level_auth_off: status & 0x08 != 0,
            non_null_users: status & 0x04 != 0,
            null_users: status & 0x02 != 0,
            anonymous: status & 0x01 != 0,
            v15_connections: v15 != 0,
            v20_connections: true,
            oem_id: 0,
            raw: vec![0, 1, 0x80 | v15, status, 0x03, 0, 0, 0, 0],
        }
    }

    fn ids(o: &Observations) -> Vec<&'static str> {
        o.findings().iter().map(|f| f.id).collect()
    }

    /// The auth caps rules no simulator profile produces: each bit is one
    /// finding, and the same bits cleared are none.
    #[test]
    fn every_auth_caps_bit_is_one_finding() {
        let weak = Observations {
            auth_caps: Some(caps(0x13, 0x1F)),
            ..Observations::default()
        };
        let found = ids(&weak);
        for id in [
            "ipmi15-auth-none",
            "ipmi15-auth-md2",
            "ipmi15-auth-straight",
            "per-message-auth-off",
            "user-level-auth-off",
            "anonymous-login",
            "null-user",
            "kg-default",
        ] {
            assert!(found.contains(&id), "{id} missing from {found:?}");
        }
        assert!(!found.contains(&"ipmi15-auth-md5"));
        let clean = Observations {
            auth_caps: Some(caps(0, 0x24)),
            ..Observations::default()
        };
        assert!(ids(&clean).is_empty(), "{:?}", ids(&clean));
        // Without IPMI 1.5, the 1.5-only bits mean nothing.
        let v20 = Observations {
            auth_caps: Some(caps(0, 0x3C)),
            ..Observations::default()
        };
        assert!(ids(&v20).is_empty(), "{:?}", ids(&v20));
    }

    #[test]
    fn weak_suites_and_severity_order() {
        let rec = |id, auth, integrity, confidentiality| SuiteRecord {
            id,
            auth,
            integrity,
            confidentiality,
        };
        assert!(is_weak(&rec(1, 1, 0, 0)));
        assert!(is_weak(&rec(4, 1, 1, 2)), "RC4");
        assert!(!is_weak(&rec(17, 3, 4, 1)));
        assert!(!is_weak(&rec(0, 0, 0, 0)), "suite 0 has its own rule");
        let o = Observations {
            suites: Some(vec![rec(17, 3, 4, 1), rec(0, 0, 0, 0), rec(2, 1, 1, 0)]),
            suite0_status: Some(0),
            suite0_proof: Some(Suite0Proof {
                user: "admin".into(),
                rakp: Some((0, 0)),
                command_cc: Some(0xD4),
                answer_hex: String::new(),
            }),
            ..Observations::default()
        };
        let found = ids(&o);
        assert_eq!(
            found,
            ["cipher0-offered", "cipher0-open-session", "cipher-weak"]
        );
        assert!(
            !found.contains(&"cipher0-login"),
            "a refused command proves no login"
        );
        for r in RULES {
            assert!(rule_of(r.id).is_some() && !r.fix.is_empty());
        }
    }
}
