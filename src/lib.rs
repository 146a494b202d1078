//! rcriu: checkpoint/restore of Linux process trees, with CRIU's image format.
//!
//! This crate is the facade over the engine's crates, and the home of the
//! `rcriu` command line (`src/bin/rcriu`).
//!
//! - [`images`]: CRIU's image format (magics, framing, typed images, the
//!   crit-compatible JSON form).

#![deny(unsafe_code)]

pub mod logging;

pub use rcriu_dump as dump;
pub use rcriu_dump::{Dump, DumpStats};
pub use rcriu_images as images;
pub use rcriu_restore as restore;
pub use rcriu_restore::{Restore, Restored};
