//! The restorer: the first code a restored process runs. It starts as a
//! fork of rcriu (clone3 with the process's pid) and leaves as the process
//! that was dumped, but for its registers, FPU state and signal mask,
//! which rcriu sets through ptrace once the restorer stops.
//!
//! What it does, and in which order, is described in
//! `rcriu_parasite_abi::restorer`. Everything it needs is in `Args`, at
//! absolute addresses inside its region; it allocates nothing and calls
//! nothing but the kernel.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use rcriu_blob_rt::syscall::{addr, addr_mut, call, syscall6, value};
use rcriu_parasite_abi::restorer::{
    Args, FLAG_GROUPS, FLAG_MM_MAP, FLAG_RSEQ, FLAG_SETSID, FLAG_TIMENS, FdMove, IoVec, MAGIC,
    ReadBatch, Step, Vma,
};

// The entry point: rdi = &Args, rsp = the top of the region's stack.
core::arch::global_asm!(
    ".pushsection .text.head,\"ax\"",
    ".globl rcriu_restorer_head",
    ".type rcriu_restorer_head,@function",
    "rcriu_restorer_head:",
    "    call {main}",
    "    ud2",
    ".size rcriu_restorer_head, . - rcriu_restorer_head",
    ".popsection",
    main = sym restorer_main,
);

const NR_READ: i64 = 0;
const NR_WRITE: i64 = 1;
const NR_OPEN: i64 = 2;
const NR_CLOSE: i64 = 3;
const NR_MMAP: i64 = 9;
const NR_MPROTECT: i64 = 10;
const NR_MUNMAP: i64 = 11;
const NR_RT_SIGACTION: i64 = 13;
const NR_RT_SIGPROCMASK: i64 = 14;
const NR_MREMAP: i64 = 25;
const NR_MADVISE: i64 = 28;
const NR_IOCTL: i64 = 16;
const NR_FCNTL: i64 = 72;
const NR_FCHDIR: i64 = 81;
const NR_UMASK: i64 = 95;
const NR_SETITIMER: i64 = 38;
const NR_GETPPID: i64 = 110;
const NR_SETSID: i64 = 112;
const NR_SETGROUPS: i64 = 116;
const NR_SIGALTSTACK: i64 = 131;
const NR_PERSONALITY: i64 = 135;
const NR_PRCTL: i64 = 157;
const NR_CHROOT: i64 = 161;
const NR_EXIT_GROUP: i64 = 231;
const NR_UNSHARE: i64 = 272;
const NR_DUP3: i64 = 292;
const NR_PREADV: i64 = 295;
const NR_PRLIMIT64: i64 = 302;
const NR_SETNS: i64 = 308;
const NR_RSEQ: i64 = 334;
const NR_CLOSE_RANGE: i64 = 436;

const EINTR: i64 = 4;
const EIO: i64 = 5;
const ESRCH: i64 = 3;
const EINVAL: i64 = 22;
const SIG_SETMASK: u64 = 2;
const O_RDONLY: u64 = 0;
const O_WRONLY: u64 = 1;
const O_CLOEXEC: u64 = 0o2000000;
const F_SETFD: u64 = 2;
const FD_CLOEXEC: u64 = 1;
const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const MAP_FIXED: u64 = 0x10;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const CLONE_NEWTIME: u64 = 0x80;
const PR_SET_PDEATHSIG: u64 = 1;
const PR_SET_DUMPABLE: u64 = 4;
const PR_SET_NAME: u64 = 15;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const TIOCSCTTY: u64 = 0x540e;

/// A failure: the step's item and the kernel's answer.
struct Fail(u32, i64);

type Res = Result<(), Fail>;

/// `r` as a result: negative values fail with `index`.
fn ok(r: i64, index: u32) -> Result<i64, Fail> {
    if r < 0 { Err(Fail(index, r)) } else { Ok(r) }
}

