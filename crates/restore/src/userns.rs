//! A tree's user namespace of its own made again, as CRIU 4.2 makes it
//! from `userns-<id>.img`: a new user namespace first, its `uid_map` and
//! `gid_map` written from outside (one write each, the extents as the
//! image has them; `setgroups` left as the kernel makes it, as CRIU
//! does), then the tree's other namespaces made inside it, so that it
//! owns them. The root is born in it as its root there (uid and gid 0,
//! no groups, dumpable, as CRIU's root task makes itself), with its new
//! pid namespace; everything its restorer does, down to its own
//! credentials, is done in it. The mounts rcriu makes for it from outside
//! take their `uid=`/`gid=` as rcriu sees them, and tar fills its tmpfs
//! inside the namespace, as its root.
//!
//! A user namespace can be made or entered only by a process of one
//! thread, and rcriu has several: a helper process makes it (clone3 with
//! `CLONE_NEWUSER`), is given its maps, unshares the other kinds there,
//! and the namespace holder's thread joins those (root outside may
//! enter what the namespace owns) before the helper is killed. The pid
//! namespace cannot be joined before its init exists: a child of the
//! holder enters the user namespace and forks the root with it
//! (`sys::clone3_into_userns`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rcriu_images::pb;
use rcriu_proc::Pid;

use crate::{Error, Result, sys};

/// The tree's user namespace, from its image.
#[derive(Debug, Clone, Default)]
pub struct UserNs {
    pub entry: pb::UsernsEntry,
}

/// An id map as /proc/PID/uid_map takes it in one write.
pub fn map_text(map: &[pb::UidGidExtent]) -> String {
    map.iter()
        .map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count))
        .collect()
}

/// Id `id` of the namespace of `map`, as rcriu sees it.
fn outside(map: &[pb::UidGidExtent], id: u32) -> Option<u32> {
    map.iter()
        .find(|e| e.first <= id && (id - e.first) < e.count)
        .map(|e| e.lower_first + (id - e.first))
}

impl UserNs {
    /// Reads and checks `userns-<id>.img`.
    pub fn load(dir: &rcriu_images::ImageDir, id: u32) -> Result<UserNs> {
        let file = rcriu_images::ImageFile::Userns(id.into());
        let entry: pb::UsernsEntry = dir.read_one(file)?;
        for (what, map) in [("uid_map", &entry.uid_map), ("gid_map", &entry.gid_map)] {
            if map.is_empty() {
                return Err(Error::invalid(file.name(), format!("an empty {what}")));
            }
            // The kernel takes at most 340 lines, in one page.
            if map.len() > 340 || map_text(map).len() >= 4096 {
                return Err(Error::invalid(
                    file.name(),
                    format!(
                        "a {what} of {} extents, more than one write takes",
                        map.len()
                    ),
                ));
            }
        }
        Ok(UserNs { entry })
    }

