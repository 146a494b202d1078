//! The kernel interfaces the restore needs beyond compel's: clone3 into
//! the restorer, fd renumbering, clocks.
//!
//! # Safety
//! The one module of the crate with `unsafe`. `clone3_into` starts a
//! process that never returns into Rust code: it jumps straight into the
//! restorer blob, whose region the caller prepared.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rcriu_compel::abi::restorer::CloneArgs;
use rcriu_proc::Pid;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `CLONE_CLEAR_SIGHAND`: the child starts with every signal handler
/// reset to its default.
pub const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// Creates a process with pid `pid` (clone3 with set_tid) that starts
/// executing at `entry` with `rdi` = `arg` on the stack `[stack, stack +
/// stack_size)`. Returns its pid in the parent.
///
/// # Safety
/// `entry` is the head of code that never returns and needs nothing of
/// the caller's but what lies at `arg` and on that stack (the child is a
/// fork: the caller's memory is there, but its other threads are not, so
/// no Rust code may run in it).
pub unsafe fn clone3_into(
    flags: u64,
    pid: Pid,
    stack: u64,
    stack_size: u64,
    entry: u64,
    arg: u64,
) -> io::Result<Pid> {
    let set_tid = [pid];
    // With CLONE_PARENT the kernel takes the caller's own exit signal and
    // refuses another.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let args = CloneArgs {
        flags,
        exit_signal,
        stack,
        stack_size,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    let ret: i64;
    // SAFETY: clone3 reads `args` (and the set_tid array it points to),
    // both alive across the call. In the parent the syscall returns the
    // child's pid or an error, clobbering only rax, rcx and r11. In the
    // child (rax == 0) the stack pointer is the new stack and control
    // leaves for `entry` at once: no Rust code runs there, as the caller
    // guarantees `entry` needs none.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "jmp r12",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::from_ref(&args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(ret as Pid)
}

