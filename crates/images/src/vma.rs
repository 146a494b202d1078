//! The bits of `vma_entry.status` (CRIU's `criu/include/image.h`; they are
//! not in the schema).

/// An area CRIU dumps and restores.
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
/// The main stack.
pub const VMA_AREA_STACK: u32 = 1 << 1;
/// The legacy vsyscall page.
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
/// The vDSO.
pub const VMA_AREA_VDSO: u32 = 1 << 3;
/// The brk heap.
pub const VMA_AREA_HEAP: u32 = 1 << 5;
/// A private mapping of a file.
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
/// A shared mapping of a file.
pub const VMA_FILE_SHARED: u32 = 1 << 7;
/// Shared anonymous memory.
pub const VMA_ANON_SHARED: u32 = 1 << 8;
/// Private anonymous memory.
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
/// SysV shared memory.
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
/// A socket's mapping (packet rings).
pub const VMA_AREA_SOCKET: u32 = 1 << 11;
/// The vvar pages (`[vvar]` and `[vvar_vclock]` together).
pub const VMA_AREA_VVAR: u32 = 1 << 12;
/// An AIO ring.
pub const VMA_AREA_AIORING: u32 = 1 << 13;
/// A memfd mapping.
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
/// A shadow stack.
pub const VMA_AREA_SHSTK: u32 = 1 << 15;
/// Guard regions (MADV_GUARD_INSTALL).
pub const VMA_AREA_GUARD: u32 = 1 << 16;
/// The uprobes area.
pub const VMA_AREA_UPROBES: u32 = 1 << 17;
/// An area CRIU could not handle.
pub const VMA_UNSUPP: u32 = 1 << 31;
