//! The dump: a running process checkpointed into a directory of images,
//! in CRIU 4.2's format, so that rcriu or CRIU 4.2 can restore it.
//!
//! ```no_run
//! let stats = rcriu_dump::Dump::new(4242)
//!     .images_dir("/tmp/dump")
//!     .leave_running(true)
//!     .run()?;
//! println!("frozen for {:?}", stats.frozen_time);
//! # Ok::<(), rcriu_dump::Error>(())
//! ```
//!
//! This version dumps one process with all its threads: its memory
//! (anonymous, heap, stacks and growsdown areas, private and shared file
//! mappings, memfds and shared anonymous memory ([`memfd`]), hugetlb
//! memory, with their protections, madvise flags, locks and guard
//! regions), the vdso, open files ([`files`]: regular and deleted files,
//! pipes, FIFOs, ptys, memfds, eventfds, epoll instances, signalfds and
//! timerfds), cwd, root, umask;
//! every thread's registers, TLS, signal mask, pending signals, alternate
//! stack, rseq area, robust list, scheduling, name, timer slack,
//! credentials and seccomp mode and filters (`threads`); the process's
//! signal actions, pending signals, interval and POSIX timers
//! (`timers`), rlimits, attributes and its time namespace when a restore
//! made one. Anything else is refused before any image is written or the
//! process is touched beyond seizing, with an error naming it.
//!
//! rcriu writes one field CRIU does not have: a thread's timer slack, as
//! `thread_core_entry.rcriu_timer_slack_ns` (field 1000, only when it is
//! not the kernel's default). CRIU's readers skip it; without it (a CRIU
//! dump) a restored thread gets the default slack. Likewise an eventfd's
//! semaphore mode (`eventfd_file_entry.rcriu_semaphore`) and the number
//! an epoll target was registered under when its fd moved
//! (`eventpoll_tfd_entry.rcriu_registered_fd`).
//!
//! The images are CRIU 4.2's, field for field (checked by decoding both
//! tools' dumps of the same stopped process with CRIU's crit), but for:
//! - pagemap entries (the task's and `pagemap-shmem-*`): CRIU also cuts
//!   runs where its page pipes fill up (every 256 pages of a memfd);
//!   rcriu writes each run of touching pages with the same flags as one
//!   entry (the same pages, in the same order);
//! - CRIU's own injection copies-on-write the first page of the task's
//!   first executable area, which it then dumps; rcriu's parasite writes
//!   nothing into the task, so that page stays a file page, not dumped;
//! - stats-dump: one pipe (`page_pipes` 1, `page_pipe_bufs` the parasite's
//!   page-dump commands); `memwrite_time` is the page transfer itself, as
//!   pages are spliced into the image while the parasite vmsplices them.
//!
//! Pre-copy: [`predump`] writes the memory of a running process, and
//! [`track`] tells the pages written since; a dump with
//! [`Dump::track_mem`] and [`Dump::prev_images_dir`] writes only those,
//! the others as kept in the parent's images (`PE_PARENT`).
//!
//! One module per kind of resource, named as the images are: [`mm`],
//! [`pages`], [`memfd`], [`core`], [`files`], [`fs`], [`ids`], [`inventory`],
//! [`pstree`], [`timens`], [`seccomp`], [`stats`], [`cgroup`], and the private
//! `threads` and `timers`.

#![deny(unsafe_code)]

pub mod anon;
#[allow(unsafe_code)]
mod anon_sys;
pub mod attrs;
pub mod cgroup;
pub mod core;
mod error;
pub mod eventfd;
pub mod eventpoll;
pub mod fanotify;
pub mod fifo;
pub mod file_lock;
pub mod files;
#[allow(unsafe_code)]
mod files_sys;
pub mod fs;
pub mod ghost;
pub mod ids;
pub mod inotify;
pub mod inventory;
pub mod io_uring;
pub mod ipcns;
#[allow(unsafe_code)]
mod ipcns_sys;
pub mod lazy;
pub mod link_remap;
pub mod memfd;
pub mod mm;
pub mod mnt;
pub mod namespaces;
pub mod net;
pub mod nsfile;
mod page_writers;
mod page_xfer;
pub mod pages;
pub mod pidfd;
pub mod pidns;
mod pipeline;
pub mod pipes;
pub mod predump;
pub mod proc_remap;
pub mod pstree;
mod remote;
mod rseq;
pub mod seccomp;
pub mod signalfd;
#[allow(unsafe_code)]
mod sk_batch;
pub mod sk_inet;
pub mod sk_netlink;
pub mod sk_packet;
pub mod sk_queue;
#[allow(unsafe_code)]
mod sk_sys;
pub mod sk_unix;
pub mod sockets;
pub mod stats;
#[allow(unsafe_code)]
mod sys;
pub mod tcp_stream;
mod threads;
pub mod timens;
pub mod timerfd;
mod timers;
mod tmpfs;
pub mod track;
#[allow(unsafe_code)]
mod track_sys;
pub mod tree;
pub mod tty;
pub mod userns;
pub mod utsns;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::{Error, Result};
pub use rcriu_proc::Pid;
pub use stats::DumpStats;

