//! A container's mount tree made again from `mountpoints-<id>.img`, in
//! the namespace holder's new mount namespace ([`crate::namespaces`]):
//!
//! 1. Before the holder leaves rcriu's root, every mount but the root and
//!    those of proc is made detached (`fsopen`/`fsmount`, or `open_tree`
//!    of the host path an external mount is given), and each tmpfs is
//!    filled from its `tmpfs-dev-<dev>.tar.gz.img` (in-process, where CRIU
//!    runs GNU tar).
//! 2. The root is `--root` bound on itself; the holder pivots into it and
//!    drops rcriu's tree; each mount is attached at its mount point,
//!    parents first, then given its flags.
//! 3. Once the pid namespace's init exists, proc is mounted for that
//!    namespace (`pidns`), then the mounts under it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rcriu_images::{ImageDir, ImageFile, pb};
use rustix::fs::CWD;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use crate::{Error, Result};

const PROC: u32 = 1;
const SYSFS: u32 = 2;
const TMPFS: u32 = 5;
const DEVPTS: u32 = 6;
const MQUEUE: u32 = 14;
const MS_RDONLY: u32 = 1;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The mount tree of the images, parents first, with what the restore
/// is told of external mounts.
#[derive(Debug, Clone)]
pub struct MntTree {
    pub entries: Vec<pb::MntEntry>,
    /// The image it came from, to name in errors.
    pub image: String,
}

impl MntTree {
    /// Orders the entries parents first and checks that the restore can
    /// make each one.
    pub fn new(mut entries: Vec<pb::MntEntry>, image: String) -> Result<MntTree> {
        let ids: Vec<u32> = entries.iter().map(|e| e.mnt_id).collect();
        let roots: Vec<&pb::MntEntry> = entries
            .iter()
            .filter(|e| !ids.contains(&e.parent_mnt_id))
            .collect();
        if roots.len() != 1 || roots[0].mountpoint != b"/" {
            return Err(Error::invalid(
                image,
                format!("{} mounts without a parent, not one root at /", roots.len()),
            ));
        }
        let depth = |e: &pb::MntEntry| {
            let mut d = 0;
            let mut cur = e.parent_mnt_id;
            while let Some(p) = entries.iter().find(|p| p.mnt_id == cur) {
                d += 1;
                cur = p.parent_mnt_id;
                if d > entries.len() {
                    break;
                }
            }
            d
        };
        let depths: Vec<(u32, usize)> = entries.iter().map(|e| (e.mnt_id, depth(e))).collect();
        if depths.iter().any(|&(_, d)| d > entries.len()) {
            return Err(Error::invalid(image, "a loop of parent mounts"));
        }
        entries.sort_by_key(|e| {
            let d = depths
                .iter()
                .find(|(i, _)| *i == e.mnt_id)
                .map_or(0, |x| x.1);
            (d, e.mnt_id)
        });
        for e in &entries[1..] {
            let ok = e.ext_key.is_some()
                || match e.fstype {
                    PROC => true,
                    SYSFS | TMPFS | DEVPTS | MQUEUE if e.root == b"/" => true,
                    // A pty slave bound elsewhere (runc's /dev/console).
                    DEVPTS => pty_of(&e.root).is_some(),
                    _ => false,
                };
            if !ok {
                return Err(Error::unsupported(format!(
                    "restoring mount {} ({} of type {} at {}) of {image}",
                    e.mnt_id,
                    text(&e.source),
                    e.fstype,
                    text(&e.mountpoint)
                )));
            }
        }
        Ok(MntTree { entries, image })
    }

    /// Whether mount `e` is proc or lies under a proc mount (made once the
    /// pid namespace exists).
    fn under_proc(&self, e: &pb::MntEntry) -> bool {
        let mut cur = Some(e);
        while let Some(m) = cur {
            if m.fstype == PROC && m.ext_key.is_none() {
                return true;
            }
            cur = self.entries.iter().find(|p| p.mnt_id == m.parent_mnt_id);
        }
        false
    }
}

/// The mounts made detached before the pivot, by index in the tree.
#[derive(Debug, Default)]
pub struct Prepared {
    mounts: Vec<(usize, OwnedFd)>,
    /// In a user namespace of the tree's own: rcriu's mount namespace,
    /// where proc is made (the kernel refuses a new proc in a mount
    /// namespace of another user namespace that shows no proc whole, as
    /// the container's does once its root is pivoted).
    pub outside: Option<OwnedFd>,
    /// And the container's mount namespace, to come back to.
    pub inside: Option<OwnedFd>,
    /// The ptys made for binds of their slaves: index, master.
    pub ptys: Vec<(u32, OwnedFd)>,
}

