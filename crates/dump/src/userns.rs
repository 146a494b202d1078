//! A tree in a user namespace of its own, as CRIU 4.2 dumps it: the
//! root's user namespace, a child of rcriu's, with every process of the
//! tree in it and every other namespace of the tree's own owned by it,
//! goes to `userns-<id>.img` (its `uid_map` and `gid_map` extents, as
//! /proc shows them to rcriu). What the images say of users and groups
//! is said as the tree sees them: the credentials (read inside the
//! tasks), the login uid, the `uid=`/`gid=` options of its mounts and the
//! owners in its tmpfs tarballs (tar runs in the namespace, as root
//! there), the owners of its SysV IPC objects.
//!
//! Refused by name: a user namespace nested in another than rcriu's, a
//! namespace of the tree's that another user namespace owns, a user
//! namespace without a pid namespace of the tree's own (the restore
//! forks every process and thread from inside the namespace and gives
//! each its pids at the levels the namespace owns, its own pid
//! namespace's and those nested in it; the host's is the kernel's).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use rcriu_images::pb;
use rcriu_proc::{NsKind, Pid};

use crate::{Error, Result, sys};

/// What CRIU writes for an id the namespace does not map.
pub const INVALID_ID: u32 = u32::MAX;

/// The tree's user namespace.
#[derive(Debug, Clone, Default)]
pub struct UserNs {
    /// Its inode (`user:[INO]`).
    pub ino: u64,
    pub entry: pb::UsernsEntry,
}

/// An id map's lines (`/proc/PID/uid_map`: inside, outside, count).
pub fn parse_map(text: &str) -> std::result::Result<Vec<pb::UidGidExtent>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let v: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("line {}: {s:?} is not an id", n + 1))
        };
        match v.as_slice() {
            [] => continue,
            [a, b, c] => out.push(pb::UidGidExtent {
                first: num(a)?,
                lower_first: num(b)?,
                count: num(c)?,
            }),
            _ => return Err(format!("line {}: {line:?} is not three numbers", n + 1)),
        }
    }
    Ok(out)
}

/// Id `host` (as rcriu sees it) as the namespace of `map` sees it.
fn inside(map: &[pb::UidGidExtent], host: u32) -> u32 {
    map.iter()
        .find(|e| e.lower_first <= host && (host - e.lower_first) < e.count)
        .map_or(INVALID_ID, |e| e.first + (host - e.lower_first))
}

impl UserNs {
    /// A uid rcriu sees, as the tree sees it.
    pub fn uid(&self, host: u32) -> u32 {
        inside(&self.entry.uid_map, host)
    }

    /// A gid rcriu sees, as the tree sees it.
    pub fn gid(&self, host: u32) -> u32 {
        inside(&self.entry.gid_map, host)
    }

