//! The multi-process test cluster: a NameServer and broker groups as real `raftmq`
//! processes, each broker on its own loopback IP with a fault proxy on its Raft port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use raftmq_client::core::{ClientConfig, Core, Credentials};
use raftmq_client::{Admin, TlsTrust};
use raftmq_proto::broker::PullMessageRequest;
use raftmq_proto::{ConsumerGroup, Offset, QueueId, TopicName};

use crate::proxy::{self, Faults};

static TRACING: Once = Once::new();

/// Logs to the test output (`RUST_LOG` to change).
pub fn init_tracing() {
    TRACING.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tarpc=warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The `raftmq` binary next to this test binary (built by `cargo build --workspace`).
pub fn raftmq_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target dir")?;
    let bin = dir.join("raftmq");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    Ok(bin)
}

/// A free port on `ip`.
pub fn free_port(ip: &str) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// `GET path` over HTTP/1.1, with `headers` (each line ending in `\r\n`) and over TLS
/// when `tls` is given: (status code, head, body). Bodies are expected unchunked.
pub async fn http_get(
    addr: &str,
    path: &str,
    headers: &str,
    tls: Option<&raftmq_proto::tls::TlsClient>,
) -> anyhow::Result<(u16, String, String)> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn exchange(
        mut s: impl AsyncRead + AsyncWrite + Unpin,
        req: String,
    ) -> anyhow::Result<Vec<u8>> {
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await?;
        // A TLS peer that closes without close_notify fails the read after the data.
        if raw.is_empty() {
            read?;
        }
        Ok(raw)
    }
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let raw = match tls {
        Some(t) => exchange(t.connect(addr, tcp).await?, req).await?,
        None => exchange(tcp, req).await?,
    };
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP header end in {raw:?}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    anyhow::ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked bodies are not expected: {head}"
    );
    Ok((code, head.to_owned(), body.to_owned()))
}

/// Waits until `seen` (what a consumer recorded) holds every body in `acked`.
pub async fn wait_consumed<'a>(
    acked: impl IntoIterator<Item = &'a String> + Clone,
    seen: impl Fn(&str) -> bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until("every acknowledged message consumed", timeout, || async {
        let (mut missing, mut total) = (0, 0);
        for b in acked.clone() {
            total += 1;
            missing += usize::from(!seen(b));
        }
        anyhow::ensure!(missing == 0, "{missing} of {total} not consumed yet");
        Ok(())
    })
    .await
}

/// Polls `f` every `poll` until it succeeds or `timeout` passes (NATS `checkFor`).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                bail!("timed out after {timeout:?} waiting for {what}: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One broker node process.
#[derive(Debug)]
pub struct Node {
    /// Broker group.
    pub group: String,
    /// Node id.
    pub id: u64,
    /// Its loopback IP.
    pub ip: IpAddr,
    /// Client address.
    pub client_addr: String,
    /// Raft address peers dial (the proxy).
    pub raft_addr: String,
    /// The real Raft listen address behind the proxy.
    pub raft_listen: String,
    /// Its HTTP listener (`/metrics`, `/healthz`).
    pub http_addr: String,
    /// Config file.
    pub config: PathBuf,
    /// Data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Whether the harness started it and has not killed or stopped it.
    pub fn started(&self) -> bool {
        self.child.is_some()
    }
}

/// The loopback IP of node `id` of the `gi`-th group: every node its own address, so
/// peers, fault proxies and certificates can tell them apart.
fn node_ip(gi: usize, id: u64) -> String {
    format!("127.0.{}.{}", gi + 10, id + 10)
}

/// Extra broker settings for a test.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Raft entries between snapshots.
    pub snapshot_every: Option<u64>,
    /// Create topics on first send.
    pub auto_create: bool,
    /// `message_delay_levels` of the brokers.
    pub delay_levels: Option<String>,
    /// Forget silent consumers after 4 s and expire orderly locks after 6 s, so that
    /// crash tests do not wait minutes.
    pub fast_expiry: bool,
    /// Start the brokers under this open-files limit, soft and hard (`prlimit`).
    pub open_files: Option<u64>,
    /// Turn authentication on with this configured admin: `(access key, secret)`. The
    /// harness's own clients ([`Cluster::core`], [`Cluster::admin`]) then act as it.
    pub auth_admin: Option<(String, String)>,
    /// Put node `<group>-n<id>`'s data dir under `<data_root>/<group>-n<id>/` (a test's
    /// own small file systems), not under the cluster's temporary directory.
    pub data_root: Option<PathBuf>,
    /// More top-level broker settings, as TOML lines.
    pub extra_config: String,
    /// TLS on every port: `raftmq certs dev` certificates naming every node's IP, the
    /// NameServer and brokers serving them (the NameServer takes registrations only from
    /// clients with a certificate: `--client-ca`), the harness's clients trusting the CA.
    pub tls: bool,
}

