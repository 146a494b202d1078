//! A container's mount namespace: its mount tree as `mountpoints-<id>.img`
//! (one `mnt_entry` per mount, as CRIU 4.2 writes them) and the contents
//! of its tmpfs mounts as `tmpfs-dev-<dev>.tar.gz.img` (a gzip'd tar, as
//! CRIU makes with GNU tar).
//!
//! What the restore can mount again is taken; anything else is refused by
//! name: the root (a bind of `--root`), proc (and binds of its
//! directories), sysfs, tmpfs (with its contents), devpts (a new
//! instance), mqueue, and any mount the caller names as external
//! (`--external mnt[KEY]:VAL`, the RPC's `ext_mnt`), which the restore
//! binds from the path it is given. Shared or slave mounts and
//! overmounted ones are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcriu_images::{ImageFile, pb};
use rcriu_proc::{MountInfo, Pid, Task};

use crate::{Error, Result};

/// CRIU's `fstype` numbers (images/mnt.proto).
pub mod fstype {
    pub const UNSUPPORTED: u32 = 0;
    pub const PROC: u32 = 1;
    pub const SYSFS: u32 = 2;
    pub const DEVTMPFS: u32 = 3;
    pub const TMPFS: u32 = 5;
    pub const DEVPTS: u32 = 6;
    pub const CGROUP: u32 = 12;
    pub const MQUEUE: u32 = 14;
    pub const CGROUP2: u32 = 23;
}

/// The kernel's `MS_*` mount flags CRIU records per mount.
pub mod ms {
    pub const RDONLY: u32 = 1;
    pub const NOSUID: u32 = 2;
    pub const NODEV: u32 = 4;
    pub const NOEXEC: u32 = 8;
    pub const NOATIME: u32 = 0x400;
    pub const NODIRATIME: u32 = 0x800;
    pub const RELATIME: u32 = 0x20_0000;
    pub const STRICTATIME: u32 = 0x100_0000;
}

/// The mount tree of a container, ready to be written.
#[derive(Debug, Default)]
pub struct MntTree {
    /// In CRIU's order (mountinfo's, reversed).
    pub entries: Vec<pb::MntEntry>,
    /// The tmpfs mounts whose contents are saved: (device, mount point).
    pub tmpfs: Vec<(u32, PathBuf)>,
}

/// The kernel's device number encoding CRIU stores (`MKKDEV`).
pub fn kdev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

fn fs_number(name: &str) -> u32 {
    match name {
        "proc" => fstype::PROC,
        "sysfs" => fstype::SYSFS,
        "devtmpfs" => fstype::DEVTMPFS,
        "tmpfs" => fstype::TMPFS,
        "devpts" => fstype::DEVPTS,
        "cgroup" => fstype::CGROUP,
        "cgroup2" => fstype::CGROUP2,
        "mqueue" => fstype::MQUEUE,
        _ => fstype::UNSUPPORTED,
    }
}

/// The per-mount flags of mountinfo's per-mount options.
pub fn mount_flags(opts: &str) -> u32 {
    let mut f = 0;
    let mut atime = false;
    for o in opts.split(',') {
        f |= match o {
            "ro" => ms::RDONLY,
            "nosuid" => ms::NOSUID,
            "nodev" => ms::NODEV,
            "noexec" => ms::NOEXEC,
            "noatime" => {
                atime = true;
                ms::NOATIME
            }
            "nodiratime" => ms::NODIRATIME,
            "relatime" => {
                atime = true;
                ms::RELATIME
            }
            _ => 0,
        };
    }
    // Neither relatime nor noatime shown: strict atime.
    if !atime {
        f |= ms::STRICTATIME;
    }
    f
}

/// The superblock's options without `rw`/`ro` (in `sb_flags`), as CRIU
/// keeps them; a devpts mount is marked a new instance.
fn sb_options(m: &MountInfo) -> (u32, String) {
    let mut flags = 0;
    let mut kept: Vec<&str> = Vec::new();
    for o in m.super_options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= ms::RDONLY,
            "rw" => {}
            _ => kept.push(o),
        }
    }
    if m.fs_type == "devpts" {
        kept.push("newinstance");
    }
    (flags, kept.join(","))
}

