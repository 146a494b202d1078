//! The namespaces a tree has of its own (a container's), as CRIU 4.2
//! dumps them: the pid namespace whose init is the root (the images number
//! the processes as the namespace does), the UTS and IPC namespaces
//! ([`utsns`], [`ipcns`]), the mount namespace ([`mnt`]) and, with
//! `--empty-ns net`, a network namespace the restore makes empty, or,
//! named with `--external net[INODE]:KEY`, one the restore is given, and
//! a user namespace owning all of them ([`userns`]). The cgroup and time
//! namespaces must be rcriu's.
//!
//! Namespaces are read from a thread of rcriu that joins them (`setns`
//! moves only the calling thread), so rcriu itself stays where it is.
//! The sockets of a network namespace of its own are dumped by the
//! socket modules, which ask sock_diag there ([`Container::net_ns`],
//! [`crate::sockets::NetNs`]).
//!
//! A network namespace of its own that is neither empty nor external is
//! dumped with its devices, addresses, routes, rules, sysctls and
//! firewall ([`net`]), locked as a whole first as CRIU locks it.
//!
//! Pid namespaces nested in the container's are checked in [`pidns`].

use std::os::fd::AsFd;
use std::path::PathBuf;

use rcriu_images::pb;
use rcriu_proc::{Namespaces, NsKind, Pid, Task};
use rustix::thread::LinkNameSpaceType;

use crate::tree::{Kind, Tree};
use crate::{Error, Result, ipcns, mnt, net, pidns, userns, utsns};

/// `CLONE_NEWNET`, the only namespace `--empty-ns` takes.
pub const CLONE_NEWNET: u32 = 0x4000_0000;

/// What the caller tells a dump of a container.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// criu's `--root`: the container's root directory on the host.
    pub root: Option<PathBuf>,
    /// criu's `--empty-ns`: the namespaces the restore makes empty.
    pub empty_ns: u32,
    /// criu's `--external mnt[PATH]:KEY` (`ext_mnt`): mount point → key.
    pub ext_mounts: Vec<(String, String)>,
    /// criu's `--external net[INODE]:KEY`: namespace inode → key.
    pub ext_nets: Vec<(u64, String)>,
    /// criu's `--network-lock`: how a network namespace of its own is
    /// locked while it is dumped.
    pub network_lock: crate::tcp_stream::LockMethod,
    /// This run's id (names the nftables lock's table).
    pub run_id: String,
}

/// The namespaces of the tree's own, collected while it is frozen.
#[derive(Debug, Default)]
pub struct Container {
    /// The kinds the root does not share with rcriu.
    pub own: Vec<NsKind>,
    /// The root's namespaces.
    pub ns: Namespaces,
    pub uts: Option<pb::UtsnsEntry>,
    pub ipc: Option<ipcns::IpcNs>,
    pub mnt: Option<mnt::MntTree>,
    /// The key of its network namespace, when the caller named it
    /// external (`netns-<id>.img` holds only the key).
    pub net_ext: Option<String>,
    /// Its network namespace of its own, dumped whole.
    pub net: Option<net::NetDump>,
    /// The lock of that namespace, lifted when dropped unless kept.
    pub net_lock: Option<NsLock>,
    /// Each process's pid on the host and in its pid namespace.
    pub vpids: Vec<(Pid, Pid)>,
    /// Each process and thread of a pid namespace nested in the
    /// container's: its host tid and its pids from the container's
    /// namespace down to its own ([`pidns`]).
    pub nested: Vec<(Pid, Vec<Pid>)>,
    /// The pid namespaces nested in the container's (inodes), each
    /// with a process of the tree as its init.
    pub nested_ns: Vec<u64>,
    /// Each of them with its init's host pid.
    pub nested_inits: Vec<(u64, Pid)>,
    /// Its user namespace of its own, owning the others.
    pub user: Option<userns::UserNs>,
}

/// The most pid namespaces nested under the container's (the restore's
/// set_tid holds the host's, the container's and these).
pub const MAX_NESTED: usize = 6;

/// The kinds of namespace a container may have of its own.
const TAKEN: [NsKind; 6] = [
    NsKind::User,
    NsKind::Pid,
    NsKind::Net,
    NsKind::Ipc,
    NsKind::Uts,
    NsKind::Mnt,
];

