//! The restorer's ABI: what rcriu prepares for the restorer blob.
//!
//! rcriu maps a region at an address free both in its own address space and
//! in the one being restored, and fills it:
//!
//! ```text
//! region            the restorer blob's image
//! args              Args (this module), then the arrays it points to
//!                   (Vma, IoVec, ReadBatch, FdMove, siginfos, PosixTimer,
//!                   ThreadArgs and theirs, the threads' stacks), all at
//!                   absolute addresses: the region sits at the same
//!                   address in the new process, a fork of rcriu
//! stack             STACK_SIZE bytes, growing down from the region's end
//! ```
//!
//! The new process starts at the blob's head with `rdi` = the address of
//! [`Args`] and `rsp` = the stack's top. It blocks every signal, waits for
//! rcriu's go (a byte on `go_fd`, once rcriu traces it and has filled in
//! the rseq registration it inherited), drops that registration, then
//! builds the process's state step by
//! step ([`Step`]): session, time namespace, address space (everything of
//! rcriu unmapped but the region and the vDSO, which moves where the
//! process had it), memory (mapped in place, files and memfds by the fds
//! rcriu opened, filled with `preadv`, advised, guard regions installed),
//! cwd/root, mm fields, signal actions, limits, attributes, fds, login
//! uid. Then, as CRIU's restorer: it creates the other threads with clone3
//! and their tids (each on its own stack in the region, with its own
//! [`ThreadArgs`]), creates the POSIX timers with their ids, queues the
//! process's pending signals; every thread (the leader too) then restores
//! its tid address, robust list, scheduling, name, timer slack, alternate
//! stack, rseq area and pending signals, its seccomp filters (before the
//! credentials: installing one takes privilege), its credentials, dumpable
//! and parent death signal. The leader arms the timers last. Each thread
//! stops on `int3`; rcriu (which traces every thread from its creation,
//! with PTRACE_O_SUSPEND_SECCOMP so the filters bind only once it lets
//! go) sets the registers, the FPU state and the signal mask of each,
//! unmaps the region and lets them go. On failure a thread writes the
//! step, the item and the errno into its `ThreadArgs` (the leader into
//! `Args`) and exits the whole process with status 1.

use core::mem::{offset_of, size_of};

use crate::KSigaction;

/// `Args::magic`.
pub const MAGIC: u64 = 0x7473_7275_6972_6372; // "rcriurst", little-endian
/// Bytes of stack at the region's end.
pub const STACK_SIZE: usize = 64 * 1024;
/// Most signal actions.
pub const NSIG: usize = crate::NSIG;
/// Resource limits (`RLIM_NLIMITS`).
pub const NLIMITS: usize = 16;
/// Room for the saved auxiliary vector, in u64 words (the kernel keeps at
/// most `AT_VECTOR_SIZE` = 2 * (2 + 23 + 3 + 1) of them on x86_64).
pub const AUXV_WORDS: usize = 64;
/// Most ranges [`Args::keep`] holds.
pub const MAX_KEEP: usize = 8;
/// Most vDSO moves.
pub const MAX_VDSO_MOVES: usize = 8;
/// Most iovecs one `preadv` takes (UIO_MAXIOV).
pub const MAX_IOV_BATCH: usize = 1024;

/// [`Args::flags`]: call setsid() (the process was a session leader).
pub const FLAG_SETSID: u32 = 1 << 0;
/// [`Args::flags`]: enter a new time namespace with [`Args::timens`]'s
/// offsets.
pub const FLAG_TIMENS: u32 = 1 << 1;
/// [`Args::flags`]: set the mm fields (`PR_SET_MM_MAP`).
pub const FLAG_MM_MAP: u32 = 1 << 2;
/// [`Args::flags`]: register [`Args::rseq`].
pub const FLAG_RSEQ: u32 = 1 << 3;
/// [`Args::flags`]: write [`Args::loginuid`].
pub const FLAG_LOGINUID: u32 = 1 << 4;
/// [`Args::flags`]: rcriu's page helper reads batches of pages too, from
/// the back, while the restorer reads from the front
/// ([`Args::page_claims`], [`Args::page_state`]).
pub const FLAG_PAGE_HELPER: u32 = 1 << 5;
/// Write `coredump_filter` to /proc/self/coredump_filter.
pub const FLAG_COREDUMP_FILTER: u32 = 1 << 6;
/// Write `autogroup_nice` to /proc/self/autogroup (a session leader's new
/// autogroup).
pub const FLAG_AUTOGROUP: u32 = 1 << 7;

/// [`Args::flags`]: forked by its parent's restorer (not by rcriu): it
/// does not wait for rcriu's go, and enters no time namespace (it has its
/// parent's).
pub const FLAG_CHILD: u32 = 1 << 8;

/// [`Args::flags`]: its process group is one a helper makes: it counts
/// itself in [`TreeShared::joined`] once it joined.
pub const FLAG_JOINS_HELPER: u32 = 1 << 9;

