//! The calls the restore of open files makes that neither std nor rustix
//! offers: file owners and signals, file status flags, pty and terminal
//! ioctls.
//!
//! # Safety
//! One of the two modules of the crate with `unsafe` (with `sys`). Every
//! wrapper is safe to call: it passes fds the caller holds and pointers
//! to locals sized for what the kernel reads or writes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;

/// `struct f_owner_ex`.
#[repr(C)]
struct OwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

const _: () = assert!(std::mem::size_of::<OwnerEx>() == 8);

/// Sets the signal an open file sends its owner (`F_SETSIG`).
pub fn set_owner_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a plain fcntl with an integer argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, sig) }).map(drop)
}

/// Sets an open file's owner (`F_SETOWN_EX`): `kind` is F_OWNER_TID,
/// F_OWNER_PID or F_OWNER_PGRP.
pub fn set_owner(fd: BorrowedFd<'_>, kind: i32, pid: i32) -> io::Result<()> {
    let own = OwnerEx { kind, pid };
    // SAFETY: the kernel reads one f_owner_ex from `own`.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, std::ptr::from_ref(&own)) }).map(drop)
}

/// Sets an open file's status flags (`F_SETFL`: O_APPEND, O_NONBLOCK,
/// O_ASYNC, O_DIRECT, O_NOATIME).
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: a plain fcntl with an integer argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(drop)
}

/// An ioctl passing a pointer to an int.
fn ioctl_int(fd: BorrowedFd<'_>, request: libc::c_ulong, v: &mut libc::c_int) -> io::Result<()> {
    // SAFETY: the kernel reads or writes one int at `v`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(v)) }).map(drop)
}

const TIOCGPTN: libc::c_ulong = 0x8004_5430;
const TIOCSPTLCK: libc::c_ulong = 0x4004_5431;

/// The index of the pty whose master is `fd` (`TIOCGPTN`).
pub fn pty_index(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v = 0;
    ioctl_int(fd, TIOCGPTN, &mut v)?;
    Ok(v as u32)
}

/// Locks or unlocks a pty's slave (`TIOCSPTLCK`).
pub fn set_pty_lock(fd: BorrowedFd<'_>, locked: bool) -> io::Result<()> {
    let mut v = libc::c_int::from(locked);
    ioctl_int(fd, TIOCSPTLCK, &mut v)
}

/// Exclusive mode of a terminal (`TIOCEXCL`): only root may open it
/// again.
pub fn set_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCEXCL takes no argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCEXCL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Packet mode of a pty master (`TIOCPKT`).
pub fn set_packet_mode(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let mut v = libc::c_int::from(on);
    ioctl_int(fd, libc::TIOCPKT, &mut v)
}

/// An all-zero termios.
pub fn zeroed_termios() -> libc::termios {
    // SAFETY: termios is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Sets a terminal's modes (`TCSETS`) or locked modes (`TIOCSLCKTRMIOS`).
pub fn set_termios(fd: BorrowedFd<'_>, t: &libc::termios, locked: bool) -> io::Result<()> {
    let request = if locked {
        libc::TIOCSLCKTRMIOS
    } else {
        libc::TCSETS
    };
    // SAFETY: the kernel reads its `struct termios` (the head of libc's)
    // from `t`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_ref(t)) }).map(drop)
}

/// Sets a terminal's window size (`TIOCSWINSZ`).
pub fn set_winsize(fd: BorrowedFd<'_>, w: &libc::winsize) -> io::Result<()> {
    // SAFETY: the kernel reads one winsize from `w`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, std::ptr::from_ref(w)) }).map(drop)
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only asks the kernel about the fd.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}
