//! Raw x86_64 system calls, and the few kernel structs the parasite needs.
//!
//! Every wrapper returns the kernel's result: a value, or a negative errno.
//! Wrappers that take addresses as `u64` pass them through unchecked: the
//! kernel validates user addresses itself and answers EFAULT.

use core::mem::size_of;

use rcriu_parasite_abi::CtlMsg;

pub const SIGPIPE: i32 = 13;

pub const AF_UNIX: i32 = 1;
pub const SOCK_SEQPACKET: i32 = 5;
pub const SOCK_CLOEXEC: i32 = 0o2000000;
use rcriu_blob_rt::msg::{MSG_CMSG_CLOEXEC, MSG_NOSIGNAL};

pub use rcriu_blob_rt::nr::*;

pub const SPLICE_F_GIFT: u64 = 8;

use rcriu_blob_rt::syscall::{addr, addr_mut};
pub use rcriu_blob_rt::syscall::{call, value};

/// A syscall whose arguments are plain values or addresses of memory the
/// caller borrows for the call (as the safe wrappers below pass).
#[inline(always)]
fn call_owned(nr: i64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: every caller in this module passes values, or addresses of
    // locals and references it holds for the duration of the call, sized
    // for what the kernel writes there.
    unsafe { call(nr, a1, a2, a3, a4) }
}

pub fn close(fd: i32) -> i64 {
    call_owned(NR_CLOSE, fd as u64, 0, 0, 0)
}

pub fn socket(domain: i32, ty: i32, proto: i32) -> i64 {
    call_owned(NR_SOCKET, domain as u64, ty as u64, proto as u64, 0)
}

#[repr(C)]
pub struct SockaddrUn {
    pub family: u16,
    pub path: [u8; 108],
}

pub fn connect(fd: i32, sa: &mut SockaddrUn, len: u32) -> i64 {
    let len = len.min(size_of::<SockaddrUn>() as u32);
    call_owned(NR_CONNECT, fd as u64, addr_mut(sa), len as u64, 0)
}

/// `sigaltstack(ss, old)` with raw addresses (0 for none).
///
/// # Safety
/// `old`, unless 0, is valid for the kernel to write a `stack_t` to.
pub unsafe fn sigaltstack(ss: u64, old: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { call(NR_SIGALTSTACK, ss, old, 0, 0) }
}

pub fn rt_sigpending(set: &mut u64) -> i64 {
    call_owned(NR_RT_SIGPENDING, addr_mut(set), 8, 0, 0)
}

/// Takes one pending `sig` off the queue, if there is one, without waiting.
pub fn drop_pending_signal(sig: i32) {
    let set: u64 = 1u64 << (sig - 1);
    let zero = [0i64; 2];
    call_owned(NR_RT_SIGTIMEDWAIT, addr(&set), 0, addr(&zero), 8);
}

/// Receives one message and the fds that come with it. Returns the bytes
/// received (or a negative errno) and how many of `fds` were filled.
pub fn recv_msg_fds(sock: i32, msg: &mut CtlMsg, fds: &mut [i32]) -> (i64, usize) {
    // SAFETY: a CtlMsg is plain data, valid for any bytes.
    unsafe { rcriu_blob_rt::msg::recv_fds(sock, msg, fds, MSG_CMSG_CLOEXEC) }
}

/// Sends one message, with `fds` attached when there are any.
pub fn send_msg_fds(sock: i32, msg: &CtlMsg, fds: &[i32]) -> i64 {
    rcriu_blob_rt::msg::send_fds(sock, msg, fds, MSG_NOSIGNAL)
}

/// `getresuid`/`getresgid` into `ids`.
pub fn getres(nr: i64, ids: &mut [u32; 3]) -> i64 {
    let [a, b, c] = ids;
    call_owned(nr, addr_mut(a), addr_mut(b), addr_mut(c), 0)
}

/// `capget` of the calling task, version `version`: two data structs.
pub fn capget(version: u32, data: &mut [u32; 6]) -> i64 {
    let mut hdr = [version, 0u32];
    call_owned(NR_CAPGET, addr_mut(&mut hdr), addr_mut(data), 0, 0)
}

/// A `prctl` that writes one int to its second argument.
pub fn prctl_get_int(op: u64, out: &mut i32) -> i64 {
    call_owned(NR_PRCTL, op, addr_mut(out), 0, 0)
}

/// `getgroups` into `groups`.
pub fn getgroups(groups: &mut [u32]) -> i64 {
    call_owned(
        NR_GETGROUPS,
        groups.len() as u64,
        groups.as_mut_ptr() as u64,
        0,
        0,
    )
}

/// `get_mempolicy`: the policy of the area at the address given.
pub const MPOL_F_ADDR: u64 = 2;
