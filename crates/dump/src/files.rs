//! `files.img` and `fdinfo-<files_id>.img`: the files the task maps and
//! holds open, numbered as CRIU 4.2 numbers them, and the images of each
//! kind of open file ([`pipes`](crate::pipes), [`fifo`](crate::fifo),
//! [`ghost`](crate::ghost), [`tty`](crate::tty)).
//!
//! One counter numbers every file entry, in the order CRIU writes them:
//! the mapped files (area by area), the open fds, the exe (when no mapping
//! already named it), then cwd and root. A mapped file, the exe, cwd and
//! root reuse the id of an earlier entry of the same file (device, inode
//! and mount; the latest one first) — except directories and devices,
//! which get a fresh id each time (CRIU tests the mode's type bits with a
//! mask that catches both). Open fds share an id when they are the same
//! open file description (kcmp), as dup'ed fds are. A FIFO and a terminal
//! also get a regular-file entry for their path, numbered right after
//! their own id and written before their own entry.
//!
//! In scope: regular files, directories and memory devices (/dev/null,
//! /dev/zero, ...) opened in any mode, also with `O_PATH`; deleted regular
//! files (as ghost files, up to the ghost limit); files whose path is gone
//! but that have links elsewhere, with `--link-remap`
//! ([`link_remap`](crate::link_remap)); pipes; FIFOs; terminals (pty
//! masters and slaves, /dev/tty, the console, virtual terminals, serial
//! lines: [`tty`](crate::tty)); eventfds, epoll instances, signalfds and timerfds
//! ([`anon`]); sockets ([`sockets`](crate::sockets)). Each keeps its
//! flags, position and owner (fown). Anything else is refused, naming the
//! fd.
//!
//! Files in flight (sent over a unix socket, `SCM_RIGHTS`, and not read
//! yet) are dumped as the fds are ([`Files::in_flight`]): rcriu holds
//! them while the dump lasts, so that kcmp finds them among the task's.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::{Fd, FdInfo, FdTarget, Pid};

use crate::{
    Error, Result, anon, fifo, file_lock, files_sys, ghost, link_remap, pipes, sk_queue, sockets,
    sys, tty,
};

/// What a file entry needs to know of a file.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// The path, without the ` (deleted)` the kernel adds to the name of
    /// a file that has no link left.
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
    pub mnt_id: i64,
    pub nlink: u32,
    pub rdev: u64,
    /// 512-byte blocks in use.
    pub blocks: u64,
    pub uid: u32,
    pub gid: u32,
    /// Access and modification times, (seconds, nanoseconds).
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    /// A pipe (pipefs), not a FIFO on a filesystem.
    pub pipefs: bool,
}

const PIPEFS_MAGIC: i64 = 0x5049_5045;

/// What [`FileInfo`] is made of: the file's `statx`, mount id included.
pub fn stat(pid: Pid, f: BorrowedFd<'_>, link: &Path) -> Result<rustix::fs::Statx> {
    statx(f).map_err(|e| Error::file(pid, link)(e.into()))
}

/// [`stat`], its error unnamed.
fn statx(f: BorrowedFd<'_>) -> rustix::io::Result<rustix::fs::Statx> {
    rustix::fs::statx(
        f,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::BASIC_STATS | rustix::fs::StatxFlags::MNT_ID,
    )
}

impl FileInfo {
    /// The facts of the file open as `f`, whose name (its link's text) is
    /// `link`.
    pub fn of(pid: Pid, f: BorrowedFd<'_>, link: &Path) -> Result<FileInfo> {
        let st = stat(pid, f, link)?;
        FileInfo::of_stat(pid, f, link, &st)
    }

    /// [`FileInfo::of`], with the file's `statx` ([`stat`]) at hand.
    pub fn of_stat(
        pid: Pid,
        f: BorrowedFd<'_>,
        link: &Path,
        st: &rustix::fs::Statx,
    ) -> Result<FileInfo> {
        let mode = u32::from(st.stx_mode);
        let pipefs = mode & libc::S_IFMT == libc::S_IFIFO
            && rustix::fs::fstatfs(f)
                .map_err(|e| Error::file(pid, link)(e.into()))?
                .f_type as i64
                == PIPEFS_MAGIC;
        // Only a file without links has its name marked deleted: a live
        // file may well be called "x (deleted)".
        let bytes = link.as_os_str().as_bytes();
        let path = match bytes.strip_suffix(b" (deleted)") {
            Some(p) if st.stx_nlink == 0 => PathBuf::from(std::ffi::OsStr::from_bytes(p)),
            _ => link.to_owned(),
        };
        Ok(FileInfo {
            path,
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            mode,
            size: st.stx_size,
            mnt_id: st.stx_mnt_id as i64,
            nlink: st.stx_nlink,
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
            blocks: st.stx_blocks,
            uid: st.stx_uid,
            gid: st.stx_gid,
            atime: (st.stx_atime.tv_sec, st.stx_atime.tv_nsec),
            mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
            pipefs,
        })
    }

    pub(crate) fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    fn is_reg(&self) -> bool {
        self.file_type() == libc::S_IFREG
    }

    /// CRIU's `st_mode & (S_IFCHR | S_IFBLK)`: true for character and
    /// block devices, and for directories too.
    fn never_shared(&self) -> bool {
        self.mode & (libc::S_IFCHR | libc::S_IFBLK) != 0
    }

    /// Whether no name leads to the file any more.
    pub fn unlinked(&self) -> bool {
        self.nlink == 0
    }
}

/// The root of process `pid`'s mount namespace as rcriu reaches it: its
/// paths are the namespace's, looked up from its root (a container's is
/// not rcriu's). In rcriu's own mount namespace that is rcriu's root,
/// whatever the task's (a chrooted task's fds show paths from rcriu's
/// root).
pub fn task_root(pid: Pid) -> PathBuf {
    let ns = |p: &str| std::fs::metadata(format!("/proc/{p}/ns/mnt")).map(|m| m.ino());
    match (ns("self"), ns(&pid.to_string())) {
        (Ok(a), Ok(b)) if a == b => PathBuf::from("/"),
        _ => PathBuf::from(format!("/proc/{pid}/root")),
    }
}

/// Where a file's path leads, for a file that still has links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// The path names the file.
    Named,
    /// Nothing is at the path, but the file has links elsewhere: it needs
    /// a link remap ([`link_remap`](crate::link_remap)).
    Gone,
}

/// Checks that `path` still names the file, or that nothing does but
/// the file still has links (a link remap, allowed when `link_remap`);
/// refuses a path that leads to another file.
pub fn check_path(pid: Pid, what: &str, info: &FileInfo, link_remap: bool) -> Result<PathState> {
    let root = task_root(pid);
    let in_root = root.join(info.path.strip_prefix("/").unwrap_or(&info.path));
    match std::fs::symlink_metadata(in_root) {
        Ok(m) if m.dev() == info.dev && m.ino() == info.ino => Ok(PathState::Named),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && info.nlink > 0 => {
            let path = crate::link_remap::strip_deleted(&info.path);
            if info.file_type() == libc::S_IFDIR {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "{what} {} (a directory), removed from that path but linked elsewhere (a directory cannot be link-remapped)",
                        path.display()
                    ),
                ));
            }
            if !link_remap {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "{what} {}, removed from that path but linked elsewhere (a link remap: dump with --link-remap)",
                        path.display()
                    ),
                ));
            }
            Ok(PathState::Gone)
        }
        _ => Err(Error::unsupported(
            pid,
            format!(
                "{what} {}, whose path no longer names it (removed or replaced)",
                info.path.display()
            ),
        )),
    }
}

