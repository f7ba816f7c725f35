//! The gateway's config file (`GatewayFile`, loaded as [`GatewayConfig`]),
//! its own sections (`[listen]`, `[tls]`, `[limits]`,
//! `[bmc_defaults]`) and the BMC entries turned into connection specs with
//! their secrets read. Errors carry file:line:col; secrets never appear in
//! them.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, Diag, Source};
use crate::ipmi::crypto::CipherSuite;
use crate::ipmi::session::console::ConsoleConfig;
use crate::ipmi::session::Privilege;
use crate::secret::SecretBytes;

/// `[listen]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// `IP:PORT` to listen on.
    pub address: Spanned<String>,
    /// Load balancers whose PROXY protocol v2 header is trusted (CIDRs).
    #[serde(default)]
    pub proxy_protocol_from: Vec<Spanned<String>>,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Server certificate chain (PEM).
    pub cert: Spanned<String>,
    /// Server private key (PEM, private file).
    pub key: Spanned<String>,
    /// CA(s) that sign client certificates (PEM).
    pub client_ca: Spanned<String>,
    /// CRLs (PEM or DER); an expired CRL is an error.
    #[serde(default)]
    pub crl: Vec<Spanned<String>>,
    /// Which certificate fields name the caller, in order of precedence:
    /// `email`, `uri`, `dns`, `cn`. The first kind the certificate carries
    /// decides; two different values of that kind are refused as
    /// ambiguous. Default `["email", "uri"]`: a subject CN is trusted only
    /// when listed.
    #[serde(default)]
    pub identity: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[limits]`; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Open client connections at most.
    pub max_connections: usize,
    /// TLS handshake deadline, milliseconds.
    pub handshake_timeout_ms: u64,
    /// TLS handshakes per source address (`N/second|minute|hour`).
    pub handshake_rate: String,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Request header bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Request body bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Requests waiting per BMC behind the one in flight (503 `bmc_busy` beyond).
    pub bmc_queue: usize,
    /// Time SIGTERM gives in-flight requests, milliseconds.
    pub drain_ms: u64,
    /// Longest a request waits for its BMC, milliseconds: past it the caller
    /// is answered 504, and what has not been sent is withdrawn.
    pub request_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed,
    /// milliseconds (HTTP/2 pings check that a busy one is alive).
    pub idle_timeout_ms: u64,
    /// Open connections from one source address at most (an IPv6 /64 is
    /// one source).
    pub max_connections_per_source: usize,
    /// Unfinished TLS handshakes in all; a new one evicts the oldest.
    pub max_handshakes: usize,
    /// Unfinished TLS handshakes from one source at most.
    pub max_handshakes_per_source: usize,
    /// Open connections of one policy user at most.
    pub max_connections_per_identity: usize,
    /// Refused requests recorded one by one per identity (`N/second|minute|hour`);
    /// past it they are answered 429 and counted in `denial_summary` records.
    pub refusal_rate: String,
    /// The same per source address.
    pub refusal_rate_per_source: String,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_connections: 4096,
            handshake_timeout_ms: 10_000,
            handshake_rate: "50/second".into(),
            max_concurrent_streams: 128,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            bmc_queue: 64,
            drain_ms: 10_000,
            request_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections_per_source: 256,
            max_handshakes: 512,
            max_handshakes_per_source: 16,
            max_connections_per_identity: 64,
            refusal_rate: "60/minute".into(),
            refusal_rate_per_source: "120/minute".into(),
        }
    }
}

/// `[bmc_defaults]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BmcDefaults {
    /// Suites to propose, best first.
    pub cipher_suites: Vec<u8>,
    /// `user`, `operator` or `administrator`.
    pub privilege: String,
    /// Per-try timeout, milliseconds.
    pub timeout_ms: u64,
    /// Retries of read-only commands.
    pub retries: u32,
}

impl Default for BmcDefaults {
    fn default() -> Self {
        BmcDefaults {
            cipher_suites: vec![17, 3],
            privilege: "operator".into(),
            timeout_ms: 1000,
            retries: 3,
        }
    }
}

/// How the gateway reaches one BMC (holds its secrets; Debug redacts them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcSpec {
    /// Name in policy and URLs.
    pub name: String,
    /// UDP address.
    pub addr: SocketAddr,
    /// User name.
    pub username: Vec<u8>,
    /// Password.
    pub password: SecretBytes,
    /// Kg.
    pub kg: Option<SecretBytes>,
    /// Session privilege.
    pub privilege: Privilege,
    /// Suites, best first.
    pub suites: Vec<CipherSuite>,
    /// Per-try timeout.
    pub timeout: Duration,
    /// Retries.
    pub retries: u32,
}

impl BmcSpec {
    /// The console side's configuration.
    pub fn console(&self) -> ConsoleConfig {
        let mut c = ConsoleConfig::new(&self.username, self.password.clone(), self.privilege);
        c.kg = self.kg.clone();
        c.cipher_suites = self.suites.clone();
        c
    }
}

