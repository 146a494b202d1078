//! The ABIs between rcriu (the host) and its no_std blobs: the parasite's
//! commands (the items at this crate's root) and what the restorer is
//! given ([`restorer`]).
//!
//! The parasite is a position-independent blob that rcriu loads into a
//! shared area mapped in the victim. Both sides see the same bytes:
//!
//! ```text
//! 0                 blob image (code, read-only data, then data and bss)
//! args_off          the args area (ARGS_SIZE): a command's arguments in,
//!                   its results out
//! ctl_off           the control block ([`Ctl`], CTL_SIZE): how the
//!                   parasite leaves, and what it tells outside commands
//! stack_off         the daemon's stack (STACK_SIZE), growing down
//! thread_stack_off  the stack of one-shot commands on other threads
//! ```
//!
//! Every entry is at the blob's head with `rdi` = the command, `rsi` = the
//! args area and `rdx` = the control block. [`Cmd::Init`] connects the
//! control socket and serves commands sent as [`CtlMsg`] datagrams over
//! it, each answered by a [`CtlMsg`] with the same `cmd`, until the socket
//! breaks (rcriu closed it, or died): then the parasite closes what it was
//! given, waits for the one-shot commands in flight on other threads, and
//! leaves by [`Ctl::leave`], a jump out of its area that unmaps the area
//! and lands in the thread's original state (see rcriu-compel's
//! `lifeline`). Any other command is a one-shot on another thread: it
//! runs, writes its result to [`Ctl::oneshot_ret`], says so on the control
//! socket ([`ONESHOT_DONE`]) and waits for rcriu to take the thread back;
//! should the socket break first (the daemon then sets [`Ctl::gone`]), it
//! leaves by [`Ctl::oneshot_leave`],
//! taking itself off [`Ctl::oneshots`] with a futex operation made out of
//! the area. No `int3` anywhere: a parasite
//! whose rcriu is gone never stops on a trap that would kill its host.
//!
//! Every struct here is `#[repr(C)]` with explicit padding, and its layout
//! is asserted at compile time, so that the host and the blob (built
//! separately) agree.

#![no_std]

pub mod restorer;

use core::mem::{align_of, offset_of, size_of};

/// Size of the args area.
pub const ARGS_SIZE: usize = 64 * 1024;
/// Size of the control block's page.
pub const CTL_SIZE: usize = 4096;
/// Size of the parasite's stack.
pub const STACK_SIZE: usize = 64 * 1024;
/// Bytes below the stack top that the parasite never uses (a red zone for
/// the host's own bookkeeping).
pub const STACK_REDZONE: usize = 128;

/// The commands the parasite understands.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Connect the control socket to the host, then serve commands until
    /// it breaks. Args: [`InitArgs`].
    Init = 1,
    /// Daemon: close the fds received, drop a SIGPIPE the parasite caused,
    /// answer, and wait for the socket to break (rcriu takes the thread
    /// back meanwhile).
    Fini = 2,
    /// Daemon: `vmsplice` the listed ranges into a pipe received earlier
    /// with [`Cmd::RecvFd`]. Args: [`DumpPagesArgs`]; `ret` = bytes spliced.
    DumpPages = 3,
    /// Daemon: read every signal's action. Args: [`SigactionsArgs`].
    Sigactions = 4,
    /// Daemon: read the three interval timers. Args: [`ItimersArgs`].
    Itimers = 5,
    /// Daemon: read the listed POSIX timers. Args: [`PosixTimersArgs`].
    PosixTimers = 6,
    /// Daemon: read the alternate signal stack. Args: [`SigaltstackArgs`].
    Sigaltstack = 7,
    /// Daemon: read fs/gs base and the TLS entries of the GDT.
    /// Args: [`TlsArgs`].
    Tls = 8,
    /// Daemon: read the registered rseq area. Args: [`RseqArgs`].
    Rseq = 9,
    /// Daemon: read the credentials and process attributes as the task
    /// sees them. Args: [`CredsArgs`].
    Creds = 10,
    /// Daemon: send the listed fds back over the control socket with
    /// SCM_RIGHTS, in one message; each fd's close-on-exec flag lands in
    /// [`FdsArgs::cloexec`]. Args: [`FdsArgs`].
    SendFds = 11,
    /// Daemon: receive fds from the host (sent with SCM_RIGHTS right after
    /// the command); their numbers in the victim land in [`FdsArgs`].
    RecvFd = 12,
    /// Daemon: close the listed fds (those received with `RecvFd`).
    /// Args: [`FdsArgs`].
    CloseFds = 13,
    /// Daemon: change the protection of the listed ranges.
    /// Args: [`MprotectArgs`].
    Mprotect = 14,
    Thread = 15,
    /// Daemon: write the listed ranges with `pwritev` to a file received
    /// earlier with [`Cmd::RecvFd`], from an offset on.
    /// Args: [`WritePagesArgs`]; `ret` = bytes written.
    WritePages = 16,
    /// Daemon: read the close-on-exec flag of each listed fd into
    /// [`FdsArgs::cloexec`] (rcriu holds copies of them already, taken
    /// with `pidfd_getfd`, whose flags are their own). Args: [`FdsArgs`].
    FdFlags = 17,
    /// Daemon: the NUMA memory policy of the area at each listed
    /// address (`get_mempolicy` with `MPOL_F_ADDR`).
    /// Args: [`MemPoliciesArgs`].
    MemPolicies = 18,
}