/// The index of the pty slave a bind of devpts from `root` (`/N`) is of.
pub fn pty_of(root: &Path) -> Option<u32> {
    let s = root.to_str()?.strip_prefix('/')?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

/// Reads the mount tree of process `pid`'s mount namespace. `ext` maps a
/// mount point to the key the restore will be given for it.
pub fn collect(pid: Pid, ext: &[(String, String)]) -> Result<MntTree> {
    let mut task = Task::open(pid).map_err(Error::proc(pid))?;
    let mounts = task.mountinfo().map_err(Error::proc(pid))?;
    let refuse = |m: &MountInfo, why: &str| {
        Error::unsupported(
            pid,
            format!(
                "mount {} ({} at {}) {why}",
                m.mount_id,
                m.fs_type,
                m.mount_point.display()
            ),
        )
    };
    let roots: Vec<&MountInfo> = mounts
        .iter()
        .filter(|m| !mounts.iter().any(|p| p.mount_id == m.parent_id))
        .collect();
    if roots.len() != 1 || roots[0].mount_point != Path::new("/") {
        return Err(Error::unsupported(
            pid,
            format!(
                "a mount namespace of {} trees of mounts, not one under /",
                roots.len()
            ),
        ));
    }
    let root_id = roots[0].mount_id;
    let mut tree = MntTree::default();
    let mut tmpfs_devs: Vec<u32> = Vec::new();
    for m in mounts.iter().rev() {
        if mounts
            .iter()
            .any(|o| o.mount_point == m.mount_point && o.mount_id != m.mount_id)
        {
            return Err(refuse(
                m,
                "shares its mount point with another (overmounted)",
            ));
        }
        if m.shared.is_some() || m.master.is_some() || m.unbindable {
            return Err(refuse(
                m,
                "is shared, slave or unbindable (mount propagation is not restored yet)",
            ));
        }
        let mp = bytes(&m.mount_point);
        let ext_key = ext
            .iter()
            .find(|(k, _)| k.as_bytes() == mp)
            .map(|(_, v)| v.as_bytes().to_vec());
        let fstype = fs_number(&m.fs_type);
        let dev = kdev(m.dev_major, m.dev_minor);
        let at_root = m.root == Path::new("/");
        if m.mount_id == root_id {
            // The root: a bind of the directory the restore is given
            // (`--root`), whatever its filesystem.
        } else if ext_key.is_some() {
            // Bound again from what the restore is told.
        } else {
            match fstype {
                fstype::PROC => {
                    // The root of a proc, or a bind of one of its
                    // directories from the container's own proc.
                    if !at_root
                        && !mounts.iter().any(|o| {
                            o.fs_type == "proc"
                                && o.root == Path::new("/")
                                && (o.dev_major, o.dev_minor) == (m.dev_major, m.dev_minor)
                        })
                    {
                        return Err(refuse(
                            m,
                            "binds a proc that is not mounted in the container",
                        ));
                    }
                }
                fstype::SYSFS | fstype::DEVPTS | fstype::MQUEUE if at_root => {}
                fstype::DEVPTS if pty_of(&m.root).is_some() => {
                    // A pty slave bound elsewhere (runc's /dev/console for
                    // a container with a terminal): of the container's
                    // own devpts, made again with the pty.
                    if !mounts.iter().any(|o| {
                        o.fs_type == "devpts"
                            && o.root == Path::new("/")
                            && (o.dev_major, o.dev_minor) == (m.dev_major, m.dev_minor)
                    }) {
                        return Err(refuse(
                            m,
                            "binds a pty of a devpts that is not mounted in the container",
                        ));
                    }
                }
                fstype::TMPFS if at_root => {
                    if tmpfs_devs.contains(&dev) {
                        return Err(refuse(
                            m,
                            "is a second mount of a tmpfs (binds of a tmpfs are not restored yet)",
                        ));
                    }
                    tmpfs_devs.push(dev);
                    tree.tmpfs.push((dev, m.mount_point.clone()));
                }
                _ => {
                    return Err(refuse(
                        m,
                        "is not supported yet (name it external with --external mnt[PATH]:KEY)",
                    ));
                }
            }
        }
        let (sb_flags, options) = sb_options(m);
        tree.entries.push(pb::MntEntry {
            fstype,
            mnt_id: m.mount_id as u32,
            root_dev: dev,
            parent_mnt_id: m.parent_id as u32,
            flags: mount_flags(&m.mount_options),
            root: bytes(&m.root),
            mountpoint: mp,
            source: m.source.clone(),
            options: options.into_bytes(),
            shared_id: Some(0),
            master_id: Some(0),
            sb_flags: Some(sb_flags),
            ext_key,
            ..Default::default()
        });
    }
    Ok(tree)
}

/// Starts saving the contents of the tmpfs mounted at `mp` in process
/// `pid`'s mount namespace into `to` (a gzip'd tar, as CRIU writes it);
/// [`Tar::wait`] ends it. Several run side by side.
/// In a user namespace of the tree's own (`userns`, open), tar runs
/// there as its root, so that the owners it records are the tree's, as
/// CRIU's.
pub fn dump_tmpfs(
    pid: Pid,
    mp: &Path,
    to: std::fs::File,
    userns: Option<std::os::fd::OwnedFd>,
) -> Result<Tar> {
    let mut dir = Path::new(&format!("/proc/{pid}/root")).join(mp.strip_prefix("/").unwrap_or(mp));
    let mut cmd = Command::new("tar");
    if let Some(ns) = userns {
        // A copy of the mount alone: what its binds cover (the device
        // nodes a container in a user namespace binds from the host) is
        // the tmpfs's own, as CRIU's tar sees it.
        let p = format!("/proc/{pid}/ns/mnt");
        let mntns = std::fs::File::open(&p).map_err(Error::file(pid, &p))?;
        let path = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()).map_err(|_| {
            Error::Inconsistent {
                pid,
                what: format!("a mount point with a NUL byte: {}", mp.display()),
            }
        })?;
        let mine = "/proc/thread-self/ns/mnt";
        let back = std::fs::File::open(mine).map_err(Error::file(pid, mine))?;
        let at = rcriu_restore::userns::WorkDir::MountIn {
            mntns: mntns.into(),
            path,
            back: back.into(),
        };
        rcriu_restore::userns::exec_in_userns(&mut cmd, at, ns);
        dir = PathBuf::from(".");
    }
    let child = cmd
        .args([
            "--create",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--one-file-system",
            "--check-links",
            "--preserve-permissions",
            "--sparse",
            "--numeric-owner",
            "--directory",
        ])
        .arg(&dir)
        .arg(".")
        .stdin(Stdio::null())
        .stdout(to)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::file(pid, &dir))?;
    Ok(Tar {
        pid,
        mp: mp.to_owned(),
        child,
    })
}

