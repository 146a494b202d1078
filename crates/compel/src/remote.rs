//! Running things in a seized thread: its saved context, remote syscalls,
//! and waiting for the stop that ends what we ran.
//!
//! A remote syscall needs no change to the victim's memory but its stack
//! below the red zone: the thread is pointed at a `syscall` instruction
//! that already exists in one of its executable mappings (the vDSO has
//! some), with the syscall's number and arguments in its registers, and
//! traced with `PTRACE_SYSCALL` to the syscall's exit, where the result is
//! read. Then the registers and the signal mask go back as they were. The
//! instruction and the stack pointer are chosen so that, should rcriu die
//! meanwhile, the thread puts itself back (see [`crate::lifeline`]).
//!
//! Signals are never taken away from the victim: every signal is blocked
//! while the thread runs our code, so they wait, queued, for the release;
//! SIGSTOP, which cannot be blocked, is handed back to the kernel as it
//! is met, so that job control (a stop, then maybe a SIGCONT) ends in the
//! state it would have without the dump.

use rcriu_proc::{Pid, VmaPath};

use crate::lifeline::{Gadgets, Lifeline};
use crate::regs::{UserRegs, Xstate};
use crate::seize::Thread;
use crate::sys::{self, Wait};
use crate::{Error, Result};

/// Every signal blocked: what the victim runs our code with (the kernel
/// leaves SIGKILL and SIGSTOP out).
pub const BLOCK_ALL: u64 = u64::MAX;

/// Room for the xsave area: comfortably more than any CPU's (AMX makes it
/// about 11 KiB).
const XSTATE_BUF: usize = 16 * 1024;

/// A thread's state as we found it: what curing puts back.
#[derive(Clone, Debug)]
pub struct ThreadCtx {
    pub tid: Pid,
    pub regs: UserRegs,
    pub sigmask: u64,
    pub xstate: Xstate,
}

impl ThreadCtx {
    /// Reads the registers, FPU state and signal mask of a stopped thread.
    pub fn capture(tid: Pid) -> Result<ThreadCtx> {
        let regs = sys::get_regs(tid).map_err(|e| {
            if e.raw_os_error() == Some(libc::EMEDIUMTYPE) {
                Error::Compat { tid }
            } else {
                Error::ptrace("reading the registers", tid)(e)
            }
        })?;
        if !regs.is_native() {
            return Err(Error::Compat { tid });
        }
        let sigmask =
            sys::get_sigmask(tid).map_err(Error::ptrace("reading the signal mask", tid))?;
        let mut buf = vec![0u8; XSTATE_BUF];
        let n = sys::get_xstate(tid, &mut buf)
            .map_err(Error::ptrace("reading the xsave state", tid))?;
        buf.truncate(n);
        Ok(ThreadCtx {
            tid,
            regs,
            sigmask,
            xstate: Xstate::from_bytes(buf),
        })
    }

    /// Puts the FPU state, the signal mask and the registers back, the
    /// registers last: they decide where the thread goes, and until they
    /// are back its lifeline puts the rest back by itself.
    pub fn restore(&self) -> Result<()> {
        let tid = self.tid;
        sys::set_xstate(tid, self.xstate.as_bytes())
            .map_err(Error::ptrace("restoring the xsave state", tid))?;
        self.restore_regs()
    }

    /// Puts back the signal mask and the registers (what a remote syscall
    /// changes), the registers last.
    pub(crate) fn restore_regs(&self) -> Result<()> {
        let tid = self.tid;
        sys::set_sigmask(tid, self.sigmask)
            .map_err(Error::ptrace("restoring the signal mask", tid))?;
        sys::set_regs(tid, &self.regs).map_err(Error::ptrace("restoring the registers", tid))
    }
}

/// How to resume a thread running our code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Until a signal or a ptrace event.
    Cont,
    /// Until its next syscall stop too.
    Syscall,
}

pub(crate) fn resume(tid: Pid, how: Resume, sig: i32) -> Result<()> {
    match how {
        Resume::Cont => sys::cont(tid, sig),
        Resume::Syscall => sys::cont_syscall(tid, sig),
    }
    .map_err(Error::ptrace("resuming", tid))
}

