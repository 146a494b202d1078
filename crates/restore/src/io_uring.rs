//! io_uring instances (rcriu's own `rcriu_io_uring_entry`), made again
//! idle at the very end, in the process itself, once its memory is in
//! place.
//!
//! The kernel maps a ring's regions only where it chooses: an io_uring
//! file refuses any address given to mmap, MAP_FIXED or not, and mremap
//! to a fixed place (its `get_unmapped_area` takes no address). So the
//! process's mappings of its ring become mappings of a memfd of rcriu's,
//! at the same addresses with the same protections (the ring region
//! wherever the process mapped it, at IORING_OFF_SQ_RING and
//! IORING_OFF_CQ_RING alike, the SQE array at IORING_OFF_SQES), and the
//! ring is made again on that memory (`IORING_SETUP_NO_MMAP`, the
//! regions at `cq_off.user_addr` and `sq_off.user_addr`):
//! - by a syscall in the process (the ring's memory is pinned from the
//!   caller's address space), with the dumped sizes and setup flags, its
//!   fd moved to the dumped number;
//! - its counters, which the kernel keeps and has no setter for, brought
//!   to the dumped head by no-op requests (zeroed SQEs) submitted and
//!   reaped in batches, by rcriu on its copy of the fd (by the process
//!   for a single-issuer ring), rcriu writing the memfd;
//! - then the two regions given their dumped bytes (SQ array, flags,
//!   CQEs, SQEs), before any instruction of the process runs;
//! - its registered files (the process's fds of the dumped numbers) and
//!   buffers (the process's memory) registered by syscalls in it.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use rcriu_compel::Remote;
use rcriu_compel::sys::uring::{self, Params};
use rcriu_compel::sys::{LocalMap, slice_bytes};
use rcriu_images::vma::VMA_FILE_SHARED;
use rcriu_images::{ImageFile, pb};
use rcriu_proc::Pid;

use crate::region::Region;
use crate::{Error, Result};

/// The most no-op batches a restore submits (the dump refuses more).
const MAX_BATCHES: u32 = 1 << 16;
/// The flags a dump finds out and the restore makes a ring with.
const KNOWN_FLAGS: u32 = uring::SETUP_CQSIZE
    | uring::SETUP_R_DISABLED
    | uring::SETUP_SQE128
    | uring::SETUP_CQE32
    | uring::SETUP_SINGLE_ISSUER
    | uring::SETUP_DEFER_TASKRUN
    | uring::SETUP_NO_SQARRAY;
/// `IORING_SETUP_NO_MMAP`: the rings live in memory the caller gives.
const SETUP_NO_MMAP: u32 = 1 << 14;
/// The most registered buffers or files one syscall in the process
/// registers (their arrays go on the restorer's stack, 32 KiB).
const MAX_REGISTERED: usize = 2048;
const PAGE: u64 = 4096;

fn bad(e: &pb::RcriuIoUringEntry, what: impl std::fmt::Display) -> Error {
    Error::invalid(
        ImageFile::Files.name(),
        format!("io_uring {:#x}: {what}", e.id),
    )
}

/// Refuses, without making anything, an entry the restore cannot make.
pub fn check(e: &pb::RcriuIoUringEntry) -> Result<()> {
    let sizes_ok = e.sq_entries.is_power_of_two()
        && e.sq_entries <= 32768
        && e.cq_entries.is_power_of_two()
        && e.cq_entries <= 65536
        && e.cq_entries >= e.sq_entries;
    if !sizes_ok {
        return Err(bad(
            e,
            format!("bad sizes {}/{}", e.sq_entries, e.cq_entries),
        ));
    }
    if e.setup_flags & !KNOWN_FLAGS != 0 {
        return Err(bad(
            e,
            format!("setup flags {:#x} rcriu does not make", e.setup_flags),
        ));
    }
    if e.sq_head.div_ceil(e.sq_entries) > MAX_BATCHES {
        return Err(bad(e, format!("head {} too far on", e.sq_head)));
    }
    if e.setup_flags & uring::SETUP_R_DISABLED != 0 && e.sq_head != 0 {
        return Err(bad(e, "a disabled ring that went round"));
    }
    if e.bufs.len() > MAX_REGISTERED || e.files.len() > MAX_REGISTERED {
        return Err(Error::unsupported(format!(
            "restoring io_uring {:#x} with {} registered buffers and {} files (at most {MAX_REGISTERED} of each)",
            e.id,
            e.bufs.len(),
            e.files.len()
        )));
    }
    if e.files.iter().any(|&f| f < -1) {
        return Err(bad(e, "a registered file of a negative fd"));
    }
    if e.rings.is_empty() || e.sqes.is_empty() {
        return Err(bad(e, "empty regions"));
    }
    Ok(())
}