/// The error of a file that cannot be examined: for one in the /proc
/// directory of a process that has ended (ESRCH), a refusal naming it
/// (CRIU remaps it to a helper process it makes with that pid, a /proc
/// remap rcriu cannot make yet); else the error itself.
pub fn dead_proc(pid: Pid, what: &str, path: &Path, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ESRCH) && path.starts_with("/proc") {
        return Error::unsupported(
            pid,
            format!(
                "{what}: {}, in the /proc directory of a process that has ended (a /proc remap)",
                path.display()
            ),
        );
    }
    Error::file(pid, path)(e)
}

/// The kind of an open file, as CRIU tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file, a directory, a symbolic link (`O_PATH`) or a
    /// memory device: `reg_file_entry`.
    Reg,
    /// One end of a pipe: `pipe_entry`.
    Pipe,
    /// A FIFO on a filesystem: `fifo_entry` and its path.
    Fifo,
    /// A terminal: `tty_file_entry` and its path.
    Tty(tty::Driver),
    /// A file on an anonymous inode (eventfd, epoll, ...): its own entry
    /// ([`anon`]).
    Anon(anon::Kind),
    /// A socket: the entry of its family ([`sockets`]).
    Socket,
    /// A namespace file (`/proc/PID/ns/NAME`): `ns_file_entry`
    /// ([`nsfile`](crate::nsfile)).
    Ns(rcriu_proc::NsKind),
}

impl FdKind {
    fn fd_type(self) -> pb::FdTypes {
        match self {
            FdKind::Reg => pb::FdTypes::Reg,
            FdKind::Pipe => pb::FdTypes::Pipe,
            FdKind::Fifo => pb::FdTypes::Fifo,
            FdKind::Tty(_) => pb::FdTypes::Tty,
            FdKind::Anon(k) => k.fd_type(),
            FdKind::Socket => pb::FdTypes::Und,
            FdKind::Ns(_) => pb::FdTypes::Ns,
        }
    }
}

/// An open file of the task, as its fd table holds it.
#[derive(Debug)]
pub struct OpenFd {
    pub fd: i32,
    /// Our copy (from the parasite): the same open file description.
    pub file: File,
    pub info: FileInfo,
    pub fdinfo: FdInfo,
    /// A socket's family, options and owner, when read ahead
    /// ([`crate::sockets::Prefetch`]).
    pub ahead: Option<Box<crate::sockets::Ahead>>,
}

impl OpenFd {
    /// What kind of file it is.
    pub fn kind(&self) -> FdKind {
        if let Some(k) = anon::Kind::of_link(self.info.path.as_os_str().as_bytes()) {
            return FdKind::Anon(k);
        }
        if let Some(k) = crate::nsfile::kind_of_link(self.info.path.as_os_str().as_bytes()) {
            return FdKind::Ns(k);
        }
        match self.info.file_type() {
            libc::S_IFIFO if self.info.pipefs => FdKind::Pipe,
            libc::S_IFIFO => FdKind::Fifo,
            libc::S_IFCHR => tty::driver(self.info.rdev).map_or(FdKind::Reg, FdKind::Tty),
            libc::S_IFSOCK => FdKind::Socket,
            _ => FdKind::Reg,
        }
    }

    /// The file's flags as CRIU records them: the kernel shows
    /// close-on-exec among them, but it belongs to the fd.
    pub fn flags(&self) -> u32 {
        self.fdinfo.flags & !(libc::O_CLOEXEC as u32)
    }

    fn is_path(&self) -> bool {
        self.fdinfo.flags & libc::O_PATH as u32 != 0
    }

    /// Opens the file again for reading, through our copy (the task's fd
    /// may be write-only or `O_PATH`).
    pub fn reopen_for_reading(&self, pid: Pid) -> Result<File> {
        use std::os::fd::AsRawFd;
        let link = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        File::open(&link).map_err(Error::file(pid, &self.info.path))
    }
}

/// Major numbers of the memory devices (/dev/null, /dev/zero, ...), which
/// CRIU dumps as regular files.
const MEM_MAJOR: u32 = 1;

/// Refuses fds out of scope, from what /proc says (before the task is
/// touched).
pub fn check_fd(pid: Pid, fd: &Fd, fdinfo: &FdInfo) -> Result<()> {
    check_fd_at(pid, fd, fdinfo, &format!("/proc/{pid}/fd/{}", fd.fd))
}

/// A file in flight refused: named as such rather than by rcriu's fd.
fn in_flight_error(pid: Pid, e: Error) -> Error {
    match e {
        Error::Unsupported { what, .. } => Error::Unsupported {
            pid,
            what: format!(
                "a file in flight in a unix socket ({})",
                what.split_once(": ").map_or(what.as_str(), |(_, w)| w)
            ),
        },
        e => e,
    }
}

/// [`check_fd`] of the fd whose /proc link is `link`.
fn check_fd_at(pid: Pid, fd: &Fd, fdinfo: &FdInfo, link: &str) -> Result<()> {
    let refuse = |what: String| Error::unsupported(pid, format!("fd {}: {what}", fd.fd));
    let path = match fd.target() {
        FdTarget::Path { path, .. } => path,
        FdTarget::Pipe(_) => {
            if fdinfo.flags & libc::O_DIRECT as u32 != 0 {
                return Err(refuse("a pipe in packet mode (O_DIRECT)".into()));
            }
            return Ok(());
        }
        // Its kind is known once rcriu holds a copy (crate::sockets).
        FdTarget::Socket(_) => return Ok(()),
        FdTarget::AnonInode(kind) => return anon::check(pid, fd.fd, &kind, fdinfo),
        FdTarget::Inode { kind, .. } if crate::nsfile::kind_of_type(kind.as_bytes()).is_some() => {
            return Ok(());
        }
        FdTarget::Inode { kind, .. } => return Err(refuse(format!("a {kind} file"))),
        FdTarget::Other(link) => {
            return Err(refuse(format!(
                "an unknown file ({})",
                String::from_utf8_lossy(&link)
            )));
        }
    };
    if path.as_os_str().as_bytes().starts_with(b"/memfd:") {
        return Err(refuse(format!("a memfd ({})", path.display())));
    }
    // The link, not followed further: the file itself, not opened again.
    let m =
        std::fs::metadata(link).map_err(|e| dead_proc(pid, &format!("fd {}", fd.fd), &path, e))?;
    let kind = match m.mode() & libc::S_IFMT {
        libc::S_IFREG => return Ok(()),
        // A deleted one is a ghost holding its target, as CRIU's.
        libc::S_IFLNK => return Ok(()),
        // A removed one is a ghost, as a deleted regular file.
        libc::S_IFDIR => return Ok(()),
        // A deleted one is a ghost, as a deleted regular file.
        libc::S_IFIFO => return Ok(()),
        libc::S_IFCHR => {
            let major = rustix::fs::major(m.rdev());
            // A deleted one (a node made with mknod, removed) is a ghost.
            if major == MEM_MAJOR {
                return Ok(());
            }
            if tty::driver(m.rdev()).is_some() {
                return Ok(());
            }
            if tty::is_terminal(m.rdev()) {
                "a terminal CRIU 4.2 does not dump either (neither a pty, /dev/tty, the console, a virtual terminal nor a USB or low-density serial line)"
            } else {
                "a character device"
            }
        }
        libc::S_IFBLK => "a block device",
        _ => "a special file",
    };
    Err(refuse(format!("{kind} ({})", path.display())))
}

