//! Republishes (kubelet's `requiresRepublish`): nothing written for identical content, an atomic swap for new
//! content, the previous files kept when the provider fails, and the rotation poll interval.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use courier_tests::calls::assert_status;
use courier_tests::shim::mount_entry;
use serde_json::Value;
use tonic::Code;

use crate::support::{Node, backdate, data_dir, entries, read, stamp};

/// How far back content is dated so it reads as old: far beyond any poll interval a test uses.
const LONG_AGO: Duration = Duration::from_secs(2 * 3600);

#[tokio::test]
async fn identical_content_writes_nothing() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider
        .set_files(&[("a", 0o644, b"one"), ("d/b", 0o600, b"two")]);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    let data = data_dir(&target);
    // Dated back, so a rewrite, however soon, would show as a newer time.
    for path in [target.clone(), target.join(&data), target.join("d/b")] {
        backdate(&path, LONG_AGO)?;
    }
    let (target_mtime, _) = stamp(&target);
    let (data_mtime, data_inode) = stamp(&target.join(&data));
    let (file_mtime, file_inode) = stamp(&target.join("d/b"));
    let listing = entries(&target);
    let status_version = node
        .spcps(&pod)
        .and_then(|s| s["metadata"]["resourceVersion"].as_str().map(str::to_owned));

    for _ in 0..3 {
        kubelet.publish(&volume).await?;
    }
    assert_eq!(
        node.provider.mount_count(),
        4,
        "with a 0s poll interval every republish asks the provider"
    );
    assert_eq!(
        data_dir(&target),
        data,
        "..data still points at the same directory"
    );
    assert_eq!(
        stamp(&target).0,
        target_mtime,
        "the target directory was not touched"
    );
    assert_eq!(stamp(&target.join(&data)), (data_mtime, data_inode));
    assert_eq!(stamp(&target.join("d/b")), (file_mtime, file_inode));
    assert_eq!(entries(&target), listing);
    assert_eq!(
        node.spcps(&pod)
            .and_then(|s| s["metadata"]["resourceVersion"].as_str().map(str::to_owned)),
        status_version,
        "the status record was not rewritten"
    );

    // A mode change alone is a change.
    node.provider
        .set_files(&[("a", 0o640, b"one"), ("d/b", 0o600, b"two")]);
    kubelet.publish(&volume).await?;
    assert_ne!(data_dir(&target), data);
    Ok(())
}

/// A file body that shows whether it was read whole: its generation at both ends, padding between.
fn body(generation: u32) -> Vec<u8> {
    let mut text = format!("generation {generation}\n");
    text.push_str(&"#".repeat(48 * 1024));
    text.push_str(&format!("\nend {generation}\n"));
    text.into_bytes()
}

/// The generation of a whole body, `None` if it is torn or foreign.
fn generation_of(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?;
    let generation: u32 = text
        .lines()
        .next()?
        .strip_prefix("generation ")?
        .parse()
        .ok()?;
    (bytes == body(generation).as_slice()).then_some(generation)
}

#[derive(Debug, Default)]
struct ReaderReport {
    reads: u64,
    mixed: Vec<(u32, u32)>,
    torn: u64,
    vanished: u64,
    generations: BTreeSet<u32>,
}

/// Reads `a` and `nested/c` through one resolution of `..data` as a consistent-snapshot reader does, until
/// `stop`: the two must always carry the same generation.
fn snapshot_reader(target: PathBuf, stop: Arc<AtomicBool>) -> ReaderReport {
    let mut report = ReaderReport::default();
    while !stop.load(Ordering::Relaxed) {
        let Ok(dir) = std::fs::read_link(target.join("..data")) else {
            continue;
        };
        let dir = target.join(dir);
        match (
            std::fs::read(dir.join("a")),
            std::fs::read(dir.join("nested/c")),
        ) {
            (Ok(a), Ok(c)) => {
                report.reads += 1;
                match (generation_of(&a), generation_of(&c)) {
                    (Some(x), Some(y)) if x == y => {
                        report.generations.insert(x);
                    }
                    (Some(x), Some(y)) => report.mixed.push((x, y)),
                    _ => report.torn += 1,
                }
            }
            // The old directory was removed after the swap: this snapshot is gone, never mixed.
            _ => report.vanished += 1,
        }
    }
    report
}

