//! What each thread holds that ptrace reads from outside, while it is
//! seized and before anything runs in the task: registers and FPU state,
//! TLS slots, robust futex list, scheduling, rseq, its own pending signals
//! and its seccomp filters. (What only the thread itself can tell comes
//! later from the parasite: [`rcriu_compel::Parasite::thread_info`].)

use rcriu_compel::{Thread, ThreadCtx};
use rcriu_proc::Pid;

use crate::rseq::{self, Rseq};
use crate::{Error, Result, attrs, sys};

/// `SECCOMP_MODE_FILTER`.
pub const SECCOMP_MODE_FILTER: u32 = 2;

/// One thread, read from outside.
#[derive(Debug)]
pub struct Outside {
    pub tid: Pid,
    pub ctx: ThreadCtx,
    /// The legacy FPU area, when the xsave header says x87 or SSE state
    /// is in its initial configuration (CRIU then stores these).
    pub fpregs: Option<[u8; 512]>,
    /// The three TLS slots of the GDT (`struct user_desc` words).
    pub tls: [[u32; 4]; 3],
    /// Robust futex list head and length.
    pub robust: (u64, u64),
    /// Policy, real-time priority (for FIFO and RR), nice.
    pub sched: (u32, Option<u32>, i32),
    pub rseq: Rseq,
    /// Signals pending for this thread alone, oldest first (`siginfo_t`).
    pub signals: Vec<[u8; 128]>,
    /// Seccomp mode (0 none, 1 strict, 2 filter).
    pub seccomp_mode: u32,
    /// Seccomp filters, oldest first, with their flags.
    pub filters: Vec<(Vec<u8>, u64)>,
    /// Affinity, I/O priority, scheduling attributes.
    pub attrs: attrs::ThreadOutside,
}

/// Reads thread `t` of process `pid`.
pub fn read(pid: Pid, t: &Thread) -> Result<Outside> {
    let tid = t.tid;
    let rseq = rseq::read_thread(pid, tid)?;
    let ctx = ThreadCtx::capture(tid).map_err(Error::compel(pid))?;
    let fpregs = if ctx.xstate.xstate_bv() & 3 != 3 {
        Some(
            rcriu_compel::sys::get_fpregs(tid)
                .map_err(Error::sys("reading the FPU registers", tid))?,
        )
    } else {
        None
    };
    let mut tls = [[0u32; 4]; 3];
    for (i, d) in tls.iter_mut().enumerate() {
        let entry = 12 + i as u32;
        *d = match rcriu_compel::sys::get_thread_area(tid, entry) {
            Ok(v) => v,
            // As CRIU: absent in native mode, the slot reads "not present".
            Err(e) if e.raw_os_error() == Some(libc::EIO) => [entry, 0, 0, 1 << 5],
            Err(e) => return Err(Error::sys("reading a TLS slot", tid)(e)),
        };
    }
    let robust = sys::robust_list(tid).map_err(Error::sys("reading the robust futex list", tid))?;
    let policy =
        sys::sched_policy(tid).map_err(Error::sys("reading the scheduling policy", tid))?;
    let rt = policy & !(libc::SCHED_RESET_ON_FORK as u32);
    let prio = if rt == libc::SCHED_FIFO as u32 || rt == libc::SCHED_RR as u32 {
        Some(sys::sched_priority(tid).map_err(Error::sys("reading the scheduling priority", tid))?)
    } else {
        None
    };
    let nice = sys::nice(tid).map_err(Error::sys("reading the nice value", tid))?;
    let attrs = attrs::thread_outside(pid, tid)?;
    let signals = rcriu_compel::sys::peek_siginfo(tid, false)
        .map_err(Error::sys("reading the thread's pending signals", tid))?;
    let filters = if t.seccomp == SECCOMP_MODE_FILTER {
        rcriu_compel::sys::seccomp_filters(tid)
            .map_err(Error::sys("reading the seccomp filters", tid))?
    } else {
        Vec::new()
    };
    Ok(Outside {
        tid,
        ctx,
        fpregs,
        tls,
        robust,
        sched: (policy, prio, nice),
        rseq,
        signals,
        seccomp_mode: t.seccomp,
        filters,
        attrs,
    })
}
