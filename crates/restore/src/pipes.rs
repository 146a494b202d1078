//! Pipes and FIFOs: each pipe is made once (both ends), sized as it was
//! (`F_SETPIPE_SZ`) and filled with the bytes `pipes-data.img` kept; every
//! `pipe_entry` takes the end its flags name. A second open file on the
//! same end (the pipe reopened through /proc) is opened again through
//! /proc. An end no fd of the dump holds is closed, as CRIU does: a pipe
//! whose other end was outside the dump comes back with that end gone,
//! unless the caller gives an fd for it (`--inherit-fd fd[N]:pipe:[INODE]`,
//! conmon's and runc's stdio), which then stands for every open file of
//! that pipe.
//!
//! FIFOs are opened by path, with a read-write opener held meanwhile so
//! that no open blocks, and their bytes (`fifo-data.img`) are written
//! through it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result, files_sys};

/// What a pipe or FIFO held: its size and its bytes.
#[derive(Debug, Default)]
pub struct Data {
    image: String,
    by_pipe: BTreeMap<u32, (Option<u32>, Vec<u8>)>,
}

/// The most bytes a pipe holds (the kernel's pipe-max-size default is 1
/// MiB; a larger count is a corrupt image).
const MAX_PIPE_BYTES: u32 = 1 << 28;

impl Data {
    /// Reads `pipes-data.img` or `fifo-data.img`.
    pub fn load(dir: &ImageDir, file: ImageFile) -> Result<Data> {
        let mut d = Data {
            image: file.name(),
            ..Data::default()
        };
        if !dir.exists(file) {
            return Ok(d);
        }
        let mut r = dir.reader(file)?;
        while let Some(e) = r.read_next::<pb::PipeDataEntry>()? {
            if e.bytes > MAX_PIPE_BYTES {
                return Err(Error::invalid(
                    file.name(),
                    format!("pipe {:#x} holding {} bytes", e.pipe_id, e.bytes),
                ));
            }
            let bytes = r.read_payload(u64::from(e.bytes))?;
            if d.by_pipe.insert(e.pipe_id, (e.size, bytes)).is_some() {
                return Err(Error::invalid(
                    file.name(),
                    format!("pipe {:#x} twice", e.pipe_id),
                ));
            }
        }
        Ok(d)
    }

    /// Sizes the pipe whose write end is `wr` (non-blocking) and writes
    /// its bytes back.
    fn refill(&self, pipe_id: u32, wr: &OwnedFd, what: &str) -> Result<()> {
        let Some((size, bytes)) = self.by_pipe.get(&pipe_id) else {
            return Ok(());
        };
        let image = &self.image;
        let err = |e: std::io::Error| Error::io(format!("refilling {what} from {image}"))(e);
        if let Some(size) = size {
            let have = rustix::pipe::fcntl_getpipe_size(wr).map_err(|e| err(e.into()))?;
            if have != *size as usize {
                rustix::pipe::fcntl_setpipe_size(wr, *size as usize).map_err(|e| err(e.into()))?;
            }
        }
        let mut done = 0;
        while done < bytes.len() {
            match rustix::io::write(wr, &bytes[done..]) {
                Ok(n) => done += n,
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(Error::invalid(
                        image,
                        format!(
                            "{what} holds {} bytes, more than its size takes",
                            bytes.len()
                        ),
                    ));
                }
                Err(e) => return Err(err(e.into())),
            }
        }
        Ok(())
    }
}

/// The pipes of a restore.
#[derive(Debug)]
pub struct Pipes {
    data: Data,
    /// pipe id → (read end, write end), each taken by its first entry.
    made: BTreeMap<u32, [Option<OwnedFd>; 2]>,
    /// pipe id → a copy of each end, to reopen from: of the ends more
    /// than one open file holds (or one opened through /proc).
    copies: BTreeMap<u32, [Option<OwnedFd>; 2]>,
    /// `(pipe id, end)` of those ends.
    reopened: std::collections::HashSet<(u32, usize)>,
    /// pipe id → the caller's fd that stands for it (`--inherit-fd`).
    inherited: BTreeMap<u32, OwnedFd>,
    /// The pipe ids of the images.
    ids: std::collections::HashSet<u32>,
}

/// The kernel's O_LARGEFILE on x86_64 (libc's is 0: the C library adds
/// it itself).
const O_LARGEFILE: u32 = 0o100000;

fn end_of(flags: u32) -> usize {
    usize::from(flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32)
}

