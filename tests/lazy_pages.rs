//! Lazy restore (`restore --lazy-pages` with `rcriu lazy-pages`): a
//! process holding a known pattern in its anonymous memory is dumped,
//! the daemon started on the images, and the process restored lazily: it
//! answers on its fifos before its memory is in, its own check of every
//! word passes, a child it forks after the restore sees the memory too,
//! pages it drops read as zeros, and the daemon ends (status 0) with
//! every page of the area present (smaps' Rss, read before anything
//! touches the area). A tree of processes, each with pages of its own,
//! comes back the same way, and so does a process dumped after a
//! pre-dump, whose pages the daemon reads from the pre-dump's images.
//!
//! Negative controls: a page changed in the pages image makes the
//! process's check fail (the pages come from the daemon, and the check
//! sees them); a daemon killed before every page is in gets the process
//! killed (SIGKILL, by the daemon's guard), never left running with
//! missing pages; a restore with no daemon listening fails, naming the
//! socket, with no process left.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcriu_test_support::{
    TempDir, Workload, become_subreaper, is_zombie, require_root, trace_lock, tree_pids, wait_exit,
};

mod lazy_common;
use lazy_common::{Daemon, RCRIU, Talk, children_of, killed, present_pages, rcriu};

/// Starts `rcriu lazy-pages` on `dir` and waits until it listens (its
/// `--status-fd` byte, on its standard output).
fn daemon(dir: &Path) -> Daemon {
    let d = dir.to_str().unwrap();
    Daemon::start(
        RCRIU,
        &[
            "lazy-pages",
            "-D",
            d,
            "--status-fd",
            "1",
            "-v4",
            "-o",
            "lazy-pages.log",
        ],
    )
    .unwrap_or_else(|o| panic!("the daemon says it listens: {o:?}"))
}

/// Dumps a `lazymem` of `mib` MiB with `nchild` children into a new
/// directory; `tweak` changes the images.
fn dumped(
    mib: &str,
    nchild: &str,
    tweak: impl Fn(&Path, &Workload),
) -> (Workload, TempDir, PathBuf) {
    let mut w = Workload::start("lazymem", &[mib, nchild]);
    let top = TempDir::new("lazy");
    let d = top.path().join("d");
    let children = tree_pids(w.pid);
    rcriu(&["dump", "-t", &w.pid.to_string(), "-D", d.to_str().unwrap()]).expect("the dump");
    w.reap();
    // The children, ours as subreaper, free their pids too.
    for c in children.into_iter().filter(|&c| c != w.pid) {
        wait_exit(c).unwrap();
    }
    tweak(&d, &w);
    (w, top, d)
}

fn restore_lazily(d: &Path) -> Result<(), String> {
    rcriu(&["restore", "-D", d.to_str().unwrap(), "--lazy-pages", "-d"])
}

#[test]
fn lazy_restore_brings_every_page_in() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (w, _top, d) = dumped("128", "0", |_, _| {});
    let daemon = daemon(&d);
    restore_lazily(&d).expect("the lazy restore");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'p'), b'p', "the restored process answers");
    // A child forked now, before every page is in, sees them all.
    assert_eq!(t.ask(b'f'), b'P', "a child forked after the restore");
    assert_eq!(t.ask(b'd'), b'd');
    let status = daemon.wait();
    let log = std::fs::read_to_string(d.join("lazy-pages.log")).unwrap_or_default();
    assert_eq!(status, 0, "the daemon's exit status; its log:\n{log}");
    assert!(log.contains("every lazy page is in"), "{log}");
    // Every page of the area is in (but the MiB dropped), untouched
    // since: the daemon brought them.
    let (addr, len) = (w.fact_u64("addr"), w.fact_u64("len"));
    assert_eq!(
        present_pages(w.pid, addr, len),
        (len - (1 << 20)) / 4096,
        "the area's pages present"
    );
    assert_eq!(t.ask(b'c'), b'P', "the process's own check of its memory");
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

#[test]
fn a_tree_is_restored_lazily() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (w, _top, d) = dumped("32", "2", |_, _| {});
    let daemon = daemon(&d);
    restore_lazily(&d).expect("the lazy restore of the tree");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'c'), b'P', "every process's own check");
    let status = daemon.wait();
    let log = std::fs::read_to_string(d.join("lazy-pages.log")).unwrap_or_default();
    assert_eq!(status, 0, "{log}");
    assert!(log.contains("every lazy page is in: 3 processes"), "{log}");
    t.to.write_all(b"x").unwrap();
    let end = wait_exit(w.pid).unwrap();
    assert_eq!(end, 0);
}

/// Changes a byte in the middle of the pages image (inside the area).
fn change_a_page(d: &Path) {
    let p = d.join("pages-1.img");
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&p, bytes).unwrap();
}

#[test]
fn a_changed_page_fails_the_check() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    // Images without rcriu's manifest (as CRIU writes them): nothing
    // tells the page changed but the process's own check.
    let (w, _top, d) = dumped("32", "0", |d, _| {
        std::fs::remove_file(d.join(rcriu::images::manifest::MANIFEST)).unwrap();
        change_a_page(d);
    });
    let daemon = daemon(&d);
    restore_lazily(&d).expect("the lazy restore");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'c'), b'F', "the check must see the changed page");
    assert_eq!(daemon.wait(), 0);
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

