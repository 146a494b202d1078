//! The process tree under the dumped process: found and seized whole.
//!
//! The root is seized first (with every thread); then, pass after pass,
//! the children of every process seized so far (the `children` file of
//! each of its threads) are seized, until a pass finds nothing new. A
//! process stops creating children once it is seized, so a child made
//! while its parent was being seized is found by the next pass. A child
//! that exits meanwhile is passed over (if it is gone) or recorded as a
//! zombie; a zombie is never seized (it has nothing to stop).
//!
//! With `--freeze-cgroup` the processes of the tree in the freezer cgroup
//! are seized while it is frozen (compel's `seize_frozen`); the passes
//! take them as they find them, and seize the others.
//!
//! Dropping the tree releases every process seized, as it was.

use rcriu_compel::Seized;
use rcriu_proc::{Pid, Task, TaskState};

use crate::{Error, Result};

/// What one process of the tree is.
#[derive(Debug)]
pub enum Kind {
    /// Alive, seized with every thread.
    Alive(Seized),
    /// A zombie: exited, not reaped by its parent; its wait status.
    Zombie { exit_code: i32 },
}

/// A process of the tree.
#[derive(Debug)]
pub struct Member {
    pub pid: Pid,
    /// 0 for the root.
    pub ppid: Pid,
    pub pgid: Pid,
    pub sid: Pid,
    pub kind: Kind,
}

impl Member {
    pub fn seized(&self) -> Option<&Seized> {
        match &self.kind {
            Kind::Alive(s) => Some(s),
            Kind::Zombie { .. } => None,
        }
    }
}

/// The processes of the tree, the root first, each parent before its
/// children (as pstree.img lists them).
#[derive(Debug, Default)]
pub struct Tree {
    pub members: Vec<Member>,
}

