//! Shared memory files: memfds (mapped or open) and shared anonymous
//! memory, dumped as CRIU 4.2 dumps both when it can open `map_files`.
//!
//! Both live on the kernel's internal shmem mount. Each inode gets one
//! `memfd_inode_entry` in `memfd.img` (name, owner, size, mode, seals,
//! `shmid` = its inode number, `inode_id` counting from 1) and, unless
//! empty, its contents: `pagemap-shmem-<shmid>.img` with the offsets of
//! the pages in the file as addresses, pointing into a `pages-<n>.img` of
//! its own. The pages images are numbered in the order the inodes are met
//! (mappings by address, then fds), the task's own pages come after them.
//! Shared anonymous memory is an inode named `/dev/zero`.
//!
//! Files: a mapping's entry is a `MEMFD` file entry with flags and pos 0,
//! one per inode (the area's `shmid` is its id); an fd's is an entry of
//! its own with the fd's flags and position.
//!
//! Which pages: those `SEEK_DATA` finds, walked as CRIU walks them (a page
//! is dumped when it is at or after the last data offset found, which is
//! looked up again at each hole), `PRESENT` only.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rcriu_images::pages::PE_PRESENT;
use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::Pid;

use crate::files::{FileInfo, Files, OpenFd};
use crate::{Error, Result, sys};

const PAGE: u64 = 4096;
/// `statfs`' `f_type` of hugetlbfs.
const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;

/// What creates an image file for writing (and remembers it, so that a
/// failed dump removes it).
pub type Create<'a> = dyn FnMut(ImageFile) -> Result<ImageDir> + 'a;

struct Inode {
    dev: u64,
    ino: u64,
    inode_id: u32,
    /// The file id mappings of it share, once one is met.
    map_id: Option<u32>,
}

/// The shared memory files of a dump.
pub struct Memfds {
    pid: Pid,
    shmem_dev: u64,
    inodes: Vec<Inode>,
    pub entries: Vec<pb::MemfdInodeEntry>,
    /// The next `pages-<n>.img` number.
    next_pages: u32,
    /// (pid, fd, file id) of the memfd fds seen, for kcmp.
    fds: Vec<(Pid, i32, u32)>,
    /// CRIU's `shpages_scanned` and `shpages_written`: the pages of the
    /// files looked at, and those written.
    pub pages_scanned: u64,
    pub pages_written: u64,
}

/// Whether an fd's link names a memfd.
pub fn is_memfd_link(link: &Path) -> bool {
    link.as_os_str().as_bytes().starts_with(b"/memfd:")
}

/// The device of the kernel's shmem mount, found with a memfd of rcriu's.
fn shmem_dev(pid: Pid) -> Result<u64> {
    let fd = rustix::fs::memfd_create("rcriu-probe", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| Error::sys("creating a memfd to find the shmem device", pid)(e.into()))?;
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| Error::sys("reading the shmem device", pid)(e.into()))?;
    Ok(st.st_dev)
}

/// The name CRIU keeps: the link without ` (deleted)`, without `/memfd:`.
fn inode_name(link: &Path) -> Vec<u8> {
    let b = link.as_os_str().as_bytes();
    let b = b.strip_suffix(b" (deleted)").unwrap_or(b);
    b.strip_prefix(b"/memfd:").unwrap_or(b).to_vec()
}

impl Memfds {
    pub fn new(pid: Pid) -> Result<Memfds> {
        Ok(Memfds {
            pid,
            shmem_dev: shmem_dev(pid)?,
            inodes: Vec::new(),
            entries: Vec::new(),
            next_pages: 1,
            fds: Vec::new(),
            pages_scanned: 0,
            pages_written: 0,
        })
    }

    /// Whether `file` is of the shmem mount (`Some(None)`) or of hugetlbfs
    /// (`Some(Some(memfd_create's hugetlb flags))`), or neither.
    pub fn kind(&self, info: &FileInfo, file: &File) -> Result<Option<Option<u32>>> {
        if info.dev == self.shmem_dev {
            return Ok(Some(None));
        }
        let pid = self.pid;
        let fs = rustix::fs::fstatfs(file).map_err(|e| Error::file(pid, &info.path)(e.into()))?;
        if fs.f_type as u64 != HUGETLBFS_MAGIC {
            return Ok(None);
        }
        let st = rustix::fs::fstat(file).map_err(|e| Error::file(pid, &info.path)(e.into()))?;
        let page = st.st_blksize as u64;
        if !page.is_power_of_two() {
            return Ok(None);
        }
        Ok(Some(Some(
            libc::MFD_HUGETLB | page.trailing_zeros() << crate::mm::HUGE_SHIFT,
        )))
    }

