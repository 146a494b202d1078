//! Files: the process's fds, and the files its mappings and cwd/root
//! refer to, opened as they were and checked as CRIU checks them.
//!
//! Every open file is opened here, before the fork, once per file id
//! (its flags, position, owner's signal), and each fd holding it gets a
//! copy (dup): fds that shared an open file description share one again,
//! and the restorer only moves fds to their numbers. Regular files,
//! directories, devices and `O_PATH` files are opened by name, ghosts
//! made again first ([`ghost`](crate::ghost)); pipes and FIFOs are
//! [`pipes`](crate::pipes); terminals [`tty`](crate::tty); sockets
//! [`sockets`](crate::sockets), which, once every fd is open, get what
//! was queued in them (with the files in flight, opened by id here).
//! Owners (F_SETOWN) are given once the process, and so its pid, exists.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcriu_images::{ImageFile, pb};

use crate::load::Images;
use crate::{
    Error, Result, anon, file_lock, files_sys, ghost, link_remap, nsfile, pidfd, pipes, proc_remap,
    sk_inet, sk_netlink, sk_unix, sockets, tcp_stream, tty,
};

/// How opened and mapped files are checked against the dump (criu's
/// `--file-validation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileValidation {
    /// The size, and the ELF build-id when the dump has one (criu's
    /// default).
    #[default]
    BuildId,
    /// The size only.
    FileSize,
}

impl std::str::FromStr for FileValidation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "buildid" => Ok(FileValidation::BuildId),
            "filesize" => Ok(FileValidation::FileSize),
            other => Err(format!(
                "unknown file validation method {other:?} (buildid or filesize)"
            )),
        }
    }
}

/// Open flags that only matter at creation.
const CREATION_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;

/// `__O_TMPFILE`: with O_DIRECTORY, the O_TMPFILE of open(2). fdinfo
/// shows both on a file made with it.
const TMPFILE_BIT: i32 = libc::O_TMPFILE & !libc::O_DIRECTORY;

/// The flags to open an existing file with, from the ones it had: without
/// those of creation, and without O_TMPFILE's (the file exists now, a
/// ghost made again, and is no directory).
fn reopen_flags(how: i32) -> i32 {
    let tmpfile = if how & TMPFILE_BIT != 0 {
        libc::O_TMPFILE
    } else {
        0
    };
    how & !libc::O_ACCMODE & !CREATION_FLAGS & !tmpfile
}

/// The root the images' paths are looked up from while a restore plans:
/// rcriu's (`None`), or a container's, seen through its namespace
/// holder ([`crate::namespaces`]).
static TASK_ROOT: std::sync::RwLock<Option<PathBuf>> = std::sync::RwLock::new(None);

/// The images' paths are looked up from `root` until this is dropped.
#[derive(Debug)]
pub struct TaskRoot;

impl TaskRoot {
    pub fn set(root: PathBuf) -> TaskRoot {
        *TASK_ROOT.write().unwrap_or_else(|p| p.into_inner()) = Some(root);
        TaskRoot
    }
}

