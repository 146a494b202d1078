//! What a process and each of its threads hold that /proc does not show,
//! read the way only a debugger can: per-thread system calls from outside
//! (scheduling attributes, CPU affinity, I/O priority, robust list, rseq
//! registration) and, with the process seized, questions asked inside it
//! (alternate stack, tid address, timer slack, TSC and machine-check modes,
//! speculation controls, credentials, parent death signal, dumpable, child
//! subreaper, THP disable, MDWE, KSM, membarrier registrations).
//!
//! The end-to-end tests take an [`Inside`] before a dump and after the
//! restore (or the --leave-running dump) and compare them, so that any
//! piece of this state a restore loses shows up in every test, not only
//! in the one written for it (docs/state-inventory.md lists what is
//! compared). The questions asked inside use rcriu's infection engine
//! (compel), whose reads are checked on their own in its tests; the
//! values are compared as the kernel gives them, never as rcriu's images
//! hold them.

use std::collections::BTreeMap;

use rcriu_compel::{Parasite, Remote, Seized, ThreadCtx};

/// `MEMBARRIER_CMD_GET_REGISTRATIONS` (Linux 6.3).
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// The inside state of a process: `key value` lines, process-wide and per
/// thread (by tid).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inside {
    pub process: Vec<String>,
    pub threads: BTreeMap<i32, Vec<String>>,
}

impl Inside {
    /// Reads `pid`'s state; panics (naming what) when it cannot.
    pub fn probe(pid: i32) -> Inside {
        let mut out = Inside::default();
        let seized = Seized::seize(pid).unwrap_or_else(|e| panic!("seizing {pid}: {e}"));
        for t in seized.threads() {
            out.threads.insert(t.tid, outside(t.tid));
        }
        // The membarrier registrations: a syscall in the process.
        let ctx = ThreadCtx::capture(pid).unwrap_or_else(|e| panic!("reading {pid}: {e}"));
        let membarrier = Remote::new(pid, seized.leader(), &ctx)
            .and_then(|r| {
                r.syscall(
                    libc::SYS_membarrier,
                    [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0],
                )
            })
            .unwrap_or_else(|e| panic!("asking {pid} its membarrier registrations: {e}"));
        out.process.push(format!("membarrier {membarrier:#x}"));
        let mut p = Parasite::infect(&seized).unwrap_or_else(|e| panic!("infecting {pid}: {e}"));
        for t in seized.threads() {
            let i = p
                .thread_info(t)
                .unwrap_or_else(|e| panic!("asking thread {}: {e}", t.tid));
            let lines = out.threads.entry(t.tid).or_default();
            lines.push(format!(
                "sigaltstack {:#x}+{:#x} flags {:#x}",
                i.sas.sp, i.sas.size, i.sas.flags
            ));
            lines.push(format!("tid_address {:#x}", i.tid_addr));
            lines.push(format!("timer_slack {}", i.timer_slack));
            lines.push(format!("tsc {}", i.tsc));
            lines.push(format!("mce_kill {}", i.mce_kill));
            lines.push(format!("speculation {:?}", i.spec));
            let c = &i.creds;
            lines.push(format!("uids {:?} gids {:?}", c.uids, c.gids));
            lines.push(format!(
                "caps eff {:?} prm {:?} inh {:?} bnd {:#x} amb {:#x}",
                c.cap_eff, c.cap_prm, c.cap_inh, c.cap_bnd, c.cap_amb
            ));
            lines.push(format!(
                "securebits {:#x} no_new_privs {}",
                c.securebits, c.no_new_privs
            ));
            lines.push(format!("pdeath_sig {}", c.pdeath_sig));
            lines.push(format!(
                "groups {:?}",
                &c.groups[..(c.ngroups as usize).min(c.groups.len())]
            ));
            if t.tid == pid {
                out.process.push(format!("dumpable {}", c.dumpable));
                out.process
                    .push(format!("child_subreaper {}", c.child_subreaper));
                out.process
                    .push(format!("personality {:#x}", c.personality));
                out.process.push(format!("umask {:o}", c.umask));
                out.process.push(format!("thp_disable {}", c.thp_disabled));
                out.process.push(format!("mdwe {}", i.mdwe));
                out.process.push(format!("memory_merge {}", i.memory_merge));
            }
        }
        p.cure().unwrap_or_else(|e| panic!("curing {pid}: {e}"));
        seized
            .release()
            .unwrap_or_else(|e| panic!("releasing {pid}: {e}"));
        out
    }

    /// What differs from `other`, a line each (empty when the same).
    pub fn diff(&self, other: &Inside) -> Vec<String> {
        let mut d = Vec::new();
        for (a, b) in self.process.iter().zip(&other.process) {
            if a != b {
                d.push(format!("process: {a} / {b}"));
            }
        }
        let tids = |i: &Inside| i.threads.keys().copied().collect::<Vec<_>>();
        if tids(self) != tids(other) {
            d.push(format!("threads: {:?} / {:?}", tids(self), tids(other)));
        }
        for (tid, lines) in &self.threads {
            let Some(after) = other.threads.get(tid) else {
                continue;
            };
            for (a, b) in lines.iter().zip(after) {
                if a != b {
                    d.push(format!("thread {tid}: {a} / {b}"));
                }
            }
        }
        d
    }
}

/// What the kernel tells of thread `tid` from outside.
fn outside(tid: i32) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!("sched {}", sched_attr(tid)));
    lines.push(format!("affinity {:x?}", affinity(tid)));
    // SAFETY: takes integers (IOPRIO_WHO_PROCESS, the tid).
    let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, tid) };
    lines.push(format!("ioprio {ioprio:#x}"));
    let (mut head, mut len) = (0u64, 0usize);
    // SAFETY: the kernel writes a pointer to `head` and a size to `len`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            std::ptr::from_mut(&mut head),
            std::ptr::from_mut(&mut len),
        )
    };
    lines.push(format!("robust_list {r} {head:#x}+{len}"));
    let rseq = rcriu_compel::sys::get_rseq_config(tid)
        .map(|c| {
            format!(
                "{:#x}+{} sig {:#x}",
                c.rseq_abi_pointer, c.rseq_abi_size, c.signature
            )
        })
        .unwrap_or_else(|e| format!("unknown ({e})"));
    lines.push(format!("rseq {rseq}"));
    lines
}

/// `sched_getattr` as one line: policy, flags, nice, priority, the
/// deadline parameters and the utilisation clamps.
fn sched_attr(tid: i32) -> String {
    let mut a = [0u32; 14];
    // SAFETY: the kernel writes at most 56 bytes (the size given) into `a`.
    let r = unsafe { libc::syscall(libc::SYS_sched_getattr, tid, a.as_mut_ptr(), 56, 0) };
    if r < 0 {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    format!("{:?}", &a[1..])
}

/// `sched_getaffinity` as mask words.
fn affinity(tid: i32) -> Vec<u64> {
    let mut w = vec![0u64; 16];
    // SAFETY: the kernel writes at most 128 bytes into `w`.
    let r = unsafe { libc::syscall(libc::SYS_sched_getaffinity, tid, 128usize, w.as_mut_ptr()) };
    if r < 0 {
        return Vec::new();
    }
    w.truncate((r as usize).div_ceil(8));
    while w.last() == Some(&0) {
        w.pop();
    }
    w
}
