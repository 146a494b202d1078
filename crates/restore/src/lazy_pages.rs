//! `rcriu lazy-pages`: the daemon of a lazy restore, as CRIU 4.2's.
//!
//! It listens on `lazy-pages.socket` in the work directory; `rcriu
//! restore --lazy-pages` connects and hands it, process by process, the
//! userfaultfd on which the restorer registered the process's lazy
//! areas ([`crate::uffd`]). The daemon answers each page fault at once
//! with `UFFDIO_COPY` from the images (the process's pages image, or a
//! parent's through the chain of `parent` links that pre-dumps make,
//! mapped read-only: one copy from the page cache into the process), a
//! zero page where the images have none; it follows the process's forks,
//! mremaps, munmaps and `MADV_DONTNEED`s (the userfaultfd's events). Once
//! the restore says every process runs, it pushes the rest of the lazy
//! pages in the background, in growing chunks, and ends (status 0) when
//! every lazy page of every process is in, or the process is gone.
//!
//! With a page server ([`Daemon::page_server`], criu's `lazy-pages
//! --page-server --address A --port P`), the lazy pages come from the
//! lazy dump that serves them (`dump --lazy-pages`,
//! [`rcriu_page_server::lazy`]) instead of the images: each fault and
//! each background chunk is a PS_IOV_GET for the process's pid in the
//! images, its pages copied in from the answer; once every page is in,
//! the daemon closes the session (PS_IOV_CLOSE, whose answer says the
//! dump may end). A dump that goes away before is the daemon's end too.
//!
//! CRIU's daemon leaves a process silently broken if it dies early: the
//! kernel then unregisters the areas and the missing pages read as zeros.
//! rcriu's forks a guard first, in a session of its own and deaf to the
//! terminal's signals, which holds a copy of every userfaultfd (so that
//! a fault waits rather than reads zeros) and a pidfd of each process:
//! when the daemon ends before it said every page is in (killed, or
//! failed), the guard kills (SIGKILL) every restored process, and every
//! process they forked since (stopped first, so that none forks meanwhile),
//! and says so on its standard error.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rcriu_images::pages::{PE_PRESENT, PageRun};
use rcriu_images::{ImageDir, ImageFile};

use crate::pages::Piece;
use crate::uffd::{RESTORE_FINISHED, SOCKET_NAME, lazy_ranges};
use crate::uffd_sys::{self, Filled, Mapped, UffdMsg};
use crate::{Error, Result};

const PAGE: u64 = 4096;
/// What a fault brings in: the faulting page and those after it in the
/// same lazy range, up to this.
const FAULT_CHUNK: u64 = 64 << 10;
/// The background chunk grows from [`FAULT_CHUNK`] to this while no
/// fault comes (CRIU's 4 MiB).
const MAX_CHUNK: u64 = 4 << 20;

/// What a daemon did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Processes whose userfaultfd it served (forks after the restore
    /// included), and zombies it was told of.
    pub processes: usize,
    pub zombies: usize,
    /// Page faults answered.
    pub faults: u64,
    /// Pages copied in (on fault and in the background).
    pub pages_copied: u64,
    /// Zero pages given to faults where the images have no page.
    pub pages_zeroed: u64,
}

/// A daemon listening for its restore.
pub struct Daemon {
    listener: UnixListener,
    dir: ImageDir,
    path: PathBuf,
    remote: Option<rcriu_page_server::Client>,
}