impl Drop for TaskRoot {
    fn drop(&mut self) {
        *TASK_ROOT.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The container's root the images' paths are looked up from, if any
/// ([`TaskRoot`]).
pub(crate) fn task_root() -> Option<PathBuf> {
    TASK_ROOT.read().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn path_of(reg: &pb::RegFileEntry) -> PathBuf {
    let path = Path::new(OsStr::from_bytes(&reg.name));
    match &*TASK_ROOT.read().unwrap_or_else(|p| p.into_inner()) {
        Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_owned(),
    }
}

/// Opens a regular-file entry by `path` (its name, or its ghost's).
fn open_reg_at(
    reg: &pb::RegFileEntry,
    path: &Path,
    how: i32,
    validation: FileValidation,
) -> Result<File> {
    // Without blocking: a FIFO put where a file was would hang the open.
    let file = std::fs::OpenOptions::new()
        .read(how & libc::O_ACCMODE != libc::O_WRONLY || how & libc::O_PATH != 0)
        .write(how & libc::O_ACCMODE != libc::O_RDONLY && how & libc::O_PATH == 0)
        .custom_flags(reopen_flags(how) | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(Error::file("opening", path))?;
    if how & libc::O_PATH == 0 {
        let meta = file.metadata().map_err(Error::file("checking", path))?;
        if std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
            return Err(Error::Validation {
                path: path.to_owned(),
                what: "is a FIFO, where the dump had a file".into(),
            });
        }
        if how & libc::O_NONBLOCK == 0 {
            rustix::fs::fcntl_getfl(&file)
                .and_then(|fl| rustix::fs::fcntl_setfl(&file, fl - rustix::fs::OFlags::NONBLOCK))
                .map_err(|e| Error::file("opening", path)(e.into()))?;
        }
        validate(&file, path, reg, validation)?;
    }
    Ok(file)
}
fn validate(file: &File, path: &Path, reg: &pb::RegFileEntry, how: FileValidation) -> Result<()> {
    let meta = file.metadata().map_err(Error::file("checking", path))?;
    if !meta.file_type().is_file() {
        return Ok(());
    }
    if let Some(size) = reg.size
        && size != meta.size()
    {
        return Err(Error::Validation {
            path: path.to_owned(),
            what: format!("has {} bytes, the dump had {size}", meta.size()),
        });
    }
    if how == FileValidation::BuildId && !reg.build_id.is_empty() {
        let have = rcriu_images::build_id::build_id(file, meta.size())
            .map_err(Error::file("reading the build-id of", path))?;
        match have {
            Some(have) if have == reg.build_id => {}
            Some(_) => {
                return Err(Error::Validation {
                    path: path.to_owned(),
                    what: "its ELF build-id differs from the dump's".into(),
                });
            }
            None => {
                return Err(Error::Validation {
                    path: path.to_owned(),
                    what: "has no ELF build-id, the dump had one".into(),
                });
            }
        }
    }
    Ok(())
}

/// An open file as rcriu holds it for the restorers: one fd, shared by
/// every process (and fd) of the tree that holds the file, which the
/// restorers, forked with rcriu's fds, take by number.
pub type Source = std::rc::Rc<OwnedFd>;

/// `(target fd, cloexec, the open file)`.
pub type FdSource = (i32, bool, Source);

/// The fds to place in the process.
#[derive(Debug, Default)]
pub struct FdPlan {
    /// `(target fd, cloexec, the open file)`, by target. Fds of one open
    /// file share its source.
    pub fds: Vec<FdSource>,
    /// `(target fd, owner kind, owner pid)`: owners (F_SETOWN) to give the
    /// open files once the process exists.
    pub owners: Vec<(i32, i32, i32)>,
    /// The controlling terminal to give the process.
    pub ctty: Option<Ctty>,
    /// Files the restorer opens itself once the process exists, by
    /// target.
    pub late: Vec<Late>,
    /// The file locks the process takes itself.
    pub locks: Vec<rcriu_compel::abi::restorer::TakeLock>,
    /// `(target fd, cloexec, file id)`: the io_uring instances made in
    /// the process at the end ([`io_uring`](crate::io_uring)).
    pub rings: Vec<(i32, bool, u32)>,
}

/// A file of the process's own /proc directory (`/proc/PID/...`), or a
/// pidfd of a process of the tree, which exist only once the processes
/// do: the restorer opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    pub to: i32,
    /// `open`'s flags, O_CLOEXEC included for a close-on-exec fd (for a
    /// pidfd: `pidfd_open`'s and O_CLOEXEC).
    pub flags: i32,
    /// Its position; for a pidfd, the pid it names.
    pub pos: u64,
    /// Empty for a pidfd.
    pub path: Vec<u8>,
}

/// Whether `path` lies in the /proc directory of one of `tids` (the
/// process's own threads).
fn own_proc_path(path: &[u8], tids: &[u32]) -> bool {
    let Some(rest) = path.strip_prefix(b"/proc/") else {
        return false;
    };
    let n = rest.split(|&b| b == b'/').next().unwrap_or_default();
    std::str::from_utf8(n)
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| tids.contains(&n))
}

/// A session leader's controlling terminal.
#[derive(Debug)]
pub enum Ctty {
    /// The terminal open as this fd of the process.
    Fd(i32),
    /// A terminal no fd of the process holds: opened for the restore
    /// alone (the process had closed it and kept it as its terminal).
    Extra(OwnedFd),
}

impl<'a> Opener<'a> {
    /// What opens the files of a restore (of every process of a tree):
    /// `img` is any process's images (the tree's files are the same in
    /// each), `tree` every process's, to know which open files more than
    /// one fd (or a socket's queue) holds; the locks of the open files are
    /// taken when `file_locks`.
    pub fn new(
        img: &'a Images,
        tree: &[Images],
        validation: FileValidation,
        shell_job: bool,
        file_locks: bool,
        socket_opts: sockets::Options,
    ) -> Result<Self> {
        let mut op = Opener {
            img,
            validation,
            shell_job,
            opened: BTreeMap::new(),
            ghosts: ghost::Ghosts::load(&img.dir)?,
            links: link_remap::Links::load(&img.dir, &img.files)?,
            pipes: pipes::Pipes::load(&img.dir, img.files.values().map(|f| &**f))?,
            fifos: pipes::Fifos::load(&img.dir)?,
            ttys: tty::Ttys::load(&img.dir)?,
            tmpfiles: BTreeMap::new(),
            tmpfile_ghosts: Vec::new(),
            owned: Vec::new(),
            anon: anon::Anon::default(),
            locks: file_lock::Locks::load(
                &img.dir,
                file_locks,
                &tree.iter().map(|p| p.task.pid).collect::<Vec<_>>(),
            )?,
            tree: Vec::new(),
            ns: namespaces_of(img, tree),
            dead: proc_remap::Helpers::make(&proc_remap::load(
                &img.dir,
                &tree.iter().map(|p| p.task.pid).collect::<Vec<_>>(),
                own_pid_ns(img),
            )?)?,
            sockets: sockets::Sockets::new(socket_opts),
            shared: std::collections::HashSet::new(),
            reg: std::collections::HashMap::new(),
            dirs: std::collections::HashMap::new(),
            rings: std::collections::HashSet::new(),
            late_files: std::collections::HashSet::new(),
            proc_no: 0,
            pid: 0,
        };
        op.tmpfile_ghosts = img
            .files
            .values()
            .filter(|f| {
                f.reg
                    .as_ref()
                    .is_some_and(|r| r.flags as i32 & TMPFILE_BIT != 0)
            })
            .filter_map(|f| op.ghosts.ghost_of(f.id))
            .collect();
        // An open file held by more than one fd of the tree, or by one
        // and a socket's queue, is kept open here for the others; one
        // held once is only its fd's (ten thousand sockets are not twenty
        // thousand files).
        let mut uses: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for p in tree {
            for e in &p.task.fdinfo {
                *uses.entry(e.id).or_default() += 1;
            }
        }
        for id in op.sockets.in_flight(img)? {
            *uses.entry(id).or_default() += 1;
        }
        op.shared = uses
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(id, _)| id)
            .collect();
        Ok(op)
    }

