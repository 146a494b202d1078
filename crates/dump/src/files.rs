//! `files.img` and `fdinfo-<files_id>.img`: the files the task maps and
//! holds open, numbered as CRIU 4.2 numbers them.
//!
//! One counter numbers every file entry, in the order CRIU writes them:
//! the mapped files (area by area), the open fds, the exe (when no mapping
//! already named it), then cwd and root. A mapped file, the exe, cwd and
//! root reuse the id of an earlier entry of the same file (device, inode
//! and mount; the latest one first) — except directories and devices,
//! which get a fresh id each time (CRIU tests the mode's type bits with a
//! mask that catches both). Open fds share an id when they are the same
//! open file description (kcmp), as dup'ed fds are.
//!
//! In scope: regular files opened read-only, and /dev/null however it was
//! opened. Anything else is refused, naming the fd.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rcriu_images::pb;
use rcriu_proc::{Fd, FdInfo, FdTarget, Pid};

use crate::{Error, Result, sys};

/// What a file entry needs to know of a file.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
    pub mnt_id: i64,
}

impl FileInfo {
    /// The facts of the file open as `f`, whose name (from its link) is
    /// `path`.
    pub fn of(pid: Pid, f: BorrowedFd<'_>, path: &Path) -> Result<FileInfo> {
        let st = rustix::fs::statx(
            f,
            "",
            rustix::fs::AtFlags::EMPTY_PATH,
            rustix::fs::StatxFlags::BASIC_STATS | rustix::fs::StatxFlags::MNT_ID,
        )
        .map_err(|e| Error::file(pid, path)(e.into()))?;
        Ok(FileInfo {
            path: path.to_owned(),
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            mode: u32::from(st.stx_mode),
            size: st.stx_size,
            mnt_id: st.stx_mnt_id as i64,
        })
    }

    fn is_reg(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// CRIU's `st_mode & (S_IFCHR | S_IFBLK)`: true for character and
    /// block devices, and for directories too.
    fn never_shared(&self) -> bool {
        self.mode & (libc::S_IFCHR | libc::S_IFBLK) != 0
    }
}

/// Checks that `path` still names the file (CRIU would otherwise need a
/// link remap, which rcriu cannot make yet).
pub fn check_path(pid: Pid, what: &str, info: &FileInfo) -> Result<()> {
    match std::fs::metadata(&info.path) {
        Ok(m) if m.dev() == info.dev && m.ino() == info.ino => Ok(()),
        _ => Err(Error::unsupported(
            pid,
            format!(
                "{what} {}, whose path no longer names it (removed or replaced)",
                info.path.display()
            ),
        )),
    }
}

/// An open file of the task, as its fd table holds it.
#[derive(Debug)]
pub struct OpenFd {
    pub fd: i32,
    /// Our copy (from the parasite): the same open file description.
    pub file: File,
    pub info: FileInfo,
    pub fdinfo: FdInfo,
}

/// Refuses fds out of scope, from what /proc says (before the task is
/// touched): only /dev/null and regular files opened read-only pass.
pub fn check_fd(pid: Pid, fd: &Fd, fdinfo: &FdInfo) -> Result<()> {
    let refuse = |what: String| Error::unsupported(pid, format!("fd {}: {what}", fd.fd));
    let path = match fd.target() {
        FdTarget::Path {
            path,
            deleted: false,
        } => path,
        FdTarget::Path {
            path,
            deleted: true,
        } => return Err(refuse(format!("deleted file {}", path.display()))),
        FdTarget::Pipe(_) => return Err(refuse("a pipe".into())),
        FdTarget::Socket(_) => return Err(refuse("a socket".into())),
        FdTarget::AnonInode(kind) => return Err(refuse(format!("{kind} (an anonymous inode)"))),
        FdTarget::Inode { kind, .. } => return Err(refuse(format!("a {kind} file"))),
        FdTarget::Other(link) => {
            return Err(refuse(format!(
                "an unknown file ({})",
                String::from_utf8_lossy(&link)
            )));
        }
    };
    if fdinfo.flags & libc::O_PATH as u32 != 0 {
        return Err(refuse(format!("{} opened with O_PATH", path.display())));
    }
    if !fdinfo.locks.is_empty() {
        return Err(refuse(format!("a lock on {}", path.display())));
    }
    // The link, followed: the file itself, not opened again.
    let link = format!("/proc/{pid}/fd/{}", fd.fd);
    let m = std::fs::metadata(&link).map_err(Error::file(pid, &link))?;
    let ft = m.mode() & libc::S_IFMT;
    if ft == libc::S_IFCHR && m.rdev() == rustix::fs::makedev(1, 3) {
        return Ok(());
    }
    if ft != libc::S_IFREG {
        let kind = match ft {
            libc::S_IFDIR => "a directory",
            libc::S_IFCHR => "a character device",
            libc::S_IFBLK => "a block device",
            libc::S_IFIFO => "a FIFO",
            _ => "a special file",
        };
        return Err(refuse(format!("{kind} ({})", path.display())));
    }
    if fdinfo.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
        return Err(refuse(format!("{} opened for writing", path.display())));
    }
    Ok(())
}