impl Daemon {
    /// Listens on `lazy-pages.socket` in `work` (a stale one is
    /// replaced, as CRIU does) for the restore of the images in `images`.
    pub fn listen(images: &Path, work: &Path) -> Result<Daemon> {
        // Checked against their manifest (when the dump wrote one), the
        // large pages images hashed while serving ([`Serving::hashed`]);
        // the chain of parents opened now, for the hashing to see them.
        let dir = ImageDir::open_checked_deferring(images)?;
        let mut up = dir.clone();
        while let Some(p) = up.parent()? {
            up = p;
        }
        let path = work.join(SOCKET_NAME);
        let wd =
            std::fs::File::open(work).map_err(Error::file("opening the work directory", work))?;
        // Through the directory's fd: a socket's path is at most 107 bytes.
        let short = format!("/proc/self/fd/{}/{SOCKET_NAME}", wd.as_raw_fd());
        match std::fs::remove_file(&short) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::file("removing the old socket", &path)(e));
            }
            _ => {}
        }
        let listener =
            UnixListener::bind(&short).map_err(Error::file("listening on", path.clone()))?;
        std::fs::set_permissions(&short, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(Error::file("restricting", path.clone()))?;
        log::info!("waiting for the restore on {}", path.display());
        Ok(Daemon {
            listener,
            dir,
            path,
            remote: None,
        })
    }

    /// Takes the lazy pages from the lazy dump's page server on `client`
    /// (connected) instead of the images.
    pub fn page_server(mut self, client: rcriu_page_server::Client) -> Daemon {
        self.remote = Some(client);
        self
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves one restore until every lazy page is in. Call it while the
    /// process has one thread (it forks its guard).
    pub fn serve(self) -> Result<Summary> {
        let guard = Guard::start()?;
        // The pages images' hashes, checked beside the serving: a pages
        // image that is not what the dump wrote ends the daemon (and its
        // guard kills the processes).
        let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::host("making the hashing's pipe")(e.into()))?;
        let dir = self.dir.clone();
        let hasher = std::thread::Builder::new()
            .name("pages hashing".into())
            .spawn(move || {
                // Behind the faults and the push (on Linux the nice
                // value of this thread alone).
                let _ = rustix::process::setpriority_process(None, 19);
                let r = dir.check_deferred();
                let _ = rustix::io::write(&wr, b"h");
                r
            })
            .map_err(Error::host("starting the pages images' hashing"))?;
        let (ctl, _) = self
            .listener
            .accept()
            .map_err(Error::file("accepting the restore on", self.path.clone()))?;
        drop(self.listener);
        let _ = std::fs::remove_file(&self.path);
        log::info!("the restore connected");
        let mut s = Serving {
            dir: self.dir,
            ctl: Some(ctl),
            finished: false,
            procs: Vec::new(),
            guard,
            sum: Summary::default(),
            chunk: FAULT_CHUNK,
            next: 0,
            hashed: Some((rd, hasher)),
            remote: self.remote.map(|c| (c, Vec::new())),
        };
        s.run()?;
        if let Some((c, _)) = s.remote.take() {
            c.close().map_err(|source| Error::PageServer { source })?;
        }
        s.guard.done();
        log::info!(
            "every lazy page is in: {} processes, {} faults, {} pages copied, {} zero pages",
            s.sum.processes,
            s.sum.faults,
            s.sum.pages_copied,
            s.sum.pages_zeroed
        );
        Ok(s.sum.clone())
    }
}

/// A range of lazy pages not in yet: `[start, end)` where the process
/// has it now, `img` where the images have its first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    img: u64,
}

/// The bytes of a process's lazy pages: where each run is (the pages
/// image of the dump `level` parents up, at `off`), by address, and those
/// images mapped.
struct Source {
    pieces: Vec<Piece>,
    files: Vec<Mapped>,
    /// Whether the lazy pages come from the dump's page server: then
    /// `pieces` and `files` are empty.
    remote: bool,
}

impl Source {
    /// The source of process `pid` of the dump in `dir`, and its lazy
    /// ranges.
    fn load(dir: &ImageDir, pid: u32, remote: bool) -> Result<(Source, Vec<(u64, u64)>)> {
        let mm = dir.mm(pid)?;
        let (runs, pages_id) = crate::pages::read_runs(dir, pid)?;
        let lazy = lazy_ranges(&mm.vmas, &runs);
        if remote {
            let src = Source {
                pieces: Vec::new(),
                files: Vec::new(),
                remote: true,
            };
            return Ok((src, lazy));
        }
        let (mut pieces, dirs) = match crate::pages::resolve(dir, pid)? {
            Some(r) => r,
            None => (own_pieces(&runs), vec![(dir.clone(), pages_id)]),
        };
        pieces.sort_by_key(|p| p.vaddr);
        let mut files = Vec::with_capacity(dirs.len());
        for (d, id) in &dirs {
            let file = ImageFile::Pages((*id).into());
            let name = file.name();
            if d.sealed_pages(&name).is_some() {
                return Err(Error::unsupported(format!(
                    "lazy pages of encrypted images ({}/{name})",
                    d.path().display()
                )));
            }
            let f = d.open_raw(file)?;
            let len = f
                .metadata()
                .map_err(Error::file("examining", d.path().join(&name)))?
                .len();
            files.push(Mapped::map(&f, len).map_err(Error::file("mapping", d.path().join(&name)))?);
        }
        let src = Source {
            pieces,
            files,
            remote: false,
        };
        // Every lazy page has its bytes in an image.
        for &(s, e) in &lazy {
            let mut at = s;
            src.each(s, e, |vaddr, len, level, off| {
                if vaddr == at && off + len <= src.files[level].len() {
                    at += len;
                }
            });
            if at < e {
                return Err(Error::invalid(
                    format!(
                        "{}/{}",
                        dir.path().display(),
                        ImageFile::Pagemap(pid.into()).name()
                    ),
                    format!("lazy pages at {at:#x} have no bytes in the images"),
                ));
            }
        }
        Ok((src, lazy))
    }

