//! The kernel interfaces compel needs that neither std nor rustix offers:
//! ptrace, wait, process_vm_readv, shared mappings, SCM_RIGHTS, and
//! io_uring's calls ([`uring`]).
//!
//! # Safety
//! This is the one module of the crate with `unsafe`. Each wrapper is safe
//! to call: it passes the kernel only pointers to memory it owns for the
//! duration of the call, sized for what the kernel writes. The exception is
//! [`LocalMap`], whose memory is shared with another process: it is only
//! touched through volatile copies and atomics, and callers keep the
//! protocol (the parasite touches the args area only while running a
//! command; the restorer and rcriu's page helper share two words, used
//! atomically).

pub mod uring;

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rcriu_proc::Pid;

use crate::regs::UserRegs;

pub const PTRACE_O_TRACESYSGOOD: u32 = 1;
pub const PTRACE_O_EXITKILL: u32 = 1 << 20;
pub const PTRACE_O_SUSPEND_SECCOMP: u32 = 1 << 21;
pub const PTRACE_EVENT_STOP: i32 = 128;
const PTRACE_GETREGSET: u32 = 0x4204;
const PTRACE_SETREGSET: u32 = 0x4205;
const PTRACE_SEIZE: u32 = 0x4206;
const PTRACE_INTERRUPT: u32 = 0x4207;
const PTRACE_GETSIGMASK: u32 = 0x420a;
const PTRACE_SETSIGMASK: u32 = 0x420b;
const PTRACE_GET_SYSCALL_INFO: u32 = 0x420e;
const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
const PTRACE_GET_THREAD_AREA: u32 = 25;
const PTRACE_PEEKSIGINFO: u32 = 0x4209;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: u32 = 0x420d;
const NT_PRSTATUS: usize = 1;
const NT_X86_XSTATE: usize = 0x202;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The requests that change or resume a tracee (see `fault::step`).
fn is_action(req: u32) -> bool {
    matches!(
        req,
        PTRACE_SEIZE | PTRACE_INTERRUPT | PTRACE_SETREGSET | PTRACE_SETSIGMASK
    ) || req == libc::PTRACE_CONT
        || req == libc::PTRACE_SYSCALL
        || req == libc::PTRACE_DETACH
}

fn ptrace(req: u32, tid: Pid, addr: usize, data: usize) -> io::Result<libc::c_long> {
    if is_action(req) {
        crate::fault::step();
    }
    // SAFETY: every caller passes in `addr`/`data` either plain values or
    // addresses of buffers it owns for the call, sized for the request.
    check(unsafe { libc::ptrace(req, tid, addr, data) })
}

pub fn seize(tid: Pid, options: u32) -> io::Result<()> {
    ptrace(PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}

pub fn interrupt(tid: Pid) -> io::Result<()> {
    ptrace(PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

pub fn set_options(tid: Pid, options: u32) -> io::Result<()> {
    ptrace(libc::PTRACE_SETOPTIONS, tid, 0, options as usize).map(drop)
}

pub fn cont(tid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_CONT, tid, 0, sig as usize).map(drop)
}

/// Resumes, stopping at the next syscall entry or exit.
pub fn cont_syscall(tid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_SYSCALL, tid, 0, sig as usize).map(drop)
}

pub fn detach(tid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
}

pub fn get_siginfo(tid: Pid) -> io::Result<libc::siginfo_t> {
    let mut si = MaybeUninit::<libc::siginfo_t>::zeroed();
    ptrace(libc::PTRACE_GETSIGINFO, tid, 0, si.as_mut_ptr() as usize)?;
    // SAFETY: zero-initialised, then filled by the kernel.
    Ok(unsafe { si.assume_init() })
}

pub fn get_regs(tid: Pid) -> io::Result<UserRegs> {
    let mut regs = UserRegs::default();
    let mut iov = libc::iovec {
        iov_base: std::ptr::from_mut(&mut regs).cast(),
        iov_len: size_of::<UserRegs>(),
    };
    ptrace(
        PTRACE_GETREGSET,
        tid,
        NT_PRSTATUS,
        std::ptr::from_mut(&mut iov) as usize,
    )?;
    if iov.iov_len != size_of::<UserRegs>() {
        // A 32-bit (compat) task: its register set is smaller.
        return Err(io::Error::from_raw_os_error(libc::EMEDIUMTYPE));
    }
    Ok(regs)
}

pub fn set_regs(tid: Pid, regs: &UserRegs) -> io::Result<()> {
    let mut copy = *regs;
    let mut iov = libc::iovec {
        iov_base: std::ptr::from_mut(&mut copy).cast(),
        iov_len: size_of::<UserRegs>(),
    };
    ptrace(
        PTRACE_SETREGSET,
        tid,
        NT_PRSTATUS,
        std::ptr::from_mut(&mut iov) as usize,
    )
    .map(drop)
}

/// Reads the xsave area into `buf`; returns how many bytes the kernel
/// filled.
pub fn get_xstate(tid: Pid, buf: &mut [u8]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    ptrace(
        PTRACE_GETREGSET,
        tid,
        NT_X86_XSTATE,
        std::ptr::from_mut(&mut iov) as usize,
    )?;
    Ok(iov.iov_len)
}

pub fn set_xstate(tid: Pid, buf: &[u8]) -> io::Result<()> {
    let mut copy = buf.to_vec();
    let mut iov = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: copy.len(),
    };
    ptrace(
        PTRACE_SETREGSET,
        tid,
        NT_X86_XSTATE,
        std::ptr::from_mut(&mut iov) as usize,
    )
    .map(drop)
}

