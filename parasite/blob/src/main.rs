//! The parasite: rcriu loads this blob into a victim's address space and
//! runs it on one of the victim's threads to read what only the task itself
//! can (signal actions, timers, credentials...) and, above all, to hand its
//! memory to rcriu with `vmsplice`.
//!
//! The protocol and the layout of the shared area are described in
//! `rcriu-parasite-abi`. This crate is `no_std`, position independent and
//! linked without any start files; `crates/blob-build` turns it into a flat
//! image. Everything here runs on a borrowed thread with every signal but
//! SIGTRAP blocked; a fault stops the victim in a signal-delivery stop that
//! rcriu sees, reports and undoes.
//!
//! # Safety
//! Raw pointers here come from rcriu: the args area and the sigframe lie in
//! the shared area, whose addresses rcriu passes in registers and in
//! `InitArgs`. rcriu guarantees they are mapped, writable, aligned for the
//! args type of the command and not used by anything else while a command
//! runs.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cmds;
mod sys;

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use rcriu_parasite_abi::{Cmd, CtlMsg, FdsArgs, InitArgs, MAX_FDS};

// The entry point. rcriu sets rip here, rdi = command, rsi = args area,
// rsp = the top of the parasite's stack (16-byte aligned).
//
// A one-shot command returns its result in rax and stops on the first
// int3. After a successful Init, rcriu resumes the task past that int3 and
// the daemon serves commands; it returns 0 on Fini (stop on the second
// int3 for rcriu to restore the registers itself), or, when rcriu is gone,
// the address of the frame holding the victim's state, to put it back
// without rcriu (`restore` below).
core::arch::global_asm!(
    ".pushsection .text.head,\"ax\"",
    ".globl rcriu_parasite_head",
    ".type rcriu_parasite_head,@function",
    "rcriu_parasite_head:",
    "    mov rbx, rsi",
    "    call {service}",
    "    int3",
    "    mov rdi, rbx",
    "    call {daemon}",
    "    test rax, rax",
    "    jz 2f",
    "    mov rdi, rax",
    "    jmp {restore}",
    "2:",
    "    int3",
    "    ud2",
    ".size rcriu_parasite_head, . - rcriu_parasite_head",
    ".popsection",
    service = sym parasite_service,
    daemon = sym parasite_daemon,
    restore = sym rcriu_parasite_restore,
);

// Puts the victim back as it was, without rcriu: rdi is the frame rcriu
// prepared (an rt_sigframe layout: see crates/compel/src/sigframe.rs).
//
// Not rt_sigreturn: it would make a syscall interrupted with a restart
// block return -EINTR. Instead: the FPU state by xrstor, the signal mask by
// rt_sigprocmask, then every general register from the frame, the flags
// and the instruction pointer by way of 16 bytes below the victim's red
// zone (where a signal frame could have gone anyway), and `ret 128` to
// land with the original stack pointer.
core::arch::global_asm!(
    ".globl rcriu_parasite_restore",
    ".type rcriu_parasite_restore,@function",
    "rcriu_parasite_restore:",
    "    mov rbx, rdi",
    "    mov rcx, [rbx + {mc} + 184]",
    "    mov eax, -1",
    "    mov edx, -1",
    "    xrstor64 [rcx]",
    "    mov eax, 14",
    "    mov edi, 2",
    "    lea rsi, [rbx + {sigmask}]",
    "    xor edx, edx",
    "    mov r10d, 8",
    "    syscall",
    "    mov rcx, [rbx + {mc} + 120]",
    "    sub rcx, 144",
    "    mov rax, [rbx + {mc} + 136]",
    "    mov [rcx], rax",
    "    mov rax, [rbx + {mc} + 128]",
    "    mov [rcx + 8], rax",
    "    mov rsp, rcx",
    "    mov r8, [rbx + {mc} + 0]",
    "    mov r9, [rbx + {mc} + 8]",
    "    mov r10, [rbx + {mc} + 16]",
    "    mov r11, [rbx + {mc} + 24]",
    "    mov r12, [rbx + {mc} + 32]",
    "    mov r13, [rbx + {mc} + 40]",
    "    mov r14, [rbx + {mc} + 48]",
    "    mov r15, [rbx + {mc} + 56]",
    "    mov rdi, [rbx + {mc} + 64]",
    "    mov rsi, [rbx + {mc} + 72]",
    "    mov rbp, [rbx + {mc} + 80]",
    "    mov rdx, [rbx + {mc} + 96]",
    "    mov rax, [rbx + {mc} + 104]",
    "    mov rcx, [rbx + {mc} + 112]",
    "    mov rbx, [rbx + {mc} + 88]",
    "    popfq",
    "    ret 128",
    ".size rcriu_parasite_restore, . - rcriu_parasite_restore",
    mc = const FRAME_MCONTEXT,
    sigmask = const FRAME_SIGMASK,
);