    /// The fds of the process of `img`: an open file shared with a process
    /// planned before is the same open file description.
    pub fn plan(&mut self, img: &Images) -> Result<FdPlan> {
        let files_id = img.task.ids.files_id;
        let from = ImageFile::Fdinfo(files_id.into());
        let mut plan = FdPlan::default();
        self.pid = img.task.pid as i32;
        let tids: Vec<u32> = img.task.cores.iter().map(|(t, _)| *t).collect();
        let mut late_ids = Vec::new();
        let mut dev_tty = None;
        for e in &img.task.fdinfo {
            let fd = i32::try_from(e.fd)
                .map_err(|_| Error::invalid(from.name(), format!("bad fd {}", e.fd)))?;
            let entry = img.file(e.id, &from)?;
            if entry.memfd.is_some() {
                continue; // memfd.rs opens them
            }
            if entry.rcriu_io_uring.is_some() {
                if !self.rings.insert(e.id) {
                    return Err(Error::unsupported(format!(
                        "restoring fd {fd} of process {}: an io_uring instance held by more than one fd",
                        img.task.pid
                    )));
                }
                let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
                plan.rings.push((fd, cloexec, e.id));
                continue;
            }
            if let Some(p) = pidfd::of_live(entry, img.task.pid, &self.tree) {
                if late_ids.contains(&e.id) {
                    return Err(Error::unsupported(format!(
                        "restoring fd {fd} of process {}: a pidfd of a live process open as several fds",
                        img.task.pid
                    )));
                }
                late_ids.push(e.id);
                let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
                plan.late.push(Late {
                    to: fd,
                    flags: pidfd::open_flags(p) | if cloexec { libc::O_CLOEXEC } else { 0 },
                    pos: p.nspid as u64,
                    path: Vec::new(),
                });
                continue;
            }
            // A namespace of a restored process's (made anew): opened by
            // the process once every process exists, once for each fd
            // that holds it (a namespace file keeps no state of its own
            // but its flags).
            if let Some(n) = entry.nsf.as_deref()
                && entry.r#type == pb::FdTypes::Ns as i32
                && let src @ nsfile::Source::Of { .. } = self.ns.locate(img.task.pid, fd, n)?
            {
                let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
                plan.late.push(Late {
                    to: fd,
                    flags: n.flags as i32 | if cloexec { libc::O_CLOEXEC } else { 0 },
                    pos: 0,
                    path: src.path(),
                });
                continue;
            }
            // A file of its own /proc directory, or of another process
            // of the tree's: opened once every process exists.
            if let Some(reg) = entry
                .reg
                .as_ref()
                .filter(|r| own_proc_path(&r.name, &tids) || own_proc_path(&r.name, &self.tree))
            {
                if !self.late_files.insert(e.id) && !late_ids.contains(&e.id) {
                    return Err(Error::unsupported(format!(
                        "restoring fd {fd} of process {}: {}, open in several processes",
                        img.task.pid,
                        path_of(reg).display()
                    )));
                }
                if late_ids.contains(&e.id) {
                    return Err(Error::unsupported(format!(
                        "restoring fd {fd} of process {}: {} open as several fds",
                        img.task.pid,
                        path_of(reg).display()
                    )));
                }
                late_ids.push(e.id);
                let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
                plan.late.push(Late {
                    to: fd,
                    flags: reopen_flags(reg.flags as i32)
                        | (reg.flags as i32 & libc::O_ACCMODE)
                        | if cloexec { libc::O_CLOEXEC } else { 0 },
                    pos: reg.pos,
                    path: reg.name.clone(),
                });
                continue;
            }
            if let Some(t) = entry.tty.as_ref().filter(|t| self.ttys.is_ctty(t)) {
                let refuse = |why: &str| {
                    Error::unsupported(format!(
                        "restoring fd {fd} of process {}: /dev/tty {why}",
                        img.task.pid
                    ))
                };
                if !self.late_files.insert(e.id) {
                    return Err(refuse("open as several fds"));
                }
                if t.fown.pid != 0 {
                    return Err(refuse("with an owner (F_SETOWN)"));
                }
                let rid = t.regf_id.ok_or_else(|| {
                    Error::invalid(
                        ImageFile::Files.name(),
                        format!("file {} has no path entry (regf_id)", e.id),
                    )
                })?;
                let reg = img
                    .file(rid, &ImageFile::Files)?
                    .reg
                    .as_ref()
                    .ok_or_else(|| {
                        Error::invalid(
                            ImageFile::Files.name(),
                            format!(
                                "file {}'s path entry {rid} is not a regular-file entry",
                                e.id
                            ),
                        )
                    })?;
                // Opened by the process itself once its controlling
                // terminal is back: /dev/tty reaches it (never made
                // controlling by this open, as CRIU opens it).
                let flags = t.flags as i32;
                let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
                plan.late.push(Late {
                    to: fd,
                    flags: reopen_flags(flags)
                        | (flags & libc::O_ACCMODE)
                        | libc::O_NOCTTY
                        | if cloexec { libc::O_CLOEXEC } else { 0 },
                    pos: 0,
                    path: reg.name.clone(),
                });
                dev_tty = Some(fd);
                continue;
            }
            let file = match self.opened.get(&e.id) {
                Some(Opened::Kept(f)) => Source::clone(f),
                Some(Opened::Placed { .. }) => {
                    return Err(Error::invalid(
                        from.name(),
                        format!("file {} is held twice, counted once", e.id),
                    ));
                }
                None => {
                    let (f, fown, session) = self.open(e.id, &from, fd, img.task.pid)?;
                    if let Some(sid) = session
                        && sid == img.task.pstree.sid
                        && img.task.pstree.sid == img.task.pid
                        && plan.ctty.is_none()
                    {
                        plan.ctty = Some(Ctty::Fd(fd));
                    }
                    if let Some(o) = fown
                        && o.pid != 0
                        && !self.owned.contains(&e.id)
                    {
                        self.owned.push(e.id);
                        plan.owners.push((fd, owner_kind(o.pid_type), o.pid as i32));
                    }
                    let f = Source::new(f);
                    let kept = if self.shared.contains(&e.id) {
                        Opened::Kept(Source::clone(&f))
                    } else {
                        Opened::Placed {
                            proc: self.proc_no,
                            to: fd,
                        }
                    };
                    self.opened.insert(e.id, kept);
                    f
                }
            };
            let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
            plan.fds.push((fd, cloexec, file));
        }
        self.anon.finish_process(img.task.pid, &plan.fds)?;
        plan.locks = self.locks.take(img.task.pid, &plan.fds)?;
        let pst = &img.task.pstree;
        if plan.ctty.is_none() && pst.sid == pst.pid {
            plan.ctty = self.ttys.session_slave(pst.sid)?.map(Ctty::Extra);
        }
        if let Some(fd) = dev_tty
            && plan.ctty.is_none()
        {
            return Err(Error::unsupported(format!(
                "restoring fd {fd} of process {}: /dev/tty, while the images give the process no controlling terminal (it must lead its session, its terminal a pty of the images)",
                img.task.pid
            )));
        }
        plan.fds.sort_by_key(|(fd, _, _)| *fd);
        plan.late.sort_by_key(|l| l.to);
        if let Some(w) = plan.fds.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid(from.name(), format!("fd {} twice", w[0].0)));
        }
        self.proc_no += 1;
        Ok(plan)
    }

    /// Once every process's fds are planned (`plans`, in the order they
    /// were, their fds sorted): the files in flight in unix sockets'
    /// queues, then the sockets' queues, connections and options; the
    /// TCP connections in repair mode to release once the tree is built.
    pub fn finish_sockets(&mut self, plans: &[&FdPlan]) -> Result<tcp_stream::Repaired> {
        let queues_from = ImageFile::SkQueues;
        let img = self.img;
        for id in self.sockets.in_flight(img)? {
            if !self.opened.contains_key(&id) {
                let (f, _, _) = self.open(id, &queues_from, -1, img.task.pid)?;
                self.opened.insert(id, Opened::Kept(Source::new(f)));
            }
        }
        // An epoll instance in flight: its targets are the fds of the
        // process (of the one process: its dump refuses it in a tree).
        if self.anon.has_pending_targets() {
            match plans {
                [only] => self.anon.finish_process(img.task.pid, &only.fds)?,
                _ => {
                    return Err(Error::unsupported(format!(
                        "restoring an epoll instance in flight in a unix socket, with targets, among {} processes (rcriu registers them among the fds of a process alone)",
                        plans.len()
                    )));
                }
            }
        }
        let mut socks = std::mem::take(&mut self.sockets);
        let opened = &self.opened;
        socks.finish(img, &|id| match opened.get(&id) {
            Some(Opened::Kept(f)) => Ok(f.as_fd()),
            Some(Opened::Placed { proc, to }) => plans
                .get(*proc)
                .and_then(|p| {
                    p.fds
                        .binary_search_by_key(to, |(t, _, _)| *t)
                        .ok()
                        .map(|i| p.fds[i].2.as_fd())
                })
                .ok_or_else(|| {
                    Error::invalid(
                        queues_from.name(),
                        format!("file {id} (fd {to} of process {proc}) is not planned"),
                    )
                }),
            None => Err(Error::invalid(
                queues_from.name(),
                format!("a file in flight, {id}, was not opened"),
            )),
        })?;
        Ok(std::mem::take(&mut socks.tcp))
    }

    /// Once every process's fds are open: the processes made for ended
    /// ones in pidfds, the terminals' locks and the ghosts' names go.
    pub fn finish(&mut self) -> Result<()> {
        // The plans hold what they place; nothing more is looked up.
        self.opened.clear();
        self.reg.clear();
        self.anon.finish()?;
        self.ttys.finish()?;
        self.ghosts.unlink_all()?;
        self.links.unlink_all(&self.img.files, path_of)
    }

    /// The processes standing for ended ones (/proc remaps), to end once
    /// the restored processes are in place.
    pub fn take_dead(&mut self) -> proc_remap::Helpers {
        std::mem::take(&mut self.dead)
    }

    /// The path file entry `id` (named `name`) is opened by when it is
    /// not its name: its ghost's, made again, or its link's.
    fn remapped(&mut self, id: u32, name: &Path) -> Result<Option<PathBuf>> {
        if self.links.is_linked(id) {
            return self.links.path_of(&self.img.files, id, name, path_of);
        }
        self.ghosts.path_of(&self.img.dir, id, name)
    }
}

