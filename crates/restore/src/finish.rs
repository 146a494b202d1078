//! rcriu's side of the new process's life: trace it, say go, wait for the
//! restorer's stop, then set the registers, the FPU state and the signal
//! mask, unmap the restorer's region and let the process go. Anything
//! going wrong kills the process: no half-restored process is left.

use std::io::Write;

use rcriu_compel::abi::restorer::{Rseq, Step};
use rcriu_compel::sys::{self as csys, Wait};
use rcriu_compel::{Remote, Seized, ThreadCtx, UserRegs, Xstate};
use rcriu_proc::Pid;

use crate::region::Region;
use crate::{Error, Result};

const SI_KERNEL: i32 = 0x80;

/// A process rcriu created, killed unless `defuse`d.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    armed: bool,
}

impl Child {
    pub fn new(pid: Pid) -> Child {
        Child { pid, armed: true }
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
            // Reap it, so that nothing of it is left.
            let _ = csys::wait(self.pid, 0);
        }
    }
}

/// Traces the new process, gives it the rseq registration it inherited
/// (for the restorer to drop), and says go.
pub fn start(child: &Child, region: &Region, mut go: std::fs::File) -> Result<()> {
    let pid = child.pid;
    csys::seize(pid, csys::PTRACE_O_TRACESYSGOOD | csys::PTRACE_O_EXITKILL)
        .map_err(|e| died(pid, "tracing it", e))?;
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

/// Waits for the restorer to stop on its int3, or for it to fail.
pub fn wait_restorer(
    child: &Child,
    region: &Region,
    describe: impl Fn(Step, u32) -> String,
) -> Result<()> {
    let pid = child.pid;
    loop {
        match csys::wait(pid, 0).map_err(|e| died(pid, "waiting for it", e))? {
            Wait::Nothing => continue,
            Wait::Exited(code) => {
                let a = region.read_args();
                let step = Step::from_u32(a.step);
                let errno = (-a.status) as i32;
                return Err(Error::Restorer {
                    pid,
                    what: format!(
                        "{} failed ({}; restorer exit status {code})",
                        step.describe(),
                        describe(step, a.index)
                    ),
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
            Wait::Killed(sig) => {
                let a = region.read_args();
                return Err(Error::Died {
                    pid,
                    what: format!(
                        "killed by signal {sig} while {}",
                        Step::from_u32(a.step).describe()
                    ),
                });
            }
            Wait::Stopped { sig, event, .. } => {
                if event == 0 && sig == libc::SIGTRAP {
                    let si =
                        csys::get_siginfo(pid).map_err(|e| died(pid, "reading its stop", e))?;
                    if si.si_code == SI_KERNEL {
                        return Ok(());
                    }
                }
                if event == 0
                    && matches!(
                        sig,
                        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                    )
                {
                    let a = region.read_args();
                    return Err(Error::Died {
                        pid,
                        what: format!(
                            "the restorer faulted (signal {sig}) while {}",
                            Step::from_u32(a.step).describe()
                        ),
                    });
                }
                // Anything else (a stop, a signal someone sent) waits: the
                // restorer blocks every signal.
                csys::cont(pid, 0).map_err(|e| died(pid, "resuming it", e))?;
            }
        }
    }
}

/// The final touch: registers, FPU state, signal mask; the region goes;
/// the process runs (or stays stopped when it was).
pub fn finish(
    child: Child,
    region: &Region,
    regs: UserRegs,
    sigmask: u64,
    xstate: impl FnOnce(usize) -> Result<Xstate>,
    stopped: bool,
) -> Result<Pid> {
    let pid = child.pid;
    let mut buf = vec![0u8; 16 * 1024];
    let size =
        csys::get_xstate(pid, &mut buf).map_err(|e| died(pid, "reading its xsave size", e))?;
    let ctx = ThreadCtx {
        tid: pid,
        regs,
        sigmask,
        xstate: xstate(size)?,
    };
    let seized = Seized::adopt(pid, &[pid]);
    let len = region.end() - region.start();
    Remote::new(pid, seized.leader(), &ctx)?.syscall_ok(
        "munmap",
        libc::SYS_munmap,
        [region.start(), len, 0, 0, 0, 0],
    )?;
    ctx.restore()?;
    if stopped {
        seized.stop_on_release(libc::SIGSTOP);
    }
    seized.release()?;
    Ok(child.defuse())
}
