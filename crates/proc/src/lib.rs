//! Typed readers of `/proc` for rcriu's dump engine.
//!
//! [`Task`] holds a task's `/proc/PID` (or `/proc/PID/task/TID`) directory
//! open and reads its files whole, in large reads into a reused buffer, then
//! hands the bytes to a pure parser. Every parser (`parse_*`) is a public
//! function of `&[u8]`, with no I/O, so that it can be tested on captured
//! text and fuzzed.
//!
//! | file | reader | parser |
//! |---|---|---|
//! | `task/`, `task/TID/children` | [`Task::tasks`], [`Task::children`] | [`parse_pid_list`] |
//! | `maps`, `smaps` | [`Task::maps`], [`Task::smaps`] | [`parse_maps`], [`parse_smaps`] |
//! | `status`, `stat` | [`Task::status`], [`Task::stat`] | [`parse_status`], [`parse_stat`] |
//! | `limits` | [`Task::limits`] | [`parse_limits`] |
//! | `fd/`, `fdinfo/N` | [`Task::fds`], [`Task::fdinfo`] | [`FdTarget::from_link`], [`parse_fdinfo`], [`parse_io_uring_fdinfo`] |
//! | `map_files/` | [`Task::map_files`], [`Task::map_file_link`], [`Task::open_map_file`] | |
//! | `cwd`, `root`, `exe` | [`Task::cwd`], [`Task::root`], [`Task::exe`] | |
//! | `auxv`, `cmdline`, `environ`, `comm` | [`Task::auxv`], ... | [`parse_auxv`], [`split_nul`], [`parse_comm`] |
//! | `timerslack_ns`, `loginuid`, `oom_score_adj`, `personality` | [`Task::timerslack_ns`], ... | [`parse_u64`], [`parse_i64`], [`parse_personality`] |
//! | `coredump_filter`, `autogroup`, `ksm_stat`, `numa_maps` | [`Task::coredump_filter`], [`Task::autogroup`], [`Task::ksm_merge_any`], [`Task::numa_policies`] | [`parse_coredump_filter`], [`parse_autogroup`], [`parse_ksm_merge_any`], [`parse_numa_policies`] |
//! | `timers` | [`Task::posix_timers`] | [`parse_timers`] |
//! | `timens_offsets`, `uid_map`, `gid_map`, `attr/current` | [`Task::timens_offsets`], [`Task::uid_map`], [`Task::gid_map`], [`Task::lsm_label`] | [`parse_timens_offsets`], [`parse_id_map`] |
//! | `mountinfo`, `cgroup` | [`Task::mountinfo`], [`Task::cgroups`] | [`parse_mountinfo`], [`parse_cgroup`] |
//! | `ns/*` | [`Task::namespaces`] | [`parse_ns_link`] |
//! | `pagemap` + `PAGEMAP_SCAN` | [`Task::pagemap`], [`Pagemap`] | [`categories_of`] |
//! | sock_diag (unix, inet, netlink, packet) | [`sock_diag::SockDiag`] | [`sock_diag::parse_messages`], [`sock_diag::parse_unix`], ... |
//!
//! What the kernel tells of a task from outside through system calls
//! rather than files (scheduling attributes, CPU affinity, I/O priority)
//! is in [`sched`].
//!
//! Errors name the pid and the path; a task that exited is
//! [`Error::Vanished`].

mod cgroup;
mod error;
mod fd;
mod io_uring;
mod limits;
mod lock;
mod maps;
mod misc;
mod mountinfo;
mod ns;
mod pagemap;
pub mod rtnl;
pub mod sched;
pub mod sock_diag;
mod stat;
mod status;
mod sys;
mod task;
mod text;
mod timers;

/// A process or thread id.
pub type Pid = libc::pid_t;

