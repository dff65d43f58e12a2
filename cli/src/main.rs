//! `raftmq`: the one binary of raftmq (broker, NameServer, dev cluster and tooling).

mod admin;
mod bench;
mod certs;
mod config_doc;
mod console;
mod failures;
mod http;
mod logging;
mod output;
mod probe;
mod property;
mod quickstart;
mod servers;
mod shell;
mod tx;
mod users;
mod when;

use clap::{Parser, Subcommand};

/// raftmq: a RocketMQ-style message broker whose broker groups are Raft groups.
#[derive(Debug, Parser)]
#[command(name = "raftmq", version, about, long_about = None, after_help = logging::LOGGING_HELP)]
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
    /// Access key to authenticate with, on clusters with `[auth] enabled = true`.
    #[arg(
        long,
        global = true,
        env = "RAFTMQ_ACCESS_KEY",
        requires = "secret_key"
    )]
    access_key: Option<String>,
    /// Secret of --access-key (prefer the environment variable: flags show in `ps`).
    #[arg(
        long,
        global = true,
        env = "RAFTMQ_SECRET_KEY",
        hide_env_values = true,
        requires = "access_key"
    )]
    secret_key: Option<String>,
    /// Connect with TLS, trusting the CA in this PEM file (clusters with `[tls]`).
    #[arg(long, global = true, env = "RAFTMQ_TLS_CA", value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) to present, for brokers with `require_client_cert`.
    #[arg(
        long,
        global = true,
        env = "RAFTMQ_TLS_CERT",
        value_name = "FILE",
        requires_all = ["tls_key", "tls_ca"]
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(
        long,
        global = true,
        env = "RAFTMQ_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a NameServer.
    Namesrv(servers::NamesrvArgs),
    /// Run a broker node from a TOML config file.
    Broker(servers::BrokerArgs),
    /// Run a NameServer and a 3-node broker group in this process, for a first try.
    Dev(servers::DevArgs),
    /// Serve the web console for one or more clusters.
    Console(console::ConsoleArgs),
    /// Create, list, inspect and delete topics.
    #[command(subcommand)]
    Topic(admin::TopicCmd),
    /// Broker groups and their Raft nodes.
    #[command(subcommand)]
    Cluster(admin::ClusterCmd),
    /// Consumer groups: progress and offset resets.
    #[command(subcommand)]
    Group(admin::GroupCmd),
    /// Look messages up by id or key.
    #[command(subcommand)]
    Msg(admin::MsgCmd),
    /// Transactions waiting for their producer's decision (admin only).
    #[command(subcommand)]
    Tx(tx::TxCmd),
    /// Users who may connect when authentication is on (admin only).
    #[command(subcommand)]
    User(users::UserCmd),
    /// Users' permissions on topics and consumer groups (admin only).
    #[command(subcommand)]
    Acl(users::AclCmd),
    /// Send messages (quickstart).
    Produce(quickstart::ProduceArgs),
    /// Consume and print messages (quickstart).
    Consume(quickstart::ConsumeArgs),
    /// Measure throughput and latency.
    Bench(bench::BenchArgs),
    /// Certificates for trying TLS.
    #[command(subcommand)]
    Certs(certs::CertsCmd),
    /// GET a health URL (http://HOST:PORT/readyz or /healthz); exit 0 on a 2xx answer:
    /// for container health checks and exec probes.
    Probe(probe::ProbeArgs),
    /// Print a shell completion script (bash, zsh, fish, ...) to stdout.
    Completions(shell::CompletionsArgs),
    /// Print the man page, or write one per subcommand into a directory.
    Man(shell::ManArgs),
}

