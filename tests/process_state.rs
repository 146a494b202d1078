//! The whole execution state of one process across a dump (issue 5):
//! threads and their registers, signals, timers, credentials and limits,
//! seccomp. Each workload checks itself from inside after a dump, kill
//! and restore (with the /proc comparison of `common::cycle`) and after a
//! --leave-running dump; each has negative controls that corrupt the
//! image field it depends on and must make it fail.
//!
//! Every negative control expects the *workload's* own FAIL text
//! (`cycle(..).unwrap_err()`), not a refusal: each tweak leaves valid
//! images of a different process state, which a restore must carry out.
//! (Each control was seen failing so, and each untouched workload
//! passing, with CRIU 4.2 restoring rcriu's tweaked images, but for two
//! things CRIU does not restore: timer slack and personality.)

mod common;

use std::path::Path;
use std::process::Command;

use common::{core_named, cycle, edit_leader, leave_running, setup, start, threads_of, write_core};
use rcriu::Dump;
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu_test_support::TempDir;

/// The signal number of a `siginfo_t` as the images hold it.
fn signo(si: &pb::SiginfoEntry) -> i32 {
    i32::from_le_bytes(si.siginfo[0..4].try_into().unwrap())
}

/// `SIGRTMIN` as glibc's programs see it (the kernel's 32 plus the two
/// glibc keeps for itself).
const SIGRTMIN: i32 = 34;

/// Every workload and mode, as the tests run them.
const WORKLOADS: &[(&str, &[&str])] = &[
    ("mt", &[]),
    ("mt", &["4"]),
    ("signals", &[]),
    ("timers", &[]),
    ("timers", &["pending"]),
    ("creds", &[]),
    ("seccomp", &["filter"]),
    ("seccomp", &["threads"]),
    ("seccomp", &["tsync"]),
];

/// The baseline of every negative control: untouched, each workload
/// passes its own check.
#[test]
fn workloads_pass_without_a_dump() {
    let _g = setup();
    for (name, args) in WORKLOADS {
        start(name, args)
            .verdict()
            .unwrap_or_else(|e| panic!("{name} {args:?}: {e}"));
    }
}

// ---- mt: threads ----

#[test]
fn mt_restored() {
    let _g = setup();
    cycle("mt", &[], None).unwrap();
}

#[test]
fn mt_left_running() {
    let _g = setup();
    leave_running("mt", &[]);
}

/// Swaps the fs_base (the TLS pointer) of threads mt-w0 and mt-w1: each
/// then reads the other's __thread id.
fn swap_fs_base(dir: &ImageDir, pid: i32) {
    let (t0, mut c0) = core_named(dir, pid, "mt-w0");
    let (t1, mut c1) = core_named(dir, pid, "mt-w1");
    let r0 = &mut c0.thread_info.as_mut().unwrap().gpregs;
    let r1 = &mut c1.thread_info.as_mut().unwrap().gpregs;
    std::mem::swap(&mut r0.fs_base, &mut r1.fs_base);
    write_core(dir, t0, &c0);
    write_core(dir, t1, &c1);
}

/// Drops the last signal pending for thread mt-w3 alone (its second
/// SIGRTMIN+2, value 303).
fn drop_thread_signal(dir: &ImageDir, pid: i32) {
    let (t, mut c) = core_named(dir, pid, "mt-w3");
    let q = c
        .thread_core
        .as_mut()
        .unwrap()
        .signals_p
        .as_mut()
        .expect("signals_p");
    assert_eq!(q.signals.len(), 3, "SIGUSR2 and two SIGRTMIN+2 pending");
    assert_eq!(signo(q.signals.last().unwrap()), SIGRTMIN + 2);
    q.signals.pop();
    write_core(dir, t, &c);
}

