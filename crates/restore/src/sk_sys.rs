//! The socket calls the restore makes that neither std nor rustix offers
//! whole: `bind` and `connect` to raw `sockaddr` bytes (unix names with
//! NULs, netlink and packet addresses), any `setsockopt` from bytes, a
//! `sendmsg` with fds (`SCM_RIGHTS`), and `SIOCGIFNAME`.
//!
//! # Safety
//! One of the modules of the crate with `unsafe`. Each wrapper is safe to
//! call: it passes the kernel fds the caller holds and pointers to
//! buffers it borrows for the call, with their true lengths.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A new socket, close-on-exec.
pub fn socket(family: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: integers only; the kernel returns a new fd.
    let fd = check(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: the kernel just made `fd` for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A connected pair of unix sockets, close-on-exec.
pub fn socketpair(kind: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: the kernel writes two fds to `fds`.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: the kernel just made both fds for us; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `bind` to the `sockaddr` in `addr`.
pub fn bind(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let a = Aligned::new(addr);
    // SAFETY: the kernel reads `addr.len()` bytes of a sockaddr from `a`,
    // which holds them (aligned).
    check(unsafe { libc::bind(fd.as_raw_fd(), a.ptr(), addr.len() as libc::socklen_t) }).map(|_| ())
}

/// `connect` to the `sockaddr` in `addr`.
pub fn connect(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let a = Aligned::new(addr);
    // SAFETY: as in `bind`.
    check(unsafe { libc::connect(fd.as_raw_fd(), a.ptr(), addr.len() as libc::socklen_t) })
        .map(|_| ())
}

/// A sockaddr's bytes, aligned for the kernel's reading.
struct Aligned(Vec<u64>);

impl Aligned {
    fn new(b: &[u8]) -> Aligned {
        let mut v = vec![0u64; b.len().div_ceil(8).max(1)];
        for (i, byte) in b.iter().enumerate() {
            let w = &mut v[i / 8];
            let mut bytes = w.to_ne_bytes();
            bytes[i % 8] = *byte;
            *w = u64::from_ne_bytes(bytes);
        }
        Aligned(v)
    }

    fn ptr(&self) -> *const libc::sockaddr {
        self.0.as_ptr().cast()
    }
}

pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(|_| ())
}

pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(|_| ())
}

/// `setsockopt` from `val`.
pub fn setsockopt(fd: BorrowedFd<'_>, level: i32, name: i32, val: &[u8]) -> io::Result<()> {
    // SAFETY: the kernel reads `val.len()` bytes from `val`.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, val: i32) -> io::Result<()> {
    setsockopt(fd, level, name, &val.to_ne_bytes())
}

/// `getsockopt` into `buf`; the length the kernel gave.
pub fn getsockopt(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes to `buf` and the
    // length to `len`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            std::ptr::from_mut(&mut len),
        )
    })?;
    Ok(len as usize)
}

/// Sends `data` as one message, with `fds` in flight when there are any;
/// returns the bytes sent.
pub fn send(fd: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = std::ptr::from_mut(&mut iov);
    msg.msg_iovlen = 1;
    // cmsghdr (16 bytes: usize length, level, type), then the fds, padded
    // to 8 bytes.
    let payload = fds.len() * 4;
    let space = 16 + payload.div_ceil(8) * 8;
    let mut control = vec![0u64; space / 8];
    if !fds.is_empty() {
        let mut bytes = Vec::with_capacity(space);
        bytes.extend_from_slice(&(16 + payload).to_ne_bytes());
        bytes.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        bytes.extend_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
        for f in fds {
            bytes.extend_from_slice(&f.as_raw_fd().to_ne_bytes());
        }
        bytes.resize(space, 0);
        for (w, c) in control.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
        }
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
    }
    // SAFETY: `msg` points to one iovec over `data` (only read) and to
    // `control` with its true length, both borrowed for the call; the fds
    // it names are borrowed by the caller for the call.
    let n = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            std::ptr::from_ref(&msg),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The name of interface `index` (`SIOCGIFNAME`), asked through `fd`.
pub fn if_name(fd: BorrowedFd<'_>, index: i32) -> io::Result<Vec<u8>> {
    // struct ifreq: the name (16 bytes), then a union whose first int is
    // the index; 40 bytes in all.
    let mut req = [0u8; 40];
    req[16..20].copy_from_slice(&index.to_ne_bytes());
    // SAFETY: the kernel reads and writes one ifreq, `req`, 40 bytes.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SIOCGIFNAME as libc::Ioctl,
            req.as_mut_ptr(),
        )
    })?;
    Ok(req[..16]
        .split(|&b| b == 0)
        .next()
        .unwrap_or_default()
        .to_vec())
}

/// The index of interface `name` (`if_nametoindex`); 0 when there is
/// none.
pub fn if_index(name: &[u8]) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: `c` is a NUL-terminated string borrowed for the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Sets an open file's status flags (`F_SETFL`).
pub fn set_fl(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(|_| ())
}

/// An open file's status flags (`F_GETFL`).
pub fn get_fl(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: integers only.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// `sendto` the `sockaddr` in `addr`; the bytes sent.
pub fn send_to(fd: BorrowedFd<'_>, data: &[u8], addr: &[u8]) -> io::Result<usize> {
    let a = Aligned::new(addr);
    // SAFETY: the kernel reads `data.len()` bytes of `data` and
    // `addr.len()` bytes of a sockaddr from `a`, both borrowed for the
    // call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
            a.ptr(),
            addr.len() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
