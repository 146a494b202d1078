//! The dump of a process tree, step by step.
//!
//! 1. Seize the root and then every process under it, whole ([`tree`]):
//!    every thread of every process stopped; zombies recorded.
//! 2. Check the tree: sessions and groups whose leaders it holds, nothing
//!    shared between processes that rcriu cannot share again.
//! 3. For each process in turn (parents first): read its /proc state and
//!    refuse anything out of scope, naming it (nothing is written and
//!    nothing runs in the task before this passes); read what ptrace tells
//!    of every thread (registers, rseq, TLS, robust list, scheduling,
//!    pending signals, seccomp filters) and what remote syscalls tell
//!    (brk, membarrier); infect it: the parasite reports signal actions,
//!    timers, and for each thread its tid address, alternate stack, name
//!    and credentials, it hands over copies of the fds, then it writes the
//!    pages into the process's `pages-N.img`, then it is cured.
//!    What the processes share (open files, memfds, namespaces, cgroups,
//!    seccomp filters) goes into tables of the whole tree.
//! 4. Release the tree (`--leave-running`) and write the images, or write
//!    them and kill it. The restore's own check reads them back first.
//!    Any failure before the kill releases every process as it was and
//!    removes the images this run wrote.
//!
//! [`tree`]: crate::tree

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rcriu_compel::abi::IoVec;
use rcriu_compel::fault::{self, FaultPoint};
use rcriu_compel::{Parasite, Seized};
use rcriu_images::pages::PagesRoom;
use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::{CgroupEntry, Namespaces, NsKind, Pid, Task, TimensOffsets};
use rcriu_restore::unprivileged::Caller;

use crate::files::{FileInfo, Files, OpenFd};
use crate::ids::{NsIds, TaskIds};
use crate::inventory::Lsm;
use crate::mm::Area;
use crate::page_writers;
use crate::pages::Run;
use crate::remote;
use crate::stats::DumpStats;
use crate::tree::{Kind, Member, Tree};
use crate::{
    Error, Result, attrs, cgroup, core, files, fs, ids, inventory, memfd, mm, pages, pstree,
};
use crate::{ipcns, mnt, namespaces, net, seccomp, sys, threads, timens, timers, tmpfs};

/// The options of one dump.
#[derive(Debug, Clone)]
pub struct Options {
    pub pid: Pid,
    pub dir: PathBuf,
    pub leave_running: bool,
    pub shell_job: bool,
    /// criu's `orphan_pts_master`: one pty slave's master may be outside.
    pub orphan_pts_master: bool,
    /// criu's `--freeze-cgroup`: the freezer cgroup frozen while seizing.
    pub freeze_cgroup: Option<PathBuf>,
    /// The cgroups' directories and properties dumped (not with criu's
    /// `--manage-cgroups=ignore`).
    pub cgroup_dirs: bool,
    /// criu's `--cgroup-root`s: where the walk of each hierarchy starts.
    pub cgroup_roots: Vec<(Option<String>, String)>,
    /// criu's `--ghost-limit`, in bytes.
    pub ghost_limit: u64,
    /// criu's `--file-locks`.
    pub file_locks: bool,
    /// criu's `--link-remap`.
    pub link_remap: bool,
    /// What the dump of sockets is told.
    pub sockets: crate::sockets::Options,
    /// This run's id (CRIU's `criu_run_id`).
    pub run_id: String,
    /// criu's `--leave-stopped`.
    pub leave_stopped: bool,
    /// Where `stats-dump` goes, when not beside the images.
    pub stats_dir: Option<PathBuf>,
    /// criu's `--track-mem`: pages not written since the last pre-dump
    /// are kept in `parent`'s images.
    pub track_mem: bool,
    /// criu's `--prev-images-dir`, relative to `dir` unless absolute.
    pub parent: Option<PathBuf>,
    /// criu's `--auto-dedup`: the pages written here punched out of the
    /// parents' pages images ([`rcriu_images::dedup`]).
    pub auto_dedup: bool,
    /// `--encrypt`: the images' key.
    pub key: Option<rcriu_images::crypt::Key>,
    /// criu's `--page-server`: where the pages go instead of the images
    /// directory.
    pub page_server: Option<rcriu_page_server::Target>,
    /// criu's `dump --lazy-pages`: where the lazy pages are served from.
    pub lazy: Option<std::sync::Arc<crate::lazy::Serve>>,
    /// A container's namespaces: its root, empty ones, external mounts.
    pub namespaces: namespaces::Options,
    /// `--unprivileged`: the caller, whose own processes alone are dumped.
    pub caller: Option<Caller>,
    pub(crate) hook: Option<crate::Hooked>,
}

impl Options {
    /// Calls the caller's hook at `stage`.
    fn hook(&self, stage: crate::Stage) -> Result<()> {
        match &self.hook {
            Some(h) => (h.0)(stage).map_err(|why| Error::Hook {
                pid: self.pid,
                stage,
                why,
            }),
            None => Ok(()),
        }
    }
}

/// rcriu's own namespaces, cgroups and clocks: what the task's are
/// compared with.
#[derive(Debug)]
struct Host {
    ns: Namespaces,
    cgroups: Vec<CgroupEntry>,
    timens: TimensOffsets,
    lsm: Lsm,
}

impl Host {
    fn read(pid: Pid) -> Result<Host> {
        let me = std::process::id() as Pid;
        let mut t = Task::open(me).map_err(Error::proc(pid))?;
        Ok(Host {
            ns: t.namespaces().map_err(Error::proc(pid))?,
            cgroups: t.cgroups().map_err(Error::proc(pid))?,
            timens: timens::offsets(me).map_err(Error::proc(pid))?,
            lsm: Lsm::host(),
        })
    }
}

/// The images of a dump, created as they are written, so that a failed
/// dump removes what it wrote.
struct Output {
    pid: Pid,
    path: PathBuf,
    key: Option<rcriu_images::crypt::Key>,
    dir: Option<ImageDir>,
    written: Vec<PathBuf>,
    /// Room for the pages image of each process of the tree, reserved
    /// before the freeze.
    rooms: BTreeMap<Pid, PagesRoom>,
    /// The images that keep pages children share with their parents
    /// (`parent/`, [`pages::Kept`]), once made.
    kept: Option<pages::Kept>,
    /// The page server the pages go to (`--page-server`), connected.
    page_server: Option<rcriu_page_server::Client>,
    /// A lazy dump's lazy pages (`--lazy-pages`), held to be served.
    lazy: Option<crate::lazy::Store>,
    /// Pages images whose room left over is not given back yet: freeing
    /// tmpfs pages costs about as much as allocating them, so it is done
    /// once the tree runs again ([`Output::trim_pages`]).
    untrimmed: Vec<rcriu_images::pages::PagesWriter>,
}

impl Output {
    fn new(pid: Pid, path: &Path, key: Option<rcriu_images::crypt::Key>) -> Output {
        Output {
            pid,
            path: path.to_owned(),
            key,
            dir: None,
            written: Vec::new(),
            rooms: BTreeMap::new(),
            kept: None,
            page_server: None,
            lazy: None,
            untrimmed: Vec::new(),
        }
    }

    /// Gives back the room left over in the pages images written.
    fn trim_pages(&mut self) -> Result<()> {
        let t = Instant::now();
        let n = self.untrimmed.len();
        for mut w in self.untrimmed.drain(..) {
            w.trim().map_err(Error::image(self.pid))?;
        }
        log::debug!("{n} pages image(s) trimmed in {:?}", t.elapsed());
        Ok(())
    }

    fn dir(&mut self) -> Result<ImageDir> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let d = match self.key.take() {
            Some(k) => ImageDir::create_encrypted(&self.path, k),
            None => ImageDir::create(&self.path),
        }
        .map_err(Error::image(self.pid))?;
        self.dir = Some(d.clone());
        Ok(d)
    }

    /// Reserves room for the pages of `root` and of each process under
    /// it now ([`page_writers::reserve`]); a process that comes or goes
    /// before the freeze is written without, or leaves its room unused.
    fn reserve_pages(&mut self, root: Pid, keep_once: bool, incremental: bool) {
        for pid in rcriu_compel::descendants(root) {
            // A child's pages shared with its parent are not written.
            let own = keep_once && pid != root;
            // The images directory is made only for room (a refused dump
            // leaves none); an incremental dump's has its parent link.
            let bytes = if incremental {
                self.dir()
                    .ok()
                    .and_then(|d| page_writers::room_after_round(pid, &d))
            } else {
                page_writers::room_wanted(pid, own)
            };
            if let Some(bytes) = bytes
                && let Ok(dir) = self.dir()
                && let Some(room) = page_writers::reserve(pid, &dir, bytes)
            {
                self.rooms.insert(pid, room);
            }
        }
    }

    fn created(&mut self, file: ImageFile) -> Result<ImageDir> {
        let d = self.dir()?;
        self.written.push(d.file_path(file));
        Ok(d)
    }

    fn write_one<M: prost::Message + prost::Name>(&mut self, file: ImageFile, m: &M) -> Result<()> {
        let pid = self.pid;
        self.created(file)?
            .write_one(file, m)
            .map_err(Error::image(pid))?;
        fault::image(&file.name()).map_err(Error::compel(pid))
    }

    fn write_all<M: prost::Message + prost::Name>(
        &mut self,
        file: ImageFile,
        m: &[M],
    ) -> Result<()> {
        let pid = self.pid;
        self.created(file)?
            .write_all(file, m)
            .map_err(Error::image(pid))?;
        fault::image(&file.name()).map_err(Error::compel(pid))
    }

    /// Checks that the images written would restore, then, for an
    /// encrypted dump, encrypts them into the directory.
    fn check_and_seal(&mut self) -> Result<()> {
        let pid = self.pid;
        let d = self.dir()?;
        let t = Instant::now();
        // The pagemaps are the page server's.
        let pages_here = self.page_server.is_none();
        rcriu_restore::check_images_with(d.clone(), pages_here)
            .map_err(|source| Error::NotRestorable { pid, source })?;
        log::debug!("images of {pid} checked in {:?}", t.elapsed());
        self.seal()
    }

    /// An encrypted dump's files written so far, encrypted.
    fn seal(&mut self) -> Result<()> {
        let d = self.dir()?;
        if d.is_encrypted() {
            let t = Instant::now();
            let n = d.seal().map_err(Error::image(self.pid))?.len();
            log::info!("{n} images encrypted in {:?}", t.elapsed());
        }
        Ok(())
    }

    /// Ends the session with the page server, if any: it answers once it
    /// has written every page.
    fn close_page_server(&mut self) -> Result<()> {
        match self.page_server.take() {
            Some(c) => c.close().map_err(|source| Error::PageServer {
                pid: self.pid,
                source,
            }),
            None => Ok(()),
        }
    }

    /// Writes the manifest: a hash of every file this run wrote.
    fn write_manifest(&mut self) -> Result<()> {
        let pid = self.pid;
        self.seal()?;
        let d = self.dir()?;
        let names: Vec<String> = self
            .written
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
            .collect();
        let t = Instant::now();
        let m = rcriu_images::manifest::Manifest::build(&d, names.iter().map(String::as_str))
            .map(|m| match d.dump_id() {
                Some(id) => m.encrypted(id),
                None => m,
            })
            .map_err(Error::image(pid))?;
        m.write(&d).map_err(Error::image(pid))?;
        log::info!(
            "manifest of {} files written in {:?}",
            names.len(),
            t.elapsed()
        );
        self.written
            .push(d.path().join(rcriu_images::manifest::MANIFEST));
        if let Some(k) = &self.kept {
            k.write_manifest(&m).map_err(Error::image(pid))?;
        }
        Ok(())
    }

    /// Removes every image this run wrote.
    fn discard(&mut self) {
        self.untrimmed.clear();
        if let Some(k) = self.kept.take() {
            k.discard();
        }
        for p in self.written.drain(..) {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("cannot remove {}: {e}", p.display());
            }
        }
    }
}

