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
pub mod lazy_pages;
pub mod listen;
pub mod log;
pub mod page_server;
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
    /// The key of `--encrypt-key-file` or `--encrypt-key-fd`, or the
    /// images `dedup` works on.
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

/// Whether rcriu runs as root (its effective uid).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The caller a command runs for when it is not root (criu's
/// `--unprivileged`, as `check_caps` admits it), or `None` for root.
/// Without root, `--unprivileged` and both CAP_CHECKPOINT_RESTORE and
/// CAP_SYS_PTRACE (file capabilities of rcriu's binary) are needed, and
/// only dump, restore and check run.
pub fn require_privilege(
    o: &rcriu_opts::Options,
    cmd: rcriu_opts::support::Command,
) -> Result<Option<rcriu_restore::unprivileged::Caller>> {
    use rcriu_opts::support::Command;
    if is_root() {
        return Ok(None);
    }
    if !o.unprivileged {
        return Err(Error::Refused(
            "Running as non-root requires '--unprivileged'".into(),
        ));
    }
    let missing: Vec<&str> = [
        (
            rustix::thread::CapabilitySet::CHECKPOINT_RESTORE,
            "CAP_CHECKPOINT_RESTORE",
        ),
        (rustix::thread::CapabilitySet::SYS_PTRACE, "CAP_SYS_PTRACE"),
    ]
    .into_iter()
    .filter(|(c, _)| !rustix::thread::capabilities(None).is_ok_and(|s| s.effective.contains(*c)))
    .map(|(_, name)| name)
    .collect();
    if !missing.is_empty() {
        return Err(Error::Refused(format!(
            "--unprivileged without root needs {} (file capabilities of rcriu's binary: \
             setcap cap_checkpoint_restore,cap_sys_ptrace=ep)",
            missing.join(" and ")
        )));
    }
    if !matches!(cmd, Command::Dump | Command::Restore | Command::Check) {
        return Err(Error::Refused(format!(
            "{} with --unprivileged is not supported yet (dump, restore and check are)",
            cmd.name()
        )));
    }
    // What only root's capabilities bring back, refused before anything
    // is seized or started.
    let needs_root = [
        (
            o.tcp_established,
            "--tcp-established (TCP_REPAIR takes CAP_NET_ADMIN)",
        ),
        (
            o.root.is_some() || o.empty_ns != 0 || !o.ext_mount_map.is_empty(),
            "a container's namespaces (--root, --empty-ns, --ext-mount-map)",
        ),
    ];
    if let Some((_, what)) = needs_root.iter().find(|(given, _)| *given) {
        return Err(Error::Refused(format!(
            "{what} with --unprivileged is not supported: it needs root"
        )));
    }
    Ok(Some(rcriu_restore::unprivileged::Caller::me()?))
}