/// The global flags a server subcommand (or `completions`, `man`) does not use: refused
/// rather than ignored.
fn refuse_unused_flags(matches: &clap::ArgMatches) -> Result<(), String> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(());
    };
    let why = match name {
        "broker" => "a broker's NameServers are set in its config file (namesrv = [...])",
        "dev" => "raftmq dev runs its own NameServer on --ip, port 9876",
        "namesrv" => "a NameServer listens on --listen and knows no other NameServer",
        "completions" | "man" => "it prints files for a shell or man and talks to no server",
        "probe" => "it GETs the URL it is given, with no credentials",
        "certs" => "it writes files and talks to no server",
        _ => return Ok(()),
    };
    for (id, flag) in [
        ("namesrv", "-n/--namesrv"),
        ("json", "--json"),
        ("access_key", "--access-key"),
        ("secret_key", "--secret-key"),
        ("tls_ca", "--tls-ca"),
        ("tls_cert", "--tls-cert"),
        ("tls_key", "--tls-key"),
    ] {
        let given = |m: &clap::ArgMatches| {
            m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        };
        if given(matches) || given(sub) {
            return Err(format!("{flag} does not apply to `raftmq {name}`: {why}"));
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    if let Err(e) = refuse_unused_flags(&matches) {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where the tools connect, and as whom.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// NameServer addresses.
    pub namesrv: Vec<String>,
    /// Credentials every broker connection authenticates with.
    pub credentials: Option<raftmq_client::Credentials>,
    /// TLS trust (and client certificate), when the cluster speaks TLS.
    pub tls: Option<raftmq_client::TlsTrust>,
}

impl Endpoint {
    /// An admin client for this endpoint.
    pub fn admin(&self) -> anyhow::Result<raftmq_client::Admin> {
        Ok(raftmq_client::Admin::with_config(
            raftmq_client::ClientConfig {
                namesrv: self.namesrv.clone(),
                credentials: self.credentials.clone(),
                tls: self.tls.clone(),
                ..Default::default()
            },
        )?)
    }
}

/// Runs `fut` as a task on the runtime's workers and waits for it. Polled by `block_on`
/// itself, it would live on the main thread, and every wake-up from a worker (a Raft
/// metrics change, an RPC answer: several per message) would be a cross-thread wake.
fn on_worker<F>(runtime: &tokio::runtime::Runtime, fut: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    runtime.block_on(runtime.spawn(fut))?
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use clap::CommandFactory;
    match &cli.command {
        Command::Completions(args) => {
            shell::completions(Cli::command(), args);
            return Ok(());
        }
        Command::Man(args) => return shell::man(Cli::command(), args),
        Command::Certs(c) => return certs::run(output::Out { json: cli.json }, c),
        _ => {}
    }
    let ep = Endpoint {
        namesrv: cli.namesrv,
        credentials: cli
            .access_key
            .zip(cli.secret_key)
            .map(|(access_key, secret_key)| raftmq_client::Credentials {
                access_key,
                secret_key,
            }),
        tls: cli.tls_ca.map(|ca| raftmq_client::TlsTrust {
            ca,
            identity: cli.tls_cert.zip(cli.tls_key),
        }),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Namesrv(args) => {
            logging::init(logging::NAMESRV_LOG, args.log.log_format);
            on_worker(&runtime, servers::namesrv(args))
        }
        Command::Broker(args) => {
            logging::init(logging::BROKER_LOG, args.log.log_format);
            on_worker(&runtime, servers::broker(args))
        }
        Command::Dev(args) => {
            logging::init(logging::DEV_LOG, args.log.log_format);
            on_worker(&runtime, servers::dev(args))
        }
        Command::Probe(args) => on_worker(&runtime, probe::run(args)),
        Command::Console(args) => {
            logging::init(logging::NAMESRV_LOG, args.log.log_format);
            on_worker(&runtime, console::run(ep, args))
        }
        command => {
            logging::init(logging::TOOL_LOG, logging::LogFormat::Text);
            let out = output::Out { json: cli.json };
            on_worker(&runtime, async move {
                let admin = || ep.admin();
                match command {
                    Command::Topic(c) => admin::topic(&admin()?, &out, c).await,
                    Command::Cluster(c) => admin::cluster(&admin()?, &out, c).await,
                    Command::Group(c) => admin::group(&admin()?, &out, c).await,
                    Command::Msg(c) => admin::msg(&admin()?, &out, c).await,
                    Command::Tx(c) => tx::tx(&admin()?, &out, c).await,
                    Command::User(c) => users::user(&admin()?, &out, c).await,
                    Command::Acl(c) => users::acl(&admin()?, &out, c).await,
                    Command::Produce(a) => quickstart::produce(&ep, &out, a).await,
                    Command::Consume(a) => quickstart::consume(&ep, &out, a).await,
                    Command::Bench(a) => bench::run(&ep, &out, a).await,
                    Command::Namesrv(_)
                    | Command::Broker(_)
                    | Command::Dev(_)
                    | Command::Console(_)
                    | Command::Certs(_)
                    | Command::Probe(_)
                    | Command::Completions(_)
                    | Command::Man(_) => Ok(()),
                }
            })
        }
    }
}
