//! `raftmq`: the one binary of raftmq (broker, NameServer, dev cluster and tooling).

use clap::Parser;

/// raftmq: a RocketMQ-style message broker whose broker groups are Raft groups.
///
/// Subcommands arrive with the broker-group, client and CLI issues.
#[derive(Debug, Parser)]
#[command(name = "raftmq", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
