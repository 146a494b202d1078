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

mod creds;
mod fds;
mod mm;
mod pages;
mod signals;
mod task;
mod thread;
mod timers;
mod tree;
mod uffd;

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::value;
use rcriu_parasite_abi::restorer::{
    Args, FAULT_ERRNO, FLAG_CHILD, FLAG_FDT_SHARED, FLAG_LAZY, FLAG_LOGINUID, FLAG_MM_MAP,
    FLAG_SETSID, FLAG_TIMENS, MAGIC, Step, ThreadArgs,
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

/// A failure: the step's item and the kernel's answer.
struct Fail(u32, i64);

type Res = Result<(), Fail>;

/// `r` as a result: negative values fail with `index`.
fn ok(r: i64, index: u32) -> Result<i64, Fail> {
    if r < 0 { Err(Fail(index, r)) } else { Ok(r) }
}

/// The restorer of one process: rcriu's fork for the root of a tree,
/// its parent restorer's fork for any other.
pub(crate) extern "C" fn restorer_main(args: *mut Args) -> ! {
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
            thread::stop()
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
        if a.fault_step == step as u32 {
            a.index = 0;
            a.status = -FAULT_ERRNO;
            exit(1);
        }
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
    task::block_signals().map_err(|f| (s, f))?;
    // rcriu writes the inherited rseq registration into the args (read
    // through ptrace) before it says go.
    if a.flags & FLAG_CHILD == 0 {
        let s = at(Step::Go, a);
        task::wait_go(a).map_err(|f| (s, f))?;
    }
    let s = at(Step::DropRseq, a);
    task::drop_rseq(a).map_err(|f| (s, f))?;
    if a.flags & FLAG_SETSID != 0 {
        let s = at(Step::Session, a);
        ok(value(NR_SETSID, 0, 0, 0), 0).map_err(|f| (s, f))?;
    }
    if a.flags & FLAG_TIMENS != 0 {
        let s = at(Step::Timens, a);
        task::enter_timens(a).map_err(|f| (s, f))?;
    }
    // Its children, into the session and time namespace it has now, with
    // every fd rcriu opened still here: those that share none of its
    // memory now, the others once it is in place.
    if a.nr_children != 0 {
        let s = at(Step::Children, a);
        tree::fork_children(a, false).map_err(|f| (s, f))?;
    }
    let s = at(Step::Unmap, a);
    mm::unmap_rcriu(a).map_err(|f| (s, f))?;
    let s = at(Step::Vdso, a);
    mm::move_vdso(a).map_err(|f| (s, f))?;
    let s = at(Step::MmAttrs, a);
    task::set_mm_attrs(a).map_err(|f| (s, f))?;
    let s = at(Step::Map, a);
    mm::map_vmas(a).map_err(|f| (s, f))?;
    let s = at(Step::Read, a);
    mm::read_pages(a).map_err(|f| (s, f))?;
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
    if a.nr_children != 0 {
        let s = at(Step::Children, a);
        tree::fork_children(a, true).map_err(|f| (s, f))?;
    }
    if a.tree != 0 || a.pgid != 0 {
        let s = at(Step::Pgid, a);
        tree::join_group(a).map_err(|f| (s, f))?;
    }
    let s = at(Step::Madvise, a);
    mm::madvise_vmas(a).map_err(|f| (s, f))?;
    // The lazy areas go to the daemon before anything can touch them
    // (the kernel writes an rseq area on the way back from a syscall).
    if a.flags & FLAG_LAZY != 0 {
        let s = at(Step::Uffd, a);
        uffd::register_and_send(a).map_err(|f| (s, f))?;
    }
    let s = at(Step::Protect, a);
    mm::protect_vmas(a).map_err(|f| (s, f))?;
    // What is written through /proc/self, before a new root may hide it
    // (zdtm's chroot): attributes, then the login uid (inherited by the
    // threads made later).
    let s = at(Step::Attrs, a);
    task::set_attrs(a).map_err(|f| (s, f))?;
    let s = at(Step::ProcessAttrs, a);
    task::set_process_attrs(a).map_err(|f| (s, f))?;
    if a.flags & FLAG_LOGINUID != 0 {
        let s = at(Step::Loginuid, a);
        task::set_loginuid(a).map_err(|f| (s, f))?;
    }
    let s = at(Step::Fs, a);
    task::set_fs(a).map_err(|f| (s, f))?;
    if a.flags & FLAG_MM_MAP != 0 {
        let s = at(Step::MmMap, a);
        mm::set_mm(a).map_err(|f| (s, f))?;
    }
    let s = at(Step::Sigactions, a);
    task::set_sigactions(a).map_err(|f| (s, f))?;
    at(Step::Rlimits, a);
    task::set_rlimits(a);
    // The controlling terminal, through rcriu's fd of it: one the
    // process holds no fd of is gone once the fds are placed.
    if a.ctty_fd >= 0 {
        let s = at(Step::Ctty, a);
        ok(value(NR_IOCTL, a.ctty_fd as u64, TIOCSCTTY, 0), 0).map_err(|f| (s, f))?;
    }
    let s = at(Step::Fds, a);
    if a.flags & FLAG_FDT_SHARED != 0 {
        // The table's holder places them, once every sharer is done.
        fds::hand_over(a);
    } else {
        fds::wait_sharers(a);
        fds::place_fds(a).map_err(|f| (s, f))?;
        fds::placed(a);
    }
    // SAFETY: rcriu wrote `nr_threads` ThreadArgs at `threads`, the
    // leader's first; each thread writes only its own.
    let threads: &mut [ThreadArgs] = unsafe { array_mut(a.threads, a.nr_threads) };
    let (leader, others) = threads
        .split_first_mut()
        .ok_or((Step::Thread, Fail(0, -EINVAL)))?;
    for (i, t) in others.iter_mut().enumerate() {
        let s = at(Step::Thread, a);
        let r = thread::create(t);
        if r != t.tid as i64 {
            return Err((s, Fail(i as u32 + 1, if r < 0 { r } else { -EINVAL })));
        }
    }
    let s = at(Step::PosixTimers, a);
    timers::create(a).map_err(|f| (s, f))?;
    let s = at(Step::SharedSignals, a);
    signals::queue(a.signals, a.nr_signals, None).map_err(|f| (s, f))?;
    // The leader's own state, as every thread's.
    thread::restore(a, leader)?;
    let s = at(Step::ArmTimers, a);
    timers::arm(a).map_err(|f| (s, f))?;
    Ok(())
}

/// As [`array`], writable.
///
/// # Safety
/// As [`array`]; and nothing else reads or writes the items meanwhile.
unsafe fn array_mut<'a, T>(ptr: u64, n: u64) -> &'a mut [T] {
    if n == 0 {
        return &mut [];
    }
    // SAFETY: the caller's contract above.
    unsafe { core::slice::from_raw_parts_mut(ptr as *mut T, n as usize) }
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
