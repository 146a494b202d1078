//! criu's `--unprivileged`: a caller that is not root, running a copy of
//! rcriu given CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE as file
//! capabilities, dumps and restores its own processes and nothing else.
//!
//! Those two capabilities would let rcriu trace anyone's process and
//! choose the pids it restores: so rcriu itself holds its caller to what
//! the caller could do without them. A process is the caller's when each
//! of its threads has the caller's uids and gids (real, effective, saved
//! and filesystem alike) and supplementary groups, holds no capability
//! (permitted, effective, inheritable or ambient), drops none from its
//! bounding set that the caller has, and has the caller's securebits.
//! The dump refuses any other process before it is seized and again once
//! it is frozen; the restore refuses images whose credentials say
//! otherwise, before anything starts. The checks name the process or the
//! image, the id that differs, and the caller's.

use rcriu_images::pb;
use rcriu_proc::Status;
use rcriu_proc::{Pid, Task};

use crate::{Error, Result};

/// The credentials of rcriu's caller: what an unprivileged dump or
/// restore must not go beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Sorted.
    pub groups: Vec<u32>,
    /// The bounding set (rcriu's is its caller's: file capabilities do not
    /// change it).
    pub cap_bnd: u64,
    pub secbits: u32,
}

impl Caller {
    /// This process's caller: its real ids (an exec with file capabilities
    /// keeps them), its groups, its bounding set and securebits.
    pub fn me() -> Result<Caller> {
        let me = std::process::id() as Pid;
        let status = Task::open(me)
            .and_then(|mut t| t.status())
            .map_err(|e| Error::unsupported(format!("reading rcriu's own credentials ({e})")))?;
        let mut groups = status.groups.clone();
        groups.sort_unstable();
        Ok(Caller {
            uid: status.uid.real,
            gid: status.gid.real,
            groups,
            cap_bnd: status.cap_bnd,
            secbits: securebits(),
        })
    }

    /// Why process `pid` (its `/proc/PID/status` read as `s`) is not the
    /// caller's to dump, if it is not.
    pub fn refuses_process(&self, s: &Status) -> Option<String> {
        let ids = |i: &rcriu_proc::Ids| [i.real, i.effective, i.saved, i.fs];
        let mut groups = s.groups.clone();
        groups.sort_unstable();
        self.differs(Seen {
            uids: ids(&s.uid),
            gids: ids(&s.gid),
            groups: &groups,
            caps: [s.cap_prm, s.cap_eff, s.cap_inh, s.cap_amb.unwrap_or(0)],
            cap_bnd: s.cap_bnd,
            secbits: None,
        })
    }

    /// Refuses the dump of `pid` unless it is the caller's (see the
    /// module's documentation).
    pub fn admit_process(&self, pid: Pid) -> Result<()> {
        let s = Task::open(pid)
            .and_then(|mut t| t.status())
            .map_err(|e| Error::unsupported(format!("reading the credentials of {pid} ({e})")))?;
        match self.refuses_process(&s) {
            Some(why) => Err(refused(&format!("dumping process {pid}"), &why, self)),
            None => Ok(()),
        }
    }

    /// Refuses the credentials `c` of thread `tid` in image `file` unless
    /// they are the caller's; `what` says what is being done.
    pub fn admit_creds(&self, what: &str, c: Option<&pb::CredsEntry>) -> Result<()> {
        let Some(c) = c else {
            return Err(refused(
                what,
                "it has no credentials in its image, and would keep rcriu's capabilities",
                self,
            ));
        };
        let words = |w: &[u32]| -> u64 {
            w.iter()
                .take(2)
                .enumerate()
                .fold(0, |a, (i, x)| a | u64::from(*x) << (32 * i))
                | if w.len() > 2 && w[2..].iter().any(|&x| x != 0) {
                    u64::MAX
                } else {
                    0
                }
        };
        let mut groups = c.groups.clone();
        groups.sort_unstable();
        let why = self.differs(Seen {
            uids: [c.uid, c.euid, c.suid, c.fsuid],
            gids: [c.gid, c.egid, c.sgid, c.fsgid],
            groups: &groups,
            caps: [
                words(&c.cap_prm),
                words(&c.cap_eff),
                words(&c.cap_inh),
                words(&c.cap_amb),
            ],
            cap_bnd: words(&c.cap_bnd),
            secbits: Some(c.secbits),
        });
        match why {
            Some(why) => Err(refused(what, &why, self)),
            None => Ok(()),
        }
    }

    fn differs(&self, s: Seen<'_>) -> Option<String> {
        const IDS: [&str; 4] = ["real", "effective", "saved", "filesystem"];
        for (kind, ids, mine) in [("uid", s.uids, self.uid), ("gid", s.gids, self.gid)] {
            if let Some(i) = ids.iter().position(|&x| x != mine) {
                return Some(format!("its {} {kind} is {}", IDS[i], ids[i]));
            }
        }
        if s.groups != self.groups.as_slice() {
            return Some(format!("its supplementary groups are {:?}", s.groups));
        }
        const CAPS: [&str; 4] = ["permitted", "effective", "inheritable", "ambient"];
        if let Some(i) = s.caps.iter().position(|&c| c != 0) {
            return Some(format!(
                "it holds {} capabilities ({:#x})",
                CAPS[i], s.caps[i]
            ));
        }
        // All the caps this kernel knows are in the caller's set; one the
        // process keeps that the caller has not would need CAP_SETPCAP to
        // give back, one it dropped is fine only if the caller dropped it.
        if s.cap_bnd & self.cap_bnd != self.cap_bnd {
            return Some(format!(
                "its bounding set ({:#x}) lacks capabilities the caller's has",
                s.cap_bnd
            ));
        }
        if let Some(b) = s.secbits
            && b != self.secbits
        {
            return Some(format!("its securebits are {b:#x}"));
        }
        None
    }
}

/// What is compared with the caller's.
struct Seen<'a> {
    uids: [u32; 4],
    gids: [u32; 4],
    groups: &'a [u32],
    /// Permitted, effective, inheritable, ambient.
    caps: [u64; 4],
    cap_bnd: u64,
    secbits: Option<u32>,
}

fn refused(what: &str, why: &str, me: &Caller) -> Error {
    Error::NotCallers {
        what: what.to_owned(),
        why: why.to_owned(),
        uid: me.uid,
        gid: me.gid,
        groups: me.groups.clone(),
    }
}

/// This process's securebits (none when they cannot be read: then any
/// image's that has some is refused).
fn securebits() -> u32 {
    rustix::thread::capabilities_secure_bits().map_or(0, |b| b.bits())
}

/// Refuses the images of `tree` unless every thread of every process
/// has the caller's credentials.
pub(crate) fn admit_images(me: &Caller, tree: &crate::load::TreeImages) -> Result<()> {
    for p in &tree.procs {
        for (tid, core) in &p.task.cores {
            let file = rcriu_images::ImageFile::Core((*tid).into()).name();
            let creds = core.thread_core.as_ref().and_then(|t| t.creds.as_ref());
            me.admit_creds(&format!("restoring thread {tid} ({file})"), creds)?;
        }
    }
    Ok(())
}