/// What a wait on a thread running our code saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Nothing yet (only without waiting).
    Nothing,
    /// A syscall entry or exit.
    Syscall,
    /// A ptrace-event stop: an interrupt, a group stop, a job-control
    /// notification. The thread is stopped; resuming it goes on.
    Trap,
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// Takes thread `tid`'s next stop (without waiting when `nohang`). A
/// signal about to be delivered is handed on (the thread resumed `how`
/// with it): a stop signal makes the kernel stop the process as it would
/// have, and the group stop comes as a trap. A fault in our code is an
/// error, with the thread left stopped.
pub(crate) fn next_event(tid: Pid, nohang: bool, how: Resume) -> Result<Event> {
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        match sys::wait(tid, flags).map_err(Error::ptrace("waiting for", tid))? {
            Wait::Exited(_) | Wait::Killed(_) => return Err(Error::Exited { pid: tid }),
            Wait::Nothing => return Ok(Event::Nothing),
            Wait::Stopped { syscall: true, .. } => return Ok(Event::Syscall),
            Wait::Stopped { event, .. } if event != 0 => return Ok(Event::Trap),
            Wait::Stopped { sig, .. } => {
                let si =
                    sys::get_siginfo(tid).map_err(Error::ptrace("reading the siginfo", tid))?;
                if is_stop_signal(sig) || si.si_code <= 0 {
                    log::debug!("task {tid}: signal {sig} handed on to the kernel");
                    resume(tid, how, sig)?;
                    continue;
                }
                let regs = sys::get_regs(tid).ok();
                return Err(Error::UnexpectedStop {
                    tid,
                    what: format!(
                        "signal {sig} (code {}) at ip {:#x}",
                        si.si_code,
                        regs.map_or(0, |r| r.ip)
                    ),
                });
            }
        }
    }
}

/// Resumes `tid` with `PTRACE_SYSCALL` until its next syscall stop.
pub(crate) fn to_next_syscall(tid: Pid) -> Result<()> {
    loop {
        resume(tid, Resume::Syscall, 0)?;
        loop {
            match next_event(tid, false, Resume::Syscall)? {
                Event::Syscall => return Ok(()),
                Event::Trap => break,
                Event::Nothing => {}
            }
        }
    }
}

/// Runs the syscall these registers (already set for it) make `tid` run,
/// to its exit stop; returns what it returned. The thread stays at that
/// stop with those registers.
pub(crate) fn run_syscall(tid: Pid, regs: &UserRegs) -> Result<i64> {
    let nr = regs.ax;
    sys::set_regs(tid, regs).map_err(Error::ptrace("setting the registers", tid))?;
    sys::set_sigmask(tid, BLOCK_ALL).map_err(Error::ptrace("blocking signals", tid))?;
    // To the syscall's entry, then to its exit.
    to_next_syscall(tid)?;
    to_next_syscall(tid)?;
    let out = sys::get_regs(tid).map_err(Error::ptrace("reading the registers", tid))?;
    if out.orig_ax != nr {
        return Err(Error::UnexpectedStop {
            tid,
            what: format!(
                "syscall {} ran instead of the remote syscall {nr}",
                out.orig_ax as i64
            ),
        });
    }
    Ok(out.ax as i64)
}

/// How remote syscalls run in a thread.
#[derive(Clone, Debug)]
pub(crate) enum Way {
    /// At the gadget, landing in the thread's original state.
    Lifeline(Lifeline),
    /// At this `syscall` instruction, with nothing to fall back on: the
    /// victim has no code a lifeline can use, or no room on its stack.
    Bare(u64),
}

impl Way {
    /// A lifeline with `gadgets` for the thread of `ctx`, or the bare way.
    pub(crate) fn new(pid: Pid, ctx: &ThreadCtx, gadgets: Option<Gadgets>) -> Result<Way> {
        if let Some(g) = gadgets
            && let Some(l) = Lifeline::new(pid, ctx, g)?
        {
            return Ok(Way::Lifeline(l));
        }
        log::warn!(
            "task {} of process {pid}: no way back should rcriu die while it runs rcriu's code",
            ctx.tid
        );
        Ok(Way::Bare(find_syscall_insn(pid, ctx.tid)?))
    }

