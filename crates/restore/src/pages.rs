//! Pages: which runs of the pages file go where, batched into large
//! `preadv`s (file-contiguous runs, up to UIO_MAXIOV iovecs each).
//!
//! Pages kept in a parent dump (`PE_PARENT` entries, after pre-dumps) are
//! looked up through the chain of `parent` links, as CRIU does: each in
//! the parent's pagemap of the same pid, which may send it further up.
//! Each batch names the pages file it reads (`ReadBatch::file`): the
//! process's own pages image, or a parent's, read where it lies. A chain
//! deeper than `MAX_PAGES_FILES`, or with encrypted images, is gathered
//! first, in its pagemap's order, into one memfd read as a pages image.

use std::os::fd::OwnedFd;

use rcriu_images::pages::{PE_PARENT, PE_PRESENT, PageRun};
use rcriu_images::{ImageDir, ImageFile};
use rcriu_parasite_abi::restorer::{IoVec, MAX_IOV_BATCH, MAX_PAGES_FILES, Range, ReadBatch};

use crate::load::Images;
use crate::mm::MemPlan;
use crate::{Error, Result};

/// The reads that fill the areas.
#[derive(Debug, Default)]
pub struct PagePlan {
    pub pages_id: u32,
    pub iovs: Vec<IoVec>,
    pub batches: Vec<ReadBatch>,
    /// The batches into areas inherited from the parent (compared before
    /// written), their iovecs after the others in `iovs`.
    pub cow_batches: Vec<ReadBatch>,
    /// The ranges of inherited areas the process had no pages in.
    pub drops: Vec<Range>,
    /// Pages to read.
    pub pages: u64,
    /// Where the last batch ends in the pages file.
    batch_end: u64,
    /// The bytes of the last batch.
    batch_bytes: u64,
    /// The pages file of the last batch.
    batch_file: u32,
    /// The parents' pages images read in place (file `i + 1` of the
    /// batches is `parents[i]`), with their pages images' ids.
    pub parents: Vec<(ImageDir, u32)>,
    /// The pages gathered from the chain of parents, read in place of
    /// `pages-<pages_id>.img`.
    pub gathered: Option<OwnedFd>,
    /// Pages the process shares with its parent since fork, kept once in
    /// the parent's pages image ([`alike`]): where the process inherits
    /// them, nothing is read; the others are still to be read from
    /// `alike_from` ([`PagePlan::settle`]).
    pub alike_left: Vec<Piece>,
    /// The parent's pages image those pages are in.
    pub alike_from: Option<(ImageDir, u32)>,
    /// Pages alike with the parent's that the process inherits, unread.
    pub alike_inherited: u64,
    /// Pages left to the lazy-pages daemon (`--lazy-pages`).
    pub lazy: u64,
}

/// The most bytes one batch reads: batches are also what the restorer
/// and rcriu's page helper claim one at a time (`page_helper`).
pub const BATCH_BYTES: u64 = 8 << 20;

impl PagePlan {
    /// The bytes to read.
    pub fn bytes(&self) -> u64 {
        self.iovs.iter().map(|v| v.len).sum()
    }

    /// Every read, `(address, bytes, offset in the pages file, file)`,
    /// in the plan's order.
    fn pieces(&self, batches: &[ReadBatch]) -> Vec<(u64, u64, u64, u32)> {
        let mut out = Vec::new();
        for b in batches {
            let mut off = b.off;
            for v in &self.iovs[b.first as usize..][..b.nr as usize] {
                out.push((v.base, v.len, off, b.file));
                off += v.len;
            }
        }
        out
    }

