//! signalfds: a `signalfd_entry` in files.img with the signals it takes
//! (its mask as given to signalfd, which fdinfo shows), the file's flags
//! and owner, as CRIU 4.2 writes it. The signals pending for it are the
//! task's own, dumped with the task.

use rcriu_images::pb;
use rcriu_proc::{FdInfoKind, Pid};

use crate::Result;
use crate::anon::no_lines;
use crate::files::OpenFd;

pub fn entry(pid: Pid, id: u32, f: &OpenFd, fown: pb::FownEntry) -> Result<pb::SignalfdEntry> {
    let FdInfoKind::Signalfd { sigmask } = f.fdinfo.kind else {
        return Err(no_lines(pid, f.fd, "a signalfd"));
    };
    Ok(pb::SignalfdEntry {
        id,
        flags: f.flags(),
        fown,
        sigmask,
    })
}
