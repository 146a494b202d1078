//! A container's namespaces made again, as CRIU 4.2 dumps them: the pid
//! namespace whose init is the root, the UTS and IPC namespaces (names
//! and limits, [`utsns`], [`ipcns`]), the mount namespace ([`mnt`]) and
//! an empty network namespace, or the external one the caller gives
//! (`netns-<id>.img` naming its key, `--inherit-fd fd[N]:KEY`).
//!
//! They are made by a holder: a thread of rcriu that unshares them (a
//! thread's own, rcriu stays where it is), sets them up, pivots into the
//! container's root and, told to, forks the root into a new pid
//! namespace (`CLONE_NEWPID`), so that the root inherits the rest. rcriu
//! opens the container's files through the holder's root
//! (`/proc/<holder>/root`). Once the root exists, the holder mounts proc
//! for its pid namespace, before the root is told to go. While the
//! files are opened, rcriu's planning thread joins the holder's network
//! namespace ([`InNet`]), so that the container's sockets are made in
//! it.
//!
//! A tree in a user namespace of its own ([`userns`]): the namespaces
//! are made in a new user namespace by a helper, and the holder joins
//! them instead of unsharing its own; the root is forked, with its new
//! pid namespace, by a child of the holder that entered the user
//! namespace first, so that it owns the pid namespace too.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::Pid;
use rustix::thread::UnshareFlags;

use crate::{Error, Result, ipcns, mnt, net, sys, userns, utsns};

/// What the caller tells the restore of a container.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// criu's `--root`: where the container's root directory is now.
    pub root: Option<PathBuf>,
    /// criu's `--external mnt[KEY]:PATH` (`ext_mnt`): key → host path.
    pub ext_mounts: Vec<(String, String)>,
    /// criu's `--inherit-fd fd[N]:KEY`: the caller's fds, by key (an
    /// external network namespace is joined through its key's fd).
    pub inherit_fds: Vec<(i32, String)>,
    /// criu's `--external veth[IN]:OUT[@BRIDGE]`: the outside end of a
    /// veth of the network namespace, by its inside name.
    pub veths: Vec<(String, String)>,
    /// criu's `--join-ns net:PATH`: the network namespace the tree is
    /// restored in, joined (its images' namespace is not made).
    pub join_net: Option<PathBuf>,
}

/// The namespaces the root of the images has of its own.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub pid: bool,
    pub net: bool,
    /// The key of an external network namespace (`netns-<id>.img`'s
    /// `ext_key`), joined rather than made.
    pub net_ext: Option<String>,
    /// A network namespace of its own made again with its devices,
    /// addresses, routes and firewall (`netdev-<id>.img` is there).
    pub net_full: Option<net::NetNs>,
    pub uts: Option<pb::UtsnsEntry>,
    /// The IPC namespace's limits and its id (which names the images of
    /// its objects).
    pub ipc: Option<(pb::IpcVarEntry, u32)>,
    pub mnt: Option<mnt::MntTree>,
    /// Its user namespace of its own, owning the others.
    pub user: Option<userns::UserNs>,
}

