//! Pid namespaces nested in the restored container's, made again: the
//! init of each is forked into it (`CLONE_NEWPID`) by its parent, every
//! process and thread gets its pid at every level (clone3's `set_tid`,
//! its own namespace's first, then up to the container's, then the host
//! pid rcriu picks), and a process whose children went into a namespace
//! of its own making joins it for its children once they exist (a
//! child's pidfd given to `setns`, or `unshare` when none was made yet).
//!
//! The images number every process as the container's namespace does
//! (`pid`, as CRIU 4.2 reads them); a nested one's pstree entry adds its
//! pids down to its own namespace (`ns_pid`) and its threads' (`tids`),
//! and its ids its namespace's id. See the dump's module of this name.

use std::collections::BTreeMap;

use rcriu_images::{ImageFile, pb};
use rcriu_parasite_abi::restorer as abi;
use rcriu_proc::Pid;

use crate::load::TreeImages;
use crate::{Error, Result};

/// The pids of the processes and threads of nested namespaces, from the
/// container's level down.
#[derive(Debug, Default)]
pub struct Levels {
    /// Pid (or tid) as the images number it → its pids at every level,
    /// the first that number.
    by_pid: BTreeMap<Pid, Vec<Pid>>,
    /// Each process's pid namespace id.
    ns_of: BTreeMap<Pid, u32>,
    /// Each process's parent.
    parent: BTreeMap<Pid, Pid>,
    /// Each process's group and session.
    groups: BTreeMap<Pid, (Pid, Pid)>,
}

fn bad(what: String) -> Error {
    Error::invalid(ImageFile::Pstree.name(), what)
}

/// Checks one entry's levels: `pid` first, no deeper than rcriu makes.
fn levels_of(pid: u32, list: &[u32]) -> Result<Vec<Pid>> {
    if list.first() != Some(&pid) || list.len() > abi::MAX_PID_LEVELS - 1 || list.len() < 2 {
        return Err(bad(format!(
            "process {pid}: pids at its levels {list:?} do not start with it or are too many"
        )));
    }
    Ok(list.iter().map(|&p| p as Pid).collect())
}

impl Levels {
    /// The levels of `tree`'s nested processes; `None` when it has none
    /// (the common case costs nothing more).
    pub fn load(tree: &TreeImages, in_pidns: bool) -> Result<Option<Levels>> {
        let nested = tree.procs.iter().any(|p| !p.task.pstree.ns_pid.is_empty())
            || tree.zombies.iter().any(|z| !z.pstree.ns_pid.is_empty());
        if !nested {
            return Ok(None);
        }
        if !in_pidns {
            return Err(Error::unsupported(
                "restoring a nested pid namespace outside a pid namespace of the tree's own",
            ));
        }
        let mut l = Levels::default();
        for (i, p) in tree.procs.iter().enumerate() {
            let e = &p.task.pstree;
            l.parent.insert(e.pid as Pid, e.ppid as Pid);
            l.groups.insert(e.pid as Pid, (e.pgid as Pid, e.sid as Pid));
            l.ns_of
                .insert(e.pid as Pid, p.task.ids.pid_ns_id.unwrap_or(0));
            if e.ns_pid.is_empty() {
                continue;
            }
            if i == 0 {
                return Err(bad(format!(
                    "the root {} is in a pid namespace nested in its own",
                    e.pid
                )));
            }
            let levels = levels_of(e.pid, &e.ns_pid)?;
            if e.tids.len() != e.threads.len() {
                return Err(bad(format!(
                    "process {}: {} threads but pids at every level for {}",
                    e.pid,
                    e.threads.len(),
                    e.tids.len()
                )));
            }
            for (&t, nt) in e.threads.iter().zip(&e.tids) {
                let tl = levels_of(t, &nt.tid)?;
                if tl.len() != levels.len() {
                    return Err(bad(format!(
                        "thread {t} of process {} at {} levels, its process at {}",
                        e.pid,
                        tl.len(),
                        levels.len()
                    )));
                }
                l.by_pid.insert(t as Pid, tl);
            }
            l.by_pid.insert(e.pid as Pid, levels);
        }
        for z in &tree.zombies {
            let e = &z.pstree;
            l.parent.insert(e.pid as Pid, e.ppid as Pid);
            if !e.ns_pid.is_empty() {
                l.by_pid.insert(e.pid as Pid, levels_of(e.pid, &e.ns_pid)?);
            }
        }
        Ok(Some(l))
    }

    /// Process or thread `pid`'s pids from the container's level down.
    fn of(&self, pid: Pid) -> Vec<Pid> {
        self.by_pid.get(&pid).cloned().unwrap_or_else(|| vec![pid])
    }

    fn depth(&self, pid: Pid) -> usize {
        self.by_pid.get(&pid).map_or(0, |l| l.len() - 1)
    }

    /// Whether process `pid` is in a nested namespace.
    pub fn nested(&self, pid: Pid) -> bool {
        self.by_pid.contains_key(&pid)
    }

    /// Its pid in its own namespace.
    pub fn own(&self, pid: Pid) -> Pid {
        *self.of(pid).last().expect("levels are never empty")
    }

    /// Process `pid` as process `seer` sees it: its pid at `seer`'s
    /// level (`None`: `seer` is deeper than it).
    pub fn seen_by(&self, pid: Pid, seer: Pid) -> Option<Pid> {
        self.of(pid).get(self.depth(seer)).copied()
    }