/// Refuses, without opening anything, the fds of kinds this version does
/// not restore (as [`plan`] would); `tree` holds the pids of the restored
/// processes (zombies too).
pub fn check_kinds(
    img: &Images,
    tree: &[u32],
    ns: &nsfile::Namespaces,
    seen: &mut std::collections::HashSet<u32>,
) -> Result<()> {
    let from = ImageFile::Fdinfo(img.task.ids.files_id.into());
    let ttys = tty::Ttys::load(&img.dir)?;
    ghost::Ghosts::load(&img.dir)?;
    link_remap::Links::load(&img.dir, &img.files)?;
    let locks = file_lock::read(&img.dir)?;
    file_lock::check(&locks, img.task.pid, &img.task.fdinfo)?;
    file_lock::check_owners(&locks, tree)?;
    proc_remap::load(&img.dir, tree, own_pid_ns(img))?;
    for e in &img.task.fdinfo {
        let entry = img.file(e.id, &from)?;
        let known = match pb::FdTypes::try_from(entry.r#type) {
            Ok(pb::FdTypes::Reg) => entry.reg.is_some(),
            Ok(pb::FdTypes::Pipe) => entry.pipe.is_some(),
            Ok(pb::FdTypes::Fifo) => entry.fifo.is_some(),
            Ok(pb::FdTypes::Memfd) => entry.memfd.is_some(),
            Ok(pb::FdTypes::Unixsk) => match &entry.usk {
                Some(u) => {
                    sk_unix::check(u)?;
                    true
                }
                None => false,
            },
            Ok(pb::FdTypes::Inetsk) => match &entry.isk {
                Some(i) => {
                    let all = sockets::Options {
                        tcp_established: true,
                        ..sockets::Options::default()
                    };
                    sk_inet::check(i, all)?;
                    if tcp_stream::is_connection(i)
                        && img.dir.exists(ImageFile::TcpStream(i.ino.into()))
                    {
                        tcp_stream::check(img, i)?;
                    }
                    true
                }
                None => false,
            },
            Ok(pb::FdTypes::Netlinksk) => match &entry.nlsk {
                Some(n) => {
                    sk_netlink::check(n)?;
                    true
                }
                None => false,
            },
            Ok(pb::FdTypes::Packetsk) => entry.psk.is_some(),
            Ok(pb::FdTypes::Ns) => match &entry.nsf {
                Some(n) => {
                    ns.locate(img.task.pid, e.fd as i32, n)?;
                    true
                }
                None => false,
            },
            Ok(pb::FdTypes::Tty) => match &entry.tty {
                Some(t) => {
                    ttys.check(t)?;
                    true
                }
                None => false,
            },
            _ => {
                let first = seen.insert(e.id);
                entry.memfd.is_some()
                    || anon::check(img.task.pid, e.fd, entry, &img.task.fdinfo, tree, first)?
            }
        };
        if !known {
            return Err(Error::unsupported(format!(
                "restoring fd {} of process {} ({})",
                e.fd,
                img.task.pid,
                kind_name(entry)
            )));
        }
    }
    Ok(())
}