/// One process's images, gathered while it was frozen.
struct Proc {
    pid: Pid,
    ids: TaskIds,
    pstree: pb::PstreeEntry,
    /// Each thread's core, the leader's first.
    cores: Vec<(u32, pb::CoreEntry)>,
    mm: pb::MmEntry,
    runs: Vec<Run>,
    /// The number of the process's pages image.
    pages_id: u32,
    /// The process whose pages image holds those of its pages kept in
    /// `parent/` (its parent's, shared since fork).
    pages_from: Option<Pid>,
    fdinfo: Vec<pb::FdinfoEntry>,
    fs: pb::FsEntry,
    /// The id of the task's time namespace when it is not rcriu's, and the
    /// offsets of the task's time namespace.
    timens_id: u32,
    timens: TimensOffsets,
    /// Its memory tracking since a pre-dump, ended after the freeze.
    tracking: Option<crate::track::Final>,
    /// rcriu's copies of its fds, held until it is killed: its exit then
    /// closes none of its files for the last time, rcriu does, on two
    /// threads ([`files::close_all`]).
    copies: Vec<File>,
}

/// Closes rcriu's copies of the processes' fds ([`Proc::copies`]).
fn close_copies(c: &mut Collected) {
    files::close_all(
        c.procs
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.copies))
            .collect(),
    );
}

/// Ends the memory tracking of the processes (`alive`: they run on).
fn end_tracking(c: &mut Collected, alive: bool) {
    for p in &mut c.procs {
        if let Some(t) = p.tracking.take() {
            t.end(alive);
        }
    }
}

/// A zombie's images: its pstree entry and a core with its exit status.
struct Zombie {
    pstree: pb::PstreeEntry,
    core: pb::CoreEntry,
}

/// What the processes of a tree share, filled as each is collected.
struct Shared {
    files: Files,
    memfds: memfd::Memfds,
    ns_ids: NsIds,
    cgroups: cgroup::Sets,
    seccomp: pb::SeccompEntry,
    /// The next number of the mm, fd table, fs and sighand counters
    /// (rcriu's is 1).
    next_kobj: u32,
    /// The threads of the tree's processes but their leaders, with their
    /// process.
    threads: std::collections::BTreeMap<Pid, Pid>,
    /// The parent images whose pages are not dumped again (`--track-mem`
    /// with `--prev-images-dir`).
    parent: Option<PathBuf>,
    /// Pages a child shares with its parent since fork are kept once
    /// (`pages::Kept`): the frames each process with children wrote, by
    /// pid, when they are.
    frames: Option<BTreeMap<Pid, pages::Frames>>,
    /// The processes of the tree that have children in it.
    parents: BTreeSet<Pid>,
    /// `--unprivileged`: the caller whose credentials every thread must
    /// have.
    caller: Option<Caller>,
    /// `/proc/locks` as the dump began, and once the tree was frozen.
    locks_before: files::Locks,
    locks_frozen: files::Locks,
}

/// Everything the images are made of, gathered while the tree was
/// frozen.
struct Collected {
    root_ids: TaskIds,
    procs: Vec<Proc>,
    zombies: Vec<Zombie>,
    seccomp: pb::SeccompEntry,
    memfd_inodes: Vec<pb::MemfdInodeEntry>,
    files: Vec<pb::FileEntry>,
    /// Remaps, pipe and FIFO data, terminals.
    files_extra: files::Extra,
    /// rcriu's cgroup set, and cgroup.img.
    root_set: u32,
    cgroup_image: Option<pb::CgroupEntry>,
    /// The namespaces of the tree's own.
    container: Option<namespaces::Container>,
}

/// Threads stopped inside an rseq critical section lose their section as
/// the parasite runs in them (the kernel clears rseq_cs): if they run on
/// (--leave-running, or a failed dump), each resumes at its abort handler,
/// as the images say and as CRIU does. Done while they are still seized.
fn to_abort_handlers(moves: &[(Pid, u64)]) {
    for &(tid, ip) in moves {
        let moved = rcriu_compel::sys::get_regs(tid).and_then(|mut regs| {
            regs.ip = ip;
            rcriu_compel::sys::set_regs(tid, &regs)
        });
        if let Err(e) = moved {
            log::error!("cannot move thread {tid} to its rseq abort handler: {e}");
        }
    }
}

/// Runs a dump.
pub fn run(o: &Options) -> Result<DumpStats> {
    let pid = o.pid;
    o.hook(crate::Stage::PreDump)?;
    let begin = Instant::now();
    // Read ahead: its read waits for an RCU grace period.
    let locks_before = files::Locks::start();
    let host = Host::read(pid)?;
    let mut stats = DumpStats::default();
    let mut out = Output::new(pid, &o.dir, o.key.clone());
    let run_id = o.run_id.as_str();
    if let Some(p) = &o.parent {
        out.dir()?.link_parent(p).map_err(Error::image(pid))?;
    }
    fault::set_target(pid);
    // Pages through a page server: connected before anything is seized.
    if let Some(t) = &o.page_server {
        refuse_with_page_server(o)?;
        let c = rcriu_page_server::Client::connect_to(t)
            .map_err(|source| Error::PageServer { pid, source })?;
        out.page_server = Some(c);
    }
    if o.lazy.is_some() {
        refuse_lazy(o)?;
        out.lazy = Some(crate::lazy::Store::default());
    }
    let remote = o.page_server.is_some();
    let lazy = o.lazy.is_some();
    let keep_once = !remote
        && !lazy
        && o.parent.is_none()
        && !o.track_mem
        && o.key.is_none()
        && pages::Kept::possible(&o.dir);
    // An incremental dump writes few pages: room for all would cost more
    // (its reservation, then its release, frozen) than it saves, so it
    // gets room for about what the last round wrote; through a page
    // server, none is written here.
    let incremental = o.track_mem && o.parent.is_some();
    if !remote && !lazy {
        out.reserve_pages(pid, keep_once, incremental);
    }
    // Another's process is never seized (and is checked again frozen).
    if let Some(me) = &o.caller {
        for p in std::iter::once(pid).chain(rcriu_compel::descendants(pid)) {
            me.admit_process(p)
                .map_err(|source| Error::NotCallers { pid: p, source })?;
        }
    }
    let start = Instant::now();
    let (root, frozen, freezer) = cgroup::seize(pid, o.freeze_cgroup.as_deref())?;
    let tree = Tree::seize(root, frozen)?;
    let frozen = Instant::now();
    stats.freezing_time = frozen - start;
    log::info!(
        "tree of {pid} seized in {:?}: {} process(es)",
        stats.freezing_time,
        tree.members.len()
    );

    let mut rseq_moves = Vec::new();
    let mut c = match collect_tree(
        &tree,
        &host,
        o,
        (keep_once, locks_before),
        freezer,
        &mut out,
        &mut stats,
        &mut rseq_moves,
    ) {
        Ok(c) => c,
        Err(e) => {
            // Released as it was, then the images go.
            to_abort_handlers(&rseq_moves);
            drop(tree);
            out.discard();
            return Err(e);
        }
    };

    if o.leave_running || o.leave_stopped {
        to_abort_handlers(&rseq_moves);
        c.files_extra.release_sockets();
        c.files_extra.put_back_tty_data();
        if o.leave_stopped {
            tree.stop_on_release(libc::SIGSTOP);
        }
        close_copies(&mut c);
        let released = tree.release();
        stats.frozen_time = frozen.elapsed();
        end_tracking(&mut c, true);
        let written = released.and_then(|()| {
            out.trim_pages()?;
            write_images(&mut out, o, &host, &c, run_id)?;
            out.check_and_seal()?;
            out.close_page_server()
        });
        if let Err(e) = written {
            out.discard();
            return Err(e);
        }
        let hooked = o.hook(crate::Stage::PostDump);
        // The process runs on: its link remaps go, as CRIU removes them.
        c.files_extra.links.remove_all();
        hooked?;
    } else {
        let written = out
            .trim_pages()
            .and_then(|()| write_images(&mut out, o, &host, &c, run_id))
            .and_then(|()| out.check_and_seal())
            .and_then(|()| out.close_page_server());
        if let Err(e) = written {
            to_abort_handlers(&rseq_moves);
            c.files_extra.release_sockets();
            c.files_extra.put_back_tty_data();
            close_copies(&mut c);
            drop(tree);
            out.discard();
            return Err(e);
        }
        // A refusal now leaves the tree running and the images whole.
        if let Err(e) = o.hook(crate::Stage::PostDump) {
            to_abort_handlers(&rseq_moves);
            c.files_extra.release_sockets();
            c.files_extra.put_back_tty_data();
            close_copies(&mut c);
            drop(tree);
            return Err(e);
        }
        let t_kill = Instant::now();
        let killed = tree.kill();
        let t_closing = Instant::now();
        close_copies(&mut c);
        log::debug!(
            "tree of {pid} killed in {:?}, rcriu's copies of its fds closed in {:?}",
            t_closing - t_kill,
            t_closing.elapsed()
        );
        killed?;
        c.files_extra.keep_sockets_locked();
        if let Some(l) = c.container.as_mut().and_then(|ct| ct.net_lock.as_mut()) {
            l.keep();
        }
        c.files_extra.tty_data.keep();
        // The process is gone: its link remaps stay for the restore.
        c.files_extra.links.keep();
        // Frozen until killed, as CRIU counts it: the wait for its end
        // (its memory freed by the kernel) is not time it was frozen.
        stats.frozen_time = t_kill - frozen;
        end_tracking(&mut c, false);
    }
    // As CRIU, the statistics come last: a dump without them is complete.
    // In the images directory (the work directory is that one unless
    // told otherwise) it is one of the images, in the manifest.
    let elsewhere = o.stats_dir.as_ref().filter(|d| !same_dir(d, &o.dir));
    let written = match elsewhere {
        Some(d) => ImageDir::create(d)
            .and_then(|d| d.write_one(ImageFile::StatsDump, &stats.entry()))
            .map_err(Error::image(pid)),
        None => out.write_one(ImageFile::StatsDump, &stats.entry()),
    };
    if let Err(e) = written {
        log::warn!("{e}");
        out.written
            .retain(|p| !p.ends_with(ImageFile::StatsDump.name()));
    }
    // Then the manifest of every file written, after the freeze. The
    // images are complete without it (as CRIU's are): a manifest that
    // cannot be written is reported and left out, never a reason to lose
    // a dump whose process may be gone. A dump whose pages went to a
    // page server has none, as CRIU's: its pagemaps, written by the
    // server, would not be in it, and a restore reads no file a manifest
    // does not name.
    if remote {
        log::info!("the pages went to a page server: no manifest");
    } else if let Err(e) = out.write_manifest() {
        log::error!("the images of {pid} are left without a manifest: {e}");
        if let Ok(d) = out.dir() {
            let _ = std::fs::remove_file(d.path().join(rcriu_images::manifest::MANIFEST));
        }
    }
    // criu's --auto-dedup: the parents give up the pages written here,
    // once these images are whole (punched before, a failed dump would
    // lose them).
    if o.auto_dedup && o.parent.is_some() && !remote {
        rcriu_images::dedup::dedup(&o.dir).map_err(|e| Error::AutoDedup { pid, source: e })?;
    }
    stats.total_time = begin.elapsed();
    log::info!(
        "dumped the tree of {pid}: frozen {:?}, {} pages",
        stats.frozen_time,
        stats.pages_written
    );
    if let (Some(serve), Some(store)) = (&o.lazy, out.lazy.take()) {
        serve.run(pid, &store)?;
    }
    Ok(stats)
}

