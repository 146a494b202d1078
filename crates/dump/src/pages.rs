//! `pagemap-PID.img` and `pages-N.img`: which pages go into the dump, in
//! what runs, with what flags.
//!
//! As CRIU 4.2 chooses them: in every private area but vvar and vsyscall,
//! the pages present or swapped out that are neither the zero page nor
//! file pages (so of a private file mapping only those copied on write);
//! in the vdso, every page. Anonymous private pages are flagged
//! PRESENT|LAZY, the others PRESENT. Runs that touch and have the same
//! flags are one entry, across areas too.
//!
//! The pages themselves are written through the parasite, in the
//! pagemap's order (`page_writers`: into room reserved on tmpfs with its
//! own `pwritev`, otherwise `vmsplice`d into a pipe that is `splice`d into
//! `pages-1.img`). vmsplice needs pages the task can read: the few pages of areas
//! without PROT_READ (written before an mprotect) are read through
//! /proc/PID/mem instead, which leaves the task untouched (CRIU makes such
//! areas readable for the time of the dump, which a dumper killed at the
//! wrong moment would leave so).

use rcriu_compel::abi::IoVec;
use rcriu_images::ImageDir;
use rcriu_images::manifest::Manifest;
use rcriu_images::pages::{PE_LAZY, PE_PARENT, PE_PRESENT, PagesWriter};
use rcriu_proc::{PageCategories, PageRange, Pagemap, Pid, ScanMethod};

use crate::mm::{Area, Pages};
use crate::{Error, Result};

const PAGE: u64 = 4096;

/// One pagemap entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub flags: u32,
}

impl Run {
    pub fn end(&self) -> u64 {
        self.vaddr + self.nr_pages * PAGE
    }
}

/// The pages to dump, and CRIU's counts of them.
#[derive(Debug, Default)]
pub struct Plan {
    pub runs: Vec<Run>,
    /// The same pages as ranges for the parasite (touching runs merged
    /// whatever their flags), each with whether the task can read it:
    /// vmsplice cannot take pages of an area without PROT_READ.
    pub iovs: Vec<(IoVec, bool)>,
    /// CRIU's `pages_scanned`: pages looked at one by one, plus one for
    /// each stretch skipped at once.
    pub scanned: u64,
    pub pages: u64,
    /// Pages kept in the parent's images.
    pub parent_pages: u64,
    /// The frames of the pages written (when [`Parent::keep_frames`]).
    pub frames: Vec<(u64, u64)>,
    /// The guard regions (`MADV_GUARD_INSTALL`) the scans of the areas
    /// whose pages were looked at came across, `[start, end)` in order.
    pub guards: Vec<(u64, u64)>,
    /// Whether those scans could see guard regions (`PAGEMAP_SCAN`).
    pub saw_guards: bool,
}

impl Plan {
    fn push(&mut self, start: u64, end: u64, flags: u32, readable: bool) {
        if end <= start {
            return;
        }
        let nr = (end - start) / PAGE;
        self.pages += nr;
        match self.runs.last_mut() {
            Some(r) if r.end() == start && r.flags == flags => r.nr_pages += nr,
            _ => self.runs.push(Run {
                vaddr: start,
                nr_pages: nr,
                flags,
            }),
        }
        match self.iovs.last_mut() {
            Some((v, r)) if v.base + v.len == start && *r == readable => v.len += end - start,
            _ => self.iovs.push((
                IoVec {
                    base: start,
                    len: end - start,
                },
                readable,
            )),
        }
    }

    /// Adds `[start, end)` as pages kept in the parent's images.
    fn push_parent(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let nr = (end - start) / PAGE;
        self.parent_pages += nr;
        match self.runs.last_mut() {
            Some(r) if r.end() == start && r.flags == PE_PARENT => r.nr_pages += nr,
            _ => self.runs.push(Run {
                vaddr: start,
                nr_pages: nr,
                flags: PE_PARENT,
            }),
        }
    }