impl Cmd {
    /// The command with this number, if any.
    pub const fn from_u32(v: u32) -> Option<Cmd> {
        Some(match v {
            1 => Cmd::Init,
            2 => Cmd::Fini,
            3 => Cmd::DumpPages,
            4 => Cmd::Sigactions,
            5 => Cmd::Itimers,
            6 => Cmd::PosixTimers,
            7 => Cmd::Sigaltstack,
            8 => Cmd::Tls,
            9 => Cmd::Rseq,
            10 => Cmd::Creds,
            11 => Cmd::SendFds,
            12 => Cmd::RecvFd,
            13 => Cmd::CloseFds,
            14 => Cmd::Mprotect,
            15 => Cmd::Thread,
            16 => Cmd::WritePages,
            17 => Cmd::FdFlags,
            18 => Cmd::MemPolicies,
            _ => return None,
        })
    }
}

/// A datagram on the control socket, both ways.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtlMsg {
    /// The command (`Cmd as u32`); an answer repeats it.
    pub cmd: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// In an answer: 0, or a negative errno.
    pub err: i32,
    /// Where it failed, for the host's error message (a syscall number or
    /// an index), or 0.
    pub err_at: i32,
    /// In an answer: the command's result value.
    pub ret: u64,
}

/// Arguments of [`Cmd::Init`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InitArgs {
    /// Length of the socket address in `sun_path` (abstract: starts with
    /// a 0 byte), counting the family.
    pub addr_len: u32,
    /// Filled in by the parasite: 0 once connected, or a negative errno.
    pub status: i32,
    /// The socket address's path (`sockaddr_un.sun_path`).
    pub sun_path: [u8; 108],
    /// Filled in by the parasite: the syscall that failed, if any.
    pub failed_syscall: i32,
}

/// A jump out of the parasite's area: these registers set, then `ip`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Jump {
    pub ip: u64,
    pub ax: u64,
    pub di: u64,
    pub si: u64,
    pub sp: u64,
    pub bp: u64,
    /// [`JUMP_BP`]: set `bp` too.
    pub flags: u64,
}

/// [`Jump::flags`]: the jump sets the frame pointer.
pub const JUMP_BP: u64 = 1;

/// The control block, at `ctl_off` in the area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctl {
    /// How the daemon leaves (its `ax`, `di`, `si` are the syscall made at
    /// `ip`: the area's `munmap`).
    pub leave: Jump,
    /// How a one-shot command leaves (only `ip`, `sp`, `bp` and `flags`
    /// are used: the syscall is the futex operation on `oneshots`).
    pub oneshot_leave: Jump,
    /// One-shot commands that may run on other threads: the daemon leaves
    /// once it is not above zero (a futex word).
    pub oneshots: i32,
    /// Filled in by the daemon: its control socket's fd.
    pub sock: i32,
    /// Filled in by a one-shot command: its result (or a negative errno).
    pub oneshot_ret: i64,
    /// Set by a one-shot command when it is done (it also says so on the
    /// control socket, [`ONESHOT_DONE`]).
    pub oneshot_done: i32,
    /// Set by Init when it fails: the negative errno. The parasite then
    /// waits [`INIT_LINGER_SECS`] for rcriu to take the thread back
    /// before it leaves by itself.
    pub init_status: i32,
    /// Set (and woken, a futex word) by the daemon when the control socket
    /// broke: one-shot commands waiting for rcriu leave then.
    pub gone: i32,
    pub _pad: i32,
}

