//! The file descriptors, placed at their numbers: rcriu's open files
//! moved there, then the files the restorer opens itself (its own /proc
//! files, pidfds of itself); every other fd is closed. Then the file
//! locks the process must take itself (POSIX locks, flocks, leases).

use core::sync::atomic::{AtomicU32, Ordering};

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, call, value};
use rcriu_parasite_abi::restorer::{
    Args, FdMove, LOCK_FLOCK, LOCK_LEASE, LOCK_POSIX, LateOpen, TakeLock,
};

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
    // SAFETY: rcriu wrote `nr_locks` locks at `locks`.
    let locks: &[TakeLock] = unsafe { array(a.locks, a.nr_locks) };
    let first = (moves.len() + late.len()) as u32;
    for (i, l) in locks.iter().enumerate() {
        take_lock(l, first + i as u32)?;
    }
    Ok(())
}

/// `struct flock`.
#[repr(C)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
}

/// Takes one lock, without waiting (a conflicting lock held elsewhere
/// fails the restore).
fn take_lock(l: &TakeLock, index: u32) -> Res {
    let fd = l.fd as u64;
    let r = match l.kind {
        LOCK_POSIX => {
            let f = Flock {
                l_type: l.ltype as i16,
                l_whence: SEEK_SET as i16,
                l_start: l.start,
                l_len: l.len,
                l_pid: 0,
            };
            // SAFETY: fcntl reads the flock struct, which outlives it.
            unsafe { call(NR_FCNTL, fd, F_SETLK, addr(&f), 0) }
        }
        LOCK_FLOCK => {
            let op = if l.ltype == F_WRLCK { LOCK_EX } else { LOCK_SH };
            value(NR_FLOCK, fd, op | LOCK_NB, 0)
        }
        LOCK_LEASE if l.ltype & LEASE_BREAKING != 0 => break_lease(l.fd, l.ltype & !LEASE_BREAKING),
        LOCK_LEASE => value(NR_FCNTL, fd, F_SETLEASE, l.ltype as u64),
        _ => -EINVAL,
    };
    ok(r, index).map(drop)
}

/// Added to a lease's type while it is being broken.
const LEASE_BREAKING: u32 = 4;

/// A lease being broken toward `target` (F_RDLCK or F_UNLCK), as CRIU
/// restores one: the lease the file's access mode gives taken, then
/// broken by an open of the file (through /proc/self/fd) that it makes
/// fail with EWOULDBLOCK. The lease signal this break sends (pending: the
/// restorer blocks every signal) is taken back: the process had its own
/// when its lease was first broken.
fn break_lease(fd: i32, target: u32) -> i64 {
    let fl = value(NR_FCNTL, fd as u64, F_GETFL, 0);
    if fl < 0 {
        return fl;
    }
    let held = if fl as u64 & O_ACCMODE == O_RDONLY {
        F_RDLCK
    } else {
        F_WRLCK
    };
    let r = value(NR_FCNTL, fd as u64, F_SETLEASE, held as u64);
    if r < 0 {
        return r;
    }
    let how = match target {
        F_UNLCK => O_WRONLY,
        F_RDLCK => O_RDONLY,
        _ => return -EINVAL,
    };
    let mut path = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd as u32, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        path[14 + i] = digits[len - 1 - i];
    }
    // SAFETY: a NUL-terminated path the kernel reads.
    let r = unsafe { call(NR_OPEN, addr(&path), how | O_NONBLOCK | O_CLOEXEC, 0, 0) };
    match r {
        r if r == -EAGAIN => {
            let sig = match value(NR_FCNTL, fd as u64, F_GETSIG, 0) {
                s if s > 0 => s as u64,
                _ => SIGIO,
            };
            let set: u64 = 1 << (sig - 1);
            let zero = [0u64; 2];
            // SAFETY: the kernel reads the set and the zero timeout.
            while unsafe { call(NR_RT_SIGTIMEDWAIT, addr(&set), 0, addr(&zero), 8) } > 0 {}
            0
        }
        r if r >= 0 => {
            // Nothing broke: no lease was in the way.
            value(NR_CLOSE, r as u64, 0, 0);
            -EINVAL
        }
        r => r,
    }
}

/// Opens one late file at its number and position.
fn open_late(l: &LateOpen) -> Res {
    let cloexec = l.flags as u64 & O_CLOEXEC != 0;
    let fd = if l.path == 0 {
        // A pidfd of process `pos` of the tree, this one when 0 (always
        // opened close-on-exec).
        let pid = match l.pos {
            0 => value(NR_GETPID, 0, 0, 0) as u64,
            p => p,
        };
        let fd = ok(value(NR_PIDFD_OPEN, pid, l.flags as u64 & !O_CLOEXEC, 0), 0)?;
        if fd == l.to as i64 && !cloexec {
            ok(value(NR_FCNTL, fd as u64, F_SETFD, 0), 0)?;
        }
        fd
    } else {
        // SAFETY: the path is NUL-terminated in the region.
        ok(unsafe { call(NR_OPEN, l.path, l.flags as u64, 0, 0) }, 0)?
    };
    if fd != l.to as i64 {
        let flags = if cloexec { O_CLOEXEC } else { 0 };
        let r = value(NR_DUP3, fd as u64, l.to as u64, flags);
        value(NR_CLOSE, fd as u64, 0, 0);
        ok(r, 0)?;
    }
    if l.path != 0 && l.pos != 0 {
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
