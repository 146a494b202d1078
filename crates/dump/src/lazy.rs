//! `dump --lazy-pages --address A --port P` (post-copy), as CRIU 4.2:
//! every image is written but the bytes of the lazy pages (anonymous
//! private memory, CRIU's choice, [`crate::pages`]), whose pagemap
//! entries say `PE_LAZY` alone; the dump holds those bytes and serves
//! them to the restore's lazy-pages daemon (`lazy-pages --page-server`)
//! over CRIU's page server protocol ([`rcriu_page_server::lazy`]), then
//! ends when the daemon closes the session.
//!
//! CRIU takes the pages into page pipes through its parasite and keeps
//! the processes frozen until the session ends, then kills them. rcriu
//! copies each process's lazy pages, frozen, into a memfd of its own
//! (read through `/proc/PID/mem`, which leaves pages shared
//! copy-on-write shared), so that the processes are killed before the
//! server listens: the restore may then take their pids on the same
//! machine. The post-dump scripts still see them, frozen, as CRIU's.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rcriu_compel::sys::LocalMap;
use rcriu_images::pages::PAGE_SIZE;
use rcriu_proc::Pid;

use crate::{Error, Result};

/// The lazy pages of one process: its memfd, and its runs `(vaddr,
/// bytes, offset in the memfd)` by address.
struct Process {
    mem: OwnedFd,
    runs: Vec<(u64, u64, u64)>,
}

/// The lazy pages of a dump's processes, by pid.
#[derive(Default)]
pub struct Store {
    procs: BTreeMap<u32, Process>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("processes", &self.procs.len())
            .field("pages", &self.pages())
            .finish()
    }
}

impl Store {
    /// Copies the pages of `ranges` (`[start, end)`, sorted, apart) of
    /// frozen process `pid` into a memfd of its own; returns the pages.
    pub fn hold(&mut self, pid: Pid, ranges: &[(u64, u64)]) -> Result<u64> {
        let err = |source| Error::LazyHold { pid, source };
        let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        let mem =
            rustix::fs::memfd_create(format!("rcriu-lazy-{pid}"), rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| err(e.into()))?;
        let mut runs = Vec::with_capacity(ranges.len());
        if total > 0 {
            rustix::fs::ftruncate(&mem, total).map_err(|e| err(e.into()))?;
            let len = usize::try_from(total)
                .map_err(|_| err(std::io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
            let map = LocalMap::map(mem.as_fd(), 0, len).map_err(err)?;
            let path = format!("/proc/{pid}/mem");
            let src = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
            map.read_mem(src.as_fd(), 0, ranges.iter().map(|&(s, e)| (s, e - s)))
                .map_err(err)?;
        }
        let mut off = 0;
        for &(s, e) in ranges {
            runs.push((s, e - s, off));
            off += e - s;
        }
        let pages = total / PAGE_SIZE;
        log::info!("process {pid}: {pages} lazy pages held for the lazy-pages daemon");
        self.procs.insert(pid as u32, Process { mem, runs });
        Ok(pages)
    }

    /// The pages held.
    pub fn pages(&self) -> u64 {
        self.procs
            .values()
            .flat_map(|p| p.runs.iter())
            .map(|r| r.1 / PAGE_SIZE)
            .sum()
    }
}

/// Where a lazy dump serves its pages from (criu's `--address` and
/// `--port`, listening already), through TLS with `tls` (criu's
/// `--tls`), and what says it listens (criu's status-ready step: the
/// status-ready scripts, then `--status-fd`), called once every image is
/// written and the processes are killed.
pub struct Serve {
    pub listener: std::net::TcpListener,
    pub tls: Option<rcriu_page_server::tls::ServerTls>,
    pub ready: Box<dyn Fn() -> std::result::Result<(), String> + Send + Sync>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Serve {
    /// Serves `store` to one lazy-pages daemon, until it closes the
    /// session.
    pub(crate) fn run(&self, pid: Pid, store: &Store) -> Result<()> {
        let start = |what: String| Error::LazyStart { pid, what };
        let serve_err = |source| Error::LazyServe { pid, source };
        // The images are whole: a signal ends the serving (and the
        // daemon's guard then kills the restored processes).
        crate::sys::default_on_signals();
        (self.ready)().map_err(start)?;
        log::info!(
            "serving {} lazy pages on {}",
            store.pages(),
            self.listener
                .local_addr()
                .map_or_else(|_| "its socket".into(), |a| a.to_string())
        );
        let (sock, peer) = self
            .listener
            .accept()
            .map_err(|e| start(format!("accepting the lazy-pages daemon's connection: {e}")))?;
        let peer = peer.to_string();
        log::info!("the lazy-pages daemon at {peer} connected");
        if let Err(e) = sock.set_nodelay(true) {
            log::debug!("TCP_NODELAY on the lazy page server's socket: {e}");
        }
        let served = match &self.tls {
            None => {
                let mut s = sock;
                rcriu_page_server::lazy::serve(&mut s, store, &peer, true)
            }
            Some(t) => t
                .accept(sock, &peer)
                .and_then(|mut s| rcriu_page_server::lazy::serve(&mut s, store, &peer, true)),
        }
        .map_err(serve_err)?;
        log::info!(
            "lazy pages transfer finished: {} requests, {} pages sent",
            served.requests,
            served.pages
        );
        Ok(())
    }
}

impl rcriu_page_server::lazy::Held for Store {
    fn find(&self, pid: u32, vaddr: u64, nr_pages: u64) -> Option<(u64, BorrowedFd<'_>, u64)> {
        let p = self.procs.get(&pid)?;
        let i = p.runs.partition_point(|&(s, len, _)| s + len <= vaddr);
        let &(s, len, off) = p.runs.get(i).filter(|&&(s, _, _)| s <= vaddr)?;
        let left = (s + len - vaddr) / PAGE_SIZE;
        Some((nr_pages.min(left), p.mem.as_fd(), off + (vaddr - s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcriu_page_server::lazy::Held;

    #[test]
    fn runs_are_found_by_address_and_cut_at_their_ends() {
        let mem = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let mut s = Store::default();
        s.procs.insert(
            5,
            Process {
                mem,
                runs: vec![(0x1000, 0x2000, 0), (0x8000, 0x3000, 0x2000)],
            },
        );
        assert_eq!(s.pages(), 5);
        let at = |v, n| s.find(5, v, n).map(|(n, _, off)| (n, off));
        assert_eq!(at(0x1000, 8), Some((2, 0)));
        assert_eq!(at(0x2000, 1), Some((1, 0x1000)));
        assert_eq!(at(0x3000, 1), None);
        assert_eq!(at(0x9000, 9), Some((2, 0x3000)));
        assert_eq!(at(0xb000, 1), None);
        assert!(s.find(6, 0x1000, 1).is_none());
    }
}
