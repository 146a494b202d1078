//! The frame the parasite puts the victim back from when rcriu is gone:
//! the registers, the signal mask and the FPU state, in the layout of an
//! x86_64 `rt_sigframe` (the parasite's `rcriu_parasite_restore` reads the
//! same offsets).
//!
//! ```text
//! 0     pretcode (u64, unused)
//! 8     struct ucontext: uc_flags, uc_link, uc_stack (24 bytes),
//!       uc_mcontext (struct sigcontext, 256 bytes), uc_sigmask (8)
//! 312   struct siginfo (128 bytes, unused)
//! 448   the xsave area (64-byte aligned, as xrstor needs)
//! ```

use crate::regs::UserRegs;
use crate::remote::ThreadCtx;

const UC_FLAGS: usize = 8;
const MCONTEXT: usize = 48;
const UC_SIGMASK: usize = 304;
/// Offset of the FPU state in the frame (64-byte aligned, as xrstor needs).
pub const FPSTATE: usize = 448;

const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;

/// The frame for `ctx`, to be placed at `frame_addr` in the victim (a
/// 64-byte aligned address).
pub fn build(ctx: &ThreadCtx, frame_addr: u64) -> Vec<u8> {
    let fpu = ctx.xstate.as_bytes();
    let mut f = vec![0u8; FPSTATE + fpu.len()];
    let mut put = |off: usize, v: u64| f[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(
        UC_FLAGS,
        UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS,
    );
    // The task resumes as the kernel would have resumed it: a syscall it
    // was in is restarted.
    let r: UserRegs = ctx.regs.adjusted_for_resume();
    let m = MCONTEXT;
    for (i, v) in [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.di, r.si, r.bp, r.bx, r.dx, r.ax,
        r.cx, r.sp, r.ip, r.flags,
    ]
    .into_iter()
    .enumerate()
    {
        put(m + 8 * i, v);
    }
    // cs, gs, fs, ss: four u16 at 144.
    let segs =
        (r.cs & 0xffff) | (r.gs & 0xffff) << 16 | (r.fs & 0xffff) << 32 | (r.ss & 0xffff) << 48;
    put(m + 144, segs);
    // fpstate pointer at 184.
    put(m + 184, frame_addr + FPSTATE as u64);
    put(UC_SIGMASK, ctx.sigmask);
    f[FPSTATE..].copy_from_slice(fpu);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::Xstate;

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
        let f = build(&ctx, 0x10000);
        let at = |o: usize| u64::from_le_bytes(f[o..o + 8].try_into().unwrap());
        assert_eq!(at(MCONTEXT), 8);
        assert_eq!(at(MCONTEXT + 8 * 16), 0x1234);
        assert_eq!(at(MCONTEXT + 8 * 15), 0x7000);
        assert_eq!(at(MCONTEXT + 184), 0x10000 + FPSTATE as u64);
        assert_eq!(at(UC_SIGMASK), 5);
        assert_eq!(
            u16::from_le_bytes([f[MCONTEXT + 150], f[MCONTEXT + 151]]),
            0x2b
        );
        assert_eq!(f.len(), FPSTATE + 1024);
        assert_eq!(FPSTATE % 64, 0);
    }
}