/// Reads `a` and `b` through their top-level symlinks: each file must always be whole.
fn file_reader(target: PathBuf, stop: Arc<AtomicBool>) -> ReaderReport {
    let mut report = ReaderReport::default();
    while !stop.load(Ordering::Relaxed) {
        for name in ["a", "b"] {
            match std::fs::read(target.join(name)) {
                Ok(bytes) => {
                    report.reads += 1;
                    match generation_of(&bytes) {
                        Some(generation) => {
                            report.generations.insert(generation);
                        }
                        None => report.torn += 1,
                    }
                }
                Err(_) => report.vanished += 1,
            }
        }
    }
    report
}

#[tokio::test]
async fn new_content_is_swapped_in_atomically_under_concurrent_readers() -> anyhow::Result<()> {
    const ROUNDS: u32 = 40;
    let node = Node::start_with(|shim| shim.metrics()).await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    let set_generation = |generation: u32| {
        let content = body(generation);
        node.provider.set_files(&[
            ("a", 0o644, &content),
            ("b", 0o644, &content),
            ("nested/c", 0o400, &content),
        ]);
    };
    set_generation(0);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let snapshot = std::thread::spawn({
        let (target, stop) = (target.clone(), Arc::clone(&stop));
        move || snapshot_reader(target, stop)
    });
    let files = std::thread::spawn({
        let (target, stop) = (target.clone(), Arc::clone(&stop));
        move || file_reader(target, stop)
    });
    let mut data_dirs = BTreeSet::new();
    for generation in 1..=ROUNDS {
        set_generation(generation);
        kubelet.publish(&volume).await?;
        data_dirs.insert(data_dir(&target));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let snapshot = snapshot
        .join()
        .map_err(|_| anyhow::anyhow!("the snapshot reader panicked"))?;
    let files = files
        .join()
        .map_err(|_| anyhow::anyhow!("the file reader panicked"))?;

    assert!(
        snapshot.mixed.is_empty(),
        "a reader saw files of two generations at once: {snapshot:?}"
    );
    assert_eq!(
        snapshot.torn, 0,
        "a reader saw a partly written file: {snapshot:?}"
    );
    assert_eq!(
        files.torn, 0,
        "a reader saw a partly written file: {files:?}"
    );
    assert!(
        snapshot.generations.len() > 1 && files.generations.len() > 1,
        "the readers saw the rotations: {snapshot:?} {files:?}"
    );
    assert!(snapshot.reads > 100, "{snapshot:?}");
    assert_eq!(
        data_dirs.len(),
        ROUNDS as usize,
        "every round swapped in a fresh directory"
    );
    assert_eq!(
        read(&target, "a").lines().next(),
        Some(format!("generation {ROUNDS}").as_str())
    );
    let data_dirs_left: Vec<String> = entries(&target)
        .into_iter()
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    assert_eq!(
        data_dirs_left.len(),
        1,
        "old data directories are removed: {data_dirs_left:?}"
    );
    assert_eq!(
        node.shim
            .metrics()
            .await?
            .count("courier_shim_rotations_total", &[]),
        u64::from(ROUNDS)
    );
    Ok(())
}

#[tokio::test]
async fn names_dropped_by_the_provider_disappear_on_the_next_swap() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.set_files(&[
        ("a", 0o644, b"1"),
        ("dir/x", 0o644, b"x"),
        ("keep", 0o644, b"k"),
    ]);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    node.provider.set_files(&[
        ("b", 0o644, b"2"),
        ("dir/y", 0o644, b"y"),
        ("keep", 0o644, b"k"),
    ]);
    kubelet.publish(&volume).await?;

    let visible: Vec<String> = entries(&target)
        .into_iter()
        .filter(|n| !n.starts_with(".."))
        .collect();
    assert_eq!(visible, ["b", "dir", "keep"]);
    assert!(!target.join("dir/x").exists());
    assert_eq!(read(&target, "dir/y"), "y");
    Ok(())
}

