//! Messages with fds attached (`sendmsg(2)`/`recvmsg(2)` with
//! `SCM_RIGHTS`), as the blobs pass them over their sockets to rcriu.

use core::mem::size_of_val;

use crate::nr::{NR_RECVMSG, NR_SENDMSG};
use crate::syscall::{addr, addr_mut, call};

/// Most fds one message carries.
pub const MAX_FDS: usize = 64;

const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
pub const MSG_NOSIGNAL: u64 = 0x4000;
pub const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;

#[repr(C)]
struct Iov {
    base: u64,
    len: u64,
}

#[repr(C)]
struct MsgHdr {
    name: u64,
    namelen: u32,
    _pad0: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
    flags: i32,
    _pad1: u32,
}

/// `struct cmsghdr` followed by room for the fds.
#[repr(C)]
struct CmsgFds {
    len: u64,
    level: i32,
    ty: i32,
    fds: [i32; MAX_FDS],
}

const CMSG_HDR_LEN: usize = 16;

const _: () = {
    assert!(size_of::<Iov>() == 16);
    assert!(size_of::<MsgHdr>() == 56);
    assert!(size_of::<CmsgFds>() == CMSG_HDR_LEN + 4 * MAX_FDS);
};

/// Sends the bytes of `msg` as one message, with `fds` (up to
/// [`MAX_FDS`]) attached when there are any, and `flags`. Returns the
/// bytes sent or a negative errno.
pub fn send_fds<T: ?Sized>(sock: i32, msg: &T, fds: &[i32], flags: u64) -> i64 {
    let mut iov = Iov {
        base: addr(msg),
        len: size_of_val(msg) as u64,
    };
    let nfds = fds.len().min(MAX_FDS);
    let mut cmsg = CmsgFds {
        len: (CMSG_HDR_LEN + 4 * nfds) as u64,
        level: SOL_SOCKET,
        ty: SCM_RIGHTS,
        fds: [-1; MAX_FDS],
    };
    cmsg.fds[..nfds].copy_from_slice(&fds[..nfds]);
    // CMSG_SPACE: the header plus the data rounded up to 8 bytes.
    let space = (CMSG_HDR_LEN + 4 * nfds).next_multiple_of(8);
    let hdr = MsgHdr {
        name: 0,
        namelen: 0,
        _pad0: 0,
        iov: addr_mut(&mut iov),
        iovlen: 1,
        control: if nfds > 0 { addr_mut(&mut cmsg) } else { 0 },
        controllen: if nfds > 0 { space as u64 } else { 0 },
        flags: 0,
        _pad1: 0,
    };
    // SAFETY: the kernel reads the header, the iovec and the control
    // message (locals here) and the bytes of `msg`, borrowed for the call.
    unsafe { call(NR_SENDMSG, sock as u64, addr(&hdr), flags, 0) }
}

/// Receives one message into `msg`, and the fds that come with it into
/// `fds`, with `flags`. Returns the bytes received (or a negative errno)
/// and how many of `fds` were filled.
///
/// # Safety
/// `T` is plain data: any bytes the sender sends are a valid `T`.
pub unsafe fn recv_fds<T: ?Sized>(
    sock: i32,
    msg: &mut T,
    fds: &mut [i32],
    flags: u64,
) -> (i64, usize) {
    let mut iov = Iov {
        base: addr_mut(msg),
        len: size_of_val(msg) as u64,
    };
    let mut cmsg = CmsgFds {
        len: 0,
        level: 0,
        ty: 0,
        fds: [-1; MAX_FDS],
    };
    let mut hdr = MsgHdr {
        name: 0,
        namelen: 0,
        _pad0: 0,
        iov: addr_mut(&mut iov),
        iovlen: 1,
        control: addr_mut(&mut cmsg),
        controllen: size_of::<CmsgFds>() as u64,
        flags: 0,
        _pad1: 0,
    };
    // SAFETY: the kernel writes at most the sizes given into the header,
    // the control message (locals here) and `msg`, which the caller
    // vouches any bytes are valid for.
    let n = unsafe { call(NR_RECVMSG, sock as u64, addr_mut(&mut hdr), flags, 0) };
    let mut nfds = 0;
    if hdr.controllen as usize >= CMSG_HDR_LEN
        && cmsg.level == SOL_SOCKET
        && cmsg.ty == SCM_RIGHTS
        && cmsg.len as usize >= CMSG_HDR_LEN
    {
        nfds = ((cmsg.len as usize - CMSG_HDR_LEN) / 4)
            .min(fds.len())
            .min(MAX_FDS);
        fds[..nfds].copy_from_slice(&cmsg.fds[..nfds]);
    }
    (n, nfds)
}