/// Reads the namespaces of the root `ids` has of its own (those that
/// differ from the dumper's, `dumper`); refuses the kinds not restored.
pub fn load(
    dir: &ImageDir,
    pid: u32,
    ids: &pb::TaskKobjIdsEntry,
    dumper: &pb::TaskKobjIdsEntry,
) -> Result<Option<Container>> {
    let own = |a: Option<u32>, b: Option<u32>| matches!((a, b), (Some(x), Some(y)) if x != y);
    for (name, a, b) in [("cgroup", ids.cgroup_ns_id, dumper.cgroup_ns_id)] {
        if own(a, b) {
            return Err(Error::unsupported(format!(
                "restoring process {pid} into its own {name} namespace"
            )));
        }
    }
    let mut c = Container {
        pid: own(ids.pid_ns_id, dumper.pid_ns_id),
        net: own(ids.net_ns_id, dumper.net_ns_id),
        ..Container::default()
    };
    if own(ids.user_ns_id, dumper.user_ns_id) {
        c.user = Some(userns::UserNs::load(dir, ids.user_ns_id.unwrap_or(0))?);
    }
    if c.net {
        let file = ImageFile::Netns(ids.net_ns_id.unwrap_or(0).into());
        if dir.exists(file) {
            let e: pb::NetnsEntry = dir.read_one(file)?;
            let id = ids.net_ns_id.unwrap_or(0);
            if e.ext_key.is_none() && dir.exists(ImageFile::Netdev(id.into())) {
                c.net_full = Some(net::load(dir, id, e)?);
            } else {
                c.net_ext = e.ext_key.map(|k| String::from_utf8_lossy(&k).into_owned());
            }
        }
    }
    if own(ids.uts_ns_id, dumper.uts_ns_id) {
        let file = ImageFile::Utsns(ids.uts_ns_id.unwrap_or(0).into());
        c.uts = Some(dir.read_one(file)?);
    }
    if own(ids.ipc_ns_id, dumper.ipc_ns_id) {
        let id = ids.ipc_ns_id.unwrap_or(0);
        c.ipc = Some((dir.read_one(ImageFile::IpcVar(id.into()))?, id));
    }
    if own(ids.mnt_ns_id, dumper.mnt_ns_id) {
        let file = ImageFile::Mountpoints(ids.mnt_ns_id.unwrap_or(0).into());
        let entries = dir.read_all(file)?;
        c.mnt = Some(mnt::MntTree::new(entries, file.name())?);
    }
    if c.user.is_some() && !c.pid {
        return Err(Error::unsupported(format!(
            "restoring process {pid} into its own user namespace without a pid namespace of its own"
        )));
    }
    if c.pid && c.mnt.is_none() {
        return Err(Error::unsupported(format!(
            "restoring process {pid} into its own pid namespace in rcriu's mount namespace"
        )));
    }
    if !(c.pid
        || c.net
        || c.uts.is_some()
        || c.ipc.is_some()
        || c.mnt.is_some()
        || c.user.is_some())
    {
        return Ok(None);
    }
    Ok(Some(c))
}

/// Checks that process `pid` (not the root) lives in the root's
/// namespaces, the only ones a tree is restored in (but a pid namespace
/// nested in the root's, [`crate::pidns`]).
pub fn check_same(
    pid: u32,
    ids: &pb::TaskKobjIdsEntry,
    root: &pb::TaskKobjIdsEntry,
    nested_pid: bool,
) -> Result<()> {
    let pairs = [
        ("pid", ids.pid_ns_id, root.pid_ns_id),
        ("network", ids.net_ns_id, root.net_ns_id),
        ("ipc", ids.ipc_ns_id, root.ipc_ns_id),
        ("uts", ids.uts_ns_id, root.uts_ns_id),
        ("mount", ids.mnt_ns_id, root.mnt_ns_id),
        ("user", ids.user_ns_id, root.user_ns_id),
        ("cgroup", ids.cgroup_ns_id, root.cgroup_ns_id),
    ];
    for (name, own, theirs) in pairs {
        // A nested pid namespace (its pids at every level in pstree).
        if name == "pid" && nested_pid {
            continue;
        }
        if let (Some(a), Some(b)) = (own, theirs)
            && a != b
        {
            return Err(Error::unsupported(format!(
                "restoring process {pid} into a {name} namespace other than its root's"
            )));
        }
    }
    Ok(())
}

/// What the holder is asked: fork the root, or, once the tree exists,
/// mount the procs of nested pid namespaces (entry index, namespace).
enum Cmd {
    Fork(Fork),
    NestedProcs(Vec<(usize, OwnedFd)>),
}

/// How the holder forks the root (what `sys::clone3_into` takes).
#[derive(Debug, Clone, Copy)]
pub struct Fork {
    pub flags: u64,
    pub pid: Pid,
    pub stack: u64,
    pub stack_size: u64,
    pub entry: u64,
    pub arg: u64,
}