    /// `f(vaddr, len, level, off)` for each part of `[start, end)` (image
    /// addresses) that a piece holds, in order.
    fn each(&self, start: u64, end: u64, mut f: impl FnMut(u64, u64, usize, u64)) {
        let mut i = self.pieces.partition_point(|p| p.vaddr + p.len <= start);
        while let Some(p) = self.pieces.get(i).filter(|p| p.vaddr < end) {
            let s = start.max(p.vaddr);
            let e = end.min(p.vaddr + p.len);
            if s < e {
                f(s, e - s, p.level, p.off + (s - p.vaddr));
            }
            i += 1;
        }
    }
}

/// The pieces of a dump that keeps no page in a parent: its present runs.
fn own_pieces(runs: &[PageRun]) -> Vec<Piece> {
    runs.iter()
        .filter(|r| r.flags & PE_PRESENT != 0)
        .filter_map(|r| {
            Some(Piece {
                vaddr: r.vaddr,
                len: r.len(),
                level: 0,
                off: r.pages_offset?,
            })
        })
        .collect()
}

/// A process served.
struct Proc {
    /// Its pid in the images (a fork's: its parent's).
    pid: i32,
    uffd: OwnedFd,
    pending: Vec<Span>,
    src: Rc<Source>,
    exited: bool,
    /// Faults to answer again once the events before them are read
    /// (their answer met EAGAIN: the process's mappings were changing).
    retry: Vec<u64>,
}

/// How a fill ended.
enum Fill {
    /// Every byte settled (copied, or found present or gone).
    Done,
    /// Some, then the mappings were changing: read the events first.
    Again,
    /// The process is gone.
    Exited,
}

struct Serving {
    dir: ImageDir,
    ctl: Option<UnixStream>,
    finished: bool,
    procs: Vec<Proc>,
    guard: Guard,
    sum: Summary,
    /// The background chunk, in bytes.
    chunk: u64,
    /// The process the background push serves next.
    next: usize,
    /// Until the large pages images are hashed: the hashing thread, and
    /// the pipe it says it is done on.
    hashed: Option<(
        OwnedFd,
        std::thread::JoinHandle<rcriu_images::Result<Vec<String>>>,
    )>,
    /// The lazy dump's page server, and the buffer its pages come into.
    remote: Option<(rcriu_page_server::Client, Vec<u8>)>,
}

impl Serving {
    fn run(&mut self) -> Result<()> {
        loop {
            let work = self.finished
                && self
                    .procs
                    .iter()
                    .any(|p| !p.exited && !p.pending.is_empty());
            if self.finished && !work && self.hashed.is_none() {
                return Ok(());
            }
            let busy = work || self.procs.iter().any(|p| !p.retry.is_empty());
            self.wait(busy)?;
            for i in 0..self.procs.len() {
                self.drain(i)?;
            }
            for i in 0..self.procs.len() {
                self.answer_again(i)?;
            }
            if self.finished {
                self.push()?;
            }
        }
    }