    /// The bytes the pages take in `pages-N.img`.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE
    }

    /// A lazy dump's plan (`--lazy-pages`): the lazy runs stay in the
    /// pagemap flagged `PE_LAZY` alone, as CRIU 4.2 writes them, their
    /// pages out of the pages image; returns them (`[start, end)`).
    pub fn take_lazy(&mut self) -> Vec<(u64, u64)> {
        let mut lazy = Vec::new();
        for r in &mut self.runs {
            if r.flags & PE_LAZY != 0 && r.flags & PE_PRESENT != 0 {
                r.flags = PE_LAZY;
                lazy.push((r.vaddr, r.end()));
            }
        }
        let nr: u64 = lazy.iter().map(|(s, e)| (e - s) / PAGE).sum();
        self.pages -= nr;
        let mut kept = Vec::with_capacity(self.iovs.len());
        let mut j = 0;
        for &(v, readable) in &self.iovs {
            let (mut at, end) = (v.base, v.base + v.len);
            while j < lazy.len() && lazy[j].1 <= at {
                j += 1;
            }
            let mut k = j;
            while at < end {
                let (cut_s, cut_e) = match lazy.get(k) {
                    Some(&(s, e)) if s < end => (s.max(at), e.min(end)),
                    _ => (end, end),
                };
                if cut_s > at {
                    kept.push((
                        IoVec {
                            base: at,
                            len: cut_s - at,
                        },
                        readable,
                    ));
                }
                at = cut_e;
                k += 1;
            }
        }
        self.iovs = kept;
        lazy
    }
}

fn readable(a: &Area) -> bool {
    a.entry.prot & libc::PROT_READ as u32 != 0
}

/// Whether a page of these categories is dumped (CRIU asks PAGEMAP_SCAN
/// for pages present or swapped that are not the zero page nor file
/// pages).
pub(crate) fn wanted(c: PageCategories) -> bool {
    c.intersects(PageCategories::PRESENT | PageCategories::SWAPPED)
        && !c.intersects(PageCategories::PFNZERO | PageCategories::FILE | PageCategories::GUARD)
}

/// Plans the dump of `areas`' pages. `sp` is the thread's stack pointer:
/// CRIU means to keep the stack's page out of lazy restore, but its test
/// compares the page offsets only, so every lazy page loses the flag when
/// sp is page aligned and none does otherwise; rcriu writes the same.
pub fn plan(pid: Pid, areas: &[Area], pagemap: &mut Pagemap, sp: u64) -> Result<Plan> {
    plan_with(pid, areas, pagemap, sp, &Parent::default(), None)
}

/// The end of the user address space scanned ahead (x86-64's 47 bits;
/// an area above it is scanned on its own).
const USER_END: u64 = 0x7fff_ffff_f000;

/// A frozen process's pages, present or swapped, found by one
/// `PAGEMAP_SCAN` of its whole address space on a thread of its own
/// while `smaps` is read: both walk every page table, and the areas to
/// plan are only known once smaps is in. The scan asks what [`scan`]
/// asks of an anonymous private area, so its ranges cut at an area's
/// bounds are what that area's own scan would give; the process is
/// frozen, and what rcriu itself writes in it meanwhile (the lifeline's
/// frame below a thread's stack pointer, the parasite's own area) is not
/// its memory.
pub struct Ahead {
    pid: Pid,
    read: std::thread::JoinHandle<rcriu_proc::Result<Vec<PageRange>>>,
}

impl Ahead {
    pub fn start(pid: Pid) -> std::io::Result<Ahead> {
        let read = std::thread::Builder::new()
            .name("pages ahead".into())
            .spawn(move || {
                let t = std::time::Instant::now();
                let mut pagemap = rcriu_proc::Task::open(pid)?.pagemap()?;
                let mut out = Vec::new();
                pagemap.scan_ioctl_telling(0, USER_END, ANON_ANY_OF, ANON_TOLD, &mut out)?;
                log::debug!("pages of {pid} scanned ahead in {:?}", t.elapsed());
                Ok(out)
            })?;
        Ok(Ahead { pid, read })
    }