/// The index of the pty slave a bind of devpts from `root` (`/N`) is of.
fn pty_of(root: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(root.strip_prefix(b"/")?).ok()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A bind of the slave of pty `index` of the devpts mounted (detached) as
/// `devpts`: the pty is made there first (its master returned, unlocked),
/// as the slave exists only while a master does.
fn bind_pty(devpts: &OwnedFd, index: u32, mp: &str) -> Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    let master = crate::tty::ptmx_index_at(index, || {
        rustix::fs::openat(
            devpts,
            "ptmx",
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening the ptmx of the devpts of {mp}"))(e.into()))
    })?;
    crate::files_sys::set_pty_lock(master.as_fd(), false)
        .map_err(Error::io(format!("unlocking pty {index} for {mp}")))?;
    let bind = rustix::mount::open_tree(
        devpts,
        index.to_string().as_str(),
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| Error::io(format!("binding pty {index} for {mp}"))(e.into()))?;
    Ok((bind, master))
}

fn fs_context(name: &str, e: &pb::MntEntry) -> rustix::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(name, FsOpenFlags::FSOPEN_CLOEXEC)?;
    if !e.source.is_empty() {
        rustix::mount::fsconfig_set_string(&fs, "source", text(&e.source).as_str())?;
    }
    for o in text(&e.options).split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some((k, v)) => rustix::mount::fsconfig_set_string(&fs, k, v)?,
            None => rustix::mount::fsconfig_set_flag(&fs, o)?,
        }
    }
    // A tmpfs is filled first, and made read-only once attached.
    if e.sb_flags.unwrap_or(0) & MS_RDONLY != 0 && e.fstype != TMPFS {
        rustix::mount::fsconfig_set_flag(&fs, "ro")?;
    }
    Ok(fs)
}

fn new_mount(name: &str, e: &pb::MntEntry) -> rustix::io::Result<OwnedFd> {
    let fs = fs_context(name, e)?;
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
}

/// Fills the detached tmpfs `mount` from its tarball ([`crate::tmpfs`]);
/// in a user namespace of the tree's own (`userns`, open), GNU tar runs
/// there as its root, so that the owners the tarball names are the
/// tree's, as CRIU's.
fn fill_tmpfs(
    dir: &ImageDir,
    e: &pb::MntEntry,
    mount: &OwnedFd,
    userns: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let file = ImageFile::TmpfsDev(e.root_dev.into());
    let tarball = dir.open_raw(file)?;
    match userns {
        Some(ns) => {
            crate::tmpfs::fill_in_userns(tarball, &file.name(), mount, &text(&e.mountpoint), ns)
        }
        None => crate::tmpfs::fill(tarball, &file.name(), mount, &text(&e.mountpoint)),
    }
}

