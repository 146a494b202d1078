//! `timens-<id>.img`: the monotonic and boot clocks as the task sees them
//! at the end of the dump, from which CRIU's restore (and rcriu's) sets
//! the offsets of a new time namespace so that they carry on.
//!
//! A task in rcriu's time namespace gets `timens-0.img`, as CRIU writes
//! it; a task in a time namespace of its own (one a restore made) gets
//! `timens-<its namespace id>.img`. Its clocks are rcriu's plus the
//! difference of the two namespaces' offsets, both relative to the host's
//! clocks.

use rcriu_images::pb;
use rcriu_proc::{Pid, TimensOffsets};
use rustix::time::{ClockId, Timespec, clock_gettime};

const NSEC: i64 = 1_000_000_000;

fn shifted(now: Timespec, ours: (i64, i64), theirs: (i64, i64)) -> pb::Timespec {
    let mut sec = now.tv_sec + theirs.0 - ours.0;
    let mut nsec = now.tv_nsec + theirs.1 - ours.1;
    sec += nsec.div_euclid(NSEC);
    nsec = nsec.rem_euclid(NSEC);
    pb::Timespec {
        tv_sec: sec as u64,
        tv_nsec: nsec as u64,
    }
}

/// The task's clocks now, given its time namespace's offsets and
/// rcriu's (both zero in the host's namespace).
pub fn entry(ours: &TimensOffsets, theirs: &TimensOffsets) -> pb::TimensEntry {
    let mono = clock_gettime(ClockId::Monotonic);
    let boot = clock_gettime(ClockId::Boottime);
    pb::TimensEntry {
        monotonic: shifted(mono, ours.monotonic, theirs.monotonic),
        boottime: shifted(boot, ours.boottime, theirs.boottime),
    }
}

/// The offsets of `pid`'s time namespace, zero where the kernel has no
/// time namespaces.
pub fn offsets(pid: Pid) -> rcriu_proc::Result<TimensOffsets> {
    let mut t = rcriu_proc::Task::open(pid)?;
    match t.timens_offsets() {
        Ok(o) => Ok(o),
        Err(e) if e.is_not_found() => Ok(TimensOffsets::default()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_shift_the_clock() {
        let now = Timespec {
            tv_sec: 100,
            tv_nsec: 900_000_000,
        };
        let t = shifted(now, (0, 0), (5, 200_000_000));
        assert_eq!((t.tv_sec, t.tv_nsec), (106, 100_000_000));
        let t = shifted(now, (10, 950_000_000), (0, 0));
        assert_eq!((t.tv_sec, t.tv_nsec), (89, 950_000_000));
    }

    #[test]
    fn own_clocks() {
        let e = entry(&TimensOffsets::default(), &TimensOffsets::default());
        assert!(e.monotonic.tv_sec > 0 && e.boottime.tv_sec >= e.monotonic.tv_sec);
    }
}
