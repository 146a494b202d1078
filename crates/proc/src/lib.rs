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
//! | `fd/`, `fdinfo/N` | [`Task::fds`], [`Task::fdinfo`] | [`FdTarget::from_link`], [`parse_fdinfo`] |
//! | `map_files/` | [`Task::map_files`], [`Task::map_file_link`], [`Task::open_map_file`] | |
//! | `cwd`, `root`, `exe` | [`Task::cwd`], [`Task::root`], [`Task::exe`] | |
//! | `auxv`, `cmdline`, `environ`, `comm` | [`Task::auxv`], ... | [`parse_auxv`], [`split_nul`], [`parse_comm`] |
//! | `timerslack_ns`, `loginuid`, `oom_score_adj`, `personality` | [`Task::timerslack_ns`], ... | [`parse_u64`], [`parse_i64`], [`parse_personality`] |
//! | `timers` | [`Task::posix_timers`] | [`parse_timers`] |
//! | `mountinfo`, `cgroup` | [`Task::mountinfo`], [`Task::cgroups`] | [`parse_mountinfo`], [`parse_cgroup`] |
//! | `ns/*` | [`Task::namespaces`] | [`parse_ns_link`] |
//! | `pagemap` + `PAGEMAP_SCAN` | [`Task::pagemap`], [`Pagemap`] | [`categories_of`] |
//!
//! Errors name the pid and the path; a task that exited is
//! [`Error::Vanished`].

mod cgroup;
mod error;
mod fd;
mod limits;
mod maps;
mod misc;
mod mountinfo;
mod ns;
mod pagemap;
mod stat;
mod status;
mod sys;
mod task;
mod text;
mod timers;

/// A process or thread id.
pub type Pid = libc::pid_t;

pub use cgroup::{CgroupEntry, parse_cgroup};
pub use error::{Error, ParseError, ParseResult, Result};
pub use fd::{
    EpollTarget, FanotifyMark, Fd, FdInfo, FdInfoKind, FdTarget, FileHandle, InotifyWatch,
    TimerfdInfo, parse_fdinfo,
};
pub use limits::{Limits, RLIM_INFINITY, RLIM_NLIMITS, Rlimit, parse_limits};
pub use maps::{
    Prot, SmapsStats, SmapsVma, VmFlags, Vma, VmaPath, parse_maps, parse_maps_into, parse_smaps,
    parse_smaps_into, parse_vma_line,
};
pub use misc::{
    AuxvEntry, parse_auxv, parse_comm, parse_i64, parse_personality, parse_pid_list, parse_u64,
    split_nul,
};
pub use mountinfo::{MountInfo, parse_mountinfo};
pub use ns::{Namespaces, NsKind, parse_ns_link};
pub use pagemap::{PageCategories, PageRange, Pagemap, PagemapEntry, ScanMethod, categories_of};
pub use stat::{Stat, parse_stat};
pub use status::{Ids, SeccompMode, SigSet, Status, TaskState, parse_status};
pub use task::{Task, all_pids};
pub use timers::{PosixTimer, TimerNotify, parse_timers};
