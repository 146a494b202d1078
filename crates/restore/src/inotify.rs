//! inotify instances: made again with their flags, then each watch added
//! again in the order of its watch descriptor, with the descriptor it had
//! (`INOTIFY_IOC_SETNEXTWD`) and its mask, on the file the image names:
//! a ghost of the dump that was that device and inode (a file with no
//! link left, made again by [`crate::ghost`], as CRIU looks it up), else
//! by path when it has one (as CRIU 4.2 writes them), else by file
//! handle through a mount of the file's filesystem ([`fhandle`]).
//!
//! The mask keeps the events and the two flags the kernel keeps with a
//! watch, IN_ONESHOT and IN_EXCL_UNLINK (CRIU 4.2 drops them); the flags
//! that only steer adding it (IN_DONT_FOLLOW, IN_ONLYDIR, IN_MASK_ADD,
//! IN_MASK_CREATE) are dropped: the file is already found. Events queued
//! at the dump are not in the images (CRIU drops them too).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rcriu_images::{ImageFile, pb};

use crate::{Error, Result, anon, anon_sys, fhandle};

/// What a watch keeps of the mask it was added with.
const KEPT: u32 = libc::IN_ALL_EVENTS | libc::IN_ONESHOT | libc::IN_EXCL_UNLINK;

fn files_error(what: String) -> Error {
    Error::invalid(ImageFile::Files.name(), what)
}

/// Refuses, without making anything, an instance whose watches a
/// restore could not add: no path nor handle, or one descriptor twice.
pub fn check(e: &pb::InotifyFileEntry) -> Result<()> {
    let mut wds: Vec<u32> = e.wd.iter().map(|w| w.wd).collect();
    wds.sort_unstable();
    if let Some(w) = wds.windows(2).find(|w| w[0] == w[1]) {
        return Err(files_error(format!(
            "inotify {:#x} has watch {} twice",
            e.id, w[0]
        )));
    }
    for w in &e.wd {
        if w.wd == 0 || w.wd > i32::MAX as u32 {
            return Err(files_error(format!(
                "inotify {:#x} has watch descriptor {}",
                e.id, w.wd
            )));
        }
        if w.f_handle.path.is_none() && fhandle::bytes(&w.f_handle).is_none() {
            return Err(files_error(format!(
                "inotify {:#x}: watch {} has neither a path nor a handle",
                e.id, w.wd
            )));
        }
    }
    Ok(())
}

/// Opens (`O_PATH`) the file a mark's handle entry names.
pub fn open_target(fh: &pb::FhEntry, s_dev: u32, what: &str) -> Result<OwnedFd> {
    if let Some(path) = &fh.path {
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(path));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&path)
            .map_err(Error::file("opening the file watched by", &path))?;
        return Ok(f.into());
    }
    let bytes = fhandle::bytes(fh).ok_or_else(|| files_error(format!("{what}: a bad handle")))?;
    fhandle::open(s_dev, fh.r#type as i32, &bytes).map_err(Error::io(format!(
        "opening the file of {what} by its handle"
    )))
}

/// Makes inotify `e`; `on_ghosts` holds, by watch descriptor, the ghost
/// made again that a watch watches.
pub fn open(e: &pb::InotifyFileEntry, on_ghosts: &BTreeMap<u32, PathBuf>) -> Result<OwnedFd> {
    check(e)?;
    let what = format!("inotify {:#x}", e.id);
    let flags = libc::IN_CLOEXEC | (e.flags as i32 & libc::IN_NONBLOCK);
    let fd = anon_sys::inotify_init(flags).map_err(Error::io(format!("creating {what}")))?;
    let mut watches: Vec<&pb::InotifyWdEntry> = e.wd.iter().collect();
    watches.sort_by_key(|w| w.wd);
    for w in watches {
        let about = format!("watch {} of {what}", w.wd);
        let target = match on_ghosts.get(&w.wd) {
            Some(p) => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(p)
                .map_err(Error::file("opening the ghost watched by", p))?
                .into(),
            None => open_target(&w.f_handle, w.s_dev, &about)?,
        };
        anon_sys::inotify_set_next_wd(fd.as_fd(), w.wd as i32).map_err(Error::io(format!(
            "numbering {about} (INOTIFY_IOC_SETNEXTWD)"
        )))?;
        let got = anon_sys::inotify_add_watch(fd.as_fd(), target.as_fd(), w.mask & KEPT)
            .map_err(Error::io(format!("adding {about}")))?;
        if got != w.wd as i32 {
            return Err(Error::Io {
                what: format!("adding {about}"),
                source: std::io::Error::other(format!("the kernel numbered it {got}")),
            });
        }
    }
    anon::set_flags(fd.as_fd(), e.flags, &what)?;
    Ok(fd)
}
