//! The dump's errors.

use std::io;
use std::path::PathBuf;

use rcriu_proc::Pid;

/// Everything that can make a dump fail. The target is left running as it
/// was whatever the error (a dump without `--leave-running` kills it only
/// once every image is written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process holds a resource this version of rcriu cannot dump; it
    /// was refused before any image was written.
    #[error("process {pid} holds {what}, which rcriu cannot dump yet")]
    Unsupported { pid: Pid, what: String },
    /// `--unprivileged`: the process is not the caller's to dump; it was
    /// refused before it was seized, or released as it was.
    #[error("process {pid} is not the caller's")]
    NotCallers {
        pid: Pid,
        #[source]
        source: rcriu_restore::Error,
    },
    /// A deleted file takes more room than the ghost limit (criu's
    /// `--ghost-limit`) allows in the images.
    #[error(
        "process {pid} holds {what}: the deleted file {} takes {size} bytes on disk, over the ghost limit of {limit} bytes (raise it with --ghost-limit)", path.display()
    )]
    GhostTooBig {
        pid: Pid,
        /// What it holds it as: `fd N`, a mapping, its cwd.
        what: String,
        path: std::path::PathBuf,
        size: u64,
        limit: u64,
    },
    /// The root task is not a session leader and `--shell-job` was not
    /// given (criu's rule).
    #[error(
        "process {pid} is not a session leader (its session is {sid}); dump it with --shell-job"
    )]
    NotSessionLeader { pid: Pid, sid: Pid },
    /// Seizing, infecting, asking the parasite or curing failed.
    #[error("dumping process {pid}")]
    Compel {
        pid: Pid,
        #[source]
        source: rcriu_compel::Error,
    },
    /// Talking to the page server failed (`--page-server`): it could not
    /// be reached, went away, or refused the pages.
    #[error("the dump of process {pid} through the page server")]
    PageServer {
        pid: Pid,
        #[source]
        source: rcriu_page_server::Error,
    },
    /// `--auto-dedup` failed once the images were whole: they are, and
    /// the parents' images are as they were or punched file by file
    /// (each with its manifest rewritten).
    #[error(
        "the images of process {pid} are written, but punching their pages out of the parent images (--auto-dedup) failed"
    )]
    AutoDedup {
        pid: Pid,
        #[source]
        source: rcriu_images::Error,
    },
    /// A lazy dump's page server could not start serving (its
    /// status-ready step, or accepting the daemon's connection).
    #[error("the lazy dump of process {pid}: {what}")]
    LazyStart { pid: Pid, what: String },
    /// Options a lazy dump does not take yet.
    #[error("the dump of process {pid}: {what} cannot be used with --lazy-pages yet")]
    NotWithLazyPages { pid: Pid, what: &'static str },
    /// The lazy pages of a process could not be held for the page
    /// server of a lazy dump.
    #[error("holding the lazy pages of process {pid} for the lazy-pages daemon")]
    LazyHold {
        pid: Pid,
        #[source]
        source: io::Error,
    },
    /// The page server of a lazy dump failed (its images are whole, its
    /// processes gone: the restore's daemon did not get every page).
    #[error("serving the lazy pages of the dump of process {pid}")]
    LazyServe {
        pid: Pid,
        #[source]
        source: rcriu_page_server::Error,
    },
    /// Options a dump through a page server does not take yet.
    #[error("the dump of process {pid}: {what} cannot be used with --page-server yet")]
    NotWithPageServer { pid: Pid, what: &'static str },
    /// The parasite's pages could not be sent to the page server.
    #[error("sending the pages of process {pid} to the page server at {peer}")]
    PagesSend {
        pid: Pid,
        peer: String,
        #[source]
        source: rcriu_compel::Error,
    },
    /// The parasite's pages could not be written to the pages image
    /// (a full disk, say).
    #[error("writing {} for the dump of process {pid}", path.display())]
    PagesWrite {
        pid: Pid,
        path: std::path::PathBuf,
        #[source]
        source: rcriu_compel::Error,
    },
    /// The helper that copies pages into the pages image beside the
    /// parasite failed (a full disk, say).
    #[error("writing {} for the dump of process {pid}", path.display())]
    PagesCopy {
        pid: Pid,
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// An image rcriu makes itself (a tmpfs's archive) could not be
    /// written (a full disk, say).
    #[error("writing {} for the dump of process {pid}", path.display())]
    ImageWrite {
        pid: Pid,
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// A `/proc` file of the target (or of rcriu itself) could not be read.
    #[error("reading /proc for the dump of process {pid}")]
    Proc {
        pid: Pid,
        #[source]
        source: rcriu_proc::Error,
    },
    /// An image could not be written.
    #[error("writing the images of process {pid}")]
    Image {
        pid: Pid,
        #[source]
        source: rcriu_images::Error,
    },
    /// A system call on the target's behalf failed.
    #[error("{what} of process {pid}")]
    Sys {
        what: &'static str,
        pid: Pid,
        #[source]
        source: io::Error,
    },
    /// A file the target maps or holds open could not be examined.
    #[error("examining {} for the dump of process {pid}", path.display())]
    File {
        pid: Pid,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The images written would not restore: rcriu's restore refuses
    /// them (a dump succeeds only for what its restore brings back). The
    /// process was left running as it was and the images removed.
    #[error("the images of process {pid} would not restore")]
    NotRestorable {
        pid: Pid,
        #[source]
        source: rcriu_restore::Error,
    },
    /// The TCP connections could not be locked (criu's `--network-lock`).
    #[error("locking the TCP connections of process {pid} (--network-lock)")]
    NetworkLock {
        pid: Pid,
        #[source]
        source: rcriu_restore::Error,
    },
    /// Something the kernel reported does not add up.
    #[error("process {pid}: {what}")]
    Inconsistent { pid: Pid, what: String },
    /// The caller's hook refused to go on ([`crate::Dump::hook`]).
    #[error("the dump of process {pid} stopped at its {stage} action: {why}")]
    Hook {
        pid: Pid,
        stage: crate::Stage,
        why: String,
    },
}

/// The dump's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn compel(pid: Pid) -> impl FnOnce(rcriu_compel::Error) -> Error {
        move |source| Error::Compel { pid, source }
    }

    pub(crate) fn proc(pid: Pid) -> impl FnOnce(rcriu_proc::Error) -> Error {
        move |source| Error::Proc { pid, source }
    }

    pub(crate) fn image(pid: Pid) -> impl FnOnce(rcriu_images::Error) -> Error {
        move |source| Error::Image { pid, source }
    }

    pub(crate) fn sys(what: &'static str, pid: Pid) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Sys { what, pid, source }
    }

    pub(crate) fn file(pid: Pid, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::File { pid, path, source }
    }

    pub(crate) fn unsupported(pid: Pid, what: impl Into<String>) -> Error {
        Error::Unsupported {
            pid,
            what: what.into(),
        }
    }

    /// Whether the dump was refused because of something out of scope
    /// (the target was not touched beyond seizing).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Error::Unsupported { .. } | Error::NotSessionLeader { .. }
        )
    }
}
