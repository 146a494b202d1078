//! Fault injection and interruption.
//!
//! **Fault points**, like CRIU's `CRIU_FAULT`: the environment variable
//! `RCRIU_FAULT=WHERE[:ACTION]` makes a point fire. WHERE is a numbered
//! point `N` ([`FaultPoint`]), `image:NAME` (right after the dump wrote
//! the image whose file name starts with NAME: `image:core`,
//! `image:pages`...), `step:N` (just before rcriu's Nth action on a
//! traced thread: each ptrace request that changes or resumes it, each
//! write into its memory; to kill rcriu at every instant of an
//! infection), or `restorer:STEP` (the restorer, in the new
//! process, fails as it reaches step number STEP, in whichever thread
//! reaches it first), `page-helper` (a restore's page helper, before
//! its first batch), or `write-pages-denied` (the parasite's own page
//! writes are refused with EACCES, as a security module may refuse a
//! process writing into a file rcriu opened). The default action `fail` makes the operation fail
//! there (as any real error would); `kill` SIGKILLs rcriu on the spot;
//! `int`, `term` and `hup` raise that signal in rcriu (which, with the
//! CLI's handlers, aborts the operation); `target` SIGKILLs the process
//! being dumped (it exits mid-dump). The suite uses them to prove that a
//! failure at any point leaves the target as it was, or no process.
//!
//! **Interruption**: [`request_abort`] (called by the CLI's signal
//! handling) makes every operation in progress stop at its next check and
//! undo what it did.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
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
    KillTarget,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Where {
    Point(u32),
    Step(u64),
    Image(String),
    Restorer(u32),
    PageHelper,
    WritePagesDenied,
}

fn configured() -> Option<&'static (Where, Action)> {
    static CONFIG: OnceLock<Option<(Where, Action)>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // Never at the word of a caller that is not root (a copy of
            // rcriu with file capabilities, see `--unprivileged`).
            if !rustix::process::geteuid().is_root() {
                return None;
            }
            parse(&std::env::var("RCRIU_FAULT").ok()?)
        })
        .as_ref()
}

fn parse(v: &str) -> Option<(Where, Action)> {
    let (place, rest) = match v.split_once(':') {
        Some(("image", rest)) => {
            let (name, action) = rest.split_once(':').unwrap_or((rest, "fail"));
            (Where::Image(name.trim().to_owned()), action)
        }
        Some(("restorer", rest)) => {
            let (step, action) = rest.split_once(':').unwrap_or((rest, "fail"));
            (Where::Restorer(step.trim().parse().ok()?), action)
        }
        Some(("step", rest)) => {
            let (n, action) = rest.split_once(':').unwrap_or((rest, "kill"));
            (Where::Step(n.trim().parse().ok()?), action)
        }
        Some(("page-helper", action)) => (Where::PageHelper, action),
        None if v.trim() == "page-helper" => (Where::PageHelper, "fail"),
        None if v.trim() == "write-pages-denied" => (Where::WritePagesDenied, "fail"),
        Some((n, action)) => (Where::Point(n.trim().parse().ok()?), action),
        None => (Where::Point(v.trim().parse().ok()?), "fail"),
    };
    let action = match rest.trim() {
        "fail" => Action::Fail,
        "kill" => Action::Kill,
        "target" => Action::KillTarget,
        "int" => Action::Signal(libc::SIGINT),
        "term" => Action::Signal(libc::SIGTERM),
        "hup" => Action::Signal(libc::SIGHUP),
        other => {
            log::warn!("RCRIU_FAULT: unknown action {other:?}, failing instead");
            Action::Fail
        }
    };
    Some((place, action))
}

/// The process being dumped, for the `target` action.
static TARGET: AtomicI32 = AtomicI32::new(0);

/// Names the process being dumped (for `RCRIU_FAULT=...:target`).
pub fn set_target(pid: i32) {
    TARGET.store(pid, Ordering::SeqCst);
}

fn fire(what: &str, n: u32, action: Action) -> Result<()> {
    log::error!("fault point {what} fires: {action:?}");
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
        Action::KillTarget => {
            let pid = TARGET.load(Ordering::SeqCst);
            if pid > 0 {
                let _ = crate::sys::kill(pid, libc::SIGKILL);
                // Gone for good before the dump goes on.
                let start = std::time::Instant::now();
                while !crate::sys::is_dead(pid)
                    && start.elapsed() < std::time::Duration::from_secs(10)
                {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }
    check_abort()
}

/// Passes fault point `p`: fails, dies or signals here if `RCRIU_FAULT`
/// names it, and stops here if an abort was requested.
pub fn point(p: FaultPoint) -> Result<()> {
    if let Some(hook) = *HOOK.lock().unwrap_or_else(|e| e.into_inner()) {
        hook(p);
    }
    if let Some((Where::Point(n), action)) = configured()
        && *n == p as u32
    {
        return fire(&format!("{n} ({p:?})"), *n, *action);
    }
    check_abort()
}

/// rcriu's actions on traced threads so far (see `step:N`).
static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one action on a traced thread, about to be taken: with
/// `RCRIU_FAULT=step:N[:ACTION]`, the Nth dies (`kill`, the default) or
/// signals rcriu there (a `fail` there is taken as `kill`).
pub fn step() {
    if let Some((Where::Step(n), action)) = configured() {
        let k = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
        if k == *n {
            let action = match action {
                Action::Fail | Action::KillTarget => Action::Kill,
                a => *a,
            };
            let _ = fire(&format!("step:{n}"), 0, action);
        }
    }
}

/// Passes the fault point after image file `name` was written (the
/// number in the error is 0).
pub fn image(name: &str) -> Result<()> {
    if let Some((Where::Image(prefix), action)) = configured()
        && name.starts_with(prefix.as_str())
    {
        return fire(&format!("image:{name}"), 0, *action);
    }
    check_abort()
}

/// Passes the point where a restore's page helper is about to write its
/// first batch.
pub fn page_helper() -> Result<()> {
    if let Some((Where::PageHelper, action)) = configured() {
        return fire("page-helper", 0, *action);
    }
    Ok(())
}

/// Whether `RCRIU_FAULT=write-pages-denied` is set.
pub fn write_pages_denied() -> bool {
    matches!(configured(), Some((Where::WritePagesDenied, _)))
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

/// The restorer step `RCRIU_FAULT=restorer:STEP` names, if any.
pub fn restorer_step() -> Option<u32> {
    match configured() {
        Some((Where::Restorer(step), _)) => Some(*step),
        _ => None,
    }
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
