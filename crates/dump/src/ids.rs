//! `ids-PID.img` and inventory's `root_ids`: the numbering of kernel
//! objects (mm, fd table, fs info, signal handlers) and namespaces.
//!
//! As CRIU 4.2 numbers them: rcriu itself is numbered first (its ids go to
//! the inventory's `root_ids`), then each task. The four kinds of objects
//! are numbered each on its own counter; the namespaces share one counter,
//! taken in the order pid, net, ipc, uts, time, mnt, user, cgroup. A
//! namespace the task shares with rcriu gets rcriu's id (CRIU's restore
//! reads an id equal to `root_ids`' as "stay in the restorer's
//! namespace"); a different one gets the next id, which tells the restore
//! to make a new namespace of that kind.

use rcriu_images::pb;
use rcriu_proc::{Namespaces, NsKind, Pid};

use crate::{Error, Result};

/// The order in which CRIU numbers a task's namespaces.
const NS_ORDER: [NsKind; 8] = [
    NsKind::Pid,
    NsKind::Net,
    NsKind::Ipc,
    NsKind::Uts,
    NsKind::Time,
    NsKind::Mnt,
    NsKind::User,
    NsKind::Cgroup,
];

/// Namespace numbering: (kind, inode) → id.
#[derive(Debug, Default)]
pub struct NsIds {
    known: Vec<(NsKind, u64, u32)>,
    next: u32,
    /// How many of `known` are rcriu's own (numbered first).
    mine: usize,
}

/// The ids of one task (or of rcriu), with the namespaces that differ from
/// rcriu's.
#[derive(Debug, Clone)]
pub struct TaskIds {
    pub entry: pb::TaskKobjIdsEntry,
    /// The kinds of namespace the task does not share with rcriu, with
    /// their ids.
    pub own_ns: Vec<(NsKind, u32)>,
}

impl NsIds {
    pub fn new() -> NsIds {
        NsIds {
            known: Vec::new(),
            next: 1,
            mine: 0,
        }
    }

    fn id(&mut self, kind: NsKind, ino: u64) -> (u32, bool) {
        if let Some(&(_, _, id)) = self.known.iter().find(|(k, i, _)| *k == kind && *i == ino) {
            return (id, false);
        }
        let id = self.next;
        self.next += 1;
        self.known.push((kind, ino, id));
        (id, true)
    }

    /// Numbers the namespaces of a task. `kobj` is the task's number on
    /// the (separate) counters of mm, files, fs and sighand. The first
    /// call is for rcriu itself.
    pub fn task(&mut self, kobj: u32, ns: &Namespaces) -> TaskIds {
        let first = self.known.is_empty();
        let mut e = pb::TaskKobjIdsEntry {
            vm_id: kobj,
            files_id: kobj,
            fs_id: kobj,
            sighand_id: kobj,
            ..Default::default()
        };
        let mut own_ns = Vec::new();
        for kind in NS_ORDER {
            // A kind the kernel lacks is numbered all the same (as inode
            // 0), and marked absent.
            let ino = ns.get(kind);
            let (id, _) = self.id(kind, ino.unwrap_or(0));
            let of_rcriu = self.known[..self.mine]
                .iter()
                .any(|&(k, _, i)| k == kind && i == id);
            if !first && !of_rcriu {
                own_ns.push((kind, id));
            }
            let v = Some(id);
            match kind {
                NsKind::Pid => e.pid_ns_id = v,
                NsKind::Net => e.net_ns_id = v,
                NsKind::Ipc => e.ipc_ns_id = v,
                NsKind::Uts => e.uts_ns_id = v,
                NsKind::Time => e.time_ns_id = ino.and(v),
                NsKind::Mnt => e.mnt_ns_id = v,
                NsKind::User => e.user_ns_id = v,
                NsKind::Cgroup => e.cgroup_ns_id = ino.and(v),
                _ => {}
            }
        }
        if first {
            self.mine = self.known.len();
        }
        TaskIds { entry: e, own_ns }
    }
}