fn privilege(s: &str) -> Option<Privilege> {
    match s {
        "user" => Some(Privilege::User),
        "operator" => Some(Privilege::Operator),
        "administrator" => Some(Privilege::Administrator),
        _ => None,
    }
}

fn suites(list: &[u8]) -> Result<Vec<CipherSuite>, String> {
    if list.is_empty() {
        return Err("cipher_suites: empty; expected e.g. [17, 3]".into());
    }
    list.iter()
        .map(|&id| match CipherSuite::try_from(id) {
            Ok(s @ (CipherSuite::Suite17 | CipherSuite::Suite3)) => Ok(s),
            _ => Err(format!(
                "cipher_suites: {id} is not allowed; the gateway speaks 17 and 3 only"
            )),
        })
        .collect()
}

/// Reads every `[[bmc]]` entry's secrets and resolves its address.
pub fn bmc_specs(
    src: &Source,
    dir: &Path,
    defaults: &BmcDefaults,
    entries: &[BmcEntry],
    diags: &mut Vec<Diag>,
) -> Vec<BmcSpec> {
    let default_priv = privilege(&defaults.privilege);
    if default_priv.is_none() {
        diags.push(src.diag(
            0,
            format!(
                "[bmc_defaults] privilege {:?}: expected user, operator or administrator",
                defaults.privilege
            ),
        ));
    }
    let default_suites = suites(&defaults.cipher_suites)
        .map_err(|e| diags.push(src.diag(0, format!("[bmc_defaults] {e}"))))
        .ok();
    let defaults_ok = default_priv.is_some() && default_suites.is_some();
    let common = BmcCommon {
        privilege: default_priv.unwrap_or(Privilege::Administrator),
        suites: default_suites.unwrap_or_default(),
        timeout: Duration::from_millis(defaults.timeout_ms.max(1)),
        retries: defaults.retries,
    };
    // With bad defaults, the entries are still checked, so that one run
    // reports every problem, but none is used.
    let specs: Vec<BmcSpec> = entries
        .iter()
        .filter_map(|e| match bmc_spec(dir, &common, e) {
            Ok(spec) => spec,
            Err(d) => {
                diags.push(d.at(src));
                None
            }
        })
        .collect();
    if defaults_ok {
        specs
    } else {
        Vec::new()
    }
}

/// What every BMC entry takes from `[bmc_defaults]`.
struct BmcCommon {
    privilege: Privilege,
    suites: Vec<CipherSuite>,
    timeout: Duration,
    retries: u32,
}

/// A problem with one `[[bmc]]` entry, and which of its keys to point at.
struct EntryProblem<'a> {
    at: &'a Spanned<String>,
    text: String,
}

impl EntryProblem<'_> {
    fn at(self, src: &Source) -> Diag {
        src.at(self.at, self.text)
    }
}

/// One `[[bmc]]` entry: `Ok(None)` when the config loader reports its
/// problem already (no password source).
fn bmc_spec<'a>(
    dir: &Path,
    common: &BmcCommon,
    e: &'a BmcEntry,
) -> Result<Option<BmcSpec>, EntryProblem<'a>> {
    let name = e.name.get_ref().clone();
    let problem = |text: String| EntryProblem {
        at: &e.name,
        text: format!("BMC {name:?}: {text}"),
    };
    let Some(addr) = parse_addr(e.address.get_ref()) else {
        return Err(EntryProblem {
            at: &e.address,
            text: format!(
                "BMC {name:?}: address {:?}: expected IP or IP:PORT (port 623 by default)",
                e.address.get_ref()
            ),
        });
    };
    let password = match bmc_password(dir, e) {
        None => return Ok(None),
        Some(Ok(p)) if p.len() <= 20 => p,
        Some(Ok(p)) => {
            let n = p.len();
            return Err(problem(format!(
                "password is {n} bytes; IPMI allows at most 20"
            )));
        }
        Some(Err(m)) => return Err(problem(m)),
    };
    let kg = match &e.kg_file {
        None => None,
        Some(f) => Some(crate::bmc::credentials::read_kg_file(&dir.join(f)).map_err(problem)?),
    };
    let suites = match &e.cipher_suites {
        Some(list) => suites(list).map_err(problem)?,
        None => common.suites.clone(),
    };
    Ok(Some(BmcSpec {
        name,
        addr,
        username: e
            .username
            .clone()
            .unwrap_or_else(|| "admin".into())
            .into_bytes(),
        password,
        kg,
        privilege: common.privilege,
        suites,
        timeout: common.timeout,
        retries: common.retries,
    }))
}

/// The entry's password from its file or environment variable; `None`
/// when it names neither.
fn bmc_password(dir: &Path, e: &BmcEntry) -> Option<Result<SecretBytes, String>> {
    if let Some(f) = &e.password_file {
        Some(crate::bmc::credentials::read_password_file(&dir.join(f)))
    } else {
        let var = e.password_env.as_ref()?;
        Some(match std::env::var_os(var) {
            Some(v) if !v.is_empty() => Ok(SecretBytes::new(v.into_encoded_bytes())),
            _ => Err(format!("environment variable {var} is not set or empty")),
        })
    }
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 623)))
}

