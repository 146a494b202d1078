//! Raw x86_64 system calls. Each returns the kernel's result: a value, or
//! a negative errno.

use core::arch::asm;

/// `syscall` with up to six arguments.
///
/// # Safety
/// The call must not break memory the blob relies on: pointer arguments
/// point to memory valid for what the syscall does with them, and calls
/// that change the address space leave the blob's own memory alone.
#[inline(always)]
pub unsafe fn syscall6(nr: i64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64 {
    let ret: i64;
    // SAFETY: the syscall instruction itself only clobbers rcx and r11 and
    // the result in rax; the caller vouches for the arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A syscall of up to four arguments.
///
/// # Safety
/// As [`syscall6`].
#[inline(always)]
pub unsafe fn call(nr: i64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr, a1, a2, a3, a4, 0, 0) }
}

/// A syscall whose arguments are plain values: no address the kernel
/// reads or writes.
#[inline(always)]
pub fn value(nr: i64, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: no memory is passed.
    unsafe { call(nr, a1, a2, a3, 0) }
}

/// The address of `p`, for a syscall argument.
#[inline(always)]
pub fn addr<T: ?Sized>(p: &T) -> u64 {
    core::ptr::from_ref(p).cast::<u8>() as u64
}

/// The address of `p`, for a syscall that writes there.
#[inline(always)]
pub fn addr_mut<T: ?Sized>(p: &mut T) -> u64 {
    core::ptr::from_mut(p).cast::<u8>() as u64
}