/// How long a parasite whose Init failed waits for rcriu before leaving.
pub const INIT_LINGER_SECS: i64 = 10;

/// The `cmd` of the message a one-shot command sends rcriu on the control
/// socket when it is done; it then waits for rcriu to take its thread
/// back (or for the daemon to say the socket broke: then it leaves by
/// itself). Its waits never leave a restart block behind (rcriu's
/// interrupt would make it the thread's): futex waits without a timeout.
pub const ONESHOT_DONE: u32 = 0x4f4e_4553;

/// The futex operation a one-shot command leaves with (`FUTEX_WAKE_OP` on
/// [`Ctl::oneshots`]: add -1, wake the daemon).
pub const ONESHOT_FUTEX_OP: u32 = (1 << 28) | (0xfff << 12);

/// One range of the victim's memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoVec {
    pub base: u64,
    pub len: u64,
}

/// Most ranges one [`Cmd::DumpPages`] takes (the kernel's UIO_MAXIOV).
pub const MAX_IOVS: usize = 1024;

/// Arguments of [`Cmd::DumpPages`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DumpPagesArgs {
    /// The pipe's write end, as numbered in the victim.
    pub pipe_fd: i32,
    /// How many of `iovs` are used.
    pub nr_iovs: u32,
    pub iovs: [IoVec; MAX_IOVS],
}

/// Arguments of [`Cmd::WritePages`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WritePagesArgs {
    /// The file, as numbered in the victim.
    pub fd: i32,
    /// How many of `iovs` are used.
    pub nr_iovs: u32,
    /// Where in the file the first byte goes.
    pub offset: u64,
    pub iovs: [IoVec; MAX_IOVS],
}

/// The kernel's `struct sigaction` as `rt_sigaction` takes it on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Number of signals (`_KERNEL_NSIG`).
pub const NSIG: usize = 64;

/// Results of [`Cmd::Sigactions`]: `actions[n - 1]` is signal `n`'s
/// (SIGKILL's and SIGSTOP's are left zero).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SigactionsArgs {
    pub actions: [KSigaction; NSIG],
}

/// `struct timeval`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

/// `struct itimerval`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerval {
    pub interval: Timeval,
    pub value: Timeval,
}

/// Results of [`Cmd::Itimers`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ItimersArgs {
    pub real: Itimerval,
    pub virt: Itimerval,
    pub prof: Itimerval,
}

/// `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// One POSIX timer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    /// In: the timer's id (from /proc/PID/timers).
    pub id: i32,
    /// Out: `timer_getoverrun`.
    pub overrun: i32,
    /// Out: `timer_gettime`.
    pub interval: Timespec,
    pub value: Timespec,
}

/// Most timers one [`Cmd::PosixTimers`] takes.
pub const MAX_POSIX_TIMERS: usize = 1024;

/// Arguments and results of [`Cmd::PosixTimers`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PosixTimersArgs {
    pub nr: u32,
    pub _pad: u32,
    pub timers: [PosixTimer; MAX_POSIX_TIMERS],
}

/// `stack_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackT {
    pub sp: u64,
    pub flags: i32,
    pub _pad: u32,
    pub size: u64,
}

/// Results of [`Cmd::Sigaltstack`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigaltstackArgs {
    pub stack: StackT,
}

/// `struct user_desc` (for `get_thread_area`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserDesc {
    pub entry_number: u32,
    pub base_addr: u32,
    pub limit: u32,
    /// The packed bit fields: seg_32bit, contents (2), read_exec_only,
    /// limit_in_pages, seg_not_present, useable, lm.
    pub flags: u32,
}

/// The GDT's TLS entries on x86_64 (`GDT_ENTRY_TLS_MIN` ..).
pub const GDT_ENTRY_TLS_MIN: u32 = 12;
pub const GDT_ENTRY_TLS_ENTRIES: usize = 3;

/// Results of [`Cmd::Tls`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsArgs {
    pub fs_base: u64,
    pub gs_base: u64,
    /// `get_thread_area` of each TLS entry; `entry_number` is the entry.
    pub desc: [UserDesc; GDT_ENTRY_TLS_ENTRIES],
    /// 0, or the negative errno `get_thread_area` gave (per entry).
    pub desc_err: [i32; GDT_ENTRY_TLS_ENTRIES],
    pub _pad: u32,
}