/// Drops the last signal pending for the whole process (SIGRTMIN+5 with
/// value 502).
fn drop_process_signal(dir: &ImageDir, pid: i32) {
    edit_leader(dir, pid, |c| {
        let q =
            c.tc.as_mut()
                .unwrap()
                .signals_s
                .as_mut()
                .expect("signals_s");
        assert_eq!(q.signals.len(), 3, "SIGHUP and two SIGRTMIN+5 pending");
        assert_eq!(signo(q.signals.last().unwrap()), SIGRTMIN + 5);
        q.signals.pop();
    });
}

/// Flips a bit of the vector thread's registers in its xsave area: zmm16
/// (hi16_zmm) on a CPU with AVX-512, else the upper half of ymm0
/// (ymmh), else xmm0.
fn flip_vector(dir: &ImageDir, pid: i32) {
    let (t, mut c) = core_named(dir, pid, "mt-vec");
    let fp = &mut c.thread_info.as_mut().unwrap().fpregs;
    match fp.xsave.as_mut() {
        Some(xs) if !xs.hi16_zmm.is_empty() => xs.hi16_zmm[0] ^= 1,
        Some(xs) if !xs.ymmh_space.is_empty() => xs.ymmh_space[0] ^= 1,
        _ => fp.xmm_space[0] ^= 1,
    }
    write_core(dir, t, &c);
}

/// What the mt workload says of [`flip_vector`]'s change on this CPU.
fn flipped_vector() -> &'static str {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let has = |f: &str| {
        flags
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|x| x == f))
    };
    if has("avx512f") && has("avx512bw") {
        "FAIL: vector thread: zmm16 byte 0"
    } else if has("avx") {
        "FAIL: vector thread: ymm0 byte 16"
    } else {
        "FAIL: vector thread: xmm0 byte 0"
    }
}

/// Makes the futex waiter come back from FUTEX_WAIT with EINTR instead of
/// restarting it: the instruction after the syscall, ax = -EINTR.
fn interrupt_futex_wait(dir: &ImageDir, pid: i32) {
    let (t, mut c) = core_named(dir, pid, "mt-futex");
    let r = &mut c.thread_info.as_mut().unwrap().gpregs;
    assert_eq!(r.ax, 202, "the waiter is stored about to restart futex()");
    r.ip += 2;
    r.ax = (-libc::EINTR) as i64 as u64;
    write_core(dir, t, &c);
}

#[test]
fn mt_corrupted_images_are_noticed() {
    let _g = setup();
    let e = cycle("mt", &["4"], Some(swap_fs_base)).unwrap_err();
    assert!(e.contains("TLS"), "{e}");
    let e = cycle("mt", &["4"], Some(drop_thread_signal)).unwrap_err();
    assert!(
        e.contains("FAIL: thread 3: signal 36 (value 303) not pending"),
        "{e}"
    );
    let e = cycle("mt", &["4"], Some(drop_process_signal)).unwrap_err();
    assert!(
        e.contains("FAIL: process: signal 39 (value 502) not pending"),
        "{e}"
    );
    let e = cycle("mt", &["4"], Some(flip_vector)).unwrap_err();
    assert!(e.contains(flipped_vector()), "{e}");
    let e = cycle("mt", &["4"], Some(interrupt_futex_wait)).unwrap_err();
    assert!(
        e.contains("FAIL: futex waiter: FUTEX_WAIT returned -1"),
        "{e}"
    );
}

// ---- rseq ----

/// The one thread of rseq_cs that is not the leader: the spinner.
fn spinner(dir: &ImageDir, pid: i32) -> (u32, pb::CoreEntry) {
    let t = threads_of(dir, pid)
        .into_iter()
        .find(|&t| t != pid as u32)
        .expect("rseq_cs has a spinning thread");
    (t, dir.core(t).unwrap())
}

#[test]
fn rseq_critical_section_restored() {
    let _g = setup();
    cycle("rseq_cs", &[], None).unwrap();
    // The dump never leaves a thread inside a critical section: the
    // spinner, found there, resumes at the abort handler (as CRIU does).
    let w = start("rseq_cs", &[]);
    let (s, e) = (w.fact_u64("cs_start"), w.fact_u64("cs_end"));
    let images = TempDir::new("rseq-ip");
    Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .unwrap();
    let dir = ImageDir::open(images.path()).unwrap();
    let (_, core) = spinner(&dir, w.pid);
    let ip = core.thread_info.unwrap().gpregs.ip;
    assert!(!(s..e).contains(&ip), "ip {ip:#x} inside {s:#x}..{e:#x}");
    assert!(core.thread_core.unwrap().rseq_entry.is_some());
    w.verdict().unwrap();
}