extern "C" fn restorer_main(args: *mut Args) -> ! {
    // SAFETY: rcriu passes the address of the Args it filled in the
    // region, which stays mapped (and is this blob's only memory) until
    // rcriu unmaps it after the restorer stopped.
    let a = unsafe { &mut *args };
    if a.magic != MAGIC {
        exit(3);
    }
    match restore(a) {
        Ok(()) => {
            a.step = Step::Done as u32;
            a.status = 0;
            // rcriu takes over here: it sets the registers and never lets
            // this code go on.
            // SAFETY: int3 only traps.
            unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
            exit(2)
        }
        Err((step, Fail(index, err))) => {
            a.step = step as u32;
            a.index = index;
            a.status = err;
            exit(1)
        }
    }
}

fn exit(code: u64) -> ! {
    loop {
        value(NR_EXIT_GROUP, code, 0, 0);
    }
}

/// Runs the steps; on failure, which one.
fn restore(a: &mut Args) -> Result<(), (Step, Fail)> {
    fn at(step: Step, a: &mut Args) -> Step {
        a.step = step as u32;
        step
    }
    // Until rcriu traces it (and kills it if rcriu dies), the restorer
    // dies with rcriu: no half-restored process survives a failure.
    let s = at(Step::Parent, a);
    ok(value(NR_PRCTL, PR_SET_PDEATHSIG, 9, 0), 0).map_err(|f| (s, f))?;
    if value(NR_GETPPID, 0, 0, 0) != a.parent_pid as i64 {
        return Err((s, Fail(1, -ESRCH)));
    }
    let s = at(Step::Signals, a);
    block_signals().map_err(|f| (s, f))?;
    // rcriu writes the inherited rseq registration into the args (read
    // through ptrace) before it says go.
    let s = at(Step::Go, a);
    wait_go(a).map_err(|f| (s, f))?;
    let s = at(Step::DropRseq, a);
    drop_rseq(a).map_err(|f| (s, f))?;
    if a.flags & FLAG_SETSID != 0 {
        let s = at(Step::Session, a);
        ok(value(NR_SETSID, 0, 0, 0), 0).map_err(|f| (s, f))?;
    }
    if a.flags & FLAG_TIMENS != 0 {
        let s = at(Step::Timens, a);
        enter_timens(a).map_err(|f| (s, f))?;
    }
    let s = at(Step::Unmap, a);
    unmap_rcriu(a).map_err(|f| (s, f))?;
    let s = at(Step::Vdso, a);
    move_vdso(a).map_err(|f| (s, f))?;
    let s = at(Step::Map, a);
    map_vmas(a).map_err(|f| (s, f))?;
    let s = at(Step::Read, a);
    read_pages(a).map_err(|f| (s, f))?;
    if a.copy_len != 0 {
        at(Step::Copy, a);
        // SAFETY: rcriu put `copy_len` bytes at `copy_src` in the region and
        // planned `copy_dst` inside an area mapped writable above; the two
        // do not overlap (the region lies outside every area).
        unsafe {
            core::ptr::copy_nonoverlapping(
                a.copy_src as *const u8,
                a.copy_dst as *mut u8,
                a.copy_len as usize,
            )
        };
    }
    let s = at(Step::Madvise, a);
    madvise_vmas(a).map_err(|f| (s, f))?;
    let s = at(Step::Protect, a);
    protect_vmas(a).map_err(|f| (s, f))?;
    let s = at(Step::Fs, a);
    set_fs(a).map_err(|f| (s, f))?;
    if a.flags & FLAG_MM_MAP != 0 {
        let s = at(Step::MmMap, a);
        set_mm(a).map_err(|f| (s, f))?;
    }
    let s = at(Step::Comm, a);
    // SAFETY: prctl reads at most 16 bytes of the name.
    let r = unsafe { call(NR_PRCTL, PR_SET_NAME, addr(&a.comm), 0, 0) };
    ok(r, 0).map_err(|f| (s, f))?;
    let s = at(Step::Sigactions, a);
    set_sigactions(a).map_err(|f| (s, f))?;
    at(Step::Rlimits, a);
    set_rlimits(a);
    let s = at(Step::Itimers, a);
    for (which, t) in a.itimers.iter().enumerate() {
        if t.iter().all(|&w| w == 0) {
            continue;
        }
        // SAFETY: the kernel reads one struct itimerval.
        let r = unsafe { call(NR_SETITIMER, which as u64, addr(t), 0, 0) };
        ok(r, which as u32).map_err(|f| (s, f))?;
    }
    if a.flags & FLAG_RSEQ != 0 {
        let s = at(Step::Rseq, a);
        let r = a.rseq;
        // SAFETY: the area is the process's own, mapped again above; the
        // kernel writes to it from now on, as it did before the dump.
        let ret = unsafe { call(NR_RSEQ, r.addr, r.len as u64, 0, r.sig as u64) };
        ok(ret, 0).map_err(|f| (s, f))?;
    }
    let s = at(Step::Sas, a);
    if a.sas[2] != 0 {
        let ss = [a.sas[0], a.sas[1], a.sas[2]];
        // SAFETY: the kernel reads one stack_t (sp, flags with padding,
        // size: three words).
        let r = unsafe { call(NR_SIGALTSTACK, addr(&ss), 0, 0, 0) };
        ok(r, 0).map_err(|f| (s, f))?;
    }
    let s = at(Step::Attrs, a);
    set_attrs(a).map_err(|f| (s, f))?;
    if a.flags & FLAG_GROUPS != 0 {
        let s = at(Step::Groups, a);
        // SAFETY: rcriu wrote `nr_groups` u32 at `groups`, read by the
        // kernel.
        let r = unsafe { call(NR_SETGROUPS, a.nr_groups, a.groups, 0, 0) };
        ok(r, 0).map_err(|f| (s, f))?;
    }
    let s = at(Step::Fds, a);
    place_fds(a).map_err(|f| (s, f))?;
    if a.ctty_fd >= 0 {
        let s = at(Step::Ctty, a);
        ok(value(NR_IOCTL, a.ctty_fd as u64, TIOCSCTTY, 0), 0).map_err(|f| (s, f))?;
    }
    let s = at(Step::Parent, a);
    ok(value(NR_PRCTL, PR_SET_PDEATHSIG, a.pdeath_sig as u64, 0), 2).map_err(|f| (s, f))?;
    if a.no_new_privs != 0 {
        let s = at(Step::Attrs, a);
        ok(value(NR_PRCTL, PR_SET_NO_NEW_PRIVS, 1, 0), 4).map_err(|f| (s, f))?;
    }
    Ok(())
}

