//! `/proc/PID/maps` and `/proc/PID/smaps`: the memory areas, their
//! `VmFlags` and their page counts.
//!
//! Both files print one header line per area:
//! `start-end perms offset major:minor inode` then, for areas with a name,
//! blanks up to column 73 and the name. smaps follows each header with
//! `Key: value kB` lines and a `VmFlags:` line of two-letter mnemonics.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use bitflags::bitflags;

use crate::error::{ParseError, ParseResult};
use crate::text::{self, bad};

bitflags! {
    /// The `rwx` of a maps line, with the values of `PROT_*`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Prot: u32 {
        const READ = libc::PROT_READ as u32;
        const WRITE = libc::PROT_WRITE as u32;
        const EXEC = libc::PROT_EXEC as u32;
    }
}

/// What a memory area maps, from the name at the end of its maps line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VmaPath {
    /// No name: anonymous memory (private, or shared whose name the kernel
    /// omits).
    Anonymous,
    /// `[heap]`
    Heap,
    /// `[stack]`
    Stack,
    /// `[vdso]`
    Vdso,
    /// `[vvar]`
    Vvar,
    /// `[vvar_vclock]` (Linux 6.13 and later split it off `[vvar]`).
    VvarVclock,
    /// `[vsyscall]`
    Vsyscall,
    /// `[uprobes]`: the kernel's area for uprobe trampolines.
    Uprobes,
    /// `[anon:NAME]`: anonymous memory named with `PR_SET_VMA_ANON_NAME`.
    AnonNamed(Vec<u8>),
    /// `[anon_shmem:NAME]`: shared anonymous memory named likewise.
    AnonShmemNamed(Vec<u8>),
    /// Any other bracketed name (`[vectors]`, `[sigpage]`, `[stack:TID]` of
    /// old kernels...), brackets removed.
    Special(Vec<u8>),
    /// A mapped file. `path` is as the kernel prints it: absolute, with a
    /// newline shown as `\012` (the kernel escapes nothing else, so the
    /// text is ambiguous for names holding `\012`; `map_files` gives the
    /// exact link). `deleted` when the name ended in ` (deleted)`, which
    /// the suffix is removed for. Shared anonymous memory shows here as
    /// `/dev/zero` (deleted), SysV shm as `/SYSV...`, memfd as
    /// `/memfd:NAME`.
    File { path: PathBuf, deleted: bool },
}

impl VmaPath {
    /// Classifies the name of a maps line (empty for none).
    pub fn from_name(name: &[u8]) -> VmaPath {
        if name.is_empty() {
            return VmaPath::Anonymous;
        }
        if let Some(inner) = name.strip_prefix(b"[").and_then(|n| n.strip_suffix(b"]")) {
            return match inner {
                b"heap" => VmaPath::Heap,
                b"stack" => VmaPath::Stack,
                b"vdso" => VmaPath::Vdso,
                b"vvar" => VmaPath::Vvar,
                b"vvar_vclock" => VmaPath::VvarVclock,
                b"vsyscall" => VmaPath::Vsyscall,
                b"uprobes" => VmaPath::Uprobes,
                _ => {
                    if let Some(n) = inner.strip_prefix(b"anon:") {
                        VmaPath::AnonNamed(n.to_vec())
                    } else if let Some(n) = inner.strip_prefix(b"anon_shmem:") {
                        VmaPath::AnonShmemNamed(n.to_vec())
                    } else {
                        VmaPath::Special(inner.to_vec())
                    }
                }
            };
        }
        let (path, deleted) = match name.strip_suffix(b" (deleted)") {
            Some(p) => (p, true),
            None => (name, false),
        };
        VmaPath::File {
            path: PathBuf::from(OsString::from_vec(path.to_vec())),
            deleted,
        }
    }

    /// True for the kernel's own areas: vdso, vvar, vvar_vclock, vsyscall,
    /// uprobes.
    pub fn is_kernel_special(&self) -> bool {
        matches!(
            self,
            VmaPath::Vdso
                | VmaPath::Vvar
                | VmaPath::VvarVclock
                | VmaPath::Vsyscall
                | VmaPath::Uprobes
        )
    }
}

