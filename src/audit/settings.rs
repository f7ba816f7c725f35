//! The `[audit]` section of the gateway config and how it becomes a
//! [`WriterConfig`].

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{AuditKey, Durability, SyslogTarget, WriterConfig};
use crate::config::{Diag, Source};

/// `[audit]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The active trail file.
    pub path: Spanned<String>,
    /// The MAC key file (mode 0600, owned by the gateway user).
    pub key_file: Spanned<String>,
    /// `always` (default) or `interval:10ms`.
    pub fsync: Option<Spanned<String>>,
    /// `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///dev/log`.
    pub syslog: Option<Spanned<String>>,
    /// Append-only file that receives each checkpoint's (seq, hash).
    pub anchor_file: Option<Spanned<String>>,
    /// Records between checkpoints (default 10000; 0: only at rotation and shutdown).
    pub checkpoint_every: Option<u64>,
    /// Rotate the active file at this size in bytes.
    pub rotate_bytes: Option<Spanned<u64>>,
}

impl AuditSection {
    /// Builds the writer config, reading the key; paths are relative to
    /// `dir` (the config file's directory). Problems go to `diags` with the
    /// position of the offending value.
    pub fn writer_config(
        &self,
        src: &Source,
        dir: &Path,
        diags: &mut Vec<Diag>,
    ) -> Option<WriterConfig> {
        let key = match AuditKey::from_file(&dir.join(self.key_file.get_ref())) {
            Ok(k) => Some(k),
            Err(e) => {
                diags.push(src.at(&self.key_file, e));
                None
            }
        };
        let durability = match &self.fsync {
            None => Some(Durability::Always),
            Some(s) => Durability::parse(s.get_ref())
                .map_err(|e| diags.push(src.at(s, e)))
                .ok(),
        };
        let syslog = match &self.syslog {
            None => Some(None),
            Some(s) => SyslogTarget::parse(s.get_ref())
                .map(Some)
                .map_err(|e| diags.push(src.at(s, e)))
                .ok(),
        };
        if let Some(r) = &self.rotate_bytes {
            if *r.get_ref() < 64 * 1024 {
                diags.push(src.at(r, "rotate_bytes: expected at least 65536"));
            }
        }
        let (key, durability, syslog) = (key?, durability?, syslog?);
        let mut cfg = WriterConfig::new(dir.join(self.path.get_ref()), key);
        cfg.durability = durability;
        cfg.syslog = syslog;
        cfg.anchor_path = self.anchor_file.as_ref().map(|a| dir.join(a.get_ref()));
        cfg.checkpoint_every = self.checkpoint_every.unwrap_or(cfg.checkpoint_every);
        cfg.rotate_bytes = self.rotate_bytes.as_ref().map(|r| *r.get_ref());
        Some(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_reported_where_they_are() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(&key, "ab".repeat(32)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = "path = \"a.jsonl\"\nkey_file = \"k\"\nfsync = \"sometimes\"\nsyslog = \"smtp://x\"\nrotate_bytes = 10\n";
        let src = Source {
            name: "gw.toml".into(),
            text: text.into(),
        };
        let section: AuditSection = src.parse().unwrap();
        let mut diags = Vec::new();
        assert!(section.writer_config(&src, d.path(), &mut diags).is_none());
        let at: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(at, [(3, 9), (4, 10), (5, 16)], "{diags:?}");

        let good = "path = \"a.jsonl\"\nkey_file = \"k\"\nfsync = \"interval:10ms\"\nsyslog = \"udp://127.0.0.1:514\"\n";
        let src = Source {
            name: "gw.toml".into(),
            text: good.into(),
        };
        let section: AuditSection = src.parse().unwrap();
        let mut diags = Vec::new();
        let cfg = section.writer_config(&src, d.path(), &mut diags).unwrap();
        assert!(diags.is_empty());
        assert_eq!(
            cfg.durability,
            Durability::Interval(std::time::Duration::from_millis(10))
        );
        assert_eq!(cfg.path, d.path().join("a.jsonl"));
    }
}