/// A running cluster; every process is killed when it is dropped.
pub struct Cluster {
    /// Holds every config, data dir and log.
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    /// The NameServer address.
    pub namesrv: String,
    /// The NameServer's HTTP listener (`/metrics`, `/healthz`).
    pub namesrv_http: String,
    namesrv_child: Child,
    /// Broker nodes.
    pub nodes: Vec<Node>,
    /// Link faults.
    pub faults: Arc<Faults>,
    proxies: Vec<tokio::task::JoinHandle<()>>,
    tuning: Tuning,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = self.namesrv_child.kill();
        let _ = self.namesrv_child.wait();
        for p in &self.proxies {
            p.abort();
        }
        if let Some(to) = std::env::var_os("RAFTMQ_TEST_LOG_DIR") {
            self.copy_logs(Path::new(&to));
        }
        if std::thread::panicking() || std::env::var_os("RAFTMQ_KEEP_LOGS").is_some() {
            // Keep the logs of a failed test for inspection.
            let kept = self.dir.path().to_owned();
            eprintln!("cluster logs kept in {}", kept.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}

impl Cluster {
    /// Copies the processes' logs (not their data) to `to/<test name>/<cluster dir>/`, so
    /// that a test that failed by returning an error, which leaves no panic to keep the
    /// whole dir, can still be explained: `.ci/run` prints the failed tests' logs.
    fn copy_logs(&self, to: &Path) {
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .replace("::", "__");
        let Some(name) = self.dir.path().file_name() else {
            return;
        };
        let dest = to.join(test).join(name);
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        if std::fs::create_dir_all(&dest).is_err() {
            return;
        }
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                let _ = std::fs::copy(&p, dest.join(e.file_name()));
            }
        }
    }

