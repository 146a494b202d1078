//! [`Task`]: a task's `/proc` directory, held open, and its readers.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::Pid;
use crate::cgroup::{self, CgroupEntry};
use crate::error::{Error, ParseError, Result};
use crate::fd::{self, Fd, FdInfo};
use crate::limits::{self, Limits};
use crate::maps::{self, SmapsVma, Vma};
use crate::misc::{self, AuxvEntry, IdMapping, TimensOffsets};
use crate::mountinfo::{self, MountInfo};
use crate::ns::{self, Namespaces, NsKind};
use crate::pagemap::Pagemap;
use crate::stat::{self, Stat};
use crate::status::{self, Status};
use crate::timers::{self, PosixTimer};

/// The error for `source` met reading `path` of `pid`, with ESRCH taken as
/// the task being gone.
pub(crate) fn io_error(pid: Pid, path: PathBuf, source: io::Error) -> Error {
    if source.raw_os_error() == Some(libc::ESRCH) {
        Error::Vanished { pid, path }
    } else {
        Error::Io { pid, path, source }
    }
}

/// Spare room for the first read of a file into an empty buffer.
const FIRST_READ: usize = 64 * 1024;

/// One task's `/proc` directory — `/proc/PID` for a process (thread-group
/// view) or `/proc/PID/task/TID` for one thread — opened once, so that
/// every read goes to the same task even if its pid is later reused. It
/// keeps a buffer that each whole-file read reuses.
///
/// Readers that take `&mut self` use the buffer; every file is read whole
/// in large `read`s.
#[derive(Debug)]
pub struct Task {
    /// The task the errors name: the pid, or the tid for a thread.
    pid: Pid,
    /// The pid of the thread group when this is a thread's directory.
    tgid: Option<Pid>,
    base: PathBuf,
    dir: OwnedFd,
    buf: Vec<u8>,
}

impl Task {
    /// Opens `/proc/PID`.
    pub fn open(pid: Pid) -> Result<Task> {
        Task::open_at(pid, None, PathBuf::from(format!("/proc/{pid}")))
    }

    /// Opens `/proc/PID/task/TID`.
    pub fn open_thread(pid: Pid, tid: Pid) -> Result<Task> {
        Task::open_at(
            tid,
            Some(pid),
            PathBuf::from(format!("/proc/{pid}/task/{tid}")),
        )
    }

    /// Opens `/proc/self`'s real directory (by pid, so that errors name it).
    pub fn open_self() -> Result<Task> {
        Task::open(rustix::process::getpid().as_raw_nonzero().get())
    }

