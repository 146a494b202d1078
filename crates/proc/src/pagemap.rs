//! `/proc/PID/pagemap`: one u64 per virtual page, read in large `pread`s,
//! and the `PAGEMAP_SCAN` ioctl (Linux 6.7) that returns ranges of pages
//! by category, with a fallback that computes the same ranges from plain
//! pagemap reads.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::OnceLock;

use bitflags::bitflags;

use crate::Pid;
use crate::error::{Error, Result};
use crate::sys;

/// One pagemap entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    pub const PRESENT: u64 = 1 << 63;
    pub const SWAPPED: u64 = 1 << 62;
    /// File page or shared anonymous page.
    pub const FILE_SHARED: u64 = 1 << 61;
    /// A guard region marker (`MADV_GUARD_INSTALL`, Linux 6.15).
    pub const GUARD: u64 = 1 << 58;
    pub const UFFD_WP: u64 = 1 << 57;
    /// Mapped by this process only.
    pub const EXCLUSIVE: u64 = 1 << 56;
    pub const SOFT_DIRTY: u64 = 1 << 55;
    /// Bits 0-54: the frame number of a present page, or swap type (0-4)
    /// and offset (5-54) of a swapped one.
    pub const PFN_MASK: u64 = (1 << 55) - 1;

    pub fn is_present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }

    /// Swapped out (or another swap-format entry: a migration entry, a
    /// guard marker — see [`PagemapEntry::is_guard`]).
    pub fn is_swapped(self) -> bool {
        self.0 & Self::SWAPPED != 0
    }

    pub fn is_file_or_shared_anon(self) -> bool {
        self.0 & Self::FILE_SHARED != 0
    }

    pub fn is_guard(self) -> bool {
        self.0 & Self::GUARD != 0
    }

    pub fn is_uffd_wp(self) -> bool {
        self.0 & Self::UFFD_WP != 0
    }

    pub fn is_exclusive(self) -> bool {
        self.0 & Self::EXCLUSIVE != 0
    }

    pub fn is_soft_dirty(self) -> bool {
        self.0 & Self::SOFT_DIRTY != 0
    }

    /// The frame number of a present page (0 when the reader lacks
    /// CAP_SYS_ADMIN).
    pub fn pfn(self) -> Option<u64> {
        self.is_present().then_some(self.0 & Self::PFN_MASK)
    }

    /// A userfaultfd write-protect marker in place of a page that is not
    /// there (pagemap shows it as swapped, of the last swap type,
    /// `SWP_PTE_MARKER`): the page reads as zeroes or as its file.
    pub fn is_uffd_marker(self) -> bool {
        self.is_uffd_wp()
            && self
                .swap()
                .is_some_and(|(ty, _)| ty == PTE_MARKER_SWAP_TYPE)
    }

    /// Swap type and offset of a swapped page.
    pub fn swap(self) -> Option<(u8, u64)> {
        if self.is_present() || !self.is_swapped() {
            return None;
        }
        let v = self.0 & Self::PFN_MASK;
        Some(((v & 0x1f) as u8, v >> 5))
    }
}

impl std::fmt::Debug for PagemapEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut flags = Vec::new();
        for (bit, name) in [
            (Self::PRESENT, "present"),
            (Self::SWAPPED, "swapped"),
            (Self::FILE_SHARED, "file"),
            (Self::GUARD, "guard"),
            (Self::UFFD_WP, "uffd-wp"),
            (Self::EXCLUSIVE, "exclusive"),
            (Self::SOFT_DIRTY, "soft-dirty"),
        ] {
            if self.0 & bit != 0 {
                flags.push(name);
            }
        }
        write!(
            f,
            "PagemapEntry({:#x} {})",
            self.0 & Self::PFN_MASK,
            flags.join("|")
        )
    }
}

/// The swap type of pte markers (`SWP_PTE_MARKER`, the last of the 5-bit
/// swap types).
const PTE_MARKER_SWAP_TYPE: u8 = 31;

