//! A process tree: each restorer forks the children of its process, each
//! with its pid (a live child into its own restorer, a zombie to exit at
//! once with its status, a helper to make a process group whose leader
//! was gone), then every process waits until the whole tree exists and
//! joins its process group.

use core::sync::atomic::{AtomicU32, Ordering};

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, call, value};
use rcriu_parasite_abi::restorer::{
    Args, CHILD_HELPER, CHILD_LIVE, CHILD_SESSION, CHILD_ZOMBIE, Child, CloneArgs,
    FLAG_JOINS_HELPER, PIDNS_CHILDREN_NEW, TreeShared,
};

use crate::{Fail, Res, array, ok};

/// `__WALL`: wait for a child whatever its exit signal.
const WALL: u64 = 0x4000_0000;
/// `CLONE_PARENT`: the child is its creator's sibling.
const CLONE_PARENT: u64 = 0x8000;

fn children(a: &Args) -> &[Child] {
    // SAFETY: rcriu wrote `nr_children` children at `children`.
    unsafe { array(a.children, a.nr_children) }
}

/// Forks the children of the process that are `late` (forked once its
/// memory is in place) or not; a zombie and a helper are never late, and
/// a session helper forks its members itself. A zombie's end is waited
/// for (not reaped), a session helper's reaped, and the SIGCHLD they sent
/// taken back, so that the process has only the signals it had.
pub fn fork_children(a: &Args, late: bool) -> Res {
    let children = children(a);
    let mut ended = false;
    for (i, c) in children.iter().enumerate() {
        if (c.late != 0) != late || c.clone_flags & CLONE_PARENT != 0 {
            continue;
        }
        let r = fork(c);
        if r != c.pid as i64 {
            return Err(Fail(i as u32, if r < 0 { r } else { -EINVAL }));
        }
        ended |= c.kind == CHILD_ZOMBIE || c.kind == CHILD_SESSION;
    }
    if !ended {
        return Ok(());
    }
    for (i, c) in children.iter().enumerate() {
        // waitid(P_PID, pid, NULL, WEXITED | WNOWAIT): it stays a zombie.
        let options = match c.kind {
            CHILD_ZOMBIE => WEXITED | WNOWAIT,
            CHILD_SESSION => WEXITED,
            _ => continue,
        };
        waitid(c.pid, options).map_err(|r| Fail(i as u32, r))?;
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

/// `waitid(P_PID, pid, NULL, options | __WALL)`, again after EINTR.
fn waitid(pid: i32, options: u64) -> Result<(), i64> {
    let info = [0u64; 16];
    loop {
        // SAFETY: the kernel writes one siginfo_t (128 bytes) to `info`.
        let r = unsafe { call(NR_WAITID, P_PID, pid as u64, addr(&info), options | WALL) };
        match r {
            r if r == -EINTR => continue,
            r if r < 0 => return Err(r),
            _ => return Ok(()),
        }
    }
}

/// Forks child `c`: into the restorer with its args, or as a zombie or a
/// helper to be. Returns the kernel's answer (the pid, or a negative
/// errno).
fn fork(c: &Child) -> i64 {
    // The innermost namespace's pid first, then the host's; in a nested
    // namespace, every level's, as rcriu wrote them.
    let set_tid: [i32; 2] = [c.pid, c.host_pid];
    let (levels, nr_levels) = match c.set_tid_size {
        0 => (addr(&set_tid), if c.host_pid != 0 { 2 } else { 1 }),
        n => (addr(&c.set_tid), n as u64),
    };
    let ca = CloneArgs {
        flags: c.clone_flags,
        exit_signal: c.exit_signal as u64,
        stack: c.stack_top - 16,
        stack_size: 16,
        set_tid: levels,
        set_tid_size: nr_levels,
        ..CloneArgs::default()
    };
    let (entry, arg): (u64, u64) = match c.kind {
        CHILD_LIVE => (crate::restorer_main as *const () as u64, c.args),
        CHILD_HELPER => (helper_main as *const () as u64, addr(c)),
        CHILD_SESSION => (session_main as *const () as u64, addr(c)),
        _ => (zombie_main as *const () as u64, addr(c)),
    };
    let ret: i64;
    // SAFETY: clone3 reads `ca` and `set_tid`. The parent goes on as after
    // any syscall. The child (rax 0) runs on its own stack in the region,
    // with r12 its entry and r13 its argument; neither returns.
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

/// A zombie to be: takes its name (and leads its process group if it
/// did, or joins the group a helper made again) and ends at once with its
/// wait status: killed by its signal, or exiting with its code.
extern "C" fn zombie_main(c: *const Child) -> ! {
    // SAFETY: its parent passes its `Child`, in the region.
    let c = unsafe { &*c };
    let status = c.zombie_status as u64;
    // SAFETY: prctl reads at most 16 bytes of the name.
    unsafe { call(NR_PRCTL, PR_SET_NAME, addr(&c.comm), 0, 0) };
    if c.pgid == c.pid {
        value(NR_SETPGID, 0, 0, 0);
    } else if c.args != 0 {
        // The helper, forked just before it, makes the group first (or
        // fails, and ends).
        loop {
            let g = value(NR_GETPGID, c.pgid as u64, 0, 0);
            if g == c.pgid as i64 || g < 0 {
                break;
            }
            value(NR_SCHED_YIELD, 0, 0, 0);
        }
        value(NR_SETPGID, 0, c.pgid as u64, 0);
        // SAFETY: such a zombie's `args` is the tree's words, in the
        // region.
        let t = unsafe { Words::at(c.args) };
        arrive(t.joined, t.nr_joiners);
    }
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

/// A helper: makes its process group, counts itself in the tree, waits
/// until every member joined, and ends (its parent, a member, reaps it).
extern "C" fn helper_main(c: *const Child) -> ! {
    // SAFETY: its parent passes its `Child`, in the region.
    let c = unsafe { &*c };
    let code = if value(NR_SETPGID, 0, 0, 0) < 0 { 1 } else { 0 };
    // SAFETY: a helper's `args` is the tree's words, in the region.
    let t = unsafe { Words::at(c.args) };
    arrive(t.created, t.nr_procs);
    if code == 0 {
        wait_for(t.joined, t.nr_joiners);
    }
    loop {
        value(NR_EXIT_GROUP, code, 0, 0);
    }
}

/// A session helper: makes the session, forks its members as its
/// parent's children, and ends (its parent reaps it) with 0, or 1 when it
/// made no session, 2 when a member was not made.
extern "C" fn session_main(c: *const Child) -> ! {
    // SAFETY: its parent passes its `Child`, in the array of its
    // children in the region, whose next `nr_members` are the members.
    let members = unsafe { core::slice::from_raw_parts(c.add(1), (*c).nr_members as usize) };
    let mut code = 0;
    if value(NR_SETSID, 0, 0, 0) < 0 {
        code = 1;
    } else {
        for m in members {
            if fork(m) != m.pid as i64 {
                code = 2;
                break;
            }
        }
    }
    loop {
        value(NR_EXIT_GROUP, code, 0, 0);
    }
}

/// The tree's words, each touched only atomically.
struct Words {
    created: &'static AtomicU32,
    nr_procs: u32,
    joined: &'static AtomicU32,
    nr_joiners: u32,
}

impl Words {
    /// # Safety
    /// `at` is the address of the tree's [`TreeShared`] words in the
    /// region, aligned, which every process of the tree touches only
    /// atomically and which stays mapped while restorers run.
    unsafe fn at(at: u64) -> Words {
        let t = at as *mut TreeShared;
        // SAFETY: the caller's contract; the counts are written by rcriu
        // before any restorer runs.
        unsafe {
            Words {
                created: AtomicU32::from_ptr(&raw mut (*t).created),
                nr_procs: (*t).nr_procs,
                joined: AtomicU32::from_ptr(&raw mut (*t).joined),
                nr_joiners: (*t).nr_joiners,
            }
        }
    }
}

/// Counts this process in `w` and wakes those waiting on it.
fn arrive(w: &AtomicU32, all: u32) {
    let n = w.fetch_add(1, Ordering::AcqRel) + 1;
    if n >= all {
        // SAFETY: a futex wake on the shared word.
        unsafe { call(NR_FUTEX, w.as_ptr() as u64, FUTEX_WAKE, i32::MAX as u64, 0) };
    }
}

/// Waits until `w` counts `all`.
fn wait_for(w: &AtomicU32, all: u32) {
    loop {
        let now = w.load(Ordering::Acquire);
        if now >= all {
            return;
        }
        // SAFETY: a futex wait on the shared word, while it holds `now`.
        unsafe { call(NR_FUTEX, w.as_ptr() as u64, FUTEX_WAIT, now as u64, 0) };
    }
}

/// Waits until every process (and helper) of the tree exists, then joins
/// the process's group (a group leader first makes its group, before the
/// barrier, so that members find it); one that joins a helper's group
/// says so, and a member that forked helpers reaps them once they end.
pub fn join_group(a: &Args) -> Res {
    let me = value(NR_GETPID, 0, 0, 0);
    let lead = a.pgid != 0 && a.pgid as i64 == me;
    if lead && value(NR_GETPGID, 0, 0, 0) != me {
        ok(value(NR_SETPGID, 0, 0, 0), 0)?;
    }
    // SAFETY: rcriu put the tree's words in the region (0: one process).
    let t = (a.tree != 0).then(|| unsafe { Words::at(a.tree) });
    if let Some(t) = &t {
        arrive(t.created, t.nr_procs);
        wait_for(t.created, t.nr_procs);
    }
    if a.pgid != 0 && !lead && value(NR_GETPGID, 0, 0, 0) != a.pgid as i64 {
        ok(value(NR_SETPGID, 0, a.pgid as u64, 0), 1)?;
    }
    if let (Some(t), true) = (&t, a.flags & FLAG_JOINS_HELPER != 0) {
        arrive(t.joined, t.nr_joiners);
    }
    for (i, c) in children(a).iter().enumerate() {
        if c.kind == CHILD_HELPER {
            // It ends once every member joined (itself a member, this
            // process joined already).
            waitid(c.pid, WEXITED).map_err(|r| Fail(2 + i as u32, r))?;
        }
    }
    Ok(())
}

/// Sends the process's next children into the pid namespace they went
/// into at the dump, once its own children exist: a child's (the init
/// it made), through the child's pidfd, or a new one.
pub fn set_pidns_for_children(a: &Args) -> Res {
    if a.pidns_for_children == PIDNS_CHILDREN_NEW {
        return ok(value(NR_UNSHARE, CLONE_NEWPID, 0, 0), 0).map(|_| ());
    }
    let fd = ok(value(NR_PIDFD_OPEN, a.pidns_for_children as u64, 0, 0), 0)?;
    let r = value(NR_SETNS, fd as u64, CLONE_NEWPID, 0);
    value(NR_CLOSE, fd as u64, 0, 0);
    ok(r, 1).map(|_| ())
}
