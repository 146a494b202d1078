//! Pre-copy: a process that keeps rewriting random pages under a running
//! checksum is pre-dumped twice while it runs (`rcriu pre-dump
//! --track-mem`, the second with `--prev-images-dir ../1`), then dumped
//! (`dump --prev-images-dir ../2 --track-mem`), and restored from the
//! chain of images: every page agrees with its checksum. The tracking
//! leaves no fd in the process, the final dump ends it, and CRIU's crit
//! reads the images (`crit42` when on the PATH, else Debian's `crit`).
//! With `RCRIU_TEST_CRIU` naming CRIU 4.2's criu, CRIU restores the chain
//! too. The negative control drops the last round's pages of the
//! rewritten area (the final dump's own pages there taken from the parent
//! instead): the restored process finds stale pages.
//!
//! A second workload changes its layout between the rounds (new and
//! unmapped areas, an area moved by mremap, pages dropped with
//! MADV_DONTNEED, a page written by the kernel, an area made PROT_NONE
//! and back, huge pages, a private file mapping whose copied page is
//! dropped, which leaves a write-protect marker that pagemap shows as a
//! swapped page: taken for a page, the file's page restores stale, as
//! the test saw with the marker filter switched off) and checks every
//! page at the end.

use std::path::Path;
use std::process::Command;

use rcriu::dump::predump;
use rcriu::images::pages::{PE_PARENT, PE_PRESENT};
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::{
    HANG_GUARD, TempDir, Workload, become_subreaper, require_root, signal, trace_lock,
};

fn rcriu(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(args)
        .output()
        .expect("running rcriu");
    assert!(
        out.status.success(),
        "rcriu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fds(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{} {}", e.file_name().to_string_lossy(), t.display())
        })
        .collect();
    v.sort();
    v
}

fn holder_listens(pid: i32) -> bool {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .contains(&format!("@rcriu-track-{pid}-"))
}

/// The runs of a pagemap: (vaddr, pages, flags).
fn runs(dir: &Path, pid: i32) -> Vec<(u64, u64, u32)> {
    let d = ImageDir::open(dir).unwrap();
    let mut r = d.pagemap(pid as u32).unwrap();
    let mut v = Vec::new();
    while let Some(run) = r.next_run().unwrap() {
        v.push((run.vaddr, run.nr_pages, run.flags));
    }
    v
}

/// Two pre-dumps and a dump of a rewriting process; `tweak` changes the
/// final images before the restore. Returns the verdict.
/// What a test does to the final images before the restore.
type Tweak<'a> = &'a dyn Fn(&Path, i32);

/// CRIU's crit: CRIU 4.2's when at hand.
fn crit() -> &'static str {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).exists()))
    };
    if on_path("crit42") { "crit42" } else { "crit" }
}