    /// The ranges found, or `None` (then each area is scanned on its
    /// own, which says what went wrong if anything does).
    pub fn join(self) -> Option<Scanned> {
        match self.read.join() {
            Ok(Ok(ranges)) => Some(Scanned { ranges }),
            Ok(Err(e)) => {
                log::debug!("pages of {} not scanned ahead: {e}", self.pid);
                None
            }
            Err(_) => None,
        }
    }
}

/// What [`Ahead`] found.
#[derive(Debug, Default)]
pub struct Scanned {
    ranges: Vec<PageRange>,
}

impl Scanned {
    /// Appends the ranges of `[start, end)` to `out`; false when the scan
    /// did not cover it.
    fn area(&self, start: u64, end: u64, out: &mut Vec<PageRange>) -> bool {
        if end > USER_END {
            return false;
        }
        let first = self.ranges.partition_point(|r| r.end <= start);
        for r in self.ranges[first..].iter().take_while(|r| r.start < end) {
            out.push(PageRange {
                start: r.start.max(start),
                end: r.end.min(end),
                categories: r.categories,
            });
        }
        true
    }
}

/// The frames of the pages a process wrote, `(address, frame)` by
/// address ([`Plan::frames`]), shared with the planning of its children.
pub type Frames = std::rc::Rc<Vec<(u64, u64)>>;

/// What of the pages is kept in the parent's images (`track`).
#[derive(Debug, Default)]
pub struct Parent {
    /// The areas (`[start, end)`, as in `areas`) whose pages not written
    /// since the parent round (the scan's `PAGE_IS_WRITTEN`) are in the
    /// parent's images.
    pub tracked: Vec<(u64, u64)>,
    /// Whether pagemap may show write-protect markers as swapped pages
    /// (areas are registered for tracking), which are not pages.
    pub markers: bool,
    /// The frames of the pages the parent process wrote to its own pages
    /// image, by address (a [`Plan::frames`]): a page at the same address
    /// on the same frame is the parent's still shared since fork, and is
    /// kept in the parent's images instead of written again.
    pub like: Option<Frames>,
    /// Whether to note the frame of each page written ([`Plan::frames`]),
    /// for children to be compared with.
    pub keep_frames: bool,
}

/// [`plan`], the pages of `parent`'s tracked areas not written since the
/// parent round written as kept in the parent's images.
pub fn plan_with(
    pid: Pid,
    areas: &[Area],
    pagemap: &mut Pagemap,
    sp: u64,
    parent: &Parent,
    ahead: Option<&Scanned>,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut ranges = Vec::new();
    let sp_aligned = sp.is_multiple_of(PAGE);
    for a in areas {
        let lazy = match a.pages {
            Pages::None => continue,
            Pages::All => {
                plan.scanned += (a.end() - a.start()) / PAGE;
                plan.push(a.start(), a.end(), PE_PRESENT, readable(a));
                continue;
            }
            Pages::Touched { lazy } => lazy,
        };
        let flags = if lazy && !sp_aligned {
            PE_PRESENT | PE_LAZY
        } else {
            PE_PRESENT
        };
        ranges.clear();
        let method = scan(pid, a, pagemap, ahead, &mut ranges)?;
        if method == ScanMethod::Ioctl {
            plan.saw_guards = true;
            for r in ranges
                .iter()
                .filter(|r| r.categories.contains(PageCategories::GUARD))
            {
                plan.guards.push((r.start, r.end));
            }
        }
        let mut at = a.start();
        let mut dumped = 0;
        let mut gaps = 0;
        let mut pieces = Vec::new();
        let tracked = parent.tracked.contains(&(a.start(), a.end()));
        for r in ranges.iter().filter(|r| wanted(r.categories)) {
            if r.start > at {
                gaps += 1;
            }
            pieces.clear();
            if parent.markers && !r.categories.contains(PageCategories::PRESENT) {
                crate::track::without_markers(pid, pagemap, r.start, r.end, &mut pieces)?;
            } else {
                pieces.push((r.start, r.end));
            }
            let in_parent = tracked && !r.categories.contains(PageCategories::WRITTEN);
            for &(s, e) in &pieces {
                if in_parent {
                    plan.push_parent(s, e);
                } else if parent.like.is_some() || parent.keep_frames {
                    by_frame(pid, pagemap, parent, &mut plan, (s, e), flags, readable(a))?;
                } else {
                    plan.push(s, e, flags, readable(a));
                }
            }
            dumped += (r.end - r.start) / PAGE;
            at = r.end;
        }
        if at < a.end() {
            gaps += 1;
        }
        plan.scanned += match method {
            // CRIU's walk over PAGEMAP_SCAN's regions steps over each gap
            // at once; over pagemap entries, page by page.
            ScanMethod::Ioctl => dumped + gaps,
            ScanMethod::PagemapRead => (a.end() - a.start()) / PAGE,
        };
    }
    Ok(plan)
}