    /// Starts a NameServer and `groups` (name, node count).
    pub async fn start(groups: &[(&str, u64)], tuning: Tuning) -> anyhow::Result<Self> {
        init_tracing();
        let bin = raftmq_bin()?;
        let dir = tempfile::tempdir()?;
        let namesrv = format!("127.0.0.1:{}", free_port("127.0.0.1")?);
        let namesrv_http = format!("127.0.0.1:{}", free_port("127.0.0.1")?);
        let mut namesrv_cmd = Command::new(&bin);
        namesrv_cmd.args([
            "namesrv",
            "--listen",
            &namesrv,
            "--http-listen",
            &namesrv_http,
        ]);
        if tuning.tls {
            let certs = dir.path().join("certs");
            let mut dev = Command::new(&bin);
            dev.args(["certs", "dev"]).arg(&certs);
            for (gi, (_, n)) in groups.iter().enumerate() {
                for id in 1..=*n {
                    dev.args(["--name", &node_ip(gi, id)]);
                }
            }
            let made = dev.output()?;
            anyhow::ensure!(made.status.success(), "raftmq certs dev: {made:?}");
            namesrv_cmd
                .arg("--cert")
                .arg(certs.join("node.pem"))
                .arg("--key")
                .arg(certs.join("node-key.pem"))
                .arg("--client-ca")
                .arg(certs.join("ca.pem"));
        }
        let namesrv_child = namesrv_cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("namesrv.log"))?)
            .spawn()?;
        let faults = Arc::new(Faults::default());
        let mut cluster = Self {
            dir,
            bin,
            namesrv,
            namesrv_http,
            namesrv_child,
            nodes: Vec::new(),
            faults,
            proxies: Vec::new(),
            tuning,
        };
        for (gi, (group, n)) in groups.iter().enumerate() {
            let mut members = Vec::new();
            for id in 1..=*n {
                let ip_s = node_ip(gi, id);
                let ip: IpAddr = ip_s.parse()?;
                let client_addr = format!("{ip_s}:{}", free_port(&ip_s)?);
                let raft_addr = format!("{ip_s}:{}", free_port(&ip_s)?);
                let raft_listen = format!("{ip_s}:{}", free_port(&ip_s)?);
                let http_addr = format!("{ip_s}:{}", free_port(&ip_s)?);
                let base = cluster.dir.path().join(format!("{group}-n{id}"));
                members.push(Node {
                    group: (*group).to_owned(),
                    id,
                    ip,
                    client_addr,
                    raft_addr,
                    raft_listen,
                    http_addr,
                    config: base.with_extension("toml"),
                    data_dir: match &cluster.tuning.data_root {
                        Some(root) => root.join(format!("{group}-n{id}")).join("data"),
                        None => base.join("data"),
                    },
                    log: base.with_extension("log"),
                    child: None,
                });
            }
            let peers: BTreeMap<u64, String> = members
                .iter()
                .map(|m| (m.id, m.raft_addr.clone()))
                .collect();
            for m in &members {
                cluster.write_config(m, &peers)?;
                let listener = tokio::net::TcpListener::bind(&m.raft_addr).await?;
                cluster.proxies.push(tokio::spawn(proxy::run(
                    listener,
                    m.raft_listen.clone(),
                    m.ip,
                    cluster.faults.clone(),
                )));
            }
            cluster.nodes.extend(members);
        }
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn write_config(&self, m: &Node, peers: &BTreeMap<u64, String>) -> anyhow::Result<()> {
        let mut toml = format!(
            "cluster = \"TestCluster\"\ngroup = \"{}\"\nnode_id = {}\nlisten = \"{}\"\nraft_listen = \"{}\"\nraft_advertise = \"{}\"\nhttp_listen = \"{}\"\n\
             namesrv = [\"{}\"]\ndata_dir = \"{}\"\nregister_interval_ms = 2000\nauto_create_topics = {}\n",
            m.group,
            m.id,
            m.client_addr,
            m.raft_listen,
            m.raft_addr,
            m.http_addr,
            self.namesrv,
            m.data_dir.display(),
            self.tuning.auto_create,
        );
        if let Some(s) = self.tuning.snapshot_every {
            toml.push_str(&format!("raft_snapshot_every_entries = {s}\n"));
        }
        if self.tuning.fast_expiry {
            toml.push_str("client_expiry_ms = 4000\nqueue_lock_lease_ms = 6000\n");
        }
        if let Some(l) = &self.tuning.delay_levels {
            toml.push_str(&format!("message_delay_levels = \"{l}\"\n"));
        }
        toml.push_str(&self.tuning.extra_config);
        if !toml.ends_with('\n') {
            toml.push('\n');
        }
        toml.push_str("[peers]\n");
        for (id, a) in peers {
            toml.push_str(&format!("{id} = \"{a}\"\n"));
        }
        if let Some((k, s)) = &self.tuning.auth_admin {
            toml.push_str(&format!(
                "[auth]\nenabled = true\nadmin_access_key = \"{k}\"\nadmin_secret_key = \"{s}\"\n"
            ));
        }
        if self.tuning.tls {
            let d = self.cert_dir();
            toml.push_str(&format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
                d.join("node.pem").display(),
                d.join("node-key.pem").display(),
                d.join("ca.pem").display()
            ));
        }
        std::fs::write(&m.config, toml)?;
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        // The broker's own default filter unless a test run asks for another.
        let mut cmd = match self.tuning.open_files {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["broker", "--config"])
            .arg(&n.config)
            .env_remove("RUST_LOG");
        if let Ok(filter) = std::env::var("RAFTMQ_TEST_BROKER_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn()?;
        n.child = Some(child);
        Ok(())
    }

    /// Index of a node in `nodes`.
    pub fn index(&self, group: &str, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.group == group && n.id == id)
            .expect("no such node")
    }

    /// The node `(group, id)`.
    pub fn node(&self, group: &str, id: u64) -> &Node {
        &self.nodes[self.index(group, id)]
    }

    /// The process id of a running node.
    pub fn pid(&self, group: &str, id: u64) -> Option<u32> {
        self.node(group, id).child.as_ref().map(Child::id)
    }

    /// Whether a node's process is still running.
    pub fn is_running(&mut self, group: &str, id: u64) -> bool {
        let i = self.index(group, id);
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether the NameServer's process is still running.
    pub fn namesrv_running(&mut self) -> bool {
        matches!(self.namesrv_child.try_wait(), Ok(None))
    }

    /// kill -9.
    pub fn kill9(&mut self, group: &str, id: u64) {
        let i = self.index(group, id);
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        tracing::info!(group, node_id = id, "--- killed -9");
    }

    /// Restarts a node on the same data dir.
    pub fn restart(&mut self, group: &str, id: u64) -> anyhow::Result<()> {
        let i = self.index(group, id);
        anyhow::ensure!(
            self.nodes[i].child.is_none(),
            "node {group}/{id} is still running"
        );
        tracing::info!(group, node_id = id, "--- restarting");
        self.spawn(i)
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self, group: &str, id: u64) -> anyhow::Result<std::process::ExitStatus> {
        let i = self.index(group, id);
        let mut c = self.nodes[i].child.take().context("not running")?;
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("node {group}/{id} did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cuts a node's Raft links to every other node of its group.
    pub fn isolate(&self, group: &str, id: u64) {
        let me = self.node(group, id).ip;
        for n in self.nodes.iter().filter(|n| n.group == group && n.id != id) {
            self.faults.cut(me, n.ip);
        }
        tracing::info!(group, node_id = id, "--- isolated from its peers");
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.faults.heal();
        tracing::info!("--- healed");
    }

    /// The configured admin's credentials when authentication is on.
    pub fn admin_credentials(&self) -> Option<Credentials> {
        self.tuning.auth_admin.as_ref().map(|(k, s)| Credentials {
            access_key: k.clone(),
            secret_key: s.clone(),
        })
    }

    /// A broker-level client (direct calls to a node), as the configured admin when
    /// authentication is on.
    pub fn core(&self) -> anyhow::Result<Core> {
        self.core_as(self.admin_credentials())
    }

    /// A broker-level client acting as `credentials` (`None`: anonymous).
    pub fn core_as(&self, credentials: Option<Credentials>) -> anyhow::Result<Core> {
        Ok(Core::new(self.client_config(credentials))?)
    }

    /// Where `raftmq certs dev` wrote the certificates of a [`Tuning::tls`] cluster.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// What the harness's clients trust on a [`Tuning::tls`] cluster.
    pub fn tls_trust(&self) -> Option<TlsTrust> {
        self.tuning.tls.then(|| TlsTrust {
            ca: self.cert_dir().join("ca.pem"),
            identity: None,
        })
    }

    /// The client settings of the harness's clients, acting as `credentials`.
    pub fn client_config(&self, credentials: Option<Credentials>) -> ClientConfig {
        ClientConfig {
            namesrv: vec![self.namesrv.clone()],
            credentials,
            tls: self.tls_trust(),
            ..ClientConfig::default()
        }
    }

    /// The admin client, as the configured admin when authentication is on.
    pub fn admin(&self) -> anyhow::Result<Admin> {
        self.admin_as(self.admin_credentials())
    }

    /// An admin client acting as `credentials` (`None`: anonymous).
    pub fn admin_as(&self, credentials: Option<Credentials>) -> anyhow::Result<Admin> {
        Ok(Admin::with_config(self.client_config(credentials))?)
    }

    /// Waits until the group has a leader that the node itself and the NameServer agree
    /// on; returns its id.
    pub async fn wait_leader(&self, group: &str, timeout: Duration) -> anyhow::Result<u64> {
        let core = self.core()?;
        let nodes: Vec<(u64, String)> = self
            .nodes
            .iter()
            .filter(|n| n.group == group && n.child.is_some())
            .map(|n| (n.id, n.client_addr.clone()))
            .collect();
        wait_until(&format!("a leader in {group}"), timeout, || {
            let (core, nodes) = (&core, &nodes);
            async move {
                for (id, addr) in nodes {
                    let s = core
                        .call(addr, Duration::from_secs(1), |c, cx| async move {
                            c.broker_group_status(cx).await
                        })
                        .await;
                    if let Ok(s) = s {
                        if s.leader == Some(s.node_id) {
                            return Ok(*id);
                        }
                    }
                }
                bail!("no node claims leadership")
            }
        })
        .await
    }

    /// Every message of a queue as one node serves it: `(offset, body)`.
    pub async fn read_queue(
        &self,
        addr: &str,
        topic: &str,
        queue: u32,
    ) -> anyhow::Result<Vec<(u64, Bytes)>> {
        let core = self.core()?;
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let req = PullMessageRequest {
                consumer_group: ConsumerGroup::from("test-reader"),
                topic: TopicName::from(topic),
                queue_id: QueueId(queue),
                offset: Offset(offset),
                max_msgs: 512,
                max_bytes: 8 << 20,
                max_wait_ms: 0,
                tags: vec![],
            };
            let r = core
                .call(addr, Duration::from_secs(5), |c, cx| async move {
                    c.pull(cx, req).await
                })
                .await?;
            if r.messages.is_empty() {
                return Ok(out);
            }
            for m in r.messages {
                anyhow::ensure!(
                    m.queue_offset.0 == offset,
                    "gap: expected offset {offset}, got {}",
                    m.queue_offset
                );
                out.push((m.queue_offset.0, m.body));
                offset += 1;
            }
        }
    }

    /// The bodies of queue `queue` of `topic` on every started node, which must all hold
    /// the same ones, each once.
    pub async fn bodies_everywhere(
        &self,
        topic: &str,
        queue: u32,
    ) -> anyhow::Result<BTreeSet<String>> {
        let mut seen: Option<Vec<String>> = None;
        for n in self.nodes.iter().filter(|n| n.started()) {
            let bodies: Vec<String> = self
                .read_queue(&n.client_addr, topic, queue)
                .await?
                .into_iter()
                .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
                .collect();
            if let Some(s) = &seen {
                anyhow::ensure!(s == &bodies, "node {} has {bodies:?}, another {s:?}", n.id);
            }
            seen = Some(bodies);
        }
        let bodies = seen.unwrap_or_default();
        let set: BTreeSet<String> = bodies.iter().cloned().collect();
        anyhow::ensure!(set.len() == bodies.len(), "stored twice: {bodies:?}");
        Ok(set)
    }

    /// The log of a node so far.
    pub fn log_text(&self, group: &str, id: u64) -> String {
        std::fs::read_to_string(&self.node(group, id).log).unwrap_or_default()
    }

    /// The log of a node (for failure messages).
    pub fn log_tail(&self, group: &str, id: u64) -> String {
        let s = std::fs::read_to_string(&self.node(group, id).log).unwrap_or_default();
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Cluster {
    /// Starts a new node process for `group` that is not yet a member (its peers list the
    /// current members plus itself); returns its index. Add it with `Admin::add_node`.
    pub async fn spawn_joiner(&mut self, group: &str, id: u64) -> anyhow::Result<usize> {
        let gi = self
            .nodes
            .iter()
            .find(|n| n.group == group)
            .map(|n| match n.ip {
                IpAddr::V4(v4) => v4.octets()[2],
                IpAddr::V6(_) => 10,
            })
            .context("unknown group")?;
        let ip_s = format!("127.0.{gi}.{}", id + 10);
        let ip: IpAddr = ip_s.parse()?;
        let base = self.dir.path().join(format!("{group}-n{id}"));
        let node = Node {
            group: group.to_owned(),
            id,
            ip,
            client_addr: format!("{ip_s}:{}", free_port(&ip_s)?),
            raft_addr: format!("{ip_s}:{}", free_port(&ip_s)?),
            raft_listen: format!("{ip_s}:{}", free_port(&ip_s)?),
            http_addr: format!("{ip_s}:{}", free_port(&ip_s)?),
            config: base.with_extension("toml"),
            data_dir: base.join("data"),
            log: base.with_extension("log"),
            child: None,
        };
        let mut peers: BTreeMap<u64, String> = self
            .nodes
            .iter()
            .filter(|n| n.group == group)
            .map(|n| (n.id, n.raft_addr.clone()))
            .collect();
        peers.insert(id, node.raft_addr.clone());
        self.write_config(&node, &peers)?;
        let listener = tokio::net::TcpListener::bind(&node.raft_addr).await?;
        self.proxies.push(tokio::spawn(proxy::run(
            listener,
            node.raft_listen.clone(),
            node.ip,
            self.faults.clone(),
        )));
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.spawn(i)?;
        Ok(i)
    }

    /// Deletes a stopped node's data directory.
    pub fn wipe(&self, group: &str, id: u64) -> anyhow::Result<()> {
        let n = self.node(group, id);
        anyhow::ensure!(n.child.is_none(), "stop the node before wiping it");
        std::fs::remove_dir_all(&n.data_dir)?;
        tracing::info!(group, node_id = id, "--- wiped data dir");
        Ok(())
    }
}
