//! rcriu's front door: what makes rcriu a drop-in `criu`.
//!
//! - [`log`]: criu's log (levels, time stamps, `Error (FILE:LINE):`
//!   lines, the first error kept for the RPC).
//! - [`run`]: criu's commands from the typed options
//!   ([`rcriu_opts::Options`]), the same for the command line and the
//!   RPC: dump and restore with criu's action points, pid file, stats.
//! - [`scripts`]: `--action-script` and the RPC's notifications.
//! - [`check`]: `criu check`, answered truthfully for rcriu.
//! - [`service`]: CRIU's RPC service ([`serve`]), as `criu swrk FD` or in
//!   an embedding program's own process; [`listen`]: `criu service`.

#![deny(unsafe_code)]

pub mod check;
pub mod listen;
pub mod log;
pub mod run;
pub mod scripts;
pub mod service;
#[allow(unsafe_code)]
pub mod sys;

pub use service::{Service, serve};

/// The CRIU version whose images, options and RPC rcriu implements.
pub const CRIU_VERSION: &str = "4.2";
pub const CRIU_VERSION_MAJOR: i32 = 4;
pub const CRIU_VERSION_MINOR: i32 = 2;

/// The RPC's log file when the request names none (criu's).
pub const DEFAULT_LOG_FILE: &str = "criu.log";

/// What makes a command or a request fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Options(#[from] rcriu_opts::Error),
    #[error(transparent)]
    Dump(#[from] rcriu_dump::Error),
    #[error(transparent)]
    Restore(#[from] rcriu_restore::Error),
    #[error("no process with pid {0}")]
    NoProcess(i32),
    /// The key of `--encrypt-key-file` or `--encrypt-key-fd`.
    #[error(transparent)]
    Key(#[from] rcriu_images::Error),
    /// Refused, as criu refuses it (the message is criu's).
    #[error("{0}")]
    Refused(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A request or a conversation criu would not understand.
    #[error("rpc: {0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `e` and its sources, one after the other (as anyhow's `{:#}`).
pub fn report(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = cause.source();
    }
    s
}

/// Whether this process is root (criu's `check_caps`, without its
/// `--unprivileged` mode, which rcriu does not have yet).
pub fn require_root() -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::Refused(
            "rcriu needs root (running without it, criu's --unprivileged, is not supported yet)"
                .into(),
        ))
    }
}
