//! Network namespaces: one per broker node (and, in the multi-host layout, one per
//! NameServer), on a private bridge (10.77.0.0/24), so
//! partitions and packet loss are real `iptables` rules. Everything created here is
//! named `rmqj*` and deleted on drop (and before a run, in case a previous one died).

use std::process::Command;

/// The bridge in the root namespace.
pub const BRIDGE: &str = "rmqjbr";
/// The bridge's address: the NameServer and the harness's clients live here.
pub const HOST_IP: &str = "10.77.0.1";
const NS_PREFIX: &str = "rmqj-n";

/// A node's namespace name.
pub fn ns(i: usize) -> String {
    format!("{NS_PREFIX}{i}")
}

/// A node's address.
pub fn node_ip(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// Whether namespaces and iptables can be used here (root, `ip netns`, `iptables`).
pub fn available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return false;
    }
    let probe = format!("{NS_PREFIX}probe");
    let ok = run(&["ip", "netns", "add", &probe]).is_ok()
        && run(&[
            "ip", "netns", "exec", &probe, "iptables", "-w", "-L", "INPUT", "-n",
        ])
        .is_ok();
    quiet(&["ip", "netns", "del", &probe]);
    ok
}

/// The namespaces of one run; removed on drop.
#[derive(Debug)]
pub struct Netns {
    /// Broker namespaces (1..=brokers); faults aim at these.
    brokers: usize,
    /// Every namespace, NameServers' included.
    nodes: usize,
}

/// Removes every namespace and link a run may have left.
pub fn cleanup() {
    // Delete the host ends first: a veth pair goes away with it at once, whereas a
    // namespace's devices are torn down asynchronously after `ip netns del`.
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line
                .split(": ")
                .nth(1)
                .and_then(|n| n.split('@').next())
                .filter(|n| n.starts_with("rmqjv"))
            {
                quiet(&["ip", "link", "del", name]);
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line
                .split_whitespace()
                .next()
                .filter(|n| n.starts_with(NS_PREFIX))
            {
                quiet(&["ip", "netns", "del", name]);
            }
        }
    }
    quiet(&["ip", "link", "del", BRIDGE]);
}

impl Netns {
    /// Creates the bridge and `brokers + others` namespaces wired to it (the others, for
    /// NameServers, come after the brokers').
    ///
    /// # Errors
    /// An `ip` command failed (what it said is in the error).
    pub fn create(brokers: usize, others: usize) -> anyhow::Result<Self> {
        cleanup();
        let nodes = brokers + others;
        let me = Self { brokers, nodes };
        run(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE])?;
        run(&["ip", "link", "set", BRIDGE, "up"])?;
        for i in 1..=nodes {
            let ns = ns(i);
            let (host_end, ns_end) = (format!("rmqjv{i}"), format!("rmqjp{i}"));
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
            ])?;
            run(&["ip", "link", "set", &ns_end, "netns", &ns])?;
            run(&["ip", "link", "set", &host_end, "master", BRIDGE])?;
            run(&["ip", "link", "set", &host_end, "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", node_ip(i)),
                "dev",
                &ns_end,
            ])?;
            run(&["ip", "-n", &ns, "link", "set", &ns_end, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(me)
    }

    fn iptables(&self, i: usize, rule: &[&str]) -> anyhow::Result<()> {
        let ns = ns(i);
        let mut args = vec!["ip", "netns", "exec", ns.as_str(), "iptables", "-w"];
        args.extend_from_slice(rule);
        run(&args)
    }

    /// Drops packets between nodes `a` and `b`, both ways.
    ///
    /// # Errors
    /// `iptables` failed.
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.iptables(a, &["-A", "INPUT", "-s", &node_ip(b), "-j", "DROP"])?;
        self.iptables(b, &["-A", "INPUT", "-s", &node_ip(a), "-j", "DROP"])
    }

    /// Drops a fraction of every broker node's incoming packets.
    ///
    /// # Errors
    /// `iptables` failed.
    pub fn loss(&self, probability: f64) -> anyhow::Result<()> {
        let p = format!("{probability:.3}");
        for i in 1..=self.brokers {
            self.iptables(
                i,
                &[
                    "-A",
                    "INPUT",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every rule.
    ///
    /// # Errors
    /// `iptables` failed.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 1..=self.nodes {
            self.iptables(i, &["-F", "INPUT"])?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        cleanup();
    }
}