/// One memory area, as a maps line describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    /// `s` rather than `p` in the permissions: a shared mapping.
    pub shared: bool,
    /// Offset in the file (in bytes), or the page offset for anonymous
    /// areas (start >> 12 for private anonymous memory).
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub path: VmaPath,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

bitflags! {
    /// The `VmFlags:` line of smaps: every two-letter mnemonic the kernel
    /// prints (bits here are ours, not the kernel's `VM_*` bits, which
    /// differ between architectures).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct VmFlags: u64 {
        /// `rd`
        const READ = 1 << 0;
        /// `wr`
        const WRITE = 1 << 1;
        /// `ex`
        const EXEC = 1 << 2;
        /// `sh`
        const SHARED = 1 << 3;
        /// `mr`
        const MAYREAD = 1 << 4;
        /// `mw`
        const MAYWRITE = 1 << 5;
        /// `me`
        const MAYEXEC = 1 << 6;
        /// `ms`
        const MAYSHARE = 1 << 7;
        /// `gd`: stack that grows down (`MAP_GROWSDOWN`).
        const GROWSDOWN = 1 << 8;
        /// `pf`: pure PFN range (`VM_PFNMAP`).
        const PFNMAP = 1 << 9;
        /// `gu`: may hold guard regions (`MADV_GUARD_INSTALL`).
        const MAYBE_GUARD = 1 << 10;
        /// `lo`: pages are locked (`mlock`).
        const LOCKED = 1 << 11;
        /// `io`: memory-mapped I/O.
        const IO = 1 << 12;
        /// `sr`: `MADV_SEQUENTIAL`.
        const SEQ_READ = 1 << 13;
        /// `rr`: `MADV_RANDOM`.
        const RAND_READ = 1 << 14;
        /// `dc`: not copied on fork (`MADV_DONTFORK`).
        const DONTCOPY = 1 << 15;
        /// `de`: cannot be expanded by mremap.
        const DONTEXPAND = 1 << 16;
        /// `lf`: locked on fault (`MLOCK_ONFAULT`).
        const LOCKONFAULT = 1 << 17;
        /// `ac`: accounted.
        const ACCOUNT = 1 << 18;
        /// `nr`: no swap space reserved (`MAP_NORESERVE`).
        const NORESERVE = 1 << 19;
        /// `ht`: hugetlb.
        const HUGETLB = 1 << 20;
        /// `sf`: synchronous page faults (`MAP_SYNC`).
        const SYNC = 1 << 21;
        /// `ar`: architecture-specific flag.
        const ARCH_1 = 1 << 22;
        /// `wf`: wiped on fork (`MADV_WIPEONFORK`).
        const WIPEONFORK = 1 << 23;
        /// `dd`: not in core dumps (`MADV_DONTDUMP`).
        const DONTDUMP = 1 << 24;
        /// `bt`: arm64 BTI guarded.
        const ARM64_BTI = 1 << 25;
        /// `sd`: soft-dirty.
        const SOFTDIRTY = 1 << 26;
        /// `mm`: mixed map.
        const MIXEDMAP = 1 << 27;
        /// `hg`: `MADV_HUGEPAGE`.
        const HUGEPAGE = 1 << 28;
        /// `nh`: `MADV_NOHUGEPAGE`.
        const NOHUGEPAGE = 1 << 29;
        /// `mg`: `MADV_MERGEABLE` (KSM).
        const MERGEABLE = 1 << 30;
        /// `um`: userfaultfd missing-page tracking.
        const UFFD_MISSING = 1 << 31;
        /// `uw`: userfaultfd write-protect tracking.
        const UFFD_WP = 1 << 32;
        /// `mt`: arm64 MTE.
        const MTE = 1 << 33;
        /// `ui`: userfaultfd minor-fault tracking.
        const UFFD_MINOR = 1 << 34;
        /// `ss`: x86 shadow stack.
        const SHADOW_STACK = 1 << 35;
        /// `dp`: droppable (`MAP_DROPPABLE`).
        const DROPPABLE = 1 << 36;
        /// `sl`: sealed (`mseal`).
        const SEALED = 1 << 37;
        /// `nl`: non-linear mapping (removed in Linux 4.0).
        const NONLINEAR = 1 << 38;
        /// `mp`: MPX bounds table (removed in Linux 5.6).
        const MPX = 1 << 39;
        /// A mnemonic this crate does not know.
        const UNKNOWN = 1 << 63;
    }
}

