//! A process tree: each restorer forks the children of its process, each
//! with its pid (a live child into its own restorer, a zombie to exit at
//! once with its status), then every process waits until the whole tree
//! exists and joins its process group.

use core::sync::atomic::{AtomicU32, Ordering};

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, call, value};
use rcriu_parasite_abi::restorer::{Args, Child, CloneArgs, TreeShared};

use crate::{Fail, Res, array, ok};

/// Forks the children of the process that are `late` (forked once its
/// memory is in place) or not; a zombie (never late) has its end waited
/// for (not reaped) and the SIGCHLD it sent taken back, so that the
/// process has only the signals it had.
pub fn fork_children(a: &Args, late: bool) -> Res {
    // SAFETY: rcriu wrote `nr_children` children at `children`.
    let children: &[Child] = unsafe { array(a.children, a.nr_children) };
    let mut zombies = false;
    for (i, c) in children.iter().enumerate() {
        if (c.late != 0) != late {
            continue;
        }
        let r = fork(c);
        if r != c.pid as i64 {
            return Err(Fail(i as u32, if r < 0 { r } else { -EINVAL }));
        }
        zombies |= c.args == 0;
    }
    if !zombies {
        return Ok(());
    }
    for (i, c) in children.iter().enumerate().filter(|(_, c)| c.args == 0) {
        // waitid(P_PID, pid, NULL, WEXITED | WNOWAIT): it stays a zombie.
        let info = [0u64; 16];
        loop {
            // SAFETY: the kernel writes one siginfo_t (128 bytes) to `info`.
            let r = unsafe {
                call(
                    NR_WAITID,
                    P_PID,
                    c.pid as u64,
                    addr(&info),
                    WEXITED | WNOWAIT,
                )
            };
            if r == -EINTR {
                continue;
            }
            ok(r, i as u32)?;
            break;
        }
    }
    // The SIGCHLDs the zombies sent (SIGCHLD is blocked): taken, once the
    // last is in (a pending standard signal is one bit).
    let set: u64 = 1 << (SIGCHLD - 1);
    let zero = [0u64; 2];
    loop {
        // SAFETY: the kernel reads the set and the zero timeout.
        let r = unsafe { call(NR_RT_SIGTIMEDWAIT, addr(&set), 0, addr(&zero), 8) };
        if r < 0 {
            break;
        }
    }
    Ok(())
}

/// Forks child `c`: into the restorer with its args, or as a zombie to
/// be. Returns the kernel's answer (the pid, or a negative errno).
fn fork(c: &Child) -> i64 {
    let set_tid: [i32; 1] = [c.pid];
    let ca = CloneArgs {
        flags: 0,
        exit_signal: c.exit_signal as u64,
        stack: if c.args == 0 { 0 } else { c.stack_top - 16 },
        stack_size: if c.args == 0 { 0 } else { 16 },
        set_tid: addr(&set_tid),
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    let (entry, arg): (u64, u64) = if c.args == 0 {
        (zombie_main as *const () as u64, addr(c))
    } else {
        (crate::restorer_main as *const () as u64, c.args)
    };
    let ret: i64;
    // SAFETY: clone3 reads `ca` and `set_tid`. The parent goes on as after
    // any syscall. The child (rax 0) runs on its own stack in the region
    // (a zombie on the parent's, a copy: it only exits), with r12 its
    // entry and r13 its argument; neither returns.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "and rsp, -16",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") NR_CLONE3 => ret,
            in("rdi") addr(&ca),
            in("rsi") core::mem::size_of::<CloneArgs>() as u64,
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// A zombie to be: takes its name and ends at once with its wait status:
/// killed by its signal, or exiting with its code.
extern "C" fn zombie_main(c: *const Child) -> ! {
    // SAFETY: its parent passes its `Child`, in the region (shared) or on
    // the parent's stack (which this fork has a copy of).
    let c = unsafe { &*c };
    let status = c.zombie_status as u64;
    // SAFETY: prctl reads at most 16 bytes of the name.
    unsafe { call(NR_PRCTL, PR_SET_NAME, addr(&c.comm), 0, 0) };
    let sig = status & 0x7f;
    if sig != 0 && sig != 0x7f {
        // The signal's default action, unblocked, sent to itself.
        let dfl = [0u64; 4];
        // SAFETY: the kernel reads one struct sigaction (SIG_DFL).
        unsafe { call(NR_RT_SIGACTION, sig, addr(&dfl), 0, 8) };
        let all = !0u64;
        // SAFETY: the kernel reads one sigset.
        unsafe { call(NR_RT_SIGPROCMASK, SIG_UNBLOCK, addr(&all), 0, 8) };
        let me = value(NR_GETPID, 0, 0, 0);
        value(NR_KILL, me as u64, sig, 0);
    }
    loop {
        value(NR_EXIT_GROUP, (status >> 8) & 0xff, 0, 0);
    }
}

/// Waits until every live process of the tree exists, then joins the
/// process's group (a group leader first makes its group, before the
/// barrier, so that members find it).
pub fn join_group(a: &Args) -> Res {
    let me = value(NR_GETPID, 0, 0, 0);
    let lead = a.pgid != 0 && a.pgid as i64 == me;
    if lead && value(NR_GETPGID, 0, 0, 0) != me {
        ok(value(NR_SETPGID, 0, 0, 0), 0)?;
    }
    if a.tree != 0 {
        // SAFETY: rcriu put the tree's words in the region, aligned, for
        // every process of the tree to touch only atomically.
        let t = unsafe { &*(a.tree as *const TreeShared) };
        // SAFETY: as above.
        let created = unsafe { AtomicU32::from_ptr(&raw const t.created as *mut u32) };
        let n = created.fetch_add(1, Ordering::AcqRel) + 1;
        let all = t.nr_procs;
        if n >= all {
            // SAFETY: a futex wake on the shared word.
            unsafe {
                call(
                    NR_FUTEX,
                    created.as_ptr() as u64,
                    FUTEX_WAKE,
                    i32::MAX as u64,
                    0,
                )
            };
        } else {
            loop {
                let now = created.load(Ordering::Acquire);
                if now >= all {
                    break;
                }
                // SAFETY: a futex wait on the shared word, while it holds
                // `now`.
                unsafe { call(NR_FUTEX, created.as_ptr() as u64, FUTEX_WAIT, now as u64, 0) };
            }
        }
    }
    if a.pgid != 0 && !lead && value(NR_GETPGID, 0, 0, 0) != a.pgid as i64 {
        ok(value(NR_SETPGID, 0, a.pgid as u64, 0), 1)?;
    }
    Ok(())
}