fn pages(len: usize) -> u64 {
    (len as u64).next_multiple_of(PAGE)
}

/// The memory of one ring of a process: a memfd holding its ring region
/// (from offset 0) and its SQE array (after it), mapped where the process
/// mapped the ring.
#[derive(Debug)]
pub struct RingMem {
    pub id: u32,
    /// rcriu's copy of the memfd.
    pub memfd: OwnedFd,
    /// The index of the memfd in the memory plan's files.
    pub file: usize,
    /// Where the process maps the ring region, and the SQE array (whole).
    pub rings_at: Option<u64>,
    pub sqes_at: Option<u64>,
}

/// A memfd for the regions of ring `e`, its copy added to `files`.
fn memory(e: &pb::RcriuIoUringEntry, files: &mut Vec<crate::files::Source>) -> Result<RingMem> {
    let what = || format!("the memory of io_uring {:#x}", e.id);
    let name = format!("rcriu-io_uring-{:x}", e.id);
    let memfd: OwnedFd = rustix::fs::memfd_create(name.as_str(), rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|err| Error::io(format!("making {}", what()))(err.into()))?;
    rustix::fs::ftruncate(&memfd, pages(e.rings.len()) + pages(e.sqes.len()))
        .map_err(|err| Error::io(format!("sizing {}", what()))(err.into()))?;
    let copy = memfd
        .try_clone()
        .map_err(Error::io(format!("holding {}", what())))?;
    files.push(crate::files::Source::new(copy));
    Ok(RingMem {
        id: e.id,
        memfd,
        file: files.len() - 1,
        rings_at: None,
        sqes_at: None,
    })
}

/// The memfds of the rings a process maps, by file id.
#[derive(Debug, Default)]
pub struct Mappings {
    pub rings: BTreeMap<u32, RingMem>,
}

impl Mappings {
    /// The file (an index into `files`, where a new memfd goes) and
    /// offset an area `v` of a mapping of ring `e` maps.
    pub fn area(
        &mut self,
        e: &pb::RcriuIoUringEntry,
        v: &pb::VmaEntry,
        files: &mut Vec<crate::files::Source>,
    ) -> Result<(usize, u64)> {
        check(e)?;
        let rings_len = pages(e.rings.len());
        let sqes_len = pages(e.sqes.len());
        let r = match self.rings.entry(e.id) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(memory(e, files)?),
        };
        let len = v.end - v.start;
        let (at, part) = match v.pgoff {
            uring::OFF_SQ_RING | uring::OFF_CQ_RING => (0, rings_len),
            uring::OFF_SQES => (rings_len, sqes_len),
            other => return Err(bad(e, format!("mapped at offset {other:#x}"))),
        };
        if v.status & VMA_FILE_SHARED == 0 || len > part {
            return Err(bad(
                e,
                format!("a mapping of {len} bytes at {:#x}", v.start),
            ));
        }
        if len == part {
            if at == 0 {
                r.rings_at.get_or_insert(v.start);
            } else {
                r.sqes_at = Some(v.start);
            }
        }
        Ok((r.file, at))
    }

    /// Every ring mapped has both its regions mapped whole.
    pub fn check(&self, pid: u32) -> Result<()> {
        for r in self.rings.values() {
            if r.rings_at.is_none() || r.sqes_at.is_none() {
                return Err(Error::unsupported(format!(
                    "restoring io_uring {:#x} of process {pid}, whose regions it does not map whole",
                    r.id
                )));
            }
        }
        Ok(())
    }
}