/// Mnemonic ↔ flag, in the order the kernel prints them on x86_64.
const MNEMONICS: &[([u8; 2], VmFlags)] = &[
    (*b"rd", VmFlags::READ),
    (*b"wr", VmFlags::WRITE),
    (*b"ex", VmFlags::EXEC),
    (*b"sh", VmFlags::SHARED),
    (*b"mr", VmFlags::MAYREAD),
    (*b"mw", VmFlags::MAYWRITE),
    (*b"me", VmFlags::MAYEXEC),
    (*b"ms", VmFlags::MAYSHARE),
    (*b"gd", VmFlags::GROWSDOWN),
    (*b"pf", VmFlags::PFNMAP),
    (*b"gu", VmFlags::MAYBE_GUARD),
    (*b"lo", VmFlags::LOCKED),
    (*b"io", VmFlags::IO),
    (*b"sr", VmFlags::SEQ_READ),
    (*b"rr", VmFlags::RAND_READ),
    (*b"dc", VmFlags::DONTCOPY),
    (*b"de", VmFlags::DONTEXPAND),
    (*b"lf", VmFlags::LOCKONFAULT),
    (*b"ac", VmFlags::ACCOUNT),
    (*b"nr", VmFlags::NORESERVE),
    (*b"ht", VmFlags::HUGETLB),
    (*b"sf", VmFlags::SYNC),
    (*b"nl", VmFlags::NONLINEAR),
    (*b"ar", VmFlags::ARCH_1),
    (*b"wf", VmFlags::WIPEONFORK),
    (*b"dd", VmFlags::DONTDUMP),
    (*b"bt", VmFlags::ARM64_BTI),
    (*b"mp", VmFlags::MPX),
    (*b"sd", VmFlags::SOFTDIRTY),
    (*b"mm", VmFlags::MIXEDMAP),
    (*b"hg", VmFlags::HUGEPAGE),
    (*b"nh", VmFlags::NOHUGEPAGE),
    (*b"mg", VmFlags::MERGEABLE),
    (*b"um", VmFlags::UFFD_MISSING),
    (*b"uw", VmFlags::UFFD_WP),
    (*b"mt", VmFlags::MTE),
    (*b"ui", VmFlags::UFFD_MINOR),
    (*b"ss", VmFlags::SHADOW_STACK),
    (*b"dp", VmFlags::DROPPABLE),
    (*b"sl", VmFlags::SEALED),
];

impl VmFlags {
    /// The flag a two-letter mnemonic stands for.
    #[inline]
    pub fn from_mnemonic(m: [u8; 2]) -> Option<VmFlags> {
        let f = match &m {
            b"rd" => VmFlags::READ,
            b"wr" => VmFlags::WRITE,
            b"ex" => VmFlags::EXEC,
            b"sh" => VmFlags::SHARED,
            b"mr" => VmFlags::MAYREAD,
            b"mw" => VmFlags::MAYWRITE,
            b"me" => VmFlags::MAYEXEC,
            b"ms" => VmFlags::MAYSHARE,
            b"gd" => VmFlags::GROWSDOWN,
            b"pf" => VmFlags::PFNMAP,
            b"gu" => VmFlags::MAYBE_GUARD,
            b"lo" => VmFlags::LOCKED,
            b"io" => VmFlags::IO,
            b"sr" => VmFlags::SEQ_READ,
            b"rr" => VmFlags::RAND_READ,
            b"dc" => VmFlags::DONTCOPY,
            b"de" => VmFlags::DONTEXPAND,
            b"lf" => VmFlags::LOCKONFAULT,
            b"ac" => VmFlags::ACCOUNT,
            b"nr" => VmFlags::NORESERVE,
            b"ht" => VmFlags::HUGETLB,
            b"sf" => VmFlags::SYNC,
            b"nl" => VmFlags::NONLINEAR,
            b"ar" => VmFlags::ARCH_1,
            b"wf" => VmFlags::WIPEONFORK,
            b"dd" => VmFlags::DONTDUMP,
            b"bt" => VmFlags::ARM64_BTI,
            b"mp" => VmFlags::MPX,
            b"sd" => VmFlags::SOFTDIRTY,
            b"mm" => VmFlags::MIXEDMAP,
            b"hg" => VmFlags::HUGEPAGE,
            b"nh" => VmFlags::NOHUGEPAGE,
            b"mg" => VmFlags::MERGEABLE,
            b"um" => VmFlags::UFFD_MISSING,
            b"uw" => VmFlags::UFFD_WP,
            b"mt" => VmFlags::MTE,
            b"ui" => VmFlags::UFFD_MINOR,
            b"ss" => VmFlags::SHADOW_STACK,
            b"dp" => VmFlags::DROPPABLE,
            b"sl" => VmFlags::SEALED,
            _ => return None,
        };
        Some(f)
    }