/// Whether the process of `img` is restored in rcriu's pid namespace.
fn own_pid_ns(img: &Images) -> bool {
    img.inventory
        .root_ids
        .as_ref()
        .is_none_or(|r| r.pid_ns_id == img.task.ids.pid_ns_id)
}

/// The namespaces of the restore of `tree` (whose inventory `img`
/// holds), for its namespace files.
pub fn namespaces_of(img: &Images, tree: &[Images]) -> nsfile::Namespaces {
    nsfile::Namespaces::new(
        img.inventory.root_ids.as_ref(),
        tree.iter().map(|p| (p.task.pid, p.task.ids)),
    )
}

/// A `fown_entry`'s `pid_type` is the `F_OWNER_*` kind F_GETOWN_EX gave
/// (TID 0, PID 1, PGRP 2), as CRIU stores it.
fn owner_kind(pid_type: u32) -> i32 {
    pid_type as i32
}

/// Gives the open files their owners, once the process (and its pid)
/// exists; `fds` are rcriu's copies, by target; `on_host` maps a pid of
/// the images to rcriu's pid namespace, where the owner is given (`None`:
/// no process of the restore has it, in a pid namespace of its own,
/// refused naming files.img).
pub fn set_owners(
    owners: &[(i32, i32, i32)],
    fds: &[FdSource],
    on_host: impl Fn(i32) -> Option<i32>,
) -> Result<()> {
    for &(target, kind, image_pid) in owners {
        let Some(pid) = on_host(image_pid) else {
            return Err(Error::invalid(
                ImageFile::Files.name(),
                format!(
                    "fd {target} signals (F_SETOWN) process {image_pid}, which is not one of the dump's"
                ),
            ));
        };
        if let Some((_, _, f)) = fds.iter().find(|(t, _, _)| *t == target) {
            files_sys::set_owner(f.as_fd(), kind, pid).map_err(Error::io(format!(
                "giving fd {target} its owner {pid} (F_SETOWN_EX)"
            )))?;
        }
    }
    Ok(())
}

/// Where an open file is once opened: only at the fd `to` of the
/// `proc`-th process planned, which alone holds it; or kept here too (a
/// file more than one fd holds, or one in flight in a socket's queue).
enum Opened {
    Placed { proc: usize, to: i32 },
    Kept(Source),
}

