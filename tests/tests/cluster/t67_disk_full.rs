//! A full disk: every node's data dir on its own small tmpfs. Above the write limit the
//! leader refuses new messages with the disk-full reason instead of a node running into
//! ENOSPC (which used to take the whole group down within a second); a follower without
//! room stops taking appends; nobody exits, consumers keep reading every acknowledged
//! message, and writes resume by themselves once space is freed; on a small disk
//! retention keeps room by deleting the oldest segments.

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

/// A tmpfs of `mb` MiB mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(at: &Path, mb: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
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

/// One tmpfs of `mb` MiB per node of a 3-node group `broker-a`, under `root`.
fn mounts(root: &Path, mb: u64) -> anyhow::Result<Vec<Mount>> {
    (1..=3)
        .map(|id| Mount::new(&root.join(format!("broker-a-n{id}")), mb))
        .collect()
}

/// A 3-node group whose data dirs are the `mounts` under `root`.
async fn start(root: &Path, extra_config: &str) -> anyhow::Result<Cluster> {
    let c = Cluster::start(
        &[("broker-a", 3)],
        Tuning {
            data_root: Some(root.to_owned()),
            extra_config: extra_config.into(),
            ..Tuning::default()
        },
    )
    .await?;
    c.wait_leader("broker-a", T).await?;
    Ok(c)
}

/// Asserts that every node of `broker-a` is still running.
fn all_running(c: &mut Cluster) {
    for id in 1..=3 {
        assert!(
            c.is_running("broker-a", id),
            "node {id} exited:\n{}",
            c.log_tail("broker-a", id)
        );
    }
}

/// Messages of both queues of `topic` that node `id` serves.
async fn served(c: &Cluster, id: u64, topic: &str) -> anyhow::Result<u64> {
    let addr = c.node("broker-a", id).client_addr.clone();
    let mut read = 0;
    for q in 0..2 {
        read += c.read_queue(&addr, topic, q).await?.len() as u64;
    }
    Ok(read)
}