/// A copy of `fd` numbered `min` or above, close-on-exec.
pub fn dup_above(fd: BorrowedFd<'_>, min: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain fcntl; the new fd is ours.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    check(r.into())?;
    // SAFETY: `r` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// A copy of `fd` numbered `to`, close-on-exec, if `to` is free in
/// rcriu's table (`None` when it is taken).
pub fn dup_to_free(fd: BorrowedFd<'_>, to: i32) -> io::Result<Option<OwnedFd>> {
    if fd.as_raw_fd() == to {
        return Ok(None);
    }
    // SAFETY: a plain fcntl on a number, which need not be open.
    let r = unsafe { libc::fcntl(to, libc::F_GETFD) };
    if r != -1 {
        return Ok(None);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EBADF) {
        return Err(e);
    }
    // SAFETY: `to` is free (checked above; nothing else opens files
    // meanwhile), so dup3 closes nothing of ours.
    let r = unsafe { libc::dup3(fd.as_raw_fd(), to, libc::O_CLOEXEC) };
    check(r.into())?;
    // SAFETY: `to` is now a descriptor nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(to) }))
}

/// A copy, close-on-exec, of the caller's descriptor number `fd` (an
/// `--inherit-fd`, which rcriu does not own): `EBADF` when it is not open.
pub fn dup_inherited(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain fcntl on a number, which need not be open; the copy
    // is a fresh descriptor.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    check(r.into())?;
    // SAFETY: `r` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `clock_gettime(clock)` as (seconds, nanoseconds).
pub fn clock_gettime(clock: libc::clockid_t) -> io::Result<(i64, i64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec to `ts`.
    check(unsafe { libc::clock_gettime(clock, &mut ts) }.into())?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// A file for new shared anonymous memory of `len` bytes (what
/// `mmap(MAP_SHARED | MAP_ANONYMOUS | extra_flags)` creates: `/dev/zero
/// (deleted)` on the shmem mount, or `/anon_hugepage (deleted)` with
/// MAP_HUGETLB), opened read-write through `map_files` of a mapping made
/// and dropped for the purpose.
pub fn shared_anon_file(len: usize, extra_flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: a fresh mapping at an address of the kernel's choosing,
    // touching nothing of ours; unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = p as usize;
    let name = format!("/proc/self/map_files/{:x}-{:x}", start, start + len);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name)
        .map(OwnedFd::from);
    // SAFETY: the mapping made above, used by nothing else.
    unsafe { libc::munmap(p, len) };
    file
}

/// `unshare(2)` of namespaces (and CLONE_FS, which a new mount namespace
/// implies) for the calling thread alone.
pub fn unshare(flags: rustix::thread::UnshareFlags) -> io::Result<()> {
    // SAFETY: only namespaces and the fs struct (root, cwd, umask) move,
    // for the calling thread (rcriu's namespace holder, or a thread made
    // to work in a container's root), which runs nothing of rcriu's but
    // its own steps; no fd table or memory is unshared under other
    // threads' feet.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// clone3 with `args` and no stack: a fork (`args` has no CLONE_VM).
///
/// # Safety
///
/// The child (0 returned) runs in a copy of this process with one
/// thread: it must keep to async-signal-safe calls on what it owns, as
/// another thread may have held a lock at the fork.
unsafe fn fork3(args: &CloneArgs) -> libc::c_long {
    // SAFETY: clone3 reads `args`, alive across the call; without CLONE_VM
    // or a stack the child runs on a copy of this stack (the caller keeps
    // it to what is safe there).
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(args),
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// Forks a child of pid `pid` (clone3 with set_tid) that waits for a
/// signal until it is killed. Returns its pid.
pub fn fork_waiting_as(pid: Pid) -> io::Result<Pid> {
    let set_tid = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM or a stack is a fork: it reads
    // `args` and the set_tid array, alive across the call. The child only
    // calls pause (async-signal-safe) until it is killed; no Rust code
    // that could touch a lock held by another thread runs there.
    let r = unsafe { fork3(&args) };
    if r == 0 {
        loop {
            // SAFETY: waits for a signal; SIGKILL ends it.
            unsafe { libc::pause() };
        }
    }
    check(r).map(|p| p as Pid)
}

/// Forks a process in a new user namespace (clone3 with CLONE_NEWUSER)
/// that, once it reads a byte on `go` (its maps written), unshares the
/// namespaces of `flags` (which the new user namespace then owns),
/// writes the outcome (0 or an errno, 4 bytes) on `ready`, and waits
/// until it is killed. Returns its pid.
pub fn fork_in_new_userns(
    go: BorrowedFd<'_>,
    ready: BorrowedFd<'_>,
    flags: u64,
) -> io::Result<Pid> {
    let (go, ready) = (go.as_raw_fd(), ready.as_raw_fd());
    let args = CloneArgs {
        flags: libc::CLONE_NEWUSER as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM or a stack is a fork: it reads
    // `args`, alive across the call. The child only makes system calls
    // (read, unshare, write, pause: async-signal-safe) on integers and
    // its own locals until it is killed; no Rust code that could touch a
    // lock held by another thread runs there.
    let r = unsafe { fork3(&args) };
    if r == 0 {
        let mut b = 0u8;
        // SAFETY: reads one byte into a local.
        let n = unsafe { libc::read(go, std::ptr::from_mut(&mut b).cast(), 1) };
        if n == 1 {
            // SAFETY: unshare takes flags only.
            let err: i32 = if unsafe { libc::unshare(flags as libc::c_int) } == 0 {
                0
            } else {
                // SAFETY: errno of this thread.
                unsafe { *libc::__errno_location() }
            };
            // SAFETY: writes the 4 bytes of a local.
            unsafe { libc::write(ready, std::ptr::from_ref(&err).cast(), 4) };
        }
        loop {
            // SAFETY: waits for a signal; SIGKILL ends it.
            unsafe { libc::pause() };
        }
    }
    check(r).map(|p| p as Pid)
}

/// Where a tool run in a user namespace works ([`exec_in_userns`]).
#[derive(Debug)]
pub enum WorkDir {
    /// A directory (or a detached mount), open.
    Fd(OwnedFd),
    /// A copy of the mount at `path` in mount namespace `mntns` alone
    /// (`open_tree(OPEN_TREE_CLONE)` there: what its binds cover shows);
    /// the tool itself is found in mount namespace `back` (rcriu's).
    MountIn {
        mntns: OwnedFd,
        path: std::ffi::CString,
        back: OwnedFd,
    },
}

/// Makes `cmd` run in `dir` and in user namespace `userns` as its root
/// (uid and gid 0), as CRIU runs its tools for a tree in a user
/// namespace of its own.
pub fn exec_in_userns(cmd: &mut std::process::Command, dir: WorkDir, userns: OwnedFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child (one thread) before exec
    // and makes only system calls (setns, open_tree, fchdir, setgid,
    // setuid: async-signal-safe) on fds and a path the closure owns
    // (alive as long as `cmd`, across the spawn; close-on-exec, so the
    // program does not keep them).
    unsafe {
        cmd.pre_exec(move || {
            let fd = match &dir {
                WorkDir::Fd(f) => f.as_raw_fd(),
                WorkDir::MountIn { mntns, path, back } => {
                    if libc::setns(mntns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC.
                    let r = libc::syscall(
                        libc::SYS_open_tree,
                        libc::AT_FDCWD,
                        path.as_ptr(),
                        (1 | libc::O_CLOEXEC) as libc::c_uint,
                    );
                    if r < 0 || libc::setns(back.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    r as i32
                }
            };
            if libc::fchdir(fd) != 0
                || libc::setns(userns.as_raw_fd(), libc::CLONE_NEWUSER) != 0
                || libc::setgid(0) != 0
                || libc::setuid(0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets the calling thread's effective gid, then uid (raw setresgid and
/// setresuid: only this thread's credentials change, unlike libc's,
/// which change every thread's).
pub fn thread_effective_ids(uid: u32, gid: u32) -> io::Result<()> {
    let keep = libc::c_long::from(-1i32);
    // SAFETY: setresgid takes integers only.
    check(unsafe { libc::syscall(libc::SYS_setresgid, keep, libc::c_long::from(gid), keep) })?;
    // SAFETY: setresuid takes integers only.
    check(unsafe { libc::syscall(libc::SYS_setresuid, keep, libc::c_long::from(uid), keep) })?;
    Ok(())
}

/// Back to effective uid, then gid, 0 (the real and saved ids are 0, so
/// the thread may).
pub fn thread_effective_root() -> io::Result<()> {
    let keep = libc::c_long::from(-1i32);
    // SAFETY: setresuid takes integers only.
    check(unsafe { libc::syscall(libc::SYS_setresuid, keep, 0 as libc::c_long, keep) })?;
    // SAFETY: setresgid takes integers only.
    check(unsafe { libc::syscall(libc::SYS_setresgid, keep, 0 as libc::c_long, keep) })?;
    Ok(())
}

/// Forks the root into the restorer (as [`clone3_into`] with `flags`,
/// which hold `CLONE_NEWPID`) from inside user namespace `userns`, so
/// that the user namespace owns its new pid namespace, as CRIU's root,
/// made with `CLONE_NEWUSER | CLONE_NEWPID` at once, has it: a first
/// child enters the user namespace as its root there (uid and gid 0, no
/// groups, dumpable, as CRIU's root task is before anything else) and
/// forks the root as a child of its own parent (`CLONE_PARENT`: rcriu,
/// or rcriu's parent when `flags` holds `CLONE_PARENT`), then ends.
/// Returns the root's pid.
///
/// # Safety
/// As [`clone3_into`].
pub unsafe fn clone3_into_userns(
    userns: BorrowedFd<'_>,
    flags: u64,
    pid: Pid,
    stack: u64,
    stack_size: u64,
    entry: u64,
    arg: u64,
) -> io::Result<Pid> {
    let (rd, wr) = rcriu_compel::sys::pipe()?;
    let sibling = flags & libc::CLONE_PARENT as u64 != 0;
    let args = CloneArgs {
        flags: if sibling {
            libc::CLONE_PARENT as u64
        } else {
            0
        },
        exit_signal: if sibling { 0 } else { libc::SIGCHLD as u64 },
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM or a stack is a fork: it reads
    // `args`, alive across the call. The child makes only system calls
    // (setns, setuid, setgid, setgroups, prctl, clone3, write, _exit:
    // async-signal-safe) on integers and its own locals, then ends; the
    // root it forks starts in the restorer, as `clone3_into` says.
    let r0 = unsafe { fork3(&args) };
    if r0 == 0 {
        let err = || -> i32 {
            // SAFETY: errno of this (only) thread.
            -unsafe { *libc::__errno_location() }
        };
        // SAFETY: integers and the caller's fd.
        let entered = unsafe {
            libc::setns(userns.as_raw_fd(), libc::CLONE_NEWUSER) == 0
                && libc::setuid(0) == 0
                && libc::setgid(0) == 0
                && libc::setgroups(0, std::ptr::null()) == 0
                && libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) == 0
        };
        let out: i32 = if !entered {
            err()
        } else {
            // SAFETY: as the caller guarantees for `clone3_into`.
            match unsafe {
                clone3_into(
                    flags | libc::CLONE_PARENT as u64,
                    pid,
                    stack,
                    stack_size,
                    entry,
                    arg,
                )
            } {
                Ok(p) => p,
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            }
        };
        // SAFETY: writes the 4 bytes of a local, then ends this process
        // without running anything of rcriu's.
        unsafe {
            libc::write(wr.as_raw_fd(), std::ptr::from_ref(&out).cast(), 4);
            libc::_exit(0)
        }
    }
    drop(wr);
    let r0 = check(r0)? as Pid;
    let mut b = [0u8; 4];
    let got = std::io::Read::read_exact(&mut std::fs::File::from(rd), &mut b);
    if !sibling {
        let _ = rcriu_compel::sys::wait(r0, 0);
    }
    got?;
    match i32::from_ne_bytes(b) {
        p if p > 0 => Ok(p as Pid),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}
