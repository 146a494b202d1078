//! The dumping side of the page server protocol: a connection on which a
//! dump opens each pagemap, announces its runs and sends their pages.
//!
//! The socket is corked from the start, as CRIU's: runs and their pages
//! go out in full segments, and each request that wants an answer is
//! pushed out with TCP_NODELAY. On a plain connection the pages
//! themselves may be written to [`Client::sock`] by other means (a
//! `splice(2)` from a page pipe) between [`Client::add`] and the next
//! request; through TLS ([`crate::tls`]) they go through
//! [`Client::send_pages`].

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::proto::{self, Dst, IOV_SIZE, Iov};
use crate::tls::{ClientTls, TlsOptions, TlsStream};
use crate::{Error, PageStream, Result};

/// How long an answer may take: the server writes what it received
/// before it answers the close.
const ANSWER_WAIT: Duration = Duration::from_secs(300);

/// Where a dump's pages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// criu's `--address A --port N`, through TLS with `tls` (criu's
    /// `--tls` and its options).
    Tcp {
        address: String,
        port: u16,
        tls: Option<TlsOptions>,
    },
    /// criu's `--ps-socket FD`: a connection the caller made and passed.
    Fd(i32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp { address, port, .. } => write!(f, "{address}:{port}"),
            Target::Fd(fd) => write!(f, "the page server socket (fd {fd})"),
        }
    }
}

/// The connection, plain or through TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => t.tcp(),
        }
    }

    fn stream(&mut self) -> &mut dyn crate::PageStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &mut **t,
        }
    }
}

/// A connection to a page server.
pub struct Client {
    sock: Conn,
    peer: String,
    /// Whether the socket is the caller's (`--ps-socket`): the session
    /// is ended by FORCE_CLOSE, as the connection may stay open.
    given: bool,
}

impl Client {
    /// Connects to the page server at `address:port` (a name or an IPv4
    /// or IPv6 address), through TLS with `tls` (the handshake made at
    /// once, the server's certificate checked for `address`).
    pub fn connect(address: &str, port: u16, tls: Option<&TlsOptions>) -> Result<Client> {
        let peer = if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        };
        let err = |source| Error::Connect {
            peer: peer.clone(),
            source,
        };
        // The files first: a TLS setup that cannot be made is refused
        // before anything is sent.
        let tls = tls.map(ClientTls::new).transpose()?;
        let addrs = (address, port).to_socket_addrs().map_err(err)?;
        let mut last = std::io::Error::from(std::io::ErrorKind::AddrNotAvailable);
        for a in addrs {
            match TcpStream::connect(a) {
                Ok(sock) => {
                    log::info!("connected to the page server at {peer}");
                    let conn = match &tls {
                        None => Conn::Plain(sock),
                        Some(t) => {
                            sock.set_read_timeout(Some(ANSWER_WAIT))
                                .map_err(Error::io(&peer, "setting the answer timeout"))?;
                            Conn::Tls(Box::new(t.connect(sock, address, &peer)?))
                        }
                    };
                    return Client::start(conn, peer, false);
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
            Target::Tcp { address, port, tls } => Client::connect(address, *port, tls.as_ref()),
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
        Client::start(Conn::Plain(sock), peer, true)
    }

    fn start(sock: Conn, peer: String, given: bool) -> Result<Client> {
        sock.tcp()
            .set_read_timeout(Some(ANSWER_WAIT))
            .map_err(Error::io(&peer, "setting the answer timeout"))?;
        let c = Client { sock, peer, given };
        c.cork(true);
        Ok(c)
    }

    /// Who the server is, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The socket, for pages written to it after [`add`](Self::add);
    /// `None` through TLS, where they go through
    /// [`send_pages`](Self::send_pages).
    pub fn sock(&self) -> Option<BorrowedFd<'_>> {
        match &self.sock {
            Conn::Plain(s) => Some(s.as_fd()),
            Conn::Tls(_) => None,
        }
    }

    /// Whether the connection is through TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.sock, Conn::Tls(_))
    }

    fn cork(&self, on: bool) {
        if let Err(e) = rustix::net::sockopt::set_tcp_cork(self.sock.tcp(), on) {
            log::debug!("TCP_CORK on the page server socket: {e}");
        }
    }

    /// Pushes out what is queued (the socket stays corked).
    fn push(&mut self) -> Result<()> {
        self.sock
            .stream()
            .flush()
            .map_err(Error::io(&self.peer, "sending a request"))?;
        if let Err(e) = self.sock.tcp().set_nodelay(true) {
            log::debug!("TCP_NODELAY on the page server socket: {e}");
        }
        Ok(())
    }

    fn send(&mut self, iov: &Iov) -> Result<()> {
        let what = format!("sending {}", proto::command_name(iov.command()));
        self.sock
            .stream()
            .write_all(&iov.to_bytes())
            .map_err(Error::io(&self.peer, what))
    }

