//! The crate dependency graph of design §2, checked with `cargo metadata` so it cannot
//! drift: no cycles, no upward edges, `client` never depends on server crates.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let all = [
        "metrics", "proto", "remoting", "store", "raft", "broker", "namesrv", "client", "console",
    ];
    [
        ("metrics", vec![]),
        ("proto", vec![]),
        ("remoting", vec![]),
        ("store", vec!["metrics", "proto"]),
        ("raft", vec!["proto", "store"]),
        (
            "broker",
            vec!["metrics", "proto", "remoting", "store", "raft"],
        ),
        ("namesrv", vec!["metrics", "proto", "remoting"]),
        ("client", vec!["proto"]),
        ("console", vec!["client", "proto"]),
        ("cli", all.to_vec()),
        ("jepsen", vec!["client", "proto"]),
        (
            "tests",
            vec!["client", "proto", "remoting", "broker", "namesrv"],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.into_iter().collect()))
    .collect()
}

#[test]
fn crate_graph_matches_the_design() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let allowed = allowed();
    let mut seen = BTreeSet::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let name = pkg["name"].as_str().unwrap_or_default();
        let Some(short) = name.strip_prefix("raftmq-") else {
            continue;
        };
        seen.insert(short.to_owned());
        let ok = allowed
            .get(short)
            .ok_or_else(|| anyhow::anyhow!("crate {name} is not in the design's graph"))?;
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if let Some(dep_short) = dep_name.strip_prefix("raftmq-") {
                anyhow::ensure!(
                    ok.contains(dep_short),
                    "{name} depends on {dep_name}, which design §2 forbids (allowed: {ok:?})"
                );
            }
        }
    }
    let expected: BTreeSet<String> = allowed.keys().map(|s| s.to_string()).collect();
    anyhow::ensure!(
        seen == expected,
        "workspace crates {seen:?} differ from the design's {expected:?}"
    );
    Ok(())
}
