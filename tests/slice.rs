//! The first vertical slice end to end: rcriu dumps a real process, kills
//! it, restores it, and the process carries on. /proc shows the same
//! process before the dump and after the restore, and each workload checks
//! its own state. Negative controls corrupt the images and must make the
//! workload report the failure.

use std::path::Path;

mod common;

use common::{cycle, leave_running, setup};
use rcriu::images::{ImageDir, ImageFile};
use rcriu::{Dump, Restore};
use rcriu_test_support::{Counter, ProcSnapshot, TempDir, Workload};

#[test]
fn compute_carries_on() {
    let _g = setup();
    cycle("compute", &["spin"], None).unwrap();
    // Blocked in read(2) on a pipe: restarted after the restore.
    cycle("compute", &["read"], None).unwrap();
    leave_running("compute", &["spin"]);
}

/// An encrypted dump (which kills the process once its images are
/// encrypted) restores with its key: the same /proc, the workload's own
/// verdict. Without the key the same images are refused
/// (tests/corruption.rs has every refusal).
#[test]
fn encrypted_dumps_carry_on() {
    let _g = setup();
    let key = || rcriu::images::crypt::Key::parse(&[0x33; 32], "of the test").unwrap();
    common::cycle_opts(
        common::start("dump_state", &[]),
        "dump_state",
        None,
        |d| d.encrypt(key()),
        |r| r.key(key()),
    )
    .unwrap();
    // The control: the key is needed.
    let e = common::cycle_opts(
        common::start("dump_state", &[]),
        "dump_state",
        None,
        |d| d.encrypt(key()),
        |r| r,
    )
    .unwrap_err();
    assert!(e.contains("are encrypted"), "{e}");
}

#[test]
fn clock_carries_on_in_a_time_namespace() {
    let _g = setup();
    cycle("clock", &[], None).unwrap();
    leave_running("clock", &[]);
}

#[test]
fn dump_state_carries_on() {
    let _g = setup();
    cycle("dump_state", &[], None).unwrap();
    leave_running("dump_state", &[]);
}

#[test]
fn counter_carries_on() {
    let _g = setup();
    let home = TempDir::new("slice-counter");
    let mut c = Counter::start(home.path());
    c.lines_past(3);
    let before = ProcSnapshot::take(c.pid);
    let images = TempDir::new("slice-counter-img");
    Dump::new(c.pid)
        .images_dir(images.path())
        .run()
        .expect("dumping the counter");
    c.reap();
    let n = c.lines_past(0).len();
    Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring the counter");
    let diff = before.diff(&ProcSnapshot::settled(c.pid, &before));
    assert!(
        diff.is_empty(),
        "counter: /proc differs:\n{}",
        diff.join("\n")
    );
    let l = c.lines_past(n + 3);
    assert!(l.iter().all(|x| !x.starts_with("CORRUPT")), "{l:?}");
    let nums: Vec<u64> = l.iter().map(|x| x.parse().unwrap()).collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "it carries on: {nums:?}"
    );
}

#[test]
fn dumped_restored_dumped_restored() {
    let _g = setup();
    let mut w = Workload::start("clock", &[]);
    let before = ProcSnapshot::take(w.pid);
    for round in 0..2 {
        let images = TempDir::new("slice-twice");
        Dump::new(w.pid)
            .images_dir(images.path())
            .run()
            .unwrap_or_else(|e| panic!("dump {round}: {e}"));
        w.reap();
        Restore::new(images.path())
            .detach(true)
            .run()
            .unwrap_or_else(|e| panic!("restore {round}: {e}"));
        let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
        assert!(diff.is_empty(), "round {round}: {}", diff.join("\n"));
    }
    w.verdict().unwrap();
}

// Negative controls: each corrupts what a workload checks.