fn disk_full(e: &Error) -> bool {
    matches!(e, Error::Wire(WireError::Busy(m)) if m.contains("write limit"))
        || (matches!(e, Error::MaybeStored { .. }) && e.to_string().contains("write limit"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t67_a_full_disk_refuses_writes_keeps_reads_and_recovers_on_its_own() -> anyhow::Result<()>
{
    let root = tempfile::tempdir()?;
    let mounts = mounts(root.path(), DISK_MB)?;
    let mut c = start(
        root.path(),
        "segment_bytes = 8388608\ndisk_high_water_percent = 85\ndisk_write_limit_percent = 90\n",
    )
    .await?;
    c.admin()?.create_topic("Full", 2, None).await?;
    let p = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    // A delayed message still pending keeps every entry after it from retention, which
    // above the high-water mark would otherwise delete the oldest messages to make room
    // (the retention test below): here the disks must fill.
    p.send(Message::new("Full", "later").with_delay_level(18))
        .await?;
    // Replicas fill together: every disk to 80%, then messages take them over the limit
    // (here the 128 MiB reserve, at 87.5%, comes before the 90%).
    for m in &mounts {
        m.fill_to(80)?;
    }
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
    all_running(&mut c);
    let leader = c.wait_leader("broker-a", T).await?;
    assert!(c
        .log_text("broker-a", leader)
        .contains("data disk above the write limit"));
    let follower = (1..=3).find(|&i| i != leader).unwrap_or(1);
    for id in [leader, follower] {
        let read = served(&c, id, "Full").await?;
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
    all_running(&mut c);
    drop(c);
    drop(mounts);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t67_a_full_leader_refuses_writes_and_a_full_follower_stops_taking_appends(
) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let mounts = mounts(root.path(), DISK_MB)?;
    let mut c = start(root.path(), "").await?;
    c.admin()?.create_topic("Full", 2, None).await?;
    let p = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    let body = bytes::Bytes::from(vec![b'y'; 1024]);
    let mut acked = 0u64;

    // Only the leader's disk is full: producers hear why; the group stays up.
    let leader = c.wait_leader("broker-a", T).await?;
    let lm = &mounts[(leader - 1) as usize];
    lm.fill_to(97)?;
    wait_until("the full leader's refusal", T, || {
        let (p, body) = (&p, body.clone());
        async move {
            match p.send(Message::new("Full", body)).await {
                Err(e) if disk_full(&e) => Ok(()),
                Ok(_) => anyhow::bail!("still taking messages"),
                Err(e) => anyhow::bail!("another error: {e}"),
            }
        }
    })
    .await?;
    all_running(&mut c);
    std::fs::remove_file(lm.ballast())?;
    wait_until("writes after the leader's disk was freed", T, || {
        let (p, body) = (&p, body.clone());
        async move {
            p.send(Message::new("Full", body)).await?;
            Ok(())
        }
    })
    .await?;
    acked += 1;

    // Only one follower's disk is full: it refuses the leader's appends instead of
    // running into ENOSPC, the other follower makes the quorum, and it catches up once
    // its disk has room.
    let leader = c.wait_leader("broker-a", T).await?;
    let full = (1..=3).find(|&i| i != leader).unwrap_or(1);
    let fm = &mounts[(full - 1) as usize];
    fm.fill_to(98)?;
    for _ in 0..200 {
        p.send(Message::new("Full", body.clone())).await?;
        acked += 1;
    }
    wait_until("the full follower's refusal", T, || {
        let text = c.log_text("broker-a", full);
        async move {
            anyhow::ensure!(
                text.contains("refusing replicated entries"),
                "not logged yet"
            );
            Ok(())
        }
    })
    .await?;
    all_running(&mut c);
    assert!(
        served(&c, full, "Full").await? < acked,
        "the full follower took every entry"
    );
    std::fs::remove_file(fm.ballast())?;
    wait_until("the follower caught up", T, || {
        let c = &c;
        async move {
            let read = served(c, full, "Full").await?;
            anyhow::ensure!(read >= acked, "serves {read} of {acked}");
            Ok(())
        }
    })
    .await?;
    assert!(c
        .log_text("broker-a", full)
        .contains("data disk below the write limit again; taking replicated entries"));
    all_running(&mut c);
    drop(c);
    drop(mounts);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t67_retention_keeps_room_on_a_small_disk() -> anyhow::Result<()> {
    // 512 MiB disks and the default settings: segments are capped at 32 MiB, retention
    // starts at 50% (twice the reserve free), writes are refused within 128 MiB of full.
    const SMALL_MB: u64 = 512;
    let root = tempfile::tempdir()?;
    let mounts = mounts(root.path(), SMALL_MB)?;
    let mut c = start(root.path(), "").await?;
    c.admin()?.create_topic("Small", 2, None).await?;
    let p = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    let body = bytes::Bytes::from(vec![b'z'; BODY]);
    // Twice the disk in messages: without retention the disks fill at about a third.
    let want = 2 * (SMALL_MB << 20) / BODY as u64;
    let (mut acked, mut refused) = (0u64, 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while acked < want {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{acked} of {want} sent in 300 s ({refused} refused for disk space)"
        );
        match p.send(Message::new("Small", body.clone())).await {
            Ok(_) => acked += 1,
            Err(e) if disk_full(&e) => {
                // Retention frees space within seconds; the producer waits for it.
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => anyhow::bail!("after {acked} sends: {e}"),
        }
    }
    all_running(&mut c);
    let status = c.admin()?.topic_status("Small").await?;
    let (min, max): (u64, u64) = status.iter().fold((0, 0), |(a, b), (_, q)| {
        (a + q.min_offset.0, b + q.max_offset.0)
    });
    assert_eq!(max, acked, "{status:?}");
    assert!(min > 0, "retention deleted nothing: {status:?}");
    for (id, m) in (1..=3).zip(&mounts) {
        assert!(
            c.log_text("broker-a", id)
                .contains("retention deleted old segments"),
            "node {id} deleted no segment"
        );
        let (used, total) = m.usage()?;
        assert!(used < total, "node {id}'s disk is full");
    }
    eprintln!("{acked} sent, {refused} refused for space, queues from {min} to {max}");
    drop(c);
    drop(mounts);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t67_topic_delete_frees_its_segments_on_a_small_disk() -> anyhow::Result<()> {
    // 512 MiB disks, default settings (32 MiB segments): 150 MiB of one topic, then a
    // few messages of another. Deleting the first frees the segments that held only its
    // messages within seconds, not after the 72 h retention; the other loses nothing.
    const SMALL_MB: u64 = 512;
    const GONE: usize = 600;
    let root = tempfile::tempdir()?;
    let mounts = mounts(root.path(), SMALL_MB)?;
    let mut c = start(root.path(), "").await?;
    let admin = c.admin()?;
    admin.create_topic("Gone", 2, None).await?;
    admin.create_topic("Kept", 2, None).await?;
    let p = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    let body = bytes::Bytes::from(vec![b'g'; BODY]);
    for i in 0..GONE {
        p.send(Message::new("Gone", body.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("send {i}: {e}"))?;
    }
    for i in 0..10 {
        p.send(Message::new("Kept", format!("k{i}"))).await?;
    }
    // Every replica holds the 150 MiB before the delete.
    let held = (GONE * BODY) as u64;
    let mut before = Vec::new();
    for (id, m) in (1..=3).zip(&mounts) {
        wait_until(&format!("node {id} to hold Kept"), T, || async {
            anyhow::ensure!(served(&c, id, "Kept").await? == 10);
            Ok(())
        })
        .await?;
        before.push(m.usage()?.0);
    }
    eprintln!("used before the delete: {before:?} bytes");
    admin.delete_topic("Gone").await?;
    let started = std::time::Instant::now();
    for ((id, m), used) in (1..=3).zip(&mounts).zip(&before) {
        let freed = wait_until(&format!("node {id} to free Gone's segments"), T, || async {
            let now = m.usage()?.0;
            // All but the segment shared with Kept and the active one.
            anyhow::ensure!(
                now + held - 2 * (32 << 20) <= *used,
                "node {id}: {now} bytes used, {used} before"
            );
            // Its line follows the files' removal (the index clean-up comes between).
            anyhow::ensure!(
                c.log_text("broker-a", id)
                    .contains("retention deleted old segments"),
                "node {id}: space freed, no retention line yet"
            );
            Ok(())
        })
        .await;
        if let Err(e) = freed {
            anyhow::bail!("{e}\n{}", c.log_tail("broker-a", id));
        }
    }
    let after: Vec<u64> = mounts
        .iter()
        .map(|m| m.usage().map(|u| u.0))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "used {:.1?} s after the delete: {after:?} bytes",
        started.elapsed().as_secs_f64()
    );
    // Kept lost nothing, on any replica, and takes writes.
    for id in 1..=3 {
        assert_eq!(served(&c, id, "Kept").await?, 10, "node {id}");
    }
    p.send(Message::new("Kept", "after")).await?;
    all_running(&mut c);
    drop(c);
    drop(mounts);
    Ok(())
}
