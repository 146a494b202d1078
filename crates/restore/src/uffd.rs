//! Lazy restore (`--lazy-pages`), as CRIU 4.2 does it: which pages are
//! left to the lazy-pages daemon, and the daemon itself
//! ([`crate::lazy_pages`]).
//!
//! A page is lazy when its area can be (CRIU's `vma_entry_can_be_lazy`:
//! private anonymous memory, not locked, not huge pages, not the vDSO,
//! vvar or vsyscall page) and the dump left it so: its pagemap entry is
//! `PE_LAZY` (as CRIU's dump marks anonymous pages), or `PE_PARENT` (its
//! bytes kept in a pre-dump's images, which the daemon reads through the
//! chain of parents, where CRIU would read them before the process runs).
//! The restore maps such areas empty and registers them on a
//! userfaultfd (missing mode); the daemon copies the pages in on fault
//! and in the background.

use rcriu_images::pages::{PE_LAZY, PE_PARENT, PageRun};
use rcriu_images::pb;
use rcriu_images::vma::{VMA_AREA_VDSO, VMA_AREA_VSYSCALL, VMA_AREA_VVAR};

/// The name of the daemon's socket in the work directory (CRIU's).
pub const SOCKET_NAME: &str = "lazy-pages.socket";

/// The userfaultfd features the restorer asks for (the events of forks,
/// mremaps, `MADV_DONTNEED`s and munmaps), as CRIU does.
pub const FEATURES: u64 = 1 << 1 | 1 << 2 | 1 << 3 | 1 << 6;

/// Whether lazy restore works here: a userfaultfd with [`FEATURES`].
pub fn available() -> std::result::Result<(), String> {
    crate::uffd_sys::probe(FEATURES)
}

/// The word the restore sends the daemon once every process runs
/// (CRIU's `LAZY_PAGES_RESTORE_FINISHED`, "ReSTore Finished").
pub const RESTORE_FINISHED: u32 = 0x5253_5446;

/// CRIU's `vma_entry_can_be_lazy`: whether the pages of area `v` may be
/// brought in through userfaultfd.
pub fn can_be_lazy(v: &pb::VmaEntry) -> bool {
    let flags = v.flags;
    let anon = libc::MAP_ANONYMOUS as u32;
    // The mapping type, MAP_PRIVATE alone (not shared, not droppable,
    // which userfaultfd refuses).
    let kind = flags & 0x0f;
    flags & anon != 0
        && kind == libc::MAP_PRIVATE as u32
        && flags & (libc::MAP_LOCKED | libc::MAP_HUGETLB) as u32 == 0
        && v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) == 0
}

/// The lazy ranges of a process (`[start, end)`, sorted, apart, each
/// inside one area): of its pagemap's `runs` (its own, in address
/// order), those `PE_LAZY` or `PE_PARENT` in areas of `vmas` (the mm
/// image's, in address order) that [`can_be_lazy`].
pub fn lazy_ranges(vmas: &[pb::VmaEntry], runs: &[PageRun]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut i = 0usize;
    for r in runs {
        if r.flags & (PE_LAZY | PE_PARENT) == 0 || r.is_empty() {
            continue;
        }
        let (start, end) = (r.vaddr, r.end());
        while i < vmas.len() && vmas[i].end <= start {
            i += 1;
        }
        let mut j = i;
        while let Some(v) = vmas.get(j).filter(|v| v.start < end) {
            let (s, e) = (start.max(v.start), end.min(v.end));
            if s < e && can_be_lazy(v) {
                match out.last_mut() {
                    // Joined only inside one area: a copy stays in one.
                    Some(last) if last.1 == s && s != v.start => last.1 = e,
                    _ => out.push((s, e)),
                }
            }
            j += 1;
        }
    }
    out
}

/// Cuts `[start, end)` at the edges of `ranges` (sorted, apart): `f(at,
/// cut, inside)` for each piece, in order, `inside` when a range holds it.
pub fn by_range(ranges: &[(u64, u64)], start: u64, end: u64, mut f: impl FnMut(u64, u64, bool)) {
    let mut at = start;
    while at < end {
        let i = ranges.partition_point(|&(_, e)| e <= at);
        let (cut, inside) = match ranges.get(i) {
            Some(&(s, e)) if s <= at => (e.min(end), true),
            Some(&(s, _)) => (s.min(end), false),
            None => (end, false),
        };
        f(at, cut, inside);
        at = cut;
    }
}