/// [`Args::flags`]: its fd table is an ancestor's (CLONE_FILES), whose
/// restorer places the fds: this one only says when it is done with the
/// fds rcriu opened for it ([`Args::fdt_owner`]) and waits until they are
/// placed.
pub const FLAG_FDT_SHARED: u32 = 1 << 10;

/// [`Args::flags`]: lazy restore (`--lazy-pages`): the areas marked
/// [`Vma::lazy`] are registered on a new userfaultfd (missing mode)
/// instead of filled, and the userfaultfd is sent, with the process's
/// pid, over [`Args::uffd_sock`] to rcriu, which hands it to the
/// lazy-pages daemon.
pub const FLAG_LAZY: u32 = 1 << 11;

/// A child the restorer of a process forks, with its pid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Child {
    pub pid: i32,
    /// The signal its parent gets when it ends (SIGCHLD, mostly).
    pub exit_signal: u32,
    /// Its own [`Args`], in the region; 0 for a zombie or a helper.
    pub args: u64,
    /// The top of its stack, in the region (a zombie and a helper have a
    /// small one of their own).
    pub stack_top: u64,
    /// A zombie's wait status: it exits so at once.
    pub zombie_status: u32,
    /// Non-zero: forked once its parent's memory is in place (so that it
    /// inherits the areas it shares with its parent), zero: before the
    /// parent unmaps rcriu.
    pub late: u32,
    /// A zombie's name (comm), NUL-padded.
    pub comm: [u8; 16],
    /// What it is: [`CHILD_LIVE`], [`CHILD_ZOMBIE`], [`CHILD_HELPER`] or
    /// [`CHILD_SESSION`].
    pub kind: u32,
    /// A zombie's or a helper's process group: one that leads its own
    /// makes it before it ends.
    pub pgid: i32,
    /// `clone3` flags: CLONE_FILES and CLONE_FS, what it shares with its
    /// parent; CLONE_PARENT for a member of a session helper's session,
    /// which the helper forks as its own sibling (not its parent).
    pub clone_flags: u64,
    /// A session helper's members: the children right after it in its
    /// parent's array.
    pub nr_members: u32,
    /// Its pid on the host when it is forked into a pid namespace the
    /// restore made (clone3 then sets both, the namespace's first); 0
    /// outside one.
    pub host_pid: i32,
    /// In a pid namespace nested in the restored one: its pids at every
    /// level, its own namespace's first, the host's last (clone3's
    /// set_tid as it is), [`Child::pid`] being the one its parent sees;
    /// 0 items: `pid` and `host_pid` alone.
    pub set_tid: [i32; MAX_PID_LEVELS],
    pub set_tid_size: u32,
    pub _pad: u32,
}

/// The most pid namespace levels a restored process or thread is given
/// its pid at (the host's, the container's and six nested).
pub const MAX_PID_LEVELS: usize = 8;

/// [`Child::kind`]: a process of the tree, into its own restorer.
pub const CHILD_LIVE: u32 = 0;
/// A zombie: it ends at once with its status, never reaped by the restore.
pub const CHILD_ZOMBIE: u32 = 1;
/// A helper (as CRIU's `TASK_HELPER`): it makes a process group whose
/// leader was gone at the dump, waits until every member joined it
/// ([`TreeShared::joined`]), then ends; its parent reaps it. It sends no
/// signal when it ends.
pub const CHILD_HELPER: u32 = 2;
/// A session helper (CRIU's helper for a session whose leader was gone):
/// it makes the session with its pid as the session's id, forks the
/// members ([`Child::nr_members`] children after it in its parent's
/// array) as its parent's children (CLONE_PARENT: they are the parent's,
/// in the helper's session), and ends; its parent reaps it. Its exit
/// signal is the members' (CLONE_PARENT gives them its own).
pub const CHILD_SESSION: u32 = 3;

/// What the processes of a tree share in the region: a barrier all reach
/// once every process exists (process groups are joined after it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeShared {
    /// The live processes and helpers that reached the barrier (a futex).
    pub created: u32,
    /// The live processes of the tree and its helpers.
    pub nr_procs: u32,
    /// The processes that joined a group a helper made (a futex).
    pub joined: u32,
    /// The processes that join a group a helper makes.
    pub nr_joiners: u32,
}

/// [`Args::page_state`]: the areas are not mapped yet.
pub const PAGES_WAIT: u32 = 0;
/// [`Args::page_state`]: the restorer mapped the areas; the helper may
/// write into them.
pub const PAGES_MAPPED: u32 = 1;
/// [`Args::page_state`]: the helper wrote every batch it claimed.
pub const PAGES_DONE: u32 = 2;
/// [`Args::page_state`]: the helper failed ([`Args::page_err`]).
pub const PAGES_FAILED: u32 = 3;
/// [`Args::page_state`]: rcriu gave up on the restorer before it mapped
/// the areas; the helper ends.
pub const PAGES_ABORT: u32 = 4;

