//! The restore pipeline: a dump's images to a running process.
//!
//! 1. Read and check every image ([`load`]); plan the address space
//!    ([`mm`]; memfds and shared memory are made again and filled here,
//!    [`memfd`]), the page reads ([`pages`]), the registers and the rest
//!    of the core ([`core`]), the fds, cwd and root ([`files`]), the time
//!    namespace ([`timens`]), the vDSO ([`vdso`]) and the cgroups
//!    ([`cgroup`], whose missing directories are made last, before the
//!    fork; the process enters them before it runs). Files are opened and
//!    validated now: nothing is started while anything may still fail.
//! 2. Map the restorer's region ([`region`]) in a hole of both address
//!    spaces, and fork into it with clone3 and the process's pid.
//! 3. The restorer (a no_std blob) builds the process from its `Args`;
//!    rcriu traces it, then sets its registers and lets it go
//!    ([`finish`]).

#![deny(unsafe_code)]

mod anon;
#[allow(unsafe_code)]
mod anon_sys;
mod cgroup;
mod check;
mod core;
mod error;
mod eventfd;
mod eventpoll;
mod fanotify;
pub mod fhandle;
mod file_lock;
mod files;
#[allow(unsafe_code)]
mod files_sys;
mod finish;
mod ghost;
mod inotify;
mod io_uring;
mod ipcns;
#[allow(unsafe_code)]
mod ipcns_sys;
pub mod lazy_pages;
mod link_remap;
mod load;
mod memfd;
mod mm;
mod mnt;
mod namespaces;
pub mod net;
pub mod net_lock;
mod nsfile;
mod page_helper;
mod pages;
mod pidfd;
mod pidns;
mod pipes;
mod plan;
mod proc_remap;
mod region;
mod signalfd;
mod sk_inet;
mod sk_netlink;
mod sk_packet;
mod sk_queue;
#[allow(unsafe_code)]
mod sk_sys;
mod sk_unix;
mod sockets;
#[allow(unsafe_code)]
mod sys;
mod tcp_stream;
mod timens;
mod timerfd;
mod tmpfs;
mod tty;
pub mod uffd;
#[allow(unsafe_code)]
mod uffd_sys;
pub use tty::OrphanPts;
pub mod unprivileged;
pub mod userns;
mod utsns;
mod vdso;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rcriu_compel::Xstate;
use rcriu_compel::abi::restorer::{self as abi, Args, FdMove, Range, Step};
use rcriu_images::{ImageDir, ImageFile};
use rcriu_proc::Pid;

pub use cgroup::Mode as CgroupMode;
pub use check::{check, check_images, check_images_with};
pub use error::{Error, Result};
pub use files::FileValidation;

/// The top of the user address space on x86_64 (4-level paging).
pub(crate) const TASK_SIZE: u64 = (1 << 47) - 4096;

/// The points of a restore at which criu runs its action scripts, for
/// [`Restore::hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before anything is read or made.
    PreRestore,
    /// The process is whole but has not run one instruction of its own.
    PostRestore(Pid),
    /// It is about to be let go.
    PreResume(Pid),
    /// It runs.
    PostResume(Pid),
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::PreRestore => "pre-restore",
            Stage::PostRestore(_) => "post-restore",
            Stage::PreResume(_) => "pre-resume",
            Stage::PostResume(_) => "post-resume",
        })
    }
}

/// What [`Restore::hook`] calls at each [`Stage`]; an `Err` says why it
/// refuses to go on.
pub type Hook = Arc<dyn Fn(Stage) -> std::result::Result<(), String> + Send + Sync>;

/// A hook, shown by name only.
#[derive(Clone)]
struct Hooked(Hook);

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A restore, configured with the builder methods, started with
/// [`Restore::run`].
#[derive(Debug, Clone)]
pub struct Restore {
    dir: PathBuf,
    detach: bool,
    sibling: bool,
    shell_job: bool,
    leave_stopped: bool,
    file_locks: bool,
    validation: FileValidation,
    force_vdso_proxy: bool,
    sockets: sockets::Options,
    stats_dir: Option<PathBuf>,
    key: Option<rcriu_images::crypt::Key>,
    namespaces: namespaces::Options,
    cg_roots: Vec<(Option<String>, String)>,
    cgroup_mode: cgroup::Mode,
    hook: Option<Hooked>,
    /// criu's `orphan_pts_master`: who takes the master of a container's
    /// new terminal.
    orphan_pts: Option<OrphanPtsHooked>,
    /// `--unprivileged`: the caller whose credentials every restored
    /// thread must have.
    caller: Option<unprivileged::Caller>,
    /// `--lazy-pages`: the work directory whose `lazy-pages.socket` the
    /// daemon listens on.
    lazy_pages: Option<PathBuf>,
}

/// An [`OrphanPts`], shown by name only.
#[derive(Clone)]
struct OrphanPtsHooked(OrphanPts);

impl std::fmt::Debug for OrphanPtsHooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrphanPts")
    }
}

/// A restored process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub pid: Pid,
    /// Time until the process ran again, in microseconds.
    pub restore_time_us: u64,
    /// Pages read from the images.
    pub pages_restored: u64,
    /// Of those, pages of areas children inherited from their parents
    /// that were compared, and those left shared with the parent (the same
    /// bytes): CRIU's `pages_compared` and `pages_skipped_cow`.
    pub pages_compared: u64,
    pub pages_cow: u64,
    /// Pages children share with their parents, kept once in the images
    /// (a dump of rcriu's, `parent/`), which they inherited unread.
    pub pages_kept: u64,
    /// The raw wait status, when the restore waited for the process to
    /// end (not detached).
    pub wait_status: Option<i32>,
}

