//! The calls the dump of open files makes that neither std nor rustix
//! offers: file owners' uids, extents (FIEMAP), and terminal ioctls.
//!
//! # Safety
//! One of the two modules of the crate with `unsafe` (with `sys`). Each
//! wrapper is safe to call: it passes the kernel fds the caller holds and
//! pointers to locals sized for what the kernel writes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

const F_GETOWNER_UIDS: libc::c_int = 17;

/// The real and effective uid recorded with an open file's owner
/// (`F_GETOWNER_UIDS`).
pub fn owner_uids(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut v = [0u32; 2];
    // SAFETY: the kernel writes two u32 to `v`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWNER_UIDS, v.as_mut_ptr()) };
    check(r)?;
    Ok((v[0], v[1]))
}

/// `struct fiemap` with room for [`EXTENTS`] extents.
#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; EXTENTS],
}

/// `struct fiemap_extent`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

const _: () = {
    assert!(std::mem::size_of::<FiemapExtent>() == 56);
    assert!(std::mem::offset_of!(Fiemap, extents) == 32);
};

/// Extents asked for per FIEMAP call (as CRIU).
const EXTENTS: usize = 16;
const FS_IOC_FIEMAP: libc::c_ulong = 0xc020_660b;
const FIEMAP_FLAG_SYNC: u32 = 1;
const FIEMAP_EXTENT_LAST: u32 = 1;
const FIEMAP_MAX_OFFSET: u64 = u64::MAX;

/// One extent: logical offset, length, and whether it is the file's last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub last: bool,
}

/// Up to 16 extents of the file open as `fd` from `start` (FIEMAP, with
/// the file synced first). `Ok(None)` when the filesystem has no FIEMAP.
pub fn fiemap(fd: BorrowedFd<'_>, start: u64) -> io::Result<Option<Vec<Extent>>> {
    let mut m = Fiemap {
        start,
        length: FIEMAP_MAX_OFFSET,
        flags: FIEMAP_FLAG_SYNC,
        mapped_extents: 0,
        extent_count: EXTENTS as u32,
        reserved: 0,
        extents: [FiemapExtent::default(); EXTENTS],
    };
    // SAFETY: the kernel reads the header and writes at most
    // `extent_count` extents into `m`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FIEMAP, std::ptr::from_mut(&mut m)) };
    match check(r) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = (m.mapped_extents as usize).min(EXTENTS);
    Ok(Some(
        m.extents[..n]
            .iter()
            .map(|e| Extent {
                offset: e.logical,
                len: e.length,
                last: e.flags & FIEMAP_EXTENT_LAST != 0,
            })
            .collect(),
    ))
}

/// An `int` a terminal ioctl reports.
fn tty_int(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the kernel writes one int to `v`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(&mut v)) };
    check(r)?;
    Ok(v)
}

const TIOCGPTN: libc::c_ulong = 0x8004_5430;
const TIOCGPKT: libc::c_ulong = 0x8004_5438;
const TIOCGPTLCK: libc::c_ulong = 0x8004_5439;
const TIOCGEXCL: libc::c_ulong = 0x8004_5440;
const TIOCGDEV: libc::c_ulong = 0x8004_5432;

/// The index of the pty whose master is `fd` (`TIOCGPTN`).
pub fn pty_index(fd: BorrowedFd<'_>) -> io::Result<u32> {
    tty_int(fd, TIOCGPTN).map(|v| v as u32)
}

/// The device of the terminal an fd reaches (`TIOCGDEV`): for an fd of
/// /dev/tty, the terminal it was opened for; in the kernel's new
/// encoding (major in bits 8-19, minor in bits 0-7 and 20-31).
pub fn terminal_device(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let v = tty_int(fd, TIOCGDEV)? as u32;
    let major = (v >> 8) & 0xfff;
    let minor = (v & 0xff) | ((v >> 12) & 0xf_ff00);
    Ok(rustix::fs::makedev(major, minor))
}

/// Packet mode (`TIOCGPKT`).
pub fn packet_mode(fd: BorrowedFd<'_>) -> io::Result<bool> {
    tty_int(fd, TIOCGPKT).map(|v| v != 0)
}

/// Whether the pty is locked (`TIOCGPTLCK`).
pub fn pty_locked(fd: BorrowedFd<'_>) -> io::Result<bool> {
    tty_int(fd, TIOCGPTLCK).map(|v| v != 0)
}

/// The bytes waiting to be read from a terminal (`FIONREAD`).
pub fn queued(fd: BorrowedFd<'_>) -> io::Result<i32> {
    tty_int(fd, libc::FIONREAD)
}

/// Exclusive mode (`TIOCGEXCL`).
pub fn exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    tty_int(fd, TIOCGEXCL).map(|v| v != 0)
}

/// The session of a terminal (`TIOCGSID`): answered for a pty master, or
/// for the caller's controlling terminal.
pub fn session(fd: BorrowedFd<'_>) -> io::Result<i32> {
    tty_int(fd, libc::TIOCGSID)
}

/// The foreground process group of a terminal (`TIOCGPGRP`), answered as
/// [`session`] is.
pub fn foreground(fd: BorrowedFd<'_>) -> io::Result<i32> {
    tty_int(fd, libc::TIOCGPGRP)
}

/// An all-zero termios.
pub fn zeroed_termios() -> libc::termios {
    // SAFETY: termios is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// A terminal's settings as `TCGETS` (or `TIOCGLCKTRMIOS`) gives them:
/// the four flag words, the line discipline and the control characters.
pub fn termios(fd: BorrowedFd<'_>, locked: bool) -> io::Result<libc::termios> {
    let mut t = zeroed_termios();
    let request = if locked {
        libc::TIOCGLCKTRMIOS
    } else {
        libc::TCGETS
    };
    // SAFETY: the kernel writes its `struct termios` (smaller than libc's,
    // whose head it matches) to `t`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(&mut t)) };
    check(r)?;
    Ok(t)
}

/// A terminal's window size (`TIOCGWINSZ`).
pub fn winsize(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the kernel writes one struct winsize to `w`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, std::ptr::from_mut(&mut w)) };
    check(r)?;
    Ok(w)
}
