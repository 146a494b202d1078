//! Link remaps (criu's `--link-remap`): an open file that still has
//! links but that its path no longer names (opened, linked elsewhere,
//! then removed from where it was opened) gets a new hard link made at
//! dump time, `link_remap.<id>` in the directory of its old path (or the
//! nearest directory above that still exists), through rcriu's copy of
//! the fd (`linkat` with `AT_EMPTY_PATH`). A regular-file entry names the
//! link (`id`, the file entry's id plus one, as CRIU numbers it) and a
//! `remap_file_path_entry` of type LINKED ties the file's entry to it:
//! the restore opens the file through the link, so that it is the same
//! inode again, and removes the link.
//!
//! As CRIU: a file with no link left is a ghost, with `--link-remap` or
//! without ([`ghost`](crate::ghost)); without `--link-remap` a file that
//! would need a link is refused by name. The links are removed again when
//! the dump fails, or when the process runs on after it
//! (`--leave-running`, `--leave-stopped`, a post-dump action that
//! refuses): then the images name links that are gone, as CRIU's do. A
//! directory cannot be linked, and is refused.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rcriu_images::pb;
use rcriu_proc::Pid;

use crate::{Error, Result};

/// The name of the link made for file entry `id` (CRIU's).
pub fn link_name(id: u32) -> String {
    format!("link_remap.{id}")
}

/// The regular-file entry of link `id` at `at`, as CRIU writes it: its
/// name alone (no flags, position, owner, size or mode).
pub fn entry(id: u32, at: &Path) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(Box::new(pb::RegFileEntry {
            id,
            flags: 0,
            pos: 0,
            fown: pb::FownEntry {
                uid: 0,
                euid: 0,
                signum: 0,
                pid_type: 0,
                pid: 0,
            },
            name: at.as_os_str().as_bytes().to_vec(),
            mnt_id: None,
            size: None,
            ext: None,
            mode: None,
            build_id: Vec::new(),
            checksum: None,
            checksum_config: None,
            checksum_parameter: None,
        })),
        ..Default::default()
    }
}

/// The links made by a dump, removed when dropped unless kept.
#[derive(Debug, Default)]
pub struct Links {
    /// Each link: the root it was made under (the task's, open) and its
    /// path from there.
    made: Vec<(std::sync::Arc<OwnedFd>, PathBuf)>,
}

impl Links {
    /// Links `file` (file entry `orig_id`, whose path was `path` in the
    /// mount namespace whose root is `root`) as `link_remap.<link_id>`
    /// beside `path`, or in the nearest directory above it; returns the
    /// link's path in that namespace.
    pub fn link(
        &mut self,
        pid: Pid,
        root: &std::sync::Arc<OwnedFd>,
        file: &File,
        path: &Path,
        link_id: u32,
    ) -> Result<PathBuf> {
        let name = link_name(link_id);
        let rel = path.strip_prefix("/").unwrap_or(path);
        let mut dir = rel.parent().map(Path::to_owned).unwrap_or_default();
        loop {
            let at = dir.join(&name);
            // From the task's root: "." when the link goes at the top.
            let target: &Path = &at;
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, or a file the
            // caller opened itself (else ENOENT): an unprivileged rcriu
            // then links through the fd's /proc link. Its ENOENT says
            // the directory is gone.
            let linked = match rustix::fs::linkat(
                file.as_fd(),
                "",
                root.as_fd(),
                target,
                rustix::fs::AtFlags::EMPTY_PATH,
            ) {
                Err(rustix::io::Errno::PERM | rustix::io::Errno::NOENT) => rustix::fs::linkat(
                    rustix::fs::CWD,
                    format!("/proc/self/fd/{}", file.as_raw_fd()),
                    root.as_fd(),
                    target,
                    rustix::fs::AtFlags::SYMLINK_FOLLOW,
                ),
                r => r,
            };
            match linked {
                Ok(()) => {
                    log::info!(
                        "process {pid}: {} linked as /{} (a link remap)",
                        path.display(),
                        at.display()
                    );
                    self.made.push((root.clone(), at.clone()));
                    return Ok(Path::new("/").join(at));
                }
                // Its directory is gone too: one above (as CRIU).
                Err(rustix::io::Errno::NOENT) if dir.as_os_str() != OsStr::new("") => {
                    dir = dir.parent().map(Path::to_owned).unwrap_or_default();
                }
                Err(e) => {
                    return Err(Error::File {
                        pid,
                        path: Path::new("/").join(at),
                        source: std::io::Error::from(e),
                    });
                }
            }
        }
    }

    /// Whether a link was made.
    pub fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    /// The dump is complete and the process gone: the links stay, for
    /// the restore.
    pub fn keep(&mut self) {
        self.made.clear();
    }

    /// Removes the links made (a failed dump, or a process that runs on).
    pub fn remove_all(&mut self) {
        for (root, at) in self.made.drain(..) {
            match rustix::fs::unlinkat(root.as_fd(), &at, rustix::fs::AtFlags::empty()) {
                Ok(()) => log::info!("link remap /{} removed", at.display()),
                Err(e) => log::error!("cannot remove the link remap /{}: {e}", at.display()),
            }
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// The root of process `pid`'s mount namespace, open: rcriu's own when
/// it is the same namespace (where a chrooted task's fds show paths from
/// rcriu's root), else the task's.
pub fn task_root(pid: Pid) -> Result<OwnedFd> {
    let root = crate::files::task_root(pid);
    rustix::fs::open(
        &root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::file(pid, &root)(e.into()))
}

/// `path` without the ` (deleted)` the kernel adds to the name of a file
/// whose dentry was removed (it still has other links).
pub fn strip_deleted(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    match bytes.strip_suffix(b" (deleted)") {
        Some(p) => PathBuf::from(OsStr::from_bytes(p)),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_suffixes() {
        assert_eq!(link_name(7), "link_remap.7");
        assert_eq!(
            strip_deleted(Path::new("/a/b (deleted)")),
            PathBuf::from("/a/b")
        );
        assert_eq!(strip_deleted(Path::new("/a/b")), PathBuf::from("/a/b"));
    }

    #[test]
    fn links_go_up_and_are_removed() {
        let dir = std::env::temp_dir().join(format!("rcriu-lr-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let f = dir.join("sub/x");
        std::fs::write(&f, b"x").unwrap();
        let file = File::open(&f).unwrap();
        let root = std::sync::Arc::new(task_root(std::process::id() as Pid).unwrap());
        let mut links = Links::default();
        // Its directory gone: the link goes one above.
        let gone = dir.join("gone/x");
        let at = links.link(1, &root, &file, &gone, 3).unwrap();
        assert_eq!(at, dir.join("link_remap.3"));
        let at2 = links.link(1, &root, &file, &f, 4).unwrap();
        assert_eq!(at2, dir.join("sub/link_remap.4"));
        assert!(at.exists() && at2.exists());
        links.remove_all();
        assert!(!at.exists() && !at2.exists());
        // Kept: they stay.
        let at3 = links.link(1, &root, &file, &f, 5).unwrap();
        links.keep();
        drop(links);
        assert!(at3.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
