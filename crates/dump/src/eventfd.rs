//! eventfds: an `eventfd_file_entry` in files.img with the counter, the
//! file's flags (O_NONBLOCK) and owner, as CRIU 4.2 writes it. Whether
//! the eventfd counts as a semaphore (`EFD_SEMAPHORE`), which CRIU does
//! not keep, goes in the rcriu field `rcriu_semaphore`, written only when
//! set (the kernel shows it in fdinfo since Linux 6.6).

use rcriu_images::pb;
use rcriu_proc::{FdInfoKind, Pid};

use crate::Result;
use crate::anon::no_lines;
use crate::files::OpenFd;

pub fn entry(pid: Pid, id: u32, f: &OpenFd, fown: pb::FownEntry) -> Result<pb::EventfdFileEntry> {
    let FdInfoKind::Eventfd {
        count, semaphore, ..
    } = f.fdinfo.kind
    else {
        return Err(no_lines(pid, f.fd, "an eventfd"));
    };
    Ok(pb::EventfdFileEntry {
        id,
        flags: f.flags(),
        fown,
        counter: count,
        rcriu_semaphore: semaphore.filter(|s| *s),
    })
}
