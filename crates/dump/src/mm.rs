//! `mm-PID.img`: the memory areas (as CRIU 4.2 describes them: status
//! bits, mmap flags, madvise bits) and the mm's bounds, auxv and exe.
//!
//! The areas come from smaps, read while the task is seized and before the
//! parasite is mapped, so the parasite's area is never among them.

use rcriu_images::pb;
use rcriu_proc::{PageCategories, Pagemap, Pid, Prot, SmapsVma, VmFlags, VmaPath};

use crate::{Error, Result};

/// The path maps shows for a mapping of an io_uring instance.
const IO_URING: &[u8] = b"anon_inode:[io_uring]";
use rcriu_compel::sys::uring::{OFF_CQ_RING, OFF_SQ_RING, OFF_SQES};

/// VMA status bits (CRIU's `criu/include/image.h`).
pub mod status {
    pub const REGULAR: u32 = 1 << 0;
    pub const STACK: u32 = 1 << 1;
    pub const VSYSCALL: u32 = 1 << 2;
    pub const VDSO: u32 = 1 << 3;
    pub const HEAP: u32 = 1 << 5;
    pub const FILE_PRIVATE: u32 = 1 << 6;
    pub const FILE_SHARED: u32 = 1 << 7;
    pub const ANON_SHARED: u32 = 1 << 8;
    pub const ANON_PRIVATE: u32 = 1 << 9;
    pub const SYSVIPC: u32 = 1 << 10;
    pub const SOCKET: u32 = 1 << 11;
    pub const VVAR: u32 = 1 << 12;
    pub const MEMFD: u32 = 1 << 14;
    pub const GUARD: u32 = 1 << 16;
}

const MAP_PRIVATE: u32 = libc::MAP_PRIVATE as u32;
/// `MAP_DROPPABLE` (Linux 6.11), a mapping type of its own.
const MAP_DROPPABLE: u32 = 0x08;
const MAP_SHARED: u32 = libc::MAP_SHARED as u32;
const MAP_ANONYMOUS: u32 = libc::MAP_ANONYMOUS as u32;
const MAP_GROWSDOWN: u32 = libc::MAP_GROWSDOWN as u32;
const MAP_LOCKED: u32 = libc::MAP_LOCKED as u32;
const MAP_NORESERVE: u32 = libc::MAP_NORESERVE as u32;
const MAP_HUGETLB: u32 = libc::MAP_HUGETLB as u32;
/// Where mmap's flags (and memfd_create's) hold log2 of the huge page
/// size.
pub const HUGE_SHIFT: u32 = 26;

/// How many words of auxv CRIU keeps (`AT_VECTOR_SIZE` on x86_64).
pub const AT_VECTOR_SIZE: usize = 44;

/// What of an area's pages go into the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// None (vvar, vsyscall).
    None,
    /// The pages present or swapped, and for a private file mapping only
    /// those copied on write. `lazy` for anonymous private memory (CRIU's
    /// `vma_entry_can_be_lazy`).
    Touched { lazy: bool },
    /// Every page, present or not (the vdso: a restore may need it to
    /// build a proxy).
    All,
}

/// One memory area of the image, with what the dump needs to finish it.
#[derive(Debug, Clone)]
pub struct Area {
    /// The entry; a file mapping's `shmid` is filled in once its file has
    /// an id.
    pub entry: pb::VmaEntry,
    /// For a file mapping: the `map_files` name to open it by.
    pub file: Option<(u64, u64)>,
    pub pages: Pages,
    /// The name of an anonymous area (`[anon:NAME]`).
    pub name: Option<Vec<u8>>,
    /// For a mapping of an io_uring instance: the ring's inode (its
    /// `shmid` is the ring's file id, found among the process's fds).
    pub ring: Option<u64>,
    /// For a mapping of a packet socket's rings: the socket's inode (its
    /// `shmid` is the socket's file id, found among the process's fds
    /// once they are dumped, as CRIU's `dump_socket_map`).
    pub socket: Option<u64>,
}