bitflags! {
    /// The page categories of `PAGEMAP_SCAN` (`PAGE_IS_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PageCategories: u64 {
        /// userfaultfd async write-protect is enabled on the area.
        const WPALLOWED = 1 << 0;
        /// Written since write-protected (or never write-protected).
        const WRITTEN = 1 << 1;
        /// File-backed (or shared anonymous) page.
        const FILE = 1 << 2;
        const PRESENT = 1 << 3;
        const SWAPPED = 1 << 4;
        /// Mapped to the shared zero page.
        const PFNZERO = 1 << 5;
        /// In a transparent huge page or hugetlb page.
        const HUGE = 1 << 6;
        const SOFT_DIRTY = 1 << 7;
        /// A guard region (Linux 6.14 for the scan).
        const GUARD = 1 << 8;
    }
}

/// A run of pages with the same categories, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRange {
    pub start: u64,
    pub end: u64,
    pub categories: PageCategories,
}

/// Which way [`Pagemap::scan`] computed its ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanMethod {
    Ioctl,
    PagemapRead,
}

/// The categories the pagemap fallback can tell for a page, from its
/// entry. `zero_pfn` is the zero page's frame number when known. It never
/// reports [`PageCategories::HUGE`] or [`PageCategories::WPALLOWED`],
/// which pagemap does not show.
pub fn categories_of(e: PagemapEntry, zero_pfn: Option<u64>) -> PageCategories {
    let mut c = PageCategories::empty();
    if e.is_soft_dirty() {
        c |= PageCategories::SOFT_DIRTY;
    }
    if e.is_present() {
        c |= PageCategories::PRESENT;
        if !e.is_uffd_wp() {
            c |= PageCategories::WRITTEN;
        }
        if e.is_file_or_shared_anon() {
            c |= PageCategories::FILE;
        }
        if zero_pfn.is_some() && e.pfn() == zero_pfn {
            c |= PageCategories::PFNZERO;
        }
    } else if e.is_swapped() {
        c |= PageCategories::SWAPPED;
        if !e.is_uffd_wp() {
            c |= PageCategories::WRITTEN;
        }
        if e.is_guard() {
            c |= PageCategories::GUARD;
        } else if e.is_file_or_shared_anon() {
            c |= PageCategories::FILE;
        }
    }
    c
}

/// Appends `[start, end)` with `categories` to `out`, merging it into the
/// last range when they touch and match.
fn push_range(out: &mut Vec<PageRange>, start: u64, end: u64, categories: PageCategories) {
    if let Some(last) = out.last_mut()
        && last.end == start
        && last.categories == categories
    {
        last.end = end;
        return;
    }
    out.push(PageRange {
        start,
        end,
        categories,
    });
}

/// Entries read per `pread` (512 KiB of pagemap, 256 MiB of memory).
const READ_PAGES: usize = 64 * 1024;

/// Regions per `PAGEMAP_SCAN` call.
const SCAN_REGIONS: usize = 4096;

/// The zero page's frame number, probed once per process.
fn zero_pfn() -> Option<u64> {
    static ZERO: OnceLock<Option<u64>> = OnceLock::new();
    *ZERO.get_or_init(|| sys::zero_page_pfn().ok().flatten())
}

/// An open pagemap file of one task.
#[derive(Debug)]
pub struct Pagemap {
    pid: Pid,
    path: PathBuf,
    file: File,
    /// The task's /proc directory, to tell a finished walk from a task
    /// that exited.
    dir: std::os::fd::OwnedFd,
    page_size: u64,
    buf: Vec<u8>,
    entries: Vec<PagemapEntry>,
    regions: Vec<sys::PageRegion>,
    /// `None` until probed; then what the ioctl accepts, if it exists.
    scan: Option<Option<PageCategories>>,
}