/// Checks an open fd against what its kind needs: its path still names
/// it, it is a deleted regular file (a ghost), or, with `link_remap`,
/// its path is gone but it has links (a link remap).
pub fn check_open(pid: Pid, f: &OpenFd, link_remap: bool) -> Result<()> {
    let what = format!("fd {}:", f.fd);
    if f.kind() == FdKind::Reg
        && let Some(dead) = crate::proc_remap::dead_pid(pid, &f.info, f.file.as_fd())
    {
        return crate::proc_remap::check_restorable(pid, &what, dead);
    }
    match f.kind() {
        FdKind::Pipe
        | FdKind::Tty(tty::Driver::PtySlave)
        | FdKind::Anon(_)
        | FdKind::Socket
        | FdKind::Ns(_) => Ok(()),
        FdKind::Reg if f.info.unlinked() && f.info.is_reg() => Ok(()),
        FdKind::Reg if f.info.unlinked() && f.info.file_type() == libc::S_IFDIR => Ok(()),
        FdKind::Fifo if f.info.unlinked() => Ok(()),
        FdKind::Reg if f.info.unlinked() && f.info.file_type() == libc::S_IFCHR => Ok(()),
        FdKind::Reg if f.info.unlinked() && f.info.file_type() == libc::S_IFLNK => Ok(()),
        FdKind::Reg | FdKind::Fifo => match check_path(pid, &what, &f.info, link_remap) {
            Ok(PathState::Named) => Ok(()),
            // A POSIX message queue's path is its mqueue mount's, never
            // found here: CRIU 4.2 has no image for one (nor for its
            // messages), refused by name.
            _ if is_mqueue(f) => Err(Error::unsupported(
                pid,
                format!(
                    "{what} a POSIX message queue ({}), which CRIU 4.2 does not dump either",
                    f.info.path.display()
                ),
            )),
            r => r.map(drop),
        },
        FdKind::Tty(_) => check_path(pid, &what, &f.info, false).map(drop),
    }
}

/// mqueue's `f_type`.
const MQUEUE_MAGIC: i64 = 0x1980_0202;

/// Whether `f` is a POSIX message queue (a file of an mqueue mount).
fn is_mqueue(f: &OpenFd) -> bool {
    f.info.is_reg() && rustix::fs::fstatfs(f.file.as_fd()).is_ok_and(|s| s.f_type == MQUEUE_MAGIC)
}

/// What the dump of files is told.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The largest deleted file (in bytes on disk) saved as a ghost file
    /// (criu's `--ghost-limit`).
    pub ghost_limit: u64,
    /// The task may hold a terminal whose other end is outside the dump
    /// (criu's `--shell-job`).
    pub shell_job: bool,
    /// A container's terminal: one pty slave whose master the caller
    /// holds, and /dev/tty reaching it (criu's `orphan_pts_master`).
    pub orphan_pts_master: bool,
    /// Locks and leases are dumped (criu's `--file-locks`), not refused.
    pub file_locks: bool,
    /// Files whose path is gone but that have links elsewhere get a link
    /// made for the restore (criu's `--link-remap`), not refused.
    pub link_remap: bool,
    /// What the dump of sockets is told.
    pub sockets: sockets::Options,
    /// This run's id (CRIU's `criu_run_id`): the name of its nftables
    /// lock, written to the inventory.
    pub run_id: String,
}

/// criu's default `--ghost-limit`: 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

/// An fd seen: (pid, fd, file id).
type SeenFd = (Pid, i32, u32);

/// The file entries of a dump, and their numbering.
#[derive(Debug)]
pub struct Files {
    pid: Pid,
    opts: Options,
    next: u32,
    /// (dev, ino, mnt_id) → id, latest first when searched.
    cache: Vec<(u64, u64, i64, u32)>,
    pub entries: Vec<pb::FileEntry>,
    /// (dev, ino) → (pid, fd, id) of the fds seen of that inode, for
    /// kcmp: only fds of the same inode can be the same open file
    /// description (a map: ten thousand sockets are ten thousand inodes).
    fds: std::collections::HashMap<(u64, u64), Vec<SeenFd>>,
    ghosts: ghost::Ghosts,
    /// Watches on files with no link left, which a ghost must hold:
    /// (pid, what, device in the kernel's encoding, inode).
    watched_ghosts: Vec<(Pid, String, u32, u64)>,
    /// The root of each process's mount namespace, open, for its link
    /// remaps.
    roots: std::collections::HashMap<Pid, std::sync::Arc<std::os::fd::OwnedFd>>,
    extra: Extra,
    ttys: tty::Seen,
    locks: file_lock::Locks,
    /// The pids of the tree's processes (zombies too), whose pidfds are
    /// restored.
    pub tree: Vec<Pid>,
    /// In a pid namespace of the tree's own: each thread's pid there, by
    /// host pid, to name the owners of open files' signals (F_SETOWN) as
    /// the images name processes.
    pub vpids: Option<Vec<(Pid, Pid)>>,
    /// What the dump knows of sockets.
    pub(crate) sockets: sockets::Sockets,
    /// Files in flight, held while the dump lasts (kcmp compares them).
    held: Vec<File>,
    /// The io_uring instances held as fds so far (each may be held by
    /// one fd of the tree).
    pub rings: std::collections::HashSet<u32>,
    /// The namespaces of the processes numbered so far (namespace files
    /// name them by id).
    pub namespaces: crate::nsfile::Held,
    /// The ended processes whose /proc directories hold files of the
    /// dump (a /proc remap each).
    dead: crate::proc_remap::Dead,
}

/// The images of the open files beside files.img: link remaps, buffered
/// pipe and FIFO data, terminals.
#[derive(Debug, Default)]
pub struct Extra {
    pub remaps: Vec<pb::RemapFilePathEntry>,
    pub pipes_data: Vec<pipes::Captured>,
    pub fifo_data: Vec<pipes::Captured>,
    pub tty_info: Vec<pb::TtyInfoEntry>,
    /// Bytes waiting in ptys (tty-data.img), written back unless kept.
    pub tty_data: tty::Queued,
    pub file_locks: Vec<pb::FileLockEntry>,
    /// What waits in unix sockets (sk-queues.img).
    pub sk_queues: Vec<sk_queue::Packet>,
    /// Connected TCP sockets: their streams, and the repair mode and lock
    /// they are kept in until the dump ends.
    pub tcp: crate::tcp_stream::Streams,
    /// The links made for link remaps: removed unless the dump ends with
    /// the process gone.
    pub links: link_remap::Links,
}