fn block_signals() -> Res {
    let all: u64 = !0;
    // SAFETY: the kernel reads one sigset from `all`.
    let r = unsafe { call(NR_RT_SIGPROCMASK, SIG_SETMASK, addr(&all), 0, 8) };
    ok(r, 0).map(drop)
}

fn drop_rseq(a: &Args) -> Res {
    let r = a.self_rseq;
    if r.addr == 0 {
        return Ok(());
    }
    // SAFETY: unregistering only compares the address with the current
    // registration.
    let ret = unsafe {
        call(
            NR_RSEQ,
            r.addr,
            r.len as u64,
            RSEQ_FLAG_UNREGISTER,
            r.sig as u64,
        )
    };
    // EINVAL: nothing registered (or not that), which is as good.
    if ret < 0 && ret != -EINVAL {
        return Err(Fail(0, ret));
    }
    Ok(())
}

fn wait_go(a: &Args) -> Res {
    let mut b = 0u8;
    loop {
        // SAFETY: the kernel writes one byte to `b`.
        let r = unsafe { call(NR_READ, a.go_fd as u64, addr_mut(&mut b), 1, 0) };
        if r == -EINTR {
            continue;
        }
        if r != 1 {
            return Err(Fail(0, if r < 0 { r } else { -EIO }));
        }
        return Ok(());
    }
}

const TIMENS_OFFSETS: &[u8] = b"/proc/self/timens_offsets\0";
const TIME_FOR_CHILDREN: &[u8] = b"/proc/self/ns/time_for_children\0";

