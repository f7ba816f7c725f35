//! Gateway configuration: the TOML file named by `--config` and the policy
//! files it lists, turned into validated types. Every error carries
//! `file:line:col` and what was expected; errors are collected, not just the
//! first, so `check-config` can show them all.
//!
//! Never does: read a secret into memory here (BMC secrets are read by the
//! code that needs them, from the files named), or accept an unknown key in
//! a section it validates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// The file.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found while loading; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<Diag>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A loaded text file, for turning byte offsets into line and column.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path as shown in messages.
    pub name: Arc<str>,
    /// Contents.
    pub text: String,
}

impl Source {
    /// Reads `path`; a missing or unreadable file is a diagnostic at 1:1.
    pub fn read(path: &Path) -> Result<Source, Diag> {
        let name: Arc<str> = path.display().to_string().into();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source { name, text }),
            Err(e) => Err(Diag {
                file: name,
                line: 1,
                col: 1,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// 1-based (line, column) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// A diagnostic at a byte offset.
    pub fn diag(&self, offset: usize, message: impl Into<String>) -> Diag {
        let (line, col) = self.line_col(offset);
        Diag {
            file: self.name.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A diagnostic at a spanned value.
    pub fn at<T>(&self, v: &Spanned<T>, message: impl Into<String>) -> Diag {
        self.diag(v.span().start, message)
    }

    /// Parses the whole file as `T`; a syntax or shape error becomes a
    /// diagnostic at the place the TOML parser names.
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, Diag> {
        toml::from_str(&self.text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            self.diag(offset, e.message().trim().to_string())
        })
    }
}

/// The gateway configuration file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Policy files, relative to the config file's directory.
    #[serde(default)]
    pub policy: Vec<Spanned<String>>,
    /// Listener settings.
    pub listen: Option<crate::gateway::settings::ListenSection>,
    /// TLS settings.
    pub tls: Option<crate::gateway::settings::TlsSection>,
    /// Audit settings.
    pub audit: Option<crate::audit::settings::AuditSection>,
    /// Limits.
    #[serde(default)]
    pub limits: crate::gateway::settings::LimitsSection,
    /// Defaults for every BMC entry.
    #[serde(default)]
    pub bmc_defaults: crate::gateway::settings::BmcDefaults,
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
