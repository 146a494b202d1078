//! The pages read by two: the restorer `preadv`s batches from the front
//! while rcriu's helper writes batches from the back into the areas
//! (`process_vm_writev` from a mapping of the pages file), each claiming
//! its next batch with a compare-and-swap on [`Args::page_claims`] in the
//! region both share. [`Args::page_state`] is the handshake: the restorer
//! says the areas are mapped, then waits until the helper says it is
//! done (or failed).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{call, syscall6};
use rcriu_parasite_abi::restorer::{
    Args, IoVec, PAGES_ABORT, PAGES_DONE, PAGES_FAILED, PAGES_MAPPED, PAGES_WAIT, ReadBatch, claim,
};

use crate::mm::read_one;
use crate::{Fail, Res, array, ok};

pub fn read_shared(a: &mut Args) -> Res {
    // SAFETY: both fields are aligned (asserted in the ABI) and live in
    // the region for the restorer's life; rcriu's helper touches them
    // only atomically too.
    let claims = unsafe { AtomicU64::from_ptr(&raw mut a.page_claims) };
    // SAFETY: as above.
    let state = unsafe { AtomicU32::from_ptr(&raw mut a.page_state) };
    // Unless rcriu already said its helper will not come (ABORT).
    let _ = state.compare_exchange(
        PAGES_WAIT,
        PAGES_MAPPED,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    wake(state);
    let mut result = Ok(());
    while let Some(i) = claim(claims, true) {
        if let Err(f) = read_one(a, i) {
            // No more for the helper either; it ends at its next claim.
            claims.store(0, Ordering::Release);
            result = Err(f);
            break;
        }
    }
    // Wait for the helper even after a failure: it writes into areas
    // that must stay as they are until it stops.
    loop {
        match state.load(Ordering::Acquire) {
            // Done, or no helper after all: then every batch was ours.
            PAGES_DONE | PAGES_ABORT => return result,
            PAGES_FAILED => {
                return result.and(Err(Fail(a.page_err_batch, a.page_err as i64)));
            }
            s => wait(state, s),
        }
    }
}

fn wake(w: &AtomicU32) {
    // SAFETY: a futex wake on a word of the shared region; the kernel
    // reads nothing else.
    unsafe { call(NR_FUTEX, w.as_ptr() as u64, FUTEX_WAKE, 1, 0) };
}

/// Sleeps while `w` holds `val` (or returns at once if it does not).
fn wait(w: &AtomicU32, val: u32) {
    // SAFETY: a futex wait on a word of the shared region, no timeout.
    unsafe { call(NR_FUTEX, w.as_ptr() as u64, FUTEX_WAIT, val as u64, 0) };
}

/// The bytes read aside at a time for the inherited areas.
const ASIDE: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// The pages of the areas the process inherited from its parent: each is
/// read aside and written in place only where it differs from the page
/// inherited, which otherwise stays shared with the parent (as CRIU's
/// restore does). Counts both in the args for rcriu's statistics.
pub fn read_inherited(a: &mut Args) -> Res {
    // SAFETY: a private anonymous mapping where the kernel finds room
    // (every area of the process is mapped by now, so it lands in a hole,
    // and is gone before anything else is mapped).
    let buf = unsafe {
        syscall6(
            NR_MMAP,
            0,
            ASIDE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            u64::MAX,
            0,
        )
    };
    let buf = ok(buf, 0)? as u64;
    let (mut compared, mut shared) = (0u64, 0u64);
    let r = compare_all(a, buf, &mut compared, &mut shared);
    // SAFETY: the buffer mapped above, used by nothing else.
    unsafe { call(NR_MUNMAP, buf, ASIDE, 0, 0) };
    a.pages_compared = compared;
    a.pages_cow = shared;
    r
}

fn compare_all(a: &Args, buf: u64, compared: &mut u64, shared: &mut u64) -> Res {
    // SAFETY: rcriu wrote `nr_iovs` iovecs and `nr_cow_batches` batches.
    let iovs: &[IoVec] = unsafe { array(a.iovs, a.nr_iovs) };
    // SAFETY: as above.
    let batches: &[ReadBatch] = unsafe { array(a.cow_batches, a.nr_cow_batches) };
    for (i, b) in batches.iter().enumerate() {
        let fail = |r: i64| Fail(i as u32, r);
        let first = b.first as usize;
        let group = iovs
            .get(first..first + b.nr as usize)
            .ok_or(fail(-EINVAL))?;
        let fd = crate::mm::pages_fd(a, b).ok_or(fail(-EINVAL))?;
        let mut off = b.off;
        for v in group {
            let mut done = 0u64;
            while done < v.len {
                let n = (v.len - done).min(ASIDE);
                pread_all(fd, buf, n, off).map_err(fail)?;
                let mut p = 0u64;
                while p < n {
                    let dst = v.base + done + p;
                    // SAFETY: `dst` is a page of an area inherited and
                    // mapped writable, `buf + p` a page of the buffer.
                    unsafe {
                        if same_page(buf + p, dst) {
                            *shared += 1;
                        } else {
                            core::ptr::copy_nonoverlapping(
                                (buf + p) as *const u8,
                                dst as *mut u8,
                                PAGE as usize,
                            );
                        }
                    }
                    *compared += 1;
                    p += PAGE;
                }
                done += n;
                off += n;
            }
        }
    }
    Ok(())
}

/// `pread` of `n` bytes at `off` into `buf`, going on after short reads;
/// the negative errno (-EIO at an early end of the file).
fn pread_all(fd: i32, buf: u64, n: u64, off: u64) -> Result<(), i64> {
    let mut got = 0u64;
    while got < n {
        // SAFETY: the kernel writes at most `n - got` bytes into the
        // buffer, which holds `n`.
        let r = unsafe { call(NR_PREAD64, fd as u64, buf + got, n - got, off + got) };
        if r == -EINTR {
            continue;
        }
        if r < 0 {
            return Err(r);
        }
        if r == 0 {
            return Err(-EIO);
        }
        got += r as u64;
    }
    Ok(())
}

/// Whether the pages at `a` and `b` hold the same bytes.
///
/// # Safety
/// Both are readable pages.
unsafe fn same_page(a: u64, b: u64) -> bool {
    // SAFETY: the caller's: two readable pages, read as aligned words.
    let (x, y) = unsafe {
        (
            core::slice::from_raw_parts(a as *const [u64; 8], (PAGE / 64) as usize),
            core::slice::from_raw_parts(b as *const [u64; 8], (PAGE / 64) as usize),
        )
    };
    for (l, r) in x.iter().zip(y) {
        let mut diff = 0u64;
        for k in 0..8 {
            diff |= l[k] ^ r[k];
        }
        if diff != 0 {
            return false;
        }
    }
    true
}
