//! The calls the restore of files on anonymous inodes makes that neither
//! std nor rustix offers: eventfds, signalfds, epoll instances and their
//! registrations, a timerfd's expirations (`TFD_IOC_SET_TICKS`).
//!
//! # Safety
//! A module of the crate with `unsafe` (with `sys` and `files_sys`).
//! Every wrapper is safe to call: it passes the kernel integers, fds the
//! caller holds and pointers to locals sized for what the kernel reads.
//! [`epoll_add_at`] forks a helper that only makes raw system calls (what
//! a fork of a process with threads may do).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Takes ownership of a descriptor the kernel just returned.
fn owned(r: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(r)?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new eventfd counting from 0, close-on-exec and non-blocking.
pub fn eventfd(semaphore: bool) -> io::Result<OwnedFd> {
    let flags =
        libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | if semaphore { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: eventfd takes integers only.
    owned(unsafe { libc::eventfd(0, flags) })
}

/// A new signalfd taking the signals of `mask` (bit `n - 1` for signal
/// `n`), close-on-exec.
pub fn signalfd(mask: u64) -> io::Result<OwnedFd> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: initialised by sigemptyset above.
    let mut set = unsafe { set.assume_init() };
    for sig in 1..=64 {
        if mask & (1 << (sig - 1)) != 0 {
            // SAFETY: `set` is a valid sigset; a signal number the C
            // library keeps for itself fails with EINVAL, nothing else.
            let _ = unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    // SAFETY: the kernel reads one sigset from `set`, a local.
    owned(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })
}

/// A new epoll instance, close-on-exec.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes an integer.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

/// Sets the expirations a timerfd holds unread (`TFD_IOC_SET_TICKS`).
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> io::Result<()> {
    // SAFETY: the kernel reads one u64 from `ticks`, a local.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TFD_IOC_SET_TICKS,
            std::ptr::from_ref(&ticks),
        )
    })
    .map(drop)
}

/// One registration for [`epoll_add_at`]: the file open as `src` added to
/// the epoll instance open as `epfd`, under fd number `key`.
#[derive(Debug, Clone, Copy)]
pub struct EpollAdd {
    pub epfd: i32,
    pub src: i32,
    pub key: i32,
    pub events: u32,
    pub data: u64,
}

/// What [`epoll_add_at`]'s helper sends back when a registration fails.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Failure {
    index: u32,
    errno: i32,
}

const _: () = assert!(std::mem::size_of::<Failure>() == 8);

/// Makes each registration of `adds`, in order, under its own fd number:
/// a helper process (a fork, with its own copy of the fd table) puts each
/// file at its number (dup2) and registers it there. Registrations live
/// as long as their files, which the caller holds; the helper's numbers
/// go with it. Every `epfd` and `src` must lie above every `key`, so that
/// no dup2 closes one still needed (the caller moves them there).
/// `Ok(Err((index, error)))` names the registration that failed.
pub fn epoll_add_at(adds: &[EpollAdd]) -> io::Result<Result<(), (usize, io::Error)>> {
    let top = adds.iter().map(|a| a.key).max().unwrap_or(0);
    if adds.iter().any(|a| a.epfd <= top || a.src <= top) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut p = [0; 2];
    // SAFETY: the kernel writes two ints to `p`.
    check(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: two fresh descriptors nobody else owns.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    // The write end above every key too.
    // SAFETY: a plain fcntl with integer arguments.
    let wr = owned(unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top + 1) })?;
    // SAFETY: the child makes raw system calls only (dup2, epoll_ctl,
    // write, _exit) on memory it has a copy of; the parent carries on.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let report = wr.as_raw_fd();
        for (i, a) in adds.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: a.events,
                u64: a.data,
            };
            // SAFETY: integers, and one epoll_event the kernel reads from
            // a local.
            let ok = unsafe {
                libc::dup2(a.src, a.key) == a.key
                    && libc::epoll_ctl(a.epfd, libc::EPOLL_CTL_ADD, a.key, &mut ev) == 0
            };
            if !ok {
                let f = Failure {
                    index: i as u32,
                    // SAFETY: errno's location is the thread's own.
                    errno: unsafe { *libc::__errno_location() },
                };
                // SAFETY: the kernel reads 8 bytes from `f`, a local; then
                // the helper ends.
                unsafe {
                    libc::write(report, std::ptr::from_ref(&f).cast(), 8);
                    libc::_exit(1)
                }
            }
        }
        // SAFETY: ends the helper.
        unsafe { libc::_exit(0) }
    }
    check(child)?;
    drop(wr);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; writes one int to `status`.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        if r == child {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(Ok(()));
    }
    let mut f = Failure::default();
    // SAFETY: the kernel writes at most 8 bytes to `f`, a local.
    let n = unsafe { libc::read(rd.as_raw_fd(), std::ptr::from_mut(&mut f).cast(), 8) };
    if n != 8 {
        return Err(io::Error::other(format!(
            "the epoll registration helper ended with status {status:#x}"
        )));
    }
    Ok(Err((
        f.index as usize,
        io::Error::from_raw_os_error(f.errno),
    )))
}

const INOTIFY_IOC_SETNEXTWD: libc::c_ulong = 0x4004_4900;

/// Makes `wd` the watch descriptor the next watch added to the inotify
/// instance `fd` gets (`INOTIFY_IOC_SETNEXTWD`).
pub fn inotify_set_next_wd(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: the ioctl takes an integer argument.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            INOTIFY_IOC_SETNEXTWD,
            libc::c_long::from(wd),
        )
    })
    .map(drop)
}