    /// Splits the reads at the areas the process inherits (`inherited`,
    /// sorted, apart): those into them become compared reads
    /// (`cow_batches`), and what of them no read covers is dropped.
    pub fn inherit(&mut self, inherited: &[(u64, u64)]) {
        let pieces = self.pieces(&self.batches);
        let mut own = PagePlan::default();
        let mut cow = PagePlan::default();
        let mut covered: Vec<(u64, u64)> = Vec::new();
        for (addr, len, off, file) in pieces {
            by_area(inherited, addr, addr + len, |at, cut, into| {
                let n = cut - at;
                if into {
                    push(&mut cow, at, n, off + (at - addr), file);
                    covered.push((at, cut));
                } else {
                    push(&mut own, at, n, off + (at - addr), file);
                }
            });
        }
        // Pages alike with the parent's are in place where inherited.
        let mut left = Vec::new();
        let mut kept = 0;
        for p in std::mem::take(&mut self.alike_left) {
            by_area(inherited, p.vaddr, p.vaddr + p.len, |at, cut, into| {
                if into {
                    covered.push((at, cut));
                    kept += (cut - at) / rcriu_images::pages::PAGE_SIZE;
                } else {
                    left.push(Piece {
                        vaddr: at,
                        len: cut - at,
                        level: p.level,
                        off: p.off + (at - p.vaddr),
                    });
                }
            });
        }
        self.alike_inherited += kept;
        self.alike_left = left;
        covered.sort_unstable();
        self.drops = holes(inherited, &covered);
        let base = own.iovs.len() as u32;
        self.cow_batches = cow
            .batches
            .iter()
            .map(|b| ReadBatch {
                first: b.first + base,
                ..*b
            })
            .collect();
        self.iovs = own.iovs;
        self.iovs.extend(cow.iovs);
        self.batches = own.batches;
    }

    /// Reads the pages alike with the parent's that the process does not
    /// inherit (`alike_left`), when there are: `pages` (the file the
    /// plan reads) is copied into a memfd, those pages appended from the
    /// parent's pages image, and the memfd returned to be read instead.
    pub fn settle(&mut self, pages: &std::fs::File) -> Result<Option<OwnedFd>> {
        if self.alike_left.is_empty() {
            return Ok(None);
        }
        let Some((dir, id)) = self.alike_from.clone() else {
            return Err(Error::invalid(
                ImageFile::Pages(self.pages_id.into()).name(),
                "pages alike with the parent's, from no parent's pages",
            ));
        };
        let host = || Error::host("copying pages for pages kept with the parent's");
        let fd = rustix::fs::memfd_create("rcriu-pages", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| host()(e.into()))?;
        let mut out = std::fs::File::from(fd);
        let mut src = pages;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(0)).map_err(host())?;
        let mut at = std::io::copy(&mut src, &mut out).map_err(host())?;
        let from = dir.pages(id)?;
        let mut buf = vec![0u8; 4 << 20];
        // Never joined to a batch made before.
        self.batch_end = u64::MAX;
        for p in std::mem::take(&mut self.alike_left) {
            let mut done = 0;
            while done < p.len {
                let n = ((p.len - done) as usize).min(buf.len());
                from.read_pages_at(&mut buf[..n], p.off + done)?;
                std::io::Write::write_all(&mut out, &buf[..n]).map_err(host())?;
                done += n as u64;
            }
            push(self, p.vaddr, p.len, at, 0);
            self.pages += p.len / rcriu_images::pages::PAGE_SIZE;
            at += p.len;
        }
        Ok(Some(OwnedFd::from(out)))
    }
}

/// Cuts `[start, end)` at the edges of `areas` (sorted, apart): `f(at,
/// cut, inside)` for each piece, in order, `inside` when an area holds it.
fn by_area(areas: &[(u64, u64)], start: u64, end: u64, mut f: impl FnMut(u64, u64, bool)) {
    let mut at = start;
    while at < end {
        // The area holding `at`, or the next one.
        let i = areas.partition_point(|&(_, e)| e <= at);
        let (cut, inside) = match areas.get(i) {
            Some(&(s, e)) if s <= at => (e.min(end), true),
            Some(&(s, _)) => (s.min(end), false),
            None => (end, false),
        };
        f(at, cut, inside);
        at = cut;
    }
}

/// What of `areas` (sorted, apart) `covered` (sorted) leaves out.
fn holes(areas: &[(u64, u64)], covered: &[(u64, u64)]) -> Vec<Range> {
    let mut out = Vec::new();
    let mut c = covered.iter().peekable();
    for &(start, end) in areas {
        let mut at = start;
        while let Some(&&(cs, ce)) = c.peek() {
            if cs >= end {
                break;
            }
            if cs > at {
                out.push(Range { start: at, end: cs });
            }
            at = at.max(ce);
            c.next();
        }
        if at < end {
            out.push(Range { start: at, end });
        }
    }
    out
}

