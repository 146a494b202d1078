//! The pages of one image written by two workers at once, into room
//! reserved before the freeze where it can be.
//!
//! The pages image is the pages in pagemap order, back to back, so where
//! every byte goes is known before any is written. A long stretch of
//! readable pages is cut into chunks that two workers take, one from each
//! end: rcriu's own thread takes them from the front, in order, through
//! the parasite; a helper thread takes them from the back and copies them
//! from `/proc/PID/mem` (which leaves pages shared copy-on-write shared:
//! `process_vm_readv(2)` pins and so unshares them) into a shared mapping of the file at their
//! offsets. The bytes are the same as one worker's.
//!
//! Room first: on tmpfs, allocating the file's pages costs about as much
//! as filling them, so before the process is frozen rcriu allocates
//! (`fallocate(2)`, in an unnamed file named later) about as much as it
//! has anonymous memory ([`reserve`]). Into that room the parasite writes
//! the process's pages itself with `pwritev(2)`: one copy, no pipe, and
//! no allocation charged to the process's memory cgroup; never past the
//! process's RLIMIT_FSIZE, which would get it SIGXFSZ. Outside it (no
//! room, past it, or past the limit) the parasite `vmsplice`s pages into
//! the page pipe that rcriu `splice`s into the file, as CRIU does; so it
//! does too once a security module refuses the process's own writes into
//! rcriu's file.
//!
//! Why a mapping for the helper: on tmpfs every `write`/`splice` into one
//! file holds the inode's lock while it copies, so two writers of one
//! file at different offsets take turns and gain nothing; filling a
//! shared mapping's pages takes no such lock. Filling it costs more per
//! page (the fault clears each page first), and taking chunks from both
//! ends lets each worker do what its speed allows. Only tmpfs gets the
//! helper: elsewhere the lock is not the limit, and a full disk would only
//! show at writeback.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rcriu_compel::Parasite;
use rcriu_compel::abi::IoVec;
use rcriu_compel::abi::restorer::{claim, page_claims};
use rcriu_images::ImageDir;
use rcriu_images::pages::{PagesRoom, PagesWriter, on_tmpfs};
use rcriu_proc::{Pid, Task};

use crate::{Error, Result};
use rcriu_compel::sys::LocalMap;

/// The bytes a worker takes at a time.
const CHUNK: u64 = 8 << 20;
/// Below this a stretch is written by rcriu's thread alone: the helper
/// would not pay for itself.
const MIN_SPLIT: u64 = 64 << 20;

/// Appends the memory of `pid` at the readable ranges `iovs` to `img`;
/// returns the bytes written. `path` names `img` in errors; `fsize` is
/// the task's RLIMIT_FSIZE (its own writes past it would get it SIGXFSZ).
pub fn write(
    pid: Pid,
    parasite: &mut Parasite,
    iovs: &[IoVec],
    img: &mut PagesWriter,
    path: &Path,
    fsize: u64,
) -> Result<u64> {
    let total: u64 = iovs.iter().map(|v| v.len).sum();
    let pages_err = |source| Error::PagesWrite {
        pid,
        path: path.to_owned(),
        source,
    };
    let copy_err = |source| Error::PagesCopy {
        pid,
        path: path.to_owned(),
        source,
    };
    let start = img.offset();
    let fd = img.as_fd();
    let room = std::cell::Cell::new(img.reserved().min(fsize));
    // The parasite's part: straight into reserved room, or through the
    // page pipe at the file's position (put where the bytes go).
    let parasite_writes = |parasite: &mut Parasite, r: &[IoVec], lo: u64, hi: u64| {
        if start + hi <= room.get() {
            match parasite.write_pages(r, fd, start + lo) {
                Err(e) if e.denied() => {
                    log::info!(
                        "process {pid} may not write its pages itself ({e}): through the page pipe"
                    );
                    room.set(0);
                }
                r => return r.map_err(pages_err),
            }
        }
        rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(start + lo))
            .map_err(|e| copy_err(e.into()))?;
        parasite.dump_pages(r, fd).map_err(pages_err)
    };
    let map = if total >= MIN_SPLIT && on_tmpfs(fd) {
        helper_map(fd, start, total)
    } else {
        None
    };
    let Some(map) = map else {
        let m = parasite_writes(parasite, iovs, 0, total)?;
        rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(start + m))
            .map_err(|e| copy_err(e.into()))?;
        img.appended(m);
        return Ok(m);
    };

    let stream = Stream::new(iovs);
    let chunks = total.div_ceil(CHUNK);
    // Chunks of 8 MiB: u32 counts up to 32 PiB.
    let claims = AtomicU64::new(page_claims(0, chunks as u32));
    let (front, back) = std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("page helper".into())
            .spawn_scoped(s, || {
                let map = map;
                let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
                let mut done = 0u64;
                while let Some(k) = claim(&claims, false).map(u64::from) {
                    let (lo, hi) = (k * CHUNK, ((k + 1) * CHUNK).min(total));
                    if let Err(e) = copy(&map, mem.as_fd(), &stream.slice(lo, hi), lo, fd) {
                        claims.store(0, Ordering::Release);
                        return Err(e);
                    }
                    done += hi - lo;
                }
                Ok(done)
            });
        let mut done = 0u64;
        let mut front = Ok(());
        while let Some(k) = claim(&claims, true).map(u64::from) {
            let (lo, hi) = (k * CHUNK, ((k + 1) * CHUNK).min(total));
            match parasite_writes(parasite, &stream.slice(lo, hi), lo, hi) {
                Ok(m) => done += m,
                Err(e) => {
                    claims.store(0, Ordering::Release);
                    front = Err(e);
                    break;
                }
            }
        }
        // Without a helper (it could not start), the front took every chunk.
        let back = match helper {
            Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(e) => {
                log::debug!("process {pid}: no page helper: {e}");
                Ok(0)
            }
        };
        (front.map(|()| done), back)
    });
    let front = front?;
    let back = back.map_err(copy_err)?;
    log::debug!("process {pid}: {front} bytes of pages through the parasite, {back} by the helper");
    // The parasite's splices stopped where the helper's chunks begin.
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(start + total))
        .map_err(|e| copy_err(e.into()))?;
    img.appended(total);
    Ok(front + back)
}

