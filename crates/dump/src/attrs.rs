//! The attributes of a process and of its threads beyond what CRIU's core
//! image carries, and the checks that refuse, by name, those rcriu cannot
//! bring back.
//!
//! Carried, in rcriu's extension fields of `core-TID.img` (CRIU's readers
//! skip them): each thread's CPU affinity, I/O priority, TSC mode and
//! machine-check policy; the process's core dump filter, memory-deny-
//! write-execute flags, KSM-on-everything, THP-disabled-except-advised and
//! the nice value of its autogroup. `docs/state-inventory.md` lists every
//! piece of state and what becomes of it.
//!
//! Refused: SCHED_DEADLINE and utilisation clamps, an I/O flusher thread,
//! a NUMA memory policy, tagged addresses (LAM), shadow stacks, a
//! speculation control set by prctl, a dumpable mode of 2 (none can be set
//! back).

use rcriu_compel::abi::ThreadInfoArgs;
use rcriu_proc::sched::{self, SCHED_DEADLINE, SchedAttr, UCLAMP_DEFAULT};
use rcriu_proc::{Pid, Status, Task};

use crate::{Error, Result};

/// The kernel's default core dump filter (anonymous private and shared
/// memory, ELF headers, private huge pages).
pub const DEFAULT_COREDUMP_FILTER: u32 = 0x33;

/// `PR_TSC_SIGSEGV`: rdtsc faults.
const PR_TSC_SIGSEGV: i32 = 2;
/// `PR_MCE_KILL_DEFAULT`: the system's policy.
const PR_MCE_KILL_DEFAULT: i32 = 2;
/// `PR_SPEC_PRCTL`: the control can be set by prctl; the low bits then
/// say how it is (`PR_SPEC_ENABLE` 2 is the default).
const PR_SPEC_PRCTL: i32 = 1;
const PR_SPEC_ENABLE: i32 = 2;
const SPECULATION: [&str; 3] = [
    "speculative store bypass",
    "indirect branch speculation",
    "L1D flush",
];
/// `PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE`: what `PR_SET_IO_FLUSHER` sets
/// (stat's flags field).
const PF_IO_FLUSHER: u32 = 0x0008_0000 | 0x0010_0000;

/// What a thread holds that the kernel tells from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadOutside {
    /// CPU affinity mask, 64-bit words.
    pub affinity: Vec<u64>,
    /// I/O priority (0: none set).
    pub ioprio: u32,
    pub sched: SchedAttr,
}

/// Reads thread `tid` of `pid` from outside, refusing what its restore
/// could not set.
pub fn thread_outside(pid: Pid, tid: Pid) -> Result<ThreadOutside> {
    let sched =
        sched::sched_attr(tid).map_err(Error::sys("reading the scheduling attributes", tid))?;
    check_sched(pid, tid, &sched)?;
    let mut task = Task::open_thread(pid, tid).map_err(Error::proc(pid))?;
    let flags = task.stat().map_err(Error::proc(pid))?.flags;
    if flags & PF_IO_FLUSHER == PF_IO_FLUSHER {
        return Err(Error::unsupported(
            pid,
            format!("thread {tid} marked an I/O flusher (PR_SET_IO_FLUSHER)"),
        ));
    }
    Ok(ThreadOutside {
        affinity: sched::affinity(tid).map_err(Error::sys("reading the CPU affinity", tid))?,
        ioprio: sched::ioprio(tid).map_err(Error::sys("reading the I/O priority", tid))?,
        sched,
    })
}

/// Refuses the scheduling attributes `sched_setscheduler` cannot give
/// back: SCHED_DEADLINE and utilisation clamps.
pub fn check_sched(pid: Pid, tid: Pid, s: &SchedAttr) -> Result<()> {
    if s.policy == SCHED_DEADLINE {
        return Err(Error::unsupported(
            pid,
            format!("thread {tid} under SCHED_DEADLINE"),
        ));
    }
    if let Some(u) = s.util
        && u != UCLAMP_DEFAULT
    {
        return Err(Error::unsupported(
            pid,
            format!(
                "thread {tid} with utilisation clamps {}..{} (sched_setattr)",
                u.0, u.1
            ),
        ));
    }
    Ok(())
}

/// What the process holds that /proc tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessAttrs {
    pub coredump_filter: u32,
    pub ksm_merge_any: bool,
    /// The nice value of its autogroup, for a session leader (whose
    /// restore makes it a new autogroup).
    pub autogroup_nice: Option<i32>,
}

