//! The crate's layers point one way: a module may use only the modules
//! below it. This test reads every source file of each top-level module,
//! collects the `crate::NAME` paths it mentions (in `use` lines and in
//! code), and fails naming the file and line of any path to a module not
//! in that module's allowed list. Adding a layer or an edge means
//! changing `ALLOWED` here, in review, on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("secret", &[]),
    ("config", &[]),
    ("pki", &[]),
    // test_clock: the unit tests' one clock read, a test-only leaf.
    ("test_clock", &[]),
    ("ipmi", &["secret", "test_clock"]),
    ("policy", &["config", "ipmi"]),
    ("audit", &["config", "ipmi", "policy", "secret"]),
    ("bmc", &["ipmi", "secret"]),
    ("ops", &["bmc", "ipmi"]),
    ("sim", &["ipmi", "secret"]),
    ("metrics", &["ipmi"]),
    ("alerts", &["secret"]),
    ("scan", &["audit", "bmc", "ipmi", "secret"]),
    (
        "gateway",
        &[
            "audit", "bmc", "config", "ipmi", "metrics", "ops", "pki", "policy", "secret",
        ],
    ),
    (
        "cli",
        &[
            "audit", "bmc", "config", "gateway", "ipmi", "ops", "pki", "policy", "scan", "secret",
            "sim",
        ],
    ),
];

fn sources(root: &Path) -> Vec<PathBuf> {
    if root.is_file() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module names after every `crate::` in `line`, including each
/// member of a grouped `use crate::{a, b::c}`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = &rest[..at];
        rest = &rest[at + "crate::".len()..];
        // `$crate::` in macros and `ipmigw_crate::` style names are not ours.
        if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for member in group[..end].split(',') {
                let head = member.trim().split("::").next().unwrap_or("").trim();
                if !head.is_empty() {
                    names.push(head.to_string());
                }
            }
            continue;
        }
        let head: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        names.push(head);
    }
    names
}

#[test]
fn lower_layers_never_use_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: Vec<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
    let mut violations = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (module, allowed) in ALLOWED {
        let dir = src.join(module);
        let root = if dir.is_dir() {
            dir
        } else {
            src.join(format!("{module}.rs"))
        };
        assert!(root.exists(), "module {module} has no source at {root:?}");
        for file in sources(&root) {
            *seen.entry(module).or_default() += 1;
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for used in crate_paths(code) {
                    let is_module = modules.contains(&used.as_str());
                    if is_module && used != *module && !allowed.contains(&used.as_str()) {
                        violations.push(format!(
                            "{}:{}: `{module}` uses `crate::{used}` (allowed: {allowed:?})",
                            file.strip_prefix(&src).unwrap().display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
    // Every top-level module of the crate is in the table, so that a new
    // one cannot escape the check.
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if ["lib", "main"].contains(&name.as_str()) {
            continue;
        }
        assert!(
            modules.contains(&name.as_str()),
            "src/{name} is not in the layering table"
        );
    }
}

#[test]
fn the_path_reader_sees_grouped_and_plain_uses() {
    assert_eq!(crate_paths("use crate::gateway::api;"), vec!["gateway"]);
    assert_eq!(
        crate_paths("use crate::{ipmi::wire, secret::Secret};"),
        vec!["ipmi", "secret"]
    );
    assert_eq!(
        crate_paths("let x = crate::cli::say(); $crate::ops::x"),
        vec!["cli"]
    );
    assert!(crate_paths("use super::x;").is_empty());
}
