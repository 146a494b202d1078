//! Shared memory files: the memfds and the shared anonymous memory of
//! `memfd.img`, made again in rcriu before the process exists, filled from
//! their `pagemap-shmem-<shmid>.img` pages, owned, moded and sealed as
//! they were; their mappings and fds are opened on them.
//!
//! An inode named `/dev/zero` (shared anonymous memory, as CRIU 4.2 dumps
//! it) becomes shared anonymous memory again, the rest memfds with their
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use rcriu_images::pages::PE_PRESENT;
use rcriu_images::{ImageFile, pb};

use crate::load::Images;
use crate::{Error, Result};

/// The name CRIU gives shared anonymous memory's inode.
const ANON_SHARED_NAME: &[u8] = b"/dev/zero";
/// And shared anonymous hugetlb memory's.
const ANON_HUGE_NAME: &[u8] = b"/anon_hugepage";
/// memfd_create's and mmap's huge page size bits.
const HUGE_SIZE_MASK: u32 = 0x3f << 26;

/// The memfd inodes of a dump, made when first needed.
#[derive(Debug, Default)]
pub struct Inodes {
    entries: Vec<pb::MemfdInodeEntry>,
    made: BTreeMap<u32, File>,
    /// The inodes whose own description an fd has.
    fd_given: BTreeSet<u32>,
    /// file id → the open file description made for it (shared by every
    /// fd of every process that had it).
    by_file: BTreeMap<u32, File>,
}

/// What a description of a memfd is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Fd,
    Mapping,
}

fn image() -> String {
    ImageFile::Memfd.name()
}

impl Inodes {
    /// Reads `memfd.img`, if the dump has one.
    pub fn load(img: &Images) -> Result<Inodes> {
        let entries = if img.dir.exists(ImageFile::Memfd) {
            img.dir.read_all(ImageFile::Memfd)?
        } else {
            Vec::new()
        };
        Ok(Inodes {
            entries,
            made: BTreeMap::new(),
            fd_given: BTreeSet::new(),
            by_file: BTreeMap::new(),
        })
    }

    /// An open file description of the inode of the MEMFD file entry
    /// `file`, with `flags` (access mode and status flags).
    ///
    /// A writable one is, where it can be, the description memfd_create
    /// made: only that one leaves the inode executable (a description
    /// opened again for writing counts as a writer, and `execveat` of the
    /// memfd then fails with ETXTBSY). Writable mappings all share it;
    /// of the writable fds, the first does, the others are opened again
    /// (as they were in the process, which could only open them so).
    pub fn open(
        &mut self,
        img: &Images,
        file: &pb::FileEntry,
        flags: i32,
        use_: Use,
    ) -> Result<File> {
        let m = file.memfd.as_deref().ok_or_else(|| {
            Error::invalid(
                ImageFile::Files.name(),
                format!("file {} is not a memfd", file.id),
            )
        })?;
        let inode_id = m.inode_id;
        let first_fd = use_ == Use::Fd && !self.fd_given.contains(&inode_id);
        let inode = self.inode(img, inode_id)?;
        if flags & libc::O_ACCMODE == libc::O_RDWR && (use_ == Use::Mapping || first_fd) {
            let f = inode
                .try_clone()
                .map_err(Error::host("duplicating a restored memfd"))?;
            // The status flags F_SETFL sets (O_APPEND, O_NONBLOCK, ...).
            let status = rustix::fs::OFlags::from_bits_retain(
                (flags & !libc::O_ACCMODE & !libc::O_CLOEXEC) as u32,
            );
            rustix::fs::fcntl_setfl(&f, status)
                .map_err(|e| Error::host("setting a restored memfd's flags")(e.into()))?;
            if first_fd {
                self.fd_given.insert(inode_id);
            }
            return Ok(f);
        }
        let path = format!("/proc/self/fd/{}", inode.as_raw_fd());
        std::fs::OpenOptions::new()
            .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
            .custom_flags(
                (flags & !libc::O_ACCMODE & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL))
                    | libc::O_CLOEXEC,
            )
            .open(&path)
            .map_err(Error::file("reopening a restored memfd", path))
    }

    fn inode(&mut self, img: &Images, inode_id: u32) -> Result<&File> {
        if !self.made.contains_key(&inode_id) {
            let e = self
                .entries
                .iter()
                .find(|e| e.inode_id == u64::from(inode_id))
                .cloned()
                .ok_or_else(|| {
                    Error::invalid(
                        ImageFile::Files.name(),
                        format!("refers to memfd inode {inode_id}, which memfd.img does not have"),
                    )
                })?;
            let f = make(img, &e)?;
            self.made.insert(inode_id, f);
        }
        Ok(&self.made[&inode_id])
    }
}