unsafe extern "C" {
    fn rcriu_parasite_restore();
}

/// Offsets in the frame (an rt_sigframe): `uc_mcontext` and `uc_sigmask`.
const FRAME_MCONTEXT: usize = 48;
const FRAME_SIGMASK: usize = 304;

/// The control socket (valid once Init connected it).
static TSOCK: AtomicI32 = AtomicI32::new(-1);
/// The victim's address of the sigreturn frame.
static SIGFRAME: AtomicU64 = AtomicU64::new(0);
/// Whether SIGPIPE was already pending when the parasite started: if not,
/// a SIGPIPE the parasite itself causes (vmsplice into a pipe whose reader
/// died) is consumed before returning to the victim.
static SIGPIPE_WAS_PENDING: AtomicBool = AtomicBool::new(false);

/// How many fds received with `RecvFd` the daemon remembers.
const KEPT_MAX: usize = 8;
/// The fds received with `RecvFd` and not closed yet (-1: a free slot):
/// a self-cure closes them, so that a dead rcriu leaves none behind.
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

extern "C" fn parasite_service(cmd: u32, args: *mut u8) -> i64 {
    match Cmd::from_u32(cmd) {
        // SAFETY: for Init, rcriu put an `InitArgs` in the args area.
        Some(Cmd::Init) => init(unsafe { &mut *args.cast::<InitArgs>() }),
        // One-shot commands on a thread other than the daemon's.
        Some(c) if cmds::one_shot(c) => cmds::run(c, args, None).0,
        _ => -sys::EINVAL,
    }
}

fn init(args: &mut InitArgs) -> i64 {
    SIGFRAME.store(args.sigframe, Ordering::Relaxed);
    let r = init_inner(args);
    args.status = r as i32;
    r
}

fn init_inner(args: &mut InitArgs) -> i64 {
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
    let mut addr = sys::SockaddrUn {
        family: sys::AF_UNIX as u16,
        path: args.sun_path,
    };
    let r = sys::connect(sk as i32, &mut addr, args.addr_len);
    if r < 0 {
        sys::close(sk as i32);
        args.failed_syscall = sys::NR_CONNECT as i32;
        return r;
    }
    TSOCK.store(sk as i32, Ordering::Relaxed);
    0
}

const fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Serves commands until Fini (returns 0) or until the control socket
/// breaks (returns the address of the frame to restore the victim from).
extern "C" fn parasite_daemon(args: *mut u8) -> u64 {
    let sock = TSOCK.load(Ordering::Relaxed);
    loop {
        let mut msg = CtlMsg::default();
        let mut fds = [-1i32; MAX_FDS];
        let (n, nfds) = sys::recv_msg_fds(sock, &mut msg, &mut fds);
        if n != core::mem::size_of::<CtlMsg>() as i64 {
            close_received(&fds[..nfds]);
            return self_cure(sock);
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
                sys::send_msg_fds(sock, &reply, &[]);
                sys::close(sock);
                TSOCK.store(-1, Ordering::Relaxed);
                // A page dump rcriu broke off (its page pipe closed under
                // a blocked vmsplice) left a SIGPIPE that would kill the
                // victim once it runs again.
                drop_own_sigpipe();
                return 0;
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
            return self_cure(sock);
        }
    }
}

fn close_received(fds: &[i32]) {
    for &fd in fds {
        sys::close(fd);
    }
}

/// rcriu is gone: close the socket, drop a SIGPIPE we caused, and hand the
/// head the frame to restore the victim from.
fn self_cure(sock: i32) -> u64 {
    sys::close(sock);
    close_kept();
    TSOCK.store(-1, Ordering::Relaxed);
    drop_own_sigpipe();
    SIGFRAME.load(Ordering::Relaxed)
}

/// Drops a SIGPIPE the parasite caused (one pending before it came stays).
fn drop_own_sigpipe() {
    if !SIGPIPE_WAS_PENDING.load(Ordering::Relaxed) {
        sys::drop_pending_signal(sys::SIGPIPE);
    }
}