#[test]
fn rseq_left_running() {
    let _g = setup();
    leave_running("rseq_cs", &[]);
}

/// The spinner's rseq registration dropped: no signal aborts its section.
fn drop_rseq(dir: &ImageDir, pid: i32) {
    let (t, mut c) = spinner(dir, pid);
    c.thread_core.as_mut().unwrap().rseq_entry = None;
    write_core(dir, t, &c);
}

#[test]
fn rseq_corrupted_images_are_noticed() {
    let _g = setup();
    let e = cycle("rseq_cs", &[], Some(drop_rseq)).unwrap_err();
    assert!(
        e.contains("FAIL: a signal did not abort the critical section"),
        "{e}"
    );
}

// ---- signals ----

#[test]
fn signals_restored() {
    let _g = setup();
    cycle("signals", &[], None).unwrap();
}

#[test]
fn signals_left_running() {
    let _g = setup();
    leave_running("signals", &[]);
}

/// Clears SA_ONSTACK from the action of SIGRTMIN+3 (combination 4:
/// SA_ONSTACK alone).
fn clear_sa_onstack(dir: &ImageDir, pid: i32) {
    edit_leader(dir, pid, |c| {
        // Entries run from signal 1 with SIGKILL and SIGSTOP left out.
        let sa = &mut c.tc.as_mut().unwrap().sigactions[(SIGRTMIN + 3) as usize - 3];
        assert_ne!(sa.flags & libc::SA_ONSTACK as u64, 0);
        sa.flags &= !(libc::SA_ONSTACK as u64);
    });
}

/// Moves the main thread's alternate stack by 64 bytes: it is still
/// around the handler's frame, but not the one it set. (The image's
/// ss_flags say 0, not SS_ONSTACK, as CRIU's: the parasite that reads
/// them runs on its own stack; the kernel tells SS_ONSTACK from the stack
/// pointer.)
fn shift_altstack(dir: &ImageDir, pid: i32) {
    edit_leader(dir, pid, |c| {
        let sas = c.thread_core.as_mut().unwrap().sas.as_mut().expect("sas");
        assert_eq!(sas.ss_size, 65536);
        sas.ss_sp += 64;
    });
}

#[test]
fn signals_corrupted_images_are_noticed() {
    let _g = setup();
    let e = cycle("signals", &[], Some(clear_sa_onstack)).unwrap_err();
    assert!(
        e.contains(&format!(
            "FAIL: the action of signal {} changed",
            SIGRTMIN + 3
        )),
        "{e}"
    );
    let e = cycle("signals", &[], Some(shift_altstack)).unwrap_err();
    assert!(
        e.contains("FAIL: in the SIGURG handler, sigaltstack"),
        "{e}"
    );
}

// ---- timers ----

#[test]
fn timers_restored() {
    let _g = setup();
    cycle("timers", &[], None).unwrap();
}

/// ITIMER_REAL expired, its signal pending (blocked everywhere): the
/// dump finds 0 left of its 100 ms, and the restore must arm it all the
/// same (CRIU arms such a timer with its interval).
#[test]
fn timers_expired_restored() {
    let _g = setup();
    cycle("timers", &["pending"], None).unwrap();
}

#[test]
fn timers_expired_left_running() {
    let _g = setup();
    leave_running("timers", &["pending"]);
}

#[test]
fn timers_left_running() {
    let _g = setup();
    leave_running("timers", &[]);
}

