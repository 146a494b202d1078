//! `core-TID.img`, one per thread: its registers (after the syscall-restart
//! adjustment), its FPU/xsave state laid out as CRIU 4.2 lays it out, its
//! TLS slots and what it holds of its own (credentials, alternate stack,
//! pending signals, scheduling, rseq, seccomp); the leader's also holds
//! the process's state (`tc`): signal actions, timers, resource limits,
//! process-wide pending signals.

use rcriu_compel::abi::{CredsArgs, ItimersArgs, Itimerval, KSigaction, ThreadInfoArgs};
use rcriu_compel::regs::XSAVE_HDR_OFFSET;
use rcriu_compel::{UserRegs, Xstate};
use rcriu_images::pb;
use rcriu_proc::Limits;

use crate::attrs;
use crate::seccomp::CoreFields;
use crate::threads::Outside;

/// CRIU's task states (`TASK_ALIVE`, `TASK_STOPPED`).
pub const TASK_ALIVE: u32 = 1;
pub const TASK_STOPPED: u32 = 3;

/// The xsave components CRIU stores, each as a repeated field of the
/// xsave entry: (component, bytes per element).
const YMM: u32 = 2;
const BNDREGS: u32 = 3;
const BNDCSR: u32 = 4;
const OPMASK: u32 = 5;
const ZMM_HI256: u32 = 6;
const HI16_ZMM: u32 = 7;
const PKRU: u32 = 9;

/// What one thread's core is made of.
#[derive(Debug)]
pub struct ThreadParts<'a> {
    pub out: &'a Outside,
    /// What the thread told the parasite.
    pub info: &'a ThreadInfoArgs,
    /// The instruction pointer to store (after the rseq fixup).
    pub ip: u64,
    pub seccomp: CoreFields,
    pub cg_set: u32,
}

/// What the leader's core holds for the whole process (`tc`).
#[derive(Debug)]
pub struct ProcessParts<'a> {
    pub comm: Vec<u8>,
    pub stat_flags: u32,
    /// The signal its parent gets when it ends.
    pub exit_signal: i32,
    pub personality: u32,
    pub loginuid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub limits: Limits,
    pub sigactions: &'a [KSigaction],
    pub itimers: ItimersArgs,
    pub posix_timers: Vec<pb::PosixTimerEntry>,
    /// Signals pending for the whole process, oldest first.
    pub signals: &'a [[u8; 128]],
    pub child_subreaper: bool,
    pub stop_signo: Option<u32>,
    pub membarrier: u32,
    /// What /proc tells beyond CRIU's fields.
    pub attrs: &'a crate::attrs::ProcessAttrs,
}

/// The kernel's default timer slack (50 µs): not written.
const DEFAULT_TIMER_SLACK_NS: u64 = 50_000;

fn gpregs(r: &UserRegs) -> pb::UserX86RegsEntry {
    pb::UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.bp,
        bx: r.bx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.ax,
        cx: r.cx,
        dx: r.dx,
        si: r.si,
        di: r.di,
        orig_ax: r.orig_ax,
        ip: r.ip,
        cs: r.cs,
        flags: r.flags,
        sp: r.sp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(pb::UserX86RegsMode::Native as i32),
    }
}

fn u16_at(b: &[u8], off: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[off], b[off + 1]]))
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("chunks_exact(4)")))
        .collect()
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks_exact(8)")))
        .collect()
}

/// Whether the CPU has shadow stacks (CPUID.7.0:ECX[7]): CRIU then stores
/// a `cet` entry.
fn cpu_has_shstk() -> bool {
    std::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 7) != 0
}

/// The FPU state as CRIU stores it: the FXSAVE fields, then each xsave
/// component the CPU has, whatever the header says of it.
pub fn fpregs(x: &Xstate, fallback: Option<&[u8; 512]>) -> pb::UserX86FpregsEntry {
    let bv = x.xstate_bv();
    let mut legacy = [0u8; 512];
    if let Some(l) = x.legacy() {
        legacy.copy_from_slice(l);
    }
    if bv & 3 != 3
        && let Some(f) = fallback
    {
        legacy = *f;
    }
    let l = &legacy;
    let xsave = (x.len() > XSAVE_HDR_OFFSET).then(|| pb::UserX86XsaveEntry {
        xstate_bv: bv,
        ymmh_space: x.component(YMM).map(u32s).unwrap_or_default(),
        bndreg_state: x.component(BNDREGS).map(u64s).unwrap_or_default(),
        bndcsr_state: x.component(BNDCSR).map(u64s).unwrap_or_default(),
        opmask_reg: x.component(OPMASK).map(u64s).unwrap_or_default(),
        zmm_upper: x.component(ZMM_HI256).map(u64s).unwrap_or_default(),
        hi16_zmm: x.component(HI16_ZMM).map(u64s).unwrap_or_default(),
        pkru: x.component(PKRU).map(u32s).unwrap_or_default(),
        cet: cpu_has_shstk().then_some(pb::UserX86CetEntry { cet: 0, ssp: 0 }),
    });
    pb::UserX86FpregsEntry {
        cwd: u16_at(l, 0),
        swd: u16_at(l, 2),
        twd: u16_at(l, 4),
        fop: u16_at(l, 6),
        rip: u64s(&l[8..16])[0],
        rdp: u64s(&l[16..24])[0],
        mxcsr: u32s(&l[24..28])[0],
        mxcsr_mask: u32s(&l[28..32])[0],
        st_space: u32s(&l[32..160]),
        xmm_space: u32s(&l[160..416]),
        padding: Vec::new(),
        xsave,
    }
}