fn events_with_reason(node: &Node, pod: &courier_tests::PodFixture, reason: &str) -> Vec<Value> {
    node.kube
        .events_about(pod.namespace(), pod.name())
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

#[tokio::test]
async fn a_failed_republish_in_report_mode_keeps_the_files_and_says_so() -> anyhow::Result<()> {
    let node = Node::start_with(|shim| shim.metrics()).await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.set_files(&[("a", 0o644, b"first")]);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    let data = data_dir(&target);
    // The first publish may have met a NotFound while the class was on its way through the watch.
    let errors_before = node
        .shim
        .metrics()
        .await?
        .count("courier_shim_node_publish_total", &[("result", "error")]);

    node.provider
        .fail_with(Code::PermissionDenied, "backend said no");
    kubelet.publish(&volume).await.map_err(|s| {
        anyhow::anyhow!(
            "report mode answers success, got {s:?}; log:\n{}",
            node.logs()
        )
    })?;
    assert_eq!(read(&target, "a"), "first", "the previous files are kept");
    assert_eq!(data_dir(&target), data);
    assert!(mount_entry(&target)?.is_some(), "still mounted");

    let events = events_with_reason(&node, &pod, "MountRotationFailed");
    assert_eq!(
        events.len(),
        1,
        "one Warning per failed republish: {events:?}"
    );
    let event = &events[0];
    assert_eq!(event["type"], "Warning");
    assert!(
        event["message"]
            .as_str()
            .unwrap_or_default()
            .contains("backend said no"),
        "{event}"
    );
    assert_eq!(event["involvedObject"]["kind"], "Pod");
    assert_eq!(event["involvedObject"]["uid"], pod.uid());
    let name = event["metadata"]["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with(&format!("{}.", pod.name())),
        "generateName <pod>.: {name}"
    );

    node.provider.fail_with_error_code("Throttled");
    kubelet.publish(&volume).await?;
    let events = events_with_reason(&node, &pod, "MountRotationFailed");
    assert_eq!(events.len(), 2);
    assert!(
        events[1]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("provider error code Throttled"),
        "{}",
        events[1]
    );
    assert_eq!(read(&target, "a"), "first");

    let metrics = node.shim.metrics().await?;
    assert_eq!(
        metrics.count("courier_shim_republish_errors_total", &[]),
        2,
        "{}",
        metrics.text()
    );
    assert_eq!(
        metrics.count("courier_shim_node_publish_total", &[("result", "error")]) - errors_before,
        2,
        "{}",
        metrics.text()
    );

    node.provider.set_files(&[("a", 0o644, b"second")]);
    kubelet.publish(&volume).await?;
    assert_eq!(
        read(&target, "a"),
        "second",
        "the next good republish rotates"
    );
    assert_eq!(
        node.shim
            .metrics()
            .await?
            .count("courier_shim_rotations_total", &[]),
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_republish_in_fail_mode_fails_the_call_and_keeps_the_files() -> anyhow::Result<()>
{
    let node = Node::start_with(|shim| shim.republish_errors("fail")).await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider
        .set_files(&[("a", 0o644, b"first"), ("d/b", 0o400, b"b")]);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    node.provider
        .fail_with(Code::PermissionDenied, "backend said no");
    assert_status(
        kubelet.publish(&volume).await,
        Code::PermissionDenied,
        &[
            "failed to mount secrets store objects for pod",
            "backend said no",
        ],
    );
    assert!(mount_entry(&target)?.is_some(), "still mounted");
    assert_eq!(read(&target, "a"), "first");
    assert_eq!(read(&target, "d/b"), "b");
    assert_eq!(
        events_with_reason(&node, &pod, "MountRotationFailed").len(),
        1
    );
    kubelet.unpublish(&volume).await?;
    assert!(!target.exists());
    Ok(())
}

#[tokio::test]
async fn content_younger_than_the_poll_interval_is_not_refreshed() -> anyhow::Result<()> {
    // The shim judges content's age by the target's modification time; an hour-long interval makes every write
    // young for the whole test, and dating the target back makes it old, with no waiting either way.
    let interval = Duration::from_secs(3600);
    let node = Node::start_with(|shim| shim.rotation_poll_interval(interval)).await?;
    let pod = node.pod("team-a");
    node.fake_spc(&pod, &[("objects", "x")]);
    node.provider.set_files(&[("a", 0o644, b"one")]);
    let volume = node.volume(&pod);
    let target = volume.target_path();
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;
    assert_eq!(node.provider.mount_count(), 1);

    node.provider.set_files(&[("a", 0o644, b"two")]);
    kubelet.publish(&volume).await?;
    kubelet.publish(&volume).await?;
    assert_eq!(
        node.provider.mount_count(),
        1,
        "content younger than the interval: the provider is not asked"
    );
    assert_eq!(read(&target, "a"), "one");

    backdate(&target, LONG_AGO)?;
    kubelet.publish(&volume).await?;
    assert_eq!(node.provider.mount_count(), 2);
    assert_eq!(read(&target, "a"), "two");
    kubelet.publish(&volume).await?;
    assert_eq!(
        node.provider.mount_count(),
        2,
        "just rewritten, so fresh again"
    );

    // Unchanged content leaves the mtime alone, so once it is older than the interval every republish asks.
    backdate(&target, LONG_AGO)?;
    kubelet.publish(&volume).await?;
    kubelet.publish(&volume).await?;
    assert_eq!(node.provider.mount_count(), 4);
    Ok(())
}
