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
mod mem;
mod sys;

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use rcriu_parasite_abi::{Cmd, CtlMsg, FdsArgs, InitArgs, MAX_FDS};

// The entry point. rcriu sets rip here, rdi = command, rsi = args area,
// rsp = the top of the parasite's stack (16-byte aligned).
//
// A one-shot command returns its result in rax and stops on the first
// int3. After a successful Init, rcriu resumes the task past that int3 and
// the daemon serves commands; it returns 0 on Fini (stop on the second
// int3 for rcriu to restore the registers itself), or the stack pointer of
// the sigreturn frame when rcriu is gone, to return into the victim's code
// by rt_sigreturn (syscall 15).
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
    "    mov rsp, rax",
    "    mov eax, 15",
    "    syscall",
    "    ud2",
    "2:",
    "    int3",
    "    ud2",
    ".size rcriu_parasite_head, . - rcriu_parasite_head",
    ".popsection",
    service = sym parasite_service,
    daemon = sym parasite_daemon,
);

/// The control socket (valid once Init connected it).
static TSOCK: AtomicI32 = AtomicI32::new(-1);
/// The victim's address of the sigreturn frame.
static SIGFRAME: AtomicU64 = AtomicU64::new(0);
/// Whether SIGPIPE was already pending when the parasite started: if not,
/// a SIGPIPE the parasite itself causes (vmsplice into a pipe whose reader
/// died) is consumed before returning to the victim.
static SIGPIPE_WAS_PENDING: AtomicBool = AtomicBool::new(false);

/// Size of the return-address slot before the frame proper: rt_sigreturn
/// reads the frame at `rsp - 8`.
const SIGFRAME_PRETCODE: u64 = 8;

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
    // Record the current alternate signal stack in the frame: rt_sigreturn
    // sets it from there.
    // SAFETY: rcriu points sigframe_uc_stack at the frame's uc_stack in the
    // shared area, room for a stack_t.
    let r = unsafe { sys::sigaltstack(0, args.sigframe_uc_stack) };
    if r < 0 {
        args.failed_syscall = sys::NR_SIGALTSTACK as i32;
        return r;
    }
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
/// breaks (returns the stack pointer for rt_sigreturn).
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
                return 0;
            }
            Some(Cmd::Init) | None => reply.err = -sys::EINVAL as i32,
            Some(Cmd::RecvFd) => {
                // SAFETY: for RecvFd, rcriu reserved an `FdsArgs` in the
                // args area.
                let out = unsafe { &mut *args.cast::<FdsArgs>() };
                out.nr = nfds as u32;
                out.fds[..nfds].copy_from_slice(&fds[..nfds]);
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
/// head the frame to rt_sigreturn through.
fn self_cure(sock: i32) -> u64 {
    sys::close(sock);
    TSOCK.store(-1, Ordering::Relaxed);
    if !SIGPIPE_WAS_PENDING.load(Ordering::Relaxed) {
        sys::drop_pending_signal(sys::SIGPIPE);
    }
    SIGFRAME.load(Ordering::Relaxed) + SIGFRAME_PRETCODE
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // A SIGILL that rcriu reports as a parasite fault and undoes.
    loop {
        // SAFETY: ud2 only raises #UD; it touches no memory.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
    }
}