/// [`Args::page_claims`] with `front` and `back` (batch indices).
pub const fn page_claims(front: u32, back: u32) -> u64 {
    front as u64 | (back as u64) << 32
}

/// The next unit of work from the front or the back of what
/// `claims` ([`page_claims`]) leaves, taken atomically, until the two ends
/// meet. Storing 0 ends the work for both.
pub fn claim(claims: &core::sync::atomic::AtomicU64, front: bool) -> Option<u32> {
    use core::sync::atomic::Ordering;
    let mut cur = claims.load(Ordering::Acquire);
    loop {
        let (lo, hi) = (cur as u32, (cur >> 32) as u32);
        if lo >= hi {
            return None;
        }
        let (next, got) = if front {
            (page_claims(lo + 1, hi), lo)
        } else {
            (page_claims(lo, hi - 1), hi - 1)
        };
        match claims.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(got),
            Err(now) => cur = now,
        }
    }
}

/// Bytes of stack each thread but the leader gets in the region.
pub const THREAD_STACK_SIZE: usize = 32 * 1024;

/// The stack of a zombie or a helper: it makes a few syscalls and ends.
pub const SMALL_STACK_SIZE: usize = 4096;
/// Bytes of one `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;
/// The errno an injected restorer fault reports (ECANCELED).
pub const FAULT_ERRNO: i64 = 125;

/// [`ThreadArgs::flags`]: register [`ThreadArgs::rseq`].
pub const TFLAG_RSEQ: u32 = 1 << 0;
/// [`ThreadArgs::flags`]: set [`ThreadArgs::timer_slack`].
pub const TFLAG_SLACK: u32 = 1 << 1;
/// [`ThreadArgs::flags`]: set the credentials ([`ThreadArgs::creds`]).
pub const TFLAG_CREDS: u32 = 1 << 2;
/// [`ThreadArgs::flags`]: set the scheduling policy and nice value.
pub const TFLAG_SCHED: u32 = 1 << 3;
/// Set the thread's CPU affinity from `affinity`.
pub const TFLAG_AFFINITY: u32 = 1 << 4;
/// Set the thread's I/O priority to `ioprio`.
pub const TFLAG_IOPRIO: u32 = 1 << 5;

/// [`Creds::flags`]: set the supplementary groups.
pub const CREDS_GROUPS: u32 = 1 << 0;
/// [`Creds::flags`]: set no_new_privs.
pub const CREDS_NO_NEW_PRIVS: u32 = 1 << 1;

/// The items of [`Step::Creds`] a failure names in `index`.
pub mod creds_item {
    pub const GROUPS: u32 = 0;
    pub const SECBITS_FIXUP: u32 = 1;
    pub const UIDS: u32 = 2;
    pub const FSUID: u32 = 3;
    pub const GIDS: u32 = 4;
    pub const FSGID: u32 = 5;
    pub const SECBITS: u32 = 6;
    pub const CAPSET: u32 = 7;
    pub const NO_NEW_PRIVS: u32 = 8;
    /// Dropping capability n from the bounding set: `BOUND + n`.
    pub const BOUND: u32 = 100;
    /// Raising ambient capability n: `AMBIENT + n`.
    pub const AMBIENT: u32 = 200;

    /// What item `index` is, for messages.
    pub fn describe(index: u32) -> (&'static str, Option<u32>) {
        match index {
            GROUPS => ("setgroups", None),
            SECBITS_FIXUP => ("setting SECURE_NO_SETUID_FIXUP", None),
            UIDS => ("setresuid", None),
            FSUID => ("setfsuid", None),
            GIDS => ("setresgid", None),
            FSGID => ("setfsgid", None),
            SECBITS => ("setting the securebits", None),
            CAPSET => ("capset", None),
            NO_NEW_PRIVS => ("setting no_new_privs", None),
            i if i >= AMBIENT => ("raising the ambient capability", Some(i - AMBIENT)),
            i if i >= BOUND => ("dropping from the bounding set capability", Some(i - BOUND)),
            _ => ("an unknown item", None),
        }
    }
}

/// A thread's credentials, as `creds_entry` holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    /// Real, effective, saved, filesystem.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub cap_eff: [u32; 2],
    pub cap_prm: [u32; 2],
    pub cap_inh: [u32; 2],
    pub cap_bnd: [u32; 2],
    pub cap_amb: [u32; 2],
    pub secbits: u32,
    /// The highest capability number the dumping kernel knew.
    pub last_cap: u32,
    /// `CREDS_*`.
    pub flags: u32,
    pub _pad: u32,
    /// Address and count of the supplementary groups (u32 each).
    pub groups: u64,
    pub nr_groups: u64,
}

/// One seccomp filter: `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompFilter {
    pub flags: u64,
    /// `struct sock_fprog`: instruction count, then (aligned) the address
    /// of the instructions (8 bytes each).
    pub len: u16,
    pub _pad: [u16; 3],
    pub filter: u64,
}

