//! Memory images as streams: `pagemap-<pid>.img` (which runs of pages a
//! process had, and where their contents are) and the raw
//! `pages-<id>.img` (the contents of every run flagged PRESENT, back to
//! back, in pagemap order). Nothing here holds more than one buffer of
//! pages at a time.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::dir::ImageDir;
use crate::error::{Error, Problem, Result};
use crate::framing::{ImageReader, ImageWriter};
use crate::kind::Kind;
use crate::pb::{PagemapEntry, PagemapHead};

/// The page size of the images (x86_64).
pub const PAGE_SIZE: u64 = 4096;

/// `pagemap_entry.flags`: the pages are in the parent dump's images.
pub const PE_PARENT: u32 = 1 << 0;
/// `pagemap_entry.flags`: the pages may be served lazily.
pub const PE_LAZY: u32 = 1 << 1;
/// `pagemap_entry.flags`: the pages are in this dump's pages file.
pub const PE_PRESENT: u32 = 1 << 2;

/// One run of pages, as CRIU 4.2 reads a pagemap entry: flags and
/// count taken from the old fields when the new ones are absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// First address.
    pub vaddr: u64,
    /// Number of pages.
    pub nr_pages: u64,
    /// `PE_*` flags.
    pub flags: u32,
    /// Where the run's contents start in the pages file, when PRESENT.
    pub pages_offset: Option<u64>,
}

impl PageRun {
    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.nr_pages * PAGE_SIZE
    }

    /// Whether the run has no pages.
    pub fn is_empty(&self) -> bool {
        self.nr_pages == 0
    }

    /// The end address (exclusive).
    pub fn end(&self) -> u64 {
        self.vaddr + self.len()
    }
}

/// Reads a pagemap image entry by entry.
pub struct PagemapReader<R> {
    img: ImageReader<R>,
    pages_id: u32,
    pages_offset: u64,
}

impl PagemapReader<BufReader<File>> {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::new(crate::dir::open_image(path)?)
    }
}

impl<R: Read> PagemapReader<R> {
    /// Reads the head entry of a pagemap image.
    pub fn new(mut img: ImageReader<R>) -> Result<Self> {
        if img.kind() != Kind::Pagemap {
            return Err(Error::corrupt(
                img.file(),
                0,
                Problem::WrongKind {
                    expected: "pagemap_head",
                    found: img.kind().entry_message(),
                },
            ));
        }
        let head: PagemapHead = img.expect_next()?;
        Ok(PagemapReader {
            img,
            pages_id: head.pages_id,
            pages_offset: 0,
        })
    }

    /// The id of the pages file (`pages-<id>.img`).
    pub fn pages_id(&self) -> u32 {
        self.pages_id
    }

    /// The next run, or `None` at the end.
    pub fn next_run(&mut self) -> Result<Option<PageRun>> {
        let at = self.img.offset();
        let Some(e) = self.img.read_next::<PagemapEntry>()? else {
            return Ok(None);
        };
        let mut flags = e.flags.unwrap_or(0);
        if e.in_parent == Some(true) {
            flags |= PE_PARENT;
        } else if e.flags.is_none() {
            flags = PE_PRESENT;
        }
        let nr_pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        let bad = |what: &str| {
            Error::corrupt(
                self.img.file(),
                at,
                Problem::Other(format!("pagemap entry at {:#x}: {what}", e.vaddr)),
            )
        };
        let len = nr_pages
            .checked_mul(PAGE_SIZE)
            .ok_or_else(|| bad("too many pages"))?;
        if e.vaddr % PAGE_SIZE != 0 {
            return Err(bad("address not page-aligned"));
        }
        e.vaddr
            .checked_add(len)
            .ok_or_else(|| bad("run wraps around"))?;
        let pages_offset = if flags & PE_PRESENT != 0 {
            let here = self.pages_offset;
            self.pages_offset = here.checked_add(len).ok_or_else(|| bad("too many pages"))?;
            Some(here)
        } else {
            None
        };
        Ok(Some(PageRun {
            vaddr: e.vaddr,
            nr_pages,
            flags,
            pages_offset,
        }))
    }

    /// The size the pages file has when every run read so far is in it.
    pub fn pages_len(&self) -> u64 {
        self.pages_offset
    }
}

/// Writes a pagemap image.
pub struct PagemapWriter<W: Write> {
    img: ImageWriter<W>,
}

impl<W: Write> PagemapWriter<W> {
    /// Starts a pagemap whose PRESENT pages go to `pages-<pages_id>.img`.
    pub fn new(inner: W, pages_id: u32, file: impl Into<String>) -> Result<Self> {
        let mut img = ImageWriter::new(inner, Kind::Pagemap, file)?;
        img.write(&PagemapHead { pages_id })?;
        Ok(PagemapWriter { img })
    }

