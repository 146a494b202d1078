//! `pre-dump`: the memory of a running process written while it runs,
//! frozen only to choose the pages and protect them again ([`track`]);
//! each following pre-dump, and the final dump, writes only the pages
//! written since, the others as kept in the parent's images (`PE_PARENT`
//! entries).
//!
//! A pre-dump writes what CRIU's writes: `pagemap-PID.img`,
//! `pages-1.img`, `inventory.img` (with `pre_dump_mode` and
//! `dump_uptime`), `stats-dump`, and the `parent` link when it has a
//! parent; and rcriu's manifest. As CRIU's, it leaves out areas of
//! hugetlb pages; it also leaves out the vdso and areas the process
//! cannot read (the final dump writes those whole), and shared memory
//! (which the final dump writes whole too).
//!
//! The pages are read after the process runs again, with
//! `process_vm_readv` (CRIU's `--pre-dump-mode read`, whatever the mode:
//! rcriu's parasite is not needed); a page written meanwhile is written
//! again by the next round. A page that cannot be read any more (its
//! area unmapped meanwhile) is written as zeroes: no later round takes
//! it from these images, as an unmapped area loses its tracking.
//!
//! Through a page server (`--page-server`), the pagemap and the pages
//! go to the server, as a dump's do ([`crate::page_xfer`]): the
//! pagemap is opened on the server before the process is seized, and
//! the server's answer (whether its directory has a parent pagemap for
//! the process) decides, with the tracking, which pages are kept in the
//! parent (`PE_PARENT` runs, sent without bytes); the pages are read
//! from the running process and sent after it runs again. The inventory
//! and `stats-dump` are written here; no manifest, as for a dump whose
//! pages went to a page server.
//!
//! A tree is pre-dumped whole, each process with its own pagemap and
//! pages image and its own tracking (through a page server, a process
//! without children only).
//!
//! [`track`]: crate::track

use std::path::{Path, PathBuf};
use std::time::Instant;

use rcriu_compel::Seized;
use rcriu_compel::abi::IoVec;
use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::{Pid, Task};

use crate::pages::{self, Parent, Plan};
use crate::stats::DumpStats;
use crate::track::{self, Tracker};
use crate::{Error, Result, inventory, mm};

/// The options of a pre-dump.
#[derive(Debug, Clone)]
pub struct Options {
    pub pid: Pid,
    pub dir: PathBuf,
    /// criu's `--prev-images-dir`, relative to `dir` unless absolute.
    pub parent: Option<PathBuf>,
    /// criu's `--pre-dump-mode`: CRIU's number for it (1 splice, 2 read),
    /// recorded in the inventory.
    pub mode: u32,
    /// Where `stats-dump` goes, when not beside the images.
    pub stats_dir: Option<PathBuf>,
    /// criu's `--page-server`: where the pagemap and pages go.
    pub page_server: Option<rcriu_page_server::Target>,
    /// criu's `--auto-dedup`: the pages written punched out of the
    /// parents' pages images once the images are whole.
    pub auto_dedup: bool,
}

/// What the frozen part of a round found, for one process.
struct Round {
    pid: Pid,
    plan: Plan,
    tracker: Tracker,
}

