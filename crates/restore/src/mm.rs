//! The address space: which areas to map where, from which files, with
//! which protections and madvise flags. Mapped files are opened and
//! validated here, before the process exists.

use std::collections::BTreeMap;

use rcriu_images::vma::*;
use rcriu_images::{ImageFile, pb};
use rcriu_parasite_abi::restorer::{Range, Vma};

use crate::files::Opener;
use crate::load::Images;
use crate::memfd::Inodes;
use crate::{Error, Result};

/// The madvise advices a restore re-applies (those CRIU records from an
/// area's VmFlags).
const MADV_KEEP: u64 = 1 << libc::MADV_SEQUENTIAL
    | 1 << libc::MADV_RANDOM
    | 1 << libc::MADV_DONTFORK
    | 1 << libc::MADV_DOFORK
    | 1 << libc::MADV_MERGEABLE
    | 1 << libc::MADV_UNMERGEABLE
    | 1 << libc::MADV_HUGEPAGE
    | 1 << libc::MADV_NOHUGEPAGE
    | 1 << libc::MADV_DONTDUMP
    | 1 << libc::MADV_DODUMP
    | 1 << libc::MADV_WIPEONFORK
    | 1 << libc::MADV_KEEPONFORK;

/// `MAP_DROPPABLE` (Linux 6.11): anonymous memory the kernel may drop
/// (it reads as zeros again), a mapping type of its own.
const MAP_DROPPABLE: u32 = 0x08;

/// The mmap flags an area may carry in an image.
const MAP_KEEP: u32 = (libc::MAP_SHARED
    | libc::MAP_PRIVATE
    | MAP_DROPPABLE as i32
    | libc::MAP_ANONYMOUS
    | libc::MAP_GROWSDOWN
    | libc::MAP_LOCKED
    | libc::MAP_NORESERVE
    | libc::MAP_HUGETLB
    | HUGE_SIZE_MASK) as u32;

/// log2 of the huge page size, in mmap's flags.
const HUGE_SIZE_MASK: i32 = 0x3f << 26;

/// The memory plan.
#[derive(Debug, Default)]
pub struct MemPlan {
    /// Areas to map, in address order.
    pub vmas: Vec<Vma>,
    /// The dumped vDSO area.
    pub vdso: Option<(u64, u64)>,
    /// The dumped vvar area (`[vvar]` and `[vvar_vclock]` together).
    pub vvar: Option<(u64, u64)>,
    /// The vsyscall page, if the process had it (the kernel's, fixed).
    pub vsyscall: bool,
    /// The files the areas map, open. Until the caller gives them their
    /// final numbers, `Vma::fd` is an index into this (-1: anonymous).
    pub files: Vec<crate::files::Source>,
    /// The `MADV_GUARD_INSTALL` guard regions, installed last.
    pub guards: Vec<Range>,
    /// The names of anonymous areas: `(start, end, name)`.
    pub anon_names: Vec<(u64, u64, Vec<u8>)>,
    /// The memory of the io_uring instances the areas map.
    pub rings: crate::io_uring::Mappings,
    /// Areas mapping a packet socket's rings: `(start, the socket's file
    /// id)`, their file given once the process's fds are planned
    /// ([`MemPlan::map_sockets`]).
    pub sockets: Vec<(u64, u64)>,
}

impl MemPlan {
    /// Gives each area of a packet socket's rings its socket: the open
    /// file of the process's fd (`fds`, as planned) of the socket's file
    /// id, as CRIU maps the rings again from the process's socket.
    pub fn map_sockets(&mut self, img: &Images, fds: &[crate::files::FdSource]) -> Result<()> {
        let file = ImageFile::Mm(img.task.pid.into());
        for (start, id) in std::mem::take(&mut self.sockets) {
            let src = img
                .task
                .fdinfo
                .iter()
                .find(|e| u64::from(e.id) == id)
                .and_then(|e| fds.iter().find(|(fd, _, _)| i64::from(*fd) == i64::from(e.fd)))
                .ok_or_else(|| {
                    Error::invalid(
                        file.name(),
                        format!(
                            "area {start:#x} maps the rings of packet socket file {id}, which no fd of the process holds"
                        ),
                    )
                })?;
            let entry = img.file(id as u32, &file)?;
            if entry.psk.is_none() {
                return Err(Error::invalid(
                    file.name(),
                    format!(
                        "area {start:#x} maps file {id} as a packet socket's rings, which is no packet socket"
                    ),
                ));
            }
            self.files.push(crate::files::Source::clone(&src.2));
            let at = self.files.len() - 1;
            if let Some(v) = self.vmas.iter_mut().find(|v| v.start == start) {
                v.fd = at as i32;
            }
        }
        Ok(())
    }