    fn answer<const N: usize>(&mut self, to: u32) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        let what = format!("waiting for the answer to {}", proto::command_name(to));
        self.sock
            .stream()
            .read_exact(&mut b)
            .map_err(Error::io(&self.peer, what))?;
        Ok(b)
    }

    /// Opens `dst` on the server (OPEN2); returns whether the server has
    /// a parent pagemap for it.
    pub fn open(&mut self, dst: Dst) -> Result<bool> {
        self.send(&Iov::new(proto::OPEN2, 0, Some(dst)))?;
        self.push()?;
        let [b] = self.answer::<1>(proto::OPEN2)?;
        Ok(b != 0)
    }

    /// Whether the server has a parent pagemap for `dst` (PARENT).
    pub fn has_parent(&mut self, dst: Dst) -> Result<bool> {
        self.send(&Iov::new(proto::PARENT, 0, Some(dst)))?;
        self.push()?;
        let b = self.answer::<4>(proto::PARENT)?;
        Ok(i32::from_ne_bytes(b) != 0)
    }

    /// Announces the run of `nr_pages` at `vaddr` with `flags` of `dst`
    /// (ADD_F); with PE_PRESENT, its bytes must follow.
    pub fn add(&mut self, dst: Dst, vaddr: u64, nr_pages: u64, flags: u32) -> Result<()> {
        self.send(&add_iov(dst, vaddr, nr_pages, flags))
    }

    /// Sends pages from memory.
    pub fn send_pages(&mut self, pages: &[u8]) -> Result<()> {
        self.sock
            .stream()
            .write_all(pages)
            .map_err(Error::io(&self.peer, "sending pages"))
    }

    /// Asks a lazy dump's page server for `nr_pages` pages of process
    /// `pid` (its pid in the images) from `vaddr` (PS_IOV_GET) and reads
    /// them into `buf`; returns how many came (fewer when the run the
    /// dump holds ends sooner).
    pub fn get(&mut self, pid: u32, vaddr: u64, nr_pages: u64, buf: &mut Vec<u8>) -> Result<u64> {
        let mut iov = Iov::new(proto::GET, 0, None);
        iov.nr_pages = nr_pages;
        iov.vaddr = vaddr;
        iov.dst_id = u64::from(pid);
        self.send(&iov)?;
        self.push()?;
        let a = Iov::from_bytes(&self.answer::<IOV_SIZE>(proto::GET)?);
        let fits = a.command() == proto::ADD_F
            && a.flags() == rcriu_images::pages::PE_PRESENT
            && a.vaddr == vaddr
            && a.dst_id == u64::from(pid)
            && (1..=nr_pages).contains(&a.nr_pages);
        if !fits {
            return Err(Error::protocol(
                &self.peer,
                format!(
                    "answered PS_IOV_GET of {nr_pages} pages at {vaddr:#x} of process {pid} with {} ({:#x}) of {} pages at {:#x} of {}",
                    proto::command_name(a.command()),
                    a.cmd,
                    a.nr_pages,
                    a.vaddr,
                    a.dst_id
                ),
            ));
        }
        let len = usize::try_from(a.nr_pages * rcriu_images::pages::PAGE_SIZE)
            .map_err(|_| Error::protocol(&self.peer, "an answer larger than memory"))?;
        buf.resize(len, 0);
        let what = format!(
            "receiving {} pages at {vaddr:#x} of process {pid}",
            a.nr_pages
        );
        self.sock
            .stream()
            .read_exact(buf)
            .map_err(Error::io(&self.peer, what))?;
        Ok(a.nr_pages)
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
        self.push()?;
        let status = i32::from_ne_bytes(self.answer::<4>(cmd)?);
        if let Conn::Tls(t) = &mut self.sock {
            // Each side ends the TLS session (and criu's server waits for
            // the dump's end of it).
            let mut b = [0u8; 1];
            match t.close_write().and_then(|()| t.read(&mut b)) {
                Ok(0) => {}
                Ok(_) => log::warn!("the page server at {} sent data after the close", self.peer),
                Err(e) => log::debug!("ending the TLS session with {}: {e}", self.peer),
            }
        }
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

fn add_iov(dst: Dst, vaddr: u64, nr_pages: u64, flags: u32) -> Iov {
    let mut iov = Iov::new(proto::ADD_F, flags, Some(dst));
    iov.vaddr = vaddr;
    iov.nr_pages = nr_pages;
    iov
}

/// The bytes [`Client::add`] sends for a run, for a caller that writes
/// them into the socket itself, between pages ([`Client::sock`]).
pub fn add_header(dst: Dst, vaddr: u64, nr_pages: u64, flags: u32) -> [u8; IOV_SIZE] {
    add_iov(dst, vaddr, nr_pages, flags).to_bytes()
}