/// The pages of `a` present or swapped (and its guard regions, which
/// show as swapped), by `PAGEMAP_SCAN` when the kernel has it. Of an
/// anonymous private area, whose pages are never file pages, the kernel
/// is not asked whether they are: that spares it a look at each page's
/// `struct page`, most of the cost of scanning a large area.
fn scan(
    pid: Pid,
    a: &Area,
    pagemap: &mut Pagemap,
    ahead: Option<&Scanned>,
    ranges: &mut Vec<PageRange>,
) -> Result<ScanMethod> {
    let anon = a.entry.status & crate::mm::status::ANON_PRIVATE != 0;
    if anon && ahead.is_some_and(|s| s.area(a.start(), a.end(), ranges)) {
        return Ok(ScanMethod::Ioctl);
    }
    if anon && pagemap.scan_support().map_err(Error::proc(pid))?.is_some() {
        pagemap
            .scan_ioctl_telling(a.start(), a.end(), ANON_ANY_OF, ANON_TOLD, ranges)
            .map_err(Error::proc(pid))?;
        return Ok(ScanMethod::Ioctl);
    }
    pagemap
        .scan(a.start(), a.end(), ANON_ANY_OF, ranges)
        .map_err(Error::proc(pid))
}

/// The pages a scan looks for.
const ANON_ANY_OF: PageCategories = PageCategories::PRESENT.union(PageCategories::SWAPPED);
/// What a scan of anonymous private memory is told of them.
const ANON_TOLD: PageCategories = PageCategories::WRITTEN
    .union(PageCategories::PFNZERO)
    .union(PageCategories::GUARD);

/// Plans `[start, end)` page by page: a page on the frame the parent's
/// page at the same address is on (`parent.like`) is kept in the
/// parent's images; the others are written, their frames noted when
/// `parent.keep_frames`. Frames unknown (a swapped page, or pagemap read
/// without CAP_SYS_ADMIN shows frame 0) are never alike.
fn by_frame(
    pid: Pid,
    pagemap: &mut Pagemap,
    parent: &Parent,
    plan: &mut Plan,
    (start, end): (u64, u64),
    flags: u32,
    readable: bool,
) -> Result<()> {
    let mut entries = Vec::with_capacity(((end - start) / PAGE) as usize);
    pagemap
        .read(start, end, &mut entries)
        .map_err(Error::proc(pid))?;
    let like: &[(u64, u64)] = parent.like.as_deref().map_or(&[], |v| v);
    let mut cursor = like.partition_point(|&(a, _)| a < start);
    let mut run_start = start;
    let mut run_shared = false;
    for (i, e) in entries.iter().enumerate() {
        let addr = start + i as u64 * PAGE;
        let frame = e.pfn().filter(|&f| f != 0);
        while like.get(cursor).is_some_and(|&(a, _)| a < addr) {
            cursor += 1;
        }
        let shared = frame.is_some() && like.get(cursor) == Some(&(addr, frame.unwrap_or(0)));
        if !shared
            && parent.keep_frames
            && let Some(f) = frame
        {
            plan.frames.push((addr, f));
        }
        if shared != run_shared {
            plan.push_either(run_start, addr, run_shared, flags, readable);
            (run_start, run_shared) = (addr, shared);
        }
    }
    plan.push_either(run_start, end, run_shared, flags, readable);
    Ok(())
}