impl Area {
    pub fn start(&self) -> u64 {
        self.entry.start
    }

    pub fn end(&self) -> u64 {
        self.entry.end
    }
}

fn prot(p: Prot) -> u32 {
    p.bits()
}

/// The mmap flags and madvise bits smaps' VmFlags stand for, as CRIU
/// takes them; `Err` names a flag rcriu cannot restore.
fn vm_flags(f: VmFlags) -> std::result::Result<(u32, u64), &'static str> {
    let mut flags = 0;
    if f.contains(VmFlags::GROWSDOWN) {
        flags |= MAP_GROWSDOWN;
    }
    if f.contains(VmFlags::LOCKED) {
        flags |= MAP_LOCKED;
    }
    if f.contains(VmFlags::NORESERVE) {
        flags |= MAP_NORESERVE;
    }
    let mut madv = 0u64;
    for (flag, advice) in [
        (VmFlags::SEQ_READ, libc::MADV_SEQUENTIAL),
        (VmFlags::RAND_READ, libc::MADV_RANDOM),
        (VmFlags::DONTCOPY, libc::MADV_DONTFORK),
        (VmFlags::DONTDUMP, libc::MADV_DONTDUMP),
        (VmFlags::MERGEABLE, libc::MADV_MERGEABLE),
        (VmFlags::HUGEPAGE, libc::MADV_HUGEPAGE),
        (VmFlags::NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
        (VmFlags::WIPEONFORK, libc::MADV_WIPEONFORK),
    ] {
        if f.contains(flag) {
            madv |= 1 << advice;
        }
    }
    if f.contains(VmFlags::SHADOW_STACK) {
        return Err("a shadow stack");
    }
    if f.contains(VmFlags::UFFD_MISSING) || f.contains(VmFlags::UFFD_WP) {
        return Err("memory registered with userfaultfd");
    }
    Ok((flags, madv))
}

fn describe(v: &SmapsVma) -> String {
    format!("{:#x}-{:#x}", v.vma.start, v.vma.end)
}

