//! What a process and its threads hold beyond CRIU's core image
//! (docs/state-inventory.md), and the cases where a restore that reported
//! success used to give back a broken process (issue 12): an SA_ONSTACK
//! handler in a thread without an alternate stack (Python's way), a
//! SIGTRAP handler, membarrier registrations, THP disabled except where
//! advised, memory-deny-write-execute, KSM, the core dump filter, the
//! autogroup's nice, CPU affinity, I/O priority, TSC and machine-check
//! modes, an open /proc/self/maps, an executable memfd.
//!
//! Each workload checks itself from inside after a dump, kill and restore
//! (with the /proc and inside comparisons of `common::cycle`) and after a
//! --leave-running dump. The negative controls take one field out of the
//! images (what a restore that ignores it would give) and expect the
//! workload to name what it lost.

mod common;

use common::{cycle, edit_leader, leave_running, setup, threads_of, write_core};
use rcriu::images::{ImageDir, ImageFile, pb};

// ---- onstack: SA_ONSTACK handlers, alternate stacks ----

#[test]
fn sa_onstack_handlers_without_an_alternate_stack_work_after_a_restore() {
    let _g = setup();
    cycle("onstack", &[], None).unwrap();
}

#[test]
fn onstack_left_running() {
    let _g = setup();
    leave_running("onstack", &[]);
}

/// Gives the leader an alternate stack where it had none: what a restore
/// that left the one of rcriu's thread in place gave it.
fn stray_altstack(dir: &ImageDir, pid: i32) {
    edit_leader(dir, pid, |c| {
        c.thread_core.as_mut().unwrap().sas = Some(pb::ThreadSasEntry {
            ss_sp: 0x7fff_0000_0000,
            ss_size: 12288,
            ss_flags: 0,
        });
    });
}

/// Takes the second thread's alternate stack away.
fn drop_thread_altstack(dir: &ImageDir, pid: i32) {
    let tid = threads_of(dir, pid)
        .into_iter()
        .find(|&t| t != pid as u32)
        .expect("a second thread");
    let mut c = dir.core(tid).unwrap();
    c.thread_core.as_mut().unwrap().sas = None;
    write_core(dir, tid, &c);
}

#[test]
fn onstack_corrupted_images_are_noticed() {
    let _g = setup();
    let e = cycle("onstack", &[], Some(stray_altstack)).unwrap_err();
    assert!(e.contains("the main thread has an alternate stack"), "{e}");
    let e = cycle("onstack", &[], Some(drop_thread_altstack)).unwrap_err();
    assert!(e.contains("thread: its alternate stack is"), "{e}");
}

// ---- task_attrs: what CRIU's core does not carry ----

#[test]
fn task_attributes_restored() {
    let _g = setup();
    cycle("task_attrs", &[], None).unwrap();
}

#[test]
fn task_attributes_left_running() {
    let _g = setup();
    leave_running("task_attrs", &[]);
}

/// The second thread's tid and core.
fn other_thread(dir: &ImageDir, pid: i32) -> (u32, pb::CoreEntry) {
    let tid = threads_of(dir, pid)
        .into_iter()
        .find(|&t| t != pid as u32)
        .expect("a second thread");
    (tid, dir.core(tid).unwrap())
}

fn edit_tc(dir: &ImageDir, pid: i32, f: impl FnOnce(&mut pb::TaskCoreEntry)) {
    edit_leader(dir, pid, |c| f(c.tc.as_mut().unwrap()));
}

fn edit_thread_core(dir: &ImageDir, pid: i32, f: impl FnOnce(&mut pb::ThreadCoreEntry)) {
    edit_leader(dir, pid, |c| f(c.thread_core.as_mut().unwrap()));
}

fn edit_other_thread(dir: &ImageDir, pid: i32, f: impl FnOnce(&mut pb::ThreadCoreEntry)) {
    let (tid, mut c) = other_thread(dir, pid);
    f(c.thread_core.as_mut().unwrap());
    write_core(dir, tid, &c);
}

fn drop_thp(dir: &ImageDir, pid: i32) {
    edit_tc(dir, pid, |tc| tc.rcriu_thp_disable = None);
    let mut mm = dir.mm(pid as u32).unwrap();
    mm.thp_disabled = Some(false);
    dir.write_one(ImageFile::Mm(pid as u64), &mm).unwrap();
}

fn drop_mdwe(dir: &ImageDir, pid: i32) {
    edit_tc(dir, pid, |tc| tc.rcriu_mdwe = None);
}