/// The legacy FXSAVE area (512 bytes).
pub fn get_fpregs(tid: Pid) -> io::Result<[u8; 512]> {
    let mut buf = [0u8; 512];
    ptrace(libc::PTRACE_GETFPREGS, tid, 0, buf.as_mut_ptr() as usize)?;
    Ok(buf)
}

pub fn get_sigmask(tid: Pid) -> io::Result<u64> {
    let mut mask = 0u64;
    ptrace(
        PTRACE_GETSIGMASK,
        tid,
        size_of::<u64>(),
        std::ptr::from_mut(&mut mask) as usize,
    )?;
    Ok(mask)
}

pub fn set_sigmask(tid: Pid, mask: u64) -> io::Result<()> {
    let mut m = mask;
    ptrace(
        PTRACE_SETSIGMASK,
        tid,
        size_of::<u64>(),
        std::ptr::from_mut(&mut m) as usize,
    )
    .map(drop)
}

/// Where a thread in a syscall stop is: `PTRACE_SYSCALL_INFO_ENTRY` (1)
/// or `PTRACE_SYSCALL_INFO_EXIT` (2), or 0 when not in a syscall stop.
pub fn syscall_stop_kind(tid: Pid) -> io::Result<u8> {
    // struct ptrace_syscall_info: op first (u8), then arch, ip, sp and the
    // entry or exit data; 88 bytes cover every kind.
    let mut buf = [0u64; 11];
    ptrace(
        PTRACE_GET_SYSCALL_INFO,
        tid,
        std::mem::size_of_val(&buf),
        buf.as_mut_ptr() as usize,
    )?;
    Ok((buf[0] & 0xff) as u8)
}

/// `PTRACE_SYSCALL_INFO_ENTRY`.
pub const SYSCALL_ENTRY: u8 = 1;
/// `PTRACE_SYSCALL_INFO_EXIT`.
pub const SYSCALL_EXIT: u8 = 2;

/// `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

const _: () = assert!(size_of::<RseqConfig>() == 24);

pub fn get_rseq_config(tid: Pid) -> io::Result<RseqConfig> {
    let mut c = RseqConfig::default();
    ptrace(
        PTRACE_GET_RSEQ_CONFIGURATION,
        tid,
        size_of::<RseqConfig>(),
        std::ptr::from_mut(&mut c) as usize,
    )?;
    Ok(c)
}

/// `struct user_desc` as `PTRACE_GET_THREAD_AREA` fills it.
pub fn get_thread_area(tid: Pid, entry: u32) -> io::Result<[u32; 4]> {
    let mut d = [0u32; 4];
    ptrace(
        PTRACE_GET_THREAD_AREA,
        tid,
        entry as usize,
        d.as_mut_ptr() as usize,
    )?;
    Ok(d)
}

