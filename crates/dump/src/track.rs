//! Memory tracking between dumps (criu's `--track-mem`), without
//! soft-dirty bits: a userfaultfd made in the process, registered for
//! asynchronous write-protection (`UFFD_FEATURE_WP_ASYNC`) over its
//! private memory, and `PAGEMAP_SCAN`, which tells the pages written
//! since they were last protected (`PAGE_IS_WRITTEN`) and protects them
//! again (`PM_SCAN_WP_MATCHING`).
//!
//! How a round goes, the process frozen:
//! 1. The userfaultfd: the holder's (below), or a new one, made by a
//!    remote `userfaultfd()` in the process, taken with `pidfd_getfd`
//!    and closed in the process again: the process's fd table is left
//!    as it was.
//! 2. Its areas registered with it are found in smaps (`uw`) and
//!    registered again, which fails when they are another
//!    userfaultfd's (the process's own use is refused by name).
//! 3. An area is *eligible* when it is private, readable, of pages that
//!    are dumped when touched (not the vdso, not hugetlb, not KSM
//!    merged). Registered areas that are not eligible now are
//!    unregistered; eligible ones that are not registered are
//!    registered: they are dumped whole this round, and tracked from
//!    now on.
//! 4. When the round's parent is the last round the holder saw end
//!    (`--prev-images-dir` naming the directory it recorded), the pages
//!    of tracked areas that are present or swapped and not written are
//!    in the parent's images: `PE_PARENT` (told by the same scan that
//!    chooses the pages, [`crate::pages::plan_with`]). Any other case
//!    dumps whole.
//! 5. The holder forgets its last round; the written pages of every
//!    eligible area are protected again. The process may run.
//!
//! A page present and protected now was present when protected, at the
//! end of the parent round's freeze, and was dumped by that round
//! (whose contents were read after the protection: a write since shows
//! now). A page not there reads as zeroes (a marker left by
//! `MADV_DONTNEED` on a protected page is not a page: see
//! [`PagemapEntry::is_uffd_marker`]).
//!
//! Between two rounds the userfaultfd lives in a *holder*, a small
//! process forked by the first round, in a session of its own: it keeps
//! the fd, the directory of the last round that ended, and an abstract
//! unix socket (`rcriu-track-PID-STARTTIME`: a process that reuses the
//! pid has another start time) on which it hands both over to root
//! only. It ends when the process ends or when a dump (the final one)
//! tells it to, after unregistering every area: the process keeps no
//! trace of the tracking.
//!
//! [`PagemapEntry::is_uffd_marker`]: rcriu_proc::PagemapEntry::is_uffd_marker

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rcriu_compel::{Remote, Seized, ThreadCtx};
use rcriu_proc::{Pagemap, PagemapEntry, Pid, SmapsVma, VmFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType,
};

use crate::mm::{Area, Pages};
use crate::{Error, Result, track_sys};

const PAGE: u64 = 4096;
/// The longest directory path the holder keeps.
const STATE_MAX: usize = 4000;

/// The holder's answer: `T` then the directory of the last round.
const HELLO: u8 = b'T';
/// Commands to the holder: forget the last round, record one, end.
const FORGET: u8 = b'I';
const RECORD: u8 = b'S';
const END: u8 = b'E';

/// A process's tracking: its userfaultfd and what the holder knows.
#[derive(Debug)]
pub struct Tracker {
    pid: Pid,
    name: String,
    uffd: OwnedFd,
    /// The connection to the holder, when there is one.
    holder: Option<OwnedFd>,
    /// The directory of the last round that ended, as the holder has it.
    last: Option<PathBuf>,
}

fn sock_name(pid: Pid, starttime: u64) -> String {
    format!("rcriu-track-{pid}-{starttime}")
}

fn socket() -> std::io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

