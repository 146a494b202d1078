//! timerfds: a `timerfd_entry` in files.img, as CRIU 4.2 writes it: the
//! clock, the flags given to timerfd_settime (`TFD_TIMER_ABSTIME`,
//! `TFD_TIMER_CANCEL_ON_SET`), the time left to the next expiry and the
//! interval (fdinfo's `it_value`, relative even for an absolute timer),
//! and the expirations not yet read (`ticks`), with the file's flags and
//! owner.
//!
//! The alarm clocks (`CLOCK_REALTIME_ALARM`, `CLOCK_BOOTTIME_ALARM`) are
//! refused: CRIU 4.2's restore takes only the realtime, monotonic and
//! boot clocks.

use rcriu_images::pb;
use rcriu_proc::{FdInfo, FdInfoKind, Pid};

use crate::anon::no_lines;
use crate::files::OpenFd;
use crate::{Error, Result};

/// The clocks a timerfd's restore takes.
pub const CLOCKS: [i32; 3] = [
    libc::CLOCK_REALTIME,
    libc::CLOCK_MONOTONIC,
    libc::CLOCK_BOOTTIME,
];

/// Refuses a timerfd on a clock the restore does not take.
pub fn check(pid: Pid, fd: i32, fdinfo: &FdInfo) -> Result<()> {
    match &fdinfo.kind {
        FdInfoKind::Timerfd(t) if !CLOCKS.contains(&t.clockid) => Err(Error::unsupported(
            pid,
            format!("fd {fd}: a timerfd on clock {} (an alarm clock)", t.clockid),
        )),
        _ => Ok(()),
    }
}

pub fn entry(pid: Pid, id: u32, f: &OpenFd, fown: pb::FownEntry) -> Result<pb::TimerfdEntry> {
    let FdInfoKind::Timerfd(t) = f.fdinfo.kind else {
        return Err(no_lines(pid, f.fd, "a timerfd"));
    };
    check(pid, f.fd, &f.fdinfo)?;
    Ok(pb::TimerfdEntry {
        id,
        flags: f.flags(),
        fown,
        clockid: t.clockid as u32,
        ticks: t.ticks,
        settime_flags: t.settime_flags,
        vsec: t.it_value.0,
        vnsec: t.it_value.1,
        isec: t.it_interval.0,
        insec: t.it_interval.1,
    })
}