/// The signals pending for a thread (`shared`: for its whole process),
/// each as the 128 bytes of its `siginfo_t`, oldest first; they stay
/// queued.
pub fn peek_siginfo(tid: Pid, shared: bool) -> io::Result<Vec<[u8; 128]>> {
    #[repr(C)]
    struct Args {
        off: u64,
        flags: u32,
        nr: i32,
    }
    const BATCH: usize = 32;
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; 128]; BATCH];
        let mut a = Args {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: BATCH as i32,
        };
        let n = ptrace(
            PTRACE_PEEKSIGINFO,
            tid,
            std::ptr::from_mut(&mut a) as usize,
            buf.as_mut_ptr() as usize,
        )? as usize;
        out.extend_from_slice(&buf[..n.min(BATCH)]);
        if n < BATCH {
            return Ok(out);
        }
    }
}

/// The seccomp filters of a thread, oldest (first installed) first: each
/// program (its `struct sock_filter` array) and its flags (0 when the
/// kernel cannot tell).
pub fn seccomp_filters(tid: Pid) -> io::Result<Vec<(Vec<u8>, u64)>> {
    /// BPF_MAXINSNS instructions of 8 bytes.
    const MAX: usize = 4096 * 8;
    let mut out = Vec::new();
    for i in 0usize.. {
        let mut prog = vec![0u8; MAX];
        let n = match ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            i,
            prog.as_mut_ptr() as usize,
        ) {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        };
        prog.truncate(n * 8);
        let mut meta = [i as u64, 0u64];
        let flags = match ptrace(
            PTRACE_SECCOMP_GET_METADATA,
            tid,
            size_of::<[u64; 2]>(),
            meta.as_mut_ptr() as usize,
        ) {
            Ok(_) => meta[1],
            Err(e) if e.raw_os_error() == Some(libc::EIO) => 0,
            Err(e) => return Err(e),
        };
        out.push((prog, flags));
    }
    Ok(out)
}

/// How a waited-for task changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Stopped; `sig` is the stop signal, `event` the ptrace event (0 for
    /// none), `syscall` set for a syscall stop (TRACESYSGOOD).
    Stopped {
        sig: i32,
        event: i32,
        syscall: bool,
    },
    Exited(i32),
    Killed(i32),
    /// WNOHANG and nothing to report.
    Nothing,
}

fn decode_status(status: i32) -> Wait {
    if libc::WIFSTOPPED(status) {
        let sig = libc::WSTOPSIG(status);
        Wait::Stopped {
            sig: sig & 0x7f,
            event: status >> 16,
            syscall: sig == (libc::SIGTRAP | 0x80),
        }
    } else if libc::WIFEXITED(status) {
        Wait::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Wait::Killed(libc::WTERMSIG(status))
    } else {
        Wait::Nothing
    }
}

/// `waitpid(tid, __WALL | flags)`, retried on EINTR.
pub fn wait(tid: Pid, flags: i32) -> io::Result<Wait> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a local the kernel writes one int to.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(Wait::Nothing);
        }
        return Ok(decode_status(status));
    }
}

/// `waitpid(pid, &status, 0)` for a child that is not traced.
pub fn waitpid_status(pid: Pid, status: &mut i32) -> io::Result<()> {
    // SAFETY: the kernel writes one int to `status`.
    let r = unsafe { libc::waitpid(pid, status, 0) };
    check(r.into()).map(drop)
}

pub fn tgkill(tgid: Pid, tid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: a plain syscall with integer arguments.
    check(unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) }).map(drop)
}

