//! Running things in a seized thread: its saved context, remote syscalls,
//! and waiting for the stop that ends what we ran.
//!
//! A remote syscall needs no change to the victim's memory: the thread is
//! pointed at a `syscall` instruction that already exists in one of its
//! executable mappings (the vDSO has some), with the syscall's number and
//! arguments in its registers, and traced with `PTRACE_SYSCALL` to the
//! syscall's exit, where the result is read. Then the registers and the
//! signal mask go back as they were.

use rcriu_proc::{Pid, VmaPath};

use crate::regs::{UserRegs, Xstate};
use crate::seize::Thread;
use crate::sys::{self, Wait};
use crate::{Error, Result};

/// Every signal blocked but SIGTRAP: what the victim runs our code with.
/// (A SIGTRAP forced by int3 while blocked would reset its handler.)
pub const BLOCK_ALL_BUT_TRAP: u64 = !(1u64 << (libc::SIGTRAP - 1));

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

    /// Puts the registers, FPU state and signal mask back.
    pub fn restore(&self) -> Result<()> {
        let tid = self.tid;
        sys::set_regs(tid, &self.regs).map_err(Error::ptrace("restoring the registers", tid))?;
        sys::set_xstate(tid, self.xstate.as_bytes())
            .map_err(Error::ptrace("restoring the xsave state", tid))?;
        sys::set_sigmask(tid, self.sigmask).map_err(Error::ptrace("restoring the signal mask", tid))
    }

    /// Puts back the registers and signal mask only (what a remote syscall
    /// changes).
    fn restore_regs(&self) -> Result<()> {
        let tid = self.tid;
        sys::set_regs(tid, &self.regs).map_err(Error::ptrace("restoring the registers", tid))?;
        sys::set_sigmask(tid, self.sigmask).map_err(Error::ptrace("restoring the signal mask", tid))
    }
}

/// How to resume a thread running our code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Until it traps (int3).
    Cont,
    /// Until its next syscall stop.
    Syscall,
}

/// Why the thread stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Our int3.
    Trap,
    /// A syscall entry or exit.
    Syscall,
}

const SI_KERNEL: i32 = 0x80;

/// What a wait on a thread running our code saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Nothing yet (only without waiting).
    Nothing,
    /// The stop our code causes.
    Ours(Stop),
    /// A signal that was held back for the release (or a ptrace event
    /// with nothing to deliver): the thread must be resumed.
    HeldBack,
}

/// Resumes `t` and waits for the stop our code causes. Signals that
/// arrive meanwhile are held back for the release (stop signals, and
/// signals someone sent); a fault in our code is an error, with the
/// thread left stopped for the caller to restore.
pub(crate) fn resume_until(t: &Thread, how: Resume) -> Result<Stop> {
    let tid = t.tid;
    loop {
        let r = match how {
            Resume::Cont => sys::cont(tid, 0),
            Resume::Syscall => sys::cont_syscall(tid, 0),
        };
        r.map_err(Error::ptrace("resuming", tid))?;
        loop {
            match next_event(t, false)? {
                Event::Ours(stop) => return Ok(stop),
                Event::HeldBack => break,
                Event::Nothing => continue,
            }
        }
    }
}

