//! The crate's only `unsafe` code: the `PAGEMAP_SCAN` ioctl and the probe
//! of the zero page's frame number.
//!
//! # Safety
//! Callers owe nothing beyond passing live fds: each wrapper builds every
//! pointer the kernel sees from Rust references it holds for the whole
//! call, and checks what the kernel returns before using it.

use std::io;
use std::mem::{align_of, offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct page_region` of `include/uapi/linux/fs.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// `struct pm_scan_arg` of `include/uapi/linux/fs.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const _: () = {
    assert!(size_of::<PageRegion>() == 24);
    assert!(align_of::<PageRegion>() == 8);
    assert!(offset_of!(PageRegion, start) == 0);
    assert!(offset_of!(PageRegion, end) == 8);
    assert!(offset_of!(PageRegion, categories) == 16);
    assert!(size_of::<PmScanArg>() == 96);
    assert!(align_of::<PmScanArg>() == 8);
    assert!(offset_of!(PmScanArg, size) == 0);
    assert!(offset_of!(PmScanArg, flags) == 8);
    assert!(offset_of!(PmScanArg, start) == 16);
    assert!(offset_of!(PmScanArg, end) == 24);
    assert!(offset_of!(PmScanArg, walk_end) == 32);
    assert!(offset_of!(PmScanArg, vec) == 40);
    assert!(offset_of!(PmScanArg, vec_len) == 48);
    assert!(offset_of!(PmScanArg, max_pages) == 56);
    assert!(offset_of!(PmScanArg, category_inverted) == 64);
    assert!(offset_of!(PmScanArg, category_mask) == 72);
    assert!(offset_of!(PmScanArg, category_anyof_mask) == 80);
    assert!(offset_of!(PmScanArg, return_mask) == 88);
};

