//! Files: the process's fds, and the files its mappings and cwd/root
//! refer to, opened as they were and checked as CRIU checks them.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcriu_images::{ImageFile, pb};

use crate::load::Images;
use crate::{Error, Result};

/// How opened and mapped files are checked against the dump (criu's
/// `--file-validation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileValidation {
    /// The size, and the ELF build-id when the dump has one (criu's
    /// default).
    #[default]
    BuildId,
    /// The size only.
    FileSize,
}

impl std::str::FromStr for FileValidation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "buildid" => Ok(FileValidation::BuildId),
            "filesize" => Ok(FileValidation::FileSize),
            other => Err(format!(
                "unknown file validation method {other:?} (buildid or filesize)"
            )),
        }
    }
}

/// `fd_types` of files.img that a restore handles so far.
const FD_TYPE_REG: i32 = 1;

/// Open flags that only matter at creation.
const CREATION_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;

fn path_of(reg: &pb::RegFileEntry) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&reg.name))
}

/// Opens a regular-file entry with `how` (O_RDONLY, ... or the entry's own
/// flags), then checks it against the dump.
pub fn open_reg(reg: &pb::RegFileEntry, how: i32, validation: FileValidation) -> Result<File> {
    let path = path_of(reg);
    let file = std::fs::OpenOptions::new()
        .read(how & libc::O_ACCMODE != libc::O_WRONLY)
        .write(how & libc::O_ACCMODE != libc::O_RDONLY)
        .custom_flags((how & !libc::O_ACCMODE & !CREATION_FLAGS) | libc::O_CLOEXEC)
        .open(&path)
        .map_err(Error::file("opening", &path))?;
    validate(&file, &path, reg, validation)?;
    Ok(file)
}

fn validate(file: &File, path: &Path, reg: &pb::RegFileEntry, how: FileValidation) -> Result<()> {
    let meta = file.metadata().map_err(Error::file("checking", path))?;
    if !meta.file_type().is_file() {
        return Ok(());
    }
    if let Some(size) = reg.size
        && size != meta.size()
    {
        return Err(Error::Validation {
            path: path.to_owned(),
            what: format!("has {} bytes, the dump had {size}", meta.size()),
        });
    }
    if how == FileValidation::BuildId && !reg.build_id.is_empty() {
        let have = rcriu_images::build_id::build_id(file, meta.size())
            .map_err(Error::file("reading the build-id of", path))?;
        match have {
            Some(have) if have == reg.build_id => {}
            Some(_) => {
                return Err(Error::Validation {
                    path: path.to_owned(),
                    what: "its ELF build-id differs from the dump's".into(),
                });
            }
            None => {
                return Err(Error::Validation {
                    path: path.to_owned(),
                    what: "has no ELF build-id, the dump had one".into(),
                });
            }
        }
    }
    Ok(())
}

/// The fds to place in the process.
#[derive(Debug, Default)]
pub struct FdPlan {
    /// `(target fd, cloexec, the open file)`, by target.
    pub fds: Vec<(i32, bool, OwnedFd)>,
}

/// Opens every fd of the process as it was (flags, position).
pub fn plan(img: &Images, validation: FileValidation) -> Result<FdPlan> {
    let files_id = img.task.ids.files_id;
    let from = ImageFile::Fdinfo(files_id.into());
    let mut plan = FdPlan::default();
    for e in &img.task.fdinfo {
        let fd = i32::try_from(e.fd)
            .map_err(|_| Error::invalid(from.name(), format!("bad fd {}", e.fd)))?;
        let entry = img.file(e.id, &from)?;
        if entry.memfd.is_some() {
            continue; // memfd.rs opens them
        }
        let reg = match (&entry.reg, entry.r#type) {
            (Some(reg), FD_TYPE_REG) => reg,
            _ => {
                return Err(Error::unsupported(format!(
                    "restoring fd {fd} of process {} ({})",
                    img.task.pid,
                    kind_name(entry)
                )));
            }
        };
        let file = open_reg(reg, reg.flags as i32, validation)?;
        let meta = file
            .metadata()
            .map_err(Error::file("checking", path_of(reg)))?;
        if meta.file_type().is_file() || reg.pos != 0 {
            use std::io::Seek;
            let mut f = &file;
            f.seek(std::io::SeekFrom::Start(reg.pos))
                .map_err(Error::file("positioning", path_of(reg)))?;
        }
        let cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
        plan.fds.push((fd, cloexec, file.into()));
    }
    plan.fds.sort_by_key(|(fd, _, _)| *fd);
    if let Some(w) = plan.fds.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::invalid(from.name(), format!("fd {} twice", w[0].0)));
    }
    Ok(plan)
}

fn kind_name(e: &pb::FileEntry) -> String {
    let known = [
        (e.pipe.is_some(), "a pipe"),
        (e.fifo.is_some(), "a fifo"),
        (e.usk.is_some(), "a unix socket"),
        (e.isk.is_some(), "an inet socket"),
        (e.psk.is_some(), "a packet socket"),
        (e.nlsk.is_some(), "a netlink socket"),
        (e.efd.is_some(), "an eventfd"),
        (e.epfd.is_some(), "an eventpoll"),
        (e.sgfd.is_some(), "a signalfd"),
        (e.tfd.is_some(), "a timerfd"),
        (e.ify.is_some(), "an inotify"),
        (e.ffy.is_some(), "a fanotify"),
        (e.tty.is_some(), "a tty"),
        (e.memfd.is_some(), "a memfd"),
        (e.tunf.is_some(), "a tun file"),
        (e.nsf.is_some(), "a namespace file"),
        (e.ext.is_some(), "an external file"),
        (e.bpf.is_some(), "a bpf map"),
        (e.pidfd.is_some(), "a pidfd"),
    ];
    known
        .iter()
        .find(|(present, _)| *present)
        .map_or_else(|| format!("file type {}", e.r#type), |(_, n)| n.to_string())
}

/// cwd, root and umask.
#[derive(Debug)]
pub struct FsPlan {
    pub cwd: OwnedFd,
    /// `None`: the process had rcriu's root.
    pub root: Option<OwnedFd>,
    pub umask: u32,
}

/// Opens the process's cwd and root directories.
pub fn plan_fs(img: &Images) -> Result<FsPlan> {
    let from = ImageFile::Fs(img.task.pid.into());
    let fs = &img.task.fs;
    let dir = |id: u32| -> Result<(PathBuf, OwnedFd)> {
        let entry = img.file(id, &from)?;
        let reg = entry.reg.as_ref().ok_or_else(|| {
            Error::invalid(
                from.name(),
                format!("file id {id} is not a directory entry"),
            )
        })?;
        let path = path_of(reg);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(Error::file("opening the directory", &path))?;
        Ok((path, f.into()))
    };
    let (_, cwd) = dir(fs.cwd_id)?;
    let (root_path, root) = dir(fs.root_id)?;
    // The same root as ours needs no chroot.
    let same_root = std::fs::metadata("/")
        .ok()
        .zip(std::fs::metadata(&root_path).ok())
        .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
    Ok(FsPlan {
        cwd,
        root: if same_root { None } else { Some(root) },
        umask: fs.umask.unwrap_or(0o022),
    })
}

/// Moves `fd` to a number at or above `min`, keeping it open as an
/// `OwnedFd` (the old number is closed).
pub fn renumber(fd: OwnedFd, min: i32) -> Result<OwnedFd> {
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    crate::sys::dup_above(fd.as_fd(), min).map_err(Error::host("moving an fd out of the way"))
}
