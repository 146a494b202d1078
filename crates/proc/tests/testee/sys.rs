//! The testee's system calls, each a thin wrapper returning `io::Result`.
//!
//! # Safety
//! The wrappers take plain values and build every pointer they pass from
//! locals they own for the duration of the call. The memory ones act on
//! mappings this program made for the purpose and never hands out
//! references into them; callers pass addresses of those mappings only.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

pub const PAGE: usize = 4096;
pub const MADV_GUARD_INSTALL: i32 = 102;
pub const MAP_DROPPABLE: i32 = 0x08;
const PR_SET_VMA: i32 = 0x5356_4d41;
const PR_SET_VMA_ANON_NAME: libc::c_ulong = 0;

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_fd(r: libc::c_int) -> io::Result<RawFd> {
    cvt(r.into()).map(|r| r as RawFd)
}

pub fn mmap(len: usize, prot: i32, flags: i32, fd: RawFd, off: i64) -> io::Result<usize> {
    // SAFETY: a new mapping at an address the kernel picks (no MAP_FIXED),
    // so no existing memory changes.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as usize)
}

pub fn munmap(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: callers unmap only parts of mappings they made with `mmap`
    // here and hold no references into.
    cvt(unsafe { libc::munmap(addr as *mut libc::c_void, len) }.into()).map(drop)
}

pub fn madvise(addr: usize, len: usize, advice: i32) -> io::Result<()> {
    // SAFETY: as for `munmap`: the range is one of this program's test
    // mappings; advice such as MADV_DONTNEED only drops its contents.
    cvt(unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) }.into()).map(drop)
}

pub fn mprotect(addr: usize, len: usize, prot: i32) -> io::Result<()> {
    // SAFETY: as for `munmap`; no reference into the range exists.
    cvt(unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) }.into()).map(drop)
}

pub fn mlock(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: locking changes no memory contents.
    cvt(unsafe { libc::mlock(addr as *const libc::c_void, len) }.into()).map(drop)
}

pub fn mseal(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: sealing forbids later changes of the mapping; no memory
    // changes.
    cvt(unsafe { libc::syscall(libc::SYS_mseal, addr, len, 0) }).map(drop)
}

pub fn set_anon_name(addr: usize, len: usize, name: &str) -> io::Result<()> {
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `name` outlives the call; the kernel copies it.
    let r = unsafe { libc::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name.as_ptr()) };
    cvt(r.into()).map(drop)
}

pub fn write_byte(addr: usize, v: u8) {
    // SAFETY: callers pass an address inside a writable mapping of theirs,
    // which nothing else references.
    unsafe { std::ptr::write_volatile(addr as *mut u8, v) }
}

pub fn read_byte(addr: usize) -> u8 {
    // SAFETY: callers pass an address inside a readable mapping of theirs.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

fn sigset(sigs: &[i32]) -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialised by sigemptyset just above.
    let mut set = unsafe { set.assume_init() };
    for &s in sigs {
        // SAFETY: `set` is an initialised sigset_t.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Adds `sigs` to the calling thread's blocked set.
pub fn block(sigs: &[i32]) -> io::Result<()> {
    let set = sigset(sigs);
    // SAFETY: `set` is a valid sigset_t; no old set is asked for.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Blocks every signal in the calling thread.
pub fn block_all() -> io::Result<()> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set.
    unsafe { libc::sigfillset(set.as_mut_ptr()) };
    // SAFETY: initialised above.
    let set = unsafe { set.assume_init() };
    // SAFETY: as in `block`.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

extern "C" fn on_signal(_: libc::c_int) {}

fn set_handler(sig: i32, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: all-zero is a valid sigaction (no flags, empty mask).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    // SAFETY: `sa` is a valid sigaction; the handler, when one, is an
    // extern "C" function that does nothing, safe to run at any point.
    cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) }.into()).map(drop)
}

pub fn ignore(sig: i32) -> io::Result<()> {
    set_handler(sig, libc::SIG_IGN)
}

pub fn catch(sig: i32) -> io::Result<()> {
    set_handler(
        sig,
        on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
    )
}

pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

pub fn kill_self(sig: i32) -> io::Result<()> {
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: sends a signal that callers have blocked.
    cvt(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

pub fn tgkill_self(sig: i32) -> io::Result<()> {
    let (pid, tid) = (std::process::id() as libc::pid_t, gettid());
    // SAFETY: as for `kill_self`, to the calling thread.
    cvt(unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) }).map(drop)
}

pub fn dup2(fd: RawFd, to: RawFd) -> io::Result<RawFd> {
    // SAFETY: `to` is a number callers reserve for this program's own fds.
    let r = cvt_fd(unsafe { libc::dup2(fd, to) })?;
    if fd != to {
        // SAFETY: `fd` is a temporary fd of the caller's, now duplicated.
        unsafe { libc::close(fd) };
    }
    Ok(r)
}

pub fn eventfd(init: u32, flags: i32) -> io::Result<RawFd> {
    // SAFETY: plain fd-creating call.
    cvt_fd(unsafe { libc::eventfd(init, flags) })
}