/// A TLS slot of the GDT, from `struct user_desc`.
fn tls(d: &[u32; 4]) -> pb::UserDescT {
    let f = d[3];
    let bit = |n: u32| f & (1 << n) != 0;
    pb::UserDescT {
        entry_number: d[0],
        base_addr: d[1],
        limit: d[2],
        seg_32bit: bit(0),
        contents_h: bit(2),
        contents_l: bit(1),
        read_exec_only: bit(3),
        limit_in_pages: bit(4),
        seg_not_present: bit(5),
        usable: bit(6),
    }
}

fn itimer(t: &Itimerval) -> pb::ItimerEntry {
    pb::ItimerEntry {
        isec: t.interval.sec as u64,
        iusec: t.interval.usec as u64,
        vsec: t.value.sec as u64,
        vusec: t.value.usec as u64,
    }
}

/// The signal actions as CRIU stores them: signals 1 to 64 but SIGKILL
/// and SIGSTOP.
pub fn sigactions(actions: &[KSigaction]) -> Vec<pb::SaEntry> {
    actions
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let sig = *i as i32 + 1;
            sig != libc::SIGKILL && sig != libc::SIGSTOP
        })
        .map(|(_, a)| pb::SaEntry {
            sigaction: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
            compat_sigaction: Some(false),
            mask_extended: None,
        })
        .collect()
}

fn creds(c: &CredsArgs) -> pb::CredsEntry {
    let halves = |v: u64| vec![v as u32, (v >> 32) as u32];
    let groups = c.groups[..(c.ngroups as usize).min(c.groups.len())].to_vec();
    pb::CredsEntry {
        uid: c.uids[0],
        gid: c.gids[0],
        euid: c.uids[1],
        egid: c.gids[1],
        suid: c.uids[2],
        sgid: c.gids[2],
        fsuid: c.uids[3],
        fsgid: c.gids[3],
        cap_inh: c.cap_inh.to_vec(),
        cap_prm: c.cap_prm.to_vec(),
        cap_eff: c.cap_eff.to_vec(),
        cap_bnd: halves(c.cap_bnd),
        secbits: c.securebits,
        groups,
        lsm_profile: None,
        lsm_sockcreate: None,
        apparmor_data: None,
        no_new_privs: (c.no_new_privs > 0).then_some(c.no_new_privs),
        cap_amb: halves(c.cap_amb),
    }
}

/// A queue of pending signals as CRIU stores it: each `siginfo_t` whole.
pub fn signal_queue(infos: &[[u8; 128]]) -> pb::SignalQueueEntry {
    pb::SignalQueueEntry {
        signals: infos
            .iter()
            .map(|i| pb::SiginfoEntry {
                siginfo: i.to_vec(),
            })
            .collect(),
    }
}

/// The core image of a thread; the leader's also holds `tc`, the
/// process's part ([`leader`]).
pub fn thread(t: &ThreadParts<'_>) -> pb::CoreEntry {
    let o = t.out;
    let i = t.info;
    let mut regs = o.ctx.regs.adjusted_for_image();
    regs.ip = t.ip;
    let (policy, prio, nice) = o.sched;
    let comm_len = i.comm.iter().position(|&b| b == 0).unwrap_or(i.comm.len());
    pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: i.tid_addr,
            gpregs: gpregs(&regs),
            fpregs: fpregs(&o.ctx.xstate, o.fpregs.as_ref()),
            tls: o.tls.iter().map(tls).collect(),
        }),
        tc: None,
        ids: None,
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla: o.robust.0,
            futex_rla_len: o.robust.1 as u32,
            sched_nice: Some(nice),
            sched_policy: Some(policy),
            sched_prio: prio,
            // The leader's mask is the process's, in tc.
            blk_sigset: None,
            sas: Some(pb::ThreadSasEntry {
                ss_sp: i.sas.sp,
                ss_size: i.sas.size,
                ss_flags: i.sas.flags as u32,
            }),
            pdeath_sig: (i.creds.pdeath_sig != 0).then_some(i.creds.pdeath_sig),
            signals_p: Some(signal_queue(&o.signals)),
            creds: Some(creds(&i.creds)),
            seccomp_mode: t.seccomp.mode.map(|m| m as i32),
            seccomp_filter: t.seccomp.filter,
            comm: Some(i.comm[..comm_len].to_vec()),
            blk_sigset_extended: None,
            rseq_entry: Some(o.rseq.entry()),
            cg_set: Some(t.cg_set),
            rcriu_timer_slack_ns: (i.timer_slack != DEFAULT_TIMER_SLACK_NS)
                .then_some(i.timer_slack),
            rcriu_cpu_affinity: o.attrs.affinity.clone(),
            rcriu_ioprio: (o.attrs.ioprio != 0).then_some(o.attrs.ioprio),
            rcriu_tsc: attrs::tsc(i),
            rcriu_mce_kill: attrs::mce_kill(i),
        }),
        ..Default::default()
    }
}

