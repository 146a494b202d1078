//! /proc remaps (`PROCFS` entries of `remap-fpath.img`): files that lay
//! in the /proc directory of a process that had ended at the dump (a cwd
//! left in `/proc/PID`, an fd on `/proc/PID/status`). As CRIU 4.2, a
//! process is made with that pid while the files are opened by their
//! paths, then killed and reaped: the restored files are in the /proc
//! directory of an ended process again. Only in rcriu's own pid
//! namespace, and only for a pid no restored process has; anything else
//! is refused by name before anything starts.

use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::Pid;

use crate::{Error, Result, sys};

/// The pids of the ended processes the images remap /proc files to,
/// checked: `tree` holds the restored pids, `own_pid_ns` says whether
/// they live in rcriu's pid namespace.
pub fn load(dir: &ImageDir, tree: &[u32], own_pid_ns: bool) -> Result<Vec<Pid>> {
    if !dir.exists(ImageFile::RemapFpath) {
        return Ok(Vec::new());
    }
    let name = ImageFile::RemapFpath.name();
    let mut dead = Vec::new();
    for r in dir.read_all::<pb::RemapFilePathEntry>(ImageFile::RemapFpath)? {
        if r.remap_type != Some(pb::RemapType::Procfs as i32) {
            continue;
        }
        let pid = Pid::try_from(r.remap_id)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                Error::invalid(
                    &name,
                    format!("file {} is remapped to process {}", r.orig_id, r.remap_id),
                )
            })?;
        if tree.contains(&r.remap_id) {
            return Err(Error::invalid(
                &name,
                format!(
                    "file {} is remapped to ended process {pid}, which is also a restored process",
                    r.orig_id
                ),
            ));
        }
        if !own_pid_ns {
            return Err(Error::unsupported(format!(
                "restoring file {}, in the /proc directory of ended process {pid} of a pid namespace of the restore's own (a /proc remap is made in rcriu's pid namespace only)",
                r.orig_id
            )));
        }
        if !dead.contains(&pid) {
            dead.push(pid);
        }
    }
    Ok(dead)
}

/// The processes standing for ended ones while files are opened: killed
/// and reaped by [`Helpers::end`], or when dropped (a failed restore).
#[derive(Debug, Default)]
pub struct Helpers(Vec<Pid>);

impl Helpers {
    /// Makes a process of each pid of `dead`.
    pub fn make(dead: &[Pid]) -> Result<Helpers> {
        let mut h = Helpers::default();
        for &pid in dead {
            let p = sys::fork_waiting_as(pid).map_err(Error::io(format!(
                "making process {pid} for the files of its /proc directory (a /proc remap; is the pid taken?)"
            )))?;
            h.0.push(p);
        }
        Ok(h)
    }

    /// Kills and reaps them.
    pub fn end(&mut self) -> Result<()> {
        while let Some(pid) = self.0.pop() {
            crate::anon_sys::kill_and_reap(pid).map_err(Error::io(format!(
                "ending process {pid}, made for a /proc remap"
            )))?;
        }
        Ok(())
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            log::warn!("{e}");
        }
    }
}
