//! `raftmq-jepsen`: the chaos harness (real broker processes, faults, a checker).

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "the chaos harness is not built yet: see the chaos-harness issue and jepsen/README.md"
    )
}