fn send(conn: BorrowedFd<'_>, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        anc.push(SendAncillaryMessage::ScmRights(&fds));
    }
    rustix::net::sendmsg(conn, &[IoSlice::new(msg)], &mut anc, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// The holder's loop: allocates nothing (it runs in a child forked from a
/// process that may have threads).
fn holder(uffd: BorrowedFd<'_>, listener: BorrowedFd<'_>, target: BorrowedFd<'_>) -> ! {
    let mut state = [0u8; STATE_MAX + 1];
    state[0] = HELLO;
    let mut len = 1;
    let mut buf = [0u8; STATE_MAX + 1];
    loop {
        let mut fds = [
            rustix::event::PollFd::new(&target, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&listener, rustix::event::PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => track_sys::exit_holder(),
        }
        if !fds[0].revents().is_empty() {
            // The process is gone.
            track_sys::exit_holder();
        }
        if fds[1].revents().is_empty() {
            continue;
        }
        let Ok(conn) = rustix::net::accept(listener) else {
            continue;
        };
        let root = rustix::net::sockopt::socket_peercred(&conn)
            .is_ok_and(|c| c.uid == rustix::process::Uid::ROOT);
        if !root || send(conn.as_fd(), &state[..len], Some(uffd)).is_err() {
            continue;
        }
        while let Ok((n, _)) = rustix::net::recv(&conn, &mut buf, RecvFlags::empty()) {
            match buf[..n].first() {
                None => break,
                Some(&FORGET) => len = 1,
                Some(&RECORD) => {
                    let n = n.min(state.len());
                    state[1..n].copy_from_slice(&buf[1..n]);
                    len = n;
                }
                Some(&END) => track_sys::exit_holder(),
                Some(_) => {}
            }
        }
    }
}

/// Whether this kernel tracks writes as rcriu needs: a userfaultfd with
/// asynchronous write-protection (`UFFD_FEATURE_WP_ASYNC`, Linux 6.7).
pub fn available() -> std::io::Result<()> {
    let uffd = track_sys::userfaultfd_here()?;
    track_sys::uffd_api(uffd.as_fd())
}

impl Tracker {
    /// The tracking of the seized process `pid` (start time `starttime`,
    /// from its stat): the holder's userfaultfd, or with `create` a new
    /// one made in the process; `None` without either.
    pub fn get(seized: &Seized, starttime: u64, create: bool) -> Result<Option<Tracker>> {
        let pid = seized.pid();
        let name = sock_name(pid, starttime);
        if let Some(t) = Self::connect(pid, &name)? {
            return Ok(Some(t));
        }
        if !create {
            return Ok(None);
        }
        let uffd = make_uffd(seized)?;
        track_sys::uffd_api(uffd.as_fd()).map_err(Error::sys(
            "asking asynchronous write-protection of the userfaultfd (UFFDIO_API)",
            pid,
        ))?;
        Ok(Some(Tracker {
            pid,
            name,
            uffd,
            holder: None,
            last: None,
        }))
    }

    fn connect(pid: Pid, name: &str) -> Result<Option<Tracker>> {
        let sk = socket().map_err(Error::sys("making a socket to the tracking holder", pid))?;
        let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())
            .map_err(|e| Error::sys("naming the tracking holder", pid)(e.into()))?;
        if rustix::net::connect(&sk, &addr).is_err() {
            return Ok(None);
        }
        let mut buf = [0u8; STATE_MAX + 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &sk,
            &mut [IoSliceMut::new(&mut buf)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| Error::sys("hearing from the tracking holder", pid)(e.into()))?;
        let mut uffd = None;
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                uffd = fds.into_iter().next();
            }
        }
        let (Some(uffd), Some(&HELLO)) = (uffd, buf.first()) else {
            return Err(Error::Inconsistent {
                pid,
                what: format!("the tracking holder ({name}) sent no userfaultfd"),
            });
        };
        let last = &buf[1..got.bytes];
        let last = (!last.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(last)));
        log::info!("memory of {pid} tracked since {last:?}");
        Ok(Some(Tracker {
            pid,
            name: name.to_owned(),
            uffd,
            holder: Some(sk),
            last,
        }))
    }

    /// Whether the last round that ended wrote `dir` (the parent this
    /// round names).
    pub fn follows(&self, dir: &Path) -> bool {
        match (&self.last, std::fs::canonicalize(dir)) {
            (Some(last), Ok(d)) => *last == d,
            _ => false,
        }
    }

    fn tell(&self, msg: &[u8]) -> Result<()> {
        if let Some(h) = &self.holder {
            send(h.as_fd(), msg, None)
                .map_err(Error::sys("telling the tracking holder", self.pid))?;
        }
        Ok(())
    }

    /// Makes the holder forget the last round: done before the pages are
    /// protected again, so that a round that fails past that point is
    /// never taken for a parent.
    pub fn forget(&mut self) -> Result<()> {
        self.last = None;
        self.tell(&[FORGET])
    }

    /// The areas of `smaps` registered with this userfaultfd (their
    /// `uw` flag cleared, so that they are classified as plain memory).
    /// An area registered with another one keeps its flag.
    pub fn ours(&self, smaps: &mut [SmapsVma]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for v in smaps.iter_mut() {
            let (s, e) = (v.vma.start, v.vma.end);
            if v.flags.contains(VmFlags::UFFD_WP)
                && !v.flags.contains(VmFlags::UFFD_MISSING)
                && track_sys::register_wp(self.uffd.as_fd(), s, e - s).is_ok()
            {
                v.flags.remove(VmFlags::UFFD_WP);
                out.push((s, e));
            }
        }
        out
    }

    /// Registers `[start, end)` for write-protection.
    pub fn register(&self, start: u64, end: u64) -> Result<()> {
        track_sys::register_wp(self.uffd.as_fd(), start, end - start).map_err(Error::sys(
            "registering memory for write tracking (UFFDIO_REGISTER)",
            self.pid,
        ))
    }

    /// Unregisters `[start, end)`: its pages lose their protection.
    pub fn unregister(&self, start: u64, end: u64) -> Result<()> {
        track_sys::unregister(self.uffd.as_fd(), start, end - start).map_err(Error::sys(
            "unregistering memory from write tracking (UFFDIO_UNREGISTER)",
            self.pid,
        ))
    }

    /// Ends a round that wrote `dir`: the holder (started now when there
    /// is none) keeps the userfaultfd and records `dir`.
    pub fn keep(mut self, dir: &Path) -> Result<()> {
        let pid = self.pid;
        let dir = std::fs::canonicalize(dir).map_err(Error::file(pid, dir))?;
        let bytes = dir.as_os_str().as_bytes();
        if bytes.len() >= STATE_MAX {
            return Err(Error::unsupported(
                pid,
                format!("images in {}: a path too long to track", dir.display()),
            ));
        }
        if self.holder.is_none() {
            self.spawn_holder()?;
            match Self::connect(pid, &self.name)? {
                Some(t) => self.holder = t.holder,
                None => {
                    return Err(Error::Inconsistent {
                        pid,
                        what: format!("the tracking holder ({}) did not start", self.name),
                    });
                }
            }
        }
        let mut msg = Vec::with_capacity(bytes.len() + 1);
        msg.push(RECORD);
        msg.extend_from_slice(bytes);
        self.tell(&msg)
    }

    fn spawn_holder(&self) -> Result<()> {
        let pid = self.pid;
        let err = |what| move |e: rustix::io::Errno| Error::sys(what, pid)(e.into());
        let listener = socket().map_err(Error::sys("making the tracking holder's socket", pid))?;
        let addr = SocketAddrUnix::new_abstract_name(self.name.as_bytes())
            .map_err(err("naming the tracking holder"))?;
        rustix::net::bind(&listener, &addr).map_err(err("binding the tracking holder"))?;
        rustix::net::listen(&listener, 4).map_err(err("listening for the tracking holder"))?;
        let target = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or_else(|| Error::Inconsistent {
                pid,
                what: "no such pid".into(),
            })?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(err("opening a pidfd"))?;
        let uffd = self
            .uffd
            .try_clone()
            .map_err(Error::sys("copying the userfaultfd", pid))?;
        track_sys::fork_holder([uffd, listener, target], holder)
            .map_err(Error::sys("starting the tracking holder", pid))?;
        log::info!("tracking holder {} started", self.name);
        Ok(())
    }

    /// Ends the tracking: every area of `ours` unregistered, the holder
    /// told to end (the userfaultfd closes with it and with us).
    pub fn end(self, ours: &[(u64, u64)]) -> Result<()> {
        for &(s, e) in ours {
            self.unregister(s, e)?;
        }
        self.tell(&[END])
    }
}

