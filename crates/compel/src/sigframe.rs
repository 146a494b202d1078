//! Signal frames as the kernel's `rt_sigreturn` reads them (x86_64
//! `struct rt_sigframe`): how a thread puts itself back when rcriu is gone
//! (see [`crate::lifeline`]).
//!
//! ```text
//! 0     pretcode (u64: where a handler would return; the landing)
//! 8     struct ucontext: uc_flags, uc_link, uc_stack (24 bytes),
//!       uc_mcontext (struct sigcontext, 256 bytes), uc_sigmask (8)
//! 312   struct siginfo (128 bytes, unused)
//! 448   the xsave area (64-byte aligned, as xrstor needs), then
//!       FP_XSTATE_MAGIC2
//! ```

use crate::regs::{FXSAVE_SIZE, Restart, UserRegs, XSAVE_HDR_OFFSET};
use crate::remote::ThreadCtx;

const UC_FLAGS: usize = 8;
const MCONTEXT: usize = 48;
const UC_SIGMASK: usize = 304;
/// Offset of the FPU state in the frame (64-byte aligned).
pub const FPSTATE: usize = 448;

const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;

/// `struct _fpx_sw_bytes` in the FXSAVE area's software-reserved bytes.
const SW_BYTES: usize = 464;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;

/// The frame that puts `ctx`'s thread back as it was found. `rt_sigreturn`
/// turns syscall restarting off, so a syscall the thread was in is
/// restarted here already. One with a restart block (a sleep, a wait
/// with a timeout) cannot go on where it was (`rt_sigreturn` drops the
/// block): it is made again with its own arguments, waiting its whole
/// time once more rather than failing with EINTR as after a signal.
pub fn for_sigreturn(ctx: &ThreadCtx) -> Vec<u8> {
    let fpu = fpstate(ctx.xstate.as_bytes());
    let mut f = vec![0u8; FPSTATE + fpu.len()];
    let mut r = ctx.regs;
    if r.restart() != Restart::None {
        r.ax = r.orig_ax;
        r.ip = r.ip.wrapping_sub(2);
    }
    put_regs(&mut f, &r);
    put(
        &mut f,
        UC_FLAGS,
        UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS,
    );
    put(&mut f, UC_SIGMASK, ctx.sigmask);
    // The fpstate pointer is filled in where the frame lands.
    f[FPSTATE..].copy_from_slice(&fpu);
    f
}

/// Fills in the fpstate pointer of a frame built by [`for_sigreturn`],
/// once its address is known.
pub fn locate(frame: &mut [u8], addr: u64) {
    if frame.len() > FPSTATE {
        put(frame, MCONTEXT + 184, addr + FPSTATE as u64);
    }
}