/// The deepest chain of parents followed.
const MAX_PARENTS: usize = 64;

/// Where the bytes of a run of pages are: in the pages image of the dump
/// `level` parents up, at `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub vaddr: u64,
    pub len: u64,
    pub level: usize,
    pub off: u64,
}

/// The pagemaps of a dump and of the parents looked at, each with its
/// pages image's id.
struct Chain {
    pid: u32,
    /// Shared, so that a lookup walking down the chain holds a level's
    /// runs while it reads the next (a copy per lookup cost a dump's
    /// check whole seconds over thousands of kept runs).
    levels: Vec<(ImageDir, std::rc::Rc<[PageRun]>, u32)>,
}

pub(crate) fn read_runs(dir: &ImageDir, pid: u32) -> Result<(Vec<PageRun>, u32)> {
    let mut r = dir.pagemap(pid)?;
    let mut runs = Vec::new();
    while let Some(run) = r.next_run()? {
        if !run.is_empty() {
            runs.push(run);
        }
    }
    Ok((runs, r.pages_id()))
}

impl Chain {
    /// The runs of the dump `level` parents up, read when first wanted.
    fn level(&mut self, level: usize) -> Result<std::rc::Rc<[PageRun]>> {
        while self.levels.len() <= level {
            let (below, _, _) = self.levels.last().expect("the dump itself is level 0");
            let name = ImageFile::Pagemap(self.pid.into()).name();
            if self.levels.len() > MAX_PARENTS {
                return Err(Error::invalid(
                    name,
                    format!("pages kept more than {MAX_PARENTS} parents up"),
                ));
            }
            let Some(dir) = below.parent()? else {
                return Err(Error::invalid(
                    format!("{}/{name}", below.path().display()),
                    "has pages kept in a parent dump, but no parent images (no `parent` link)",
                ));
            };
            let (runs, id) = read_runs(&dir, self.pid)?;
            self.levels.push((dir, runs.into(), id));
        }
        Ok(self.levels[level].1.clone())
    }

    /// Appends where `[start, end)` is, looked up from `level` on.
    fn find(&mut self, level: usize, start: u64, end: u64, out: &mut Vec<Piece>) -> Result<()> {
        let runs = self.level(level)?;
        let mut at = start;
        let mut i = runs.partition_point(|r| r.end() <= start);
        while at < end {
            let Some(r) = runs.get(i).filter(|r| r.vaddr <= at) else {
                let (dir, _, _) = &self.levels[level];
                return Err(Error::invalid(
                    format!(
                        "{}/{}",
                        dir.path().display(),
                        ImageFile::Pagemap(self.pid.into()).name()
                    ),
                    format!("lacks the pages at {at:#x}, which a later dump keeps there"),
                ));
            };
            let stop = r.end().min(end);
            if r.flags & PE_PARENT != 0 {
                self.find(level + 1, at, stop, out)?;
            } else if let (true, Some(off)) = (r.flags & PE_PRESENT != 0, r.pages_offset) {
                out.push(Piece {
                    vaddr: at,
                    len: stop - at,
                    level,
                    off: off + (at - r.vaddr),
                });
            } else {
                return Err(Error::invalid(
                    ImageFile::Pagemap(self.pid.into()).name(),
                    format!("pages at {at:#x} neither present nor in a parent"),
                ));
            }
            at = stop;
            i += 1;
        }
        Ok(())
    }
}

/// The pieces of a dump's pages, and the dumps of the chain (each with
/// its pages image's id) they lie in, by level.
pub type Resolved = (Vec<Piece>, Vec<(ImageDir, u32)>);

/// Where every page of `pid`'s dump in `dir` is, through the chain of
/// parents, in the pagemap's order; `None` when the dump keeps none in a
/// parent.
pub fn resolve(dir: &ImageDir, pid: u32) -> Result<Option<Resolved>> {
    let (runs, id) = read_runs(dir, pid)?;
    if runs.iter().all(|r| r.flags & PE_PARENT == 0) {
        return Ok(None);
    }
    let mut chain = Chain {
        pid,
        levels: vec![(dir.clone(), runs.as_slice().into(), id)],
    };
    let mut out = Vec::new();
    for r in &runs {
        if r.flags & PE_PARENT != 0 {
            chain.find(1, r.vaddr, r.end(), &mut out)?;
        } else if let (true, Some(off)) = (r.flags & PE_PRESENT != 0, r.pages_offset) {
            out.push(Piece {
                vaddr: r.vaddr,
                len: r.len(),
                level: 0,
                off,
            });
        }
    }
    let dirs = chain.levels.into_iter().map(|(d, _, id)| (d, id)).collect();
    Ok(Some((out, dirs)))
}

