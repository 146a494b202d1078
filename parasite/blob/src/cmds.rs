//! The commands: each reads its arguments from the args area and writes
//! its results back there. A command returns its result value, or a
//! negative errno with the syscall (or index) where it failed.

use rcriu_parasite_abi::{
    Cmd, CredsArgs, DumpPagesArgs, FdsArgs, GDT_ENTRY_TLS_MIN, IoVec, ItimersArgs, KSigaction,
    MAX_FDS, MAX_IOVS, MAX_MEMPOLICIES, MAX_MPROTECT, MAX_POSIX_TIMERS, MemPoliciesArgs,
    MprotectArgs, NSIG, PosixTimersArgs, RseqArgs, SigactionsArgs, SigaltstackArgs, ThreadInfoArgs,
    TlsArgs, WritePagesArgs,
};

use rcriu_blob_rt::syscall::addr_mut;

use crate::sys::{self, call};

type Ret = (i64, i32);

/// Commands that make sense one-shot on any thread: what is per thread.
pub fn one_shot(c: Cmd) -> bool {
    matches!(
        c,
        Cmd::Sigaltstack | Cmd::Tls | Cmd::Creds | Cmd::Rseq | Cmd::Thread
    )
}

/// The args area as command `c`'s args struct.
///
/// # Safety
/// rcriu put the args struct of the running command in the args area,
/// which is large and aligned enough for every one of them (asserted in
/// the ABI crate), and touches it only between commands.
unsafe fn args_as<'a, T>(args: *mut u8) -> &'a mut T {
    // SAFETY: the caller's contract above.
    unsafe { &mut *args.cast::<T>() }
}