/// Arguments and results of [`Cmd::Rseq`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RseqArgs {
    /// In: the area's address and length (from
    /// `PTRACE_GET_RSEQ_CONFIGURATION`).
    pub addr: u64,
    pub len: u32,
    pub _pad: u32,
    /// Out: the first 32 bytes of the area (`struct rseq`: cpu_id_start,
    /// cpu_id, rseq_cs, flags, node_id, mm_cid), as the task sees them.
    pub area: [u8; 32],
}

/// Most supplementary groups [`Cmd::Creds`] reports.
pub const MAX_GROUPS: usize = 4096;

/// Results of [`Cmd::Creds`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CredsArgs {
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gids: [u32; 4],
    /// `capget` (version 3): effective, permitted, inheritable, low word
    /// first.
    pub cap_eff: [u32; 2],
    pub cap_prm: [u32; 2],
    pub cap_inh: [u32; 2],
    /// Bit n set when capability n is in the bounding set.
    pub cap_bnd: u64,
    /// Bit n set when capability n is in the ambient set.
    pub cap_amb: u64,
    /// The highest capability number the kernel knows (probed).
    pub cap_last: u32,
    pub securebits: u32,
    pub no_new_privs: u32,
    pub dumpable: u32,
    pub pdeath_sig: u32,
    pub child_subreaper: u32,
    pub personality: u32,
    pub umask: u32,
    pub thp_disabled: u32,
    pub ngroups: u32,
    pub groups: [u32; MAX_GROUPS],
}

/// Results of [`Cmd::Thread`]: what one thread holds of its own, read
/// from inside it (run as a one-shot command on any thread).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThreadInfoArgs {
    /// The thread's id, as it sees it.
    pub tid: i32,
    pub _pad: u32,
    /// `PR_GET_TID_ADDRESS`: the address the kernel clears on exit.
    pub tid_addr: u64,
    /// `PR_GET_TIMERSLACK`, in nanoseconds.
    pub timer_slack: u64,
    pub sas: StackT,
    /// `PR_GET_NAME`.
    pub comm: [u8; 16],
    /// `PR_GET_TSC` (1 enabled, 2 rdtsc faults; a negative errno when the
    /// kernel cannot tell).
    pub tsc: i32,
    /// `PR_MCE_KILL_GET`.
    pub mce_kill: i32,
    /// `PR_GET_SPECULATION_CTRL` of store bypass, indirect branch and L1D
    /// flush (a negative errno when the kernel does not know it).
    pub spec: [i32; 3],
    /// The process's `PR_GET_MDWE` and `PR_GET_MEMORY_MERGE` (negative
    /// errnos on kernels without them).
    pub mdwe: i32,
    pub memory_merge: i32,
    /// The thread's own NUMA memory policy (`get_mempolicy`'s mode, 0
    /// for the default; a negative errno when the kernel cannot tell).
    pub mempolicy: i32,
    pub creds: CredsArgs,
}

/// Most fds one [`Cmd::SendFds`] or [`Cmd::RecvFd`] takes (the kernel
/// takes at most SCM_MAX_FD = 253 in one message).
pub const MAX_FDS: usize = 64;

/// Arguments of [`Cmd::SendFds`], [`Cmd::RecvFd`] and [`Cmd::CloseFds`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FdsArgs {
    pub nr: u32,
    pub _pad: u32,
    pub fds: [i32; MAX_FDS],
    /// [`Cmd::SendFds`]' and [`Cmd::FdFlags`]' answer: bit `i` set when `fds[i]` is
    /// close-on-exec in the victim (a copy sent over a socket has its own
    /// flag, and /proc's fdinfo costs an open, a read and a close per fd).
    pub cloexec: u64,
}

/// Most addresses one [`Cmd::MemPolicies`] takes.
pub const MAX_MEMPOLICIES: usize = 2048;

/// Arguments of [`Cmd::MemPolicies`]: `nr` addresses in; each one's
/// area's policy mode out (0 for the default), or a negative errno.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemPoliciesArgs {
    pub nr: u32,
    pub _pad: u32,
    pub addrs: [u64; MAX_MEMPOLICIES],
    pub modes: [i32; MAX_MEMPOLICIES],
}

/// One range for [`Cmd::Mprotect`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MprotectRange {
    pub addr: u64,
    pub len: u64,
    pub prot: u32,
    pub _pad: u32,
}

/// Most ranges one [`Cmd::Mprotect`] takes.
pub const MAX_MPROTECT: usize = 1024;