/// Classifies the areas of smaps as CRIU 4.2 does, refusing what this
/// version cannot dump (naming the area).
pub fn classify(pid: Pid, smaps: &[SmapsVma]) -> Result<Vec<Area>> {
    let mut out: Vec<Area> = Vec::with_capacity(smaps.len());
    let refuse =
        |v: &SmapsVma, what: &str| Error::unsupported(pid, format!("{what} at {}", describe(v)));
    for v in smaps {
        let vma = &v.vma;
        let (mut flags, madv) = vm_flags(v.flags).map_err(|what| refuse(v, what))?;
        if let Some(k) = v.stats.protection_key.filter(|&k| k != 0) {
            return Err(refuse(v, &format!("memory tagged with protection key {k}")));
        }
        let droppable = v.flags.contains(VmFlags::DROPPABLE);
        flags |= if vma.shared {
            MAP_SHARED
        } else if droppable {
            // Its own mapping type, not MAP_PRIVATE (as CRIU writes it).
            MAP_DROPPABLE
        } else {
            MAP_PRIVATE
        };
        let io_pf = v.flags.contains(VmFlags::IO) || v.flags.contains(VmFlags::PFNMAP);
        let hugetlb = v.flags.contains(VmFlags::HUGETLB);
        if hugetlb {
            // MAP_HUGETLB with the page size, as CRIU keeps it.
            let size = v.stats.kernel_page_size_kb * 1024;
            if !size.is_power_of_two() || size < 2 * 4096 {
                return Err(refuse(v, "hugetlb memory of an unknown page size"));
            }
            flags |= MAP_HUGETLB | size.trailing_zeros() << HUGE_SHIFT;
        }
        let mut entry = pb::VmaEntry {
            start: vma.start,
            end: vma.end,
            pgoff: 0,
            shmid: 0,
            prot: prot(vma.prot),
            flags,
            status: 0,
            fd: -1,
            madv: (madv != 0).then_some(madv),
            fdflags: None,
        };
        let mut file = None;
        let mut ring = None;
        let mut socket = None;
        let mut pages = Pages::Touched { lazy: false };
        match &vma.path {
            VmaPath::Vvar | VmaPath::VvarVclock => {
                // One VVAR entry for [vvar] and [vvar_vclock], taking the
                // first's flags; never dumped (restore maps the running
                // kernel's).
                if let Some(prev) = out.last_mut()
                    && prev.entry.status & status::VVAR != 0
                {
                    if prev.entry.end != vma.start {
                        return Err(Error::Inconsistent {
                            pid,
                            what: format!("two vvar areas apart, {}", describe(v)),
                        });
                    }
                    prev.entry.end = vma.end;
                    continue;
                }
                entry.status = status::REGULAR | status::ANON_PRIVATE;
                if vma.prot.contains(Prot::READ) {
                    entry.status |= status::VVAR;
                }
                entry.flags |= MAP_ANONYMOUS;
                pages = Pages::None;
            }
            VmaPath::Vdso => {
                entry.status = status::REGULAR | status::ANON_PRIVATE;
                if vma.prot.contains(Prot::READ | Prot::EXEC) {
                    entry.status |= status::VDSO;
                    pages = Pages::All;
                }
                entry.flags |= MAP_ANONYMOUS;
            }
            VmaPath::Vsyscall => {
                entry.status = status::VSYSCALL | status::ANON_PRIVATE;
                entry.flags |= MAP_ANONYMOUS;
                pages = Pages::None;
            }
            VmaPath::Heap => {
                entry.status = status::REGULAR | status::HEAP | status::ANON_PRIVATE;
                entry.flags |= MAP_ANONYMOUS;
            }
            VmaPath::AnonShmemNamed(_) => {
                return Err(refuse(v, "named shared anonymous memory"));
            }
            _ if vma.shared && !matches!(vma.path, VmaPath::File { .. }) => {
                return Err(refuse(v, "shared memory without a file"));
            }
            VmaPath::Stack | VmaPath::Anonymous | VmaPath::AnonNamed(_) => {
                if vma.inode != 0 || vma.dev_major != 0 || vma.dev_minor != 0 {
                    return Err(refuse(v, "an unnamed file mapping"));
                }
                entry.status = status::REGULAR | status::ANON_PRIVATE;
                entry.flags |= MAP_ANONYMOUS;
            }
            VmaPath::Uprobes => return Err(refuse(v, "a uprobes area")),
            VmaPath::Special(name) => {
                return Err(refuse(
                    v,
                    &format!("a special area [{}]", String::from_utf8_lossy(name)),
                ));
            }
            VmaPath::File { path, .. }
                if hugetlb
                    && !vma.shared
                    && !path.as_os_str().as_encoded_bytes().starts_with(b"/memfd:") =>
            {
                if path.as_os_str().as_encoded_bytes() != b"/anon_hugepage" {
                    return Err(refuse(
                        v,
                        &format!("a private mapping of hugetlbfs file {}", path.display()),
                    ));
                }
                // Private anonymous hugetlb memory: its pages are dumped
                // as any anonymous memory's; its hidden file is always
                // open read-write.
                entry.status = status::REGULAR | status::ANON_PRIVATE;
                entry.flags |= MAP_ANONYMOUS;
                entry.fdflags = Some(libc::O_RDWR as u32);
            }
            VmaPath::File { path, .. } if path.as_os_str().as_encoded_bytes() == IO_URING => {
                // The ring's own pages: the restore maps the ring made
                // again, whose entry holds their bytes.
                if !vma.shared || ![OFF_SQ_RING, OFF_CQ_RING, OFF_SQES].contains(&vma.offset) {
                    return Err(refuse(v, "a mapping of an io_uring at an unknown offset"));
                }
                entry.status = status::REGULAR | status::FILE_SHARED;
                entry.pgoff = vma.offset;
                entry.fdflags = Some(libc::O_RDWR as u32);
                ring = Some(vma.inode);
                pages = Pages::None;
            }
            VmaPath::File { path, deleted } => {
                let name = path.as_os_str().as_encoded_bytes();
                if name.starts_with(b"/SYSV") {
                    // An attach of a SysV shm segment, whose inode number
                    // is the segment's id: the segment's memory is dumped
                    // with its IPC namespace (`ipcns`), the attach made
                    // again in place. Checked against the namespace by
                    // the pipeline.
                    if !vma.shared {
                        return Err(refuse(v, "a private mapping of SysV shared memory"));
                    }
                    entry.status = status::REGULAR | status::ANON_SHARED | status::SYSVIPC;
                    entry.flags |= MAP_ANONYMOUS;
                    entry.shmid = vma.inode;
                    entry.pgoff = vma.offset;
                    out.push(Area {
                        entry,
                        file: None,
                        pages: Pages::None,
                        name: None,
                        ring: None,
                        socket: None,
                    });
                    continue;
                }
                if name.starts_with(b"socket:[") {
                    // A packet socket's rings (CRIU's VMA_AREA_SOCKET):
                    // mapped again from the socket made again, their
                    // bytes not kept (as CRIU).
                    entry.status = status::REGULAR | status::SOCKET;
                    entry.pgoff = vma.offset;
                    socket = Some(vma.inode);
                    pages = Pages::None;
                } else {
                    // memfds, and shared anonymous memory (a deleted /dev/zero
                    // of the shmem mount, which the dump checks): CRIU's memfd
                    // areas.
                    // A private mapping of shared anonymous memory (through its
                    // map_files link) is of the same memory: not a deleted file.
                    let shmem = name.starts_with(b"/memfd:")
                        || (*deleted && name == b"/dev/zero")
                        || hugetlb;
                    // A deleted file other than these is a ghost (the
                    // pipeline's mapped_file).
                    entry.status = status::REGULAR
                        | if vma.shared {
                            status::FILE_SHARED
                        } else {
                            status::FILE_PRIVATE
                        };
                    if shmem {
                        entry.status |= status::MEMFD;
                    }
                    entry.pgoff = vma.offset;
                    file = Some((vma.start, vma.end));
                    if vma.shared {
                        // The file holds the contents.
                        pages = Pages::None;
                    }
                }
            }
        }
        if io_pf && entry.status & status::VVAR == 0 {
            return Err(refuse(v, "an I/O or PFN mapping"));
        }
        if let Pages::Touched { lazy } = &mut pages {
            // CRIU's vma_entry_can_be_lazy.
            *lazy = entry.flags & MAP_ANONYMOUS != 0
                && entry.flags & MAP_PRIVATE != 0
                && entry.flags & MAP_LOCKED == 0
                && entry.flags & MAP_HUGETLB == 0
                && entry.status & (status::VDSO | status::VVAR | status::VSYSCALL) == 0;
            // Droppable memory may be dropped at any time (it reads as
            // zeros then): its pages are not kept, as CRIU keeps none.
            if entry.status & status::REGULAR == 0 || droppable {
                pages = Pages::None;
            }
        }
        let name = match &vma.path {
            VmaPath::AnonNamed(n) => Some(n.clone()),
            _ => None,
        };
        out.push(Area {
            entry,
            file,
            pages,
            name,
            ring,
            socket,
        });
    }
    Ok(out)
}

