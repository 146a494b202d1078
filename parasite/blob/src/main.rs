//! The parasite: rcriu loads this blob into a victim's address space and
//! runs it on one of the victim's threads to read what only the task itself
//! can (signal actions, timers, credentials...) and, above all, to hand its
//! memory to rcriu with `vmsplice`.
//!
//! The protocol and the layout of the shared area are described in
//! `rcriu-parasite-abi`. This crate is `no_std`, position independent and
//! linked without any start files; `crates/blob-build` turns it into a flat
//! image. Everything here runs on a borrowed thread with every signal
//! blocked; a fault stops the victim in a signal-delivery stop that rcriu
//! sees, reports and undoes. When rcriu is gone the parasite leaves by
//! itself, leaving nothing behind (see the ABI crate).
//!
//! # Safety
//! Raw pointers here come from rcriu: the args area and the control block
//! lie in the shared area, whose addresses rcriu passes in registers.
//! rcriu guarantees they are mapped, writable, aligned for the args type
//! of the command and not used by anything else while a command runs.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cmds;
mod sys;

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use rcriu_parasite_abi::{
    Cmd, Ctl, CtlMsg, FdsArgs, INIT_LINGER_SECS, InitArgs, JUMP_BP, MAX_FDS, ONESHOT_DONE,
    ONESHOT_FUTEX_OP,
};

// The entry point. rcriu sets rip here, rdi = command, rsi = args area,
// rdx = the control block, rsp = the top of a stack in the area (16-byte
// aligned).
//
// Init serves until the control socket breaks, then leaves by the
// control block's `leave`: a jump to a `syscall` out of the area with the
// registers of the area's `munmap`, and the stack pointer where that
// syscall lands in the thread's original state. A one-shot command leaves
// by `oneshot_leave` with a futex operation that takes it off the
// one-shots in flight (made out of the area: the daemon may unmap it as
// soon as the count drops).
core::arch::global_asm!(
    ".pushsection .text.head,\"ax\"",
    ".globl rcriu_parasite_head",
    ".type rcriu_parasite_head,@function",
    "rcriu_parasite_head:",
    "    mov rbx, rdx",
    "    cmp edi, {init}",
    "    jne 1f",
    "    mov rdi, rsi",
    "    mov rsi, rbx",
    "    call {daemon}",
    "    lea r11, [rbx + {leave}]",
    "    mov rax, [r11 + 8]",
    "    mov rdi, [r11 + 16]",
    "    mov rsi, [r11 + 24]",
    "    jmp 2f",
    "1:",
    "    mov rdx, rbx",
    "    call {oneshot}",
    "    lea r11, [rbx + {oneshot_leave}]",
    "    lea rdi, [rbx + {oneshots}]",
    "    mov r8, rdi",
    "    mov eax, {nr_futex}",
    "    mov esi, {wake_op}",
    "    mov edx, 1",
    "    xor r10d, r10d",
    "    mov r9d, {futex_op}",
    "2:",
    "    test qword ptr [r11 + 48], {jump_bp}",
    "    jz 3f",
    "    mov rbp, [r11 + 40]",
    "3:",
    "    mov rsp, [r11 + 32]",
    "    jmp qword ptr [r11]",
    ".size rcriu_parasite_head, . - rcriu_parasite_head",
    ".popsection",
    init = const Cmd::Init as u32,
    daemon = sym parasite_daemon,
    oneshot = sym parasite_oneshot,
    leave = const core::mem::offset_of!(Ctl, leave),
    oneshot_leave = const core::mem::offset_of!(Ctl, oneshot_leave),
    oneshots = const core::mem::offset_of!(Ctl, oneshots),
    nr_futex = const sys::NR_FUTEX,
    wake_op = const FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG,
    futex_op = const ONESHOT_FUTEX_OP,
    jump_bp = const JUMP_BP,
);

// The parasite's own way back, for a victim that has none rcriu can use:
// a `syscall` that returns, and an `rt_sigreturn` trampoline. Landing
// through them leaves the area mapped. (In the head's section, which the
// linker keeps.)
core::arch::global_asm!(
    ".pushsection .text.head,\"ax\"",
    ".globl rcriu_parasite_syscall_ret",
    ".type rcriu_parasite_syscall_ret,@function",
    "rcriu_parasite_syscall_ret:",
    "    syscall",
    "    ret",
    ".size rcriu_parasite_syscall_ret, . - rcriu_parasite_syscall_ret",
    ".globl rcriu_parasite_sigreturn",
    ".type rcriu_parasite_sigreturn,@function",
    "rcriu_parasite_sigreturn:",
    "    mov rax, 15",
    "    syscall",
    "    ud2",
    ".size rcriu_parasite_sigreturn, . - rcriu_parasite_sigreturn",
    ".popsection",
);

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const ECONNREFUSED: i64 = 111;
const FUTEX_WAKE_OP: u32 = 5;
const FUTEX_PRIVATE_FLAG: u32 = 128;

