//! Lazy restore (`--lazy-pages`): the areas whose pages the lazy-pages
//! daemon brings in are registered, missing mode, on a userfaultfd of
//! this process, which goes to rcriu over [`Args::uffd_sock`] (one
//! SOCK_SEQPACKET message: the pid, the fd attached); rcriu hands it to
//! the daemon. The restorer keeps no copy: the daemon (and its guard)
//! hold it from then on.

use rcriu_blob_rt::msg::MSG_NOSIGNAL;
use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr_mut, call};
use rcriu_parasite_abi::restorer::{Args, Vma};

use crate::{Fail, Res, array, ok};

/// `UFFD_API`.
const UFFD_API: u64 = 0xaa;
/// The events the daemon follows (as CRIU asks): fork, mremap, madvise
/// removals and munmap, so that it never copies a page where the
/// process no longer expects it.
const FEATURES: u64 = UFFD_FEATURE_EVENT_FORK
    | UFFD_FEATURE_EVENT_REMAP
    | UFFD_FEATURE_EVENT_REMOVE
    | UFFD_FEATURE_EVENT_UNMAP;
const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
/// `_IOWR(0xaa, 0x3f, struct uffdio_api)`.
const UFFDIO_API: u64 = 0xc018_aa3f;
/// `_IOWR(0xaa, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: u64 = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
/// `1 << _UFFDIO_COPY | 1 << _UFFDIO_ZEROPAGE`: what the daemon uses.
const NEEDED_IOCTLS: u64 = 1 << 0x03 | 1 << 0x04;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

const _: () = {
    assert!(size_of::<UffdioApi>() == 24);
    assert!(size_of::<UffdioRegister>() == 32);
};

/// Registers the lazy areas and sends the userfaultfd. Item 0 is the
/// userfaultfd itself, 1 its API, 2 + i area i, then the sending.
pub fn register_and_send(a: &Args) -> Res {
    // SAFETY: makes a new fd; the kernel reads nothing.
    let uffd = unsafe { call(NR_USERFAULTFD, O_CLOEXEC | O_NONBLOCK, 0, 0, 0) };
    let uffd = ok(uffd, 0)?;
    let r = register(a, uffd).and_then(|()| send(a, uffd as i32));
    // SAFETY: the fd made above; the message in flight holds its own
    // reference, the daemon's from then on.
    unsafe { call(NR_CLOSE, uffd as u64, 0, 0, 0) };
    r
}

fn register(a: &Args, uffd: i64) -> Res {
    let mut api = UffdioApi {
        api: UFFD_API,
        features: FEATURES,
        ioctls: 0,
    };
    // SAFETY: the kernel reads and writes one uffdio_api.
    let r = unsafe { call(NR_IOCTL, uffd as u64, UFFDIO_API, addr_mut(&mut api), 0) };
    ok(r, 1)?;
    // SAFETY: rcriu wrote `nr_vmas` areas at `vmas`.
    let vmas: &[Vma] = unsafe { array(a.vmas, a.nr_vmas) };
    for (i, v) in vmas.iter().enumerate() {
        if v.lazy == 0 {
            continue;
        }
        let mut reg = UffdioRegister {
            start: v.start,
            len: v.end - v.start,
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: the kernel reads and writes one uffdio_register; the
        // range is one of the process's private anonymous areas.
        let r = unsafe {
            call(
                NR_IOCTL,
                uffd as u64,
                UFFDIO_REGISTER,
                addr_mut(&mut reg),
                0,
            )
        };
        ok(r, 2 + i as u32)?;
        if reg.ioctls & NEEDED_IOCTLS != NEEDED_IOCTLS {
            return Err(Fail(2 + i as u32, -EINVAL));
        }
    }
    Ok(())
}

fn send(a: &Args, uffd: i32) -> Res {
    let item = 2 + a.nr_vmas as u32;
    // The pid as the process sees it (rcriu maps it back).
    let pid = rcriu_blob_rt::syscall::value(NR_GETPID, 0, 0, 0) as i32;
    let r = rcriu_blob_rt::msg::send_fds(a.uffd_sock, &pid, &[uffd], MSG_NOSIGNAL);
    if ok(r, item)? != 4 {
        return Err(Fail(item, -EIO));
    }
    Ok(())
}
