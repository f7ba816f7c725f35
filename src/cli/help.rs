//! `ipmigw completions SHELL` and `ipmigw man [VERB...]`: shell completion
//! scripts and roff man pages, generated from the same clap definitions
//! that parse the command line, so that they cannot drift from it.
//! Packagers write them to files; nothing here reads or writes a file.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, CliError};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell, e.g. `ipmigw completions bash > /usr/share/bash-completion/completions/ipmigw`.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A verb (and sub-verb) for its own page, e.g. `audit verify`
    /// (ipmigw-audit-verify(1)); none for ipmigw(1).
    #[arg(value_name = "VERB")]
    verb: Vec<String>,
}

pub fn completions(a: CompletionsArgs) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "ipmigw", &mut script);
    super::out::write(&String::from_utf8_lossy(&script));
    Ok(())
}

pub fn man(a: ManArgs) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    // Gives every subcommand its page name (ipmigw-audit-verify).
    cmd.build();
    let mut page = &cmd;
    for (i, word) in a.verb.iter().enumerate() {
        page = page
            .get_subcommands()
            .find(|s| s.get_name() == word && !s.is_hide_set())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "no verb {:?}: `ipmigw --help` lists them",
                    a.verb[..=i].join(" ")
                ))
            })?;
    }
    let mut roff = Vec::new();
    clap_mangen::Man::new(page.clone())
        .source(format!("ipmigw {}", env!("CARGO_PKG_VERSION")))
        .manual("ipmigw")
        .render(&mut roff)
        .map_err(|e| CliError::usage(format!("man page: {e}")))?;
    super::out::write(&with_exit_status(&String::from_utf8_lossy(&roff)));
    Ok(())
}

/// The exit codes every verb shares (design.md), as a man page section.
const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Usage or configuration error; the message names the file, line and what was expected.
.TP
\fB2\fR
The gateway could not be reached, or refused the connection (certificate not trusted, revoked or mapped to no user).
.TP
\fB3\fR
Denied by policy or by a rate limit. \fBaudit verify\fR: the trail or a recording was changed, removed or reordered.
.TP
\fB4\fR
The BMC failed: unreachable, refused the login, or answered with an error.
"#;

/// Puts EXIT STATUS where man(7) orders it: before VERSION or AUTHORS, or
/// at the end.
fn with_exit_status(page: &str) -> String {
    let at = [".SH VERSION", ".SH AUTHORS"]
        .iter()
        .filter_map(|h| page.find(&format!("\n{h}")).map(|i| i + 1))
        .min()
        .unwrap_or(page.len());
    let mut out = String::with_capacity(page.len() + EXIT_STATUS.len() + 1);
    out.push_str(&page[..at]);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(EXIT_STATUS);
    out.push_str(&page[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clap definitions are consistent (no duplicate or conflicting
    /// arguments anywhere in the tree): what every generator walks.
    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn man_pages_say_what_each_exit_code_means_before_the_version() {
        let page = ".TH ipmigw 1\n.SH NAME\nipmigw\n.SH VERSION\nv1\n";
        let out = with_exit_status(page);
        let exit = out.find(".SH \"EXIT STATUS\"").expect("section present");
        assert!(exit > out.find(".SH NAME").unwrap());
        assert!(exit < out.find(".SH VERSION").unwrap());
        assert!(out.contains("\\fB3\\fR\nDenied by policy"));
        // A page with neither section gets it at the end.
        assert!(with_exit_status(".TH x 1\n.SH NAME\nx").ends_with("answered with an error.\n"));
    }
}