    /// Adds a run as CRIU 4.2 writes it (`nr_pages` and `flags` set,
    /// `compat_nr_pages` 0).
    pub fn add(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> Result<()> {
        self.img.write(&PagemapEntry {
            vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(flags),
            nr_pages: Some(nr_pages),
        })
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W> {
        self.img.finish()
    }
}

/// Reads a raw pages file, sequentially or at offsets.
pub struct PagesReader {
    file: File,
    path: PathBuf,
    offset: u64,
    len: u64,
}

impl PagesReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::new(crate::dir::open_plain(path)?, path)
    }

    /// Reads the pages of `file` (opened as `path`).
    pub fn new(file: File, path: &Path) -> Result<Self> {
        let len = file
            .metadata()
            .map_err(|e| Error::io("examining", path, e))?
            .len();
        Ok(PagesReader {
            file,
            path: path.to_owned(),
            offset: 0,
            len,
        })
    }

    /// The file's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset of the next sequential read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Fills `buf` from the current offset.
    pub fn read_pages(&mut self, buf: &mut [u8]) -> Result<()> {
        self.read_pages_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Fills `buf` from `offset`, leaving the sequential offset alone.
    pub fn read_pages_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let want = buf.len() as u64;
        let left = self.len.saturating_sub(offset);
        if want > left {
            return Err(Error::corrupt(
                &self.name(),
                offset,
                Problem::Truncated {
                    what: "run of pages",
                    needed: want,
                    missing: want - left,
                },
            ));
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io("reading", &self.path, e))
    }

    /// Skips `len` bytes (pages of a run the caller does not want).
    pub fn skip(&mut self, len: u64) {
        self.offset = self.offset.saturating_add(len);
    }

    /// The open file, for `preadv` into place.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl AsFd for PagesReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Appends pages to a raw pages file. Data may come from memory
/// ([`write_pages`](Self::write_pages)) or be spliced from a pipe
/// ([`splice_from`](Self::splice_from)); both append at the current end.
pub struct PagesWriter {
    file: File,
    path: PathBuf,
    offset: u64,
    /// The bytes allocated before the first page was written.
    reserved: u64,
}

impl PagesWriter {
    /// Writes pages to `file`, a new file (named `path` in errors).
    pub fn new(file: File, path: &Path) -> Self {
        PagesWriter {
            file,
            path: path.to_owned(),
            offset: 0,
            reserved: 0,
        }
    }

    /// Names the file of `room` `name` in `dir` (replacing a file of that
    /// name) and appends from its start (for an encrypted dump, from where
    /// its ciphertext will be): the pages then fill room already
    /// allocated.
    pub fn create_in(room: PagesRoom, dir: &ImageDir, name: &str, path: &Path) -> Result<Self> {
        let offset = dir.adopt(name, &room, path)?;
        Ok(PagesWriter {
            file: room.file,
            path: path.to_owned(),
            offset,
            reserved: room.bytes,
        })
    }

    /// The room's file (for [`ImageDir::adopt`]).
    pub(crate) fn room_file(room: &PagesRoom) -> &File {
        &room.file
    }

    /// Cuts the file where the pages end, giving back room reserved
    /// beyond them.
    pub fn trim(&mut self) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io("examining", &self.path, e))?
            .len();
        if len > self.offset {
            self.file
                .set_len(self.offset)
                .map_err(|e| Error::io("trimming", &self.path, e))?;
        }
        Ok(())
    }

    /// The bytes from the start of the file that were allocated before
    /// any was written ([`PagesRoom`]); 0 without a reservation.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends `pages`.
    pub fn write_pages(&mut self, pages: &[u8]) -> Result<()> {
        (&self.file)
            .write_all(pages)
            .map_err(|e| Error::io("writing", &self.path, e))?;
        self.offset += pages.len() as u64;
        Ok(())
    }

    /// Moves up to `len` bytes from the pipe `pipe` to the end of the file
    /// with `splice(2)`, without copying them through user space; returns
    /// how many moved (0 when the pipe's writers are gone).
    pub fn splice_from(&mut self, pipe: impl AsFd, len: usize) -> Result<usize> {
        let moved = rustix::pipe::splice(
            pipe,
            None,
            &self.file,
            None,
            len,
            rustix::pipe::SpliceFlags::MOVE,
        )
        .map_err(|e| Error::io("splicing pages into", &self.path, e.into()))?;
        self.offset += moved as u64;
        Ok(moved)
    }

    /// Accounts for `n` bytes appended through [`as_fd`](AsFd::as_fd) by
    /// other means.
    pub fn appended(&mut self, n: u64) {
        self.offset += n;
    }

    /// Flushes the file's data to disk.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }
}