    /// Parses the value of a `VmFlags:` line. Tokens this crate does not
    /// know set [`VmFlags::UNKNOWN`].
    #[inline]
    pub fn parse(value: &[u8]) -> VmFlags {
        let mut flags = VmFlags::empty();
        for (_, tok) in text::fields(value) {
            flags |= match tok {
                [a, b] => VmFlags::from_mnemonic([*a, *b]).unwrap_or(VmFlags::UNKNOWN),
                _ => VmFlags::UNKNOWN,
            };
        }
        flags
    }

    /// The flags as the kernel prints them (x86_64 order), without
    /// [`VmFlags::UNKNOWN`]: `"rd wr mr mw me ac"`.
    pub fn to_mnemonics(self) -> String {
        let mut out = String::new();
        for (m, f) in MNEMONICS {
            if self.contains(*f) {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push(char::from(m[0]));
                out.push(char::from(m[1]));
            }
        }
        out
    }
}

/// The page counts smaps gives for one area, in kB as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SmapsStats {
    pub size_kb: u64,
    pub kernel_page_size_kb: u64,
    pub mmu_page_size_kb: u64,
    pub rss_kb: u64,
    pub pss_kb: u64,
    pub pss_dirty_kb: u64,
    pub shared_clean_kb: u64,
    pub shared_dirty_kb: u64,
    pub private_clean_kb: u64,
    pub private_dirty_kb: u64,
    pub referenced_kb: u64,
    pub anonymous_kb: u64,
    pub ksm_kb: u64,
    pub lazy_free_kb: u64,
    pub anon_huge_pages_kb: u64,
    pub shmem_pmd_mapped_kb: u64,
    pub file_pmd_mapped_kb: u64,
    pub shared_hugetlb_kb: u64,
    pub private_hugetlb_kb: u64,
    pub swap_kb: u64,
    pub swap_pss_kb: u64,
    pub locked_kb: u64,
    /// `THPeligible:` 1.
    pub thp_eligible: bool,
    /// `ProtectionKey:` (x86 with pkeys).
    pub protection_key: Option<u32>,
}

/// One area of smaps: its maps line, `VmFlags` and counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmapsVma {
    pub vma: Vma,
    pub flags: VmFlags,
    pub stats: SmapsStats,
}

/// The column the kernel pads an area's header line to before the name
/// (`25 + 6 * sizeof(void *) - 1`, then one more blank).
const NAME_COLUMN: usize = 72;

/// True when `line` starts like an area header: lower-case hex, then `-`.
#[inline]
fn is_header(line: &[u8]) -> bool {
    let mut i = 0;
    while i < line.len() && matches!(line[i], b'0'..=b'9' | b'a'..=b'f') {
        i += 1;
    }
    i > 0 && line.get(i) == Some(&b'-')
}

/// Reads hex digits from `line[*i..]` up to `stop` (consumed).
#[inline]
fn hex_until(line: &[u8], i: &mut usize, stop: u8, off: usize, what: &str) -> ParseResult<u64> {
    let start = *i;
    let mut v: u64 = 0;
    let mut n = 0;
    while let Some(&b) = line.get(*i) {
        if b == stop {
            break;
        }
        let d = text::hex_digit(b).ok_or_else(|| bad(off + start, what, &line[start..]))?;
        v = (v << 4) | u64::from(d);
        n += 1;
        *i += 1;
    }
    if n == 0 || n > 16 || line.get(*i) != Some(&stop) {
        return Err(bad(off + start, what, &line[start..]));
    }
    *i += 1;
    Ok(v)
}

