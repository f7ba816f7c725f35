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
    super::out::write(&String::from_utf8_lossy(&roff));
    Ok(())
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
}