    /// Turns to process `pid` of the same tree.
    pub fn set_process(&mut self, pid: Pid) {
        self.pid = pid;
    }

    /// The number of a task's own pages image (after every inode's met
    /// so far), taken: the next task or inode gets the next.
    pub fn take_pages_id(&mut self) -> u32 {
        let id = self.next_pages;
        self.next_pages += 1;
        id
    }

    /// The file id of a shared mapping (or a private one) of a shmem
    /// file, open as `file`, writing its inode when new.
    pub fn mapping(
        &mut self,
        table: &mut Files,
        info: &FileInfo,
        file: &File,
        hugetlb: Option<u32>,
        create: &mut Create<'_>,
    ) -> Result<u32> {
        let at = self.inode(info, file, hugetlb, create)?;
        if let Some(id) = self.inodes[at].map_id {
            return Ok(id);
        }
        let id = table.next_id();
        self.inodes[at].map_id = Some(id);
        table
            .entries
            .push(entry(id, 0, 0, 0, self.inodes[at].inode_id));
        Ok(id)
    }

    /// The file id of an open memfd, writing its entries when new.
    pub fn fd(&mut self, table: &mut Files, f: &OpenFd, create: &mut Create<'_>) -> Result<u32> {
        let pid = self.pid;
        for &(p, other, id) in &self.fds {
            let same = sys::same_file(p, other, pid, f.fd)
                .map_err(Error::sys("comparing open files (kcmp)", pid))?;
            if same {
                self.fds.push((pid, f.fd, id));
                return Ok(id);
            }
        }
        let Some(hugetlb) = self.kind(&f.info, &f.file)? else {
            return Err(Error::unsupported(
                self.pid,
                format!(
                    "fd {}: a memfd neither of shmem nor of hugetlbfs ({})",
                    f.fd,
                    f.info.path.display()
                ),
            ));
        };
        let at = self.inode(&f.info, &f.file, hugetlb, create)?;
        let id = table.next_id();
        self.fds.push((self.pid, f.fd, id));
        let signum = sys::owner_signal(f.file.as_fd()).map_err(Error::sys(
            "reading an open file's signal (F_GETSIG)",
            self.pid,
        ))?;
        let flags = f.fdinfo.flags & !(libc::O_CLOEXEC as u32);
        table.entries.push(entry(
            id,
            flags,
            f.fdinfo.pos as u64,
            signum,
            self.inodes[at].inode_id,
        ));
        Ok(id)
    }

    /// The index of the inode of `info`, dumped when new.
    fn inode(
        &mut self,
        info: &FileInfo,
        file: &File,
        hugetlb: Option<u32>,
        create: &mut Create<'_>,
    ) -> Result<usize> {
        if let Some(i) = self
            .inodes
            .iter()
            .position(|n| n.dev == info.dev && n.ino == info.ino)
        {
            return Ok(i);
        }
        let pid = self.pid;
        let st = rustix::fs::fstat(file).map_err(|e| Error::file(pid, &info.path)(e.into()))?;
        let seals = match rustix::fs::fcntl_get_seals(file) {
            Ok(s) => s.bits(),
            // Old kernels' hugetlb files cannot be sealed: CRIU says SEAL.
            Err(rustix::io::Errno::INVAL) if hugetlb.is_some() => libc::F_SEAL_SEAL as u32,
            Err(e) => return Err(Error::file(pid, &info.path)(e.into())),
        };
        // The shmid is the inode number, as CRIU cuts it to 32 bits.
        let shmid = info.ino as u32;
        let inode_id = self.inodes.len() as u32 + 1;
        self.dump_contents(file, &info.path, shmid, st.st_size as u64, create)?;
        self.entries.push(pb::MemfdInodeEntry {
            name: inode_name(&info.path),
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            shmid,
            seals,
            inode_id: inode_id.into(),
            hugetlb_flag: hugetlb,
            mode: Some(st.st_mode),
        });
        self.inodes.push(Inode {
            dev: info.dev,
            ino: info.ino,
            inode_id,
            map_id: None,
        });
        Ok(self.inodes.len() - 1)
    }

    /// Writes the memory of SysV shm segment `shmid` (`size` bytes, open
    /// as `f`) as a memfd's: `pagemap-shmem-<shmid>.img` and a pages image
    /// of its own (CRIU 4.2's `in_pagemaps`).
    pub fn sysv(&mut self, f: &File, shmid: u32, size: u64, create: &mut Create<'_>) -> Result<()> {
        let path = format!("SysV shm segment {shmid}");
        self.dump_contents(f, Path::new(&path), shmid, size, create)
    }