/// A tar saving a tmpfs.
#[derive(Debug)]
pub struct Tar {
    pid: Pid,
    mp: PathBuf,
    child: std::process::Child,
}

impl Tar {
    /// Waits for it; an error when it failed.
    pub fn wait(mut self) -> Result<()> {
        let (pid, mp) = (self.pid, self.mp.display().to_string());
        let status = self
            .child
            .wait()
            .map_err(Error::file(pid, format!("tar of {mp}")))?;
        if !status.success() {
            return Err(Error::Inconsistent {
                pid,
                what: format!("tar of the tmpfs at {mp} failed: {status}"),
            });
        }
        Ok(())
    }
}

/// The file a tmpfs's contents go to.
pub fn tmpfs_image(dev: u32) -> ImageFile {
    ImageFile::TmpfsDev(dev.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_as_criu_records_them() {
        assert_eq!(mount_flags("rw,nosuid"), ms::NOSUID | ms::STRICTATIME);
        assert_eq!(mount_flags("rw,relatime"), ms::RELATIME);
        assert_eq!(
            mount_flags("ro,nosuid,nodev,noexec,relatime"),
            ms::RDONLY | ms::NOSUID | ms::NODEV | ms::NOEXEC | ms::RELATIME
        );
        assert_eq!(kdev(254, 0), 254 << 20);
        assert_eq!(kdev(0, 42), 42);
    }
}
