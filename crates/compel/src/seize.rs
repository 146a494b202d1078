//! Seizing: every thread of a process stopped under ptrace, and released
//! exactly as it was.
//!
//! Each thread is attached with `PTRACE_SEIZE` (which does not stop it
//! and leaves its signal and group-stop state alone) and stopped with
//! `PTRACE_INTERRUPT`. The task list is read again until a pass finds no
//! thread that is not seized yet, so threads created meanwhile are caught
//! and threads that exit are dropped.
//!
//! Job control stays the kernel's: a stop signal that comes while seizing
//! or dumping is handed on, never held back, so that on release (or if
//! rcriu dies) the kernel leaves the process stopped if it was stopped and
//! not continued since, and running otherwise.

use std::cell::Cell;
use std::collections::BTreeSet;

use rcriu_proc::{Pid, TaskState};

use crate::freezer::{self, Freezer};
use crate::sys::{self, Wait};
use crate::{Error, Result};

/// How many passes over the task list before giving up on a process whose
/// threads keep spawning faster than we seize them.
const MAX_SEIZE_PASSES: usize = 64;

/// One seized thread.
#[derive(Debug)]
pub struct Thread {
    pub tid: Pid,
    /// The stop signal of the group stop the thread was in when seized
    /// (the process was stopped), if any.
    pub stopped_by: Option<i32>,
    /// Seccomp mode (0 none, 1 strict, 2 filter).
    pub seccomp: u32,
}

