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
    /// block returns `-EINTR` (the block is the kernel's, and a restored
    /// task has none), but for a wait without a timeout that running
    /// again from the start finishes alike ([`Self::runs_again_alike`]):
    /// it runs again too, where CRIU's `-EINTR` ends programs that take
    /// it for a failure (`tail -f` in its poll).
    pub fn adjusted_for_image(&self) -> UserRegs {
        let mut r = *self;
        match self.restart() {
            Restart::None => {}
            Restart::Restart => {
                r.ax = r.orig_ax;
                r.ip = r.ip.wrapping_sub(2);
            }
            Restart::RestartBlock if self.runs_again_alike() => {
                r.ax = r.orig_ax;
                r.ip = r.ip.wrapping_sub(2);
            }
            Restart::RestartBlock => r.ax = (-(libc::EINTR as i64)) as u64,
        }
        r
    }

    /// Whether the syscall the task is stopped in, interrupted with a
    /// restart block, does the same when made again from the start: a
    /// wait for file events with no timeout and no signal mask of its own
    /// (poll with a negative timeout, ppoll, select and pselect6 with
    /// none). A wait with a timeout would start it over; one with a mask
    /// installs it for the wait.
    pub fn runs_again_alike(&self) -> bool {
        if !self.is_native() {
            return false;
        }
        match self.orig_ax as i64 {
            libc::SYS_poll => (self.dx as i32) < 0,
            libc::SYS_ppoll => self.dx == 0 && self.r10 == 0,
            libc::SYS_select => self.r8 == 0,
            libc::SYS_pselect6 => self.r8 == 0 && self.r9 == 0,
            _ => false,
        }
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
/// Size of the legacy FXSAVE part.
pub const FXSAVE_SIZE: usize = 512;
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

    /// The legacy FXSAVE part (x87, MXCSR, XMM registers): the first 512
    /// bytes.
    pub fn legacy(&self) -> Option<&[u8]> {
        self.bytes.get(..FXSAVE_SIZE)
    }

    /// The bytes of state component `index` (2 for the upper halves of the
    /// YMM registers, 5 for the AVX-512 opmasks, ...) in the standard
    /// layout of this CPU, if the CPU has it and the area covers it.
    pub fn component(&self, index: u32) -> Option<&[u8]> {
        let c = crate::sys::xsave_components()
            .iter()
            .find(|c| c.index == index)?;
        self.bytes
            .get(c.offset as usize..(c.offset + c.size) as usize)
    }

    /// An xsave area for this CPU, `size` bytes (what the kernel's regset
    /// takes): the legacy part, the header's XSTATE_BV, and the components
    /// given as `(index, bytes)`. A component this CPU does not have is an
    /// error naming it, unless its bytes are all zero or `bv` leaves it in
    /// its initial state; then it is dropped.
    pub fn build(
        size: usize,
        legacy: &[u8],
        bv: u64,
        components: &[(u32, &[u8])],
    ) -> std::result::Result<Xstate, String> {
        let mut bytes = vec![0u8; size.max(XSAVE_HDR_OFFSET + 64)];
        let n = legacy.len().min(FXSAVE_SIZE);
        bytes[..n].copy_from_slice(&legacy[..n]);
        let mut bv = bv;
        let have = crate::sys::xsave_components();
        for &(index, data) in components {
            match have.iter().find(|c| c.index == index) {
                Some(c) => {
                    let off = c.offset as usize;
                    let len = data.len().min(c.size as usize);
                    let dst = bytes.get_mut(off..off + len).ok_or_else(|| {
                        format!("xsave component {index} lies past the {size}-byte area")
                    })?;
                    dst.copy_from_slice(&data[..len]);
                }
                None => {
                    if bv & (1 << index) != 0 && !is_default_component(index, data) {
                        return Err(format!(
                            "xsave component {index} is in use but this CPU does not have it"
                        ));
                    }
                    bv &= !(1 << index);
                }
            }
        }
        // Only what the OS enabled may be marked in use.
        let enabled = 0b11 | have.iter().fold(0u64, |m, c| m | 1 << c.index);
        if bv & !enabled != 0 {
            return Err(format!(
                "xsave components {:#x} are in use but this CPU does not have them",
                bv & !enabled
            ));
        }
        bytes[XSAVE_HDR_OFFSET..XSAVE_HDR_OFFSET + 8].copy_from_slice(&bv.to_le_bytes());
        Ok(Xstate { bytes })
    }

    /// The state with every component the header marks as in its initial
    /// configuration written out as that configuration, and marked in use:
    /// the processor may clear a header bit or keep it for a component
    /// that holds its initial values, so two states are the same exactly
    /// when their canonical forms are.
    pub fn canonical(&self) -> Vec<u8> {
        let mut b = self.bytes.clone();
        if b.len() < XSAVE_HDR_OFFSET + 8 {
            return b;
        }
        let bv = self.xstate_bv();
        let mut all = bv;
        // x87: FCW 0x037f, everything else of it zero.
        if bv & 1 == 0 {
            b[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
            b[2..24].fill(0);
            b[32..160].fill(0);
            all |= 1;
        }
        // SSE: the XMM registers zero (MXCSR is saved with it either way).
        if bv & 2 == 0 {
            b[160..416].fill(0);
            all |= 2;
        }
        for c in crate::sys::xsave_components() {
            if bv & (1 << c.index) == 0 {
                let (off, len) = (c.offset as usize, c.size as usize);
                if let Some(area) = b.get_mut(off..off + len) {
                    area.fill(0);
                    all |= 1 << c.index;
                }
            }
        }
        b[XSAVE_HDR_OFFSET..XSAVE_HDR_OFFSET + 8].copy_from_slice(&all.to_le_bytes());
        b
    }

    /// Where this state differs from `other`, as a short description
    /// (`None` when they are the same state).
    pub fn diff(&self, other: &Xstate) -> Option<String> {
        let (a, b) = (self.canonical(), other.canonical());
        if a == b {
            return None;
        }
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        Some(format!(
            "xsave states differ (lengths {} and {}, first at byte {first}; xstate_bv {:#x} and {:#x})",
            a.len(),
            b.len(),
            self.xstate_bv(),
            other.xstate_bv()
        ))
    }
}

/// The xsave component of the protection-key rights register (PKRU).
pub const XFEATURE_PKRU: u32 = 9;
/// The PKRU value Linux gives every process (only key 0 accessible): a
/// process that never touched its protection keys has this.
pub const LINUX_DEFAULT_PKRU: u32 = 0x5555_5554;

/// Whether a component's bytes are what any process has without having
/// used the feature: zero, or Linux's default PKRU.
fn is_default_component(index: u32, data: &[u8]) -> bool {
    if data.iter().all(|&b| b == 0) {
        return true;
    }
    index == XFEATURE_PKRU
        && data.len() >= 4
        && u32::from_le_bytes([data[0], data[1], data[2], data[3]]) == LINUX_DEFAULT_PKRU
        && data[4..].iter().all(|&b| b == 0)
}

/// One xsave state component of the standard layout (CPUID leaf 0xD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XsaveComponent {
    pub index: u32,
    pub offset: u32,
    pub size: u32,
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
    fn canonical_xstate_ignores_init_optimisation_only() {
        let mut a = vec![0u8; 1024];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        let mut b = a.clone();
        // a: SSE marked in use with zero registers; b: SSE in its init state.
        a[XSAVE_HDR_OFFSET] = 0b11;
        b[XSAVE_HDR_OFFSET] = 0b01;
        let (xa, xb) = (Xstate::from_bytes(a.clone()), Xstate::from_bytes(b));
        assert_eq!(xa.diff(&xb), None);
        // A live XMM register is a real difference.
        a[200] = 1;
        assert!(Xstate::from_bytes(a).diff(&xb).is_some());
    }

    #[test]
    fn build_places_components_and_refuses_missing_ones() {
        let legacy = [7u8; FXSAVE_SIZE];
        let ymm = [0x5au8; 256];
        let have = crate::sys::xsave_components();
        let size = have
            .iter()
            .map(|c| (c.offset + c.size) as usize)
            .max()
            .unwrap_or(1024);
        let x = Xstate::build(size, &legacy, 0b111, &[(2, &ymm)]).unwrap();
        assert_eq!(x.legacy().unwrap(), &legacy[..]);
        if have.iter().any(|c| c.index == 2) {
            assert_eq!(x.component(2).unwrap(), &ymm[..]);
        }
        // A component no CPU has (index 62): refused when it holds state,
        // dropped when it is in its default state.
        assert!(Xstate::build(size, &legacy, 1 << 62 | 3, &[(62, &[1, 2, 3])]).is_err());
        let x = Xstate::build(size, &legacy, 1 << 62 | 3, &[(62, &[0, 0])]).unwrap();
        assert_eq!(x.xstate_bv(), 3);
        assert!(is_default_component(
            XFEATURE_PKRU,
            &[0x54, 0x55, 0x55, 0x55, 0, 0, 0, 0]
        ));
        assert!(!is_default_component(
            XFEATURE_PKRU,
            &[0x50, 0x55, 0x55, 0x55, 0, 0, 0, 0]
        ));
    }

    #[test]
    fn restart_adjustments() {
        let r = in_syscall(-ERESTARTSYS).adjusted_for_image();
        assert_eq!((r.ax, r.ip), (230, 0x1000));
        let r = in_syscall(-ERESTARTNOHAND).adjusted_for_image();
        assert_eq!((r.ax, r.ip), (230, 0x1000));
        let r = in_syscall(-ERESTART_RESTARTBLOCK).adjusted_for_image();
        assert_eq!((r.ax as i64, r.ip), (-4, 0x1002));
        // poll without a timeout runs again, with one it returns -EINTR.
        let mut poll = in_syscall(-ERESTART_RESTARTBLOCK);
        poll.orig_ax = libc::SYS_poll as u64;
        poll.cs = USER_CS;
        poll.dx = u64::from(u32::MAX);
        let r = poll.adjusted_for_image();
        assert_eq!((r.ax, r.ip), (7, 0x1000));
        poll.dx = 1000;
        let r = poll.adjusted_for_image();
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
}
