//! The few calls of the front door that need `unsafe`.
//!
//! # Safety
//! - [`adopt_fd`] takes ownership of an fd number the process inherited
//!   (`swrk FD`, `--status-fd FD`): callers pass numbers nothing else in
//!   this process owns, once, at start-up.
//! - [`close_inherited`] closes such a number.
//! - [`close_from_in_child`] is installed with `pre_exec`: it runs between
//!   fork and exec and only makes one async-signal-safe system call.
//! - [`fork`] checks first that the process has one thread (the service's
//!   accept loop), so that the child can go on running Rust.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

/// Whether `fd` is open in this process.
pub fn is_open(fd: RawFd) -> bool {
    fd >= 0 && std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok()
}

/// Takes ownership of the inherited fd `fd`, if it is open.
pub fn adopt_fd(fd: RawFd) -> Option<OwnedFd> {
    if !is_open(fd) {
        return None;
    }
    // SAFETY: `fd` is open, and (the module's contract) an inherited
    // number nothing else in this process owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes the inherited fd `fd` (criu's `--close FD`).
pub fn close_inherited(fd: RawFd) {
    drop(adopt_fd(fd));
}

/// Makes the command close every fd from `first` up in the child, before
/// exec (what criu does before running an action script).
pub fn close_from_in_child(cmd: &mut std::process::Command, first: u32) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls close_range(2), which is async-signal-safe and touches no
    // memory.
    unsafe {
        cmd.pre_exec(move || {
            if libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Forks a process of one thread: `Some(pid)` in the parent, `None` in
/// the child; an error when the process has other threads (the child
/// runs on in Rust, allocating and taking locks, which is sound only when
/// no other thread could have held one at the fork).
pub fn fork() -> std::io::Result<Option<i32>> {
    if !single_threaded() {
        return Err(std::io::Error::other(
            "forking a process that has more than one thread",
        ));
    }
    // SAFETY: one thread (checked above; only this thread could start
    // another): the child's copy of every lock and of the allocator is in
    // a consistent state.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Whether this process has a single thread.
pub fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// Points whichever of fds 0, 1 and 2 is closed at `/dev/null`, so that
/// nothing opened later lands on them (pycriu starts `swrk` with all
/// three closed).
pub fn fill_standard_fds() {
    for fd in 0..3 {
        if !is_open(fd) {
            // The lowest free number: `fd`, as the ones below are open.
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                Ok(f) => {
                    let _ = std::os::fd::IntoRawFd::into_raw_fd(f);
                }
                Err(_) => return,
            }
        }
    }
}

/// Turns TCP_REPAIR on for `fd` (a TCP socket): what `check` probes.
pub fn set_tcp_repair(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const TCP_REPAIR: libc::c_int = 19;
    let on: libc::c_int = 1;
    // SAFETY: `fd` is a valid open fd for the call; the option's value is
    // a c_int on the stack, its size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_REPAIR,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
