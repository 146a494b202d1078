//! The infection engine on real processes: seize, infect, ask, cure,
//! release, and the victim never knows.

use std::io::{Read, Seek};
use std::os::fd::AsFd;

use rcriu_compel::abi::{IoVec, MprotectRange};
use rcriu_compel::{Parasite, Seized, ThreadCtx};
use rcriu_test_support::{Workload, require_root, status_lines, trace_lock};

/// What must not change across an infection: the maps, the signal and
/// capability lines of status, and the leader's registers and FPU state.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    maps: String,
    status: Vec<String>,
}

fn snapshot(pid: i32) -> Snapshot {
    Snapshot {
        maps: std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("reading maps"),
        // SigQ counts the signals queued for the whole user: not the task's.
        status: status_lines(
            pid,
            &[
                "SigPnd",
                "ShdPnd",
                "SigBlk",
                "SigIgn",
                "SigCgt",
                "Cap",
                "NoNewPrivs",
                "Seccomp",
            ],
        ),
    }
}

fn assert_same_ctx(a: &ThreadCtx, b: &ThreadCtx) {
    assert_eq!(a.regs, b.regs, "registers changed");
    assert_eq!(a.sigmask, b.sigmask, "signal mask changed");
    if let Some(d) = a.xstate.diff(&b.xstate) {
        panic!("xsave state changed: {d}");
    }
}

fn cycles(mode: &str, n: usize) {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("compute", &[mode]);
    for i in 0..n {
        let seized = Seized::seize(w.pid).expect("seizing");
        let before_snap = snapshot(w.pid);
        let before = ThreadCtx::capture(w.pid).expect("capturing");
        let mut p =
            Parasite::infect(&seized).unwrap_or_else(|e| panic!("cycle {i}: infecting: {e}"));
        let sa = p.sigactions().expect("sigactions");
        assert_ne!(
            sa[libc::SIGUSR1 as usize - 1].handler,
            0,
            "the SIGUSR1 handler is seen"
        );
        p.cure()
            .unwrap_or_else(|e| panic!("cycle {i}: curing: {e}"));
        let after = ThreadCtx::capture(w.pid).expect("capturing");
        assert_same_ctx(&before, &after);
        assert_eq!(before_snap, snapshot(w.pid), "cycle {i}");
        seized.release().expect("releasing");
    }
    let state = status_lines(w.pid, &["State", "TracerPid"]);
    assert!(
        state.iter().any(|l| l.contains("TracerPid:\t0")),
        "{state:?}"
    );
    w.verdict()
        .expect("the computation is right after the infections");
}

#[test]
fn thousand_infections_of_a_spinning_computation() {
    cycles("spin", 1000);
}

#[test]
fn infections_of_a_task_in_a_restart_block_syscall() {
    cycles("sleep", 200);
}

#[test]
fn infections_of_a_task_in_a_restartable_syscall() {
    cycles("read", 200);
}

fn sig_fact(w: &Workload, sig: usize) -> [u64; 4] {
    let v: Vec<u64> = w
        .fact(&format!("sig{sig}"))
        .split(',')
        .map(|x| rcriu_test_support::parse_num(x).expect("a number"))
        .collect();
    [v[0], v[1], v[2], v[3]]
}

