//! eventfds: made again with their counter (written into a new eventfd,
//! whose creation takes only 32 bits), counting as a semaphore when the
//! dump says so (rcriu's `rcriu_semaphore`), with their flags.

use std::os::fd::{AsFd, OwnedFd};

use rcriu_images::pb;

use crate::{Error, Result, anon, anon_sys};

pub fn open(e: &pb::EventfdFileEntry) -> Result<OwnedFd> {
    let what = || format!("eventfd {:#x}", e.id);
    let fd = anon_sys::eventfd(e.rcriu_semaphore == Some(true))
        .map_err(|err| Error::io(format!("creating {}", what()))(err))?;
    if e.counter != 0 {
        // The kernel takes at most u64::MAX - 1; a larger count is a
        // corrupt image, which the write refuses (EINVAL).
        rustix::io::write(&fd, &e.counter.to_ne_bytes())
            .map_err(|err| Error::io(format!("setting the counter of {}", what()))(err.into()))?;
    }
    anon::set_flags(fd.as_fd(), e.flags, &what())?;
    Ok(fd)
}
