//! The page server of a lazy dump (`dump --lazy-pages`, post-copy), as
//! CRIU 4.2's: the dump has written every image but the bytes of its
//! lazy pages, which it holds; the lazy-pages daemon of the restore
//! (`lazy-pages --page-server`) asks for them as the restored processes
//! fault, and in the background.
//!
//! The session, from the daemon's side:
//!
//! - `PS_IOV_GET {nr_pages, vaddr, dst_id}`: `dst_id` is the process's
//!   pid in the images, plain (not the `(id << 8) | type` of the other
//!   commands). The answer is the same request back with the command
//!   `PS_IOV_ADD_F | PE_PRESENT << 16` and `nr_pages` cut at the end of
//!   the held run that holds `vaddr`, then that many pages of bytes. A
//!   request for pages the dump does not hold ends the session (CRIU's
//!   does so too: it answers nothing).
//! - `PS_IOV_CLOSE` (or `PS_IOV_FORCE_CLOSE`): answered with an `i32`
//!   status 0; then the server waits for the daemon to close the
//!   connection (leaving the TIME_WAIT on its side).
//!
//! A connection that ends before CLOSE is an error here (CRIU's dump
//! takes it as the end): the daemon did not say it has every page.

use std::os::fd::BorrowedFd;

use rcriu_images::pages::{PAGE_SIZE, PE_PRESENT};

use crate::proto::{self, Iov};
use crate::{Error, PageStream, Result};

/// The pages a lazy dump holds.
pub trait Held {
    /// Where the pages of process `pid` from `vaddr` are: how many of
    /// the `nr_pages` asked for are held there in a row (at least one),
    /// the file holding them and the offset of the first; `None` when
    /// the page at `vaddr` is not held.
    fn find(&self, pid: u32, vaddr: u64, nr_pages: u64) -> Option<(u64, BorrowedFd<'_>, u64)>;
}

/// What a session served.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Served {
    /// PS_IOV_GET requests answered.
    pub requests: u64,
    /// Pages sent.
    pub pages: u64,
}

/// Serves the lazy-pages daemon on `sock` from `held` until it closes
/// the session; `wait_eof` as [`crate::server::Session::serve`].
pub fn serve<S: PageStream>(
    sock: &mut S,
    held: &dyn Held,
    peer: &str,
    wait_eof: bool,
) -> Result<Served> {
    let mut served = Served::default();
    let mut buf = Vec::new();
    loop {
        let Some(iov) = proto::read_request(sock, peer)? else {
            return Err(Error::protocol(
                peer,
                "the lazy-pages daemon closed the connection before PS_IOV_CLOSE",
            ));
        };
        match iov.command() {
            proto::GET => {
                served.pages += get(sock, held, peer, &iov, &mut buf)?;
                served.requests += 1;
            }
            c @ (proto::CLOSE | proto::FORCE_CLOSE) => {
                sock.write_all(&0i32.to_ne_bytes())
                    .and_then(|()| sock.flush())
                    .map_err(Error::io(
                        peer,
                        format!("answering {}", proto::command_name(c)),
                    ))?;
                break;
            }
            c => {
                return Err(Error::protocol(
                    peer,
                    format!(
                        "{} ({:#x}) to the page server of a lazy dump, which takes PS_IOV_GET and PS_IOV_CLOSE",
                        proto::command_name(c),
                        iov.cmd
                    ),
                ));
            }
        }
    }
    if let Err(e) = sock.close_write() {
        log::debug!("lazy page server: ending the session with {peer}: {e}");
    }
    if wait_eof {
        let mut b = [0u8; 1];
        match sock.read(&mut b) {
            Ok(0) => {}
            Ok(_) => log::warn!("lazy page server: {peer} sent data after the close"),
            Err(e) => log::debug!("lazy page server: {peer} after the close: {e}"),
        }
    }
    log::info!(
        "lazy page server: session with {peer} over: {} requests, {} pages sent",
        served.requests,
        served.pages
    );
    Ok(served)
}

