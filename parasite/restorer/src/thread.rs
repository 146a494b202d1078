//! Threads: each one but the leader is created with clone3 and its tid,
//! on a stack of its own in the region; then every thread (the leader
//! too) restores what is its own: tid address, robust list, scheduling,
//! CPU affinity, I/O priority, name, timer slack, TSC and machine-check
//! modes, alternate stack, rseq, pending signals, seccomp, credentials,
//! dumpable and parent death signal, in CRIU's order. Then it stops on
//! int3 for rcriu to set its registers.

use core::mem::size_of;

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, call, value};
use rcriu_parasite_abi::restorer::{
    Args, CloneArgs, FAULT_ERRNO, MCE_KILL_DEFAULT, SeccompFilter, Step, TFLAG_AFFINITY,
    TFLAG_CREDS, TFLAG_IOPRIO, TFLAG_RSEQ, TFLAG_SCHED, TFLAG_SLACK, THREAD_STACK_SIZE, ThreadArgs,
};

use crate::{Fail, Res, array, creds, exit, ok, signals};

const THREAD_FLAGS: u64 =
    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;

/// Creates the thread of `t` with its tid; returns the kernel's answer
/// (the tid, or a negative errno).
pub fn create(t: &mut ThreadArgs) -> i64 {
    // Its tid in the process's pid namespace, then on the host when the
    // namespace is the restore's own.
    let set_tid: [i32; 2] = [t.tid, t.host_tid];
    let (levels, nr_levels) = match t.set_tid_size {
        0 => (addr(&set_tid), if t.host_tid != 0 { 2 } else { 1 }),
        n => (addr(&t.set_tid), n as u64),
    };
    let ca = CloneArgs {
        flags: THREAD_FLAGS,
        stack: t.stack_top - THREAD_STACK_SIZE as u64,
        stack_size: THREAD_STACK_SIZE as u64,
        set_tid: levels,
        set_tid_size: nr_levels,
        ..CloneArgs::default()
    };
    let ret: i64;
    // SAFETY: clone3 reads `ca` and `set_tid`. The parent goes on as after
    // any syscall. The child starts on its own stack in the region (which
    // nothing else uses) with the parent's registers, so r12 holds `t`;
    // it calls `thread_main`, which never returns.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "and rsp, -16",
            "call {entry}",
            "ud2",
            "2:",
            entry = sym thread_main,
            inlateout("rax") NR_CLONE3 => ret,
            in("rdi") addr(&ca),
            in("rsi") size_of::<CloneArgs>() as u64,
            in("r12") core::ptr::from_mut(t) as u64,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

extern "C" fn thread_main(t: *mut ThreadArgs) -> ! {
    // SAFETY: `create` passes the ThreadArgs of this thread, in the region,
    // which only this thread writes from now on; `args` points to the
    // process's Args there, which nobody writes while threads run.
    let t = unsafe { &mut *t };
    // SAFETY: as above.
    let a = unsafe { &*(t.args as *const Args) };
    match restore(a, t) {
        Ok(()) => {
            t.step = Step::Done as u32;
            t.status = 0;
            stop()
        }
        Err((step, Fail(index, err))) => {
            t.step = step as u32;
            t.index = index;
            t.status = err;
            exit(1)
        }
    }
}

/// The end of a thread's restore: rcriu sets its registers at this trap
/// and never lets this code go on.
pub fn stop() -> ! {
    // SAFETY: int3 only traps.
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
    exit(2)
}

/// What a thread restores itself; on failure, which step.
pub fn restore(a: &Args, t: &mut ThreadArgs) -> Result<(), (Step, Fail)> {
    let fault = a.fault_step;
    let at = |step: Step, t: &mut ThreadArgs| -> Step {
        t.step = step as u32;
        if fault == step as u32 {
            t.index = 0;
            t.status = -FAULT_ERRNO;
            exit(1);
        }
        step
    };
    let s = at(Step::ThreadState, t);
    state(t).map_err(|f| (s, f))?;
    {
        let s = at(Step::Sas, t);
        // In use at the dump (SS_ONSTACK) or not, it is set the same way:
        // the kernel tells "on stack" from the stack pointer. None is
        // SS_DISABLE: the leader would keep the stack of rcriu's thread
        // it was forked from.
        let ss = [t.sas[0], t.sas[1] & !SS_ONSTACK, t.sas[2]];
        // SAFETY: the kernel reads one stack_t (sp, flags with padding,
        // size: three words).
        let r = unsafe { call(NR_SIGALTSTACK, addr(&ss), 0, 0, 0) };
        ok(r, 0).map_err(|f| (s, f))?;
    }
    if t.flags & TFLAG_RSEQ != 0 {
        let s = at(Step::Rseq, t);
        let r = t.rseq;
        // SAFETY: the area is the process's own, mapped again; the kernel
        // writes to it from now on, as it did before the dump.
        let ret = unsafe { call(NR_RSEQ, r.addr, r.len as u64, 0, r.sig as u64) };
        ok(ret, 0).map_err(|f| (s, f))?;
    }
    let s = at(Step::ThreadSignals, t);
    signals::queue(t.signals, t.nr_signals, Some(t.tid)).map_err(|f| (s, f))?;
    // Before the credentials: installing a filter takes CAP_SYS_ADMIN (or
    // no_new_privs). rcriu traces the threads with PTRACE_O_SUSPEND_SECCOMP,
    // so the filters bind only once it lets them go.
    let s = at(Step::Seccomp, t);
    seccomp(t).map_err(|f| (s, f))?;
    if t.flags & TFLAG_CREDS != 0 {
        let s = at(Step::Creds, t);
        creds::restore(&t.creds).map_err(|f| (s, f))?;
    }
    // After the credentials: changing ids resets both.
    let s = at(Step::Attrs, t);
    // 2 (suid_dumpable) cannot be set by prctl: rcriu passes only 0 or 1.
    ok(value(NR_PRCTL, PR_SET_DUMPABLE, a.dumpable as u64, 0), 2).map_err(|f| (s, f))?;
    let s = at(Step::Parent, t);
    ok(value(NR_PRCTL, PR_SET_PDEATHSIG, t.pdeath_sig as u64, 0), 2).map_err(|f| (s, f))?;
    Ok(())
}

fn state(t: &ThreadArgs) -> Res {
    value(NR_SET_TID_ADDRESS, t.clear_tid, 0, 0);
    if t.robust_len != 0 {
        ok(value(NR_SET_ROBUST_LIST, t.robust, t.robust_len, 0), 0)?;
    }
    if t.flags & TFLAG_SCHED != 0 {
        let prio: i32 = t.sched_prio as i32;
        // SAFETY: the kernel reads one struct sched_param (an int).
        let r = unsafe {
            call(
                NR_SCHED_SETSCHEDULER,
                0,
                t.sched_policy as u64,
                addr(&prio),
                0,
            )
        };
        ok(r, 1)?;
        ok(
            value(NR_SETPRIORITY, PRIO_PROCESS, 0, t.nice as i64 as u64),
            2,
        )?;
    }
    // SAFETY: prctl reads at most 16 bytes of the name.
    let r = unsafe { call(NR_PRCTL, PR_SET_NAME, addr(&t.comm), 0, 0) };
    ok(r, 3)?;
    if t.flags & TFLAG_SLACK != 0 {
        ok(value(NR_PRCTL, PR_SET_TIMERSLACK, t.timer_slack, 0), 4)?;
    }
    if t.flags & TFLAG_AFFINITY != 0 {
        // SAFETY: rcriu wrote `nr_affinity` words at `affinity`; the kernel
        // reads that many bytes.
        let r = unsafe { call(NR_SCHED_SETAFFINITY, 0, t.nr_affinity * 8, t.affinity, 0) };
        ok(r, 5)?;
    }
    if t.flags & TFLAG_IOPRIO != 0 {
        ok(
            value(NR_IOPRIO_SET, IOPRIO_WHO_PROCESS, 0, t.ioprio as u64),
            6,
        )?;
    }
    if t.tsc != 0 {
        ok(value(NR_PRCTL, PR_SET_TSC, t.tsc as u64, 0), 7)?;
    }
    let mce = if t.mce_kill == MCE_KILL_DEFAULT {
        value(NR_PRCTL, PR_MCE_KILL, PR_MCE_KILL_CLEAR, 0)
    } else {
        value(NR_PRCTL, PR_MCE_KILL, PR_MCE_KILL_SET, t.mce_kill as u64)
    };
    ok(mce, 8)?;
    Ok(())
}

fn seccomp(t: &ThreadArgs) -> Res {
    match t.seccomp_mode as u64 {
        0 => Ok(()),
        SECCOMP_MODE_STRICT => {
            ok(value(NR_PRCTL, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0), 0).map(drop)
        }
        _ => {
            // SAFETY: rcriu wrote `nr_filters` filters at `filters`, each
            // pointing at its instructions in the region.
            let filters: &[SeccompFilter] = unsafe { array(t.filters, t.nr_filters) };
            for (i, f) in filters.iter().enumerate() {
                // SAFETY: the kernel reads the sock_fprog at `f.len` and the
                // `len` instructions it points to.
                let r = unsafe {
                    call(
                        NR_SECCOMP,
                        SECCOMP_SET_MODE_FILTER,
                        f.flags,
                        addr(&f.len),
                        0,
                    )
                };
                ok(r, i as u32)?;
            }
            Ok(())
        }
    }
}