    /// Waits until the restore's socket or a userfaultfd has something
    /// (or, when `busy`, only looks).
    fn wait(&mut self, busy: bool) -> Result<()> {
        use rustix::event::{PollFd, PollFlags, poll};
        let ctl = self.ctl.take();
        let ready = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.procs.len() + 1);
            if let Some(c) = &ctl {
                fds.push(PollFd::new(c, PollFlags::IN));
            }
            if let Some((h, _)) = &self.hashed {
                fds.push(PollFd::new(h, PollFlags::IN));
            }
            for p in self.procs.iter().filter(|p| !p.exited) {
                fds.push(PollFd::new(&p.uffd, PollFlags::IN));
            }
            let zero = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            loop {
                match poll(&mut fds, busy.then_some(&zero)) {
                    Err(rustix::io::Errno::INTR) => continue,
                    r => break r,
                }
            }
            .map_err(|e| Error::host("waiting for page faults")(e.into()))?;
            let h = usize::from(ctl.is_some());
            let hashed = self.hashed.is_some() && !fds[h].revents().is_empty();
            (ctl.is_some() && !fds[0].revents().is_empty(), hashed)
        };
        let (ready, hashed) = ready;
        self.ctl = ctl;
        if hashed && let Some((_, t)) = self.hashed.take() {
            let names = t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            for n in names {
                log::info!("{n} matches its manifest");
            }
        }
        if ready {
            self.restore_message()?;
        }
        Ok(())
    }

    /// One message of the restore.
    fn restore_message(&mut self) -> Result<()> {
        use std::io::Read;
        let Some(ctl) = &self.ctl else { return Ok(()) };
        let mut word = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match (&*ctl).read(&mut word[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading the restore's socket")(e)),
            }
        }
        if got == 0 {
            self.ctl = None;
            if !self.finished {
                return Err(Error::lazy(
                    "the restore closed its connection before it finished (it failed, or was killed)",
                ));
            }
            return Ok(());
        }
        if got < 4 {
            return Err(Error::lazy("the restore's socket ended inside a message"));
        }
        let w = i32::from_ne_bytes(word);
        if w as u32 == RESTORE_FINISHED {
            log::info!("the restore finished: pushing the rest of the pages");
            self.finished = true;
            return Ok(());
        }
        if w < 0 {
            log::debug!("zombie {}", -w);
            self.sum.zombies += 1;
            return Ok(());
        }
        if w == 0 {
            return Err(Error::lazy("the restore sent pid 0"));
        }
        let (uffd, pidfd) = recv_fds(ctl, w)?;
        let (src, lazy) = Source::load(&self.dir, w as u32, self.remote.is_some())?;
        let pending: Vec<Span> = lazy
            .iter()
            .map(|&(start, end)| Span {
                start,
                end,
                img: start,
            })
            .collect();
        let pages: u64 = lazy.iter().map(|(s, e)| (e - s) / PAGE).sum();
        log::info!("process {w}: {pages} lazy pages");
        self.guard.keep(uffd.as_fd(), Some(pidfd.as_fd()))?;
        self.sum.processes += 1;
        self.procs.push(Proc {
            pid: w,
            uffd,
            pending,
            src: Rc::new(src),
            exited: false,
            retry: Vec::new(),
        });
        Ok(())
    }

    /// Reads and handles every message of process `i`'s userfaultfd.
    fn drain(&mut self, i: usize) -> Result<()> {
        loop {
            let p = &mut self.procs[i];
            if p.exited {
                return Ok(());
            }
            let msg = match uffd_sys::read_msg(p.uffd.as_fd()) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(Error::io(format!(
                        "reading the userfaultfd of process {}",
                        p.pid
                    ))(e));
                }
            };
            self.event(i, msg)?;
        }
    }

    fn event(&mut self, i: usize, m: UffdMsg) -> Result<()> {
        match m.event {
            uffd_sys::UFFD_EVENT_PAGEFAULT => {
                self.sum.faults += 1;
                // A fault: the background goes on in small chunks again.
                self.chunk = FAULT_CHUNK;
                self.fault(i, m.arg[1] & !(PAGE - 1))
            }
            uffd_sys::UFFD_EVENT_FORK => {
                let fd = uffd_sys::adopt(m.arg[0] as u32 as i32).map_err(Error::io(format!(
                    "taking the userfaultfd of a child of process {}",
                    self.procs[i].pid
                )))?;
                let parent = &self.procs[i];
                log::debug!("process {} forked: serving its child too", parent.pid);
                let child = Proc {
                    pid: parent.pid,
                    uffd: fd,
                    pending: parent.pending.clone(),
                    src: parent.src.clone(),
                    exited: false,
                    retry: Vec::new(),
                };
                self.guard.keep(child.uffd.as_fd(), None)?;
                self.sum.processes += 1;
                self.procs.push(child);
                Ok(())
            }
            uffd_sys::UFFD_EVENT_REMAP => {
                let p = &mut self.procs[i];
                remap(&mut p.pending, m.arg[0], m.arg[1], m.arg[2]);
                Ok(())
            }
            uffd_sys::UFFD_EVENT_REMOVE | uffd_sys::UFFD_EVENT_UNMAP => {
                // Those pages are gone from the process: a later fault
                // there reads zeros, as it would have.
                cut(&mut self.procs[i].pending, m.arg[0], m.arg[1]);
                Ok(())
            }
            e => Err(Error::lazy(format!(
                "an unexpected event {e:#x} on the userfaultfd of process {}",
                self.procs[i].pid
            ))),
        }
    }

    /// Answers a fault at page `addr` of process `i`.
    fn fault(&mut self, i: usize, addr: u64) -> Result<()> {
        let p = &mut self.procs[i];
        let at = p.pending.partition_point(|s| s.end <= addr);
        match p.pending.get(at).filter(|s| s.start <= addr) {
            Some(_) => {
                let end = p.pending[at].end.min(addr + FAULT_CHUNK);
                match self.fill(i, addr, end)? {
                    Fill::Again => self.procs[i].retry.push(addr),
                    Fill::Done | Fill::Exited => {}
                }
            }
            None => match uffd_sys::zero(p.uffd.as_fd(), addr, PAGE) {
                Filled::All => self.sum.pages_zeroed += 1,
                // Present already (another thread's fault), or no area.
                Filled::Part(_, libc::EEXIST | libc::ENOENT) => {}
                Filled::Part(_, libc::EAGAIN) => p.retry.push(addr),
                Filled::Part(_, libc::ESRCH | libc::ENOSPC) => self.exited(i),
                Filled::Part(_, e) => {
                    return Err(Error::io(format!(
                        "giving process {} a zero page at {addr:#x}",
                        p.pid
                    ))(std::io::Error::from_raw_os_error(e)));
                }
            },
        }
        Ok(())
    }

    fn answer_again(&mut self, i: usize) -> Result<()> {
        let faults = std::mem::take(&mut self.procs[i].retry);
        for addr in faults {
            if self.procs[i].exited {
                break;
            }
            self.fault(i, addr)?;
        }
        Ok(())
    }

    /// One chunk of the background push, for the next process with
    /// pages left.
    fn push(&mut self) -> Result<()> {
        let n = self.procs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let p = &self.procs[i];
            if p.exited || p.pending.is_empty() {
                continue;
            }
            self.next = (i + 1) % n;
            let s = p.pending[0];
            let end = s.end.min(s.start + self.chunk);
            self.fill(i, s.start, end)?;
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
            return Ok(());
        }
        Ok(())
    }

    fn exited(&mut self, i: usize) {
        let p = &mut self.procs[i];
        log::debug!("process {} is gone", p.pid);
        p.exited = true;
        p.pending.clear();
        p.retry.clear();
    }

    /// Copies `[start, end)` of process `i` (inside one pending span) in,
    /// and takes what settled out of its pending spans.
    fn fill(&mut self, i: usize, start: u64, end: u64) -> Result<Fill> {
        let p = &self.procs[i];
        let at = p.pending.partition_point(|s| s.end <= start);
        let Some(span) = p
            .pending
            .get(at)
            .copied()
            .filter(|s| s.start <= start && end <= s.end)
        else {
            return Ok(Fill::Done);
        };
        let img = span.img + (start - span.start);
        if p.src.remote {
            return self.fill_remote(i, start, end, img);
        }
        let uffd = p.uffd.as_fd();
        let src = p.src.clone();
        let mut done = 0u64;
        let mut copied = 0u64;
        let mut outcome = None;
        let mut err = None;
        src.each(img, img + (end - start), |vaddr, len, level, off| {
            if outcome.is_some() || err.is_some() || vaddr != img + done {
                // A hole in the images (checked at the start: none).
                outcome.get_or_insert(Fill::Done);
                return;
            }
            let dst = start + done;
            let file = &src.files[level];
            let copy = |d: u64, o: u64, l: u64| uffd_sys::copy(uffd, d, file, off + o, l);
            match copy_in(copy, dst, len) {
                Ok((n, c, None)) => {
                    done += n;
                    copied += c;
                }
                Ok((n, c, Some(o))) => {
                    done += n;
                    copied += c;
                    outcome = Some(o);
                }
                Err(e) => err = Some((dst, e)),
            }
        });
        self.sum.pages_copied += copied / PAGE;
        if let Some((dst, e)) = err {
            return Err(Error::io(format!(
                "copying pages into process {} at {dst:#x}",
                self.procs[i].pid
            ))(e));
        }
        let outcome = match outcome {
            Some(Fill::Exited) => {
                self.exited(i);
                return Ok(Fill::Exited);
            }
            Some(Fill::Again) => Fill::Again,
            _ => Fill::Done,
        };
        cut(&mut self.procs[i].pending, start, start + done);
        Ok(outcome)
    }
}