fn posix_timer(c: &mut pb::CoreEntry, signo: i32) -> &mut pb::PosixTimerEntry {
    c.tc.as_mut()
        .unwrap()
        .timers
        .as_mut()
        .unwrap()
        .posix
        .iter_mut()
        .find(|t| t.si_signo == signo as u32)
        .unwrap_or_else(|| panic!("no POSIX timer signals {signo}"))
}

/// Timer A (SIGRTMIN+1) gets a 1.1 s interval instead of 100 ms.
fn stretch_timer_a(dir: &ImageDir, pid: i32) {
    edit_leader(dir, pid, |c| {
        let t = posix_timer(c, SIGRTMIN + 1);
        assert_eq!((t.isec, t.insec), (0, 100_000_000));
        t.isec = 1;
    });
}

/// Timer D (SIGRTMIN+2, SIGEV_THREAD_ID) targets the main thread instead
/// of the waiter.
fn retarget_timer_d(dir: &ImageDir, pid: i32) {
    edit_leader(dir, pid, |c| {
        let t = posix_timer(c, SIGRTMIN + 2);
        assert!(t.notify_thread_id.is_some_and(|tid| tid != pid));
        t.notify_thread_id = Some(pid);
    });
}

#[test]
fn timers_corrupted_images_are_noticed() {
    let _g = setup();
    let e = cycle("timers", &[], Some(stretch_timer_a)).unwrap_err();
    assert!(
        e.contains("FAIL: timer A (0): interval 1100000000 ns"),
        "{e}"
    );
    let e = cycle("timers", &[], Some(retarget_timer_d)).unwrap_err();
    assert!(
        e.contains("FAIL: timer D's signal went to the main thread"),
        "{e}"
    );
}

// ---- creds ----

#[test]
fn creds_restored() {
    let _g = setup();
    cycle("creds", &[], None).unwrap();
}

#[test]
fn creds_left_running() {
    let _g = setup();
    leave_running("creds", &[]);
}

fn edit_creds(dir: &ImageDir, pid: i32, f: impl FnOnce(&mut pb::CredsEntry)) {
    edit_leader(dir, pid, |c| {
        f(c.thread_core
            .as_mut()
            .unwrap()
            .creds
            .as_mut()
            .expect("creds"))
    });
}

/// CAP_NET_BIND_SERVICE leaves the effective set.
fn drop_cap_eff(dir: &ImageDir, pid: i32) {
    edit_creds(dir, pid, |cr| {
        assert_eq!(cr.cap_eff[0], (1 << 5) | (1 << 10));
        cr.cap_eff[0] &= !(1 << 10);
    });
}

/// The saved uid becomes 1001.
fn change_suid(dir: &ImageDir, pid: i32) {
    edit_creds(dir, pid, |cr| {
        assert_eq!(
            (cr.uid, cr.euid, cr.suid, cr.fsuid),
            (1000, 1000, 1000, 1000)
        );
        cr.suid = 1001;
    });
}

#[test]
fn creds_corrupted_images_are_noticed() {
    let _g = setup();
    let e = cycle("creds", &[], Some(drop_cap_eff)).unwrap_err();
    assert!(e.contains("FAIL: capabilities eff 0x20 "), "{e}");
    let e = cycle("creds", &[], Some(change_suid)).unwrap_err();
    assert!(e.contains("FAIL: uids 1000 1000 1001 fs 1000"), "{e}");
}

// ---- seccomp ----

#[test]
fn seccomp_filter_restored() {
    let _g = setup();
    cycle("seccomp", &["filter"], None).unwrap();
}

#[test]
fn seccomp_threads_restored() {
    let _g = setup();
    cycle("seccomp", &["threads"], None).unwrap();
}

#[test]
fn seccomp_tsync_restored() {
    let _g = setup();
    cycle("seccomp", &["tsync"], None).unwrap();
}

#[test]
fn seccomp_left_running() {
    let _g = setup();
    for mode in ["filter", "threads", "tsync"] {
        leave_running("seccomp", &[mode]);
    }
}

/// `BPF_RET | BPF_K` with `SECCOMP_RET_ALLOW`: a filter that allows all.
const ALLOW_ALL: [u8; 8] = [0x06, 0, 0, 0, 0x00, 0x00, 0xff, 0x7f];