fn enter_timens(a: &Args) -> Res {
    ok(value(NR_UNSHARE, CLONE_NEWTIME, 0, 0), 0)?;
    // SAFETY: a NUL-terminated path the kernel reads.
    let fd = unsafe { call(NR_OPEN, addr(TIMENS_OFFSETS), O_WRONLY | O_CLOEXEC, 0, 0) };
    let fd = ok(fd, 1)?;
    for (i, line) in a.timens.iter().enumerate() {
        let len = (a.timens_len[i] as usize).min(line.len());
        if len == 0 {
            continue;
        }
        // SAFETY: the kernel reads `len` bytes of the line.
        let r = unsafe { call(NR_WRITE, fd as u64, addr(line), len as u64, 0) };
        if r != len as i64 {
            value(NR_CLOSE, fd as u64, 0, 0);
            return Err(Fail(2 + i as u32, if r < 0 { r } else { -EIO }));
        }
    }
    value(NR_CLOSE, fd as u64, 0, 0);
    // SAFETY: a NUL-terminated path the kernel reads.
    let ns = unsafe { call(NR_OPEN, addr(TIME_FOR_CHILDREN), O_RDONLY | O_CLOEXEC, 0, 0) };
    let ns = ok(ns, 4)?;
    let r = value(NR_SETNS, ns as u64, CLONE_NEWTIME, 0);
    value(NR_CLOSE, ns as u64, 0, 0);
    ok(r, 5).map(drop)
}

fn unmap_rcriu(a: &Args) -> Res {
    let keep = &a.keep[..(a.nr_keep as usize).min(a.keep.len())];
    let mut from = 0u64;
    for (i, k) in keep.iter().enumerate() {
        if k.start > from {
            // SAFETY: rcriu lists in `keep` every range this code, its
            // args and its stack live in; the rest is rcriu's, dead here.
            let r = unsafe { call(NR_MUNMAP, from, k.start - from, 0, 0) };
            ok(r, i as u32)?;
        }
        from = from.max(k.end);
    }
    if a.task_size > from {
        // SAFETY: as above.
        let r = unsafe { call(NR_MUNMAP, from, a.task_size - from, 0, 0) };
        ok(r, keep.len() as u32)?;
    }
    Ok(())
}

