//! pidfds: a `pidfd_entry` in files.img, as CRIU 4.2 writes it: the
//! pidfs inode (what tells pidfds of one process apart), the flags
//! (PIDFD_NONBLOCK) and the pid in the process's own namespace, -1 for a
//! process that has ended and been reaped. A pidfd of a process outside
//! the dumped tree is refused by name (as CRIU: nothing would bring that
//! process back), and so is a pidfd of a thread (PIDFD_THREAD, which CRIU
//! refuses too), and one held in or of a process of a pid namespace
//! nested in a container's.

use rcriu_images::pb;
use rcriu_proc::{FdInfoKind, Pid};

use crate::files::OpenFd;
use crate::{Error, Result};

/// `PIDFD_THREAD`, shown among a pidfd's flags as O_EXCL.
const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// The entry of pidfd `f` of process `pid`; `tree` holds the pids of the
/// dumped tree (the process itself when empty).
pub fn entry(
    pid: Pid,
    id: u32,
    f: &OpenFd,
    fown: pb::FownEntry,
    tree: &[Pid],
) -> Result<pb::PidfdEntry> {
    let FdInfoKind::Pidfd { pid: of, ns_pid } = &f.fdinfo.kind else {
        return Err(crate::anon::no_lines(pid, f.fd, "a pidfd"));
    };
    let refuse = |what: String| Error::unsupported(pid, format!("fd {}: {what}", f.fd));
    if f.flags() & PIDFD_THREAD != 0 {
        return Err(refuse("a pidfd of a thread (PIDFD_THREAD)".into()));
    }
    if *of != -1 && *of != pid && !tree.contains(of) {
        return Err(refuse(format!(
            "a pidfd of process {of}, which is not in the dump"
        )));
    }
    // Pid namespaces nested in a container's (pids at more than the
    // host's and the container's levels): not restored with pidfds yet.
    let holder_levels = rcriu_proc::Task::open(pid)
        .and_then(|mut t| t.status())
        .map_err(Error::proc(pid))?
        .ns_pid
        .len();
    if ns_pid.len() > 2 || holder_levels > 2 {
        return Err(refuse(
            "a pidfd held in or of a process of a nested pid namespace (not restored yet)".into(),
        ));
    }
    let nspid = ns_pid.last().copied().unwrap_or(*of);
    Ok(pb::PidfdEntry {
        id,
        ino: f.fdinfo.ino.unwrap_or(f.info.ino) as u32,
        flags: f.flags() & !(libc::O_RDWR as u32),
        nspid,
        fown,
    })
}
