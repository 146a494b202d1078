//! What the end-to-end tests of workloads share: start a workload, dump
//! it, kill it, restore it, compare /proc and take its verdict
//! ([`cycle`]), or dump it with --leave-running and take the original's
//! verdict ([`leave_running`]).
#![allow(dead_code)]

use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::{
    Inside, ProcSnapshot, TempDir, Workload, become_subreaper, is_zombie, require_root, trace_lock,
    tree_pids,
};

/// What a cycle does to the images between the dump and the restore.
pub type Tweak = fn(&ImageDir, i32);

/// The workloads that wait for the test in sigsuspend (a sleeper's signal
/// mask changes as it enters it).
const SLEEPERS: &[&str] = &[
    "bigmem",
    "chrooted",
    "dump_state",
    "parasite_state",
    "threads",
    "mt",
    "signals",
    "timers",
    "creds",
    "seccomp",
    "files_reg",
    "files_ghost",
    "files_pipe",
    "files_pty",
    "files_console",
    "files_tmpfile",
    "files_linked",
    "proc_cwd",
    "proc_child",
    "ns_files",
    "mqueue",
    "onstack",
    "task_attrs",
    "eventfds",
    "notify",
    "pidfds",
    "locks",
    "deleted",
    "sk_unix",
    "sk_packet_ring",
    "sk_epoll_flight",
    "sk_inet",
    "sk_tcp",
    "sk_netlink",
    "sk_tree",
    "tree",
    "cow",
    "uring",
];

/// The workloads whose inside is not probed: a thread of rseq_cs lives
/// inside an rseq critical section, which running the probe's parasite in
/// it would take from it (the dump moves such a thread to its abort
/// handler; a probe must change nothing).
const NOT_PROBED: &[&str] = &["rseq_cs"];

/// [`Inside::probe`], or nothing for the workloads of [`NOT_PROBED`].
fn probe(name: &str, pid: i32) -> Inside {
    if NOT_PROBED.contains(&name) {
        Inside::default()
    } else {
        Inside::probe(pid)
    }
}

/// Starts a workload and waits until it is where it waits for the test.
pub fn start(name: &str, args: &[&str]) -> Workload {
    let w = Workload::start(name, args);
    if SLEEPERS.contains(&name) {
        w.wait_in("sigsuspend");
    }
    w
}

/// start → dump → kill → (tweak) → restore → same /proc → verdict.
pub fn cycle(name: &str, args: &[&str], tweak: Option<Tweak>) -> Result<(), String> {
    cycle_with(start(name, args), name, tweak)
}

/// As [`cycle`], of a workload already started (and set up) by the test.
pub fn cycle_with(w: Workload, name: &str, tweak: Option<Tweak>) -> Result<(), String> {
    cycle_opts(w, name, tweak, |d| d, |r| r)
}

