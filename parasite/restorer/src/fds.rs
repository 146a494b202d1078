//! The file descriptors, placed at their numbers: rcriu's open files
//! moved there, then the files the restorer opens itself (its own /proc
//! files); every other fd is closed.

use core::sync::atomic::{AtomicU32, Ordering};

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{call, value};
use rcriu_parasite_abi::restorer::{Args, FdMove, LateOpen};

use crate::{Fail, Res, array, ok};

pub fn place_fds(a: &Args) -> Res {
    // SAFETY: rcriu wrote `nr_fds` moves at `fds`, sorted by target, with
    // every source above every target.
    let moves: &[FdMove] = unsafe { array(a.fds, a.nr_fds) };
    // SAFETY: rcriu wrote `nr_late` opens at `late`, sorted by target,
    // each target below every source and none a move's.
    let late: &[LateOpen] = unsafe { array(a.late, a.nr_late) };
    for (i, m) in moves.iter().enumerate() {
        let flags = if m.cloexec != 0 { O_CLOEXEC } else { 0 };
        if m.from == m.to {
            let fl = if m.cloexec != 0 { FD_CLOEXEC } else { 0 };
            ok(value(NR_FCNTL, m.to as u64, F_SETFD, fl), i as u32)?;
        } else {
            ok(value(NR_DUP3, m.from as u64, m.to as u64, flags), i as u32)?;
        }
    }
    for (i, l) in late.iter().enumerate() {
        open_late(l).map_err(|Fail(_, e)| Fail((moves.len() + i) as u32, e))?;
    }
    // Everything else goes: rcriu's fds, the sources, the pages file.
    let mut next = 0u64;
    let (mut m, mut l) = (0, 0);
    loop {
        let to = match (moves.get(m), late.get(l)) {
            (Some(a), Some(b)) if a.to <= b.to => {
                m += 1;
                a.to
            }
            (Some(a), None) => {
                m += 1;
                a.to
            }
            (_, Some(b)) => {
                l += 1;
                b.to
            }
            (None, None) => break,
        } as u64;
        if to > next {
            ok(value(NR_CLOSE_RANGE, next, to - 1, 0), to as u32)?;
        }
        next = to + 1;
    }
    ok(value(NR_CLOSE_RANGE, next, u32::MAX as u64, 0), u32::MAX)?;
    Ok(())
}

/// Opens one late file at its number and position.
fn open_late(l: &LateOpen) -> Res {
    // SAFETY: the path is NUL-terminated in the region.
    let fd = unsafe { call(NR_OPEN, l.path, l.flags as u64, 0, 0) };
    let fd = ok(fd, 0)?;
    if fd != l.to as i64 {
        let flags = if l.flags as u64 & O_CLOEXEC != 0 {
            O_CLOEXEC
        } else {
            0
        };
        let r = value(NR_DUP3, fd as u64, l.to as u64, flags);
        value(NR_CLOSE, fd as u64, 0, 0);
        ok(r, 0)?;
    }
    if l.pos != 0 {
        ok(value(NR_LSEEK, l.to as u64, l.pos, SEEK_SET), 0)?;
    }
    Ok(())
}

/// The words of the process that places the fds of a shared table.
///
/// # Safety
/// `args` is the address of that process's `Args` in the region, whose
/// two words every sharer touches only atomically.
unsafe fn words(args: u64) -> (&'static AtomicU32, &'static AtomicU32) {
    let a = args as *mut Args;
    // SAFETY: the caller's contract; both are aligned u32 fields.
    unsafe {
        (
            AtomicU32::from_ptr(&raw mut (*a).fdt_pending),
            AtomicU32::from_ptr(&raw mut (*a).fdt_placed),
        )
    }
}

fn wake(w: &AtomicU32) {
    // SAFETY: a futex wake on a word of the shared region.
    unsafe { call(NR_FUTEX, w.as_ptr() as u64, FUTEX_WAKE, i32::MAX as u64, 0) };
}

/// Sleeps until `done(w)`.
fn wait_until(w: &AtomicU32, done: impl Fn(u32) -> bool) {
    loop {
        let now = w.load(Ordering::Acquire);
        if done(now) {
            return;
        }
        // SAFETY: a futex wait on a word of the shared region, while it
        // holds `now`.
        unsafe { call(NR_FUTEX, w.as_ptr() as u64, FUTEX_WAIT, now as u64, 0) };
    }
}

/// A process sharing an ancestor's fd table: done with the fds rcriu
/// opened for it, it tells the table's holder, and waits until the fds
/// are placed (nothing it does after may open an fd the placing would
/// take).
pub fn hand_over(a: &Args) {
    // SAFETY: rcriu put the holder's args address in `fdt_owner`.
    let (pending, placed) = unsafe { words(a.fdt_owner) };
    if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        wake(pending);
    }
    wait_until(placed, |v| v != 0);
}

/// The holder of a shared fd table waits until every sharer is done with
/// the fds rcriu opened for it.
pub fn wait_sharers(a: &mut Args) {
    // SAFETY: its own args' word, aligned, in the region; sharers touch it
    // only atomically.
    let pending = unsafe { AtomicU32::from_ptr(&raw mut a.fdt_pending) };
    wait_until(pending, |v| v == 0);
}

/// The holder says the fds are placed.
pub fn placed(a: &mut Args) {
    // SAFETY: as in `wait_sharers`.
    let placed = unsafe { AtomicU32::from_ptr(&raw mut a.fdt_placed) };
    placed.store(1, Ordering::Release);
    wake(placed);
}
