//! Files on anonymous inodes (`anon_inode:[NAME]` links): which kinds
//! rcriu dumps, each by its module ([`eventfd`](crate::eventfd),
//! [`eventpoll`](crate::eventpoll), [`signalfd`](crate::signalfd),
//! [`timerfd`](crate::timerfd), [`inotify`](crate::inotify),
//! [`fanotify`](crate::fanotify), [`pidfd`](crate::pidfd),
//! [`io_uring`](crate::io_uring)), and the refusal
//! of the others by name.

use rcriu_images::pb;
use rcriu_proc::{FdInfo, Pid};

use crate::files::OpenFd;
use crate::{
    Error, Result, eventfd, eventpoll, fanotify, inotify, io_uring, pidfd, signalfd, timerfd,
};

/// A kind of file on an anonymous inode that rcriu dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Eventfd,
    Eventpoll,
    Signalfd,
    Timerfd,
    Inotify,
    Fanotify,
    Pidfd,
    IoUring,
}

impl Kind {
    /// The kind an fd link names (`anon_inode:[eventfd]`, ...), when
    /// rcriu dumps it.
    pub fn of_link(link: &[u8]) -> Option<Kind> {
        let name = link.strip_prefix(b"anon_inode:")?;
        let name = name
            .strip_prefix(b"[")
            .and_then(|n| n.strip_suffix(b"]"))
            .unwrap_or(name);
        Kind::of_name(name)
    }

    fn of_name(name: &[u8]) -> Option<Kind> {
        Some(match name {
            b"eventfd" => Kind::Eventfd,
            b"eventpoll" => Kind::Eventpoll,
            b"signalfd" => Kind::Signalfd,
            b"timerfd" => Kind::Timerfd,
            b"inotify" => Kind::Inotify,
            b"fanotify" => Kind::Fanotify,
            b"pidfd" => Kind::Pidfd,
            b"io_uring" => Kind::IoUring,
            _ => return None,
        })
    }

    pub fn fd_type(self) -> pb::FdTypes {
        match self {
            Kind::Eventfd => pb::FdTypes::Eventfd,
            Kind::Eventpoll => pb::FdTypes::Eventpoll,
            Kind::Signalfd => pb::FdTypes::Signalfd,
            Kind::Timerfd => pb::FdTypes::Timerfd,
            Kind::Inotify => pb::FdTypes::Inotify,
            Kind::Fanotify => pb::FdTypes::Fanotify,
            Kind::Pidfd => pb::FdTypes::Pidfd,
            Kind::IoUring => pb::FdTypes::IoUring,
        }
    }
}

/// Refuses, from what /proc says, the anonymous-inode fd `fd` whose link
/// names `name`, unless rcriu dumps it.
pub fn check(pid: Pid, fd: i32, name: &str, fdinfo: &FdInfo) -> Result<()> {
    match Kind::of_name(name.as_bytes()) {
        Some(Kind::Timerfd) => timerfd::check(pid, fd, fdinfo),
        Some(Kind::IoUring) => io_uring::check(pid, fd),
        Some(_) => Ok(()),
        None => Err(Error::unsupported(
            pid,
            format!("fd {fd}: {name} (an anonymous inode)"),
        )),
    }
}

/// The file entry of `f`, an open file of kind `kind`, numbered `id`.
pub fn entry(
    pid: Pid,
    kind: Kind,
    id: u32,
    f: &OpenFd,
    fown: pb::FownEntry,
    tree: &[Pid],
) -> Result<pb::FileEntry> {
    let mut e = pb::FileEntry {
        r#type: kind.fd_type() as i32,
        id,
        ..Default::default()
    };
    match kind {
        Kind::Eventfd => e.efd = Some(Box::new(eventfd::entry(pid, id, f, fown)?)),
        Kind::Eventpoll => e.epfd = Some(Box::new(eventpoll::entry(pid, id, f, fown, tree)?)),
        Kind::Signalfd => e.sgfd = Some(Box::new(signalfd::entry(pid, id, f, fown)?)),
        Kind::Timerfd => e.tfd = Some(Box::new(timerfd::entry(pid, id, f, fown)?)),
        Kind::Inotify => e.ify = Some(Box::new(inotify::entry(pid, id, f, fown)?)),
        Kind::Fanotify => e.ffy = Some(Box::new(fanotify::entry(pid, id, f, fown)?)),
        Kind::Pidfd => e.pidfd = Some(Box::new(pidfd::entry(pid, id, f, fown, tree)?)),
        Kind::IoUring => e.rcriu_io_uring = Some(Box::new(io_uring::entry(pid, id, f, fown)?)),
    }
    Ok(e)
}

/// The error of an fdinfo file that lacks its kind's lines.
pub(crate) fn no_lines(pid: Pid, fd: i32, what: &str) -> Error {
    Error::Inconsistent {
        pid,
        what: format!("fd {fd}: the fdinfo of {what} lacks its lines"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_links() {
        assert_eq!(Kind::of_link(b"anon_inode:[eventfd]"), Some(Kind::Eventfd));
        assert_eq!(
            Kind::of_link(b"anon_inode:[eventpoll]"),
            Some(Kind::Eventpoll)
        );
        assert_eq!(Kind::of_link(b"anon_inode:[timerfd]"), Some(Kind::Timerfd));
        assert_eq!(Kind::of_link(b"anon_inode:[io_uring]"), Some(Kind::IoUring));
        assert_eq!(Kind::of_link(b"anon_inode:[userfaultfd]"), None);
        assert_eq!(Kind::of_link(b"/tmp/anon_inode:[eventfd]"), None);
    }
}
