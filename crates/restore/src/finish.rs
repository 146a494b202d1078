//! rcriu's side of the new process's life: trace it, say go, follow its
//! threads as the restorer creates them until each one stops on its int3,
//! then set every thread's registers, FPU state and signal mask, unmap the
//! restorer's region and let the process go. Anything going wrong kills
//! the process: no half-restored process is left.

use std::io::Write;

use rcriu_compel::abi::restorer::{FAULT_ERRNO, Rseq, Step, ThreadArgs};
use rcriu_compel::sys::{self as csys, Wait};
use rcriu_compel::{Remote, Seized, ThreadCtx, UserRegs, Xstate};
use rcriu_proc::Pid;

use crate::region::Region;
use crate::{Error, Result};

const SI_KERNEL: i32 = 0x80;
/// `PTRACE_O_TRACECLONE`: threads the restorer creates are traced from
/// their first instruction.
const PTRACE_O_TRACECLONE: u32 = 1 << 3;
/// `PTRACE_EVENT_CLONE`.
const PTRACE_EVENT_CLONE: i32 = 3;

/// A process rcriu created, killed unless `defuse`d.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    /// Its threads (the leader first), as the images list them.
    pub tids: Vec<Pid>,
    armed: bool,
}

impl Child {
    pub fn new(pid: Pid, tids: Vec<Pid>) -> Child {
        Child {
            pid,
            tids,
            armed: true,
        }
    }

    /// The process is restored: it lives on.
    pub fn defuse(mut self) -> Pid {
        self.armed = false;
        self.pid
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.armed {
            log::warn!("killing the half-restored process {}", self.pid);
            let _ = csys::kill(self.pid, libc::SIGKILL);
            // Reap every traced thread (the leader's end is reported only
            // once the others are reaped), so that nothing of it is left.
            for &tid in self.tids.iter().skip(1) {
                let _ = csys::wait(tid, 0);
            }
            let _ = csys::wait(self.pid, 0);
        }
    }
}

/// How rcriu traces the new process.
#[derive(Debug, Clone, Copy)]
pub struct Trace {
    /// The restorer creates threads.
    pub threads: bool,
    /// A thread gets seccomp filters (or strict mode): they must not bind
    /// while rcriu still works in the process.
    pub seccomp: bool,
}

/// Traces the new process, gives it the rseq registration it inherited
/// (for the restorer to drop), and says go.
pub fn start(child: &Child, region: &Region, mut go: std::fs::File, trace: Trace) -> Result<()> {
    let pid = child.pid;
    let mut options = csys::PTRACE_O_TRACESYSGOOD | csys::PTRACE_O_EXITKILL;
    if trace.threads {
        options |= PTRACE_O_TRACECLONE;
    }
    if trace.seccomp {
        options |= csys::PTRACE_O_SUSPEND_SECCOMP;
    }
    csys::seize(pid, options).map_err(|e| died(pid, "tracing it", e))?;
    csys::interrupt(pid).map_err(|e| died(pid, "stopping it", e))?;
    wait_stop(pid)?;
    let cfg = csys::get_rseq_config(pid).map_err(|e| died(pid, "reading its rseq", e))?;
    region.set_self_rseq(Rseq {
        addr: cfg.rseq_abi_pointer,
        len: cfg.rseq_abi_size,
        sig: cfg.signature,
    });
    csys::cont(pid, 0).map_err(|e| died(pid, "resuming it", e))?;
    go.write_all(b"g")
        .map_err(|e| died(pid, "telling it to go", e))?;
    Ok(())
}

fn died(pid: Pid, what: &str, e: std::io::Error) -> Error {
    Error::Restorer {
        pid,
        what: what.to_owned(),
        source: e,
    }
}

/// Waits for a ptrace stop of `pid` (after an interrupt).
fn wait_stop(pid: Pid) -> Result<()> {
    loop {
        match csys::wait(pid, 0).map_err(|e| died(pid, "waiting for it", e))? {
            Wait::Stopped { .. } => return Ok(()),
            Wait::Nothing => continue,
            Wait::Exited(code) => {
                return Err(Error::Died {
                    pid,
                    what: format!("exited with status {code} before starting"),
                });
            }
            Wait::Killed(sig) => {
                return Err(Error::Died {
                    pid,
                    what: format!("killed by signal {sig} before starting"),
                });
            }
        }
    }
}

/// Where one thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not created yet, or running its part of the restorer.
    Running,
    /// Stopped on its int3, done.
    Done,
    /// Gone.
    Gone,
}

/// The restorer's errno, as text.
fn errno_text(status: i64) -> String {
    if status == -FAULT_ERRNO {
        return "fault injected (RCRIU_FAULT)".to_owned();
    }
    std::io::Error::from_raw_os_error((-status) as i32).to_string()
}

/// What a failed restorer reported: the step, what of it, the errno.
fn report(region: &Region, tids: &[Pid], describe: &dyn Fn(Step, u32) -> String) -> String {
    for (i, &tid) in tids.iter().enumerate().skip(1) {
        let t: ThreadArgs = region.read_thread(i);
        if t.status < 0 {
            let step = Step::from_u32(t.step);
            return format!(
                "thread {tid}: {} failed ({}): {}",
                step.describe(),
                describe(step, t.index),
                errno_text(t.status)
            );
        }
    }
    let a = region.read_args();
    let step = Step::from_u32(a.step);
    if a.status < 0 {
        format!(
            "{} failed ({}): {}",
            step.describe(),
            describe(step, a.index),
            errno_text(a.status)
        )
    } else {
        format!("while {}", step.describe())
    }
}

