//! One session of the page server: requests read from a connection,
//! written as `pagemap-*.img` and `pages-*.img` in the server's images
//! directory, as CRIU 4.2's page server writes them (a pagemap entry per
//! run received, the pages of each pagemap in a pages image of its own,
//! numbered from 0x10001 so that a dump writing into the same directory
//! keeps its own numbers).
//!
//! Everything the peer sends is checked before it is used: image names
//! come from numbers only (`pagemap-<pid>.img`), runs are page aligned
//! and do not overflow, flags are known ones. A session that fails, or
//! that ends without CLOSE, removes the images it wrote.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rcriu_images::pages::{PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT, PagemapWriter, PagesWriter};
use rcriu_images::{ImageDir, ImageFile};

use crate::proto::{self, Dst, Iov};
use crate::{Error, PageStream, Result};

/// The first pages image number a page server gives (CRIU's
/// `up_page_ids_base`).
pub const FIRST_PAGES_ID: u32 = 0x10001;

/// The bytes moved at a time from the socket to the pages image.
const PIPE_SIZE: usize = 1 << 20;

/// What a session received.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Pagemaps opened.
    pub pagemaps: u32,
    /// Pages received.
    pub pages: u64,
}

/// The pagemap being written.
struct Open {
    dst_id: u64,
    dst: Dst,
    pagemap: PagemapWriter<BufWriter<File>>,
    pages: PagesWriter,
}

/// A session on one connection.
pub struct Session<'a> {
    dir: &'a ImageDir,
    peer: String,
    next_pages_id: u32,
    open: Option<Open>,
    written: Vec<PathBuf>,
    pipe: Option<(OwnedFd, OwnedFd)>,
    summary: Summary,
}