/// `_IOC(dir, type, nr, size)` as the generic asm/ioctl.h encodes it.
const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)`.
pub(crate) const PAGEMAP_SCAN: u64 = ioc(IOC_READ | IOC_WRITE, b'f', 16, size_of::<PmScanArg>());

const _: () = assert!(PAGEMAP_SCAN == 0xc060_6610);

/// One `PAGEMAP_SCAN` call on a pagemap fd: walks `[start, end)` and fills
/// `out` with regions of pages having any category of `anyof_mask`, their
/// categories masked by `return_mask`. Returns the number of regions filled
/// and where the walk stopped (`end` when it got to the end).
pub(crate) fn pagemap_scan(
    fd: BorrowedFd<'_>,
    start: u64,
    end: u64,
    anyof_mask: u64,
    return_mask: u64,
    out: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    pagemap_scan_with(fd, start, end, (0, 0), anyof_mask, return_mask, out)
}

/// `PM_SCAN_WP_MATCHING`: write-protect the pages the walk reports.
pub(crate) const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// `PM_SCAN_CHECK_WPASYNC`: fail (EPERM) on an area without async
/// userfaultfd write-protection.
pub(crate) const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// [`pagemap_scan`] with `(flags, category_mask)`: `PM_SCAN_*` flags, and
/// the categories a page must all have to be reported.
pub(crate) fn pagemap_scan_with(
    fd: BorrowedFd<'_>,
    start: u64,
    end: u64,
    (flags, category_mask): (u64, u64),
    anyof_mask: u64,
    return_mask: u64,
    out: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    let mut arg = PmScanArg {
        size: size_of::<PmScanArg>() as u64,
        flags,
        start,
        end,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        category_mask,
        category_anyof_mask: anyof_mask,
        return_mask,
        ..PmScanArg::default()
    };
    // SAFETY: `arg` is a live, correctly laid out pm_scan_arg (asserted
    // above) that the kernel reads and updates in place; its `vec` points to
    // `out`, exclusively borrowed for this call, with room for exactly
    // `vec_len` page_region entries, which is all the kernel writes there.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            PAGEMAP_SCAN as libc::Ioctl,
            std::ptr::from_mut(&mut arg),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(r).unwrap_or(usize::MAX);
    if n > out.len() {
        return Err(io::Error::other(format!(
            "PAGEMAP_SCAN returned {n} regions for a vector of {}",
            out.len()
        )));
    }
    Ok((n, arg.walk_end))
}

/// Probes which categories the kernel's `PAGEMAP_SCAN` accepts in
/// `return_mask`: an empty walk with `mask`, which fails with EINVAL when
/// the mask holds a category the kernel does not know, and ENOTTY when it
/// has no `PAGEMAP_SCAN` at all.
pub(crate) fn pagemap_scan_accepts(fd: BorrowedFd<'_>, mask: u64) -> io::Result<()> {
    pagemap_scan(fd, 0, 0, 0, mask, &mut []).map(|_| ())
}

/// The frame number of the kernel's shared zero page, or `None` when
/// pagemap hides frame numbers from this process (no CAP_SYS_ADMIN).
///
/// It maps an anonymous page read-only, reads it (a read fault on private
/// anonymous memory maps the zero page) and looks it up in
/// `/proc/self/pagemap`.
pub(crate) fn zero_page_pfn() -> io::Result<Option<u64>> {
    let page = rustix::param::page_size();
    // SAFETY: asks for a fresh private anonymous mapping at an address the
    // kernel chooses; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `p` is the start of the readable `page`-byte mapping made
    // above; a volatile read keeps the fault from being optimised away.
    let _: u8 = unsafe { std::ptr::read_volatile(p.cast::<u8>()) };
    let addr = p as u64;
    let entry = (|| -> io::Result<u64> {
        let f = std::fs::File::open("/proc/self/pagemap")?;
        let mut b = [0u8; 8];
        let off = addr / page as u64 * 8;
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, off)?;
        Ok(u64::from_ne_bytes(b))
    })();
    // SAFETY: unmaps exactly the mapping made above, which nothing else
    // refers to (only its address was kept, as a number).
    unsafe {
        libc::munmap(p, page);
    }
    let entry = crate::pagemap::PagemapEntry(entry?);
    Ok(entry.pfn().filter(|&pfn| pfn != 0))
}

/// `struct sched_attr` of `include/uapi/linux/sched/types.h` (VER1, with
/// the utilisation clamps).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SchedAttrRaw {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
    pub sched_util_min: u32,
    pub sched_util_max: u32,
}

/// The size of `sched_attr` with the utilisation clamps.
pub(crate) const SCHED_ATTR_SIZE_VER1: u32 = 56;

const _: () = {
    assert!(size_of::<SchedAttrRaw>() == SCHED_ATTR_SIZE_VER1 as usize);
    assert!(offset_of!(SchedAttrRaw, sched_flags) == 8);
    assert!(offset_of!(SchedAttrRaw, sched_runtime) == 24);
    assert!(offset_of!(SchedAttrRaw, sched_util_min) == 48);
};

/// `sched_getattr(tid)`: the attributes and the size the kernel filled.
pub(crate) fn sched_getattr(tid: crate::Pid) -> io::Result<(SchedAttrRaw, u32)> {
    let mut a = SchedAttrRaw::default();
    // SAFETY: the kernel writes at most `size` (the last argument) bytes of
    // a sched_attr into `a`, a local of that size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            libc::c_long::from(tid),
            std::ptr::from_mut(&mut a),
            libc::c_long::from(SCHED_ATTR_SIZE_VER1),
            0 as libc::c_long,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let size = a.size;
    Ok((a, size))
}

/// `sched_getaffinity(tid)`: the mask as words (room for 8192 CPUs).
pub(crate) fn sched_getaffinity(tid: crate::Pid) -> io::Result<Vec<u64>> {
    let mut words = vec![0u64; 128];
    // SAFETY: the kernel writes at most `len` bytes of the mask into
    // `words`, which holds that many.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            libc::c_long::from(tid),
            (words.len() * 8) as libc::c_long,
            words.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel returns how many bytes it wrote.
    words.truncate((r as usize).div_ceil(8));
    Ok(words)
}

const IOPRIO_WHO_PROCESS: libc::c_long = 1;

/// `ioprio_get(IOPRIO_WHO_PROCESS, tid)`.
pub(crate) fn ioprio_get(tid: crate::Pid) -> io::Result<u32> {
    // SAFETY: takes integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_get,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as u32)
}