/// A frame that sets `regs` with every signal blocked and the FPU state
/// reset (the frame after it puts the real one back).
pub fn for_undo(regs: &UserRegs) -> Vec<u8> {
    let mut f = vec![0u8; FPSTATE];
    put_regs(&mut f, regs);
    put(&mut f, UC_FLAGS, UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
    put(&mut f, UC_SIGMASK, u64::MAX);
    f
}

fn put(f: &mut [u8], off: usize, v: u64) {
    f[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_regs(f: &mut [u8], r: &UserRegs) {
    let m = MCONTEXT;
    for (i, v) in [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.di, r.si, r.bp, r.bx, r.dx, r.ax,
        r.cx, r.sp, r.ip, r.flags,
    ]
    .into_iter()
    .enumerate()
    {
        put(f, m + 8 * i, v);
    }
    // cs, gs, fs, ss: four u16 at 144.
    let segs =
        (r.cs & 0xffff) | (r.gs & 0xffff) << 16 | (r.fs & 0xffff) << 32 | (r.ss & 0xffff) << 48;
    put(f, m + 144, segs);
}

/// The xsave area as a signal frame holds it: the software bytes say how
/// much of it there is (only as far as the components in use, which the
/// thread's own size always covers), and FP_XSTATE_MAGIC2 ends it.
fn fpstate(xsave: &[u8]) -> Vec<u8> {
    if xsave.len() < XSAVE_HDR_OFFSET + 64 {
        // No xsave on this machine: the legacy area alone (the kernel
        // then restores it with fxrstor).
        let mut v = xsave.to_vec();
        v.resize(FXSAVE_SIZE, 0);
        return v;
    }
    let bv = u64::from_le_bytes(
        xsave[XSAVE_HDR_OFFSET..XSAVE_HDR_OFFSET + 8]
            .try_into()
            .expect("eight bytes"),
    );
    let mut size = XSAVE_HDR_OFFSET + 64;
    let mut features = 0b11u64;
    for c in crate::sys::xsave_components() {
        features |= 1 << c.index;
        if bv & (1 << c.index) != 0 {
            size = size.max((c.offset + c.size) as usize);
        }
    }
    let size = size.min(xsave.len());
    let mut v = Vec::with_capacity(size + 4);
    v.extend_from_slice(&xsave[..size]);
    let sw = |v: &mut Vec<u8>, off: usize, b: &[u8]| {
        v[SW_BYTES + off..SW_BYTES + off + b.len()].copy_from_slice(b)
    };
    let magic1 = u32::from_le_bytes(
        xsave[SW_BYTES..SW_BYTES + 4]
            .try_into()
            .expect("four bytes"),
    );
    if magic1 != FP_XSTATE_MAGIC1 {
        sw(&mut v, 0, &FP_XSTATE_MAGIC1.to_le_bytes());
        sw(&mut v, 8, &features.to_le_bytes());
    }
    sw(&mut v, 4, &(size as u32 + 4).to_le_bytes());
    sw(&mut v, 16, &(size as u32).to_le_bytes());
    v.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::Xstate;

    fn at(f: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(f[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn layout() {
        let ctx = ThreadCtx {
            tid: 1,
            regs: UserRegs {
                r8: 8,
                ip: 0x1234,
                sp: 0x7000,
                cs: 0x33,
                ss: 0x2b,
                orig_ax: u64::MAX,
                ..Default::default()
            },
            sigmask: 0x5,
            xstate: Xstate::from_bytes(vec![0; 1024]),
        };
        let mut f = for_sigreturn(&ctx);
        locate(&mut f, 0x10000);
        assert_eq!(at(&f, MCONTEXT), 8);
        assert_eq!(at(&f, MCONTEXT + 8 * 16), 0x1234);
        assert_eq!(at(&f, MCONTEXT + 8 * 15), 0x7000);
        assert_eq!(at(&f, MCONTEXT + 184), 0x10000 + FPSTATE as u64);
        assert_eq!(at(&f, UC_SIGMASK), 5);
        assert_eq!(
            u16::from_le_bytes([f[MCONTEXT + 150], f[MCONTEXT + 151]]),
            0x2b
        );
        // The software bytes and the second magic.
        let fp = &f[FPSTATE..];
        let n = u32::from_le_bytes(fp[SW_BYTES + 16..SW_BYTES + 20].try_into().unwrap()) as usize;
        assert_eq!(fp.len(), n + 4);
        assert_eq!(&fp[n..], &FP_XSTATE_MAGIC2.to_le_bytes());
        assert_eq!(&fp[SW_BYTES..SW_BYTES + 4], &FP_XSTATE_MAGIC1.to_le_bytes());
        assert_eq!(FPSTATE % 64, 0);
    }

    #[test]
    fn syscalls_are_restarted_in_the_frame() {
        let in_read = UserRegs {
            ax: (-512i64) as u64,
            orig_ax: 0,
            ip: 0x1002,
            ..Default::default()
        };
        let ctx = |regs| ThreadCtx {
            tid: 1,
            regs,
            sigmask: 0,
            xstate: Xstate::from_bytes(vec![0; 1024]),
        };
        let f = for_sigreturn(&ctx(in_read));
        assert_eq!(at(&f, MCONTEXT + 8 * 13), 0, "ax = orig_ax");
        assert_eq!(at(&f, MCONTEXT + 8 * 16), 0x1000, "ip on the syscall");
        let in_sleep = UserRegs {
            ax: (-516i64) as u64,
            orig_ax: 230,
            ip: 0x1002,
            ..Default::default()
        };
        let f = for_sigreturn(&ctx(in_sleep));
        assert_eq!(at(&f, MCONTEXT + 8 * 13), 230, "made again");
        assert_eq!(at(&f, MCONTEXT + 8 * 16), 0x1000);
    }
}