/// A POSIX timer to create with its id, then to arm.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    pub signo: i32,
    /// `sigev_notify`.
    pub notify: i32,
    /// The thread of `SIGEV_THREAD_ID`.
    pub thread_id: i32,
    pub _pad: i32,
    pub sival: u64,
    /// `struct itimerspec`: interval sec, nsec, value sec, nsec.
    pub spec: [u64; 4],
}

/// What one thread restores itself (the leader too), and its report.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadArgs {
    /// Out: 0, or the negative errno of the step that failed.
    pub status: i64,
    /// Out: the [`Step`] reached.
    pub step: u32,
    /// Out: which item of the step failed.
    pub index: u32,
    pub tid: i32,
    /// `TFLAG_*`.
    pub flags: u32,
    /// The [`Args`] of the process.
    pub args: u64,
    /// The top of its stack in the region (0 for the leader).
    pub stack_top: u64,
    pub clear_tid: u64,
    pub robust: u64,
    pub robust_len: u64,
    pub rseq: Rseq,
    /// The alternate signal stack: sp, flags, size (size 0: none).
    pub sas: [u64; 3],
    pub sched_policy: u32,
    pub sched_prio: u32,
    pub nice: i32,
    pub pdeath_sig: u32,
    pub timer_slack: u64,
    pub comm: [u8; 16],
    /// Address and count of its own pending signals (`siginfo_t`).
    pub signals: u64,
    pub nr_signals: u64,
    /// 0, `SECCOMP_MODE_STRICT` or `SECCOMP_MODE_FILTER`.
    pub seccomp_mode: u32,
    pub _pad: u32,
    /// Address and count of its [`SeccompFilter`]s, oldest first.
    pub filters: u64,
    pub nr_filters: u64,
    pub creds: Creds,
    /// With [`TFLAG_AFFINITY`]: address and count of the CPU mask's
    /// 64-bit words.
    pub affinity: u64,
    pub nr_affinity: u64,
    /// With [`TFLAG_IOPRIO`]: `ioprio_set`'s value.
    pub ioprio: u32,
    /// `PR_SET_TSC`'s mode (0: leave it).
    pub tsc: u32,
    /// `PR_MCE_KILL`'s policy; [`MCE_KILL_DEFAULT`]: the system's.
    pub mce_kill: u32,
    /// In a pid namespace of the restore's own: the thread's tid on the
    /// host, which rcriu picks to know it (0: the kernel's choice).
    pub host_tid: i32,
    /// In a nested pid namespace: its tids at every level, as
    /// [`Child::set_tid`] (`tid` is its own namespace's).
    pub set_tid: [i32; MAX_PID_LEVELS],
    pub set_tid_size: u32,
    pub _pad_levels: u32,
}

/// [`ThreadArgs::mce_kill`] for the system's policy (`PR_MCE_KILL_DEFAULT`).
pub const MCE_KILL_DEFAULT: u32 = 2;

/// A file the restorer opens itself, once the process exists: a file of
/// the process's own /proc directory, which names it by its pid, or a
/// pidfd (`path` 0) of process `pos` of the tree (itself when 0), once
/// every process exists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LateOpen {
    /// The fd it goes to.
    pub to: i32,
    /// `open`'s flags (O_CLOEXEC for a close-on-exec fd), or, for a
    /// pidfd, `pidfd_open`'s (PIDFD_NONBLOCK) and O_CLOEXEC.
    pub flags: i32,
    /// Its position; for a pidfd, the pid (0: the process itself).
    pub pos: u64,
    /// Where the NUL-terminated path lies, in the region; 0 for a pidfd.
    pub path: u64,
}

/// A file lock the process takes itself, once its fds are placed (a
/// POSIX lock is its own; a flock and a lease show who took them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TakeLock {
    /// The fd it is taken through.
    pub fd: i32,
    /// [`LOCK_POSIX`], [`LOCK_FLOCK`] or [`LOCK_LEASE`].
    pub kind: u32,
    /// F_RDLCK or F_WRLCK.
    pub ltype: u32,
    pub _pad: u32,
    /// A POSIX lock's range: start, and length (0: to the end).
    pub start: i64,
    pub len: i64,
}

/// [`TakeLock::kind`]: `fcntl(F_SETLK)`.
pub const LOCK_POSIX: u32 = 1;
/// [`TakeLock::kind`]: `flock`.
pub const LOCK_FLOCK: u32 = 2;
/// [`TakeLock::kind`]: `fcntl(F_SETLEASE)`.
pub const LOCK_LEASE: u32 = 8;

/// The name of an anonymous area (`PR_SET_VMA_ANON_NAME`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnonName {
    pub start: u64,
    pub end: u64,
    /// Where the NUL-terminated name lies, in the region.
    pub name: u64,
}