    /// The tree's uid `id` as rcriu sees it (`None`: not mapped).
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        outside(&self.entry.uid_map, id)
    }

    /// The tree's gid `id` as rcriu sees it (`None`: not mapped).
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        outside(&self.entry.gid_map, id)
    }

    /// A mount's options with their `uid=` and `gid=` (the tree's) as
    /// rcriu, which mounts from outside, must give them.
    pub fn options(&self, opts: &str) -> std::result::Result<String, String> {
        opts.split(',')
            .map(|o| {
                for (key, map) in [("uid=", &self.entry.uid_map), ("gid=", &self.entry.gid_map)] {
                    if let Some(v) = o.strip_prefix(key)
                        && let Ok(id) = v.parse::<u32>()
                    {
                        return outside(map, id)
                            .map(|h| format!("{key}{h}"))
                            .ok_or_else(|| {
                                format!("mount option {o}: not mapped by the namespace")
                            });
                    }
                }
                Ok(o.to_owned())
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(|v| v.join(","))
    }
}

/// The calling thread acting as the namespace's root (its effective uid
/// and gid 0 there), until dropped: what the kernel lets only the owner
/// of a namespace write (the IPC sysctls) is written so, as CRIU writes
/// it from inside.
#[derive(Debug)]
pub struct AsRoot(());

impl AsRoot {
    pub fn enter(u: &UserNs) -> Result<AsRoot> {
        let (Some(uid), Some(gid)) = (outside(&u.entry.uid_map, 0), outside(&u.entry.gid_map, 0))
        else {
            return Err(Error::unsupported(
                "restoring a user namespace that does not map its root (uid and gid 0)",
            ));
        };
        if let Err(e) = sys::thread_effective_ids(uid, gid) {
            // The gid may have changed before the uid failed.
            let _ = sys::thread_effective_root();
            return Err(Error::host("acting as the user namespace's root")(e));
        }
        Ok(AsRoot(()))
    }
}

impl Drop for AsRoot {
    fn drop(&mut self) {
        if let Err(e) = sys::thread_effective_root() {
            log::error!("going back to root after acting as a user namespace's: {e}");
        }
    }
}

/// The namespaces made in a new user namespace, open.
#[derive(Debug)]
pub struct Made {
    pub user: OwnedFd,
    /// The others, each with its kind.
    pub others: Vec<(rustix::thread::LinkNameSpaceType, OwnedFd)>,
}

/// Makes the user namespace of `u` and, in it, new namespaces of the
/// kinds in `flags` (`CLONE_NEW*`).
pub fn make(u: &UserNs, flags: u64) -> Result<Made> {
    let (go_rd, go_wr) = rcriu_compel::sys::pipe().map_err(Error::host("creating a pipe"))?;
    let (ready_rd, ready_wr) = rcriu_compel::sys::pipe().map_err(Error::host("creating a pipe"))?;
    let helper = sys::fork_in_new_userns(go_rd.as_fd(), ready_wr.as_fd(), flags).map_err(
        Error::host("creating a user namespace (clone3 with CLONE_NEWUSER)"),
    )?;
    let made = fill(u, helper, go_wr, ready_rd, flags);
    let _ = rcriu_compel::sys::kill(helper, libc::SIGKILL);
    let _ = rcriu_compel::sys::wait(helper, 0);
    made
}

fn fill(u: &UserNs, helper: Pid, go: OwnedFd, ready: OwnedFd, flags: u64) -> Result<Made> {
    for (name, map) in [("uid_map", &u.entry.uid_map), ("gid_map", &u.entry.gid_map)] {
        let path = PathBuf::from(format!("/proc/{helper}/{name}"));
        let text = map_text(map);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(Error::file("writing the user namespace's map", &path))?;
        log::info!("user namespace: {name} {:?} written", text.trim_end());
    }
    std::fs::File::from(go)
        .write_all(&[1])
        .map_err(Error::host("telling the user namespace's helper to go on"))?;
    let mut b = [0u8; 4];
    std::fs::File::from(ready)
        .read_exact(&mut b)
        .map_err(Error::host("hearing from the user namespace's helper"))?;
    let err = i32::from_ne_bytes(b);
    if err != 0 {
        return Err(Error::host(
            "unsharing the namespaces in the new user namespace",
        )(std::io::Error::from_raw_os_error(err)));
    }
    let open = |name: &str| -> Result<OwnedFd> {
        let path = format!("/proc/{helper}/ns/{name}");
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(Error::file("opening", path))
    };
    use rustix::thread::LinkNameSpaceType as Kind;
    let mut others = Vec::new();
    for (flag, kind, name) in [
        (libc::CLONE_NEWNET, Kind::Network, "net"),
        (libc::CLONE_NEWUTS, Kind::HostNameAndNISDomainName, "uts"),
        (libc::CLONE_NEWIPC, Kind::InterProcessCommunication, "ipc"),
        (libc::CLONE_NEWNS, Kind::Mount, "mnt"),
    ] {
        if flags & flag as u64 != 0 {
            others.push((kind, open(name)?));
        }
    }
    Ok(Made {
        user: open("user")?,
        others,
    })
}

pub use sys::WorkDir;

/// Makes `cmd` run in `dir` and in user namespace `userns` as its root
/// (uid and gid 0), as CRIU runs tar for a tree in a user namespace of
/// its own.
pub fn exec_in_userns(cmd: &mut std::process::Command, dir: WorkDir, userns: OwnedFd) {
    sys::exec_in_userns(cmd, dir, userns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(first: u32, lower_first: u32, count: u32) -> pb::UidGidExtent {
        pb::UidGidExtent {
            first,
            lower_first,
            count,
        }
    }

    #[test]
    fn maps_and_options_go_back_outside() {
        let u = UserNs {
            entry: pb::UsernsEntry {
                uid_map: vec![ext(0, 100000, 65536)],
                gid_map: vec![ext(0, 100000, 10), ext(10, 300000, 5)],
            },
        };
        assert_eq!(map_text(&u.entry.gid_map), "0 100000 10\n10 300000 5\n");
        assert_eq!(
            u.options("size=65536k,mode=755,uid=0,gid=12").unwrap(),
            "size=65536k,mode=755,uid=100000,gid=300002"
        );
        assert!(u.options("gid=20").is_err());
        assert_eq!(u.options("mode=620").unwrap(), "mode=620");
    }
}
