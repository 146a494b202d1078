//! io_uring instances end to end, rcriu's own (CRIU 4.2 dumps no process
//! holding one). The `uring` workload holds an idle ring (a registered
//! file, two registered buffers, 74 requests done through it before the
//! dump) in each of its layouts, of a single issuer too; it is dumped, killed and restored (and
//! dumped with --leave-running), then checks the counters in the ring's
//! memory and in fdinfo and submits a fixed read (registered file into
//! registered buffer) and a plain read, whose completions and bytes it
//! checks. Negative controls change one field of the images and must make
//! the workload fail, naming what it saw; rings rcriu cannot bring back
//! are refused by name, the process left running as it was.
//!
//! The kernel maps a ring only where it chooses, so the restored process
//! maps its ring's regions from a memfd of rcriu's (at the same addresses):
//! its maps differ by that name, which the comparison of /proc here
//! leaves out (`maps_but_the_ring`).

mod common;

use common::{Tweak, setup, start, steady};
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::{ProcSnapshot, TempDir};

/// Rewrites the ring's entry through `f`.
fn edit_ring(dir: &ImageDir, f: impl Fn(&mut pb::RcriuIoUringEntry)) {
    let mut files = dir.files().unwrap();
    for e in &mut files {
        if let Some(r) = e.rcriu_io_uring.as_deref_mut() {
            f(r);
        }
    }
    dir.write_all(ImageFile::Files, &files).unwrap();
}

/// The differences between two snapshots but the names and VmFlags of
/// the ring's mappings (`rings`: their ranges), an io_uring's before
/// (`de mm`: not to be expanded, of pages the kernel inserted), a
/// memfd's after (`me`: may be executable).
fn maps_but_the_ring(diff: Vec<String>, rings: &[String]) -> Vec<String> {
    let ring_only = |l: &String| {
        l.contains("anon_inode:[io_uring]")
            || l.contains("rcriu-io_uring")
            || (l.starts_with("VmFlags:")
                && l.split('"')
                    .filter(|t| t.contains('-'))
                    .all(|t| rings.iter().any(|r| t.starts_with(r.as_str()))))
    };
    diff.into_iter().filter(|l| !ring_only(l)).collect()
}

/// The ranges (`start-end`, as smaps writes them) of the ring's mappings
/// in the images.
fn ring_ranges(dir: &ImageDir, pid: i32) -> Vec<String> {
    let ring = dir
        .files()
        .unwrap()
        .iter()
        .find(|f| f.rcriu_io_uring.is_some())
        .map(|f| u64::from(f.id));
    dir.mm(pid as u32)
        .unwrap()
        .vmas
        .iter()
        .filter(|v| Some(v.shmid) == ring)
        .map(|v| format!("{:x}-{:x}", v.start, v.end))
        .collect()
}

/// An error with its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut at = e.source();
    while let Some(c) = at {
        s += &format!(": {c}");
        at = c.source();
    }
    s
}

/// start → dump → kill → (tweak) → restore → /proc as before (the
/// ring's mappings aside) → verdict.
fn ring_cycle(mode: &str, tweak: Option<Tweak>) -> Result<(), String> {
    let args: &[&str] = if mode.is_empty() { &[] } else { &[mode] };
    let mut w = start("uring", args);
    assert_eq!(
        w.fact_u64("sq_head"),
        if mode == "disabled" { 0 } else { 74 }
    );
    let images = TempDir::new(&format!("uring-{mode}"));
    let before = steady(w.pid);
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .map_err(|e| format!("dumping: {e}"))?;
    w.reap();
    let dir = ImageDir::open(images.path()).unwrap();
    common::tree_gone(&dir);
    let rings = ring_ranges(&dir, w.pid);
    if let Some(t) = tweak {
        t(&dir, w.pid);
        std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
    }
    Restore::new(images.path())
        .detach(true)
        .run()
        .map_err(|e| format!("restoring: {e}"))?;
    if tweak.is_none() {
        let diff = maps_but_the_ring(before.diff(&ProcSnapshot::settled(w.pid, &before)), &rings);
        assert!(diff.is_empty(), "/proc differs:\n{}", diff.join("\n"));
    }
    w.verdict()
}

#[test]
fn an_idle_ring_carries_on() {
    let _g = setup();
    for mode in ["", "big", "noarray", "disabled", "single", "defer"] {
        ring_cycle(mode, None).unwrap_or_else(|e| panic!("mode {mode:?}: {e}"));
    }
    common::leave_running("uring", &[]);
}

