//! The writer's layout, and planted entries it must replace without following.

use super::*;
use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};

fn payload(path: &str, mode: u32, contents: &[u8]) -> Payload {
    Payload {
        path: path.to_owned(),
        mode,
        contents: Zeroizing::new(contents.to_vec()),
    }
}

fn open(target: &Path) -> Dir {
    Dir::open_no_symlinks(&fs::canonicalize(target).expect("canonical")).expect("open")
}

fn read(target: &Path, path: &str) -> Vec<u8> {
    fs::read(target.join(path)).expect("readable")
}

#[test]
fn writes_the_kubelet_layout_with_exact_modes() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path();
    let out = write(
        &open(t),
        &[
            payload("a", 0o644, b"one"),
            payload("dir/b", 0o400, b"two"),
            payload("z", 0, b""),
        ],
    )
    .expect("ok");
    assert_eq!(out, Outcome::Written);
    assert_eq!(read(t, "a"), b"one");
    assert_eq!(read(t, "dir/b"), b"two");
    let data = fs::read_link(t.join(DATA_DIR)).expect("..data");
    assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
    assert_eq!(
        fs::read_link(t.join("a")).expect("link"),
        Path::new("..data/a")
    );
    assert_eq!(
        fs::read_link(t.join("dir")).expect("link"),
        Path::new("..data/dir")
    );
    let mode = |p: &str| fs::metadata(t.join(p)).expect("meta").permissions().mode() & 0o777;
    assert_eq!((mode("a"), mode("dir/b"), mode("z")), (0o644, 0o400, 0));
}

#[test]
fn identical_content_writes_nothing_and_changes_swap() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path();
    write(
        &open(t),
        &[payload("a", 0o644, b"one"), payload("old", 0o644, b"x")],
    )
    .expect("ok");
    let first = fs::read_link(t.join(DATA_DIR)).expect("data");
    assert_eq!(
        write(
            &open(t),
            &[payload("a", 0o644, b"one"), payload("old", 0o644, b"x")]
        )
        .expect("ok"),
        Outcome::Unchanged
    );
    assert_eq!(fs::read_link(t.join(DATA_DIR)).expect("data"), first);
    assert_eq!(
        write(
            &open(t),
            &[payload("a", 0o600, b"one"), payload("old", 0o644, b"x")]
        )
        .expect("ok"),
        Outcome::Written,
        "mode change"
    );
    assert_eq!(
        write(&open(t), &[payload("a", 0o600, b"two")]).expect("ok"),
        Outcome::Written
    );
    assert_eq!(read(t, "a"), b"two");
    assert!(
        fs::symlink_metadata(t.join("old")).is_err(),
        "stale names are removed"
    );
    assert!(
        !t.join(&first).exists(),
        "the old data directory is removed"
    );
    let entries: Vec<_> = fs::read_dir(t)
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(entries.len(), 3, "a, ..data and one data dir: {entries:?}");
}