/// Pre-dumps a process and the processes under it.
pub fn run(o: &Options) -> Result<DumpStats> {
    let pid = o.pid;
    let begin = Instant::now();
    let mut stats = DumpStats::default();
    let dir = ImageDir::create(&o.dir).map_err(Error::image(pid))?;
    if let Some(p) = &o.parent {
        dir.link_parent(p).map_err(Error::image(pid))?;
    }
    let names = crate::pidns::ImagePids::of_root(pid)?;
    let root_named = names.get(pid)?;
    // Through a page server: connected, and the pagemap opened, before
    // the process is seized.
    let mut client = match &o.page_server {
        Some(t) => {
            let kids: Vec<Pid> = rcriu_compel::descendants(pid)
                .into_iter()
                .filter(|&p| p != pid)
                .collect();
            if !kids.is_empty() {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "children {kids:?} (a pre-dump of a process tree through a page server)"
                    ),
                ));
            }
            let ps = |source| Error::PageServer { pid, source };
            let mut c = rcriu_page_server::Client::connect_to(t).map_err(ps)?;
            let has_parent = crate::page_xfer::open(root_named, &mut c)?;
            Some((c, has_parent))
        }
        None => None,
    };
    let server_has_parent = client.as_ref().is_none_or(|(_, has)| *has);
    let start = Instant::now();
    let root = Seized::seize(pid).map_err(Error::compel(pid))?;
    let tree = crate::tree::Tree::seize(root, Vec::new())?;
    let frozen = Instant::now();
    stats.freezing_time = frozen - start;
    let mut rounds = Vec::new();
    let mut failed = None;
    for m in &tree.members {
        let Some(seized) = m.seized() else {
            continue; // a zombie holds no memory
        };
        match frozen_part(seized, o, server_has_parent, &mut stats) {
            Ok(r) => rounds.push(r),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let released = tree.release();
    stats.frozen_time = frozen.elapsed();
    if let Some(e) = failed {
        return Err(e);
    }
    released?;
    log::info!(
        "pre-dump of {pid}: frozen {:?}, {} process(es), {} pages to write",
        stats.frozen_time,
        rounds.len(),
        rounds.iter().map(|r| r.plan.pages).sum::<u64>()
    );

    let mut written: Vec<PathBuf> = Vec::new();
    let r = in_background(|| match client.take() {
        Some((c, _)) => rounds
            .first()
            .map_or(Ok(()), |r| {
                send_pages(pid, root_named, c, &r.plan, &mut stats)
            })
            .and_then(|()| write_inventory(pid, &dir, o, &mut stats, &mut written, false)),
        None => rounds
            .iter()
            .zip(1u32..)
            .try_for_each(|(r, pages_id)| {
                let named = names.get(r.pid)?;
                write_images(
                    r.pid,
                    named,
                    pages_id,
                    &dir,
                    &r.plan,
                    &mut stats,
                    &mut written,
                )
            })
            .and_then(|()| write_inventory(pid, &dir, o, &mut stats, &mut written, true)),
    });
    if let Err(e) = r {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    for r in rounds {
        r.tracker.keep(&o.dir)?;
    }
    if o.auto_dedup && o.parent.is_some() && o.page_server.is_none() {
        rcriu_images::dedup::dedup(&o.dir).map_err(|source| Error::AutoDedup { pid, source })?;
    }
    stats.total_time = begin.elapsed();
    Ok(stats)
}

/// The frozen part: the pages chosen, the tracking armed again. Pages
/// are kept in the parent only when `parent_there` (a page server has
/// the parent pagemap).
fn frozen_part(
    seized: &Seized,
    o: &Options,
    parent_there: bool,
    stats: &mut DumpStats,
) -> Result<Round> {
    let pid = seized.pid();
    let mut task = Task::open(pid).map_err(Error::proc(pid))?;
    let stat = task.stat().map_err(Error::proc(pid))?;
    let mut tracker =
        Tracker::get(seized, stat.starttime, true)?.ok_or_else(|| Error::Inconsistent {
            pid,
            what: "no userfaultfd to track its memory".into(),
        })?;
    let follows = o.parent.as_ref().is_some_and(|p| {
        let p = if p.is_absolute() {
            p.clone()
        } else {
            o.dir.join(p)
        };
        tracker.follows(&p)
    });
    if o.parent.is_some() && !follows {
        log::warn!("the parent images are not the last pre-dump of {pid}: pre-dumping it whole");
    }
    if follows && !parent_there {
        log::warn!("the page server has no parent pagemap for {pid}: pre-dumping it whole");
    }
    let follows = follows && parent_there;
    let mut smaps = task.smaps().map_err(Error::proc(pid))?;
    let ours = tracker.ours(&mut smaps);
    let areas = mm::classify(pid, &smaps)?;
    let eligible: Vec<mm::Area> = areas.into_iter().filter(track::eligible).collect();
    let spans: Vec<(u64, u64)> = eligible.iter().map(|a| (a.start(), a.end())).collect();
    let tracked: Vec<(u64, u64)> = spans
        .iter()
        .copied()
        .filter(|s| follows && ours.contains(s))
        .collect();
    let mut pagemap = task.pagemap().map_err(Error::proc(pid))?;
    let t_pages = Instant::now();
    let parent = Parent {
        tracked,
        markers: true,
        ..Parent::default()
    };
    let sp = rcriu_compel::sys::get_regs(pid)
        .map_err(Error::sys("reading the registers", pid))?
        .sp;
    let plan = pages::plan_with(pid, &eligible, &mut pagemap, sp, &parent, None)?;
    stats.pages_scanned += plan.scanned;
    stats.pages_skipped_parent += plan.parent_pages;
    // From here the tracking changes: this round becomes the only
    // possible parent once its images are written.
    tracker.forget()?;
    for &(s, e) in &ours {
        if !spans.contains(&(s, e)) {
            tracker.unregister(s, e)?;
        }
    }
    for &(s, e) in &spans {
        if !ours.contains(&(s, e)) {
            tracker.register(s, e)?;
        }
    }
    track::rearm(pid, &mut pagemap, &spans)?;
    stats.memdump_time += t_pages.elapsed();
    Ok(Round { pid, plan, tracker })
}

/// Runs `f` (the copy of the pages, while the process runs) on a thread
/// of its own at the lowest CPU priority: the copy takes the CPU time
/// the process leaves, not the process's. The caller's priority is left
/// as it was (a dump may follow on the same thread, over the RPC).
fn in_background<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            // Per thread on Linux; a failure leaves the copy as urgent as
            // the rest, which is only slower for the process.
            if let Err(e) = rustix::process::setpriority_process(None, 19) {
                log::debug!("pre-dump: the copy keeps its priority: {e}");
            }
            f()
        });
        t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// The pagemap and pages image (`pages-<pages_id>.img`) of one process