/// What opens the files of one restore.
pub struct Opener<'a> {
    img: &'a Images,
    validation: FileValidation,
    shell_job: bool,
    /// file id → its open file.
    opened: BTreeMap<u32, Opened>,
    /// Files that had no name left: made again for the fds, mappings,
    /// cwds, roots and executables of the tree, removed once all are open.
    pub ghosts: ghost::Ghosts,
    /// Files opened through a link made at the dump, removed once all
    /// are open.
    links: link_remap::Links,
    pipes: pipes::Pipes,
    fifos: pipes::Fifos,
    ttys: tty::Ttys,
    /// The ghosts that were unnamed temporary files (O_TMPFILE): some
    /// file entry of theirs has O_TMPFILE's flags.
    tmpfile_ghosts: Vec<u32>,
    /// ghost id → the unnamed temporary file made again, and whether its
    /// own description went to an fd.
    tmpfiles: BTreeMap<u32, (std::fs::File, bool)>,
    sockets: sockets::Sockets,
    /// The file ids whose owner (F_SETOWN) is planned.
    owned: Vec<u32>,
    /// eventfds, epoll instances, signalfds, timerfds, inotify, fanotify,
    /// pidfds.
    anon: anon::Anon,
    /// Locks and leases to take.
    locks: file_lock::Locks,
    /// The pids of the restored processes (zombies too): their pidfds are
    /// opened by the restorers.
    pub tree: Vec<u32>,
    /// The namespaces namespace files are found again in.
    ns: nsfile::Namespaces,
    /// Processes standing for ended ones while files of their /proc
    /// directories are opened.
    dead: proc_remap::Helpers,
    /// The open files held more than once (by fds, or in flight).
    shared: std::collections::HashSet<u32>,
    /// `(file id, how)` → a file opened by name for mappings, executables,
    /// cwds and roots: once for the tree.
    reg: std::collections::HashMap<(u32, i32), Source>,
    /// Directories opened for cwds and roots, by path: once for the tree
    /// whatever their file ids (a dump gives each process's cwd its own).
    dirs: std::collections::HashMap<PathBuf, Source>,
    /// The io_uring instances planned (each held by one fd of the tree).
    rings: std::collections::HashSet<u32>,
    /// The files the processes open themselves (/dev/tty, files of the
    /// tree's /proc directories), planned.
    late_files: std::collections::HashSet<u32>,
    /// The number of the process being planned, and its pid.
    proc_no: usize,
    pid: i32,
}

