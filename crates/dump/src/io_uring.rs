//! io_uring instances, rcriu's own (CRIU 4.2 dumps none): an idle ring,
//! whose every submission was consumed and every completion reaped, with
//! no request the kernel still holds, goes into an
//! `rcriu_io_uring_entry` (proto/files.proto): its sizes, the setup flags
//! the kernel lets us find out, its counters, its registered files (as
//! fds of the process) and buffers, and the bytes of its two regions.
//!
//! The kernel shows no ring's setup flags. They are found out from here,
//! on rcriu's copy of the fd, while the process is frozen:
//! - `io_uring_enter` with nothing to submit fails with EBADFD on a ring
//!   still disabled (`R_DISABLED`) and with EEXIST on a single-issuer one
//!   (`SINGLE_ISSUER`, taken in a process of one thread only: its issuer
//!   is then the leader, where the restore makes it), which with nothing
//!   to wait for fails so again when its task work is deferred
//!   (`DEFER_TASKRUN`);
//! - fdinfo lists the entries between a head and a tail. With the CQ head
//!   one back, it shows one CQE, with `extra1`/`extra2` when CQEs are 32
//!   bytes (`CQE32`); with the SQ tail one ahead, one SQE, with `e0`...
//!   when SQEs are 128 bytes (`SQE128`), none without an SQ array
//!   (`NO_SQARRAY`, where fdinfo stops). The two counters, the process's
//!   memory, are put back at once;
//! - without an SQ array, the SQE size is told by the length of the
//!   process's mapping of the SQEs, when the two sizes would differ there.
//!
//! Flags of behaviour only (`COOP_TASKRUN`, `TASKRUN_FLAG`, `SUBMIT_ALL`,
//! `ATTACH_WQ`, `IOPOLL`...) leave no trace and are not carried: the ring
//! made again completes the same requests without them.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use rcriu_compel::sys::LocalMap;
use rcriu_compel::sys::uring::{self, Params};
use rcriu_images::pb;
use rcriu_proc::{IoUringInfo, Pid, Task, VmaPath};

use crate::files::OpenFd;
use crate::{Error, Result, sys};

/// The most batches of no-op requests (one SQ's worth each) a restore
/// submits to bring the counters back: a ring further on is refused.
pub const MAX_BATCHES: u32 = 1 << 16;

fn refuse(pid: Pid, fd: i32, what: impl std::fmt::Display) -> Error {
    Error::unsupported(pid, format!("fd {fd}: an io_uring instance {what}"))
}

/// The fdinfo of the ring open as `f`.
fn info(pid: Pid, f: &OpenFd) -> Result<IoUringInfo> {
    Task::open(pid)
        .and_then(|mut t| t.io_uring_fdinfo(f.fd))
        .map_err(Error::proc(pid))
}

/// Refuses a ring that is not idle, or that has what the restore cannot
/// make again.
fn check_idle(pid: Pid, fd: i32, i: &IoUringInfo) -> Result<()> {
    let refuse = |what: String| Err(refuse(pid, fd, what));
    if i.sq_thread != -1 {
        return refuse(format!(
            "with a submission thread (SQPOLL, thread {})",
            i.sq_thread
        ));
    }
    if i.sq_head != i.sq_tail || i.cached_sq_head != i.sq_head {
        return refuse(format!(
            "with submissions not yet consumed (SQ head {}, tail {})",
            i.sq_head, i.sq_tail
        ));
    }
    if i.cq_head != i.cq_tail || i.cached_cq_tail != i.cq_tail {
        return refuse(format!(
            "with completions not yet reaped (CQ head {}, tail {})",
            i.cq_head, i.cq_tail
        ));
    }
    if i.cq_tail != i.sq_head {
        return refuse(format!(
            "with requests in flight ({} submitted, {} completed)",
            i.sq_head, i.cq_tail
        ));
    }
    if i.poll_list != 0 || i.overflow_list != 0 {
        return refuse(format!(
            "with requests the kernel holds ({} polled, {} completions overflowed)",
            i.poll_list, i.overflow_list
        ));
    }
    if i.personalities {
        return refuse("with registered personalities".to_owned());
    }
    if i.napi {
        return refuse("with NAPI busy polling".to_owned());
    }
    let pow2 = |m: u32| m.checked_add(1).is_some_and(u32::is_power_of_two);
    if !pow2(i.sq_mask) || !pow2(i.cq_mask) {
        return Err(Error::Inconsistent {
            pid,
            what: format!("fd {fd}: io_uring masks {:#x}, {:#x}", i.sq_mask, i.cq_mask),
        });
    }
    if i.sq_head.div_ceil(i.sq_mask + 1) > MAX_BATCHES {
        return refuse(format!(
            "whose queue has gone round {} times (the restore brings back at most {MAX_BATCHES})",
            i.sq_head / (i.sq_mask + 1)
        ));
    }
    Ok(())
}

