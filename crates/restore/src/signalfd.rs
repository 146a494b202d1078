//! signalfds: made again with the signals they take and their flags. The
//! signals pending for them are the process's, restored with it.

use std::os::fd::{AsFd, OwnedFd};

use rcriu_images::pb;

use crate::{Error, Result, anon, anon_sys};

pub fn open(e: &pb::SignalfdEntry) -> Result<OwnedFd> {
    let what = format!("signalfd {:#x}", e.id);
    let fd = anon_sys::signalfd(e.sigmask).map_err(Error::io(format!("creating {what}")))?;
    anon::set_flags(fd.as_fd(), e.flags, &what)?;
    Ok(fd)
}