/// Whether `a` and `b` name the same directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => a == b,
    }
}

/// Whether rcriu's restore takes the images just written (before the
/// process is killed): what it would refuse is refused here.
fn write_images(
    out: &mut Output,
    o: &Options,
    host: &Host,
    c: &Collected,
    run_id: &str,
) -> Result<()> {
    let pid = o.pid;
    let mut inv = inventory::entry(c.root_ids.entry, c.root_set, host.lsm);
    inventory::sockets(&mut inv, &o.sockets, run_id);
    out.write_one(ImageFile::Inventory, &inv)?;
    if let Some(cg) = &c.cgroup_image {
        out.write_one(ImageFile::Cgroup, cg)?;
    }
    let mut pstree: Vec<pb::PstreeEntry> = c.procs.iter().map(|p| p.pstree.clone()).collect();
    pstree.extend(c.zombies.iter().map(|z| z.pstree.clone()));
    // In the tree's order (the processes, then zombies, each where it
    // belongs: after its parent's other children).
    let order: Vec<u32> = c.order();
    pstree.sort_by_key(|e| order.iter().position(|&p| p == e.pid));
    out.write_all(ImageFile::Pstree, &pstree)?;
    for p in &c.procs {
        for (tid, core) in &p.cores {
            out.write_one(ImageFile::Core((*tid).into()), core)?;
        }
    }
    for z in &c.zombies {
        out.write_one(ImageFile::Core(z.pstree.pid.into()), &z.core)?;
    }
    for p in &c.procs {
        let upid = p.pid as u32;
        out.write_one(ImageFile::Ids(upid.into()), &p.ids.entry)?;
    }
    fault::point(FaultPoint::MidWrite).map_err(Error::compel(pid))?;
    for p in &c.procs {
        let upid = p.pid as u32;
        out.write_one(ImageFile::Mm(upid.into()), &p.mm)?;
        // Through a page server, the pagemap is the server's to write.
        if out.page_server.is_some() {
            out.write_one(ImageFile::Fs(upid.into()), &p.fs)?;
            continue;
        }
        let dir = out.created(ImageFile::Pagemap(upid.into()))?;
        let mut pm = dir
            .create_pagemap(upid, p.pages_id)
            .map_err(Error::image(pid))?;
        for r in &p.runs {
            pm.add(r.vaddr, r.nr_pages, r.flags)
                .map_err(Error::image(pid))?;
        }
        pm.finish().map_err(Error::image(pid))?;
        fault::image(&ImageFile::Pagemap(upid.into()).name()).map_err(Error::compel(pid))?;
        out.write_one(ImageFile::Fs(upid.into()), &p.fs)?;
    }
    for p in &c.procs {
        let Some(from) = p.pages_from else { continue };
        let Some(f) = c.procs.iter().find(|q| q.pid == from) else {
            return Err(Error::Inconsistent {
                pid: p.pid,
                what: format!("its pages are kept with those of {from}, which is not dumped"),
            });
        };
        if out.kept.is_none() {
            let d = out.dir()?;
            out.kept = Some(pages::Kept::make(&d).map_err(Error::image(pid))?);
        }
        let d = out.dir()?;
        if let Some(k) = &mut out.kept {
            k.add(&d, p.pid as u32, f.pages_id, &f.runs)
                .map_err(Error::image(pid))?;
        }
    }
    out.write_all(ImageFile::Files, &c.files)?;
    // One fdinfo image per fd table (shared tables once).
    let mut tables = BTreeSet::new();
    for p in &c.procs {
        if tables.insert(p.ids.entry.files_id) {
            out.write_all(ImageFile::Fdinfo(p.ids.entry.files_id.into()), &p.fdinfo)?;
        }
    }
    if !c.memfd_inodes.is_empty() {
        out.write_all(ImageFile::Memfd, &c.memfd_inodes)?;
    }
    c.files_extra.write(pid, &mut |f| out.created(f))?;
    out.write_one(ImageFile::Seccomp, &c.seccomp)?;
    // One time namespace for the tree (rcriu's, or the one the processes
    // share).
    if let Some(p) = c.procs.first() {
        let t = timens::entry(&host.timens, &p.timens);
        out.write_one(ImageFile::Timens(p.timens_id.into()), &t)?;
    }
    if let (Some(ct), Some(p)) = (&c.container, c.procs.first()) {
        write_namespaces(out, o.pid, ct, &p.ids.entry)?;
    }
    fault::check_abort().map_err(Error::compel(pid))
}

/// The images of the tree's own namespaces, named by their ids.
fn write_namespaces(
    out: &mut Output,
    pid: Pid,
    ct: &namespaces::Container,
    ids: &pb::TaskKobjIdsEntry,
) -> Result<()> {
    if let (Some(u), Some(id)) = (&ct.user, ids.user_ns_id) {
        out.write_one(ImageFile::Userns(id.into()), &u.entry)?;
    }
    if let (Some(uts), Some(id)) = (&ct.uts, ids.uts_ns_id) {
        out.write_one(ImageFile::Utsns(id.into()), uts)?;
    }
    if let (Some(ipc), Some(id)) = (&ct.ipc, ids.ipc_ns_id) {
        write_ipc(out, pid, ipc, id)?;
    }
    if let (Some(key), Some(id)) = (&ct.net_ext, ids.net_ns_id) {
        let e = pb::NetnsEntry {
            ext_key: Some(key.clone().into_bytes()),
            ..Default::default()
        };
        out.write_one(ImageFile::Netns(id.into()), &e)?;
    }
    if let (Some(n), Some(id)) = (&ct.net, ids.net_ns_id) {
        write_net(out, pid, n, id)?;
    }
    if let (Some(tree), Some(id)) = (&ct.mnt, ids.mnt_ns_id) {
        out.write_all(ImageFile::Mountpoints(id.into()), &tree.entries)?;
        // One archive per tmpfs, side by side; each waited for, even when
        // another failed.
        let mut tars = Vec::new();
        let mut first = Ok(());
        for (dev, mp) in &tree.tmpfs {
            let file = mnt::tmpfs_image(*dev);
            let started = out
                .created(file)
                .and_then(|d| d.create_raw(file).map_err(Error::image(pid)))
                .and_then(|f| match ct.user.as_ref() {
                    Some(u) => tmpfs::start_in_userns(pid, mp, f, u.open(pid)?),
                    None => tmpfs::start(pid, mp, f, &file.name()),
                });
            match started {
                Ok(t) => tars.push(t),
                Err(e) => {
                    first = Err(e);
                    break;
                }
            }
        }
        for t in tars {
            let r = t.wait();
            if first.is_ok() {
                first = r;
            }
        }
        first?;
    }
    Ok(())
}