/// The names of the named anonymous areas, for `mm`'s rcriu field.
pub fn anon_names(areas: &[Area]) -> Vec<pb::RcriuAnonNameEntry> {
    areas
        .iter()
        .filter_map(|a| {
            Some(pb::RcriuAnonNameEntry {
                start: a.start(),
                end: a.end(),
                name: a.name.clone()?,
            })
        })
        .collect()
}

/// A process's `smaps` read on a thread of its own, while it is frozen:
/// the file walks every page table, which takes about 20 ms a GiB.
pub struct Smaps {
    pid: Pid,
    read: std::thread::JoinHandle<rcriu_proc::Result<Vec<SmapsVma>>>,
}

impl Smaps {
    pub fn start(pid: Pid) -> Smaps {
        let read = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let r = rcriu_proc::Task::open(pid)?.smaps();
            log::debug!("smaps of {pid} read in {:?}", t.elapsed());
            r
        });
        Smaps { pid, read }
    }

    /// The areas, but the parasite's (`parasite`), which went in while
    /// they were read and may or may not be among them.
    pub fn join(self, parasite: std::ops::Range<u64>) -> Result<Vec<SmapsVma>> {
        let pid = self.pid;
        let mut smaps = self
            .read
            .join()
            .map_err(|_| Error::Inconsistent {
                pid,
                what: "the thread reading smaps panicked".into(),
            })?
            .map_err(Error::proc(pid))?;
        smaps.retain(|v| !(parasite.start <= v.vma.start && v.vma.end <= parasite.end));
        Ok(smaps)
    }
}