impl Extra {
    /// The process runs on (--leave-running) or the dump failed: TCP
    /// sockets leave repair mode and their lock is lifted, before the
    /// process runs again.
    pub fn release_sockets(&mut self) {
        self.tcp.release();
    }

    /// The process was killed: TCP connections stay locked for the
    /// restore, their sockets close in repair mode (sending nothing).
    pub fn keep_sockets_locked(&mut self) {
        self.tcp.keep_locked();
    }

    /// The process runs on (--leave-running, or the dump failed): the
    /// bytes read from its ptys wait in them again, before it runs.
    pub fn put_back_tty_data(&mut self) {
        self.tty_data.put_back();
    }
}

impl Extra {
    /// Writes the images; `create` names each image before it is written
    /// (so that a failed dump removes it) and gives the directory.
    pub fn write(
        &self,
        pid: Pid,
        create: &mut dyn FnMut(ImageFile) -> Result<ImageDir>,
    ) -> Result<()> {
        if !self.remaps.is_empty() {
            let dir = create(ImageFile::RemapFpath)?;
            dir.write_all(ImageFile::RemapFpath, &self.remaps)
                .map_err(Error::image(pid))?;
        }
        if !self.tty_info.is_empty() {
            let dir = create(ImageFile::TtyInfo)?;
            dir.write_all(ImageFile::TtyInfo, &self.tty_info)
                .map_err(Error::image(pid))?;
        }
        if !self.tty_data.entries.is_empty() {
            let dir = create(ImageFile::TtyData)?;
            dir.write_all(ImageFile::TtyData, &self.tty_data.entries)
                .map_err(Error::image(pid))?;
        }
        if !self.file_locks.is_empty() {
            let dir = create(ImageFile::FileLocks)?;
            dir.write_all(ImageFile::FileLocks, &self.file_locks)
                .map_err(Error::image(pid))?;
        }
        pipes::write(pid, ImageFile::PipesData, &self.pipes_data, create)?;
        pipes::write(pid, ImageFile::FifoData, &self.fifo_data, create)?;
        sk_queue::write(pid, &self.sk_queues, create)?;
        self.tcp.write(pid, create)
    }
}

impl Files {
    /// `fown` with its owner (a process or thread, or the leader of a
    /// group) named as the images name processes; in a pid namespace of
    /// the tree's own, an owner outside it is refused by name (the
    /// restore could not give the file to it).
    fn named_owner(&self, f: &OpenFd, mut fown: pb::FownEntry) -> Result<pb::FownEntry> {
        let Some(vpids) = &self.vpids else {
            return Ok(fown);
        };
        if fown.pid == 0 {
            return Ok(fown);
        }
        let host = fown.pid as Pid;
        match vpids.iter().find(|(h, _)| *h == host) {
            Some((_, v)) => fown.pid = *v as u32,
            None => {
                return Err(Error::unsupported(
                    self.pid,
                    format!(
                        "fd {}: its signals go (F_SETOWN) to process {host}, outside the tree's pid namespace",
                        f.fd
                    ),
                ));
            }
        }
        Ok(fown)
    }
}

/// The owner an open file signals, as CRIU records it.
pub fn fown(pid: Pid, f: &OpenFd) -> Result<pb::FownEntry> {
    let mut e = pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    };
    if f.is_path() {
        return Ok(e);
    }
    if let Some(a) = &f.ahead {
        return Ok(a.fown);
    }
    let fd = f.file.as_fd();
    let err = |what: &'static str| Error::sys(what, pid);
    e.signum = sys::owner_signal(fd).map_err(err("reading an open file's signal (F_GETSIG)"))?;
    let (kind, owner) =
        sys::owner(fd).map_err(err("reading an open file's owner (F_GETOWN_EX)"))?;
    if owner != 0 {
        let (uid, euid) = files_sys::owner_uids(fd)
            .map_err(err("reading an open file's owner uids (F_GETOWNER_UIDS)"))?;
        e.uid = uid;
        e.euid = euid;
        e.pid_type = kind as u32;
        e.pid = owner as u32;
    }
    Ok(e)
}

fn no_fown() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

/// A regular-file entry's contents, before it is written.
struct Reg<'a> {
    id: u32,
    info: &'a FileInfo,
    flags: u32,
    pos: u64,
    fown: pb::FownEntry,
}

impl Files {
    pub fn new(pid: Pid, opts: Options) -> Files {
        Files {
            pid,
            sockets: sockets::Sockets::new(opts.sockets.clone()),
            held: Vec::new(),
            rings: std::collections::HashSet::new(),
            opts,
            next: 1,
            cache: Vec::new(),
            entries: Vec::new(),
            fds: std::collections::HashMap::new(),
            ghosts: ghost::Ghosts::default(),
            watched_ghosts: Vec::new(),
            roots: std::collections::HashMap::new(),
            extra: Extra::default(),
            ttys: tty::Seen::default(),
            locks: file_lock::Locks::default(),
            tree: Vec::new(),
            vpids: None,
            namespaces: crate::nsfile::Held::default(),
            dead: crate::proc_remap::Dead::default(),
        }
    }