/// The restore's connection to the lazy-pages daemon: CRIU's protocol
/// over `lazy-pages.socket` in the work directory (SOCK_STREAM): for each
/// process, its pid (i32) and then its userfaultfd (with, in rcriu's, a
/// pidfd of the process beside it, for the daemon's guard); for each
/// zombie, its pid negated alone; then [`RESTORE_FINISHED`] once every
/// process runs.
pub struct Daemon {
    sock: std::os::unix::net::UnixStream,
    path: std::path::PathBuf,
}

impl Daemon {
    /// Connects to the daemon listening in `work_dir`.
    pub fn connect(work_dir: &std::path::Path) -> crate::Result<Daemon> {
        let path = work_dir.join(SOCKET_NAME);
        // Through the directory's fd: a socket's path is at most 107 bytes.
        let dir = std::fs::File::open(work_dir)
            .map_err(crate::Error::file("opening the work directory", work_dir))?;
        use std::os::fd::AsRawFd;
        let short = format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd());
        let sock = std::os::unix::net::UnixStream::connect(&short).map_err(|e| {
            crate::Error::Io {
                what: format!(
                    "connecting to the lazy-pages daemon at {} (is `rcriu lazy-pages` running with this work directory?)",
                    path.display()
                ),
                source: e,
            }
        })?;
        Ok(Daemon { sock, path })
    }

    fn failed(&self, what: &str) -> impl FnOnce(std::io::Error) -> crate::Error {
        let what = format!("{what} to the lazy-pages daemon at {}", self.path.display());
        move |source| crate::Error::Io { what, source }
    }

    /// Hands process `pid`'s userfaultfd (and a pidfd of it) over.
    pub fn send_process(
        &self,
        pid: i32,
        uffd: std::os::fd::BorrowedFd<'_>,
        pidfd: std::os::fd::BorrowedFd<'_>,
    ) -> crate::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        use std::io::Write;
        (&self.sock)
            .write_all(&pid.to_ne_bytes())
            .map_err(self.failed(&format!("sending process {pid}")))?;
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        let fds = [uffd, pidfd];
        if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(crate::Error::lazy(
                "a control message of two fds does not fit",
            ));
        }
        let n = sendmsg(
            &self.sock,
            &[std::io::IoSlice::new(b"U")],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        )
        .map_err(|e| self.failed(&format!("sending the userfaultfd of process {pid}"))(e.into()))?;
        if n != 1 {
            return Err(self.failed("sending a userfaultfd")(
                std::io::ErrorKind::WriteZero.into(),
            ));
        }
        Ok(())
    }

    /// Tells the daemon of zombie `pid` (which has no memory).
    pub fn send_zombie(&self, pid: i32) -> crate::Result<()> {
        use std::io::Write;
        (&self.sock)
            .write_all(&(-pid).to_ne_bytes())
            .map_err(self.failed(&format!("sending zombie {pid}")))
    }

    /// Says every process runs: the daemon pushes the rest in.
    pub fn finished(self) -> crate::Result<()> {
        use std::io::Write;
        (&self.sock)
            .write_all(&RESTORE_FINISHED.to_ne_bytes())
            .map_err(self.failed("saying the restore finished"))
    }
}

/// The restorers' way to rcriu: a SOCK_SEQPACKET pair; each restorer
/// sends one message on its end (its pid, its userfaultfd attached), and
/// rcriu hands each on to the daemon as it comes.
pub struct Handoff {
    ours: std::os::fd::OwnedFd,
    /// The restorers' end (inherited through the forks), until they are
    /// forked.
    pub theirs: Option<std::os::fd::OwnedFd>,
}