/// A process with every thread seized and stopped. Dropping it releases
/// the threads; [`Seized::release`] does so and reports errors.
#[derive(Debug)]
pub struct Seized {
    pid: Pid,
    threads: Vec<Thread>,
    released: bool,
    /// A freezer cgroup that was frozen before the dump: frozen again on
    /// release.
    refreeze: Option<Freezer>,
    /// A stop signal to send as the threads are let go (a restored process
    /// that was stopped when dumped).
    stop_on_release: Cell<Option<i32>>,
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

fn options(seccomp: u32) -> u32 {
    let mut o = sys::PTRACE_O_TRACESYSGOOD;
    if seccomp != 0 {
        // Let the parasite's syscalls through the task's filters.
        o |= sys::PTRACE_O_SUSPEND_SECCOMP;
    }
    o
}

fn seccomp_mode(s: &rcriu_proc::Status) -> u32 {
    match s.seccomp {
        Some(rcriu_proc::SeccompMode::Strict) => 1,
        Some(rcriu_proc::SeccompMode::Filter) => 2,
        Some(rcriu_proc::SeccompMode::Other(n)) => n,
        _ => 0,
    }
}

/// Process `pid` and its descendants, as the children files of their
/// threads name them now (those that vanish meanwhile are left out): the
/// tree as it is while frozen, or a guess made before the freeze.
pub fn descendants(pid: Pid) -> BTreeSet<Pid> {
    let mut out = BTreeSet::from([pid]);
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(task) = rcriu_proc::Task::open(p) else {
            continue;
        };
        for tid in task.tasks().unwrap_or_default() {
            let Ok(mut t) = rcriu_proc::Task::open_thread(p, tid) else {
                continue;
            };
            for c in t.children().unwrap_or_default() {
                if out.insert(c) {
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Whether `pid` is rcriu or one of its ancestors (dumping those would
/// freeze ourselves).
fn is_self_or_ancestor(pid: Pid) -> bool {
    let mut cur = std::process::id() as Pid;
    for _ in 0..4096 {
        if cur == pid {
            return true;
        }
        if cur <= 1 {
            return false;
        }
        match rcriu_proc::Task::open(cur).and_then(|mut t| t.status()) {
            Ok(s) => cur = s.ppid,
            Err(_) => return false,
        }
    }
    false
}

impl Seized {
    /// Seizes every thread of process `pid`.
    pub fn seize(pid: Pid) -> Result<Seized> {
        check_target(pid)?;
        let seized = Seized {
            pid,
            threads: Vec::new(),
            released: false,
            refreeze: None,
            stop_on_release: Cell::new(None),
        };
        seized.passes(BTreeSet::new())
    }

    /// Seizes every thread of process `pid`, which lives in freezer
    /// cgroup `freezer` (criu's `--freeze-cgroup`), and every process of
    /// its tree in the cgroup, as criu does: the cgroup is frozen, every
    /// task in it is attached and interrupted while frozen, then the
    /// cgroup is thawed and each task stops under ptrace as it wakes. A
    /// cgroup holding tasks of processes outside the tree under `pid` is
    /// refused (thawed, nothing attached), naming them. Returns `pid`
    /// seized, the other processes seized (by pid; descendants outside the
    /// cgroup are the caller's to seize), and the freezer's state before
    /// the dump (a frozen one is frozen again when `pid` is released,
    /// before any task is let go, as criu does).
    pub fn seize_frozen(
        pid: Pid,
        freezer: &Freezer,
    ) -> Result<(Seized, Vec<Seized>, freezer::State)> {
        check_target(pid)?;
        let origin = match freezer.state()? {
            freezer::State::Thawed => freezer::State::Thawed,
            _ => freezer::State::Frozen,
        };
        let frozen = freezer.freeze()?;
        // Frozen, the tree cannot change: its processes are found now.
        let tree = descendants(pid);
        let mut mine: Vec<(Pid, Pid)> = Vec::new();
        let mut others = Vec::new();
        for tid in freezer.tasks()? {
            let Ok(mut t) = rcriu_proc::Task::open(tid) else {
                continue; // gone, or a kernel thread's leftovers
            };
            let Ok(st) = t.status() else { continue };
            if tree.contains(&st.tgid) {
                mine.push((st.tgid, tid));
            } else if !is_kernel_thread(tid) {
                others.push((tid, st.tgid, String::from_utf8_lossy(&st.name).into_owned()));
            }
        }
        if !others.is_empty() {
            frozen.thaw()?;
            return Err(Error::FreezerOthers {
                path: freezer.path().to_owned(),
                pid,
                others,
            });
        }
        if !mine.iter().any(|&(tgid, _)| tgid == pid) {
            frozen.thaw()?;
            return Err(Error::NotInFreezer {
                path: freezer.path().to_owned(),
                pid,
            });
        }
        mine.sort_unstable_by_key(|&(tgid, tid)| (tgid != pid, tgid, tid));
        let mut attached = Vec::new();
        let mut failed = None;
        for &(tgid, tid) in &mine {
            match attach(tgid, tid) {
                Ok(Some(seccomp)) => attached.push((tgid, tid, seccomp)),
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none()
            && let Err(e) = crate::fault::point(crate::fault::FaultPoint::Frozen)
        {
            failed = Some(e);
        }
        // Attached tasks stop as they thaw; until then they cannot even
        // be detached.
        frozen.thaw()?;
        // The root first: dropped first, it refreezes before the others
        // are let go.
        let mut procs: Vec<(Seized, BTreeSet<Pid>)> = Vec::new();
        for (tgid, tid, seccomp) in attached {
            if procs.last().is_none_or(|(s, _)| s.pid != tgid) {
                procs.push((
                    Seized {
                        pid: tgid,
                        threads: Vec::new(),
                        released: false,
                        refreeze: (tgid == pid && origin == freezer::State::Frozen)
                            .then(|| freezer.clone()),
                        stop_on_release: Cell::new(None),
                    },
                    BTreeSet::new(),
                ));
            }
            let Some((seized, known)) = procs.last_mut() else {
                continue;
            };
            known.insert(tid);
            match wait_seized(tid, seccomp) {
                Ok(Some(t)) => seized.threads.push(t),
                Ok(None) => {}
                Err(e) => {
                    let _ = sys::detach(tid, 0);
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            // Dropping what was seized releases it (the root first).
            return Err(e);
        }
        if procs.first().is_none_or(|(s, _)| s.pid != pid) {
            return Err(Error::Exited { pid });
        }
        log::info!(
            "seized {} process(es) of the tree of {pid} in frozen cgroup {}",
            procs.len(),
            freezer.path().display()
        );
        // Declared before the root, dropped after it: on an error the
        // root refreezes first.
        let mut all = Vec::with_capacity(procs.len());
        let mut procs = procs.into_iter();
        let (first, known) = procs.next().ok_or(Error::Exited { pid })?;
        let root = first.passes(known)?;
        for (s, known) in procs {
            let p = s.pid;
            match s.passes(known) {
                Ok(s) => all.push(s),
                // Exited meanwhile (killed from outside): the tree finds
                // its zombie, or nothing.
                Err(Error::Exited { .. }) => log::info!("process {p} exited while seized"),
                Err(e) => return Err(e),
            }
        }
        Ok((root, all, origin))
    }

    /// Reads the task list again and again, seizing threads not seen yet,
    /// until a pass finds none.
    fn passes(mut self, mut known: BTreeSet<Pid>) -> Result<Seized> {
        let pid = self.pid;
        for _ in 0..MAX_SEIZE_PASSES {
            let tids = rcriu_proc::Task::open(pid)
                .and_then(|t| t.tasks())
                .map_err(Error::proc(pid))?;
            let new: Vec<Pid> = tids.into_iter().filter(|t| !known.contains(t)).collect();
            if new.is_empty() {
                if self.threads.is_empty() {
                    return Err(Error::Exited { pid });
                }
                self.check_leader()?;
                crate::fault::point(crate::fault::FaultPoint::AfterSeize)?;
                log::info!("seized process {pid}: {} thread(s)", self.threads.len());
                return Ok(self);
            }
            for tid in new {
                known.insert(tid);
                if let Some(t) = seize_thread(pid, tid)? {
                    self.threads.push(t);
                }
            }
        }
        Err(Error::UnexpectedStop {
            tid: pid,
            what: format!("threads keep appearing after {MAX_SEIZE_PASSES} passes"),
        })
    }

    /// The leader must be among the seized threads: a dead leader with
    /// live threads cannot be dumped.
    fn check_leader(&self) -> Result<()> {
        if self.threads.iter().any(|t| t.tid == self.pid) {
            return Ok(());
        }
        Err(Error::DeadLeader {
            pid: self.pid,
            threads: self.threads.len() as u32,
        })
    }

    /// Takes over threads of `pid` that this process already traces and
    /// that are stopped (a process rcriu created, for one): releasing
    /// detaches them.
    pub fn adopt(pid: Pid, tids: &[Pid]) -> Seized {
        Seized {
            pid,
            threads: tids
                .iter()
                .map(|&tid| Thread {
                    tid,
                    stopped_by: None,
                    seccomp: 0,
                })
                .collect(),
            released: false,
            refreeze: None,
            stop_on_release: Cell::new(None),
        }
    }

    /// Makes the release stop the process with `sig` (for a process that
    /// was stopped when dumped).
    pub fn stop_on_release(&self, sig: i32) {
        self.stop_on_release.set(Some(sig));
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn threads(&self) -> &[Thread] {
        &self.threads
    }

    pub fn thread(&self, tid: Pid) -> Option<&Thread> {
        self.threads.iter().find(|t| t.tid == tid)
    }

    /// The thread-group leader.
    pub fn leader(&self) -> &Thread {
        self.thread(self.pid)
            .expect("check_leader made sure the leader is seized")
    }

    /// Whether the process was stopped (by a stop signal) when seized.
    pub fn was_stopped(&self) -> bool {
        self.threads.iter().any(|t| t.stopped_by.is_some())
    }

    /// Detaches every thread, leaving the process running, or stopped
    /// again if it was stopped.
    pub fn release(mut self) -> Result<()> {
        self.release_inner()
    }

    /// Kills the process (SIGKILL) and detaches: the end of a dump that
    /// does not leave the process running.
    pub fn kill(mut self) -> Result<()> {
        self.released = true;
        let r = sys::kill(self.pid, libc::SIGKILL).map_err(Error::ptrace("kill", self.pid));
        // A tracee killed meanwhile may already be on its way out: then it
        // can no longer be detached (ESRCH), and a thread other than the
        // leader stays a zombie until its tracer reaps it (which the
        // leader's own exit waits for, and so does the last thread of a
        // pid namespace's init, reaping its namespace): each is heard as
        // it ends, none waited for alone (that one may wait for another).
        let mut pending: Vec<Pid> = self
            .threads
            .iter()
            .filter(|t| t.tid != self.pid)
            .filter(|t| sys::detach(t.tid, 0).is_err_and(|e| e.raw_os_error() == Some(libc::ESRCH)))
            .map(|t| t.tid)
            .collect();
        let _ = sys::detach(self.pid, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !pending.is_empty() && std::time::Instant::now() < deadline {
            pending.retain(|&tid| match sys::wait(tid, libc::WNOHANG) {
                // Stopped after all: it can be let go.
                Ok(Wait::Stopped { .. }) => sys::detach(tid, 0).is_err(),
                Ok(Wait::Nothing) => true,
                _ => false,
            });
            if !pending.is_empty() {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        r
    }

    /// Detaches from `t`. A tracee killed meanwhile (by someone else)
    /// may already be on its way out: then it can no longer be detached
    /// (ESRCH), and a thread other than the leader stays a zombie until
    /// its tracer reaps it (which the leader's own exit waits for), so it
    /// is reaped.
    fn detach_or_reap(&self, t: &Thread) -> std::io::Result<()> {
        let r = sys::detach(t.tid, 0);
        if let Err(e) = &r
            && e.raw_os_error() == Some(libc::ESRCH)
            && t.tid != self.pid
        {
            loop {
                match sys::wait(t.tid, 0) {
                    // Stopped after all: it can be let go.
                    Ok(Wait::Stopped { .. }) if sys::detach(t.tid, 0).is_ok() => return Ok(()),
                    Ok(Wait::Stopped { .. } | Wait::Nothing) => {}
                    _ => break,
                }
            }
        }
        r
    }

    fn release_inner(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        if let Some(f) = &self.refreeze {
            // Frozen as it was found (criu does it before detaching too).
            if let Err(e) = f.refreeze() {
                log::error!("{e}");
            }
        }
        // A process that was stopped, or that someone stopped meanwhile,
        // is stopped again by the kernel as the threads are let go (unless
        // a SIGCONT came since): nothing to send.
        if let Some(sig) = self.stop_on_release.get() {
            // Queued while the threads are still trapped: the group stop
            // happens as they are let go.
            if let Err(e) = sys::kill(self.pid, sig) {
                log::error!(
                    "cannot stop process {} again with signal {sig}: {e}",
                    self.pid
                );
            }
        }
        let mut first_err = None;
        for t in &self.threads {
            if let Err(e) = self.detach_or_reap(t) {
                // ESRCH: the thread died meanwhile (killed while seized).
                if e.raw_os_error() != Some(libc::ESRCH) {
                    log::error!("cannot detach from task {}: {e}", t.tid);
                    first_err.get_or_insert(Error::Ptrace {
                        what: "detaching",
                        tid: t.tid,
                        source: e,
                    });
                }
            }
        }
        if self.stop_on_release.get().is_some() && first_err.is_none() {
            wait_group_stop(self.pid);
        }
        match first_err {
            Some(e) => Err(e),
            None => {
                log::info!("released process {}", self.pid);
                Ok(())
            }
        }
    }
}

/// Waits until process `pid`, let go with a stop signal queued, shows
/// the group stop done (`T` in /proc/PID/stat), so that whoever asked it
/// left stopped finds it stopped; gives up after two seconds (a SIGCONT
/// from elsewhere may have come first) or when the process is gone.
fn wait_group_stop(pid: Pid) {
    let path = format!("/proc/{pid}/stat");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(2) {
        let Ok(stat) = std::fs::read_to_string(&path) else {
            return;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        if matches!(state, Some('T' | 't') | None) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    log::debug!("process {pid} let go stopped is not stopped yet");
}

impl Drop for Seized {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}

/// Refuses what cannot be seized: no such process, rcriu itself or an
/// ancestor, a thread id, a traced process, a zombie.
fn check_target(pid: Pid) -> Result<()> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    if is_self_or_ancestor(pid) {
        return Err(Error::SelfDump { pid });
    }
    let status = rcriu_proc::Task::open(pid)
        .and_then(|mut t| t.status())
        .map_err(|e| {
            if e.is_vanished() {
                Error::NoSuchProcess { pid }
            } else {
                Error::Proc { pid, source: e }
            }
        })?;
    if status.tgid != pid {
        // A thread id, not a process: CRIU takes processes only.
        return Err(Error::NoSuchProcess { pid });
    }
    if status.tracer_pid != 0 {
        return Err(Error::Traced {
            pid,
            tracer: status.tracer_pid,
        });
    }
    if status.state == Some(TaskState::Zombie) || status.state == Some(TaskState::Dead) {
        if status.threads > 1 {
            return Err(Error::DeadLeader {
                pid,
                threads: status.threads,
            });
        }
        return Err(Error::Zombie { pid });
    }

    Ok(())
}

/// Whether `tid` is a kernel thread (no executable).
fn is_kernel_thread(tid: Pid) -> bool {
    std::fs::read_link(format!("/proc/{tid}/exe"))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// `PF_IO_WORKER`, in the flags of /proc's stat.
const PF_IO_WORKER: u32 = 0x10;

/// Whether thread `tid` of `pid` is one of io_uring's (`PF_IO_WORKER`).
fn is_io_worker(pid: Pid, tid: Pid) -> bool {
    std::fs::read(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|t| rcriu_proc::parse_stat(&t).ok())
        .is_some_and(|s| s.flags & PF_IO_WORKER != 0)
}

/// Seizes and stops one thread; `None` if it exited before we could.
fn seize_thread(pid: Pid, tid: Pid) -> Result<Option<Thread>> {
    let Some(seccomp) = attach(pid, tid)? else {
        return Ok(None);
    };
    match wait_seized(tid, seccomp) {
        Ok(t) => Ok(t),
        Err(e) => {
            let _ = sys::detach(tid, 0);
            Err(e)
        }
    }
}

/// Attaches to one thread and interrupts it, without waiting for the
/// stop; returns its seccomp mode, or `None` if it exited before we could.
fn attach(pid: Pid, tid: Pid) -> Result<Option<u32>> {
    let st = match task_status(pid, tid) {
        Ok(s) => s,
        Err(e) if e.is_vanished() => return Ok(None),
        Err(e) => return Err(Error::Proc { pid, source: e }),
    };
    if st.state == Some(TaskState::Zombie) || st.state == Some(TaskState::Dead) {
        // An exited thread not yet reaped: nothing to dump.
        return Ok(None);
    }
    if is_io_worker(pid, tid) {
        // An io_uring submission thread or worker (iou-sqp-*, iou-wrk-*)
        // runs in the kernel only: it takes no ptrace stop.
        let comm =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        return Err(Error::IoWorker {
            pid,
            tid,
            comm: comm.trim().to_owned(),
        });
    }
    let seccomp = seccomp_mode(&st);
    if let Err(e) = sys::seize(tid, options(seccomp)) {
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            Some(libc::EPERM) => {
                let st = task_status(pid, tid);
                let tracer = st.as_ref().map(|s| s.tracer_pid).unwrap_or(0);
                // A thread exiting as we came: nothing to dump.
                let exiting = st.as_ref().map_or(true, |s| {
                    s.state == Some(TaskState::Zombie) || s.state == Some(TaskState::Dead)
                });
                if exiting {
                    Ok(None)
                } else if tracer != 0 {
                    Err(Error::Traced { pid, tracer })
                } else {
                    Err(Error::Ptrace {
                        what: "seizing",
                        tid,
                        source: e,
                    })
                }
            }
            _ => Err(Error::Ptrace {
                what: "seizing",
                tid,
                source: e,
            }),
        };
    }
    match sys::interrupt(tid) {
        Ok(()) => Ok(Some(seccomp)),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(e) => Err(Error::ptrace("interrupting", tid)(e)),
    }
}

/// Waits until an attached and interrupted thread is in a ptrace stop we
/// can work from.
fn wait_seized(tid: Pid, seccomp: u32) -> Result<Option<Thread>> {
    let mut stopped_by = None;
    loop {
        match sys::wait(tid, 0).map_err(Error::ptrace("waiting for", tid))? {
            Wait::Exited(_) | Wait::Killed(_) => return Ok(None),
            Wait::Nothing => continue,
            Wait::Stopped { sig, event, .. } => {
                if event == sys::PTRACE_EVENT_STOP {
                    // The trap stop we asked for. While the process is in a
                    // group stop, it reports the stop signal instead of
                    // SIGTRAP: remember it (the image says it was stopped).
                    if is_stop_signal(sig) {
                        stopped_by = Some(sig);
                    }
                    break;
                }
                // A signal arrived before the interrupt took: delivered as
                // it would have been (a stop signal stops the process, and
                // the group stop is reported next).
                sys::cont(tid, sig).map_err(Error::ptrace("resuming", tid))?;
            }
        }
    }
    log::debug!("seized task {tid} (stopped by {stopped_by:?}, seccomp {seccomp})");
    Ok(Some(Thread {
        tid,
        stopped_by,
        seccomp,
    }))
}

fn task_status(pid: Pid, tid: Pid) -> rcriu_proc::Result<rcriu_proc::Status> {
    rcriu_proc::Task::open_thread(pid, tid)?.status()
}