fn edit_seccomp(dir: &ImageDir, f: impl FnOnce(&mut pb::SeccompEntry)) {
    let mut s = dir.seccomp().unwrap().expect("seccomp.img");
    f(&mut s);
    dir.write_one(ImageFile::Seccomp, &s).unwrap();
}

/// The filter that makes getppid fail with EPERM allows everything.
fn neuter_getppid_filter(dir: &ImageDir, _pid: i32) {
    // Its return: SECCOMP_RET_ERRNO | EPERM, as the k of a BPF_RET.
    let ret = (0x0005_0000u32 | libc::EPERM as u32).to_le_bytes();
    edit_seccomp(dir, |s| {
        let f = s
            .seccomp_filters
            .iter_mut()
            .find(|f| f.filter.chunks(8).any(|i| i[0] == 0x06 && i[4..8] == ret))
            .expect("the getppid filter");
        f.filter = ALLOW_ALL.to_vec();
    });
}

/// The thread in strict mode is stored without seccomp.
fn unstrict(dir: &ImageDir, pid: i32) {
    let (t, mut c) = threads_of(dir, pid)
        .into_iter()
        .map(|t| (t, dir.core(t).unwrap()))
        .find(|(_, c)| c.thread_core.as_ref().unwrap().seccomp_mode == Some(1))
        .expect("a thread in strict mode");
    c.thread_core.as_mut().unwrap().seccomp_mode = None;
    write_core(dir, t, &c);
}

/// The filters lose SECCOMP_FILTER_FLAG_TSYNC: the dump stores them for
/// the leader alone, so only the leader gets them back.
fn drop_tsync(dir: &ImageDir, _pid: i32) {
    edit_seccomp(dir, |s| {
        for f in &mut s.seccomp_filters {
            let flags = f.flags.expect("filter flags");
            assert_ne!(flags & 1, 0, "stored with TSYNC");
            f.flags = Some(flags & !1);
        }
    });
}

#[test]
fn seccomp_corrupted_images_are_noticed() {
    let _g = setup();
    let e = cycle("seccomp", &["filter"], Some(neuter_getppid_filter)).unwrap_err();
    assert!(e.contains("FAIL: getppid: errno 0, want EPERM"), "{e}");
    let e = cycle("seccomp", &["threads"], Some(unstrict)).unwrap_err();
    assert!(
        e.contains("FAIL: thread C") && e.contains("Seccomp 0"),
        "{e}"
    );
    let e = cycle("seccomp", &["tsync"], Some(drop_tsync)).unwrap_err();
    assert!(e.contains("FAIL: thread T1: getppid: errno 0"), "{e}");
}

// ---- the images themselves ----

/// Dumps `name` with --leave-running into `dir`, returns the workload's
/// pid and the tids /proc listed just before (the workload is told to
/// check itself afterwards, and must pass).
fn dump_left_running(name: &str, args: &[&str], dir: &Path) -> (i32, Vec<u32>) {
    let w = start(name, args);
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", w.pid))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    tids.sort();
    Dump::new(w.pid)
        .images_dir(dir)
        .leave_running(true)
        .run()
        .unwrap_or_else(|e| panic!("dumping {name}: {e}"));
    let pid = w.pid;
    w.verdict()
        .unwrap_or_else(|e| panic!("{name} {args:?} after the dump: {e}"));
    (pid, tids)
}

