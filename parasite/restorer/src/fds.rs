//! The file descriptors, placed at their numbers.

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::value;
use rcriu_parasite_abi::restorer::{Args, FdMove};

use crate::{Res, array, ok};

pub fn place_fds(a: &Args) -> Res {
    // SAFETY: rcriu wrote `nr_fds` moves at `fds`, sorted by target, with
    // every source above every target.
    let moves: &[FdMove] = unsafe { array(a.fds, a.nr_fds) };
    for (i, m) in moves.iter().enumerate() {
        let flags = if m.cloexec != 0 { O_CLOEXEC } else { 0 };
        if m.from == m.to {
            let fl = if m.cloexec != 0 { FD_CLOEXEC } else { 0 };
            ok(value(NR_FCNTL, m.to as u64, F_SETFD, fl), i as u32)?;
        } else {
            ok(value(NR_DUP3, m.from as u64, m.to as u64, flags), i as u32)?;
        }
    }
    // Everything else goes: rcriu's fds, the sources, the pages file.
    let mut next = 0u64;
    for m in moves {
        let to = m.to as u64;
        if to > next {
            ok(value(NR_CLOSE_RANGE, next, to - 1, 0), to as u32)?;
        }
        next = to + 1;
    }
    ok(value(NR_CLOSE_RANGE, next, u32::MAX as u64, 0), u32::MAX)?;
    Ok(())
}