/// The thread holding the container's namespaces.
pub struct Holder {
    tid: Pid,
    /// The ptys the mounts made (index, master), for the terminals.
    ptys: Vec<(u32, OwnedFd)>,
    fork: Option<mpsc::Sender<Cmd>>,
    done: mpsc::Receiver<(Option<Pid>, Result<()>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Holder({})", self.tid)
    }
}

/// The holder's first steps, in its own thread: namespaces, names,
/// limits, mounts (but proc), pivot.
fn set_up(
    c: &Container,
    o: &Options,
    dir: &ImageDir,
) -> Result<(Option<mnt::Prepared>, Option<OwnedFd>, Option<OwnedFd>)> {
    // rcriu's network namespace, where the outside ends of veths go.
    let joining = c.net && o.join_net.is_some();
    let host_net = match &c.net_full {
        Some(_) if joining => None,
        Some(n) => {
            n.check(&o.veths)?;
            Some(OwnedFd::from(
                std::fs::File::open("/proc/thread-self/ns/net")
                    .map_err(Error::file("opening", "/proc/thread-self/ns/net"))?,
            ))
        }
        None => None,
    };
    let mut flags = UnshareFlags::empty();
    if c.mnt.is_some() {
        flags |= UnshareFlags::NEWNS;
    }
    if c.net && c.net_ext.is_none() && !joining {
        flags |= UnshareFlags::NEWNET;
    }
    if c.uts.is_some() {
        flags |= UnshareFlags::NEWUTS;
    }
    if c.ipc.is_some() {
        flags |= UnshareFlags::NEWIPC;
    }
    // rcriu's mount namespace, before the holder joins one of a user
    // namespace of the tree's own.
    let outside = match &c.user {
        Some(_) => Some(OwnedFd::from(
            std::fs::File::open("/proc/thread-self/ns/mnt")
                .map_err(Error::file("opening", "/proc/thread-self/ns/mnt"))?,
        )),
        None => None,
    };
    let user = match &c.user {
        Some(u) => Some(join_made(u, flags)?),
        None => {
            sys::unshare(flags).map_err(Error::host("unsharing the container's namespaces"))?;
            None
        }
    };
    let inside = match &outside {
        Some(_) => Some(OwnedFd::from(
            std::fs::File::open("/proc/thread-self/ns/mnt")
                .map_err(Error::file("opening", "/proc/thread-self/ns/mnt"))?,
        )),
        None => None,
    };
    if let (true, Some(path)) = (joining, &o.join_net) {
        join_net(path)?;
    } else if let Some(key) = &c.net_ext {
        join_external_net(key, &o.inherit_fds)?;
    }
    // As CRIU, the network before the mounts (its tools run in rcriu's
    // mount namespace).
    if let (Some(n), Some(host)) = (&c.net_full, &host_net) {
        net::restore_here(dir, n, &o.veths, host)?;
    }
    if let Some(u) = &c.uts {
        utsns::set_here(u)?;
    }
    if let Some((var, id)) = &c.ipc {
        ipcns::set_here(var, dir, *id, c.user.as_ref())?;
    }
    let Some(tree) = &c.mnt else {
        return Ok((None, None, user));
    };
    let Some(root) = &o.root else {
        return Err(Error::unsupported(
            "restoring a mount namespace without --root (where the container's root is)",
        ));
    };
    // rcriu's /proc, to reach the root's pid namespace once the holder
    // left rcriu's tree.
    let proc = rustix::fs::open(
        "/proc",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::file("opening", "/proc")(e.into()))?;
    let in_user = c.user.as_ref().zip(user.as_ref().map(|u| u.as_fd()));
    let mut prepared = mnt::prepare(tree, dir, &o.ext_mounts, in_user)?;
    prepared.outside = outside;
    prepared.inside = inside;
    mnt::pivot(root)?;
    mnt::attach_prepared(tree, &mut prepared)?;
    Ok((Some(prepared), Some(proc), user))
}