impl Serving {
    /// [`Serving::fill`] from the lazy dump's page server: `[start,
    /// end)` of process `i`, `img` in the images, asked for and copied
    /// in, answer by answer.
    fn fill_remote(&mut self, i: usize, start: u64, end: u64, img: u64) -> Result<Fill> {
        let pid = self.procs[i].pid;
        let Some((client, buf)) = self.remote.as_mut() else {
            return Err(Error::lazy("no page server to ask"));
        };
        let mut done = 0u64;
        let mut copied = 0u64;
        let mut outcome = None;
        while done < end - start && outcome.is_none() {
            let want = (end - start - done) / PAGE;
            let got = client
                .get(pid as u32, img + done, want, buf)
                .map_err(|source| Error::PageServer { source })?;
            let len = got * PAGE;
            let dst = start + done;
            let uffd = self.procs[i].uffd.as_fd();
            let copy = |d: u64, off: u64, l: u64| {
                uffd_sys::copy_from(uffd, d, &buf[off as usize..(off + l) as usize])
            };
            let (n, c, o) = copy_in(copy, dst, len).map_err(|e| {
                Error::io(format!("copying pages into process {pid} at {dst:#x}"))(e)
            })?;
            done += n;
            copied += c;
            outcome = o;
        }
        self.sum.pages_copied += copied / PAGE;
        match outcome {
            Some(Fill::Exited) => {
                self.exited(i);
                return Ok(Fill::Exited);
            }
            Some(Fill::Again) => {
                cut(&mut self.procs[i].pending, start, start + done);
                return Ok(Fill::Again);
            }
            _ => {}
        }
        cut(&mut self.procs[i].pending, start, start + done);
        Ok(Fill::Done)
    }
}