/// The steps, for error reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    None = 0,
    Signals = 1,
    DropRseq = 2,
    Go = 3,
    Session = 4,
    Timens = 5,
    Unmap = 6,
    Vdso = 7,
    Map = 8,
    Read = 9,
    Madvise = 10,
    Protect = 11,
    Fs = 12,
    MmMap = 13,
    Comm = 14,
    Sigactions = 15,
    Rlimits = 16,
    Rseq = 17,
    Fds = 18,
    Done = 19,
    Itimers = 20,
    Parent = 21,
    Copy = 22,
    Sas = 23,
    Attrs = 24,
    Groups = 25,
    Ctty = 26,
    Loginuid = 27,
    Thread = 28,
    PosixTimers = 29,
    SharedSignals = 30,
    ThreadState = 31,
    ThreadSignals = 32,
    Seccomp = 33,
    Creds = 34,
    ArmTimers = 35,
    MmAttrs = 36,
    ProcessAttrs = 37,
    Children = 38,
    Pgid = 39,
    Uffd = 40,
    PidnsForChildren = 41,
}

impl Step {
    /// The step with this number, if any.
    pub const fn from_u32(v: u32) -> Step {
        match v {
            1 => Step::Signals,
            2 => Step::DropRseq,
            3 => Step::Go,
            4 => Step::Session,
            5 => Step::Timens,
            6 => Step::Unmap,
            7 => Step::Vdso,
            8 => Step::Map,
            9 => Step::Read,
            10 => Step::Madvise,
            11 => Step::Protect,
            12 => Step::Fs,
            13 => Step::MmMap,
            14 => Step::Comm,
            15 => Step::Sigactions,
            16 => Step::Rlimits,
            17 => Step::Rseq,
            18 => Step::Fds,
            19 => Step::Done,
            20 => Step::Itimers,
            21 => Step::Parent,
            22 => Step::Copy,
            23 => Step::Sas,
            24 => Step::Attrs,
            25 => Step::Groups,
            26 => Step::Ctty,
            27 => Step::Loginuid,
            28 => Step::Thread,
            29 => Step::PosixTimers,
            30 => Step::SharedSignals,
            31 => Step::ThreadState,
            32 => Step::ThreadSignals,
            33 => Step::Seccomp,
            34 => Step::Creds,
            35 => Step::ArmTimers,
            36 => Step::MmAttrs,
            37 => Step::ProcessAttrs,
            38 => Step::Children,
            39 => Step::Pgid,
            40 => Step::Uffd,
            41 => Step::PidnsForChildren,
            _ => Step::None,
        }
    }

    /// What the step does, for messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Step::None => "starting",
            Step::Signals => "blocking signals",
            Step::DropRseq => "dropping the inherited rseq registration",
            Step::Go => "waiting for rcriu",
            Step::Session => "creating the session",
            Step::Timens => "entering the time namespace",
            Step::Unmap => "unmapping rcriu",
            Step::Vdso => "moving the vDSO",
            Step::Map => "mapping a memory area",
            Step::Read => "reading pages",
            Step::Madvise => "applying madvise flags and guard regions",
            Step::Protect => "setting a memory protection",
            Step::Fs => "setting root, cwd and umask",
            Step::MmMap => "setting the mm fields (PR_SET_MM_MAP)",
            Step::Comm => "setting the name",
            Step::Sigactions => "setting a signal action",
            Step::Rlimits => "setting a resource limit",
            Step::Rseq => "registering rseq",
            Step::Fds => "placing file descriptors",
            Step::Done => "finishing",
            Step::Itimers => "setting an interval timer",
            Step::Parent => "binding its life to rcriu's",
            Step::Copy => "writing the vDSO proxy",
            Step::Sas => "setting the alternate signal stack",
            Step::Attrs => {
                "setting process attributes (personality, subreaper, dumpable, oom_score_adj)"
            }
            Step::Groups => "setting the supplementary groups",
            Step::Ctty => "setting the controlling terminal",
            Step::Loginuid => "setting the login uid",
            Step::Thread => "creating a thread (clone3 with its tid)",
            Step::PosixTimers => "creating a POSIX timer with its id",
            Step::SharedSignals => "queueing the process's pending signals",
            Step::ThreadState => {
                "setting a thread's state (tid address, robust list, scheduling, affinity, I/O priority, name, slack, TSC and MCE modes)"
            }
            Step::ThreadSignals => "queueing a thread's pending signals",
            Step::Seccomp => "installing seccomp filters",
            Step::Creds => "setting credentials",
            Step::ArmTimers => "arming the timers",
            Step::MmAttrs => "setting the memory attributes (THP disable, KSM)",
            Step::ProcessAttrs => {
                "setting process attributes (membarrier, coredump filter, autogroup, MDWE)"
            }
            Step::Children => "creating a child process (clone3 with its pid)",
            Step::Pgid => "joining its process group",
            Step::Uffd => {
                "registering the lazy areas on a userfaultfd and sending it to rcriu (--lazy-pages)"
            }
            Step::PidnsForChildren => {
                "setting the pid namespace of its children (setns of a child's pidfd, or unshare)"
            }
        }
    }
}