/// Makes a userfaultfd in the seized process, takes it, and closes it
/// there.
fn make_uffd(seized: &Seized) -> Result<OwnedFd> {
    let pid = seized.pid();
    let ctx = ThreadCtx::capture(pid).map_err(Error::compel(pid))?;
    let r = Remote::new(pid, seized.leader(), &ctx).map_err(Error::compel(pid))?;
    let n = r
        .syscall_ok(
            "userfaultfd",
            libc::SYS_userfaultfd,
            [track_sys::USERFAULTFD_FLAGS, 0, 0, 0, 0, 0],
        )
        .map_err(|e| {
            Error::unsupported(
                pid,
                format!("memory tracking: the process cannot make a userfaultfd ({e})"),
            )
        })?;
    let taken = take_fd(pid, n as i32);
    let closed = r.syscall_ok("close", libc::SYS_close, [n, 0, 0, 0, 0, 0]);
    let fd = taken?;
    closed.map_err(Error::compel(pid))?;
    Ok(fd)
}

fn take_fd(pid: Pid, n: i32) -> Result<OwnedFd> {
    let err = |what| move |e: rustix::io::Errno| Error::sys(what, pid)(e.into());
    let p = rustix::process::Pid::from_raw(pid).ok_or_else(|| Error::Inconsistent {
        pid,
        what: "no such pid".into(),
    })?;
    let pidfd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
        .map_err(err("opening a pidfd"))?;
    rustix::process::pidfd_getfd(&pidfd, n, rustix::process::PidfdGetfdFlags::empty())
        .map_err(err("taking the userfaultfd (pidfd_getfd)"))
}

