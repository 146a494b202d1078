//! fanotify instances: made again with the flags they were made with,
//! then each mark added again with its mask and its ignored mask and its
//! flags, on the file it names (by path, else by handle, as an inotify
//! watch's, [`inotify::open_target`]) or on the mount mounted where it
//! was (`FAN_MARK_MOUNT`). Events queued at the dump are not in the
//! images (CRIU drops them too).

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use rcriu_images::{ImageFile, pb};

use crate::{Error, Result, anon, anon_sys, inotify};

const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
/// The ignored mask of 6.0's kind (it applies to directories' events
/// too): added with this flag instead of FAN_MARK_IGNORED_MASK.
const FAN_MARK_IGNORE: u32 = 0x400;

fn files_error(what: String) -> Error {
    Error::invalid(ImageFile::Files.name(), what)
}

/// Refuses, without making anything, a mark a restore could not add.
pub fn check(e: &pb::FanotifyFileEntry) -> Result<()> {
    for m in &e.mark {
        match pb::MarkType::try_from(m.r#type) {
            Ok(pb::MarkType::Inode) if m.ie.is_some() => {}
            Ok(pb::MarkType::Mount) if m.me.as_ref().is_some_and(|me| me.path.is_some()) => {}
            _ => {
                return Err(files_error(format!(
                    "fanotify {:#x} has a mark of type {} without what it marks",
                    e.id, m.r#type
                )));
            }
        }
    }
    Ok(())
}

pub fn open(e: &pb::FanotifyFileEntry) -> Result<OwnedFd> {
    check(e)?;
    let what = format!("fanotify {:#x}", e.id);
    // The flags as they were (fdinfo shows FAN_CLOEXEC among them); the
    // fd rcriu holds is close-on-exec all the same.
    let fd = anon_sys::fanotify_init(e.faflags, e.evflags)
        .map_err(Error::io(format!("creating {what}")))?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
        .map_err(|err| Error::io(format!("creating {what}"))(err.into()))?;
    for (i, m) in e.mark.iter().enumerate() {
        let about = format!("mark {i} of {what}");
        let (target, kind) = match (&m.ie, &m.me) {
            (Some(ie), _) => (inotify::open_target(&ie.f_handle, m.s_dev, &about)?, 0),
            (None, Some(me)) => {
                let path = OsStr::from_bytes(me.path.as_deref().unwrap_or_default());
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(Error::file("opening the mount marked by", path))?;
                (OwnedFd::from(f), FAN_MARK_MOUNT)
            }
            (None, None) => unreachable!("checked above"),
        };
        let flags = FAN_MARK_ADD | kind | (m.mflags & !FAN_MARK_IGNORE);
        if m.mask != 0 {
            anon_sys::fanotify_mark(fd.as_fd(), flags, u64::from(m.mask), target.as_fd())
                .map_err(Error::io(format!("adding {about}")))?;
        }
        if m.ignored_mask != 0 {
            let ignore = if m.mflags & FAN_MARK_IGNORE != 0 {
                FAN_MARK_IGNORE
            } else {
                FAN_MARK_IGNORED_MASK
            };
            anon_sys::fanotify_mark(
                fd.as_fd(),
                flags | ignore,
                u64::from(m.ignored_mask),
                target.as_fd(),
            )
            .map_err(Error::io(format!("adding the ignored mask of {about}")))?;
        }
    }
    anon::set_flags(fd.as_fd(), e.flags, &what)?;
    Ok(fd)
}
