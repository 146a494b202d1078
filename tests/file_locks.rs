//! File locks end to end, with criu's `--file-locks`: a workload holding
//! flocks (exclusive; shared through two fds of one open file), OFD
//! locks, a read lease and POSIX locks (`locks`) is dumped, killed and
//! restored, then checks the lock lines of its fdinfo (kind, type, owner,
//! file, range) and that a child of its own cannot take what conflicts
//! with each lock. Negative controls: a restore without `--file-locks`
//! and images changed lock by lock must make the workload fail, naming
//! the fd; a conflicting lock held elsewhere makes the restore fail,
//! naming the lock, before the process runs.

mod common;

use common::{setup, start, steady};
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::{ProcSnapshot, TempDir};

/// start → dump --file-locks → kill → (tweak) → restore (with
/// --file-locks when `restore_locks`) → same /proc → verdict.
fn cycle(args: &[&str], tweak: Option<common::Tweak>, restore_locks: bool) -> Result<(), String> {
    let mut w = start("locks", args);
    let images = TempDir::new("locks");
    let before = steady(w.pid);
    Dump::new(w.pid)
        .images_dir(images.path())
        .file_locks(true)
        .run()
        .map_err(|e| format!("dumping: {e}"))?;
    w.reap();
    let dir = ImageDir::open(images.path()).unwrap();
    if let Some(t) = tweak {
        t(&dir, w.pid);
        std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
    }
    let r = Restore::new(images.path())
        .detach(true)
        .file_locks(restore_locks)
        .run()
        .map_err(|e| format!("restoring: {e}"))?;
    assert_eq!(r.pid, w.pid);
    if tweak.is_none() && restore_locks {
        let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
        assert!(diff.is_empty(), "/proc differs:\n{}", diff.join("\n"));
    }
    w.verdict()
}

#[test]
fn file_locks_carry_on() {
    let _g = setup();
    cycle(&[], None, true).unwrap();
    cycle(&["posix"], None, true).unwrap();
}

#[test]
fn a_leave_running_dump_keeps_the_locks() {
    let _g = setup();
    let w = start("locks", &["posix"]);
    let images = TempDir::new("locks-lr");
    Dump::new(w.pid)
        .images_dir(images.path())
        .file_locks(true)
        .leave_running(true)
        .run()
        .unwrap();
    let locks: Vec<pb::FileLockEntry> = ImageDir::open(images.path())
        .unwrap()
        .read_all(ImageFile::FileLocks)
        .unwrap();
    // flock 10, flock 11 (once for 11 and 12), OFD 13 twice, lease 14,
    // POSIX 15 twice.
    const WANT: [(u64, u64); 7] = [
        (2, 10),
        (2, 11),
        (4, 13),
        (4, 13),
        (8, 14),
        (1, 15),
        (1, 15),
    ];
    let kinds: Vec<(u64, u64)> = locks
        .iter()
        .map(|l| (u64::from(l.flag), l.fd as u64))
        .collect();
    assert_eq!(kinds, WANT, "{locks:?}");
    // CRIU's own reader takes them (Debian's crit), with the same values.
    let out = std::process::Command::new("crit")
        .args(["decode", "-i"])
        .arg(images.path().join("filelocks.img"))
        .output()
        .expect("running crit (Debian's criu package)");
    assert!(out.status.success(), "crit decode filelocks.img: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let crit: Vec<(u64, u64)> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["flag"].as_u64().unwrap(), e["fd"].as_u64().unwrap()))
        .collect();
    assert_eq!(crit, WANT);
    w.verdict().unwrap();
}

/// The negative control of the whole: without --file-locks at the
/// restore, the locks are left untaken.
#[test]
fn without_file_locks_the_restore_leaves_them_untaken() {
    let _g = setup();
    let e = cycle(&["posix"], None, false).unwrap_err();
    assert!(e.contains("FAIL: fd 10 locks"), "{e}");
}

fn edit_locks(dir: &ImageDir, f: impl Fn(&mut Vec<pb::FileLockEntry>)) {
    let mut locks: Vec<pb::FileLockEntry> = dir.read_all(ImageFile::FileLocks).unwrap();
    f(&mut locks);
    dir.write_all(ImageFile::FileLocks, &locks).unwrap();
}

fn flock_10_shared(dir: &ImageDir, _pid: i32) {
    edit_locks(dir, |l| {
        l.iter_mut()
            .filter(|l| l.fd == 10)
            .for_each(|l| l.r#type = libc::F_RDLCK as u32)
    });
}

fn drop_the_lease(dir: &ImageDir, _pid: i32) {
    edit_locks(dir, |l| l.retain(|l| l.flag != 8));
}

fn shorten_a_posix_lock(dir: &ImageDir, _pid: i32) {
    edit_locks(dir, |l| {
        l.iter_mut()
            .filter(|l| l.flag == 1 && l.len == 10)
            .for_each(|l| l.len = 5)
    });
}

fn drop_the_posix_read_lock(dir: &ImageDir, _pid: i32) {
    edit_locks(dir, |l| l.retain(|l| !(l.flag == 1 && l.len == 0)));
}

#[test]
fn corrupted_locks_are_noticed() {
    let _g = setup();
    let cases: [(common::Tweak, &str); 4] = [
        (flock_10_shared, "FAIL: fd 10 locks"),
        (drop_the_lease, "FAIL: fd 14 locks"),
        (shorten_a_posix_lock, "FAIL: fd 15 locks"),
        (drop_the_posix_read_lock, "FAIL: fd 15 locks"),
    ];
    for (tweak, want) in cases {
        let e = cycle(&["posix"], Some(tweak), true).unwrap_err();
        assert!(e.contains(want), "want {want:?}, got: {e}");
    }
}

/// Another process holds a lock that conflicts with the process's flock:
/// the restore fails naming it, and no process is left.
#[test]
fn a_conflicting_lock_fails_the_restore_by_name() {
    let _g = setup();
    let mut w = start("locks", &[]);
    let images = TempDir::new("locks-conflict");
    Dump::new(w.pid)
        .images_dir(images.path())
        .file_locks(true)
        .run()
        .unwrap();
    w.reap();
    let files = ImageDir::open(images.path()).unwrap().files().unwrap();
    let path = files
        .iter()
        .filter_map(|f| f.reg.as_deref())
        .map(|r| String::from_utf8_lossy(&r.name).into_owned())
        .find(|n| n.ends_with("/flock.txt"))
        .expect("flock.txt in the images");
    let holder = std::fs::File::open(&path).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file we hold.
    let r = unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_SH) };
    assert_eq!(r, 0);
    let e = Restore::new(images.path())
        .detach(true)
        .file_locks(true)
        .run()
        .expect_err("the flock cannot be taken")
        .to_string();
    assert!(e.contains("taking fd 10's write flock"), "{e}");
    assert!(
        std::fs::metadata(format!("/proc/{}", w.pid)).is_err(),
        "no process is left"
    );
    drop(holder);
}