#[test]
fn parasite_reads_what_the_task_set() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("parasite_state", &[]);
    let seized = Seized::seize(w.pid).expect("seizing");
    let fds_before = victim_fds(w.pid);
    let mut p = Parasite::infect(&seized).expect("infecting");

    // Signal actions: as the kernel holds them for the task.
    let acts = p.sigactions().expect("sigactions");
    for sig in 1..=64usize {
        if matches!(sig, 9 | 19 | 32 | 33) {
            continue;
        }
        let a = acts[sig - 1];
        assert_eq!(
            [a.handler, a.flags, a.restorer, a.mask],
            sig_fact(&w, sig),
            "signal {sig}"
        );
    }
    let usr2 = acts[libc::SIGUSR2 as usize - 1];
    assert_ne!(usr2.flags & libc::SA_SIGINFO as u64, 0);
    assert_ne!(usr2.flags & libc::SA_RESTART as u64, 0);
    assert_eq!(
        usr2.mask,
        1 << (libc::SIGINT - 1) | 1 << (libc::SIGQUIT - 1)
    );
    assert_eq!(acts[libc::SIGHUP as usize - 1].handler, 1, "SIG_IGN");

    // Interval timers: the intervals as set, the values counting down.
    let it = p.itimers().expect("itimers");
    assert_eq!((it.real.interval.sec, it.real.interval.usec), (10, 0));
    assert!(
        it.real.value.sec <= 100 && it.real.value.sec >= 90,
        "{:?}",
        it.real
    );
    assert_eq!((it.virt.interval.sec, it.prof.interval.sec), (5, 3));
    assert!(it.virt.value.sec <= 50 && it.prof.value.sec <= 30);

    // POSIX timers by id.
    let ids = [w.fact_u64("timer1") as i32, w.fact_u64("timer2") as i32];
    let t = p.posix_timers(&ids).expect("posix timers");
    assert_eq!((t[0].interval.sec, t[0].interval.nsec), (7, 0));
    assert!(t[0].value.sec <= 70 && t[0].value.sec >= 60, "{:?}", t[0]);
    assert_eq!((t[1].interval.sec, t[1].interval.nsec), (0, 500_000_000));
    assert!(t[1].value.sec <= 40);

    let ss = p.sigaltstack().expect("sigaltstack");
    assert_eq!(ss.sp, w.fact_u64("altstack_sp"));
    assert_eq!(ss.size, w.fact_u64("altstack_size"));
    assert_eq!(ss.flags, 0);

    let tls = p.tls().expect("tls");
    assert_eq!(tls.fs_base, w.fact_u64("fs_base"));
    assert_eq!(p.thread_ctx().regs.fs_base, tls.fs_base);

    let rseq = w.fact_u64("rseq");
    let got = p.rseq().expect("rseq");
    if rseq == 0 {
        assert!(got.is_none());
    } else {
        let (cfg, area) = got.expect("an rseq area");
        assert_eq!(cfg.rseq_abi_pointer, rseq);
        let cpu_id = u32::from_le_bytes(area[4..8].try_into().unwrap());
        let ncpu = std::thread::available_parallelism().map_or(1024, |n| n.get()) as u32;
        assert!(cpu_id < ncpu.max(64), "cpu_id {cpu_id} as the task sees it");
    }

    let c = p.creds().expect("creds");
    assert_eq!(c.uids, [0; 4]);
    assert_eq!(c.umask, 0o027);
    assert_eq!(&c.groups[..c.ngroups as usize], &[1, 2, 3]);
    assert_eq!(c.no_new_privs, 1);
    assert_eq!(c.child_subreaper, 1);
    assert_eq!(c.pdeath_sig, libc::SIGUSR2 as u32);
    let status = status_lines(w.pid, &["CapEff", "CapBnd"]);
    let capeff = u64::from(c.cap_eff[0]) | u64::from(c.cap_eff[1]) << 32;
    assert!(status[0].ends_with(&format!("{capeff:016x}")), "{status:?}");
    assert!(
        status[1].ends_with(&format!("{:016x}", c.cap_bnd)),
        "{status:?}"
    );

    let n = w.fact_u64("fd") as i32;
    let fds = p.fds(&[n]).expect("fds");
    let (fd, cloexec) = fds.into_iter().next().unwrap();
    // The flag the parasite read is the one /proc shows.
    let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{n}", w.pid)).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    assert_eq!(cloexec, flags & libc::O_CLOEXEC as u32 != 0, "{info}");
    let mut f = std::fs::File::from(fd);
    f.rewind().unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(text, "parasite sends me back");

    // Memory, through vmsplice.
    let region = w.fact_u64("region");
    let none = w.fact_u64("none");
    p.mprotect(&[MprotectRange {
        addr: none,
        len: region,
        prot: libc::PROT_READ as u32,
        _pad: 0,
    }])
    .expect("making PROT_NONE readable");
    let ranges = [
        IoVec {
            base: w.fact_u64("anon"),
            len: region,
        },
        IoVec {
            base: w.fact_u64("fmap"),
            len: region,
        },
        IoVec {
            base: none,
            len: region,
        },
        IoVec {
            base: w.fact_u64("stack"),
            len: 16384,
        },
    ];
    let mut out = tempfile::tempfile().unwrap();
    let n = p.dump_pages(&ranges, out.as_fd()).expect("dumping pages");
    assert_eq!(n, 3 * region + 16384);
    // The same, written by the task itself at an offset (pwritev); the
    // file it was given goes at the cure.
    let mut direct = tempfile::tempfile().unwrap();
    let n = p
        .write_pages(&ranges, direct.as_fd(), 8192)
        .expect("writing pages");
    assert_eq!(n, 3 * region + 16384);
    p.mprotect(&[MprotectRange {
        addr: none,
        len: region,
        prot: libc::PROT_NONE as u32,
        _pad: 0,
    }])
    .expect("putting PROT_NONE back");
    p.cure().expect("curing");
    seized.release().expect("releasing");

    assert_eq!(
        victim_fds(w.pid),
        fds_before,
        "the victim's fds after the cure"
    );

    let mut bytes = Vec::new();
    out.rewind().unwrap();
    out.read_to_end(&mut bytes).unwrap();
    let mut written = Vec::new();
    direct.rewind().unwrap();
    direct.read_to_end(&mut written).unwrap();
    assert_eq!(&written[..8192], &[0u8; 8192][..]);
    assert!(
        written[8192..] == bytes[..],
        "pwritev wrote what vmsplice did"
    );
    let region = region as usize;
    let pattern = |i: usize, salt: u8| ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8 ^ salt;
    for i in 0..region {
        assert_eq!(bytes[i], pattern(i, 1), "anonymous byte {i}");
        let pg = i / 4096;
        let want = if pg % 2 == 0 {
            pattern(i % 4096, 3 + pg as u8)
        } else {
            pattern(i, 2)
        };
        assert_eq!(bytes[region + i], want, "file-private byte {i}");
        assert_eq!(bytes[2 * region + i], pattern(i, 4), "PROT_NONE byte {i}");
    }
    for i in 0..16384 {
        assert_eq!(bytes[3 * region + i], pattern(i, 5), "stack byte {i}");
    }
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", w.pid)).unwrap();
    assert!(
        maps.lines()
            .any(|l| l.starts_with(&format!("{none:x}-")) && l.contains(" ---p ")),
        "the PROT_NONE area is PROT_NONE again"
    );
    w.verdict().expect("the task is intact");
}

