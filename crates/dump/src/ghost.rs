//! Ghost files: an open regular file with no name left is saved whole in
//! `ghost-file-<id>.img` (ids from 1, one per inode; a FIFO or a
//! directory with no name left by its mode alone, a FIFO's bytes going
//! with the FIFO's), and a
//! `remap_file_path_entry` in `remap-fpath.img` ties each file entry to
//! its ghost. A restore makes the file again, opens it by its old name
//! and removes the name.
//!
//! As CRIU: files of 12 KiB and more are stored as chunks (one
//! `ghost_chunk_entry` and its bytes per extent the filesystem reports
//! with FIEMAP, or per data region between holes); smaller ones as their
//! bytes right after the entry. A file taking more than the ghost limit
//! on disk is refused.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use rcriu_images::{ImageDir, ImageFile, ImageWriter, pb};
use rcriu_proc::Pid;

use crate::files::{FileInfo, OpenFd};
use crate::{Error, Result, files_sys};

/// Files this big or bigger are stored in chunks.
const CHUNKS_FROM: u64 = 3 * 4096;

#[derive(Debug)]
struct Pending {
    id: u32,
    entry: pb::GhostFileEntry,
    /// The file to copy, for a regular file.
    file: Option<File>,
    /// What the process holds it as, for errors.
    what: String,
}

/// The ghost files of a dump.
#[derive(Debug, Default)]
pub struct Ghosts {
    /// (dev, ino) → ghost id.
    known: Vec<(u64, u64, u32)>,
    pending: Vec<Pending>,
}

impl Ghosts {
    /// The remap of file entry `orig_id`, the deleted file open as `f`;
    /// its ghost is made when its inode is new.
    pub fn remap(
        &mut self,
        pid: Pid,
        limit: u64,
        orig_id: u32,
        f: &OpenFd,
    ) -> Result<pb::RemapFilePathEntry> {
        let what = format!("fd {}", f.fd);
        let mut r = self.remap_file(pid, limit, orig_id, &f.info, what, || {
            f.reopen_for_reading(pid)
        });
        // A symbolic link (open with O_PATH|O_NOFOLLOW): its target, read
        // through rcriu's copy, as CRIU's `symlnk_target`.
        if let Ok(remap) = &r
            && f.info.mode & libc::S_IFMT == libc::S_IFLNK
            && let Some(p) = self.pending.iter_mut().find(|p| p.id == remap.remap_id)
            && p.entry.symlnk_target.is_none()
        {
            match rustix::fs::readlinkat(&f.file, "", Vec::new()) {
                Ok(t) => p.entry.symlnk_target = Some(t.into_bytes()),
                Err(e) => {
                    r = Err(ghost_err(pid, &format!("fd {}", f.fd))(e.into()));
                }
            }
        }
        r
    }

    /// The remap of file entry `orig_id`, the deleted file `i` (`what`
    /// the process holds it as: an fd, a mapping, its cwd); `reopen`
    /// opens a regular one for reading.
    pub fn remap_file(
        &mut self,
        pid: Pid,
        limit: u64,
        orig_id: u32,
        i: &FileInfo,
        what: String,
        reopen: impl FnOnce() -> Result<File>,
    ) -> Result<pb::RemapFilePathEntry> {
        let on_disk = i.blocks * 512;
        if on_disk > limit {
            return Err(Error::GhostTooBig {
                pid,
                what,
                path: i.path.clone(),
                size: on_disk,
                limit,
            });
        }
        let id = match self.known.iter().find(|k| k.0 == i.dev && k.1 == i.ino) {
            Some(k) => k.2,
            None => {
                let id = self.known.len() as u32 + 1;
                self.known.push((i.dev, i.ino, id));
                let regular = i.mode & libc::S_IFMT == libc::S_IFREG;
                let chunks = regular && i.size >= CHUNKS_FROM;
                let timeval = |(sec, nsec): (i64, u32)| pb::Timeval {
                    tv_sec: sec as u64,
                    tv_usec: u64::from(nsec / 1000),
                };
                let entry = pb::GhostFileEntry {
                    uid: i.uid,
                    gid: i.gid,
                    mode: i.mode,
                    // The kernel's encoding (major << 20 | minor), as CRIU.
                    dev: Some(
                        (rustix::fs::major(i.dev) << 20) | (rustix::fs::minor(i.dev) & 0xf_ffff),
                    ),
                    ino: Some(i.ino),
                    // A device's number, as CRIU stores st_rdev.
                    rdev: (i.mode & libc::S_IFMT == libc::S_IFCHR
                        || i.mode & libc::S_IFMT == libc::S_IFBLK)
                        .then_some(i.rdev as u32),
                    atim: Some(timeval(i.atime)),
                    mtim: Some(timeval(i.mtime)),
                    chunks: chunks.then_some(true),
                    size: chunks.then_some(i.size),
                    symlnk_target: None,
                };
                self.pending.push(Pending {
                    id,
                    entry,
                    file: match regular {
                        true => Some(reopen()?),
                        false => None,
                    },
                    what,
                });
                id
            }
        };
        Ok(pb::RemapFilePathEntry {
            orig_id,
            remap_id: id,
            remap_type: Some(pb::RemapType::Ghost as i32),
        })
    }