/// A present run of `len` bytes at `vaddr`, at `off` in the pages image.
fn present(vaddr: u64, len: u64, off: u64) -> PageRun {
    PageRun {
        vaddr,
        nr_pages: len / rcriu_images::pages::PAGE_SIZE,
        flags: PE_PRESENT,
        pages_offset: Some(off),
    }
}

/// Splits `pieces` (of `img`'s process, [`resolve`]d through `dirs`)
/// into those alike with its parent's pages and the rest.
///
/// A dump of rcriu keeps the pages a child shares with its parent since
/// fork once (the dump's `parent/`, see `ImageDir::kept`): the child's
/// pagemap there names its parent's own pages image. A piece one level
/// up is alike when that image is the very file the parent's pages are
/// read from and the parent's pagemap has the same address at the same
/// offset: the parent's restored page then holds it, and a child that
/// inherits the page from the parent need read nothing.
fn alike(
    img: &Images,
    pieces: Vec<Piece>,
    dirs: &[(ImageDir, u32)],
) -> Result<(Vec<Piece>, Vec<Piece>)> {
    let ppid = img.task.pstree.ppid;
    let (Some((up, up_id)), true) = (dirs.get(1), ppid != 0) else {
        return Ok((Vec::new(), pieces));
    };
    let here = &dirs[0].0;
    if !here.exists(ImageFile::Pagemap(ppid.into())) {
        return Ok((Vec::new(), pieces));
    }
    let (theirs, their_id) = read_runs(here, ppid)?;
    let same_file = their_id == *up_id && {
        use std::os::unix::fs::MetadataExt;
        let id = |d: &ImageDir| -> Result<(u64, u64)> {
            let f = d.open_raw(ImageFile::Pages((*up_id).into()))?;
            let m = f
                .metadata()
                .map_err(Error::host("examining a pages image"))?;
            Ok((m.dev(), m.ino()))
        };
        id(here)? == id(up)?
    };
    if !same_file {
        return Ok((Vec::new(), pieces));
    }
    let (mut same, mut rest) = (Vec::new(), Vec::new());
    for p in pieces {
        if p.level != 1 {
            rest.push(p);
            continue;
        }
        let mut at = p.vaddr;
        let end = p.vaddr + p.len;
        let mut i = theirs.partition_point(|r| r.end() <= at);
        while at < end {
            let r = theirs.get(i).filter(|r| r.vaddr <= at);
            let stop = r.map_or(end, |r| r.end().min(end));
            let part = Piece {
                vaddr: at,
                len: stop - at,
                level: 1,
                off: p.off + (at - p.vaddr),
            };
            let theirs_at = r
                .filter(|r| r.flags & PE_PRESENT != 0 && r.flags & PE_PARENT == 0)
                .and_then(|r| Some(r.pages_offset? + (at - r.vaddr)));
            if theirs_at == Some(part.off) {
                same.push(part);
            } else {
                rest.push(part);
            }
            at = stop;
            i += 1;
        }
    }
    Ok((same, rest))
}

/// A chain level's pages image, as [`gather`] reads it.
enum Level<R> {
    Plain(std::fs::File),
    Sealed(R),
}