    /// Makes room for `n` more open files: a server's thousands of
    /// sockets otherwise move their entries as the tables grow.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        self.cache.reserve(n);
        self.fds.reserve(n);
    }

    /// Whether link remaps are made (criu's `--link-remap`).
    pub fn link_remap(&self) -> bool {
        self.opts.link_remap
    }

    /// The process whose files these are.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Adds messages read from a socket's queue (sk-queues.img).
    pub(crate) fn push_packets(&mut self, packets: Vec<sk_queue::Packet>) {
        self.extra.sk_queues.extend(packets);
    }

    /// Turns to the files of process `pid` (of the same tree): ids go on
    /// from those of the processes before it, open file descriptions
    /// they share are found.
    pub fn set_process(&mut self, pid: Pid) {
        self.pid = pid;
    }

    fn fresh(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        id
    }

    /// A new file id, for an entry another module writes.
    pub fn next_id(&mut self) -> u32 {
        self.fresh()
    }

    fn cached(&self, info: &FileInfo) -> Option<u32> {
        self.cache
            .iter()
            .rev()
            .find(|(d, i, m, _)| *d == info.dev && *i == info.ino && *m == info.mnt_id)
            .map(|e| e.3)
    }

    /// The id of a file named outside the fd table (a mapped file, the
    /// exe, cwd, root), writing its entry when it is new. `file` is open
    /// on it, for its build-id.
    pub fn special(&mut self, info: &FileInfo, file: &File) -> Result<u32> {
        let reg = |id| Reg {
            id,
            info,
            flags: 0,
            pos: 0,
            fown: no_fown(),
        };
        if let Some(id) = self.cached(info) {
            if !info.never_shared() {
                return Ok(id);
            }
            let id = self.fresh();
            self.push_reg(&reg(id), Some(file), None)?;
            return Ok(id);
        }
        let id = self.fresh();
        self.cache.push((info.dev, info.ino, info.mnt_id, id));
        self.push_reg(&reg(id), Some(file), None)?;
        Ok(id)
    }

    /// The id of a file named outside the fd table (a mapped file, the
    /// exe, cwd, root; `what`), which still has a name: its path checked
    /// first, and a link made when the path is gone but the file has
    /// links elsewhere (`--link-remap`).
    pub fn special_named(&mut self, info: &FileInfo, file: &File, what: &str) -> Result<u32> {
        let pid = self.pid;
        if let Some(dead) = crate::proc_remap::dead_pid(pid, info, file.as_fd()) {
            crate::proc_remap::check_restorable(pid, what, dead)?;
            if let Some(id) = self.cached(info) {
                return Ok(id);
            }
            let id = self.fresh();
            self.cache.push((info.dev, info.ino, info.mnt_id, id));
            self.extra.remaps.extend(self.dead.remap(id, dead));
            let named = crate::proc_remap::named(info);
            let reg = Reg {
                id,
                info: &named,
                flags: 0,
                pos: 0,
                fown: no_fown(),
            };
            self.push_reg(&reg, Some(file), None)?;
            return Ok(id);
        }
        if check_path(pid, what, info, self.opts.link_remap)? == PathState::Named {
            return self.special(info, file);
        }
        if let Some(id) = self.cached(info)
            && !info.never_shared()
        {
            return Ok(id);
        }
        let id = self.fresh();
        self.cache.push((info.dev, info.ino, info.mnt_id, id));
        let named = self.remap_linked(id, info, file)?;
        let reg = Reg {
            id,
            info: &named,
            flags: 0,
            pos: 0,
            fown: no_fown(),
        };
        self.push_reg(&reg, Some(file), None)?;
        Ok(id)
    }

    /// Makes the link of file entry `orig_id` (the file `info`, open as
    /// `file`, whose path is gone), writes its regular-file entry (the
    /// next id) and the remap: the facts of the file as its own entry
    /// gives them (its path without " (deleted)", as CRIU writes it).
    fn remap_linked(&mut self, orig_id: u32, info: &FileInfo, file: &File) -> Result<FileInfo> {
        let pid = self.pid;
        let root = match self.roots.get(&pid) {
            Some(r) => r.clone(),
            None => {
                let r = std::sync::Arc::new(link_remap::task_root(pid)?);
                self.roots.insert(pid, r.clone());
                r
            }
        };
        let path = link_remap::strip_deleted(&info.path);
        let link_id = self.fresh();
        let at = self.extra.links.link(pid, &root, file, &path, link_id)?;
        self.entries.push(link_remap::entry(link_id, &at));
        self.extra.remaps.push(pb::RemapFilePathEntry {
            orig_id,
            remap_id: link_id,
            remap_type: Some(pb::RemapType::Linked as i32),
        });
        Ok(FileInfo {
            path,
            ..info.clone()
        })
    }

    /// [`special`](Self::special) for a file with no name left that the
    /// process holds other than as an fd (`what`: a mapping, its cwd or
    /// root): a ghost, as a deleted file open as an fd.
    pub fn special_deleted(&mut self, info: &FileInfo, file: &File, what: String) -> Result<u32> {
        let id = self.special(info, file)?;
        if self.extra.remaps.iter().any(|r| r.orig_id == id) {
            return Ok(id);
        }
        let pid = self.pid;
        let reopen = || {
            use std::os::fd::AsRawFd;
            let link = format!("/proc/self/fd/{}", file.as_raw_fd());
            File::open(&link).map_err(Error::file(pid, &info.path))
        };
        let remap = self
            .ghosts
            .remap_file(pid, self.opts.ghost_limit, id, info, what, reopen)?;
        self.extra.remaps.push(remap);
        Ok(id)
    }

    /// The id of an open fd, writing its entries unless an earlier fd is
    /// the same open file description.
    pub fn fd(&mut self, f: &OpenFd) -> Result<u32> {
        self.file(self.pid, f.fd, f)
    }

    /// The id of a file in flight (sent over a unix socket and not read
    /// yet), which rcriu now holds as `file`: as an fd's, without an fd.
    pub fn in_flight(&mut self, file: File) -> Result<u32> {
        let pid = self.pid;
        let me = std::process::id() as Pid;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
        let link_path = format!("/proc/self/fd/{raw}");
        let link = std::fs::read_link(&link_path).map_err(Error::file(pid, &link_path))?;
        let fdinfo = rcriu_proc::Task::open_self()
            .and_then(|mut t| t.fdinfo(raw))
            .map_err(Error::proc(pid))?;
        let fd = rcriu_proc::Fd {
            fd: raw,
            link: link.clone(),
        };
        check_fd_at(pid, &fd, &fdinfo, &link_path).map_err(|e| in_flight_error(pid, e))?;
        let info = FileInfo::of(pid, file.as_fd(), &link)?;
        let f = OpenFd {
            fd: -1,
            file,
            info,
            fdinfo,
            ahead: None,
        };
        check_open(pid, &f, self.opts.link_remap).map_err(|e| in_flight_error(pid, e))?;
        // The restore opens a namespace it makes anew from a process of
        // it, which no queue can hold.
        if let FdKind::Ns(kind) = f.kind() {
            return Err(Error::unsupported(
                pid,
                format!(
                    "a file in flight in a unix socket (a {} namespace file)",
                    kind.file_name()
                ),
            ));
        }
        let id = self.file(me, raw, &f)?;
        self.held.push(f.file);
        Ok(id)
    }

    /// The id of `f`, which process `owner` holds as fd `number` (for
    /// kcmp), writing its entries unless it is a file already seen.
    fn file(&mut self, owner: Pid, number: i32, f: &OpenFd) -> Result<u32> {
        let (dev, ino) = (f.info.dev, f.info.ino);
        let seen = self.fds.entry((dev, ino)).or_default();
        for &(p, other, id) in seen.iter() {
            let same = sys::same_file(p, other, owner, number)
                .map_err(Error::sys("comparing open files (kcmp)", self.pid))?;
            if same {
                seen.push((owner, number, id));
                return Ok(id);
            }
        }
        let id = self.next;
        self.next += 1;
        self.fds
            .entry((dev, ino))
            .or_default()
            .push((owner, number, id));
        self.cache.push((f.info.dev, f.info.ino, f.info.mnt_id, id));
        let fown = self.named_owner(f, fown(self.pid, f)?)?;
        let pid = self.pid;
        self.locks.note(pid, f, self.opts.file_locks)?;
        match f.kind() {
            FdKind::Reg => {
                let mut named = None;
                if let Some(dead) = crate::proc_remap::dead_pid(pid, &f.info, f.file.as_fd()) {
                    named = Some(crate::proc_remap::named(&f.info));
                    self.extra.remaps.extend(self.dead.remap(id, dead));
                } else if f.info.unlinked() {
                    let remap = self.ghosts.remap(pid, self.opts.ghost_limit, id, f)?;
                    self.extra.remaps.push(remap);
                } else if self.needs_link(f)? {
                    named = Some(self.remap_linked(id, &f.info, &f.file)?);
                }
                let reg = Reg {
                    id,
                    info: named.as_ref().unwrap_or(&f.info),
                    flags: f.flags(),
                    pos: f.fdinfo.pos as u64,
                    fown,
                };
                self.push_reg(&reg, None, Some(f))?;
            }
            FdKind::Pipe => {
                let pipe_id = f.info.ino as u32;
                self.entries
                    .push(pipes::entry(id, pipe_id, f.flags(), fown));
                if let Some(c) = pipes::capture_once(pid, f, &self.extra.pipes_data)? {
                    self.extra.pipes_data.push(c);
                }
            }
            FdKind::Fifo => {
                let rf = self.fresh();
                let mut named = None;
                if f.info.unlinked() {
                    // Its path entry is a ghost (mode alone), as CRIU.
                    let remap = self.ghosts.remap(pid, self.opts.ghost_limit, rf, f)?;
                    self.extra.remaps.push(remap);
                } else if self.needs_link(f)? {
                    named = Some(self.remap_linked(rf, &f.info, &f.file)?);
                }
                let reg = Reg {
                    id: rf,
                    info: named.as_ref().unwrap_or(&f.info),
                    flags: f.flags(),
                    pos: f.fdinfo.pos as u64,
                    fown,
                };
                self.push_reg(&reg, None, Some(f))?;
                self.entries.push(fifo::entry(id, f.info.ino as u32, rf));
                if let Some(c) = pipes::capture_once(pid, f, &self.extra.fifo_data)? {
                    self.extra.fifo_data.push(c);
                }
            }
            FdKind::Tty(driver) => {
                let index = tty::index(pid, f, driver)?;
                let info_id = tty::info_id(driver, index);
                let rf = self.fresh();
                let reg = Reg {
                    id: rf,
                    info: &f.info,
                    flags: f.flags(),
                    pos: f.fdinfo.pos as u64,
                    fown,
                };
                self.push_reg(&reg, None, Some(f))?;
                if driver == tty::Driver::Ctty && fown.pid != 0 {
                    return Err(Error::unsupported(
                        pid,
                        format!(
                            "fd {}: /dev/tty with an owner (F_SETOWN {}), which rcriu does not give back to a file the process opens itself",
                            f.fd, fown.pid
                        ),
                    ));
                }
                self.ttys.terminal(pid, f, driver)?;
                if let Some(info) = self.ttys.info_once(pid, f, driver, index)? {
                    self.extra.tty_info.push(info);
                }
                self.entries
                    .push(tty::entry(id, info_id, f.flags(), fown, rf));
            }
            FdKind::Anon(kind) => {
                let e = anon::entry(pid, kind, id, f, fown, &self.tree)?;
                if let Some(i) = &e.ify {
                    for (wd, sdev, ino) in crate::inotify::on_deleted(i) {
                        let what = format!("fd {}: an inotify watch ({wd})", f.fd);
                        self.watched_ghosts.push((pid, what, sdev, ino));
                    }
                }
                self.entries.push(e)
            }
            FdKind::Socket => sockets::dump(self, f, id, fown)?,
            FdKind::Ns(kind) => {
                let e = crate::nsfile::entry(pid, id, kind, f, &self.namespaces)?;
                self.entries.push(e);
            }
        }
        Ok(id)
    }

    /// Whether open file `f`, which has links, needs a link remap: only
    /// asked with `--link-remap` (without it, [`check_open`] refused it).
    fn needs_link(&self, f: &OpenFd) -> Result<bool> {
        if !self.opts.link_remap {
            return Ok(false);
        }
        let what = format!("fd {}:", f.fd);
        Ok(check_path(self.pid, &what, &f.info, true)? == PathState::Gone)
    }

    /// Writes the ghost files found so far (while the task is frozen);
    /// `create` names each image before it is written.
    pub fn write_ghosts(
        &mut self,
        create: &mut dyn FnMut(ImageFile) -> Result<ImageDir>,
    ) -> Result<()> {
        self.ghosts.write(self.pid, create)
    }

    /// The images beside files.img, once every fd is seen; checks that
    /// every pty slave has its master (or is the shell's terminal).
    pub fn take_extra(&mut self) -> Result<Extra> {
        self.ttys
            .check_pairs(self.pid, self.opts.shell_job, self.opts.orphan_pts_master)?;
        for (pid, what, sdev, ino) in &self.watched_ghosts {
            let dev = rustix::fs::makedev(sdev >> 20, sdev & 0xf_ffff);
            if !self.ghosts.holds(dev, *ino) {
                return Err(Error::unsupported(
                    *pid,
                    format!(
                        "{what} on inode {ino} of device {sdev:#x}, a file no path names that no fd or mapping of the dump holds"
                    ),
                ));
            }
        }
        self.extra.file_locks = std::mem::take(&mut self.locks.entries);
        crate::sk_unix::finish(self)?;
        let mut tcp = std::mem::take(&mut self.sockets.tcp);
        let dumped = tcp.dump_all(
            self.pid,
            &self.sockets.opts,
            &self.opts.run_id,
            &mut self.entries,
        );
        self.extra.tcp = tcp;
        dumped?;
        // Last, as CRIU: what is read here goes back if the dump fails.
        self.extra.tty_data = self.ttys.take_data(self.pid)?;
        Ok(std::mem::take(&mut self.extra))
    }

    /// Writes a regular-file entry; `file` (or the open fd's copy) is read
    /// for the build-id.
    fn push_reg(&mut self, r: &Reg<'_>, file: Option<&File>, open: Option<&OpenFd>) -> Result<()> {
        let info = r.info;
        // CRIU skips the size of write-only append files (logs).
        let append_only = r.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32
            && r.flags & libc::O_APPEND as u32 != 0;
        let validate = info.is_reg() && !append_only;
        let build_id = if validate && info.size >= 5 {
            let readable;
            let file = match (file, open) {
                (Some(f), _) => f,
                (None, Some(o)) => {
                    readable = o.reopen_for_reading(self.pid)?;
                    &readable
                }
                (None, None) => unreachable!("push_reg is given a file to read"),
            };
            rcriu_images::build_id::build_id(file, info.size)
                .map_err(Error::file(self.pid, &info.path))?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: r.id,
            reg: Some(Box::new(pb::RegFileEntry {
                id: r.id,
                flags: r.flags,
                pos: r.pos,
                fown: r.fown,
                name: info.path.as_os_str().as_bytes().to_vec(),
                mnt_id: None,
                size: validate.then_some(info.size),
                ext: None,
                mode: Some(info.mode),
                build_id,
                checksum: None,
                checksum_config: None,
                checksum_parameter: None,
            })),
            ..Default::default()
        });
        Ok(())
    }
}