    /// A child of `parent` made with its pid at every level (and
    /// `CLONE_NEWPID` when it is the init of a namespace its parent made).
    pub fn child(&self, parent: Pid, k: &mut abi::Child) -> Result<()> {
        let pid = k.pid as Pid;
        if !self.nested(pid) {
            return Ok(());
        }
        let (dp, dc) = (self.depth(parent), self.depth(pid));
        let levels = self.of(pid);
        let init = levels.last() == Some(&1);
        if dc == dp + 1 && init {
            k.clone_flags |= libc::CLONE_NEWPID as u64;
        } else if dc != dp
            || (k.kind == abi::CHILD_LIVE && self.ns_of.get(&pid) != self.ns_of.get(&parent))
        {
            return Err(bad(format!(
                "process {pid} is in a pid namespace its parent {parent} is not in, not as its init"
            )));
        }
        k.pid = levels[dp];
        if k.kind == abi::CHILD_ZOMBIE {
            if init {
                return Err(Error::unsupported(format!(
                    "restoring zombie {pid} as the init of a nested pid namespace"
                )));
            }
            // A group led from outside its namespace is its parent's,
            // inherited (the dump checked it).
            k.pgid = self.seen_by(k.pgid as Pid, pid).unwrap_or(0);
        }
        set_levels(&mut k.set_tid, &mut k.set_tid_size, &levels, k.host_pid)
    }

    /// Thread `tid`'s own tid and its tids at every level, with its host
    /// tid.
    pub fn thread(&self, tid: Pid, t: &mut abi::ThreadArgs) -> Result<()> {
        if !self.nested(tid) {
            return Ok(());
        }
        let levels = self.of(tid);
        t.tid = self.own(tid);
        set_levels(&mut t.set_tid, &mut t.set_tid_size, &levels, t.host_tid)
    }

    /// Process `pid`'s parent as it sees it: none (0) for the init of a
    /// nested namespace.
    pub fn parent_seen(&self, pid: Pid, parent: Pid) -> Pid {
        if self.depth(pid) > self.depth(parent) {
            0
        } else {
            self.own(parent)
        }
    }

    /// Its group `pgid` (0: the one it has) as it sees it.
    pub fn group_seen(&self, pid: Pid, pgid: i32) -> Result<i32> {
        if pgid == 0 {
            return Ok(0);
        }
        if let Some(g) = self.seen_by(pgid as Pid, pid) {
            return Ok(g);
        }
        // Led from outside its namespace: its session's group, which it
        // inherits through every fork from the session's leader (who
        // makes it before it forks); it is left as it comes.
        let mut at = pid;
        for _ in 0..self.groups.len() {
            match self.groups.get(&at) {
                Some(&(_, s)) if at == s => return Ok(0),
                Some(&(g, s)) if g == pgid as Pid && s == pgid as Pid => {}
                _ => break,
            }
            match self.parent.get(&at) {
                Some(&p) => at = p,
                None => break,
            }
        }
        Err(bad(format!(
            "process {pid}'s group {pgid} is led from outside its pid namespace, and is not its session's inherited from the session's leader"
        )))
    }
}

/// Where process `pid`'s children go once they exist
/// (`Args::pidns_for_children`): 0 its own namespace, a child's pid as it
/// sees it (the init it made), or a new namespace (it unshared and
/// forked nothing since).
pub fn for_children(
    levels: Option<&Levels>,
    tree: &TreeImages,
    pid: Pid,
    ids: &pb::TaskKobjIdsEntry,
) -> Result<i32> {
    let Some(fc) = ids
        .pid_for_children_ns_id
        .filter(|&f| Some(f) != ids.pid_ns_id)
    else {
        return Ok(0);
    };
    if let Some(l) = levels {
        let init = tree.procs.iter().find(|p| {
            p.task.pstree.ppid as Pid == pid
                && p.task.ids.pid_ns_id == Some(fc)
                && l.own(p.task.pid as Pid) == 1
        });
        if let Some(p) = init {
            return Ok(l.seen_by(p.task.pid as Pid, pid).unwrap_or(0));
        }
    }
    if tree.procs.iter().any(|p| p.task.ids.pid_ns_id == Some(fc)) {
        return Err(bad(format!(
            "process {pid}'s children go into pid namespace {fc}, whose init is none of its children"
        )));
    }
    Ok(abi::PIDNS_CHILDREN_NEW)
}

/// `set_tid` from `levels` (the container's first): its own first, then
/// up, then the host's when there is one.
fn set_levels(
    out: &mut [i32; abi::MAX_PID_LEVELS],
    size: &mut u32,
    levels: &[Pid],
    host: i32,
) -> Result<()> {
    let n = levels.len() + usize::from(host != 0);
    if n > abi::MAX_PID_LEVELS {
        return Err(bad(format!("pids at {n} levels: too many")));
    }
    for (o, l) in out.iter_mut().zip(levels.iter().rev()) {
        *o = *l;
    }
    if host != 0 {
        out[levels.len()] = host;
    }
    *size = n as u32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_tid_runs_from_the_innermost_to_the_host() {
        let mut out = [0; abi::MAX_PID_LEVELS];
        let mut n = 0;
        set_levels(&mut out, &mut n, &[7, 2], 4321).unwrap();
        assert_eq!((&out[..3], n), (&[2, 7, 4321][..], 3));
        set_levels(&mut out, &mut n, &[7, 2, 1], 0).unwrap();
        assert_eq!((&out[..3], n), (&[1, 2, 7][..], 3));
        assert!(set_levels(&mut out, &mut n, &[1, 2, 3, 4, 5, 6, 7, 8], 9).is_err());
    }

    #[test]
    fn levels_must_start_with_the_pid() {
        assert!(levels_of(5, &[5, 1]).is_ok());
        assert!(levels_of(5, &[6, 1]).is_err());
        assert!(levels_of(5, &[5]).is_err());
    }
}
