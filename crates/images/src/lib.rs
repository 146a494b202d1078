//! CRIU's image format.
#![forbid(unsafe_code)]