/// Runs `f` in a thread that joined process `pid`'s namespaces of `kinds`.
fn inside<T: Send>(
    pid: Pid,
    kinds: &[LinkNameSpaceType],
    f: impl FnOnce() -> std::result::Result<T, String> + Send,
) -> Result<std::result::Result<T, String>> {
    let mut fds = Vec::new();
    for &k in kinds {
        let name = match k {
            LinkNameSpaceType::HostNameAndNISDomainName => "uts",
            LinkNameSpaceType::InterProcessCommunication => "ipc",
            _ => "net",
        };
        let path = format!("/proc/{pid}/ns/{name}");
        let f = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
        fds.push((f, k));
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            for (fd, k) in &fds {
                rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*k))
                    .map_err(|e| format!("joining its {k:?} namespace: {e}"))?;
            }
            f()
        })
        .join()
    })
    .map_err(|_| Error::Inconsistent {
        pid,
        what: "the thread reading its namespaces panicked".into(),
    })
}

/// The tree's own namespaces, or what of them is refused; `None` when
/// the root shares every namespace with rcriu.
pub fn collect(tree: &Tree, host: &Namespaces, o: &Options) -> Result<Option<Container>> {
    let root = tree.root();
    let pid = root.pid;
    let task = Task::open(pid).map_err(Error::proc(pid))?;
    let ns = task.namespaces().map_err(Error::proc(pid))?;
    let own: Vec<NsKind> = TAKEN
        .into_iter()
        .filter(|&k| ns.get(k) != host.get(k))
        .collect();
    if own.is_empty() {
        return Ok(None);
    }
    let mut c = Container {
        own: own.clone(),
        ns,
        ..Default::default()
    };
    if own.contains(&NsKind::User) {
        let threads = tree
            .members
            .iter()
            .map(|m| match &m.kind {
                Kind::Alive(s) => s.threads().len(),
                _ => 1,
            })
            .sum();
        let host_user = host.get(NsKind::User).unwrap_or(0);
        let members: Vec<Pid> = tree.members.iter().map(|m| m.pid).collect();
        c.user = Some(userns::collect(pid, host_user, &own, &members, threads)?);
    }
    if own.contains(&NsKind::Net) {
        let ino = c.ns.get(NsKind::Net);
        c.net_ext = o
            .ext_nets
            .iter()
            .find(|(i, _)| Some(*i) == ino)
            .map(|(_, k)| k.clone());
        if c.net_ext.is_none() && o.empty_ns & CLONE_NEWNET == 0 {
            let path = format!("/proc/{pid}/ns/net");
            let file = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
            let (method, run_id) = (o.network_lock, o.run_id.clone());
            let locked = {
                let run_id = run_id.clone();
                inside(pid, &[LinkNameSpaceType::Network], move || {
                    rcriu_restore::net_lock::lock_ns(method, &run_id)
                        .map_err(|e| format!("locking its network namespace: {e}"))
                })?
            };
            locked.map_err(|why| Error::unsupported(pid, why))?;
            c.net_lock = Some(NsLock {
                file,
                method,
                run_id,
                keep: false,
            });
            let dumped = inside(pid, &[LinkNameSpaceType::Network], net::read_here)?
                .map_err(|why| Error::unsupported(pid, why))?;
            c.net = Some(dumped);
        }
    }
    if own.contains(&NsKind::Pid) {
        let mut t = Task::open(pid).map_err(Error::proc(pid))?;
        let status = t.status().map_err(Error::proc(pid))?;
        if status.ns_pid.last() != Some(&1) || status.ns_pid.len() != 2 {
            return Err(Error::unsupported(
                pid,
                format!(
                    "a pid namespace it is not the init of (its pids {:?})",
                    status.ns_pid
                ),
            ));
        }
        // Every process and thread has its number in the namespace; the
        // restore gives each both (clone3's set_tid at two levels), and
        // one in a pid namespace nested in the container's its number at
        // every level down to its own.
        let names = pidns::ImagePids::of_root(pid)?;
        for m in &tree.members {
            let task = Task::open(m.pid).map_err(Error::proc(m.pid))?;
            let tids: Vec<Pid> = match &m.kind {
                Kind::Alive(s) => s.threads().iter().map(|t| t.tid).collect(),
                _ => vec![m.pid],
            };
            for tid in tids {
                let status = task
                    .thread(tid)
                    .and_then(|mut t| t.status())
                    .map_err(Error::proc(m.pid))?;
                match status.ns_pid.as_slice() {
                    [_, _] => c.vpids.push((tid, names.of_ns_pid(tid, &status.ns_pid)?)),
                    [_, _, inner @ ..] if inner.len() < MAX_NESTED => {
                        c.vpids.push((tid, names.of_ns_pid(tid, &status.ns_pid)?));
                        c.nested.push((tid, status.ns_pid[1..].to_vec()));
                    }
                    other => {
                        return Err(Error::unsupported(
                            m.pid,
                            format!(
                                "a pid namespace nested deeper than rcriu restores (thread {tid}'s pids {other:?})"
                            ),
                        ));
                    }
                }
            }
        }
        pidns::check(tree, &mut c)?;
    }
    if own.contains(&NsKind::Uts) {
        let uts = inside(pid, &[LinkNameSpaceType::HostNameAndNISDomainName], || {
            Ok(utsns::read_here())
        })?
        .map_err(|why| Error::unsupported(pid, why))?;
        c.uts = Some(uts);
    }
    if own.contains(&NsKind::Ipc) {
        let ipc = inside(pid, &[LinkNameSpaceType::InterProcessCommunication], || {
            ipcns::read_here()
        })?
        .map_err(|why| Error::unsupported(pid, why))?;
        let mut ipc = ipc;
        // Their owners and creators as the tree sees them, as CRIU
        // writes them (it reads them from inside).
        if let Some(u) = &c.user {
            let descs = ipc
                .shm
                .iter_mut()
                .map(|o| &mut o.entry.desc)
                .chain(ipc.sem.iter_mut().map(|o| &mut o.entry.desc))
                .chain(ipc.msg.iter_mut().map(|o| &mut o.entry.desc));
            for d in descs {
                (d.uid, d.gid) = (u.uid(d.uid), u.gid(d.gid));
                (d.cuid, d.cgid) = (u.uid(d.cuid), u.gid(d.cgid));
            }
        }
        c.ipc = Some(ipc);
    }
    if own.contains(&NsKind::Mnt) {
        let mut tree = mnt::collect(pid, &o.ext_mounts)?;
        // Their uid= and gid= as the tree sees them, as CRIU writes them.
        if let Some(u) = &c.user {
            for e in &mut tree.entries {
                e.options = u.options(&String::from_utf8_lossy(&e.options)).into_bytes();
            }
        }
        // POSIX message queues are not dumped yet.
        for e in tree
            .entries
            .iter()
            .filter(|e| e.fstype == mnt::fstype::MQUEUE)
        {
            let mp = String::from_utf8_lossy(&e.mountpoint);
            let dir = format!("/proc/{pid}/root{mp}");
            let n = std::fs::read_dir(&dir)
                .map_err(Error::file(pid, &dir))?
                .count();
            if n > 0 {
                return Err(Error::unsupported(
                    pid,
                    format!("{n} POSIX message queue(s) in {mp} (not dumped yet)"),
                ));
            }
        }
        pidns::mark_procs(pid, &mut tree, &c)?;
        c.mnt = Some(tree);
    } else if own.contains(&NsKind::Pid) {
        return Err(Error::unsupported(
            pid,
            "a pid namespace of its own in rcriu's mount namespace (its /proc could not be made again)",
        ));
    }
    Ok(Some(c))
}