fn rounds(tweak: Option<Tweak<'_>>, criu: Option<&str>) -> Result<(), String> {
    // 64 MiB, a page rewritten every 20 us: about a fifth of it between
    // two rounds.
    let mut w = Workload::start("rewriter", &["64", "20"]);
    let pid = w.pid;
    let top = TempDir::new("precopy");
    let d = |n: &str| top.path().join(n);
    // The workload says ready, then puts /dev/null on its stdout through
    // an fd it closes: its fds are counted once that one is gone.
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fds(pid).len() > 3 && std::time::Instant::now() < settled {
        std::thread::yield_now();
    }
    let before = fds(pid);
    let p = pid.to_string();
    rcriu(&[
        "pre-dump",
        "-t",
        &p,
        "-D",
        d("1").to_str().unwrap(),
        "--track-mem",
    ]);
    assert_eq!(fds(pid), before, "the tracking left an fd in the process");
    assert!(holder_listens(pid), "no holder keeps the tracking");
    rcriu(&[
        "pre-dump",
        "-t",
        &p,
        "-D",
        d("2").to_str().unwrap(),
        "--prev-images-dir",
        "../1",
        "--track-mem",
    ]);
    assert_eq!(fds(pid), before);
    rcriu(&[
        "dump",
        "-t",
        &p,
        "-D",
        d("3").to_str().unwrap(),
        "--prev-images-dir",
        "../2",
        "--track-mem",
    ]);
    w.reap();
    assert!(!holder_listens(pid), "the holder outlived the final dump");
    assert_eq!(
        std::fs::read_link(d("3").join("parent")).unwrap(),
        Path::new("../2"),
        "the parent link is as given, as criu makes it"
    );
    for n in ["2", "3"] {
        let r = runs(&d(n), pid);
        assert!(
            r.iter().any(|&(_, _, f)| f == PE_PARENT),
            "round {n} keeps no page in its parent: {r:?}"
        );
        assert!(r.iter().any(|&(_, _, f)| f & PE_PRESENT != 0));
    }
    let whole = std::fs::metadata(d("1").join("pages-1.img")).unwrap().len();
    let last = std::fs::metadata(d("3").join("pages-1.img")).unwrap().len();
    assert!(
        last < whole,
        "the final dump wrote {last} bytes of pages, the first pre-dump {whole}"
    );
    // CRIU's crit reads every round's pagemap and the pre-dump's
    // inventory.
    for (n, img) in [
        ("1", format!("pagemap-{pid}.img")),
        ("1", "inventory.img".into()),
        ("3", format!("pagemap-{pid}.img")),
    ] {
        let out = Command::new(crit())
            .args(["show", d(n).join(&img).to_str().unwrap()])
            .output()
            .expect("running crit");
        assert!(
            out.status.success(),
            "crit show {n}/{img}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if n == "3" {
            assert!(String::from_utf8_lossy(&out.stdout).contains("PE_PARENT"));
        }
    }
    if let Some(t) = tweak {
        t(&d("3"), pid);
    }
    match criu {
        None => {
            Restore::new(d("3"))
                .detach(true)
                .run()
                .map_err(|e| format!("restoring: {e}"))?;
        }
        Some(criu) => {
            let out = Command::new(criu)
                .args(["restore", "-d", "-D", d("3").to_str().unwrap()])
                .output()
                .expect("running CRIU");
            if !out.status.success() {
                return Err(format!(
                    "CRIU's restore: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        !fds(pid).iter().any(|f| f.contains("userfaultfd")),
        "the restored process holds a userfaultfd"
    );
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    assert!(
        !smaps
            .lines()
            .any(|l| l.starts_with("VmFlags:") && l.contains(" uw")),
        "the restored process's memory is write-protected"
    );
    w.verdict()
}

/// The last round's pages of the largest area (the rewritten one) taken
/// from the parent: what the tracking would give if it missed them.
fn drop_last_round(dir: &Path, pid: i32) {
    let d = ImageDir::open(dir).unwrap();
    std::fs::remove_file(dir.join(rcriu::images::manifest::MANIFEST)).unwrap();
    let mm: pb::MmEntry = d.read_one(ImageFile::Mm((pid as u32).into())).unwrap();
    let big = mm
        .vmas
        .iter()
        .max_by_key(|v| v.end - v.start)
        .map(|v| (v.start, v.end))
        .unwrap();
    let pages = std::fs::read(dir.join("pages-1.img")).unwrap();
    let mut kept = Vec::new();
    let mut out = Vec::new();
    let mut off = 0usize;
    let mut dropped = 0;
    for (vaddr, nr, flags) in runs(dir, pid) {
        let len = nr as usize * 4096;
        if flags & PE_PRESENT == 0 {
            out.push((vaddr, nr, flags));
            continue;
        }
        if vaddr >= big.0 && vaddr < big.1 {
            out.push((vaddr, nr, PE_PARENT));
            dropped += nr;
        } else {
            kept.extend_from_slice(&pages[off..off + len]);
            out.push((vaddr, nr, flags));
        }
        off += len;
    }
    assert!(
        dropped > 0,
        "the final dump wrote no page of the rewritten area"
    );
    std::fs::remove_file(dir.join("pages-1.img")).unwrap();
    std::fs::write(dir.join("pages-1.img"), kept).unwrap();
    std::fs::remove_file(dir.join(format!("pagemap-{pid}.img"))).unwrap();
    let mut pm = d.create_pagemap(pid as u32, 1).unwrap();
    for (v, n, f) in out {
        pm.add(v, n, f).unwrap();
    }
    pm.finish().unwrap();
}

#[test]
fn pre_dumps_and_a_dump_restore_every_page_written() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    rounds(None, None).unwrap();
    let e = rounds(Some(&drop_last_round), None).unwrap_err();
    assert!(e.contains("disagrees with its checksum"), "{e}");
}

#[test]
fn criu_restores_the_chain_of_pre_dumps() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let Ok(criu) = std::env::var("RCRIU_TEST_CRIU") else {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the restore by CRIU 4.2");
        return;
    };
    rounds(None, Some(&criu)).unwrap();
    let e = rounds(Some(&drop_last_round), Some(&criu)).unwrap_err();
    assert!(e.contains("disagrees with its checksum"), "{e}");
}

/// The steps the layout workload has taken.
fn steps(w: &Workload) -> u32 {
    let f = w.outfile.parent().unwrap().join("steps");
    std::fs::read_to_string(f)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Makes the layout workload take a step, and waits until it has.
fn step(w: &Workload) {
    let n = steps(w);
    signal(w.pid, libc::SIGUSR2);
    let t = std::time::Instant::now();
    while steps(w) != n + 1 {
        assert!(t.elapsed() < HANG_GUARD, "the workload takes no step");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn layout_rounds(tweak: Option<Tweak<'_>>) -> Result<(), String> {
    let mut w = Workload::start("layout", &[]);
    let top = TempDir::new("precopy-layout");
    let d = |n: &str| top.path().join(n);
    let pre = |n: &str, parent: Option<&str>| {
        predump::run(&predump::Options {
            pid: w.pid,
            dir: d(n),
            parent: parent.map(Into::into),
            mode: 1,
            stats_dir: None,
            page_server: None,
            auto_dedup: false,
        })
        .expect("pre-dumping")
    };
    pre("1", None);
    step(&w);
    pre("2", Some("../1"));
    step(&w);
    let stats = Dump::new(w.pid)
        .images_dir(d("3"))
        .prev_images_dir("../2")
        .track_mem(true)
        .run()
        .map_err(|e| format!("dumping: {e}"))?;
    w.reap();
    let parents = runs(&d("3"), w.pid)
        .iter()
        .filter(|r| r.2 == PE_PARENT)
        .map(|r| r.1)
        .sum::<u64>();
    assert!(parents > 1000, "{parents} pages kept in the parents");
    assert_eq!(
        stats.pages_skipped_parent, parents,
        "stats-dump counts them"
    );
    if let Some(t) = tweak {
        t(&d("3"), w.pid);
    }
    Restore::new(d("3"))
        .detach(true)
        .run()
        .map_err(|e| format!("restoring: {e}"))?;
    w.verdict()
}

#[test]
fn changes_of_layout_between_rounds_are_tracked() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    layout_rounds(None).unwrap();
    let e = layout_rounds(Some(&drop_last_round)).unwrap_err();
    assert!(e.contains("is not what was written"), "{e}");
}

/// A tree pre-dumped: the root and its children (copy-on-write memory,
/// children rewriting parts of it) each get their own pagemap, pages
/// image and tracking; the final dump keeps their pages in the rounds
/// before, and the restored tree finds every page. `spoil` edits the
/// first round before the restore.
/// An edit of a tree's first round (its directory, the children).
type Spoil<'a> = &'a dyn Fn(&Path, &[i32]);

fn tree_rounds(spoil: Option<Spoil<'_>>) -> Result<(), String> {
    let _g = trace_lock();
    become_subreaper();
    let mut w = Workload::start("cow", &["3", "16", "256"]);
    let kids: Vec<i32> = rcriu_test_support::tree_pids(w.pid)
        .into_iter()
        .filter(|&p| p != w.pid)
        .collect();
    assert_eq!(kids.len(), 3, "the root's three children");
    let top = TempDir::new("precopy-tree");
    let d = |n: &str| top.path().join(n).to_str().unwrap().to_owned();
    let p = w.pid.to_string();
    rcriu(&["pre-dump", "-t", &p, "-D", &d("1"), "--track-mem"]);
    for pid in std::iter::once(w.pid).chain(kids.iter().copied()) {
        assert!(
            Path::new(&d("1"))
                .join(format!("pagemap-{pid}.img"))
                .exists(),
            "no pagemap of {pid} in the tree's pre-dump"
        );
    }
    rcriu(&[
        "pre-dump",
        "-t",
        &p,
        "-D",
        &d("2"),
        "--prev-images-dir",
        "../1",
        "--track-mem",
    ]);
    rcriu(&[
        "dump",
        "-t",
        &p,
        "-D",
        &d("3"),
        "--prev-images-dir",
        "../2",
        "--track-mem",
    ]);
    w.reap();
    // The children come to this subreaper when their parent dies.
    for &k in &kids {
        let _ = rcriu_test_support::wait_exit(k);
    }
    let kept = runs(Path::new(&d("3")), kids[0])
        .iter()
        .filter(|r| r.2 & PE_PARENT != 0)
        .count();
    assert!(
        kept > 0,
        "the final dump kept none of a child's pages in the rounds"
    );
    if let Some(f) = spoil {
        f(Path::new(&d("1")), &kids);
    }
    Restore::new(Path::new(&d("3")))
        .detach(true)
        .run()
        .map_err(|e| format!("restoring the tree: {e}"))?;
    w.verdict()
}

/// Changes a page of the first child's in the first round, where the
/// final dump keeps it: the restored child must see it.
fn spoil_child_page(dir: &Path, kids: &[i32]) {
    let _ = std::fs::remove_file(dir.join(rcriu::images::manifest::MANIFEST));
    let pid = kids[0];
    let d = ImageDir::open(dir).unwrap();
    let pages_id = d.pagemap(pid as u32).unwrap().pages_id();
    let path = dir.join(format!("pages-{pages_id}.img"));
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.is_empty(), "the child's first round holds no page");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_tree_is_pre_dumped_and_restored_from_its_rounds() {
    require_root();
    tree_rounds(None).unwrap();
    let e = tree_rounds(Some(&spoil_child_page)).expect_err("the negative control passes");
    assert!(e.contains("FAIL"), "{e}");
}