/// Takes `t`'s next stop (without waiting when `nohang`).
pub(crate) fn next_event(t: &Thread, nohang: bool) -> Result<Event> {
    let tid = t.tid;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    match sys::wait(tid, flags).map_err(Error::ptrace("waiting for", tid))? {
        Wait::Exited(_) | Wait::Killed(_) => Err(Error::Exited { pid: tid }),
        Wait::Nothing => Ok(Event::Nothing),
        Wait::Stopped { syscall: true, .. } => Ok(Event::Ours(Stop::Syscall)),
        Wait::Stopped { sig, event, .. } => {
            if event != 0 {
                // An interrupt or group-stop report: nothing to deliver.
                if is_stop_signal(sig) {
                    t.restop.set(Some(sig));
                }
                return Ok(Event::HeldBack);
            }
            classify_signal(t, sig)
        }
    }
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

fn classify_signal(t: &Thread, sig: i32) -> Result<Event> {
    let tid = t.tid;
    let si = sys::get_siginfo(tid).map_err(Error::ptrace("reading the siginfo", tid))?;
    let code = si.si_code;
    if sig == libc::SIGTRAP && code == SI_KERNEL {
        return Ok(Event::Ours(Stop::Trap));
    }
    if is_stop_signal(sig) {
        log::debug!("task {tid}: holding back stop signal {sig}");
        t.restop.set(Some(sig));
        return Ok(Event::HeldBack);
    }
    if code <= 0 {
        // Sent by someone (kill, tgkill, sigqueue): keep it for later.
        log::debug!("task {tid}: holding back signal {sig} sent meanwhile");
        t.resend.set(t.resend.get() | 1u64 << (sig - 1));
        return Ok(Event::HeldBack);
    }
    let regs = sys::get_regs(tid).ok();
    Err(Error::UnexpectedStop {
        tid,
        what: format!(
            "signal {sig} (code {code}) at ip {:#x}",
            regs.map_or(0, |r| r.ip)
        ),
    })
}

/// A remote-syscall runner for one seized thread.
#[derive(Debug)]
pub struct Remote<'a> {
    thread: &'a Thread,
    ctx: &'a ThreadCtx,
    syscall_ip: u64,
}

/// `syscall` is `0f 05`.
const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

impl<'a> Remote<'a> {
    /// Prepares remote syscalls in `thread`, whose saved context is `ctx`
    /// (they start from those registers and put them back).
    pub fn new(pid: Pid, thread: &'a Thread, ctx: &'a ThreadCtx) -> Result<Remote<'a>> {
        let syscall_ip = find_syscall_insn(pid, thread.tid)?;
        log::debug!("remote syscalls in {} at {syscall_ip:#x}", thread.tid);
        Ok(Remote {
            thread,
            ctx,
            syscall_ip,
        })
    }

    /// As [`Remote::new`], with the address of a `syscall` instruction
    /// already found.
    pub(crate) fn with_ip(thread: &'a Thread, ctx: &'a ThreadCtx, syscall_ip: u64) -> Remote<'a> {
        Remote {
            thread,
            ctx,
            syscall_ip,
        }
    }

    /// Where the syscalls run.
    pub(crate) fn syscall_ip(&self) -> u64 {
        self.syscall_ip
    }

    /// Runs syscall `nr` with `args` in the thread; returns what it
    /// returned (a negative errno on failure).
    pub fn syscall(&self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let r = self.run(nr, args);
        // Whatever happened, the thread gets its own registers back.
        let back = self.ctx.restore_regs();
        let r = r?;
        back?;
        Ok(r)
    }

    fn run(&self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let tid = self.thread.tid;
        let mut regs = self.ctx.regs.for_call(self.syscall_ip, None);
        regs.ax = nr as u64;
        regs.di = args[0];
        regs.si = args[1];
        regs.dx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        sys::set_sigmask(tid, BLOCK_ALL_BUT_TRAP)
            .map_err(Error::ptrace("blocking signals", tid))?;
        sys::set_regs(tid, &regs).map_err(Error::ptrace("setting the registers", tid))?;
        // To the syscall's entry, then to its exit.
        for _ in 0..2 {
            let stop = resume_until(self.thread, Resume::Syscall)?;
            if stop != Stop::Syscall {
                return Err(Error::UnexpectedStop {
                    tid,
                    what: "a trap instead of the remote syscall".into(),
                });
            }
        }
        let out = sys::get_regs(tid).map_err(Error::ptrace("reading the registers", tid))?;
        if out.orig_ax != nr as u64 {
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

/// Finds a `syscall` instruction the task can execute: in the vDSO first,
/// else in any executable mapping.
fn find_syscall_insn(pid: Pid, tid: Pid) -> Result<u64> {
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