/// One ring to make in a process at the end.
#[derive(Debug)]
pub struct Final<'a> {
    pub fd: i32,
    pub cloexec: bool,
    pub entry: &'a pb::RcriuIoUringEntry,
    pub mem: RingMem,
}

/// The rings process `pid` holds as `fds` (`(fd, close-on-exec, id)`),
/// with their memory from `maps`; every ring it holds must be mapped.
pub fn finals<'a>(
    pid: u32,
    fds: &[(i32, bool, u32)],
    maps: &mut Mappings,
    files: &'a BTreeMap<u32, Box<pb::FileEntry>>,
) -> Result<Vec<Final<'a>>> {
    let mut out = Vec::with_capacity(fds.len());
    for &(fd, cloexec, id) in fds {
        let entry = files
            .get(&id)
            .and_then(|f| f.rcriu_io_uring.as_deref())
            .ok_or_else(|| {
                Error::invalid(ImageFile::Files.name(), format!("no io_uring {id:#x}"))
            })?;
        let mem = maps.rings.remove(&id).ok_or_else(|| {
            Error::unsupported(format!(
                "restoring io_uring {id:#x} (fd {fd} of process {pid}), which the process does not map"
            ))
        })?;
        out.push(Final {
            fd,
            cloexec,
            entry,
            mem,
        });
    }
    if let Some(r) = maps.rings.values().next() {
        return Err(Error::unsupported(format!(
            "restoring a mapping of io_uring {:#x} by process {pid}, which holds no fd of it",
            r.id
        )));
    }
    Ok(out)
}