/// The core image of a thread other than the leader: its own signal mask
/// in `thread_core`.
pub fn other_thread(t: &ThreadParts<'_>) -> pb::CoreEntry {
    let mut c = thread(t);
    if let Some(tc) = c.thread_core.as_mut() {
        tc.blk_sigset = Some(t.out.ctx.sigmask);
    }
    c
}

/// The leader's core image: its thread's, and the process's `tc`.
pub fn leader(t: &ThreadParts<'_>, p: &ProcessParts<'_>) -> pb::CoreEntry {
    let mut c = thread(t);
    let rlimits = p
        .limits
        .0
        .iter()
        .map(|l| pb::RlimitEntry {
            cur: l.soft,
            max: l.hard,
        })
        .collect();
    c.tc = Some(pb::TaskCoreEntry {
        task_state: if p.stop_signo.is_some() {
            TASK_STOPPED
        } else {
            TASK_ALIVE
        },
        exit_code: 0,
        personality: p.personality,
        flags: p.stat_flags,
        blk_sigset: t.out.ctx.sigmask,
        comm: p.comm.clone(),
        timers: Some(pb::TaskTimersEntry {
            real: itimer(&p.itimers.real),
            virt: itimer(&p.itimers.virt),
            prof: itimer(&p.itimers.prof),
            posix: p.posix_timers.clone(),
        }),
        rlimits: Some(pb::TaskRlimitsEntry { rlimits }),
        cg_set: None,
        signals_s: Some(signal_queue(p.signals)),
        old_seccomp_mode: None,
        old_seccomp_filter: None,
        loginuid: p.loginuid,
        oom_score_adj: p.oom_score_adj,
        sigactions: sigactions(p.sigactions),
        child_subreaper: Some(p.child_subreaper),
        blk_sigset_extended: None,
        stop_signo: p.stop_signo,
        membarrier_registration_mask: (p.membarrier != 0).then_some(p.membarrier),
        rcriu_coredump_filter: Some(p.attrs.coredump_filter),
        rcriu_mdwe: attrs::mdwe(t.info),
        rcriu_ksm_merge_any: p.attrs.ksm_merge_any.then_some(true),
        rcriu_thp_disable: attrs::thp_disable(t.info),
        rcriu_autogroup_nice: p.attrs.autogroup_nice.filter(|&n| n != 0),
        rcriu_exit_signal: exit_signal(p.exit_signal),
    });
    c
}

/// rcriu's field for a process's exit signal: none for SIGCHLD.
pub fn exit_signal(sig: i32) -> Option<u32> {
    (sig != libc::SIGCHLD).then_some(sig.max(0) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_bits_as_criu() {
        // An empty slot as the kernel reports it: read_exec_only and
        // seg_not_present.
        let d = tls(&[12, 0, 0, (1 << 3) | (1 << 5)]);
        assert!(d.read_exec_only && d.seg_not_present);
        assert!(!d.seg_32bit && !d.contents_h && !d.contents_l && !d.usable);
        let d = tls(&[13, 0x1000, 0xfffff, 1 | (3 << 1) | (1 << 4) | (1 << 6)]);
        assert!(d.seg_32bit && d.contents_h && d.contents_l && d.limit_in_pages && d.usable);
    }

    #[test]
    fn sixty_two_sigactions() {
        let mut acts = vec![KSigaction::default(); 64];
        acts[libc::SIGUSR1 as usize - 1].handler = 0x1234;
        let sa = sigactions(&acts);
        assert_eq!(sa.len(), 62);
        // SIGUSR1 (10) is the 9th entry: SIGKILL (9) is left out.
        assert_eq!(sa[8].sigaction, 0x1234);
    }

    #[test]
    fn fpregs_of_this_thread() {
        let mut legacy = [0u8; 512];
        legacy[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        legacy[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        let x = Xstate::from_bytes({
            let mut v = legacy.to_vec();
            v.resize(4096, 0);
            v[XSAVE_HDR_OFFSET] = 3;
            v
        });
        let f = fpregs(&x, None);
        assert_eq!((f.cwd, f.mxcsr), (0x37f, 0x1f80));
        assert_eq!(f.st_space.len(), 32);
        assert_eq!(f.xmm_space.len(), 64);
        let xs = f.xsave.unwrap();
        assert_eq!(xs.xstate_bv, 3);
        // Each component the CPU has, at its full size.
        for c in rcriu_compel::sys::xsave_components() {
            let n = match c.index {
                YMM => xs.ymmh_space.len() * 4,
                OPMASK => xs.opmask_reg.len() * 8,
                ZMM_HI256 => xs.zmm_upper.len() * 8,
                HI16_ZMM => xs.hi16_zmm.len() * 8,
                PKRU => xs.pkru.len() * 4,
                _ => continue,
            };
            assert_eq!(n as u32, c.size, "component {}", c.index);
        }
    }
}