fn drop_membarrier(dir: &ImageDir, pid: i32) {
    edit_tc(dir, pid, |tc| tc.membarrier_registration_mask = None);
}

fn drop_coredump_filter(dir: &ImageDir, pid: i32) {
    edit_tc(dir, pid, |tc| tc.rcriu_coredump_filter = None);
}

fn drop_autogroup(dir: &ImageDir, pid: i32) {
    edit_tc(dir, pid, |tc| tc.rcriu_autogroup_nice = None);
}

fn drop_ksm(dir: &ImageDir, pid: i32) {
    edit_tc(dir, pid, |tc| tc.rcriu_ksm_merge_any = None);
}

/// SIGTRAP's action as the default: the check's raise(SIGTRAP) kills it.
fn drop_sigtrap(dir: &ImageDir, pid: i32) {
    edit_tc(dir, pid, |tc| {
        let sa = &mut tc.sigactions[libc::SIGTRAP as usize - 1];
        sa.sigaction = 0;
        sa.flags = 0;
    });
}

/// Moves fd 20 (/proc/PID/maps) to another position.
fn move_maps_fd(dir: &ImageDir, pid: i32) {
    let ids = dir
        .read_one::<pb::TaskKobjIdsEntry>(ImageFile::Ids(pid as u64))
        .unwrap();
    let fdinfo: Vec<pb::FdinfoEntry> = dir
        .read_all(ImageFile::Fdinfo(ids.files_id.into()))
        .unwrap();
    let id = fdinfo.iter().find(|e| e.fd == 20).expect("fd 20").id;
    let mut files = dir.files().unwrap();
    let f = files.iter_mut().find(|f| f.id == id).expect("fd 20's file");
    f.reg.as_deref_mut().unwrap().pos = 50;
    dir.write_all(ImageFile::Files, &files).unwrap();
}

/// Spoils the memfd's script (its first page): it cannot be executed.
fn spoil_memfd(dir: &ImageDir, _pid: i32) {
    let m: Vec<pb::MemfdInodeEntry> = dir.read_all(ImageFile::Memfd).unwrap();
    let shmid = m[0].shmid;
    let pm = dir.shmem_pagemap(shmid).unwrap();
    let path = dir.file_path(ImageFile::Pages(pm.pages_id().into()));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..2].copy_from_slice(b"xx");
    std::fs::write(&path, &bytes).unwrap();
}

fn drop_affinity(dir: &ImageDir, pid: i32) {
    edit_thread_core(dir, pid, |t| t.rcriu_cpu_affinity.clear());
}

fn drop_ioprio(dir: &ImageDir, pid: i32) {
    edit_thread_core(dir, pid, |t| t.rcriu_ioprio = None);
}

fn drop_mce(dir: &ImageDir, pid: i32) {
    edit_thread_core(dir, pid, |t| t.rcriu_mce_kill = None);
}

fn drop_thread_affinity(dir: &ImageDir, pid: i32) {
    edit_other_thread(dir, pid, |t| t.rcriu_cpu_affinity.clear());
}

fn drop_thread_ioprio(dir: &ImageDir, pid: i32) {
    edit_other_thread(dir, pid, |t| t.rcriu_ioprio = None);
}

fn drop_thread_tsc(dir: &ImageDir, pid: i32) {
    edit_other_thread(dir, pid, |t| t.rcriu_tsc = None);
}

/// Each field taken out, and what the workload then says it lost.
const CONTROLS: &[(common::Tweak, &str)] = &[
    (drop_thp, "FAIL: thp"),
    (drop_mdwe, "FAIL: mdwe"),
    (drop_membarrier, "FAIL: membarrier"),
    (drop_coredump_filter, "FAIL: coredump_filter"),
    (drop_autogroup, "FAIL: autogroup"),
    (drop_ksm, "FAIL: ksm"),
    (move_maps_fd, "FAIL: maps fd"),
    (spoil_memfd, "FAIL: memfd exec"),
    (drop_affinity, "FAIL: affinity"),
    (drop_ioprio, "FAIL: ioprio"),
    (drop_mce, "FAIL: mce"),
    (drop_thread_affinity, "FAIL: thread affinity"),
    (drop_thread_ioprio, "FAIL: thread ioprio"),
    (drop_thread_tsc, "FAIL: thread tsc"),
];