/// The fdinfo entry of an fd.
pub fn fdinfo_entry(f: &OpenFd, id: u32) -> pb::FdinfoEntry {
    let cloexec = f.fdinfo.flags & libc::O_CLOEXEC as u32 != 0;
    let kind = match f.kind() {
        FdKind::Socket => sockets::fd_type(f),
        k => k.fd_type(),
    };
    pb::FdinfoEntry {
        id,
        flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
        r#type: kind as i32,
        fd: f.fd as u32,
        xattr_security_selinux: None,
    }
}

/// The largest fd table whose numbers are all tried ([`read_fds`]).
const FDS_TRIED: u32 = 1 << 16;

/// Below this many fds, one thread reads them.
const FDS_PER_READER: usize = 512;

/// An open fd of a frozen process, with rcriu's copy of it.
pub struct ReadFd {
    pub fd: Fd,
    /// Its fdinfo; `None` for a socket, whose flags are its file's and
    /// its fd's, read from the copy and by the parasite
    /// ([`socket_fdinfo`]).
    pub info: Option<FdInfo>,
    /// rcriu's copy (`pidfd_getfd`): the same open file description.
    pub copy: OwnedFd,
    /// The copy's [`stat`].
    pub stat: rustix::fs::Statx,
    /// A socket's file status flags (`F_GETFL`); 0 for other files.
    pub getfl: u32,
}

