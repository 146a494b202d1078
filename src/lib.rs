//! rcriu: checkpoint/restore of Linux process trees, with CRIU's image format.
//!
//! This crate is the facade over the engine's crates, and the home of the
//! `rcriu` command line (`src/bin/rcriu`).
//!
//! - [`Dump`], [`Restore`]: the engine.
//! - [`images`]: CRIU's image format (magics, framing, typed images, the
//!   crit-compatible JSON form).
//! - [`opts`]: criu's options as one typed model, filled from the command
//!   line, configuration files and the RPC alike.
//! - [`rpc`]: the front door: criu's commands from those options, criu's
//!   log, action scripts, `check`, and CRIU's RPC service ([`serve`]),
//!   which an embedding program can run in its own process.

#![deny(unsafe_code)]

pub mod logging;

pub use rcriu_dump as dump;
pub use rcriu_dump::{Dump, DumpStats};
pub use rcriu_images as images;
pub use rcriu_opts as opts;
pub use rcriu_opts::Options;
pub use rcriu_restore as restore;
pub use rcriu_restore::{Restore, Restored};
pub use rcriu_rpc as rpc;
pub use rcriu_rpc::{Service, serve};

/// Whether rcriu has `feature` (a name of `criu check --feature`) on this
/// kernel: `Err` says why not.
pub fn check(feature: &str) -> Result<(), String> {
    rcriu_rpc::check::feature(feature)
}