    /// Adds a private anonymous area (kept in address order).
    pub fn add_anon(&mut self, start: u64, end: u64, prot: u32) {
        let at = self.vmas.partition_point(|v| v.start < start);
        self.vmas.insert(
            at,
            Vma {
                start,
                end,
                pgoff: 0,
                madv: 0,
                prot,
                flags: (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
                fd: -1,
                fill: 0,
                ..Vma::default()
            },
        );
    }

    /// Every range the restored process will occupy (areas and the vDSO
    /// and vvar), for finding room for the restorer.
    pub fn occupied(&self) -> Vec<(u64, u64)> {
        let mut r: Vec<(u64, u64)> = self.vmas.iter().map(|v| (v.start, v.end)).collect();
        r.extend(self.vdso);
        r.extend(self.vvar);
        r
    }
}

/// The areas of a child (`child`) it inherits from its parent's
/// (`parent`, both sorted) when forked once the parent's memory is in
/// place: private areas the parent maps at the same place, with the same
/// protection and flags, both with pages to fill or neither (so that the
/// parent maps them as the child itself would); anonymous, or of the same
/// file at the same offset (the fds are the tree's, one for each file
/// opened: the same number is the same file), with no lazy pages
/// (`--lazy-pages`: each process's go to its own userfaultfd). The pages
/// the child had none of are dropped, which gives a file mapping the
/// file's again. They are marked in `child`; their ranges are returned.
pub fn inherit(parent: &[Vma], child: &mut [Vma]) -> Vec<(u64, u64)> {
    let private = libc::MAP_PRIVATE as u32;
    let anon = libc::MAP_ANONYMOUS as u32;
    let plain = |v: &Vma| {
        (v.fd < 0) == (v.flags & anon != 0)
            && v.lazy == 0
            && v.flags & private == private
            && v.flags & (libc::MAP_SHARED | libc::MAP_HUGETLB) as u32 == 0
    };
    let mut out = Vec::new();
    for v in child.iter_mut().filter(|v| plain(v)) {
        let i = parent.partition_point(|p| p.start < v.start);
        let Some(p) = parent.get(i) else { continue };
        if p.start == v.start
            && p.end == v.end
            && p.flags == v.flags
            && p.prot == v.prot
            && p.fd == v.fd
            && p.pgoff == v.pgoff
            && (p.fill != 0) == (v.fill != 0)
            && plain(p)
        {
            v.inherited = 1;
            out.push((v.start, v.end));
        }
    }
    out
}

/// Plans the areas of `img`'s process.
///
/// The memfds and shared memory it maps are made in `memfds` (the tree's:
/// processes that shared an inode share it again).
pub fn plan(img: &Images, memfds: &mut Inodes, opener: &mut Opener<'_>) -> Result<MemPlan> {
    let pid = img.task.pid;
    let file = ImageFile::Mm(pid.into());
    let mm = &img.task.mm;
    let mut plan = MemPlan::default();
    // By file id and access mode.
    let mut opened: BTreeMap<(u64, i32), usize> = BTreeMap::new();
    let mut last_end = 0u64;
    for v in &mm.vmas {
        if v.start >= v.end || v.start % 4096 != 0 || v.end % 4096 != 0 {
            return Err(Error::invalid(
                file.name(),
                format!("bad area {:#x}-{:#x}", v.start, v.end),
            ));
        }
        if v.status == VMA_AREA_GUARD {
            // Not an area: guard pages in one, listed after them all.
            plan.guards.push(Range {
                start: v.start,
                end: v.end,
            });
            continue;
        }
        if !plan.guards.is_empty() {
            return Err(Error::invalid(
                file.name(),
                format!("area {:#x} after the guard regions", v.start),
            ));
        }
        if v.start < last_end {
            return Err(Error::invalid(
                file.name(),
                format!("areas out of order or overlapping at {:#x}", v.start),
            ));
        }
        last_end = v.end;
        let st = v.status;
        if st & VMA_AREA_VSYSCALL != 0 {
            plan.vsyscall = true;
            continue;
        }
        if st & VMA_AREA_VDSO != 0 {
            plan.vdso = Some((v.start, v.end));
            continue;
        }
        if st & VMA_AREA_VVAR != 0 {
            plan.vvar = Some((v.start, v.end));
            continue;
        }
        if st & VMA_AREA_REGULAR == 0 {
            return Err(Error::invalid(
                file.name(),
                format!(
                    "area {:#x}-{:#x} is not restorable (status {st:#x})",
                    v.start, v.end
                ),
            ));
        }
        if st & VMA_AREA_SYSVIPC != 0 {
            plan.vmas.push(sysv_area(v, &file, plan.vmas.last())?);
            continue;
        }
        check_kind(pid, v)?;
        if st & VMA_AREA_SOCKET != 0 {
            // A packet socket's rings: mapped from the socket made again
            // (its fd is planned later), nothing read into them.
            plan.sockets.push((v.start, v.shmid));
            plan.vmas.push(Vma {
                start: v.start,
                end: v.end,
                pgoff: v.pgoff,
                madv: v.madv.unwrap_or(0) & MADV_KEEP,
                prot: v.prot & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32,
                flags: v.flags & MAP_KEEP & !(libc::MAP_ANONYMOUS as u32),
                fd: -1,
                fill: 0,
                ..Vma::default()
            });
            continue;
        }
        let ring = match st & VMA_FILE_SHARED {
            0 => None,
            _ => img
                .file(file_id(v, &file)?, &file)?
                .rcriu_io_uring
                .as_deref(),
        };
        let mut pgoff = v.pgoff;
        let fd = if let Some(e) = ring {
            // A ring's region: its memfd (io_uring).
            let (at, off) = plan.rings.area(e, v, &mut plan.files)?;
            pgoff = off;
            at as i32
        } else if st & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
            let access = access(v);
            let idx = match opened.get(&(v.shmid, access)) {
                Some(&i) => i,
                None => {
                    let f = if st & VMA_AREA_MEMFD != 0 {
                        let entry = img.file(file_id(v, &file)?, &file)?;
                        let f = memfds.open(img, entry, access, crate::memfd::Use::Mapping)?;
                        crate::files::Source::new(f.into())
                    } else {
                        open_mapped(img, v, &file, access, opener)?
                    };
                    plan.files.push(f);
                    opened.insert((v.shmid, access), plan.files.len() - 1);
                    plan.files.len() - 1
                }
            };
            idx as i32
        } else if st & VMA_ANON_PRIVATE != 0 {
            -1
        } else {
            return Err(Error::invalid(
                file.name(),
                format!(
                    "area {:#x}-{:#x} is neither file nor anonymous memory (status {st:#x})",
                    v.start, v.end
                ),
            ));
        };
        let mut flags = v.flags & MAP_KEEP;
        if fd >= 0 {
            flags &= !(libc::MAP_ANONYMOUS as u32);
        } else {
            flags |= libc::MAP_ANONYMOUS as u32;
        }
        plan.vmas.push(Vma {
            start: v.start,
            end: v.end,
            pgoff: if fd >= 0 { pgoff } else { 0 },
            madv: v.madv.unwrap_or(0) & MADV_KEEP,
            prot: v.prot & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32,
            flags,
            fd,
            fill: 0,
            ..Vma::default()
        });
    }
    plan.rings.check(pid)?;
    for n in &mm.rcriu_anon_names {
        let inside = plan
            .vmas
            .iter()
            .any(|v| v.fd < 0 && v.start <= n.start && n.end <= v.end);
        if n.start >= n.end || !inside {
            return Err(Error::invalid(
                file.name(),
                format!(
                    "names {:#x}-{:#x}, which is no anonymous area",
                    n.start, n.end
                ),
            ));
        }
        if n.name.len() > ANON_NAME_MAX
            || n.name
                .iter()
                .any(|&b| b == 0 || !(b' '..=b'~').contains(&b))
        {
            return Err(Error::invalid(
                file.name(),
                format!("a bad name for the area {:#x}-{:#x}", n.start, n.end),
            ));
        }
        plan.anon_names.push((n.start, n.end, n.name.clone()));
    }
    Ok(plan)
}