#[test]
fn task_attributes_corrupted_images_are_noticed() {
    let _g = setup();
    for (tweak, says) in CONTROLS {
        let e = cycle("task_attrs", &[], Some(*tweak)).unwrap_err();
        assert_eq!(
            e.trim().rsplit(": ").next(),
            says.rsplit(": ").next(),
            "{e}"
        );
    }
    // Without its SIGTRAP handler, the check's raise(SIGTRAP) kills it.
    let e = cycle("task_attrs", &[], Some(drop_sigtrap)).unwrap_err();
    let status = e
        .strip_prefix("exit status 0x")
        .and_then(|r| i32::from_str_radix(r.split(':').next()?, 16).ok())
        .unwrap_or_else(|| panic!("{e}"));
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTRAP,
        "{e}"
    );
}

/// A named anonymous area: the name comes back on a kernel that has them
/// (CONFIG_ANON_VMA_NAME); on one that has not, such images are refused
/// by name before the process runs.
#[test]
fn anonymous_area_names() {
    let _g = setup();
    let supported = rcriu_test_support::kernel_names_anon_areas();
    let name_one = |dir: &ImageDir, pid: i32| {
        let mut mm = dir.mm(pid as u32).unwrap();
        let heap = mm
            .vmas
            .iter()
            .find(|v| v.status & rcriu::images::vma::VMA_AREA_HEAP != 0)
            .expect("a heap");
        mm.rcriu_anon_names.push(pb::RcriuAnonNameEntry {
            start: heap.start,
            end: heap.end,
            name: b"rcriu-named".to_vec(),
        });
        dir.write_one(ImageFile::Mm(pid as u64), &mm).unwrap();
    };
    let r = cycle("onstack", &[], Some(name_one));
    if supported {
        r.unwrap();
    } else {
        let e = r.unwrap_err();
        assert!(
            e.contains("applying madvise flags") && e.contains("naming the area"),
            "{e}"
        );
    }
}

/// The comparisons every cycle makes (/proc, and what only the process
/// tells) see each of these losses, whatever the workload checks itself.
#[test]
fn every_restore_is_compared_with_what_was_dumped() {
    let _g = setup();
    let sees = |tweak: common::Tweak, what: &str| {
        let d = common::restored_diff("task_attrs", &[], tweak);
        assert!(
            d.iter().any(|l| l.contains(what)),
            "a restore losing {what} must show: {d:?}"
        );
    };
    sees(drop_mdwe, "mdwe");
    sees(drop_membarrier, "membarrier");
    sees(drop_coredump_filter, "coredump_filter");
    sees(drop_autogroup, "autogroup nice");
    sees(drop_ksm, "ksm_merge_any");
    sees(drop_affinity, "affinity");
    sees(drop_affinity, "Cpus_allowed_list");
    sees(drop_ioprio, "ioprio");
    sees(drop_mce, "mce_kill");
    sees(drop_thread_tsc, "tsc");
    sees(drop_thp, "thp_disable");
    sees(
        |d, p| edit_tc(d, p, |tc| tc.personality ^= 0x0040000),
        "personality",
    );
    sees(
        |d, p| edit_tc(d, p, |tc| tc.oom_score_adj = Some(17)),
        "oom_score_adj",
    );
    sees(
        |d, p| {
            edit_tc(d, p, |tc| {
                let l = &mut tc.rlimits.as_mut().unwrap().rlimits[libc::RLIMIT_NOFILE as usize];
                l.cur -= 1;
            })
        },
        "limits",
    );
    sees(
        |d, p| edit_tc(d, p, |tc| tc.child_subreaper = Some(true)),
        "child_subreaper",
    );
    sees(
        |d, p| edit_thread_core(d, p, |t| t.sched_nice = Some(7)),
        "stat[19]",
    );
    sees(
        |d, p| edit_thread_core(d, p, |t| t.comm = Some(b"renamed".to_vec())),
        "comm",
    );
    sees(
        |d, p| edit_thread_core(d, p, |t| t.rcriu_timer_slack_ns = Some(123_456)),
        "timer_slack",
    );
    sees(
        |d, p| edit_thread_core(d, p, |t| t.pdeath_sig = Some(libc::SIGUSR2 as u32)),
        "pdeath_sig",
    );
    sees(
        |d, p| edit_thread_core(d, p, |t| t.futex_rla += 8),
        "robust_list",
    );
    sees(
        |d, p| {
            edit_leader(d, p, |c| {
                c.thread_info.as_mut().unwrap().clear_tid_addr += 8
            })
        },
        "tid_address",
    );
    sees(
        |d, p| {
            edit_thread_core(d, p, |t| {
                t.creds.as_mut().unwrap().secbits |= 1 << 4; // SECBIT_KEEP_CAPS
            })
        },
        "securebits",
    );
    // (The second thread's: the leader sleeps in sigsuspend, whose mask
    // is what status shows.)
    sees(
        |d, p| {
            edit_other_thread(d, p, |t| {
                *t.blk_sigset.as_mut().unwrap() |= 1 << (libc::SIGHUP - 1)
            })
        },
        "SigBlk",
    );
    sees(
        |d, p| {
            let mut fs: pb::FsEntry = d.read_one(ImageFile::Fs(p as u64)).unwrap();
            fs.umask = Some(0o077);
            d.write_one(ImageFile::Fs(p as u64), &fs).unwrap();
        },
        "Umask",
    );
    sees(
        |d, p| {
            let mut mm = d.mm(p as u32).unwrap();
            mm.dumpable = Some(0);
            d.write_one(ImageFile::Mm(p as u64), &mm).unwrap();
        },
        "dumpable",
    );
    let d = common::restored_diff("onstack", &[], stray_altstack);
    assert!(d.iter().any(|l| l.contains("sigaltstack")), "{d:?}");
}