/// The file entries of a dump, and their numbering.
#[derive(Debug)]
pub struct Files {
    pid: Pid,
    next: u32,
    /// (dev, ino, mnt_id) → id, latest first when searched.
    cache: Vec<(u64, u64, i64, u32)>,
    pub entries: Vec<pb::FileEntry>,
    /// fd → id of the fds seen, for kcmp.
    fds: Vec<(i32, u32)>,
}

fn fown(signum: u32) -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum,
        pid_type: 0,
        pid: 0,
    }
}

impl Files {
    pub fn new(pid: Pid) -> Files {
        Files {
            pid,
            next: 1,
            cache: Vec::new(),
            entries: Vec::new(),
            fds: Vec::new(),
        }
    }

    fn fresh(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        id
    }

    /// A new file id, for an entry another module writes.
    pub fn next_id(&mut self) -> u32 {
        self.fresh()
    }

    fn cached(&self, info: &FileInfo) -> Option<u32> {
        self.cache
            .iter()
            .rev()
            .find(|(d, i, m, _)| *d == info.dev && *i == info.ino && *m == info.mnt_id)
            .map(|e| e.3)
    }

    /// The id of a file named outside the fd table (a mapped file, the
    /// exe, cwd, root), writing its entry when it is new. `file` is open
    /// on it, for its build-id.
    pub fn special(&mut self, info: &FileInfo, file: &File) -> Result<u32> {
        if let Some(id) = self.cached(info) {
            if !info.never_shared() {
                return Ok(id);
            }
            let id = self.fresh();
            self.push(id, info, 0, 0, 0, file)?;
            return Ok(id);
        }
        let id = self.fresh();
        self.cache.push((info.dev, info.ino, info.mnt_id, id));
        self.push(id, info, 0, 0, 0, file)?;
        Ok(id)
    }

    /// The id of an open fd, writing its entry unless an earlier fd is the
    /// same open file description.
    pub fn fd(&mut self, f: &OpenFd) -> Result<u32> {
        for &(other, id) in &self.fds {
            let same = sys::same_file(self.pid, other, f.fd)
                .map_err(Error::sys("comparing open files (kcmp)", self.pid))?;
            if same {
                self.fds.push((f.fd, id));
                return Ok(id);
            }
        }
        let id = self.fresh();
        self.fds.push((f.fd, id));
        self.cache.push((f.info.dev, f.info.ino, f.info.mnt_id, id));
        let signum = sys::owner_signal(f.file.as_fd()).map_err(Error::sys(
            "reading an open file's signal (F_GETSIG)",
            self.pid,
        ))?;
        // The kernel shows close-on-exec among the file's flags; it belongs
        // to the fd.
        let flags = f.fdinfo.flags & !(libc::O_CLOEXEC as u32);
        self.push(id, &f.info, flags, f.fdinfo.pos as u64, signum, &f.file)?;
        Ok(id)
    }