impl Pagemap {
    pub(crate) fn new(pid: Pid, path: PathBuf, file: File, dir: std::os::fd::OwnedFd) -> Pagemap {
        Pagemap {
            pid,
            path,
            file,
            dir,
            page_size: rustix::param::page_size() as u64,
            buf: Vec::new(),
            entries: Vec::new(),
            regions: Vec::new(),
            scan: None,
        }
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    fn io(&self, source: std::io::Error) -> Error {
        crate::task::io_error(self.pid, self.path.clone(), source)
    }

    /// True while the task has not been reaped.
    pub fn is_alive(&self) -> bool {
        rustix::fs::statat(&self.dir, "stat", rustix::fs::AtFlags::empty()).is_ok()
    }

    fn invalid(&self, what: String) -> Error {
        Error::Invalid {
            pid: self.pid,
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn check_range(&self, start: u64, end: u64) -> Result<()> {
        let mask = self.page_size - 1;
        if start & mask != 0 || end & mask != 0 || end < start {
            return Err(self.invalid(format!("bad page range {start:#x}-{end:#x}")));
        }
        Ok(())
    }

    /// Appends the entries of the pages of `[start, end)` (page aligned) to
    /// `out`, reading up to 64 Ki entries per `pread`.
    pub fn read(&mut self, start: u64, end: u64, out: &mut Vec<PagemapEntry>) -> Result<()> {
        self.check_range(start, end)?;
        let pages = (end - start) / self.page_size;
        let mut done: u64 = 0;
        while done < pages {
            let n = (pages - done).min(READ_PAGES as u64) as usize;
            self.buf.resize(n * 8, 0);
            let off = (start / self.page_size + done) * 8;
            let mut got = 0;
            while got < self.buf.len() {
                let r = rustix::io::pread(&self.file, &mut self.buf[got..], off + got as u64);
                match r {
                    Ok(0) => {
                        // A task whose memory is gone reads as empty.
                        if !self.is_alive() {
                            return Err(Error::Vanished {
                                pid: self.pid,
                                path: self.path.clone(),
                            });
                        }
                        let at = start + (done + got as u64 / 8) * self.page_size;
                        return Err(
                            self.invalid(format!("reading past the address space at {at:#x}"))
                        );
                    }
                    Ok(k) => got += k,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(self.io(e.into())),
                }
            }
            out.extend(
                self.buf.chunks_exact(8).map(|c| {
                    PagemapEntry(u64::from_ne_bytes(c.try_into().expect("chunks_exact(8)")))
                }),
            );
            done += n as u64;
        }
        Ok(())
    }

    /// The categories the kernel's `PAGEMAP_SCAN` can report, or `None`
    /// when it has no such ioctl. Probed once per open pagemap.
    pub fn scan_support(&mut self) -> Result<Option<PageCategories>> {
        if let Some(s) = self.scan {
            return Ok(s);
        }
        let fd = self.file.as_fd();
        let mut found = None;
        for mask in [
            PageCategories::all(),
            PageCategories::all() - PageCategories::GUARD,
        ] {
            match sys::pagemap_scan_accepts(fd, mask.bits()) {
                Ok(()) => {
                    found = Some(mask);
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => break,
                Err(e) => return Err(self.io(e)),
            }
        }
        self.scan = Some(found);
        Ok(found)
    }

    /// Appends to `out` the maximal runs of pages in `[start, end)` that
    /// have at least one category of `any_of`, each with all the
    /// categories it has. Uses `PAGEMAP_SCAN` when the kernel has it, plain
    /// pagemap reads otherwise, and says which. Unmapped gaps never match.
    ///
    /// The two ways agree except that the fallback never reports
    /// [`PageCategories::HUGE`] or [`PageCategories::WPALLOWED`], and the
    /// ioctl skips `VM_PFNMAP` areas (`[vvar]`) that pagemap shows as
    /// present.
    pub fn scan(
        &mut self,
        start: u64,
        end: u64,
        any_of: PageCategories,
        out: &mut Vec<PageRange>,
    ) -> Result<ScanMethod> {
        if self.scan_support()?.is_some() {
            self.scan_ioctl(start, end, any_of, out)?;
            Ok(ScanMethod::Ioctl)
        } else {
            self.scan_pagemap(start, end, any_of, out)?;
            Ok(ScanMethod::PagemapRead)
        }
    }

    /// [`Pagemap::scan`] through `PAGEMAP_SCAN` only; an error on a
    /// kernel without it.
    pub fn scan_ioctl(
        &mut self,
        start: u64,
        end: u64,
        any_of: PageCategories,
        out: &mut Vec<PageRange>,
    ) -> Result<()> {
        self.scan_loop(start, end, (0, PageCategories::empty()), any_of, None, out)
    }

    /// [`Pagemap::scan_ioctl`], each range told only the categories of
    /// `told` (with those of `any_of`). The kernel works out only the
    /// categories it is asked about: leaving out
    /// [`PageCategories::FILE`] spares it a look at every present page's
    /// `struct page`, which is most of a scan's cost.
    pub fn scan_ioctl_telling(
        &mut self,
        start: u64,
        end: u64,
        any_of: PageCategories,
        told: PageCategories,
        out: &mut Vec<PageRange>,
    ) -> Result<()> {
        self.scan_loop(
            start,
            end,
            (0, PageCategories::empty()),
            any_of,
            Some(told | any_of),
            out,
        )
    }

    /// Write-protects again, through the task's asynchronous userfaultfd
    /// write-protection (`PM_SCAN_WP_MATCHING`), the pages of `[start,
    /// end)` present or swapped and written since they were last
    /// protected, so that the next write to any of them shows as
    /// [`PageCategories::WRITTEN`]. Fails when part of the range has no
    /// such protection (`PM_SCAN_CHECK_WPASYNC`).
    pub fn rearm_written(&mut self, start: u64, end: u64) -> Result<()> {
        let mut out = Vec::new();
        self.scan_loop(
            start,
            end,
            (
                sys::PM_SCAN_WP_MATCHING | sys::PM_SCAN_CHECK_WPASYNC,
                PageCategories::WRITTEN,
            ),
            PageCategories::PRESENT | PageCategories::SWAPPED,
            None,
            &mut out,
        )
    }

    fn scan_loop(
        &mut self,
        start: u64,
        end: u64,
        (flags, all_of): (u64, PageCategories),
        any_of: PageCategories,
        told: Option<PageCategories>,
        out: &mut Vec<PageRange>,
    ) -> Result<()> {
        self.check_range(start, end)?;
        let Some(supported) = self.scan_support()? else {
            return Err(self.invalid("PAGEMAP_SCAN is not supported by this kernel".into()));
        };
        let any_of = any_of & supported;
        if any_of.is_empty() {
            return Ok(());
        }
        let told = told.map_or(supported, |t| t & supported);
        self.regions
            .resize(SCAN_REGIONS, sys::PageRegion::default());
        let mut cur = start;
        let mut floor = start;
        while cur < end {
            let r = sys::pagemap_scan_with(
                self.file.as_fd(),
                cur,
                end,
                (flags, all_of.bits()),
                any_of.bits(),
                told.bits(),
                &mut self.regions,
            );
            let (n, walk_end) = r.map_err(|e| {
                if self.is_alive() {
                    self.io(e)
                } else {
                    Error::Vanished {
                        pid: self.pid,
                        path: self.path.clone(),
                    }
                }
            })?;
            // The kernel may report a `walk_end` before the end of the
            // regions it filled in (it stops at a page-table boundary):
            // the walk goes on from the end of what it reported, and what
            // it reports again is left out.
            for reg in &self.regions[..n] {
                let start = reg.start.max(floor);
                if start < reg.end {
                    floor = reg.end;
                    push_range(
                        out,
                        start,
                        reg.end,
                        PageCategories::from_bits_truncate(reg.categories),
                    );
                }
            }
            if walk_end <= cur || walk_end > end {
                return Err(self.invalid(format!(
                    "PAGEMAP_SCAN of {cur:#x}-{end:#x} stopped at {walk_end:#x}"
                )));
            }
            floor = floor.max(self.regions[..n].last().map_or(cur, |r| r.end));
            cur = walk_end.max(floor).min(end);
        }
        Ok(())
    }

    /// [`Pagemap::scan`] computed from plain pagemap reads.
    pub fn scan_pagemap(
        &mut self,
        start: u64,
        end: u64,
        any_of: PageCategories,
        out: &mut Vec<PageRange>,
    ) -> Result<()> {
        self.check_range(start, end)?;
        let zero = zero_pfn();
        let mut entries = std::mem::take(&mut self.entries);
        let chunk = READ_PAGES as u64 * self.page_size;
        let mut cur = start;
        let mut result = Ok(());
        while cur < end {
            let stop = end.min(cur.saturating_add(chunk));
            entries.clear();
            if let Err(e) = self.read(cur, stop, &mut entries) {
                result = Err(e);
                break;
            }
            let mut addr = cur;
            for e in &entries {
                let c = categories_of(*e, zero);
                if c.intersects(any_of) {
                    push_range(out, addr, addr + self.page_size, c);
                }
                addr += self.page_size;
            }
            cur = stop;
        }
        self.entries = entries;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_bits() {
        let e = PagemapEntry(
            PagemapEntry::PRESENT | PagemapEntry::EXCLUSIVE | PagemapEntry::SOFT_DIRTY | 0x1234,
        );
        assert!(e.is_present() && e.is_exclusive() && e.is_soft_dirty());
        assert!(!e.is_swapped() && !e.is_guard() && !e.is_uffd_wp() && !e.is_file_or_shared_anon());
        assert_eq!(e.pfn(), Some(0x1234));
        assert_eq!(e.swap(), None);
        let s = PagemapEntry(PagemapEntry::SWAPPED | (77 << 5) | 3);
        assert_eq!(s.swap(), Some((3, 77)));
        assert_eq!(s.pfn(), None);
        assert_eq!(
            format!("{e:?}"),
            "PagemapEntry(0x1234 present|exclusive|soft-dirty)"
        );
    }

    #[test]
    fn categories_from_entries() {
        let present = PagemapEntry(PagemapEntry::PRESENT | 5);
        assert_eq!(
            categories_of(present, Some(9)),
            PageCategories::PRESENT | PageCategories::WRITTEN
        );
        assert_eq!(
            categories_of(PagemapEntry(PagemapEntry::PRESENT | 9), Some(9)),
            PageCategories::PRESENT | PageCategories::WRITTEN | PageCategories::PFNZERO
        );
        assert_eq!(
            categories_of(
                PagemapEntry(
                    PagemapEntry::PRESENT | PagemapEntry::UFFD_WP | PagemapEntry::FILE_SHARED
                ),
                None
            ),
            PageCategories::PRESENT | PageCategories::FILE
        );
        assert_eq!(
            categories_of(
                PagemapEntry(PagemapEntry::SWAPPED | PagemapEntry::GUARD),
                None
            ),
            PageCategories::SWAPPED | PageCategories::WRITTEN | PageCategories::GUARD
        );
        assert_eq!(
            categories_of(PagemapEntry(PagemapEntry::SOFT_DIRTY), None),
            PageCategories::SOFT_DIRTY
        );
        assert_eq!(
            categories_of(PagemapEntry(0), None),
            PageCategories::empty()
        );
    }

    #[test]
    fn ranges_merge_only_when_touching_and_equal() {
        let mut v = Vec::new();
        let p = PageCategories::PRESENT;
        push_range(&mut v, 0, 4096, p);
        push_range(&mut v, 4096, 8192, p);
        push_range(&mut v, 8192, 12288, p | PageCategories::FILE);
        push_range(&mut v, 16384, 20480, p | PageCategories::FILE);
        assert_eq!(
            v,
            vec![
                PageRange {
                    start: 0,
                    end: 8192,
                    categories: p
                },
                PageRange {
                    start: 8192,
                    end: 12288,
                    categories: p | PageCategories::FILE
                },
                PageRange {
                    start: 16384,
                    end: 20480,
                    categories: p | PageCategories::FILE
                },
            ]
        );
    }
}