impl Handoff {
    /// A new pair, the restorers' end at `min` or above.
    pub fn new(min: i32) -> crate::Result<Handoff> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| crate::Error::host("making the userfaultfds' socket pair")(e.into()))?;
        Ok(Handoff {
            ours,
            theirs: Some(crate::files::renumber(theirs, min)?),
        })
    }

    /// The next message: `None` once [`Handoff::stop`]ped (or every
    /// restorer's end closed).
    pub fn recv(&self) -> crate::Result<Option<(i32, std::os::fd::OwnedFd)>> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut pid = [0u8; 4];
        let r = loop {
            match recvmsg(
                &self.ours,
                &mut [std::io::IoSliceMut::new(&mut pid)],
                &mut cmsg,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r,
            }
        }
        .map_err(|e| crate::Error::host("receiving a restored process's userfaultfd")(e.into()))?;
        if r.bytes == 0 {
            return Ok(None);
        }
        let mut fd = None;
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for f in fds {
                    fd.get_or_insert(f);
                }
            }
        }
        match (r.bytes, fd) {
            (4, Some(fd)) => Ok(Some((i32::from_ne_bytes(pid), fd))),
            _ => Err(crate::Error::lazy(
                "a restorer's message came without its userfaultfd",
            )),
        }
    }

    /// Ends [`Handoff::recv`]'s wait (the restore failed).
    pub fn stop(&self) {
        let _ = rustix::net::shutdown(&self.ours, rustix::net::Shutdown::Read);
    }
}

/// Hands each restorer's userfaultfd on to the daemon as it comes, with
/// a pidfd of the process (`on_host` gives its pid here from the pid it
/// sent, its own); until `n` are sent or the handoff ends. The pids
/// sent, as the images have them.
pub fn forward(
    h: &Handoff,
    d: &Daemon,
    n: usize,
    on_host: &(dyn Fn(crate::Pid) -> crate::Pid + Sync),
) -> crate::Result<Vec<crate::Pid>> {
    use std::os::fd::AsFd;
    let mut sent = Vec::with_capacity(n);
    while sent.len() < n {
        let Some((pid, uffd)) = h.recv()? else { break };
        let host = on_host(pid);
        let pidfd = rustix::process::Pid::from_raw(host)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()))
            .map_err(|e| crate::Error::Restorer {
                pid: host,
                what: "opening a pidfd of it for the lazy-pages daemon".into(),
                source: e.into(),
            })?;
        d.send_process(pid, uffd.as_fd(), pidfd.as_fd())?;
        log::debug!("the userfaultfd of process {pid} handed to the lazy-pages daemon");
        sent.push(pid);
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcriu_images::pages::PE_PRESENT;

    fn vma(start: u64, end: u64, flags: i32, status: u32) -> pb::VmaEntry {
        pb::VmaEntry {
            start,
            end,
            flags: flags as u32,
            status,
            ..Default::default()
        }
    }

    fn run(vaddr: u64, pages: u64, flags: u32) -> PageRun {
        PageRun {
            vaddr,
            nr_pages: pages,
            flags,
            pages_offset: None,
        }
    }

    #[test]
    fn lazy_pages_are_anonymous_private_and_split_at_areas() {
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let vmas = [
            vma(0x1000, 0x3000, libc::MAP_PRIVATE, 0x41),
            vma(0x3000, 0x5000, anon, 0x201),
            vma(0x5000, 0x8000, anon, 0x201),
            vma(0x8000, 0x9000, anon | libc::MAP_LOCKED, 0x201),
            vma(0x9000, 0xa000, anon, 0x9),
        ];
        let runs = [
            run(0x1000, 2, PE_PRESENT | PE_LAZY), // a file area: never lazy
            run(0x3000, 3, PE_PRESENT | PE_LAZY), // across two areas
            run(0x6000, 1, PE_PRESENT),           // not lazy in the image
            run(0x7000, 2, PE_PARENT),            // kept in a parent
            run(0x9000, 1, PE_PRESENT | PE_LAZY), // the vDSO
        ];
        assert_eq!(
            lazy_ranges(&vmas, &runs),
            vec![(0x3000, 0x5000), (0x5000, 0x6000), (0x7000, 0x8000)]
        );
    }

    #[test]
    fn ranges_cut_pieces() {
        let mut got = Vec::new();
        by_range(
            &[(0x2000, 0x3000), (0x5000, 0x6000)],
            0x1000,
            0x5800,
            |a, b, i| got.push((a, b, i)),
        );
        assert_eq!(
            got,
            vec![
                (0x1000, 0x2000, false),
                (0x2000, 0x3000, true),
                (0x3000, 0x5000, false),
                (0x5000, 0x5800, true)
            ]
        );
    }
}
