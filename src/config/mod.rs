//! Configuration sources and their diagnostics: a loaded TOML file that
//! turns byte offsets into `file:line:col`, parses into any type with
//! errors placed where the parser saw them, and the collected problems
//! (`check-config` shows them all, not just the first). Each subsystem owns
//! the shape of its own settings (the gateway's file is
//! `gateway::settings::GatewayFile`); this module knows none of them.
//!
//! A leaf: it depends on no other module of the crate. Never reads a secret.

use std::path::Path;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let src = Source {
            name: "x.toml".into(),
            text: "a = 1\nbb = 2\n".into(),
        };
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(8), (2, 3));
        assert_eq!(src.diag(6, "m").to_string(), "x.toml:2:1: m");
        let e: Result<std::collections::HashMap<String, i64>, _> = Source {
            name: "y.toml".into(),
            text: "a = = 1".into(),
        }
        .parse();
        assert!(e.unwrap_err().to_string().starts_with("y.toml:1:"));
    }
}