/// Gathers the pages of `pieces` into a memfd, back to back; returns it
/// and the runs that read them from it.
fn gather(pieces: &[Piece], dirs: &[(ImageDir, u32)]) -> Result<(OwnedFd, Vec<PageRun>)> {
    let fd = rustix::fs::memfd_create("rcriu-pages", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| Error::host("making a memfd for pages kept in parent dumps")(e.into()))?;
    let out = std::fs::File::from(fd);
    // Each level's pages image, opened once: a plain one is copied by the
    // kernel into the memfd (`sendfile`), an encrypted one decrypted
    // through a buffer.
    let files = dirs
        .iter()
        .map(|(d, id)| {
            Ok(if d.is_encrypted() {
                Level::Sealed(d.pages(*id)?)
            } else {
                Level::Plain(d.open_raw(ImageFile::Pages((*id).into()))?)
            })
        })
        .collect::<rcriu_images::Result<Vec<_>>>()?;
    let mut buf = Vec::new();
    let mut runs: Vec<PageRun> = Vec::new();
    let mut off = 0;
    for p in pieces {
        match &files[p.level] {
            Level::Plain(src) => copy_pages(src, p.off, &out, off, p.len, &dirs[p.level])?,
            Level::Sealed(sealed) => {
                buf.resize(4 << 20, 0);
                let mut done = 0;
                while done < p.len {
                    let n = ((p.len - done) as usize).min(buf.len());
                    sealed.read_pages_at(&mut buf[..n], p.off + done)?;
                    std::os::unix::fs::FileExt::write_all_at(&out, &buf[..n], off + done)
                        .map_err(Error::host("gathering pages kept in parent dumps"))?;
                    done += n as u64;
                }
            }
        }
        match runs.last_mut() {
            Some(r) if r.end() == p.vaddr => r.nr_pages += p.len / rcriu_images::pages::PAGE_SIZE,
            _ => runs.push(PageRun {
                vaddr: p.vaddr,
                nr_pages: p.len / rcriu_images::pages::PAGE_SIZE,
                flags: PE_PRESENT,
                pages_offset: Some(off),
            }),
        }
        off += p.len;
    }
    Ok((OwnedFd::from(out), runs))
}

/// Copies `len` bytes at `from` of the pages image `src` (of `dir`) to
/// `to` in `out`, in the kernel (one copy, not two through a buffer). A pages image that ends early is
/// corrupt, named.
fn copy_pages(
    src: &std::fs::File,
    from: u64,
    out: &std::fs::File,
    to: u64,
    len: u64,
    (dir, id): &(ImageDir, u32),
) -> Result<()> {
    let host = || Error::host("gathering pages kept in parent dumps");
    rustix::fs::seek(out, rustix::fs::SeekFrom::Start(to)).map_err(|e| host()(e.into()))?;
    let (mut from, mut left) = (from, len);
    while left > 0 {
        // `sendfile`, not `copy_file_range`: the memfd is on another
        // filesystem than the images.
        let n = rustix::fs::sendfile(out, src, Some(&mut from), left.min(1 << 30) as usize)
            .map_err(|e| host()(e.into()))?;
        if n == 0 {
            return Err(Error::invalid(
                format!(
                    "{}/{}",
                    dir.path().display(),
                    ImageFile::Pages((*id).into()).name()
                ),
                format!("ends at {from}, before the {left} bytes of pages kept there"),
            ));
        }
        left -= n as u64;
    }
    Ok(())
}

