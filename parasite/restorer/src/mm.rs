//! The address space: rcriu's unmapped, the vDSO moved where the process
//! had it, the process's areas mapped in place, filled from the pages
//! file, advised and protected; then the mm fields.

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, call, syscall6};
use rcriu_parasite_abi::restorer::{
    AnonName, Args, FLAG_PAGE_HELPER, IoVec, Range, ReadBatch, SYSV_ATTACH_RDONLY, SYSV_FOLLOW, Vma,
};

use crate::{Fail, Res, array, ok};

/// Unmaps everything but the ranges rcriu keeps (this code, its args
/// and stack, the vDSO) and the areas a late child inherited.
pub fn unmap_rcriu(a: &Args) -> Res {
    let keep = &a.keep[..(a.nr_keep as usize).min(a.keep.len())];
    let inherited = vmas(a).iter().filter(|v| v.inherited != 0);
    let mut kept = keep.iter().map(|k| (k.start, k.end)).peekable();
    let mut inh = inherited.map(|v| (v.start, v.end)).peekable();
    let mut from = 0u64;
    let mut i = 0u32;
    loop {
        // The next range kept, by address, from either list (both sorted).
        let next = match (kept.peek(), inh.peek()) {
            (Some(k), Some(v)) if k.0 <= v.0 => kept.next(),
            (Some(_), Some(_)) | (None, Some(_)) => inh.next(),
            (Some(_), None) => kept.next(),
            (None, None) => None,
        };
        let Some((start, end)) = next else { break };
        if start > from {
            // SAFETY: rcriu lists in `keep` every range this code, its
            // args and its stack live in, and marks the areas inherited
            // from the parent; the rest is rcriu's, or the parent's, dead
            // here.
            let r = unsafe { call(NR_MUNMAP, from, start - from, 0, 0) };
            ok(r, i)?;
        }
        from = from.max(end);
        i += 1;
    }
    if a.task_size > from {
        // SAFETY: as above.
        let r = unsafe { call(NR_MUNMAP, from, a.task_size - from, 0, 0) };
        ok(r, i)?;
    }
    Ok(())
}

pub fn move_vdso(a: &Args) -> Res {
    let n = (a.nr_vdso_moves as usize).min(a.vdso_moves.len());
    for (i, m) in a.vdso_moves[..n].iter().enumerate() {
        if m.from.start == m.to {
            continue;
        }
        let len = m.from.end - m.from.start;
        // SAFETY: the kernel's own special mappings move to where the
        // process had them; rcriu planned the moves not to overlap
        // anything in use.
        let r = unsafe {
            syscall6(
                NR_MREMAP,
                m.from.start,
                len,
                len,
                MREMAP_MAYMOVE | MREMAP_FIXED,
                m.to,
                0,
            )
        };
        if ok(r, i as u32)? as u64 != m.to {
            return Err(Fail(i as u32, -EINVAL));
        }
    }
    Ok(())
}

fn vmas(a: &Args) -> &[Vma] {
    // SAFETY: rcriu wrote `nr_vmas` areas at `vmas`.
    unsafe { array(a.vmas, a.nr_vmas) }
}

pub fn map_vmas(a: &Args) -> Res {
    for (i, v) in vmas(a).iter().enumerate() {
        if v.inherited != 0 {
            // Mapped by the parent as it would be here.
            continue;
        }
        if v.sysv != 0 {
            attach(v, i as u32)?;
            continue;
        }
        // Writable while it is filled, protected as it was afterwards; an
        // area with nothing to fill gets its protection at once.
        let prot = if v.fill != 0 {
            PROT_READ | PROT_WRITE
        } else {
            v.prot as u64
        };
        // SAFETY: the areas lie where the process had them, outside the
        // region (rcriu placed the region in a hole of the process's
        // layout) and, rcriu's memory gone, over nothing in use.
        let r = unsafe {
            syscall6(
                NR_MMAP,
                v.start,
                v.end - v.start,
                prot,
                v.flags as u64 | MAP_FIXED,
                v.fd as i64 as u64,
                v.pgoff,
            )
        };
        if ok(r, i as u32)? as u64 != v.start {
            return Err(Fail(i as u32, -EINVAL));
        }
    }
    Ok(())
}

/// Attaches SysV shm segment `v.fd` at `v.start` again (the whole
/// segment, with the first area of an attach), then gives the area its
/// protection.
fn attach(v: &Vma, i: u32) -> Res {
    if v.sysv != SYSV_FOLLOW {
        let mut flags = if v.sysv == SYSV_ATTACH_RDONLY {
            SHM_RDONLY
        } else {
            0
        };
        if v.prot as u64 & PROT_EXEC != 0 {
            flags |= SHM_EXEC;
        }
        // SAFETY: the segment goes where the process had it attached,
        // over nothing (rcriu's memory is gone, the areas lie apart).
        let r = unsafe { call(NR_SHMAT, v.fd as i64 as u64, v.start, flags, 0) };
        if ok(r, i)? as u64 != v.start {
            return Err(Fail(i, -EINVAL));
        }
    }
    // SAFETY: the process's own attach gets its own protection back.
    let r = unsafe { call(NR_MPROTECT, v.start, v.end - v.start, v.prot as u64, 0) };
    ok(r, i).map(drop)
}