impl NsIds {
    /// The id of the pid namespace a task's children go into when it is
    /// not the task's own (`pid_for_children_ns_id`): that of the nested
    /// namespace `ino` (shared with its processes' `pid_ns_id`), or, for
    /// `None` (`unshare(CLONE_NEWPID)` before a first fork), one of its
    /// own, which names no other namespace.
    pub fn pid_for_children(&mut self, ino: Option<u64>) -> u32 {
        match ino {
            Some(ino) => self.id(NsKind::Pid, ino).0,
            None => {
                let id = self.next;
                self.next += 1;
                id
            }
        }
    }
}

/// The namespaces of the target that rcriu can dump when they differ
/// from its own: only the time namespace (a process rcriu or CRIU
/// restored lives in one). Any other is refused, naming it.
pub fn check_namespaces(
    pid: Pid,
    own: &Namespaces,
    task: &Namespaces,
    container: Option<&crate::namespaces::Container>,
) -> Result<()> {
    for kind in NsKind::ALL {
        let (mine, theirs) = (own.get(kind), task.get(kind));
        if container.is_some_and(|c| c.holds(kind, theirs)) {
            continue;
        }
        let skip = match kind {
            NsKind::Time | NsKind::TimeForChildren => true,
            // Not there until the first child after unshare(CLONE_NEWPID).
            NsKind::PidForChildren => theirs.is_none(),
            _ => false,
        };
        if !skip && mine != theirs {
            if kind == NsKind::User && container.is_some_and(|c| c.user.is_some()) {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "a user namespace nested in the tree's (user:[{}])",
                        theirs.unwrap_or(0)
                    ),
                ));
            }
            // Inside a container, the namespace it differs from is the
            // container's (which rcriu dumps), not rcriu's.
            let whose = if container.is_some_and(|c| c.own.contains(&kind)) {
                "the container's"
            } else {
                "rcriu's"
            };
            return Err(Error::unsupported(
                pid,
                format!(
                    "a {} namespace other than {whose} ({}:[{}])",
                    kind.file_name(),
                    kind.link_type(),
                    theirs.unwrap_or(0)
                ),
            ));
        }
    }
    if task.time != task.time_for_children {
        return Err(Error::unsupported(
            pid,
            "a nested time namespace (time_for_children differs from time)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(base: u64) -> Namespaces {
        Namespaces {
            net: Some(base + 1),
            mnt: Some(base + 2),
            pid: Some(base + 3),
            pid_for_children: Some(base + 3),
            ipc: Some(base + 4),
            uts: Some(base + 5),
            user: Some(base + 6),
            cgroup: Some(base + 7),
            time: Some(base + 8),
            time_for_children: Some(base + 8),
        }
    }

    #[test]
    fn numbering_as_criu() {
        let mut ids = NsIds::new();
        let root = ids.task(1, &ns(100));
        let e = root.entry;
        assert_eq!(
            (
                e.pid_ns_id,
                e.net_ns_id,
                e.ipc_ns_id,
                e.uts_ns_id,
                e.time_ns_id,
                e.mnt_ns_id,
                e.user_ns_id,
                e.cgroup_ns_id
            ),
            (
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8)
            )
        );
        assert!(root.own_ns.is_empty());
        // The same namespaces: the same ids; a new time namespace: 9.
        let mut other = ns(100);
        other.time = Some(999);
        other.time_for_children = Some(999);
        let t = ids.task(2, &other);
        assert_eq!(t.entry.vm_id, 2);
        assert_eq!(t.entry.net_ns_id, Some(2));
        assert_eq!(t.entry.time_ns_id, Some(9));
        assert_eq!(t.own_ns, vec![(NsKind::Time, 9)]);
        // Its child, in the same time namespace, does not share it with
        // rcriu either.
        let t = ids.task(3, &other);
        assert_eq!(t.own_ns, vec![(NsKind::Time, 9)]);
    }

    #[test]
    fn only_time_may_differ() {
        let own = ns(100);
        let mut t = ns(100);
        assert!(check_namespaces(1, &own, &t, None).is_ok());
        t.time = Some(5);
        t.time_for_children = Some(5);
        assert!(check_namespaces(1, &own, &t, None).is_ok());
        t.time_for_children = Some(6);
        let e = check_namespaces(1, &own, &t, None).unwrap_err().to_string();
        assert!(e.contains("nested time namespace"), "{e}");
        let mut t = ns(100);
        t.net = Some(42);
        let e = check_namespaces(1, &own, &t, None).unwrap_err().to_string();
        assert!(e.contains("net namespace"), "{e}");
    }
}
