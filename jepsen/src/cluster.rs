//! The cluster under test: a NameServer and one broker group as real `raftmq` processes.
//!
//! With root, each broker runs in its own network namespace behind a latency proxy (also
//! in the namespace), and faults are `iptables` rules. Without, everything runs on
//! loopback addresses (127.0.77.N) with in-process proxies that cut links by source IP,
//! and packet loss is approximated by random connection resets.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use raftmq_client::Admin;

use crate::net::{self, Netns};
use crate::proxy::{self, Control};

const CLIENT_PORT: u16 = 10911;
const RAFT_PROXY_PORT: u16 = 10912;
const RAFT_PORT: u16 = 10913;
const NAMESRV_PORT: u16 = 9876;

/// How faults are injected.
#[derive(Debug)]
enum Mode {
    Netns(Netns),
    Loopback {
        controls: Vec<Arc<Control>>,
        _proxies: Vec<tokio_util::task::AbortOnDropHandle<()>>,
    },
}

/// One broker node.
#[derive(Debug)]
pub struct Node {
    /// 1-based node id.
    pub id: usize,
    /// Its IP.
    pub ip: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    proxy: Option<Child>,
    /// SIGSTOPped.
    pub paused: bool,
}

/// The running cluster; every process is killed and every namespace removed on drop.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    harness: PathBuf,
    dir: PathBuf,
    /// The NameServer's address.
    pub namesrv: String,
    namesrv_child: Option<Child>,
    /// Broker nodes, index = id - 1.
    pub nodes: Vec<Node>,
    mode: Mode,
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

