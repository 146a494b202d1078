//! The pages read by two: the restorer `preadv`s batches from the front
//! while rcriu's helper writes batches from the back into the areas
//! (`process_vm_writev` from a mapping of the pages file), each claiming
//! its next batch with a compare-and-swap on [`Args::page_claims`] in the
//! region both share. [`Args::page_state`] is the handshake: the restorer
//! says the areas are mapped, then waits until the helper says it is
//! done (or failed).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::call;
use rcriu_parasite_abi::restorer::{
    Args, PAGES_ABORT, PAGES_DONE, PAGES_FAILED, PAGES_MAPPED, PAGES_WAIT, claim,
};

use crate::mm::read_one;
use crate::{Fail, Res};

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