/// Makes the tree's user namespace and, in it, the namespaces of `flags`,
/// and joins those (the user namespace itself is entered by the child
/// that forks the root, [`crate::fork_restorer_in`]); returns the user
/// namespace, open.
fn join_made(u: &userns::UserNs, flags: UnshareFlags) -> Result<OwnedFd> {
    let made = userns::make(u, u64::from(flags.bits()))?;
    // Its own root and cwd (shared with rcriu's other threads otherwise),
    // which a mount namespace joined replaces.
    sys::unshare(UnshareFlags::FS).map_err(Error::host("unsharing the holder's fs info"))?;
    for (kind, fd) in &made.others {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind)).map_err(|e| {
            Error::host("joining a namespace made in the new user namespace (setns)")(e.into())
        })?;
    }
    Ok(made.user)
}

/// Joins the network namespace at `path` (`--join-ns net:PATH`; a pid
/// stands for its process's).
fn join_net(path: &Path) -> Result<()> {
    let path = match path.to_str().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        None => path.to_owned(),
    };
    let ns = std::fs::File::open(&path).map_err(Error::file("opening (--join-ns net)", &path))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&ns),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| Error::file("joining the network namespace (--join-ns net)", &path)(e.into()))
}

/// Joins the external network namespace the caller gives for `key`
/// (`--inherit-fd fd[N]:KEY`).
fn join_external_net(key: &str, inherited: &[(i32, String)]) -> Result<()> {
    let Some((fd, _)) = inherited.iter().find(|(_, k)| k == key) else {
        return Err(Error::unsupported(format!(
            "restoring the external network namespace {key} without an fd for it (--inherit-fd fd[N]:{key})"
        )));
    };
    let ns = sys::dup_inherited(*fd).map_err(Error::host(
        "taking the fd of the external network namespace",
    ))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&ns),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| {
        Error::host("joining the external network namespace (setns of the inherited fd)")(e.into())
    })
}