/// The images of a network namespace dumped whole ([`net`]).
fn write_net(out: &mut Output, pid: Pid, n: &net::NetDump, id: u32) -> Result<()> {
    out.write_one(ImageFile::Netns(id.into()), &n.netns)?;
    out.write_all(ImageFile::Netdev(id.into()), &n.netdev(id))?;
    for (file, bytes) in &n.raw {
        let file = file(id.into());
        let mut f = out
            .created(file)?
            .create_raw(file)
            .map_err(Error::image(pid))?;
        std::io::Write::write_all(&mut f, bytes)
            .map_err(Error::sys("writing a network image", pid))?;
        fault::image(&file.name()).map_err(Error::compel(pid))?;
    }
    Ok(())
}

/// `ipcns-var`, and the SysV objects of the container's IPC namespace
/// (`ipcns-shm`, `-sem`, `-msg`, each only when it has some); the
/// segments' memory is written already.
fn write_ipc(out: &mut Output, pid: Pid, ipc: &ipcns::IpcNs, id: u32) -> Result<()> {
    out.write_one(ImageFile::IpcVar(id.into()), &ipc.var)?;
    if !ipc.shm.is_empty() {
        let shm: Vec<pb::IpcShmEntry> = ipc.shm.iter().map(|s| s.entry).collect();
        out.write_all(ImageFile::IpcShm(id.into()), &shm)?;
    }
    if !ipc.sem.is_empty() {
        let file = ImageFile::IpcSem(id.into());
        let mut w = out.created(file)?.writer(file).map_err(Error::image(pid))?;
        for s in &ipc.sem {
            w.write(&s.entry).map_err(Error::image(pid))?;
            w.write_payload(&ipcns::IpcNs::sem_payload(s))
                .map_err(Error::image(pid))?;
        }
        w.finish().map_err(Error::image(pid))?;
        fault::image(&file.name()).map_err(Error::compel(pid))?;
    }
    if !ipc.msg.is_empty() {
        let file = ImageFile::IpcMsg(id.into());
        let mut w = out.created(file)?.writer(file).map_err(Error::image(pid))?;
        for q in &ipc.msg {
            w.write(&q.entry).map_err(Error::image(pid))?;
            for (m, text) in &q.messages {
                w.write(m).map_err(Error::image(pid))?;
                w.write_payload(&ipcns::IpcNs::msg_payload(text))
                    .map_err(Error::image(pid))?;
            }
        }
        w.finish().map_err(Error::image(pid))?;
        fault::image(&file.name()).map_err(Error::compel(pid))?;
    }
    Ok(())
}

impl Collected {
    /// The pids of the tree in pstree's order: parents first, depth first,
    /// children by pid.
    fn order(&self) -> Vec<u32> {
        let all: Vec<(u32, u32)> = self
            .procs
            .iter()
            .map(|p| (p.pstree.pid, p.pstree.ppid))
            .chain(self.zombies.iter().map(|z| (z.pstree.pid, z.pstree.ppid)))
            .collect();
        let mut out = Vec::with_capacity(all.len());
        fn visit(pid: u32, all: &[(u32, u32)], out: &mut Vec<u32>) {
            out.push(pid);
            let mut kids: Vec<u32> = all
                .iter()
                .filter(|(p, pp)| *pp == pid && *p != pid)
                .map(|(p, _)| *p)
                .collect();
            kids.sort_unstable();
            for k in kids {
                visit(k, all, out);
            }
        }
        if let Some(root) = self.procs.first() {
            visit(root.pstree.pid, &all, &mut out);
        }
        out
    }
}

/// Checks what the processes of the tree share and how its sessions and
/// groups hang together, refusing (by name) what rcriu cannot restore:
/// processes sharing memory, fd tables, fs information or signal handlers
/// (CLONE_VM, CLONE_FILES, CLONE_FS, CLONE_SIGHAND without CLONE_THREAD);
/// a session or group whose leader is not in the tree (but the root's own,
/// a shell job's); a session leader that is not an ancestor of its
/// members.
/// Whether a process (or thread) `pid` exists.
fn exists(pid: Pid) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// What processes of the tree share with their parent, and are restored
/// sharing (CLONE_FILES, CLONE_FS).
#[derive(Debug, Default)]
struct Sharing {
    /// Processes whose fd table is their parent's.
    files: BTreeSet<Pid>,
    /// Processes whose cwd, root and umask are their parent's.
    fs: BTreeSet<Pid>,
}

/// The processes of `pids` grouped by what they hold of `what`, as the
/// kernel orders it (`kcmp`, as CRIU's trees of ids): n log n
/// comparisons, each group in `pids`' order.
fn kcmp_groups(pids: &[Pid], what: sys::Shared) -> Result<Vec<Vec<Pid>>> {
    let mut groups: Vec<Vec<Pid>> = Vec::new();
    // One process of each group, in the kernel's order.
    let mut reps: Vec<(Pid, usize)> = Vec::new();
    let cmp = |a: Pid, b: Pid| {
        sys::order(a, b, what).map_err(Error::sys("comparing processes (kcmp)", a))
    };
    for &p in pids {
        let (mut lo, mut hi) = (0, reps.len());
        let mut found = None;
        while lo < hi {
            let mid = (lo + hi) / 2;
            match cmp(p, reps[mid].0)? {
                Some(std::cmp::Ordering::Equal) => {
                    found = Some(reps[mid].1);
                    break;
                }
                Some(std::cmp::Ordering::Less) => hi = mid,
                Some(std::cmp::Ordering::Greater) => lo = mid + 1,
                // No order: compared with every group.
                None => {
                    found = Some(usize::MAX);
                    break;
                }
            }
        }
        match found {
            Some(usize::MAX) => {
                let mut at = None;
                for (i, g) in groups.iter().enumerate() {
                    if sys::shares(p, g[0], what)
                        .map_err(Error::sys("comparing processes (kcmp)", p))?
                    {
                        at = Some(i);
                        break;
                    }
                }
                match at {
                    Some(i) => groups[i].push(p),
                    None => groups.push(vec![p]),
                }
            }
            Some(i) => groups[i].push(p),
            None => {
                groups.push(vec![p]);
                reps.insert(lo, (p, groups.len() - 1));
            }
        }
    }
    Ok(groups)
}

/// Checks what the processes of the tree share and how their sessions and
/// groups stand; returns what they share with their parents.
fn check_tree(tree: &Tree) -> Result<Sharing> {
    let alive: Vec<&Member> = tree
        .members
        .iter()
        .filter(|m| m.seized().is_some())
        .collect();
    let pids: Vec<Pid> = alive.iter().map(|m| m.pid).collect();
    let parent_of = |pid: Pid| alive.iter().find(|m| m.pid == pid).map(|m| m.ppid);
    let mut sharing = Sharing::default();
    for (what, kind) in [
        ("its memory (CLONE_VM)", sys::Shared::Vm),
        ("its fd table (CLONE_FILES)", sys::Shared::Files),
        ("its cwd, root and umask (CLONE_FS)", sys::Shared::Fs),
        ("its signal handlers (CLONE_SIGHAND)", sys::Shared::Sighand),
    ] {
        for g in kcmp_groups(&pids, kind)?
            .into_iter()
            .filter(|g| g.len() > 1)
        {
            let restorable = matches!(kind, sys::Shared::Files | sys::Shared::Fs);
            // The one that holds it first: its parent does not.
            let firsts: Vec<Pid> = g
                .iter()
                .copied()
                .filter(|&p| parent_of(p).is_none_or(|pp| !g.contains(&pp)))
                .collect();
            if !restorable || firsts.len() != 1 {
                let (a, b) = (g[0], g[1]);
                let how = if restorable {
                    ", not through their parents"
                } else {
                    ""
                };
                return Err(Error::unsupported(
                    b,
                    format!("{what} shared with process {a}{how}"),
                ));
            }
            let set = match kind {
                sys::Shared::Files => &mut sharing.files,
                _ => &mut sharing.fs,
            };
            set.extend(g.iter().copied().filter(|p| *p != firsts[0]));
        }
    }
    let root = tree.root();
    let member = |pid: Pid| tree.members.iter().find(|m| m.pid == pid);
    let is_ancestor = |anc: Pid, of: Pid| {
        let mut cur = Some(of);
        while let Some(p) = cur {
            if p == anc {
                return true;
            }
            cur = member(p).map(|m| m.ppid).filter(|&pp| pp != 0);
        }
        false
    };
    for m in &tree.members {
        if m.pid == root.pid {
            continue;
        }
        // A session whose leader is gone is made again by a helper, which
        // forks the members the root holds; the others are born in it.
        let leader_gone = member(m.sid).is_none() && !exists(m.sid);
        let made_again = leader_gone
            && ((m.ppid == root.pid && m.seized().is_some())
                || member(m.ppid).is_some_and(|p| p.pid != root.pid && p.sid == m.sid));
        if m.sid != root.sid
            && (member(m.sid).is_none() || !is_ancestor(m.sid, m.pid))
            && !made_again
        {
            return Err(Error::unsupported(
                m.pid,
                format!(
                    "session {} whose leader is not in the dump above it (nor gone, with its members the root's children)",
                    m.sid
                ),
            ));
        }
        if m.pgid != root.pgid && m.pgid != m.sid {
            match member(m.pgid) {
                Some(l) if l.sid == m.sid => {}
                // Its leader is gone: a helper makes the group again (a
                // zombie joins it before it ends).
                None if !exists(m.pgid) => {}
                _ => {
                    return Err(Error::unsupported(
                        m.pid,
                        format!(
                            "process group {} whose leader is another process, not in the dump",
                            m.pgid
                        ),
                    ));
                }
            }
        }
        // A zombie is made again by its parent and ends at once: in its
        // parent's group, or leading its own.
        if m.seized().is_none()
            && m.pgid != m.pid
            && member(m.ppid).is_some_and(|p| p.pgid != m.pgid)
            && (member(m.pgid).is_some() || exists(m.pgid))
        {
            return Err(Error::unsupported(
                m.pid,
                format!(
                    "a zombie in process group {}, not its parent's nor its own",
                    m.pgid
                ),
            ));
        }
    }
    Ok(sharing)
}

