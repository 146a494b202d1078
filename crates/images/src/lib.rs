//! CRIU's image format.
#![forbid(unsafe_code)]

/// The image schema, as prost structs.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/images/_.rs"));
}

/// CRIU's RPC schema, as prost structs.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/rpc/_.rs"));
}