/// Refuses, from /proc alone (before the process is infected), the ring
/// open as fd `fd` of process `pid` unless it is idle.
pub fn check(pid: Pid, fd: i32) -> Result<()> {
    let i = Task::open(pid)
        .and_then(|mut t| t.io_uring_fdinfo(fd))
        .map_err(Error::proc(pid))?;
    check_idle(pid, fd, &i)
}

/// Refuses a ring whose regions the process does not map whole, once
/// each (the restore maps them on memory of its own, where the process
/// had them).
fn check_mapped(pid: Pid, f: &OpenFd, p: &Params) -> Result<()> {
    let page = |n: usize| (n as u64).next_multiple_of(4096);
    let maps = Task::open(pid)
        .and_then(|mut t| t.maps())
        .map_err(Error::proc(pid))?;
    let (mut rings, mut sqes) = (false, false);
    for v in maps.iter().filter(|v| is_ring_area(v, f.info.ino)) {
        let (whole, seen) = match v.offset {
            uring::OFF_SQES => (page(p.sqes_len()), &mut sqes),
            _ => (page(p.rings_len()), &mut rings),
        };
        if v.len() > whole {
            return Err(refuse(
                pid,
                f.fd,
                format!("mapped beyond its regions at {:#x}", v.start),
            ));
        }
        *seen |= v.len() == whole;
    }
    if !rings || !sqes {
        return Err(refuse(
            pid,
            f.fd,
            "whose regions the process does not map whole",
        ));
    }
    Ok(())
}

/// Whether `v` maps the ring of inode `ino`.
fn is_ring_area(v: &rcriu_proc::Vma, ino: u64) -> bool {
    v.inode == ino
        && matches!(&v.path, VmaPath::File { path, .. } if path.as_os_str().as_bytes() == b"anon_inode:[io_uring]")
}

/// The offsets the kernel gives a ring of these sizes and flags (from a
/// ring of rcriu's own, closed at once).
fn layout(pid: Pid, sq: u32, cq: u32, flags: u32) -> Result<Params> {
    let mut p = Params {
        flags: flags | uring::SETUP_CQSIZE,
        cq_entries: cq,
        ..Params::default()
    };
    uring::setup(sq, &mut p).map_err(Error::sys("making an io_uring like the dumped one", pid))?;
    if p.sq_entries != sq || p.cq_entries != cq || p.features & uring::FEAT_SINGLE_MMAP == 0 {
        return Err(Error::unsupported(
            pid,
            format!("an io_uring of {sq}/{cq} entries, which this kernel makes otherwise"),
        ));
    }
    Ok(p)
}

/// Changes the u32 at `off` of `map` with `change` while `f` runs, then
/// puts it back.
fn nudged<T>(
    map: &LocalMap,
    off: u32,
    change: impl FnOnce(u32) -> u32,
    f: impl FnOnce() -> T,
) -> T {
    let off = off as usize;
    let old: u32 = map.get(off);
    map.put(off, &change(old));
    let r = f();
    map.put(off, &old);
    r
}