/// Reads the process's attributes from /proc, refusing what its restore
/// could not set: tagged addresses, shadow stacks (a NUMA memory policy:
/// [`check_policies`], from inside the process).
pub fn process(
    pid: Pid,
    task: &mut Task,
    status: &Status,
    session_leader: bool,
) -> Result<ProcessAttrs> {
    check_status(pid, status)?;
    let autogroup_nice = if session_leader {
        match task.autogroup() {
            Ok((_, nice)) => Some(nice),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(Error::proc(pid)(e)),
        }
    } else {
        None
    };
    let ksm_merge_any = match task.ksm_merge_any() {
        Ok(v) => v,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(Error::proc(pid)(e)),
    };
    Ok(ProcessAttrs {
        coredump_filter: task.coredump_filter().map_err(Error::proc(pid))?,
        ksm_merge_any,
        autogroup_nice,
    })
}

/// Refuses what status tells rcriu cannot restore: tagged addresses
/// (x86 LAM), a shadow stack.
pub fn check_status(pid: Pid, status: &Status) -> Result<()> {
    if let Some(mask) = status.untag_mask
        && mask != u64::MAX
    {
        return Err(Error::unsupported(
            pid,
            format!("tagged addresses (untag mask {mask:#x})"),
        ));
    }
    if let Some(f) = &status.x86_thread_features
        && f.split_whitespace().any(|w| w == "shstk")
    {
        return Err(Error::unsupported(pid, "a shadow stack".to_string()));
    }
    Ok(())
}

/// The name of a NUMA policy mode (`get_mempolicy`'s, its flags left
/// out), as numa_maps writes it.
fn policy_name(mode: i32) -> String {
    match mode & 0xff {
        0 => "default".into(),
        1 => "prefer".into(),
        2 => "bind".into(),
        3 => "interleave".into(),
        4 => "local".into(),
        5 => "prefer (many)".into(),
        6 => "weighted interleave".into(),
        m => format!("mode {m}"),
    }
}

