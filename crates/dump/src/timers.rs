//! The process's POSIX timers (core's `tc.timers.posix`): what
//! /proc/PID/timers says of each (id, clock, signal, how it notifies) and
//! what the parasite's `timer_gettime` and `timer_getoverrun` say (times,
//! overrun), as CRIU stores them.

use rcriu_compel::abi::PosixTimer;
use rcriu_images::pb;
use rcriu_proc::{Pid, TimerNotify};

use crate::{Error, Result};

/// The entries of `listed` (from /proc), with the parasite's `values` of
/// the same timers in the same order.
pub fn posix(
    pid: Pid,
    listed: &[rcriu_proc::PosixTimer],
    values: &[PosixTimer],
) -> Result<Vec<pb::PosixTimerEntry>> {
    if listed.len() != values.len() {
        return Err(Error::Inconsistent {
            pid,
            what: format!(
                "{} POSIX timers listed, {} read",
                listed.len(),
                values.len()
            ),
        });
    }
    listed
        .iter()
        .zip(values)
        .map(|(t, v)| {
            if t.id != v.id {
                return Err(Error::Inconsistent {
                    pid,
                    what: format!("POSIX timer {} read as timer {}", t.id, v.id),
                });
            }
            let thread = t.notify == TimerNotify::ThreadId;
            Ok(pb::PosixTimerEntry {
                it_id: t.id as u32,
                clock_id: t.clock_id as u32,
                si_signo: t.signal as u32,
                it_sigev_notify: t.notify.sigev_notify() as u32,
                sival_ptr: t.sival_ptr,
                overrun: v.overrun as u32,
                isec: v.interval.sec as u64,
                insec: v.interval.nsec as u64,
                vsec: v.value.sec as u64,
                vnsec: v.value.nsec as u64,
                notify_thread_id: (thread && t.notify_pid != 0).then_some(t.notify_pid),
            })
        })
        .collect()
}