/// The setup flags of the ring `f` that rcriu finds out and restores.
fn setup_flags(pid: Pid, f: &OpenFd, i: &IoUringInfo) -> Result<u32> {
    let fd = f.fd;
    let (sq, cq) = (i.sq_mask + 1, i.cq_mask + 1);
    let mut flags = 0;
    match uring::enter(f.file.as_fd(), 1, 0, 0) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBADFD) => flags |= uring::SETUP_R_DISABLED,
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // Its issuer is the thread that made it: the restore makes it
            // in the process's leader, which must then be that thread.
            let threads = Task::open(pid)
                .and_then(|mut t| t.status())
                .map_err(Error::proc(pid))?
                .threads;
            if threads != 1 {
                return Err(refuse(
                    pid,
                    fd,
                    format!(
                        "of a single issuer (SINGLE_ISSUER) in a process of {threads} threads (which one issues cannot be told)"
                    ),
                ));
            }
            flags |= uring::SETUP_SINGLE_ISSUER;
            match uring::enter(f.file.as_fd(), 0, 0, uring::ENTER_GETEVENTS) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    flags |= uring::SETUP_DEFER_TASKRUN
                }
                Err(e) => return Err(Error::sys("probing an io_uring", pid)(e)),
            }
        }
        Err(e) => return Err(Error::sys("probing an io_uring", pid)(e)),
    }
    if cq != 2 * sq {
        flags |= uring::SETUP_CQSIZE;
    }
    let plain = layout(pid, sq, cq, 0)?;
    // The whole region as the largest layout would have it; only the
    // counters are touched until the layout is known.
    let len = plain.rings_len() + cq as usize * 16 + 64;
    let map = match LocalMap::map(
        f.file.as_fd(),
        uring::OFF_SQ_RING,
        len.next_multiple_of(4096),
    ) {
        Ok(m) => m,
        // Such a ring's mapping is refused (EINVAL, or ENOMEM where the
        // kernel finds no region to place).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOMEM)) => {
            return Err(refuse(
                pid,
                fd,
                "made without mappings (IORING_SETUP_NO_MMAP: on the process's memory, as rcriu restores rings)",
            ));
        }
        Err(e) => return Err(Error::sys("mapping an io_uring's rings", pid)(e)),
    };
    let cqes = nudged(
        &map,
        plain.cq_off.head,
        |h| h.wrapping_sub(1),
        || info(pid, f),
    )?
    .cqe_lines;
    if cqes.len() != 1 {
        return Err(Error::Inconsistent {
            pid,
            what: format!(
                "fd {fd}: the io_uring showed {} completions for one",
                cqes.len()
            ),
        });
    }
    if cqes[0].windows(8).any(|w| w == b", extra1") {
        flags |= uring::SETUP_CQE32;
    }
    let mut sqes = nudged(
        &map,
        plain.sq_off.tail,
        |t| t.wrapping_add(1),
        || info(pid, f),
    )?
    .sqe_lines;
    if sqes.is_empty() {
        // No SQ array, or one whose slot names no SQE: which one, the
        // slot (if any) tells.
        let array = layout(pid, sq, cq, flags & uring::SETUP_CQE32)?
            .sq_off
            .array;
        let slot = array + 4 * (i.sq_tail & i.sq_mask);
        let mut v = [0u8; 4];
        let mem =
            std::fs::File::open("/proc/self/mem").map_err(Error::file(pid, "/proc/self/mem"))?;
        let readable = mem
            .read_exact_at(&mut v, map.addr() + u64::from(slot))
            .is_ok();
        if readable && u32::from_ne_bytes(v) > i.sq_mask {
            sqes = nudged(
                &map,
                slot,
                |_| 0,
                || {
                    nudged(
                        &map,
                        plain.sq_off.tail,
                        |t| t.wrapping_add(1),
                        || info(pid, f),
                    )
                },
            )?
            .sqe_lines;
        }
    }
    match sqes.len() {
        0 => flags |= uring::SETUP_NO_SQARRAY | sqe_size_by_mapping(pid, f, sq)?,
        1 if sqes[0].windows(5).any(|w| w == b", e0:") => flags |= uring::SETUP_SQE128,
        1 => {}
        n => {
            return Err(Error::Inconsistent {
                pid,
                what: format!("fd {fd}: the io_uring showed {n} submissions for one"),
            });
        }
    }
    Ok(flags)
}

