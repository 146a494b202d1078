//! Registers: the general-purpose set (`struct user_regs_struct`), the
//! xsave area, and the syscall-restart adjustment.

use std::mem::{offset_of, size_of};

/// x86_64 `struct user_regs_struct`, in the kernel's order (also CRIU's
/// `user_x86_regs_entry` order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    pub orig_ax: u64,
    pub ip: u64,
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

const _: () = {
    assert!(size_of::<UserRegs>() == 27 * 8);
    assert!(offset_of!(UserRegs, orig_ax) == 15 * 8);
    assert!(offset_of!(UserRegs, ip) == 16 * 8);
    assert!(offset_of!(UserRegs, fs_base) == 21 * 8);
    assert!(offset_of!(UserRegs, gs) == 26 * 8);
};

/// The user code segment of 64-bit tasks.
pub const USER_CS: u64 = 0x33;
/// The user code segment of 32-bit (compat) tasks.
pub const USER32_CS: u64 = 0x23;

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
/// `restart_syscall`.
pub const NR_RESTART_SYSCALL: u64 = 219;

const EFLAGS_TF: u64 = 1 << 8;
const EFLAGS_DF: u64 = 1 << 10;

/// What a task stopped in a syscall will do about it when it resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Not in a syscall, or the syscall finished.
    None,
    /// The syscall will be restarted (ip moves back over `syscall`).
    Restart,
    /// The syscall goes on through `restart_syscall` (a restart block).
    RestartBlock,
}

impl UserRegs {
    /// Whether the task runs 64-bit code.
    pub fn is_native(&self) -> bool {
        self.cs == USER_CS
    }

    /// What the kernel will do on resume when the task stopped in a
    /// syscall.
    pub fn restart(&self) -> Restart {
        if (self.orig_ax as i64) < 0 {
            return Restart::None;
        }
        match -(self.ax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => Restart::Restart,
            ERESTART_RESTARTBLOCK => Restart::RestartBlock,
            _ => Restart::None,
        }
    }

    /// The registers as CRIU stores them in an image: a restartable syscall
    /// becomes `ax = orig_ax, ip -= 2` (it runs again); one with a restart
    /// block returns `-EINTR`.
    pub fn adjusted_for_image(&self) -> UserRegs {
        let mut r = *self;
        match self.restart() {
            Restart::None => {}
            Restart::Restart => {
                r.ax = r.orig_ax;
                r.ip = r.ip.wrapping_sub(2);
            }
            Restart::RestartBlock => r.ax = (-(libc::EINTR as i64)) as u64,
        }
        r
    }

    /// The registers the kernel would resume the task with, after its own
    /// restart handling (no signal handler runs): what an rt_sigreturn
    /// frame must hold to put the task back exactly.
    pub fn adjusted_for_resume(&self) -> UserRegs {
        let mut r = *self;
        match self.restart() {
            Restart::None => {}
            Restart::Restart => {
                r.ax = r.orig_ax;
                r.ip = r.ip.wrapping_sub(2);
            }
            Restart::RestartBlock => {
                r.ax = NR_RESTART_SYSCALL;
                r.ip = r.ip.wrapping_sub(2);
            }
        }
        r.orig_ax = u64::MAX;
        r
    }

    /// These registers, pointed at `ip` with `sp`, for running injected
    /// code: no syscall restart on resume, no single-step, direction flag
    /// clear.
    pub fn for_call(&self, ip: u64, sp: Option<u64>) -> UserRegs {
        let mut r = *self;
        r.ip = ip;
        if let Some(sp) = sp {
            r.sp = sp;
        }
        r.orig_ax = u64::MAX;
        r.flags &= !(EFLAGS_TF | EFLAGS_DF);
        r
    }
}

/// Offset of the xsave header (xstate_bv) in the xsave area.
pub const XSAVE_HDR_OFFSET: usize = 512;
/// Offset of the software-reserved bytes of the FXSAVE part, where the
/// kernel's signal frames carry `struct _fpx_sw_bytes`.
pub const FX_SW_OFFSET: usize = 464;
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;

/// A thread's FPU and extended state, in the standard (uncompacted) xsave
/// layout the kernel's `NT_X86_XSTATE` regset uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xstate {
    bytes: Vec<u8>,
}

impl Xstate {
    pub fn from_bytes(bytes: Vec<u8>) -> Xstate {
        Xstate { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn u64_at(&self, off: usize) -> u64 {
        self.bytes
            .get(off..off + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// The components in use (xsave header's XSTATE_BV).
    pub fn xstate_bv(&self) -> u64 {
        self.u64_at(XSAVE_HDR_OFFSET)
    }

    /// The area prepared for an rt_sigreturn frame: the software bytes
    /// that tell the kernel this is a full xsave frame of `features`, and
    /// the closing magic after it.
    pub fn sigframe_bytes(&self, features: u64) -> Vec<u8> {
        let size = self.bytes.len();
        let mut out = self.bytes.clone();
        out.resize(size + 4, 0);
        let sw = FX_SW_OFFSET;
        out[sw..sw + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        out[sw + 4..sw + 8].copy_from_slice(&((size + 4) as u32).to_le_bytes());
        out[sw + 8..sw + 16].copy_from_slice(&features.to_le_bytes());
        out[sw + 16..sw + 20].copy_from_slice(&(size as u32).to_le_bytes());
        out[size..size + 4].copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_syscall(ax: i64) -> UserRegs {
        UserRegs {
            ax: ax as u64,
            orig_ax: 230,
            ip: 0x1002,
            ..Default::default()
        }
    }

    #[test]
    fn restart_adjustments() {
        let r = in_syscall(-ERESTARTSYS).adjusted_for_image();
        assert_eq!((r.ax, r.ip), (230, 0x1000));
        let r = in_syscall(-ERESTARTNOHAND).adjusted_for_image();
        assert_eq!((r.ax, r.ip), (230, 0x1000));
        let r = in_syscall(-ERESTART_RESTARTBLOCK).adjusted_for_image();
        assert_eq!((r.ax as i64, r.ip), (-4, 0x1002));
        let r = in_syscall(-ERESTART_RESTARTBLOCK).adjusted_for_resume();
        assert_eq!((r.ax, r.ip, r.orig_ax), (219, 0x1000, u64::MAX));
        let r = in_syscall(-4).adjusted_for_image();
        assert_eq!((r.ax as i64, r.ip), (-4, 0x1002));
        let not_syscall = UserRegs {
            ax: (-ERESTARTSYS) as u64,
            orig_ax: u64::MAX,
            ip: 7,
            ..Default::default()
        };
        assert_eq!(not_syscall.adjusted_for_image(), not_syscall);
    }

    #[test]
    fn sigframe_bytes_carry_magics() {
        let x = Xstate::from_bytes(vec![0u8; 1024]);
        let b = x.sigframe_bytes(0x7);
        assert_eq!(b.len(), 1028);
        assert_eq!(&b[464..468], &FP_XSTATE_MAGIC1.to_le_bytes());
        assert_eq!(&b[1024..1028], &FP_XSTATE_MAGIC2.to_le_bytes());
        assert_eq!(u32::from_le_bytes(b[480..484].try_into().unwrap()), 1024);
    }
}