/// Refuses memory or a thread under a NUMA policy other than the
/// default: the restore sets none back. `areas` are `(start, mode)` as
/// the parasite read them (`get_mempolicy`), `threads` `(tid, mode)`.
/// A kernel without NUMA (ENOSYS) has only the default; an address
/// outside the process's areas (the vsyscall page) has none (EFAULT).
pub fn check_policies(pid: Pid, areas: &[(u64, i32)], threads: &[(Pid, i32)]) -> Result<()> {
    const ENOSYS: i32 = -libc::ENOSYS;
    const EFAULT: i32 = -libc::EFAULT;
    for &(tid, mode) in threads {
        match mode {
            0 | ENOSYS => {}
            m if m < 0 => {
                return Err(Error::Inconsistent {
                    pid,
                    what: format!("the NUMA policy of thread {tid} could not be read ({m})"),
                });
            }
            m => {
                return Err(Error::unsupported(
                    pid,
                    format!("thread {tid} under the NUMA policy {}", policy_name(m)),
                ));
            }
        }
    }
    for &(start, mode) in areas {
        match mode {
            0 | ENOSYS | EFAULT => {}
            m if m < 0 => {
                return Err(Error::Inconsistent {
                    pid,
                    what: format!(
                        "the NUMA policy of the memory at {start:#x} could not be read ({m})"
                    ),
                });
            }
            m => {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "memory at {start:#x} under the NUMA policy {}",
                        policy_name(m)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses memory under a NUMA policy other than the default (of an
/// area, or of the thread, which numa_maps shows for areas without one).
pub fn check_numa(pid: Pid, policies: &[(u64, String)]) -> Result<()> {
    if let Some((start, p)) = policies.iter().find(|(_, p)| p != "default") {
        return Err(Error::unsupported(
            pid,
            format!("memory at {start:#x} under the NUMA policy {p}"),
        ));
    }
    Ok(())
}

/// Refuses what only the thread itself tells and its restore could not
/// set back: a speculation control set by prctl, a dumpable mode of 2.
pub fn check_inside(pid: Pid, tid: Pid, i: &ThreadInfoArgs) -> Result<()> {
    for (name, &v) in SPECULATION.iter().zip(&i.spec) {
        if v >= 0 && v & PR_SPEC_PRCTL != 0 && v & !PR_SPEC_PRCTL != PR_SPEC_ENABLE {
            return Err(Error::unsupported(
                pid,
                format!("thread {tid} with {name} controlled by prctl ({v:#x})"),
            ));
        }
    }
    if i.creds.dumpable > 1 {
        return Err(Error::unsupported(
            pid,
            format!(
                "dumpable mode {} (suid_dumpable), which prctl cannot set back",
                i.creds.dumpable
            ),
        ));
    }
    Ok(())
}

/// The thread's TSC mode, when rdtsc faults.
pub fn tsc(i: &ThreadInfoArgs) -> Option<u32> {
    (i.tsc == PR_TSC_SIGSEGV).then_some(i.tsc as u32)
}

/// The thread's machine-check kill policy, when not the system's.
pub fn mce_kill(i: &ThreadInfoArgs) -> Option<u32> {
    (i.mce_kill >= 0 && i.mce_kill != PR_MCE_KILL_DEFAULT).then_some(i.mce_kill as u32)
}

/// The process's memory-deny-write-execute flags, when any.
pub fn mdwe(i: &ThreadInfoArgs) -> Option<u32> {
    (i.mdwe > 0).then_some(i.mdwe as u32)
}

/// The raw `PR_GET_THP_DISABLE`, when mm's `thp_disabled` cannot say it
/// (disabled except where advised).
pub fn thp_disable(i: &ThreadInfoArgs) -> Option<u32> {
    (i.creds.thp_disabled > 1).then_some(i.creds.thp_disabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_and_clamps_are_refused() {
        let ok = SchedAttr {
            util: Some(UCLAMP_DEFAULT),
            ..SchedAttr::default()
        };
        assert!(check_sched(1, 1, &ok).is_ok());
        let dl = SchedAttr {
            policy: SCHED_DEADLINE,
            ..ok
        };
        let e = check_sched(1, 2, &dl).unwrap_err().to_string();
        assert!(e.contains("thread 2 under SCHED_DEADLINE"), "{e}");
        let clamped = SchedAttr {
            util: Some((100, 1024)),
            ..ok
        };
        let e = check_sched(1, 2, &clamped).unwrap_err().to_string();
        assert!(e.contains("utilisation clamps 100..1024"), "{e}");
        // A kernel without clamps says nothing of them.
        assert!(check_sched(1, 1, &SchedAttr { util: None, ..ok }).is_ok());
    }

    #[test]
    fn numa_policies_other_than_default_are_refused() {
        assert!(check_numa(1, &[(0x1000, "default".into())]).is_ok());
        let e = check_numa(1, &[(0x1000, "default".into()), (0x2000, "bind:0".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("memory at 0x2000 under the NUMA policy bind:0"),
            "{e}"
        );
    }

    #[test]
    fn tagged_addresses_and_shadow_stacks_are_refused() {
        let mut st = Status {
            untag_mask: Some(u64::MAX),
            x86_thread_features: Some(String::new()),
            ..Status::default()
        };
        assert!(check_status(1, &st).is_ok());
        st.x86_thread_features = Some("shstk wrss".into());
        let e = check_status(1, &st).unwrap_err().to_string();
        assert!(e.contains("a shadow stack"), "{e}");
        st.x86_thread_features = None;
        st.untag_mask = Some(0x3f_ffff_ffff_ffff);
        let e = check_status(1, &st).unwrap_err().to_string();
        assert!(e.contains("tagged addresses"), "{e}");
    }

    fn info() -> ThreadInfoArgs {
        rcriu_compel::sys::read_pod(&[0u8; size_of::<ThreadInfoArgs>()])
    }

    #[test]
    fn speculation_set_by_prctl_is_refused() {
        let mut i = info();
        i.creds.dumpable = 1;
        // Not controllable (no PR_SPEC_PRCTL), or controllable and
        // enabled (the default), or unknown to the kernel: nothing to do.
        i.spec = [
            PR_SPEC_ENABLE,
            PR_SPEC_PRCTL | PR_SPEC_ENABLE,
            -libc::EINVAL,
        ];
        assert!(check_inside(1, 1, &i).is_ok());
        // Disabled by prctl (PR_SPEC_DISABLE, 4).
        i.spec[0] = PR_SPEC_PRCTL | 4;
        let e = check_inside(1, 3, &i).unwrap_err().to_string();
        assert!(e.contains("thread 3 with speculative store bypass"), "{e}");
    }

    #[test]
    fn dumpable_2_is_refused() {
        let mut i = info();
        i.creds.dumpable = 2;
        let e = check_inside(1, 1, &i).unwrap_err().to_string();
        assert!(e.contains("dumpable mode 2"), "{e}");
    }

    #[test]
    fn values_written_only_when_not_default() {
        let mut i = info();
        i.tsc = 1;
        i.mce_kill = PR_MCE_KILL_DEFAULT;
        i.creds.thp_disabled = 1;
        assert_eq!(
            (tsc(&i), mce_kill(&i), mdwe(&i), thp_disable(&i)),
            (None, None, None, None)
        );
        i.tsc = PR_TSC_SIGSEGV;
        i.mce_kill = 1;
        i.mdwe = 1;
        i.creds.thp_disabled = 3;
        assert_eq!(
            (tsc(&i), mce_kill(&i), mdwe(&i), thp_disable(&i)),
            (Some(2), Some(1), Some(1), Some(3))
        );
        // Kernels without MDWE answer EINVAL.
        i.mdwe = -libc::EINVAL;
        assert_eq!(mdwe(&i), None);
    }
}