/// As [`cycle_with`], the dump and the restore given options by `dump`
/// and `restore`.
pub fn cycle_opts(
    mut w: Workload,
    name: &str,
    tweak: Option<Tweak>,
    dump: impl FnOnce(Dump) -> Dump,
    restore: impl FnOnce(Restore) -> Restore,
) -> Result<(), String> {
    let images = TempDir::new(&format!("slice-{name}"));
    let before = steady(w.pid);
    let inside = probe(name, w.pid);
    // Every other live process of its tree is compared too.
    let others = steady_others(w.pid);
    dump(Dump::new(w.pid))
        .images_dir(images.path())
        .run()
        .map_err(|e| format!("dumping {name}: {e}"))?;
    let status = w.reap();
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "a dump kills the process: {status:#x}"
    );
    let dir = ImageDir::open(images.path()).expect("opening the images");
    // Encrypted images (`--encrypt`) cannot be read here: the root, reaped
    // above, is the tree of those tests.
    let inventory = std::fs::File::open(dir.file_path(rcriu::images::ImageFile::Inventory));
    if !inventory.is_ok_and(|f| rcriu::images::crypt::is_encrypted(&f)) {
        tree_gone(&dir);
    }
    if let Some(t) = tweak {
        t(&dir, w.pid);
        // Tweaked images are not the dump's: without its manifest (as a
        // dump by CRIU) they restore as they say, which the negative
        // controls check; with it they are refused (tests/corruption.rs).
        std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST))
            .expect("the dump wrote a manifest");
    }
    let r = restore(Restore::new(images.path()))
        .detach(true)
        .run()
        .map_err(|e| format!("restoring {name}: {e}"))?;
    assert_eq!(r.pid, w.pid, "the process gets its pid back");
    if tweak.is_none() {
        let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
        assert!(
            diff.is_empty(),
            "{name}: /proc differs:\n{}",
            diff.join("\n")
        );
        let diff = inside.diff(&probe(name, w.pid));
        assert!(
            diff.is_empty(),
            "{name}: what only the process tells differs:\n{}",
            diff.join("\n")
        );
        for (pid, snap) in &others {
            let diff = snap.diff(&ProcSnapshot::settled(*pid, snap));
            assert!(
                diff.is_empty(),
                "{name}: /proc of process {pid} of the tree differs:\n{}",
                diff.join("\n")
            );
        }
    }
    w.verdict()
}

/// start → dump → kill → tweak → restore, then what the /proc and the
/// inside comparisons of [`cycle`] see differ (the negative control of
/// those comparisons: a tweak that loses a piece of state must show).
pub fn restored_diff(name: &str, args: &[&str], tweak: Tweak) -> Vec<String> {
    let mut w = start(name, args);
    let images = TempDir::new(&format!("diff-{name}"));
    let before = steady(w.pid);
    let inside = probe(name, w.pid);
    let others = steady_others(w.pid);
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .unwrap_or_else(|e| panic!("dumping {name}: {e}"));
    w.reap();
    let dir = ImageDir::open(images.path()).expect("opening the images");
    tree_gone(&dir);
    tweak(&dir, w.pid);
    // Without the manifest, which would refuse the tweaked images.
    std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST))
        .expect("the dump wrote a manifest");
    Restore::new(images.path())
        .detach(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring {name}: {e}"));
    let mut diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
    diff.extend(inside.diff(&probe(name, w.pid)));
    for (pid, snap) in &others {
        let d = snap.diff(&ProcSnapshot::settled(*pid, snap));
        diff.extend(d.into_iter().map(|l| format!("process {pid}: {l}")));
    }
    rcriu_test_support::kill_tree(w.pid);
    diff
}

/// Snapshots of every other live process of the tree under `root`.
fn steady_others(root: i32) -> Vec<(i32, ProcSnapshot)> {
    tree_pids(root)
        .into_iter()
        .skip(1)
        .filter(|&p| !is_zombie(p))
        .map(|p| (p, steady(p)))
        .collect()
}

/// start → dump --leave-running → verdict of the original.
pub fn leave_running(name: &str, args: &[&str]) {
    leave_running_opts(name, args, |d| d);
}

/// As [`leave_running`], the dump given options by `dump`.
pub fn leave_running_opts(name: &str, args: &[&str], dump: impl FnOnce(Dump) -> Dump) {
    let w = start(name, args);
    let images = TempDir::new(&format!("slice-lr-{name}"));
    let before = steady(w.pid);
    let inside = probe(name, w.pid);
    dump(Dump::new(w.pid))
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .unwrap_or_else(|e| panic!("dumping {name}: {e}"));
    let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
    assert!(
        diff.is_empty(),
        "{name}: /proc differs after the dump:\n{}",
        diff.join("\n")
    );
    let diff = inside.diff(&probe(name, w.pid));
    assert!(
        diff.is_empty(),
        "{name}: what only the process tells differs after the dump:\n{}",
        diff.join("\n")
    );
    w.verdict()
        .unwrap_or_else(|e| panic!("{name} after a --leave-running dump: {e}"));
}

