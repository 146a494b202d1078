//! The restore's errors.

use std::io;
use std::path::PathBuf;

use rcriu_proc::Pid;

/// Everything that can make a restore fail. Before the process exists, a
/// failure leaves nothing behind; after, the process is killed before the
/// error is returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] rcriu_images::Error),
    #[error("{file}: {what}")]
    Invalid { file: String, what: String },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("pid {pid} is taken (by {by}): the process cannot get its pid back")]
    PidTaken { pid: Pid, by: String },
    #[error("{what} {}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {what}", path.display())]
    Validation { path: PathBuf, what: String },
    #[error("{what}")]
    Host {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("restoring process {pid}: {what}")]
    Restorer {
        pid: Pid,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// `--unprivileged`: what the caller may not do, and why.
    #[error(
        "{what} with --unprivileged: {why}; the caller (uid {uid}, gid {gid}, groups {groups:?}, \
         no capabilities) dumps and restores only its own processes"
    )]
    NotCallers {
        what: String,
        why: String,
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
    /// Lazy restore from a lazy dump's page server: the connection, or
    /// the pages it sent.
    #[error("lazy pages from the dump's page server")]
    PageServer {
        #[source]
        source: rcriu_page_server::Error,
    },
    /// Lazy restore: the daemon, its protocol, a process's memory.
    #[error("lazy pages: {what}")]
    Lazy { what: String },
    #[error("restored process {pid} died: {what}")]
    Died { pid: Pid, what: String },
    #[error(transparent)]
    Compel(#[from] rcriu_compel::Error),
    /// The caller's hook refused to go on ([`crate::Restore::hook`]).
    #[error("the restore stopped at its {stage} action: {why}")]
    Hook { stage: crate::Stage, why: String },
}

/// The restore's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(file: impl Into<String>, what: impl Into<String>) -> Error {
        Error::Invalid {
            file: file.into(),
            what: what.into(),
        }
    }

    pub(crate) fn lazy(what: impl Into<String>) -> Error {
        Error::Lazy { what: what.into() }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Error {
        Error::Unsupported { what: what.into() }
    }

    pub(crate) fn host(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Host { what, source }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn file(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::File { what, path, source }
    }
}