/// Makes SIGINT, SIGTERM and SIGHUP abort a dump in progress cleanly (the
/// process released as it was, the images removed), as criu's own
/// handlers do; for programs, such as the CLI, that own their signals.
pub fn abort_on_signals() -> std::io::Result<()> {
    sys::abort_on_signals()
}

/// The points of a dump at which criu runs its action scripts, for
/// [`Dump::hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the process is touched.
    PreDump,
    /// Every image is written; the process is not killed yet (with
    /// `leave_running` it already runs again).
    PostDump,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::PreDump => "pre-dump",
            Stage::PostDump => "post-dump",
        })
    }
}

/// What [`Dump::hook`] calls at each [`Stage`]; an `Err` (why) stops the
/// dump.
pub type Hook = Arc<dyn Fn(Stage) -> std::result::Result<(), String> + Send + Sync>;

/// A hook, shown by name only.
#[derive(Clone)]
pub(crate) struct Hooked(pub(crate) Hook);

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A dump of one process, configured with the builder methods, done by
/// [`Dump::run`].
#[derive(Debug, Clone)]
pub struct Dump {
    pid: Pid,
    images_dir: PathBuf,
    leave_running: bool,
    leave_stopped: bool,
    shell_job: bool,
    orphan_pts_master: bool,
    freeze_cgroup: Option<PathBuf>,
    cgroup_dirs: bool,
    cgroup_roots: Vec<(Option<String>, String)>,
    ghost_limit: u64,
    file_locks: bool,
    link_remap: bool,
    sockets: sockets::Options,
    stats_dir: Option<PathBuf>,
    track_mem: bool,
    parent: Option<PathBuf>,
    auto_dedup: bool,
    key: Option<rcriu_images::crypt::Key>,
    page_server: Option<rcriu_page_server::Target>,
    lazy: Option<Arc<lazy::Serve>>,
    namespaces: namespaces::Options,
    hook: Option<Hooked>,
    caller: Option<rcriu_restore::unprivileged::Caller>,
}

impl Dump {
    /// A dump of process `pid` into the current directory, killing it
    /// afterwards (as criu does without `--leave-running`).
    pub fn new(pid: Pid) -> Dump {
        Dump {
            pid,
            images_dir: PathBuf::from("."),
            leave_running: false,
            leave_stopped: false,
            shell_job: false,
            orphan_pts_master: false,
            freeze_cgroup: None,
            cgroup_dirs: true,
            cgroup_roots: Vec::new(),
            ghost_limit: files::DEFAULT_GHOST_LIMIT,
            file_locks: false,
            link_remap: false,
            sockets: sockets::Options::default(),
            stats_dir: None,
            track_mem: false,
            parent: None,
            auto_dedup: false,
            key: None,
            page_server: None,
            lazy: None,
            namespaces: namespaces::Options::default(),
            hook: None,
            caller: None,
        }
    }

    /// criu's `--unprivileged` for a caller that is not root: only a
    /// process whose every thread has `caller`'s credentials is dumped,
    /// anything else refused before it is seized (see
    /// [`rcriu_restore::unprivileged`]).
    pub fn unprivileged(mut self, caller: rcriu_restore::unprivileged::Caller) -> Dump {
        self.caller = Some(caller);
        self
    }

    /// Dump only the pages written since the last pre-dump (criu's
    /// `--track-mem`), the others kept in the parent's images, when the
    /// parent ([`Dump::prev_images_dir`]) is that pre-dump's.
    pub fn track_mem(mut self, yes: bool) -> Dump {
        self.track_mem = yes;
        self
    }

    /// The images of the dump before this one (criu's
    /// `--prev-images-dir`, relative to the images directory unless
    /// absolute), linked as `parent`.
    pub fn prev_images_dir(mut self, dir: impl Into<PathBuf>) -> Dump {
        self.parent = Some(dir.into());
        self
    }

    /// criu's `--auto-dedup`: once the images are written, the pages
    /// they hold are punched out of the parents' pages images (see
    /// [`rcriu_images::dedup`]).
    pub fn auto_dedup(mut self, yes: bool) -> Dump {
        self.auto_dedup = yes;
        self
    }