impl<'a> Session<'a> {
    /// A session writing into `dir`, with `peer` (named in messages).
    pub fn new(dir: &'a ImageDir, peer: &str) -> Session<'a> {
        Session {
            dir,
            peer: peer.to_owned(),
            next_pages_id: FIRST_PAGES_ID,
            open: None,
            written: Vec::new(),
            pipe: None,
            summary: Summary::default(),
        }
    }

    /// Serves the connection `sock` (plain or TLS) until CLOSE, then ends
    /// its sending (TLS's `close_notify`); with `wait_eof`, then until the
    /// peer closes it (CRIU's server does so, to leave the TIME_WAIT to
    /// the dump's side). On failure, the images written are removed.
    pub fn serve<S: PageStream>(mut self, sock: &mut S, wait_eof: bool) -> Result<Summary> {
        match self.requests(sock) {
            Ok(()) => {}
            Err(e) => {
                self.discard();
                return Err(e);
            }
        }
        if let Err(e) = sock.close_write() {
            log::debug!("page server: ending the session with {}: {e}", self.peer);
        }
        if wait_eof {
            let mut b = [0u8; 1];
            match sock.read(&mut b) {
                Ok(0) => {}
                Ok(_) => log::warn!("page server: {} sent data after the close", self.peer),
                Err(e) => log::debug!("page server: {} after the close: {e}", self.peer),
            }
        }
        log::info!(
            "page server session with {} over: {} pagemap(s), {} pages",
            self.peer,
            self.summary.pagemaps,
            self.summary.pages
        );
        Ok(self.summary)
    }

    fn requests<S: PageStream>(&mut self, sock: &mut S) -> Result<()> {
        loop {
            let Some(iov) = proto::read_request(sock, &self.peer)? else {
                return Err(Error::protocol(
                    &self.peer,
                    "the connection ended before PS_IOV_CLOSE: the data were not flushed",
                ));
            };
            match iov.command() {
                proto::OPEN => self.open(&iov)?,
                proto::OPEN2 => {
                    self.open(&iov)?;
                    let has = self.has_parent(&iov)?;
                    self.reply(sock, &[u8::from(has)], proto::OPEN2)?;
                }
                proto::PARENT => {
                    let has = self.has_parent(&iov)?;
                    self.reply(sock, &i32::from(has).to_ne_bytes(), proto::PARENT)?;
                }
                proto::ADD_F => self.add(sock, &iov, iov.flags())?,
                proto::ADD => self.add(sock, &iov, PE_PRESENT)?,
                proto::HOLE => self.add(sock, &iov, PE_PARENT)?,
                c @ (proto::CLOSE | proto::FORCE_CLOSE) => {
                    self.finish()?;
                    self.reply(sock, &0i32.to_ne_bytes(), c)?;
                    return Ok(());
                }
                proto::GET => {
                    return Err(Error::protocol(
                        &self.peer,
                        "PS_IOV_GET asks for lazy pages, which the page server of images does not serve (a lazy dump does: dump --lazy-pages)",
                    ));
                }
                c => {
                    return Err(Error::protocol(
                        &self.peer,
                        format!("{} ({:#x})", proto::command_name(c), iov.cmd),
                    ));
                }
            }
        }
    }

    fn reply<S: Write>(&self, sock: &mut S, b: &[u8], to: u32) -> Result<()> {
        sock.write_all(b)
            .and_then(|()| sock.flush())
            .map_err(Error::io(
                &self.peer,
                format!("answering {}", proto::command_name(to)),
            ))
    }

    fn dst(&self, iov: &Iov) -> Result<Dst> {
        Dst::decode(iov.dst_id).ok_or_else(|| {
            Error::protocol(
                &self.peer,
                format!(
                    "unknown pagemap {:#x} in {}",
                    iov.dst_id,
                    proto::command_name(iov.command())
                ),
            )
        })
    }

    fn pagemap_file(dst: Dst) -> ImageFile {
        match dst {
            Dst::Pid(p) => ImageFile::Pagemap(p.into()),
            Dst::Shmem(s) => ImageFile::ShmemPagemap(s.into()),
        }
    }

    /// Whether the images directory's parent (`parent`, a pre-dump's
    /// images) has a pagemap for the request's.
    fn has_parent(&self, iov: &Iov) -> Result<bool> {
        let file = Self::pagemap_file(self.dst(iov)?);
        match self.dir.parent() {
            Ok(Some(p)) => Ok(p.exists(file)),
            Ok(None) => Ok(false),
            Err(e) => Err(Error::image(&self.peer)(e)),
        }
    }

    /// Opens the request's pagemap and a pages image for it, the one
    /// open before finished.
    fn open(&mut self, iov: &Iov) -> Result<()> {
        let dst = self.dst(iov)?;
        self.finish()?;
        let pages_id = self.next_pages_id;
        self.next_pages_id = pages_id
            .checked_add(1)
            .ok_or_else(|| Error::protocol(&self.peer, "more pagemaps than pages image numbers"))?;
        let img = Error::image(&self.peer);
        let pm_file = Self::pagemap_file(dst);
        self.written.push(self.dir.file_path(pm_file));
        let pagemap = match dst {
            Dst::Pid(p) => self.dir.create_pagemap(p, pages_id),
            Dst::Shmem(s) => self.dir.create_shmem_pagemap(s, pages_id),
        }
        .map_err(img)?;
        self.written
            .push(self.dir.file_path(ImageFile::Pages(pages_id.into())));
        let pages = self
            .dir
            .create_pages(pages_id)
            .map_err(Error::image(&self.peer))?;
        log::debug!("page server: {dst} opened, its pages in pages-{pages_id}.img");
        self.summary.pagemaps += 1;
        self.open = Some(Open {
            dst_id: iov.dst_id,
            dst,
            pagemap,
            pages,
        });
        Ok(())
    }

    /// Finishes the open pagemap, if any.
    fn finish(&mut self) -> Result<()> {
        if let Some(o) = self.open.take() {
            o.pagemap.finish().map_err(Error::image(&self.peer))?;
            log::debug!("page server: {} written", o.dst);
        }
        Ok(())
    }

    /// A run: its pagemap entry, then its pages from the connection.
    fn add<S: PageStream>(&mut self, sock: &mut S, iov: &Iov, flags: u32) -> Result<()> {
        let known = PE_PARENT | PE_LAZY | PE_PRESENT;
        let peer = self.peer.clone();
        let bad = |what: String| Err(Error::protocol(&peer, what));
        if flags & !known != 0 || flags & (PE_PRESENT | PE_PARENT) == (PE_PRESENT | PE_PARENT) {
            return bad(format!("a run with flags {flags:#x}"));
        }
        let Some(len) = iov.bytes().filter(|&l| iov.vaddr.checked_add(l).is_some()) else {
            return bad(format!(
                "a run of {} pages at {:#x}",
                iov.nr_pages, iov.vaddr
            ));
        };
        if !iov.vaddr.is_multiple_of(PAGE_SIZE) {
            return bad(format!("a run at {:#x}, not page aligned", iov.vaddr));
        }
        // Pages for a pagemap not opened (older CRIUs): opened now.
        if self.open.as_ref().map(|o| o.dst_id) != Some(iov.dst_id) {
            log::warn!(
                "page server: {} sends pages without opening their pagemap",
                self.peer
            );
            self.open(iov)?;
        }
        let Some(o) = self.open.as_mut() else {
            return Err(Error::protocol(&peer, "no pagemap open"));
        };
        o.pagemap
            .add(iov.vaddr, iov.nr_pages, flags)
            .map_err(Error::image(&peer))?;
        if flags & PE_PRESENT == 0 {
            return Ok(());
        }
        if self.pipe.is_none() {
            self.pipe = make_pipe();
        }
        let o = self
            .open
            .as_mut()
            .ok_or_else(|| Error::protocol(&peer, "no pagemap open"))?;
        match (&self.pipe, sock.splice_fd()) {
            (Some((r, w)), Some(fd)) => receive_spliced(fd, r, w, &mut o.pages, len, &peer)?,
            _ => receive_copied(sock, &mut o.pages, len, &peer)?,
        }
        self.summary.pages += iov.nr_pages;
        Ok(())
    }

    /// Removes what the session wrote.
    fn discard(&mut self) {
        self.open = None;
        for p in self.written.drain(..) {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("cannot remove {}: {e}", p.display());
            }
        }
    }
}