/// A snapshot of a process that does not change from one reading to the
/// next (a timer's signal pending for an instant, a thread between two
/// syscalls, pass): the reference a dump or restore is compared with.
pub fn steady(pid: i32) -> ProcSnapshot {
    // Three readings alike in a row: on a loaded machine a signal of a
    // timer can stay pending over two (it is taken when its thread runs).
    const ALIKE: u32 = 3;
    let start = std::time::Instant::now();
    let mut last = ProcSnapshot::take(pid);
    let mut alike = 1;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(1));
        let s = ProcSnapshot::take(pid);
        if s.diff(&last).is_empty() && s.wchan == last.wchan {
            alike += 1;
        } else {
            alike = 1;
        }
        if alike >= ALIKE || start.elapsed() > rcriu_test_support::SETTLE {
            return s;
        }
        last = s;
    }
}

/// Root, the binary's trace lock, and this process a subreaper.
pub fn setup() -> std::sync::MutexGuard<'static, ()> {
    require_root();
    let g = trace_lock();
    become_subreaper();
    g
}

// ---- editing images, for negative controls ----

/// The threads of the dumped process `pid`, as pstree.img lists them.
pub fn threads_of(dir: &ImageDir, pid: i32) -> Vec<u32> {
    dir.pstree()
        .unwrap()
        .into_iter()
        .find(|e| e.pid == pid as u32)
        .expect("the process is in pstree.img")
        .threads
}

/// The tid and core of the dumped thread named `comm`.
pub fn core_named(dir: &ImageDir, pid: i32, comm: &str) -> (u32, pb::CoreEntry) {
    threads_of(dir, pid)
        .into_iter()
        .map(|t| (t, dir.core(t).unwrap()))
        .find(|(_, c)| {
            c.thread_core
                .as_ref()
                .and_then(|tc| tc.comm.as_deref())
                .is_some_and(|n| n == comm.as_bytes())
        })
        .unwrap_or_else(|| panic!("no dumped thread is named {comm}"))
}

pub fn write_core(dir: &ImageDir, tid: u32, core: &pb::CoreEntry) {
    dir.write_one(ImageFile::Core(tid.into()), core).unwrap();
}

/// Runs `f` on the core of the leader and writes it back.
pub fn edit_leader(dir: &ImageDir, pid: i32, f: impl FnOnce(&mut pb::CoreEntry)) {
    let mut core = dir.core(pid as u32).unwrap();
    f(&mut core);
    write_core(dir, pid as u32, &core);
}

/// Waits until every process of the dumped tree is gone (the dump killed
/// them; this process, a subreaper, is handed the orphans and reaps
/// them), so that their pids are free for the restore.
pub fn tree_gone(dir: &ImageDir) {
    let pids: Vec<u32> = dir
        .pstree()
        .expect("reading pstree.img")
        .iter()
        .map(|e| e.pid)
        .collect();
    let start = std::time::Instant::now();
    while pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        // SAFETY: waitpid with no status pointer, on any child.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) } > 0 {
        }
        assert!(
            start.elapsed() < rcriu_test_support::HANG_GUARD,
            "the dumped tree {pids:?} does not go"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The first image of `images` whose name starts with `prefix`.
pub fn image_named(images: &std::path::Path, prefix: &str) -> ImageFile {
    let name = std::fs::read_dir(images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* image in {}", images.display()));
    ImageFile::parse(&name).unwrap()
}

/// Edits the one entry of `file` in `images`, and drops rcriu's manifest
/// so that the restore reads the edit.
pub fn edit_one<M: prost::Message + prost::Name + Default>(
    images: &std::path::Path,
    file: ImageFile,
    f: impl FnOnce(&mut M),
) {
    let dir = ImageDir::open(images).unwrap();
    let mut e: M = dir.read_one(file).unwrap();
    f(&mut e);
    dir.write_one(file, &e).unwrap();
    let _ = std::fs::remove_file(images.join(rcriu::images::manifest::MANIFEST));
}