impl Cluster {
    /// Starts a NameServer and an `n`-node group; `netns` picks namespaces (if available).
    ///
    /// # Errors
    /// Namespaces or processes could not be created.
    pub async fn start(bin: &Path, dir: &Path, n: usize, netns: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let harness = std::env::current_exe()?;
        let (mode, host_ip, ips): (Mode, String, Vec<String>) = if netns {
            let ns = Netns::create(n).context("creating network namespaces")?;
            (
                Mode::Netns(ns),
                net::HOST_IP.to_owned(),
                (1..=n).map(net::node_ip).collect(),
            )
        } else {
            let ips: Vec<String> = (1..=n).map(|i| format!("127.0.77.{}", 10 + i)).collect();
            let mut controls = Vec::new();
            let mut proxies = Vec::new();
            for ip in &ips {
                let c = Arc::new(Control::default());
                let l = tokio::net::TcpListener::bind((ip.as_str(), RAFT_PROXY_PORT)).await?;
                proxies.push(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                    proxy::run(l, format!("{ip}:{RAFT_PORT}"), c.clone()),
                )));
                controls.push(c);
            }
            (
                Mode::Loopback {
                    controls,
                    _proxies: proxies,
                },
                "127.0.77.1".to_owned(),
                ips,
            )
        };
        let namesrv = format!("{host_ip}:{NAMESRV_PORT}");
        let namesrv_child = Command::new(bin)
            .args(["namesrv", "--listen", &namesrv, "--expiry-secs", "30"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("namesrv.log"))?)
            .spawn()
            .context("starting the NameServer")?;
        let mut me = Self {
            bin: bin.to_owned(),
            harness,
            dir: dir.to_owned(),
            namesrv,
            namesrv_child: Some(namesrv_child),
            nodes: Vec::new(),
            mode,
        };
        let peers: String = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("{} = \"{ip}:{RAFT_PROXY_PORT}\"\n", i + 1))
            .collect();
        for (i, ip) in ips.iter().enumerate() {
            let id = i + 1;
            let config = dir.join(format!("n{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    "group = \"broker-a\"\nnode_id = {id}\nlisten = \"{ip}:{CLIENT_PORT}\"\nraft_listen = \"{ip}:{RAFT_PORT}\"\n\
                     raft_advertise = \"{ip}:{RAFT_PROXY_PORT}\"\nnamesrv = [\"{}\"]\ndata_dir = \"{}\"\n\
                     register_interval_ms = 2000\nclient_expiry_ms = 15000\nqueue_lock_lease_ms = 15000\n\
                     transaction_timeout_ms = 1000\ntransaction_check_interval_ms = 2000\n[peers]\n{peers}",
                    me.namesrv,
                    dir.join(format!("n{id}")).display()
                ),
            )?;
            me.nodes.push(Node {
                id,
                ip: ip.clone(),

                config,
                log: dir.join(format!("n{id}.log")),
                child: None,
                proxy: None,
                paused: false,
            });
            if matches!(me.mode, Mode::Netns(_)) {
                me.start_proxy(i)?;
            }
            me.start_node(i)?;
        }
        Ok(me)
    }

    fn in_ns(&self, i: usize, program: &Path) -> Command {
        match self.mode {
            Mode::Netns(_) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net::ns(i + 1)]).arg(program);
                c
            }
            Mode::Loopback { .. } => Command::new(program),
        }
    }

    fn start_proxy(&mut self, i: usize) -> anyhow::Result<()> {
        let ip = self.nodes[i].ip.clone();
        let control = self.dir.join(format!("delay-n{}", i + 1));
        std::fs::write(&control, "0")?;
        let child = self
            .in_ns(i, &self.harness.clone())
            .args([
                "proxy",
                "--listen",
                &format!("{ip}:{RAFT_PROXY_PORT}"),
                "--target",
                &format!("{ip}:{RAFT_PORT}"),
                "--control",
            ])
            .arg(&control)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.nodes[i].proxy = Some(child);
        Ok(())
    }

    fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.nodes[i].log)?;
        let config = self.nodes[i].config.clone();
        let child = self
            .in_ns(i, &self.bin.clone())
            .args(["broker", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,tarpc=warn,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// kill -9.
    pub fn kill9(&mut self, i: usize) {
        kill(&mut self.nodes[i].child);
    }

    /// Restarts a killed node on its data.
    ///
    /// # Errors
    /// The process could not start.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].child.is_none() {
            self.start_node(i)?;
        }
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) {
        if let Some(c) = &self.nodes[i].child {
            signal(c.id(), "-STOP");
            self.nodes[i].paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if let Some(c) = &self.nodes[i].child {
            signal(c.id(), "-CONT");
        }
        self.nodes[i].paused = false;
    }

    /// Cuts the Raft links between nodes `a` and `b` (0-based).
    ///
    /// # Errors
    /// `iptables` failed.
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        match &self.mode {
            Mode::Netns(ns) => ns.cut(a + 1, b + 1),
            Mode::Loopback { controls, .. } => {
                let ip = |i: usize| -> anyhow::Result<IpAddr> { Ok(self.nodes[i].ip.parse()?) };
                controls[a].block(ip(b)?);
                controls[b].block(ip(a)?);
                Ok(())
            }
        }
    }

    /// Loses a fraction of packets (namespaces) or resets connections at random (loopback).
    ///
    /// # Errors
    /// `iptables` failed.
    pub fn loss(&self, probability: f64) -> anyhow::Result<()> {
        match &self.mode {
            Mode::Netns(ns) => ns.loss(probability),
            Mode::Loopback { controls, .. } => {
                for c in controls {
                    c.reset_per_mille.store(
                        (probability * 100.0) as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                Ok(())
            }
        }
    }

    /// Adds one-way latency to every Raft link.
    ///
    /// # Errors
    /// A control file could not be written.
    pub fn delay(&self, ms: u64) -> anyhow::Result<()> {
        match &self.mode {
            Mode::Netns(_) => {
                for n in &self.nodes {
                    std::fs::write(self.dir.join(format!("delay-n{}", n.id)), ms.to_string())?;
                }
            }
            Mode::Loopback { controls, .. } => {
                for c in controls {
                    c.delay_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Removes every network fault, resumes paused nodes and restarts killed ones.
    ///
    /// # Errors
    /// `iptables` failed or a node could not restart.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        match &self.mode {
            Mode::Netns(ns) => ns.heal()?,
            Mode::Loopback { controls, .. } => {
                for c in controls {
                    c.unblock_all();
                    c.reset_per_mille
                        .store(0, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        self.delay(0)?;
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            self.restart(i)?;
        }
        Ok(())
    }

    /// The node that leads with the highest term, as the nodes themselves report.
    pub async fn leader(&self) -> Option<usize> {
        let admin = Admin::new([self.namesrv.clone()]).ok()?;
        let nodes = tokio::time::timeout(Duration::from_secs(3), admin.cluster_nodes())
            .await
            .ok()?
            .ok()?;
        nodes
            .iter()
            .filter(|n| n.role == "leader")
            .max_by_key(|n| n.term)
            .map(|n| n.node_id as usize - 1)
            .filter(|i| *i < self.nodes.len())
    }

    /// Waits until the group has a leader.
    ///
    /// # Errors
    /// None within `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no leader within {timeout:?}; see the node logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = &n.child {
                signal(c.id(), "-CONT");
            }
            kill(&mut n.child);
            kill(&mut n.proxy);
        }
        kill(&mut self.namesrv_child);
    }
}
