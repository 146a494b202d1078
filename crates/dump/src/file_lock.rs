//! File locks and leases (criu's `--file-locks`): each held through an
//! open file of the process (fdinfo's `lock:` lines) becomes a
//! `file_lock_entry` in `filelocks.img`, as CRIU 4.2 writes them: the
//! kind (`flag`: POSIX 1, flock 2, OFD 4, lease 8), the type (F_RDLCK,
//! F_WRLCK; a lease being broken adds 4 and shows what it breaks to),
//! the owner's pid, the fd it is held through, its start and length (0:
//! to the end of the file).
//!
//! A lock of an open file description (flock, OFD, lease) is noted once,
//! through the first fd of it seen; a POSIX lock is the process's own.
//! Without `--file-locks` a held lock is refused by name, as criu does.

use std::os::fd::AsFd;

use rcriu_images::pb;
use rcriu_proc::{FileLock, LockKind, LockState, LockType, Pid};

use crate::files::OpenFd;
use crate::{Error, Result, anon_sys};

/// `file_lock_entry.flag`: how the lock is owned.
pub const FL_POSIX: u32 = 1;
pub const FL_FLOCK: u32 = 2;
pub const FL_OFD: u32 = 4;
pub const FL_LEASE: u32 = 8;
/// Added to a lease's type while it is being broken.
pub const LEASE_BREAKING: u32 = 4;

/// The locks of a dump.
#[derive(Debug, Default)]
pub struct Locks {
    pub entries: Vec<pb::FileLockEntry>,
}

fn ltype(t: LockType) -> u32 {
    match t {
        LockType::Read => libc::F_RDLCK as u32,
        LockType::Write => libc::F_WRLCK as u32,
        LockType::Unlock => libc::F_UNLCK as u32,
    }
}

impl Locks {
    /// Notes the locks held through `f`, an fd of process `pid` and the
    /// first fd of its open file description; `allowed` is criu's
    /// `--file-locks`.
    pub fn note(&mut self, pid: Pid, f: &OpenFd, allowed: bool) -> Result<()> {
        if f.fdinfo.locks.is_empty() {
            return Ok(());
        }
        let path = f.info.path.display();
        let refuse = |what: String| Error::unsupported(pid, format!("fd {}: {what}", f.fd));
        if !allowed {
            return Err(refuse(format!(
                "a lock on {path} (dump it with --file-locks)"
            )));
        }
        for line in &f.fdinfo.locks {
            let l: FileLock = rcriu_proc::parse_lock(line).map_err(|e| Error::Inconsistent {
                pid,
                what: format!("fd {}: a lock line of fdinfo: {e}", f.fd),
            })?;
            let flag = match l.kind {
                LockKind::Posix => FL_POSIX,
                LockKind::Flock => FL_FLOCK,
                LockKind::Ofd => FL_OFD,
                LockKind::Lease => FL_LEASE,
                LockKind::Other => {
                    return Err(refuse(format!(
                        "a lock of an unknown kind on {path} ({})",
                        String::from_utf8_lossy(line)
                    )));
                }
            };
            let mut ltype = ltype(l.ltype);
            if l.kind == LockKind::Lease {
                match l.state {
                    LockState::Active => {}
                    LockState::Breaking => {
                        // What it breaks to, as F_GETLEASE tells it.
                        let to = anon_sys::lease(f.file.as_fd())
                            .map_err(Error::sys("reading a lease (F_GETLEASE)", pid))?
                            as u32;
                        ltype = to | LEASE_BREAKING;
                    }
                    _ => {
                        return Err(refuse(format!(
                            "a lease in an unknown state on {path} ({})",
                            String::from_utf8_lossy(line)
                        )));
                    }
                }
            }
            let len = match l.end {
                None => 0,
                Some(end) => end + 1 - l.start,
            };
            self.entries.push(pb::FileLockEntry {
                flag,
                r#type: ltype,
                pid,
                fd: f.fd,
                start: l.start,
                len,
            });
        }
        Ok(())
    }
}
