//! criu's log, as rcriu writes it: see [`rcriu_rpc::log`].

pub use rcriu_rpc::log::*;
