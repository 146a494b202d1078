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
    let with_ids = match r {
        0 => true,
        // Kernels before 6.14: ids come in order from 0, as CRIU relies on.
        r if r == -EINVAL => false,
        r => return Err(Fail(u32::MAX, r)),
    };
    let made = if with_ids {
        create_with_ids(timers)
    } else {
        create_in_order(timers)
    };
    if with_ids {
        let r = value(
            NR_PRCTL,
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_OFF,
            0,
        );
        made?;
        ok(r, u32::MAX)?;
        return Ok(());
    }
    made
}

fn create_with_ids(timers: &[PosixTimer]) -> Res {
    for (i, t) in timers.iter().enumerate() {
        let sev = sigevent(t);
        let mut id: i32 = t.id;
        // SAFETY: the kernel reads the sigevent and reads (the id asked
        // for) and writes the timer id.
        let r = unsafe {
            call(
                NR_TIMER_CREATE,
                t.clock as u64,
                addr(&sev),
                addr_mut(&mut id),
                0,
            )
        };
        ok(r, i as u32)?;
        if id != t.id {
            return Err(Fail(i as u32, -EINVAL));
        }
    }
    Ok(())
}

fn create_in_order(timers: &[PosixTimer]) -> Res {
    let mut next = 0i32;
    for (i, t) in timers.iter().enumerate() {
        let sev = sigevent(t);
        loop {
            let mut id: i32 = 0;
            // SAFETY: the kernel reads the sigevent and writes the id.
            let r = unsafe {
                call(
                    NR_TIMER_CREATE,
                    t.clock as u64,
                    addr(&sev),
                    addr_mut(&mut id),
                    0,
                )
            };
            ok(r, i as u32)?;
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
