//! What rcriu's no_std blobs (the parasite, the restorer) share: raw x86_64
//! system calls, the memory functions the compiler calls, and the panic
//! handler.
//!
//! # Safety
//! The blobs run with no C library and no allocator, in memory rcriu lays
//! out for them. Raw syscalls are `unsafe`: the caller vouches for every
//! address it passes.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod mem;
pub mod msg;
pub mod nr;
pub mod syscall;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // A SIGILL that rcriu reports as a blob fault.
    loop {
        // SAFETY: ud2 only raises #UD; it touches no memory.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
    }
}
