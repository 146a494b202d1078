//! The SysV IPC calls the dump of an IPC namespace makes (neither std nor
//! rustix offers them): the state of a segment, semaphore set or queue by
//! its id, a set's values, a queue's messages copied without taking them
//! (`MSG_COPY`), and a segment's memory as a file.
//!
//! # Safety
//! A module of the crate with `unsafe` (with `sys` and the other `*_sys`).
//! Each wrapper is safe to call: it passes the kernel ids and pointers to
//! buffers sized for what the kernel writes; the one attach it makes is
//! its own, undone before it returns.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `shmctl(IPC_STAT)` of segment `id`.
pub fn shm_stat(id: i32) -> io::Result<libc::shmid_ds> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: the kernel writes one shmid_ds into ours.
    check(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zeroed, then filled by the kernel.
    Ok(unsafe { ds.assume_init() })
}

/// `semctl(IPC_STAT)` of semaphore set `id`.
pub fn sem_stat(id: i32) -> io::Result<libc::semid_ds> {
    let mut ds = MaybeUninit::<libc::semid_ds>::zeroed();
    // SAFETY: the kernel writes one semid_ds where the semun points.
    check(unsafe { libc::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zeroed, then filled by the kernel.
    Ok(unsafe { ds.assume_init() })
}

/// `msgctl(IPC_STAT)` of queue `id`.
pub fn msg_stat(id: i32) -> io::Result<libc::msqid_ds> {
    let mut ds = MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: the kernel writes one msqid_ds into ours.
    check(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zeroed, then filled by the kernel.
    Ok(unsafe { ds.assume_init() })
}

/// The values of the `n` semaphores of set `id` (`GETALL`).
pub fn sem_values(id: i32, n: usize) -> io::Result<Vec<u16>> {
    let mut v = vec![0u16; n.max(1)];
    // SAFETY: the kernel writes the set's values, as many as it has
    // (`n`, read from its state), into the array.
    check(unsafe { libc::semctl(id, 0, libc::GETALL, v.as_mut_ptr()) })?;
    v.truncate(n);
    Ok(v)
}

/// Message `index` of queue `id`, copied (`MSG_COPY`): its type and
/// text, `max` bytes at most.
pub fn msg_copy(id: i32, index: usize, max: usize) -> io::Result<(i64, Vec<u8>)> {
    // `struct msgbuf`: the type, then the text.
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: the kernel writes the type and at most `max` bytes of text
    // into the buffer of 8 + max bytes.
    let n = unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            max,
            index as libc::c_long,
            libc::IPC_NOWAIT | libc::MSG_COPY,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ty = [0u8; 8];
    ty.copy_from_slice(&buf[..8]);
    let len = (n as usize).min(max);
    Ok((i64::from_ne_bytes(ty), buf[8..8 + len].to_vec()))
}

/// Segment `id` (of `size` bytes) as a read-only file of its memory:
/// attached, its `map_files` link opened, detached.
pub fn shm_file(id: i32, size: u64) -> io::Result<File> {
    // SAFETY: the kernel picks a free place in rcriu's address space; the
    // attach is ours and undone below.
    let at = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
    if at as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    let start = at as u64;
    let end = start + size.div_ceil(4096) * 4096;
    let opened = File::open(format!("/proc/self/map_files/{start:x}-{end:x}"));
    // SAFETY: `at` is the attach made above, which nothing else uses.
    let detached = check(unsafe { libc::shmdt(at) });
    let f = opened?;
    detached?;
    Ok(f)
}
