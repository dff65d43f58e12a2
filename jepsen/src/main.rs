//! `raftmq-jepsen`: a Jepsen-style chaos harness for raftmq. See `jepsen/README.md`.
//!
//! # Layout
//! - `cluster`: the `raftmq` processes (in network namespaces, or on loopback), one or
//!   more broker groups and NameServers.
//! - `net`: namespaces, the bridge and `iptables` rules.
//! - `proxy`: the latency / cut proxy in front of Raft ports.
//! - `nemesis`: the faults and their schedule.
//! - `workload`: producers and consumers that record every operation.
//! - `history`: the recorded operations (JSON lines).
//! - `checker`: lost, unexpected, duplicated, reordered, unavailability, latencies.
//! - `placement`: where grow-online's sends and deliveries landed, per broker group.
//! - `report`: `results.json`, SVG plots, the suite's Markdown table.

mod checker;
mod cluster;
mod history;
mod nemesis;
mod net;
mod placement;
mod proxy;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::checker::Analysis;
use crate::cluster::Cluster;
use crate::history::Recorder;
use crate::workload::Workload;

/// raftmq-jepsen: real broker processes, real faults, a checker that proves nothing
/// acknowledged was lost.
#[derive(Debug, Parser)]
#[command(name = "raftmq-jepsen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorkloadName {
    /// Unordered sends to 8 queues; a concurrent consumer group.
    Queue,
    /// Sends by sharding key; an orderly consumer group; per-key order is checked.
    Ordered,
    /// Transactional sends that commit, roll back, or answer unknown and settle on the
    /// check-back, at random; a committed message never delivered is lost, a rolled-back
    /// one delivered is unexpected.
    Transaction,
}

