//! A full disk: every node's data dir on its own small tmpfs. Above the write limit the
//! leader refuses new messages with the disk-full reason instead of a node running into
//! ENOSPC (which used to take the whole group down within a second); nobody exits,
//! consumers keep reading every acknowledged message, and writes resume by themselves once
//! space is freed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use raftmq_client::{Error, Message, Producer};
use raftmq_proto::WireError;

use crate::harness::{wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);
/// Each node's file system: big enough that the broker's 128 MiB reserve leaves room to
/// write before it.
const DISK_MB: u64 = 1024;
const BODY: usize = 256 << 10;

/// A tmpfs of [`DISK_MB`] mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(at: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK_MB}m"), "tmpfs"])
            .arg(at)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self(at.to_owned()))
    }

    /// (used, total) bytes, as `df` reports them.
    fn usage(&self) -> anyhow::Result<(u64, u64)> {
        let out = Command::new("df")
            .args(["-B1", "--output=used,size"])
            .arg(&self.0)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let nums: Vec<u64> = text
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        match nums[..] {
            [used, size] => Ok((used, size)),
            _ => anyhow::bail!("df said {text:?}"),
        }
    }

    /// Fills the file system to `percent` with a ballast file.
    fn fill_to(&self, percent: u64) -> anyhow::Result<()> {
        let (used, total) = self.usage()?;
        let want = (total * percent / 100).saturating_sub(used);
        let chunk = vec![0xA5u8; 1 << 20];
        let mut f = std::fs::File::create(self.ballast())?;
        let mut left = want;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut f, &chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        Ok(())
    }

    fn ballast(&self) -> PathBuf {
        self.0.join("ballast")
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn disk_full(e: &Error) -> bool {
    matches!(e, Error::Wire(WireError::Busy(m)) if m.contains("write limit"))
        || (matches!(e, Error::MaybeStored { .. }) && e.to_string().contains("write limit"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t67_a_full_disk_refuses_writes_keeps_reads_and_recovers_on_its_own() -> anyhow::Result<()>
{
    let root = tempfile::tempdir()?;
    let mounts = (1..=3)
        .map(|id| Mount::new(&root.path().join(format!("broker-a-n{id}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut c = Cluster::start(
        &[("broker-a", 3)],
        Tuning {
            data_root: Some(root.path().to_owned()),
            extra_config: "segment_bytes = 8388608\ndisk_high_water_percent = 85\n\
                           disk_write_limit_percent = 90\n"
                .into(),
            ..Tuning::default()
        },
    )
    .await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Full", 2, None).await?;
    // Replicas fill together: every disk to 80%, then messages take them over the limit
    // (here the 128 MiB reserve, at 87.5%, comes before the 90%).
    for m in &mounts {
        m.fill_to(80)?;
    }
    let p = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    let body = bytes::Bytes::from(vec![b'x'; BODY]);
    let mut acked = 0u64;
    let refusal = loop {
        match p.send(Message::new("Full", body.clone())).await {
            Ok(_) => acked += 1,
            Err(e) if disk_full(&e) => break e,
            Err(e) => anyhow::bail!("after {acked} sends: {e}"),
        }
        anyhow::ensure!(acked < 4_000, "4000 sends of 256 KiB and no refusal");
    };
    let text = refusal.to_string();
    assert!(
        text.contains("disk usage") && text.contains("90% write limit"),
        "{text}"
    );
    assert!(acked > 0, "the disks were full before the first send");

    // Nobody exited; the leader said why in one line; every acknowledged message is
    // readable, from the leader and from a follower.
    for id in 1..=3 {
        assert!(
            c.is_running("broker-a", id),
            "node {id} exited:\n{}",
            c.log_tail("broker-a", id)
        );
    }
    let leader = c.wait_leader("broker-a", T).await?;
    assert!(c
        .log_text("broker-a", leader)
        .contains("data disk above the write limit"));
    let follower = (1..=3).find(|&i| i != leader).unwrap_or(1);
    for id in [leader, follower] {
        let addr = c.node("broker-a", id).client_addr.clone();
        let mut read = 0;
        for q in 0..2 {
            read += c.read_queue(&addr, "Full", q).await?.len() as u64;
        }
        assert!(
            read >= acked,
            "node {id} serves {read} of {acked} acknowledged"
        );
    }
    // (No "still refused" check here: RocksDB deletes its old WAL file after a memtable
    // flush, ~70 MB, and writes then rightly resume before the ballast goes.)

    // Free the space: writes resume by themselves.
    for m in &mounts {
        std::fs::remove_file(m.ballast())?;
    }
    wait_until("writes after space was freed", T, || {
        let (p, body) = (&p, body.clone());
        async move {
            p.send(Message::new("Full", body)).await?;
            Ok(())
        }
    })
    .await?;
    for id in 1..=3 {
        assert!(c.is_running("broker-a", id), "node {id} exited");
    }
    drop(c);
    drop(mounts);
    Ok(())
}
