//! The system calls of memory tracking that neither std nor rustix
//! offers: userfaultfd's ioctls, and the fork of the holder that keeps a
//! target's userfaultfd open between two pre-dumps.
//!
//! # Safety
//! Each wrapper is safe to call: the ioctls get fds the caller holds and
//! pointers to locals laid out as the kernel's structs (asserted below);
//! [`fork_holder`] runs in the forked child only code that neither
//! allocates nor takes a lock (it may fork from a process with threads).

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `struct uffdio_api`.
#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
#[derive(Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

const _: () = {
    assert!(size_of::<UffdioApi>() == 24);
    assert!(offset_of!(UffdioApi, features) == 8);
    assert!(size_of::<UffdioRange>() == 16);
    assert!(size_of::<UffdioRegister>() == 32);
    assert!(offset_of!(UffdioRegister, mode) == 16);
};

const UFFD_API: u64 = 0xaa;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;

/// `_IOC(dir, 0xaa, nr, size)`.
const fn uffd_ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xaa << 8) | nr
}
const UFFDIO_API: u64 = uffd_ioc(3, 0x3f, size_of::<UffdioApi>());
const UFFDIO_REGISTER: u64 = uffd_ioc(3, 0x00, size_of::<UffdioRegister>());
const UFFDIO_UNREGISTER: u64 = uffd_ioc(2, 0x01, size_of::<UffdioRange>());
const _: () = {
    assert!(UFFDIO_API == 0xc018_aa3f);
    assert!(UFFDIO_REGISTER == 0xc020_aa00);
    assert!(UFFDIO_UNREGISTER == 0x8010_aa01);
};

/// The flags of the `userfaultfd` syscall run in the target:
/// `O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY` (user-mode only is what
/// an unprivileged process may create; asynchronous write-protection
/// never waits on faults, from user or kernel mode).
pub const USERFAULTFD_FLAGS: u64 = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64 | 1;

fn ioctl<T>(fd: BorrowedFd<'_>, req: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed struct laid out as the
    // kernel's for `req` (asserted above); the kernel reads and writes
    // only within it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::Ioctl, std::ptr::from_mut(arg)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A userfaultfd of rcriu's own (to probe the kernel with).
pub fn userfaultfd_here() -> io::Result<OwnedFd> {
    // SAFETY: userfaultfd(2) takes flags only and returns a new fd.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, USERFAULTFD_FLAGS) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, owned by no one else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r as i32) })
}

/// `UFFDIO_API` asking for asynchronous write-protection (which brings
/// write-protection of unpopulated pages with it).
pub fn uffd_api(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut a = UffdioApi {
        api: UFFD_API,
        features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
        ioctls: 0,
    };
    ioctl(fd, UFFDIO_API, &mut a)
}

/// Registers `[start, start + len)` of the userfaultfd's process for
/// write-protection (again, when it already is with this userfaultfd:
/// EBUSY when it is with another).
pub fn register_wp(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let mut r = UffdioRegister {
        range: UffdioRange { start, len },
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    ioctl(fd, UFFDIO_REGISTER, &mut r)
}

/// Unregisters `[start, start + len)`: the area's pages lose their
/// write-protection and the area its registration.
pub fn unregister(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let mut r = UffdioRange { start, len };
    ioctl(fd, UFFDIO_UNREGISTER, &mut r)
}

/// What the holder does with the fds it keeps, once forked: it owns
/// `keep` (renumbered 3, 4, 5 in that order) and nothing else.
pub type HolderLoop = fn(BorrowedFd<'_>, BorrowedFd<'_>, BorrowedFd<'_>) -> !;

/// Starts a holder: a grandchild in a session of its own, reparented
/// away from us, that keeps the three fds of `keep` (and no other: its
/// standard fds go to /dev/null) and runs `body` on them. `body` must
/// neither allocate nor lock. Returns once the intermediate child is
/// reaped.
pub fn fork_holder(keep: [OwnedFd; 3], body: HolderLoop) -> io::Result<()> {
    // SAFETY: the child runs only async-signal-safe calls (fork, setsid,
    // fcntl, dup2, open of a static path, close_range, signal, sigprocmask,
    // _exit) and then `body`, which the caller promises allocates nothing.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: as above; every pointer is to a local or a static.
        unsafe {
            libc::setsid();
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            let mut high = [0; 3];
            for (i, fd) in keep.iter().enumerate() {
                high[i] = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100);
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for std in 0..3 {
                libc::dup2(null, std);
            }
            for (i, fd) in high.iter().enumerate() {
                libc::dup3(*fd, 3 + i as i32, libc::O_CLOEXEC);
            }
            libc::close_range(6, u32::MAX, 0);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            body(
                BorrowedFd::borrow_raw(3),
                BorrowedFd::borrow_raw(4),
                BorrowedFd::borrow_raw(5),
            )
        }
    }
    drop(keep);
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a local.
    while unsafe { libc::waitpid(child, &mut status, 0) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Ends the holder.
pub fn exit_holder() -> ! {
    // SAFETY: ends this (forked) process without running anything of the
    // parent's.
    unsafe { libc::_exit(0) }
}