/// The bytes worth reserving for the pages of `pid` ([`reserve`]): its
/// anonymous memory as `/proc/PID/status` counts it (RssAnon and
/// VmSwap), when that is enough for two writers. With `own`, only the
/// pages it does not share (Private_Dirty of `smaps_rollup`): those it
/// shares with its parent since fork are kept once, with the parent's.
pub fn room_wanted(pid: Pid, own: bool) -> Option<u64> {
    let status = Task::open(pid).and_then(|mut t| t.status()).ok()?;
    let anon = if own {
        private_dirty_kb(pid)?
    } else {
        status.rss_anon_kb?
    };
    let bytes = (anon + status.vm_swap_kb.unwrap_or(0)) << 10;
    // With some slack for pages it does not count (the vdso's) and for
    // growth until the freeze; what is left over is given back.
    (bytes >= MIN_SPLIT).then_some(bytes + bytes / 256 + (1 << 20))
}

/// The bytes worth reserving for the pages of `pid` in an incremental
/// dump into `dir` (`--track-mem` after a pre-dump): twice what the last
/// round (the parent images) wrote of it, since pages are written
/// between rounds at about the same pace; at least 1 MiB, at most its
/// anonymous memory. Without room, the few pages of a final dump go
/// through the page pipe, about three times slower, while it is frozen.
pub fn room_after_round(pid: Pid, dir: &ImageDir) -> Option<u64> {
    let parent = dir.parent().ok()??;
    let id = parent.pagemap(u32::try_from(pid).ok()?).ok()?.pages_id();
    let path = parent.file_path(rcriu_images::ImageFile::Pages(id.into()));
    let last = std::fs::metadata(path).ok()?.len();
    let status = Task::open(pid).and_then(|mut t| t.status()).ok()?;
    let anon = (status.rss_anon_kb? + status.vm_swap_kb.unwrap_or(0)) << 10;
    Some(last.saturating_mul(2).max(1 << 20).min(anon + (1 << 20)))
}

/// The `Private_Dirty` of `/proc/PID/smaps_rollup`, in KiB.
fn private_dirty_kb(pid: Pid) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// `bytes` of room for the pages of `pid`, reserved before it is
/// frozen when its images go to tmpfs.
///
/// Allocating tmpfs pages costs about as much as filling them; done
/// here, the frozen process waits only for the copy. The reservation is
/// a guess: pages beyond it are allocated as they are written, and room
/// left over is given back. If it cannot be had (a full disk, a
/// filesystem without `O_TMPFILE`), the dump goes on without it.
/// An encrypted dump's room is there too on tmpfs, its pages encrypted
/// where they lie after the freeze; elsewhere it is in memory, as all its
/// other images until they are encrypted.
pub fn reserve(pid: Pid, dir: &ImageDir, bytes: u64) -> Option<PagesRoom> {
    if !dir.is_encrypted() && !on_tmpfs(dir.fd()) {
        return None;
    }
    match dir.reserve_room(bytes) {
        Ok(r) => {
            log::debug!("process {pid}: {bytes} bytes reserved for its pages");
            Some(r)
        }
        Err(e) => {
            log::info!("process {pid}: no room reserved for its pages: {e}");
            None
        }
    }
}

