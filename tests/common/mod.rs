//! What the end-to-end tests of workloads share: start a workload, dump
//! it, kill it, restore it, compare /proc and take its verdict
//! ([`cycle`]), or dump it with --leave-running and take the original's
//! verdict ([`leave_running`]).
#![allow(dead_code)]

use rcriu::images::ImageDir;
use rcriu::{Dump, Restore};
use rcriu_test_support::{
    ProcSnapshot, TempDir, Workload, become_subreaper, require_root, trace_lock,
};

/// What a cycle does to the images between the dump and the restore.
pub type Tweak = fn(&ImageDir, i32);

/// The workloads that wait for the test in sigsuspend (a sleeper's signal
/// mask changes as it enters it).
const SLEEPERS: &[&str] = &[
    "bigmem",
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
];

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
pub fn cycle_with(mut w: Workload, name: &str, tweak: Option<Tweak>) -> Result<(), String> {
    let images = TempDir::new(&format!("slice-{name}"));
    let before = steady(w.pid);
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .map_err(|e| format!("dumping {name}: {e}"))?;
    let status = w.reap();
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "a dump kills the process: {status:#x}"
    );
    let dir = ImageDir::open(images.path()).expect("opening the images");
    if let Some(t) = tweak {
        t(&dir, w.pid);
        // Tweaked images are not the dump's: without its manifest (as a
        // dump by CRIU) they restore as they say, which the negative
        // controls check; with it they are refused (tests/corruption.rs).
        std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST))
            .expect("the dump wrote a manifest");
    }
    let r = Restore::new(images.path())
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
    }
    w.verdict()
}

/// start → dump --leave-running → verdict of the original.
pub fn leave_running(name: &str, args: &[&str]) {
    let w = start(name, args);
    let images = TempDir::new(&format!("slice-lr-{name}"));
    let before = steady(w.pid);
    Dump::new(w.pid)
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
    w.verdict()
        .unwrap_or_else(|e| panic!("{name} after a --leave-running dump: {e}"));
}

/// A snapshot of a process that does not change from one reading to the
/// next (a timer's signal pending for an instant, a thread between two
/// syscalls, pass): the reference a dump or restore is compared with.
pub fn steady(pid: i32) -> ProcSnapshot {
    let start = std::time::Instant::now();
    let mut last = ProcSnapshot::take(pid);
    loop {
        let s = ProcSnapshot::take(pid);
        if s.diff(&last).is_empty() && s.wchan == last.wchan
            || start.elapsed() > rcriu_test_support::SETTLE
        {
            return s;
        }
        last = s;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Root, the binary's trace lock, and this process a subreaper.
pub fn setup() -> std::sync::MutexGuard<'static, ()> {
    require_root();
    let g = trace_lock();
    become_subreaper();
    g
}
