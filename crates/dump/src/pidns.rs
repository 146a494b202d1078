//! Pid namespaces nested in a container's (a sandbox or `unshare --pid
//! --fork` inside it), which CRIU 4.2 refuses ("Can't dump nested pid
//! namespace").
//!
//! Each process and thread of one has its pids at every level from the
//! container's down to its own (NSpid past the host's): the pstree entry
//! carries them (`ns_pid`, `tids`, fields beyond 4.2's, numbered as
//! OpenVZ's CRIU numbers them), its ids the namespace's id
//! (`pid_ns_id`), and a process whose children go into a namespace other
//! than its own (`unshare(CLONE_NEWPID)`, then a fork) its
//! `pid_for_children_ns_id`. The namespace tree is not written apart:
//! each nested namespace has its init in the tree, a child of a process
//! of the parent namespace (checked here), so the restore makes it with
//! that fork (`CLONE_NEWPID`).
//!
//! Refused by name: an init whose parent is not in the namespace's
//! parent (it was reparented), a process in a namespace its parent is
//! not in without being its init, a namespace whose init is a zombie, a
//! `pid_for_children` namespace with no init in the tree, a group or
//! session led from outside the process's namespace (but the session's
//! own group, inherited from the session's leader through every fork
//! down to it), a mount under or a bind of a proc of a nested namespace.
//! A proc mounted for a nested namespace is named by its init
//! (`pid_ns_init` of its mount entry, beyond 4.2's fields).

use std::os::fd::AsFd;

use rcriu_proc::{Pid, Task};

use crate::namespaces::Container;
use crate::tree::{Kind, Tree};
use crate::{Error, Result, mnt};

/// The pid the images name a process by: its pid in the root's pid
/// namespace (1 for a container's init), or its own when the root shares
/// rcriu's. The final dump's container ([`Container::vpid`]) and a
/// pre-dump (whose images the final dump's must match) both name
/// processes so.
pub struct ImagePids {
    /// The root's level in `NSpid`, when its pid namespace is not rcriu's.
    level: Option<usize>,
}

impl ImagePids {
    pub fn of_root(root: Pid) -> Result<ImagePids> {
        let mut task = Task::open(root).map_err(Error::proc(root))?;
        let theirs = task.namespaces().map_err(Error::proc(root))?;
        let me = std::process::id() as Pid;
        let mine = Task::open(me)
            .and_then(|t| t.namespaces())
            .map_err(Error::proc(me))?;
        let kind = rcriu_proc::NsKind::Pid;
        let level = if theirs.get(kind) == mine.get(kind) {
            None
        } else {
            let ns_pid = task.status().map_err(Error::proc(root))?.ns_pid;
            Some(ns_pid.len().saturating_sub(1))
        };
        Ok(ImagePids { level })
    }

    /// Process (or thread) `pid`'s name, of its `NSpid` (host pid first).
    pub fn of_ns_pid(&self, pid: Pid, ns_pid: &[Pid]) -> Result<Pid> {
        let Some(level) = self.level else {
            return Ok(pid);
        };
        ns_pid
            .get(level)
            .copied()
            .ok_or_else(|| Error::Inconsistent {
                pid,
                what: format!("no pid at level {level} of its NSpid {ns_pid:?}"),
            })
    }

    /// Process `pid`'s name, its `NSpid` read.
    pub fn get(&self, pid: Pid) -> Result<Pid> {
        if self.level.is_none() {
            return Ok(pid);
        }
        let status = Task::open(pid)
            .and_then(|mut t| t.status())
            .map_err(Error::proc(pid))?;
        self.of_ns_pid(pid, &status.ns_pid)
    }
}

/// What the checks need of one process.
struct Info {
    pid: Pid,
    ppid: Pid,
    pgid: Pid,
    sid: Pid,
    alive: bool,
    /// Its pids from the container's namespace down (one: in it).
    levels: Vec<Pid>,
    ns: Option<u64>,
    for_children: Option<u64>,
}

impl Info {
    fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    fn is_init(&self) -> bool {
        self.depth() > 0 && self.levels.last() == Some(&1)
    }
}

