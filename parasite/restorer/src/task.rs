//! The process-wide state: signals, session, time namespace, cwd and
//! root, signal actions, limits, attributes.

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, addr_mut, call, value};
use rcriu_parasite_abi::restorer::{Args, FLAG_AUTOGROUP, FLAG_COREDUMP_FILTER};

use crate::{Fail, Res, ok};

const DOT: &[u8] = b".\0";

const LOGINUID: &[u8] = b"/proc/self/loginuid\0";

const OOM_SCORE_ADJ: &[u8] = b"/proc/self/oom_score_adj\0";

const TIME_FOR_CHILDREN: &[u8] = b"/proc/self/ns/time_for_children\0";

const TIMENS_OFFSETS: &[u8] = b"/proc/self/timens_offsets\0";

pub fn block_signals() -> Res {
    let all: u64 = !0;
    // SAFETY: the kernel reads one sigset from `all`.
    let r = unsafe { call(NR_RT_SIGPROCMASK, SIG_SETMASK, addr(&all), 0, 8) };
    ok(r, 0).map(drop)
}

pub fn drop_rseq(a: &Args) -> Res {
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

pub fn wait_go(a: &Args) -> Res {
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

pub fn enter_timens(a: &Args) -> Res {
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

pub fn set_attrs(a: &Args) -> Res {
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

/// The memory attributes that decide how areas are filled: THP
/// disabled (entirely, or except where advised), before any area is.
pub fn set_mm_attrs(a: &Args) -> Res {
    let except = if a.thp_disable & 2 != 0 {
        PR_THP_DISABLE_EXCEPT_ADVISED
    } else {
        0
    };
    ok(
        value(
            NR_PRCTL,
            PR_SET_THP_DISABLE,
            u64::from(a.thp_disable & 1),
            except,
        ),
        0,
    )
    .map(drop)
}

/// The process's attributes beyond CRIU's: membarrier registrations, core
/// dump filter, autogroup nice, KSM on every area, and last (it refuses
/// later executable mappings) memory-deny-write-execute.
pub fn set_process_attrs(a: &Args) -> Res {
    let mut bits = a.membarrier;
    while bits != 0 {
        let cmd = bits & bits.wrapping_neg();
        bits &= bits - 1;
        ok(value(NR_MEMBARRIER, cmd as u64, 0, 0), cmd)?;
    }
    if a.flags & FLAG_COREDUMP_FILTER != 0 {
        write_line(COREDUMP_FILTER, &hex_line(a.coredump_filter), 1 << 20)?;
    }
    if a.flags & FLAG_AUTOGROUP != 0 {
        write_line(AUTOGROUP, &dec_line(a.autogroup_nice), 1 << 21)?;
    }
    if a.ksm_merge_any != 0 {
        ok(value(NR_PRCTL, PR_SET_MEMORY_MERGE, 1, 0), 1 << 22)?;
    }
    if a.mdwe != 0 {
        ok(value(NR_PRCTL, PR_SET_MDWE, a.mdwe as u64, 0), 1 << 23)?;
    }
    Ok(())
}

const COREDUMP_FILTER: &[u8] = b"/proc/self/coredump_filter\0";
const AUTOGROUP: &[u8] = b"/proc/self/autogroup\0";

/// A line of text to write to a /proc file: the bytes and their count.
struct Line([u8; 16], usize);

fn hex_line(v: u32) -> Line {
    let mut b = [0u8; 16];
    b[0] = b'0';
    b[1] = b'x';
    for i in 0..8 {
        let d = ((v >> (28 - 4 * i)) & 0xf) as u8;
        b[2 + i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
    }
    b[10] = b'\n';
    Line(b, 11)
}

fn dec_line(v: i32) -> Line {
    let mut b = [0u8; 16];
    let mut n = 0;
    if v < 0 {
        b[0] = b'-';
        n = 1;
    }
    let mut u = v.unsigned_abs();
    let mut digits = [0u8; 10];
    let mut d = 0;
    loop {
        digits[d] = b'0' + (u % 10) as u8;
        d += 1;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        b[n] = digits[d];
        n += 1;
    }
    b[n] = b'\n';
    Line(b, n + 1)
}

/// Writes `line` to the NUL-terminated `path`; failures are item `item`.
fn write_line(path: &[u8], line: &Line, item: u32) -> Res {
    // SAFETY: a NUL-terminated path the kernel reads.
    let fd = unsafe { call(NR_OPEN, addr(path), O_WRONLY | O_CLOEXEC, 0, 0) };
    let fd = ok(fd, item)?;
    // SAFETY: the kernel reads `line.1` bytes of the line.
    let r = unsafe { call(NR_WRITE, fd as u64, addr(&line.0), line.1 as u64, 0) };
    value(NR_CLOSE, fd as u64, 0, 0);
    if r != line.1 as i64 {
        return Err(Fail(item, if r < 0 { r } else { -EIO }));
    }
    Ok(())
}

pub fn set_fs(a: &Args) -> Res {
    if a.root_fd >= 0 {
        ok(value(NR_FCHDIR, a.root_fd as u64, 0, 0), 0)?;
        // SAFETY: a NUL-terminated path the kernel reads.
        ok(unsafe { call(NR_CHROOT, addr(DOT), 0, 0, 0) }, 1)?;
    }
    ok(value(NR_FCHDIR, a.cwd_fd as u64, 0, 0), 2)?;
    value(NR_UMASK, a.umask as u64, 0, 0);
    Ok(())
}

/// Every signal's action but SIGTRAP's: the int3 each thread ends on
/// raises SIGTRAP while every signal is blocked, and the kernel then
/// resets its action to SIG_DFL. rcriu sets SIGTRAP's last, once every
/// thread is past its trap.
pub fn set_sigactions(a: &Args) -> Res {
    for (i, act) in a.sigactions.iter().enumerate() {
        let sig = i as u64 + 1;
        if a.sigaction_set & (1 << i) == 0 || sig == 9 || sig == 19 || sig == SIGTRAP {
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
pub fn set_rlimits(a: &mut Args) {
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

/// Writes the login uid (as decimal), inherited by the threads created
/// after it.
pub fn set_loginuid(a: &Args) -> Res {
    let mut buf = [0u8; 12];
    let mut n = a.loginuid;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY: a NUL-terminated path the kernel reads.
    let fd = unsafe { call(NR_OPEN, addr(LOGINUID), O_WRONLY | O_CLOEXEC, 0, 0) };
    let fd = ok(fd, 0)?;
    let len = buf.len() - i;
    // SAFETY: the kernel reads `len` bytes of the number.
    let r = unsafe { call(NR_WRITE, fd as u64, addr(&buf[i]), len as u64, 0) };
    value(NR_CLOSE, fd as u64, 0, 0);
    if r != len as i64 {
        return Err(Fail(1, if r < 0 { r } else { -EIO }));
    }
    Ok(())
}
