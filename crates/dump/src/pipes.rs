//! Pipes: a `pipe_entry` in files.img per open end (the pipe's inode is
//! its `pipe_id`), and in `pipes-data.img` what is buffered in each pipe
//! one of whose read ends the task holds, with the pipe's size. FIFOs
//! keep their buffered bytes the same way in `fifo-data.img`.
//!
//! The bytes are copied with `tee(2)` into a pipe of rcriu's own while
//! the task is frozen (they stay in the task's pipe), then spliced into
//! the image.
//!
//! A pipe whose other end is held outside the dump is dumped as any
//! other: CRIU 4.2 does the same (no error, no option needed), and its
//! restore makes a new pipe whose other end is closed.

use std::os::fd::{AsFd, OwnedFd};

use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::Pid;

use crate::files::OpenFd;
use crate::{Error, Result};

/// The entry of one end of a pipe.
pub fn entry(id: u32, pipe_id: u32, flags: u32, fown: pb::FownEntry) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Pipe as i32,
        id,
        pipe: Some(Box::new(pb::PipeEntry {
            id,
            pipe_id,
            flags: flags & !(libc::O_DIRECT as u32),
            fown,
        })),
        ..Default::default()
    }
}

/// The bytes buffered in a pipe, copied into a pipe of rcriu's own.
#[derive(Debug)]
pub struct Captured {
    pub entry: pb::PipeDataEntry,
    /// The read end of the copy; `None` when the pipe was empty.
    copy: Option<OwnedFd>,
}

/// Copies what the pipe (or FIFO) `f` holds, unless `f` cannot read it
/// or the pipe's bytes are already in `seen`.
pub fn capture_once(pid: Pid, f: &OpenFd, seen: &[Captured]) -> Result<Option<Captured>> {
    if f.flags() & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32 {
        return Ok(None);
    }
    let pipe_id = f.info.ino as u32;
    if seen.iter().any(|c| c.entry.pipe_id == pipe_id) {
        return Ok(None);
    }
    let what = |w: &'static str| Error::sys(w, pid);
    let src = f.file.as_fd();
    let size = rustix::pipe::fcntl_getpipe_size(src)
        .map_err(|e| what("reading a pipe's size (F_GETPIPE_SZ)")(e.into()))?;
    let queued = rustix::io::ioctl_fionread(src)
        .map_err(|e| what("reading how much a pipe holds (FIONREAD)")(e.into()))?;
    let mut entry = pb::PipeDataEntry {
        pipe_id,
        bytes: 0,
        size: Some(size as u32),
    };
    if queued == 0 {
        return Ok(Some(Captured { entry, copy: None }));
    }
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| what("creating a pipe")(e.into()))?;
    rustix::pipe::fcntl_setpipe_size(&wr, size)
        .map_err(|e| what("sizing a pipe for the copy of a pipe (F_SETPIPE_SZ)")(e.into()))?;
    // One tee takes everything the copy has room for: the whole pipe (a
    // second call would copy the same bytes again).
    let bytes = match rustix::pipe::tee(src, &wr, size, rustix::pipe::SpliceFlags::NONBLOCK) {
        Ok(n) => n as u64,
        Err(rustix::io::Errno::AGAIN) => 0,
        Err(e) => return Err(what("copying a pipe's bytes (tee)")(e.into())),
    };
    if bytes != queued {
        return Err(Error::Inconsistent {
            pid,
            what: format!(
                "fd {}: a pipe holds {queued} bytes, only {bytes} could be copied",
                f.fd
            ),
        });
    }
    entry.bytes = bytes as u32;
    Ok(Some(Captured {
        entry,
        copy: Some(rd),
    }))
}

/// Writes `data` to `file` (pipes-data.img or fifo-data.img): each entry
/// followed by its bytes.
pub fn write(
    pid: Pid,
    file: ImageFile,
    data: &[Captured],
    create: &mut dyn FnMut(ImageFile) -> Result<ImageDir>,
) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let dir = create(file)?;
    let mut w = dir.writer(file).map_err(Error::image(pid))?;
    for c in data {
        w.write(&c.entry).map_err(Error::image(pid))?;
        let Some(copy) = &c.copy else { continue };
        let mut left = c.entry.bytes as usize;
        while left > 0 {
            let n = w.splice_payload(copy, left).map_err(Error::image(pid))?;
            if n == 0 {
                return Err(Error::Inconsistent {
                    pid,
                    what: format!(
                        "the copy of pipe {} ended {left} bytes early",
                        c.entry.pipe_id
                    ),
                });
            }
            left -= n;
        }
    }
    w.finish().map_err(Error::image(pid))?;
    Ok(())
}