/// The file grown to its final size and mapped from `start`, or `None`
/// (then rcriu's thread writes alone).
fn helper_map(fd: BorrowedFd<'_>, start: u64, total: u64) -> Option<LocalMap> {
    let len = usize::try_from(total).ok()?;
    // Room reserved beyond the stretch stays.
    let size = rustix::fs::fstat(fd).ok()?.st_size as u64;
    if size < start + total
        && let Err(e) = rustix::fs::ftruncate(fd, start + total)
    {
        log::debug!("growing the pages image for the page helper: {e}");
        return None;
    }
    // The image is open write-only; a shared writable mapping needs it
    // open for reading too.
    use std::os::fd::AsRawFd;
    let rw = rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    );
    match rw
        .map_err(io::Error::from)
        .and_then(|rw| LocalMap::map(rw.as_fd(), start, len))
    {
        Ok(m) => Some(m),
        Err(e) => {
            log::debug!("mapping the pages image for the page helper: {e}");
            // Back to its size.
            if size < start + total {
                let _ = rustix::fs::ftruncate(fd, size);
            }
            None
        }
    }
}

/// Copies the target's `remote` ranges into the mapping at `at`, through
/// its `/proc/PID/mem` (`mem`): `process_vm_readv(2)` would pin each page
/// and so unshare every page the process shares copy-on-write.
fn copy(
    map: &LocalMap,
    mem: BorrowedFd<'_>,
    remote: &[IoVec],
    at: u64,
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    map.read_mem(mem, at as usize, remote.iter().map(|v| (v.base, v.len)))
        .map_err(|e| why_efault(e, fd))
}

/// A page of the mapping that cannot be filled shows as EFAULT: on a full
/// tmpfs, say so.
fn why_efault(e: io::Error, fd: BorrowedFd<'_>) -> io::Error {
    if e.raw_os_error() != Some(libc::EFAULT) {
        return e;
    }
    match rustix::fs::fstatvfs(fd) {
        Ok(s) if s.f_bavail.saturating_mul(s.f_frsize) < CHUNK => {
            io::Error::from_raw_os_error(libc::ENOSPC)
        }
        _ => e,
    }
}

/// The readable ranges as one stream of bytes, cut at any offsets.
struct Stream<'a> {
    iovs: &'a [IoVec],
    /// Where each range starts in the stream.
    starts: Vec<u64>,
}

impl<'a> Stream<'a> {
    fn new(iovs: &'a [IoVec]) -> Stream<'a> {
        let mut at = 0;
        let starts = iovs
            .iter()
            .map(|v| {
                at += v.len;
                at - v.len
            })
            .collect();
        Stream { iovs, starts }
    }

    /// The ranges holding the stream's bytes `lo..hi`.
    fn slice(&self, lo: u64, hi: u64) -> Vec<IoVec> {
        let mut out = Vec::new();
        let mut i = self.starts.partition_point(|&s| s <= lo).saturating_sub(1);
        while i < self.iovs.len() && self.starts[i] < hi {
            let (s, v) = (self.starts[i], self.iovs[i]);
            let a = lo.max(s);
            let b = hi.min(s + v.len);
            if a < b {
                out.push(IoVec {
                    base: v.base + (a - s),
                    len: b - a,
                });
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(base: u64, len: u64) -> IoVec {
        IoVec { base, len }
    }

    #[test]
    fn a_stream_cuts_anywhere_and_its_pieces_add_up() {
        let iovs = [v(0x1000, 0x3000), v(0x10000, 0x1000), v(0x20000, 0x4000)];
        let s = Stream::new(&iovs);
        let got = |lo, hi| {
            s.slice(lo, hi)
                .iter()
                .map(|x| (x.base, x.len))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(0, 0x8000),
            vec![(0x1000, 0x3000), (0x10000, 0x1000), (0x20000, 0x4000)]
        );
        assert_eq!(
            got(0x2000, 0x5000),
            vec![(0x3000, 0x1000), (0x10000, 0x1000), (0x20000, 0x1000)]
        );
        assert_eq!(got(0x4000, 0x5000), vec![(0x20000, 0x1000)]);
        assert_eq!(got(0x7000, 0x8000), vec![(0x23000, 0x1000)]);
        // Chunks of any size cover the stream once, in order.
        for chunk in [0x1000, 0x3000, 0x5000] {
            let mut all = Vec::new();
            let mut lo = 0;
            while lo < 0x8000 {
                all.extend(got(lo, (lo + chunk).min(0x8000)));
                lo += chunk;
            }
            let bytes: u64 = all.iter().map(|x| x.1).sum();
            assert_eq!(bytes, 0x8000);
            assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