impl Pipes {
    /// The pipes of the dump in `dir`, whose open files are `files`.
    pub fn load<'f>(
        dir: &ImageDir,
        files: impl Iterator<Item = &'f pb::FileEntry>,
    ) -> Result<Pipes> {
        let mut seen = std::collections::HashSet::new();
        let mut reopened = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for p in files.filter_map(|f| f.pipe.as_deref()) {
            ids.insert(p.pipe_id);
            let end = (p.pipe_id, end_of(p.flags));
            if !seen.insert(end) || p.flags & O_LARGEFILE != 0 {
                reopened.insert(end);
            }
        }
        Ok(Pipes {
            data: Data::load(dir, ImageFile::PipesData)?,
            made: BTreeMap::new(),
            copies: BTreeMap::new(),
            reopened,
            inherited: BTreeMap::new(),
            ids,
        })
    }

    /// Takes the caller's fds given for pipes of the images
    /// (`--inherit-fd fd[N]:pipe:[INODE]`): every open file of such a
    /// pipe becomes a copy of that fd, whatever end the dump held, and
    /// nothing of the pipe's is made or refilled (its other end was the
    /// caller's, and so are its bytes).
    pub fn inherit(&mut self, keys: &[(i32, String)]) -> Result<()> {
        for (fd, key) in keys {
            let Some(ino) = key
                .strip_prefix("pipe:[")
                .and_then(|k| k.strip_suffix(']'))
                .and_then(|k| k.parse::<u32>().ok())
            else {
                continue;
            };
            if !self.ids.contains(&ino) {
                continue;
            }
            let copy = crate::sys::dup_inherited(*fd).map_err(Error::io(format!(
                "taking fd {fd}, given for {key} (--inherit-fd)"
            )))?;
            self.inherited.insert(ino, copy);
        }
        Ok(())
    }

    /// The open file of a `pipe_entry`.
    pub fn open(&mut self, e: &pb::PipeEntry) -> Result<OwnedFd> {
        let what = format!("pipe:[{}]", e.pipe_id);
        let host = |w: &'static str| Error::host(w);
        if let Some(given) = self.inherited.get(&e.pipe_id) {
            let fd = given
                .try_clone()
                .map_err(Error::io(format!("copying the fd given for {what}")))?;
            files_sys::set_status_flags(fd.as_fd(), status_flags(e.flags))
                .map_err(Error::io(format!("setting the flags of {what}")))?;
            return Ok(fd);
        }
        if !self.made.contains_key(&e.pipe_id) {
            let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
            let (rd, wr) = rustix::pipe::pipe_with(flags)
                .map_err(|err| host("creating a pipe")(err.into()))?;
            self.data.refill(e.pipe_id, &wr, &what)?;
            let copy = |fd: &OwnedFd, end: usize| -> Result<Option<OwnedFd>> {
                if !self.reopened.contains(&(e.pipe_id, end)) {
                    return Ok(None);
                }
                fd.try_clone()
                    .map(Some)
                    .map_err(host("copying a pipe's end"))
            };
            let copies = [copy(&rd, 0)?, copy(&wr, 1)?];
            self.copies.insert(e.pipe_id, copies);
            self.made.insert(e.pipe_id, [Some(rd), Some(wr)]);
        }
        let end = end_of(e.flags);
        let taken = self.made.get_mut(&e.pipe_id).and_then(|p| p[end].take());
        // An end opened through /proc has O_LARGEFILE, which only an open
        // gives: such an end is opened again the same way.
        let fd = match taken {
            Some(fd) if e.flags & O_LARGEFILE == 0 => fd,
            _ => {
                let copy = self.copies[&e.pipe_id][end].as_ref().ok_or_else(|| {
                    Error::invalid(
                        ImageFile::Files.name(),
                        format!("{what}: an end opened again that no entry counts twice"),
                    )
                })?;
                reopen(copy, e.flags, &what)?
            }
        };
        files_sys::set_status_flags(fd.as_fd(), status_flags(e.flags))
            .map_err(Error::io(format!("setting the flags of {what}")))?;
        Ok(fd)
    }
}

/// The flags `F_SETFL` takes of an open file's flags.
fn status_flags(flags: u32) -> i32 {
    (flags as i32)
        & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME)
}

/// Another open file on the same pipe end.
fn reopen(fd: &OwnedFd, flags: u32, what: &str) -> Result<OwnedFd> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let f = std::fs::OpenOptions::new()
        .read(end_of(flags) == 0)
        .write(end_of(flags) == 1)
        .custom_flags(libc::O_CLOEXEC)
        .open(&link)
        .map_err(Error::file("reopening", what))?;
    Ok(f.into())
}

/// The FIFOs of a restore.
#[derive(Debug)]
pub struct Fifos {
    data: Data,
    /// pipe id (the FIFO's inode) → a read-write opener.
    openers: BTreeMap<u32, File>,
}

impl Fifos {
    pub fn load(dir: &ImageDir) -> Result<Fifos> {
        Ok(Fifos {
            data: Data::load(dir, ImageFile::FifoData)?,
            openers: BTreeMap::new(),
        })
    }

    /// The open file of a `fifo_entry` whose path entry is `reg`.
    pub fn open(
        &mut self,
        e: &pb::FifoEntry,
        reg: &pb::RegFileEntry,
        path: &Path,
    ) -> Result<OwnedFd> {
        if !self.openers.contains_key(&e.pipe_id) {
            let opener = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(path)
                .map_err(Error::file("opening the FIFO", path))?;
            let meta = opener
                .metadata()
                .map_err(Error::file("checking the FIFO", path))?;
            if !std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
                return Err(Error::Validation {
                    path: path.to_owned(),
                    what: "is not a FIFO any more".into(),
                });
            }
            let wr: OwnedFd = opener
                .try_clone()
                .map_err(Error::file("opening the FIFO", path))?
                .into();
            self.data
                .refill(e.pipe_id, &wr, &format!("the FIFO {}", path.display()))?;
            self.openers.insert(e.pipe_id, opener);
        }
        let flags = reg.flags as i32;
        let f = std::fs::OpenOptions::new()
            .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
            .custom_flags(
                (flags & !libc::O_ACCMODE & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC))
                    | libc::O_CLOEXEC,
            )
            .open(path)
            .map_err(Error::file("opening the FIFO", path))?;
        Ok(f.into())
    }
}