/// The lock of a network namespace of the tree's own, taken before it
/// is read (so its firewall images hold it): lifted when dropped, unless
/// the dump ended with the tree killed ([`NsLock::keep`]), when the
/// restore lifts it.
#[derive(Debug)]
pub struct NsLock {
    file: std::fs::File,
    method: crate::tcp_stream::LockMethod,
    run_id: String,
    keep: bool,
}

impl NsLock {
    /// The tree is gone: the lock stays for the restore.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for NsLock {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let (method, run_id) = (self.method, self.run_id.as_str());
        if let Err(e) = crate::sockets::joined(&self.file, || {
            rcriu_restore::net_lock::unlock_ns(method, run_id)
        }) {
            log::error!("lifting the lock of the network namespace: {e}");
        }
    }
}

impl Container {
    /// The network namespace of its own its sockets live in, open, when
    /// it has one (empty or external, as [`collect`] checked).
    pub fn net_ns(&self, pid: Pid) -> Result<Option<crate::sockets::NetNs>> {
        if !self.own.contains(&NsKind::Net) {
            return Ok(None);
        }
        let path = format!("/proc/{pid}/ns/net");
        let file = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
        let ino =
            std::os::unix::fs::MetadataExt::ino(&file.metadata().map_err(Error::file(pid, &path))?);
        if Some(ino) != self.ns.get(NsKind::Net) {
            return Err(Error::Inconsistent {
                pid,
                what: format!("its network namespace changed (now net:[{ino}])"),
            });
        }
        Ok(Some(crate::sockets::NetNs {
            file,
            ino,
            empty: self.net_ext.is_none() && self.net.is_none(),
            whole: self.net.is_some(),
        }))
    }

