//! The process's cores: for every thread its registers, FPU state, signal
//! mask, pending signals, alternate stack, rseq area, scheduling, seccomp
//! filters and credentials; for the process its signal actions, limits,
//! timers, pending signals and attributes.

use rcriu_compel::UserRegs;
use rcriu_compel::abi::KSigaction;
use rcriu_compel::abi::restorer::{
    CREDS_GROUPS, CREDS_NO_NEW_PRIVS, Creds, MCE_KILL_DEFAULT, NLIMITS, NSIG, PosixTimer, Rlimit,
    Rseq, SIGINFO_SIZE, TFLAG_AFFINITY, TFLAG_CREDS, TFLAG_IOPRIO, TFLAG_RSEQ, TFLAG_SCHED,
    TFLAG_SLACK, ThreadArgs,
};
use rcriu_compel::regs::{FXSAVE_SIZE, XFEATURE_PKRU};
use rcriu_images::{ImageFile, pb};

use crate::load::Images;
use crate::{Error, Result};

/// `core_entry.march` X86_64.
const MARCH_X86_64: i32 = 1;
/// `task_core_entry.task_state`: alive, stopped.
const TASK_ALIVE: u32 = 1;
const TASK_STOPPED: u32 = 3;
/// The kernel's default timer slack, in ns (what a thread whose image
/// says nothing gets).
const DEFAULT_TIMER_SLACK: u64 = 50_000;
/// `SECCOMP_MODE_*`.
const SECCOMP_FILTER: u32 = 2;
const SECCOMP_STRICT: u32 = 1;
/// `sizeof(struct sock_filter)`.
const SOCK_FILTER_SIZE: usize = 8;
/// The most words of a CPU mask an image may hold (8192 CPUs).
const MAX_AFFINITY_WORDS: usize = 128;
/// The kernel's default core dump filter: what a process whose image says
/// nothing (CRIU's) gets.
const DEFAULT_COREDUMP_FILTER: u32 = 0x33;

/// One siginfo_t.
pub type Siginfo = [u8; SIGINFO_SIZE];

/// A seccomp filter: `(flags, instructions)`.
pub type Filter = (u64, Vec<u8>);

/// A thread's registers.
#[derive(Debug)]
pub struct Cpu {
    pub regs: UserRegs,
    /// The legacy FXSAVE part, rebuilt.
    pub fx: [u8; FXSAVE_SIZE],
    pub xstate_bv: u64,
    /// `(component, bytes)` of the xsave area.
    pub components: Vec<(u32, Vec<u8>)>,
}

/// What one thread needs: its registers for the final ptrace step, and
/// what the restorer sets in it.
#[derive(Debug)]
pub struct ThreadPlan {
    pub tid: u32,
    pub cpu: Cpu,
    pub sigmask: u64,
    /// The restorer's part, its array addresses still to fill.
    pub args: ThreadArgs,
    /// Its own pending signals, in order.
    pub signals: Vec<Siginfo>,
    /// Its seccomp filters, oldest first: `(flags, instructions)`.
    pub filters: Vec<Filter>,
    pub groups: Vec<u32>,
    /// Its CPU affinity mask's words (none: left as inherited).
    pub affinity: Vec<u64>,
}

/// What the restorer and the final ptrace step need from the core images.
#[derive(Debug)]
pub struct CorePlan {
    /// The leader first, then the other threads as pstree lists them.
    pub threads: Vec<ThreadPlan>,
    pub sigactions: [KSigaction; NSIG],
    /// Bit n - 1: signal n's action is in the image.
    pub sigaction_set: u64,
    pub rlimits: Vec<Rlimit>,
    /// The signal that had stopped the process (it is stopped again by
    /// it after the restore), when it was stopped.
    pub stopped: Option<i32>,
    /// The interval timers (real, virtual, profiling) as
    /// `[interval sec, usec, value sec, usec]`.
    pub itimers: [[u64; 4]; 3],
    /// POSIX timers, by id.
    pub timers: Vec<PosixTimer>,
    /// The process's pending signals, in order.
    pub signals: Vec<Siginfo>,
    pub child_subreaper: bool,
    pub personality: u32,
    pub oom_score_adj: Option<i32>,
    pub loginuid: Option<u32>,
    /// The process's attributes beyond CRIU's own fields.
    pub attrs: ProcessAttrs,
}

