//! The crate's error type.

use std::borrow::Cow;
use std::io;
use std::path::PathBuf;

use crate::Pid;

/// What went wrong reading a task's `/proc` files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The task is gone: it exited (and was reaped) before or while its
    /// file was read. Callers that seized the task can take this as "target
    /// exited".
    #[error("task {pid} vanished while reading {}", path.display())]
    Vanished { pid: Pid, path: PathBuf },
    /// Any other failure of the system calls that read the file.
    #[error("reading {} of task {pid}", path.display())]
    Io {
        pid: Pid,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file was read but its text is not what the kernel prints.
    #[error("parsing {} of task {pid}", path.display())]
    Parse {
        pid: Pid,
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    /// The caller asked for something the file cannot answer (an unaligned
    /// pagemap range, PAGEMAP_SCAN on a kernel without it, ...).
    #[error("{what} on {} of task {pid}", path.display())]
    Invalid {
        pid: Pid,
        path: PathBuf,
        what: Cow<'static, str>,
    },
    /// Asking the kernel about sockets through sock_diag failed.
    #[error("{what}")]
    SockDiag {
        what: Cow<'static, str>,
        #[source]
        source: io::Error,
    },
    /// sock_diag answered something that is not what the kernel sends.
    #[error("parsing sock_diag's answer about {what}")]
    SockDiagParse {
        what: &'static str,
        #[source]
        source: ParseError,
    },
}

impl Error {
    /// The task whose file was being read (0 for sock_diag, which is
    /// about no task).
    pub fn pid(&self) -> Pid {
        match self {
            Error::Vanished { pid, .. }
            | Error::Io { pid, .. }
            | Error::Parse { pid, .. }
            | Error::Invalid { pid, .. } => *pid,
            Error::SockDiag { .. } | Error::SockDiagParse { .. } => 0,
        }
    }

    /// The `/proc` path that was being read (`sock_diag` for sock_diag).
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::Vanished { path, .. }
            | Error::Io { path, .. }
            | Error::Parse { path, .. }
            | Error::Invalid { path, .. } => path,
            Error::SockDiag { .. } | Error::SockDiagParse { .. } => {
                std::path::Path::new("sock_diag")
            }
        }
    }

    /// True when the task exited (ENOENT on its directory, or ESRCH).
    pub fn is_vanished(&self) -> bool {
        matches!(self, Error::Vanished { .. })
    }

    /// True when the file (not the task) does not exist: a closed fd, a
    /// file the kernel was built without.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A parser's complaint about a text, with the byte offset where it arose.
///
/// The pure parsers (`parse_*`) return this; the readers wrap it into
/// [`Error::Parse`] with the pid and path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {msg}")]
pub struct ParseError {
    /// Byte offset in the parsed text.
    pub offset: usize,
    /// What was expected or found.
    pub msg: Cow<'static, str>,
}

impl ParseError {
    pub(crate) fn new(offset: usize, msg: impl Into<Cow<'static, str>>) -> Self {
        ParseError {
            offset,
            msg: msg.into(),
        }
    }
}

/// `Result` of the readers.
pub type Result<T> = std::result::Result<T, Error>;

/// `Result` of the pure parsers.
pub type ParseResult<T> = std::result::Result<T, ParseError>;