    /// Process `pid`'s number in the namespace.
    pub fn vpid(&self, pid: Pid) -> Pid {
        self.vpid_of(pid).unwrap_or(pid)
    }

    /// Process `pid`'s number in the namespace, if it is one of the tree.
    pub fn vpid_of(&self, pid: Pid) -> Option<Pid> {
        self.vpids.iter().find(|(h, _)| *h == pid).map(|(_, v)| *v)
    }

    /// Refuses an fd the restore cannot open again in the container yet:
    /// a file of its proc (mounted once its pid namespace
    /// exists, after the files are opened), a terminal other than a pty
    /// of its devpts or `/dev/tty`, or a message queue (of its own
    /// mqueue, which the restore does not reach).
    pub fn check_fd(&self, pid: Pid, fd: &rcriu_proc::Fd, info: &rcriu_proc::FdInfo) -> Result<()> {
        let what = match fd.target() {
            rcriu_proc::FdTarget::Path { path, .. } if self.mnt.is_some() => {
                let p = path.to_string_lossy();
                // A pty of a devpts the container does not mount (the
                // terminal runc was run from, passed in): its path names
                // another pty in the container.
                let foreign_pty = p.starts_with("/dev/pts/")
                    && !self.mnt.as_ref().is_some_and(|t| {
                        t.entries.iter().any(|e| {
                            e.fstype == mnt::fstype::DEVPTS && e.mnt_id as i32 == info.mnt_id
                        })
                    });
                let kind = if p.starts_with("/proc/") || p == "/proc" {
                    Some("a file of the container's proc")
                } else if p == "/dev/console" || (p.starts_with("/dev/tty") && p != "/dev/tty") {
                    Some("a terminal of the container")
                } else if foreign_pty {
                    Some("a pty of a devpts the container does not mount")
                } else if p.starts_with("/dev/mqueue/") {
                    Some("a message queue of the container")
                } else {
                    None
                };
                kind.map(|k| format!("{k}, {p}"))
            }
            _ => None,
        };
        match what {
            Some(w) => Err(Error::unsupported(
                pid,
                format!("fd {}: {w} (not restored in a container yet)", fd.fd),
            )),
            None => Ok(()),
        }
    }

    /// Whether a process's namespace of `kind` is the container's.
    pub fn holds(&self, kind: NsKind, ino: Option<u64>) -> bool {
        let kind = match kind {
            NsKind::PidForChildren => NsKind::Pid,
            k => k,
        };
        if kind == NsKind::Pid && ino.is_some_and(|i| self.nested_ns.contains(&i)) {
            return true;
        }
        self.own.contains(&kind) && self.ns.get(kind) == ino
    }

    /// The pids of host tid `tid` from the container's namespace down to
    /// its own, when it is in a nested one.
    pub fn ns_pids(&self, tid: Pid) -> Option<&[Pid]> {
        self.nested
            .iter()
            .find(|(h, _)| *h == tid)
            .map(|(_, v)| v.as_slice())
    }
}