    /// Writes the pages of the file `f` (`size` bytes) to its own pagemap
    /// and pages images.
    fn dump_contents(
        &mut self,
        f: &File,
        path: &Path,
        shmid: u32,
        size: u64,
        create: &mut Create<'_>,
    ) -> Result<()> {
        if size == 0 {
            return Ok(());
        }
        let pid = self.pid;
        let runs = data_runs(size.div_ceil(PAGE), |pfn| data_segment(f, pfn))
            .map_err(Error::file(pid, path))?;
        self.pages_scanned += size.div_ceil(PAGE);
        self.pages_written += runs.iter().map(|(_, nr)| nr).sum::<u64>();
        let pages_id = self.next_pages;
        self.next_pages += 1;
        let dir = create(ImageFile::ShmemPagemap(shmid.into()))?;
        create(ImageFile::Pages(pages_id.into()))?;
        let mut pm = dir
            .create_shmem_pagemap(shmid, pages_id)
            .map_err(Error::image(pid))?;
        let mut pages = dir.create_pages(pages_id).map_err(Error::image(pid))?;
        // Our own reading description: the fd's position stays.
        let own = File::open(format!("/proc/self/fd/{}", f.as_raw_fd()));
        let src = own.as_ref().unwrap_or(f);
        let mut buf = vec![0u8; 1 << 20];
        for (first, nr) in runs {
            pm.add(first * PAGE, nr, PE_PRESENT)
                .map_err(Error::image(pid))?;
            let (mut at, end) = (first * PAGE, (first + nr) * PAGE);
            while at < end {
                let n = ((end - at) as usize).min(buf.len());
                read_full(src, &mut buf[..n], at).map_err(Error::file(pid, path))?;
                pages.write_pages(&buf[..n]).map_err(Error::image(pid))?;
                at += n as u64;
            }
        }
        pm.finish().map_err(Error::image(pid))?;
        Ok(())
    }
}

/// Reads `buf.len()` bytes at `off`, zeros past the end of the file (the
/// last page of a file whose size is not a page multiple).
fn read_full(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `(next data page, next hole page)` at or after page `pfn`; both
/// `u64::MAX` when no data follows.
fn data_segment(f: &File, pfn: u64) -> std::io::Result<(u64, u64)> {
    let data = match rustix::fs::seek(f, rustix::fs::SeekFrom::Data(pfn * PAGE)) {
        Ok(off) => off,
        Err(rustix::io::Errno::NXIO) => return Ok((u64::MAX, u64::MAX)),
        Err(e) => return Err(e.into()),
    };
    let hole = rustix::fs::seek(f, rustix::fs::SeekFrom::Hole(data))?;
    Ok((data / PAGE, hole / PAGE))
}

/// The runs `(first page, pages)` of a file of `nr` pages that CRIU
/// dumps, given its data segments.
fn data_runs(
    nr: u64,
    mut segment: impl FnMut(u64) -> std::io::Result<(u64, u64)>,
) -> std::io::Result<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let (mut data, mut hole) = (0u64, 0u64);
    for pfn in 0..nr {
        if pfn >= hole {
            (data, hole) = segment(pfn)?;
        }
        if pfn < data {
            continue;
        }
        match runs.last_mut() {
            Some((first, n)) if *first + *n == pfn => *n += 1,
            _ => runs.push((pfn, 1)),
        }
    }
    Ok(runs)
}

/// An fd's fdinfo entry, typed MEMFD.
pub fn fdinfo_entry(mut e: pb::FdinfoEntry) -> pb::FdinfoEntry {
    e.r#type = pb::FdTypes::Memfd as i32;
    e
}

fn entry(id: u32, flags: u32, pos: u64, signum: u32, inode_id: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Memfd as i32,
        id,
        memfd: Some(Box::new(pb::MemfdFileEntry {
            id,
            flags,
            pos,
            fown: pb::FownEntry {
                uid: 0,
                euid: 0,
                signum,
                pid_type: 0,
                pid: 0,
            },
            inode_id,
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_criu_walk() {
        // 9 pages, data in 0..5 and from 6 to the end (a partial page 8).
        let segs = |pfn: u64| {
            Ok(match pfn {
                0..5 => (0, 5),
                5..=7 => (6, 8),
                _ => (8, 8),
            })
        };
        assert_eq!(data_runs(9, segs).unwrap(), [(0, 5), (6, 3)]);
        let none = |_| Ok((u64::MAX, u64::MAX));
        assert!(data_runs(4, none).unwrap().is_empty());
    }

    #[test]
    fn names_as_criu_keeps_them() {
        assert_eq!(
            inode_name(Path::new("/memfd:rcriu-mem (deleted)")),
            b"rcriu-mem"
        );
        assert_eq!(inode_name(Path::new("/dev/zero (deleted)")), b"/dev/zero");
    }
}