#[test]
fn a_changed_pages_image_ends_daemon_and_process() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    // With the manifest, the daemon hashes the pages image while it
    // serves: it fails naming the file, and the process is killed.
    let (w, _top, d) = dumped("64", "0", |d, _| change_a_page(d));
    let daemon = daemon(&d);
    // The daemon may find the change before the restore is through
    // (then the restore fails, its process killed) or after.
    let restored = restore_lazily(&d);
    let out = daemon.output();
    let err = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(d.join("lazy-pages.log")).unwrap_or_default();
    assert!(!out.status.success(), "the daemon succeeded: {log}");
    assert!(
        log.contains("pages-1.img") && log.contains("hash differs"),
        "the daemon's log names the file: {log}"
    );
    match restored {
        Ok(()) => {
            assert!(err.contains("killed"), "the guard says so: {err}");
            let end = wait_exit(w.pid).unwrap();
            assert!(
                killed(end),
                "the restored process ended with {end:#x}, not killed"
            );
        }
        Err(e) => assert!(
            !Path::new(&format!("/proc/{}", w.pid)).exists() || is_zombie(w.pid),
            "the restore failed ({e}) and left its process running"
        ),
    }
}

/// A 512 MiB process restored lazily, told `cmd` (which it answers with
/// the same byte), then its daemon killed before every page is in: the
/// process must not go on with pages missing (the guard kills it), nor
/// any child it forked since the restore (ours as subreaper once its
/// parent is gone). Returns those children.
fn daemon_killed_after(cmd: u8) -> Vec<i32> {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (w, _top, d) = dumped("512", "0", |_, _| {});
    let mut daemon = daemon(&d);
    restore_lazily(&d).expect("the lazy restore");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(cmd), cmd);
    let kids = children_of(w.pid);
    daemon.kill();
    let status = daemon.wait();
    assert!(
        killed(status),
        "the daemon ended before the kill ({status:#x}): nothing was tested"
    );
    let end = wait_exit(w.pid).unwrap();
    assert!(
        killed(end),
        "the restored process ended with {end:#x}, not killed"
    );
    for &k in &kids {
        let end = wait_exit(k).unwrap();
        assert!(
            killed(end),
            "child {k}, forked after the restore, ended with {end:#x}, not killed"
        );
    }
    kids
}

#[test]
fn a_killed_daemon_takes_the_process_with_it() {
    assert!(daemon_killed_after(b'p').is_empty());
}

#[test]
fn no_daemon_no_restore() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (w, _top, d) = dumped("8", "0", |_, _| {});
    let err = restore_lazily(&d).expect_err("a lazy restore without its daemon");
    assert!(
        err.contains("lazy-pages.socket") && err.contains("lazy-pages daemon"),
        "{err}"
    );
    assert!(
        !Path::new(&format!("/proc/{}", w.pid)).exists(),
        "a process was left"
    );
}

#[test]
fn pages_kept_in_a_pre_dump_come_lazily() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let mut w = Workload::start("lazymem", &["32", "0"]);
    let top = TempDir::new("lazy-chain");
    let (one, two) = (top.path().join("1"), top.path().join("2"));
    let p = w.pid.to_string();
    rcriu(&[
        "pre-dump",
        "-t",
        &p,
        "-D",
        one.to_str().unwrap(),
        "--track-mem",
    ])
    .unwrap();
    rcriu(&[
        "dump",
        "-t",
        &p,
        "-D",
        two.to_str().unwrap(),
        "--prev-images-dir",
        "../1",
        "--track-mem",
    ])
    .unwrap();
    w.reap();
    // The final dump keeps the area's pages in the pre-dump's images.
    let d = rcriu::images::ImageDir::open(&two).unwrap();
    let mut runs = d.pagemap(w.pid as u32).unwrap();
    let mut parent = 0;
    while let Some(r) = runs.next_run().unwrap() {
        if r.flags & rcriu::images::pages::PE_PARENT != 0 {
            parent += r.nr_pages;
        }
    }
    assert!(parent >= 32 * 256, "{parent} pages kept in the parent");
    let daemon = daemon(&two);
    restore_lazily(&two).expect("the lazy restore of the chain");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'c'), b'P', "the process's own check");
    assert_eq!(daemon.wait(), 0);
    let log = std::fs::read_to_string(two.join("lazy-pages.log")).unwrap();
    let lazy: u64 = log
        .lines()
        .find_map(|l| {
            l.split(": ")
                .nth(1)?
                .strip_suffix(" lazy pages")?
                .parse()
                .ok()
        })
        .expect("the daemon's count of lazy pages");
    // The area's pages at least (those kept in the parent of file
    // mappings are read by the restore).
    assert!(
        lazy >= 32 * 256,
        "{lazy} lazy pages, {parent} in the parent"
    );
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

#[test]
fn a_killed_daemon_takes_a_child_forked_after_the_restore_with_it() {
    // The child waits for its parent's end before it reads its memory:
    // left alive, it would read zeros for the pages still missing.
    let kids = daemon_killed_after(b'k');
    assert_eq!(kids.len(), 1, "the forked child: {kids:?}");
}