/// Collects every process of the tree, parents first.
#[allow(clippy::too_many_arguments)]
fn collect_tree(
    tree: &Tree,
    host: &Host,
    o: &Options,
    (keep_once, locks_before): (bool, files::Locks),
    freezer: Option<cgroup::FreezerOrigin>,
    out: &mut Output,
    stats: &mut DumpStats,
    rseq_moves: &mut Vec<(Pid, u64)>,
) -> Result<Collected> {
    let pid = o.pid;
    let root = tree.root();
    if root.sid != pid && !o.shell_job {
        return Err(Error::NotSessionLeader { pid, sid: root.sid });
    }
    let sharing = check_tree(tree)?;
    let ns_opts = namespaces::Options {
        network_lock: o.sockets.network_lock,
        run_id: o.run_id.clone(),
        ..o.namespaces.clone()
    };
    let container = namespaces::collect(tree, &host.ns, &ns_opts)?;
    if container.is_some() && o.key.is_some() {
        // A network namespace's images (routes, rules, firewall) are fed
        // to ip, iptables-restore and nft at the restore, straight from
        // their files.
        return Err(Error::unsupported(
            pid,
            "namespaces of its own in an encrypted dump (--encrypt)",
        ));
    }
    if host.lsm != Lsm::None {
        return Err(Error::unsupported(
            pid,
            format!("a security label ({:?} is active)", host.lsm),
        ));
    }
    let mut ns_ids = NsIds::new();
    let root_ids = ns_ids.task(1, &host.ns);
    let mut sh = Shared {
        files: Files::new(
            pid,
            files::Options {
                ghost_limit: o.ghost_limit,
                shell_job: o.shell_job,
                orphan_pts_master: o.orphan_pts_master,
                file_locks: o.file_locks,
                link_remap: o.link_remap,
                sockets: o.sockets.clone(),
                run_id: o.run_id.clone(),
            },
        ),
        memfds: memfd::Memfds::new(pid)?,
        ns_ids,
        cgroups: {
            let mut s = cgroup::Sets::new(pid, &host.cgroups, freezer, o.cgroup_dirs)?;
            s.set_roots(o.cgroup_roots.clone());
            s
        },
        seccomp: pb::SeccompEntry::default(),
        next_kobj: 2,
        threads: tree
            .members
            .iter()
            .filter_map(|m| m.seized().map(|s| (m.pid, s)))
            .flat_map(|(pid, s)| {
                s.threads()
                    .iter()
                    .filter(move |t| t.tid != pid)
                    .map(move |t| (t.tid, pid))
            })
            .collect(),
        parent: o
            .parent
            .as_ref()
            .filter(|_| o.track_mem)
            .map(|p| o.dir.join(p)),
        frames: (keep_once && tree.members.len() > 1).then(BTreeMap::new),
        parents: tree.members.iter().map(|m| m.ppid).collect(),
        caller: o.caller.clone(),
        locks_before,
        locks_frozen: files::Locks::start(),
    };
    sh.files.tree = tree.members.iter().map(|m| m.pid).collect();
    if let Some(c) = container.as_ref().filter(|c| c.own.contains(&NsKind::Pid)) {
        sh.files.vpids = Some(c.vpids.clone());
    }
    // The memory of the container's SysV shm segments, read frozen.
    if let Some(ipc) = container.as_ref().and_then(|c| c.ipc.as_ref()) {
        let mut create = |f| out.created(f);
        for s in &ipc.shm {
            sh.memfds
                .sysv(&s.file, s.entry.desc.id, s.entry.size, &mut create)?;
        }
    }
    // A container's sockets live in its network namespace.
    if let Some(net) = container
        .as_ref()
        .map(|c| c.net_ns(pid))
        .transpose()?
        .flatten()
    {
        sh.files.sockets.set_net(pid, net)?;
    }
    let mut procs = Vec::new();
    let mut zombies = Vec::new();
    for m in &tree.members {
        match &m.kind {
            Kind::Alive(seized) => {
                // What it shares with its parent, collected already.
                let parent = procs.iter().find(|p: &&Proc| p.pid == m.ppid);
                let with_parent = WithParent {
                    files_id: parent
                        .filter(|_| sharing.files.contains(&m.pid))
                        .map(|p| p.ids.entry.files_id),
                    fs_id: parent
                        .filter(|_| sharing.fs.contains(&m.pid))
                        .map(|p| p.ids.entry.fs_id),
                };
                procs.push(collect(
                    seized,
                    m,
                    &with_parent,
                    host,
                    container.as_ref(),
                    &mut sh,
                    out,
                    stats,
                    rseq_moves,
                )?);
            }
            Kind::Zombie { exit_code } => zombies.push(zombie(m, *exit_code)?),
        }
    }
    // One time namespace for the whole tree.
    if let Some(p) = procs.iter().find(|p| p.timens_id != procs[0].timens_id) {
        return Err(Error::unsupported(
            p.pid,
            "a time namespace other than its parent's".to_string(),
        ));
    }
    let (root_set, cgroup_image) = sh.cgroups.finish();
    let mut files_extra = sh.files.take_extra()?;
    if let Some(c) = &container {
        number_in_namespace(c, &mut procs, &mut zombies)?;
        // The owners of the file locks, as the namespace numbers them.
        for l in &mut files_extra.file_locks {
            l.pid = c.vpid(l.pid);
        }
        // A terminal's session and group, as the namespace numbers them.
        for t in &mut files_extra.tty_info {
            for v in [&mut t.sid, &mut t.pgrp] {
                if *v != 0 {
                    *v = c.vpid(*v as Pid) as u32;
                }
            }
        }
    }
    Ok(Collected {
        root_ids,
        procs,
        zombies,
        seccomp: sh.seccomp,
        memfd_inodes: sh.memfds.entries,
        files_extra,
        files: sh.files.entries,
        root_set,
        cgroup_image,
        container,
    })
}

/// The processes numbered as their pid namespace numbers them: in the
/// images, the root is its namespace's init. A group or session must be
/// one of the tree's.
fn number_in_namespace(
    c: &namespaces::Container,
    procs: &mut [Proc],
    zombies: &mut [Zombie],
) -> Result<()> {
    if !c.own.contains(&NsKind::Pid) {
        return Ok(());
    }
    for z in zombies.iter_mut() {
        let e = &mut z.pstree;
        let host = e.pid as Pid;
        let (Some(pgid), Some(sid)) = (c.vpid_of(e.pgid as Pid), c.vpid_of(e.sid as Pid)) else {
            return Err(Error::unsupported(
                host,
                format!(
                    "a zombie whose session {} or group {} no process of its pid namespace leads",
                    e.sid, e.pgid
                ),
            ));
        };
        let v = |pid: u32| c.vpid(pid as Pid) as u32;
        (e.pid, e.pgid, e.sid) = (v(e.pid), pgid as u32, sid as u32);
        e.ppid = v(e.ppid);
        e.threads = vec![e.pid];
        if let Some(levels) = c.ns_pids(host) {
            e.ns_pid = levels.iter().map(|&l| l as u32).collect();
        }
    }
    for p in procs {
        let host = p.pid;
        let e = &mut p.pstree;
        let (Some(pgid), Some(sid)) = (c.vpid_of(e.pgid as Pid), c.vpid_of(e.sid as Pid)) else {
            return Err(Error::unsupported(
                host,
                format!(
                    "session {} or group {} led by no process of its pid namespace",
                    e.sid, e.pgid
                ),
            ));
        };
        let v = |pid: u32| c.vpid(pid as Pid) as u32;
        (e.pid, e.pgid, e.sid) = (v(e.pid), pgid as u32, sid as u32);
        // The init's parent is outside its namespace.
        e.ppid = if e.pid == 1 { 0 } else { v(e.ppid) };
        // In a nested pid namespace: its pids and its threads' at every
        // level down to its own.
        if let Some(levels) = c.ns_pids(host) {
            e.ns_pid = levels.iter().map(|&l| l as u32).collect();
            e.tids = e
                .threads
                .iter()
                .map(|&tid| pb::NsTid {
                    tid: c
                        .ns_pids(tid as Pid)
                        .map_or_else(Vec::new, |l| l.iter().map(|&x| x as u32).collect()),
                })
                .collect();
        }
        for t in &mut e.threads {
            *t = v(*t);
        }
        for (tid, core) in &mut p.cores {
            *tid = v(*tid);
            // A POSIX timer signalling one thread (SIGEV_THREAD_ID, as
            // glibc's SIGEV_THREAD does) names it as the namespace does.
            let timers = core.tc.as_mut().and_then(|tc| tc.timers.as_mut());
            for t in timers.into_iter().flat_map(|t| t.posix.iter_mut()) {
                if let Some(id) = &mut t.notify_thread_id {
                    *id = c.vpid(*id as Pid) as _;
                }
            }
        }
        p.pages_from = p.pages_from.map(|f| c.vpid(f));
        p.pid = c.vpid(host);
    }
    Ok(())
}

/// CRIU's `TASK_DEAD`.
const TASK_DEAD: u32 = 2;

