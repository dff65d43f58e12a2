//! `raftmq`: the one binary of raftmq (broker, NameServer, dev cluster and tooling).

mod servers;

use clap::{Parser, Subcommand};

/// raftmq: a RocketMQ-style message broker whose broker groups are Raft groups.
#[derive(Debug, Parser)]
#[command(name = "raftmq", version, about, long_about = None)]
struct Cli {
    /// NameServer addresses, comma-separated.
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "RAFTMQ_NAMESRV",
        default_value = "127.0.0.1:9876",
        value_delimiter = ','
    )]
    namesrv: Vec<String>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a NameServer.
    Namesrv(servers::NamesrvArgs),
    /// Run a broker node from a TOML config file.
    Broker(servers::BrokerArgs),
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Namesrv(args) => {
            init_tracing("info,tarpc=warn");
            runtime.block_on(servers::namesrv(args))
        }
        Command::Broker(args) => {
            init_tracing("info,tarpc=warn,openraft=warn");
            runtime.block_on(servers::broker(args))
        }
    }
}
