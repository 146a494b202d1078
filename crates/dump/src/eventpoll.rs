//! epoll instances: an `eventpoll_file_entry` in files.img with every
//! registered target (`eventpoll_tfd_entry`: the fd number, the events
//! mask with EPOLLET/EPOLLONESHOT/EPOLLEXCLUSIVE/EPOLLWAKEUP as the kernel
//! keeps them, the data, and the target's device, inode and position),
//! in fdinfo's order, as CRIU 4.2 writes it.
//!
//! The kernel keys a registration by the file and the fd number it was
//! made under, and keeps it while the file lives: the fd may since have
//! been closed or given another file, the file held by another fd. Each
//! target is looked for in the process with `kcmp(KCMP_EPOLL_TFD)`:
//! first at its own number, then among the fds of the same inode. When
//! it lies elsewhere, `tfd` names the fd that holds it now (as CRIU
//! writes it, so that CRIU's restore registers that file) and the rcriu
//! field `rcriu_registered_fd` the number it was registered under (which
//! rcriu's restore registers it with again). A target no fd of the
//! process holds (kept alive by another process or a mapping) is
//! refused, naming both fds.
//!
//! An epoll instance in flight (sent over a unix socket, not received
//! yet: zdtm's scm05) is rcriu's copy alone; its targets are looked for
//! in the process whose socket holds it, rcriu's copy standing for the
//! instance (kcmp across the two). A dump of several processes refuses
//! one with targets: the restore registers them among the fds of the one
//! process.

use std::os::unix::fs::MetadataExt;

use rcriu_images::pb;
use rcriu_proc::{EpollTarget, FdInfoKind, Pid};

use crate::anon_sys::{self, EpollSlot};
use crate::files::OpenFd;
use crate::{Error, Result};

pub fn entry(
    pid: Pid,
    id: u32,
    f: &OpenFd,
    fown: pb::FownEntry,
    tree: &[Pid],
) -> Result<pb::EventpollFileEntry> {
    let targets: &[EpollTarget] = match &f.fdinfo.kind {
        FdInfoKind::Epoll(t) => t,
        // Nothing registered: no tfd line.
        FdInfoKind::Plain => &[],
        _ => return Err(crate::anon::no_lines(pid, f.fd, "an epoll instance")),
    };
    // In flight: the instance is rcriu's copy.
    let in_flight = f.fd < 0;
    let (holder_pid, efd) = if in_flight {
        (
            std::process::id() as Pid,
            std::os::fd::AsRawFd::as_raw_fd(&f.file),
        )
    } else {
        (pid, f.fd)
    };
    if in_flight && !targets.is_empty() && tree.len() > 1 {
        return Err(Error::unsupported(
            pid,
            format!(
                "an epoll instance in flight in a unix socket, with {} targets, in a dump of {} processes (rcriu registers them among the fds of a process alone)",
                targets.len(),
                tree.len()
            ),
        ));
    }
    let mut tfd = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        // The kernel tells targets of one number apart by their rank
        // among those, in the order fdinfo lists them.
        let toff = targets[..i].iter().filter(|o| o.tfd == t.tfd).count() as u32;
        let slot = EpollSlot {
            efd: efd as u32,
            tfd: t.tfd as u32,
            toff,
        };
        let holder = holder(pid, holder_pid, t, &slot)?.ok_or_else(|| {
            Error::unsupported(
                pid,
                format!(
                    "fd {}: an epoll instance whose target registered as fd {} is held by no fd of the process",
                    f.fd, t.tfd
                ),
            )
        })?;
        tfd.push(pb::EventpollTfdEntry {
            // CRIU leaves it 0 (its entries sit inside their epoll's).
            id: 0,
            tfd: holder as u32,
            events: t.events,
            data: t.data,
            dev: t.sdev,
            inode: t.ino,
            pos: t.pos.map(|p| p as u64),
            rcriu_registered_fd: (holder != t.tfd).then_some(t.tfd as u32),
        });
    }
    Ok(pb::EventpollFileEntry {
        id,
        flags: f.flags(),
        fown,
        tfd,
    })
}

/// The fd of process `pid` that holds the target of `slot` (whose
/// epoll instance process `epoll_pid` holds): its own number when it
/// still does, else the lowest fd of the same file.
fn holder(pid: Pid, epoll_pid: Pid, t: &EpollTarget, slot: &EpollSlot) -> Result<Option<i32>> {
    let cmp = |fd: i32| {
        anon_sys::is_epoll_target(pid, epoll_pid, fd, slot)
            .map_err(Error::sys("comparing an epoll target (kcmp)", pid))
    };
    if cmp(t.tfd)? {
        return Ok(Some(t.tfd));
    }
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<i32> = std::fs::read_dir(&dir)
        .map_err(Error::file(pid, &dir))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    for fd in fds {
        if fd == t.tfd {
            continue;
        }
        if let Some(ino) = t.ino {
            match std::fs::metadata(format!("{dir}/{fd}")) {
                Ok(m) if m.ino() == ino => {}
                _ => continue,
            }
        }
        if cmp(fd)? {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}