/// What the restorer sets in the process beyond CRIU's core fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessAttrs {
    /// Membarrier commands registered (CRIU's field).
    pub membarrier: u32,
    /// `PR_GET_THP_DISABLE` as it was (mm's `thp_disabled`, or rcriu's
    /// field for "except advised").
    pub thp_disable: u32,
    pub mdwe: u32,
    pub ksm_merge_any: bool,
    pub coredump_filter: u32,
    /// For a session leader.
    pub autogroup_nice: Option<i32>,
}

impl CorePlan {
    /// Whether a thread has a seccomp mode to restore.
    pub fn seccomp(&self) -> bool {
        self.threads.iter().any(|t| t.args.seccomp_mode != 0)
    }
}

fn u32s(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn u64s(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Reads the core images of `img`'s process, one per thread.
pub fn plan(img: &Images) -> Result<CorePlan> {
    let pid = img.task.pid;
    let file = ImageFile::Core(pid.into()).name();
    let core = &img.task.cores[0].1;
    let tc = core
        .tc
        .as_ref()
        .ok_or_else(|| Error::invalid(file.clone(), "no task core"))?;

    let mut sigactions = [KSigaction::default(); NSIG];
    let mut sigaction_set = 0u64;
    // CRIU writes one entry per signal from 1, SIGKILL and SIGSTOP
    // skipped.
    let mut sig = 0usize;
    for sa in &tc.sigactions {
        sig += 1;
        while sig == libc::SIGKILL as usize || sig == libc::SIGSTOP as usize {
            sig += 1;
        }
        if sig > NSIG {
            return Err(Error::invalid(file, "more signal actions than signals"));
        }
        if sa.compat_sigaction == Some(true) {
            return Err(Error::unsupported(format!(
                "restoring the 32-bit signal action of signal {sig}"
            )));
        }
        sigactions[sig - 1] = KSigaction {
            handler: sa.sigaction,
            flags: sa.flags,
            restorer: sa.restorer,
            mask: sa.mask,
        };
        sigaction_set |= 1 << (sig - 1);
    }

    let rlimits: Vec<Rlimit> = tc
        .rlimits
        .as_ref()
        .map(|r| {
            r.rlimits
                .iter()
                .take(NLIMITS)
                .map(|l| Rlimit {
                    cur: l.cur,
                    max: l.max,
                })
                .collect()
        })
        .unwrap_or_default();

    let stopped = match tc.task_state {
        TASK_ALIVE => None,
        TASK_STOPPED => match tc.stop_signo.map(|s| s as i32) {
            None => Some(libc::SIGSTOP),
            Some(s @ (libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)) => Some(s),
            Some(s) => {
                return Err(Error::invalid(
                    ImageFile::Core(pid.into()).name(),
                    format!("stop signal {s} is none of SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU"),
                ));
            }
        },
        s => {
            return Err(Error::unsupported(format!(
                "restoring task {pid} in state {s}"
            )));
        }
    };

    let tids: Vec<u32> = img.task.cores.iter().map(|(t, _)| *t).collect();
    let mut itimers = [[0u64; 4]; 3];
    let mut timers = Vec::new();
    if let Some(t) = &tc.timers {
        for (i, it) in [&t.real, &t.virt, &t.prof].into_iter().enumerate() {
            itimers[i] = [it.isec, it.iusec, it.vsec, it.vusec];
            // Expired with its signal not taken yet (the kernel re-arms it
            // only then): as CRIU, it fires again after one interval.
            if it.vsec == 0 && it.vusec == 0 {
                itimers[i][2] = it.isec;
                itimers[i][3] = it.iusec;
            }
        }
        for p in &t.posix {
            timers.push(posix_timer(p, &tids, &file)?);
        }
    }
    timers.sort_by_key(|t| t.id);
    if timers.windows(2).any(|w| w[0].id == w[1].id) {
        return Err(Error::invalid(file, "two POSIX timers with the same id"));
    }

    let seccomp = img.seccomp.as_ref();
    let mut threads = Vec::with_capacity(img.task.cores.len());
    for (tid, core) in &img.task.cores {
        let leader_comm = (*tid == pid).then_some(tc.comm.as_slice());
        threads.push(thread_plan(
            *tid,
            core,
            leader_comm,
            tc.blk_sigset,
            seccomp,
        )?);
    }

    Ok(CorePlan {
        threads,
        sigactions,
        sigaction_set,
        rlimits,
        stopped,
        itimers,
        timers,
        signals: siginfos(tc.signals_s.as_ref(), &file)?,
        child_subreaper: tc.child_subreaper == Some(true),
        personality: tc.personality,
        oom_score_adj: tc.oom_score_adj,
        loginuid: tc.loginuid,
        attrs: ProcessAttrs {
            membarrier: tc.membarrier_registration_mask.unwrap_or(0),
            thp_disable: tc
                .rcriu_thp_disable
                .unwrap_or(u32::from(img.task.mm.thp_disabled == Some(true))),
            mdwe: tc.rcriu_mdwe.unwrap_or(0),
            ksm_merge_any: tc.rcriu_ksm_merge_any == Some(true),
            coredump_filter: tc.rcriu_coredump_filter.unwrap_or(DEFAULT_COREDUMP_FILTER),
            autogroup_nice: tc.rcriu_autogroup_nice,
        },
    })
}

/// `SIGEV_THREAD_ID`.
const SIGEV_THREAD_ID: i32 = 4;

fn posix_timer(p: &pb::PosixTimerEntry, tids: &[u32], file: &str) -> Result<PosixTimer> {
    let notify = p.it_sigev_notify as i32;
    let thread_id = p.notify_thread_id.unwrap_or(0);
    if notify & SIGEV_THREAD_ID != 0 && !tids.contains(&(thread_id as u32)) {
        return Err(Error::invalid(
            file.to_owned(),
            format!(
                "POSIX timer {} signals thread {thread_id}, which the process does not have",
                p.it_id
            ),
        ));
    }
    if p.insec >= 1_000_000_000 || p.vnsec >= 1_000_000_000 || p.it_id > i32::MAX as u32 {
        return Err(Error::invalid(
            file.to_owned(),
            format!("POSIX timer {} has an invalid id or time", p.it_id),
        ));
    }
    Ok(PosixTimer {
        id: p.it_id as i32,
        clock: p.clock_id as i32,
        signo: p.si_signo as i32,
        notify,
        thread_id,
        _pad: 0,
        sival: p.sival_ptr,
        // Expired and not re-armed yet: as CRIU, one interval from now.
        spec: if p.vsec == 0 && p.vnsec == 0 {
            [p.isec, p.insec, p.isec, p.insec]
        } else {
            [p.isec, p.insec, p.vsec, p.vnsec]
        },
    })
}

fn siginfos(q: Option<&pb::SignalQueueEntry>, file: &str) -> Result<Vec<Siginfo>> {
    let Some(q) = q else {
        return Ok(Vec::new());
    };
    q.signals
        .iter()
        .map(|s| {
            let info: Siginfo = s.siginfo.as_slice().try_into().map_err(|_| {
                Error::invalid(
                    file.to_owned(),
                    format!(
                        "a pending signal's siginfo of {} bytes ({SIGINFO_SIZE} expected)",
                        s.siginfo.len()
                    ),
                )
            })?;
            let signo = i32::from_le_bytes([info[0], info[1], info[2], info[3]]);
            if !(1..=64).contains(&signo) {
                return Err(Error::invalid(
                    file.to_owned(),
                    format!("a pending signal numbered {signo}"),
                ));
            }
            Ok(info)
        })
        .collect()
}

/// The registers of one core.
fn registers(core: &pb::CoreEntry, tid: u32, file: &str) -> Result<Cpu> {
    let file = file.to_owned();
    if core.mtype != MARCH_X86_64 {
        return Err(Error::invalid(
            file,
            format!("architecture {} (rcriu restores x86_64)", core.mtype),
        ));
    }
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| Error::invalid(file.clone(), "no x86 thread_info"))?;
    let g = &ti.gpregs;
    if g.mode.is_some_and(|m| m != 1) {
        return Err(Error::unsupported(format!(
            "restoring the 32-bit task {tid}"
        )));
    }
    let regs = UserRegs {
        r15: g.r15,
        r14: g.r14,
        r13: g.r13,
        r12: g.r12,
        bp: g.bp,
        bx: g.bx,
        r11: g.r11,
        r10: g.r10,
        r9: g.r9,
        r8: g.r8,
        ax: g.ax,
        cx: g.cx,
        dx: g.dx,
        si: g.si,
        di: g.di,
        // The image holds the registers after CRIU's restart adjustment:
        // no syscall restart when the process resumes.
        orig_ax: u64::MAX,
        ip: g.ip,
        cs: g.cs,
        flags: g.flags,
        sp: g.sp,
        ss: g.ss,
        fs_base: g.fs_base,
        gs_base: g.gs_base,
        ds: g.ds,
        es: g.es,
        fs: g.fs,
        gs: g.gs,
    };

    let fp = &ti.fpregs;
    let mut fx = [0u8; FXSAVE_SIZE];
    fx[0..2].copy_from_slice(&(fp.cwd as u16).to_le_bytes());
    fx[2..4].copy_from_slice(&(fp.swd as u16).to_le_bytes());
    fx[4..6].copy_from_slice(&(fp.twd as u16).to_le_bytes());
    fx[6..8].copy_from_slice(&(fp.fop as u16).to_le_bytes());
    fx[8..16].copy_from_slice(&fp.rip.to_le_bytes());
    fx[16..24].copy_from_slice(&fp.rdp.to_le_bytes());
    fx[24..28].copy_from_slice(&fp.mxcsr.to_le_bytes());
    fx[28..32].copy_from_slice(&fp.mxcsr_mask.to_le_bytes());
    let st = u32s(&fp.st_space);
    let xmm = u32s(&fp.xmm_space);
    if st.len() != 128 || xmm.len() != 256 {
        return Err(Error::invalid(
            file,
            format!(
                "x87/SSE registers of {} and {} bytes (128 and 256 expected)",
                st.len(),
                xmm.len()
            ),
        ));
    }
    fx[32..160].copy_from_slice(&st);
    fx[160..416].copy_from_slice(&xmm);

    let mut xstate_bv = 0b11;
    let mut components = Vec::new();
    if let Some(x) = &fp.xsave {
        xstate_bv = x.xstate_bv;
        for (index, bytes) in [
            (2, u32s(&x.ymmh_space)),
            (3, u64s(&x.bndreg_state)),
            (4, u64s(&x.bndcsr_state)),
            (5, u64s(&x.opmask_reg)),
            (6, u64s(&x.zmm_upper)),
            (7, u64s(&x.hi16_zmm)),
            (XFEATURE_PKRU, u32s(&x.pkru)),
        ] {
            if !bytes.is_empty() {
                components.push((index, bytes));
            }
        }
        if let Some(cet) = &x.cet
            && cet.cet & 1 != 0
        {
            return Err(Error::unsupported(format!(
                "restoring the shadow stack of task {tid}"
            )));
        }
    }
    Ok(Cpu {
        regs,
        fx,
        xstate_bv,
        components,
    })
}

/// One thread's plan from its core. `leader_comm` is the process's name
/// (task core) for the leader; `process_mask` the task core's mask, for
/// images that have no per-thread one.
fn thread_plan(
    tid: u32,
    core: &pb::CoreEntry,
    leader_comm: Option<&[u8]>,
    process_mask: u64,
    seccomp: Option<&pb::SeccompEntry>,
) -> Result<ThreadPlan> {
    let file = ImageFile::Core(tid.into()).name();
    let cpu = registers(core, tid, &file)?;
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| Error::invalid(file.clone(), "no x86 thread_info"))?;
    let thc = core
        .thread_core
        .as_ref()
        .ok_or_else(|| Error::invalid(file.clone(), "no thread core"))?;
    let mut args = ThreadArgs {
        tid: tid as i32,
        clear_tid: ti.clear_tid_addr,
        robust: thc.futex_rla,
        robust_len: u64::from(thc.futex_rla_len),
        pdeath_sig: thc.pdeath_sig.unwrap_or(0),
        ..ThreadArgs::default()
    };
    if let Some(r) = thc.rseq_entry.as_ref().filter(|r| r.rseq_abi_pointer != 0) {
        args.rseq = Rseq {
            addr: r.rseq_abi_pointer,
            len: r.rseq_abi_size,
            sig: r.signature,
        };
        args.flags |= TFLAG_RSEQ;
    }
    // Always set: a thread with no alternate stack gets SS_DISABLE, for
    // the leader would otherwise keep the one its fork inherited from
    // rcriu (Rust's own, for stack overflows).
    args.sas = match thc.sas.as_ref().filter(|s| s.ss_size != 0) {
        Some(s) => [s.ss_sp, u64::from(s.ss_flags), s.ss_size],
        None => [0, libc::SS_DISABLE as u64, 0],
    };
    if let Some(policy) = thc.sched_policy {
        args.flags |= TFLAG_SCHED;
        args.sched_policy = policy;
        args.sched_prio = thc.sched_prio.unwrap_or(0);
        args.nice = thc.sched_nice.unwrap_or(0);
    }
    args.flags |= TFLAG_SLACK;
    args.timer_slack = thc.rcriu_timer_slack_ns.unwrap_or(DEFAULT_TIMER_SLACK);
    // rcriu's fields: what a CRIU image lacks stays as the new thread has
    // it (affinity), or gets the kernel's default.
    let affinity = thc.rcriu_cpu_affinity.clone();
    if affinity.len() > MAX_AFFINITY_WORDS {
        return Err(Error::invalid(
            file,
            format!("a CPU mask of {} words", affinity.len()),
        ));
    }
    if !affinity.is_empty() {
        args.flags |= TFLAG_AFFINITY;
    }
    args.flags |= TFLAG_IOPRIO;
    args.ioprio = thc.rcriu_ioprio.unwrap_or(0);
    args.tsc = thc.rcriu_tsc.unwrap_or(0);
    args.mce_kill = thc.rcriu_mce_kill.unwrap_or(MCE_KILL_DEFAULT);
    let name = thc.comm.as_deref().or(leader_comm).unwrap_or_default();
    let n = name.len().min(15);
    args.comm[..n].copy_from_slice(&name[..n]);

    let mut groups = Vec::new();
    if let Some(c) = &thc.creds {
        args.flags |= TFLAG_CREDS;
        args.creds = creds(c, &file)?;
        groups = c.groups.clone();
    }
    let (mode, filters) = seccomp_plan(thc, seccomp, &file)?;
    args.seccomp_mode = mode;

    Ok(ThreadPlan {
        tid,
        cpu,
        sigmask: thc.blk_sigset.unwrap_or(process_mask),
        args,
        signals: siginfos(thc.signals_p.as_ref(), &file)?,
        filters,
        groups,
        affinity,
    })
}