/// Plans the page reads of `img`'s process into the areas of `mem`, and
/// marks the areas that get pages.
///
/// With `lazy` (`--lazy-pages`), the pages [`crate::uffd::lazy_ranges`]
/// names are not read: their areas are marked [`Vma::lazy`] instead.
///
/// [`Vma::lazy`]: rcriu_parasite_abi::restorer::Vma::lazy
pub fn plan(img: &Images, mem: &mut MemPlan, lazy: bool) -> Result<PagePlan> {
    let pid = img.task.pid;
    let file = ImageFile::Pagemap(pid.into());
    let (runs, pages_id) = read_runs(&img.dir, pid)?;
    let lazy_set = match lazy {
        true => crate::uffd::lazy_ranges(&img.task.mm.vmas, &runs),
        false => Vec::new(),
    };
    let mut alike_pieces = Vec::new();
    let mut alike_from = None;
    let mut parents = Vec::new();
    let mut direct = None;
    let (runs, pages_len, gathered) = match resolve(&img.dir, pid)? {
        None => (runs, img.dir.pages_len(pages_id)?, None),
        Some((pieces, dirs)) => {
            let pieces = not_lazy(pieces, &lazy_set);
            let (same, rest) = alike(img, pieces, &dirs)?;
            if !same.is_empty() {
                alike_from = dirs.get(1).cloned();
            }
            alike_pieces = same;
            if rest.iter().all(|p| p.level == 0) {
                // All the rest in its own pages image: read there.
                let runs = rest
                    .iter()
                    .map(|p| present(p.vaddr, p.len, p.off))
                    .collect();
                (runs, img.dir.pages_len(pages_id)?, None)
            } else if dirs.len() <= MAX_PAGES_FILES && dirs.iter().all(|(d, _)| !d.is_encrypted()) {
                // Each piece read from its level's pages image.
                parents = dirs[1..].to_vec();
                direct = Some(rest);
                (Vec::new(), img.dir.pages_len(pages_id)?, None)
            } else {
                let (fd, runs) = gather(&rest, &dirs)?;
                let len = rest.iter().map(|p| p.len).sum();
                log::info!(
                    "{} bytes of pages of {pid} gathered from {} dumps",
                    len,
                    dirs.len()
                );
                (runs, len, Some(fd))
            }
        }
    };
    let mut lens = vec![pages_len];
    for (d, id) in &parents {
        lens.push(d.pages_len(*id)?);
    }
    let mut plan = PagePlan {
        pages_id,
        gathered,
        alike_from,
        parents,
        ..PagePlan::default()
    };
    for p in &alike_pieces {
        if !mark(&mut mem.vmas, p.vaddr, p.vaddr + p.len) {
            return Err(Error::invalid(
                file.name(),
                format!(
                    "pages at {:#x}-{:#x} lie outside the memory areas",
                    p.vaddr,
                    p.vaddr + p.len
                ),
            ));
        }
    }
    plan.alike_left = alike_pieces;
    // What to read: (run, pages file).
    let reads: Vec<(PageRun, u32)> = match direct {
        Some(pieces) => pieces
            .iter()
            .map(|p| (present(p.vaddr, p.len, p.off), p.level as u32))
            .collect(),
        None => runs.into_iter().map(|r| (r, 0)).collect(),
    };
    let mut vma_idx = 0usize;
    // The reads of each pages file after one another (in address order
    // within each): a file's pages then join into large batches however
    // the levels of a chain interleave.
    let mut pushes: Vec<(u32, u64, u64, u64)> = Vec::new();
    for (run, fidx) in reads {
        let Some(off) = run.pages_offset else {
            continue; // not in this dump's pages: nothing to read
        };
        if run.flags & PE_PRESENT == 0 {
            continue;
        }
        let len = lens[fidx as usize];
        if off + run.len() > len {
            let name = match fidx {
                0 => ImageFile::Pages(pages_id.into()).name(),
                k => {
                    let (d, id) = &plan.parents[k as usize - 1];
                    format!(
                        "{}/{}",
                        d.path().display(),
                        ImageFile::Pages((*id).into()).name()
                    )
                }
            };
            return Err(Error::invalid(
                name,
                format!(
                    "holds {len} bytes, but the pages of {:#x} end at {}",
                    run.vaddr,
                    off + run.len()
                ),
            ));
        }
        if let Some((s, e)) = mem.vdso
            && run.vaddr >= s
            && run.end() <= e
        {
            // The running vDSO takes its place.
            continue;
        }
        // Runs come in address order, as the areas do; a run may span
        // adjacent areas.
        while vma_idx < mem.vmas.len() && mem.vmas[vma_idx].end <= run.vaddr {
            vma_idx += 1;
        }
        let mut outside = None;
        crate::uffd::by_range(&lazy_set, run.vaddr, run.end(), |at, cut, inside| {
            if inside {
                return;
            }
            if !mark(&mut mem.vmas[vma_idx..], at, cut) {
                outside.get_or_insert((at, cut));
                return;
            }
            pushes.push((fidx, at, cut - at, off + (at - run.vaddr)));
            plan.pages += (cut - at) / rcriu_images::pages::PAGE_SIZE;
        });
        if let Some((s, e)) = outside {
            return Err(Error::invalid(
                file.name(),
                format!("pages at {s:#x}-{e:#x} lie outside the memory areas"),
            ));
        }
    }
    pushes.sort_by_key(|&(fidx, ..)| fidx);
    for (fidx, at, len, off) in pushes {
        push(&mut plan, at, len, off, fidx);
    }
    for &(s, e) in &lazy_set {
        plan.lazy += (e - s) / rcriu_images::pages::PAGE_SIZE;
        let i = mem.vmas.partition_point(|v| v.end <= s);
        match mem.vmas.get_mut(i) {
            Some(v) if v.start <= s && e <= v.end && v.fd < 0 && v.sysv == 0 => v.lazy = 1,
            _ => {
                return Err(Error::invalid(
                    file.name(),
                    format!("lazy pages at {s:#x}-{e:#x} lie outside the memory areas"),
                ));
            }
        }
    }
    Ok(plan)
}