fn flip_first_page_byte(dir: &ImageDir, pid: i32) {
    let mut runs = dir.pagemap(pid as u32).unwrap();
    let id = runs.pages_id();
    // The first run the workload checks: its pattern area is the largest.
    let mut best = None;
    while let Some(run) = runs.next_run().unwrap() {
        if let Some(off) = run.pages_offset
            && best.is_none_or(|(_, n)| run.nr_pages > n)
        {
            best = Some((off, run.nr_pages));
        }
    }
    let (off, _) = best.expect("pages");
    let path = dir.file_path(ImageFile::Pages(id.into()));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[off as usize + 100] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_corrupted_page_is_noticed() {
    let _g = setup();
    let e = cycle("bigmem", &["4"], Some(flip_first_page_byte)).unwrap_err();
    assert!(e.contains("FAIL: memory changed"), "{e}");
}

#[test]
fn registers_carry_on() {
    let _g = setup();
    cycle("regs", &[], None).unwrap();
    leave_running("regs", &[]);
}

fn corrupt_r13(dir: &ImageDir, pid: i32) {
    let mut core = dir.core(pid as u32).unwrap();
    core.thread_info.as_mut().unwrap().gpregs.r13 ^= 1;
    dir.write_one(ImageFile::Core(pid as u64), &core).unwrap();
}

fn corrupt_xmm9(dir: &ImageDir, pid: i32) {
    let mut core = dir.core(pid as u32).unwrap();
    // xmm9: the legacy area's tenth 16-byte register, four words each.
    core.thread_info.as_mut().unwrap().fpregs.xmm_space[9 * 4] ^= 1;
    dir.write_one(ImageFile::Core(pid as u64), &core).unwrap();
}

#[test]
fn a_corrupted_register_is_noticed() {
    let _g = setup();
    let e = cycle("regs", &[], Some(corrupt_r13)).unwrap_err();
    assert!(e.contains("FAIL: r13"), "{e}");
    let e = cycle("regs", &[], Some(corrupt_xmm9)).unwrap_err();
    assert!(e.contains("mm9"), "{e}");
}

fn corrupt_sigaction(dir: &ImageDir, pid: i32) {
    let mut core = dir.core(pid as u32).unwrap();
    let tc = core.tc.as_mut().unwrap();
    // SIGUSR2's handler: entries run from signal 1 with SIGKILL and
    // SIGSTOP left out, so signal 12 is the 11th.
    let sa = &mut tc.sigactions[libc::SIGUSR2 as usize - 2];
    sa.sigaction += 1;
    dir.write_one(ImageFile::Core(pid as u64), &core).unwrap();
}

#[test]
fn a_corrupted_signal_action_is_noticed() {
    let _g = setup();
    let e = cycle("dump_state", &[], Some(corrupt_sigaction)).unwrap_err();
    assert!(e.contains("FAIL: the action of signal 12 changed"), "{e}");
}

fn shift_monotonic_clock(dir: &ImageDir, _pid: i32) {
    let mut t = dir.timens(0).unwrap().expect("timens-0.img");
    t.monotonic.tv_sec += 3600;
    dir.write_one(ImageFile::Timens(0), &t).unwrap();
}

#[test]
fn a_corrupted_clock_is_noticed() {
    let _g = setup();
    let e = cycle("clock", &[], Some(shift_monotonic_clock)).unwrap_err();
    assert!(e.contains("FAIL: CLOCK_MONOTONIC stepped"), "{e}");
}

#[test]
fn the_cli_dumps_and_restores() {
    let _g = setup();
    let rcriu = env!("CARGO_BIN_EXE_rcriu");
    let mut w = Workload::start("compute", &["spin"]);
    let images = TempDir::new("slice-cli");
    let dir = images.path().join("img");
    let st = std::process::Command::new(rcriu)
        .args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(&dir)
        .args(["-v4", "-o", "dump.log"])
        .status()
        .unwrap();
    assert!(st.success(), "rcriu dump: {st}");
    assert!(dir.join("dump.log").exists());
    w.reap();
    let pidfile = images.path().join("pid");
    let st = std::process::Command::new(rcriu)
        .args(["restore", "-d", "-D"])
        .arg(&dir)
        .args(["-o", "restore.log", "--pidfile"])
        .arg(&pidfile)
        .status()
        .unwrap();
    assert!(st.success(), "rcriu restore: {st}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, w.pid);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // The restored process is the child of the rcriu that exited: ours,
    // as subreaper.
    w.verdict().unwrap();
}