fn move_vdso(a: &Args) -> Res {
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

/// The array at `ptr` with `n` items, from the region.
///
/// # Safety
/// rcriu wrote `n` items of `T` at `ptr`, in the region, which stays
/// mapped while the restorer runs.
unsafe fn array<'a, T>(ptr: u64, n: u64) -> &'a [T] {
    if n == 0 {
        return &[];
    }
    // SAFETY: the caller's contract above.
    unsafe { core::slice::from_raw_parts(ptr as *const T, n as usize) }
}

fn vmas(a: &Args) -> &[Vma] {
    // SAFETY: rcriu wrote `nr_vmas` areas at `vmas`.
    unsafe { array(a.vmas, a.nr_vmas) }
}

fn map_vmas(a: &Args) -> Res {
    for (i, v) in vmas(a).iter().enumerate() {
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

fn read_pages(a: &Args) -> Res {
    // SAFETY: rcriu wrote `nr_iovs` iovecs and `nr_batches` batches.
    let iovs: &[IoVec] = unsafe { array(a.iovs, a.nr_iovs) };
    // SAFETY: as above.
    let batches: &[ReadBatch] = unsafe { array(a.batches, a.nr_batches) };
    for (i, b) in batches.iter().enumerate() {
        let first = b.first as usize;
        let Some(group) = iovs.get(first..first + b.nr as usize) else {
            return Err(Fail(i as u32, -EINVAL));
        };
        read_batch(a.pages_fd, group, b.off).map_err(|f| Fail(i as u32, f.1))?;
    }
    Ok(())
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

fn madvise_vmas(a: &Args) -> Res {
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
    Ok(())
}

fn protect_vmas(a: &Args) -> Res {
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

const OOM_SCORE_ADJ: &[u8] = b"/proc/self/oom_score_adj\0";

fn set_attrs(a: &Args) -> Res {
    ok(value(NR_PERSONALITY, a.personality as u64, 0, 0), 0)?;
    ok(
        value(
            NR_PRCTL,
            PR_SET_CHILD_SUBREAPER,
            a.child_subreaper as u64,
            0,
        ),
        1,
    )?;
    // 2 (suid_dumpable) cannot be set by prctl: rcriu passes only 0 or 1.
    ok(value(NR_PRCTL, PR_SET_DUMPABLE, a.dumpable as u64, 0), 2)?;
    let len = (a.oom_score_adj_len as usize).min(a.oom_score_adj.len());
    if len > 0 {
        // SAFETY: a NUL-terminated path the kernel reads.
        let fd = unsafe { call(NR_OPEN, addr(OOM_SCORE_ADJ), O_WRONLY | O_CLOEXEC, 0, 0) };
        let fd = ok(fd, 3)?;
        // SAFETY: the kernel reads `len` bytes of the line.
        let r = unsafe { call(NR_WRITE, fd as u64, addr(&a.oom_score_adj), len as u64, 0) };
        value(NR_CLOSE, fd as u64, 0, 0);
        if r != len as i64 {
            return Err(Fail(3, if r < 0 { r } else { -EIO }));
        }
    }
    Ok(())
}

const DOT: &[u8] = b".\0";

fn set_fs(a: &Args) -> Res {
    if a.root_fd >= 0 {
        ok(value(NR_FCHDIR, a.root_fd as u64, 0, 0), 0)?;
        // SAFETY: a NUL-terminated path the kernel reads.
        ok(unsafe { call(NR_CHROOT, addr(DOT), 0, 0, 0) }, 1)?;
    }
    ok(value(NR_FCHDIR, a.cwd_fd as u64, 0, 0), 2)?;
    value(NR_UMASK, a.umask as u64, 0, 0);
    Ok(())
}

fn set_mm(a: &mut Args) -> Res {
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

fn set_sigactions(a: &Args) -> Res {
    for (i, act) in a.sigactions.iter().enumerate() {
        let sig = i as u64 + 1;
        if a.sigaction_set & (1 << i) == 0 || sig == 9 || sig == 19 {
            continue;
        }
        // SAFETY: the kernel reads one `struct sigaction`.
        let r = unsafe { call(NR_RT_SIGACTION, sig, addr(act), 0, 8) };
        ok(r, sig as u32)?;
    }
    Ok(())
}

/// Limits that cannot be set (raising a hard limit takes CAP_SYS_RESOURCE)
/// keep their current value; rcriu reports them.
fn set_rlimits(a: &mut Args) {
    let n = (a.nr_rlimits as usize).min(a.rlimits.len());
    for i in 0..n {
        let lim = a.rlimits[i];
        // SAFETY: the kernel reads one rlimit64.
        let r = unsafe { call(NR_PRLIMIT64, 0, i as u64, addr(&lim), 0) };
        if r < 0 {
            a.rlimit_failed |= 1 << i;
        }
    }
}

fn place_fds(a: &Args) -> Res {
    // SAFETY: rcriu wrote `nr_fds` moves at `fds`, sorted by target, with
    // every source above every target.
    let moves: &[FdMove] = unsafe { array(a.fds, a.nr_fds) };
    for (i, m) in moves.iter().enumerate() {
        let flags = if m.cloexec != 0 { O_CLOEXEC } else { 0 };
        if m.from == m.to {
            let fl = if m.cloexec != 0 { FD_CLOEXEC } else { 0 };
            ok(value(NR_FCNTL, m.to as u64, F_SETFD, fl), i as u32)?;
        } else {
            ok(value(NR_DUP3, m.from as u64, m.to as u64, flags), i as u32)?;
        }
    }
    // Everything else goes: rcriu's fds, the sources, the pages file.
    let mut next = 0u64;
    for m in moves {
        let to = m.to as u64;
        if to > next {
            ok(value(NR_CLOSE_RANGE, next, to - 1, 0), to as u32)?;
        }
        next = to + 1;
    }
    ok(value(NR_CLOSE_RANGE, next, u32::MAX as u64, 0), u32::MAX)?;
    Ok(())
}
