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

use crate::region::{Placed, Region};
use crate::{Error, Result};

const SI_KERNEL: i32 = 0x80;
/// `PTRACE_O_TRACECLONE`: threads the restorer creates are traced from
/// their first instruction.
const PTRACE_O_TRACECLONE: u32 = 1 << 3;
/// `PTRACE_O_TRACEFORK`, `PTRACE_O_TRACEVFORK`: children too.
const PTRACE_O_TRACEFORK: u32 = 1 << 1;
const PTRACE_O_TRACEVFORK: u32 = 1 << 2;
/// `PTRACE_EVENT_CLONE`.
const PTRACE_EVENT_CLONE: i32 = 3;

/// The processes rcriu created (a tree), killed unless `defuse`d.
#[derive(Debug)]
pub struct Child {
    /// The root's pid.
    pub pid: Pid,
    /// Each live process with its threads (the leader first), as the
    /// images list them, by their pids here (0: not known yet); the root
    /// first.
    pub procs: Vec<(Pid, Vec<Pid>)>,
    /// The zombies the restorers make (each exits at once), by their pids
    /// here (0: not known yet).
    pub zombies: Vec<Pid>,
    /// The same as the images number them.
    images: Vec<(Pid, Vec<Pid>)>,
    zombie_images: Vec<Pid>,
    /// The tree's user namespace (its inode) when its pids here are the
    /// kernel's, learnt as each task appears ([`Child::learning_in`]).
    learn: Option<u64>,
    armed: bool,
}

impl Child {
    /// A tree: `procs` (each with its threads) and `zombies` as the
    /// images number them, the root first; `on_host` gives each one's
    /// pid here (0: learnt as it appears).
    pub fn tree(
        procs: Vec<(Pid, Vec<Pid>)>,
        zombies: Vec<Pid>,
        on_host: impl Fn(Pid) -> Pid,
    ) -> Child {
        let host: Vec<(Pid, Vec<Pid>)> = procs
            .iter()
            .map(|(p, tids)| (on_host(*p), tids.iter().map(|&t| on_host(t)).collect()))
            .collect();
        Child {
            pid: host[0].0,
            procs: host,
            zombies: zombies.iter().map(|&z| on_host(z)).collect(),
            images: procs,
            zombie_images: zombies,
            learn: None,
            armed: true,
        }
    }

    /// The tree's tasks but the root were forked from inside user
    /// namespace `userns` (its inode), with their pids at its levels
    /// alone: each one's pid here is learnt when it first stops, from
    /// its pids at every level (`NSpid`, the second the images').
    pub fn learning_in(mut self, userns: u64) -> Child {
        self.learn = Some(userns);
        self
    }

    /// Every task's pid here by its pid in the images (those known).
    pub fn hosts(&self) -> std::collections::BTreeMap<Pid, Pid> {
        let procs = self
            .images
            .iter()
            .zip(&self.procs)
            .flat_map(|((p, tids), (h, htids))| {
                std::iter::once((*p, *h)).chain(tids.iter().copied().zip(htids.iter().copied()))
            });
        let zombies = self
            .zombie_images
            .iter()
            .copied()
            .zip(self.zombies.iter().copied());
        procs.chain(zombies).filter(|&(_, h)| h > 0).collect()
    }

    /// The tree is restored: it lives on.
    pub fn defuse(mut self) -> Pid {
        self.armed = false;
        self.pid
    }
}

/// Task `tid`'s pid in its pid namespace's parent (the second of its
/// `NSpid`) when it lives in user namespace `userns`; `None` for any
/// other task.
fn pid_in_tree(tid: Pid, userns: u64) -> Option<Pid> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata(format!("/proc/{tid}/ns/user")).ok()?;
    if ns.ino() != userns {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every task under `root` (its threads, its children's, theirs...), as
/// /proc shows them.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in dir.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<Pid>().ok()) else {
                continue;
            };
            if tid != p {
                out.push(tid);
            }
            let kids = std::fs::read_to_string(format!("/proc/{p}/task/{tid}/children"))
                .unwrap_or_default();
            for k in kids
                .split_whitespace()
                .filter_map(|k| k.parse::<Pid>().ok())
            {
                if out.len() < 1 << 16 {
                    out.push(k);
                    todo.push(k);
                }
            }
        }
    }
    out
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.armed {
            // Tasks whose pids were not learnt yet: found under the root
            // before it goes (its end takes its pid namespace's).
            let unknown = if self.learn.is_some() {
                descendants(self.pid)
            } else {
                Vec::new()
            };
            for (pid, _) in self.procs.iter().filter(|(p, _)| *p > 0) {
                log::warn!("killing the half-restored process {pid}");
                let _ = csys::kill(*pid, libc::SIGKILL);
            }
            for z in self.zombies.iter().filter(|&&z| z > 0) {
                let _ = csys::kill(*z, libc::SIGKILL);
            }
            // Reap every traced thread (a leader's end is reported only
            // once its other threads are reaped), so that nothing of it is
            // left; children before their parents.
            for &tid in unknown.iter().rev() {
                let _ = csys::wait(tid, 0);
            }
            for (pid, tids) in self.procs.iter().rev() {
                for &tid in tids.iter().skip(1).filter(|&&t| t > 0) {
                    let _ = csys::wait(tid, 0);
                }
                if *pid > 0 {
                    let _ = csys::wait(*pid, 0);
                }
            }
            for z in self.zombies.iter().filter(|&&z| z > 0) {
                let _ = csys::wait(*z, 0);
            }
        }
    }
}

