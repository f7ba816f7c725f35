//! `ipmigw audit verify|query|keygen`: the auditor's tools. They read trail
//! files; they never write to one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::out::outln;
use super::{CliError, EXIT_DENIED};
use crate::audit::chain;
use crate::audit::query::{self, Filter};
use crate::audit::verify::{self, VerifyError};
use crate::audit::AuditKey;
use crate::policy::glob::CommandPattern;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    verb: AuditVerb,
}

#[derive(Debug, Subcommand)]
enum AuditVerb {
    /// Check MACs, the hash chain and gap-free seq; exit 0 intact, 3 broken.
    Verify(VerifyArgs),
    /// Requests joined with their results, filtered.
    Query(QueryArgs),
    /// Write a new random audit key (hex, mode 0600).
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Audit key file; repeat for trails written across a key rotation.
    #[arg(long = "key-file", required = true)]
    key_files: Vec<PathBuf>,
    /// Checkpoint anchor file (detects truncation by someone holding the key).
    #[arg(long)]
    anchor: Option<PathBuf>,
    /// Console recordings directory (default: AUDIT.consoles beside the
    /// trail, when it exists); each recording the trail names is checked.
    #[arg(long)]
    recordings: Option<PathBuf>,
    /// The trail: its directory, its base name (audit.jsonl, with the
    /// rotated audit.jsonl.NNNNNNNNNNNN beside it), or files; read in chain
    /// order.
    #[arg(required = true, value_name = "TRAIL")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only this BMC.
    #[arg(long)]
    target: Option<String>,
    /// Only commands matching this glob (policy syntax, e.g. chassis.power.*).
    #[arg(long)]
    command: Option<String>,
    /// Only this decision.
    #[arg(long, value_parser = ["allow", "deny"])]
    decision: Option<String>,
    /// Only this request: the gateway's request id, or the client's (the
    /// CLI prints it when an answer was lost).
    #[arg(long)]
    request_id: Option<String>,
    /// Requests at or after (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    since: Option<String>,
    /// Requests before (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    until: Option<String>,
    /// Console sessions instead of requests: who, BMC, start, end, writer
    /// changes, recording file (with --user, --target, --since, --until).
    #[arg(long, conflicts_with_all = ["command", "decision", "request_id"])]
    console: bool,
    /// JSON lines (request with its result) instead of a table.
    #[arg(long)]
    json: bool,
    /// The trail: its directory, its base name (audit.jsonl, with the
    /// rotated audit.jsonl.NNNNNNNNNNNN beside it), or files; read in chain
    /// order.
    #[arg(required = true, value_name = "TRAIL")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the key (must not exist).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: AuditArgs) -> Result<(), CliError> {
    match a.verb {
        AuditVerb::Verify(v) => run_verify(v),
        AuditVerb::Query(q) => run_query(q),
        AuditVerb::Keygen(k) => keygen(k),
    }
}

fn run_verify(a: VerifyArgs) -> Result<(), CliError> {
    let keys = a
        .key_files
        .iter()
        .map(|p| AuditKey::from_file(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    let files = chain::expand(&a.files).map_err(CliError::usage)?;
    match verify::verify(&files, &keys, a.anchor.as_deref()) {
        Ok(r) => {
            let (first, last) = r.seqs.unwrap_or((0, 0));
            let (t0, t1) = r.times.clone().unwrap_or_default();
            outln!(
                "intact: {} records, seq {first}..{last}, {t0} .. {t1}",
                r.records
            );
            let files: Vec<String> = r.files.iter().map(|f| f.display().to_string()).collect();
            outln!("files: {}", files.join(", "));
            outln!("keys: {}", r.key_ids.join(", "));
            if a.anchor.is_some() {
                outln!("anchors: {} checkpoints matched", r.anchors_checked);
            }
            if !r.from_genesis && r.records > 0 {
                outln!("note: the files start at seq {first}, not at the trail's first record; pass the earlier files to check the start");
            }
            if let Some(t) = &r.torn_tail {
                outln!(
                    "torn tail: {}:{} ({} bytes): an interrupted final write (crash), not tampering; the gateway cuts it at its next start",
                    t.file.display(),
                    t.line,
                    t.bytes
                );
            }
            verify_recordings(&r.files, a.recordings.as_deref())
        }
        Err(VerifyError::Broken(b)) => {
            outln!("broken: {b}");
            Err(CliError {
                code: EXIT_DENIED,
                message: format!("audit trail broken at {}:{}", b.file.display(), b.line),
            })
        }
        Err(VerifyError::Io(e)) => Err(CliError::usage(e)),
    }
}

/// Checks the console recordings the (intact) trail pins.
fn verify_recordings(files: &[PathBuf], dir: Option<&std::path::Path>) -> Result<(), CliError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let Some(first) = files.first() else {
                return Ok(());
            };
            let base = first.with_extension("");
            let trail = if base.extension().is_some_and(|e| e == "jsonl") {
                base
            } else {
                first.clone()
            };
            crate::audit::fs::sibling(&trail, "consoles")
        }
    };
    // A trail that pins recordings needs them, whether or not the
    // directory is still there; one that pins none says nothing of them.
    match crate::audit::recordings::verify_recordings(files, &dir).map_err(CliError::usage)? {
        Ok(0) if !dir.is_dir() => Ok(()),
        Ok(n) => {
            outln!("recordings: {n} intact in {}", dir.display());
            Ok(())
        }
        Err(m) => {
            outln!("broken recording: {m}");
            Err(CliError {
                code: EXIT_DENIED,
                message: format!(
                    "console recording {} changed at offset {}",
                    m.file.display(),
                    m.offset
                ),
            })
        }
    }
}

fn run_query(a: QueryArgs) -> Result<(), CliError> {
    let time = |s: &Option<String>, flag: &str| {
        s.as_deref()
            .map(query::parse_time)
            .transpose()
            .map_err(|e| CliError::usage(format!("{flag} {e}")))
    };
    let filter = Filter {
        user: a.user,
        target: a.target,
        command: a
            .command
            .as_deref()
            .map(CommandPattern::parse)
            .transpose()
            .map_err(|e| CliError::usage(format!("--command: {e}")))?,
        decision: a.decision,
        request_id: a.request_id,
        since: time(&a.since, "--since")?,
        until: time(&a.until, "--until")?,
    };
    let files = chain::expand(&a.files).map_err(CliError::usage)?;
    if a.console {
        return query_consoles(&files, &filter, a.json);
    }
    let rows = query::query(&files, &filter).map_err(CliError::usage)?;
    if a.json {
        rows.iter().for_each(|r| outln!("{}", r.to_json()));
    } else {
        super::out::write(&query::table(&rows));
    }
    Ok(())
}

/// `audit query --console`: one line per console session.
fn query_consoles(files: &[PathBuf], filter: &Filter, json: bool) -> Result<(), CliError> {
    let rows = query::console::consoles(files, filter).map_err(CliError::usage)?;
    if json {
        rows.iter().for_each(|r| outln!("{}", r.to_json()));
    } else {
        super::out::write(&query::console::table(&rows));
    }
    Ok(())
}

fn keygen(a: KeygenArgs) -> Result<(), CliError> {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let mut text = hex::encode(key);
    text.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.out)
        .map_err(|e| CliError::usage(format!("{}: {e}", a.out.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::usage(format!("{}: {e}", a.out.display())))?;
    zeroize::Zeroize::zeroize(&mut text);
    let id = AuditKey::from_file(&a.out).map_err(CliError::usage)?;
    outln!("wrote {} (key id {})", a.out.display(), id.id());
    Ok(())
}