    /// The registers that run syscall `nr` with `args`, from `from`.
    pub(crate) fn regs(&self, from: &UserRegs, nr: u64, args: [u64; 6]) -> UserRegs {
        match self {
            Way::Lifeline(l) => l.exit.regs(&l.gadgets.syscall, from, nr, args),
            Way::Bare(ip) => {
                let mut r = from.for_call(*ip, None);
                r.ax = nr;
                r.di = args[0];
                r.si = args[1];
                r.dx = args[2];
                r.r10 = args[3];
                r.r8 = args[4];
                r.r9 = args[5];
                r
            }
        }
    }
}

/// A remote-syscall runner for one seized thread.
#[derive(Debug)]
pub struct Remote<'a> {
    thread: &'a Thread,
    ctx: &'a ThreadCtx,
    way: Way,
}

impl<'a> Remote<'a> {
    /// Prepares remote syscalls in `thread`, whose saved context is `ctx`
    /// (they start from those registers and put them back): finds the
    /// code and writes the frame of its lifeline.
    pub fn new(pid: Pid, thread: &'a Thread, ctx: &'a ThreadCtx) -> Result<Remote<'a>> {
        let way = Way::new(pid, ctx, Gadgets::find(pid)?)?;
        Ok(Remote { thread, ctx, way })
    }

    /// Remote syscalls the way `way` says.
    pub(crate) fn with_way(thread: &'a Thread, ctx: &'a ThreadCtx, way: Way) -> Remote<'a> {
        Remote { thread, ctx, way }
    }

    /// Whether rcriu dying while this runs leaves the thread as it was.
    pub fn has_lifeline(&self) -> bool {
        matches!(self.way, Way::Lifeline(_))
    }

    /// Runs syscall `nr` with `args` in the thread; returns what it
    /// returned (a negative errno on failure).
    pub fn syscall(&self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let regs = self.way.regs(&self.ctx.regs, nr as u64, args);
        let r = run_syscall(self.thread.tid, &regs);
        // Whatever happened, the thread gets its own registers back.
        let back = self.ctx.restore_regs();
        let r = r?;
        back?;
        Ok(r)
    }

    /// As [`Remote::syscall`], turning a negative result into an error.
    pub fn syscall_ok(&self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let r = self.syscall(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(Error::RemoteSyscall {
                name,
                tid: self.thread.tid,
                source: std::io::Error::from_raw_os_error(-r as i32),
            });
        }
        Ok(r as u64)
    }
}

/// `syscall` is `0f 05`.
const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

/// Finds a `syscall` instruction the task can execute: in the vDSO first,
/// else in any executable mapping.
pub(crate) fn find_syscall_insn(pid: Pid, tid: Pid) -> Result<u64> {
    let maps = rcriu_proc::Task::open(pid)
        .and_then(|mut t| t.maps())
        .map_err(Error::proc(pid))?;
    let mut candidates: Vec<_> = maps
        .iter()
        .filter(|v| {
            v.prot
                .contains(rcriu_proc::Prot::EXEC | rcriu_proc::Prot::READ)
        })
        .collect();
    // The vDSO first: small, always there, and its code has syscalls.
    candidates.sort_by_key(|v| v.path != VmaPath::Vdso);
    let mut buf = vec![0u8; 64 * 1024];
    for v in candidates {
        let mut at = v.start;
        while at < v.end {
            let n = ((v.end - at) as usize).min(buf.len());
            let got = match sys::process_vm_read(pid, at, &mut buf[..n]) {
                Ok(got) if got > 0 => got,
                _ => break,
            };
            if let Some(i) = buf[..got].windows(2).position(|w| w == SYSCALL_INSN) {
                return Ok(at + i as u64);
            }
            // Keep the last byte: an instruction may straddle chunks.
            at += got.max(2) as u64 - 1;
        }
    }
    Err(Error::NoSyscallInsn { tid })
}