    /// Send the pages to a page server (criu's `--page-server`), which
    /// writes the pagemap and pages images in its own directory; the
    /// other images go to the images directory.
    pub fn page_server(mut self, target: rcriu_page_server::Target) -> Dump {
        self.page_server = Some(target);
        self
    }

    /// criu's `dump --lazy-pages --address A --port P`: the lazy pages
    /// (anonymous private memory) are left out of the images and served
    /// by `serve` once the images are written and the processes killed
    /// ([`lazy`]).
    pub fn lazy_pages(mut self, serve: lazy::Serve) -> Dump {
        self.lazy = Some(Arc::new(serve));
        self
    }

    /// Encrypt every image with `key` (rcriu's `--encrypt`; see
    /// [`rcriu_images::crypt`]): the images are rcriu's, not CRIU's, and
    /// restore only with the key.
    pub fn encrypt(mut self, key: rcriu_images::crypt::Key) -> Dump {
        self.key = Some(key);
        self
    }

    /// Where the images go (created mode 0700 when missing; every image is
    /// written mode 0600).
    pub fn images_dir(mut self, dir: impl Into<PathBuf>) -> Dump {
        self.images_dir = dir.into();
        self
    }

    /// Leave the process running after the dump (`-R`), rather than kill
    /// it.
    pub fn leave_running(mut self, yes: bool) -> Dump {
        self.leave_running = yes;
        self
    }

    /// The container's root directory on the host (criu's `--root`).
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Dump {
        self.namespaces.root = Some(dir.into());
        self
    }

    /// The namespaces (`CLONE_NEW*` bits; only `CLONE_NEWNET` yet) the
    /// restore makes empty rather than dumped (criu's `--empty-ns`).
    pub fn empty_ns(mut self, mask: u32) -> Dump {
        self.namespaces.empty_ns = mask;
        self
    }

    /// The mount at `mount_point` in the container is external: the
    /// restore binds it from what it is given for `key` (criu's
    /// `--external mnt[PATH]:KEY`, the RPC's `ext_mnt`).
    pub fn ext_mount(mut self, mount_point: impl Into<String>, key: impl Into<String>) -> Dump {
        self.namespaces
            .ext_mounts
            .push((mount_point.into(), key.into()));
        self
    }

    /// The network namespace of inode `inode` is the caller's (criu's
    /// `--external net[INODE]:KEY`): a container in it has its
    /// `netns-<id>.img` name `key`, and the restore joins the namespace
    /// it is given for `key` (`--inherit-fd`) rather than make one.
    pub fn ext_net(mut self, inode: u64, key: impl Into<String>) -> Dump {
        self.namespaces.ext_nets.push((inode, key.into()));
        self
    }

    /// Leave the process stopped (SIGSTOP) after the dump (criu's `-s`,
    /// `--leave-stopped`), rather than kill it.
    pub fn leave_stopped(mut self, yes: bool) -> Dump {
        self.leave_stopped = yes;
        self
    }

    /// Where `stats-dump` goes (criu's work directory, `-W`): the images
    /// directory unless told.
    pub fn stats_dir(mut self, dir: impl Into<PathBuf>) -> Dump {
        self.stats_dir = Some(dir.into());
        self
    }

    /// Calls `hook` at each [`Stage`] (criu's action scripts and RPC
    /// notifications). An `Err` at [`Stage::PreDump`] fails the dump
    /// before the process is touched; at [`Stage::PostDump`] the process
    /// is left running instead of killed, the images stay, and the dump
    /// fails ([`Error::Hook`]).
    pub fn hook(mut self, hook: Hook) -> Dump {
        self.hook = Some(Hooked(hook));
        self
    }

    /// Allow a process that is not a session leader (`-j`, a shell job).
    pub fn shell_job(mut self, yes: bool) -> Dump {
        self.shell_job = yes;
        self
    }

    /// Allow one pty slave whose master is outside the dump, which the
    /// restore makes anew and hands to the caller (criu's
    /// `orphan_pts_master`: the terminal of a container run with `-t`).
    pub fn orphan_pts_master(mut self, yes: bool) -> Dump {
        self.orphan_pts_master = yes;
        self
    }

