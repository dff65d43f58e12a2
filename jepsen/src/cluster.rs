//! The cluster under test: NameServers and broker groups as real `raftmq` processes.
//!
//! With root, each broker runs in its own network namespace behind a latency proxy (also
//! in the namespace), and faults are `iptables` rules; with several groups or NameServers
//! (the multi-host layout), every NameServer gets a namespace of its own too, so each
//! process sees the others only across the bridge, as on separate machines. Without
//! root, everything runs on loopback addresses (127.0.77.N) with in-process proxies that
//! cut links by source IP, and packet loss is approximated by random connection resets.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use raftmq_client::Admin;
use raftmq_proto::broker::DrainReport;

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

/// How many of each process a run starts.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Broker groups (`broker-a`, `broker-b`, ...).
    pub groups: usize,
    /// Nodes per group.
    pub nodes: usize,
    /// NameServers.
    pub namesrvs: usize,
}

impl Layout {
    /// Whether NameServers get namespaces of their own (several groups or NameServers).
    fn multi_host(self) -> bool {
        self.groups > 1 || self.namesrvs > 1
    }
}

/// The name of broker group `g` (0-based): `broker-a`, `broker-b`, ...
pub fn group_name(g: usize) -> String {
    format!("broker-{}", (b'a' + g as u8) as char)
}