/// Answers one PS_IOV_GET; the pages sent.
fn get<S: PageStream>(
    sock: &mut S,
    held: &dyn Held,
    peer: &str,
    iov: &Iov,
    buf: &mut Vec<u8>,
) -> Result<u64> {
    let found = u32::try_from(iov.dst_id)
        .ok()
        .filter(|_| iov.nr_pages > 0 && iov.vaddr.is_multiple_of(PAGE_SIZE))
        .and_then(|pid| held.find(pid, iov.vaddr, iov.nr_pages));
    let Some((nr, fd, off)) = found else {
        return Err(Error::protocol(
            peer,
            format!(
                "PS_IOV_GET of {} pages at {:#x} of process {}, which the dump does not hold",
                iov.nr_pages, iov.vaddr, iov.dst_id
            ),
        ));
    };
    let answer = Iov {
        cmd: (PE_PRESENT << 16) | proto::ADD_F,
        nr_pages: nr,
        vaddr: iov.vaddr,
        dst_id: iov.dst_id,
    };
    let len = nr * PAGE_SIZE;
    sock.write_all(&answer.to_bytes())
        .map_err(Error::io(peer, "answering PS_IOV_GET"))?;
    match sock.splice_fd() {
        Some(out) => {
            // The header goes out with the pages (the socket is corked).
            send_file(out, fd, off, len).map_err(Error::io(peer, "sending pages"))?;
        }
        None => {
            let chunk = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20);
            buf.resize(chunk, 0);
            let mut done = 0u64;
            while done < len {
                let n = usize::try_from(len - done).unwrap_or(usize::MAX).min(chunk);
                read_at(fd, &mut buf[..n], off + done).map_err(Error::io(peer, "reading pages"))?;
                sock.write_all(&buf[..n])
                    .map_err(Error::io(peer, "sending pages"))?;
                done += n as u64;
            }
        }
    }
    sock.flush().map_err(Error::io(peer, "sending pages"))?;
    Ok(nr)
}

/// `sendfile(2)` of `len` bytes at `off` of `fd` to `out`.
fn send_file(out: BorrowedFd<'_>, fd: BorrowedFd<'_>, off: u64, len: u64) -> std::io::Result<()> {
    let mut at = off;
    let end = off + len;
    while at < end {
        let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(1 << 30);
        match rustix::fs::sendfile(out, fd, Some(&mut at), want) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(fd, &mut buf[got..], off + got as u64) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::IOV_SIZE;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    struct One(std::fs::File);

    impl Held for One {
        fn find(&self, pid: u32, vaddr: u64, nr: u64) -> Option<(u64, BorrowedFd<'_>, u64)> {
            // Process 7 holds 4 pages at 0x10000.
            let (start, pages) = (0x10000u64, 4u64);
            if pid != 7 || vaddr < start || vaddr >= start + pages * PAGE_SIZE {
                return None;
            }
            let skip = (vaddr - start) / PAGE_SIZE;
            Some((nr.min(pages - skip), self.0.as_fd(), skip * PAGE_SIZE))
        }
    }

    fn request(cmd: u32, nr_pages: u64, vaddr: u64, dst_id: u64) -> [u8; IOV_SIZE] {
        Iov {
            cmd,
            nr_pages,
            vaddr,
            dst_id,
        }
        .to_bytes()
    }

    #[test]
    fn gets_are_answered_as_criu_answers_them() {
        let mut f = tempfile::tempfile().unwrap();
        let bytes: Vec<u8> = (0..4 * PAGE_SIZE)
            .map(|i| (i / PAGE_SIZE) as u8 + 1)
            .collect();
        f.write_all(&bytes).unwrap();
        let held = One(f);
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        // Three pages asked from the third: two given.
        ours.write_all(&request(proto::GET, 3, 0x12000, 7)).unwrap();
        ours.write_all(&request(proto::CLOSE, 0, 0, 0)).unwrap();
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let served = serve(&mut theirs, &held, "test", false).unwrap();
        assert_eq!(
            served,
            Served {
                requests: 1,
                pages: 2
            }
        );
        drop(theirs);
        let mut got = Vec::new();
        ours.read_to_end(&mut got).unwrap();
        let mut head = [0u8; IOV_SIZE];
        head.copy_from_slice(&got[..IOV_SIZE]);
        let a = Iov::from_bytes(&head);
        assert_eq!(a.command(), proto::ADD_F);
        assert_eq!(a.flags(), PE_PRESENT);
        assert_eq!((a.nr_pages, a.vaddr, a.dst_id), (2, 0x12000, 7));
        let pages = &got[IOV_SIZE..IOV_SIZE + 2 * PAGE_SIZE as usize];
        assert_eq!(pages, &bytes[2 * PAGE_SIZE as usize..]);
        assert_eq!(
            &got[IOV_SIZE + 2 * PAGE_SIZE as usize..],
            &0i32.to_ne_bytes()
        );
    }

    #[test]
    fn a_page_not_held_ends_the_session() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0u8; 4 * PAGE_SIZE as usize]).unwrap();
        let held = One(f);
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        ours.write_all(&request(proto::GET, 1, 0x20000, 7)).unwrap();
        let e = serve(&mut theirs, &held, "test", false).unwrap_err();
        assert!(e.to_string().contains("test"), "{e}");
        // Nothing asked, the connection closed: no CLOSE.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        drop(ours);
        let e = serve(&mut theirs, &held, "test", false).unwrap_err();
        assert!(format!("{e:?}").contains("before PS_IOV_CLOSE"), "{e:?}");
    }
}