pub use cgroup::{CgroupEntry, hierarchy_mount, parse_cgroup};
pub use error::{Error, ParseError, ParseResult, Result};
pub use fd::{
    EpollTarget, FanotifyMark, Fd, FdInfo, FdInfoKind, FdTarget, FileHandle, InotifyWatch,
    TimerfdInfo, parse_fdinfo,
};
pub use io_uring::{IoUringInfo, parse_io_uring_fdinfo};
pub use limits::{Limits, RLIM_INFINITY, RLIM_NLIMITS, Rlimit, parse_limits};
pub use lock::{FileLock, LockKind, LockState, LockType, parse_lock};
pub use maps::{
    Prot, SmapsStats, SmapsVma, VmFlags, Vma, VmaPath, parse_maps, parse_maps_into, parse_smaps,
    parse_smaps_into, parse_vma_line,
};
pub use misc::{
    AuxvEntry, IdMapping, TimensOffsets, parse_autogroup, parse_auxv, parse_comm,
    parse_coredump_filter, parse_i64, parse_id_map, parse_ksm_merge_any, parse_numa_policies,
    parse_personality, parse_pid_list, parse_timens_offsets, parse_u64, split_nul,
};
pub use mountinfo::{MountInfo, parse_mountinfo};
pub use ns::{Namespaces, NsKind, parse_ns_link};
pub use pagemap::{PageCategories, PageRange, Pagemap, PagemapEntry, ScanMethod, categories_of};
pub use stat::{Stat, parse_stat};
pub use status::{Ids, SeccompMode, SigSet, Status, TaskState, parse_status};
pub use task::{Task, all_pids};
pub use timers::{PosixTimer, TimerNotify, parse_timers};

/// The parsers take any bytes without panicking: seeds read from this
/// process's own /proc, mutated many times over.
#[cfg(test)]
mod robustness {
    use super::*;

    /// xorshift64*, deterministic.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        const SPECIAL: &[u8] = b":- ()\n\t0123456789abcdefx[]/\\\0";
        let mut v = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] = SPECIAL[rng.below(SPECIAL.len())];
                }
                1 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v.truncate(i);
                }
                2 => {
                    let i = rng.below(v.len() + 1);
                    v.insert(i, SPECIAL[rng.below(SPECIAL.len())]);
                }
                _ if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v.remove(i);
                }
                _ => {}
            }
        }
        v
    }

    #[test]
    fn mutated_proc_files_never_panic() {
        let me = Task::open_self().unwrap();
        let seeds: Vec<Vec<u8>> = [
            "maps",
            "smaps",
            "status",
            "stat",
            "limits",
            "mountinfo",
            "cgroup",
            "fdinfo/0",
            "auxv",
        ]
        .iter()
        .map(|n| me.read_file_vec(n).unwrap())
        .chain([
            b"ID: 1\nsignal: 14/0000000000001234\nnotify: signal/pid.5\nClockID: 1\n".to_vec(),
            b"pos:\t0\nflags:\t02\nclockid: 1\nticks: 0\nsettime flags: 01\nit_value: (1, 2)\nit_interval: (3, 4)\n".to_vec(),
            b"pos:\t0\nflags:\t02\ninotify wd:1 ino:3c4a7 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\ntfd: 3 events: 19 data: 1  pos:0 ino:11 sdev:10\nfanotify ino:3c4a7 sdev:fe00000 mflags:0 mask:28 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4\nPid:\t1\nNSpid:\t1\t2\n".to_vec(),
            b"SqMask:\t0x7\nSqHead:\t0\nSqTail:\t1\nCachedSqHead:\t0\nCqMask:\t0xf\nCqHead:\t0\nCqTail:\t0\nCachedCqTail:\t0\nSQEs:\t1\n    0: opcode:NOP, fd:0\nCQEs:\t0\nSqThread:\t-1\nUserFiles:\t1\n    0: /dev/null\nUserBufs:\t1\n    0: 0x1000/4096\nPollList:\nCqOverflowList:\nNAPI:\tdisabled\n".to_vec(),
        ])
        .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for seed in &seeds {
            // Keep the big ones short so that the test stays quick.
            let seed = &seed[..seed.len().min(4096)];
            for _ in 0..1500 {
                let t = mutate(&mut rng, seed);
                let _ = parse_maps(&t);
                let _ = parse_smaps(&t);
                let _ = parse_status(&t);
                let _ = parse_stat(&t);
                let _ = parse_limits(&t);
                let _ = parse_fdinfo(&t);
                let _ = parse_io_uring_fdinfo(&t);
                let _ = parse_timers(&t);
                let _ = parse_mountinfo(&t);
                let _ = parse_cgroup(&t);
                let _ = parse_auxv(&t);
                let _ = parse_pid_list(&t);
                let _ = parse_personality(&t);
                let _ = FdTarget::from_link(&t);
                let _ = VmFlags::parse(&t);
                let _ = parse_ns_link(NsKind::Net, &t);
                let _ = parse_timens_offsets(&t);
                let _ = parse_id_map(&t);
                let _ = sock_diag::parse_messages(&t);
                let _ = sock_diag::parse_unix(&t);
                let _ = sock_diag::parse_inet(&t);
                let _ = sock_diag::parse_netlink(&t);
                let _ = sock_diag::parse_packet(&t);
            }
        }
    }
}
