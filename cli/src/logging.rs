//! What servers log, and how: `--log-format text|json` and `RUST_LOG`.

use clap::{Args, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: time, level, target, message and fields on one line.
    #[default]
    Text,
    /// For log collectors: one JSON object per line (`timestamp`, `level`, `target`,
    /// `message` and the event's fields as keys).
    Json,
}

/// The logging options of the server subcommands (`namesrv`, `broker`, `dev`).
#[derive(Debug, Clone, Copy, Args)]
pub struct LogArgs {
    /// How log lines on stderr are written: `text`, or `json` (one JSON object per line, for
    /// log collectors). RUST_LOG picks what is logged.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How to change what servers log (shown by `--help`).
pub const LOGGING_HELP: &str =
    "Logging: servers log to stderr, one line per state change that matters (role \
changes, peers lost and back); --log-format json writes one JSON object per line instead. \
RUST_LOG overrides the default filter with tracing's syntax, \
e.g. RUST_LOG=debug, or RUST_LOG=info,raftmq_broker=debug,openraft=info. Defaults: broker \
`info,tarpc=error,openraft=error`; namesrv `info,tarpc=error`; dev \
`warn,raftmq_broker::roles=info,raftmq_broker::node=info,...`; other commands \
`error,tarpc=off` (their errors are reported as they fail).";

/// The default filter of `raftmq broker`: openraft's own warnings are per RPC (about ten a
/// second while a peer is down) and tarpc warns at every client disconnect; the broker says
/// what matters itself (`roles`, `peer_health`).
pub const BROKER_LOG: &str = "info,tarpc=error,openraft=error";

/// The default filter of `raftmq namesrv`.
pub const NAMESRV_LOG: &str = "info,tarpc=error";

/// The default filter of `raftmq dev`: only what an operator trying it out needs.
pub const DEV_LOG: &str =
    "warn,tarpc=error,openraft=error,raftmq_broker::node=info,raftmq_broker::roles=info";

/// The default filter of the tools (`produce`, `topic`, ...): a failed call is reported by
/// the command itself, so tarpc's own error line about it would say it twice.
pub const TOOL_LOG: &str = "error,tarpc=off";

/// Logs to stderr with `RUST_LOG`, or else `default`, as the filter.
pub fn init(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