/// Fd numbers a reader takes at once ([`read_fds`]).
const NUMBERS_PER_TURN: usize = 256;

/// The open fds of frozen process `pid`, in order, each with its fdinfo
/// and rcriu's copy of it. Sockets, thousands in a server, are known by
/// their copy (`fstat`, `F_GETFL`) without /proc's readlink and fdinfo,
/// which cost most of what collecting an fd did; only a socket holding a
/// lock (in `/proc/locks`) is read whole. A process with thousands of
/// fds is read by two threads, each with its own handle on `/proc/PID`,
/// taking numbers in turns (the fds of a table may sit anywhere in it),
/// and no number is tried once as many fds were found as the table
/// holds (`st_size` of `/proc/PID/fd`).
pub fn read_fds(pid: Pid, locks: &Locks) -> Result<Vec<ReadFd>> {
    let mut task = rcriu_proc::Task::open(pid).map_err(Error::proc(pid))?;
    // Every number below the size of its fd table, tried: fewer than the
    // table holds are free (it doubles as it fills), and a free number
    // costs an EBADF where listing `fd/` builds a dentry for each fd.
    // A table grown for one high number is listed.
    let size = task
        .status()
        .ok()
        .and_then(|s| s.fd_size)
        .unwrap_or(u32::MAX);
    let numbers = if size <= FDS_TRIED {
        (0..size as i32).collect()
    } else {
        task.fd_numbers().map_err(Error::proc(pid))?
    };
    // How many fds the table holds (Linux 6.2; 0 before): the numbers
    // above the last of them are not tried.
    let open = std::fs::metadata(format!("/proc/{pid}/fd"))
        .map(|m| m.len() as usize)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    // A socket /proc/locks named before the freeze has its fdinfo read
    // (its lock is dumped, or refused); one locked since is caught by
    // [`check_socket_locks`].
    let is_locked = |ino: u64| locks.contains(pid, ino);
    let pidfd = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| Error::Inconsistent {
            pid,
            what: "pid 0".to_owned(),
        })
        .and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                .map_err(|e| Error::sys("opening a pidfd", pid)(e.into()))
        })?;
    reserve_fds(&pidfd, numbers.len().min(open));
    let turns: Vec<&[i32]> = numbers.chunks(NUMBERS_PER_TURN).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found = std::sync::atomic::AtomicUsize::new(0);
    let read_one = |task: &mut rcriu_proc::Task, n: i32| -> Result<Option<ReadFd>> {
        let copy = match rustix::process::pidfd_getfd(
            &pidfd,
            n,
            rustix::process::PidfdGetfdFlags::empty(),
        ) {
            Ok(c) => c,
            // A free number (or closed since the listing: a frozen
            // process cannot).
            Err(rustix::io::Errno::BADF) => return Ok(None),
            Err(e) => {
                return Err(Error::File {
                    pid,
                    path: PathBuf::from(format!("/proc/{pid}/fd/{n}")),
                    source: e.into(),
                });
            }
        };
        let link = || PathBuf::from(format!("/proc/{pid}/fd/{n}"));
        let st = statx(copy.as_fd()).map_err(|e| Error::file(pid, link())(e.into()))?;
        let socket = rustix::fs::FileType::from_raw_mode(u32::from(st.stx_mode))
            == rustix::fs::FileType::Socket;
        if socket && !is_locked(st.stx_ino)? {
            let getfl = rustix::fs::fcntl_getfl(&copy).map_err(|e| Error::File {
                pid,
                path: link(),
                source: e.into(),
            })?;
            return Ok(Some(ReadFd {
                fd: Fd {
                    fd: n,
                    link: PathBuf::from(format!("socket:[{}]", st.stx_ino)),
                },
                info: None,
                copy,
                stat: st,
                getfl: getfl.bits(),
            }));
        }
        let Some(fd) = task.fd(n).map_err(Error::proc(pid))? else {
            return Ok(None);
        };
        let info = task.fdinfo(n).map_err(Error::proc(pid))?;
        Ok(Some(ReadFd {
            fd,
            info: Some(info),
            copy,
            stat: st,
            getfl: 0,
        }))
    };
    // Each turn's fds, by turn.
    let read = || -> Result<Vec<(usize, Vec<ReadFd>)>> {
        let mut task = rcriu_proc::Task::open(pid).map_err(Error::proc(pid))?;
        let mut out = Vec::new();
        loop {
            use std::sync::atomic::Ordering::Relaxed;
            if found.load(Relaxed) >= open {
                break;
            }
            let i = next.fetch_add(1, Relaxed);
            let Some(turn) = turns.get(i) else {
                break;
            };
            let mut got = Vec::with_capacity(turn.len());
            for &n in *turn {
                if let Some(r) = read_one(&mut task, n)? {
                    got.push(r);
                }
            }
            found.fetch_add(got.len(), Relaxed);
            out.push((i, got));
        }
        Ok(out)
    };
    let mut turns_read = if numbers.len() < FDS_PER_READER || open < FDS_PER_READER {
        read()?
    } else {
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(read);
            let first = read();
            (first, other.join())
        });
        let mut a = a?;
        a.extend(b.unwrap_or_else(|p| std::panic::resume_unwind(p))?);
        a
    };
    turns_read.sort_unstable_by_key(|(i, _)| *i);
    Ok(turns_read.into_iter().flat_map(|(_, v)| v).collect())
}

/// Grows rcriu's fd table at once to hold `n` more fds: grown one
/// doubling at a time while threads share it, each growth waits for an
/// RCU grace period (milliseconds each, for thousands of fds).
fn reserve_fds(any: &OwnedFd, n: usize) {
    let Ok(open) = std::fs::read_dir("/proc/self/fd").map(|d| d.count()) else {
        return;
    };
    // At most below the limit of open files: `n` may count free numbers.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
        .min(i32::MAX as u64) as usize;
    let want = (open + n + 16).min(limit.saturating_sub(1));
    if n < FDS_PER_READER || want <= open {
        return;
    }
    // The lowest free fd at or above `want`: the table grows to hold it,
    // and keeps its size once it is closed.
    if let Err(e) = rustix::io::fcntl_dupfd_cloexec(any, want as i32) {
        log::debug!("growing the fd table to {want}: {e}");
    }
}

