//! epoll instances: made empty when their fd is opened; once every fd of
//! the process is open, each target is registered again with its events
//! mask and data, under the fd number it was registered with — the
//! kernel keys a registration by the file and that number, which the
//! process's later EPOLL_CTL_MOD and EPOLL_CTL_DEL name. A helper
//! process with a copy of rcriu's fd table puts each target at its
//! number and registers it there ([`anon_sys::epoll_add_at`]); the
//! registrations live on with the files, which rcriu then hands to the
//! process. An instance in flight in a unix socket (made once every
//! process's fds are planned) has its targets registered among the fds
//! of the process, when the images hold one process alone.
//!
//! The target is the file the process holds as `tfd`; it was registered
//! under `rcriu_registered_fd` when the dump says so (the fd it was
//! registered as was closed or given another file since), else under
//! `tfd` (and always so in CRIU's images). Events ready at the dump are
//! ready again: registering a file polls it. As with CRIU, an
//! edge-triggered event reported before the dump and not consumed is
//! reported once more, and a one-shot target disarmed by its event comes
//! back waiting for errors and hang-ups (the kernel adds them to every
//! registration).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rcriu_images::{ImageFile, pb};

use crate::anon_sys::{self, EpollAdd};
use crate::{Error, Result, anon, files};

/// An epoll instance made, whose targets are still to register.
#[derive(Debug)]
struct Pending {
    /// The fd that first holds it, for messages.
    fd: i32,
    epoll: OwnedFd,
    tfds: Vec<pb::EventpollTfdEntry>,
}

/// The epoll instances of a restore.
#[derive(Debug, Default)]
pub struct Epolls {
    pending: Vec<Pending>,
}

/// The fd number a target was registered under.
fn key(t: &pb::EventpollTfdEntry) -> u32 {
    t.rcriu_registered_fd.unwrap_or(t.tfd)
}

impl Epolls {
    /// A new, empty epoll instance for `e`, first held as `fd`.
    pub fn open(&mut self, e: &pb::EventpollFileEntry, fd: i32) -> Result<OwnedFd> {
        let what = format!("epoll instance {:#x}", e.id);
        let epoll = anon_sys::epoll_create().map_err(Error::io(format!("creating {what}")))?;
        anon::set_flags(epoll.as_fd(), e.flags, &what)?;
        let copy = epoll
            .try_clone()
            .map_err(Error::host("copying an epoll instance"))?;
        self.pending.push(Pending {
            fd,
            epoll: copy,
            tfds: e.tfd.clone(),
        });
        Ok(epoll)
    }

    /// Whether an epoll instance made has targets still to register.
    pub fn has_pending_targets(&self) -> bool {
        self.pending.iter().any(|p| !p.tfds.is_empty())
    }

    /// Registers the targets of the epoll instances opened for process
    /// `pid`, whose fds are `fds` (number, close-on-exec, open file).
    pub fn register(&mut self, pid: u32, fds: &[files::FdSource]) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let Some(top) = pending.iter().flat_map(|p| p.tfds.iter().map(key)).max() else {
            return Ok(());
        };
        let top = i32::try_from(top).map_err(|_| {
            Error::invalid(ImageFile::Files.name(), format!("epoll target fd {top}"))
        })?;
        let above = |f: &OwnedFd| {
            crate::sys::dup_above(f.as_fd(), top + 1)
                .map_err(Error::host("moving an fd out of the way"))
        };
        // The copies the helper works on, above every number it places
        // a target at.
        let mut held = Vec::new();
        let mut adds = Vec::new();
        let mut about = Vec::new();
        for p in &pending {
            let epoll = above(&p.epoll)?;
            for t in &p.tfds {
                let src = fds
                    .iter()
                    .find(|(n, _, _)| i64::from(*n) == i64::from(t.tfd))
                    .ok_or_else(|| {
                        Error::unsupported(format!(
                            "restoring fd {} of process {pid} with an epoll target fd {} the process does not hold before it runs",
                            p.fd, t.tfd
                        ))
                    })?;
                let src = above(&src.2)?;
                adds.push(EpollAdd {
                    epfd: epoll.as_raw_fd(),
                    src: src.as_raw_fd(),
                    key: key(t) as i32,
                    events: t.events,
                    data: t.data,
                });
                about.push((p.fd, t.tfd, key(t)));
                held.push(src);
            }
            held.push(epoll);
        }
        match anon_sys::epoll_add_at(&adds) {
            Ok(Ok(())) => Ok(()),
            Ok(Err((i, source))) => {
                let (fd, tfd, key) = about[i];
                Err(Error::Io {
                    what: format!(
                        "registering fd {tfd} (as fd {key}) in the epoll instance of fd {fd} of process {pid}"
                    ),
                    source,
                })
            }
            Err(e) => Err(Error::host("running the epoll registration helper")(e)),
        }
    }
}

/// Refuses, without making anything, an epoll instance of `fdinfo`'s
/// process whose target is no fd of the process.
pub fn check(
    pid: u32,
    fd: u32,
    e: &pb::EventpollFileEntry,
    fdinfo: &[pb::FdinfoEntry],
) -> Result<()> {
    for t in &e.tfd {
        if !fdinfo.iter().any(|f| f.fd == t.tfd) {
            return Err(Error::invalid(
                ImageFile::Files.name(),
                format!(
                    "the epoll instance of fd {fd} of process {pid} has target fd {}, which the process does not hold",
                    t.tfd
                ),
            ));
        }
    }
    Ok(())
}