#[test]
fn locks_are_refused_by_name_without_file_locks() {
    let _g = setup();
    let w = start("locks", &[]);
    let images = TempDir::new("locks-refused");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("a held lock is refused without --file-locks")
        .to_string();
    assert!(
        e.contains("fd 10: a lock on") && e.contains("dump it with --file-locks"),
        "{e}"
    );
    w.verdict().expect("the process runs on as it was");
}

/// A socket's lock is refused as a file's: rcriu knows a socket by its
/// copy, without its fdinfo, but for one that `/proc/locks` names.
#[test]
fn a_lock_on_a_socket_is_refused_by_name() {
    let _g = setup();
    let w = start("locks", &["socket"]);
    let images = TempDir::new("locks-socket");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("a socket's lock is refused without --file-locks")
        .to_string();
    assert!(
        e.contains("fd 20: a lock on socket:[") && e.contains("dump it with --file-locks"),
        "{e}"
    );
    w.verdict().expect("the process runs on as it was");
}

/// A lease being broken (toward none, by another process's open for
/// writing) is taken and broken again, as CRIU does: it is still being
/// broken after the restore, and the break's signal, which the process
/// had taken, is not sent again.
#[test]
fn a_lease_being_broken_carries_on() {
    let _g = setup();
    cycle(&["breaking"], None, true).unwrap();
}

/// The negative control: the same lease restored as a plain read lease
/// shows.
#[test]
fn a_lease_being_broken_restored_as_a_plain_one_shows() {
    let _g = setup();
    let err = cycle(
        &["breaking"],
        Some(|dir, _| {
            edit_locks(dir, |locks| {
                let l = locks
                    .iter_mut()
                    .find(|l| l.fd == 16)
                    .expect("the lease of fd 16");
                assert_eq!(l.r#type, 4 | libc::F_UNLCK as u32, "breaking to none");
                l.r#type = libc::F_RDLCK as u32;
            })
        }),
        true,
    )
    .unwrap_err();
    assert!(err.contains("fd 16"), "{err}");
}
