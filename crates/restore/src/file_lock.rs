//! File locks and leases (`filelocks.img`, criu's `--file-locks`): OFD
//! locks belong to the open file description and show no owner: they are
//! taken here, on the open files the process inherits, once every fd of
//! the process is open. POSIX locks belong to the process itself, and
//! flocks and leases show the pid of who took them: the process takes
//! them, in the restorer, once its fds are placed (as CRIU takes them in
//! the restored task). A lease being broken is taken and broken again by
//! the restorer, as CRIU does (its lease signal pending when the process
//! runs).
//!
//! Without `--file-locks` the locks of the images are left untaken, as
//! criu leaves them, with a warning.

use std::os::fd::{AsFd, OwnedFd};

use rcriu_compel::abi::restorer::{self as abi, TakeLock};
use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result, anon_sys, files};

/// `file_lock_entry.flag`.
const FL_POSIX: u32 = 1;
const FL_FLOCK: u32 = 2;
const FL_OFD: u32 = 4;
const FL_LEASE: u32 = 8;
/// Added to a lease's type while it is being broken.
const LEASE_BREAKING: u32 = 4;

fn image_error(what: String) -> Error {
    Error::invalid(ImageFile::FileLocks.name(), what)
}

/// The locks of a restore.
#[derive(Debug, Default)]
pub struct Locks {
    entries: Vec<pb::FileLockEntry>,
}

/// Reads `filelocks.img`, when the dump has one.
pub fn read(dir: &ImageDir) -> Result<Vec<pb::FileLockEntry>> {
    if !dir.exists(ImageFile::FileLocks) {
        return Ok(Vec::new());
    }
    Ok(dir.read_all(ImageFile::FileLocks)?)
}

/// Refuses, without taking anything, locks a restore would not take: of
/// an unknown kind or type, or through an fd process `pid` does not hold
/// (`fds`).
pub fn check(entries: &[pb::FileLockEntry], pid: u32, fds: &[pb::FdinfoEntry]) -> Result<()> {
    for e in entries.iter().filter(|e| e.pid as u32 == pid) {
        if !fds.iter().any(|f| i64::from(f.fd) == i64::from(e.fd)) {
            return Err(image_error(format!(
                "a lock of process {pid} through fd {}, which it does not hold",
                e.fd
            )));
        }
        let plain = e.r#type == libc::F_RDLCK as u32 || e.r#type == libc::F_WRLCK as u32;
        match e.flag {
            FL_OFD | FL_POSIX | FL_FLOCK | FL_LEASE if plain => {}
            // Breaking toward a read lease or none.
            FL_LEASE
                if e.r#type == LEASE_BREAKING | libc::F_RDLCK as u32
                    || e.r#type == LEASE_BREAKING | libc::F_UNLCK as u32 => {}
            _ => {
                return Err(image_error(format!(
                    "a lock of kind {} and type {} through fd {} of process {pid}",
                    e.flag, e.r#type, e.fd
                )));
            }
        }
    }
    Ok(())
}

/// Refuses a lock whose owner is not a process of the dump (`tree`, the
/// pids as the images number them): no process would take it, and the
/// restore would go on without it.
pub fn check_owners(entries: &[pb::FileLockEntry], tree: &[u32]) -> Result<()> {
    match entries.iter().find(|e| !tree.contains(&(e.pid as u32))) {
        Some(e) => Err(image_error(format!(
            "a lock through fd {} of process {}, which is not one of the dump's",
            e.fd, e.pid
        ))),
        None => Ok(()),
    }
}

impl Locks {
    /// The locks of `dir`, taken when `enabled` (criu's `--file-locks`),
    /// each by a process of `tree` (the pids as the images number them).
    pub fn load(dir: &ImageDir, enabled: bool, tree: &[u32]) -> Result<Locks> {
        let entries = read(dir)?;
        check_owners(&entries, tree)?;
        if !enabled && !entries.is_empty() {
            log::warn!(
                "the images hold {} file locks, left untaken without --file-locks (as criu leaves them)",
                entries.len()
            );
            return Ok(Locks::default());
        }
        Ok(Locks { entries })
    }

    /// Takes the OFD locks of process `pid`, whose fds are `fds` (number,
    /// close-on-exec, open file), once all are open; returns the locks
    /// the process takes itself.
    pub fn take(&mut self, pid: u32, fds: &[files::FdSource]) -> Result<Vec<TakeLock>> {
        let mine: Vec<pb::FileLockEntry> = self
            .entries
            .iter()
            .filter(|e| e.pid as u32 == pid)
            .copied()
            .collect();
        if mine.is_empty() {
            return Ok(Vec::new());
        }
        let fdinfo: Vec<pb::FdinfoEntry> = fds
            .iter()
            .map(|(n, _, _)| pb::FdinfoEntry {
                fd: *n as u32,
                ..Default::default()
            })
            .collect();
        check(&mine, pid, &fdinfo)?;
        let mut by_process = Vec::new();
        for e in &mine {
            let kind = match e.flag {
                FL_POSIX => abi::LOCK_POSIX,
                FL_FLOCK => abi::LOCK_FLOCK,
                FL_LEASE => abi::LOCK_LEASE,
                _ => {
                    let (_, _, file) = fds
                        .iter()
                        .find(|(n, _, _)| *n == e.fd)
                        .expect("checked: the process holds the fd");
                    take_ofd(pid, e, file)?;
                    continue;
                }
            };
            by_process.push(TakeLock {
                fd: e.fd,
                kind,
                ltype: e.r#type,
                _pad: 0,
                start: e.start,
                len: e.len,
            });
        }
        Ok(by_process)
    }
}

fn take_ofd(pid: u32, e: &pb::FileLockEntry, file: &OwnedFd) -> Result<()> {
    anon_sys::ofd_lock(file.as_fd(), e.r#type as i16, e.start, e.len).map_err(Error::io(format!(
        "taking the OFD lock of process {pid} through fd {}",
        e.fd
    )))
}

/// What a lock the process takes is, for an error.
pub fn describe(l: &TakeLock) -> String {
    let t = if l.ltype == libc::F_WRLCK as u32 {
        "write"
    } else {
        "read"
    };
    match l.kind {
        abi::LOCK_POSIX => format!("fd {}'s POSIX {t} lock of [{}, +{})", l.fd, l.start, l.len),
        abi::LOCK_FLOCK => format!("fd {}'s {t} flock", l.fd),
        _ => format!("fd {}'s {t} lease", l.fd),
    }
}