/// The images of a zombie: CRIU's (a task core with its exit status).
fn zombie(m: &Member, exit_code: i32) -> Result<Zombie> {
    let stat = Task::open(m.pid)
        .and_then(|mut t| t.stat())
        .map_err(Error::proc(m.pid))?;
    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        tc: Some(pb::TaskCoreEntry {
            task_state: TASK_DEAD,
            exit_code: exit_code as u32,
            personality: 0,
            flags: 0,
            blk_sigset: 0,
            rcriu_exit_signal: core::exit_signal(stat.exit_signal),
            comm: stat.comm,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pstree = pstree::entry(m.pid, m.pgid, m.sid, vec![m.pid as u32]);
    pstree.ppid = m.ppid as u32;
    Ok(Zombie { pstree, core })
}

/// Refuses an fd of a file under `/proc/TID` of a thread of another
/// process of the tree: the restore opens files of the tree's processes'
/// /proc directories once every process exists, before their threads
/// do. (`/proc/PID` of a process of the tree is taken.)
fn check_proc_of_tree(
    pid: Pid,
    fd: &rcriu_proc::Fd,
    threads: &std::collections::BTreeMap<Pid, Pid>,
) -> Result<()> {
    let rcriu_proc::FdTarget::Path { path, .. } = fd.target() else {
        return Ok(());
    };
    let mut parts = path.components().skip(1);
    let (Some(first), Some(second)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    if first.as_os_str() != "proc" {
        return Ok(());
    }
    match second
        .as_os_str()
        .to_str()
        .and_then(|s| s.parse::<Pid>().ok())
    {
        Some(t) if threads.get(&t).is_some_and(|&p| p != pid) => Err(Error::unsupported(
            pid,
            format!(
                "fd {}: {}, a file of thread {t} of another process of the dump (the restore opens it before the thread exists)",
                fd.fd,
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// The anonymous memory (KiB) from which a process's pages are scanned
/// ahead: below it, its scan takes less than the thread costs.
const AHEAD_KB: u64 = 32 << 10;

/// What a process shares with its parent: the ids of its fd table and of
/// its fs.
struct WithParent {
    files_id: Option<u32>,
    fs_id: Option<u32>,
}

/// Reads, checks and dumps one process of the tree while it is frozen;
/// it is seized and clean (the parasite gone) when this returns, either
/// way.
#[allow(clippy::too_many_arguments)]
fn collect(
    seized: &Seized,
    member: &Member,
    with_parent: &WithParent,
    host: &Host,
    container: Option<&namespaces::Container>,
    sh: &mut Shared,
    out: &mut Output,
    stats: &mut DumpStats,
    rseq_moves: &mut Vec<(Pid, u64)>,
) -> Result<Proc> {
    let pid = member.pid;
    let t_collect = Instant::now();
    let perr = Error::proc(pid);
    let mut task = Task::open(pid).map_err(perr)?;
    // smaps walks every page table of the process: it is read on a
    // thread of its own while the rest is gathered and the parasite goes
    // in (for a process of a few GiB it is most of its frozen time
    // otherwise).
    let smaps_read = mm::Smaps::start(pid);
    let stat = task.stat().map_err(Error::proc(pid))?;
    sh.files.set_process(pid);
    sh.memfds.set_process(pid);

    // -- What this version dumps: refused here, before anything else.
    let ns = task.namespaces().map_err(Error::proc(pid))?;
    ids::check_namespaces(pid, &host.ns, &ns, container)?;
    // Numbered first: its sockets name their network namespace's id.
    let mut ids = sh.ns_ids.task(sh.next_kobj, &ns);
    sh.next_kobj += 1;
    // Its children go into another pid namespace: a nested one it made
    // (its init a child of it), or one not made yet (no child since
    // unshare(CLONE_NEWPID)).
    if ns.pid.is_some() && ns.pid_for_children != ns.pid {
        ids.entry.pid_for_children_ns_id = Some(sh.ns_ids.pid_for_children(ns.pid_for_children));
    }
    if let Some(id) = with_parent.files_id {
        ids.entry.files_id = id;
    }
    if let Some(id) = with_parent.fs_id {
        ids.entry.fs_id = id;
    }
    sh.files.sockets.set_ns_id(ids.entry.net_ns_id);
    sh.files.namespaces.note(&ns, &ids.entry);
    let status = task.status().map_err(Error::proc(pid))?;
    // A large process's pages are scanned meanwhile on another thread
    // (`pages::Ahead`), as its areas are read.
    let anon_kb = status.rss_anon_kb.unwrap_or(0) + status.vm_swap_kb.unwrap_or(0);
    let pages_ahead = if anon_kb >= AHEAD_KB {
        pages::Ahead::start(pid)
            .map_err(|e| log::debug!("pages of {pid} not scanned ahead: {e}"))
            .ok()
    } else {
        None
    };
    let process_attrs = attrs::process(pid, &mut task, &status, stat.session == pid)?;
    let tids = cgroup::tids(seized);
    // Each thread's own set (the restore moves a thread in other cgroups
    // than its leader's into them).
    let thread_sets = sh.cgroups.threads(pid, &tids)?;
    log::debug!(
        "collect of {pid}: attrs and cgroups at {:?}",
        t_collect.elapsed()
    );
    let timers = match task.posix_timers() {
        Ok(t) => t,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(Error::proc(pid)(e)),
    };
    log::debug!("collect of {pid}: timers at {:?}", t_collect.elapsed());
    // An fd table shared with the parent is the parent's, dumped once.
    let read = if with_parent.files_id.is_some() {
        Vec::new()
    } else {
        files::read_fds(pid, &sh.locks_before)?
    };
    let mut fd_list = Vec::with_capacity(read.len());
    let mut fd_infos = Vec::with_capacity(read.len());
    let mut copies = Vec::with_capacity(read.len());
    let mut fd_stats = Vec::with_capacity(read.len());
    for r in read {
        fd_list.push(r.fd);
        fd_infos.push(r.info);
        copies.push(r.copy);
        fd_stats.push((r.stat, r.getfl));
    }
    let no_info = rcriu_proc::FdInfo::default();
    for (fd, info) in fd_list.iter().zip(&fd_infos) {
        if !memfd::is_memfd_link(&fd.link) {
            // A socket's fdinfo comes once rcriu holds a copy; nothing
            // here looks at it.
            files::check_fd(pid, fd, info.as_ref().unwrap_or(&no_info))?;
            check_proc_of_tree(pid, fd, &sh.threads)?;
            if let Some(c) = container {
                c.check_fd(pid, fd, info.as_ref().unwrap_or(&no_info))?;
            }
        }
    }
    log::debug!("collect of {pid}: fds read at {:?}", t_collect.elapsed());
    // The sockets (thousands in a server) are read ahead meanwhile, as
    // open files whose close-on-exec flag the parasite tells later.
    let mut copies: Vec<Option<OwnedFd>> = copies.into_iter().map(Some).collect();
    let mut sockets = Vec::new();
    for (i, ((fd, info), (st, getfl))) in fd_list.iter().zip(&fd_infos).zip(&fd_stats).enumerate() {
        if let (None, rcriu_proc::FdTarget::Socket(ino)) = (info, fd.target())
            && let Some(copy) = copies[i].take()
        {
            let file = File::from(copy);
            let info = FileInfo::of_stat(pid, file.as_fd(), &fd.link, st)?;
            let f = OpenFd {
                fd: fd.fd,
                file,
                info,
                fdinfo: files::socket_fdinfo(*getfl, ino, false),
                ahead: None,
            };
            sockets.push((i, f));
        }
    }
    let ahead = crate::sockets::Prefetch::start(pid, &sh.files.sockets, sockets);
    // A deleted executable is a ghost (within the ghost limit), made
    // with the cwd's and root's.
    let limits = task.limits().map_err(Error::proc(pid))?;
    let auxv = task.auxv().map_err(Error::proc(pid))?;
    let personality = task.personality().map_err(Error::proc(pid))?;
    // As the tree sees it, in a user namespace of its own (as CRIU).
    let loginuid = task
        .loginuid()
        .ok()
        .map(|l| match container.and_then(|c| c.user.as_ref()) {
            Some(u) => u.uid(l),
            None => l,
        });
    let oom_score_adj = task.oom_score_adj().ok();
    let their_timens = timens::offsets(pid).map_err(Error::proc(pid))?;
    fault::check_abort().map_err(Error::compel(pid))?;

    log::debug!(
        "collect of {pid}: limits, auxv and timens at {:?}",
        t_collect.elapsed()
    );
    // -- From outside: ptrace and remote syscalls.
    let mut outside = Vec::with_capacity(seized.threads().len());
    for t in seized.threads() {
        outside.push(threads::read(pid, t)?);
    }
    // The leader first, then the others by tid.
    outside.sort_by_key(|o| (o.tid != pid, o.tid));
    for o in &outside {
        let ip = o.ctx.regs.ip;
        let fixed = o.rseq.fixup_ip(o.tid, ip)?;
        if fixed != ip {
            rseq_moves.push((o.tid, fixed));
        }
    }
    log::debug!("collect of {pid}: registers at {:?}", t_collect.elapsed());
    let shared_signals = rcriu_compel::sys::peek_siginfo(pid, true)
        .map_err(Error::sys("reading the process's pending signals", pid))?;
    let misc = remote::query(seized, &outside[0].ctx)?;

    log::debug!(
        "collect of {pid}: remote query at {:?}",
        t_collect.elapsed()
    );
    // -- The parasite.
    let mut parasite = Parasite::infect(seized).map_err(Error::compel(pid))?;
    let ce = Error::compel;
    let sigactions = parasite.sigactions().map_err(ce(pid))?;
    let itimers = parasite.itimers().map_err(ce(pid))?;
    let timer_ids: Vec<i32> = timers.iter().map(|t| t.id).collect();
    let timer_values = parasite.posix_timers(&timer_ids).map_err(ce(pid))?;
    let mut infos = Vec::with_capacity(outside.len());
    for o in &outside {
        let t = seized.thread(o.tid).ok_or_else(|| Error::Inconsistent {
            pid,
            what: format!("thread {} is not seized", o.tid),
        })?;
        let info = parasite.thread_info(t).map_err(ce(pid))?;
        attrs::check_inside(pid, o.tid, &info)?;
        infos.push(info);
    }
    // The sockets read without their fdinfo: none locked since the dump
    // began (the second read of /proc/locks is done by now, or nearly).
    let fast_sockets: Vec<(i32, u64)> = fd_list
        .iter()
        .zip(&fd_infos)
        .zip(&fd_stats)
        .filter(|((fd, info), _)| {
            info.is_none() && matches!(fd.target(), rcriu_proc::FdTarget::Socket(_))
        })
        .map(|((fd, _), (st, _))| (fd.fd, st.stx_ino))
        .collect();
    // The fds, while smaps is still read: rcriu holds a copy of every fd
    // (taken with pidfd_getfd as they were read); the parasite reads the
    // close-on-exec flags /proc was not asked for (the sockets').
    let numbers: Vec<i32> = fd_list
        .iter()
        .zip(&fd_infos)
        .filter(|(_, i)| i.is_none())
        .map(|(f, _)| f.fd)
        .collect();
    let t_fds = Instant::now();
    let mut flags = parasite.fd_flags(&numbers).map_err(ce(pid))?.into_iter();
    let t_copied = Instant::now();
    let mut sockets = ahead.join(&mut sh.files.sockets).into_iter().peekable();
    let t_opts = Instant::now();
    let mut open = Vec::with_capacity(copies.len());
    for (i, (((fd, fdinfo), copy), (st, _))) in fd_list
        .iter()
        .zip(fd_infos)
        .zip(copies)
        .zip(&fd_stats)
        .enumerate()
    {
        if sockets.peek().is_some_and(|(j, _)| *j == i) {
            let (_, mut f) = sockets.next().expect("peeked above");
            let cloexec = flags.next().ok_or_else(|| Error::Inconsistent {
                pid,
                what: format!(
                    "the parasite read fewer fd flags than the {} asked",
                    numbers.len()
                ),
            })?;
            if cloexec {
                f.fdinfo.flags |= libc::O_CLOEXEC as u32;
            }
            open.push(f);
            continue;
        }
        let (Some(fdinfo), Some(copy)) = (fdinfo, copy) else {
            return Err(Error::Inconsistent {
                pid,
                what: format!("fd {} has no fdinfo and is not a socket", fd.fd),
            });
        };
        let file = File::from(copy);
        let info = FileInfo::of_stat(pid, file.as_fd(), &fd.link, st)?;
        let f = OpenFd {
            fd: fd.fd,
            file,
            info,
            fdinfo,
            ahead: None,
        };
        if !memfd::is_memfd_link(&fd.link) {
            files::check_open(pid, &f, sh.files.link_remap())?;
        }
        open.push(f);
    }
    let t_opened = Instant::now();
    let t_smaps = Instant::now();
    let mut smaps = smaps_read.join(parasite.area())?;
    log::debug!(
        "memory of {pid}: smaps waited for {:?}, {:?} after its collection began",
        t_smaps.elapsed(),
        t_smaps - t_collect
    );
    // Memory tracked since a pre-dump: its areas are plain memory to the
    // dump, and their pages not written since are in the parent's images.
    let tracking =
        crate::track::Final::begin(seized, stat.starttime, sh.parent.as_deref(), &mut smaps)?;
    let mut areas = mm::classify(pid, &smaps)?;
    files::check_socket_locks(pid, &fast_sockets, &sh.locks_frozen)?;
    // NUMA policies, asked from inside (numa_maps would walk every page
    // table once more).
    let starts: Vec<u64> = areas.iter().map(Area::start).collect();
    let modes = parasite.mem_policies(&starts).map_err(ce(pid))?;
    let per_area: Vec<(u64, i32)> = starts.into_iter().zip(modes).collect();
    let per_thread: Vec<(Pid, i32)> = outside
        .iter()
        .zip(&infos)
        .map(|(o, i)| (o.tid, i.mempolicy))
        .collect();
    attrs::check_policies(pid, &per_area, &per_thread)?;
    let creds = &infos[0].creds;

    // -- Files: mapped, open, exe, cwd, root.
    let table = &mut sh.files;
    let memfds = &mut sh.memfds;
    let mut create = |f| out.created(f);
    let ipc = container.and_then(|c| c.ipc.as_ref());
    for a in areas.iter_mut() {
        if a.entry.status & mm::status::SYSVIPC != 0 {
            // An attach of a segment of the container's IPC namespace
            // (checked below), opened as the map_files link says.
            if ipc.is_none() {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "SysV shared memory at {:#x} outside an IPC namespace of its own",
                        a.entry.start
                    ),
                ));
            }
            let name = format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                a.entry.start, a.entry.end
            );
            let link = std::fs::symlink_metadata(&name).map_err(Error::file(pid, &name))?;
            a.entry.fdflags = mm::fdflags_of_link_mode(std::os::unix::fs::PermissionsExt::mode(
                &link.permissions(),
            ));
            continue;
        }
        if let Some(ino) = a.ring {
            a.entry.shmid = u64::from(ring_file(pid, table, &open, a, ino)?);
            continue;
        }
        if let Some((s, e)) = a.file {
            let id = mapped_file(pid, &task, table, memfds, &mut create, a, s, e)?;
            a.entry.shmid = u64::from(id);
        }
    }
    if let Some(ipc) = ipc {
        ipc.check_attaches(
            areas
                .iter()
                .map(|a| &a.entry)
                .filter(|e| e.status & mm::status::SYSVIPC != 0),
        )
        .map_err(|why| Error::unsupported(pid, why))?;
    }
    let mut fdinfo = Vec::with_capacity(open.len());
    table.reserve(open.len());
    for f in &open {
        if memfd::is_memfd_link(&f.info.path) {
            let id = memfds.fd(table, f, &mut create)?;
            fdinfo.push(memfd::fdinfo_entry(files::fdinfo_entry(f, id)));
        } else {
            let id = table.fd(f)?;
            if f.kind() == files::FdKind::Anon(crate::anon::Kind::IoUring)
                && !table.rings.insert(id)
            {
                return Err(Error::unsupported(
                    pid,
                    format!("fd {}: an io_uring instance held by more than one fd", f.fd),
                ));
            }
            fdinfo.push(files::fdinfo_entry(f, id));
        }
    }
    // A packet socket's rings mapped: the socket's file id, of an fd of
    // the process (as CRIU, which refuses one no fd holds).
    for a in areas.iter_mut() {
        let Some(ino) = a.socket else {
            continue;
        };
        let id = open
            .iter()
            .zip(&fdinfo)
            .find(|(f, _)| f.info.ino == ino && f.kind() == files::FdKind::Socket)
            .map(|(_, e)| e.id)
            .filter(|id| {
                table
                    .entries
                    .iter()
                    .any(|e| e.id == *id && e.r#type == pb::FdTypes::Packetsk as i32)
            })
            .ok_or_else(|| {
                Error::unsupported(
                    pid,
                    format!(
                        "a mapping of socket:[{ino}] at {:#x}-{:#x}, which is not a packet socket an fd of the process holds",
                        a.start(),
                        a.end()
                    ),
                )
            })?;
        a.entry.shmid = u64::from(id);
    }
    log::debug!(
        "fds of {pid}: {} flags read in {:?}, sockets read ahead waited for {:?}, examined in \
         {:?}, collected in {:?}",
        numbers.len(),
        t_copied - t_fds,
        t_opts - t_copied,
        t_opened - t_opts,
        t_opened.elapsed()
    );
    let exe_id = special(pid, table, &format!("/proc/{pid}/exe"), "the executable")?;
    let cwd_id = special(pid, table, &format!("/proc/{pid}/cwd"), "the cwd")?;
    let root_id = special(pid, table, &format!("/proc/{pid}/root"), "the root")?;
    // Every ghost, of fds, mappings, cwd and root.
    table.write_ghosts(&mut |f| out.created(f))?;

    // -- The pages.
    let t_pages = Instant::now();
    let mut pagemap = task.pagemap().map_err(Error::proc(pid))?;
    let mut parent = match &tracking {
        Some(t) => t.parent(&areas),
        None => pages::Parent::default(),
    };
    // Through a page server, the pagemap is opened first: the pages kept
    // in the parent are the server's to have.
    if let Some(client) = &mut out.page_server
        && !crate::page_xfer::open(pid, client)?
        && !parent.tracked.is_empty()
    {
        log::warn!(
            "the page server at {} has no parent pagemap for {pid}: dumping its memory whole",
            client.peer()
        );
        parent.tracked.clear();
    }
    if let Some(frames) = &sh.frames {
        parent.like = frames.get(&member.ppid).cloned();
        parent.keep_frames = sh.parents.contains(&pid);
    }
    let scanned = pages_ahead.and_then(pages::Ahead::join);
    let mut plan = pages::plan_with(
        pid,
        &areas,
        &mut pagemap,
        outside[0].ctx.regs.sp,
        &parent,
        scanned.as_ref(),
    )?;
    let pages_from = (parent.like.is_some() && plan.parent_pages > 0).then_some(member.ppid);
    if let Some(frames) = &mut sh.frames
        && parent.keep_frames
    {
        frames.insert(pid, std::rc::Rc::new(std::mem::take(&mut plan.frames)));
    }
    if let Some(store) = &mut out.lazy {
        let lazy = plan.take_lazy();
        stats.pages_lazy += store.hold(pid, &lazy)?;
    }
    let t_guards = Instant::now();
    let guards = mm::guards(pid, &areas, &mut pagemap, &plan)?;
    log::debug!(
        "pages of {pid} planned in {:?}, guard regions found in {:?}",
        t_guards - t_pages,
        t_guards.elapsed()
    );
    let pages_id = memfds.take_pages_id();
    if let Some(client) = &mut out.page_server {
        let t_write = Instant::now();
        let n = crate::page_xfer::send(pid, &mut parasite, client, &plan)?;
        stats.memwrite_time = t_write.elapsed();
        if n != plan.bytes() {
            return Err(Error::Inconsistent {
                pid,
                what: format!("{n} bytes of pages sent for {} planned", plan.bytes()),
            });
        }
    } else {
        write_pages_here(
            pid,
            out,
            &mut parasite,
            &plan,
            pages_id,
            limits.get(libc::RLIMIT_FSIZE).map_or(0, |l| l.soft),
            stats,
        )?;
    }
    stats.memdump_time = t_pages.elapsed();
    stats.pages_scanned += plan.scanned;
    stats.pages_written += plan.pages;
    stats.pages_skipped_parent += plan.parent_pages;
    stats.shpages_scanned = memfds.pages_scanned;
    stats.shpages_written = memfds.pages_written;
    stats.page_pipe_bufs += plan
        .iovs
        .iter()
        .filter(|(_, r)| *r)
        .count()
        .div_ceil(rcriu_compel::abi::MAX_IOVS) as u64;
    parasite.cure().map_err(ce(pid))?;
    let copies = open.into_iter().map(|f| f.file).collect();

    // -- The images' contents.
    let timens_id = ids
        .own_ns
        .iter()
        .find(|(k, _)| *k == NsKind::Time)
        .map_or(0, |(_, id)| *id);
    let timens = if timens_id == 0 {
        host.timens
    } else {
        their_timens
    };
    let seccomp_fields = seccomp::add(
        &mut sh.seccomp,
        &outside
            .iter()
            .map(|o| seccomp::ThreadSeccomp {
                tid: o.tid as u32,
                mode: o.seccomp_mode,
                filters: o.filters.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let process = core::ProcessParts {
        comm: stat.comm.clone(),
        stat_flags: stat.flags,
        exit_signal: stat.exit_signal,
        personality,
        loginuid,
        oom_score_adj,
        limits,
        sigactions: &sigactions,
        itimers,
        posix_timers: timers::posix(pid, &timers, &timer_values)?,
        signals: &shared_signals,
        child_subreaper: creds.child_subreaper != 0,
        stop_signo: seized.leader().stopped_by.map(|s| s as u32),
        membarrier: misc.membarrier,
        attrs: &process_attrs,
    };
    let mut cores = Vec::with_capacity(outside.len());
    for (i, (o, info)) in outside.iter().zip(&infos).enumerate() {
        let ip = o.rseq.fixup_ip(o.tid, o.ctx.regs.adjusted_for_image().ip)?;
        let t = core::ThreadParts {
            out: o,
            info,
            ip,
            seccomp: seccomp_fields[i],
            cg_set: thread_sets[i],
        };
        let c = if i == 0 {
            core::leader(&t, &process)
        } else {
            core::other_thread(&t)
        };
        if let Some(me) = &sh.caller {
            let creds = c.thread_core.as_ref().and_then(|t| t.creds.as_ref());
            me.admit_creds(&format!("dumping thread {}", o.tid), creds)
                .map_err(|source| Error::NotCallers { pid, source })?;
        }
        cores.push((o.tid as u32, c));
    }
    let mm = pb::MmEntry {
        mm_start_code: stat.startcode,
        mm_end_code: stat.endcode,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.startstack,
        mm_start_brk: stat.start_brk,
        mm_brk: misc.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: exe_id,
        mm_saved_auxv: mm::saved_auxv(&auxv),
        rcriu_anon_names: mm::anon_names(&areas),
        vmas: areas.into_iter().map(|a| a.entry).chain(guards).collect(),
        dumpable: Some(creds.dumpable as i32),
        aios: Vec::new(),
        thp_disabled: Some(creds.thp_disabled != 0),
    };
    let mut pstree = pstree::entry(
        pid,
        stat.pgrp,
        stat.session,
        outside.iter().map(|o| o.tid as u32).collect(),
    );
    pstree.ppid = member.ppid as u32;
    Ok(Proc {
        pid,
        ids,
        pstree,
        cores,
        mm,
        runs: plan.runs,
        pages_id,
        pages_from,
        fdinfo,
        fs: fs::entry(cwd_id, root_id, creds.umask),
        timens_id,
        timens,
        tracking,
        copies,
    })
}

/// Writes the pages of `pid` planned in `plan` to `pages-<pages_id>.img`
/// of the images directory (into room reserved for them when there is);
/// `fsize` is the task's RLIMIT_FSIZE.
fn write_pages_here(
    pid: Pid,
    out: &mut Output,
    parasite: &mut rcriu_compel::Parasite,
    plan: &pages::Plan,
    pages_id: u32,
    fsize: u64,
    stats: &mut DumpStats,
) -> Result<()> {
    let dir = out.created(ImageFile::Pages(pages_id.into()))?;
    fault::image(&ImageFile::Pages(pages_id.into()).name()).map_err(Error::compel(pid))?;
    let room = out.rooms.remove(&pid);
    let mut pages_img = match room {
        Some(room) => dir.create_pages_in(pages_id, room),
        None => dir.create_pages(pages_id),
    }
    .map_err(Error::image(pid))?;
    let t_write = Instant::now();
    let mut n = 0;
    let mut i = 0;
    while i < plan.iovs.len() {
        let readable = plan.iovs[i].1;
        let j = plan.iovs[i..]
            .iter()
            .position(|(_, r)| *r != readable)
            .map_or(plan.iovs.len(), |k| i + k);
        if readable {
            let iovs: Vec<IoVec> = plan.iovs[i..j].iter().map(|(v, _)| *v).collect();
            let path = dir.file_path(ImageFile::Pages(pages_id.into()));
            n += page_writers::write(pid, parasite, &iovs, &mut pages_img, &path, fsize)?;
        } else {
            for (v, _) in &plan.iovs[i..j] {
                n += pages::copy_unreadable(pid, v, &mut pages_img)?;
            }
        }
        i = j;
    }
    stats.memwrite_time = t_write.elapsed();
    out.untrimmed.push(pages_img);
    if n != plan.bytes() {
        return Err(Error::Inconsistent {
            pid,
            what: format!("{n} bytes of pages written for {} planned", plan.bytes()),
        });
    }
    Ok(())
}

/// What a dump through a page server cannot do (yet), refused by name
/// before anything is seized.
/// What a lazy dump does not take yet, refused before anything is
/// touched.
fn refuse_lazy(o: &Options) -> Result<()> {
    let what = if o.leave_running {
        Some("--leave-running (the processes would run on while their pages are served)")
    } else if o.leave_stopped {
        Some("--leave-stopped")
    } else if o.key.is_some() {
        Some("--encrypt")
    } else if o.page_server.is_some() {
        Some("--page-server")
    } else if o.track_mem || o.parent.is_some() {
        Some("a pre-dump chain (--track-mem, --prev-images-dir)")
    } else {
        None
    };
    match what {
        Some(what) => Err(Error::NotWithLazyPages { pid: o.pid, what }),
        None => Ok(()),
    }
}

fn refuse_with_page_server(o: &Options) -> Result<()> {
    if o.key.is_some() {
        return Err(Error::NotWithPageServer {
            pid: o.pid,
            what: "--encrypt",
        });
    }
    Ok(())
}

/// The file id of a mapped file, with the area's `fdflags`.
#[allow(clippy::too_many_arguments)]
fn mapped_file(
    pid: Pid,
    task: &Task,
    table: &mut Files,
    memfds: &mut memfd::Memfds,
    create: &mut memfd::Create<'_>,
    a: &mut Area,
    start: u64,
    end: u64,
) -> Result<u32> {
    let name = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
    let link_mode = std::fs::symlink_metadata(&name).map_err(Error::file(pid, &name))?;
    a.entry.fdflags = mm::fdflags_of_link_mode(std::os::unix::fs::PermissionsExt::mode(
        &link_mode.permissions(),
    ));
    let path = task.map_file_link(start, end).map_err(Error::proc(pid))?;
    let file = task.open_map_file(start, end).map_err(Error::proc(pid))?;
    let info = FileInfo::of(pid, file.as_fd(), &path)?;
    if info.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::unsupported(
            pid,
            format!(
                "a mapping of {} (not a regular file) at {start:#x}-{end:#x}",
                path.display()
            ),
        ));
    }
    if a.entry.status & mm::status::MEMFD != 0 {
        let Some(hugetlb) = memfds.kind(&info, &file)? else {
            return Err(Error::unsupported(
                pid,
                format!(
                    "a mapping of {} at {start:#x}-{end:#x}, neither of shmem nor of hugetlbfs",
                    path.display()
                ),
            ));
        };
        return memfds.mapping(table, &info, &file, hugetlb, create);
    }
    if info.unlinked() {
        let what = format!("a mapping at {start:#x}-{end:#x}");
        return table.special_deleted(&info, &file, what);
    }
    table.special_named(&info, &file, "the mapped file")
}

/// The file id of the io_uring instance (inode `ino`) that area `a`
/// maps: one of the process's fds must hold it.
fn ring_file(pid: Pid, table: &mut Files, open: &[OpenFd], a: &Area, ino: u64) -> Result<u32> {
    let f = open
        .iter()
        .find(|f| {
            f.info.ino == ino && f.kind() == crate::files::FdKind::Anon(crate::anon::Kind::IoUring)
        })
        .ok_or_else(|| {
            Error::unsupported(
                pid,
                format!(
                    "a mapping of an io_uring instance at {:#x}-{:#x} that no fd holds",
                    a.start(),
                    a.end()
                ),
            )
        })?;
    table.fd(f)
}

/// The file id of the exe, cwd or root, opened through their /proc link.
fn special(pid: Pid, table: &mut Files, link: &str, what: &str) -> Result<u32> {
    let path = std::fs::read_link(link).map_err(Error::file(pid, link))?;
    // A directory of /proc whose process has ended cannot be opened for
    // reading (ESRCH), but can be reached (O_PATH): a /proc remap.
    let file = File::open(link)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => std::os::unix::fs::OpenOptionsExt::custom_flags(
                std::fs::OpenOptions::new().read(true),
                libc::O_PATH,
            )
            .open(link),
            _ => Err(e),
        })
        .map_err(|e| files::dead_proc(pid, what, &path, e))?;
    let info = FileInfo::of(pid, file.as_fd(), &path)?;
    // A removed directory (cwd, root) or executable is a ghost, as CRIU
    // makes it.
    let kind = info.file_type();
    if info.unlinked() && (kind == libc::S_IFDIR || kind == libc::S_IFREG) {
        return table.special_deleted(&info, &file, what.to_owned());
    }
    table.special_named(&info, &file, what)
}
