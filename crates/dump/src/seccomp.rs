//! `seccomp.img`: the filters of the tree. CRIU 4.2 writes it for every
//! dump, with one entry, empty when no task has a filter; rcriu dumps no
//! task with seccomp (refused before the dump starts).

use rcriu_images::pb;
use rcriu_proc::{Pid, SeccompMode, Status};

use crate::{Error, Result};

pub fn entry() -> pb::SeccompEntry {
    pb::SeccompEntry::default()
}

/// Refuses a task in seccomp mode (strict or filter).
pub fn check(pid: Pid, status: &Status) -> Result<()> {
    match status.seccomp {
        None | Some(SeccompMode::Disabled) => Ok(()),
        Some(SeccompMode::Strict) => Err(Error::unsupported(pid, "seccomp (strict mode)")),
        Some(SeccompMode::Filter) => Err(Error::unsupported(
            pid,
            format!(
                "a seccomp filter ({} installed)",
                status.seccomp_filters.unwrap_or(1)
            ),
        )),
        Some(SeccompMode::Other(n)) => Err(Error::unsupported(pid, format!("seccomp mode {n}"))),
    }
}