impl Restore {
    /// A restore of the images in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Restore {
        Restore {
            dir: dir.into(),
            detach: false,
            sibling: false,
            shell_job: false,
            leave_stopped: false,
            file_locks: false,
            validation: FileValidation::default(),
            force_vdso_proxy: false,
            sockets: sockets::Options::default(),
            stats_dir: None,
            key: None,
            namespaces: namespaces::Options::default(),
            cg_roots: Vec::new(),
            cgroup_mode: cgroup::Mode::default(),
            hook: None,
            orphan_pts: None,
            caller: None,
            lazy_pages: None,
        }
    }

    /// criu's `--lazy-pages`: the lazy pages (CRIU's choice: private
    /// anonymous memory with pages in the images) are left to the
    /// lazy-pages daemon listening in `work_dir` (`rcriu lazy-pages`),
    /// which brings them in on fault and in the background; the process
    /// runs before they are in.
    pub fn lazy_pages(mut self, work_dir: impl Into<PathBuf>) -> Restore {
        self.lazy_pages = Some(work_dir.into());
        self
    }

    /// criu's `orphan_pts_master`: the one pty slave of the images whose
    /// master was outside the dump (a container's terminal, whose master
    /// its runtime held) is made again with a new pty, whose master `f`
    /// is given (to hand to the caller, which keeps its own copy; rcriu
    /// closes its own before the process runs). `f` answers `false` when
    /// it has no one to hand it to: the slave is then restored as without
    /// this.
    pub fn orphan_pts_master(mut self, f: OrphanPts) -> Restore {
        self.orphan_pts = Some(OrphanPtsHooked(f));
        self
    }

    /// criu's `--unprivileged` for a caller that is not root: images
    /// whose credentials are not `caller`'s are refused before anything
    /// starts (see [`unprivileged`]).
    pub fn unprivileged(mut self, caller: unprivileged::Caller) -> Restore {
        self.caller = Some(caller);
        self
    }

    /// The key of encrypted images (a dump with `--encrypt`): they are
    /// authenticated and decrypted before anything starts; with a key,
    /// images that are not encrypted are refused.
    pub fn key(mut self, key: rcriu_images::crypt::Key) -> Restore {
        self.key = Some(key);
        self
    }

    /// Where a container's root directory is now (criu's `--root`).
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Restore {
        self.namespaces.root = Some(dir.into());
        self
    }

    /// The cgroups of `controller` (all when `None`) are under `path`
    /// (criu's `--cgroup-root`, the RPC's `cg_root`): taken only where
    /// the images already put them, refused otherwise.
    pub fn cgroup_root(mut self, controller: Option<String>, path: impl Into<String>) -> Restore {
        self.cg_roots.push((controller, path.into()));
        self
    }

    /// What is done with the processes' cgroups (criu's
    /// `--manage-cgroups` modes; soft unless told).
    pub fn manage_cgroups(mut self, mode: CgroupMode) -> Restore {
        self.cgroup_mode = mode;
        self
    }

    /// The caller's fd `fd` stands for the file `key` of the images
    /// (criu's `--inherit-fd fd[N]:KEY`): a pipe (`pipe:[INODE]`) or an
    /// external network namespace's key; a regular file is refused.
    pub fn inherit_fd(mut self, fd: i32, key: impl Into<String>) -> Restore {
        self.namespaces.inherit_fds.push((fd, key.into()));
        self
    }

    /// The tree is restored in the network namespace at `path` (a file
    /// of `/proc/PID/ns/` or a bind of one, or a pid), joined rather than
    /// made (criu's `--join-ns net:PATH`).
    pub fn join_net(mut self, path: impl Into<PathBuf>) -> Restore {
        self.namespaces.join_net = Some(path.into());
        self
    }

    /// The veth `inside` of the images' network namespace has its peer
    /// `outside` (`NAME` or `NAME@BRIDGE`) in rcriu's, made there (criu's
    /// `--external veth[IN]:OUT[@BRIDGE]`, `--veth-pair IN=OUT`).
    pub fn external_veth(
        mut self,
        inside: impl Into<String>,
        outside: impl Into<String>,
    ) -> Restore {
        self.namespaces.veths.push((inside.into(), outside.into()));
        self
    }

    /// The external mount the images name `key` is bound from `path`
    /// (criu's `--external mnt[KEY]:PATH`, the RPC's `ext_mnt`).
    pub fn ext_mount(mut self, key: impl Into<String>, path: impl Into<String>) -> Restore {
        self.namespaces.ext_mounts.push((key.into(), path.into()));
        self
    }

    /// Leave the restored process stopped (SIGSTOP), as criu's
    /// `--leave-stopped`.
    pub fn leave_stopped(mut self, yes: bool) -> Restore {
        self.leave_stopped = yes;
        self
    }

    /// Where `stats-restore` goes (criu's work directory, `-W`): the
    /// images directory unless told.
    pub fn stats_dir(mut self, dir: impl Into<PathBuf>) -> Restore {
        self.stats_dir = Some(dir.into());
        self
    }

    /// Calls `hook` at each [`Stage`] (criu's action scripts and RPC
    /// notifications). An `Err` at [`Stage::PreRestore`] fails the
    /// restore before anything is made; at [`Stage::PostRestore`] the
    /// process is killed before it runs and the restore fails
    /// ([`Error::Hook`]); at the later stages, as criu, it is logged as an
    /// error and the restore goes on.
    pub fn hook(mut self, hook: Hook) -> Restore {
        self.hook = Some(Hooked(hook));
        self
    }

    /// Calls the hook at `stage`.
    fn call(&self, stage: Stage) -> std::result::Result<(), String> {
        match &self.hook {
            Some(h) => (h.0)(stage),
            None => Ok(()),
        }
    }

    /// Connect unix sockets to their named peers outside the dump
    /// (criu's `--ext-unix-sk`).
    pub fn ext_unix_sk(mut self, yes: bool) -> Restore {
        self.sockets.ext_unix_sk = yes;
        self
    }

    /// Restore connected TCP sockets connected (criu's
    /// `--tcp-established`).
    pub fn tcp_established(mut self, yes: bool) -> Restore {
        self.sockets.tcp_established = yes;
        self
    }

    /// Restore connected TCP sockets closed (criu's `--tcp-close`; needed
    /// for images dumped with it).
    pub fn tcp_close(mut self, yes: bool) -> Restore {
        self.sockets.tcp_close = yes;
        self
    }

    /// Proxies the vDSO even when the running one matches the dumped one
    /// (to test the proxy on a kernel that would not need it).
    pub fn force_vdso_proxy(mut self, yes: bool) -> Restore {
        self.force_vdso_proxy = yes;
        self
    }

    /// Return once the process runs (criu's `-d`), rather than wait for it
    /// to end.
    pub fn detach(mut self, yes: bool) -> Restore {
        self.detach = yes;
        self
    }

    /// The root process is created as rcriu's sibling, a child of rcriu's
    /// parent (criu's `--restore-sibling`, which runc asks through the
    /// RPC so that the restored container is its child); only detached.
    pub fn sibling(mut self, yes: bool) -> Restore {
        self.sibling = yes;
        self
    }

    /// Take the locks and leases the images hold (criu's `-l`,
    /// `--file-locks`); without it they are left untaken, as criu leaves
    /// them.
    pub fn file_locks(mut self, yes: bool) -> Restore {
        self.file_locks = yes;
        self
    }

    /// The process need not be a session leader (criu's `--shell-job`).
    pub fn shell_job(mut self, yes: bool) -> Restore {
        self.shell_job = yes;
        self
    }

    /// How files are checked against the dump (criu's
    /// `--file-validation`).
    pub fn file_validation(mut self, v: FileValidation) -> Restore {
        self.validation = v;
        self
    }

    /// Restores the process, or the tree of processes, of the images.
    pub fn run(self) -> Result<Restored> {
        self.call(Stage::PreRestore).map_err(|why| Error::Hook {
            stage: Stage::PreRestore,
            why,
        })?;
        let start = Instant::now();
        // With rcriu's manifest, every file is checked before anything
        // starts.
        // A lazy restore leaves the large pages images to its daemon,
        // which hashes them against the manifest while it serves.
        let dir = match (&self.lazy_pages, &self.key) {
            (Some(_), None) => ImageDir::open_checked_deferring(&self.dir)?,
            _ => ImageDir::open_checked_with(&self.dir, self.key.clone())?,
        };
        let tree = load::load_tree(dir)?;
        if let Some(me) = &self.caller {
            unprivileged::admit_images(me, &tree)?;
        }
        let in_pidns = tree.container.as_ref().is_some_and(|c| c.pid);
        let in_userns = tree.container.as_ref().is_some_and(|c| c.user.is_some());
        // Pid namespaces nested in the container's: each process's pids
        // at every level.
        let levels = pidns::Levels::load(&tree, in_pidns)?;
        if levels.is_some() && self.lazy_pages.is_some() {
            return Err(Error::unsupported(
                "a lazy restore (--lazy-pages) of a nested pid namespace",
            ));
        }
        // Its daemon is told of each process by its pid here, which is
        // learnt only as the process appears.
        if in_userns && self.lazy_pages.is_some() && tree.procs.len() > 1 {
            return Err(Error::unsupported(
                "a lazy restore (--lazy-pages) of more than one process in a user namespace of its own",
            ));
        }
        if !in_pidns {
            for pid in tree.pids() {
                check_pid_free(pid as Pid)?;
            }
        }
        let root_img = &tree.procs[0];
        files::check_inherited(&root_img.files, &self.namespaces.inherit_fds)?;
        if self.namespaces.join_net.is_some() && !tree.container.as_ref().is_some_and(|c| c.net) {
            return Err(Error::unsupported(
                "joining a network namespace (--join-ns net) for a tree dumped in rcriu's own",
            ));
        }
        // A container's namespaces, made by their holder, whose root the
        // files are opened from.
        let mut holder = tree
            .container
            .as_ref()
            .map(|c| namespaces::Holder::start(c, &self.namespaces, &root_img.dir))
            .transpose()?;
        let _task_root = holder.as_ref().map(|h| files::TaskRoot::set(h.root()));
        // A container's network namespace of its own (made empty, or the
        // caller's): its sockets are made there.
        let net_ns = match (&holder, &tree.container) {
            (Some(h), Some(c)) if c.net => Some(h.net()),
            _ => None,
        };
        let in_net = net_ns.as_deref().map(namespaces::InNet::join).transpose()?;
        let pid = root_img.task.pid as Pid;
        let pst = &root_img.task.pstree;
        if pst.sid != pst.pid && !self.shell_job {
            return Err(Error::unsupported(format!(
                "restoring process {pid}, which is not a session leader, without --shell-job"
            )));
        }
        raise_nofile();
        // The daemon first: nothing is made if it is not there.
        let daemon = self
            .lazy_pages
            .as_deref()
            .map(uffd::Daemon::connect)
            .transpose()?;

        // -- Every process planned, every file opened: nothing is started
        // while anything may still fail.
        if root_img.inventory.tcp_close == Some(true) && !self.sockets.tcp_close {
            return Err(Error::unsupported(
                "restoring images dumped with --tcp-close without --tcp-close".to_string(),
            ));
        }
        // A process alone places its files at their numbers (see
        // `Ready`). In a tree every file rcriu opens must lie above every
        // process's fds, as the restorers place theirs while the children
        // they fork still need rcriu's: the numbers below are fenced off
        // while the files are opened, and each open file is one fd for the
        // whole tree.
        let in_place = tree.procs.len() == 1 && tree.zombies.is_empty();
        let sessions = sessions(&tree)?;
        let fence = if in_place {
            None
        } else {
            let top = tree
                .procs
                .iter()
                .flat_map(|p| p.task.fdinfo.iter().map(|e| e.fd))
                .max()
                .unwrap_or(2);
            let top = i32::try_from(top).map_err(|_| {
                Error::invalid(
                    ImageFile::Fdinfo(root_img.task.ids.files_id.into()).name(),
                    format!("fd {top}"),
                )
            })?;
            Some(files::Fence::below(top.saturating_add(1))?)
        };
        let mut sh = plan::Shared::new(root_img, &tree.procs, &self)?;
        sh.opener.tree = tree.processes();
        sh.opener.set_ttys(
            self.orphan_pts.as_ref().map(|h| h.0.clone()),
            holder.as_mut().map(|h| h.take_ptys()).unwrap_or_default(),
        );
        let mut plans = Vec::with_capacity(tree.procs.len());
        for img in &tree.procs {
            plans.push(plan::ProcPlan::new(img, &mut sh)?);
        }
        // Every socket made: their queues, connections and options.
        let mut tcp = {
            let fds: Vec<&files::FdPlan> = plans.iter().map(|p| &p.fds).collect();
            sh.opener.finish_sockets(&fds)?
        };
        sh.opener.finish()?;
        // The processes standing for ended ones in /proc remaps live
        // until the restored processes have their cwds and files there.
        let mut dead = sh.opener.take_dead();
        drop(fence);
        let (lock_method, run_id) = lock_of(root_img);
        // A network namespace made again with its firewall has the dump's
        // lock of the whole namespace back (CRIU's): lifted as a whole.
        let net_full = tree
            .container
            .as_ref()
            .is_some_and(|c| c.net_full.is_some());
        if net_full {
            tcp.ns_locked();
        } else if in_net.is_some() {
            // The connections' lock, made in the container's namespace
            // (where the dump's was), lifted at network-unlock.
            tcp.lock(lock_method, &run_id)?;
        }
        drop(in_net);
        // As criu's --unprivileged: no time namespace (making one takes
        // CAP_SYS_ADMIN); the process sees the host's monotonic clocks.
        let timens = match &self.caller {
            Some(_) => None,
            None => root_img.timens.as_ref().map(timens::offsets).transpose()?,
        };
        // Every fd the restorers use lies above every process's own.
        let min = plans
            .iter()
            .map(|p| p.max_target() + 1)
            .max()
            .unwrap_or(3)
            .max(3);
        let mut occupied = Vec::new();
        for p in &plans {
            occupied.extend(p.occupied());
        }
        let mut procs: Vec<plan::Ready<'_>> = plans
            .into_iter()
            .map(|p| p.ready(min, in_place))
            .collect::<Result<_>>()?;
        // Children that share private memory with their parents are
        // forked once that memory is in place, and inherit it (but those
        // a session helper forks).
        for i in 1..procs.len() {
            let pst = &procs[i].plan.img.task.pstree;
            if sessions.iter().any(|&(s, _)| s == pst.sid as Pid) && pst.ppid as Pid == pid {
                continue;
            }
            let ppid = procs[i].plan.img.task.pstree.ppid as Pid;
            let (before, rest) = procs.split_at_mut(i);
            if let Some(parent) = before.iter().find(|p| p.plan.pid == ppid)
                && rest[0].inherit_from(parent, &sh.rt)?
            {
                log::debug!(
                    "process {} inherits {} of its areas from {ppid}",
                    rest[0].plan.pid,
                    rest[0].vmas.iter().filter(|v| v.inherited != 0).count()
                );
            }
        }
        // An encrypted dump's large pages image is decrypted straight into
        // the root by rcriu (its restorer then reads none); another
        // process's, or one to compare or copy from, is decrypted whole
        // for its restorer to read, before any process is made.
        for (i, p) in procs.iter_mut().enumerate() {
            let pages = &p.plan.pages;
            let direct = i == 0 && pages.cow_batches.is_empty() && pages.alike_left.is_empty();
            if !direct && p.plan.sealed_pages.take().is_some() {
                let f = p
                    .plan
                    .img
                    .dir
                    .open_raw(ImageFile::Pages(pages.pages_id.into()))?;
                p.pages_file = files::renumber(f.into(), min)?;
            }
        }
        // Pages alike with the parent's that are not inherited after all
        // are read from a copy.
        for p in &mut procs {
            let file = std::fs::File::from(
                p.pages_file
                    .try_clone()
                    .map_err(Error::host("duplicating a pages image"))?,
            );
            if let Some(fd) = p.plan.pages.settle(&file)? {
                p.pages_file = files::renumber(fd, min)?;
            }
        }
        let (go_rd, go_wr) = rcriu_compel::sys::pipe().map_err(Error::host("creating a pipe"))?;
        let mut handoff = daemon
            .as_ref()
            .map(|_| uffd::Handoff::new(min))
            .transpose()?;
        let go_rd = files::renumber(go_rd, min)?;

        // -- The region: the blob, every process's args and arrays, a
        // stack for every restorer, the tree's words.
        let helpers = helpers(&tree);
        if in_pidns && !(helpers.is_empty() && sessions.is_empty()) {
            return Err(Error::unsupported(
                "restoring a pid namespace of its own with a group or session whose leader is gone",
            ));
        }
        // In a pid namespace of its own, every process but its init gets
        // a host pid rcriu picks, so that it knows each one's.
        // So does every thread but the leaders (each process's threads
        // are made by its restorer, with both tids), and every zombie.
        // In a user namespace of the tree's own, which may give pids only
        // at the levels it owns, the host's are the kernel's, learnt as
        // each task appears (as CRIU's).
        let host_pids: std::collections::BTreeMap<Pid, Pid> = if in_pidns && !in_userns {
            let others: Vec<Pid> = procs
                .iter()
                .skip(1)
                .map(|p| p.plan.pid)
                .chain(
                    procs
                        .iter()
                        .flat_map(|p| p.plan.core.threads.iter().skip(1).map(|t| t.tid as Pid)),
                )
                .chain(tree.zombies.iter().map(|z| z.pstree.pid as Pid))
                .collect();
            let n = others.len();
            others.into_iter().zip(free_host_pids(n)?).collect()
        } else {
            std::collections::BTreeMap::new()
        };
        for p in &mut procs {
            for t in p.plan.core.threads.iter_mut().skip(1) {
                t.args.host_tid = host_pids.get(&(t.tid as Pid)).copied().unwrap_or(0);
            }
            if let Some(l) = &levels {
                for t in p.plan.core.threads.iter_mut() {
                    l.thread(t.tid as Pid, &mut t.args)?;
                }
            }
        }
        let children: Vec<Vec<abi::Child>> = procs
            .iter()
            .map(|p| children_of(&tree, &helpers, &sessions, p.plan.pid))
            .collect();
        // A zombie or a helper runs on a small stack of its own.
        let small: Vec<Pid> = children
            .iter()
            .flatten()
            .filter(|c| c.kind != abi::CHILD_LIVE)
            .map(|c| c.pid)
            .collect();
        // Where each process's args go, one after another (their sizes,
        // copies included, known now), then the tree's words, then the
        // stacks: laid out from the first args on, the region sized to
        // hold them all.
        let mut rel = Vec::with_capacity(procs.len());
        let mut at = 0usize;
        for (p, c) in procs.iter().zip(&children) {
            rel.push(at);
            at = (at + (p.arrays(&[], c).len() + p.plan.proxy_len as u64) as usize)
                .next_multiple_of(64);
        }
        let tree_rel = at;
        at += 64;
        let mut stack_rel = Vec::with_capacity(procs.len());
        for _ in &procs {
            at = at.next_multiple_of(16);
            at += abi::STACK_SIZE;
            stack_rel.push(at);
        }
        let mut small_rel = Vec::with_capacity(small.len());
        for _ in &small {
            at = at.next_multiple_of(16);
            at += abi::SMALL_STACK_SIZE;
            small_rel.push(at);
        }
        let region = region::Region::map(&occupied, at as u64 + 64, vdso::park_size(&sh.rt))?;
        let base = region.first_args_off().next_multiple_of(64);
        let offs: Vec<usize> = rel.iter().map(|r| base + r).collect();
        let tree_off = base + tree_rel;
        let stacks: Vec<u64> = stack_rel.iter().map(|r| region.addr_of(base + r)).collect();
        let small_stacks: Vec<u64> = small_rel.iter().map(|r| region.addr_of(base + r)).collect();
        let joins_helper = |p: &plan::Ready<'_>| {
            let pgid = p.plan.img.task.pstree.pgid as Pid;
            helpers.iter().any(|&(_, g)| g == pgid)
        };
        let zombie_joins_helper = |z: &load::Zombie| {
            let pgid = z.pstree.pgid as Pid;
            pgid != z.pstree.pid as Pid && helpers.iter().any(|&(_, g)| g == pgid)
        };
        let tree_words = if procs.len() > 1 || !helpers.is_empty() {
            region.zero(tree_off, 64);
            region.put_at(
                tree_off,
                &abi::TreeShared {
                    created: 0,
                    nr_procs: (procs.len() + helpers.len()) as u32,
                    joined: 0,
                    nr_joiners: (procs.iter().filter(|p| joins_helper(p)).count()
                        + tree
                            .zombies
                            .iter()
                            .filter(|z| zombie_joins_helper(z))
                            .count()) as u32,
                },
            );
            region.addr_of(tree_off)
        } else {
            0
        };
        let root_pst = &procs[0].plan.img.task.pstree;
        // A root that does not lead its group (a shell job) has rcriu's:
        // its children that had its group keep the one it has now.
        let inherited_group = (root_pst.pgid != root_pst.pid).then_some(root_pst.pgid);
        let addr_of_pid = |pid: Pid| {
            procs
                .iter()
                .position(|p| p.plan.pid == pid)
                .map(|i| (region.addr_of(offs[i]), stacks[i]))
        };
        let mut placed = Vec::with_capacity(procs.len());
        let mut share_pages = false;
        let mut root_pages_file = None;
        let mut root_sealed = None;
        for (i, p) in procs.iter().enumerate() {
            let mut kids = children[i].clone();
            for k in &mut kids {
                k.host_pid = host_pids.get(&k.pid).copied().unwrap_or(0);
                match k.kind {
                    abi::CHILD_LIVE => {
                        if let Some((args, stack)) = addr_of_pid(k.pid) {
                            k.args = args;
                            k.stack_top = stack;
                        }
                        if let Some(t) = procs
                            .iter()
                            .map(|p| &p.plan.img.task)
                            .find(|t| t.pid as Pid == k.pid)
                        {
                            k.clone_flags = (k.clone_flags & libc::CLONE_PARENT as u64)
                                | if t.fdt_of_parent {
                                    libc::CLONE_FILES as u64
                                } else {
                                    0
                                }
                                | if t.fs_of_parent {
                                    libc::CLONE_FS as u64
                                } else {
                                    0
                                };
                        }
                        k.late = u32::from(
                            procs
                                .iter()
                                .any(|p| p.plan.pid == k.pid && p.late.is_some()),
                        );
                    }
                    kind => {
                        if let Some(j) = small.iter().position(|&z| z == k.pid) {
                            k.stack_top = small_stacks[j];
                        }
                        // A helper, and a zombie that joins a helper's group,
                        // reach the tree's words through it.
                        let joins = tree
                            .zombies
                            .iter()
                            .any(|z| z.pstree.pid as Pid == k.pid && zombie_joins_helper(z));
                        k.args = if kind == abi::CHILD_HELPER || joins {
                            tree_words
                        } else {
                            0
                        };
                    }
                }
            }
            if let Some(l) = &levels {
                for k in &mut kids {
                    l.child(p.plan.pid, k)?;
                }
            }
            let pst = &p.plan.img.task.pstree;
            let mut place = plan::Place {
                // The init of a new pid namespace has no parent in it.
                parent: if i == 0 && in_pidns {
                    0
                } else if i == 0 && self.sibling {
                    std::os::unix::process::parent_id() as Pid
                } else if i == 0 {
                    std::process::id() as Pid
                } else {
                    pst.ppid as Pid
                },
                child: i > 0,
                tree: tree_words,
                timens: if i == 0 {
                    timens.clone().map(Vec::from)
                } else {
                    None
                },
                pgid: if (i == 0 && pst.sid != pst.pid)
                    || (i > 0 && inherited_group == Some(pst.pgid))
                {
                    0
                } else {
                    pst.pgid as i32
                },
            };
            // In a nested pid namespace, its parent and group as it
            // numbers them.
            if let Some(l) = levels.as_ref().filter(|l| l.nested(p.plan.pid)) {
                place.parent = l.parent_seen(p.plan.pid, place.parent);
                place.pgid = l.group_seen(p.plan.pid, place.pgid)?;
                if p.plan.fds.late.iter().any(|f| f.path.is_empty()) {
                    return Err(Error::unsupported(format!(
                        "restoring a pidfd held by process {} of a nested pid namespace",
                        p.plan.pid
                    )));
                }
            }
            let (mut args, copy) = p.args(&region, &sh.rt, &place)?;
            args.pidns_for_children =
                pidns::for_children(levels.as_ref(), &tree, p.plan.pid, &p.plan.img.task.ids)?;
            if joins_helper(p) {
                args.flags |= abi::FLAG_JOINS_HELPER;
            }
            // A shared fd table: its first holder places the fds once the
            // others are done with theirs.
            let holder = fdt_holder(&procs, i);
            if holder != i {
                args.flags |= abi::FLAG_FDT_SHARED;
                args.fdt_owner = region.addr_of(offs[holder]);
            }
            if let Some(fd) = handoff.as_ref().and_then(|h| h.theirs.as_ref()) {
                args.flags |= abi::FLAG_LAZY;
                args.uffd_sock = fd.as_raw_fd();
            }
            args.fdt_pending = (0..procs.len())
                .filter(|&j| j != i && fdt_holder(&procs, j) == i)
                .count() as u32;
            if i == 0 {
                args.go_fd = go_rd.as_raw_fd();

                let pages_files = std::iter::once(&p.pages_file)
                    .chain(&p.parent_pages_files)
                    .map(|f| {
                        f.try_clone()
                            .map(std::fs::File::from)
                            .map_err(Error::host("copying the pages file"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                root_sealed = p.plan.sealed_pages.clone();
                share_pages =
                    root_sealed.is_some() || page_helper::wanted(&p.plan.pages, &pages_files);
                if share_pages {
                    args.flags |= abi::FLAG_PAGE_HELPER;
                    // Every batch, to claim from either end; none for the
                    // restorer when rcriu decrypts them.
                    let n = match root_sealed {
                        Some(_) => 0,
                        None => p.plan.pages.batches.len() as u32,
                    };
                    args.page_claims = abi::page_claims(0, n);
                }
                root_pages_file = Some(pages_files);
            }
            placed.push(region.write_at(offs[i], &mut args, &p.arrays(&copy, &kids)));
        }

        // -- Fork the root into its restorer.
        let fork = fork_args(&region, pid, stacks_root(&region), self.sibling);
        let child_pid = match holder.as_mut() {
            Some(h) => match h.fork(fork) {
                (Some(child), Ok(())) => child,
                (child, r) => {
                    if let Some(c) = child {
                        let _ = rcriu_compel::sys::kill(c, libc::SIGKILL);
                        let _ = rcriu_compel::sys::wait(c, 0);
                    }
                    return Err(r.err().unwrap_or_else(|| {
                        Error::unsupported("the namespace holder made no process")
                    }));
                }
            },
            None => fork_restorer(&fork).map_err(|e| match e.raw_os_error() {
                Some(libc::EEXIST) => Error::PidTaken {
                    pid,
                    by: "a process that appeared meanwhile".into(),
                },
                _ => Error::host("creating the process (clone3 with its pid)")(e),
            })?,
        };
        // The pids on the host: the root's is the fork's (its own in a
        // pid namespace), the others' are theirs.
        let known = |p: Pid| match host_pids.get(&p) {
            _ if p == pid => child_pid,
            Some(&h) => h,
            None if in_userns => 0,
            None => p,
        };
        let forking_time_us = start.elapsed().as_micros() as u64;
        // Ours no longer needed: the fork has its copies.
        for p in &mut procs {
            p.held.clear();
        }
        if let Some(h) = &mut handoff {
            h.theirs = None;
        }
        let mut child = finish::Child::tree(
            procs
                .iter()
                .map(|p| {
                    (
                        p.plan.pid,
                        p.plan.core.threads.iter().map(|t| t.tid as Pid).collect(),
                    )
                })
                .collect(),
            tree.zombies
                .iter()
                .map(|z| z.pstree.pid as Pid)
                .chain(helpers.iter().map(|&(_, g)| g))
                .chain(sessions.iter().map(|&(s, _)| s))
                .collect(),
            known,
        );
        if in_userns {
            use std::os::unix::fs::MetadataExt;
            let path = format!("/proc/{child_pid}/ns/user");
            let ino = std::fs::metadata(&path)
                .map_err(Error::file(
                    "reading the restored tree's user namespace",
                    &path,
                ))?
                .ino();
            child = child.learning_in(ino);
        }
        let words = region.page_words();
        let helper_map = match (&root_pages_file, share_pages) {
            (Some(f), true) if root_sealed.is_none() => page_helper::map(f, words),
            _ => None,
        };
        let root = &procs[0];
        root.plan.cgroups.enter(child_pid)?;
        log::info!(
            "process {pid} created; restoring it{}",
            if procs.len() > 1 || !tree.zombies.is_empty() {
                format!(
                    " and its tree ({} processes, {} zombies)",
                    procs.len(),
                    tree.zombies.len()
                )
            } else {
                String::new()
            }
        );
        let trace = finish::Trace {
            threads: procs.len() > 1
                || !tree.zombies.is_empty()
                || procs.iter().any(|p| p.plan.core.threads.len() > 1),
            seccomp: procs.iter().any(|p| p.plan.core.seccomp()),
        };
        let describe = |who: Pid, step: Step, index: u32| {
            let Some(p) = procs.iter().find(|p| p.plan.pid == who) else {
                return format!("item {index}");
            };
            let items = Items {
                vmas: &p.vmas,
                guards: &p.plan.mem.guards,
                anon_names: &p.plan.mem.anon_names,
                fds: &p.fd_moves,
                late: &p.plan.fds.late,
                locks: &p.plan.fds.locks,
            };
            describe_item(step, index, &items)
        };
        let on_new = |new: Pid, img: Pid| -> Result<()> {
            match procs.iter().find(|p| p.plan.pid == img) {
                Some(p) => p.plan.cgroups.enter(new),
                None => Ok(()),
            }
        };
        let tampered = std::sync::Mutex::new(None);
        std::thread::scope(|s| {
            let (iovs, batches) = (&root.plan.pages.iovs, &root.plan.pages.batches);
            let sealed = root_sealed.as_deref().and_then(|sealed| {
                let tampered = &tampered;
                std::thread::Builder::new()
                    .name("page helper".into())
                    .spawn_scoped(s, move || {
                        page_helper::run_sealed(child_pid, words, sealed, iovs, batches, tampered)
                    })
                    .inspect_err(|e| {
                        // The restorer has no pages to read itself.
                        log::warn!("no page helper for the encrypted pages: {e}");
                        page_helper::refuse(words);
                    })
                    .ok()
            });
            let plain = || {
                helper_map.and_then(|m| {
                    std::thread::Builder::new()
                        .name("page helper".into())
                        .spawn_scoped(s, move || {
                            page_helper::run(child_pid, words, &m, iovs, batches)
                        })
                        .inspect_err(|e| {
                            // The restorer reads alone.
                            log::debug!("no page helper: {e}");
                            page_helper::abort(words);
                        })
                        .ok()
                })
            };
            let helper = sealed.or_else(plain);
            // Each restorer's userfaultfd goes on to the daemon as it
            // comes: the restorer may touch a lazy page before it is done
            // (the kernel writes the rseq area on the way back from the
            // registering syscall).
            let forwarder = match (&handoff, &daemon) {
                (Some(h), Some(d)) => {
                    let n = procs.len();
                    let on_host = &known;
                    let t = std::thread::Builder::new()
                        .name("uffd handoff".into())
                        .spawn_scoped(s, move || uffd::forward(h, d, n, on_host))
                        .map_err(Error::host("starting the userfaultfd handoff"))?;
                    Some(t)
                }
                _ => None,
            };
            let r =
                finish::start(&child, &region, std::fs::File::from(go_wr), trace).and_then(|()| {
                    finish::wait_restorer(&mut child, &region, &placed, on_new, describe)
                });
            // Every restorer sent its message, or failed: what is queued
            // is still read, then the handoff ends.
            if let Some(h) = &handoff {
                h.stop();
            }
            let forwarded =
                forwarder.map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            let r = match (r, forwarded) {
                (Ok(()), Some(Ok(sent))) if sent.len() < procs.len() => {
                    let missing = procs
                        .iter()
                        .map(|p| p.plan.pid)
                        .find(|p| !sent.contains(p))
                        .unwrap_or(pid);
                    Err(Error::lazy(format!(
                        "process {missing} sent no userfaultfd to hand to the daemon"
                    )))
                }
                (Ok(()), Some(Err(e))) => Err(e),
                (r, _) => r,
            };
            // Past the page reads, the helper is done; otherwise the
            // restorer is gone, and so is what the helper would wait for.
            page_helper::abort(words);
            if let Some(h) = helper {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
            r
        })
        .map_err(|e| {
            // Encrypted pages that did not decrypt: named as such.
            match tampered.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(t) => Error::from(t),
                None => e,
            }
        })?;
        // Every task's pid here, learnt or picked.
        let hosts = child.hosts();
        let on_host = |p: Pid| hosts.get(&p).copied().unwrap_or(p);
        // Every process exists: the procs of nested pid namespaces are
        // mounted for them (a failure drops `child`, which kills the tree).
        if let (Some(h), Some(m)) = (
            holder.as_mut(),
            tree.container.as_ref().and_then(|c| c.mnt.as_ref()),
        ) {
            let mut list = Vec::new();
            for (i, e) in m.entries.iter().enumerate() {
                let Some(init) = e.pid_ns_init else { continue };
                if !levels
                    .as_ref()
                    .is_some_and(|l| l.nested(init as Pid) && l.own(init as Pid) == 1)
                {
                    return Err(Error::invalid(
                        m.image.clone(),
                        format!(
                            "the proc at {} names process {init}, not the init of a nested pid namespace",
                            String::from_utf8_lossy(&e.mountpoint)
                        ),
                    ));
                }
                let path = format!("/proc/{}/ns/pid", on_host(init as Pid));
                let ns = std::fs::File::open(&path).map_err(Error::file("opening", &path))?;
                list.push((i, OwnedFd::from(ns)));
            }
            if !list.is_empty() {
                h.mount_nested_procs(list)?;
            }
        }
        // Every process exists: the open files get their owners.
        for p in &procs {
            files::set_owners(&p.owners, &p.sources, |pid| match hosts.get(&pid) {
                Some(h) => Some(*h),
                None if in_pidns => None,
                None => Some(pid),
            })?;
        }
        let (mut pages_compared, mut pages_cow) = (0u64, 0u64);
        for (p, pl) in procs.iter().zip(&placed) {
            let report = region.read_args_at(pl.args_off);
            pages_compared += report.pages_compared;
            pages_cow += report.pages_cow;
            for i in 0..abi::NLIMITS {
                if report.rlimit_failed & (1 << i) != 0 {
                    log::warn!(
                        "process {}: limit {i} could not be set to {:?} (kept as it was)",
                        p.plan.pid,
                        p.plan.core.rlimits[i]
                    );
                }
            }
        }
        let trap = libc::SIGTRAP as usize - 1;
        let mut rings = Vec::with_capacity(procs.len());
        for p in procs.iter_mut() {
            let img: &load::Images = p.plan.img;
            rings.push(io_uring::finals(
                img.task.pid,
                &p.plan.fds.rings,
                &mut p.plan.mem.rings,
                &img.files,
            )?);
        }
        let finals: Vec<finish::FinalProc<'_>> = procs
            .iter()
            .zip(&offs)
            .zip(rings)
            .map(|((p, &off), rings)| {
                let core = &p.plan.core;
                finish::FinalProc {
                    pid: on_host(p.plan.pid),
                    threads: core
                        .threads
                        .iter()
                        .map(|t| finish::FinalThread {
                            tid: on_host(t.tid as Pid),
                            regs: t.cpu.regs,
                            sigmask: t.sigmask,
                        })
                        .collect(),
                    xstate: Box::new(move |i: usize, size: usize| {
                        let t = &core.threads[i];
                        let comps: Vec<(u32, &[u8])> = t
                            .cpu
                            .components
                            .iter()
                            .map(|(i, b)| (*i, b.as_slice()))
                            .collect();
                        Xstate::build(size, &t.cpu.fx, t.cpu.xstate_bv, &comps).map_err(|what| {
                            Error::invalid(ImageFile::Core(t.tid.into()).name(), what)
                        })
                    }),
                    stopped: core.stopped.or(self.leave_stopped.then_some(libc::SIGSTOP)),
                    trap_action: (core.sigaction_set & (1 << trap) != 0).then(|| {
                        region.addr_of(off)
                            + (std::mem::offset_of!(Args, sigactions)
                                + trap * size_of::<rcriu_compel::abi::KSigaction>())
                                as u64
                    }),
                    rings,
                }
            })
            .collect();
        // SysV segments removed while attached are removed again, every
        // process attached (a failure drops `child`, which kills the tree).
        if let (Some(h), Some((_, ns))) = (
            &holder,
            tree.container.as_ref().and_then(|c| c.ipc.as_ref()),
        ) {
            let ids = ipcns::removed(&root_img.dir, *ns)?;
            if !ids.is_empty() {
                let path = h.ipc();
                let f = std::fs::File::open(&path).map_err(Error::file("opening", &path))?;
                ipcns::remove_in(&f, &ids)?;
            }
        }
        // Still stopped: a refusal kills the tree (`child` on its drop).
        let pid = child_pid;
        let hooked = self
            .call(Stage::PostRestore(pid))
            .map_err(|why| Error::Hook {
                stage: Stage::PostRestore(pid),
                why,
            });
        if let Err(e) = hooked {
            drop(child);
            return Err(e);
        }
        if net_full {
            let in_net = net_ns.as_deref().map(namespaces::InNet::join).transpose()?;
            net_lock::unlock_ns(lock_method, &run_id);
            drop(in_net);
        }
        if !tcp.is_empty() {
            // The tree is built: its connections come out of repair
            // mode, unlocked, right before it runs (criu's network-unlock,
            // between post-restore and pre-resume).
            let in_net = net_ns.as_deref().map(namespaces::InNet::join).transpose()?;
            // A failure drops `child`, which kills the tree.
            tcp.release(lock_method, &run_id, &on_host)?;
            drop(in_net);
        }
        if let Err(why) = self.call(Stage::PreResume(pid)) {
            log::error!("process {pid}: the pre-resume action failed: {why}");
        }
        // A failure drops `child`, which kills the tree.
        dead.end()?;
        for p in &procs {
            p.plan.cgroups.move_threads()?;
        }
        if let Some(d) = &daemon {
            for z in &tree.zombies {
                d.send_zombie(z.pstree.pid as i32)?;
            }
        }
        let pid = finish::finish(child, &region, finals)?;
        // Every process runs: the daemon pushes the rest of the pages.
        if let Some(d) = daemon {
            d.finished()?;
        }
        let mut procs = procs;
        for p in &mut procs {
            p.plan.cgroups.done();
        }
        let restore_time_us = start.elapsed().as_micros() as u64;
        log::info!("process {pid} restored in {restore_time_us} us");
        if pages_compared > 0 {
            log::info!(
                "{pages_compared} inherited pages compared, {pages_cow} of them left shared"
            );
        }
        let pages_restored: u64 = procs.iter().map(|p| p.plan.pages.pages).sum();
        let pages_kept: u64 = procs.iter().map(|p| p.plan.pages.alike_inherited).sum();
        if pages_kept > 0 {
            log::info!("{pages_kept} pages kept with the parents' inherited unread");
        }
        drop(region);
        drop(procs);
        drop(go_rd);
        drop(holder);
        // CRIU's statistics, for `crit show` and podman's --print-stats; a
        // restored process does not fail for want of them.
        let stats = rcriu_images::pb::StatsEntry {
            dump: None,
            restore: Some(rcriu_images::pb::RestoreStatsEntry {
                pages_compared,
                pages_skipped_cow: pages_cow,
                forking_time: forking_time_us.min(u32::MAX as u64) as u32,
                restore_time: restore_time_us.min(u32::MAX as u64) as u32,
                pages_restored: Some(pages_restored),
            }),
        };
        let stats_dir = match &self.stats_dir {
            Some(d) => ImageDir::create(d),
            None => Ok(root_img.dir.clone()),
        };
        if let Err(e) = stats_dir.and_then(|d| d.write_one(ImageFile::StatsRestore, &stats)) {
            log::warn!("cannot write stats-restore: {e}");
        }
        if let Err(why) = self.call(Stage::PostResume(pid)) {
            log::error!("process {pid}: the post-resume action failed: {why}");
        }

        let wait_status = if self.detach {
            None
        } else {
            Some(wait_end(pid)?)
        };
        Ok(Restored {
            pid,
            restore_time_us,
            pages_restored,
            pages_compared,
            pages_cow,
            pages_kept,
            wait_status,
        })
    }
}

/// How the dump locked the connections: the method and run id its
/// inventory names.
fn lock_of(img: &load::Images) -> (net_lock::Method, String) {
    let method = img
        .inventory
        .network_lock_method
        .and_then(net_lock::Method::from_code)
        .unwrap_or_default();
    let run_id = String::from_utf8_lossy(
        img.inventory
            .dump_criu_run_id
            .as_deref()
            .unwrap_or_default(),
    )
    .into_owned();
    (method, run_id)
}

/// The index in `procs` of the process whose restorer places the fds of
/// process `i`'s table: the first of the ancestors it shares it with, or
/// itself.
fn fdt_holder(procs: &[plan::Ready<'_>], mut i: usize) -> usize {
    while procs[i].plan.img.task.fdt_of_parent {
        let ppid = procs[i].plan.img.task.pstree.ppid;
        match procs.iter().position(|p| p.plan.img.task.pid == ppid) {
            Some(j) => i = j,
            None => break,
        }
    }
    i
}

/// The process groups whose leader was gone at the dump, `(member,
/// group)`: each is made again by a helper with the group's id as its pid,
/// forked by the group's first member (as CRIU's restore does), or by the
/// parent of a zombie when only zombies are left of it.
fn helpers(tree: &load::TreeImages) -> Vec<(Pid, Pid)> {
    let pids = tree.pids();
    let root = &tree.procs[0].task.pstree;
    let mut out: Vec<(Pid, Pid)> = Vec::new();
    // Who forks the helper: a live member itself, a zombie's parent.
    let live = tree
        .procs
        .iter()
        .skip(1)
        .map(|p| (&p.task.pstree, p.task.pstree.pid));
    let zombies = tree.zombies.iter().map(|z| (&z.pstree, z.pstree.ppid));
    for (e, forker) in live.chain(zombies) {
        let g = e.pgid as Pid;
        // A group with its session's id is its leader's, or made with
        // the session by a session helper.
        if e.pgid == e.pid
            || e.pgid == e.sid
            || e.pgid == root.pgid
            || pids.contains(&e.pgid)
            || out.iter().any(|&(_, h)| h == g)
        {
            continue;
        }
        out.push((forker as Pid, g));
    }
    out
}

/// The sessions whose leader was gone at the dump, `(session, exit
/// signal)`: each is made again by a session helper with the session's id
/// as its pid, forked by the root, which forks the members the root holds
/// (as CRIU's restore does, but as the root's own children: CLONE_PARENT,
/// which gives them the helper's exit signal, theirs). Such a member
/// cannot share its fd table or fs with the root, nor another exit
/// signal than the others'.
pub(crate) fn sessions(tree: &load::TreeImages) -> Result<Vec<(Pid, u32)>> {
    let pids = tree.pids();
    let root = &tree.procs[0].task.pstree;
    let mut out: Vec<(Pid, u32)> = Vec::new();
    for p in tree.procs.iter().skip(1) {
        let e = &p.task.pstree;
        if e.sid == root.sid || e.sid == e.pid || pids.contains(&e.sid) || e.ppid != root.pid {
            continue;
        }
        let sig = p.exit_signal();
        if p.task.fdt_of_parent || p.task.fs_of_parent {
            return Err(Error::unsupported(format!(
                "restoring process {}, of the session {} whose leader is gone, sharing its parent's fd table or fs",
                e.pid, e.sid
            )));
        }
        match out.iter().find(|&&(s, _)| s == e.sid as Pid) {
            Some(&(_, other)) if other != sig => {
                return Err(Error::unsupported(format!(
                    "restoring process {}, of the session {} whose leader is gone, with exit signal {sig} where another member has {other}",
                    e.pid, e.sid
                )));
            }
            Some(_) => {}
            None => out.push((e.sid as Pid, sig)),
        }
    }
    Ok(out)
}

/// The children of `pid` in the tree (live ones, zombies and helpers),
/// their addresses still to fill; the root's begin with each session
/// helper followed by the members it forks.
fn children_of(
    tree: &load::TreeImages,
    helpers: &[(Pid, Pid)],
    sessions: &[(Pid, u32)],
    pid: Pid,
) -> Vec<abi::Child> {
    let mut kids: Vec<abi::Child> = Vec::new();
    for (i, p) in tree.procs.iter().enumerate() {
        let e = &p.task.pstree;
        if e.ppid as Pid == pid && e.pid as Pid != pid && i > 0 {
            kids.push(abi::Child {
                pid: e.pid as i32,
                exit_signal: p.exit_signal(),
                kind: abi::CHILD_LIVE,
                pgid: e.pgid as i32,
                ..abi::Child::default()
            });
        }
    }
    for z in &tree.zombies {
        if z.pstree.ppid as Pid == pid {
            let mut comm = [0u8; 16];
            let n = z.comm.len().min(15);
            comm[..n].copy_from_slice(&z.comm[..n]);
            kids.push(abi::Child {
                pid: z.pstree.pid as i32,
                exit_signal: z.exit_signal,
                zombie_status: z.exit_code,
                comm,
                kind: abi::CHILD_ZOMBIE,
                pgid: z.pstree.pgid as i32,
                ..abi::Child::default()
            });
        }
    }
    // By pid, as they were most likely made.
    kids.sort_by_key(|c| c.pid);
    // A helper first: its group exists before any member looks for it.
    for &(member, group) in helpers {
        if member == pid {
            kids.insert(
                0,
                abi::Child {
                    pid: group,
                    exit_signal: 0,
                    kind: abi::CHILD_HELPER,
                    pgid: group,
                    ..abi::Child::default()
                },
            );
        }
    }
    if tree.procs[0].task.pid as Pid == pid {
        let sid_of = |k: &abi::Child| {
            tree.procs
                .iter()
                .find(|p| p.task.pid as i32 == k.pid && k.kind == abi::CHILD_LIVE)
                .map(|p| p.task.pstree.sid as Pid)
        };
        for &(sid, sig) in sessions.iter().rev() {
            let mut members: Vec<abi::Child> = Vec::new();
            kids.retain(|k| {
                let of = sid_of(k) == Some(sid);
                if of {
                    members.push(abi::Child {
                        exit_signal: 0,
                        clone_flags: libc::CLONE_PARENT as u64,
                        ..*k
                    });
                }
                !of
            });
            let helper = abi::Child {
                pid: sid,
                exit_signal: sig,
                kind: abi::CHILD_SESSION,
                pgid: sid,
                nr_members: members.len() as u32,
                ..abi::Child::default()
            };
            kids.splice(0..0, std::iter::once(helper).chain(members));
        }
    }
    kids
}

/// The root restorer's stack: the region's own.
fn stacks_root(region: &region::Region) -> (u64, u64) {
    region.stack()
}

/// Raises rcriu's soft limit of open files to its hard one: a tree's
/// restore holds every process's files at once.
fn raise_nofile() {
    if let Ok((_, hard)) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .zip(rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum)
        .ok_or(())
    {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
}

/// How to fork into the restorer loaded in `region`, with pid `pid`, on
/// `stack`; as rcriu's sibling (`CLONE_PARENT`) if `sibling`.
fn fork_args(
    region: &region::Region,
    pid: Pid,
    stack: (u64, u64),
    sibling: bool,
) -> namespaces::Fork {
    let (stack, stack_size) = stack;
    let mut flags = sys::CLONE_CLEAR_SIGHAND;
    if sibling {
        flags |= libc::CLONE_PARENT as u64;
    }
    namespaces::Fork {
        flags,
        pid,
        stack,
        stack_size,
        entry: region.entry(),
        arg: region.addr_of(region.first_args_off()),
    }
}

/// Forks into the restorer as `f` says.
#[allow(unsafe_code)]
pub(crate) fn fork_restorer(f: &namespaces::Fork) -> std::io::Result<Pid> {
    // SAFETY: the region holds the relocated restorer, its args (all it
    // reads, by absolute addresses that are the same in the fork) and its
    // stack; the restorer never returns into Rust code.
    unsafe { sys::clone3_into(f.flags, f.pid, f.stack, f.stack_size, f.entry, f.arg) }
}

/// Forks into the restorer as `f` says, from inside user namespace
/// `userns` (which then owns the new pid namespace of `f`).
#[allow(unsafe_code)]
pub(crate) fn fork_restorer_in(
    f: &namespaces::Fork,
    userns: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<Pid> {
    // SAFETY: as for `fork_restorer`.
    unsafe {
        sys::clone3_into_userns(
            userns,
            f.flags,
            f.pid,
            f.stack,
            f.stack_size,
            f.entry,
            f.arg,
        )
    }
}

pub(crate) fn zeroed_args() -> Args {
    // An all-zero Args, built field by field through its Default-like
    // parts (it is plain data).
    rcriu_compel::sys::read_pod(&[0u8; std::mem::size_of::<Args>()])
}

/// The highest capability the running kernel knows.
pub(crate) fn read_last_cap() -> Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(Error::file("reading", "/proc/sys/kernel/cap_last_cap"))?;
    text.trim().parse().map_err(|_| Error::Host {
        what: "parsing /proc/sys/kernel/cap_last_cap",
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

/// rcriu's own login uid (what the new process inherits), if readable.
pub(crate) fn own_loginuid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/loginuid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `n` pids free on the host, in the upper half of the range (where the
/// kernel's cyclic allocation comes last), down from a point that differs
/// from one restore to the next (two restores at once seldom pick the
/// same).
fn free_host_pids(n: usize) -> Result<Vec<Pid>> {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .map_err(Error::file("reading", "/proc/sys/kernel/pid_max"))?;
    let max: Pid = max
        .trim()
        .parse()
        .map_err(|_| Error::unsupported(format!("restoring with a pid_max of {:?}", max.trim())))?;
    let low = (max / 2).max(301);
    let span = u64::try_from(max - low).unwrap_or(0).max(1);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
        ^ u64::from(std::process::id());
    let start = low + (seed % span) as Pid;
    let free: Vec<Pid> = (low..=start)
        .rev()
        .chain((start + 1..max).rev())
        .filter(|p| !Path::new("/proc").join(p.to_string()).exists())
        .take(n)
        .collect();
    if free.len() < n {
        return Err(Error::unsupported(format!(
            "restoring {n} processes in a pid namespace: no {n} pids free on the host"
        )));
    }
    Ok(free)
}

/// Fails if `pid` is in use.
fn check_pid_free(pid: Pid) -> Result<()> {
    let p = Path::new("/proc").join(pid.to_string());
    if p.exists() {
        let by = std::fs::read_to_string(p.join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        return Err(Error::PidTaken { pid, by });
    }
    Ok(())
}

pub(crate) fn open_exe(
    img: &load::Images,
    opener: &mut files::Opener<'_>,
) -> Result<Option<files::Source>> {
    let id = img.task.mm.exe_file_id;
    let from = ImageFile::Mm(img.task.pid.into());
    let entry = img.file(id, &from)?;
    let Some(reg) = entry.reg.as_deref() else {
        return Err(Error::invalid(
            from.name(),
            format!("exe_file_id {id} is not a regular file"),
        ));
    };
    opener.open_mapped(id, reg, libc::O_RDONLY).map(Some)
}

pub(crate) fn set_mm(args: &mut Args, img: &load::Images, exe: Option<&OwnedFd>) -> Result<()> {
    let mm = &img.task.mm;
    let from = ImageFile::Mm(img.task.pid.into()).name();
    if mm.mm_saved_auxv.len() > args.auxv.len() {
        return Err(Error::invalid(
            from,
            format!("an auxiliary vector of {} words", mm.mm_saved_auxv.len()),
        ));
    }
    args.auxv[..mm.mm_saved_auxv.len()].copy_from_slice(&mm.mm_saved_auxv);
    args.mm = abi::MmMap {
        start_code: mm.mm_start_code,
        end_code: mm.mm_end_code,
        start_data: mm.mm_start_data,
        end_data: mm.mm_end_data,
        start_brk: mm.mm_start_brk,
        brk: mm.mm_brk,
        start_stack: mm.mm_start_stack,
        arg_start: mm.mm_arg_start,
        arg_end: mm.mm_arg_end,
        env_start: mm.mm_env_start,
        env_end: mm.mm_env_end,
        auxv: 0,
        auxv_size: (mm.mm_saved_auxv.len() * 8) as u32,
        exe_fd: exe.map_or(u32::MAX, |f| f.as_raw_fd() as u32),
    };
    Ok(())
}

/// What the restorer was working on, for an error message.
struct Items<'a> {
    vmas: &'a [abi::Vma],
    guards: &'a [Range],
    anon_names: &'a [(u64, u64, Vec<u8>)],
    fds: &'a [FdMove],
    late: &'a [files::Late],
    locks: &'a [abi::TakeLock],
}

/// What item `index` of `step` is, for an error message.
fn describe_item(step: Step, index: u32, it: &Items<'_>) -> String {
    let vma = |i: u32| {
        it.vmas.get(i as usize).map_or_else(
            || format!("item {i}"),
            |v| format!("area {:#x}-{:#x}", v.start, v.end),
        )
    };
    match step {
        Step::Map | Step::Protect => vma(index),
        Step::Madvise => {
            let i = index as usize;
            let (nv, ng) = (it.vmas.len(), it.guards.len());
            if i < nv {
                vma(index)
            } else if let Some(g) = it.guards.get(i - nv) {
                format!("guard region {:#x}-{:#x}", g.start, g.end)
            } else if let Some((s, e, n)) = it.anon_names.get(i - nv - ng) {
                format!(
                    "naming the area {s:#x}-{e:#x} {:?}",
                    String::from_utf8_lossy(n)
                )
            } else {
                format!("item {index}")
            }
        }
        Step::Fds => {
            let i = index as usize;
            if let Some(m) = it.fds.get(i) {
                format!("fd {}", m.to)
            } else if let Some(l) = it.late.get(i - it.fds.len()) {
                let what = match l.path.is_empty() {
                    true => format!("a pidfd of process {}", l.pos).into(),
                    false => String::from_utf8_lossy(&l.path),
                };
                format!("fd {} ({what}, opened in the process)", l.to)
            } else if let Some(l) = it.locks.get(i - it.fds.len() - it.late.len()) {
                format!("taking {}", file_lock::describe(l))
            } else {
                format!("closing fds from {index}")
            }
        }
        Step::Sigactions => format!("signal {index}"),
        Step::Creds => match abi::creds_item::describe(index) {
            (what, Some(cap)) => format!("{what} {cap}"),
            (what, None) => what.to_owned(),
        },
        Step::Thread => format!("thread #{index}"),
        Step::PosixTimers | Step::ThreadSignals | Step::SharedSignals | Step::Seccomp => {
            format!("item {index}")
        }
        Step::ArmTimers => match index {
            0..3 => format!("interval timer {index}"),
            i => format!("POSIX timer #{}", i - 3),
        },
        Step::Read => format!("read batch {index}"),
        Step::ThreadState => match index {
            0 => "the robust futex list",
            1 => "the scheduling policy",
            2 => "the nice value",
            3 => "the name",
            4 => "the timer slack",
            5 => "the CPU affinity (are its CPUs here?)",
            6 => "the I/O priority",
            7 => "the TSC mode",
            8 => "the machine-check kill policy",
            _ => "an attribute",
        }
        .to_string(),
        Step::ProcessAttrs => match index {
            i if i < 1 << 20 => format!("membarrier command {i:#x}"),
            0x10_0000 => "the core dump filter".into(),
            0x20_0000 => "the autogroup nice".into(),
            0x40_0000 => "KSM on every area".into(),
            0x80_0000 => "memory-deny-write-execute".into(),
            i => format!("item {i}"),
        },
        _ => format!("item {index}"),
    }
}

/// Waits for the restored process to end; returns its wait status.
fn wait_end(pid: Pid) -> Result<i32> {
    loop {
        let mut status = 0;
        match rcriu_compel::sys::waitpid_status(pid, &mut status) {
            Ok(()) => return Ok(status),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(Error::host("waiting for the restored process")(e)),
        }
    }
}
