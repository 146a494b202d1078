//! The calls of lazy restore that neither std nor rustix offers: the
//! userfaultfd ioctls the lazy-pages daemon makes on a restored
//! process's userfaultfd, its messages, read-only mappings of pages
//! images (the copies' source), and the fork of the daemon's guard.
//!
//! # Safety
//! A module of the crate with `unsafe`. Every wrapper is safe to call:
//! it passes the kernel integers, fds the caller holds and pointers to
//! locals sized for what the kernel reads or writes; a copy's source is
//! checked to lie inside a [`Mapped`] file the caller holds. [`fork`]
//! returns in the child only to code that the caller runs while it has
//! one thread.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `_IOWR(0xaa, 0x03, struct uffdio_copy)`.
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
/// `_IOWR(0xaa, 0x04, struct uffdio_zeropage)`.
const UFFDIO_ZEROPAGE: libc::c_ulong = 0xc020_aa04;

pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMAP: u8 = 0x14;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct UffdioZeropage {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
}

/// `struct uffd_msg`: the event and its three words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdMsg {
    pub event: u8,
    _reserved1: u8,
    _reserved2: u16,
    _reserved3: u32,
    /// pagefault: flags, address, tid; fork: the new fd (low 32 bits of
    /// the first word); remap: from, to, len; remove and unmap: start,
    /// end.
    pub arg: [u64; 3],
}

const _: () = {
    assert!(size_of::<UffdioCopy>() == 40);
    assert!(size_of::<UffdioZeropage>() == 32);
    assert!(size_of::<UffdMsg>() == 32);
    assert!(std::mem::offset_of!(UffdMsg, arg) == 8);
};

/// Reads one message from `uffd` (non-blocking): `None` when there is
/// none.
pub fn read_msg(uffd: BorrowedFd<'_>) -> io::Result<Option<UffdMsg>> {
    let mut m = UffdMsg::default();
    // SAFETY: the kernel writes at most one uffd_msg into `m`.
    let r = unsafe { libc::read(uffd.as_raw_fd(), (&raw mut m).cast(), size_of::<UffdMsg>()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    if r as usize != size_of::<UffdMsg>() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(Some(m))
}

/// Takes ownership of the fd a fork event installed in this process.
pub fn adopt(fd: i32) -> io::Result<OwnedFd> {
    // The kernel made the fd as the message was read: check it is open.
    // SAFETY: F_GETFD reads nothing.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: a fresh descriptor the kernel gave this process alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The outcome of a copy or a zero page.
pub enum Filled {
    /// Every byte.
    All,
    /// The first bytes (a multiple of the page size, maybe 0), then the
    /// error.
    Part(u64, i32),
}

/// `UFFDIO_COPY` of `len` bytes at `off` in `src` to `dst`.
pub fn copy(
    uffd: BorrowedFd<'_>,
    dst: u64,
    src: &Mapped,
    off: u64,
    len: u64,
) -> io::Result<Filled> {
    if off.checked_add(len).is_none_or(|end| end > src.len as u64) {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    // SAFETY: `len` bytes at `off` are inside the mapping `src` (just
    // checked), which the caller holds for the call.
    Ok(unsafe { copy_raw(uffd, dst, src.addr as u64 + off, len) })
}

/// `UFFDIO_COPY` of `src` (whole pages, received from a lazy dump's page
/// server) to `dst` in the process of `uffd`.
pub fn copy_from(uffd: BorrowedFd<'_>, dst: u64, src: &[u8]) -> io::Result<Filled> {
    // SAFETY: the slice `src` is borrowed for the call.
    Ok(unsafe { copy_raw(uffd, dst, src.as_ptr() as u64, src.len() as u64) })
}

/// `UFFDIO_COPY` of the `len` bytes at `src` to `dst`.
///
/// # Safety
/// `src..src + len` is memory of this process readable for the call.
unsafe fn copy_raw(uffd: BorrowedFd<'_>, dst: u64, src: u64, len: u64) -> Filled {
    let mut c = UffdioCopy {
        dst,
        src,
        len,
        mode: 0,
        copy: 0,
    };
    // SAFETY: the kernel reads `len` bytes at `src` (the caller vouches
    // for them), writes into the other process's registered area, and
    // writes back `copy` in `c`.
    let r = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_COPY, &raw mut c) };
    match r {
        0 => Filled::All,
        _ => {
            let e = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            Filled::Part(c.copy.max(0) as u64, e)
        }
    }
}

/// `UFFDIO_ZEROPAGE` of one page at `dst`.
pub fn zero(uffd: BorrowedFd<'_>, dst: u64, len: u64) -> Filled {
    let mut z = UffdioZeropage {
        start: dst,
        len,
        mode: 0,
        zeropage: 0,
    };
    // SAFETY: the kernel reads and writes one uffdio_zeropage.
    let r = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_ZEROPAGE, &raw mut z) };
    match r {
        0 => Filled::All,
        _ => Filled::Part(
            z.zeropage.max(0) as u64,
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ),
    }
}

/// A file mapped read-only, whole.
#[derive(Debug)]
pub struct Mapped {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: a read-only mapping, owned: nothing writes it, any thread may
// read it.
unsafe impl Send for Mapped {}

impl Mapped {
    /// Maps `f` (of `len` bytes) read-only.
    pub fn map(f: impl AsFd, len: u64) -> io::Result<Mapped> {
        if len == 0 {
            return Ok(Mapped {
                addr: std::ptr::null_mut(),
                len: 0,
            });
        }
        let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: a new read-only private mapping of the file where the
        // kernel finds room; unmapped on drop.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped { addr, len })
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `map`, used by nothing after.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }
}

/// `fork()`: `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
/// The caller has one thread.
pub fn fork() -> io::Result<Option<i32>> {
    // SAFETY: the caller has no other thread, so the child may run any
    // code (no lock is held by a thread that is gone in it).
    let r = unsafe { libc::fork() };
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Ends this process at once, with `code` (the guard's end: no
/// destructors of the daemon's state run in it).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// The number of threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Ignores the signals a terminal or a process group sends (the guard
/// outlives its daemon: it must not die with it).
pub fn ignore_group_signals() {
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        // SAFETY: setting a signal's disposition to SIG_IGN.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// Whether this kernel gives this process a userfaultfd with the events
/// a lazy restore follows (`features`): what `check` and the RPC's
/// FEATURE_CHECK report.
pub fn probe(features: u64) -> Result<(), String> {
    #[repr(C)]
    struct Api {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    // SAFETY: makes a new fd, taken at once.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
    if r < 0 {
        return Err(format!("no userfaultfd: {}", io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(r as i32) };
    let mut a = Api {
        api: 0xaa,
        features,
        ioctls: 0,
    };
    // SAFETY: the kernel reads and writes one uffdio_api.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), 0xc018_aa3f, &raw mut a) };
    if r < 0 {
        return Err(format!(
            "the userfaultfd lacks the events of a lazy restore (features {features:#x}): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}