/// (`named` in the images).
fn write_images(
    pid: Pid,
    named: Pid,
    pages_id: u32,
    dir: &ImageDir,
    plan: &Plan,
    stats: &mut DumpStats,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let t = Instant::now();
    let file = ImageFile::Pages(pages_id.into());
    written.push(dir.file_path(file));
    let mut out = dir.create_pages(pages_id).map_err(Error::image(pid))?;
    for (v, _) in &plan.iovs {
        read_pages(pid, v, &mut |b| {
            out.write_pages(b).map_err(Error::image(pid))
        })?;
    }
    out.sync().map_err(Error::image(pid))?;
    stats.memwrite_time += t.elapsed();
    stats.pages_written += plan.pages;

    let upid = named as u32;
    written.push(dir.file_path(ImageFile::Pagemap(upid.into())));
    let mut pm = dir
        .create_pagemap(upid, pages_id)
        .map_err(Error::image(pid))?;
    for r in &plan.runs {
        pm.add(r.vaddr, r.nr_pages, r.flags)
            .map_err(Error::image(pid))?;
    }
    pm.finish().map_err(Error::image(pid))?;
    Ok(())
}

/// Sends the pagemap and pages of `plan` to the page server of `client`
/// (the pagemap opened), read from the running process, and ends the
/// session.
fn send_pages(
    pid: Pid,
    named: Pid,
    mut client: rcriu_page_server::Client,
    plan: &Plan,
    stats: &mut DumpStats,
) -> Result<()> {
    let ps = |source| Error::PageServer { pid, source };
    let dst = rcriu_page_server::Dst::Pid(named as u32);
    let t = Instant::now();
    let mut cursor = 0;
    for r in &plan.runs {
        client.add(dst, r.vaddr, r.nr_pages, r.flags).map_err(ps)?;
        if r.flags & rcriu_images::pages::PE_PRESENT == 0 {
            continue;
        }
        // The run's pages, from the plan's ranges (which merge runs).
        let (lo, hi) = (r.vaddr, r.end());
        while let Some((v, _)) = plan.iovs.get(cursor) {
            let end = v.base + v.len;
            if end <= lo {
                cursor += 1;
                continue;
            }
            if v.base >= hi {
                break;
            }
            let piece = IoVec {
                base: v.base.max(lo),
                len: end.min(hi) - v.base.max(lo),
            };
            read_pages(pid, &piece, &mut |b| client.send_pages(b).map_err(ps))?;
            if end > hi {
                break;
            }
            cursor += 1;
        }
    }
    client.close().map_err(ps)?;
    stats.memwrite_time = t.elapsed();
    stats.pages_written = plan.pages;
    Ok(())
}

