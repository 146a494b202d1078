//! Fault injection and interruption.
//!
//! **Fault points**, like CRIU's `CRIU_FAULT`: the environment variable
//! `RCRIU_FAULT=N[:ACTION]` makes point `N` fire. The default action
//! `fail` makes the operation fail there (as any real error would);
//! `kill` SIGKILLs rcriu on the spot; `int`, `term` and `hup` raise that
//! signal in rcriu (which, with the CLI's handlers, aborts the operation).
//! The suite uses them to prove that a failure at any point leaves the
//! target as it was.
//!
//! **Interruption**: [`request_abort`] (called by the CLI's signal
//! handling) makes every operation in progress stop at its next check and
//! undo what it did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{Error, Result};

/// The numbered fault points. Numbers are stable: tests and scripts name
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FaultPoint {
    /// Every thread is seized and stopped.
    AfterSeize = 1,
    /// The parasite runs as a daemon in the victim.
    AfterInfect = 2,
    /// Page dumping is under way: some pages are in the pipe.
    MidPageDump = 3,
    /// The parasite is gone and the registers are back.
    AfterCure = 4,
    /// Images are being written (used by the dump).
    MidWrite = 5,
    /// The parasite area is mapped but the parasite not started.
    AfterMap = 6,
    /// `--freeze-cgroup`: the cgroup is frozen and every task in it has
    /// been attached and interrupted, before the thaw.
    Frozen = 7,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Fail,
    Kill,
    Signal(i32),
}

fn configured() -> Option<(u32, Action)> {
    static CONFIG: OnceLock<Option<(u32, Action)>> = OnceLock::new();
    *CONFIG.get_or_init(|| {
        let v = std::env::var("RCRIU_FAULT").ok()?;
        let (n, action) = v.split_once(':').unwrap_or((&v, "fail"));
        let n = n.trim().parse().ok()?;
        let action = match action.trim() {
            "fail" => Action::Fail,
            "kill" => Action::Kill,
            "int" => Action::Signal(libc::SIGINT),
            "term" => Action::Signal(libc::SIGTERM),
            "hup" => Action::Signal(libc::SIGHUP),
            other => {
                log::warn!("RCRIU_FAULT: unknown action {other:?}, failing instead");
                Action::Fail
            }
        };
        Some((n, action))
    })
}

/// Passes fault point `p`: fails, dies or signals here if `RCRIU_FAULT`
/// names it, and stops here if an abort was requested.
pub fn point(p: FaultPoint) -> Result<()> {
    if let Some(hook) = *HOOK.lock().unwrap_or_else(|e| e.into_inner()) {
        hook(p);
    }
    if let Some((n, action)) = configured()
        && n == p as u32
    {
        {
            log::error!("fault point {n} ({p:?}) fires: {action:?}");
            match action {
                Action::Fail => return Err(Error::Fault(n)),
                Action::Kill => {
                    let _ = crate::sys::kill(std::process::id() as i32, libc::SIGKILL);
                }
                Action::Signal(sig) => {
                    // To this very thread: with the signal unblocked here, its
                    // handler has run when tgkill returns.
                    let pid = std::process::id() as i32;
                    let _ = crate::sys::tgkill(pid, crate::sys::gettid(), sig);
                }
            }
        }
    }
    check_abort()
}

/// A function every fault point calls as it is passed.
pub type Hook = fn(FaultPoint);

static HOOK: Mutex<Option<Hook>> = Mutex::new(None);

/// Makes every fault point call `hook` as it is passed (`None` to stop):
/// a test running a dump in its own process looks at the world at that
/// point (a freezer's state while the tasks are seized, say).
pub fn set_hook(hook: Option<Hook>) {
    *HOOK.lock().unwrap_or_else(|e| e.into_inner()) = hook;
}

static ABORT: AtomicBool = AtomicBool::new(false);

/// Asks every operation in progress to stop and undo (safe to call from a
/// signal handler: it only stores a flag).
pub fn request_abort() {
    ABORT.store(true, Ordering::SeqCst);
}

/// Whether an abort was requested.
pub fn abort_requested() -> bool {
    ABORT.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once an abort was requested.
pub fn check_abort() -> Result<()> {
    if abort_requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