/// The control socket (valid once Init connected it).
static TSOCK: AtomicI32 = AtomicI32::new(-1);
/// Whether SIGPIPE was already pending when the parasite started: if not,
/// a SIGPIPE the parasite itself causes (vmsplice into a pipe whose reader
/// died) is consumed before returning to the victim.
static SIGPIPE_WAS_PENDING: AtomicBool = AtomicBool::new(false);

/// How many fds received with `RecvFd` the daemon remembers.
const KEPT_MAX: usize = 8;
/// The fds received with `RecvFd` and not closed yet (-1: a free slot):
/// the daemon closes them as it leaves, so that no fd of rcriu's stays.
static KEPT: [AtomicI32; KEPT_MAX] = [const { AtomicI32::new(-1) }; KEPT_MAX];

fn keep(fd: i32) {
    for k in &KEPT {
        if k.compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// Forgets a kept fd (rcriu had it closed).
pub(crate) fn forget(fd: i32) {
    for k in &KEPT {
        let _ = k.compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed);
    }
}

fn close_kept() {
    for k in &KEPT {
        let fd = k.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            sys::close(fd);
        }
    }
}

/// A one-shot command on a thread other than the daemon's: its result
/// goes to the control block, rcriu hears it is done, and the thread waits
/// for rcriu to take it back; if the control socket breaks instead (rcriu
/// died), it returns and leaves by itself.
extern "C" fn parasite_oneshot(cmd: u32, args: *mut u8, ctl: *mut Ctl) {
    let r = match Cmd::from_u32(cmd) {
        Some(c) if cmds::one_shot(c) => cmds::run(c, args, None).0,
        _ => -sys::EINVAL,
    };
    // SAFETY: rcriu passes the control block, in the area; the daemon
    // (idle while a one-shot runs) does not write these fields.
    let sock = unsafe {
        (*ctl).oneshot_ret = r;
        (*ctl).oneshot_done = 1;
        (*ctl).sock
    };
    let done = CtlMsg {
        cmd: ONESHOT_DONE,
        ..CtlMsg::default()
    };
    if sock >= 0 && sys::send_msg_fds(sock, &done, &[]) >= 0 {
        // Until rcriu takes the thread back, or the daemon says rcriu is
        // gone. (No timeout: an interrupted futex wait with one would
        // leave this thread a restart block of ours.)
        // SAFETY: the control block is in the area, aligned.
        let gone = unsafe { AtomicI32::from_ptr(core::ptr::addr_of_mut!((*ctl).gone)) };
        while gone.load(Ordering::Acquire) == 0 {
            futex_wait(gone, 0);
        }
    }
}

/// Waits on futex word `w` while it holds `val`, without a timeout.
fn futex_wait(w: &AtomicI32, val: i32) {
    // SAFETY: a futex wait on a word of the area, no timeout.
    unsafe {
        sys::call(
            sys::NR_FUTEX,
            w.as_ptr() as u64,
            FUTEX_WAIT | u64::from(FUTEX_PRIVATE_FLAG),
            val as u32 as u64,
            0,
        )
    };
}

fn init(args: &mut InitArgs, ctl: &mut Ctl) -> i64 {
    let r = init_inner(args, ctl);
    args.status = r as i32;
    r
}

fn init_inner(args: &mut InitArgs, ctl: &mut Ctl) -> i64 {
    let mut pending = 0u64;
    let r = sys::rt_sigpending(&mut pending);
    if r < 0 {
        args.failed_syscall = sys::NR_RT_SIGPENDING as i32;
        return r;
    }
    SIGPIPE_WAS_PENDING.store(pending & sig_bit(sys::SIGPIPE) != 0, Ordering::Relaxed);

    let sk = sys::socket(sys::AF_UNIX, sys::SOCK_SEQPACKET | sys::SOCK_CLOEXEC, 0);
    if sk < 0 {
        args.failed_syscall = sys::NR_SOCKET as i32;
        return sk;
    }
    ctl.sock = sk as i32;
    let mut addr = sys::SockaddrUn {
        family: sys::AF_UNIX as u16,
        path: args.sun_path,
    };
    let r = sys::connect(sk as i32, &mut addr, args.addr_len);
    if r < 0 {
        sys::close(sk as i32);
        ctl.sock = -1;
        args.failed_syscall = sys::NR_CONNECT as i32;
        return r;
    }
    TSOCK.store(sk as i32, Ordering::Relaxed);
    0
}

const fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Connects, then serves commands until the control socket breaks (or
/// Fini); then cleans up for leaving.
extern "C" fn parasite_daemon(args: *mut u8, ctl: *mut Ctl) {
    // SAFETY: rcriu put an `InitArgs` in the args area and passes the
    // control block; nothing else touches them until the daemon answers.
    let (init_args, c) = unsafe { (&mut *args.cast::<InitArgs>(), &mut *ctl) };
    let r = init(init_args, c);
    if r == 0 {
        serve(args);
    } else if r != -ECONNREFUSED {
        // rcriu, if it is there, sees the failure and takes the thread
        // back; if it died, the thread goes on after a while. (A refused
        // connection says at once that rcriu is gone.) The wait is a
        // sigtimedwait for no signal: interrupted, it leaves no restart
        // block (a sleep or a futex wait with a timeout would).
        c.init_status = r as i32;
        let none = 0u64;
        let timeout = [INIT_LINGER_SECS, 0];
        // SAFETY: the kernel reads the empty set and the timeout, both on
        // this stack, and writes nothing (no siginfo asked).
        unsafe {
            sys::call(
                sys::NR_RT_SIGTIMEDWAIT,
                core::ptr::addr_of!(none) as u64,
                0,
                timeout.as_ptr() as u64,
                8,
            )
        };
    }
    leave(ctl);
}

fn serve(args: *mut u8) {
    let sock = TSOCK.load(Ordering::Relaxed);
    loop {
        let mut msg = CtlMsg::default();
        let mut fds = [-1i32; MAX_FDS];
        let (n, nfds) = sys::recv_msg_fds(sock, &mut msg, &mut fds);
        if n != core::mem::size_of::<CtlMsg>() as i64 {
            close_received(&fds[..nfds]);
            return;
        }
        let cmd = Cmd::from_u32(msg.cmd);
        if cmd != Some(Cmd::RecvFd) {
            close_received(&fds[..nfds]);
        }
        let mut reply = CtlMsg {
            cmd: msg.cmd,
            ..CtlMsg::default()
        };
        let mut send_fds: Option<&[i32]> = None;
        match cmd {
            Some(Cmd::Fini) => {
                // rcriu takes the thread back once answered; what the
                // parasite holds goes now.
                close_kept();
                drop_own_sigpipe();
            }
            Some(Cmd::Init) | None => reply.err = -sys::EINVAL as i32,
            Some(Cmd::RecvFd) => {
                // SAFETY: for RecvFd, rcriu reserved an `FdsArgs` in the
                // args area.
                let out = unsafe { &mut *args.cast::<FdsArgs>() };
                out.nr = nfds as u32;
                out.fds[..nfds].copy_from_slice(&fds[..nfds]);
                for &fd in &fds[..nfds] {
                    keep(fd);
                }
            }
            Some(c) => {
                let (ret, err_at) = cmds::run(c, args, Some(sock));
                if ret < 0 {
                    reply.err = ret as i32;
                    reply.err_at = err_at;
                } else {
                    reply.ret = ret as u64;
                }
                if c == Cmd::SendFds && ret >= 0 {
                    // SAFETY: for SendFds, rcriu put an `FdsArgs` in the
                    // args area.
                    let a = unsafe { &*args.cast::<FdsArgs>() };
                    send_fds = Some(&a.fds[..(a.nr as usize).min(MAX_FDS)]);
                }
            }
        }
        if sys::send_msg_fds(sock, &reply, send_fds.unwrap_or(&[])) < 0 {
            return;
        }
    }
}

fn close_received(fds: &[i32]) {
    for &fd in fds {
        sys::close(fd);
    }
}

/// Before leaving: the one-shot commands on other threads are waited for
/// (they run in the area the leave unmaps, and wait on the socket), then
/// the socket and the fds rcriu gave go, and a SIGPIPE the parasite
/// caused (a page dump broken off under a blocked vmsplice) is dropped.
fn leave(ctl: *mut Ctl) {
    // SAFETY: the control block is in the area, aligned; `oneshots` is
    // changed by rcriu and by the futex operations of one-shot commands,
    // `gone` read by one-shot commands: atomics.
    let (count, gone) = unsafe {
        (
            AtomicI32::from_ptr(core::ptr::addr_of_mut!((*ctl).oneshots)),
            AtomicI32::from_ptr(core::ptr::addr_of_mut!((*ctl).gone)),
        )
    };
    // One-shots waiting for rcriu go.
    gone.store(1, Ordering::Release);
    // SAFETY: a futex wake on a word of the area.
    unsafe {
        sys::call(
            sys::NR_FUTEX,
            gone.as_ptr() as u64,
            FUTEX_WAKE | u64::from(FUTEX_PRIVATE_FLAG),
            i32::MAX as u64,
            0,
        )
    };
    loop {
        let c = count.load(Ordering::Acquire);
        if c <= 0 {
            break;
        }
        futex_wait(count, c);
    }
    let sock = TSOCK.swap(-1, Ordering::Relaxed);
    if sock >= 0 {
        sys::close(sock);
    }
    close_kept();
    drop_own_sigpipe();
}

/// Drops a SIGPIPE the parasite caused (one pending before it came stays).
fn drop_own_sigpipe() {
    if !SIGPIPE_WAS_PENDING.load(Ordering::Relaxed) {
        sys::drop_pending_signal(sys::SIGPIPE);
    }
}
