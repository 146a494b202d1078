//! The dumping side of the page server protocol: a connection on which a
//! dump opens each pagemap, announces its runs and sends their pages.
//!
//! The socket is corked from the start, as CRIU's: runs and their pages
//! go out in full segments, and each request that wants an answer is
//! pushed out with TCP_NODELAY. The pages themselves may be written to
//! [`Client::sock`] by other means (a `splice(2)` from a page pipe)
//! between [`Client::add`] and the next request.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::proto::{self, Dst, IOV_SIZE, Iov};
use crate::{Error, Result};

/// How long an answer may take: the server writes what it received
/// before it answers the close.
const ANSWER_WAIT: Duration = Duration::from_secs(300);

/// Where a dump's pages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// criu's `--address A --port N`.
    Tcp { address: String, port: u16 },
    /// criu's `--ps-socket FD`: a connection the caller made and passed.
    Fd(i32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp { address, port } => write!(f, "{address}:{port}"),
            Target::Fd(fd) => write!(f, "the page server socket (fd {fd})"),
        }
    }
}

/// A connection to a page server.
pub struct Client {
    sock: TcpStream,
    peer: String,
    /// Whether the socket is the caller's (`--ps-socket`): the session
    /// is ended by FORCE_CLOSE, as the connection may stay open.
    given: bool,
}

impl Client {
    /// Connects to the page server at `address:port` (a name or an IPv4
    /// or IPv6 address).
    pub fn connect(address: &str, port: u16) -> Result<Client> {
        let peer = if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        };
        let err = |source| Error::Connect {
            peer: peer.clone(),
            source,
        };
        let addrs = (address, port).to_socket_addrs().map_err(err)?;
        let mut last = std::io::Error::from(std::io::ErrorKind::AddrNotAvailable);
        for a in addrs {
            match TcpStream::connect(a) {
                Ok(sock) => {
                    log::info!("connected to the page server at {peer}");
                    return Client::start(sock, peer, false);
                }
                Err(e) => last = e,
            }
        }
        Err(err(last))
    }

    /// Connects to `target`; a given socket is duplicated (the caller's
    /// fd stays its own).
    pub fn connect_to(target: &Target) -> Result<Client> {
        match target {
            Target::Tcp { address, port } => Client::connect(address, *port),
            Target::Fd(fd) => {
                let err = |source| Error::Connect {
                    peer: target.to_string(),
                    source,
                };
                // SAFETY: F_DUPFD_CLOEXEC touches no memory; an fd that is
                // not open fails with EBADF.
                let dup = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
                if dup < 0 {
                    return Err(err(std::io::Error::last_os_error()));
                }
                // SAFETY: `dup` was just made by fcntl and is owned by
                // nothing else.
                let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
                Client::from_fd(owned)
            }
        }
    }

    /// A connection the caller made (criu's `--ps-socket`).
    pub fn from_fd(fd: OwnedFd) -> Result<Client> {
        let sock = TcpStream::from(fd);
        let peer = sock
            .peer_addr()
            .map_or_else(|_| "the page server socket".to_owned(), |a| a.to_string());
        Client::start(sock, peer, true)
    }

    fn start(sock: TcpStream, peer: String, given: bool) -> Result<Client> {
        sock.set_read_timeout(Some(ANSWER_WAIT))
            .map_err(Error::io(&peer, "setting the answer timeout"))?;
        let c = Client { sock, peer, given };
        c.cork(true);
        Ok(c)
    }

    /// Who the server is, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The socket, for pages written to it after [`add`](Self::add).
    pub fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn cork(&self, on: bool) {
        if let Err(e) = rustix::net::sockopt::set_tcp_cork(&self.sock, on) {
            log::debug!("TCP_CORK on the page server socket: {e}");
        }
    }

    /// Pushes out what is queued (the socket stays corked).
    fn push(&self) {
        if let Err(e) = self.sock.set_nodelay(true) {
            log::debug!("TCP_NODELAY on the page server socket: {e}");
        }
    }

    fn send(&mut self, iov: &Iov) -> Result<()> {
        let what = format!("sending {}", proto::command_name(iov.command()));
        self.sock
            .write_all(&iov.to_bytes())
            .map_err(Error::io(&self.peer, what))
    }

    fn answer<const N: usize>(&mut self, to: u32) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        let what = format!("waiting for the answer to {}", proto::command_name(to));
        self.sock
            .read_exact(&mut b)
            .map_err(Error::io(&self.peer, what))?;
        Ok(b)
    }

    /// Opens `dst` on the server (OPEN2); returns whether the server has
    /// a parent pagemap for it.
    pub fn open(&mut self, dst: Dst) -> Result<bool> {
        self.send(&Iov::new(proto::OPEN2, 0, Some(dst)))?;
        self.push();
        let [b] = self.answer::<1>(proto::OPEN2)?;
        Ok(b != 0)
    }

    /// Whether the server has a parent pagemap for `dst` (PARENT).
    pub fn has_parent(&mut self, dst: Dst) -> Result<bool> {
        self.send(&Iov::new(proto::PARENT, 0, Some(dst)))?;
        self.push();
        let b = self.answer::<4>(proto::PARENT)?;
        Ok(i32::from_ne_bytes(b) != 0)
    }

    /// Announces the run of `nr_pages` at `vaddr` with `flags` of `dst`
    /// (ADD_F); with PE_PRESENT, its bytes must follow.
    pub fn add(&mut self, dst: Dst, vaddr: u64, nr_pages: u64, flags: u32) -> Result<()> {
        let mut iov = Iov::new(proto::ADD_F, flags, Some(dst));
        iov.vaddr = vaddr;
        iov.nr_pages = nr_pages;
        self.send(&iov)
    }

    /// Sends pages from memory.
    pub fn send_pages(&mut self, pages: &[u8]) -> Result<()> {
        self.sock
            .write_all(pages)
            .map_err(Error::io(&self.peer, "sending pages"))
    }

    /// Ends the session (CLOSE, or FORCE_CLOSE on a given socket) and
    /// waits for the server to say it has everything.
    pub fn close(mut self) -> Result<()> {
        let cmd = if self.given {
            proto::FORCE_CLOSE
        } else {
            proto::CLOSE
        };
        self.send(&Iov::new(cmd, 0, None))?;
        self.push();
        let status = i32::from_ne_bytes(self.answer::<4>(cmd)?);
        if status != 0 {
            return Err(Error::Status {
                peer: self.peer,
                status,
            });
        }
        log::info!("the page server at {} has every page", self.peer);
        Ok(())
    }

    /// An error of writing pages to [`sock`](Self::sock), named.
    pub fn sending_failed(&self, source: std::io::Error) -> Error {
        Error::io(&self.peer, "sending pages")(source)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("peer", &self.peer).finish()
    }
}

/// Checks that `IOV_SIZE` is what the requests take.
const _: () = assert!(IOV_SIZE == 32);