/// Step 1: every mount but the root and proc's, detached, tmpfs filled.
/// `ext` maps an external mount's key to its host path.
/// In a user namespace of the tree's own (`user`: it and its fd), the
/// mounts' `uid=`/`gid=` are given as rcriu sees them.
pub fn prepare(
    tree: &MntTree,
    dir: &ImageDir,
    ext: &[(String, String)],
    user: Option<(&crate::userns::UserNs, BorrowedFd<'_>)>,
) -> Result<Prepared> {
    let mut p = Prepared::default();
    for (i, e) in tree.entries.iter().enumerate().skip(1) {
        let mp = text(&e.mountpoint);
        let fd = if let Some(key) = &e.ext_key {
            let key = text(key);
            let Some((_, path)) = ext.iter().find(|(k, _)| *k == key) else {
                return Err(Error::unsupported(format!(
                    "restoring the external mount {mp} without the path of its key {key} (--external mnt[{key}]:PATH)"
                )));
            };
            rustix::mount::open_tree(
                CWD,
                path.as_str(),
                OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .map_err(|e| Error::file("binding the external mount", path.as_str())(e.into()))?
        } else if e.fstype == PROC || (e.fstype == DEVPTS && e.root != b"/") {
            // Made once the pid namespace exists; binds of a pty once its
            // devpts is (below).
            continue;
        } else {
            let name = match e.fstype {
                SYSFS => "sysfs",
                TMPFS => "tmpfs",
                DEVPTS => "devpts",
                _ => "mqueue",
            };
            let outside;
            let e = match user {
                Some((u, _)) => {
                    let mut o = e.clone();
                    o.options = u
                        .options(&text(&e.options))
                        .map_err(|why| Error::invalid(tree.image.clone(), why))?
                        .into_bytes();
                    outside = o;
                    &outside
                }
                None => e,
            };
            let fd = new_mount(name, e)
                .map_err(|err| Error::io(format!("mounting {name} for {mp}"))(err.into()))?;
            if e.fstype == TMPFS {
                fill_tmpfs(dir, e, &fd, user.map(|(_, f)| f))?;
            }
            fd
        };
        p.mounts.push((i, fd));
    }
    for (i, e) in tree.entries.iter().enumerate().skip(1) {
        let Some(index) = pty_of(&e.root).filter(|_| e.fstype == DEVPTS && e.ext_key.is_none())
        else {
            continue;
        };
        let mp = text(&e.mountpoint);
        let devpts = tree.entries.iter().position(|o| {
            o.fstype == DEVPTS && o.root == b"/" && o.root_dev == e.root_dev && o.ext_key.is_none()
        });
        let Some((_, fd)) = devpts.and_then(|j| p.mounts.iter().find(|(k, _)| *k == j)) else {
            return Err(Error::invalid(
                tree.image.clone(),
                format!(
                    "mount {} binds a pty of a devpts that is not mounted",
                    e.mnt_id
                ),
            ));
        };
        let (bind, master) = bind_pty(fd, index, &mp)?;
        p.mounts.push((i, bind));
        p.ptys.push((index, master));
    }
    Ok(p)
}

/// Step 2, first half: `root` bound on itself becomes the calling
/// thread's root (it must have a mount namespace of its own), rcriu's
/// tree detached.
pub fn pivot(root: &Path) -> Result<()> {
    let step = |what: &'static str| move |e: rustix::io::Errno| Error::host(what)(e.into());
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(step("making the new mount namespace private"))?;
    rustix::mount::mount_bind(root, root)
        .map_err(|e| Error::file("binding the root on itself", root)(e.into()))?;
    rustix::process::chdir(root).map_err(step("entering the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(step("pivot_root into the new root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(step("detaching rcriu's root"))?;
    rustix::process::chdir("/").map_err(step("entering the new root"))
}

/// Makes the mount point of `e` when it is missing (a directory, or a
/// file for a file's bind).
fn make_mount_point(e: &pb::MntEntry, src: &OwnedFd) -> Result<PathBuf> {
    let mp = PathBuf::from(text(&e.mountpoint));
    if std::fs::symlink_metadata(&mp).is_err() {
        let is_dir = rustix::fs::fstat(src).map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR);
        let made = if is_dir.unwrap_or(true) {
            std::fs::create_dir_all(&mp)
        } else {
            std::fs::File::create(&mp).map(drop)
        };
        made.map_err(Error::file("making the mount point", &mp))?;
    }
    Ok(mp)
}

fn attach(e: &pb::MntEntry, src: &OwnedFd) -> Result<()> {
    let mp = make_mount_point(e, src)?;
    rustix::mount::move_mount(
        src.as_fd(),
        "",
        CWD,
        &mp,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|err| Error::file("attaching the mount", &mp)(err.into()))
}

/// The flags of each mount of `which`, children first (a read-only
/// parent takes no new mount point after).
fn set_flags(tree: &MntTree, which: &[usize]) -> Result<()> {
    for &i in which.iter().rev() {
        let e = &tree.entries[i];
        let mp = PathBuf::from(text(&e.mountpoint));
        if e.fstype == TMPFS && e.ext_key.is_none() && e.sb_flags.unwrap_or(0) & MS_RDONLY != 0 {
            rustix::mount::mount_remount(&mp, MountFlags::RDONLY, text(&e.options).as_str())
                .map_err(|err| Error::file("making read-only the tmpfs", &mp)(err.into()))?;
        }
        let flags = MountFlags::from_bits_retain(e.flags) | MountFlags::BIND;
        rustix::mount::mount_remount(&mp, flags, "")
            .map_err(|err| Error::file("setting the flags of the mount", &mp)(err.into()))?;
    }
    Ok(())
}

/// Step 2, second half: what was prepared, attached in the new root.
pub fn attach_prepared(tree: &MntTree, p: &mut Prepared) -> Result<()> {
    let mut done = vec![0];
    for (i, e) in tree.entries.iter().enumerate().skip(1) {
        if tree.under_proc(e) {
            continue;
        }
        if let Some(at) = p.mounts.iter().position(|(j, _)| *j == i) {
            let (_, fd) = p.mounts.remove(at);
            attach(e, &fd)?;
            done.push(i);
        }
    }
    set_flags(tree, &done)
}

/// Runs `f` with the calling thread in mount namespace `ns` (when
/// given, with its own to come back to; its root and cwd are then that
/// namespace's root, as they are after the pivot).
fn in_mount_ns<T>(
    ns: Option<(&OwnedFd, &OwnedFd)>,
    f: impl FnOnce() -> rustix::io::Result<T>,
) -> rustix::io::Result<T> {
    let Some((ns, back)) = ns else {
        return f();
    };
    let mnt = Some(rustix::thread::LinkNameSpaceType::Mount);
    rustix::thread::move_into_link_name_space(ns.as_fd(), mnt)?;
    let r = f();
    rustix::thread::move_into_link_name_space(back.as_fd(), mnt)?;
    r
}

/// Step 3: proc for the pid namespace `pidns` (an fd of it), and the
/// mounts under it.
pub fn mount_proc(tree: &MntTree, p: &mut Prepared, pidns: &OwnedFd) -> Result<()> {
    let mut done = Vec::new();
    for (i, e) in tree.entries.iter().enumerate().skip(1) {
        // A nested pid namespace's is mounted once it exists.
        if !tree.under_proc(e) || e.pid_ns_init.is_some() {
            continue;
        }
        let mp = text(&e.mountpoint);
        let fd = if let Some(at) = p.mounts.iter().position(|(j, _)| *j == i) {
            p.mounts.remove(at).1
        } else if e.fstype == PROC && e.root == b"/" {
            let ns = p.outside.as_ref().zip(p.inside.as_ref());
            let made = fs_context("proc", e).and_then(|fs| {
                rustix::mount::fsconfig_set_fd(&fs, "pidns", pidns)?;
                rustix::mount::fsconfig_create(&fs)?;
                in_mount_ns(ns, || {
                    rustix::mount::fsmount(
                        &fs,
                        FsMountFlags::FSMOUNT_CLOEXEC,
                        MountAttrFlags::empty(),
                    )
                })
            });
            made.map_err(|err| Error::io(format!("mounting proc for {mp}"))(err.into()))?
        } else {
            // A bind of a directory of the container's proc.
            let Some(src) = tree
                .entries
                .iter()
                .find(|o| o.fstype == PROC && o.root == b"/" && o.root_dev == e.root_dev)
            else {
                return Err(Error::invalid(
                    tree.image.clone(),
                    format!("mount {} binds a proc that is not mounted", e.mnt_id),
                ));
            };
            let path = format!("{}{}", text(&src.mountpoint), text(&e.root));
            rustix::mount::open_tree(
                CWD,
                path.as_str(),
                OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .map_err(|err| Error::file("binding", path.as_str())(err.into()))?
        };
        attach(e, &fd)?;
        done.push(i);
    }
    set_flags(tree, &done)
}

/// Mounts the procs of pid namespaces nested in the container's, once
/// they exist: entry `i` of `tree` for the namespace open at its fd (the
/// dump refused anything mounted under or bound from one).
pub fn mount_nested_procs(tree: &MntTree, procs: &[(usize, OwnedFd)]) -> Result<()> {
    let mut done = Vec::new();
    for (i, pidns) in procs {
        let Some(e) = tree.entries.get(*i).filter(|e| e.fstype == PROC) else {
            return Err(Error::invalid(
                tree.image.clone(),
                format!("mount {i} is not a proc of a nested pid namespace"),
            ));
        };
        let mp = text(&e.mountpoint);
        let made = fs_context("proc", e).and_then(|fs| {
            rustix::mount::fsconfig_set_fd(&fs, "pidns", pidns)?;
            rustix::mount::fsconfig_create(&fs)?;
            rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        });
        let fd = made.map_err(|err| Error::io(format!("mounting proc for {mp}"))(err.into()))?;
        attach(e, &fd)?;
        done.push(*i);
    }
    set_flags(tree, &done)
}
