//! Namespace files (`ns_file_entry`: an fd that was opened on
//! `/proc/PID/ns/NAME`). As CRIU 4.2, the namespace is found again by
//! its id among the namespaces of the restored processes: one the
//! restore does not make anew (its id is the dumper's, in the
//! inventory's `root_ids`) is rcriu's own, opened here from
//! `/proc/self/ns`; one a restored process is in that is made anew (a
//! container's, and the time namespace, which the restore always makes)
//! is opened by that process's restorer once it exists
//! (`/proc/PID/ns/NAME`). An id no process of the images has, or a flag
//! that is not a namespace's, is refused by name before anything starts.

use std::os::fd::OwnedFd;

use rcriu_images::pb;

use crate::{Error, Result};

/// The name of the namespace kind of `CLONE_NEW*` flag `cflag` in
/// `/proc/PID/ns`.
pub fn name_of(cflag: u32) -> Option<&'static str> {
    Some(match cflag as i32 {
        libc::CLONE_NEWNET => "net",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWNS => "mnt",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        _ => return None,
    })
}

/// The id `ids` gives the namespace of kind `cflag`.
fn id_in(ids: &pb::TaskKobjIdsEntry, cflag: u32) -> Option<u32> {
    match cflag as i32 {
        libc::CLONE_NEWNET => ids.net_ns_id,
        libc::CLONE_NEWPID => ids.pid_ns_id,
        libc::CLONE_NEWIPC => ids.ipc_ns_id,
        libc::CLONE_NEWUTS => ids.uts_ns_id,
        libc::CLONE_NEWNS => ids.mnt_ns_id,
        libc::CLONE_NEWUSER => ids.user_ns_id,
        libc::CLONE_NEWCGROUP => ids.cgroup_ns_id,
        libc::CLONE_NEWTIME => ids.time_ns_id,
        _ => None,
    }
}

/// Where a namespace file is opened from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// rcriu's own namespace: `/proc/self/ns/NAME`, opened here.
    Own(&'static str),
    /// The namespace of restored process `pid` (its number in its own
    /// pid namespace): `/proc/PID/ns/NAME`, opened by its restorer.
    Of { pid: u32, name: &'static str },
}

impl Source {
    /// The path the process opens for a [`Source::Of`].
    pub fn path(&self) -> Vec<u8> {
        match self {
            Source::Own(name) => format!("/proc/self/ns/{name}").into_bytes(),
            Source::Of { pid, name } => format!("/proc/{pid}/ns/{name}").into_bytes(),
        }
    }
}

/// The namespaces of a restore: the dumper's ids and each restored
/// process's.
#[derive(Debug, Default, Clone)]
pub struct Namespaces {
    root: Option<pb::TaskKobjIdsEntry>,
    tasks: Vec<(u32, pb::TaskKobjIdsEntry)>,
}

impl Namespaces {
    /// `root` is the inventory's `root_ids`; `tasks` each process's pid
    /// and ids, in the order of the tree (the first one in a namespace
    /// opens it).
    pub fn new(
        root: Option<&pb::TaskKobjIdsEntry>,
        tasks: impl IntoIterator<Item = (u32, pb::TaskKobjIdsEntry)>,
    ) -> Namespaces {
        Namespaces {
            root: root.copied(),
            tasks: tasks.into_iter().collect(),
        }
    }

    /// Where namespace file `e` (fd `fd` of process `pid`) is opened
    /// from, or why it cannot be.
    pub fn locate(&self, pid: u32, fd: i32, e: &pb::NsFileEntry) -> Result<Source> {
        let refuse = |why: String| {
            Error::unsupported(format!(
                "restoring fd {fd} of process {pid}, a namespace file: {why}"
            ))
        };
        let name = name_of(e.ns_cflag).ok_or_else(|| refuse(format!("flag {:#x}", e.ns_cflag)))?;
        // The restore makes every process a time namespace of its own
        // (with the dump's clocks): the dumper's is not theirs any more.
        if e.ns_cflag as i32 != libc::CLONE_NEWTIME
            && self
                .root
                .as_ref()
                .and_then(|r| id_in(r, e.ns_cflag))
                .is_some_and(|id| id == e.ns_id)
        {
            return Ok(Source::Own(name));
        }
        self.tasks
            .iter()
            .find(|(_, ids)| id_in(ids, e.ns_cflag) == Some(e.ns_id))
            .map(|&(pid, _)| Source::Of { pid, name })
            .ok_or_else(|| {
                refuse(format!(
                    "{name} namespace {}, which no process of the images is in",
                    e.ns_id
                ))
            })
    }
}

/// Opens rcriu's own namespace `name` with the file's `flags`.
pub fn open_own(name: &str, flags: u32) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = format!("/proc/self/ns/{name}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((flags as i32 & !libc::O_ACCMODE) | libc::O_CLOEXEC)
        .open(&path)
        .map_err(Error::io(format!("opening {path}")))?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(net: u32, uts: u32) -> pb::TaskKobjIdsEntry {
        pb::TaskKobjIdsEntry {
            net_ns_id: Some(net),
            uts_ns_id: Some(uts),
            ..Default::default()
        }
    }

    #[test]
    fn found_by_id_among_the_processes() {
        let ns = Namespaces::new(Some(&ids(2, 4)), [(7, ids(2, 4)), (9, ids(12, 4))]);
        let e = |ns_id, cflag: i32| pb::NsFileEntry {
            id: 1,
            ns_id,
            ns_cflag: cflag as u32,
            flags: 0o100000,
        };
        assert_eq!(
            ns.locate(7, 3, &e(2, libc::CLONE_NEWNET)).unwrap(),
            Source::Own("net")
        );
        assert_eq!(
            ns.locate(7, 3, &e(12, libc::CLONE_NEWNET)).unwrap(),
            Source::Of {
                pid: 9,
                name: "net"
            }
        );
        assert_eq!(
            ns.locate(7, 3, &e(12, libc::CLONE_NEWNET)).unwrap().path(),
            b"/proc/9/ns/net"
        );
        // The time namespace is made anew, whatever its id.
        let ns = Namespaces::new(
            Some(&pb::TaskKobjIdsEntry {
                time_ns_id: Some(5),
                ..Default::default()
            }),
            [(
                7,
                pb::TaskKobjIdsEntry {
                    time_ns_id: Some(5),
                    ..Default::default()
                },
            )],
        );
        assert_eq!(
            ns.locate(7, 3, &e(5, libc::CLONE_NEWTIME)).unwrap(),
            Source::Of {
                pid: 7,
                name: "time"
            }
        );
        // An id of another kind, an id nobody has, a flag of no kind.
        let err = ns.locate(7, 3, &e(12, libc::CLONE_NEWUTS)).unwrap_err();
        assert!(err.to_string().contains("uts namespace 12"), "{err}");
        assert!(ns.locate(7, 3, &e(99, libc::CLONE_NEWNET)).is_err());
        let err = ns.locate(7, 3, &e(2, 0x10)).unwrap_err();
        assert!(err.to_string().contains("fd 3 of process 7"), "{err}");
    }
}
