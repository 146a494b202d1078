//! io_uring's calls and the layout of its rings, for the dump (which
//! reads an instance a process holds) and the restore (which makes one
//! again and brings its counters to where they were).
//!
//! # Safety
//! Every wrapper here is safe to call: the kernel reads or writes only
//! the live references passed (a [`Params`] of the size it expects, a
//! slice of fds), and the rest are integers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `IORING_OFF_SQ_RING`: the ring region (heads, tails, flags, CQEs, SQ
/// array), also mapped at `IORING_OFF_CQ_RING` (one region since
/// `IORING_FEAT_SINGLE_MMAP`).
pub const OFF_SQ_RING: u64 = 0;
pub const OFF_CQ_RING: u64 = 0x800_0000;
/// `IORING_OFF_SQES`: the SQE array.
pub const OFF_SQES: u64 = 0x1000_0000;

pub const SETUP_IOPOLL: u32 = 1 << 0;
pub const SETUP_SQPOLL: u32 = 1 << 1;
pub const SETUP_CQSIZE: u32 = 1 << 3;
pub const SETUP_R_DISABLED: u32 = 1 << 6;
pub const SETUP_SQE128: u32 = 1 << 10;
pub const SETUP_CQE32: u32 = 1 << 11;
pub const SETUP_SINGLE_ISSUER: u32 = 1 << 12;
pub const SETUP_DEFER_TASKRUN: u32 = 1 << 13;
pub const SETUP_NO_SQARRAY: u32 = 1 << 16;

/// `IORING_FEAT_SINGLE_MMAP`.
pub const FEAT_SINGLE_MMAP: u32 = 1;
/// `IORING_ENTER_GETEVENTS`.
pub const ENTER_GETEVENTS: u32 = 1;
/// `IORING_REGISTER_BUFFERS`.
pub const REGISTER_BUFFERS: u32 = 0;
/// `IORING_REGISTER_FILES`.
const REGISTER_FILES: u32 = 2;
/// `IORING_REGISTER_FILES_UPDATE`.
const REGISTER_FILES_UPDATE: u32 = 6;

/// `struct io_uring_files_update`.
#[repr(C)]
struct FilesUpdate {
    offset: u32,
    resv: u32,
    fds: u64,
}

const _: () = assert!(std::mem::size_of::<FilesUpdate>() == 16);

/// `struct io_sqring_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub array: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_cqring_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub overflow: u32,
    pub cqes: u32,
    pub flags: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_uring_params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: SqOffsets,
    pub cq_off: CqOffsets,
}

const _: () = {
    assert!(std::mem::size_of::<SqOffsets>() == 40);
    assert!(std::mem::size_of::<CqOffsets>() == 40);
    assert!(std::mem::size_of::<Params>() == 120);
    assert!(std::mem::offset_of!(Params, sq_off) == 40);
    assert!(std::mem::offset_of!(Params, cq_off) == 80);
    assert!(std::mem::offset_of!(SqOffsets, array) == 24);
    assert!(std::mem::offset_of!(CqOffsets, cqes) == 20);
};

impl Params {
    /// The size of an SQE of the ring.
    pub fn sqe_size(&self) -> usize {
        if self.flags & SETUP_SQE128 != 0 {
            128
        } else {
            64
        }
    }

    /// The size of a CQE of the ring.
    pub fn cqe_size(&self) -> usize {
        if self.flags & SETUP_CQE32 != 0 {
            32
        } else {
            16
        }
    }

    /// The bytes of the ring region the kernel uses: up to the last CQE
    /// without an SQ array, else to the end of the array.
    pub fn rings_len(&self) -> usize {
        if self.flags & SETUP_NO_SQARRAY != 0 {
            self.cq_off.cqes as usize + self.cq_entries as usize * self.cqe_size()
        } else {
            self.sq_off.array as usize + self.sq_entries as usize * 4
        }
    }

    /// The bytes of the SQE array.
    pub fn sqes_len(&self) -> usize {
        self.sq_entries as usize * self.sqe_size()
    }
}

/// `io_uring_setup(entries, p)`: a new instance; `p` comes back with the
/// sizes and offsets the kernel chose.
pub fn setup(entries: u32, p: &mut Params) -> io::Result<OwnedFd> {
    // SAFETY: the kernel reads and writes one io_uring_params at `p`, a
    // live exclusive reference of that layout (asserted above).
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, std::ptr::from_mut(p)) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `io_uring_enter(fd, to_submit, min_complete, flags, NULL, 0)`: the
/// number of submissions consumed.
pub fn enter(fd: BorrowedFd<'_>, to_submit: u32, min_complete: u32, flags: u32) -> io::Result<u32> {
    // SAFETY: no signal mask is passed (NULL, 0); the rest are integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd.as_raw_fd(),
            to_submit,
            min_complete,
            flags,
            std::ptr::null::<libc::c_void>(),
            0usize,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as u32)
}

/// `IORING_REGISTER_FILES_UPDATE`: the registered files from slot
/// `offset` on become `fds` (-1 empties a slot), the ones they replace
/// let go once no request uses them.
pub fn update_files(fd: BorrowedFd<'_>, offset: u32, fds: &[i32]) -> io::Result<()> {
    let n = u32::try_from(fds.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let up = FilesUpdate {
        offset,
        resv: 0,
        fds: fds.as_ptr() as u64,
    };
    // SAFETY: the kernel reads one `io_uring_files_update`, and through
    // it `n` ints from `fds`, a live slice of `n`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd.as_raw_fd(),
            REGISTER_FILES_UPDATE,
            std::ptr::from_ref(&up),
            n,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r as u32 != n {
        return Err(io::Error::other(format!(
            "{r} of {n} registered files updated"
        )));
    }
    Ok(())
}

/// `IORING_REGISTER_FILES`: `fds` (-1 for an empty slot) become the
/// ring's registered files.
pub fn register_files(fd: BorrowedFd<'_>, fds: &[i32]) -> io::Result<()> {
    let n = u32::try_from(fds.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the kernel reads `n` ints from `fds`, a live slice of `n`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd.as_raw_fd(),
            REGISTER_FILES,
            fds.as_ptr(),
            n,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
