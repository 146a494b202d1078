//! The calls the dump of files on anonymous inodes (and of the other
//! special files) makes that neither std nor rustix offers: comparing an
//! epoll instance's targets with the fds of a process
//! (`kcmp(KCMP_EPOLL_TFD)`), reading a file's lease (`F_GETLEASE`).
//!
//! # Safety
//! A module of the crate with `unsafe` (with `sys` and `files_sys`). Each
//! wrapper is safe to call: it passes the kernel integers and pointers to
//! locals sized for what the kernel reads.

use std::io;

use rcriu_proc::Pid;

const KCMP_EPOLL_TFD: libc::c_long = 7;

/// `struct kcmp_epoll_slot`: the `toff`-th target registered under fd
/// number `tfd` in the epoll instance open as fd `efd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EpollSlot {
    pub efd: u32,
    pub tfd: u32,
    pub toff: u32,
}

const _: () = {
    assert!(std::mem::size_of::<EpollSlot>() == 12);
    assert!(std::mem::offset_of!(EpollSlot, toff) == 8);
};

/// Whether fd `fd` of process `pid` is the file registered in `slot` of
/// an epoll instance of process `epoll_pid` (the same process, or rcriu
/// holding one in flight). `Ok(false)` also when `fd` is
/// not open.
pub fn is_epoll_target(pid: Pid, epoll_pid: Pid, fd: i32, slot: &EpollSlot) -> io::Result<bool> {
    // SAFETY: the kernel reads one kcmp_epoll_slot from `slot`, a live
    // reference; the other arguments are integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid),
            libc::c_long::from(epoll_pid),
            KCMP_EPOLL_TFD,
            libc::c_long::from(fd),
            std::ptr::from_ref(slot),
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EBADF) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(r == 0)
}

/// The lease an open file holds, or what a lease being broken breaks
/// to (`F_GETLEASE`): F_RDLCK, F_WRLCK or F_UNLCK.
pub fn lease(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain fcntl without argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLEASE) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}