impl AsFd for PagesWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Whether `f` (a pages file, or the images directory) lies on tmpfs,
/// where rcriu gives the pages two writers (a dump) or two readers (a
/// restore): the file's pages are memory, and a seek costs nothing.
pub fn on_tmpfs(f: impl AsFd) -> bool {
    /// `TMPFS_MAGIC` of `<linux/magic.h>`.
    const TMPFS_MAGIC: rustix::fs::FsWord = 0x0102_1994;
    rustix::fs::fstatfs(f).is_ok_and(|s| s.f_type == TMPFS_MAGIC)
}

/// Room for a pages image, allocated before its name is known: an
/// unnamed file (`O_TMPFILE`) in the images directory, mode 0600, with
/// its blocks allocated (`fallocate(2)`) but not yet written. Filling
/// allocated room costs only the copy, so allocating it before the
/// process is frozen takes that work out of the frozen time. Dropped
/// unused, it goes with its last descriptor.
#[derive(Debug)]
pub struct PagesRoom {
    file: File,
    bytes: u64,
    /// A memfd, not a file of the images directory.
    in_memory: bool,
}

impl PagesRoom {
    /// Allocates `bytes` in an unnamed file in `dir`.
    pub fn reserve(dir: &Path, bytes: u64) -> Result<PagesRoom> {
        use rustix::fs::{FallocateFlags, Mode, OFlags};
        let fd = rustix::fs::open(
            dir,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(crate::dir::FILE_MODE),
        )
        .map_err(|e| Error::io("reserving room for pages in", dir, e.into()))?;
        let file = File::from(fd);
        let room = |e: std::io::Error| Error::io("reserving room for pages in", dir, e);
        file.set_permissions(std::fs::Permissions::from_mode(crate::dir::FILE_MODE))
            .map_err(room)?;
        rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, bytes)
            .map_err(|e| room(e.into()))?;
        Ok(PagesRoom {
            file,
            bytes,
            in_memory: false,
        })
    }

    /// Allocates `bytes` in a file in memory (a memfd, for an encrypted
    /// dump whose images are not on tmpfs: they are encrypted from
    /// memory).
    pub fn in_memory(bytes: u64) -> Result<PagesRoom> {
        let what = Path::new("memory");
        let room = |e: std::io::Error| Error::io("reserving room for pages in", what, e);
        let file = crate::dir::memfd("pages room").map_err(room)?;
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, bytes)
            .map_err(|e| room(e.into()))?;
        Ok(PagesRoom {
            file,
            bytes,
            in_memory: true,
        })
    }

    /// Whether the room is in memory rather than in the images directory.
    pub fn is_in_memory(&self) -> bool {
        self.in_memory
    }

    /// The bytes allocated.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A buffered pagemap writer on a file.
pub type PagemapFileWriter = PagemapWriter<BufWriter<File>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_writer_appends_written_and_spliced_data() {
        let dir = tempfile::tempdir().unwrap();
        let d = ImageDir::create(dir.path()).unwrap();
        let path = dir.path().join("pages-1.img");
        let mut w = d.create_pages(1).unwrap();
        let first = vec![1u8; PAGE_SIZE as usize];
        w.write_pages(&first).unwrap();
        let (rx, tx) = rustix::pipe::pipe().unwrap();
        let second = vec![2u8; 2 * PAGE_SIZE as usize];
        rustix::io::write(&tx, &second).unwrap();
        let mut moved = 0;
        while moved < second.len() {
            moved += w.splice_from(&rx, second.len() - moved).unwrap();
        }
        w.write_pages(&first).unwrap();
        assert_eq!(w.offset(), 4 * PAGE_SIZE);
        let mut want = first.clone();
        want.extend_from_slice(&second);
        want.extend_from_slice(&first);
        assert_eq!(std::fs::read(&path).unwrap(), want);

        // The same through an entry image (pipes-data).
        let img = dir.path().join("pipes-data.img");
        let f = d.create_raw(crate::ImageFile::PipesData).unwrap();
        let mut w = ImageWriter::new(
            std::io::BufWriter::new(f),
            Kind::PipesData,
            "pipes-data.img",
        )
        .unwrap();
        w.write(&crate::pb::PipeDataEntry {
            pipe_id: 1,
            bytes: 3,
            size: None,
        })
        .unwrap();
        rustix::io::write(&tx, b"abc").unwrap();
        assert_eq!(w.splice_payload(&rx, 3).unwrap(), 3);
        w.finish().unwrap();
        let v = crate::json::decode_image(crate::open_image(&img).unwrap(), false).unwrap();
        assert_eq!(v["entries"][0]["extra"], "YWJj\n");

        let r = PagesReader::open(&path).unwrap();
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        r.read_pages_at(&mut buf, 2 * PAGE_SIZE).unwrap();
        assert_eq!(buf, vec![2u8; PAGE_SIZE as usize]);
        assert!(r.read_pages_at(&mut buf, 4 * PAGE_SIZE).is_err());
    }
}
