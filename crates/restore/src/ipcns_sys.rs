//! The SysV IPC calls the restore of an IPC namespace makes (neither std
//! nor rustix offers them): making segments, semaphore sets and queues,
//! setting their owners, values and limits, sending messages, and a
//! segment's memory as a file to fill.
//!
//! # Safety
//! A module of the crate with `unsafe` (with `sys` and the other `*_sys`).
//! Each wrapper is safe to call: it passes the kernel ids and pointers to
//! buffers of the sizes the kernel reads or writes; the one attach it
//! makes is its own, undone before it returns.

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

const CREATE: libc::c_int = libc::IPC_CREAT | libc::IPC_EXCL;

/// A new segment of `size` bytes (`shmget(IPC_CREAT | IPC_EXCL)`).
pub fn shm_create(key: i32, size: u64, mode: u32) -> io::Result<i32> {
    // SAFETY: shmget takes only integers.
    check(unsafe { libc::shmget(key, size as libc::size_t, CREATE | mode as libc::c_int) })
}

/// Gives segment `id` owner `uid:gid`.
pub fn shm_set_owner(id: i32, uid: u32, gid: u32) -> io::Result<()> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: the kernel writes one shmid_ds into ours.
    check(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zeroed, then filled by the kernel.
    let mut ds = unsafe { ds.assume_init() };
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    // SAFETY: the kernel reads one shmid_ds.
    check(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Marks segment `id` removed (`IPC_RMID`): it goes with its last
/// detach.
pub fn shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// Locks segment `id` in memory (`SHM_LOCK`).
pub fn shm_lock(id: i32) -> io::Result<()> {
    // SAFETY: SHM_LOCK reads no buffer.
    check(unsafe { libc::shmctl(id, libc::SHM_LOCK, std::ptr::null_mut()) }).map(drop)
}

/// Segment `id` (of `size` bytes) as a read-write file of its memory:
/// attached, its `map_files` link opened, detached.
pub fn shm_file(id: i32, size: u64) -> io::Result<File> {
    // SAFETY: the kernel picks a free place in rcriu's address space; the
    // attach is ours and undone below.
    let at = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if at as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    let start = at as u64;
    let end = start + size.div_ceil(4096) * 4096;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/map_files/{start:x}-{end:x}"));
    // SAFETY: `at` is the attach made above, which nothing else uses.
    let detached = check(unsafe { libc::shmdt(at) });
    let f = opened?;
    detached?;
    Ok(f)
}

/// A new set of `nsems` semaphores.
pub fn sem_create(key: i32, nsems: u32, mode: u32) -> io::Result<i32> {
    // SAFETY: semget takes only integers.
    check(unsafe { libc::semget(key, nsems as libc::c_int, CREATE | mode as libc::c_int) })
}

/// Gives semaphore set `id` owner `uid:gid`.
pub fn sem_set_owner(id: i32, uid: u32, gid: u32) -> io::Result<()> {
    let mut ds = MaybeUninit::<libc::semid_ds>::zeroed();
    // SAFETY: the kernel writes one semid_ds where the semun points.
    check(unsafe { libc::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zeroed, then filled by the kernel.
    let mut ds = unsafe { ds.assume_init() };
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    // SAFETY: the kernel reads one semid_ds where the semun points.
    check(unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) }).map(drop)
}

/// Sets every value of semaphore set `id` (`SETALL`); `values` holds one
/// per semaphore of the set.
pub fn sem_set_values(id: i32, values: &[u16]) -> io::Result<()> {
    // SAFETY: the kernel reads as many values as the set has semaphores,
    // which the caller made `values.len()`.
    check(unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) }).map(drop)
}

/// A new message queue.
pub fn msg_create(key: i32, mode: u32) -> io::Result<i32> {
    // SAFETY: msgget takes only integers.
    check(unsafe { libc::msgget(key, CREATE | mode as libc::c_int) })
}

/// Gives queue `id` owner `uid:gid` and, when given, room for `qbytes`
/// bytes.
pub fn msg_set(id: i32, uid: u32, gid: u32, qbytes: Option<u32>) -> io::Result<()> {
    let mut ds = MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: the kernel writes one msqid_ds into ours.
    check(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zeroed, then filled by the kernel.
    let mut ds = unsafe { ds.assume_init() };
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    if let Some(q) = qbytes {
        ds.msg_qbytes = libc::msglen_t::from(q);
    }
    // SAFETY: the kernel reads one msqid_ds.
    check(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Sends a message of type `mtype` and text `text` to queue `id`,
/// without waiting.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> io::Result<()> {
    // `struct msgbuf`: the type, then the text.
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: the kernel reads the type and `text.len()` bytes after it.
    check(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) }).map(drop)
}