/// A pipe for moving pages without copying them; `None` when none can be
/// had (then they are copied).
fn make_pipe() -> Option<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE) {
        log::debug!("page server pipe of the default size: {e}");
    }
    Some((r, w))
}

fn ended(peer: &str, left: u64) -> Error {
    Error::protocol(
        peer,
        format!("the connection ended {left} bytes before the end of a run's pages"),
    )
}

/// Moves `len` bytes from the socket `sock` into `pages` through the
/// pipe `(r, w)`.
fn receive_spliced(
    sock: BorrowedFd<'_>,
    r: &OwnedFd,
    w: &OwnedFd,
    pages: &mut PagesWriter,
    len: u64,
    peer: &str,
) -> Result<()> {
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(PIPE_SIZE);
        let n = match rustix::pipe::splice(
            sock,
            None,
            w,
            None,
            want,
            rustix::pipe::SpliceFlags::MOVE,
        ) {
            Ok(0) => return Err(ended(peer, left)),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            // Not an fd splice can read: copied.
            Err(rustix::io::Errno::INVAL) if left == len => {
                return receive_copied(
                    &mut std::fs::File::from(
                        sock.try_clone_to_owned()
                            .map_err(Error::io(peer, "receiving pages"))?,
                    ),
                    pages,
                    len,
                    peer,
                );
            }
            Err(e) => return Err(Error::io(peer, "receiving pages")(e.into())),
        };
        let mut moved = 0;
        while moved < n {
            let m = pages
                .splice_from(r, n - moved)
                .map_err(Error::image(peer))?;
            if m == 0 {
                return Err(Error::protocol(peer, "the page pipe closed"));
            }
            moved += m;
        }
        left -= n as u64;
    }
    Ok(())
}

/// Reads `len` bytes from `sock` into `pages`, a buffer's worth per
/// write (a TLS stream gives a record, 16 KiB, per read).
fn receive_copied<S: Read>(
    sock: &mut S,
    pages: &mut PagesWriter,
    len: u64,
    peer: &str,
) -> Result<()> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(PIPE_SIZE)];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let mut got = 0;
        while got < want {
            match sock.read(&mut buf[got..want]) {
                Ok(0) => return Err(ended(peer, left - got as u64)),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(peer, "receiving pages")(e)),
            }
        }
        pages.write_pages(&buf[..got]).map_err(Error::image(peer))?;
        left -= got as u64;
    }
    Ok(())
}
