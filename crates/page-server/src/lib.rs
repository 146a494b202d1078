//! CRIU's page server: a dump sends the pages of its processes over TCP
//! to a page server on another machine, which writes them as
//! `pagemap-*.img` and `pages-*.img` in its own images directory; the
//! dump's other images stay in the dump's directory. The two halves
//! speak CRIU 4.2's protocol, so either side may be CRIU's.
//!
//! - [`proto`]: the wire format (a fixed 32-byte request, its commands
//!   and the encoding of which pagemap a request is for).
//! - [`client`]: the dumping side's transport: connect, open a pagemap,
//!   announce runs of pages, send their bytes, close with an
//!   acknowledgement.
//! - [`server`]: one session of the page server, writing what it
//!   receives as images; a hostile peer can make it fail, never write
//!   outside its images directory.
//! - [`lazy`]: the page server of a lazy dump, which sends the pages it
//!   holds as the restore's lazy-pages daemon asks (PS_IOV_GET); the
//!   daemon asks through [`Client::get`].
//! - [`stream`]: what a session runs on, plain TCP or TLS alike.
//! - [`tls`]: the page stream through TLS, as criu's `--tls`.

pub mod client;
mod error;
pub mod lazy;
pub mod proto;
pub mod server;
pub mod stream;
pub mod tls;

pub use client::{Client, Target};
pub use error::{Error, Result};
pub use proto::Dst;
pub use stream::PageStream;
pub use tls::TlsOptions;