impl Holder {
    /// Starts the holder: when this returns, the namespaces (but pid)
    /// exist and the container's root is the holder's.
    pub fn start(c: &Container, o: &Options, dir: &ImageDir) -> Result<Holder> {
        let (fork_tx, fork_rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(Pid, Vec<(u32, OwnedFd)>)>>();
        let (done_tx, done_rx) = mpsc::channel();
        let (c_full, veths) = (
            c.net_full.is_some() && o.join_net.is_none(),
            o.veths.clone(),
        );
        let (c, o, dir) = (c.clone(), o.clone(), dir.clone());
        let thread = std::thread::Builder::new()
            .name("namespaces".into())
            .spawn(move || {
                let (mut prepared, proc, user) = match set_up(&c, &o, &dir) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let ptys = prepared
                    .as_mut()
                    .map(|p| std::mem::take(&mut p.ptys))
                    .unwrap_or_default();
                let tid = rustix::thread::gettid().as_raw_nonzero().get();
                let _ = ready_tx.send(Ok((tid, ptys)));
                let Ok(Cmd::Fork(mut f)) = fork_rx.recv() else {
                    return;
                };
                if c.pid {
                    f.flags |= libc::CLONE_NEWPID as u64;
                }
                let forked = match &user {
                    Some(u) => crate::fork_restorer_in(&f, u.as_fd()),
                    None => crate::fork_restorer(&f),
                };
                let child = match forked {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = done_tx.send((
                            None,
                            Err(Error::host(
                                "creating the process (clone3 in its namespaces)",
                            )(e)),
                        ));
                        return;
                    }
                };
                let r = match (&c.mnt, prepared.as_mut(), &proc) {
                    (Some(tree), Some(p), Some(proc)) => {
                        let ns = format!("{child}/ns/pid");
                        rustix::fs::openat(
                            proc,
                            ns.as_str(),
                            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                            rustix::fs::Mode::empty(),
                        )
                        .map_err(|e| Error::file("opening", format!("/proc/{ns}"))(e.into()))
                        .and_then(|ns| mnt::mount_proc(tree, p, &ns))
                    }
                    _ => Ok(()),
                };
                let _ = done_tx.send((Some(child), r));
                // Alive until the restore ends: the root's parent (without
                // CLONE_PARENT) is this thread, and the restorer asks for
                // a signal at its parent's end. Meanwhile, the procs of
                // nested pid namespaces, once the tree exists.
                while let Ok(cmd) = fork_rx.recv() {
                    if let (Cmd::NestedProcs(list), Some(tree)) = (cmd, &c.mnt) {
                        let _ = done_tx.send((None, mnt::mount_nested_procs(tree, &list)));
                    }
                }
            })
            .map_err(Error::host("starting the namespace holder"))?;
        let (tid, ptys) = match ready_rx.recv() {
            Ok(Ok(t)) if c_full => {
                // The outside ends of the veths are in rcriu's network
                // namespace, this thread's.
                net::to_bridges(&veths)?;
                t
            }
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::unsupported("the namespace holder ended early"));
            }
        };
        Ok(Holder {
            tid,
            ptys,
            fork: Some(fork_tx),
            done: done_rx,
            thread: Some(thread),
        })
    }

    /// The ptys the mounts made (index, master), taken once.
    pub fn take_ptys(&mut self) -> Vec<(u32, OwnedFd)> {
        std::mem::take(&mut self.ptys)
    }

    /// The container's root, seen from rcriu.
    pub fn root(&self) -> PathBuf {
        Path::new(&format!(
            "/proc/{}/task/{}/root",
            std::process::id(),
            self.tid
        ))
        .to_owned()
    }

    /// The container's network namespace, seen from rcriu.
    pub fn net(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            self.tid
        ))
    }

    /// The container's IPC namespace, seen from rcriu.
    pub fn ipc(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/task/{}/ns/ipc",
            std::process::id(),
            self.tid
        ))
    }

    /// Forks the root in the container's namespaces; returns its pid on
    /// the host once proc is mounted for it. On an error after the fork,
    /// the pid comes with it.
    pub fn fork(&mut self, f: Fork) -> (Option<Pid>, Result<()>) {
        let sent = self.fork.as_ref().map(|tx| tx.send(Cmd::Fork(f)));
        if !matches!(sent, Some(Ok(()))) {
            return (
                None,
                Err(Error::unsupported("the namespace holder ended early")),
            );
        }
        self.done.recv().unwrap_or((
            None,
            Err(Error::unsupported("the namespace holder ended early")),
        ))
    }
}

impl Holder {
    /// Mounts the procs of the nested pid namespaces (entry index in the
    /// mount tree, the namespace), once the tree exists.
    pub fn mount_nested_procs(&mut self, list: Vec<(usize, OwnedFd)>) -> Result<()> {
        let ended = || Error::unsupported("the namespace holder ended early");
        let tx = self.fork.as_ref().ok_or_else(ended)?;
        tx.send(Cmd::NestedProcs(list)).map_err(|_| ended())?;
        self.done.recv().map_err(|_| ended())?.1
    }
}

/// The calling thread in a container's network namespace, until this is
/// dropped: the sockets of the images are made there (a socket lives in
/// the namespace it was made in), as the restored processes will see
/// them; rcriu's other threads stay in rcriu's.
#[derive(Debug)]
pub struct InNet {
    back: OwnedFd,
}

impl InNet {
    /// Joins the network namespace at `ns` (a holder's [`Holder::net`]).
    pub fn join(ns: &Path) -> Result<InNet> {
        let open = |p: &Path| {
            std::fs::File::open(p)
                .map(OwnedFd::from)
                .map_err(Error::file("opening", p))
        };
        let back = open(Path::new("/proc/thread-self/ns/net"))?;
        let there = open(ns)?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&there),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| Error::host("joining the container's network namespace (setns)")(e.into()))?;
        Ok(InNet { back })
    }
}

impl Drop for InNet {
    fn drop(&mut self) {
        if let Err(e) = rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&self.back),
            Some(rustix::thread::LinkNameSpaceType::Network),
        ) {
            log::error!("going back to rcriu's network namespace: {e}");
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.fork.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