/// Makes ring `f` in process `pid` (stopped, `remote` a syscall in it,
/// `region` its scratch memory): see the module's comment.
pub fn make(pid: Pid, remote: &Remote<'_>, region: &Region, f: Final<'_>) -> Result<()> {
    let e = f.entry;
    let what = format!("io_uring {:#x} (fd {}) of process {pid}", e.id, f.fd);
    let rings_at = f.mem.rings_at.expect("Mappings::check saw it mapped");
    let sqes_at = f.mem.sqes_at.expect("Mappings::check saw it mapped");
    let mut p = Params {
        flags: e.setup_flags | uring::SETUP_CQSIZE | SETUP_NO_MMAP,
        cq_entries: e.cq_entries,
        ..Params::default()
    };
    p.cq_off.user_addr = rings_at;
    p.sq_off.user_addr = sqes_at;
    let at = region
        .put_scratch(slice_bytes(std::slice::from_ref(&p)))
        .expect("the params fit the scratch room");
    let made = remote.syscall_ok(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        [u64::from(e.sq_entries), at, 0, 0, 0, 0],
    )? as i32;
    let p: Params = region.get_scratch();
    if made != f.fd {
        let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
        remote.syscall_ok(
            "dup3",
            libc::SYS_dup3,
            [made as u64, f.fd as u64, flags as u64, 0, 0, 0],
        )?;
        remote.syscall_ok("close", libc::SYS_close, [made as u64, 0, 0, 0, 0, 0])?;
    } else if !f.cloexec {
        remote.syscall_ok(
            "fcntl",
            libc::SYS_fcntl,
            [made as u64, libc::F_SETFD as u64, 0, 0, 0, 0],
        )?;
    }
    if p.sq_entries != e.sq_entries
        || p.cq_entries != e.cq_entries
        || p.rings_len() != e.rings.len()
        || p.sqes_len() != e.sqes.len()
    {
        return Err(bad(
            e,
            format!(
                "regions of {} and {} bytes for {}/{} entries, where this kernel makes {} and {} for {}/{}",
                e.rings.len(),
                e.sqes.len(),
                e.sq_entries,
                e.cq_entries,
                p.rings_len(),
                p.sqes_len(),
                p.sq_entries,
                p.cq_entries
            ),
        ));
    }
    let mem = LocalMap::map(
        f.mem.memfd.as_fd(),
        0,
        (pages(e.rings.len()) + pages(e.sqes.len())) as usize,
    )
    .map_err(Error::io(format!("mapping the memory of {what}")))?;
    if e.sq_head != 0 && e.setup_flags & uring::SETUP_SINGLE_ISSUER != 0 {
        // Its issuer, the process, submits them.
        advance(&p, &mem, e.sq_head, |n| {
            let r = remote.syscall(
                libc::SYS_io_uring_enter,
                [
                    f.fd as u64,
                    u64::from(n),
                    u64::from(n),
                    u64::from(uring::ENTER_GETEVENTS),
                    0,
                    0,
                ],
            );
            match r {
                Ok(r) if (-4095..0).contains(&r) => {
                    Err(std::io::Error::from_raw_os_error(-r as i32))
                }
                Ok(r) => Ok(r as u32),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        })
        .map_err(Error::io(format!("bringing the counters of {what} back")))?;
    } else if e.sq_head != 0 {
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).expect("a restored process has a pid"),
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|err| Error::io(format!("taking {what}"))(err.into()))?;
        let ring =
            rustix::process::pidfd_getfd(&pidfd, f.fd, rustix::process::PidfdGetfdFlags::empty())
                .map_err(|err| Error::io(format!("taking {what}"))(err.into()))?;
        advance(&p, &mem, e.sq_head, |n| {
            uring::enter(ring.as_fd(), n, n, uring::ENTER_GETEVENTS)
        })
        .map_err(Error::io(format!("bringing the counters of {what} back")))?;
    }
    mem.write(0, &e.rings);
    mem.write(pages(e.rings.len()) as usize, &e.sqes);
    if !e.files.is_empty() {
        let at = region
            .put_scratch(slice_bytes(&e.files))
            .expect("checked: the files fit the scratch room");
        remote.syscall_ok(
            "io_uring_register",
            libc::SYS_io_uring_register,
            [f.fd as u64, 2, at, e.files.len() as u64, 0, 0],
        )?;
    }
    if !e.bufs.is_empty() {
        let iovs: Vec<rcriu_compel::abi::restorer::IoVec> = e
            .bufs
            .iter()
            .map(|b| rcriu_compel::abi::restorer::IoVec {
                base: b.addr,
                len: b.len,
            })
            .collect();
        let at = region
            .put_scratch(slice_bytes(&iovs))
            .expect("checked: the buffers fit the scratch room");
        remote.syscall_ok(
            "io_uring_register",
            libc::SYS_io_uring_register,
            [
                f.fd as u64,
                u64::from(uring::REGISTER_BUFFERS),
                at,
                iovs.len() as u64,
                0,
                0,
            ],
        )?;
    }
    let status = crate::anon::status_flags(e.flags);
    if status != 0 {
        remote.syscall_ok(
            "fcntl",
            libc::SYS_fcntl,
            [f.fd as u64, libc::F_SETFL as u64, status as u64, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Submits (`enter(n)`: n submitted, n waited for) and reaps no-op
/// requests (zeroed SQEs) until the ring's SQ head and CQ tail are at
/// `to`; `mem` holds its regions.
fn advance(
    p: &Params,
    mem: &LocalMap,
    to: u32,
    mut enter: impl FnMut(u32) -> std::io::Result<u32>,
) -> std::io::Result<()> {
    let at = |off: u32| off as usize;
    if p.flags & uring::SETUP_NO_SQARRAY == 0 {
        for i in 0..p.sq_entries {
            mem.put(at(p.sq_off.array) + 4 * i as usize, &i);
        }
    }
    let mut done = 0u32;
    while done < to {
        let n = (to - done).min(p.sq_entries);
        mem.put(at(p.sq_off.tail), &(done + n));
        let got = enter(n)?;
        let tail: u32 = mem.get(at(p.cq_off.tail));
        mem.put(at(p.cq_off.head), &tail);
        if got != n || tail != done + n {
            return Err(std::io::Error::other(format!(
                "{got} of {n} no-op requests consumed, CQ tail {tail}"
            )));
        }
        done += n;
    }
    Ok(())
}
