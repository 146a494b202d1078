//! inotify instances: an `inotify_file_entry` in files.img with every
//! watch (`inotify_wd_entry`: descriptor, mask, inode, device and file
//! handle), as CRIU 4.2 writes it. Each watched file is found again by
//! its handle (through a mount of its filesystem) and its path written
//! in the handle's entry, as CRIU does: tmpfs keeps no inode numbers
//! across mounts, and the path is what a restore elsewhere can use.
//!
//! A watch on a file with no link left is written with its handle alone
//! (as CRIU writes it): such a file lives on only while something holds
//! it, and the dump must hold it as a ghost too (an fd, a mapping of the
//! tree), which the restore makes again and watches (CRIU looks the
//! ghost up by device and inode the same way); one no ghost holds is
//! refused by name once every file is seen ([`crate::files::Files`]).
//! A watch whose file no path names any more for another reason (moved
//! or replaced) is refused by name.
//!
//! Events queued and not read at the dump are not kept: the dump says so
//! and goes on, as CRIU does.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rcriu_images::pb;
use rcriu_proc::{FdInfoKind, InotifyWatch, Pid};
use rcriu_restore::fhandle;

use crate::files::OpenFd;
use crate::{Error, Result};

pub fn entry(pid: Pid, id: u32, f: &OpenFd, fown: pb::FownEntry) -> Result<pb::InotifyFileEntry> {
    let watches: &[InotifyWatch] = match &f.fdinfo.kind {
        FdInfoKind::Inotify(w) => w,
        // No watch: no line.
        FdInfoKind::Plain => &[],
        _ => return Err(crate::anon::no_lines(pid, f.fd, "an inotify instance")),
    };
    warn_queued(pid, f, "inotify");
    let mut wd = Vec::with_capacity(watches.len());
    for w in watches {
        let what = || format!("fd {}: an inotify watch ({})", f.fd, w.wd);
        let path = match deleted(w.sdev, w.handle.handle_type, &w.handle.handle) {
            true => None,
            false => Some(watched_path(
                pid,
                w.sdev,
                w.ino,
                w.handle.handle_type,
                &w.handle.handle,
                &what,
            )?),
        };
        wd.push(pb::InotifyWdEntry {
            // CRIU leaves it 0 (its entries sit inside their inotify's).
            id: 0,
            i_ino: w.ino,
            mask: w.mask,
            ignored_mask: w.ignored_mask,
            s_dev: w.sdev,
            wd: w.wd as u32,
            f_handle: handle_entry(w.handle.bytes, w.handle.handle_type, &w.handle.handle, path),
        });
    }
    Ok(pb::InotifyFileEntry {
        id,
        flags: f.flags(),
        fown,
        wd,
    })
}

/// Says so when events wait to be read on `f` (an inotify or fanotify
/// instance): they are not dumped.
pub(crate) fn warn_queued(pid: Pid, f: &OpenFd, kind: &str) {
    if let Ok(n) = rustix::io::ioctl_fionread(f.file.as_fd())
        && n > 0
    {
        log::warn!(
            "process {pid}: fd {}: {n} bytes of {kind} events queued are dropped (as CRIU does)",
            f.fd
        );
    }
}

/// An `fh_entry` for a handle of `bytes` bytes, with the file's path
/// when it has one.
pub(crate) fn handle_entry(
    bytes: u32,
    handle_type: i32,
    handle: &[u8],
    path: impl Into<Option<PathBuf>>,
) -> pb::FhEntry {
    pb::FhEntry {
        bytes,
        r#type: handle_type as u32,
        handle: fhandle::words(handle),
        path: path.into().map(|p| p.into_os_string().into_encoded_bytes()),
        mnt_id: None,
    }
}

/// Whether the file of a handle on device `sdev` has no link left (its
/// handle opens it while something holds it).
fn deleted(sdev: u32, handle_type: i32, handle: &[u8]) -> bool {
    fhandle::open(sdev, handle_type, handle)
        .ok()
        .and_then(|f| rustix::fs::fstat(&f).ok())
        .is_some_and(|st| st.st_nlink == 0)
}

/// The watches of an inotify entry on files with no link left: (watch
/// descriptor, device in the kernel's encoding, inode).
pub fn on_deleted(e: &pb::InotifyFileEntry) -> Vec<(u32, u32, u64)> {
    e.wd.iter()
        .filter(|w| w.f_handle.path.is_none())
        .map(|w| (w.wd, w.s_dev, w.i_ino))
        .collect()
}

/// The path of the file of a handle on device `sdev` (fdinfo's
/// encoding), checked to name inode `ino` still.
pub(crate) fn watched_path(
    pid: Pid,
    sdev: u32,
    ino: u64,
    handle_type: i32,
    handle: &[u8],
    what: &dyn Fn() -> String,
) -> Result<PathBuf> {
    let f = fhandle::open(sdev, handle_type, handle).map_err(|e| {
        Error::unsupported(
            pid,
            format!(
                "{} on inode {ino} of device {sdev:#x}, which its handle no longer opens ({e})",
                what()
            ),
        )
    })?;
    let path =
        fhandle::path_of(&f).map_err(Error::file(pid, format!("/proc/self/fd of {}", what())))?;
    let (major, minor) = fhandle::kernel_dev(sdev);
    let named = path.as_os_str().as_bytes().first() == Some(&b'/')
        && std::fs::metadata(&path).is_ok_and(|m| {
            m.ino() == ino
                && (rustix::fs::major(m.dev()), rustix::fs::minor(m.dev())) == (major, minor)
        });
    if !named {
        return Err(Error::unsupported(
            pid,
            format!(
                "{} on {}, whose path no longer names it (removed or replaced)",
                what(),
                path.display()
            ),
        ));
    }
    Ok(path)
}