/// The children of process `pid`: those of each of its threads.
fn children(pid: Pid) -> Result<Vec<Pid>> {
    let task = Task::open(pid).map_err(Error::proc(pid))?;
    let mut out = Vec::new();
    for tid in task.tasks().map_err(Error::proc(pid))? {
        let mut t = match Task::open_thread(pid, tid) {
            Ok(t) => t,
            Err(e) if e.is_vanished() => continue,
            Err(e) => return Err(Error::proc(pid)(e)),
        };
        match t.children() {
            Ok(c) => out.extend(c),
            Err(e) if e.is_vanished() => {}
            Err(e) => return Err(Error::proc(pid)(e)),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Whether process `pid` ended: a zombie, or gone.
fn ended(pid: Pid) -> bool {
    match Task::open(pid).and_then(|mut t| t.stat()) {
        Ok(s) => matches!(s.state, Some(TaskState::Zombie | TaskState::Dead)),
        Err(_) => true,
    }
}

/// Hears the end of killed process `pid` (threads `tids`, the leader
/// among them), which rcriu still traces: each thread's end as it comes
/// (a thread of a pid namespace's init must be heard before the init's
/// last thread can finish reaping its namespace, and the leader's end is
/// told only after every thread's), then the leader's. Never blocks
/// longer than a few seconds.
fn hear_end(pid: Pid, tids: &[Pid]) {
    use rcriu_compel::sys::{Wait, wait};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        for &t in tids.iter().filter(|&&t| t != pid) {
            let _ = wait(t, libc::WNOHANG);
        }
        match wait(pid, libc::WNOHANG) {
            Ok(Wait::Nothing | Wait::Stopped { .. }) => {}
            _ => return,
        }
        if std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

impl Tree {
    /// The tree under `root`, whose process is seized already, as are
    /// those of `seized` (the tree's processes in a frozen cgroup).
    pub fn seize(root: Seized, mut seized: Vec<Seized>) -> Result<Tree> {
        let pid = root.pid();
        let stat = Task::open(pid)
            .and_then(|mut t| t.stat())
            .map_err(Error::proc(pid))?;
        let mut tree = Tree {
            members: vec![Member {
                pid,
                ppid: 0,
                pgid: stat.pgrp,
                sid: stat.session,
                kind: Kind::Alive(root),
            }],
        };
        loop {
            let mut found = Vec::new();
            for m in &tree.members {
                if m.seized().is_none() {
                    continue;
                }
                for c in children(m.pid)? {
                    if !tree.members.iter().any(|x| x.pid == c)
                        && !found.iter().any(|(p, _)| *p == c)
                    {
                        found.push((c, m.pid));
                    }
                }
            }
            if found.is_empty() {
                break;
            }
            for (child, parent) in found {
                let already = seized
                    .iter()
                    .position(|s| s.pid() == child)
                    .map(|i| seized.swap_remove(i));
                if let Some(m) = Tree::member(child, parent, already)? {
                    tree.members.push(m);
                }
            }
        }
        tree.order();
        Ok(tree)
    }

    /// Child `pid` of `parent`, seized (or `already` so), or its zombie;
    /// `None` when it is gone.
    fn member(pid: Pid, parent: Pid, already: Option<Seized>) -> Result<Option<Member>> {
        let stat = match Task::open(pid).and_then(|mut t| t.stat()) {
            Ok(s) => s,
            Err(e) if e.is_vanished() => return Ok(None),
            Err(e) => return Err(Error::proc(pid)(e)),
        };
        let zombie = |stat: &rcriu_proc::Stat| {
            (matches!(stat.state, Some(TaskState::Zombie | TaskState::Dead))
                && stat.num_threads <= 1)
                .then_some(Kind::Zombie {
                    exit_code: stat.exit_code,
                })
        };
        let kind = if let Some(s) = already {
            Kind::Alive(s)
        } else if let Some(z) = zombie(&stat) {
            z
        } else {
            match Seized::seize(pid) {
                Ok(s) => Kind::Alive(s),
                Err(rcriu_compel::Error::NoSuchProcess { .. }) => return Ok(None),
                // It ended as it was seized: its parent, stopped, has not
                // reaped it; a zombie of the tree.
                Err(
                    e @ (rcriu_compel::Error::Zombie { .. } | rcriu_compel::Error::Exited { .. }),
                ) => match Task::open(pid).and_then(|mut t| t.stat()) {
                    Ok(s) => zombie(&s).ok_or_else(|| Error::compel(pid)(e))?,
                    Err(v) if v.is_vanished() => return Ok(None),
                    Err(v) => return Err(Error::proc(pid)(v)),
                },
                Err(e) => return Err(Error::compel(pid)(e)),
            }
        };
        Ok(Some(Member {
            pid,
            ppid: parent,
            pgid: stat.pgrp,
            sid: stat.session,
            kind,
        }))
    }

    /// Parents before children, children in the order of their pids
    /// (depth first, as CRIU lists them).
    fn order(&mut self) {
        let mut members = std::mem::take(&mut self.members);
        let mut out = Vec::with_capacity(members.len());
        fn visit(pid: Pid, members: &mut Vec<Member>, out: &mut Vec<Member>) {
            let Some(at) = members.iter().position(|m| m.pid == pid) else {
                return;
            };
            let m = members.swap_remove(at);
            out.push(m);
            let mut kids: Vec<Pid> = members
                .iter()
                .filter(|c| c.ppid == pid)
                .map(|c| c.pid)
                .collect();
            kids.sort_unstable();
            for k in kids {
                visit(k, members, out);
            }
        }
        if let Some(root) = members.first().map(|m| m.pid) {
            visit(root, &mut members, &mut out);
        }
        self.members = out;
    }

    pub fn root(&self) -> &Member {
        &self.members[0]
    }

    /// The pids of the tree.
    pub fn pids(&self) -> Vec<Pid> {
        self.members.iter().map(|m| m.pid).collect()
    }

    /// Each process seized is left stopped by `sig` when released
    /// (--leave-stopped).
    pub fn stop_on_release(&self, sig: i32) {
        for s in self.members.iter().filter_map(Member::seized) {
            s.stop_on_release(sig);
        }
    }

    /// Releases every process seized, as it was; the first error.
    pub fn release(self) -> Result<()> {
        let mut first = Ok(());
        for m in self.members {
            if let Kind::Alive(s) = m.kind {
                let pid = s.pid();
                if let Err(e) = s.release()
                    && first.is_ok()
                {
                    first = Err(Error::compel(pid)(e));
                }
            }
        }
        first
    }

    /// Kills every process seized (the dump is complete), children first,
    /// and returns once each has ended (a zombie, or gone): a runtime
    /// that looks for the container's init right after sees it dead.
    pub fn kill(self) -> Result<()> {
        let mut first = Ok(());
        let mut killed = Vec::new();
        let me = std::process::id() as Pid;
        for m in self.members.into_iter().rev() {
            if let Kind::Alive(s) = m.kind {
                let pid = s.pid();
                killed.push(pid);
                let tids: Vec<Pid> = s.threads().iter().map(|t| t.tid).collect();
                let parent = Task::open(pid).and_then(|mut t| t.stat()).map(|s| s.ppid);
                if let Err(e) = s.kill()
                    && first.is_ok()
                {
                    first = Err(Error::compel(pid)(e));
                }
                // Still traced when it died (too late to detach), its end
                // is told to rcriu first, and its parent (the init of its
                // pid namespace, say) cannot reap it until rcriu has
                // heard: hear it now. rcriu's own children are left to
                // their waiter.
                if parent.is_ok_and(|p| p != me) {
                    hear_end(pid, &tids);
                }
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for pid in killed {
            while !ended(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        first
    }
}