    fn open_at(pid: Pid, tgid: Option<Pid>, base: PathBuf) -> Result<Task> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(&base, flags, Mode::empty()) {
            Ok(dir) => Ok(Task {
                pid,
                tgid,
                base,
                dir,
                buf: Vec::new(),
            }),
            Err(Errno::NOENT | Errno::SRCH) => Err(Error::Vanished { pid, path: base }),
            Err(e) => Err(Error::Io {
                pid,
                path: base,
                source: e.into(),
            }),
        }
    }

    /// The task's pid (its tid, for a thread's directory).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The directory, `/proc/PID` or `/proc/PID/task/TID`.
    pub fn path(&self) -> &std::path::Path {
        &self.base
    }

    /// The directory of thread `tid` of this process.
    pub fn thread(&self, tid: Pid) -> Result<Task> {
        Task::open_thread(self.tgid.unwrap_or(self.pid), tid)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// True while the task has not been reaped (a zombie counts as alive).
    pub fn is_alive(&self) -> bool {
        rustix::fs::statat(&self.dir, "stat", AtFlags::empty()).is_ok()
    }

    /// The error for `e` met on `name`: ENOENT means the task is gone when
    /// its directory no longer answers, else that the file is missing.
    fn error(&self, name: &str, e: Errno) -> Error {
        let path = self.path_of(name);
        match e {
            Errno::SRCH => Error::Vanished {
                pid: self.pid,
                path,
            },
            Errno::NOENT if !self.is_alive() => Error::Vanished {
                pid: self.pid,
                path,
            },
            e => Error::Io {
                pid: self.pid,
                path,
                source: e.into(),
            },
        }
    }

    fn parse_error(&self, name: &str, source: ParseError) -> Error {
        Error::Parse {
            pid: self.pid,
            path: self.path_of(name),
            source,
        }
    }

    fn open_file(&self, name: &str) -> Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
        rustix::fs::openat(&self.dir, name, flags, Mode::empty()).map_err(|e| self.error(name, e))
    }

    /// Reads file `name` whole into `buf` (replacing its contents).
    fn read_into(&self, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        let fd = self.open_file(name)?;
        buf.clear();
        loop {
            if buf.capacity() - buf.len() < FIRST_READ / 4 {
                buf.reserve(buf.capacity().max(FIRST_READ));
            }
            match rustix::io::read(&fd, rustix::buffer::spare_capacity(buf)) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.error(name, e)),
            }
        }
    }

    /// Reads file `name` whole into the task's buffer and returns it.
    pub fn read_file(&mut self, name: &str) -> Result<&[u8]> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.read_into(name, &mut buf);
        self.buf = buf;
        r.map(|()| &self.buf[..])
    }

    /// Reads file `name` into a new vector.
    pub fn read_file_vec(&self, name: &str) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_into(name, &mut v)?;
        Ok(v)
    }

    /// Reads `name` and parses it with `f`.
    fn parse<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&[u8]) -> crate::error::ParseResult<T>,
    ) -> Result<T> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.read_into(name, &mut buf);
        let out = r.and_then(|()| f(&buf).map_err(|e| self.parse_error(name, e)));
        self.buf = buf;
        out
    }

    /// The text of link `name` (`exe`, `cwd`, `fd/3`, ...).
    pub fn read_link(&self, name: &str) -> Result<PathBuf> {
        rustix::fs::readlinkat(&self.dir, name, Vec::new())
            .map(|c| PathBuf::from(OsString::from_vec(c.into_bytes())))
            .map_err(|e| self.error(name, e))
    }

    /// Names in subdirectory `name`, without `.` and `..`.
    fn list(&self, name: &str) -> Result<Vec<OsString>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, name, flags, Mode::empty())
            .map_err(|e| self.error(name, e))?;
        let dir = rustix::fs::Dir::new(fd).map_err(|e| self.error(name, e))?;
        let mut out = Vec::new();
        for ent in dir {
            let ent = ent.map_err(|e| self.error(name, e))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsString::from_vec(n.to_vec()));
            }
        }
        Ok(out)
    }

    fn list_numbers(&self, name: &str) -> Result<Vec<Pid>> {
        let mut v: Vec<Pid> = self
            .list(name)?
            .iter()
            .map(|n| {
                fd::fd_number(n).ok_or_else(|| {
                    self.parse_error(
                        name,
                        ParseError::new(0, format!("entry {n:?} is not a number")),
                    )
                })
            })
            .collect::<Result<_>>()?;
        v.sort_unstable();
        Ok(v)
    }

    // ---- threads and children ----

    /// The thread ids of the process (`task/`), sorted.
    pub fn tasks(&self) -> Result<Vec<Pid>> {
        self.list_numbers("task")
    }

    /// The children of this task: of every thread for a process
    /// directory, of this thread for a thread's. Sorted, without
    /// duplicates. Needs CONFIG_PROC_CHILDREN.
    pub fn children(&mut self) -> Result<Vec<Pid>> {
        let mut out = Vec::new();
        if self.tgid.is_some() {
            out = self.parse("children", misc::parse_pid_list)?;
        } else {
            for tid in self.tasks()? {
                let name = format!("task/{tid}/children");
                match self.parse(&name, misc::parse_pid_list) {
                    Ok(v) => out.extend(v),
                    // A thread that exited since the listing has no children.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    // ---- memory ----

    /// `maps`.
    pub fn maps(&mut self) -> Result<Vec<Vma>> {
        let mut out = Vec::new();
        self.maps_into(&mut out)?;
        Ok(out)
    }

    /// `maps`, appended to `out`.
    pub fn maps_into(&mut self, out: &mut Vec<Vma>) -> Result<()> {
        let before = out.len();
        self.parse("maps", |t| maps::parse_maps_into(t, out))?;
        self.check_memory_seen("maps", out.len() > before)
    }

    /// `smaps`, with `VmFlags` and page counts.
    pub fn smaps(&mut self) -> Result<Vec<SmapsVma>> {
        let mut out = Vec::new();
        self.smaps_into(&mut out)?;
        Ok(out)
    }

    /// `smaps`, appended to `out`.
    pub fn smaps_into(&mut self, out: &mut Vec<SmapsVma>) -> Result<()> {
        let before = out.len();
        self.parse("smaps", |t| maps::parse_smaps_into(t, out))?;
        self.check_memory_seen("smaps", out.len() > before)
    }

    /// An empty maps file comes from a task that lost its memory: a
    /// kernel thread, or a task that exited after the file was opened.
    fn check_memory_seen(&self, name: &str, any: bool) -> Result<()> {
        if !any && !self.is_alive() {
            return Err(Error::Vanished {
                pid: self.pid,
                path: self.path_of(name),
            });
        }
        Ok(())
    }

    /// Opens `pagemap` for [`Pagemap::read`] and [`Pagemap::scan`].
    pub fn pagemap(&self) -> Result<Pagemap> {
        let fd = self.open_file("pagemap")?;
        let dir = self.dir.try_clone().map_err(|source| Error::Io {
            pid: self.pid,
            path: self.base.clone(),
            source,
        })?;
        Ok(Pagemap::new(
            self.pid,
            self.path_of("pagemap"),
            File::from(fd),
            dir,
        ))
    }

    /// The areas listed in `map_files/`, as (start, end), sorted.
    pub fn map_files(&self) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for n in self.list("map_files")? {
            let b = n.as_encoded_bytes();
            let r = memchr::memchr(b'-', b).and_then(|d| {
                Some((
                    crate::text::hex_u64(&b[..d])?,
                    crate::text::hex_u64(&b[d + 1..])?,
                ))
            });
            match r {
                Some(r) => out.push(r),
                None => {
                    return Err(self.parse_error(
                        "map_files",
                        ParseError::new(0, format!("entry {n:?} is not START-END")),
                    ));
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn map_file_name(start: u64, end: u64) -> String {
        format!("map_files/{start:x}-{end:x}")
    }

    /// Where the file mapped at `[start, end)` is (the link of
    /// `map_files/START-END`). Needs CAP_SYS_ADMIN.
    pub fn map_file_link(&self, start: u64, end: u64) -> Result<PathBuf> {
        self.read_link(&Self::map_file_name(start, end))
    }

    /// Opens the file mapped at `[start, end)` read-only through
    /// `map_files/`, which works for deleted files too. Needs
    /// CAP_SYS_ADMIN.
    pub fn open_map_file(&self, start: u64, end: u64) -> Result<File> {
        let name = Self::map_file_name(start, end);
        self.open_file(&name).map(File::from)
    }

    // ---- identity and state ----

    /// `status`.
    pub fn status(&mut self) -> Result<Status> {
        self.parse("status", status::parse_status)
    }

    /// `stat`.
    pub fn stat(&mut self) -> Result<Stat> {
        self.parse("stat", stat::parse_stat)
    }

    /// `limits`.
    pub fn limits(&mut self) -> Result<Limits> {
        self.parse("limits", limits::parse_limits)
    }

    /// `comm`, raw, without the newline.
    pub fn comm(&mut self) -> Result<Vec<u8>> {
        self.parse("comm", |b| Ok(misc::parse_comm(b)))
    }

    /// `cmdline`, split at NULs.
    pub fn cmdline(&mut self) -> Result<Vec<Vec<u8>>> {
        self.parse("cmdline", |b| Ok(misc::split_nul(b)))
    }

    /// `environ`, split at NULs.
    pub fn environ(&mut self) -> Result<Vec<Vec<u8>>> {
        self.parse("environ", |b| Ok(misc::split_nul(b)))
    }

    /// `auxv`, up to `AT_NULL`.
    pub fn auxv(&mut self) -> Result<Vec<AuxvEntry>> {
        self.parse("auxv", misc::parse_auxv)
    }

    /// `timerslack_ns`.
    pub fn timerslack_ns(&mut self) -> Result<u64> {
        self.parse("timerslack_ns", misc::parse_u64)
    }

    /// `loginuid` (`u32::MAX` when unset).
    pub fn loginuid(&mut self) -> Result<u32> {
        self.parse("loginuid", |b| {
            let v = misc::parse_u64(b)?;
            u32::try_from(v).map_err(|_| ParseError::new(0, format!("loginuid {v} out of range")))
        })
    }

    /// `oom_score_adj`.
    pub fn oom_score_adj(&mut self) -> Result<i32> {
        self.parse("oom_score_adj", |b| {
            let v = misc::parse_i64(b)?;
            i32::try_from(v)
                .map_err(|_| ParseError::new(0, format!("oom_score_adj {v} out of range")))
        })
    }

    /// `coredump_filter`.
    pub fn coredump_filter(&mut self) -> Result<u32> {
        self.parse("coredump_filter", misc::parse_coredump_filter)
    }

    /// `autogroup`: the id and nice value of the task's autogroup (the
    /// group of its session).
    pub fn autogroup(&mut self) -> Result<(u64, i32)> {
        self.parse("autogroup", misc::parse_autogroup)
    }

    /// `ksm_stat`'s `ksm_merge_any`: KSM on for every area of the process
    /// (PR_SET_MEMORY_MERGE).
    pub fn ksm_merge_any(&mut self) -> Result<bool> {
        self.parse("ksm_stat", misc::parse_ksm_merge_any)
    }

    /// `numa_maps`: each area's start and memory policy.
    pub fn numa_policies(&mut self) -> Result<Vec<(u64, String)>> {
        self.parse("numa_maps", misc::parse_numa_policies)
    }

    /// `personality`.
    pub fn personality(&mut self) -> Result<u32> {
        self.parse("personality", misc::parse_personality)
    }

    /// `timens_offsets`: the offsets of the task's time namespace.
    pub fn timens_offsets(&mut self) -> Result<TimensOffsets> {
        self.parse("timens_offsets", misc::parse_timens_offsets)
    }

    /// `uid_map`, as seen from the reader's user namespace.
    pub fn uid_map(&mut self) -> Result<Vec<IdMapping>> {
        self.parse("uid_map", misc::parse_id_map)
    }

    /// `gid_map`, as seen from the reader's user namespace.
    pub fn gid_map(&mut self) -> Result<Vec<IdMapping>> {
        self.parse("gid_map", misc::parse_id_map)
    }

    /// `attr/current`: the LSM label, without the trailing newline and
    /// NUL, or `None` when no LSM gives one (EINVAL).
    pub fn lsm_label(&mut self) -> Result<Option<Vec<u8>>> {
        match self.parse("attr/current", |b| {
            let b = b.strip_suffix(b"\n").unwrap_or(b);
            Ok(b.strip_suffix(b"\0").unwrap_or(b).to_vec())
        }) {
            Ok(v) => Ok(Some(v)),
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `timers`: the process's POSIX timers.
    pub fn posix_timers(&mut self) -> Result<Vec<PosixTimer>> {
        self.parse("timers", timers::parse_timers)
    }

    /// `mountinfo`.
    pub fn mountinfo(&mut self) -> Result<Vec<MountInfo>> {
        self.parse("mountinfo", mountinfo::parse_mountinfo)
    }

    /// `cgroup`.
    pub fn cgroups(&mut self) -> Result<Vec<CgroupEntry>> {
        self.parse("cgroup", cgroup::parse_cgroup)
    }

    /// `cwd` link.
    pub fn cwd(&self) -> Result<PathBuf> {
        self.read_link("cwd")
    }

    /// `root` link.
    pub fn root(&self) -> Result<PathBuf> {
        self.read_link("root")
    }

    /// `exe` link.
    pub fn exe(&self) -> Result<PathBuf> {
        self.read_link("exe")
    }

    /// The id (nsfs inode) of the task's namespace of `kind`, or `None`
    /// when the link is missing.
    pub fn namespace(&self, kind: NsKind) -> Result<Option<u64>> {
        let name = format!("ns/{}", kind.file_name());
        match self.read_link(&name) {
            Ok(link) => {
                let b = link.as_os_str().as_encoded_bytes();
                ns::parse_ns_link(kind, b).map(Some).ok_or_else(|| {
                    self.parse_error(&name, crate::text::bad(0, "namespace link", b))
                })
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every namespace id of the task.
    pub fn namespaces(&self) -> Result<Namespaces> {
        let mut out = Namespaces::default();
        for kind in NsKind::ALL {
            *out.slot(kind) = self.namespace(kind)?;
        }
        Ok(out)
    }

    // ---- files ----

    /// The open fds with their link texts, sorted by number.
    pub fn fds(&self) -> Result<Vec<Fd>> {
        let mut out = Vec::new();
        for n in self.fd_numbers()? {
            if let Some(fd) = self.fd(n)? {
                out.push(fd);
            }
        }
        Ok(out)
    }

    /// The numbers of the task's open fds, in order.
    pub fn fd_numbers(&self) -> Result<Vec<i32>> {
        self.list_numbers("fd")
    }

    /// Fd `n` and what it links to; `None` when it is closed.
    pub fn fd(&self, n: i32) -> Result<Option<Fd>> {
        match self.read_link(&format!("fd/{n}")) {
            Ok(link) => Ok(Some(Fd { fd: n, link })),
            // Closed between the listing and the readlink.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `fdinfo/FD`.
    pub fn fdinfo(&mut self, fd: i32) -> Result<FdInfo> {
        self.parse(&format!("fdinfo/{fd}"), fd::parse_fdinfo)
    }

    /// The fdinfo of fd `fd`, an io_uring instance.
    pub fn io_uring_fdinfo(&mut self, fd: i32) -> Result<crate::IoUringInfo> {
        self.parse(
            &format!("fdinfo/{fd}"),
            crate::io_uring::parse_io_uring_fdinfo,
        )
    }

    /// Opens the fd's file read-only through `fd/N` (a new open file
    /// description, not the task's).
    pub fn open_fd_path(&self, fd: i32) -> Result<File> {
        self.open_file(&format!("fd/{fd}")).map(File::from)
    }
}

impl AsFd for Task {
    /// The open `/proc` directory.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// The pids of all processes in `/proc` (thread-group leaders), sorted.
pub fn all_pids() -> Result<Vec<Pid>> {
    let path = PathBuf::from("/proc");
    let rd = std::fs::read_dir(&path).map_err(|source| Error::Io {
        pid: 0,
        path: path.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|source| Error::Io {
            pid: 0,
            path: path.clone(),
            source,
        })?;
        if let Some(p) = fd::fd_number(OsStr::new(&ent.file_name())) {
            out.push(p);
        }
    }
    out.sort_unstable();
    Ok(out)
}