/// The inventory, `stats-dump` and (`manifest`) rcriu's manifest.
fn write_inventory(
    pid: Pid,
    dir: &ImageDir,
    o: &Options,
    stats: &mut DumpStats,
    written: &mut Vec<PathBuf>,
    manifest: bool,
) -> Result<()> {
    let mut inv = inventory::entry(pb::TaskKobjIdsEntry::default(), 0, inventory::Lsm::host());
    inv.root_ids = None;
    inv.root_cg_set = None;
    inv.pre_dump_mode = Some(o.mode);
    inv.dump_uptime = uptime();
    written.push(dir.file_path(ImageFile::Inventory));
    dir.write_one(ImageFile::Inventory, &inv)
        .map_err(Error::image(pid))?;

    let stats_in = o.stats_dir.as_deref().unwrap_or(&o.dir);
    let stats_dir = ImageDir::create(stats_in).map_err(Error::image(pid))?;
    if same(stats_in, &o.dir) {
        written.push(dir.file_path(ImageFile::StatsDump));
    }
    stats_dir
        .write_one(ImageFile::StatsDump, &stats.entry())
        .map_err(Error::image(pid))?;
    if !manifest {
        log::info!("the pages of {pid} went to a page server: no manifest");
        return Ok(());
    }
    let names: Vec<String> = written
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
        .collect();
    rcriu_images::manifest::Manifest::build(dir, names.iter().map(String::as_str))
        .and_then(|m| m.write(dir))
        .map_err(Error::image(pid))?;
    written.push(dir.path().join(rcriu_images::manifest::MANIFEST));
    Ok(())
}

fn same(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The system's uptime in CRIU's unit (hundredths of a second), as the
/// inventory records it.
fn uptime() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some((secs * 100.0) as u64)
}

/// Chunks read from the process at once.
const CHUNK: usize = 4 << 20;

/// Gives the pages of `v` to `out` (the pages image, or the page server),
/// read from the running process: `process_vm_readv`, then
/// /proc/PID/mem for a page it could not read, then zeroes for a page
/// that is gone.
fn read_pages(pid: Pid, v: &IoVec, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u8; CHUNK.min(v.len as usize)];
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok();
    let mut done = 0u64;
    while done < v.len {
        let n = ((v.len - done) as usize).min(buf.len());
        let at = v.base + done;
        let chunk = &mut buf[..n];
        let mut got = 0;
        while got < n {
            let here = at + got as u64;
            got += rcriu_compel::sys::process_vm_read(pid, here, &mut chunk[got..]).unwrap_or(0);
            if got >= n {
                break;
            }
            // One page the fast way could not read.
            let page = &mut chunk[got..got + PAGE];
            let here = at + got as u64;
            if !mem.as_ref().is_some_and(|m| read_page(m, here, page)) {
                log::debug!("pre-dump of {pid}: {here:#x} is gone, written as zeroes");
                page.fill(0);
            }
            got += PAGE;
        }
        out(chunk)?;
        done += n as u64;
    }
    Ok(())
}

const PAGE: usize = 4096;

/// Reads the page at `addr` through /proc/PID/mem.
fn read_page(mem: &std::fs::File, addr: u64, page: &mut [u8]) -> bool {
    use std::os::unix::fs::FileExt;
    mem.read_exact_at(page, addr).is_ok()
}