#[test]
fn the_images_say_what_the_ring_held() {
    let _g = setup();
    // (mode, setup flags, SQ entries, CQ entries)
    let cases = [
        ("", 0x8, 8, 32),
        ("big", 0x8 | 1 << 10 | 1 << 11, 8, 32),
        ("noarray", 0x8 | 1 << 16, 64, 256),
        ("disabled", 0x8 | 1 << 6, 8, 32),
        ("defer", 0x8 | 1 << 12 | 1 << 13, 8, 32),
    ];
    for (mode, flags, sq, cq) in cases {
        let args: &[&str] = if mode.is_empty() { &[] } else { &[mode] };
        let mut w = start("uring", args);
        let images = TempDir::new("uring-images");
        Dump::new(w.pid).images_dir(images.path()).run().unwrap();
        w.reap();
        let files = ImageDir::open(images.path()).unwrap().files().unwrap();
        let e = files
            .iter()
            .find_map(|f| f.rcriu_io_uring.as_deref())
            .expect("a ring entry");
        assert_eq!(
            files
                .iter()
                .find(|f| f.rcriu_io_uring.is_some())
                .unwrap()
                .r#type,
            pb::FdTypes::IoUring as i32
        );
        assert_eq!(
            (e.setup_flags, e.sq_entries, e.cq_entries),
            (flags, sq, cq),
            "mode {mode:?}"
        );
        assert_eq!(e.sq_head, if mode == "disabled" { 0 } else { 74 });
        assert_eq!(e.files, [-1, 10]);
        assert_eq!(
            e.bufs.iter().map(|b| b.len).collect::<Vec<_>>(),
            [8192, 4096]
        );
        assert_eq!(e.bufs[1].addr, e.bufs[0].addr + 8192);
        let sqe = if flags & 1 << 10 != 0 { 128 } else { 64 };
        assert_eq!(e.sqes.len(), sq as usize * sqe, "mode {mode:?}");
    }
}

fn counters_at_zero(dir: &ImageDir, _pid: i32) {
    edit_ring(dir, |r| r.sq_head = 0);
}

fn drop_the_buffers(dir: &ImageDir, _pid: i32) {
    edit_ring(dir, |r| r.bufs.clear());
}

fn drop_the_files(dir: &ImageDir, _pid: i32) {
    edit_ring(dir, |r| r.files.clear());
}

fn zero_the_sq_array(dir: &ImageDir, _pid: i32) {
    // The ring region's last 32 bytes: its SQ array (8 entries).
    edit_ring(dir, |r| {
        let n = r.rings.len();
        r.rings[n - 32..].fill(0);
    });
}

#[test]
fn corrupted_rings_are_noticed() {
    let _g = setup();
    let cases: [(Tweak, &str); 4] = [
        (
            counters_at_zero,
            "FAIL: fdinfo line CachedSqHead:\t74 now CachedSqHead:\t0",
        ),
        (
            drop_the_buffers,
            "FAIL: fdinfo line UserBufs:\t2 now UserBufs:\t0",
        ),
        (
            drop_the_files,
            "FAIL: fdinfo line UserFiles:\t2 now UserFiles:\t0",
        ),
        (zero_the_sq_array, "FAIL: round 37"),
    ];
    for (tweak, want) in cases {
        let e = ring_cycle("", Some(tweak)).unwrap_err();
        assert!(e.contains(want), "want {want:?}, got: {e}");
    }
}

/// A ring whose entry does not fit the kernel's ring of its sizes (the
/// SQEs said 64 bytes where they are 128): refused by name, no process
/// left.
#[test]
fn a_ring_of_another_layout_is_refused() {
    let _g = setup();
    let e = ring_cycle(
        "big",
        Some(|dir, _| edit_ring(dir, |r| r.setup_flags &= !(1 << 10))),
    )
    .unwrap_err();
    assert!(e.contains("files.img: io_uring"), "{e}");
    assert!(e.contains("bytes"), "{e}");
}

/// A ring with a request in flight, one with a submission thread, one of
/// a single issuer in a process of two threads: each refused by name, the process left running as it
/// was (its verdict: its ring still works).
#[test]
fn rings_rcriu_cannot_bring_back_are_refused_by_name() {
    let _g = setup();
    let cases = [
        (
            "inflight",
            "with requests in flight (75 submitted, 74 completed)",
        ),
        ("sqpoll", "io_uring kernel thread"),
        (
            "single_mt",
            "of a single issuer (SINGLE_ISSUER) in a process of 2 threads",
        ),
    ];
    for (mode, want) in cases {
        let w = start("uring", &[mode]);
        let before = steady(w.pid);
        let images = TempDir::new("uring-refused");
        let e = Dump::new(w.pid)
            .images_dir(images.path())
            .run()
            .expect_err("the dump refuses it");
        let e = chain(&e);
        assert!(e.contains(want), "mode {mode}: {e}");
        let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
        assert!(
            diff.is_empty(),
            "mode {mode}: /proc differs:\n{}",
            diff.join("\n")
        );
        w.verdict()
            .unwrap_or_else(|e| panic!("mode {mode} after a refused dump: {e}"));
    }
}

/// A ring rcriu restored is made on the process's memory, without
/// mappings of its own: dumped again, it is refused by name, the process
/// left running.
#[test]
fn a_restored_ring_dumped_again_is_refused_by_name() {
    let _g = setup();
    let mut w = start("uring", &[]);
    let images = TempDir::new("uring-again");
    Dump::new(w.pid).images_dir(images.path()).run().unwrap();
    w.reap();
    Restore::new(images.path()).detach(true).run().unwrap();
    let again = TempDir::new("uring-again-2");
    let e = Dump::new(w.pid)
        .images_dir(again.path())
        .leave_running(true)
        .run()
        .expect_err("the dump refuses it");
    let e = chain(&e);
    assert!(e.contains("made without mappings"), "{e}");
    w.verdict().unwrap();
}
