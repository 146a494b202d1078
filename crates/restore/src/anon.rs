//! Files on anonymous inodes: each made again by its module
//! ([`eventfd`](crate::eventfd), [`eventpoll`](crate::eventpoll),
//! [`signalfd`](crate::signalfd), [`timerfd`](crate::timerfd),
//! [`inotify`](crate::inotify), [`fanotify`](crate::fanotify),
//! [`pidfd`](crate::pidfd)) before the
//! fork, inherited by the process as its other files are. Epoll targets
//! are registered once every fd of the process is open.

use std::os::fd::{BorrowedFd, OwnedFd};

use rcriu_images::pb;

use crate::{
    Error, Result, eventfd, eventpoll, fanotify, files, files_sys, inotify, io_uring, pidfd,
    signalfd, timerfd,
};

/// What makes the files on anonymous inodes of a restore.
#[derive(Debug, Default)]
pub struct Anon {
    epolls: eventpoll::Epolls,
    pidfds: pidfd::Pidfds,
}

impl Anon {
    /// The open file of `entry`, first held as fd `fd`, and its owner;
    /// `None` when `entry` is of no kind of this module.
    pub fn open(
        &mut self,
        pid: u32,
        entry: &pb::FileEntry,
        fd: i32,
    ) -> Result<Option<(OwnedFd, pb::FownEntry)>> {
        Ok(Some(match (pb::FdTypes::try_from(entry.r#type), entry) {
            (Ok(pb::FdTypes::Eventfd), pb::FileEntry { efd: Some(e), .. }) => {
                (eventfd::open(e)?, e.fown)
            }
            (Ok(pb::FdTypes::Eventpoll), pb::FileEntry { epfd: Some(e), .. }) => {
                (self.epolls.open(e, fd)?, e.fown)
            }
            (Ok(pb::FdTypes::Signalfd), pb::FileEntry { sgfd: Some(e), .. }) => {
                (signalfd::open(e)?, e.fown)
            }
            (Ok(pb::FdTypes::Timerfd), pb::FileEntry { tfd: Some(e), .. }) => {
                (timerfd::open(e)?, e.fown)
            }
            // Inotify instances are made by [`files::Opener`], which
            // knows the ghosts their watches may watch.
            (Ok(pb::FdTypes::Fanotify), pb::FileEntry { ffy: Some(e), .. }) => {
                (fanotify::open(e)?, e.fown)
            }
            (Ok(pb::FdTypes::Pidfd), pb::FileEntry { pidfd: Some(e), .. }) => {
                (self.pidfds.open(pid, fd, e)?, e.fown)
            }
            _ => return Ok(None),
        }))
    }

    /// Once every fd of process `pid` is open (`fds`: number,
    /// close-on-exec, open file): the targets of its epoll instances are
    /// registered.
    pub fn finish_process(&mut self, pid: u32, fds: &[files::FdSource]) -> Result<()> {
        self.epolls.register(pid, fds)
    }

    /// Whether an epoll instance made (one in flight) has targets still
    /// to register.
    pub fn has_pending_targets(&self) -> bool {
        self.epolls.has_pending_targets()
    }

    /// Once every process's fds are open: the processes that stood for
    /// ended ones in pidfds end (one for each ended process, whichever
    /// processes of the tree held pidfds of it).
    pub fn finish(&mut self) -> Result<()> {
        self.pidfds.finish()
    }
}

/// Whether `entry` is of a kind of this module that the restore takes
/// (io_uring instances are made at the end, [`io_uring`](crate::io_uring));
/// refuses, without making anything, what [`Anon::open`] would refuse.
/// `fd` is the fd of process `pid` that holds it, `fdinfo` the process's
/// fds, `tree` the pids of the restored processes (zombies too); `first`:
/// no process before it in the tree holds it (an epoll instance's targets
/// are the fds of its first holder, which registers them again).
pub fn check(
    pid: u32,
    fd: u32,
    entry: &pb::FileEntry,
    fdinfo: &[pb::FdinfoEntry],
    tree: &[u32],
    first: bool,
) -> Result<bool> {
    Ok(match (pb::FdTypes::try_from(entry.r#type), entry) {
        (Ok(pb::FdTypes::Eventfd), pb::FileEntry { efd: Some(_), .. }) => true,
        (Ok(pb::FdTypes::Eventpoll), pb::FileEntry { epfd: Some(e), .. }) => {
            if first {
                eventpoll::check(pid, fd, e, fdinfo)?;
            }
            true
        }
        (Ok(pb::FdTypes::Signalfd), pb::FileEntry { sgfd: Some(_), .. }) => true,
        (Ok(pb::FdTypes::Timerfd), pb::FileEntry { tfd: Some(e), .. }) => {
            timerfd::check(e)?;
            true
        }
        (Ok(pb::FdTypes::Inotify), pb::FileEntry { ify: Some(e), .. }) => {
            inotify::check(e)?;
            true
        }
        (Ok(pb::FdTypes::Fanotify), pb::FileEntry { ffy: Some(e), .. }) => {
            fanotify::check(e)?;
            true
        }
        (Ok(pb::FdTypes::Pidfd), pb::FileEntry { pidfd: Some(e), .. }) => {
            pidfd::check(pid, fd, e, tree)?;
            true
        }
        (
            Ok(pb::FdTypes::IoUring),
            pb::FileEntry {
                rcriu_io_uring: Some(e),
                ..
            },
        ) => {
            io_uring::check(e)?;
            true
        }
        _ => false,
    })
}

/// The flags `F_SETFL` takes of an open file's flags.
pub(crate) fn status_flags(flags: u32) -> i32 {
    (flags as i32)
        & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME)
}

/// Gives the open file `fd` the status flags of `flags` (an image's
/// `flags`: O_NONBLOCK, O_ASYNC, ...).
pub fn set_flags(fd: BorrowedFd<'_>, flags: u32, what: &str) -> Result<()> {
    files_sys::set_status_flags(fd, status_flags(flags))
        .map_err(Error::io(format!("setting the flags of {what}")))
}
