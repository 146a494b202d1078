//! What only a syscall in the task can tell and the parasite does not ask:
//! the program break, the address the kernel clears on exit
//! (`clear_child_tid`) and the membarrier registrations. Asked with remote
//! syscalls before the parasite is loaded; the one that needs memory to
//! write to gets a page of its own, unmapped right after.

use rcriu_compel::sys::process_vm_read;
use rcriu_compel::{Remote, Seized, ThreadCtx};

use crate::{Error, Result};

const PR_GET_TID_ADDRESS: u64 = 40;
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;
const PAGE: u64 = 4096;

/// The answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Misc {
    pub brk: u64,
    pub clear_tid_addr: u64,
    pub membarrier: u32,
}

/// Asks the seized process's leader.
pub fn query(seized: &Seized, ctx: &ThreadCtx) -> Result<Misc> {
    let pid = seized.pid();
    let leader = seized.leader();
    let r = Remote::new(pid, leader, ctx).map_err(Error::compel(pid))?;
    let call = |name, nr: i64, args| r.syscall_ok(name, nr, args).map_err(Error::compel(pid));

    let brk = call("brk", libc::SYS_brk, [0; 6])?;

    let page = call(
        "mmap",
        libc::SYS_mmap,
        [
            0,
            PAGE,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            // Shared: never merged with the task's own private memory.
            (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )?;
    let tid_addr = call(
        "prctl",
        libc::SYS_prctl,
        [PR_GET_TID_ADDRESS, page, 0, 0, 0, 0],
    )
    .and_then(|_| {
        let mut b = [0u8; 8];
        match process_vm_read(pid, page, &mut b) {
            Ok(8) => Ok(u64::from_le_bytes(b)),
            Ok(n) => Err(Error::Inconsistent {
                pid,
                what: format!("{n} bytes read of the tid address"),
            }),
            Err(e) => Err(Error::sys("reading the tid address", pid)(e)),
        }
    });
    let unmapped = call("munmap", libc::SYS_munmap, [page, PAGE, 0, 0, 0, 0]);
    let clear_tid_addr = tid_addr?;
    unmapped?;

    // Kernels before 6.3 do not know the command: no registrations to
    // carry.
    let membarrier = r
        .syscall(
            libc::SYS_membarrier,
            [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0],
        )
        .map_err(Error::compel(pid))?;
    let membarrier = u32::try_from(membarrier).unwrap_or(0);
    Ok(Misc {
        brk,
        clear_tid_addr,
        membarrier,
    })
}