#[test]
fn bad_paths_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tmp");
    for bad in [
        "",
        "/abs",
        "../x",
        "a/../b",
        "..data",
        "a//b",
        "./a",
        "a/.",
        &"x".repeat(256),
    ] {
        assert!(
            matches!(
                write(&open(dir.path()), &[payload(bad, 0o644, b"v")]),
                Err(Error::InvalidPath { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        write(
            &open(dir.path()),
            &[payload("a", 0o644, b"1"), payload("a", 0o644, b"2")]
        ),
        Err(Error::Duplicate(_))
    ));
    assert!(matches!(
        write(
            &open(dir.path()),
            &[payload("a", 0o644, b"1"), payload("a/b", 0o644, b"2")]
        ),
        Err(Error::InvalidPath { .. })
    ));
    assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
}

#[test]
fn stray_files_colliding_with_new_names_are_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    fs::write(dir.path().join("a"), b"left by someone").expect("stray");
    write(&open(dir.path()), &[payload("a", 0o644, b"ours")]).expect("ok");
    assert!(
        fs::symlink_metadata(dir.path().join("a"))
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    assert_eq!(read(dir.path(), "a"), b"ours");
}

#[test]
fn data_dir_names_follow_kubelet() {
    let name = fresh_dir_name();
    assert!(is_own_dir_name(&name), "{name}");
    let (stamp, suffix) = name
        .trim_start_matches("..")
        .split_once('.')
        .expect("two parts");
    assert_eq!(stamp.len(), "2026_11_22_10_09_42".len(), "{name}");
    assert!(
        stamp.chars().all(|c| c.is_ascii_digit() || c == '_'),
        "{name}"
    );
    assert!(suffix.chars().all(|c| c.is_ascii_digit()), "{name}");
}

/// A directory outside the target with a file, standing for anything a planted link may name.
fn victim(root: &Path) -> PathBuf {
    let victim = root.join("victim");
    fs::create_dir_all(victim.join("sub")).expect("mkdir");
    fs::write(victim.join("secret"), b"not yours").expect("write");
    fs::write(victim.join("sub/file"), b"deep").expect("write");
    victim
}

fn victim_intact(victim: &Path) {
    assert_eq!(fs::read(victim.join("secret")).expect("kept"), b"not yours");
    assert_eq!(fs::read(victim.join("sub/file")).expect("kept"), b"deep");
}

#[test]
fn a_planted_data_link_to_an_absolute_directory_is_replaced_not_followed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let victim = victim(tmp.path());
    let t = tmp.path().join("target");
    fs::create_dir(&t).expect("mkdir");
    symlink(&victim, t.join(DATA_DIR)).expect("plant");
    symlink(&victim, t.join("..2026_01_01_00_00_00.0000000001")).expect("plant");
    write(&open(&t), &[payload("secret", 0o644, b"ours")]).expect("first");
    victim_intact(&victim);
    assert_eq!(read(&t, "secret"), b"ours");
    // Planted again between two writes: the next write neither follows nor keeps it.
    fs::remove_file(t.join(DATA_DIR)).expect("rm");
    symlink(&victim, t.join(DATA_DIR)).expect("plant");
    assert_eq!(
        write(&open(&t), &[payload("secret", 0o644, b"ours")]).expect("second"),
        Outcome::Written
    );
    victim_intact(&victim);
    assert_eq!(read(&t, "secret"), b"ours");
    assert!(is_own_dir_name(
        &fs::read_link(t.join(DATA_DIR))
            .expect("data")
            .to_string_lossy()
    ));
    assert!(
        fs::symlink_metadata(t.join("..2026_01_01_00_00_00.0000000001"))
            .expect("left alone")
            .file_type()
            .is_symlink(),
        "a link named like a data directory is not the writer's; it stays"
    );
}

#[test]
fn a_planted_data_directory_is_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let victim = victim(tmp.path());
    let t = tmp.path().join("target");
    fs::create_dir_all(t.join(DATA_DIR)).expect("mkdir");
    symlink(&victim, t.join(DATA_DIR).join("out")).expect("plant");
    write(&open(&t), &[payload("a", 0o644, b"ours")]).expect("write");
    victim_intact(&victim);
    assert_eq!(read(&t, "a"), b"ours");
    assert!(
        fs::symlink_metadata(t.join(DATA_DIR))
            .expect("meta")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn planted_links_at_object_names_are_replaced_even_when_the_content_is_unchanged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let victim = victim(tmp.path());
    let t = tmp.path().join("target");
    fs::create_dir(&t).expect("mkdir");
    symlink(victim.join("secret"), t.join("a")).expect("plant");
    symlink(&victim, t.join("dir")).expect("plant");
    let files = [
        payload("a", 0o644, b"ours"),
        payload("dir/b", 0o644, b"ours too"),
    ];
    write(&open(&t), &files).expect("first");
    assert_eq!(read(&t, "a"), b"ours");
    assert_eq!(read(&t, "dir/b"), b"ours too");
    victim_intact(&victim);
    // The same content again, with links planted in between: not "unchanged".
    fs::remove_file(t.join("a")).expect("rm");
    symlink(victim.join("secret"), t.join("a")).expect("plant");
    fs::remove_file(t.join("dir")).expect("rm");
    fs::create_dir(t.join("dir")).expect("plant a directory");
    symlink(&victim, t.join("dir/b")).expect("plant");
    assert_eq!(write(&open(&t), &files).expect("second"), Outcome::Written);
    assert_eq!(read(&t, "a"), b"ours");
    assert_eq!(read(&t, "dir/b"), b"ours too");
    victim_intact(&victim);
}

#[test]
fn a_link_planted_inside_the_data_directory_forces_a_fresh_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let victim = victim(tmp.path());
    let t = tmp.path().join("target");
    fs::create_dir(&t).expect("mkdir");
    let files = [payload("a", 0o644, b"ours")];
    write(&open(&t), &files).expect("first");
    let data = t.join(fs::read_link(t.join(DATA_DIR)).expect("data"));
    fs::remove_file(data.join("a")).expect("rm");
    symlink(victim.join("secret"), data.join("a")).expect("plant");
    assert_eq!(write(&open(&t), &files).expect("second"), Outcome::Written);
    assert_eq!(read(&t, "a"), b"ours");
    assert!(!data.exists(), "the tampered directory is removed");
    victim_intact(&victim);
    let reader: Vec<_> = current_files(&open(&t))
        .expect("files")
        .into_iter()
        .map(|f| (f.path, f.mode, f.contents.to_vec()))
        .collect();
    assert_eq!(reader, vec![("a".to_owned(), 0o644, b"ours".to_vec())]);
}

#[test]
fn clear_removes_only_what_the_writer_made() {
    let tmp = tempfile::tempdir().expect("tmp");
    let victim = victim(tmp.path());
    let t = tmp.path().join("target");
    fs::create_dir(&t).expect("mkdir");
    write(
        &open(&t),
        &[payload("a", 0o644, b"1"), payload("d/b", 0o644, b"2")],
    )
    .expect("write");
    assert!(
        clear(&open(&t)).expect("clear"),
        "only the writer's entries"
    );
    assert!(entries(&t).is_empty());
    write(&open(&t), &[payload("a", 0o644, b"1")]).expect("write");
    fs::write(t.join("mine"), b"user file").expect("write");
    symlink(&victim, t.join("elsewhere")).expect("link");
    assert!(!clear(&open(&t)).expect("clear"));
    assert_eq!(entries(&t), vec!["elsewhere".to_owned(), "mine".to_owned()]);
    victim_intact(&victim);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