#[derive(Debug, Args, Clone)]
struct RunOpts {
    /// Workload.
    #[arg(long, value_enum, default_value = "queue")]
    workload: WorkloadName,
    /// Seconds of faults and load (the drain comes after).
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Target sends per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Broker nodes per group (majorities-ring and bridge always use 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Broker groups (grow-online always uses 2). With more than one group or NameServer,
    /// every NameServer runs in a network namespace of its own too: each process is its
    /// own host.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4))]
    groups: u64,
    /// NameServers (grow-online always uses 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4))]
    namesrvs: u64,
    /// Seconds healthy between faults.
    #[arg(long, default_value_t = 10)]
    healthy: u64,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 10)]
    faulty: u64,
    /// Use loopback addresses and the userspace proxy even when namespaces are available.
    #[arg(long)]
    no_netns: bool,
    /// The `raftmq` binary (default: next to this one).
    #[arg(long)]
    raftmq: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One run: a nemesis against a workload, then the checker and the report.
    Run {
        /// The fault to inject (or `none`).
        #[arg(long)]
        nemesis: String,
        /// Where history, results and plots go.
        #[arg(long, default_value = "./jepsen-out")]
        out: PathBuf,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Every nemesis in turn, with a Markdown summary table.
    Suite {
        /// Where each run's directory and `summary.md` go.
        #[arg(long, default_value = "./jepsen-suite")]
        out: PathBuf,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Re-checks a recorded history.
    Check {
        /// `history.jsonl` of one or more runs.
        #[arg(required = true)]
        histories: Vec<PathBuf>,
        /// Check per-key order too.
        #[arg(long)]
        ordered: bool,
        /// Print the suite's Markdown summary table (a run is named by its directory).
        #[arg(long)]
        table: bool,
        /// Re-draw `latency.svg` and `throughput.svg` beside each history.
        #[arg(long)]
        plots: bool,
    },
    /// (internal) The latency proxy, run inside a node's namespace.
    Proxy {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        target: String,
        #[arg(long)]
        control: PathBuf,
    },
}

fn raftmq_bin(opts: &RunOpts) -> anyhow::Result<PathBuf> {
    if let Some(p) = &opts.raftmq {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("no parent dir")?.join("raftmq");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it (cargo build --bin raftmq) or pass --raftmq",
        bin.display()
    );
    Ok(bin)
}

async fn drain(rec: &Recorder, ordered: bool, quiet_for: Duration) -> Analysis {
    let mut last = (usize::MAX, Instant::now());
    loop {
        let a = checker::check(&rec.snapshot(), ordered);
        if a.lost.is_empty() {
            return a;
        }
        if a.lost.len() != last.0 {
            last = (a.lost.len(), Instant::now());
        } else if last.1.elapsed() >= quiet_for {
            return a;
        }
        tracing::info!(unconsumed = a.lost.len(), "draining");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run_one(nemesis: &str, out: &Path, opts: &RunOpts) -> anyhow::Result<Analysis> {
    let nemesis = nemesis::parse(nemesis)?;
    std::fs::create_dir_all(out)?;
    let bin = raftmq_bin(opts)?;
    let netns = !opts.no_netns && net::available();
    if !netns {
        eprintln!("note: network namespaces are unavailable (they need root, `ip netns` and iptables) or were disabled: using loopback addresses and a userspace fault proxy; packet loss becomes random connection resets");
    }
    let nodes = if nemesis::needs_five(&nemesis) {
        opts.nodes.max(5)
    } else {
        opts.nodes
    };
    let two = nemesis::needs_two_groups(&nemesis);
    let layout = cluster::Layout {
        groups: if two { 2 } else { opts.groups as usize },
        nodes,
        namesrvs: if two {
            opts.namesrvs.max(2) as usize
        } else {
            opts.namesrvs as usize
        },
    };
    let ordered = matches!(opts.workload, WorkloadName::Ordered);
    eprintln!(
        "run: nemesis {nemesis}, workload {:?}, {} group(s) of {nodes} nodes, {} NameServer(s), {} s at {} msgs/s, output in {}",
        opts.workload,
        layout.groups,
        layout.namesrvs,
        opts.time,
        opts.rate,
        out.display()
    );
    let cluster = Cluster::start(&bin, &out.join("cluster"), layout, netns).await?;
    cluster.wait_leader(Duration::from_secs(60)).await?;
    // grow-online starts with the topic on the first group only.
    let first_group = two.then(|| cluster::group_name(0));
    workload::create_topic(&cluster.namesrvs, first_group.as_deref()).await?;
    let namesrv = cluster.namesrvs.clone();
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let rec = Recorder::new();
    let w = Workload {
        ordered,
        transactional: matches!(opts.workload, WorkloadName::Transaction),
        rate: opts.rate,
        producers: 4,
        consumers: 3,
        keys: 16,
        consumer_restart_every: Duration::from_secs(20),
    };
    let (stop_faults, stop_sends, stop_consumers) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let consumers = tokio::spawn(workload::consume(
        w.clone(),
        namesrv.clone(),
        rec.clone(),
        stop_consumers.clone(),
    ));
    let producers = tokio::spawn(workload::produce(
        w.clone(),
        namesrv.clone(),
        rec.clone(),
        stop_sends.clone(),
    ));
    let faults = tokio::spawn(nemesis::run(
        cluster.clone(),
        nemesis.clone(),
        Duration::from_secs(opts.healthy),
        Duration::from_secs(opts.faulty),
        rec.clone(),
        stop_faults.clone(),
    ));
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(opts.time)) => {}
        _ = raftmq_proto::transport::shutdown_signal() => anyhow::bail!("interrupted"),
    }
    stop_faults.cancel();
    faults.await??;
    {
        let mut c = cluster.lock().await;
        c.heal()?;
        c.wait_leader(Duration::from_secs(60)).await?;
    }
    // A few healthy seconds of load, then stop sending and let the consumers catch up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_sends.cancel();
    producers.await??;
    let a = drain(&rec, ordered, Duration::from_secs(60)).await;
    stop_consumers.cancel();
    consumers.await??;
    let events = rec.snapshot();
    history::write(&out.join("history.jsonl"), &events)?;
    let a = if a.lost.is_empty() {
        checker::check(&events, ordered)
    } else {
        a
    };
    let placement = two.then(|| {
        placement::placement(
            &events,
            &cluster::group_name(0),
            &cluster::group_name(1),
            nemesis::GROW,
            nemesis::SHRINK,
        )
    });
    let config = serde_json::json!({
        "nemesis": nemesis, "workload": format!("{:?}", opts.workload).to_lowercase(), "nodes": nodes,
        "groups": layout.groups, "namesrvs": layout.namesrvs, "placement": placement,
        "time_s": opts.time, "rate": opts.rate, "healthy_s": opts.healthy, "faulty_s": opts.faulty,
        "network": if netns { "namespaces+iptables" } else { "loopback+userspace proxy" },
    });
    report::write(out, config, &events, &a)?;
    println!("{nemesis}: {}", a.verdict());
    if let Some(p) = placement {
        println!("{nemesis}: {p}");
        p.check()?;
    }
    Ok(a)
}

async fn suite(out: &Path, opts: &RunOpts) -> anyhow::Result<bool> {
    std::fs::create_dir_all(out)?;
    let mut rows = vec![report::table_header()];
    let mut all_valid = true;
    for name in nemesis::ALL {
        let a = run_one(name, &out.join(name), opts)
            .await
            .with_context(|| format!("nemesis {name}"))?;
        all_valid &= a.valid();
        rows.push(report::table_row(name, &a));
        std::fs::write(out.join("summary.md"), rows.join("\n") + "\n")?;
    }
    println!("{}", rows.join("\n"));
    Ok(all_valid)
}

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,tarpc=warn,raftmq_client=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<bool> = runtime.block_on(async {
        match cli.command {
            Command::Run { nemesis, out, opts } => {
                Ok(run_one(&nemesis, &out, &opts).await?.valid())
            }
            Command::Suite { out, opts } => suite(&out, &opts).await,
            Command::Check {
                histories,
                ordered,
                table,
                plots,
            } => {
                let mut all_valid = true;
                let mut rows = Vec::new();
                for path in &histories {
                    let events = history::read(path)?;
                    let a = checker::check(&events, ordered);
                    if plots {
                        report::write_plots(path.parent().unwrap_or(Path::new(".")), &events, &a)?;
                    }
                    let name = path.parent().and_then(|d| d.file_name()).map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    println!("{name}: {}", a.verdict());
                    rows.push(report::table_row(&name, &a));
                    all_valid &= a.valid();
                }
                if table {
                    println!("\n{}\n{}", report::table_header(), rows.join("\n"));
                }
                Ok(all_valid)
            }
            Command::Proxy {
                listen,
                target,
                control,
            } => {
                proxy::serve_with_control_file(&listen, &target, &control).await?;
                Ok(true)
            }
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
