//! What the kernel tells of any task from outside through system calls:
//! its scheduling attributes (`sched_getattr`), CPU affinity
//! (`sched_getaffinity`) and I/O priority (`ioprio_get`).

use std::io;

use crate::Pid;
use crate::sys;

/// `SCHED_DEADLINE`.
pub const SCHED_DEADLINE: u32 = 6;
/// `SCHED_FLAG_RESET_ON_FORK` of `sched_attr.sched_flags`.
pub const SCHED_FLAG_RESET_ON_FORK: u64 = 1;
/// The utilisation clamps a task has when nobody set them.
pub const UCLAMP_DEFAULT: (u32, u32) = (0, 1024);

/// A task's scheduling attributes, as `sched_getattr` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedAttr {
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    /// The requested utilisation clamps (min, max), when the kernel has
    /// them (without CONFIG_UCLAMP_TASK it leaves them 0..0, which no task
    /// can ask for: the maximum is at least the minimum, 1024 unless set).
    pub util: Option<(u32, u32)>,
}

/// The scheduling attributes of task `tid`.
pub fn sched_attr(tid: Pid) -> io::Result<SchedAttr> {
    let (a, size) = sys::sched_getattr(tid)?;
    Ok(SchedAttr {
        policy: a.sched_policy,
        flags: a.sched_flags,
        nice: a.sched_nice,
        priority: a.sched_priority,
        runtime: a.sched_runtime,
        deadline: a.sched_deadline,
        period: a.sched_period,
        util: (size >= sys::SCHED_ATTR_SIZE_VER1 && a.sched_util_max != 0)
            .then_some((a.sched_util_min, a.sched_util_max)),
    })
}

/// The CPU affinity mask of task `tid`, as 64-bit words, low CPUs first,
/// trailing zero words dropped.
pub fn affinity(tid: Pid) -> io::Result<Vec<u64>> {
    let mut words = sys::sched_getaffinity(tid)?;
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words)
}

/// The I/O priority of task `tid` (`IOPRIO_PRIO_VALUE(class, data)`; 0:
/// none set, derived from the nice value).
pub fn ioprio(tid: Pid) -> io::Result<u32> {
    sys::ioprio_get(tid)
}