/// The gateway configuration file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Policy files, relative to the config file's directory.
    #[serde(default)]
    pub policy: Vec<Spanned<String>>,
    /// Listener settings.
    pub listen: Option<ListenSection>,
    /// TLS settings.
    pub tls: Option<TlsSection>,
    /// Audit settings.
    pub audit: Option<crate::audit::settings::AuditSection>,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Console limits and recording.
    #[serde(default)]
    pub console: super::console::ConsoleSection,
    /// Defaults for every BMC entry.
    #[serde(default)]
    pub bmc_defaults: BmcDefaults,
    /// The BMCs.
    #[serde(default)]
    pub bmc: Vec<BmcEntry>,
}

/// One `[[bmc]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcEntry {
    /// Name used in policy and URLs.
    pub name: Spanned<String>,
    /// `HOST[:PORT]`.
    pub address: Spanned<String>,
    /// BMC user name.
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding Kg.
    pub kg_file: Option<String>,
    /// Groups the BMC belongs to.
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    /// Cipher suites for this BMC.
    pub cipher_suites: Option<Vec<u8>>,
}

impl GatewayConfig {
    /// Each BMC's name and groups, for the policy.
    pub fn bmc_names(&self) -> Vec<(String, Vec<String>)> {
        self.file
            .bmc
            .iter()
            .map(|b| {
                (
                    b.name.get_ref().clone(),
                    b.groups.iter().map(|g| g.get_ref().clone()).collect(),
                )
            })
            .collect()
    }
}

/// A loaded gateway configuration: the parsed file and where it came from.
#[derive(Debug)]
pub struct GatewayConfig {
    /// The file.
    pub source: Source,
    /// Its contents.
    pub file: GatewayFile,
    /// Policy file paths, resolved against the config's directory.
    pub policy_paths: Vec<PathBuf>,
}

impl GatewayConfig {
    /// Reads and checks the config file (not yet the policy files).
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let source = Source::read(path).map_err(|d| ConfigError(vec![d]))?;
        let file: GatewayFile = source.parse().map_err(|d| ConfigError(vec![d]))?;
        let mut diags = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for b in &file.bmc {
            let name = b.name.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                diags.push(source.at(
                    &b.name,
                    format!("BMC name {name:?}: expected letters, digits, '-', '_' or '.'"),
                ));
            }
            if let Some(first) = seen.insert(name.clone(), b.name.span().start) {
                let (line, _) = source.line_col(first);
                diags.push(source.at(
                    &b.name,
                    format!("BMC {name:?} is defined twice (first at line {line})"),
                ));
            }
            if b.password_file.is_some() == b.password_env.is_some() {
                diags.push(source.at(
                    &b.name,
                    format!("BMC {name:?}: expected exactly one of password_file or password_env"),
                ));
            }
            if b.address.get_ref().trim().is_empty() {
                diags.push(source.at(&b.address, format!("BMC {name:?}: empty address")));
            }
        }
        if file.policy.is_empty() {
            diags.push(source.diag(
                0,
                "no policy files: expected policy = [\"policies/site.toml\", ...]",
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let policy_paths = file.policy.iter().map(|p| dir.join(p.get_ref())).collect();
        if diags.is_empty() {
            Ok(GatewayConfig {
                source,
                file,
                policy_paths,
            })
        } else {
            Err(ConfigError(diags))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "gw.toml",
            "policy = [\"p.toml\"]\n\n[[bmc]]\nname = \"node01\"\naddres = \"10.0.0.1\"\n",
        );
        let e = GatewayConfig::load(&p).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!((e.0[0].line, e.0[0].col), (5, 1), "{e}");
        assert!(e.0[0].message.contains("unknown field `addres`"), "{e}");
        assert!(e.to_string().starts_with(&format!("{}:5:1:", p.display())));
    }

    #[test]
    fn duplicate_bmcs_and_password_sources_are_reported_together() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "gw.toml",
            "policy = [\"p.toml\"]\n[[bmc]]\nname = \"n1\"\naddress = \"a\"\npassword_file = \"f\"\n[[bmc]]\nname = \"n1\"\naddress = \"b\"\n",
        );
        let e = GatewayConfig::load(&p).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(":7:8: BMC \"n1\" is defined twice (first at line 3)"),
            "{text}"
        );
        assert!(
            text.contains("expected exactly one of password_file or password_env"),
            "{text}"
        );
    }

    #[test]
    fn policy_paths_are_relative_to_the_config() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "gw.toml", "policy = [\"policies/a.toml\"]\n");
        let c = GatewayConfig::load(&p).unwrap();
        assert_eq!(c.policy_paths, [d.path().join("policies/a.toml")]);
        let missing = GatewayConfig::load(&d.path().join("nope.toml")).unwrap_err();
        assert!(missing.to_string().contains("cannot read"));
    }
}