/// The guard regions (`MADV_GUARD_INSTALL`) in `areas`, as CRIU 4.2
/// records them: one entry per run of guard pages, with status GUARD and
/// nothing else, to go after every real area. Found with `PAGEMAP_SCAN`;
/// none on a kernel whose scan does not report them (as CRIU).
///
/// `plan` holds those its scans found in the areas whose pages it looked
/// at; the other areas are scanned here for guard pages alone.
pub fn guards(
    pid: Pid,
    areas: &[Area],
    pagemap: &mut Pagemap,
    plan: &crate::pages::Plan,
) -> Result<Vec<pb::VmaEntry>> {
    const TASK_SIZE: u64 = 1 << 47;
    let mut out: Vec<pb::VmaEntry> = Vec::new();
    let supported = pagemap.scan_support().map_err(Error::proc(pid))?;
    if !supported.is_some_and(|s| s.contains(PageCategories::GUARD)) {
        return Ok(out);
    }
    let mut found = plan.guards.clone();
    let mut ranges = Vec::new();
    for a in areas.iter().filter(|a| a.end() <= TASK_SIZE) {
        let scanned = plan.saw_guards && matches!(a.pages, Pages::Touched { .. });
        if scanned {
            continue;
        }
        ranges.clear();
        pagemap
            .scan_ioctl_telling(
                a.start(),
                a.end(),
                PageCategories::GUARD,
                PageCategories::GUARD,
                &mut ranges,
            )
            .map_err(Error::proc(pid))?;
        found.extend(
            ranges
                .iter()
                .filter(|r| r.categories.contains(PageCategories::GUARD))
                .map(|r| (r.start, r.end)),
        );
    }
    found.sort_unstable();
    for (start, end) in found {
        match out.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => out.push(pb::VmaEntry {
                start,
                end,
                pgoff: 0,
                shmid: 0,
                prot: 0,
                flags: 0,
                status: status::GUARD,
                fd: -1,
                madv: None,
                fdflags: None,
            }),
        }
    }
    Ok(out)
}

/// The map_files link's mode gives the mapped file's open mode (CRIU
/// stores it as the area's `fdflags`).
pub fn fdflags_of_link_mode(mode: u32) -> Option<u32> {
    match mode & 0o600 {
        0o200 => Some(libc::O_WRONLY as u32),
        0o400 => Some(libc::O_RDONLY as u32),
        0o600 => Some(libc::O_RDWR as u32),
        _ => None,
    }
}