/// Runs `c` on the args area at `args` (see [`args_as`] for what rcriu
/// guarantees about it).
pub fn run(c: Cmd, args: *mut u8, _sock: Option<i32>) -> Ret {
    match c {
        // SAFETY: the area holds the args of command `c`.
        Cmd::DumpPages => dump_pages(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::WritePages => write_pages(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Sigactions => sigactions(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Itimers => itimers(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::PosixTimers => posix_timers(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Sigaltstack => sigaltstack(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Tls => tls(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Rseq => rseq(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Creds => creds(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::SendFds => send_fds(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::CloseFds => close_fds(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::FdFlags => fd_flags(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Mprotect => mprotect(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::Thread => thread(unsafe { args_as(args) }),
        // SAFETY: as above.
        Cmd::MemPolicies => mem_policies(unsafe { args_as(args) }),
        Cmd::Init | Cmd::Fini | Cmd::RecvFd => (-sys::EINVAL, 0),
    }
}

fn failed(r: i64, nr: i64) -> Ret {
    (r, nr as i32)
}

/// Splices the listed ranges into the pipe; returns the bytes spliced. The
/// host drains the pipe meanwhile.
fn dump_pages(a: &mut DumpPagesArgs) -> Ret {
    let nr = (a.nr_iovs as usize).min(MAX_IOVS);
    let fd = a.pipe_fd as u64;
    take_all(&mut a.iovs[..nr], sys::EINVAL, |iovs, count, _| {
        // SAFETY: vmsplice only reads the victim's memory at the listed
        // addresses (the kernel checks them) and the `count` iovecs at
        // `iovs`, which lie in the args area.
        unsafe { call(sys::NR_VMSPLICE, fd, iovs as u64, count, sys::SPLICE_F_GIFT) }
    })
}

/// Writes the listed ranges to the file from the offset on; returns the
/// bytes written.
fn write_pages(a: &mut WritePagesArgs) -> Ret {
    let nr = (a.nr_iovs as usize).min(MAX_IOVS);
    let (fd, offset) = (a.fd as u64, a.offset);
    take_all(&mut a.iovs[..nr], sys::EIO, |iovs, count, done| {
        // SAFETY: pwritev only reads the victim's memory at the listed
        // addresses (the kernel checks them) and the `count` iovecs at
        // `iovs`, which lie in the args area. On x86_64 the offset's high
        // half (the fifth argument) is not used.
        unsafe { call(sys::NR_PWRITEV, fd, iovs as u64, count, offset + done) }
    })
}

/// Hands the ranges `iovs` to `op` (the first range left, how many are
/// left, the bytes taken so far) until it took them all; returns the
/// bytes. A partly taken range is shortened for the next call; an `op`
/// that takes nothing fails with `-on_zero`.
fn take_all(
    iovs: &mut [IoVec],
    on_zero: i64,
    mut op: impl FnMut(*const IoVec, u64, u64) -> i64,
) -> Ret {
    let mut total = 0u64;
    let mut i = 0;
    while i < iovs.len() {
        let r = op(iovs[i..].as_ptr(), (iovs.len() - i) as u64, total);
        if r < 0 {
            return failed(r, i as i64);
        }
        if r == 0 {
            return failed(-on_zero, i as i64);
        }
        total += r as u64;
        let mut left = r as u64;
        while i < iovs.len() && left >= iovs[i].len {
            left -= iovs[i].len;
            i += 1;
        }
        if left > 0 && i < iovs.len() {
            iovs[i].base += left;
            iovs[i].len -= left;
        }
    }
    (total as i64, 0)
}

fn sigactions(a: &mut SigactionsArgs) -> Ret {
    for sig in 1..=NSIG {
        let mut act = KSigaction::default();
        if sig != 9 && sig != 19 {
            // SAFETY: the kernel writes one `struct sigaction` to `act`.
            let r = unsafe { call(sys::NR_RT_SIGACTION, sig as u64, 0, addr_mut(&mut act), 8) };
            if r < 0 {
                return failed(r, sig as i64);
            }
        }
        a.actions[sig - 1] = act;
    }
    (0, 0)
}

fn itimers(a: &mut ItimersArgs) -> Ret {
    for (which, t) in [(0u64, &mut a.real), (1, &mut a.virt), (2, &mut a.prof)] {
        // SAFETY: the kernel writes one `struct itimerval` to `t`.
        let r = unsafe { call(sys::NR_GETITIMER, which, addr_mut(t), 0, 0) };
        if r < 0 {
            return failed(r, sys::NR_GETITIMER);
        }
    }
    (0, 0)
}

fn posix_timers(a: &mut PosixTimersArgs) -> Ret {
    let nr = (a.nr as usize).min(MAX_POSIX_TIMERS);
    for (i, t) in a.timers[..nr].iter_mut().enumerate() {
        // `struct itimerspec` is interval then value, as `PosixTimer` holds
        // them.
        let mut spec = [0i64; 4];
        // SAFETY: the kernel writes one `struct itimerspec` to `spec`.
        let r = unsafe {
            call(
                sys::NR_TIMER_GETTIME,
                t.id as u64,
                addr_mut(&mut spec),
                0,
                0,
            )
        };
        if r < 0 {
            return failed(r, i as i64);
        }
        t.interval.sec = spec[0];
        t.interval.nsec = spec[1];
        t.value.sec = spec[2];
        t.value.nsec = spec[3];
        let r = sys::value(sys::NR_TIMER_GETOVERRUN, t.id as u64, 0, 0);
        if r < 0 {
            return failed(r, i as i64);
        }
        t.overrun = r as i32;
    }
    (0, 0)
}

fn sigaltstack(a: &mut SigaltstackArgs) -> Ret {
    // SAFETY: the kernel writes one stack_t to `a.stack`.
    let r = unsafe { sys::sigaltstack(0, addr_mut(&mut a.stack)) };
    if r < 0 {
        return failed(r, sys::NR_SIGALTSTACK);
    }
    (0, 0)
}

const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

fn tls(a: &mut TlsArgs) -> Ret {
    for (code, out) in [(ARCH_GET_FS, &mut a.fs_base), (ARCH_GET_GS, &mut a.gs_base)] {
        // SAFETY: the kernel writes one unsigned long to `out`.
        let r = unsafe { call(sys::NR_ARCH_PRCTL, code, addr_mut(out), 0, 0) };
        if r < 0 {
            return failed(r, sys::NR_ARCH_PRCTL);
        }
    }
    for (i, d) in a.desc.iter_mut().enumerate() {
        *d = Default::default();
        d.entry_number = GDT_ENTRY_TLS_MIN + i as u32;
        // SAFETY: the kernel reads and writes one `struct user_desc`.
        let r = unsafe { call(sys::NR_GET_THREAD_AREA, addr_mut(d), 0, 0, 0) };
        a.desc_err[i] = if r < 0 { r as i32 } else { 0 };
    }
    (0, 0)
}

fn rseq(a: &mut RseqArgs) -> Ret {
    let len = (a.len as usize).min(a.area.len());
    a.area = [0; 32];
    if a.addr == 0 || len == 0 {
        return (0, 0);
    }
    // The registered area as the task sees it now (the kernel rewrites
    // cpu_id and friends on every return to user space).
    for (i, b) in a.area[..len].iter_mut().enumerate() {
        // SAFETY: a registered rseq area is mapped and readable: the kernel
        // writes to it on every preemption, and unregisters it before it
        // may go away.
        *b = unsafe { core::ptr::read_volatile((a.addr as *const u8).add(i)) };
    }
    (0, 0)
}

const PR_CAP_AMBIENT_IS_SET: u64 = 1;
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn creds(a: &mut CredsArgs) -> Ret {
    let mut ids = [0u32; 3];
    let r = sys::getres(sys::NR_GETRESUID, &mut ids);
    if r < 0 {
        return failed(r, sys::NR_GETRESUID);
    }
    a.uids[..3].copy_from_slice(&ids);
    // setfsuid(-1) changes nothing and answers the current fsuid.
    a.uids[3] = sys::value(sys::NR_SETFSUID, u32::MAX as u64, 0, 0) as u32;
    let r = sys::getres(sys::NR_GETRESGID, &mut ids);
    if r < 0 {
        return failed(r, sys::NR_GETRESGID);
    }
    a.gids[..3].copy_from_slice(&ids);
    a.gids[3] = sys::value(sys::NR_SETFSGID, u32::MAX as u64, 0, 0) as u32;

    // Two `struct __user_cap_data_struct` {effective, permitted,
    // inheritable}, low word first.
    let mut data = [0u32; 6];
    let r = sys::capget(CAPABILITY_VERSION_3, &mut data);
    if r < 0 {
        return failed(r, sys::NR_CAPGET);
    }
    a.cap_eff = [data[0], data[3]];
    a.cap_prm = [data[1], data[4]];
    a.cap_inh = [data[2], data[5]];

    a.cap_bnd = 0;
    a.cap_amb = 0;
    a.cap_last = 0;
    for cap in 0..64u64 {
        let r = sys::value(sys::NR_PRCTL, sys::PR_CAPBSET_READ, cap, 0);
        if r < 0 {
            break;
        }
        a.cap_last = cap as u32;
        if r == 1 {
            a.cap_bnd |= 1 << cap;
        }
        if sys::value(
            sys::NR_PRCTL,
            sys::PR_CAP_AMBIENT,
            PR_CAP_AMBIENT_IS_SET,
            cap,
        ) == 1
        {
            a.cap_amb |= 1 << cap;
        }
    }
    let r = sys::value(sys::NR_PRCTL, sys::PR_GET_SECUREBITS, 0, 0);
    if r < 0 {
        return failed(r, sys::NR_PRCTL);
    }
    a.securebits = r as u32;
    a.no_new_privs = sys::value(sys::NR_PRCTL, sys::PR_GET_NO_NEW_PRIVS, 0, 0) as u32;
    a.dumpable = sys::value(sys::NR_PRCTL, sys::PR_GET_DUMPABLE, 0, 0) as u32;
    a.thp_disabled = sys::value(sys::NR_PRCTL, sys::PR_GET_THP_DISABLE, 0, 0) as u32;
    let mut v: i32 = 0;
    let r = sys::prctl_get_int(sys::PR_GET_PDEATHSIG, &mut v);
    if r < 0 {
        return failed(r, sys::NR_PRCTL);
    }
    a.pdeath_sig = v as u32;
    let r = sys::prctl_get_int(sys::PR_GET_CHILD_SUBREAPER, &mut v);
    if r < 0 {
        return failed(r, sys::NR_PRCTL);
    }
    a.child_subreaper = v as u32;
    a.personality = sys::value(sys::NR_PERSONALITY, 0xffff_ffff, 0, 0) as u32;
    // umask can only be read by setting it: set 0, then put it back.
    let old = sys::value(sys::NR_UMASK, 0, 0, 0);
    sys::value(sys::NR_UMASK, old as u64, 0, 0);
    a.umask = old as u32;
    let r = sys::getgroups(&mut a.groups);
    if r < 0 {
        return failed(r, sys::NR_GETGROUPS);
    }
    a.ngroups = r as u32;
    (0, 0)
}

fn thread(a: &mut ThreadInfoArgs) -> Ret {
    a.tid = sys::value(sys::NR_GETTID, 0, 0, 0) as i32;
    // SAFETY: the kernel writes one pointer to `a.tid_addr`.
    let r = unsafe {
        call(
            sys::NR_PRCTL,
            sys::PR_GET_TID_ADDRESS,
            addr_mut(&mut a.tid_addr),
            0,
            0,
        )
    };
    if r < 0 {
        return failed(r, sys::NR_PRCTL);
    }
    let r = sys::value(sys::NR_PRCTL, sys::PR_GET_TIMERSLACK, 0, 0);
    if r < 0 {
        return failed(r, sys::NR_PRCTL);
    }
    a.timer_slack = r as u64;
    // SAFETY: the kernel writes one stack_t to `a.sas`.
    let r = unsafe { sys::sigaltstack(0, addr_mut(&mut a.sas)) };
    if r < 0 {
        return failed(r, sys::NR_SIGALTSTACK);
    }
    // SAFETY: the kernel writes 16 bytes (the name, NUL-terminated).
    let r = unsafe { call(sys::NR_PRCTL, sys::PR_GET_NAME, addr_mut(&mut a.comm), 0, 0) };
    if r < 0 {
        return failed(r, sys::NR_PRCTL);
    }
    let mut v: i32 = 0;
    let r = sys::prctl_get_int(sys::PR_GET_TSC, &mut v);
    a.tsc = if r < 0 { r as i32 } else { v };
    a.mce_kill = sys::value(sys::NR_PRCTL, sys::PR_MCE_KILL_GET, 0, 0) as i32;
    for (which, s) in a.spec.iter_mut().enumerate() {
        *s = sys::value(sys::NR_PRCTL, sys::PR_GET_SPECULATION_CTRL, which as u64, 0) as i32;
    }
    a.mdwe = sys::value(sys::NR_PRCTL, sys::PR_GET_MDWE, 0, 0) as i32;
    a.memory_merge = sys::value(sys::NR_PRCTL, sys::PR_GET_MEMORY_MERGE, 0, 0) as i32;
    a.mempolicy = mempolicy(0, 0);
    creds(&mut a.creds)
}

/// `get_mempolicy`'s mode for the thread (`flags` 0) or for the area at
/// `addr` (`MPOL_F_ADDR`); a negative errno when it fails.
fn mempolicy(addr: u64, flags: u64) -> i32 {
    let mut mode: i32 = 0;
    // SAFETY: the kernel writes one int to `mode`; no node mask is asked.
    let r = unsafe {
        rcriu_blob_rt::syscall::syscall6(
            rcriu_blob_rt::nr::NR_GET_MEMPOLICY,
            addr_mut(&mut mode),
            0,
            0,
            addr,
            flags,
            0,
        )
    };
    if r < 0 { r as i32 } else { mode }
}

fn mem_policies(a: &mut MemPoliciesArgs) -> Ret {
    let nr = (a.nr as usize).min(MAX_MEMPOLICIES);
    for i in 0..nr {
        a.modes[i] = mempolicy(a.addrs[i], sys::MPOL_F_ADDR);
    }
    (nr as i64, 0)
}

/// The fds go back with the answer (the daemon attaches them); here they
/// are checked and their close-on-exec flags read.
fn send_fds(a: &mut FdsArgs) -> Ret {
    fd_flags(a)
}

/// The close-on-exec flag of each listed fd, into `a.cloexec`.
fn fd_flags(a: &mut FdsArgs) -> Ret {
    if a.nr as usize > MAX_FDS {
        return failed(-sys::EINVAL, 0);
    }
    a.cloexec = 0;
    for (i, &fd) in a.fds[..a.nr as usize].iter().enumerate() {
        let r = sys::value(sys::NR_FCNTL, fd as u64, sys::F_GETFD, 0);
        if r < 0 {
            return failed(r, i as i64);
        }
        if r as u64 & sys::FD_CLOEXEC != 0 {
            a.cloexec |= 1 << i;
        }
    }
    (a.nr as i64, 0)
}

fn close_fds(a: &FdsArgs) -> Ret {
    for &fd in &a.fds[..(a.nr as usize).min(MAX_FDS)] {
        sys::close(fd);
        crate::forget(fd);
    }
    (0, 0)
}

fn mprotect(a: &MprotectArgs) -> Ret {
    for (i, m) in a.ranges[..(a.nr as usize).min(MAX_MPROTECT)]
        .iter()
        .enumerate()
    {
        // SAFETY: rcriu asks only for ranges of the victim's own mappings,
        // never the shared area the parasite runs from.
        let r = unsafe { call(sys::NR_MPROTECT, m.addr, m.len, m.prot as u64, 0) };
        if r < 0 {
            return failed(r, i as i64);
        }
    }
    (0, 0)
}