/// Closes `copies`, on two threads when there are thousands: closing a
/// socket for the last time (its peer told, its queue freed) costs some
/// microseconds.
pub fn close_all(mut copies: Vec<File>) {
    if copies.len() < FDS_PER_READER {
        return;
    }
    let half = copies.split_off(copies.len() / 2);
    std::thread::scope(|s| {
        s.spawn(move || drop(half));
        drop(copies);
    });
}

/// The inodes `/proc/locks` names, read on a thread of its own: reading
/// it takes its lock for writing, which waits for an RCU grace period
/// (10-20 ms). One read starts with the dump, before the freeze, and
/// tells which sockets need their fdinfo; another starts once the tree
/// is frozen, and checks that no other socket was locked meanwhile.
pub struct Locks {
    read: std::sync::Mutex<Option<std::thread::JoinHandle<std::io::Result<HashSet<u64>>>>>,
    got: std::sync::OnceLock<std::result::Result<HashSet<u64>, String>>,
}

impl Locks {
    pub fn start() -> Locks {
        Locks {
            read: std::sync::Mutex::new(Some(std::thread::spawn(locked_inodes))),
            got: std::sync::OnceLock::new(),
        }
    }

    /// Locks already read: the inodes of `set`.
    pub fn of(set: HashSet<u64>) -> Locks {
        let got = std::sync::OnceLock::new();
        let _ = got.set(Ok(set));
        Locks {
            read: std::sync::Mutex::new(None),
            got,
        }
    }

    /// Whether the file of inode `ino` is locked (any device: a stray
    /// match costs one more fdinfo read).
    pub fn contains(&self, pid: Pid, ino: u64) -> Result<bool> {
        let got = self.got.get_or_init(|| {
            let handle = self.read.lock().ok().and_then(|mut h| h.take());
            match handle.map(std::thread::JoinHandle::join) {
                Some(Ok(r)) => r.map_err(|e| e.to_string()),
                Some(Err(_)) => Err("its reader panicked".into()),
                None => Err("it was not read".into()),
            }
        });
        match got {
            Ok(set) => Ok(set.contains(&ino)),
            Err(e) => Err(Error::Inconsistent {
                pid,
                what: format!("reading /proc/locks: {e}"),
            }),
        }
    }
}

/// Refuses, by name, a socket read without its fdinfo (`inodes`: its
/// fd and inode) that `frozen` (read once the tree was frozen) finds
/// locked: its lock was taken after the dump began, and would be lost.
pub fn check_socket_locks(pid: Pid, inodes: &[(i32, u64)], frozen: &Locks) -> Result<()> {
    for &(fd, ino) in inodes {
        if frozen.contains(pid, ino)? {
            return Err(Error::unsupported(
                pid,
                format!("fd {fd}: socket:[{ino}] locked while the dump began; dump it again"),
            ));
        }
    }
    Ok(())
}

/// The inodes of every file `/proc/locks` lists (of any device: one more
/// fdinfo read is all a stray match costs).
fn locked_inodes() -> std::io::Result<HashSet<u64>> {
    let text = std::fs::read(Path::new("/proc/locks"))?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            // "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INO START END", or with
            // "->" after the number for a waiter.
            let dev = l
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .find(|w| w.iter().filter(|&&b| b == b':').count() == 2)?;
            let ino = dev.rsplit(|&b| b == b':').next()?;
            std::str::from_utf8(ino).ok()?.parse().ok()
        })
        .collect())
}

/// The fdinfo of a socket, with inode `ino`: its file's flags (`getfl`,
/// read with its copy by [`read_fds`]), close-on-exec as the parasite
/// read it, no position.
pub fn socket_fdinfo(getfl: u32, ino: u64, cloexec: bool) -> FdInfo {
    let mut flags = getfl;
    if cloexec {
        flags |= libc::O_CLOEXEC as u32;
    }
    FdInfo {
        pos: 0,
        flags,
        mnt_id: -1,
        ino: Some(ino),
        ..FdInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str) -> (FileInfo, File) {
        let f = File::open(path).unwrap();
        (FileInfo::of(1, f.as_fd(), Path::new(path)).unwrap(), f)
    }

    fn files() -> Files {
        Files::new(
            std::process::id() as Pid,
            Options {
                ghost_limit: DEFAULT_GHOST_LIMIT,
                shell_job: false,
                file_locks: false,
                ..Options::default()
            },
        )
    }

    #[test]
    fn a_socket_locked_once_the_dump_began_is_refused_by_name() {
        let frozen = Locks::of(HashSet::from([42]));
        assert!(check_socket_locks(7, &[(3, 41)], &frozen).is_ok());
        let e = check_socket_locks(7, &[(3, 41), (5, 42)], &frozen)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fd 5: socket:[42] locked while the dump began"),
            "{e}"
        );
        assert!(Locks::start().contains(7, u64::MAX).is_ok());
    }

    #[test]
    fn specials_share_ids_but_not_directories() {
        let mut files = files();
        let (exe, ef) = info("/proc/self/exe");
        let a = files.special(&exe, &ef).unwrap();
        let b = files.special(&exe, &ef).unwrap();
        assert_eq!((a, b), (1, 1));
        let (root, rf) = info("/");
        let c = files.special(&root, &rf).unwrap();
        let d = files.special(&root, &rf).unwrap();
        assert_eq!((c, d), (2, 3), "directories always get a fresh id");
        assert_eq!(files.entries.len(), 3);
        let e = files.entries[0].reg.as_deref().unwrap();
        assert_eq!(e.size, Some(exe.size));
        assert!(!e.build_id.is_empty());
        assert_eq!(files.entries[1].reg.as_deref().unwrap().size, None);
    }

    #[test]
    fn dup_fds_share_an_id() {
        let me = std::process::id() as Pid;
        let f = File::open("/proc/self/exe").unwrap();
        let g = f.try_clone().unwrap();
        let h = File::open("/proc/self/exe").unwrap();
        let mut files = files();
        let open = |file: &File| {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            let copy = file.try_clone().unwrap();
            let info = FileInfo::of(me, copy.as_fd(), Path::new("/x")).unwrap();
            OpenFd {
                fd,
                file: copy,
                info,
                fdinfo: FdInfo::default(),
                ahead: None,
            }
        };
        let (a, b, c) = (open(&f), open(&g), open(&h));
        assert_eq!(files.fd(&a).unwrap(), 1);
        assert_eq!(files.fd(&b).unwrap(), 1);
        assert_eq!(files.fd(&c).unwrap(), 2);
        assert_eq!(files.entries.len(), 2);
    }

    #[test]
    fn a_live_file_named_deleted_keeps_its_name() {
        let dir = std::env::temp_dir().join(format!("rcriu-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let live = dir.join("x (deleted)");
        std::fs::write(&live, b"1").unwrap();
        let f = File::open(&live).unwrap();
        let i = FileInfo::of(1, f.as_fd(), &live).unwrap();
        assert_eq!(i.path, live);
        let gone = dir.join("y");
        std::fs::write(&gone, b"2").unwrap();
        let g = File::open(&gone).unwrap();
        std::fs::remove_file(&gone).unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            g.as_raw_fd()
        }))
        .unwrap();
        let i = FileInfo::of(1, g.as_fd(), &link).unwrap();
        assert_eq!((i.path, i.nlink), (gone, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