/// A new inotify instance with `flags` (IN_NONBLOCK, IN_CLOEXEC).
pub fn inotify_init(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 takes an integer.
    owned(unsafe { libc::inotify_init1(flags) })
}

/// Adds a watch on the file open as `target` (through its /proc link,
/// which the kernel follows to the file itself) with `mask`; the watch
/// descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, target: BorrowedFd<'_>, mask: u32) -> io::Result<i32> {
    let link = std::ffi::CString::new(format!("/proc/self/fd/{}", target.as_raw_fd()))
        .expect("a /proc link has no NUL");
    // SAFETY: the kernel reads the NUL-terminated path `link`.
    check(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), link.as_ptr(), mask) })
}

/// The longest file handle the kernel makes (`MAX_HANDLE_SZ`).
pub const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the longest handle.
#[repr(C)]
struct FileHandle {
    bytes: u32,
    handle_type: i32,
    handle: [u8; MAX_HANDLE_SZ],
}

const _: () = assert!(std::mem::offset_of!(FileHandle, handle) == 8);

/// Opens (`O_PATH`) the file of handle `handle` of type `handle_type` on
/// the filesystem of the mount open as `mount` (`open_by_handle_at`).
pub fn open_by_handle(
    mount: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
) -> io::Result<OwnedFd> {
    if handle.len() > MAX_HANDLE_SZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut h = FileHandle {
        bytes: handle.len() as u32,
        handle_type,
        handle: [0; MAX_HANDLE_SZ],
    };
    h.handle[..handle.len()].copy_from_slice(handle);
    // SAFETY: the kernel reads one file_handle of `bytes` bytes from `h`,
    // a local with room for the longest.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            libc::c_long::from(mount.as_raw_fd()),
            std::ptr::from_mut(&mut h),
            libc::c_long::from(libc::O_PATH | libc::O_CLOEXEC),
        ) as libc::c_int
    })
}

/// The handle of the file at `path` (`name_to_handle_at`): its type
/// and bytes.
#[cfg(test)]
pub fn name_to_handle(path: &std::path::Path) -> io::Result<(i32, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut h = FileHandle {
        bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        handle: [0; MAX_HANDLE_SZ],
    };
    let mut mnt: libc::c_int = 0;
    // SAFETY: the kernel reads the NUL-terminated `c` and writes at most
    // MAX_HANDLE_SZ bytes of handle into `h` and one int into `mnt`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::c_long::from(libc::AT_FDCWD),
            c.as_ptr(),
            std::ptr::from_mut(&mut h),
            std::ptr::from_mut(&mut mnt),
            0 as libc::c_long,
        )
    };
    check(r as libc::c_int)?;
    let n = (h.bytes as usize).min(MAX_HANDLE_SZ);
    Ok((h.handle_type, h.handle[..n].to_vec()))
}

/// Takes an OFD lock (`F_OFD_SETLK`, never waiting) of `ltype`
/// (F_RDLCK, F_WRLCK) over `len` bytes from `start` (0: to the end).
pub fn ofd_lock(fd: BorrowedFd<'_>, ltype: i16, start: i64, len: i64) -> io::Result<()> {
    // SAFETY: all-zero is a valid struct flock.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = ltype;
    l.l_whence = libc::SEEK_SET as i16;
    l.l_start = start;
    l.l_len = len;
    // SAFETY: the kernel reads one struct flock from `l`, a local.
    check(unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_OFD_SETLK,
            std::ptr::from_mut(&mut l),
        )
    })
    .map(drop)
}

/// A new fanotify instance (`fanotify_init`).
pub fn fanotify_init(flags: u32, event_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: fanotify_init takes integers.
    owned(unsafe { libc::fanotify_init(flags, event_flags) })
}

/// Adds `mask` to the mark of the fanotify instance `fd` on the file (or
/// the mount, with FAN_MARK_MOUNT in `flags`) open as `target`
/// (`fanotify_mark` through its /proc link).
pub fn fanotify_mark(
    fd: BorrowedFd<'_>,
    flags: u32,
    mask: u64,
    target: BorrowedFd<'_>,
) -> io::Result<()> {
    let link = std::ffi::CString::new(format!("/proc/self/fd/{}", target.as_raw_fd()))
        .expect("a /proc link has no NUL");
    // SAFETY: the kernel reads the NUL-terminated path `link`.
    check(unsafe {
        libc::fanotify_mark(fd.as_raw_fd(), flags, mask, libc::AT_FDCWD, link.as_ptr())
    })
    .map(drop)
}

/// A child that waits to be killed (pause, forever), for
/// [`kill_and_reap`]: its pid.
pub fn fork_waiting() -> io::Result<libc::pid_t> {
    // SAFETY: the child only calls pause (async-signal-safe) until killed.
    let child = unsafe { libc::fork() };
    if child == 0 {
        loop {
            // SAFETY: waits for a signal; SIGKILL ends it.
            unsafe { libc::pause() };
        }
    }
    check(child)
}

/// Kills child `pid` and reaps it (or lets it be reaped by the kernel,
/// when SIGCHLD is ignored).
pub fn kill_and_reap(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: a signal to our own child.
    check(unsafe { libc::kill(pid, libc::SIGKILL) })?;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child; writes one int to `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Reaped by the kernel (SIGCHLD ignored): ended all the same.
            Some(libc::ECHILD) => return Ok(()),
            _ => return Err(e),
        }
    }
}

/// A pidfd of process `pid` with `flags` (PIDFD_NONBLOCK), close-on-exec.
pub fn pidfd_open(pid: libc::pid_t, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_open,
            libc::c_long::from(pid),
            libc::c_long::from(flags),
        )
    };
    owned(r as libc::c_int)
}