pub fn read_pages(a: &mut Args) -> Res {
    if a.flags & FLAG_PAGE_HELPER != 0 {
        return crate::pages::read_shared(a);
    }
    // What the process did not have of what it inherited goes first.
    // SAFETY: rcriu wrote `nr_drops` ranges inside inherited areas.
    let drops: &[Range] = unsafe { array(a.drops, a.nr_drops) };
    for (i, d) in drops.iter().enumerate() {
        // SAFETY: the range lies in a private area this process inherited
        // and had no pages in: it reads as it did (zeros, or the file).
        let r = unsafe { call(NR_MADVISE, d.start, d.end - d.start, MADV_DONTNEED, 0) };
        ok(r, a.nr_batches as u32 + i as u32)?;
    }
    for i in 0..a.nr_batches as u32 {
        read_one(a, i)?;
    }
    if a.nr_cow_batches != 0 {
        crate::pages::read_inherited(a)?;
    }
    Ok(())
}

/// Reads batch `i` into place.
pub fn read_one(a: &Args, i: u32) -> Res {
    // SAFETY: rcriu wrote `nr_iovs` iovecs and `nr_batches` batches.
    let iovs: &[IoVec] = unsafe { array(a.iovs, a.nr_iovs) };
    // SAFETY: as above.
    let batches: &[ReadBatch] = unsafe { array(a.batches, a.nr_batches) };
    let Some(b) = batches.get(i as usize) else {
        return Err(Fail(i, -EINVAL));
    };
    let first = b.first as usize;
    let Some(group) = iovs.get(first..first + b.nr as usize) else {
        return Err(Fail(i, -EINVAL));
    };
    let fd = pages_fd(a, b).ok_or(Fail(i, -EINVAL))?;
    read_batch(fd, group, b.off).map_err(|f| Fail(i, f.1))
}

/// The pages file batch `b` reads.
pub fn pages_fd(a: &Args, b: &ReadBatch) -> Option<i32> {
    a.pages_fds
        .get(b.file as usize)
        .copied()
        .filter(|&fd| fd >= 0)
}

/// `preadv` of one batch, going on after short reads.
fn read_batch(fd: i32, group: &[IoVec], off: u64) -> Res {
    let want: u64 = group.iter().map(|v| v.len).sum();
    let mut done = 0u64;
    let mut idx = 0usize;
    let mut skip = 0u64;
    while done < want {
        let rest = &group[idx..];
        let r = if skip == 0 {
            // SAFETY: the iovecs cover areas mapped writable above.
            unsafe {
                call(
                    NR_PREADV,
                    fd as u64,
                    rest.as_ptr() as u64,
                    rest.len() as u64,
                    off + done,
                )
            }
        } else {
            // Finish a partly read iovec first.
            let v = IoVec {
                base: rest[0].base + skip,
                len: rest[0].len - skip,
            };
            // SAFETY: as above, the rest of one mapped area.
            unsafe { call(NR_PREADV, fd as u64, addr(&v), 1, off + done) }
        };
        if r == -EINTR {
            continue;
        }
        if r <= 0 {
            return Err(Fail(0, if r < 0 { r } else { -EIO }));
        }
        done += r as u64;
        let mut left = r as u64 + skip;
        while idx < group.len() && left >= group[idx].len {
            left -= group[idx].len;
            idx += 1;
        }
        skip = left;
    }
    Ok(())
}

pub fn madvise_vmas(a: &Args) -> Res {
    for (i, v) in vmas(a).iter().enumerate() {
        let mut bits = v.madv;
        while bits != 0 {
            let advice = bits.trailing_zeros() as u64;
            bits &= bits - 1;
            // SAFETY: advice on the process's own area, as it had it.
            let r = unsafe { call(NR_MADVISE, v.start, v.end - v.start, advice, 0) };
            ok(r, i as u32)?;
        }
    }
    // SAFETY: rcriu wrote `nr_guards` ranges at `guards`.
    let guards: &[Range] = unsafe { array(a.guards, a.nr_guards) };
    for (i, g) in guards.iter().enumerate() {
        // SAFETY: guard pages where the process had them, inside its own
        // areas (their contents were gone then too).
        let r = unsafe { call(NR_MADVISE, g.start, g.end - g.start, MADV_GUARD_INSTALL, 0) };
        ok(r, (a.nr_vmas as usize + i) as u32)?;
    }
    // SAFETY: rcriu wrote `nr_anon_names` names at `anon_names`, each
    // pointing at a NUL-terminated name in the region.
    let names: &[AnonName] = unsafe { array(a.anon_names, a.nr_anon_names) };
    for (i, n) in names.iter().enumerate() {
        // SAFETY: the kernel reads the NUL-terminated name (at most 80
        // bytes) and names the process's own anonymous area.
        let r = unsafe {
            syscall6(
                NR_PRCTL,
                PR_SET_VMA,
                PR_SET_VMA_ANON_NAME,
                n.start,
                n.end - n.start,
                n.name,
                0,
            )
        };
        ok(r, (a.nr_vmas + a.nr_guards) as u32 + i as u32)?;
    }
    Ok(())
}

/// `MADV_GUARD_INSTALL` (Linux 6.13).
const MADV_GUARD_INSTALL: u64 = 102;

pub fn protect_vmas(a: &Args) -> Res {
    for (i, v) in vmas(a).iter().enumerate() {
        if v.fill == 0 || v.prot as u64 == PROT_READ | PROT_WRITE {
            continue;
        }
        // SAFETY: the process's own area gets its own protection back.
        let r = unsafe { call(NR_MPROTECT, v.start, v.end - v.start, v.prot as u64, 0) };
        ok(r, i as u32)?;
    }
    Ok(())
}

pub fn set_mm(a: &mut Args) -> Res {
    a.mm.auxv = addr(&a.auxv);
    // SAFETY: the kernel reads one prctl_mm_map and the auxv it points to.
    let r = unsafe {
        call(
            NR_PRCTL,
            PR_SET_MM,
            PR_SET_MM_MAP,
            addr(&a.mm),
            core::mem::size_of_val(&a.mm) as u64,
        )
    };
    ok(r, 0).map(drop)
}