/// `crit decode -i FILE` (Debian's crit, CRIU 3.17) must decode the file.
fn crit_decodes(file: &Path) -> serde_json::Value {
    let out = Command::new("crit")
        .args(["decode", "-i"])
        .arg(file)
        .output()
        .expect("running crit (Debian's criu package)");
    assert!(
        out.status.success(),
        "crit decode {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("crit's output for {}: {e}", file.display()))
}

#[test]
fn images_hold_every_thread_and_crit_decodes_them() {
    let _g = setup();
    for (name, args) in [
        ("mt", &["6"][..]),
        ("signals", &[][..]),
        ("timers", &[][..]),
        ("creds", &[][..]),
        ("seccomp", &["filter"][..]),
        ("seccomp", &["threads"][..]),
        ("seccomp", &["tsync"][..]),
    ] {
        let images = TempDir::new(&format!("state-img-{name}"));
        let (pid, tids) = dump_left_running(name, args, images.path());
        let dir = ImageDir::open(images.path()).unwrap();
        let mut listed = threads_of(&dir, pid);
        listed.sort();
        assert_eq!(listed, tids, "{name}: pstree lists every thread");
        for t in &tids {
            let f = dir.file_path(ImageFile::Core((*t).into()));
            assert!(f.exists(), "{name}: {} is there", f.display());
            let json = crit_decodes(&f);
            let entry = &json["entries"][0];
            // Debian's crit prints numbers where CRIU 4.2's prints hex.
            let fs_base = &entry["thread_info"]["gpregs"]["fs_base"];
            assert!(fs_base.is_u64() || fs_base.is_string(), "{name}: {entry}");
            assert!(entry["thread_core"]["creds"].is_object(), "{name}");
        }
        let cores: Vec<_> = std::fs::read_dir(images.path())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_str().unwrap();
                n.starts_with("core-") && n.ends_with(".img")
            })
            .collect();
        assert_eq!(cores.len(), tids.len(), "{name}: one core per thread");
        let seccomp = dir.file_path(ImageFile::Seccomp);
        if name == "seccomp" {
            let json = crit_decodes(&seccomp);
            let filters = json["entries"][0]["seccomp_filters"].as_array().unwrap();
            let want = match args[0] {
                "filter" => 2,
                // F0 of the main thread, F0 and F1 of thread A.
                "threads" => 3,
                _ => 2,
            };
            assert_eq!(filters.len(), want, "{name} {args:?}: {json}");
        }
    }
}

/// Every negative control's tweak finds its field in a real dump and
/// changes the images (checked on a --leave-running dump, whose original
/// must still pass): a control that silently changed nothing would prove
/// nothing.
#[test]
fn every_tweak_changes_the_images() {
    let _g = setup();
    let controls: &[(&str, &[&str], common::Tweak)] = &[
        ("mt", &["4"], swap_fs_base),
        ("mt", &["4"], drop_thread_signal),
        ("mt", &["4"], drop_process_signal),
        ("mt", &["4"], flip_vector),
        ("mt", &["4"], interrupt_futex_wait),
        ("signals", &[], clear_sa_onstack),
        ("signals", &[], shift_altstack),
        ("timers", &[], stretch_timer_a),
        ("timers", &[], retarget_timer_d),
        ("creds", &[], drop_cap_eff),
        ("creds", &[], change_suid),
        ("seccomp", &["filter"], neuter_getppid_filter),
        ("seccomp", &["threads"], unstrict),
        ("seccomp", &["tsync"], drop_tsync),
    ];
    // One dump per workload and arguments, the tweaks on copies of it.
    let mut done: Vec<(&str, &[&str], TempDir, i32)> = Vec::new();
    for &(name, args, tweak) in controls {
        if !done.iter().any(|(n, a, _, _)| *n == name && *a == args) {
            let images = TempDir::new(&format!("state-tweak-{name}"));
            let (pid, _) = dump_left_running(name, args, images.path());
            done.push((name, args, images, pid));
        }
        let (_, _, images, pid) = done
            .iter()
            .find(|(n, a, _, _)| *n == name && *a == args)
            .unwrap();
        let copy = TempDir::new(&format!("state-tweaked-{name}"));
        let files = |d: &Path| {
            let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().into_string().unwrap(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        for (n, bytes) in files(images.path()) {
            std::fs::write(copy.path().join(n), bytes).unwrap();
        }
        tweak(&ImageDir::open(copy.path()).unwrap(), *pid);
        assert_ne!(
            files(images.path()),
            files(copy.path()),
            "a tweak of {name} {args:?} changed nothing"
        );
    }
}