/// Checks that the nested namespaces of `c` can be made again; notes
/// them in `c.nested_ns`. Nothing to do when none is there.
pub fn check(tree: &Tree, c: &mut Container) -> Result<()> {
    if c.nested.is_empty() {
        return Ok(());
    }
    let mut infos = Vec::with_capacity(tree.members.len());
    for m in &tree.members {
        let ns = Task::open(m.pid)
            .and_then(|t| t.namespaces())
            .map_err(Error::proc(m.pid))?;
        let levels = match c.ns_pids(m.pid) {
            Some(v) => v.to_vec(),
            None => vec![c.vpid(m.pid)],
        };
        infos.push(Info {
            pid: m.pid,
            ppid: m.ppid,
            pgid: m.pgid,
            sid: m.sid,
            alive: matches!(m.kind, Kind::Alive(_)),
            levels,
            ns: ns.pid,
            for_children: ns.pid_for_children,
        });
    }
    let find = |pid: Pid| infos.iter().find(|i| i.pid == pid);
    for i in &infos {
        if i.depth() == 0 {
            continue;
        }
        let Some(ns) = i.ns else {
            return Err(Error::unsupported(
                i.pid,
                "a nested pid namespace whose link could not be read",
            ));
        };
        let parent = find(i.ppid);
        if i.is_init() {
            if !i.alive {
                return Err(Error::unsupported(
                    i.pid,
                    "a zombie as the init of a nested pid namespace",
                ));
            }
            let up = parent_ns(i.pid)?;
            match parent {
                Some(p) if p.ns == Some(up) && p.depth() + 1 == i.depth() => {}
                _ => {
                    return Err(Error::unsupported(
                        i.pid,
                        format!(
                            "the init of a nested pid namespace (pid:[{ns}]) whose parent {} is not in the namespace's parent",
                            i.ppid
                        ),
                    ));
                }
            }
            if !c.nested_ns.contains(&ns) {
                c.nested_ns.push(ns);
                c.nested_inits.push((ns, i.pid));
            }
        } else if parent.is_none_or(|p| p.ns != Some(ns)) {
            return Err(Error::unsupported(
                i.pid,
                format!(
                    "a process of a nested pid namespace (pid:[{ns}]) whose parent {} is not in it and which is not its init",
                    i.ppid
                ),
            ));
        }
        // Its group and session, as it numbers them; or, led from
        // outside its namespace (`unshare --pid --fork` in a shell's
        // session), inherited through its forks: the session's own group,
        // which every process between it and the session's leader has
        // (the leader makes it before it forks).
        let inside = |leader: Pid| find(leader).is_some_and(|l| l.ns == Some(ns));
        let seen = inside(i.pgid) && inside(i.sid);
        if !seen && !inherited_session(&infos, i) {
            let (what, leader) = if inside(i.pgid) {
                ("session", i.sid)
            } else {
                ("group", i.pgid)
            };
            return Err(Error::unsupported(
                i.pid,
                format!(
                    "a {what} ({leader}) led from outside its nested pid namespace (pid:[{ns}]), not its session's group inherited from the session's leader"
                ),
            ));
        }
    }
    for i in infos.iter().filter(|i| i.alive) {
        let Some(fc) = i.for_children.filter(|&fc| Some(fc) != i.ns) else {
            continue;
        };
        let made_it = infos
            .iter()
            .any(|k| k.ppid == i.pid && k.is_init() && k.ns == Some(fc));
        if !made_it {
            return Err(Error::unsupported(
                i.pid,
                format!(
                    "a pid namespace for its children (pid:[{fc}]) whose init is none of its children"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether process `i` is in its session's group (the session leader's),
/// as every process between it and the leader is: the restore makes it
/// so by forking it there.
fn inherited_session(infos: &[Info], i: &Info) -> bool {
    let s = i.sid;
    let mut at = i;
    for _ in 0..infos.len() {
        if at.pid == s {
            return true;
        }
        if at.pgid != s || at.sid != s {
            return false;
        }
        match infos.iter().find(|p| p.pid == at.ppid) {
            Some(p) => at = p,
            None => return false,
        }
    }
    false
}

/// The inode of the parent of process `pid`'s pid namespace.
fn parent_ns(pid: Pid) -> Result<u64> {
    let path = format!("/proc/{pid}/ns/pid");
    let f = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
    crate::sys::ns_parent_ino(f.as_fd()).map_err(Error::file(pid, &path))
}

/// Names the nested pid namespace each proc of the container was
/// mounted for (its init, `pid_ns_init`); refuses a proc of a namespace
/// outside the tree's, and a mount under or a bind of a nested one's.
pub fn mark_procs(root: Pid, tree: &mut mnt::MntTree, c: &Container) -> Result<()> {
    if c.nested_inits.is_empty() {
        return Ok(());
    }
    let own = c.ns.pid;
    let mut nested: Vec<(u32, u32)> = Vec::new();
    for e in tree
        .entries
        .iter_mut()
        .filter(|e| e.fstype == mnt::fstype::PROC && e.root == b"/")
    {
        let mp = String::from_utf8_lossy(&e.mountpoint).into_owned();
        let link = format!("/proc/{root}/root{mp}/1/ns/pid");
        let ino = std::fs::read_link(&link).ok().and_then(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("pid:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        });
        if ino == own {
            continue;
        }
        let Some(&(_, init)) = c.nested_inits.iter().find(|(i, _)| Some(*i) == ino) else {
            return Err(Error::unsupported(
                root,
                format!("a proc at {mp} mounted for a pid namespace outside the tree's"),
            ));
        };
        e.pid_ns_init = Some(c.vpid(init) as u32);
        nested.push((e.mnt_id, e.root_dev));
    }
    for e in &tree.entries {
        let of_nested = nested.iter().any(|&(id, dev)| {
            e.parent_mnt_id == id || (e.root_dev == dev && e.pid_ns_init.is_none())
        });
        if of_nested {
            return Err(Error::unsupported(
                root,
                format!(
                    "a mount at {} under or of a proc of a nested pid namespace (not restored yet)",
                    String::from_utf8_lossy(&e.mountpoint)
                ),
            ));
        }
    }
    Ok(())
}
