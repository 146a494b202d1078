//! fanotify instances: a `fanotify_file_entry` in files.img with the
//! flags it was made with (`faflags`, `evflags`) and every mark, as CRIU
//! 4.2 writes them: a mark on an inode with its file handle and the path
//! it has now (found as an inotify watch's is, [`inotify`]), a mark on a
//! mount with the mount's id and where it is mounted. A mark on a whole
//! filesystem (`FAN_MARK_FILESYSTEM`), which CRIU's images cannot hold,
//! is refused by name. Events queued and not read are not kept (as
//! CRIU), the dump says so.

use rcriu_images::pb;
use rcriu_proc::{FanotifyMark, FdInfoKind, Pid, Task};
use rcriu_restore::fhandle;

use crate::files::OpenFd;
use crate::inotify::{handle_entry, warn_queued, watched_path};
use crate::{Error, Result};

pub fn entry(pid: Pid, id: u32, f: &OpenFd, fown: pb::FownEntry) -> Result<pb::FanotifyFileEntry> {
    let FdInfoKind::Fanotify {
        flags,
        event_flags,
        marks,
    } = &f.fdinfo.kind
    else {
        return Err(crate::anon::no_lines(pid, f.fd, "a fanotify instance"));
    };
    warn_queued(pid, f, "fanotify");
    let mut mounts = None;
    let mut mark = Vec::with_capacity(marks.len());
    for m in marks {
        mark.push(match m {
            FanotifyMark::Inode {
                ino,
                sdev,
                mflags,
                mask,
                ignored_mask,
                handle,
            } => {
                let what = || format!("fd {}: a fanotify mark", f.fd);
                let path =
                    watched_path(pid, *sdev, *ino, handle.handle_type, &handle.handle, &what)?;
                pb::FanotifyMarkEntry {
                    id: 0,
                    r#type: pb::MarkType::Inode as i32,
                    mflags: *mflags,
                    mask: *mask,
                    ignored_mask: *ignored_mask,
                    s_dev: *sdev,
                    ie: Some(pb::FanotifyInodeMarkEntry {
                        i_ino: *ino,
                        f_handle: handle_entry(handle.bytes, handle.handle_type, &handle.handle, path),
                    }),
                    me: None,
                }
            }
            FanotifyMark::Mount {
                mnt_id,
                mflags,
                mask,
                ignored_mask,
            } => {
                if mounts.is_none() {
                    let mut task = Task::open(pid).map_err(Error::proc(pid))?;
                    mounts = Some(task.mountinfo().map_err(Error::proc(pid))?);
                }
                let m = mounts
                    .iter()
                    .flatten()
                    .find(|m| m.mount_id as u32 == *mnt_id)
                    .ok_or_else(|| Error::Inconsistent {
                        pid,
                        what: format!("fd {}: a fanotify mark on mount {mnt_id}, which the process does not see", f.fd),
                    })?;
                pb::FanotifyMarkEntry {
                    id: 0,
                    r#type: pb::MarkType::Mount as i32,
                    mflags: *mflags,
                    mask: *mask,
                    ignored_mask: *ignored_mask,
                    s_dev: fhandle::kernel_dev_of(m.dev_major, m.dev_minor),
                    ie: None,
                    me: Some(pb::FanotifyMountMarkEntry {
                        mnt_id: *mnt_id,
                        path: Some(m.mount_point.clone().into_os_string().into_encoded_bytes()),
                    }),
                }
            }
            FanotifyMark::Superblock { sdev, .. } => {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "fd {}: a fanotify mark on the whole filesystem of device {sdev:#x} (FAN_MARK_FILESYSTEM), which CRIU's images cannot hold",
                        f.fd
                    ),
                ));
            }
        });
    }
    Ok(pb::FanotifyFileEntry {
        id,
        flags: f.flags(),
        fown,
        faflags: *flags,
        evflags: *event_flags,
        mark,
    })
}
