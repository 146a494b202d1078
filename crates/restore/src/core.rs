//! The process's core: registers, FPU state, signal mask and actions,
//! limits, rseq, name, state; and the credentials, which must be rcriu's
//! own (restoring other credentials comes later).

use rcriu_compel::UserRegs;
use rcriu_compel::abi::KSigaction;
use rcriu_compel::abi::restorer::{NLIMITS, NSIG, Rlimit, Rseq};
use rcriu_compel::regs::{FXSAVE_SIZE, XFEATURE_PKRU};
use rcriu_images::{ImageFile, pb};

use crate::load::Images;
use crate::{Error, Result};

/// `core_entry.march` X86_64.
const MARCH_X86_64: i32 = 1;
/// `task_core_entry.task_state`: alive, stopped.
const TASK_ALIVE: u32 = 1;
const TASK_STOPPED: u32 = 3;

/// What the restorer and the final ptrace step need from the core image.
#[derive(Debug)]
pub struct CorePlan {
    pub regs: UserRegs,
    /// The legacy FXSAVE part, rebuilt.
    pub fx: [u8; FXSAVE_SIZE],
    pub xstate_bv: u64,
    /// `(component, bytes)` of the xsave area.
    pub components: Vec<(u32, Vec<u8>)>,
    pub sigmask: u64,
    pub sigactions: [KSigaction; NSIG],
    /// Bit n - 1: signal n's action is in the image.
    pub sigaction_set: u64,
    pub rlimits: Vec<Rlimit>,
    pub rseq: Option<Rseq>,
    pub comm: [u8; 16],
    /// The process was stopped (it is stopped again after the restore).
    pub stopped: bool,
    /// The interval timers (real, virtual, profiling) as
    /// `[interval sec, usec, value sec, usec]`.
    pub itimers: [[u64; 4]; 3],
    /// The alternate signal stack: sp, flags, size.
    pub sas: Option<[u64; 3]>,
    /// Supplementary groups, when the image has credentials.
    pub groups: Option<Vec<u32>>,
    pub no_new_privs: bool,
    pub child_subreaper: bool,
    pub personality: u32,
    pub oom_score_adj: Option<i32>,
}

fn u32s(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn u64s(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Reads the core image of `img`'s process.
pub fn plan(img: &Images) -> Result<CorePlan> {
    let pid = img.task.pid;
    let file = ImageFile::Core(pid.into()).name();
    let core = &img.task.core;
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
    let tc = core
        .tc
        .as_ref()
        .ok_or_else(|| Error::invalid(file.clone(), "no task core"))?;
    let thc = core
        .thread_core
        .as_ref()
        .ok_or_else(|| Error::invalid(file.clone(), "no thread core"))?;

    let g = &ti.gpregs;
    if g.mode.is_some_and(|m| m != 1) {
        return Err(Error::unsupported(format!(
            "restoring the 32-bit task {pid}"
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
                "restoring the shadow stack of task {pid}"
            )));
        }
    }

    let sigmask = thc.blk_sigset.unwrap_or(tc.blk_sigset);
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

    let rseq = thc.rseq_entry.as_ref().and_then(|r| {
        (r.rseq_abi_pointer != 0).then_some(Rseq {
            addr: r.rseq_abi_pointer,
            len: r.rseq_abi_size,
            sig: r.signature,
        })
    });

    let mut comm = [0u8; 16];
    let name = thc.comm.as_deref().unwrap_or(&tc.comm);
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);

    let stopped = match tc.task_state {
        TASK_ALIVE => false,
        TASK_STOPPED => true,
        s => {
            return Err(Error::unsupported(format!(
                "restoring task {pid} in state {s}"
            )));
        }
    };

    let mut itimers = [[0u64; 4]; 3];
    if let Some(t) = &tc.timers {
        for (i, it) in [&t.real, &t.virt, &t.prof].into_iter().enumerate() {
            itimers[i] = [it.isec, it.iusec, it.vsec, it.vusec];
        }
        if !t.posix.is_empty() {
            return Err(Error::unsupported(format!(
                "restoring the {} POSIX timers of process {pid}",
                t.posix.len()
            )));
        }
    }

    check_creds(thc.creds.as_ref(), pid)?;
    let sas = thc
        .sas
        .as_ref()
        .filter(|s| s.ss_size != 0)
        .map(|s| [s.ss_sp, u64::from(s.ss_flags), s.ss_size]);

    Ok(CorePlan {
        regs,
        fx,
        xstate_bv,
        components,
        sigmask,
        sigactions,
        sigaction_set,
        rlimits,
        rseq,
        comm,
        stopped,
        itimers,
        sas,
        groups: thc.creds.as_ref().map(|c| c.groups.clone()),
        no_new_privs: thc.creds.as_ref().and_then(|c| c.no_new_privs) == Some(1),
        child_subreaper: tc.child_subreaper == Some(true),
        personality: tc.personality,
        oom_score_adj: tc.oom_score_adj,
    })
}

/// The dumped credentials must be rcriu's: restoring others comes later.
fn check_creds(creds: Option<&pb::CredsEntry>, pid: u32) -> Result<()> {
    let Some(c) = creds else {
        return Ok(());
    };
    let me = rcriu_proc::Task::open_self()
        .and_then(|mut t| t.status())
        .map_err(|e| Error::Host {
            what: "reading rcriu's own credentials",
            source: std::io::Error::other(e),
        })?;
    let same_ids = [c.uid, c.euid, c.suid, c.fsuid]
        == [me.uid.real, me.uid.effective, me.uid.saved, me.uid.fs]
        && [c.gid, c.egid, c.sgid, c.fsgid]
            == [me.gid.real, me.gid.effective, me.gid.saved, me.gid.fs];
    let cap = |w: &[u32]| {
        u64::from(w.first().copied().unwrap_or(0)) | u64::from(w.get(1).copied().unwrap_or(0)) << 32
    };
    let same_caps = cap(&c.cap_eff) == me.cap_eff
        && cap(&c.cap_prm) == me.cap_prm
        && cap(&c.cap_inh) == me.cap_inh
        && cap(&c.cap_bnd) == me.cap_bnd;
    if !same_ids || !same_caps {
        return Err(Error::unsupported(format!(
            "restoring process {pid} with credentials other than rcriu's (uid {} gid {})",
            c.uid, c.gid
        )));
    }
    Ok(())
}