/// `pieces` without what of them lies in `lazy` (sorted, apart).
fn not_lazy(pieces: Vec<Piece>, lazy: &[(u64, u64)]) -> Vec<Piece> {
    if lazy.is_empty() {
        return pieces;
    }
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        crate::uffd::by_range(lazy, p.vaddr, p.vaddr + p.len, |at, cut, inside| {
            if !inside {
                out.push(Piece {
                    vaddr: at,
                    len: cut - at,
                    level: p.level,
                    off: p.off + (at - p.vaddr),
                });
            }
        });
    }
    out
}

/// The dumped bytes of `[start, start + len)`, when one present run of
/// the pagemap holds them all.
pub fn read_range(img: &Images, start: u64, len: u64) -> Result<Option<Vec<u8>>> {
    let mut runs = img.dir.pagemap(img.task.pid)?;
    while let Some(run) = runs.next_run()? {
        let Some(off) = run.pages_offset else {
            continue;
        };
        if run.flags & PE_PRESENT != 0 && run.vaddr <= start && start + len <= run.end() {
            let mut buf = vec![0u8; len as usize];
            img.dir
                .read_pages_at(runs.pages_id(), &mut buf, off + (start - run.vaddr))?;
            return Ok(Some(buf));
        }
    }
    Ok(None)
}

/// Whether `[start, end)` lies inside areas of `vmas` (sorted) that
/// follow each other without a gap; marks those areas to be filled.
fn mark(vmas: &mut [rcriu_parasite_abi::restorer::Vma], start: u64, end: u64) -> bool {
    let mut at = start;
    for v in vmas {
        if v.start > at {
            return false;
        }
        if v.end > at {
            at = v.end;
            v.fill = 1;
        }
        if at >= end {
            return true;
        }
    }
    false
}

