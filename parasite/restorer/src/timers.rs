//! POSIX timers, created with their ids once the threads exist (a timer
//! may signal one of them), and every timer armed at the very end, as
//! CRIU does, so that none fires while the process is being built.

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, addr_mut, call, value};
use rcriu_parasite_abi::restorer::{Args, PosixTimer};

use crate::{Fail, Res, array, ok};

fn timers(a: &Args) -> &[PosixTimer] {
    // SAFETY: rcriu wrote `nr_timers` timers at `timers`, sorted by id.
    unsafe { array(a.timers, a.nr_timers) }
}

/// `struct sigevent` as the kernel reads it (64 bytes).
fn sigevent(t: &PosixTimer) -> [u64; 8] {
    let mut sev = [0u64; 8];
    sev[0] = t.sival;
    sev[1] = (t.signo as u32 as u64) | ((t.notify as u32 as u64) << 32);
    sev[2] = t.thread_id as u32 as u64;
    sev
}

pub fn create(a: &Args) -> Res {
    let timers = timers(a);
    if timers.is_empty() {
        return Ok(());
    }
    let r = value(
        NR_PRCTL,
        PR_TIMER_CREATE_RESTORE_IDS,
        PR_TIMER_CREATE_RESTORE_IDS_ON,
        0,
    );
    match r {
        0 => {}
        // Kernels before 6.14: ids come in order from 0, as CRIU relies on.
        r if r == -EINVAL => return create_in_order(timers),
        r => return Err(Fail(u32::MAX, r)),
    }
    let made = create_with_ids(timers);
    let off = value(
        NR_PRCTL,
        PR_TIMER_CREATE_RESTORE_IDS,
        PR_TIMER_CREATE_RESTORE_IDS_OFF,
        0,
    );
    made?;
    ok(off, u32::MAX).map(drop)
}

/// `timer_create` of `t` asking for id `want` (which the kernel honours
/// only under PR_TIMER_CREATE_RESTORE_IDS): the id made, or a negative
/// errno.
fn timer_create(t: &PosixTimer, want: i32) -> Result<i32, i64> {
    let sev = sigevent(t);
    let mut id = want;
    // SAFETY: the kernel reads the sigevent and the id asked for, and
    // writes the timer id.
    let r = unsafe {
        call(
            NR_TIMER_CREATE,
            t.clock as u64,
            addr(&sev),
            addr_mut(&mut id),
            0,
        )
    };
    if r < 0 { Err(r) } else { Ok(id) }
}

fn create_with_ids(timers: &[PosixTimer]) -> Res {
    for (i, t) in timers.iter().enumerate() {
        let id = timer_create(t, t.id).map_err(|e| Fail(i as u32, e))?;
        if id != t.id {
            return Err(Fail(i as u32, -EINVAL));
        }
    }
    Ok(())
}

fn create_in_order(timers: &[PosixTimer]) -> Res {
    let mut next = 0i32;
    for (i, t) in timers.iter().enumerate() {
        loop {
            let id = timer_create(t, 0).map_err(|e| Fail(i as u32, e))?;
            if id != next {
                return Err(Fail(i as u32, -EINVAL));
            }
            next += 1;
            if id == t.id {
                break;
            }
            ok(value(NR_TIMER_DELETE, id as u64, 0, 0), i as u32)?;
        }
    }
    Ok(())
}

/// The interval timers, then the POSIX timers.
pub fn arm(a: &Args) -> Res {
    for (which, t) in a.itimers.iter().enumerate() {
        if t[2] == 0 && t[3] == 0 {
            continue;
        }
        // SAFETY: the kernel reads one struct itimerval.
        let r = unsafe { call(NR_SETITIMER, which as u64, addr(t), 0, 0) };
        ok(r, which as u32)?;
    }
    for (i, t) in timers(a).iter().enumerate() {
        if t.spec[2] == 0 && t.spec[3] == 0 {
            continue;
        }
        // SAFETY: the kernel reads one struct itimerspec.
        let r = unsafe { call(NR_TIMER_SETTIME, t.id as u64, 0, addr(&t.spec), 0) };
        ok(r, 3 + i as u32)?;
    }
    Ok(())
}