/// Parses one header line of maps or smaps; `off` is its offset in the
/// file, for errors.
pub fn parse_vma_line(line: &[u8], off: usize) -> ParseResult<Vma> {
    let mut i = 0;
    let start = hex_until(line, &mut i, b'-', off, "area start")?;
    let end = hex_until(line, &mut i, b' ', off, "area end")?;
    let perms = line
        .get(i..i + 5)
        .ok_or_else(|| bad(off + i, "permissions", &line[i.min(line.len())..]))?;
    let mut prot = Prot::empty();
    let ok = matches!(perms[0], b'r' | b'-')
        && matches!(perms[1], b'w' | b'-')
        && matches!(perms[2], b'x' | b'-')
        && matches!(perms[3], b's' | b'p')
        && perms[4] == b' ';
    if !ok {
        return Err(bad(off + i, "permissions", perms));
    }
    if perms[0] == b'r' {
        prot |= Prot::READ;
    }
    if perms[1] == b'w' {
        prot |= Prot::WRITE;
    }
    if perms[2] == b'x' {
        prot |= Prot::EXEC;
    }
    let shared = perms[3] == b's';
    i += 5;
    let offset = hex_until(line, &mut i, b' ', off, "file offset")?;
    let dev_major = hex_until(line, &mut i, b':', off, "device major")?;
    let dev_minor = hex_until(line, &mut i, b' ', off, "device minor")?;
    let ino_start = i;
    while i < line.len() && line[i].is_ascii_digit() {
        i += 1;
    }
    let inode = text::num(text::dec_u64, &line[ino_start..i], off + ino_start, "inode")?;
    let rest = &line[i..];
    let name: &[u8] = if rest.iter().all(|&b| b == b' ') {
        b""
    } else if rest[0] != b' ' {
        return Err(bad(off + i, "blank after the inode", rest));
    } else {
        // The kernel pads to NAME_COLUMN and adds one blank, so the name
        // starts at a known column and may itself begin with blanks.
        let name_at = i.max(NAME_COLUMN) + 1;
        if name_at < line.len() && line[i..name_at].iter().all(|&b| b == b' ') {
            &line[name_at..]
        } else {
            let skip = rest.iter().take_while(|&&b| b == b' ').count();
            &rest[skip..]
        }
    };
    Ok(Vma {
        start,
        end,
        prot,
        shared,
        offset,
        dev_major: u32::try_from(dev_major).map_err(|_| bad(off, "device major", line))?,
        dev_minor: u32::try_from(dev_minor).map_err(|_| bad(off, "device minor", line))?,
        inode,
        path: VmaPath::from_name(name),
    })
}

/// Parses the text of `/proc/PID/maps`.
pub fn parse_maps(text: &[u8]) -> ParseResult<Vec<Vma>> {
    let mut out = Vec::new();
    parse_maps_into(text, &mut out)?;
    Ok(out)
}

/// Like [`parse_maps`], appending to `out` (so its allocation can be
/// reused).
pub fn parse_maps_into(text: &[u8], out: &mut Vec<Vma>) -> ParseResult<()> {
    for (off, line) in text::lines(text) {
        out.push(parse_vma_line(line, off)?);
    }
    Ok(())
}

/// Parses the text of `/proc/PID/smaps`.
pub fn parse_smaps(text: &[u8]) -> ParseResult<Vec<SmapsVma>> {
    let mut out = Vec::new();
    parse_smaps_into(text, &mut out)?;
    Ok(out)
}