/// The victim's open fds, as /proc lists them.
fn victim_fds(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("listing the victim's fds")
        .map(|e| {
            e.expect("an fd entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_page_dump_returns_and_the_parasite_serves_on() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("compute", &["sleep"]);
    let seized = Seized::seize(w.pid).expect("seizing");
    let mut p = Parasite::infect(&seized).expect("infecting");
    let out = tempfile::tempfile().unwrap();
    // Nothing is mapped at 4 KiB: the parasite's vmsplice fails and its
    // answer (an error) is the end of the command, not to be waited for.
    let e = p
        .dump_pages(
            &[IoVec {
                base: 4096,
                len: 4096,
            }],
            out.as_fd(),
        )
        .expect_err("an unmapped range cannot be dumped");
    assert!(e.to_string().contains("dump pages"), "{e}");
    let e = p
        .write_pages(
            &[IoVec {
                base: 4096,
                len: 4096,
            }],
            out.as_fd(),
            0,
        )
        .expect_err("an unmapped range cannot be written");
    assert!(e.to_string().contains("write pages"), "{e}");
    // The daemon serves on: another command, then a page dump that works.
    p.sigactions().expect("sigactions after the failed dump");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", w.pid)).unwrap();
    let stack = maps.lines().find(|l| l.ends_with("[stack]")).unwrap();
    let (a, b) = stack
        .split_whitespace()
        .next()
        .unwrap()
        .split_once('-')
        .unwrap();
    let (a, b) = (
        u64::from_str_radix(a, 16).unwrap(),
        u64::from_str_radix(b, 16).unwrap(),
    );
    let n = p
        .dump_pages(
            &[IoVec {
                base: b - 4096,
                len: 4096,
            }],
            out.as_fd(),
        )
        .expect("dumping a stack page");
    assert_eq!((n, a < b), (4096, true));
    p.cure().expect("curing");
    seized.release().expect("releasing");
    w.verdict().expect("the task is intact");
}
