//! The socket calls the dump makes on its copies of the task's sockets
//! that neither std nor rustix offers whole: any `getsockopt` and
//! `setsockopt` (into and from bytes), the queue ioctls, `SIOCUNIXFILE`,
//! and a `recvmsg` that peeks at a queued message with its control
//! messages (fds in flight come out as fds of rcriu's own).
//!
//! # Safety
//! One of the modules of the crate with `unsafe` (with `sys` and
//! `files_sys`). Each wrapper is safe to call: it passes the kernel fds
//! the caller holds and pointers to buffers it borrows for the call,
//! with their true lengths.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `getsockopt` into `buf`; returns the length the kernel gave.
pub fn getsockopt(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes to `buf`, which is
    // that long, and the length to `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            std::ptr::from_mut(&mut len),
        )
    };
    check(r)?;
    Ok(len as usize)
}

/// An int option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut b = [0u8; 4];
    let n = getsockopt(fd, level, name, &mut b)?;
    if n != 4 {
        return Err(io::Error::other(format!(
            "option {level}:{name} has {n} bytes, not 4"
        )));
    }
    Ok(i32::from_ne_bytes(b))
}

/// `SO_GET_FILTER`'s length question: the number of instructions of the
/// classic filter attached (0 for none), asked with no buffer.
pub fn filter_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a null buffer and a length of 0 the kernel writes only
    // the instruction count to `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::null_mut(),
            std::ptr::from_mut(&mut len),
        )
    };
    check(r)?;
    Ok(len as usize)
}

/// `SO_GET_FILTER`: the classic filter's instructions, 8 bytes each, into
/// `buf` (`count` of them); returns how many the kernel wrote.
pub fn filter(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // The length is in instructions, not bytes.
    let mut len = (buf.len() / 8) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` 8-byte instructions to
    // `buf`, which holds that many.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            buf.as_mut_ptr().cast(),
            std::ptr::from_mut(&mut len),
        )
    };
    check(r)?;
    Ok(len as usize)
}

/// `setsockopt` from `val`.
pub fn setsockopt(fd: BorrowedFd<'_>, level: i32, name: i32, val: &[u8]) -> io::Result<()> {
    // SAFETY: the kernel reads `val.len()` bytes from `val`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    check(r).map(|_| ())
}

pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, val: i32) -> io::Result<()> {
    setsockopt(fd, level, name, &val.to_ne_bytes())
}

/// An ioctl that writes one int (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD).
pub fn ioctl_int(fd: BorrowedFd<'_>, req: u64) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the kernel writes one int to `v`.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            req as libc::Ioctl,
            std::ptr::from_mut(&mut v),
        )
    };
    check(r)?;
    Ok(v)
}

/// `SIOCUNIXFILE`: an `O_PATH` fd of a bound unix socket's file.
pub fn unix_file(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const SIOCUNIXFILE: libc::Ioctl = 0x89e0;
    // SAFETY: the ioctl takes no argument and returns a new fd.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCUNIXFILE) };
    let fd = check(r)?;
    // SAFETY: the kernel just opened `fd` for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SIOCGSKNS`: an fd of the network namespace the socket lives in.
pub fn net_ns(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const SIOCGSKNS: libc::Ioctl = 0x894c;
    // SAFETY: the ioctl takes no argument and returns a new fd.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS) };
    let fd = check(r)?;
    // SAFETY: the kernel just opened `fd` for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The socket's own address (`getsockname`) or its peer's
/// (`getpeername`), as raw `sockaddr` bytes; `None` when not connected.
pub fn address(fd: BorrowedFd<'_>, peer: bool) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    let p = buf.as_mut_ptr().cast();
    let l = std::ptr::from_mut(&mut len);
    // SAFETY: the kernel writes at most `len` bytes to `buf` and the full
    // length to `len`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, l)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, l)
        }
    };
    match check(r) {
        Ok(_) => Ok(Some(buf[..(len as usize).min(buf.len())].to_vec())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The events `poll` sees on the socket right now.
pub fn poll_now(fd: BorrowedFd<'_>, events: i16) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one pollfd, a local; no wait.
    let r = unsafe { libc::poll(std::ptr::from_mut(&mut p), 1, 0) };
    check(r)?;
    Ok(p.revents)
}

/// What a peek at a queued message saw.
#[derive(Debug, Default)]
pub struct Peeked {
    /// The message's bytes (its whole length, if the buffer was short:
    /// see `truncated`).
    pub len: usize,
    /// The message did not fit (`MSG_TRUNC`) or its control messages did
    /// not (`MSG_CTRUNC`).
    pub truncated: bool,
    /// The fds in flight with it (`SCM_RIGHTS`), now rcriu's.
    pub rights: Vec<OwnedFd>,
    /// Other control messages: `(level, type)`.
    pub others: Vec<(i32, i32)>,
    /// An empty read: the peer shut its end.
    pub end: bool,
}

/// Room for control messages: SCM_MAX_FD (253) fds and credentials.
const CMSG_ROOM: usize = 4096;

/// Peeks at the next queued message (from the socket's peek offset,
/// `SO_PEEK_OFF`) into `data`, without blocking; `None` when nothing is
/// queued.
pub fn peek(fd: BorrowedFd<'_>, data: &mut [u8]) -> io::Result<Option<Peeked>> {
    peek_with(fd, data, &mut [0u64; CMSG_ROOM / 8])
}

/// [`peek`], with room for `control` messages (more than fit are cut,
/// and the message says it was truncated).
pub fn peek_with(
    fd: BorrowedFd<'_>,
    data: &mut [u8],
    control: &mut [u64],
) -> io::Result<Option<Peeked>> {
    let room = std::mem::size_of_val(control);
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = std::ptr::from_mut(&mut iov);
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = room;
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
    // SAFETY: `msg` points to one iovec over `data` and to `control`, both
    // borrowed for the call with their true lengths; the kernel writes
    // within them and updates `msg`.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), std::ptr::from_mut(&mut msg), flags) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EAGAIN) {
            return Ok(None);
        }
        return Err(e);
    }
    let mut out = Peeked {
        len: n as usize,
        truncated: msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0
            || n as usize > data.len(),
        end: n == 0,
        ..Peeked::default()
    };
    // The control messages, walked by hand: cmsghdr is a usize length and
    // two ints, each message padded to 8 bytes.
    let used = msg.msg_controllen.min(room);
    let bytes: Vec<u8> = control[..used.div_ceil(8)]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    let mut at = 0;
    const HDR: usize = 16;
    while at + HDR <= used {
        let len = usize::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let level = i32::from_ne_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        let kind = i32::from_ne_bytes(bytes[at + 12..at + 16].try_into().expect("4 bytes"));
        if len < HDR || at + len > used {
            break;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            for c in bytes[at + HDR..at + len].chunks_exact(4) {
                let raw = i32::from_ne_bytes(c.try_into().expect("4 bytes"));
                // SAFETY: the kernel installed this fd in rcriu's table for
                // this call; nothing else owns it.
                out.rights.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        } else {
            out.others.push((level, kind));
        }
        at += (len + 7) & !7;
    }
    Ok(Some(out))
}