/// A process stopped by SIGSTOP comes back stopped, and runs on when
/// continued; the negative control: the image says it was running.
#[test]
fn a_stopped_process_comes_back_stopped() {
    let _g = setup();
    let state = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .rsplit_once(") ")
            .map(|(_, r)| r.chars().next().unwrap())
            .unwrap()
    };
    for running in [false, true] {
        let mut w = common::start("onstack", &[]);
        rcriu_test_support::signal(w.pid, libc::SIGSTOP);
        while state(w.pid) != 'T' {
            std::thread::yield_now();
        }
        let images = rcriu_test_support::TempDir::new("stopped");
        rcriu::Dump::new(w.pid)
            .images_dir(images.path())
            .run()
            .unwrap();
        w.reap();
        let dir = ImageDir::open(images.path()).unwrap();
        if running {
            edit_tc(&dir, w.pid, |tc| {
                tc.task_state = 1;
                tc.stop_signo = None;
            });
            std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
        }
        rcriu::Restore::new(images.path())
            .detach(true)
            .run()
            .unwrap();
        let start = std::time::Instant::now();
        // A running restored process sleeps in sigsuspend soon.
        let seen = loop {
            let s = state(w.pid);
            if s == 'T' && !running || s == 'S' || start.elapsed() > rcriu_test_support::SETTLE {
                break s;
            }
            std::thread::yield_now();
        };
        assert_eq!(seen, if running { 'S' } else { 'T' });
        rcriu_test_support::signal(w.pid, libc::SIGCONT);
        w.verdict().unwrap();
    }
}

/// A copy of the onstack workload started, then removed: a process whose
/// executable has no name left.
fn start_deleted_exe(dir: &rcriu_test_support::TempDir) -> rcriu_test_support::Workload {
    let bin = dir.path().join("onstack-copy");
    std::fs::copy(rcriu_test_support::workload("onstack"), &bin).unwrap();
    let w = rcriu_test_support::Workload::start_binary(&bin, "onstack", &[]);
    w.wait_in("sigsuspend");
    std::fs::remove_file(&bin).unwrap();
    w
}

/// A process whose executable was deleted: the executable is a ghost
/// (within the ghost limit, as CRIU), mapped and its exe again.
#[test]
fn a_deleted_executable_carries_on() {
    let _g = setup();
    let dir = rcriu_test_support::TempDir::new("deleted-exe");
    let w = start_deleted_exe(&dir);
    common::cycle_with(w, "onstack", None).unwrap();
}

/// Over the ghost limit, a deleted executable is refused by name, and the
/// process runs on.
#[test]
fn a_deleted_executable_over_the_ghost_limit_is_refused_by_name() {
    let _g = setup();
    let dir = rcriu_test_support::TempDir::new("deleted-exe-big");
    let w = start_deleted_exe(&dir);
    let images = rcriu_test_support::TempDir::new("deleted-exe-img");
    let e = rcriu::Dump::new(w.pid)
        .images_dir(images.path())
        .ghost_limit(4096)
        .run()
        .expect_err("a deleted executable over the limit")
        .to_string();
    // (Its mappings of the executable are met first.)
    assert!(
        e.contains("onstack-copy") && e.contains("over the ghost limit of 4096"),
        "{e}"
    );
    w.verdict().unwrap();
}