pub fn gettid() -> Pid {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

pub fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: a plain syscall with integer arguments.
    check(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// Reads the victim's memory at `addr` into `buf`; returns the bytes read.
pub fn process_vm_read(pid: Pid, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers `buf`, which we own; the remote one is
    // only read by the kernel through the other process's page tables.
    let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    check(r as libc::c_long).map(|n| n as usize)
}

/// Writes `buf` into the victim's memory at `addr`; returns the bytes
/// written.
pub fn process_vm_write(pid: Pid, addr: u64, buf: &[u8]) -> io::Result<usize> {
    crate::fault::step();
    let local = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers `buf`, which the kernel only reads;
    // the remote one is written through the other process's page tables.
    let r = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    check(r as libc::c_long).map(|n| n as usize)
}

/// A `MAP_SHARED` mapping of a file in rcriu, holding the same pages the
/// victim maps: the shared area. Its bytes change under us while the
/// parasite runs, so they are read and written only by copies.
#[derive(Debug)]
pub struct LocalMap {
    addr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory, usable from any thread; the raw
// pointer is only what makes the type !Send by default.
unsafe impl Send for LocalMap {}

impl LocalMap {
    /// Maps `len` bytes of shared anonymous memory read-write at exactly
    /// `addr`, failing (EEXIST) rather than replacing anything there.
    pub fn anon_shared_at(addr: u64, len: usize) -> io::Result<LocalMap> {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping:
        // the kernel fails instead, so no memory in use changes.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        if p as u64 != addr {
            // An old kernel that took the flag as a hint.
            // SAFETY: unmapping exactly what was just mapped.
            unsafe { libc::munmap(p, len) };
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(LocalMap {
            addr: p.cast(),
            len,
        })
    }

    /// The address of the mapping here.
    pub fn addr(&self) -> u64 {
        self.addr as u64
    }

    /// Changes the protection of part of the mapping.
    pub fn protect(&self, off: usize, len: usize, prot: i32) -> io::Result<()> {
        self.check_range(off, len);
        // SAFETY: the range lies inside our own mapping (checked); only its
        // protection changes, and we access it by copies, never by code
        // that would fault on a read-only page (callers protect only the
        // blob's code, which they no longer write).
        let r = unsafe { libc::mprotect(self.addr.add(off).cast(), len, prot) };
        check(r.into()).map(drop)
    }

    /// Maps `len` bytes of `fd` from `offset` (a multiple of the page
    /// size) read-write and shared.
    pub fn map(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<LocalMap> {
        Self::map_with(fd, offset, len, libc::PROT_READ | libc::PROT_WRITE)
    }

    /// Maps `len` bytes of `fd` from `offset` read-only and shared.
    pub fn map_readonly(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<LocalMap> {
        Self::map_with(fd, offset, len, libc::PROT_READ)
    }

    fn map_with(fd: BorrowedFd<'_>, offset: u64, len: usize, prot: i32) -> io::Result<LocalMap> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: a fresh mapping chosen by the kernel; nothing else lives
        // at the address it returns.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(LocalMap {
            addr: p.cast(),
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check_range(&self, off: usize, n: usize) {
        assert!(
            off.checked_add(n).is_some_and(|end| end <= self.len),
            "shared area access {off:#x}+{n:#x} outside its {:#x} bytes",
            self.len
        );
    }

    /// Copies `src` into the area at `off`.
    pub fn write(&self, off: usize, src: &[u8]) {
        self.check_range(off, src.len());
        // SAFETY: the range lies inside the mapping (checked); the source
        // is a distinct Rust slice, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.addr.add(off), src.len()) };
    }

    /// Copies bytes of the area at `off` into `dst`.
    pub fn read(&self, off: usize, dst: &mut [u8]) {
        self.check_range(off, dst.len());
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(self.addr.add(off), dst.as_mut_ptr(), dst.len()) };
    }

    /// Writes a plain-data value at `off`.
    pub fn put<T: Copy>(&self, off: usize, v: &T) {
        self.check_range(off, size_of::<T>());
        // SAFETY: in range (checked); an unaligned write needs no alignment.
        unsafe { std::ptr::write_unaligned(self.addr.add(off).cast::<T>(), *v) };
    }

    /// Reads a plain-data value at `off`.
    ///
    /// `T` must be valid for any bit pattern (the ABI structs are: integers
    /// and arrays of them).
    pub fn get<T: Pod>(&self, off: usize) -> T {
        self.check_range(off, size_of::<T>());
        // SAFETY: in range (checked); `T: Pod` is valid for any bytes.
        unsafe { std::ptr::read_unaligned(self.addr.add(off).cast::<T>()) }
    }
}

/// Which way [`LocalMap::copy_remote`] copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the other process into the mapping (`process_vm_readv`).
    In,
    /// From the mapping into the other process (`process_vm_writev`).
    Out,
}

/// `process_vm_readv`/`process_vm_writev`'s most remote ranges a call.
const IOV_MAX: usize = 1024;

/// Copies `src` into the memory of process `pid` at the ranges `remote`
/// (base, length), in order, with `process_vm_writev(2)` (as
/// [`LocalMap::copy_remote`]); the ranges hold at most `src.len()` bytes.
pub fn write_remote(
    pid: Pid,
    src: &[u8],
    remote: impl IntoIterator<Item = (u64, u64)>,
) -> io::Result<()> {
    // The kernel only reads from `src` for a write out.
    copy_iovecs(
        pid,
        src.as_ptr().cast_mut(),
        src.len(),
        remote,
        Direction::Out,
    )
}

/// Copies between the `avail` bytes from `base` here and the ranges
/// `remote` of process `pid`, up to `IOV_MAX` ranges a call, going on
/// after partial copies. `base` must be valid for `avail` bytes, and
/// writable for [`Direction::In`].
fn copy_iovecs(
    pid: Pid,
    base: *mut u8,
    avail: usize,
    remote: impl IntoIterator<Item = (u64, u64)>,
    dir: Direction,
) -> io::Result<()> {
    let mut iovs: Vec<libc::iovec> = remote
        .into_iter()
        .map(|(base, len)| libc::iovec {
            iov_base: base as usize as *mut libc::c_void,
            iov_len: len as usize,
        })
        .collect();
    let want: usize = iovs.iter().map(|v| v.iov_len).sum();
    if want > avail {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let (mut at, mut i) = (0usize, 0);
    while i < iovs.len() {
        let batch = &iovs[i..(i + IOV_MAX).min(iovs.len())];
        let len: usize = batch.iter().map(|v| v.iov_len).sum();
        let local = libc::iovec {
            // SAFETY: `at` + `len` stays inside the `avail` bytes from
            // `base` (the whole copy was checked above).
            iov_base: unsafe { base.add(at) }.cast(),
            iov_len: len,
        };
        // SAFETY: the kernel copies at most `len` bytes to or from
        // `base` + `at`, inside the caller's buffer, and reads the iovec arrays from
        // our memory; the other process's memory it checks itself.
        let r = unsafe {
            let f = match dir {
                Direction::In => libc::process_vm_readv,
                Direction::Out => libc::process_vm_writev,
            };
            f(
                pid,
                &local,
                1,
                batch.as_ptr(),
                batch.len() as libc::c_ulong,
                0,
            )
        };
        let n = match check(r as libc::c_long)? {
            0 => return Err(io::Error::from_raw_os_error(libc::EFAULT)),
            n => n as usize,
        };
        at += n;
        // Step over what was copied; a partly copied range is shortened.
        let mut left = n;
        while i < iovs.len() && left >= iovs[i].iov_len {
            left -= iovs[i].iov_len;
            i += 1;
        }
        if left > 0 {
            iovs[i].iov_base = (iovs[i].iov_base as usize + left) as *mut libc::c_void;
            iovs[i].iov_len -= left;
        }
    }
    Ok(())
}

impl LocalMap {
    /// Reads the memory of a process at the ranges `remote` (base,
    /// length), in order, through `mem` (its `/proc/PID/mem`, open for
    /// reading) into the mapping from byte `at` on. Unlike
    /// `process_vm_readv(2)`, which pins the pages it reads and so makes
    /// the process copy every page it shares copy-on-write (with its
    /// parent or children after a fork), this leaves them shared. A range
    /// that cannot be read fails with EFAULT (or the read's error).
    pub fn read_mem(
        &self,
        mem: BorrowedFd<'_>,
        at: usize,
        remote: impl Iterator<Item = (u64, u64)>,
    ) -> io::Result<()> {
        let mut at = at;
        for (base, len) in remote {
            let len =
                usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            if at.checked_add(len).is_none_or(|e| e > self.len) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let mut done = 0usize;
            while done < len {
                // SAFETY: `at + done` .. `at + len` lies inside the
                // mapping (checked above); pread writes at most `len -
                // done` bytes there.
                let r = unsafe {
                    libc::pread64(
                        mem.as_raw_fd(),
                        self.addr.add(at + done).cast(),
                        len - done,
                        (base + done as u64) as libc::off64_t,
                    )
                };
                match check(r as libc::c_long)? {
                    0 => return Err(io::Error::from_raw_os_error(libc::EFAULT)),
                    n => done += n as usize,
                }
            }
            at += len;
        }
        Ok(())
    }

    /// Copies between the mapping, from byte `at` on, and the memory of
    /// process `pid` at the ranges `remote` (base, length), in order: in
    /// with `process_vm_readv(2)`, out with `process_vm_writev(2)`, up to
    /// `IOV_MAX` ranges a call, going on after partial copies. A page that
    /// cannot be copied, on either side, fails with EFAULT.
    pub fn copy_remote(
        &self,
        pid: Pid,
        at: usize,
        remote: impl IntoIterator<Item = (u64, u64)>,
        dir: Direction,
    ) -> io::Result<()> {
        if at > self.len {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `at` is inside the mapping (or at its end), which is
        // `self.len` bytes from `self.addr`: the result stays in it.
        let local = unsafe { self.addr.add(at) };
        copy_iovecs(pid, local, self.len - at, remote, dir)
    }

    /// The aligned 32-bit word at `off`, for atomic access shared with
    /// the other process.
    pub fn atomic_u32(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        self.check_range(off, 4);
        assert!(off.is_multiple_of(4), "unaligned atomic at {off:#x}");
        // SAFETY: in range and aligned (checked; the mapping is page
        // aligned); the word lives as long as `self`, and every access to
        // it, here or in the other process, is atomic.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.addr.add(off).cast()) }
    }

    /// The aligned 64-bit word at `off`, as [`atomic_u32`](Self::atomic_u32).
    pub fn atomic_u64(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        self.check_range(off, 8);
        assert!(off.is_multiple_of(8), "unaligned atomic at {off:#x}");
        // SAFETY: as in `atomic_u32`.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.addr.add(off).cast()) }
    }
}

impl Drop for LocalMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; no reference into it
        // outlives `self` (access is by copy only).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// Sends one datagram with `fds` attached.
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE only computes a size.
        unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize }
    };
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer is `space` bytes, room for one header
        // and the fds, as CMSG_SPACE computed; CMSG_FIRSTHDR points into it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    // SAFETY: msg points to the iovec and control buffer above, alive for
    // the call.
    let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    check(r as libc::c_long).map(|n| n as usize)
}

/// Receives one datagram into `data`, and the fds that come with it.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    data: &mut [u8],
    flags: i32,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    const MAX: usize = rcriu_parasite_abi::MAX_FDS;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX * size_of::<RawFd>()) as u32) as usize };
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg points to buffers we own for the call.
    let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
    let n = check(r as libc::c_long)? as usize;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled the control buffer and msg_controllen; the
    // CMSG_* walk stays inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data_len = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..data_len / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(p.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fds))
}