/// `struct clone_args` of clone3 (its third version, with `cgroup`):
/// rcriu forks the restorer with it, the restorer its threads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// An address range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

/// A move of a special mapping (vDSO, vvar) with `mremap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsoMove {
    pub from: Range,
    pub to: u64,
    pub _pad: u64,
}

/// A memory area to map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// Offset in the file (bytes).
    pub pgoff: u64,
    /// Bit n set: `madvise(MADV n)` after filling.
    pub madv: u64,
    /// The final protection.
    pub prot: u32,
    /// `mmap` flags (MAP_FIXED is added).
    pub flags: u32,
    /// The file, or -1 for anonymous memory.
    pub fd: i32,
    /// Non-zero when pages are read into the area: it is mapped writable
    /// for that, then protected. Otherwise it is mapped with its final
    /// protection at once (which keeps its VM_ACCOUNT as it was, and so
    /// its merging with neighbours).
    pub fill: u32,
    /// Non-zero when the process's parent had the same private anonymous
    /// area, with the same pages to fill or none, when it forked the
    /// process (a late [`Child`]): the area is kept as inherited, its pages
    /// shared until written, and only the pages that differ are written
    /// ([`Args::cow_batches`]).
    pub inherited: u32,
    /// How a SysV shm area is made ([`SYSV_ATTACH`], ...); 0 for any
    /// other area. `fd` is then the segment's id.
    pub sysv: u32,
    /// Non-zero when the area has pages left to the lazy-pages daemon
    /// ([`FLAG_LAZY`]): it is registered on the userfaultfd.
    pub lazy: u32,
    pub _pad: u32,
}

/// [`Vma::sysv`]: the first area of an attach of segment `fd`, attached
/// read-write (`shmat` at `start`, the whole segment), then protected.
pub const SYSV_ATTACH: u32 = 1;
/// [`Vma::sysv`]: as [`SYSV_ATTACH`], attached read-only (`SHM_RDONLY`).
pub const SYSV_ATTACH_RDONLY: u32 = 2;
/// [`Vma::sysv`]: a later area of the same attach, in place already:
/// only protected.
pub const SYSV_FOLLOW: u32 = 3;

/// `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoVec {
    pub base: u64,
    pub len: u64,
}

/// One `preadv` from a pages file: `nr` iovecs from `first`, at `off`
/// of pages file `file` ([`Args::pages_fds`]: 0 the process's own pages
/// image, the others the parents' of a pre-dump chain).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    pub off: u64,
    pub first: u32,
    pub nr: u32,
    pub file: u32,
    pub _pad: u32,
}

/// The most pages files one process's reads come from (its own and its
/// parents' up a pre-dump chain); a deeper chain is gathered into one.
pub const MAX_PAGES_FILES: usize = 16;

/// An fd to place: `dup3(from, to)`, close-on-exec when `cloexec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdMove {
    pub from: i32,
    pub to: i32,
    pub cloexec: u32,
    pub _pad: u32,
}

/// `struct prctl_mm_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}

/// `struct rlimit64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rlimit {
    pub cur: u64,
    pub max: u64,
}

/// An rseq registration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rseq {
    pub addr: u64,
    pub len: u32,
    pub sig: u32,
}