/// Adds `len` bytes at `addr` read from `off` of pages file `file`, cut
/// into batches of at most [`BATCH_BYTES`] and `MAX_IOV_BATCH` iovecs.
fn push(plan: &mut PagePlan, addr: u64, len: u64, off: u64, file: u32) {
    let mut done = 0;
    while done < len {
        let (addr, off) = (addr + done, off + done);
        let joins = plan.batches.last().is_some_and(|b| {
            plan.batch_end == off
                && plan.batch_file == file
                && plan.batch_bytes < BATCH_BYTES
                && (b.nr as usize) < MAX_IOV_BATCH
        });
        let room = if joins {
            BATCH_BYTES - plan.batch_bytes
        } else {
            BATCH_BYTES
        };
        let n = (len - done).min(room);
        done += n;
        plan.batch_end = off + n;
        plan.batch_file = file;
        if !joins {
            plan.batches.push(ReadBatch {
                off,
                first: plan.iovs.len() as u32,
                nr: 1,
                file,
                _pad: 0,
            });
            plan.iovs.push(IoVec { base: addr, len: n });
            plan.batch_bytes = n;
            continue;
        }
        plan.batch_bytes += n;
        // Extend the last iovec when the memory is contiguous too.
        let last = plan.iovs.last_mut().expect("a batch has iovecs");
        if last.base + last.len == addr {
            last.len += n;
        } else {
            plan.iovs.push(IoVec { base: addr, len: n });
            if let Some(b) = plan.batches.last_mut() {
                b.nr += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_may_span_adjacent_areas() {
        let v = |start, end| rcriu_parasite_abi::restorer::Vma {
            start,
            end,
            ..Default::default()
        };
        let mut vmas = [v(0x1000, 0x3000), v(0x3000, 0x5000), v(0x6000, 0x7000)];
        assert!(mark(&mut vmas, 0x2000, 0x4000));
        assert_eq!((vmas[0].fill, vmas[1].fill, vmas[2].fill), (1, 1, 0));
        assert!(!mark(&mut vmas, 0x4000, 0x6000), "a gap");
        assert!(!mark(&mut vmas, 0x6000, 0x8000), "past the end");
        assert!(!mark(&mut vmas[2..], 0x5000, 0x6000));
    }

    #[test]
    fn batches_join_file_contiguous_runs() {
        let mut p = PagePlan::default();
        push(&mut p, 0x1000, 0x1000, 0, 0);
        push(&mut p, 0x2000, 0x1000, 0x1000, 0); // contiguous both ways
        push(&mut p, 0x9000, 0x1000, 0x2000, 0); // file-contiguous only
        push(&mut p, 0xa000, 0x1000, 0x8000, 0); // a gap in the file
        assert_eq!(p.iovs.len(), 3);
        assert_eq!(
            p.iovs[0],
            IoVec {
                base: 0x1000,
                len: 0x2000
            }
        );
        assert_eq!(p.batches.len(), 2);
        assert_eq!(
            (p.batches[0].first, p.batches[0].nr, p.batches[0].off),
            (0, 2, 0)
        );
        assert_eq!(
            (p.batches[1].first, p.batches[1].nr, p.batches[1].off),
            (2, 1, 0x8000)
        );
    }

    #[test]
    fn inherited_areas_are_compared_and_their_holes_dropped() {
        let mut p = PagePlan::default();
        push(&mut p, 0x1000, 0x3000, 0, 0); // 0x1000-0x4000
        push(&mut p, 0x8000, 0x2000, 0x3000, 0); // 0x8000-0xa000
        push(&mut p, 0x20000, 0x1000, 0x5000, 0);
        // Inherited: 0x2000-0x3000 (inside the first read), 0x6000-0xc000
        // (the second read and holes both sides), 0x30000-0x31000 (no
        // pages at all).
        p.inherit(&[(0x2000, 0x3000), (0x6000, 0xc000), (0x30000, 0x31000)]);
        let own: Vec<(u64, u64, u64)> = p
            .pieces(&p.batches)
            .iter()
            .map(|&(a, l, o, _)| (a, l, o))
            .collect();
        assert_eq!(
            own,
            vec![
                (0x1000, 0x1000, 0),
                (0x3000, 0x1000, 0x2000),
                (0x20000, 0x1000, 0x5000)
            ]
        );
        let cow: Vec<(u64, u64, u64)> = p
            .pieces(&p.cow_batches)
            .iter()
            .map(|&(a, l, o, _)| (a, l, o))
            .collect();
        assert_eq!(
            cow,
            vec![(0x2000, 0x1000, 0x1000), (0x8000, 0x2000, 0x3000)]
        );
        let drops: Vec<(u64, u64)> = p.drops.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(
            drops,
            vec![(0x6000, 0x8000), (0xa000, 0xc000), (0x30000, 0x31000)]
        );
    }

    #[test]
    fn batches_are_cut_at_their_size() {
        let mut p = PagePlan::default();
        let mib = 1 << 20;
        push(&mut p, 0x100000, 20 * mib, 0, 0);
        push(&mut p, 0x100000 + 20 * mib, 3 * mib, 20 * mib, 0);
        push(&mut p, 0x10000000, 2 * mib, 23 * mib, 0); // file-contiguous only
        let sizes: Vec<u64> = p
            .batches
            .iter()
            .map(|b| {
                p.iovs[b.first as usize..][..b.nr as usize]
                    .iter()
                    .map(|v| v.len)
                    .sum()
            })
            .collect();
        assert_eq!(sizes, vec![8 * mib, 8 * mib, 8 * mib, mib]);
        let offs: Vec<u64> = p.batches.iter().map(|b| b.off).collect();
        assert_eq!(offs, vec![0, 8 * mib, 16 * mib, 24 * mib]);
        assert_eq!(p.batches[2].nr, 2, "memory jumps inside the third batch");
        assert_eq!(p.bytes(), 25 * mib);
        // Each iovec in its batch's order, the memory covered once.
        assert_eq!(p.iovs[2].base + p.iovs[2].len, 0x100000 + 23 * mib);
        assert_eq!((p.iovs[3].base, p.iovs[3].len), (0x10000000, mib));
        assert_eq!((p.iovs[4].base, p.iovs[4].len), (0x10100000, mib));
    }
}
