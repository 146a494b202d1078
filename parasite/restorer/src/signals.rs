//! Pending signals, queued again with their siginfo, in their order: the
//! process's (`rt_sigqueueinfo`) and a thread's own (`rt_tgsigqueueinfo`).

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, call, value};
use rcriu_parasite_abi::restorer::SIGINFO_SIZE;

use crate::{Res, array, ok};

/// Queues the `n` siginfos at `ptr` to the process, or to its thread
/// `tid` when there is one.
pub fn queue(ptr: u64, n: u64, tid: Option<i32>) -> Res {
    // SAFETY: rcriu wrote `n` siginfos at `ptr`, in the region.
    let infos: &[[u8; SIGINFO_SIZE]] = unsafe { array(ptr, n) };
    let pid = value(NR_GETPID, 0, 0, 0) as u64;
    for (i, info) in infos.iter().enumerate() {
        let signo = i32::from_le_bytes([info[0], info[1], info[2], info[3]]) as u64;
        // SAFETY: the kernel reads one siginfo_t.
        let r = unsafe {
            match tid {
                Some(tid) => call(NR_RT_TGSIGQUEUEINFO, pid, tid as u64, signo, addr(info)),
                None => call(NR_RT_SIGQUEUEINFO, pid, signo, addr(info), 0),
            }
        };
        ok(r, i as u32)?;
    }
    Ok(())
}