/// Everything the restorer needs, and its report.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Args {
    pub magic: u64,
    /// Out: 0, or the negative errno of the step that failed.
    pub status: i64,
    /// Out: the [`Step`] reached (the one that failed, on failure).
    pub step: u32,
    /// Out: which item of the step failed (area, fd, signal, limit...).
    pub index: u32,
    /// Out: bit n set when limit n could not be set (kept as it was).
    pub rlimit_failed: u32,
    /// `FLAG_*`.
    pub flags: u32,
    pub go_fd: i32,
    pub pages_fd: i32,
    pub cwd_fd: i32,
    /// -1: keep the root.
    pub root_fd: i32,
    pub umask: u32,
    pub nr_keep: u32,
    /// rcriu's pid: the restorer dies with rcriu until rcriu traces it.
    pub parent_pid: i32,
    pub _pad0: u32,
    /// The top of the user address space: everything below it but `keep`
    /// is unmapped.
    pub task_size: u64,
    /// What of rcriu's address space survives (sorted, disjoint): the
    /// region, the vDSO and vvar areas.
    pub keep: [Range; MAX_KEEP],
    /// The registration inherited from rcriu's thread, to drop (rcriu
    /// reads it through ptrace before it says go).
    pub self_rseq: Rseq,
    /// The lines to write to /proc/self/timens_offsets.
    pub timens: [[u8; 64]; 2],
    pub timens_len: [u32; 2],
    pub nr_vdso_moves: u32,
    /// The login uid to write to /proc/self/loginuid, when
    /// [`FLAG_LOGINUID`].
    pub loginuid: u32,
    pub vdso_moves: [VdsoMove; MAX_VDSO_MOVES],
    /// Address and count of the `Vma` array.
    pub vmas: u64,
    pub nr_vmas: u64,
    /// Address and count of the `IoVec` array (pages to read, in order).
    pub iovs: u64,
    pub nr_iovs: u64,
    /// Address and count of the `ReadBatch` array.
    pub batches: u64,
    pub nr_batches: u64,
    /// Address and count of the `FdMove` array, sorted by `to`.
    pub fds: u64,
    pub nr_fds: u64,
    pub mm: MmMap,
    pub auxv: [u64; AUXV_WORDS],
    /// Bit n - 1 set: set signal n's action from `sigactions[n - 1]`.
    pub sigaction_set: u64,
    pub sigactions: [KSigaction; NSIG],
    pub nr_rlimits: u32,
    pub _pad1: u32,
    pub rlimits: [Rlimit; NLIMITS],
    /// A copy into the process's memory once its pages are read (the
    /// patched copy of an old vDSO, for a vDSO proxy): `len` bytes from
    /// `copy_src` (in the region) to `copy_dst`; none when `len` is 0.
    pub copy_src: u64,
    pub copy_dst: u64,
    pub copy_len: u64,
    /// The real, virtual and profiling interval timers, as `struct
    /// itimerval` words: interval sec, usec, value sec, usec.
    pub itimers: [[u64; 4]; 3],
    /// Address and count of the [`ThreadArgs`] array: the leader first.
    pub threads: u64,
    pub nr_threads: u64,
    /// Address and count of the process's pending signals (`siginfo_t`,
    /// 128 bytes each), queued in order.
    pub signals: u64,
    pub nr_signals: u64,
    /// Address and count of the [`PosixTimer`] array.
    pub timers: u64,
    pub nr_timers: u64,
    pub _pad2: u32,
    pub child_subreaper: u32,
    pub dumpable: u32,
    pub personality: u32,
    /// The line to write to /proc/self/oom_score_adj (len 0: none).
    pub oom_score_adj: [u8; 16],
    pub oom_score_adj_len: u32,
    /// rcriu's fd (a source, above the process's own) of the terminal to
    /// make the controlling one (TIOCSCTTY) once the session exists,
    /// before the fds are placed; -1 for none.
    pub ctty_fd: i32,
    /// Address and count of the `MADV_GUARD_INSTALL` guard regions
    /// ([`Range`]s), installed once the areas are advised (a failure is
    /// reported as [`Step::Madvise`] of item `nr_vmas` + its index).
    pub guards: u64,
    pub nr_guards: u64,
    /// Fault injection (`RCRIU_FAULT=restorer:STEP`): the first thread
    /// that reaches this [`Step`] fails there; 0 for none.
    pub fault_step: u32,
    /// With [`FLAG_LAZY`]: the socket (SOCK_SEQPACKET) the userfaultfd is
    /// sent over, one message of the pid (i32) with the fd attached.
    pub uffd_sock: i32,
    /// With [`FLAG_PAGE_HELPER`]: the batches not claimed yet, as
    /// [`page_claims`]`(front, back)`: the restorer takes `front` and
    /// counts up, the helper takes `back - 1` and counts down, each with
    /// an atomic compare-and-swap, until they meet.
    pub page_claims: u64,
    /// With [`FLAG_PAGE_HELPER`]: `PAGES_*`, a futex both sides wait on.
    pub page_state: u32,
    /// On [`PAGES_FAILED`]: the helper's negative errno and its batch.
    pub page_err: i32,
    pub page_err_batch: u32,
    pub _pad4: u32,
    /// The membarrier commands to register (bit n: command 1 << n), as
    /// `MEMBARRIER_CMD_GET_REGISTRATIONS` reported them.
    pub membarrier: u32,
    /// `PR_GET_THP_DISABLE` as it was: 0, 1, or 3 (except where advised).
    pub thp_disable: u32,
    /// `PR_SET_MDWE`'s flags (0: none), set once the memory is in place.
    pub mdwe: u32,
    /// `PR_SET_MEMORY_MERGE` (KSM on every area) when 1.
    pub ksm_merge_any: u32,
    /// With [`FLAG_COREDUMP_FILTER`].
    pub coredump_filter: u32,
    /// With [`FLAG_AUTOGROUP`].
    pub autogroup_nice: i32,
    /// Address and count of the [`AnonName`]s, named once the areas are
    /// advised (a failure is [`Step::Madvise`] of item `nr_vmas` +
    /// `nr_guards` + its index).
    pub anon_names: u64,
    pub nr_anon_names: u64,
    /// Address and count of the [`LateOpen`]s, sorted by `to` (a failure
    /// is [`Step::Fds`] of item `nr_fds` + its index).
    pub late: u64,
    pub nr_late: u64,
    /// Address and count of the [`TakeLock`]s, taken once every fd is
    /// placed (a failure is [`Step::Fds`] of item `nr_fds` + `nr_late` +
    /// its index).
    pub locks: u64,
    pub nr_locks: u64,
    /// Address and count of the [`Child`]ren it forks (with their pids).
    pub children: u64,
    pub nr_children: u64,
    /// The [`TreeShared`] words of its tree, in the region (0: a single
    /// process).
    pub tree: u64,
    /// The process group to join once every process exists (0: keep the
    /// one it has).
    pub pgid: i32,
    pub _pad5: u32,
    /// Address and count of the [`ReadBatch`]es into inherited areas
    /// (their iovecs in `iovs` too): each page is read aside and written
    /// only where it differs from the page inherited.
    pub cow_batches: u64,
    pub nr_cow_batches: u64,
    /// Address and count of the [`Range`]s of inherited areas the process
    /// had no pages in: dropped (`MADV_DONTNEED`) before the reads.
    pub drops: u64,
    pub nr_drops: u64,
    /// What the restorer reports of its inherited areas: pages compared,
    /// and those of them left shared (CRIU's `pages_compared` and
    /// `pages_skipped_cow`).
    pub pages_compared: u64,
    pub pages_cow: u64,
    /// With [`FLAG_FDT_SHARED`]: the address of the `Args` of the process
    /// whose restorer places the fds of the table.
    pub fdt_owner: u64,
    /// The processes sharing this process's fd table still using fds
    /// rcriu opened for them (a futex): it places the fds once none is.
    pub fdt_pending: u32,
    /// Non-zero once the fds are placed (a futex).
    pub fdt_placed: u32,
    /// The pid namespace its children go into from now on, set once its
    /// children and threads exist: 0 its own, a pid (as it sees it) of a child whose
    /// namespace it is ([`PIDNS_CHILDREN_NEW`]: a new one, not made yet).
    pub pidns_for_children: i32,
    pub _pidns_pad: u32,
    /// The pages files its batches read ([`ReadBatch::file`]), the first
    /// `pages_fd`; -1 past the last.
    pub pages_fds: [i32; MAX_PAGES_FILES],
}