/// How a task ended, for messages.
fn ended(w: &Wait) -> String {
    match w {
        Wait::Exited(code) => format!("the restorer exited with status {code}"),
        Wait::Killed(sig) => format!("killed by signal {sig}"),
        _ => "ended".to_owned(),
    }
}

/// Follows the restorer in every thread until each one stops on its int3,
/// or one fails.
pub fn wait_restorer(
    child: &Child,
    region: &Region,
    describe: impl Fn(Step, u32) -> String,
) -> Result<()> {
    let pid = child.pid;
    let tids = &child.tids;
    let mut state = vec![State::Running; tids.len()];
    let fail = |what: String| Error::Died { pid, what };
    loop {
        let mut progress = false;
        for (i, &tid) in tids.iter().enumerate() {
            // Threads done (stopped on their int3) are still watched: if
            // another fails, the whole process dies, and each must be
            // reaped before the leader's end is told.
            if state[i] == State::Gone {
                continue;
            }
            let w = match csys::wait(tid, libc::WNOHANG) {
                // Not created yet.
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) && i > 0 => continue,
                Err(e) => return Err(died(tid, "waiting for it", e)),
                Ok(w) => w,
            };
            match w {
                Wait::Nothing => continue,
                Wait::Exited(_) | Wait::Killed(_) => {
                    progress = true;
                    state[i] = State::Gone;
                    // The leader's end is told once every thread is gone.
                    if i == 0 {
                        return Err(fail(format!(
                            "{}: {}",
                            ended(&w),
                            report(region, tids, &describe)
                        )));
                    }
                }
                Wait::Stopped { .. } if state[i] == State::Done => {
                    return Err(fail(format!(
                        "thread {tid} stopped again after its restore"
                    )));
                }
                Wait::Stopped { sig, event, .. } => {
                    progress = true;
                    if event == 0 && sig == libc::SIGTRAP {
                        let si =
                            csys::get_siginfo(tid).map_err(|e| died(tid, "reading its stop", e))?;
                        if si.si_code == SI_KERNEL {
                            state[i] = State::Done;
                            continue;
                        }
                    }
                    if event == 0
                        && matches!(
                            sig,
                            libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                        )
                    {
                        return Err(fail(format!(
                            "the restorer faulted (signal {sig}) in thread {tid}: {}",
                            report(region, tids, &describe)
                        )));
                    }
                    // A clone event, a new thread's first stop, or a signal
                    // someone sent (the restorer blocks every signal): go on.
                    if event == PTRACE_EVENT_CLONE {
                        log::debug!("process {pid}: a thread was created");
                    }
                    csys::cont(tid, 0).map_err(|e| died(tid, "resuming it", e))?;
                }
            }
        }
        if state.iter().all(|s| *s == State::Done) {
            return Ok(());
        }
        if !progress {
            // Sleep until some child has news; when that is not one of
            // ours (another child of this process), poll.
            let who = csys::wait_any_peek().map_err(|e| died(pid, "waiting for it", e))?;
            if !tids.contains(&who) {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    }
}

/// One thread's final state.
#[derive(Debug)]
pub struct FinalThread {
    pub tid: Pid,
    pub regs: UserRegs,
    pub sigmask: u64,
}

/// The final touch: every thread's registers, FPU state and signal mask;
/// the region goes; the process runs (or stays stopped when it was).
/// `xstate(i, size)` builds thread i's xsave area of `size` bytes.
///
/// `trap_action`: the address, in the region, of SIGTRAP's action when the
/// dump set one. The restorer leaves it (every thread's int3 raises
/// SIGTRAP while signals are blocked, which resets its action); it is set
/// here, through a syscall in the process, before the region goes.
pub fn finish(
    child: Child,
    region: &Region,
    threads: Vec<FinalThread>,
    xstate: impl Fn(usize, usize) -> Result<Xstate>,
    stopped: bool,
    trap_action: Option<u64>,
) -> Result<Pid> {
    let pid = child.pid;
    let mut buf = vec![0u8; 16 * 1024];
    let size =
        csys::get_xstate(pid, &mut buf).map_err(|e| died(pid, "reading its xsave size", e))?;
    let mut ctxs = Vec::with_capacity(threads.len());
    for (i, t) in threads.into_iter().enumerate() {
        ctxs.push(ThreadCtx {
            tid: t.tid,
            regs: t.regs,
            sigmask: t.sigmask,
            xstate: xstate(i, size)?,
        });
    }
    let seized = Seized::adopt(pid, &child.tids);
    let len = region.end() - region.start();
    let set = || -> Result<()> {
        let remote = Remote::new(pid, seized.leader(), &ctxs[0])?;
        if let Some(act) = trap_action {
            remote.syscall_ok(
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [libc::SIGTRAP as u64, act, 0, 8, 0, 0],
            )?;
        }
        remote.syscall_ok(
            "munmap",
            libc::SYS_munmap,
            [region.start(), len, 0, 0, 0, 0],
        )?;
        for ctx in &ctxs {
            ctx.restore()?;
        }
        Ok(())
    };
    if let Err(e) = set() {
        // Killed while still stopped: not one instruction of a half-set
        // process runs.
        if let Err(k) = seized.kill() {
            log::error!("killing process {pid}: {k}");
        }
        return Err(e);
    }
    if stopped {
        seized.stop_on_release(libc::SIGSTOP);
    }
    seized.release()?;
    Ok(child.defuse())
}