fn creds(c: &pb::CredsEntry, file: &str) -> Result<Creds> {
    let set = |w: &[u32], what: &str| -> Result<[u32; 2]> {
        if w.len() > 2 {
            return Err(Error::invalid(
                file.to_owned(),
                format!("{} words of {what} capabilities (at most 2)", w.len()),
            ));
        }
        Ok([
            w.first().copied().unwrap_or(0),
            w.get(1).copied().unwrap_or(0),
        ])
    };
    let mut flags = CREDS_GROUPS;
    if c.no_new_privs == Some(1) {
        flags |= CREDS_NO_NEW_PRIVS;
    }
    Ok(Creds {
        uids: [c.uid, c.euid, c.suid, c.fsuid],
        gids: [c.gid, c.egid, c.sgid, c.fsgid],
        cap_eff: set(&c.cap_eff, "effective")?,
        cap_prm: set(&c.cap_prm, "permitted")?,
        cap_inh: set(&c.cap_inh, "inheritable")?,
        cap_bnd: set(&c.cap_bnd, "bounding")?,
        cap_amb: set(&c.cap_amb, "ambient")?,
        secbits: c.secbits,
        last_cap: 0,
        flags,
        _pad: 0,
        groups: 0,
        nr_groups: 0,
    })
}

/// A thread's seccomp mode and its filters, oldest first, from its chain
/// in seccomp.img (see the dump's `seccomp` module for the layout).
fn seccomp_plan(
    thc: &pb::ThreadCoreEntry,
    img: Option<&pb::SeccompEntry>,
    file: &str,
) -> Result<(u32, Vec<Filter>)> {
    let mode = thc.seccomp_mode.unwrap_or(0) as u32;
    match mode {
        0 | SECCOMP_STRICT => return Ok((mode, Vec::new())),
        SECCOMP_FILTER => {}
        m => {
            return Err(Error::invalid(file.to_owned(), format!("seccomp mode {m}")));
        }
    }
    let seccomp_file = ImageFile::Seccomp.name();
    let all = img
        .map(|e| e.seccomp_filters.as_slice())
        .unwrap_or_default();
    let mut at = thc.seccomp_filter.ok_or_else(|| {
        Error::invalid(
            file.to_owned(),
            "seccomp filter mode without a filter index",
        )
    })?;
    let mut filters = Vec::new();
    loop {
        let f = all.get(at as usize).ok_or_else(|| {
            Error::invalid(
                seccomp_file.clone(),
                format!("no filter {at} (of {}), which {file} refers to", all.len()),
            )
        })?;
        if f.filter.is_empty()
            || f.filter.len() % SOCK_FILTER_SIZE != 0
            || f.filter.len() / SOCK_FILTER_SIZE > u16::MAX as usize
        {
            return Err(Error::invalid(
                seccomp_file,
                format!("filter {at} of {} bytes", f.filter.len()),
            ));
        }
        filters.push((u64::from(f.flags.unwrap_or(0)), f.filter.clone()));
        // A chain longer than the image has filters loops.
        if filters.len() > all.len() {
            return Err(Error::invalid(
                seccomp_file,
                format!("the chain from filter {at} loops"),
            ));
        }
        match f.prev {
            Some(p) => at = p,
            None => break,
        }
    }
    Ok((mode, filters))
}