/// Copies `len` bytes to `dst` with `copy(dst, offset in the source,
/// len)`; when the area there changed (a page present already, or no area), page by page, those
/// pages settled without a copy. The bytes settled, the bytes copied, and
/// how it stopped early.
fn copy_in(
    copy: impl Fn(u64, u64, u64) -> std::io::Result<Filled>,
    dst: u64,
    len: u64,
) -> std::io::Result<(u64, u64, Option<Fill>)> {
    let (n, e) = match copy(dst, 0, len)? {
        Filled::All => return Ok((len, len, None)),
        Filled::Part(n, e) => (n, e),
    };
    match e {
        libc::EAGAIN => Ok((n, n, Some(Fill::Again))),
        libc::ESRCH | libc::ENOSPC => Ok((n, n, Some(Fill::Exited))),
        libc::EEXIST | libc::ENOENT => {
            let (mut done, mut copied) = (n, n);
            while done < len {
                match copy(dst + done, done, PAGE)? {
                    Filled::All => copied += PAGE,
                    Filled::Part(_, libc::EEXIST | libc::ENOENT) => {}
                    Filled::Part(_, libc::EAGAIN) => {
                        return Ok((done, copied, Some(Fill::Again)));
                    }
                    Filled::Part(_, libc::ESRCH | libc::ENOSPC) => {
                        return Ok((done, copied, Some(Fill::Exited)));
                    }
                    Filled::Part(_, e) => return Err(std::io::Error::from_raw_os_error(e)),
                }
                done += PAGE;
            }
            Ok((done, copied, None))
        }
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Takes `[start, end)` out of `spans` (sorted, apart).
fn cut(spans: &mut Vec<Span>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    let mut out = Vec::with_capacity(spans.len() + 1);
    for s in spans.drain(..) {
        if s.end <= start || end <= s.start {
            out.push(s);
            continue;
        }
        if s.start < start {
            out.push(Span {
                start: s.start,
                end: start,
                img: s.img,
            });
        }
        if end < s.end {
            out.push(Span {
                start: end,
                end: s.end,
                img: s.img + (end - s.start),
            });
        }
    }
    *spans = out;
}

/// Moves what of `spans` lies in `[from, from + len)` to `to` (mremap).
fn remap(spans: &mut Vec<Span>, from: u64, to: u64, len: u64) {
    let end = from.saturating_add(len);
    let mut moved = Vec::new();
    let mut kept = Vec::with_capacity(spans.len() + 2);
    for s in spans.drain(..) {
        let (a, b) = (s.start.max(from), s.end.min(end));
        if a >= b {
            kept.push(s);
            continue;
        }
        if s.start < a {
            kept.push(Span { end: a, ..s });
        }
        moved.push(Span {
            start: a - from + to,
            end: b - from + to,
            img: s.img + (a - s.start),
        });
        if b < s.end {
            kept.push(Span {
                start: b,
                end: s.end,
                img: s.img + (b - s.start),
            });
        }
    }
    kept.extend(moved);
    kept.sort_by_key(|s| s.start);
    *spans = kept;
}

/// Receives the userfaultfd and pidfd of process `pid` that follow its
/// pid on the restore's socket.
fn recv_fds(ctl: &UnixStream, pid: i32) -> Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let r = loop {
        match recvmsg(
            ctl,
            &mut [std::io::IoSliceMut::new(&mut byte)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::WAITALL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r,
        }
    }
    .map_err(|e| Error::io(format!("receiving the userfaultfd of process {pid}"))(e.into()))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(got) = m {
            fds.extend(got);
        }
    }
    let mut fds = fds.into_iter();
    match (r.bytes, fds.next(), fds.next()) {
        (1, Some(uffd), Some(pidfd)) => Ok((uffd, pidfd)),
        _ => Err(Error::lazy(format!(
            "the restore sent process {pid} without its userfaultfd and pidfd"
        ))),
    }
}

/// The daemon's guard: a child of its own session that holds every
/// userfaultfd and a pidfd of every process, and kills them all when the
/// daemon ends before it said every page is in.
struct Guard {
    sock: Option<OwnedFd>,
    pid: i32,
}

impl Guard {
    fn start() -> Result<Guard> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        if uffd_sys::threads() != 1 {
            return Err(Error::lazy(
                "the daemon forks its guard, which takes a process of one thread",
            ));
        }
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::host("making the guard's socket pair")(e.into()))?;
        match uffd_sys::fork().map_err(Error::host("forking the guard"))? {
            None => {
                drop(ours);
                guard_main(theirs)
            }
            Some(pid) => Ok(Guard {
                sock: Some(ours),
                pid,
            }),
        }
    }

    /// Gives the guard a copy of `uffd` and of `pidfd`.
    fn keep(
        &self,
        uffd: std::os::fd::BorrowedFd<'_>,
        pidfd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        let Some(sock) = &self.sock else {
            return Ok(());
        };
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        let both = [uffd, pidfd.unwrap_or(uffd)];
        let fds = match pidfd {
            Some(_) => &both[..],
            None => &both[..1],
        };
        cmsg.push(SendAncillaryMessage::ScmRights(fds));
        sendmsg(
            sock,
            &[std::io::IoSlice::new(b"K")],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        )
        .map_err(|e| Error::host("handing a userfaultfd to the guard")(e.into()))?;
        Ok(())
    }

    /// Every page is in: the guard lets go and ends.
    fn done(&mut self) {
        if let Some(sock) = self.sock.take() {
            let _ = rustix::net::send(&sock, b"D", rustix::net::SendFlags::NOSIGNAL);
            drop(sock);
            let _ = rustix::process::waitpid(
                rustix::process::Pid::from_raw(self.pid),
                rustix::process::WaitOptions::empty(),
            );
        }
    }
}