/// How rcriu traces the new process.
#[derive(Debug, Clone, Copy)]
pub struct Trace {
    /// The restorers create threads or processes.
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
        // Threads and the children the restorers fork, whatever their exit
        // signal: traced from their first instruction.
        options |= PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK;
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

/// What a failed restorer reported (the process placed at `placed`, with
/// `tids`, numbered `img` in the images): the step, what of it, the
/// errno.
fn report(
    region: &Region,
    placed: &Placed,
    img: Pid,
    tids: &[Pid],
    describe: &dyn Fn(Pid, Step, u32) -> String,
) -> String {
    for (i, &tid) in tids.iter().enumerate().skip(1) {
        let t: ThreadArgs = region.read_thread_at(placed, i);
        if t.status < 0 {
            let step = Step::from_u32(t.step);
            return format!(
                "thread {tid}: {} failed ({}): {}",
                step.describe(),
                describe(img, step, t.index),
                errno_text(t.status)
            );
        }
    }
    let a = region.read_args_at(placed.args_off);
    let step = Step::from_u32(a.step);
    if a.status < 0 {
        format!(
            "{} failed ({}): {}",
            step.describe(),
            describe(img, step, a.index),
            errno_text(a.status)
        )
    } else {
        format!("while {}", step.describe())
    }
}

/// A process's pid in the images when it is not its pid here, for
/// messages.
fn numbered(pid: Pid, img: Pid) -> String {
    if pid == img {
        String::new()
    } else {
        format!("(process {img} of the images) ")
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

/// One task rcriu follows.
struct Task {
    /// Its process's index in `Child::procs` (`None`: a zombie to be).
    proc: Option<usize>,
    /// Its index among its process's threads (0: the leader).
    thread: usize,
    tid: Pid,
    /// Its tid as the images number it.
    img: Pid,
    state: State,
    /// Its first stop was seen (it exists).
    seen: bool,
}

/// Follows the restorer in every thread of every process of the tree
/// until each one stops on its int3 (and each zombie has ended), or one
/// fails. `on_new(pid, as_in_images)` is told of each process but the
/// root as it appears, before it runs (its cgroups); `placed` is where
/// each process's args lie in the region; `describe` names an item of a
/// process as the images number it. The pids of a tree forked in a user
/// namespace ([`Child::learning_in`]) are learnt here.
pub fn wait_restorer(
    child: &mut Child,
    region: &Region,
    placed: &[Placed],
    mut on_new: impl FnMut(Pid, Pid) -> Result<()>,
    describe: impl Fn(Pid, Step, u32) -> String,
) -> Result<()> {
    let root = child.pid;
    let mut tasks: Vec<Task> = Vec::new();
    for (p, ((_, tids), (_, imgs))) in child.procs.iter().zip(&child.images).enumerate() {
        for (i, (&tid, &img)) in tids.iter().zip(imgs).enumerate() {
            tasks.push(Task {
                proc: Some(p),
                thread: i,
                tid,
                img,
                state: State::Running,
                seen: tid == root,
            });
        }
    }
    for (&z, &img) in child.zombies.iter().zip(&child.zombie_images) {
        tasks.push(Task {
            proc: None,
            thread: 0,
            tid: z,
            img,
            state: State::Running,
            seen: false,
        });
    }
    let fail = |pid: Pid, what: String| Error::Died { pid, what };
    // Each task by tid: the task with news is looked at alone, not all
    // of them in turn (which made a tree of n processes cost n² waits).
    let mut mine: std::collections::HashMap<Pid, usize> = tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.tid > 0)
        .map(|(k, t)| (t.tid, k))
        .collect();
    let mut next: Option<usize> = None;
    loop {
        let mut progress = false;
        let all = 0..tasks.len();
        let one = next.take().map(|k| k..k + 1);
        for k in one.unwrap_or(all) {
            let t = &tasks[k];
            // Threads done (stopped on their int3) are still watched: if
            // another fails, the whole tree dies, and each must be reaped
            // before its leader's end is told.
            // Not learnt yet (forked in a user namespace): not there yet.
            if t.state == State::Gone || t.tid == 0 {
                continue;
            }
            let tid = t.tid;
            let w = match csys::wait(tid, libc::WNOHANG) {
                // Not created yet.
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) && tid != root => continue,
                Err(e) => return Err(died(tid, "waiting for it", e)),
                Ok(w) => w,
            };
            let proc_of = |t: &Task| {
                t.proc
                    .map(|p| (child.procs[p].0, &child.procs[p].1, p, child.images[p].0))
            };
            match w {
                Wait::Nothing => continue,
                Wait::Exited(_) | Wait::Killed(_) => {
                    progress = true;
                    tasks[k].state = State::Gone;
                    let t = &tasks[k];
                    match proc_of(t) {
                        // A zombie: it ended, as it should.
                        None => {}
                        // A leader's end is told once every thread is gone.
                        Some((pid, tids, p, img)) if t.thread == 0 => {
                            return Err(fail(
                                pid,
                                format!(
                                    "{}{}: {}",
                                    numbered(pid, img),
                                    ended(&w),
                                    report(region, &placed[p], img, tids, &describe)
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                Wait::Stopped { .. } if tasks[k].state == State::Done => {
                    return Err(fail(
                        tid,
                        format!("thread {tid} stopped again after its restore"),
                    ));
                }
                Wait::Stopped { sig, event, .. } => {
                    progress = true;
                    if !tasks[k].seen {
                        tasks[k].seen = true;
                        // A process of the tree appeared: into its cgroups
                        // before it runs on.
                        if tasks[k].thread == 0 && tasks[k].proc.is_some() {
                            on_new(tid, tasks[k].img)?;
                        }
                    }
                    if event == 0 && sig == libc::SIGTRAP && tasks[k].proc.is_some() {
                        let si =
                            csys::get_siginfo(tid).map_err(|e| died(tid, "reading its stop", e))?;
                        if si.si_code == SI_KERNEL {
                            tasks[k].state = State::Done;
                            continue;
                        }
                    }
                    // A zombie to be that ends by a fault signal sends it
                    // to itself (si_code SI_USER or SI_TKILL, not a
                    // fault's): not a fault of the restorer.
                    let sent = |tid| csys::get_siginfo(tid).is_ok_and(|si| si.si_code <= 0);
                    if event == 0
                        && matches!(
                            sig,
                            libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                        )
                        && !(tasks[k].proc.is_none() && sent(tid))
                    {
                        let (pid, tids, p, img) = proc_of(&tasks[k]).unwrap_or((
                            tid,
                            &child.procs[0].1,
                            0,
                            child.images[0].0,
                        ));
                        return Err(fail(
                            pid,
                            format!(
                                "{}the restorer faulted (signal {sig}) in thread {tid}: {}",
                                numbered(pid, img),
                                report(region, &placed[p], img, tids, &describe)
                            ),
                        ));
                    }
                    // A zombie to be kills itself with its signal: let it
                    // through.
                    if event == 0 && tasks[k].proc.is_none() && sig != libc::SIGSTOP {
                        csys::cont(tid, sig).map_err(|e| died(tid, "resuming it", e))?;
                        continue;
                    }
                    // A clone or fork event, a new task's first stop, or a
                    // signal someone sent (the restorer blocks every
                    // signal): go on.
                    if event == PTRACE_EVENT_CLONE {
                        log::debug!("task {tid} made a task");
                    }
                    csys::cont(tid, 0).map_err(|e| died(tid, "resuming it", e))?;
                }
            }
        }
        let done = tasks.iter().all(|t| match t.proc {
            Some(_) => t.state == State::Done,
            None => t.state == State::Gone,
        });
        if done {
            return Ok(());
        }
        // Sleep until some child has news, and look at that one; when it
        // is not one of ours (another child of this process), poll all
        // (after a pause, when the last poll found nothing).
        let who = csys::wait_any_peek().map_err(|e| died(root, "waiting for it", e))?;
        next = mine.get(&who).copied();
        if next.is_none()
            && let Some(ns) = child.learn
            && let Some(img) = pid_in_tree(who, ns)
            && let Some(k) = tasks.iter().position(|t| t.tid == 0 && t.img == img)
        {
            log::debug!("task {img} of the images is {who} here");
            tasks[k].tid = who;
            mine.insert(who, k);
            match tasks[k].proc {
                Some(p) => child.procs[p].1[tasks[k].thread] = who,
                None => {
                    let z = k - child.procs.iter().map(|(_, t)| t.len()).sum::<usize>();
                    child.zombies[z] = who;
                }
            }
            if tasks[k].thread == 0
                && let Some(p) = tasks[k].proc
            {
                child.procs[p].0 = who;
            }
            next = Some(k);
        }
        if next.is_none() && !progress {
            std::thread::sleep(std::time::Duration::from_micros(200));
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

/// One process's final state.
pub struct FinalProc<'a> {
    pub pid: Pid,
    /// Its threads, the leader first, with their final state.
    pub threads: Vec<FinalThread>,
    /// `xstate(i, size)` builds thread i's xsave area of `size` bytes.
    pub xstate: Box<dyn Fn(usize, usize) -> Result<Xstate> + 'a>,
    /// It was stopped, by this signal: it stays stopped.
    pub stopped: Option<i32>,
    /// The address, in the region, of SIGTRAP's action when the dump set
    /// one. The restorer leaves it (every thread's int3 raises SIGTRAP
    /// while signals are blocked, which resets its action); it is set
    /// here, through a syscall in the process, before the region goes.
    pub trap_action: Option<u64>,
    /// Its io_uring instances, made in it at the end.
    pub rings: Vec<crate::io_uring::Final<'a>>,
}

/// The final touch, for every process of the tree while they are all
/// stopped: every thread's registers, FPU state and signal mask; the
/// region goes. Then every process runs (or stays stopped when it was),
/// together. A failure kills them all: not one instruction of a half-set
/// process runs.
pub fn finish(child: Child, region: &Region, procs: Vec<FinalProc<'_>>) -> Result<Pid> {
    let mut set: Vec<(Seized, Option<i32>)> = Vec::with_capacity(procs.len());
    for p in procs {
        let tids: Vec<Pid> = p.threads.iter().map(|t| t.tid).collect();
        let seized = Seized::adopt(p.pid, &tids);
        match set_one(&seized, region, p) {
            Ok(stopped) => set.push((seized, stopped)),
            Err(e) => {
                if let Err(k) = seized.kill() {
                    log::error!("killing a half-restored process: {k}");
                }
                for (s, _) in set {
                    if let Err(k) = s.kill() {
                        log::error!("killing a half-restored process: {k}");
                    }
                }
                return Err(e);
            }
        }
    }
    let mut first: Result<()> = Ok(());
    for (s, stopped) in set {
        if let Some(sig) = stopped {
            s.stop_on_release(sig);
        }
        if let Err(e) = s.release()
            && first.is_ok()
        {
            first = Err(e.into());
        }
    }
    first?;
    Ok(child.defuse())
}

/// Sets one process's threads and unmaps the region from it; the signal
/// it stays stopped by, if any.
fn set_one(seized: &Seized, region: &Region, p: FinalProc<'_>) -> Result<Option<i32>> {
    let pid = p.pid;
    let mut buf = vec![0u8; 16 * 1024];
    let size =
        csys::get_xstate(pid, &mut buf).map_err(|e| died(pid, "reading its xsave size", e))?;
    let mut ctxs = Vec::with_capacity(p.threads.len());
    for (i, t) in p.threads.iter().enumerate() {
        ctxs.push(ThreadCtx {
            tid: t.tid,
            regs: t.regs,
            sigmask: t.sigmask,
            xstate: (p.xstate)(i, size)?,
        });
    }
    let len = region.end() - region.start();
    let remote = Remote::new(pid, seized.leader(), &ctxs[0])?;
    if let Some(act) = p.trap_action {
        remote.syscall_ok(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [libc::SIGTRAP as u64, act, 0, 8, 0, 0],
        )?;
    }
    for ring in p.rings {
        crate::io_uring::make(pid, &remote, region, ring)?;
    }
    remote.syscall_ok(
        "munmap",
        libc::SYS_munmap,
        [region.start(), len, 0, 0, 0, 0],
    )?;
    for ctx in &ctxs {
        ctx.restore()?;
    }
    Ok(p.stopped)
}
