//! compel's errors.

use std::io;

use rcriu_proc::Pid;

/// Everything that can go wrong while seizing, infecting or curing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} of task {tid}")]
    Ptrace {
        what: &'static str,
        tid: Pid,
        #[source]
        source: io::Error,
    },
    #[error("reading /proc of task {pid}")]
    Proc {
        pid: Pid,
        #[source]
        source: rcriu_proc::Error,
    },
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: Pid },
    #[error("process {pid} exited while being dumped")]
    Exited { pid: Pid },
    #[error("process {pid} is a zombie")]
    Zombie { pid: Pid },
    #[error("process {pid} is traced by process {tracer}")]
    Traced { pid: Pid, tracer: Pid },
    #[error("process {pid}'s thread-group leader is dead while {threads} threads live on")]
    DeadLeader { pid: Pid, threads: u32 },
    #[error("process {pid} has io_uring kernel thread {tid} ({comm}), which rcriu cannot dump yet")]
    IoWorker { pid: Pid, tid: Pid, comm: String },
    #[error("process {pid} is rcriu itself or one of its ancestors")]
    SelfDump { pid: Pid },
    #[error("task {tid} runs in 32-bit mode, which is not supported")]
    Compat { tid: Pid },
    #[error("task {tid} stopped unexpectedly: {what}")]
    UnexpectedStop { tid: Pid, what: String },
    #[error("task {tid} has no `syscall` instruction in an executable mapping")]
    NoSyscallInsn { tid: Pid },
    #[error("remote {name} in task {tid} failed")]
    RemoteSyscall {
        name: &'static str,
        tid: Pid,
        #[source]
        source: io::Error,
    },
    #[error("{what} for the parasite of task {pid}")]
    Host {
        what: &'static str,
        pid: Pid,
        #[source]
        source: io::Error,
    },
    #[error("parasite in task {pid}: command {cmd} failed at {at}")]
    Command {
        pid: Pid,
        cmd: &'static str,
        at: i32,
        #[source]
        source: io::Error,
    },
    #[error("parasite in task {pid}: {what}")]
    Protocol { pid: Pid, what: String },
    #[error("freezer cgroup {}: {what}", path.display())]
    Freezer {
        path: std::path::PathBuf,
        what: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("freezer cgroup {} holds tasks of other processes than {pid}: {}", path.display(), describe_tasks(others))]
    FreezerOthers {
        path: std::path::PathBuf,
        pid: Pid,
        /// (tid, its process, its name)
        others: Vec<(Pid, Pid, String)>,
    },
    #[error("process {pid} is not in freezer cgroup {}", path.display())]
    NotInFreezer { path: std::path::PathBuf, pid: Pid },
    #[error("fault injected at point {0} (RCRIU_FAULT)")]
    Fault(u32),
    #[error("interrupted by a signal")]
    Interrupted,
}

/// compel's result.
pub type Result<T> = std::result::Result<T, Error>;

fn describe_tasks(others: &[(Pid, Pid, String)]) -> String {
    let list: Vec<String> = others
        .iter()
        .map(|(tid, tgid, comm)| {
            if tid == tgid {
                format!("process {tid} ({comm})")
            } else {
                format!("thread {tid} of process {tgid} ({comm})")
            }
        })
        .collect();
    list.join(", ")
}

impl Error {
    /// Whether a parasite command was refused permission (EACCES or
    /// EPERM), as a security module refuses the victim an access rcriu
    /// has.
    pub fn denied(&self) -> bool {
        matches!(self, Error::Command { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)))
    }

    /// A ptrace error, made from the `io::Error` of the request.
    pub(crate) fn ptrace(what: &'static str, tid: Pid) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Ptrace { what, tid, source }
    }

    pub(crate) fn host(what: &'static str, pid: Pid) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Host { what, pid, source }
    }

    pub(crate) fn proc(pid: Pid) -> impl FnOnce(rcriu_proc::Error) -> Error {
        move |source| {
            if source.is_vanished() {
                Error::Exited { pid }
            } else {
                Error::Proc { pid, source }
            }
        }
    }
}