/// The pid `pidfd` refers to, from its fdinfo.
fn pid_of(pidfd: &OwnedFd) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
        .filter(|&p| p > 0)
}

/// The children of process `pid`, of all its threads.
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for t in tasks.flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        v.extend(
            kids.split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok()),
        );
    }
    v
}

/// Kills the processes of `pidfds` and every descendant they have: all
/// are stopped first (a stopped process forks no more), descendants
/// looked for until none is new, then all killed. Returns how many.
fn kill_all(mut pidfds: Vec<OwnedFd>) -> usize {
    use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
    let mut pids: Vec<i32> = pidfds.iter().filter_map(pid_of).collect();
    for p in &pidfds {
        let _ = pidfd_send_signal(p, Signal::STOP);
    }
    let mut i = 0;
    while i < pids.len() {
        for c in children(pids[i]) {
            if pids.contains(&c) {
                continue;
            }
            let Some(fd) = Pid::from_raw(c).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
            else {
                continue; // gone already
            };
            let _ = pidfd_send_signal(&fd, Signal::STOP);
            pids.push(c);
            pidfds.push(fd);
        }
        i += 1;
    }
    pidfds
        .iter()
        .filter(|p| pidfd_send_signal(p, Signal::KILL).is_ok())
        .count()
}