/// One broker node.
#[derive(Debug)]
pub struct Node {
    /// 1-based index over every node of the run (names its namespace and address).
    pub id: usize,
    /// Its broker group.
    pub group: String,
    /// Its node id within the group.
    pub node_id: u64,
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
    /// The NameServers' addresses.
    pub namesrvs: Vec<String>,
    namesrv_children: Vec<Option<Child>>,
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
    /// Starts the NameServers and broker groups of `layout`; `netns` picks namespaces (if
    /// available).
    ///
    /// # Errors
    /// Namespaces or processes could not be created.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        layout: Layout,
        netns: bool,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let harness = std::env::current_exe()?;
        let brokers = layout.groups * layout.nodes;
        // NameServers in namespaces of their own take the indexes after the brokers'.
        let ns_namesrvs = if layout.multi_host() {
            layout.namesrvs
        } else {
            0
        };
        let (mode, namesrv_ips, ips): (Mode, Vec<String>, Vec<String>) = if netns {
            let ns = Netns::create(brokers, ns_namesrvs).context("creating network namespaces")?;
            let namesrv_ips = if ns_namesrvs > 0 {
                (brokers + 1..=brokers + ns_namesrvs)
                    .map(net::node_ip)
                    .collect()
            } else {
                vec![net::HOST_IP.to_owned()]
            };
            (
                Mode::Netns(ns),
                namesrv_ips,
                (1..=brokers).map(net::node_ip).collect(),
            )
        } else {
            let ips: Vec<String> = (1..=brokers)
                .map(|i| format!("127.0.77.{}", 10 + i))
                .collect();
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
                (1..=layout.namesrvs)
                    .map(|k| format!("127.0.77.{k}"))
                    .collect(),
                ips,
            )
        };
        let mut me = Self {
            bin: bin.to_owned(),
            harness,
            dir: dir.to_owned(),
            namesrvs: namesrv_ips
                .iter()
                .map(|ip| format!("{ip}:{NAMESRV_PORT}"))
                .collect(),
            namesrv_children: Vec::new(),
            nodes: Vec::new(),
            mode,
        };
        for k in 0..me.namesrvs.len() {
            let addr = me.namesrvs[k].clone();
            let mut cmd = if ns_namesrvs > 0 {
                me.in_ns(brokers + k, &me.bin.clone())
            } else {
                Command::new(&me.bin)
            };
            let child = cmd
                .args(["namesrv", "--listen", &addr, "--expiry-secs", "30"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(
                    dir.join(format!("namesrv{}.log", k + 1)),
                )?)
                .spawn()
                .context("starting a NameServer")?;
            me.namesrv_children.push(Some(child));
        }
        let namesrv_list = me
            .namesrvs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        for g in 0..layout.groups {
            let group = group_name(g);
            let members = &ips[g * layout.nodes..(g + 1) * layout.nodes];
            let peers: String = members
                .iter()
                .enumerate()
                .map(|(k, ip)| format!("{} = \"{ip}:{RAFT_PROXY_PORT}\"\n", k + 1))
                .collect();
            for (k, ip) in members.iter().enumerate() {
                let id = g * layout.nodes + k + 1;
                let node_id = k + 1;
                let config = dir.join(format!("n{id}.toml"));
                std::fs::write(
                    &config,
                    format!(
                        "group = \"{group}\"\nnode_id = {node_id}\nlisten = \"{ip}:{CLIENT_PORT}\"\nraft_listen = \"{ip}:{RAFT_PORT}\"\n\
                         raft_advertise = \"{ip}:{RAFT_PROXY_PORT}\"\nnamesrv = [{namesrv_list}]\ndata_dir = \"{}\"\n\
                         register_interval_ms = 2000\nclient_expiry_ms = 15000\nqueue_lock_lease_ms = 15000\n\
                         transaction_timeout_ms = 1000\ntransaction_check_interval_ms = 2000\n[peers]\n{peers}",
                        dir.join(format!("n{id}")).display()
                    ),
                )?;
                me.nodes.push(Node {
                    id,
                    group: group.clone(),
                    node_id: node_id as u64,
                    ip: ip.clone(),
                    config,
                    log: dir.join(format!("n{id}.log")),
                    child: None,
                    proxy: None,
                    paused: false,
                });
                let i = me.nodes.len() - 1;
                if matches!(me.mode, Mode::Netns(_)) {
                    me.start_proxy(i)?;
                }
                me.start_node(i)?;
            }
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

    fn admin(&self) -> Option<Admin> {
        Admin::new(self.namesrvs.clone()).ok()
    }

    /// The index of node `node_id` of `group`.
    fn index(&self, group: &str, node_id: u64) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.group == group && n.node_id == node_id)
    }

    /// Per group, the node that leads with the highest term, as the nodes themselves
    /// report; groups with no leader are missing.
    pub async fn leaders(&self) -> Vec<usize> {
        let Some(admin) = self.admin() else {
            return Vec::new();
        };
        let Ok(Ok(nodes)) =
            tokio::time::timeout(Duration::from_secs(3), admin.cluster_nodes()).await
        else {
            return Vec::new();
        };
        let mut best: std::collections::BTreeMap<&str, (u64, usize)> = Default::default();
        for n in nodes.iter().filter(|n| n.role == "leader") {
            if let Some(i) = self.index(&n.group, n.node_id) {
                let e = best.entry(n.group.as_str()).or_insert((n.term, i));
                if n.term > e.0 {
                    *e = (n.term, i);
                }
            }
        }
        best.into_values().map(|(_, i)| i).collect()
    }

    /// The leader of the first group (the one single-group faults aim at).
    pub async fn leader(&self) -> Option<usize> {
        let first = self.nodes.first()?.group.clone();
        self.leaders()
            .await
            .into_iter()
            .find(|i| self.nodes[*i].group == first)
    }

    fn group_count(&self) -> usize {
        let mut g: Vec<&str> = self.nodes.iter().map(|n| n.group.as_str()).collect();
        g.dedup();
        g.len()
    }

    /// Waits until every group has a leader; returns the first group's.
    ///
    /// # Errors
    /// Some group has none within `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders = self.leaders().await;
            if leaders.len() == self.group_count() {
                if let Some(l) = self.leader().await {
                    return Ok(l);
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "not every broker group has a leader within {timeout:?}; see the node logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Drains node `i` (`raftmq cluster drain`); returns what the node reported.
    ///
    /// # Errors
    /// The drain was refused or the node unreachable.
    pub async fn drain(&self, i: usize) -> anyhow::Result<DrainReport> {
        let admin = self.admin().context("no NameServer address")?;
        let n = &self.nodes[i];
        Ok(admin
            .drain_node(&n.group, n.node_id, false, Duration::from_secs(30))
            .await?)
    }

    /// SIGTERM, then waits up to 30 s for the node to exit (kill -9 after that); returns
    /// whether it stopped by itself.
    pub async fn stop(&mut self, i: usize) -> bool {
        let Some(mut child) = self.nodes[i].child.take() else {
            return true;
        };
        signal(child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until node `i` answers as a voter of its group and has applied what the
    /// leader had committed when the wait began.
    ///
    /// # Errors
    /// Not within `timeout`.
    pub async fn wait_caught_up(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let n = &self.nodes[i];
        let mut target: Option<u64> = None;
        loop {
            if let Some(admin) = self.admin() {
                if let Ok(Ok(nodes)) =
                    tokio::time::timeout(Duration::from_secs(3), admin.cluster_nodes()).await
                {
                    let group = nodes.iter().filter(|x| x.group == n.group);
                    if target.is_none() {
                        target = group
                            .clone()
                            .filter(|x| x.role == "leader")
                            .map(|x| x.commit_index)
                            .max();
                    }
                    let me = group.clone().find(|x| x.node_id == n.node_id);
                    if let (Some(t), Some(me)) = (target, me) {
                        if matches!(me.role.as_str(), "follower" | "leader")
                            && me.applied_index >= t
                        {
                            return Ok(());
                        }
                    }
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} node {} did not catch up within {timeout:?}; see {}",
                n.group,
                n.node_id,
                n.log.display()
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
        for c in &mut self.namesrv_children {
            kill(c);
        }
    }
}