impl Opener<'_> {
    /// The terminals' helpers: who takes a container's new terminal
    /// master, and the ptys the mounts made.
    pub fn set_ttys(&mut self, orphan: Option<tty::OrphanPts>, premade: Vec<(u32, OwnedFd)>) {
        self.ttys.set_orphan(orphan);
        self.ttys.premade(premade);
    }

    /// The caller's fds that stand for pipes of the images
    /// (`--inherit-fd fd[N]:pipe:[INODE]`).
    pub fn inherit_pipes(&mut self, keys: &[(i32, String)]) -> Result<()> {
        self.pipes.inherit(keys)
    }

    /// Opens file `id` (first held as `fd` by process `pid`): the open
    /// file, its owner, and the session whose terminal it is.
    fn open(
        &mut self,
        id: u32,
        from: &ImageFile,
        fd: i32,
        pid: u32,
    ) -> Result<(OwnedFd, Option<pb::FownEntry>, Option<u32>)> {
        let img = self.img;
        let entry = img.file(id, from)?;
        let reg_of = |regf_id: Option<u32>| -> Result<&pb::RegFileEntry> {
            let rid = regf_id.ok_or_else(|| {
                Error::invalid(
                    ImageFile::Files.name(),
                    format!("file {id} has no path entry (regf_id)"),
                )
            })?;
            img.file(rid, &ImageFile::Files)?
                .reg
                .as_deref()
                .ok_or_else(|| {
                    Error::invalid(
                        ImageFile::Files.name(),
                        format!("file {id}'s path entry {rid} is not a regular-file entry"),
                    )
                })
        };
        let unsupported = || {
            Error::unsupported(format!(
                "restoring fd {fd} of process {} ({})",
                img.task.pid,
                kind_name(entry)
            ))
        };
        let (file, fown, session): (OwnedFd, pb::FownEntry, Option<u32>) =
            match pb::FdTypes::try_from(entry.r#type) {
                Ok(pb::FdTypes::Reg) => {
                    let reg = entry.reg.as_deref().ok_or_else(unsupported)?;
                    (self.open_reg(id, reg)?, reg.fown, None)
                }
                Ok(pb::FdTypes::Pipe) => {
                    let p = entry.pipe.as_deref().ok_or_else(unsupported)?;
                    (self.pipes.open(p)?, p.fown, None)
                }
                Ok(pb::FdTypes::Fifo) => {
                    let f = entry.fifo.as_deref().ok_or_else(unsupported)?;
                    let reg = reg_of(f.regf_id)?;
                    // A FIFO that had no name left is a ghost.
                    let path = match f.regf_id {
                        Some(rid) => self.remapped(rid, &path_of(reg))?,
                        None => None,
                    }
                    .unwrap_or_else(|| path_of(reg));
                    let file = self.fifos.open(f, reg, &path)?;
                    (file, reg.fown, None)
                }
                Ok(pb::FdTypes::Tty) => {
                    let t = entry.tty.as_ref().ok_or_else(unsupported)?;
                    let path = match t.regf_id {
                        Some(_) => Some(path_of(reg_of(t.regf_id)?)),
                        None => None,
                    };
                    let o = self.ttys.open(t, path.as_deref(), self.shell_job)?;
                    (o.fd, t.fown, o.session)
                }
                Ok(pb::FdTypes::Unixsk) => {
                    let u = entry.usk.as_deref().ok_or_else(unsupported)?;
                    (self.sockets.unix(img, u)?, u.fown, None)
                }
                Ok(pb::FdTypes::Inetsk) => {
                    let i = entry.isk.as_deref().ok_or_else(unsupported)?;
                    (self.sockets.inet(img, i, self.pid, fd)?, i.fown, None)
                }
                Ok(pb::FdTypes::Netlinksk) => {
                    let n = entry.nlsk.as_deref().ok_or_else(unsupported)?;
                    (self.sockets.netlink(n)?, n.fown, None)
                }
                Ok(pb::FdTypes::Packetsk) => {
                    let p = entry.psk.as_deref().ok_or_else(unsupported)?;
                    (self.sockets.packet(p)?, p.fown, None)
                }
                Ok(pb::FdTypes::Ns) => {
                    let n = entry.nsf.as_deref().ok_or_else(unsupported)?;
                    match self.ns.locate(pid, fd, n)? {
                        nsfile::Source::Own(name) => (
                            nsfile::open_own(name, n.flags)?,
                            pb::FownEntry::default(),
                            None,
                        ),
                        // Opened by its restorer (plan); not in flight.
                        nsfile::Source::Of { .. } => return Err(unsupported()),
                    }
                }
                // Its watches on files with no link left watch their
                // ghosts, made here.
                Ok(pb::FdTypes::Inotify) => {
                    let e = entry.ify.as_deref().ok_or_else(unsupported)?;
                    let mut on_ghosts = BTreeMap::new();
                    for w in &e.wd {
                        let name_of = |fid: u32| {
                            img.files
                                .get(&fid)
                                .and_then(|f| f.reg.as_deref())
                                .map(path_of)
                        };
                        if let Some(p) = self
                            .ghosts
                            .path_by_inode(&img.dir, w.s_dev, w.i_ino, name_of)?
                        {
                            on_ghosts.insert(w.wd, p);
                        }
                    }
                    (crate::inotify::open(e, &on_ghosts)?, e.fown, None)
                }
                _ => match self.anon.open(pid, entry, fd)? {
                    Some((file, fown)) => (file, fown, None),
                    None => return Err(unsupported()),
                },
            };
        if fown.signum != 0 {
            files_sys::set_owner_signal(file.as_fd(), fown.signum as i32).map_err(Error::io(
                format!("setting the signal of fd {fd} (F_SETSIG)"),
            ))?;
        }
        Ok((file, Some(fown), session))
    }

    /// An open file description of ghost `gid`, an unnamed temporary file
    /// (O_TMPFILE): made again as one, linkable as it was. The
    /// description O_TMPFILE gives goes to the first file that was opened
    /// so (its flags say O_TMPFILE), the others open it again.
    fn open_tmpfile(&mut self, gid: u32, name: &Path, flags: i32) -> Result<std::fs::File> {
        let own = flags & TMPFILE_BIT != 0;
        if !self.tmpfiles.contains_key(&gid) {
            let how = if own { flags } else { libc::O_RDWR };
            let f = ghost::make_tmpfile(&self.img.dir, gid, name, how)?;
            self.tmpfiles.insert(gid, (f, false));
        }
        let (made, given) = self
            .tmpfiles
            .get_mut(&gid)
            .expect("inserted above when missing");
        if own && !*given {
            *given = true;
            return made.try_clone().map_err(Error::file("copying", name));
        }
        let path = format!("/proc/self/fd/{}", made.as_raw_fd());
        std::fs::OpenOptions::new()
            .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
            .custom_flags(reopen_flags(flags) | libc::O_CLOEXEC)
            .open(&path)
            .map_err(Error::file("opening again", name))
    }

    /// The file of entry `id` that a memory area maps or that is an
    /// executable, opened with `how` and checked: a ghost is made again
    /// first (once for every process that maps it, which then share its
    /// pages). Opened once for the tree.
    pub fn open_mapped(&mut self, id: u32, reg: &pb::RegFileEntry, how: i32) -> Result<Source> {
        if let Some(f) = self.reg.get(&(id, how)) {
            return Ok(Source::clone(f));
        }
        let name = path_of(reg);
        let remapped = self.remapped(id, &name)?;
        let f = open_reg_at(
            reg,
            remapped.as_deref().unwrap_or(&name),
            how,
            self.validation,
        )?;
        let f = Source::new(f.into());
        self.reg.insert((id, how), Source::clone(&f));
        Ok(f)
    }

    /// The directory of entry `id` (a cwd or root), its path and the
    /// directory opened (a removed one made again as a ghost); opened once
    /// for the tree.
    fn open_dir(&mut self, id: u32, from: &ImageFile) -> Result<(PathBuf, Source)> {
        let entry = self.img.file(id, from)?;
        let reg = entry.reg.as_deref().ok_or_else(|| {
            Error::invalid(
                from.name(),
                format!("file id {id} is not a directory entry"),
            )
        })?;
        let path = path_of(reg);
        let path = self.remapped(id, &path)?.unwrap_or(path);
        if let Some(f) = self
            .reg
            .get(&(id, libc::O_DIRECTORY))
            .or_else(|| self.dirs.get(&path))
        {
            return Ok((path, Source::clone(f)));
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(Error::file("opening the directory", &path))?;
        let f = Source::new(f.into());
        self.reg.insert((id, libc::O_DIRECTORY), Source::clone(&f));
        self.dirs.insert(path.clone(), Source::clone(&f));
        Ok((path, f))
    }

    /// A regular file (or directory, device, O_PATH file, ghost), at its
    /// position.
    fn open_reg(&mut self, id: u32, reg: &pb::RegFileEntry) -> Result<OwnedFd> {
        let name = path_of(reg);
        let flags = reg.flags as i32;
        if let Some(gid) = self.ghosts.ghost_of(id)
            && self.tmpfile_ghosts.contains(&gid)
        {
            let file = self.open_tmpfile(gid, &name, flags)?;
            use std::io::Seek;
            let mut f = &file;
            f.seek(std::io::SeekFrom::Start(reg.pos))
                .map_err(Error::file("positioning", &name))?;
            return Ok(file.into());
        }
        let remapped = self.remapped(id, &name)?;
        let path = remapped.as_deref().unwrap_or(&name);
        let file = open_reg_at(reg, path, reg.flags as i32, self.validation)?;
        if reg.flags as i32 & libc::O_PATH == 0 {
            let meta = file.metadata().map_err(Error::file("checking", path))?;
            if meta.file_type().is_file() || reg.pos != 0 {
                use std::io::Seek;
                let mut f = &file;
                f.seek(std::io::SeekFrom::Start(reg.pos))
                    .map_err(Error::file("positioning", path))?;
            }
        }
        Ok(file.into())
    }
}