/// Arguments of [`Cmd::Mprotect`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MprotectArgs {
    pub nr: u32,
    pub _pad: u32,
    pub ranges: [MprotectRange; MAX_MPROTECT],
}

// The layouts both sides depend on, checked at compile time.
const _: () = {
    assert!(size_of::<CtlMsg>() == 24);
    assert!(offset_of!(CtlMsg, ret) == 16);
    assert!(size_of::<InitArgs>() == 120);
    assert!(offset_of!(InitArgs, sun_path) == 8);
    assert!(offset_of!(InitArgs, failed_syscall) == 116);
    assert!(size_of::<Jump>() == 56);
    assert!(offset_of!(Jump, sp) == 32);
    assert!(offset_of!(Jump, flags) == 48);
    assert!(offset_of!(Ctl, oneshot_leave) == 56);
    assert!(offset_of!(Ctl, oneshots) == 112);
    assert!(offset_of!(Ctl, oneshot_ret) == 120);
    assert!(offset_of!(Ctl, oneshot_done) == 128);
    assert!(offset_of!(Ctl, init_status) == 132);
    assert!(offset_of!(Ctl, gone) == 136);
    assert!(size_of::<Ctl>() == 144);
    assert!(size_of::<Ctl>() <= CTL_SIZE);
    assert!(size_of::<IoVec>() == 16);
    assert!(offset_of!(DumpPagesArgs, iovs) == 8);
    assert!(size_of::<KSigaction>() == 32);
    assert!(size_of::<SigactionsArgs>() == 32 * NSIG);
    assert!(size_of::<Itimerval>() == 32);
    assert!(size_of::<ItimersArgs>() == 96);
    assert!(size_of::<PosixTimer>() == 40);
    assert!(offset_of!(PosixTimer, interval) == 8);
    assert!(offset_of!(PosixTimersArgs, timers) == 8);
    assert!(size_of::<StackT>() == 24);
    assert!(offset_of!(StackT, size) == 16);
    assert!(size_of::<UserDesc>() == 16);
    assert!(size_of::<TlsArgs>() == 16 + 48 + 12 + 4);
    assert!(size_of::<RseqArgs>() == 48);
    assert!(offset_of!(CredsArgs, cap_bnd) == 56);
    assert!(offset_of!(CredsArgs, groups) == 112);
    assert!(offset_of!(FdsArgs, fds) == 8);
    assert!(offset_of!(FdsArgs, cloexec) == 8 + 4 * MAX_FDS);
    assert!(offset_of!(ThreadInfoArgs, tid_addr) == 8);
    assert!(offset_of!(ThreadInfoArgs, sas) == 24);
    assert!(offset_of!(ThreadInfoArgs, comm) == 48);
    assert!(offset_of!(ThreadInfoArgs, tsc) == 64);
    assert!(offset_of!(ThreadInfoArgs, creds) == 96);
    assert!(size_of::<ThreadInfoArgs>() <= ARGS_SIZE);
    assert!(size_of::<MprotectRange>() == 24);
    assert!(offset_of!(MprotectArgs, ranges) == 8);
    // Every command's args fit the area and need no more than 8-byte
    // alignment (the area is page aligned).
    assert!(size_of::<InitArgs>() <= ARGS_SIZE);
    assert!(size_of::<DumpPagesArgs>() <= ARGS_SIZE);
    assert!(size_of::<WritePagesArgs>() <= ARGS_SIZE);
    assert!(offset_of!(WritePagesArgs, offset) == 8);
    assert!(offset_of!(WritePagesArgs, iovs) == 16);
    assert!(size_of::<SigactionsArgs>() <= ARGS_SIZE);
    assert!(size_of::<PosixTimersArgs>() <= ARGS_SIZE);
    assert!(size_of::<CredsArgs>() <= ARGS_SIZE);
    assert!(size_of::<MprotectArgs>() <= ARGS_SIZE);
    assert!(offset_of!(MemPoliciesArgs, addrs) == 8);
    assert!(offset_of!(MemPoliciesArgs, modes) == 8 + 8 * MAX_MEMPOLICIES);
    assert!(size_of::<MemPoliciesArgs>() <= ARGS_SIZE);
    assert!(offset_of!(ThreadInfoArgs, mempolicy) == 92);
    assert!(align_of::<DumpPagesArgs>() <= 8);
    assert!(align_of::<WritePagesArgs>() <= 8);
    assert!(align_of::<CredsArgs>() <= 8);
};