    fn push(
        &mut self,
        id: u32,
        info: &FileInfo,
        flags: u32,
        pos: u64,
        signum: u32,
        file: &File,
    ) -> Result<()> {
        // CRIU skips the size of write-only append files (logs).
        let append_only = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32
            && flags & libc::O_APPEND as u32 != 0;
        let validate = info.is_reg() && !append_only;
        let build_id = if validate {
            rcriu_images::build_id::build_id(file, info.size)
                .map_err(Error::file(self.pid, &info.path))?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags,
                pos,
                fown: fown(signum),
                name: info.path.as_os_str().as_bytes().to_vec(),
                mnt_id: None,
                size: validate.then_some(info.size),
                ext: None,
                mode: Some(info.mode),
                build_id,
                checksum: None,
                checksum_config: None,
                checksum_parameter: None,
            }),
            ..Default::default()
        });
        Ok(())
    }
}

/// The fdinfo entry of an fd.
pub fn fdinfo_entry(fd: i32, id: u32, fdinfo: &FdInfo) -> pb::FdinfoEntry {
    let cloexec = fdinfo.flags & libc::O_CLOEXEC as u32 != 0;
    pb::FdinfoEntry {
        id,
        flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
        r#type: pb::FdTypes::Reg as i32,
        fd: fd as u32,
        xattr_security_selinux: None,
    }
}

/// Checks the owner of an open file (F_SETOWN): none is in scope.
pub fn check_owner(pid: Pid, f: &OpenFd) -> Result<()> {
    let (_, owner) =
        sys::owner(f.file.as_fd()).map_err(Error::sys("reading an open file's owner", pid))?;
    if owner != 0 {
        return Err(Error::unsupported(
            pid,
            format!("fd {}: a file owner for signals (F_SETOWN {owner})", f.fd),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str) -> (FileInfo, File) {
        let f = File::open(path).unwrap();
        (FileInfo::of(1, f.as_fd(), Path::new(path)).unwrap(), f)
    }

    #[test]
    fn specials_share_ids_but_not_directories() {
        let mut files = Files::new(std::process::id() as Pid);
        let (exe, ef) = info("/proc/self/exe");
        let a = files.special(&exe, &ef).unwrap();
        let b = files.special(&exe, &ef).unwrap();
        assert_eq!((a, b), (1, 1));
        let (root, rf) = info("/");
        let c = files.special(&root, &rf).unwrap();
        let d = files.special(&root, &rf).unwrap();
        assert_eq!((c, d), (2, 3), "directories always get a fresh id");
        assert_eq!(files.entries.len(), 3);
        let e = files.entries[0].reg.as_ref().unwrap();
        assert_eq!(e.size, Some(exe.size));
        assert!(!e.build_id.is_empty());
        assert_eq!(files.entries[1].reg.as_ref().unwrap().size, None);
    }

    #[test]
    fn dup_fds_share_an_id() {
        let me = std::process::id() as Pid;
        let f = File::open("/proc/self/exe").unwrap();
        let g = f.try_clone().unwrap();
        let h = File::open("/proc/self/exe").unwrap();
        let mut files = Files::new(me);
        let open = |file: &File| {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            let copy = file.try_clone().unwrap();
            let info = FileInfo::of(me, copy.as_fd(), Path::new("/x")).unwrap();
            OpenFd {
                fd,
                file: copy,
                info,
                fdinfo: FdInfo::default(),
            }
        };
        let (a, b, c) = (open(&f), open(&g), open(&h));
        assert_eq!(files.fd(&a).unwrap(), 1);
        assert_eq!(files.fd(&b).unwrap(), 1);
        assert_eq!(files.fd(&c).unwrap(), 2);
        assert_eq!(files.entries.len(), 2);
    }
}