/// The guard's life (in the forked child).
fn guard_main(sock: OwnedFd) -> ! {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let _ = rustix::process::setsid();
    uffd_sys::ignore_group_signals();
    let mut kept: Vec<OwnedFd> = Vec::new();
    let mut pidfds: Vec<OwnedFd> = Vec::new();
    loop {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        let r = recvmsg(
            &sock,
            &mut [std::io::IoSliceMut::new(&mut byte)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        );
        match r {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(r) if r.bytes == 1 && byte[0] == b'K' => {
                let mut got: Vec<OwnedFd> = Vec::new();
                for m in cmsg.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = m {
                        got.extend(fds);
                    }
                }
                let mut got = got.into_iter();
                kept.extend(got.next());
                pidfds.extend(got);
            }
            Ok(r) if r.bytes == 1 && byte[0] == b'D' => uffd_sys::exit_now(0),
            _ => {
                // The daemon is gone before every page was in: every
                // restored process, and every process they forked since
                // (whose pid the daemon cannot learn from the fork's
                // event), is killed.
                let n = kill_all(pidfds);
                eprintln!(
                    "rcriu lazy-pages: the daemon ended before every lazy page was in: {n} restored process(es) killed"
                );
                drop(kept);
                uffd_sys::exit_now(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(start: u64, end: u64, img: u64) -> Span {
        Span { start, end, img }
    }

    #[test]
    fn cutting_spans() {
        let mut v = vec![sp(0x1000, 0x5000, 0x1000), sp(0x8000, 0x9000, 0x8000)];
        cut(&mut v, 0x2000, 0x3000);
        assert_eq!(
            v,
            vec![
                sp(0x1000, 0x2000, 0x1000),
                sp(0x3000, 0x5000, 0x3000),
                sp(0x8000, 0x9000, 0x8000)
            ]
        );
        cut(&mut v, 0x4000, 0x8800);
        assert_eq!(
            v,
            vec![
                sp(0x1000, 0x2000, 0x1000),
                sp(0x3000, 0x4000, 0x3000),
                sp(0x8800, 0x9000, 0x8800)
            ]
        );
    }

    #[test]
    fn remapped_spans_keep_their_image_addresses() {
        let mut v = vec![sp(0x1000, 0x5000, 0x1000)];
        remap(&mut v, 0x2000, 0x10000, 0x2000);
        assert_eq!(
            v,
            vec![
                sp(0x1000, 0x2000, 0x1000),
                sp(0x4000, 0x5000, 0x4000),
                sp(0x10000, 0x12000, 0x2000)
            ]
        );
    }
}