/// Whether an area's pages can be tracked between rounds.
pub fn eligible(a: &Area) -> bool {
    let shared = a.entry.flags & libc::MAP_SHARED as u32 != 0;
    let hugetlb = a.entry.flags & libc::MAP_HUGETLB as u32 != 0;
    let merged = a.entry.madv.unwrap_or(0) & (1 << libc::MADV_MERGEABLE) != 0;
    matches!(a.pages, Pages::Touched { .. })
        && a.entry.prot & libc::PROT_READ as u32 != 0
        && !shared
        && !hugetlb
        && !merged
}

/// Cuts `[start, end)`, pages pagemap shows swapped, into the runs that
/// are not write-protect markers.
pub fn without_markers(
    pid: Pid,
    pagemap: &mut Pagemap,
    start: u64,
    end: u64,
    out: &mut Vec<(u64, u64)>,
) -> Result<()> {
    let mut entries = Vec::new();
    pagemap
        .read(start, end, &mut entries)
        .map_err(Error::proc(pid))?;
    let mut at = start;
    for e in entries {
        if !PagemapEntry::is_uffd_marker(e) {
            match out.last_mut() {
                Some(last) if last.1 == at => last.1 += PAGE,
                _ => out.push((at, at + PAGE)),
            }
        }
        at += PAGE;
    }
    Ok(())
}

/// Protects again the written pages of `areas`.
pub fn rearm(pid: Pid, pagemap: &mut Pagemap, areas: &[(u64, u64)]) -> Result<()> {
    for &(s, e) in areas {
        pagemap.rearm_written(s, e).map_err(Error::proc(pid))?;
    }
    Ok(())
}

/// The final dump's part of the tracking: found while the process is
/// frozen, ended once it is released or killed (unregistering a GiB takes
/// about as long as dumping a tenth of it).
#[derive(Debug)]
pub struct Final {
    tracker: Tracker,
    /// The areas registered with it.
    ours: Vec<(u64, u64)>,
    /// Whether the parent images are the last round's.
    follows: bool,
}

impl Final {
    /// When the seized process is tracked: its tracking, the `uw` flag of
    /// its areas (in `smaps`, read while it is frozen) cleared, so that
    /// they are classified as plain memory. `parent` is the dump's parent
    /// images (with `--track-mem`).
    pub fn begin(
        seized: &Seized,
        starttime: u64,
        parent: Option<&Path>,
        smaps: &mut [SmapsVma],
    ) -> Result<Option<Final>> {
        let pid = seized.pid();
        let Some(mut tracker) = Tracker::get(seized, starttime, false)? else {
            return Ok(None);
        };
        let follows = parent.is_some_and(|p| tracker.follows(p));
        if parent.is_some() && !follows {
            log::warn!(
                "the memory of {pid} was tracked since {:?}, not since the parent images: dumping it whole",
                tracker.last
            );
        }
        tracker.forget()?;
        let ours = tracker.ours(smaps);
        Ok(Some(Final {
            tracker,
            ours,
            follows,
        }))
    }

    /// What of `areas` is in the parent's images (nothing when the
    /// parent is not the last round).
    pub fn parent(&self, areas: &[Area]) -> crate::pages::Parent {
        crate::pages::Parent {
            tracked: areas
                .iter()
                .filter(|a| {
                    self.follows && eligible(a) && self.ours.contains(&(a.start(), a.end()))
                })
                .map(|a| (a.start(), a.end()))
                .collect(),
            markers: true,
            ..crate::pages::Parent::default()
        }
    }

    /// Ends the tracking: the areas unregistered when the process runs on
    /// (`alive`), the holder told to end.
    pub fn end(self, alive: bool) {
        let pid = self.tracker.pid;
        let t = std::time::Instant::now();
        let ours: &[(u64, u64)] = if alive { &self.ours } else { &[] };
        match self.tracker.end(ours) {
            Ok(()) => log::debug!("tracking of {pid} ended in {:?}", t.elapsed()),
            Err(e) => log::error!("ending the tracking of {pid}: {e}"),
        }
    }
}
