//! What only a syscall in the task can tell and the parasite does not ask:
//! the program break and the membarrier registrations, asked with remote
//! syscalls before the parasite is loaded.

use rcriu_compel::{Remote, Seized, ThreadCtx};

use crate::{Error, Result};

const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// The answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Misc {
    pub brk: u64,
    pub membarrier: u32,
}

/// Asks the seized process's leader.
pub fn query(seized: &Seized, ctx: &ThreadCtx) -> Result<Misc> {
    let pid = seized.pid();
    let leader = seized.leader();
    let r = Remote::new(pid, leader, ctx).map_err(Error::compel(pid))?;
    let call = |name, nr: i64, args| r.syscall_ok(name, nr, args).map_err(Error::compel(pid));

    let brk = call("brk", libc::SYS_brk, [0; 6])?;

    // Kernels before 6.3 do not know the command: no registrations to
    // carry.
    let membarrier = r
        .syscall(
            libc::SYS_membarrier,
            [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0],
        )
        .map_err(Error::compel(pid))?;
    let membarrier = u32::try_from(membarrier).unwrap_or(0);
    Ok(Misc { brk, membarrier })
}
