//! `raftmq namesrv` and `raftmq broker`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use raftmq_broker::BrokerConfig;
use raftmq_namesrv::NamesrvConfig;
use raftmq_proto::transport::{bind, shutdown_signal};

/// Options of `raftmq namesrv`.
#[derive(Debug, clap::Args)]
pub struct NamesrvArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub listen: String,
    /// Forget a broker node silent for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub expiry_secs: u64,
}

/// Options of `raftmq broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// The broker's TOML config file (see deploy/local/ for examples).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Print the effective configuration (defaults filled in) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Runs a NameServer until ctrl-c or SIGTERM.
pub async fn namesrv(args: NamesrvArgs) -> anyhow::Result<()> {
    let listener = bind(&args.listen).await?;
    let config = NamesrvConfig {
        expiry: Duration::from_secs(args.expiry_secs),
        ..NamesrvConfig::default()
    };
    raftmq_namesrv::run(config, listener, shutdown_signal()).await;
    Ok(())
}

/// Runs a broker node until ctrl-c or SIGTERM.
pub async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let config = BrokerConfig::load(&args.config)?;
    if args.print_config {
        print!(
            "{}",
            toml::to_string_pretty(&config).context("rendering the config")?
        );
        return Ok(());
    }
    let client = bind(&config.listen).await?;
    let raft = bind(&config.raft_listen).await?;
    raftmq_broker::run(config, client, raft, shutdown_signal()).await?;
    Ok(())
}