impl Plan {
    fn push_either(&mut self, start: u64, end: u64, in_parent: bool, flags: u32, readable: bool) {
        if in_parent {
            self.push_parent(start, end);
        } else {
            self.push(start, end, flags, readable);
        }
    }
}

/// The images that keep, once, the pages children share with their
/// parents since fork: `parent/` in the images directory, laid out as a
/// pre-dump's images ([`ImageDir::kept`]). For each child with such
/// pages, `pagemap-CHILD.img` lists its parent's written pages, in the
/// parent's own `pages-N.img` (linked there): the child's `PE_PARENT`
/// entries find them as a restore finds a pre-dump's.
pub struct Kept {
    dir: ImageDir,
    /// Whether this dump made the directory.
    made: bool,
    /// Its files written (the pages images linked are in `linked`).
    written: Vec<String>,
    linked: std::collections::BTreeSet<u32>,
}

impl Kept {
    /// Whether the images directory at `path` may keep pages so.
    pub fn possible(path: &std::path::Path) -> bool {
        ImageDir::kept_possible(path)
    }

    pub fn make(images: &ImageDir) -> rcriu_images::Result<Kept> {
        let (dir, made) = images.kept()?;
        Ok(Kept {
            dir,
            made,
            written: vec![rcriu_images::KEPT_MARK.to_owned()],
            linked: Default::default(),
        })
    }

    /// Keeps the pages of child `pid` found in its parent's `runs`
    /// (its pagemap, written to `pages-<pages_id>.img` of `images`).
    pub fn add(
        &mut self,
        images: &ImageDir,
        pid: u32,
        pages_id: u32,
        runs: &[Run],
    ) -> rcriu_images::Result<()> {
        let mut pm = self.dir.create_pagemap(pid, pages_id)?;
        for r in runs.iter().filter(|r| r.flags & PE_PRESENT != 0) {
            pm.add(r.vaddr, r.nr_pages, r.flags)?;
        }
        pm.finish()?;
        self.written
            .push(rcriu_images::ImageFile::Pagemap(pid.into()).name());
        if self.linked.insert(pages_id) {
            self.dir.link_pages(images, pages_id)?;
        }
        Ok(())
    }

    /// Writes its manifest; the pages images linked have the digests
    /// they have in the dump's own manifest (`images`).
    pub fn write_manifest(&self, images: &Manifest) -> rcriu_images::Result<()> {
        let mut m = Manifest::build(&self.dir, self.written.iter().map(String::as_str))?;
        for id in &self.linked {
            let name = rcriu_images::ImageFile::Pages((*id).into()).name();
            let Some(d) = images.get(&name) else {
                return Err(rcriu_images::Error::Unwritable {
                    file: rcriu_images::manifest::MANIFEST.into(),
                    problem: rcriu_images::Problem::Other(format!(
                        "{name}, kept in parent/, is not in the dump's manifest"
                    )),
                });
            };
            m = m.with(&name, *d);
        }
        m.write(&self.dir)
    }

    /// Removes what this dump wrote there.
    pub fn discard(self) {
        let linked = self
            .linked
            .iter()
            .map(|id| rcriu_images::ImageFile::Pages((*id).into()).name());
        for name in self.written.iter().cloned().chain(linked) {
            let p = self.dir.path().join(name);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("cannot remove {}: {e}", p.display());
            }
        }
        if self.made {
            let _ = std::fs::remove_file(self.dir.path().join(rcriu_images::manifest::MANIFEST));
            let _ = std::fs::remove_dir(self.dir.path());
        }
    }
}