/// [`Args::pidns_for_children`]: `unshare(CLONE_NEWPID)`, a namespace
/// its next child is the init of.
pub const PIDNS_CHILDREN_NEW: i32 = -1;

const _: () = {
    assert!(size_of::<CloneArgs>() == 88);
    assert!(size_of::<Range>() == 16);
    assert!(size_of::<VdsoMove>() == 32);
    assert!(size_of::<Vma>() == 64);
    assert!(offset_of!(Vma, lazy) == 56);
    assert!(offset_of!(Vma, fd) == 40);
    assert!(size_of::<IoVec>() == 16);
    assert!(size_of::<ReadBatch>() == 24);
    assert!(size_of::<FdMove>() == 16);
    assert!(size_of::<MmMap>() == 104);
    assert!(offset_of!(MmMap, auxv_size) == 96);
    assert!(size_of::<Rlimit>() == 16);
    assert!(size_of::<Rseq>() == 16);
    assert!(offset_of!(Args, status) == 8);
    assert!(offset_of!(Args, step) == 16);
    assert!(offset_of!(Args, task_size) == 64);
    assert!(offset_of!(Args, keep) == 72);
    assert!(offset_of!(Args, vmas).is_multiple_of(8));
    assert!(offset_of!(Args, mm).is_multiple_of(8));
    assert!(offset_of!(Args, sigactions).is_multiple_of(8));
    assert!(offset_of!(Args, rlimits).is_multiple_of(8));
    assert!(size_of::<Args>().is_multiple_of(8));
    // Every field accounted for: no implicit padding.
    assert!(size_of::<Args>() == 4048 + 4 * MAX_PAGES_FILES);
    assert!(offset_of!(Args, fdt_pending).is_multiple_of(4));
    assert!(size_of::<Child>() == 112);
    assert!(offset_of!(Child, host_pid) == 68);
    assert!(offset_of!(Child, set_tid_size) == 104);
    assert!(size_of::<TreeShared>() == 16);
    assert!(size_of::<LateOpen>() == 24);
    assert!(size_of::<TakeLock>() == 32);
    assert!(offset_of!(TakeLock, start) == 16);
    assert!(offset_of!(Args, page_claims).is_multiple_of(8));
    assert!(size_of::<Creds>() == 104);
    assert!(size_of::<SeccompFilter>() == 24);
    assert!(offset_of!(SeccompFilter, filter) == 16);
    assert!(size_of::<PosixTimer>() == 64);
    assert!(offset_of!(ThreadArgs, creds) == 184);
    assert!(size_of::<ThreadArgs>() == 360);
    assert!(offset_of!(ThreadArgs, set_tid_size) == 352);
    assert!(size_of::<AnonName>() == 24);
    assert!(size_of::<Args>() < 16 * 1024);
};