    /// Whether a ghost of the dump is the file of device `dev` (as
    /// `stat` gives it) and inode `ino`.
    pub fn holds(&self, dev: u64, ino: u64) -> bool {
        self.known.iter().any(|k| k.0 == dev && k.1 == ino)
    }

    /// Writes the ghost files not written yet.
    pub fn write(
        &mut self,
        pid: Pid,
        create: &mut dyn FnMut(ImageFile) -> Result<ImageDir>,
    ) -> Result<()> {
        for g in self.pending.drain(..) {
            let file = ImageFile::GhostFile(g.id.into());
            let dir = create(file)?;
            let mut w = dir.writer(file).map_err(Error::image(pid))?;
            w.write(&g.entry).map_err(Error::image(pid))?;
            let Some(gf) = &g.file else {
                w.finish().map_err(Error::image(pid))?;
                continue;
            };
            let size = gf.metadata().map_err(ghost_err(pid, &g.what))?.len();
            if g.entry.chunks == Some(true) {
                for (off, len) in extents(gf, size).map_err(ghost_err(pid, &g.what))? {
                    w.write(&pb::GhostChunkEntry { len, off })
                        .map_err(Error::image(pid))?;
                    copy(gf, &mut w, off, len).map_err(|e| match e {
                        CopyError::Io(e) => ghost_err(pid, &g.what)(e),
                        CopyError::Image(e) => Error::image(pid)(e),
                    })?;
                }
            } else {
                copy(gf, &mut w, 0, size).map_err(|e| match e {
                    CopyError::Io(e) => ghost_err(pid, &g.what)(e),
                    CopyError::Image(e) => Error::image(pid)(e),
                })?;
            }
            w.finish().map_err(Error::image(pid))?;
        }
        Ok(())
    }
}

fn ghost_err(pid: Pid, what: &str) -> impl FnOnce(std::io::Error) -> Error {
    let path = format!("(the deleted file held as {what})").into();
    move |e| Error::File {
        pid,
        path,
        source: e,
    }
}

enum CopyError {
    Io(std::io::Error),
    Image(rcriu_images::Error),
}

/// Copies `len` bytes of `file` from `off` as the payload of the entry
/// just written.
fn copy<W: std::io::Write>(
    file: &File,
    w: &mut ImageWriter<W>,
    off: u64,
    len: u64,
) -> std::result::Result<(), CopyError> {
    let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
    let mut done = 0u64;
    while done < len {
        let n = ((len - done) as usize).min(buf.len());
        let got = file
            .read_at(&mut buf[..n], off + done)
            .map_err(CopyError::Io)?;
        if got == 0 {
            return Err(CopyError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended at {}, {len} bytes were due from {off}",
                    off + done
                ),
            )));
        }
        w.write_payload(&buf[..got]).map_err(CopyError::Image)?;
        done += got as u64;
    }
    Ok(())
}

/// The (offset, length) chunks of a file of `size` bytes, as CRIU finds
/// them: FIEMAP extents (cut at the size), else the data regions between
/// holes.
fn extents(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(batch) = files_sys::fiemap(file.as_fd(), pos)? else {
            return data_regions(file, size);
        };
        if batch.is_empty() {
            return Ok(out);
        }
        let full = batch.len() == 16;
        for e in batch {
            if e.offset > size {
                continue;
            }
            let len = e.len.min(size - e.offset);
            out.push((e.offset, len));
            pos = e.offset + len;
            if e.last {
                return Ok(out);
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

/// The data regions of a file (SEEK_DATA / SEEK_HOLE).
fn data_regions(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let mut out = Vec::new();
    let mut hole = 0u64;
    while hole < size {
        let data = match seek(file, SeekFrom::Data(hole)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) if hole == 0 => {
                out.push((0, size));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        hole = seek(file, SeekFrom::Hole(data))?;
        out.push((data, hole - data));
    }
    Ok(out)
}
