//! What a page server session runs on: a connection it reads requests
//! and pages from and writes answers to, plain TCP or TLS alike. Pages
//! are spliced from a plain socket without being copied; through TLS
//! they are read (and decrypted) into memory.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

/// A page server connection.
pub trait PageStream: Read + Write {
    /// The fd the connection's bytes may be `splice(2)`d from or to as
    /// they are, or `None` when they must go through [`Read`]/[`Write`]
    /// (TLS).
    fn splice_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Ends this side's sending once the session is over (TLS's
    /// `close_notify`); nothing on a plain connection.
    fn close_write(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl PageStream for std::net::TcpStream {
    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl PageStream for std::fs::File {
    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl PageStream for std::os::unix::net::UnixStream {
    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}