fn kind_name(e: &pb::FileEntry) -> String {
    let known = [
        (e.pipe.is_some(), "a pipe"),
        (e.fifo.is_some(), "a fifo"),
        (e.usk.is_some(), "a unix socket"),
        (e.isk.is_some(), "an inet socket"),
        (e.psk.is_some(), "a packet socket"),
        (e.nlsk.is_some(), "a netlink socket"),
        (e.efd.is_some(), "an eventfd"),
        (e.epfd.is_some(), "an eventpoll"),
        (e.sgfd.is_some(), "a signalfd"),
        (e.tfd.is_some(), "a timerfd"),
        (e.ify.is_some(), "an inotify"),
        (e.ffy.is_some(), "a fanotify"),
        (e.tty.is_some(), "a tty"),
        (e.memfd.is_some(), "a memfd"),
        (e.tunf.is_some(), "a tun file"),
        (e.nsf.is_some(), "a namespace file"),
        (e.ext.is_some(), "an external file"),
        (e.bpf.is_some(), "a bpf map"),
        (e.pidfd.is_some(), "a pidfd"),
    ];
    known
        .iter()
        .find(|(present, _)| *present)
        .map_or_else(|| format!("file type {}", e.r#type), |(_, n)| n.to_string())
}

/// cwd, root and umask.
#[derive(Debug)]
pub struct FsPlan {
    pub cwd: Source,
    /// `None`: the process had rcriu's root.
    pub root: Option<Source>,
    pub umask: u32,
}

/// Opens the process's cwd and root directories (a removed one made
/// again as a ghost).
pub fn plan_fs(img: &Images, opener: &mut Opener<'_>) -> Result<FsPlan> {
    let from = ImageFile::Fs(img.task.pid.into());
    let fs = &img.task.fs;
    let (_, cwd) = opener.open_dir(fs.cwd_id, &from)?;
    let (root_path, root) = opener.open_dir(fs.root_id, &from)?;
    // The same root as ours needs no chroot.
    let same_root = std::fs::metadata("/")
        .ok()
        .zip(std::fs::metadata(&root_path).ok())
        .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
    Ok(FsPlan {
        cwd,
        root: if same_root { None } else { Some(root) },
        umask: fs.umask.unwrap_or(0o022),
    })
}

/// The fd numbers below a floor, taken (copies of one fd of /dev/null)
/// so that every file opened meanwhile lies at or above it; given back
/// when dropped.
pub struct Fence {
    _taken: Vec<OwnedFd>,
}

impl Fence {
    pub fn below(floor: i32) -> Result<Fence> {
        let null = std::fs::File::open("/dev/null")
            .map_err(Error::host("opening /dev/null to fence fds off"))?;
        let mut taken = Vec::new();
        loop {
            let fd = rustix::io::fcntl_dupfd_cloexec(&null, 0)
                .map_err(|e| Error::host("fencing fds off")(e.into()))?;
            if fd.as_raw_fd() >= floor {
                break;
            }
            taken.push(fd);
        }
        if null.as_raw_fd() < floor {
            taken.push(null.into());
        }
        Ok(Fence { _taken: taken })
    }
}

/// `src` at a number at or above `min`: itself when it is, else moved
/// there (a copy there, when other plans hold it too).
pub fn lift(src: Source, min: i32) -> Result<Source> {
    if src.as_raw_fd() >= min {
        return Ok(src);
    }
    match Source::try_unwrap(src) {
        Ok(fd) => renumber(fd, min).map(Source::new),
        Err(shared) => crate::sys::dup_above(shared.as_fd(), min)
            .map(Source::new)
            .map_err(Error::host("moving an fd out of the way")),
    }
}

/// criu's `--inherit-fd fd[N]:KEY`, as far as rcriu takes it: a pipe of
/// the images (`pipe:[INODE]`, the stdio runc and conmon give) becomes the
/// caller's fd (see [`pipes::Pipes::inherit`]), an external network
/// namespace's key is joined by the namespace holder, and a key no file
/// of the images is leaves nothing to inherit; a regular file of the
/// images named as a key is not replaced yet, and is refused by name.
pub fn check_inherited(
    files: &BTreeMap<u32, Box<pb::FileEntry>>,
    keys: &[(i32, String)],
) -> Result<()> {
    for (fd, key) in keys {
        if files
            .values()
            .any(|f| f.reg.as_deref().is_some_and(|r| r.name == key.as_bytes()))
        {
            return Err(Error::unsupported(format!(
                "inheriting fd {fd} for {key}, a regular file the images hold (--inherit-fd)"
            )));
        }
        log::info!("inherit fd {fd} for {key}");
    }
    Ok(())
}

/// Moves `fd` to a number at or above `min`, keeping it open as an
/// `OwnedFd` (the old number is closed).
pub fn renumber(fd: OwnedFd, min: i32) -> Result<OwnedFd> {
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    crate::sys::dup_above(fd.as_fd(), min).map_err(Error::host("moving an fd out of the way"))
}
