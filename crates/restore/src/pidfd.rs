//! pidfds. A pidfd of a live process of the tree (the process itself,
//! another one, a zombie) is opened by the restorer, once every process
//! of the tree exists ([`of_live`]). A pidfd of a process that had
//! ended (pid -1) is made of a child of rcriu's (as CRIU does): pidfds
//! are opened on it, then it is killed and reaped, once every pidfd of the same
//! dead process (the same pidfs inode in the images) is open, so that
//! they all refer to one process, as they did. A pidfd of a live process
//! outside the tree is refused by the check.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use rcriu_images::pb;

use crate::{Error, Result, anon, anon_sys};

/// The flags pidfd_open takes (PIDFD_NONBLOCK).
const PIDFD_FLAGS: u32 = libc::O_NONBLOCK as u32;

/// Refuses what a restore would refuse, without making anything; `tree`
/// holds the pids of the restored processes (zombies too).
pub fn check(pid: u32, fd: u32, e: &pb::PidfdEntry, tree: &[u32]) -> Result<()> {
    if e.nspid != -1 && e.nspid as u32 != pid && !tree.contains(&(e.nspid as u32)) {
        return Err(Error::unsupported(format!(
            "restoring fd {fd} of process {pid}, a pidfd of a live process outside the images ({})",
            e.nspid
        )));
    }
    if e.flags & !PIDFD_FLAGS != 0 {
        return Err(Error::unsupported(format!(
            "restoring fd {fd} of process {pid}, a pidfd with flags {:#o}",
            e.flags
        )));
    }
    Ok(())
}

/// The pidfd `entry` is, when it is one of a live process of `tree` (the
/// restored processes) or of process `pid` itself: what only the
/// restorer, once every process exists, can open.
pub fn of_live<'e>(entry: &'e pb::FileEntry, pid: u32, tree: &[u32]) -> Option<&'e pb::PidfdEntry> {
    entry.pidfd.as_deref().filter(|p| {
        entry.r#type == pb::FdTypes::Pidfd as i32
            && p.nspid != -1
            && (p.nspid as u32 == pid || tree.contains(&(p.nspid as u32)))
    })
}

/// `pidfd_open`'s flags for pidfd `e`.
pub fn open_flags(e: &pb::PidfdEntry) -> i32 {
    (e.flags & PIDFD_FLAGS) as i32
}

/// The pidfds of a restore.
#[derive(Debug, Default)]
pub struct Pidfds {
    /// pidfs inode of a dead process → the child that stands for it,
    /// reaped once every pidfd of it is open.
    dead: BTreeMap<u32, libc::pid_t>,
}

impl Pidfds {
    pub fn open(&mut self, pid: u32, fd: i32, e: &pb::PidfdEntry) -> Result<OwnedFd> {
        check(pid, fd as u32, e, &[])?;
        if e.nspid != -1 {
            // A live process's: the restorer opens it (files.rs).
            return Err(Error::unsupported(format!(
                "restoring fd {fd} of process {pid}, a pidfd of a live process, other than by the restorer"
            )));
        }
        let what = format!("the pidfd of fd {fd} of process {pid}");
        let child = match self.dead.get(&e.ino) {
            Some(c) => *c,
            None => {
                let c = anon_sys::fork_waiting()
                    .map_err(Error::io(format!("making a process for {what}")))?;
                self.dead.insert(e.ino, c);
                c
            }
        };
        let f = anon_sys::pidfd_open(child, e.flags & PIDFD_FLAGS)
            .map_err(Error::io(format!("opening {what}")))?;
        anon::set_flags(f.as_fd(), e.flags, &what)?;
        Ok(f)
    }

    /// Reaps the processes that stood for dead ones: their pidfds now
    /// refer to processes that have ended.
    pub fn finish(&mut self) -> Result<()> {
        for (_, c) in std::mem::take(&mut self.dead) {
            anon_sys::kill_and_reap(c)
                .map_err(Error::host("reaping a process made for a pidfd"))?;
        }
        Ok(())
    }
}

impl Drop for Pidfds {
    fn drop(&mut self) {
        for (_, c) in std::mem::take(&mut self.dead) {
            let _ = anon_sys::kill_and_reap(c);
        }
    }
}