/// The `kB` lines of smaps, in the order the kernel prints them.
const KB_KEYS: [&[u8]; 22] = [
    b"Size",
    b"KernelPageSize",
    b"MMUPageSize",
    b"Rss",
    b"Pss",
    b"Pss_Dirty",
    b"Shared_Clean",
    b"Shared_Dirty",
    b"Private_Clean",
    b"Private_Dirty",
    b"Referenced",
    b"Anonymous",
    b"KSM",
    b"LazyFree",
    b"AnonHugePages",
    b"ShmemPmdMapped",
    b"FilePmdMapped",
    b"Shared_Hugetlb",
    b"Private_Hugetlb",
    b"Swap",
    b"SwapPss",
    b"Locked",
];

/// The field of `KB_KEYS[i]`.
fn kb_field(s: &mut SmapsStats, i: usize) -> &mut u64 {
    match i {
        0 => &mut s.size_kb,
        1 => &mut s.kernel_page_size_kb,
        2 => &mut s.mmu_page_size_kb,
        3 => &mut s.rss_kb,
        4 => &mut s.pss_kb,
        5 => &mut s.pss_dirty_kb,
        6 => &mut s.shared_clean_kb,
        7 => &mut s.shared_dirty_kb,
        8 => &mut s.private_clean_kb,
        9 => &mut s.private_dirty_kb,
        10 => &mut s.referenced_kb,
        11 => &mut s.anonymous_kb,
        12 => &mut s.ksm_kb,
        13 => &mut s.lazy_free_kb,
        14 => &mut s.anon_huge_pages_kb,
        15 => &mut s.shmem_pmd_mapped_kb,
        16 => &mut s.file_pmd_mapped_kb,
        17 => &mut s.shared_hugetlb_kb,
        18 => &mut s.private_hugetlb_kb,
        19 => &mut s.swap_kb,
        20 => &mut s.swap_pss_kb,
        _ => &mut s.locked_kb,
    }
}