    /// A mount's options with their `uid=` and `gid=` as the tree sees
    /// them (CRIU prints an unmapped one as -1).
    pub fn options(&self, opts: &str) -> String {
        opts.split(',')
            .map(|o| {
                let conv = |v: &str, f: &dyn Fn(u32) -> u32| {
                    v.parse::<u32>().map(|id| (f(id) as i32).to_string()).ok()
                };
                if let Some(v) = o.strip_prefix("uid=")
                    && let Some(id) = conv(v, &|id| self.uid(id))
                {
                    return format!("uid={id}");
                }
                if let Some(v) = o.strip_prefix("gid=")
                    && let Some(id) = conv(v, &|id| self.gid(id))
                {
                    return format!("gid={id}");
                }
                o.to_owned()
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The namespace, open (tools run in it).
    pub fn open(&self, pid: Pid) -> Result<OwnedFd> {
        let path = format!("/proc/{pid}/ns/user");
        let f = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
        let ino = f.metadata().map_err(Error::file(pid, &path))?.ino();
        if ino != self.ino {
            return Err(Error::Inconsistent {
                pid,
                what: format!("its user namespace changed (now user:[{ino}])"),
            });
        }
        Ok(f.into())
    }
}

fn ino_of(pid: Pid, fd: &OwnedFd, what: &str) -> Result<u64> {
    rustix::fs::fstat(fd)
        .map(|s| s.st_ino)
        .map_err(|e| Error::file(pid, what)(e.into()))
}

/// Reads and checks the user namespace of the tree's root `pid`, whose
/// other namespaces of its own are `own`; `host` is rcriu's user
/// namespace inode; `members` are the tree's processes, with `threads`
/// threads in all.
pub fn collect(
    pid: Pid,
    host: u64,
    own: &[NsKind],
    members: &[Pid],
    threads: usize,
) -> Result<UserNs> {
    let path = format!("/proc/{pid}/ns/user");
    let user: OwnedFd = std::fs::File::open(&path)
        .map_err(Error::file(pid, &path))?
        .into();
    let ino = ino_of(pid, &user, &path)?;
    let parent = sys::ns_parent(user.as_fd())
        .map_err(|e| Error::file(pid, format!("the parent of {path} (NS_GET_PARENT)"))(e))?;
    let parent = ino_of(pid, &parent, "its user namespace's parent")?;
    if parent != host {
        return Err(Error::unsupported(
            pid,
            format!(
                "a user namespace nested in another (user:[{ino}], whose parent user:[{parent}] is not rcriu's)"
            ),
        ));
    }
    // As CRIU, the pid namespace is not asked (whoever owns it, the
    // restore makes it in the user namespace).
    for &kind in own
        .iter()
        .filter(|&&k| k != NsKind::User && k != NsKind::Pid)
    {
        let p = format!("/proc/{pid}/ns/{}", kind.file_name());
        let ns: OwnedFd = std::fs::File::open(&p)
            .map_err(Error::file(pid, &p))?
            .into();
        let owner = sys::ns_owner(ns.as_fd())
            .map_err(|e| Error::file(pid, format!("the owner of {p} (NS_GET_USERNS)"))(e))?;
        let owner = ino_of(pid, &owner, "a namespace's owner")?;
        if owner != ino {
            return Err(Error::unsupported(
                pid,
                format!(
                    "a {} namespace owned by user:[{owner}], not by its user namespace user:[{ino}]",
                    kind.file_name()
                ),
            ));
        }
    }
    // The restore gives the root its pid from inside the namespace,
    // which only a pid namespace of the tree's own allows.
    if !own.contains(&NsKind::Pid) {
        return Err(Error::unsupported(
            pid,
            "a user namespace of its own without a pid namespace of its own (its pid could not be given from inside)",
        ));
    }
    for &m in members {
        let p = format!("/proc/{m}/ns/user");
        let theirs = std::fs::metadata(&p).map_err(Error::file(m, &p))?.ino();
        if theirs != ino {
            return Err(Error::unsupported(
                m,
                format!("a user namespace nested in the tree's (user:[{theirs}] in user:[{ino}])"),
            ));
        }
    }
    log::debug!(
        "user namespace user:[{ino}]: {} processes, {threads} threads",
        members.len()
    );
    let read = |name: &str| -> Result<Vec<pb::UidGidExtent>> {
        let p = format!("/proc/{pid}/{name}");
        let text = std::fs::read_to_string(&p).map_err(Error::file(pid, &p))?;
        parse_map(&text).map_err(|why| Error::Inconsistent {
            pid,
            what: format!("reading {p}: {why}"),
        })
    };
    let entry = pb::UsernsEntry {
        uid_map: read("uid_map")?,
        gid_map: read("gid_map")?,
    };
    for (name, map) in [("uid_map", &entry.uid_map), ("gid_map", &entry.gid_map)] {
        log::info!("user namespace user:[{ino}] of {pid}: {name} {map:?}");
    }
    Ok(UserNs { ino, entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> UserNs {
        UserNs {
            ino: 1,
            entry: pb::UsernsEntry {
                uid_map: parse_map("         0     100000      65536\n").unwrap(),
                gid_map: parse_map("0 200000 10\n10 300000 5\n").unwrap(),
            },
        }
    }

    #[test]
    fn maps_parse_as_proc_prints_them() {
        let u = ns();
        assert_eq!(u.entry.uid_map.len(), 1);
        assert_eq!(u.entry.uid_map[0].lower_first, 100000);
        assert_eq!(u.entry.gid_map.len(), 2);
        assert!(parse_map("0 1\n").is_err());
        assert!(parse_map("0 x 1\n").is_err());
    }

    #[test]
    fn ids_as_the_tree_sees_them() {
        let u = ns();
        assert_eq!(u.uid(100000), 0);
        assert_eq!(u.uid(165535), 65535);
        assert_eq!(u.uid(165536), INVALID_ID);
        assert_eq!(u.uid(0), INVALID_ID);
        assert_eq!(u.gid(300004), 14);
        assert_eq!(
            u.options("size=65536k,mode=755,uid=100000,gid=200005"),
            "size=65536k,mode=755,uid=0,gid=5"
        );
        // Unmapped: -1, as CRIU prints it.
        assert_eq!(u.options("gid=5,mode=620"), "gid=-1,mode=620");
    }
}