/// An attach of a SysV shm segment (of the container's IPC namespace,
/// made before the process): the first area of an attach (offset 0)
/// attaches the whole segment, read-only when its file was open so
/// (`fdflags`), the areas after it (the same segment, side by side, at
/// the offsets that follow) are in place then and only protected.
fn sysv_area(v: &pb::VmaEntry, from: &ImageFile, prev: Option<&Vma>) -> Result<Vma> {
    use rcriu_parasite_abi::restorer::{SYSV_ATTACH, SYSV_ATTACH_RDONLY, SYSV_FOLLOW};
    let id = i32::try_from(v.shmid).map_err(|_| {
        Error::invalid(
            from.name(),
            format!("area {:#x}: bad SysV shm segment id {}", v.start, v.shmid),
        )
    })?;
    let follows = prev.is_some_and(|p| {
        p.sysv != 0 && p.fd == id && p.end == v.start && p.pgoff + (p.end - p.start) == v.pgoff
    });
    let sysv = if v.pgoff != 0 {
        if !follows {
            return Err(Error::invalid(
                from.name(),
                format!(
                    "area {:#x}: a partial attach of SysV shm segment {id} (from offset {:#x})",
                    v.start, v.pgoff
                ),
            ));
        }
        SYSV_FOLLOW
    } else if v
        .fdflags
        .is_none_or(|f| f as i32 & libc::O_ACCMODE == libc::O_RDWR)
    {
        SYSV_ATTACH
    } else {
        SYSV_ATTACH_RDONLY
    };
    Ok(Vma {
        start: v.start,
        end: v.end,
        pgoff: v.pgoff,
        madv: v.madv.unwrap_or(0) & MADV_KEEP,
        prot: v.prot & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32,
        flags: v.flags & MAP_KEEP,
        fd: id,
        sysv,
        ..Vma::default()
    })
}

