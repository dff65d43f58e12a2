//! `raftmq completions` and `raftmq man`: what a shell and `man` need, generated from the
//! same clap definitions as `--help`, so they never disagree with the binary.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::output::emit_all;

/// Options of `raftmq completions`.
#[derive(Debug, Args)]
#[command(after_help = COMPLETIONS_HELP)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How to install completions (shown by `--help`).
const COMPLETIONS_HELP: &str = "\
Install, then open a new shell:
  bash   raftmq completions bash > /etc/bash_completion.d/raftmq
         for one user: raftmq completions bash > ~/.local/share/bash-completion/completions/raftmq
  zsh    raftmq completions zsh > /usr/local/share/zsh/site-functions/_raftmq
         (any directory on $fpath; compinit must run in ~/.zshrc)
  fish   raftmq completions fish > ~/.config/fish/completions/raftmq.fish
Or just for this shell (bash): source <(raftmq completions bash)";

/// Options of `raftmq man`.
#[derive(Debug, Args)]
#[command(after_help = MAN_HELP)]
pub struct ManArgs {
    /// Write raftmq.1 and one raftmq-<subcommand>.1 per subcommand (raftmq-topic-create.1,
    /// ...) into this directory instead of printing raftmq.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How to install man pages (shown by `--help`).
const MAN_HELP: &str = "\
Install, then `man raftmq` or `man raftmq-topic-create`:
  raftmq man --dir /usr/local/share/man/man1 && mandb
  for one user: raftmq man --dir ~/.local/share/man/man1 (man finds ~/.local/share/man
  when ~/.local/bin is on PATH, or set MANPATH)
Read without installing: raftmq man | man -l -";

/// Prints the completion script for `args.shell` to stdout.
pub fn completions(mut cmd: clap::Command, args: &CompletionsArgs) {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "raftmq", &mut script);
    emit_all(&script);
}

/// Writes the page of `cmd` and of each of its visible subcommands, recursively, into `dir`.
fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    let page = clap_mangen::Man::new(cmd);
    let path = dir.join(page.get_filename());
    page.generate_to(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    Ok(())
}

/// Prints the main man page to stdout or, with `--dir`, writes every page into it and
/// prints their paths.
///
/// # Errors
/// The directory cannot be created or a page cannot be written.
pub fn man(cmd: clap::Command, args: &ManArgs) -> anyhow::Result<()> {
    // Built, every subcommand knows its full name (`raftmq-topic-create`) for its page.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = &args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .context("rendering the man page")?;
        emit_all(&page);
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(cmd, dir, &mut written)?;
    written.sort();
    for path in written {
        crate::output::emit(&path.display().to_string());
    }
    Ok(())
}