/// The auxv as CRIU keeps it: the file's words (the entries and the
/// final `AT_NULL` pair), at most `AT_VECTOR_SIZE` of them.
pub fn saved_auxv(auxv: &[rcriu_proc::AuxvEntry]) -> Vec<u64> {
    auxv.iter()
        .flat_map(|e| [e.key, e.value])
        .chain([0, 0])
        .take(AT_VECTOR_SIZE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcriu_proc::parse_smaps;

    fn one(line: &str, flags: &str) -> String {
        let page = if flags.contains("ht") { 2048 } else { 4 };
        format!(
            "{line}\nSize:                  4 kB\nKernelPageSize:     {page} kB\nVmFlags: {flags}\n"
        )
    }

    #[test]
    fn statuses_as_criu() {
        let text = [
            one(
                "00400000-00401000 r--p 00000000 fe:01 123                                /bin/x",
                "rd mr mw me dw",
            ),
            one(
                "00401000-00402000 rw-p 00000000 00:00 0                                  [heap]",
                "rd wr mr mw me ac",
            ),
            one(
                "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ",
                "rd wr mr mw me ac dd",
            ),
            one(
                "7f0000001000-7f0000003000 r--p 00000000 00:00 0                          [vvar]",
                "rd mr pf io de dd",
            ),
            one(
                "7f0000003000-7f0000004000 r--p 00000000 00:00 0                          [vvar_vclock]",
                "rd mr pf io de dd",
            ),
            one(
                "7f0000004000-7f0000006000 r-xp 00000000 00:00 0                          [vdso]",
                "rd ex mr mw me de",
            ),
            one(
                "7ffe00000000-7ffe00021000 rw-p 00000000 00:00 0                          [stack]",
                "rd wr mr mw me gd ac",
            ),
            one(
                "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
                "ex",
            ),
        ]
        .concat();
        let smaps = parse_smaps(text.as_bytes()).unwrap();
        let a = classify(1, &smaps).unwrap();
        let st: Vec<u32> = a.iter().map(|a| a.entry.status).collect();
        // The statuses of CRIU 4.2's fixture dump: 65, 545, 513, 4609,
        // 521, 513, 516.
        assert_eq!(st, [65, 545, 513, 4609, 521, 513, 516]);
        let fl: Vec<u32> = a.iter().map(|a| a.entry.flags).collect();
        assert_eq!(fl, [2, 34, 34, 34, 34, 290, 34]);
        assert_eq!(
            a[3].entry.end, 0x7f0000004000,
            "vvar and vvar_vclock merged"
        );
        assert_eq!(a[3].entry.madv, Some(1 << 16));
        assert_eq!(a[2].entry.madv, Some(1 << 16));
        assert_eq!(a[0].file, Some((0x400000, 0x401000)));
        assert_eq!(a[0].pages, Pages::Touched { lazy: false });
        assert_eq!(a[1].pages, Pages::Touched { lazy: true });
        assert_eq!(a[3].pages, Pages::None);
        assert_eq!(a[4].pages, Pages::All);
        assert_eq!(a[6].pages, Pages::None);
    }

    #[test]
    fn refusals_name_the_area() {
        for (line, flags, what) in [
            (
                "7f0000000000-7f0000001000 rw-s 00000000 00:01 7                          [anon_shmem:x]",
                "rd wr sh mr mw me ms",
                "shared anonymous memory",
            ),
            (
                "7f0000000000-7f0000001000 rw-p 00000000 00:01 7                          /SYSV00000000 (deleted)",
                "rd wr mr mw me",
                "a private mapping of SysV",
            ),
            (
                "7f0000000000-7f0000001000 rw-p 00000000 00:0f 3                          /mnt/huge/f",
                "rd wr mr mw me ht",
                "hugetlbfs file /mnt/huge/f",
            ),
            (
                "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ",
                "rd wr mr mw me io pf",
                "I/O or PFN",
            ),
        ] {
            let smaps = parse_smaps(one(line, flags).as_bytes()).unwrap();
            let e = classify(7, &smaps).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
            assert!(e.contains("0x7f0000000000-0x7f0000001000"), "{e}");
            assert!(e.contains("process 7"), "{e}");
        }
    }

    #[test]
    fn a_sysv_attach_is_an_area_of_its_own() {
        let line = "7f0000000000-7f0000002000 r--s 00001000 00:01 32768                      /SYSV52430001 (deleted)";
        let smaps = parse_smaps(one(line, "rd sh mr mw me ms").as_bytes()).unwrap();
        let a = classify(7, &smaps).unwrap();
        let e = &a[0].entry;
        assert_eq!(
            e.status,
            status::REGULAR | status::ANON_SHARED | status::SYSVIPC
        );
        assert_eq!(e.flags, MAP_SHARED | MAP_ANONYMOUS);
        assert_eq!((e.shmid, e.pgoff), (32768, 0x1000));
        assert_eq!(a[0].pages, Pages::None);
        assert_eq!(a[0].file, None);
    }

    #[test]
    fn memory_under_a_protection_key_is_refused() {
        let line = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ";
        let text = |key: u32| {
            format!(
                "{line}\nSize:                  4 kB\nKernelPageSize:     4 kB\nProtectionKey:      {key}\nVmFlags: rd wr mr mw me ac\n"
            )
        };
        // Key 0 is every area's on a CPU with pkeys.
        let smaps = parse_smaps(text(0).as_bytes()).unwrap();
        assert!(classify(7, &smaps).is_ok());
        let smaps = parse_smaps(text(3).as_bytes()).unwrap();
        let e = classify(7, &smaps).unwrap_err().to_string();
        assert!(e.contains("protection key 3 at 0x7f0000000000"), "{e}");
    }

    #[test]
    fn shared_areas_as_criu() {
        let text = [
            one(
                "7f0000000000-7f0000002000 rw-s 00000000 fe:01 123                        /tmp/f",
                "rd wr sh mr mw me ms",
            ),
            one(
                "7f0000002000-7f0000003000 r--s 00001000 00:01 9                          /memfd:m (deleted)",
                "rd sh mr mw me ms",
            ),
            one(
                "7f0000003000-7f0000004000 rw-s 00000000 00:01 10                         /dev/zero (deleted)",
                "rd wr sh mr mw me ms lo",
            ),
            one(
                "7f0000004000-7f0000005000 rw-p 00000000 00:01 9                          /memfd:m (deleted)",
                "rd wr mr mw me",
            ),
            // A private mapping of shared anonymous memory (zdtm's
            // shmemfd-priv): of that memory, not a deleted file's copy.
            one(
                "7f0000005000-7f0000006000 rw-p 00001000 00:01 10                         /dev/zero (deleted)",
                "rd wr mr mw me",
            ),
        ]
        .concat();
        let smaps = parse_smaps(text.as_bytes()).unwrap();
        let a = classify(1, &smaps).unwrap();
        let st: Vec<u32> = a.iter().map(|a| a.entry.status).collect();
        // CRIU 4.2: REGULAR | FILE_SHARED, and MEMFD for shmem files.
        assert_eq!(st, [129, 16513, 16513, 16449, 16449]);
        let fl: Vec<u32> = a.iter().map(|a| a.entry.flags).collect();
        assert_eq!(fl, [1, 1, 1 | 0x2000, 2, 2]);
        assert_eq!(a[1].entry.pgoff, 0x1000);
        assert!(a.iter().all(|a| a.file.is_some()));
        let pages: Vec<Pages> = a.iter().map(|a| a.pages).collect();
        assert_eq!(
            pages,
            [
                Pages::None,
                Pages::None,
                Pages::None,
                Pages::Touched { lazy: false },
                Pages::Touched { lazy: false }
            ]
        );
    }

    #[test]
    fn auxv_is_cut_as_criu_cuts_it() {
        let auxv: Vec<_> = (0..30)
            .map(|i| rcriu_proc::AuxvEntry {
                key: i,
                value: i * 10,
            })
            .collect();
        let v = saved_auxv(&auxv);
        assert_eq!(v.len(), AT_VECTOR_SIZE);
        assert_eq!(&v[..4], &[0, 0, 1, 10]);
        let short = saved_auxv(&auxv[1..3]);
        assert_eq!(short, [1, 10, 2, 20, 0, 0]);
    }
}