/// Makes one inode again.
fn make(img: &Images, e: &pb::MemfdInodeEntry) -> Result<File> {
    let what = |w: &str| format!("{w} memfd {:?}", String::from_utf8_lossy(&e.name));
    let host = |w: &'static str| Error::host(w);
    let huge = e.hugetlb_flag.map(|f| f & HUGE_SIZE_MASK);
    let anon = e.name == ANON_SHARED_NAME || (huge.is_some() && e.name == ANON_HUGE_NAME);
    let f: File = if anon {
        let (page, extra) = match huge {
            Some(size) => (1u64 << (size >> 26), libc::MAP_HUGETLB | size as i32),
            None => (4096, 0),
        };
        let len = e.size.next_multiple_of(page);
        if len == 0 {
            return Err(Error::invalid(image(), what("empty shared memory in")));
        }
        crate::sys::shared_anon_file(len as usize, extra)
            .map_err(host("creating shared anonymous memory"))?
            .into()
    } else {
        let name = std::ffi::CString::new(e.name.clone())
            .map_err(|_| Error::invalid(image(), what("a NUL in the name of")))?;
        let mut flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        if let Some(f) = e.hugetlb_flag {
            flags |= rustix::fs::MemfdFlags::from_bits_retain(f | libc::MFD_HUGETLB);
        }
        let fd: OwnedFd = rustix::fs::memfd_create(name.as_c_str(), flags)
            .map_err(|e| host("creating a memfd")(e.into()))?;
        let f = File::from(fd);
        f.set_len(e.size).map_err(host("sizing a memfd"))?;
        f
    };
    fill(img, e, &f, huge.is_some())?;
    if let Some(mode) = e.mode {
        rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
            .map_err(|err| host("setting a memfd's mode")(err.into()))?;
    }
    rustix::fs::fchown(
        &f,
        Some(rustix::fs::Uid::from_raw(e.uid)),
        Some(rustix::fs::Gid::from_raw(e.gid)),
    )
    .map_err(|err| host("setting a memfd's owner")(err.into()))?;
    let seals = rustix::fs::SealFlags::from_bits_retain(e.seals);
    // Shared anonymous memory cannot be sealed, and says so (SEAL only).
    if !anon && !seals.is_empty() {
        rustix::fs::fcntl_add_seals(f.as_fd(), seals)
            .map_err(|err| host("sealing a memfd")(err.into()))?;
    }
    Ok(f)
}

/// Writes the dumped pages of inode `e` into `f`, up to its size; through
/// a mapping for hugetlbfs, which cannot be written.
fn fill(img: &Images, e: &pb::MemfdInodeEntry, f: &File, huge: bool) -> Result<()> {
    fill_shmem(&img.dir, e.shmid, e.size, f, huge, || what_past(e))
}

/// Writes the pages of `pagemap-shmem-<shmid>.img` (none: no pages) into
/// `f`, up to `size`; through a mapping when `huge` (hugetlbfs cannot be
/// written). `past` names the file when pages lie past its end.
pub(crate) fn fill_shmem(
    dir: &rcriu_images::ImageDir,
    shmid: u32,
    size: u64,
    f: &File,
    huge: bool,
    past: impl Fn() -> String,
) -> Result<()> {
    let file = ImageFile::ShmemPagemap(shmid.into());
    if !dir.exists(file) {
        return Ok(());
    }
    let mut runs = dir.shmem_pagemap(shmid)?;
    let map = if huge {
        let len = f.metadata().map_err(Error::host("sizing a memfd"))?.len();
        Some(
            rcriu_compel::sys::LocalMap::map(f.as_fd(), 0, len as usize)
                .map_err(Error::host("mapping a hugetlb memfd to fill it"))?,
        )
    } else {
        None
    };
    let pages = dir.pages(runs.pages_id())?;
    let mut buf = vec![0u8; 1 << 20];
    while let Some(run) = runs.next_run()? {
        let Some(off) = run.pages_offset else {
            continue;
        };
        if run.flags & PE_PRESENT == 0 {
            continue;
        }
        let end = run.end().min(size);
        if off + run.len() > pages.len() {
            return Err(Error::invalid(
                ImageFile::Pages(runs.pages_id().into()).name(),
                format!(
                    "holds {} bytes, but the pages of {file:?} at {:#x} end at {}",
                    pages.len(),
                    run.vaddr,
                    off + run.len()
                ),
            ));
        }
        let mut at = run.vaddr;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            pages.read_pages_at(&mut buf[..n], off + (at - run.vaddr))?;
            match &map {
                Some(m) if at as usize + n <= m.len() => m.write(at as usize, &buf[..n]),
                Some(_) => return Err(Error::invalid(image(), past())),
                None => f
                    .write_all_at(&buf[..n], at)
                    .map_err(Error::host("filling a memfd"))?,
            }
            at += n as u64;
        }
    }
    Ok(())
}

fn what_past(e: &pb::MemfdInodeEntry) -> String {
    format!(
        "pages past the end of memfd {:?}",
        String::from_utf8_lossy(&e.name)
    )
}

/// The memfd fds of the process: `(fd, cloexec, file)`.
pub fn plan_fds(img: &Images, inodes: &mut Inodes) -> Result<Vec<crate::files::FdSource>> {
    let from = ImageFile::Fdinfo(img.task.ids.files_id.into());
    let mut out = Vec::new();
    for e in &img.task.fdinfo {
        let entry = img.file(e.id, &from)?;
        let Some(m) = &entry.memfd else {
            continue;
        };
        let fd = i32::try_from(e.fd)
            .map_err(|_| Error::invalid(from.name(), format!("bad fd {}", e.fd)))?;
        let f = match inodes.by_file.get(&e.id) {
            Some(f) => f.try_clone().map_err(Error::host("copying a memfd"))?,
            None => {
                let f = inodes.open(img, entry, m.flags as i32, Use::Fd)?;
                let mut r = &f;
                std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(m.pos))
                    .map_err(Error::host("positioning a memfd"))?;
                let keep = f.try_clone().map_err(Error::host("copying a memfd"))?;
                inodes.by_file.insert(e.id, keep);
                f
            }
        };
        let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
        out.push((fd, cloexec, crate::files::Source::new(f.into())));
    }
    Ok(out)
}
