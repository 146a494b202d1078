//! The few system calls the dump makes about the target that neither std
//! nor rustix offers.
//!
//! # Safety
//! This is the one module of the crate with `unsafe`. Each wrapper is safe
//! to call: it passes the kernel integers, fds the caller holds, or
//! pointers to locals sized for what the kernel writes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rcriu_proc::Pid;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

const KCMP_FILE: libc::c_long = 0;
const F_GETSIG: libc::c_int = 11;
const F_GETOWN_EX: libc::c_int = 16;

/// `struct f_owner_ex`.
#[repr(C)]
struct OwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

const _: () = assert!(std::mem::size_of::<OwnerEx>() == 8);

/// Whether fd `a` of process `pa` and fd `b` of process `pb` are the
/// same open file description (`kcmp(KCMP_FILE)`).
pub fn same_file(pa: Pid, a: i32, pb: Pid, b: i32) -> io::Result<bool> {
    // SAFETY: kcmp takes only integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pa),
            libc::c_long::from(pb),
            KCMP_FILE,
            libc::c_long::from(a),
            libc::c_long::from(b),
        )
    };
    check(r).map(|r| r == 0)
}

/// What two processes may share, as `kcmp` compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    Vm = 1,
    Files = 2,
    Fs = 3,
    Sighand = 4,
}

/// How the kernel orders what processes `a` and `b` hold of `what`
/// (`kcmp`); `None` when it cannot (different, unordered).
pub fn order(a: Pid, b: Pid, what: Shared) -> io::Result<Option<std::cmp::Ordering>> {
    // SAFETY: kcmp takes only integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(a),
            libc::c_long::from(b),
            what as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    Ok(match check(r)? {
        0 => Some(std::cmp::Ordering::Equal),
        1 => Some(std::cmp::Ordering::Less),
        2 => Some(std::cmp::Ordering::Greater),
        _ => None,
    })
}

/// Whether processes `a` and `b` share `what` (`kcmp`).
pub fn shares(a: Pid, b: Pid, what: Shared) -> io::Result<bool> {
    // SAFETY: kcmp takes only integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(a),
            libc::c_long::from(b),
            what as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    check(r).map(|r| r == 0)
}

/// The head and length of a task's robust futex list.
pub fn robust_list(tid: Pid) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: the kernel writes one pointer to `head` and one size_t to
    // `len`, both locals.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            libc::c_long::from(tid),
            std::ptr::from_mut(&mut head),
            std::ptr::from_mut(&mut len),
        )
    };
    check(r)?;
    Ok((head, len as u64))
}

/// The scheduling policy of a task (with `SCHED_RESET_ON_FORK` if set).
pub fn sched_policy(tid: Pid) -> io::Result<u32> {
    // SAFETY: takes an integer.
    let r = unsafe { libc::syscall(libc::SYS_sched_getscheduler, libc::c_long::from(tid)) };
    check(r).map(|r| r as u32)
}

/// The static priority of a task under a real-time policy.
pub fn sched_priority(tid: Pid) -> io::Result<u32> {
    let mut p = libc::sched_param { sched_priority: 0 };
    // SAFETY: the kernel writes one `struct sched_param` to `p`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getparam,
            libc::c_long::from(tid),
            std::ptr::from_mut(&mut p),
        )
    };
    check(r)?;
    Ok(p.sched_priority as u32)
}

/// A task's nice value.
pub fn nice(tid: Pid) -> io::Result<i32> {
    // The raw syscall answers 20 - nice, never negative.
    // SAFETY: takes integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getpriority,
            libc::c_long::from(libc::PRIO_PROCESS),
            libc::c_long::from(tid),
        )
    };
    check(r).map(|r| 20 - r as i32)
}

/// The signal an open file sends on I/O readiness (`F_GETSIG`; 0 for
/// SIGIO).
pub fn owner_signal(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: F_GETSIG takes no argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    check(r.into()).map(|r| r as u32)
}

/// The owner an open file signals (`F_GETOWN_EX`): its type and pid (0
/// for none).
pub fn owner(fd: BorrowedFd<'_>) -> io::Result<(i32, Pid)> {
    let mut o = OwnerEx { kind: 0, pid: 0 };
    // SAFETY: the kernel writes one `struct f_owner_ex` to `o`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, std::ptr::from_mut(&mut o)) };
    check(r.into())?;
    Ok((o.kind, o.pid))
}

extern "C" fn on_abort_signal(_: libc::c_int) {
    rcriu_compel::fault::request_abort();
}

/// Makes SIGINT, SIGTERM and SIGHUP ask the dump in progress to stop and
/// undo what it did (the handler only sets compel's abort flag).
pub fn abort_on_signals() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is valid; the handler only stores
        // an atomic flag, which is async-signal-safe; the kernel reads
        // `sa` and writes nothing back (no old action asked for).
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_abort_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        check(r.into())?;
    }
    Ok(())
}

/// Gives SIGINT, SIGTERM and SIGHUP back their default action (they end
/// the process): once a dump is complete and only serves its lazy pages,
/// there is nothing left to abort cleanly.
pub fn default_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: setting a signal's disposition to SIG_DFL touches no
        // memory of ours.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// `NS_GET_USERNS`: `_IO(0xb7, 0x1)`.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// `NS_GET_PARENT`: `_IO(0xb7, 0x2)`.
const NS_GET_PARENT: libc::c_ulong = 0xb702;

fn ns_ioctl(ns: BorrowedFd<'_>, op: libc::c_ulong) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the two ns ioctls take no argument and return a new fd (or
    // -1), which we own from here on.
    let r = unsafe { libc::ioctl(ns.as_raw_fd(), op as _) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a new fd nobody else holds.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r) })
}

/// The user namespace that owns namespace `ns` (`NS_GET_USERNS`).
pub fn ns_owner(ns: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    ns_ioctl(ns, NS_GET_USERNS)
}

/// The parent of user (or pid) namespace `ns` (`NS_GET_PARENT`).
pub fn ns_parent(ns: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    ns_ioctl(ns, NS_GET_PARENT)
}

/// The inode of the parent of the pid namespace open at `ns`.
pub fn ns_parent_ino(ns: BorrowedFd<'_>) -> io::Result<u64> {
    let parent = ns_parent(ns)?;
    let st = rustix::fs::fstat(&parent)?;
    Ok(st.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_values() {
        let me = std::process::id() as Pid;
        assert!(sched_policy(me).is_ok());
        assert_eq!(
            nice(me).unwrap(),
            rustix::process::getpriority_process(None).unwrap()
        );
        let (head, len) = robust_list(me).unwrap();
        // glibc registers a robust list for every thread.
        assert_ne!(head, 0);
        assert_eq!(len, 24);
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        assert_eq!(owner_signal(f.as_fd()).unwrap(), 0);
        assert_eq!(owner(f.as_fd()).unwrap().1, 0);
    }
}