/// `SQE128` or 0 for a ring without an SQ array, from the length of the
/// process's mapping of its SQEs.
fn sqe_size_by_mapping(pid: Pid, f: &OpenFd, sq: u32) -> Result<u32> {
    let page = |n: u64| n.next_multiple_of(4096);
    let (small, big) = (page(u64::from(sq) * 64), page(u64::from(sq) * 128));
    let maps = Task::open(pid)
        .and_then(|mut t| t.maps())
        .map_err(Error::proc(pid))?;
    let mapped = maps
        .iter()
        .find(|v| is_ring_area(v, f.info.ino) && v.offset == uring::OFF_SQES);
    match mapped {
        Some(v) if small != big => Ok(if v.len() >= big {
            uring::SETUP_SQE128
        } else {
            0
        }),
        _ => Err(refuse(
            pid,
            f.fd,
            format!(
                "without an SQ array, of {sq} entries, whose SQE size (64 or 128 bytes) cannot be told"
            ),
        )),
    }
}

/// The fds of process `pid` that hold its ring's registered files (-1 for
/// an empty slot): each the one fd open on that path, or several open on
/// the same open file.
fn registered_files(pid: Pid, fd: i32, files: &[Option<Vec<u8>>]) -> Result<Vec<i32>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let fds = Task::open(pid)
        .and_then(|t| t.fds())
        .map_err(Error::proc(pid))?;
    let mut out = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let Some(path) = path else {
            out.push(-1);
            continue;
        };
        let name = String::from_utf8_lossy(path);
        let holders: Vec<i32> = fds
            .iter()
            .filter(|f| f.link.as_os_str().as_bytes() == path.as_slice() && f.fd != fd)
            .map(|f| f.fd)
            .collect();
        let Some(&first) = holders.first() else {
            return Err(refuse(
                pid,
                fd,
                format!("with registered file {i} ({name}), which no fd of the process holds"),
            ));
        };
        for &other in &holders[1..] {
            let same = sys::same_file(pid, first, pid, other)
                .map_err(Error::sys("comparing open files (kcmp)", pid))?;
            if !same {
                return Err(refuse(
                    pid,
                    fd,
                    format!(
                        "with registered file {i} ({name}), which fds {first} and {other} both open"
                    ),
                ));
            }
        }
        out.push(first);
    }
    Ok(out)
}

/// The entry of the io_uring instance `f`.
pub fn entry(pid: Pid, id: u32, f: &OpenFd, fown: pb::FownEntry) -> Result<pb::RcriuIoUringEntry> {
    let i = info(pid, f)?;
    check_idle(pid, f.fd, &i)?;
    let setup_flags = setup_flags(pid, f, &i)?;
    let (sq, cq) = (i.sq_mask + 1, i.cq_mask + 1);
    let p = layout(pid, sq, cq, setup_flags & !uring::SETUP_R_DISABLED)?;
    check_mapped(pid, f, &p)?;
    let read = |off: u64, len: usize| -> Result<Vec<u8>> {
        let map = LocalMap::map_readonly(f.file.as_fd(), off, len.next_multiple_of(4096))
            .map_err(Error::sys("mapping an io_uring's rings", pid))?;
        let mut bytes = vec![0u8; len];
        map.read(0, &mut bytes);
        Ok(bytes)
    };
    let rings = read(uring::OFF_SQ_RING, p.rings_len())?;
    let sqes = read(uring::OFF_SQES, p.sqes_len())?;
    // fdinfo, read again with the process frozen, must say the same.
    if info(pid, f)? != i {
        return Err(Error::Inconsistent {
            pid,
            what: format!("fd {}: the io_uring changed while frozen", f.fd),
        });
    }
    Ok(pb::RcriuIoUringEntry {
        id,
        flags: f.flags(),
        fown,
        setup_flags,
        sq_entries: sq,
        cq_entries: cq,
        sq_head: i.sq_head,
        files: registered_files(pid, f.fd, &i.files)?,
        bufs: i
            .bufs
            .iter()
            .map(|&(addr, len)| pb::RcriuIoUringBuf { addr, len })
            .collect(),
        rings,
        sqes,
    })
}