/// Refuses the kinds of area this version does not restore.
pub fn check_kind(pid: u32, v: &pb::VmaEntry) -> Result<()> {
    if v.status & VMA_AREA_SYSVIPC != 0 {
        // An attach of a SysV segment ([`sysv_area`]).
        return Ok(());
    }
    let unsupported = VMA_ANON_SHARED
        | VMA_AREA_AIORING
        | VMA_AREA_SHSTK
        | VMA_AREA_GUARD
        | VMA_AREA_UPROBES
        | VMA_UNSUPP;
    if v.status != VMA_AREA_GUARD && v.status & unsupported != 0 {
        return Err(Error::unsupported(format!(
            "restoring the memory area {:#x}-{:#x} of process {pid} ({})",
            v.start,
            v.end,
            describe(v.status)
        )));
    }
    Ok(())
}

/// The longest name of an anonymous area, NUL excluded (the kernel's
/// ANON_VMA_NAME_MAX_LEN is 80 with it).
const ANON_NAME_MAX: usize = 79;

/// How a mapped file is opened: as the dump says (`fdflags`), else
/// read-only, or read-write for a writable shared mapping.
fn access(v: &pb::VmaEntry) -> i32 {
    match v.fdflags {
        Some(f) => f as i32 & libc::O_ACCMODE,
        None if v.status & VMA_FILE_SHARED != 0 && v.prot & libc::PROT_WRITE as u32 != 0 => {
            libc::O_RDWR
        }
        None => libc::O_RDONLY,
    }
}

fn file_id(v: &pb::VmaEntry, from: &ImageFile) -> Result<u32> {
    u32::try_from(v.shmid).map_err(|_| {
        Error::invalid(
            from.name(),
            format!("area {:#x}: bad file id {}", v.start, v.shmid),
        )
    })
}

fn describe(status: u32) -> &'static str {
    match status {
        s if s & VMA_ANON_SHARED != 0 => {
            "shared anonymous memory without its file (a dump of an unprivileged CRIU)"
        }
        s if s & VMA_AREA_SOCKET != 0 => "a socket mapping",
        s if s & VMA_AREA_AIORING != 0 => "an AIO ring",
        s if s & VMA_AREA_SHSTK != 0 => "a shadow stack",
        s if s & VMA_AREA_GUARD != 0 => "guard regions",
        s if s & VMA_AREA_UPROBES != 0 => "the uprobes area",
        _ => "an area the dump could not handle",
    }
}

/// Opens the file a file mapping maps (with `access`), checked as CRIU
/// checks it; a ghost made again if it was one.
fn open_mapped(
    img: &Images,
    v: &pb::VmaEntry,
    from: &ImageFile,
    access: i32,
    opener: &mut Opener<'_>,
) -> Result<crate::files::Source> {
    let id = file_id(v, from)?;
    let entry = img.file(id, from)?;
    let reg = entry.reg.as_deref().ok_or_else(|| {
        Error::unsupported(format!(
            "a memory area ({:#x}) mapping a file of type {} (file id {id})",
            v.start, entry.r#type
        ))
    })?;
    opener.open_mapped(id, reg, access)
}
