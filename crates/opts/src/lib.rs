//! criu's options as one typed model, [`Options`], filled the same way
//! from every face of rcriu:
//!
//! - [`cli`]: criu 4.2's command line, read with getopt_long's rules
//!   ([`getopt`]), over the configuration files ([`config`]);
//! - [`rpc`]: the RPC's `criu_opts`;
//! - [`support`]: which options rcriu honours, which change nothing in it
//!   by design, and which it refuses, by name, until the engine does
//!   them.
//!
//! Nothing here touches a process: the crate reads text and messages.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod getopt;
pub mod options;
pub mod rpc;
pub mod support;

use std::path::PathBuf;

pub use options::Options;
pub use support::{Command, Face};

/// The feature names `criu check --feature` knows (criu 4.2's list, in
/// its order).
pub const FEATURES: &[&str] = &[
    "mnt_id",
    "mem_dirty_track",
    "aio_remap",
    "timerfd",
    "tun",
    "tun_ns",
    "userns",
    "fdinfo_lock",
    "seccomp_suspend",
    "seccomp_filters",
    "loginuid",
    "cgroupns",
    "autofs",
    "tcp_half_closed",
    "compat_cr",
    "uffd",
    "uffd-noncoop",
    "can_map_vdso",
    "sk_ns",
    "sk_unix_file",
    "net_diag_raw",
    "nsid",
    "link_nsid",
    "kcmp_epoll",
    "timens",
    "external_net_ns",
    "clone3_set_tid",
    "newifindex",
    "nftables",
    "has_ipt_legacy",
    "pidfd_store",
    "ns_pid",
    "apparmor_stacking",
    "network_lock_nftables",
    "sockopt_buf_lock",
    "memfd_hugetlb",
    "move_mount_set_group",
    "openat2",
    "get_rseq_conf",
    "ipv6_freebind",
    "pagemap_scan",
    "timer_cr_ids",
    "overlayfs_maps",
    "breakpoints",
    "pagemap_scan_guard_pages",
];

/// Options that cannot be read, or ask for what criu itself refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// getopt rejected the line (criu then prints its usage).
    #[error("{0}")]
    Usage(String),
    /// A value criu's parser rejects.
    #[error("invalid argument for {option}: {value}")]
    BadArg { option: String, value: String },
    /// criu's own message for options it refuses.
    #[error("{0}")]
    Invalid(String),
    /// A configuration file line criu cannot read.
    #[error("{}, line {line}: {what} (unsupported configuration file format; see criu(8))", path.display())]
    Config {
        path: PathBuf,
        line: usize,
        what: String,
    },
    /// A request's options that criu's service refuses (EBADRQC).
    #[error("bad options in the request: {0}")]
    Rpc(String),
    /// An option asking for what rcriu does not do yet.
    #[error("option {option} is not supported yet ({what})")]
    NotYet { option: String, what: &'static str },
}

impl Error {
    /// Whether criu prints its usage after this error.
    pub fn shows_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }
}
