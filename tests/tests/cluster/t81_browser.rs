//! The console's browser suite (`console/browser/console.test.mjs`: playwright-core driving
//! Debian's chromium under `node --test`) against a real `raftmq console` and a 3-process
//! group started here. `scripts/prereqs.sh` installs chromium, node and the pinned npm
//! packages; a missing one fails this test with the command to run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{raftmq_bin, Cluster, Tuning};
use crate::t80_console::{Console, ADMIN, READER};

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() -> anyhow::Result<()> {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/browser");
    anyhow::ensure!(
        Path::new(CHROMIUM).exists() && suite.join("node_modules/playwright-core").exists(),
        "the browser suite needs {CHROMIUM} and console/browser/node_modules: run scripts/prereqs.sh as root"
    );
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    c.wait_leader("broker-a", Duration::from_secs(60)).await?;
    let console = Console::start(&c)?;
    console.ready().await?;
    let pids: serde_json::Map<String, serde_json::Value> = (1..=3)
        .filter_map(|id| Some((id.to_string(), c.pid("broker-a", id)?.into())))
        .collect();
    let out = tokio::task::spawn_blocking({
        let (url, ns, bin) = (
            format!("http://{}", console.addr),
            c.namesrv.clone(),
            raftmq_bin()?,
        );
        let pids = serde_json::Value::Object(pids).to_string();
        move || {
            Command::new("node")
                .args(["--test", "--test-reporter=spec", "console.test.mjs"])
                .current_dir(&suite)
                .env("CONSOLE_URL", url)
                .env("ADMIN_TOKEN", ADMIN)
                .env("READ_TOKEN", READER)
                .env("RAFTMQ_BIN", bin)
                .env("NAMESRV", ns)
                .env("NODE_PIDS", pids)
                .env("CHROMIUM", CHROMIUM)
                .output()
        }
    })
    .await??;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    anyhow::ensure!(out.status.success(), "the browser suite failed:\n{report}");
    anyhow::ensure!(
        report.contains("pass 7"),
        "not every browser test ran:\n{report}"
    );
    Ok(())
}