/// Appends the pages of `v`, in an area the task cannot read, to the
/// pages image, read through /proc/PID/mem (which may read them); returns
/// the bytes written.
pub fn copy_unreadable(pid: Pid, v: &IoVec, out: &mut PagesWriter) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/mem");
    let mem = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
    let mut buf = vec![0u8; (v.len as usize).min(1 << 20)];
    let mut done = 0;
    while done < v.len {
        let n = ((v.len - done) as usize).min(buf.len());
        mem.read_exact_at(&mut buf[..n], v.base + done)
            .map_err(Error::file(pid, &path))?;
        out.write_pages(&buf[..n]).map_err(Error::image(pid))?;
        done += n as u64;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_by_flags_and_iovs_by_address() {
        let mut p = Plan::default();
        p.push(0x1000, 0x3000, PE_PRESENT, true);
        p.push(0x3000, 0x4000, PE_PRESENT, true);
        p.push(0x4000, 0x5000, PE_PRESENT | PE_LAZY, true);
        p.push(0x7000, 0x8000, PE_PRESENT | PE_LAZY, true);
        p.push(0x8000, 0x9000, PE_PRESENT | PE_LAZY, false);
        assert_eq!(p.runs.len(), 3);
        assert_eq!(p.runs[0].nr_pages, 3);
        assert_eq!(p.runs[2].nr_pages, 2, "one run, whatever the protection");
        assert_eq!(p.iovs.len(), 3, "but not one range for the parasite");
        assert_eq!(p.iovs[0].0.len, 0x4000);
        assert!(!p.iovs[2].1);
        assert_eq!(p.pages, 6);
        assert_eq!(p.bytes(), 6 * 4096);
    }

    #[test]
    fn parent_pages_are_runs_but_not_reads() {
        let mut p = Plan::default();
        p.push(0x1000, 0x2000, PE_PRESENT, true);
        p.push_parent(0x2000, 0x4000);
        p.push_parent(0x4000, 0x5000);
        p.push(0x5000, 0x6000, PE_PRESENT, true);
        let runs: Vec<(u64, u64, u32)> = p
            .runs
            .iter()
            .map(|r| (r.vaddr, r.nr_pages, r.flags))
            .collect();
        assert_eq!(
            runs,
            vec![
                (0x1000, 1, PE_PRESENT),
                (0x2000, 3, PE_PARENT),
                (0x5000, 1, PE_PRESENT),
            ]
        );
        assert_eq!(p.pages, 2, "only the pages written here count");
        let iovs: Vec<(u64, u64)> = p.iovs.iter().map(|(v, _)| (v.base, v.len)).collect();
        assert_eq!(iovs, vec![(0x1000, 0x1000), (0x5000, 0x1000)]);
    }

    #[test]
    fn lazy_runs_leave_the_pages_image() {
        let mut p = Plan::default();
        p.push(0x1000, 0x2000, PE_PRESENT, true);
        p.push(0x2000, 0x5000, PE_PRESENT | PE_LAZY, true);
        p.push(0x5000, 0x6000, PE_PRESENT, true);
        p.push(0x8000, 0x9000, PE_PRESENT | PE_LAZY, false);
        let lazy = p.take_lazy();
        assert_eq!(lazy, vec![(0x2000, 0x5000), (0x8000, 0x9000)]);
        let flags: Vec<u32> = p.runs.iter().map(|r| r.flags).collect();
        assert_eq!(flags, vec![PE_PRESENT, PE_LAZY, PE_PRESENT, PE_LAZY]);
        let iovs: Vec<(u64, u64)> = p.iovs.iter().map(|(v, _)| (v.base, v.len)).collect();
        assert_eq!(iovs, vec![(0x1000, 0x1000), (0x5000, 0x1000)]);
        assert_eq!(p.pages, 2);
    }

    #[test]
    fn categories_dumped() {
        use PageCategories as C;
        assert!(wanted(C::PRESENT | C::WRITTEN));
        assert!(wanted(C::SWAPPED));
        assert!(!wanted(C::PRESENT | C::FILE));
        assert!(!wanted(C::PRESENT | C::PFNZERO));
        assert!(!wanted(C::WRITTEN));
    }
}