/// The peer's credentials on a unix socket.
pub fn peer_pid(sock: BorrowedFd<'_>) -> io::Result<Pid> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes to `cred`.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    check(r.into())?;
    Ok(cred.pid)
}

/// Binds `fd` to an abstract unix address (`name` without the leading 0).
pub fn bind_abstract(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (addr, len) = abstract_addr(name)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
    check(r.into()).map(drop)
}

/// A `sockaddr_un` for an abstract name, and its length.
pub fn abstract_addr(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() + 1 > addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path[1..].iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = (size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
    Ok((addr, len))
}

/// `setns` into the namespace held by `fd`.
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> io::Result<()> {
    // SAFETY: a plain syscall on an fd we hold.
    check(unsafe { libc::setns(fd.as_raw_fd(), nstype) }.into()).map(drop)
}

/// `splice` from a pipe into `out` (at its file position).
pub fn splice_out(
    pipe: BorrowedFd<'_>,
    out: BorrowedFd<'_>,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    // SAFETY: no memory is passed; both fds are held by the caller.
    let r = unsafe {
        libc::splice(
            pipe.as_raw_fd(),
            std::ptr::null_mut(),
            out.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    check(r as libc::c_long).map(|n| n as usize)
}

/// Polls `fds` for reading; returns which are readable (or hung up).
pub fn poll_in(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` holds `p.len()` pollfds we own.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(p.iter().map(|x| x.revents != 0).collect());
    }
}

/// A `SOCK_SEQPACKET` unix socket, close-on-exec.
pub fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the fd it returns is new and ours.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    check(fd.into())?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: a plain syscall on an fd we hold.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) }.into()).map(drop)
}

/// Accepts a connection without waiting (`EAGAIN` when none is queued).
pub fn accept_nonblock(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: no address is asked for; the fd returned is new and ours.
    let s = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    check(s.into())?;
    // SAFETY: `s` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// A pipe (read end, write end), close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: the kernel writes two ints to `fds`.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    // SAFETY: both are fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `F_SETPIPE_SZ`: returns the size the kernel granted.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    // SAFETY: a plain fcntl with an integer argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
    check(r.into()).map(|n| n as usize)
}

/// The bytes of a slice of plain data.
pub fn slice_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all the bytes are initialised;
    // the slice borrows `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// The bytes of a plain-data value.
pub fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all its bytes are initialised;
    // the slice borrows `v` for its lifetime.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<T>()) }
}

/// A plain-data value from the first bytes of `b`.
///
/// Panics if `b` is shorter than `T`: callers check lengths first.
pub fn read_pod<T: Pod>(b: &[u8]) -> T {
    assert!(
        b.len() >= size_of::<T>(),
        "read_pod: {} bytes for a {}-byte value",
        b.len(),
        size_of::<T>()
    );
    // SAFETY: enough bytes (asserted); `T: Pod` is valid for any bytes; an
    // unaligned read needs no alignment.
    unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) }
}

/// Plain data: integers, and arrays and `#[repr(C)]` structs of them with
/// every padding byte spelled out as a field.
///
/// # Safety
/// Implementors must be valid for every bit pattern of their size and have
/// no implicit padding (so that all their bytes are initialised).
pub unsafe trait Pod: Copy {}

// SAFETY: integers and structs made only of integers (arrays included) are
// valid for any bit pattern.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::CtlMsg {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::InitArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::Jump {}
// SAFETY: as above (an i32 pair before the i64 keeps it unpadded).
unsafe impl Pod for rcriu_parasite_abi::Ctl {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::SigactionsArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::ItimersArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::PosixTimersArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::SigaltstackArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::TlsArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::RseqArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::CredsArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::ThreadInfoArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::FdsArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::DumpPagesArgs {}
// SAFETY: as above: integers and an array of them, no padding.
unsafe impl Pod for rcriu_parasite_abi::WritePagesArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::MprotectArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::MemPoliciesArgs {}
// SAFETY: as above.
unsafe impl Pod for UserRegs {}

/// The user state components the OS enabled (XCR0) beyond x87 and SSE,
/// with their offsets and sizes in the standard xsave layout.
pub fn xsave_components() -> &'static [crate::regs::XsaveComponent] {
    static COMPONENTS: std::sync::OnceLock<Vec<crate::regs::XsaveComponent>> =
        std::sync::OnceLock::new();
    COMPONENTS.get_or_init(|| {
        if !std::arch::is_x86_feature_detected!("xsave") {
            return Vec::new();
        }
        // SAFETY: xgetbv is available when the OS enabled XSAVE (checked
        // above); it only reads a register.
        let xcr0 = unsafe { std::arch::x86_64::_xgetbv(0) };
        (2..63u32)
            .filter(|i| xcr0 & (1 << i) != 0)
            .map(|i| {
                let r = std::arch::x86_64::__cpuid_count(0xd, i);
                crate::regs::XsaveComponent {
                    index: i,
                    offset: r.ebx,
                    size: r.eax,
                }
            })
            .collect()
    })
}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::Args {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::Vma {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::IoVec {}
// SAFETY: `#[repr(C)]` integers only, every bit pattern valid, no padding
// (its layout is asserted in `uring`).
unsafe impl Pod for uring::Params {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::ReadBatch {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::Range {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::FdMove {}
// SAFETY: as above (explicit padding fields, no implicit padding).
unsafe impl Pod for rcriu_parasite_abi::restorer::ThreadArgs {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::PosixTimer {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::SeccompFilter {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::AnonName {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::LateOpen {}
// SAFETY: as above (explicit padding).
unsafe impl Pod for rcriu_parasite_abi::restorer::TakeLock {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::Child {}
// SAFETY: as above.
unsafe impl Pod for rcriu_parasite_abi::restorer::TreeShared {}

/// Blocks until some child or tracee of this process has something to
/// report, without consuming it (`waitid(P_ALL, WNOWAIT)`); returns its
/// pid.
pub fn wait_any_peek() -> io::Result<Pid> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroes are a valid value.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes one siginfo_t to `si`.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut si,
                libc::WEXITED | libc::WSTOPPED | libc::WNOWAIT | libc::__WALL,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled in a SIGCHLD siginfo, whose si_pid is set.
        return Ok(unsafe { si.si_pid() });
    }
}

/// Whether task `tid` is gone or a zombie (dead, not reaped).
pub fn is_dead(tid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| matches!(state, 'Z' | 'X' | 'x')),
        Err(_) => true,
    }
}
