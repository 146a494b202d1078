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
//! The pages themselves are written by the parasite: it `vmsplice`s them
//! into a pipe that is `splice`d into `pages-1.img`, in the pagemap's
//! order.

use rcriu_compel::abi::IoVec;
use rcriu_images::pages::{PE_LAZY, PE_PRESENT};
use rcriu_proc::{PageCategories, Pagemap, Pid, ScanMethod};

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
    /// whatever their flags).
    pub iovs: Vec<IoVec>,
    /// CRIU's `pages_scanned`: pages looked at one by one, plus one for
    /// each stretch skipped at once.
    pub scanned: u64,
    pub pages: u64,
}

impl Plan {
    fn push(&mut self, start: u64, end: u64, flags: u32) {
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
            Some(v) if v.base + v.len == start => v.len += end - start,
            _ => self.iovs.push(IoVec {
                base: start,
                len: end - start,
            }),
        }
    }

    /// The bytes the pages take in `pages-N.img`.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE
    }
}

/// Whether a page of these categories is dumped (CRIU asks PAGEMAP_SCAN
/// for pages present or swapped that are not the zero page nor file
/// pages).
fn wanted(c: PageCategories) -> bool {
    c.intersects(PageCategories::PRESENT | PageCategories::SWAPPED)
        && !c.intersects(PageCategories::PFNZERO | PageCategories::FILE | PageCategories::GUARD)
}

/// Plans the dump of `areas`' pages. `sp` is the thread's stack pointer:
/// CRIU means to keep the stack's page out of lazy restore, but its test
/// compares the page offsets only, so every lazy page loses the flag when
/// sp is page aligned and none does otherwise; rcriu writes the same.
pub fn plan(pid: Pid, areas: &[Area], pagemap: &mut Pagemap, sp: u64) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut ranges = Vec::new();
    let sp_aligned = sp.is_multiple_of(PAGE);
    for a in areas {
        let lazy = match a.pages {
            Pages::None => continue,
            Pages::All => {
                plan.scanned += (a.end() - a.start()) / PAGE;
                plan.push(a.start(), a.end(), PE_PRESENT);
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
        let method = pagemap
            .scan(
                a.start(),
                a.end(),
                PageCategories::PRESENT | PageCategories::SWAPPED,
                &mut ranges,
            )
            .map_err(Error::proc(pid))?;
        let mut at = a.start();
        let mut dumped = 0;
        let mut gaps = 0;
        for r in ranges.iter().filter(|r| wanted(r.categories)) {
            if r.start > at {
                gaps += 1;
            }
            plan.push(r.start, r.end, flags);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_by_flags_and_iovs_by_address() {
        let mut p = Plan::default();
        p.push(0x1000, 0x3000, PE_PRESENT);
        p.push(0x3000, 0x4000, PE_PRESENT);
        p.push(0x4000, 0x5000, PE_PRESENT | PE_LAZY);
        p.push(0x7000, 0x8000, PE_PRESENT | PE_LAZY);
        assert_eq!(p.runs.len(), 3);
        assert_eq!(p.runs[0].nr_pages, 3);
        assert_eq!(p.iovs.len(), 2);
        assert_eq!(p.iovs[0].len, 0x4000);
        assert_eq!(p.pages, 5);
        assert_eq!(p.bytes(), 5 * 4096);
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
