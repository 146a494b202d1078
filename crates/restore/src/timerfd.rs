//! timerfds: made again on their clock, armed with the time that was left
//! and the interval, with the settime flags they had and the expirations
//! not yet read (`TFD_IOC_SET_TICKS`), as CRIU 4.2 does.
//!
//! The dump keeps the time left, relative even for an absolute timer
//! (`TFD_TIMER_ABSTIME`); such a timer is armed at the clock's time now
//! plus what was left, as CRIU does (CRIU adds only the seconds of now;
//! rcriu the whole time). The time namespace the process is restored in
//! changes nothing: a relative time is the same in every namespace, and
//! an absolute one is read and set here in rcriu's own, as the kernel
//! converts a process's absolute times from its namespace to this one.
//! A disarmed timer stays disarmed, with its interval and flags. The
//! timer runs from the moment it is made, a little before the process
//! does (as CRIU's, armed by the restorer before the process runs).

use std::os::fd::{AsFd, OwnedFd};

use rcriu_images::pb;
use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

use crate::{Error, Result, anon, anon_sys};

const NSEC: i64 = 1_000_000_000;

fn clock(id: u32) -> Option<(TimerfdClockId, ClockId)> {
    Some(match id as i32 {
        libc::CLOCK_REALTIME => (TimerfdClockId::Realtime, ClockId::Realtime),
        libc::CLOCK_MONOTONIC => (TimerfdClockId::Monotonic, ClockId::Monotonic),
        libc::CLOCK_BOOTTIME => (TimerfdClockId::Boottime, ClockId::Boottime),
        _ => return None,
    })
}

/// Refuses what a restore would refuse, without making anything.
pub fn check(e: &pb::TimerfdEntry) -> Result<()> {
    if clock(e.clockid).is_none() {
        return Err(Error::invalid(
            rcriu_images::ImageFile::Files.name(),
            format!("timerfd {:#x} on unknown clock {}", e.id, e.clockid),
        ));
    }
    if e.vnsec >= NSEC as u64 || e.insec >= NSEC as u64 {
        return Err(Error::invalid(
            rcriu_images::ImageFile::Files.name(),
            format!("timerfd {:#x} with nanoseconds over a second", e.id),
        ));
    }
    let known = (TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET).bits();
    if e.settime_flags & !known != 0 {
        return Err(Error::invalid(
            rcriu_images::ImageFile::Files.name(),
            format!(
                "timerfd {:#x} with settime flags {:#x}",
                e.id, e.settime_flags
            ),
        ));
    }
    Ok(())
}

fn ts(sec: u64, nsec: u64) -> Timespec {
    Timespec {
        tv_sec: sec.min(i64::MAX as u64) as i64,
        tv_nsec: nsec as i64,
    }
}

pub fn open(e: &pb::TimerfdEntry) -> Result<OwnedFd> {
    check(e)?;
    let what = format!("timerfd {:#x}", e.id);
    let (tclock, clock) = clock(e.clockid).expect("checked above");
    let fd = rustix::time::timerfd_create(tclock, TimerfdFlags::CLOEXEC)
        .map_err(|err| Error::io(format!("creating {what}"))(err.into()))?;
    let flags = TimerfdTimerFlags::from_bits_retain(e.settime_flags);
    let mut value = ts(e.vsec, e.vnsec);
    let armed = e.vsec != 0 || e.vnsec != 0;
    if armed && flags.contains(TimerfdTimerFlags::ABSTIME) {
        let now = rustix::time::clock_gettime(clock);
        let mut nsec = now.tv_nsec + value.tv_nsec;
        let carry = nsec / NSEC;
        nsec %= NSEC;
        value.tv_sec = value
            .tv_sec
            .saturating_add(now.tv_sec)
            .saturating_add(carry);
        value.tv_nsec = nsec;
    }
    let spec = Itimerspec {
        it_interval: ts(e.isec, e.insec),
        it_value: value,
    };
    rustix::time::timerfd_settime(&fd, flags, &spec)
        .map_err(|err| Error::io(format!("arming {what}"))(err.into()))?;
    if e.ticks != 0 {
        anon_sys::timerfd_set_ticks(fd.as_fd(), e.ticks)
            .map_err(Error::io(format!("setting the expirations of {what}")))?;
    }
    anon::set_flags(fd.as_fd(), e.flags, &what)?;
    Ok(fd)
}