pub fn timerfd(
    clock: i32,
    flags: i32,
    value: (i64, i64),
    interval: (i64, i64),
) -> io::Result<RawFd> {
    // SAFETY: plain fd-creating call.
    let fd = cvt_fd(unsafe { libc::timerfd_create(clock, 0) })?;
    let its = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: interval.0,
            tv_nsec: interval.1,
        },
        it_value: libc::timespec {
            tv_sec: value.0,
            tv_nsec: value.1,
        },
    };
    // SAFETY: `its` is a valid itimerspec; no old value is asked for.
    cvt(unsafe { libc::timerfd_settime(fd, flags, &its, std::ptr::null_mut()) }.into())?;
    Ok(fd)
}

pub fn realtime_now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec
}

pub fn signalfd(sigs: &[i32]) -> io::Result<RawFd> {
    let set = sigset(sigs);
    // SAFETY: `set` is a valid sigset_t.
    cvt_fd(unsafe { libc::signalfd(-1, &set, 0) })
}

pub fn epoll_with(targets: &[(RawFd, u32, u64)]) -> io::Result<RawFd> {
    // SAFETY: plain fd-creating call.
    let ep = cvt_fd(unsafe { libc::epoll_create1(0) })?;
    for &(fd, events, data) in targets {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a valid epoll_event for the call.
        cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }.into())?;
    }
    Ok(ep)
}

pub fn inotify_watch(path: &std::path::Path, mask: u32) -> io::Result<(RawFd, i32)> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: plain fd-creating call.
    let fd = cvt_fd(unsafe { libc::inotify_init1(0) })?;
    // SAFETY: `p` is a NUL-terminated path that outlives the call.
    let wd = cvt_fd(unsafe { libc::inotify_add_watch(fd, p.as_ptr(), mask) })?;
    Ok((fd, wd))
}

pub fn fanotify_watch(path: &std::path::Path, mask: u64) -> io::Result<RawFd> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: plain fd-creating call.
    let fd = cvt_fd(unsafe { libc::fanotify_init(libc::FAN_CLASS_NOTIF, libc::O_RDONLY as u32) })?;
    // SAFETY: `p` is a NUL-terminated path that outlives the call.
    let r =
        unsafe { libc::fanotify_mark(fd, libc::FAN_MARK_ADD, mask, libc::AT_FDCWD, p.as_ptr()) };
    cvt(r.into())?;
    Ok(fd)
}

pub fn pidfd_open(pid: i32) -> io::Result<RawFd> {
    // SAFETY: plain fd-creating call.
    cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|r| r as RawFd)
}

pub fn memfd(name: &str) -> io::Result<RawFd> {
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `n` outlives the call.
    cvt_fd(unsafe { libc::memfd_create(n.as_ptr(), 0) })
}

pub fn ftruncate(fd: RawFd, len: i64) -> io::Result<()> {
    // SAFETY: resizes a file of this program's; no memory is involved.
    cvt(unsafe { libc::ftruncate(fd, len) }.into()).map(drop)
}

pub fn socket_unix() -> io::Result<RawFd> {
    // SAFETY: plain fd-creating call.
    cvt_fd(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) })
}

/// Creates a POSIX timer and arms it; returns its id.
pub fn posix_timer(
    clock: i32,
    notify: i32,
    signo: i32,
    sival: usize,
    tid: i32,
    secs: i64,
) -> io::Result<i32> {
    // SAFETY: all-zero is a valid sigevent.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = notify;
    sev.sigev_signo = signo;
    sev.sigev_value = libc::sigval {
        sival_ptr: sival as *mut libc::c_void,
    };
    sev.sigev_notify_thread_id = tid;
    let mut id: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `sev` and `id` are valid for the call. sival is a number the
    // kernel only stores and reports, never dereferences.
    cvt(unsafe { libc::timer_create(clock, &mut sev, &mut id) }.into())?;
    let its = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    // SAFETY: `id` was just created; `its` is valid.
    cvt(unsafe { libc::timer_settime(id, 0, &its, std::ptr::null_mut()) }.into())?;
    Ok(id as usize as i32)
}

pub fn set_comm(name: &str) -> io::Result<()> {
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `n` outlives the call; the kernel copies at most 16 bytes.
    cvt(unsafe { libc::prctl(libc::PR_SET_NAME, n.as_ptr()) }.into()).map(drop)
}

pub fn prctl(op: i32, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: callers pass operations that take a number, not a pointer.
    cvt(unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    }
    .into())
    .map(drop)
}

pub fn umask(m: u32) {
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(m) };
}

pub fn personality(p: u64) -> io::Result<()> {
    // SAFETY: changing the personality affects only later execs and mmaps
    // of this process; callers pick flags harmless to it.
    cvt(unsafe { libc::personality(p) }.into()).map(drop)
}

pub fn setrlimit(res: u32, soft: u64, hard: u64) -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `r` is valid for the call.
    cvt(unsafe { libc::setrlimit(res as _, &r) }.into()).map(drop)
}

/// Installs a seccomp filter that allows every system call.
pub fn seccomp_allow_all() -> io::Result<()> {
    let mut insn = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: insn.as_mut_ptr(),
    };
    // SAFETY: `prog` and the instruction it points to outlive the call;
    // the kernel copies the program.
    let r = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) };
    cvt(r.into()).map(drop)
}
