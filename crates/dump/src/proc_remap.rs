//! /proc remaps: a file in the /proc directory of a process that has
//! ended (a cwd left in `/proc/PID` after PID died, an fd on
//! `/proc/PID/status`). As CRIU 4.2, the file's entry keeps its path (its
//! " (deleted)" suffix stripped), and `remap-fpath.img` gets one
//! `PROCFS` entry per ended process (`remap_id` is its pid, `orig_id` the
//! first file found in its directory): the restore makes a process with
//! that pid while it opens such files, then ends it.

use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use rcriu_images::pb;
use rcriu_proc::Pid;

use std::os::unix::fs::MetadataExt;

use crate::files::{FileInfo, task_root};
use crate::{Error, Result};

/// procfs's `f_type`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// The pid whose /proc directory `path` lies in (`/proc/PID` or below),
/// its " (deleted)" suffix stripped.
fn pid_in(path: &[u8]) -> Option<Pid> {
    let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
    let rest = path.strip_prefix(b"/proc/")?;
    let digits = rest.split(|&b| b == b'/').next()?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse::<Pid>()
        .ok()
        .filter(|&p| p > 0)
}

/// The pid of the ended process in whose /proc directory the file of
/// `info` (open as `file` by process `pid`) lies, when it is such a file:
/// on procfs, under `/proc/N`, and no `/proc/N` left in the process's
/// root.
pub fn dead_pid(pid: Pid, info: &FileInfo, file: BorrowedFd<'_>) -> Option<Pid> {
    let dead = pid_in(info.path.as_os_str().as_bytes())?;
    let on_proc = rustix::fs::fstatfs(file).is_ok_and(|s| s.f_type == PROC_SUPER_MAGIC);
    if !on_proc {
        return None;
    }
    let dir = task_root(pid).join(format!("proc/{dead}"));
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(dead),
        _ => None,
    }
}

/// Refuses a /proc remap the restore could not make: one of ended
/// process `dead` when process `pid` is in another pid namespace than
/// rcriu's (the restore makes the standing-in process in its own).
pub fn check_restorable(pid: Pid, what: &str, dead: Pid) -> Result<()> {
    let ns = |p: &str| std::fs::metadata(format!("/proc/{p}/ns/pid")).map(|m| m.ino());
    match (ns("self"), ns(&pid.to_string())) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        _ => Err(Error::unsupported(
            pid,
            format!(
                "{what} in the /proc directory of ended process {dead} of a pid namespace other than rcriu's (a /proc remap is made in rcriu's pid namespace only)"
            ),
        )),
    }
}

/// The file's facts as its entry gives them: its path without " (deleted)".
pub fn named(info: &FileInfo) -> FileInfo {
    let mut named = info.clone();
    named.path = crate::link_remap::strip_deleted(&info.path);
    named
}

/// The ended processes seen so far, each remapped once.
#[derive(Debug, Default)]
pub struct Dead(Vec<Pid>);

impl Dead {
    /// The remap entry of file `id`, in the directory of ended process
    /// `dead`, when it is the first such file of that process.
    pub fn remap(&mut self, id: u32, dead: Pid) -> Option<pb::RemapFilePathEntry> {
        if self.0.contains(&dead) {
            return None;
        }
        self.0.push(dead);
        Some(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id: dead as u32,
            remap_type: Some(pb::RemapType::Procfs as i32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_of_proc_paths() {
        assert_eq!(pid_in(b"/proc/2595 (deleted)"), Some(2595));
        assert_eq!(pid_in(b"/proc/2595"), Some(2595));
        assert_eq!(pid_in(b"/proc/2595/status"), Some(2595));
        assert_eq!(pid_in(b"/proc/self/status"), None);
        assert_eq!(pid_in(b"/proc/kmsg"), None);
        assert_eq!(pid_in(b"/proc/0"), None);
        assert_eq!(pid_in(b"/proc/"), None);
        assert_eq!(pid_in(b"/tmp/proc/12"), None);
        assert_eq!(pid_in(b"/proc/12x/status"), None);
    }

    #[test]
    fn one_remap_per_process() {
        let mut d = Dead::default();
        let e = d.remap(6, 2595).unwrap();
        assert_eq!((e.orig_id, e.remap_id), (6, 2595));
        assert_eq!(e.remap_type, Some(pb::RemapType::Procfs as i32));
        assert!(d.remap(9, 2595).is_none());
        assert!(d.remap(9, 2596).is_some());
    }
}