    /// Freeze the freezer cgroup at `path` (v1 `freezer.state` or v2
    /// `cgroup.freeze`), which the process lives in, while seizing it
    /// (criu's `--freeze-cgroup`): its tasks cannot fork or escape
    /// meanwhile. The cgroup is thawed once every task is seized, and
    /// must hold no other process.
    /// The cgroups of `controller` (every hierarchy when `None`) are
    /// walked from `path` rather than from the process's cgroup (criu's
    /// `--cgroup-root` at dump), so that the cgroups above it are dumped.
    pub fn cgroup_root(mut self, controller: Option<String>, path: impl Into<String>) -> Dump {
        self.cgroup_roots.push((controller, path.into()));
        self
    }

    /// Whether the cgroups' directories and properties are dumped (criu's
    /// `--manage-cgroups=ignore` dumps the sets alone).
    pub fn cgroup_dirs(mut self, yes: bool) -> Dump {
        self.cgroup_dirs = yes;
        self
    }

    pub fn freeze_cgroup(mut self, path: impl Into<PathBuf>) -> Dump {
        self.freeze_cgroup = Some(path.into());
        self
    }

    /// The largest deleted file, in bytes on disk, saved whole in the
    /// images (criu's `--ghost-limit`; 1 MiB unless told).
    pub fn ghost_limit(mut self, bytes: u64) -> Dump {
        self.ghost_limit = bytes;
        self
    }

    /// An open file whose path no longer names it but that has links
    /// elsewhere gets a hard link made beside its old path for the
    /// restore (criu's `--link-remap`), rather than being refused; see
    /// [`link_remap`].
    pub fn link_remap(mut self, yes: bool) -> Dump {
        self.link_remap = yes;
        self
    }

    /// Dump the locks and leases the process holds (criu's `-l`,
    /// `--file-locks`), rather than refuse them.
    pub fn file_locks(mut self, yes: bool) -> Dump {
        self.file_locks = yes;
        self
    }

    /// A unix socket may be connected to a named datagram socket outside
    /// the dump, as `/dev/log` (criu's `--ext-unix-sk`); the restore
    /// connects it to that name again.
    pub fn ext_unix_sk(mut self, yes: bool) -> Dump {
        self.sockets.ext_unix_sk = yes;
        self
    }

    /// These unix sockets (by inode) may have a peer outside the dump
    /// (criu's `--ext-unix-sk=INO,...`).
    pub fn ext_unix_sk_inodes(mut self, inodes: impl IntoIterator<Item = u32>) -> Dump {
        self.sockets.ext_unix_inodes.extend(inodes);
        self
    }

    /// Dump connected TCP sockets with their state and queues, through
    /// TCP_REPAIR (criu's `--tcp-established`).
    pub fn tcp_established(mut self, yes: bool) -> Dump {
        self.sockets.tcp_established = yes;
        self
    }

    /// Dump connected TCP sockets as closed ones (criu's `--tcp-close`).
    pub fn tcp_close(mut self, yes: bool) -> Dump {
        self.sockets.tcp_close = yes;
        self
    }

    /// Leave out connections waiting to be accepted on listening sockets
    /// (criu's `--skip-in-flight`).
    pub fn skip_in_flight(mut self, yes: bool) -> Dump {
        self.sockets.skip_in_flight = yes;
        self
    }

    /// How TCP connections are locked while dumped (criu's
    /// `--network-lock`: iptables, the default, nftables or skip).
    pub fn network_lock(mut self, method: tcp_stream::LockMethod) -> Dump {
        self.sockets.network_lock = method;
        self
    }

    /// Dumps the process. On success the images are complete and the
    /// process is running (`leave_running`), stopped (`leave_stopped`) or
    /// killed; on failure it runs on as it was and the images this run
    /// wrote are removed (but for a failed post-dump hook, see
    /// [`Dump::hook`]).
    pub fn run(self) -> Result<DumpStats> {
        sockets::raise_nofile();
        pipeline::run(&pipeline::Options {
            pid: self.pid,
            dir: self.images_dir,
            leave_running: self.leave_running,
            leave_stopped: self.leave_stopped,
            shell_job: self.shell_job,
            orphan_pts_master: self.orphan_pts_master,
            freeze_cgroup: self.freeze_cgroup,
            cgroup_dirs: self.cgroup_dirs,
            cgroup_roots: self.cgroup_roots,
            ghost_limit: self.ghost_limit,
            file_locks: self.file_locks,
            link_remap: self.link_remap,
            sockets: self.sockets,
            run_id: inventory::run_id(),
            stats_dir: self.stats_dir,
            track_mem: self.track_mem,
            parent: self.parent,
            auto_dedup: self.auto_dedup,
            key: self.key,
            page_server: self.page_server,
            lazy: self.lazy,
            namespaces: self.namespaces,
            hook: self.hook,
            caller: self.caller,
        })
    }
}
