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
//! This version pre-dumps a process without children.
//!
//! [`track`]: crate::track

use std::path::{Path, PathBuf};
use std::time::Instant;

use rcriu_compel::Seized;
use rcriu_compel::abi::IoVec;
use rcriu_images::pages::PagesWriter;
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
}

/// What the frozen part of a round found.
struct Round {
    plan: Plan,
    tracker: Tracker,
}

/// Pre-dumps a process.
pub fn run(o: &Options) -> Result<DumpStats> {
    let pid = o.pid;
    let begin = Instant::now();
    let mut stats = DumpStats::default();
    let dir = ImageDir::create(&o.dir).map_err(Error::image(pid))?;
    if let Some(p) = &o.parent {
        dir.link_parent(p).map_err(Error::image(pid))?;
    }
    let kids: Vec<Pid> = rcriu_compel::descendants(pid)
        .into_iter()
        .filter(|&p| p != pid)
        .collect();
    if !kids.is_empty() {
        return Err(Error::unsupported(
            pid,
            format!("children {kids:?} (a pre-dump of a process tree)"),
        ));
    }
    let start = Instant::now();
    let seized = Seized::seize(pid).map_err(Error::compel(pid))?;
    let frozen = Instant::now();
    stats.freezing_time = frozen - start;
    let round = frozen_part(&seized, o, &mut stats);
    seized.release().map_err(Error::compel(pid))?;
    stats.frozen_time = frozen.elapsed();
    let Round { plan, tracker } = round?;
    log::info!(
        "pre-dump of {pid}: frozen {:?}, {} pages to write, {} runs",
        stats.frozen_time,
        plan.pages,
        plan.runs.len()
    );

    let mut written: Vec<PathBuf> = Vec::new();
    let r = write_images(pid, &dir, o, &plan, &mut stats, &mut written);
    if let Err(e) = r {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    tracker.keep(&o.dir)?;
    stats.total_time = begin.elapsed();
    Ok(stats)
}

/// The frozen part: the pages chosen, the tracking armed again.
fn frozen_part(seized: &Seized, o: &Options, stats: &mut DumpStats) -> Result<Round> {
    let pid = o.pid;
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
    let plan = pages::plan_with(pid, &eligible, &mut pagemap, sp, &parent)?;
    stats.pages_scanned = plan.scanned;
    stats.pages_skipped_parent = plan.parent_pages;
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
    stats.memdump_time = t_pages.elapsed();
    Ok(Round { plan, tracker })
}

fn write_images(
    pid: Pid,
    dir: &ImageDir,
    o: &Options,
    plan: &Plan,
    stats: &mut DumpStats,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let pages_id = 1;
    let t = Instant::now();
    let file = ImageFile::Pages(pages_id.into());
    written.push(dir.file_path(file));
    let mut out = dir.create_pages(pages_id).map_err(Error::image(pid))?;
    for (v, _) in &plan.iovs {
        read_pages(pid, v, &mut out)?;
    }
    out.sync().map_err(Error::image(pid))?;
    stats.memwrite_time = t.elapsed();
    stats.pages_written = plan.pages;

    let upid = pid as u32;
    written.push(dir.file_path(ImageFile::Pagemap(upid.into())));
    let mut pm = dir
        .create_pagemap(upid, pages_id)
        .map_err(Error::image(pid))?;
    for r in &plan.runs {
        pm.add(r.vaddr, r.nr_pages, r.flags)
            .map_err(Error::image(pid))?;
    }
    pm.finish().map_err(Error::image(pid))?;

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

/// Appends the pages of `v` to the pages image, read from the running
/// process: `process_vm_readv`, then /proc/PID/mem for a page it could not
/// read, then zeroes for a page that is gone.
fn read_pages(pid: Pid, v: &IoVec, out: &mut PagesWriter) -> Result<()> {
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
        out.write_pages(chunk).map_err(Error::image(pid))?;
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