/// The decimal number after the blanks at the start of `v`.
#[inline]
fn leading_number(v: &[u8]) -> Option<u64> {
    let start = v.iter().position(|&b| !text::is_blank(b))?;
    let len = v[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    text::dec_u64(&v[start..start + len])
}

/// Like [`parse_smaps`], appending to `out`.
pub fn parse_smaps_into(text: &[u8], out: &mut Vec<SmapsVma>) -> ParseResult<()> {
    // The kernel prints the keys in a fixed order: try the expected one
    // first, then look the key up.
    let mut next_key = 0;
    for (off, line) in text::lines(text) {
        if is_header(line) {
            out.push(SmapsVma {
                vma: parse_vma_line(line, off)?,
                flags: VmFlags::empty(),
                stats: SmapsStats::default(),
            });
            next_key = 0;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let cur = out
            .last_mut()
            .ok_or_else(|| ParseError::new(off, "smaps does not start with an area line"))?;
        // Fast path: the expected key, checked in place.
        let expected = KB_KEYS
            .get(next_key)
            .filter(|k| line.len() > k.len() && line[k.len()] == b':' && line.starts_with(k));
        let (idx, key, value) = if let Some(k) = expected {
            (Some(next_key), &line[..k.len()], &line[k.len() + 1..])
        } else {
            let colon = line.iter().position(|&b| b == b':');
            let colon = colon.ok_or_else(|| bad(off, "smaps line", line))?;
            let key = &line[..colon];
            (
                KB_KEYS.iter().position(|k| *k == key),
                key,
                &line[colon + 1..],
            )
        };
        if let Some(i) = idx {
            *kb_field(&mut cur.stats, i) =
                leading_number(value).ok_or_else(|| bad(off, "smaps value", line))?;
            next_key = i + 1;
            continue;
        }
        match key {
            b"VmFlags" => cur.flags = VmFlags::parse(value),
            b"THPeligible" => {
                cur.stats.thp_eligible =
                    leading_number(value).ok_or_else(|| bad(off, "THPeligible", line))? != 0
            }
            b"ProtectionKey" => {
                let k = leading_number(value).ok_or_else(|| bad(off, "ProtectionKey", line))?;
                cur.stats.protection_key =
                    Some(u32::try_from(k).map_err(|_| bad(off, "ProtectionKey", line))?);
            }
            // Fields of newer kernels are skipped.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &[u8] = b"\
55c6c4a74000-55c6c4a78000 r--p 00000000 fe:00 247264                     /usr/bin/grep
55c6c4aa7000-55c6c4ab7000 rw-p 00000000 00:00 0 
55c6f16cc000-55c6f170e000 rw-p 00000000 00:00 0                          [heap]
7f3a88838000-7f3a8885e000 r-xs 0001a000 fe:01 326279                     /tmp/a b (deleted)
7f3a88900000-7f3a88901000 rw-p 00000000 00:00 0                          [anon:my name]
7f3a88901000-7f3a88902000 rw-s 00000000 00:01 1034                       /dev/zero (deleted)
7f3a88902000-7f3a88903000 ---p 00000000 00:00 0                          [anon_shmem:x]
7ffd1a0e0000-7ffd1a101000 rw-p 00000000 00:00 0                          [stack]
7ffd1a1f0000-7ffd1a1f4000 r--p 00000000 00:00 0                          [vvar]
7ffd1a1f4000-7ffd1a1f6000 r--p 00000000 00:00 0                          [vvar_vclock]
7ffd1a1f6000-7ffd1a1f8000 r-xp 00000000 00:00 0                          [vdso]
7ffffffff000-7ffffffff001 --xp 00000000 00:00 0                          [uprobes]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
7f0000000000-7f0000001000 r--p 00000000 fe:00 12                           two leading blanks
7f0000001000-7f0000002000 r--p 00000000 fe:00 13                         /a\\012b
7f0000002000-7f0000003000 r--p 00000000 00:00 0                          [sigpage]
";

    #[test]
    fn maps_lines() {
        let v = parse_maps(MAPS).unwrap();
        assert_eq!(v.len(), 16);
        assert_eq!(v[0].start, 0x55c6c4a74000);
        assert_eq!(v[0].end, 0x55c6c4a78000);
        assert_eq!(v[0].prot, Prot::READ);
        assert!(!v[0].shared);
        assert_eq!(
            (v[0].dev_major, v[0].dev_minor, v[0].inode),
            (0xfe, 0, 247264)
        );
        assert_eq!(
            v[0].path,
            VmaPath::File {
                path: "/usr/bin/grep".into(),
                deleted: false
            }
        );
        assert_eq!(v[1].path, VmaPath::Anonymous);
        assert_eq!(v[1].prot, Prot::READ | Prot::WRITE);
        assert_eq!(v[2].path, VmaPath::Heap);
        assert_eq!(v[3].prot, Prot::READ | Prot::EXEC);
        assert!(v[3].shared);
        assert_eq!(v[3].offset, 0x1a000);
        assert_eq!(
            v[3].path,
            VmaPath::File {
                path: "/tmp/a b".into(),
                deleted: true
            }
        );
        assert_eq!(v[4].path, VmaPath::AnonNamed(b"my name".to_vec()));
        assert_eq!(
            v[5].path,
            VmaPath::File {
                path: "/dev/zero".into(),
                deleted: true
            }
        );
        assert_eq!(v[6].path, VmaPath::AnonShmemNamed(b"x".to_vec()));
        assert_eq!(v[6].prot, Prot::empty());
        assert_eq!(v[7].path, VmaPath::Stack);
        assert_eq!(v[8].path, VmaPath::Vvar);
        assert_eq!(v[9].path, VmaPath::VvarVclock);
        assert_eq!(v[10].path, VmaPath::Vdso);
        assert_eq!(v[11].path, VmaPath::Uprobes);
        assert_eq!(v[12].path, VmaPath::Vsyscall);
        assert_eq!(v[12].start, 0xffffffffff600000);
        assert_eq!(
            v[13].path,
            VmaPath::File {
                path: "  two leading blanks".into(),
                deleted: false
            }
        );
        assert_eq!(
            v[14].path,
            VmaPath::File {
                path: "/a\\012b".into(),
                deleted: false
            }
        );
        assert_eq!(v[15].path, VmaPath::Special(b"sigpage".to_vec()));
        assert!(v[10].path.is_kernel_special());
        assert!(!v[2].path.is_kernel_special());
    }

    #[test]
    fn hand_written_lines_without_padding() {
        let v =
            parse_maps(b"1000-2000 rw-p 0 0:0 0 [heap]\n3000-4000 r--p 10 8:1 77 /x\n").unwrap();
        assert_eq!(v[0].path, VmaPath::Heap);
        assert_eq!(v[1].offset, 0x10);
        assert_eq!((v[1].dev_major, v[1].dev_minor), (8, 1));
        assert_eq!(
            v[1].path,
            VmaPath::File {
                path: "/x".into(),
                deleted: false
            }
        );
    }

    #[test]
    fn bad_maps_lines() {
        for bad in [
            &b"1000 2000 rw-p 0 0:0 0"[..],
            b"1000-2000 rw-q 0 0:0 0",
            b"1000-2000 rw-p 0 0:0",
            b"1000-2000 rw-p 0 0:0 x",
            b"1000-2000 rw-p 0 00 0",
            b"10000000000000000-2000 rw-p 0 0:0 0",
            b"1000-2000 rw-p 0 0:0 12/x",
            b"1000-",
            b"",
        ] {
            let mut text = b"1000-2000 rw-p 0 0:0 0\n".to_vec();
            text.extend_from_slice(bad);
            text.push(b'\n');
            let err = parse_maps(&text).unwrap_err();
            assert!(
                err.offset >= 23,
                "{err} for {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    const SMAPS: &[u8] = b"\
5566a8d69000-5566a8d6b000 r--p 00000000 fe:00 247282                     /usr/bin/head
Size:                  8 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   8 kB
Pss:                   8 kB
Pss_Dirty:             0 kB
Shared_Clean:          0 kB
Shared_Dirty:          0 kB
Private_Clean:         8 kB
Private_Dirty:         0 kB
Referenced:            8 kB
Anonymous:             0 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                 12 kB
SwapPss:               0 kB
Locked:                4 kB
THPeligible:           1
ProtectionKey:         0
Some_Future_Field:     3 kB
VmFlags: rd mr mw me sd gu zz 
7ffd1a0e0000-7ffd1a101000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Anonymous:            16 kB
VmFlags: rd wr mr mw me gd ac 
";

    #[test]
    fn smaps_entries() {
        let v = parse_smaps(SMAPS).unwrap();
        assert_eq!(v.len(), 2);
        let a = &v[0];
        assert_eq!(a.vma.start, 0x5566a8d69000);
        assert_eq!(a.stats.size_kb, 8);
        assert_eq!(a.stats.private_clean_kb, 8);
        assert_eq!(a.stats.swap_kb, 12);
        assert_eq!(a.stats.locked_kb, 4);
        assert!(a.stats.thp_eligible);
        assert_eq!(a.stats.protection_key, Some(0));
        assert_eq!(
            a.flags,
            VmFlags::READ
                | VmFlags::MAYREAD
                | VmFlags::MAYWRITE
                | VmFlags::MAYEXEC
                | VmFlags::SOFTDIRTY
                | VmFlags::MAYBE_GUARD
                | VmFlags::UNKNOWN
        );
        assert_eq!(a.flags.to_mnemonics(), "rd mr mw me gu sd");
        let b = &v[1];
        assert_eq!(b.vma.path, VmaPath::Stack);
        assert_eq!(b.stats.anonymous_kb, 16);
        assert_eq!(b.stats.rss_kb, 0);
        assert!(
            b.flags
                .contains(VmFlags::GROWSDOWN | VmFlags::ACCOUNT | VmFlags::WRITE)
        );
        assert!(!b.flags.contains(VmFlags::UNKNOWN));
    }

    #[test]
    fn smaps_errors() {
        assert!(parse_smaps(b"Size: 8 kB\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\nRss: x kB\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\nnocolon\n").is_err());
    }

    #[test]
    fn every_mnemonic_round_trips() {
        for (m, f) in MNEMONICS {
            assert_eq!(VmFlags::from_mnemonic(*m), Some(*f));
            assert_eq!(VmFlags::parse(m), *f);
        }
        let all = MNEMONICS.iter().fold(VmFlags::empty(), |a, (_, f)| a | *f);
        assert_eq!(all, VmFlags::all() - VmFlags::UNKNOWN);
        assert_eq!(VmFlags::parse(all.to_mnemonics().as_bytes()), all);
    }
}
