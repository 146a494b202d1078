//! A directory of images.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use prost::{Message, Name};

use crate::error::{Error, Problem, Result};
use crate::file::ImageFile;
use crate::framing::{ImageReader, ImageWriter};
use crate::pages::{PagemapReader, PagemapWriter, PagesReader, PagesRoom, PagesWriter};
use crate::pb;

/// Mode of every image file written.
pub const FILE_MODE: u32 = 0o600;
/// Mode of an images directory created here.
pub const DIR_MODE: u32 = 0o700;

/// Opens an image file for reading entries.
pub fn open_image(path: &Path) -> Result<ImageReader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("examining", path, e))?
        .len();
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    ImageReader::with_len(BufReader::with_capacity(64 << 10, file), name, len)
}

/// Creates (or truncates) a file, mode 0600 whatever the umask, not
/// following a symbolic link.
pub(crate) fn create_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| Error::io("setting the mode of", path, e))?;
    Ok(file)
}

/// A directory holding a dump's images, which knows their names.
#[derive(Clone, Debug)]
pub struct ImageDir {
    path: PathBuf,
}

impl ImageDir {
    /// An existing directory, to read from (or write to).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io("opening", &path, e))?;
        if !meta.is_dir() {
            return Err(Error::io(
                "opening",
                &path,
                std::io::Error::from(std::io::ErrorKind::NotADirectory),
            ));
        }
        Ok(ImageDir { path })
    }

    /// A directory to write to, created mode 0700 when missing.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| Error::io("setting the mode of", &path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
        Self::open(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of an image file in it.
    pub fn file_path(&self, file: ImageFile) -> PathBuf {
        self.path.join(file.name())
    }

    /// Whether the file exists.
    pub fn exists(&self, file: ImageFile) -> bool {
        self.file_path(file).exists()
    }

    /// Opens an image for reading its entries.
    pub fn reader(&self, file: ImageFile) -> Result<ImageReader<BufReader<File>>> {
        let img = open_image(&self.file_path(file))?;
        if let Some(kind) = file.kind()
            && kind != img.kind()
        {
            return Err(Error::corrupt(
                img.file(),
                0,
                Problem::WrongKind {
                    expected: kind.name(),
                    found: img.kind().name(),
                },
            ));
        }
        Ok(img)
    }

    /// As [`reader`](Self::reader), `None` when the file does not exist.
    pub fn reader_if_exists(
        &self,
        file: ImageFile,
    ) -> Result<Option<ImageReader<BufReader<File>>>> {
        match self.reader(file) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Creates an image (mode 0600) and writes its magic words.
    pub fn writer(&self, file: ImageFile) -> Result<ImageWriter<BufWriter<File>>> {
        let Some(kind) = file.kind() else {
            return Err(Error::Unwritable {
                file: file.name(),
                problem: Problem::NoEntries("raw"),
            });
        };
        let f = create_file(&self.file_path(file))?;
        ImageWriter::new(BufWriter::with_capacity(64 << 10, f), kind, file.name())
    }

    /// The first entry of an image that must exist.
    pub fn read_one<M: Message + Name + Default>(&self, file: ImageFile) -> Result<M> {
        self.reader(file)?.expect_next()
    }

    /// The first entry of an image, `None` when the file does not exist.
    pub fn read_one_if_exists<M: Message + Name + Default>(
        &self,
        file: ImageFile,
    ) -> Result<Option<M>> {
        self.reader_if_exists(file)?
            .map(|mut r| r.expect_next())
            .transpose()
    }

    /// Every entry of an image; a missing file means none (CRIU writes an
    /// image only when it has something to put in it).
    pub fn read_all<M: Message + Name + Default>(&self, file: ImageFile) -> Result<Vec<M>> {
        match self.reader_if_exists(file)? {
            Some(mut r) => r.read_all(),
            None => Ok(Vec::new()),
        }
    }

    /// Writes an image of one entry.
    pub fn write_one<M: Message + Name>(&self, file: ImageFile, entry: &M) -> Result<()> {
        let mut w = self.writer(file)?;
        w.write(entry)?;
        w.finish().map(drop)
    }

    /// Writes an image of these entries.
    pub fn write_all<'a, M: Message + Name + 'a>(
        &self,
        file: ImageFile,
        entries: impl IntoIterator<Item = &'a M>,
    ) -> Result<()> {
        let mut w = self.writer(file)?;
        for e in entries {
            w.write(e)?;
        }
        w.finish().map(drop)
    }

    /// Reads `pagemap-<pid>.img`.
    pub fn pagemap(&self, pid: u32) -> Result<PagemapReader<BufReader<File>>> {
        PagemapReader::new(self.reader(ImageFile::Pagemap(pid.into()))?)
    }

    /// Creates `pagemap-<pid>.img` for pages going to `pages-<pages_id>.img`.
    pub fn create_pagemap(
        &self,
        pid: u32,
        pages_id: u32,
    ) -> Result<PagemapWriter<BufWriter<File>>> {
        let file = ImageFile::Pagemap(pid.into());
        let f = create_file(&self.file_path(file))?;
        PagemapWriter::new(BufWriter::with_capacity(64 << 10, f), pages_id, file.name())
    }

    /// Reads `pagemap-shmem-<shmid>.img` (the pages of a memfd or shared
    /// memory, at their offsets in the file).
    pub fn shmem_pagemap(&self, shmid: u32) -> Result<PagemapReader<BufReader<File>>> {
        PagemapReader::new(self.reader(ImageFile::ShmemPagemap(shmid.into()))?)
    }

    /// Creates `pagemap-shmem-<shmid>.img` for pages going to
    /// `pages-<pages_id>.img`.
    pub fn create_shmem_pagemap(
        &self,
        shmid: u32,
        pages_id: u32,
    ) -> Result<PagemapWriter<BufWriter<File>>> {
        let file = ImageFile::ShmemPagemap(shmid.into());
        let f = create_file(&self.file_path(file))?;
        PagemapWriter::new(BufWriter::with_capacity(64 << 10, f), pages_id, file.name())
    }

    /// Opens `pages-<id>.img`.
    pub fn pages(&self, pages_id: u32) -> Result<PagesReader> {
        PagesReader::open(&self.file_path(ImageFile::Pages(pages_id.into())))
    }

    /// Creates `pages-<id>.img`.
    pub fn create_pages(&self, pages_id: u32) -> Result<PagesWriter> {
        PagesWriter::create(&self.file_path(ImageFile::Pages(pages_id.into())))
    }

    /// `pages-<id>.img`, filling `room` reserved for it.
    pub fn create_pages_in(&self, pages_id: u32, room: PagesRoom) -> Result<PagesWriter> {
        PagesWriter::create_in(room, &self.file_path(ImageFile::Pages(pages_id.into())))
    }

    /// `inventory.img`.
    pub fn inventory(&self) -> Result<pb::InventoryEntry> {
        self.read_one(ImageFile::Inventory)
    }

    /// `pstree.img`: every process.
    pub fn pstree(&self) -> Result<Vec<pb::PstreeEntry>> {
        self.read_one::<pb::PstreeEntry>(ImageFile::Pstree)?;
        self.read_all(ImageFile::Pstree)
    }

    /// `core-<tid>.img`.
    pub fn core(&self, tid: u32) -> Result<pb::CoreEntry> {
        self.read_one(ImageFile::Core(tid.into()))
    }

    /// `ids-<pid>.img`.
    pub fn ids(&self, pid: u32) -> Result<pb::TaskKobjIdsEntry> {
        self.read_one(ImageFile::Ids(pid.into()))
    }

    /// `mm-<pid>.img` (`<pid>` of the first process sharing the mm).
    pub fn mm(&self, pid: u32) -> Result<pb::MmEntry> {
        self.read_one(ImageFile::Mm(pid.into()))
    }

    /// `fs-<pid>.img`.
    pub fn fs(&self, pid: u32) -> Result<pb::FsEntry> {
        self.read_one(ImageFile::Fs(pid.into()))
    }

    /// `files.img`: every open file description.
    pub fn files(&self) -> Result<Vec<pb::FileEntry>> {
        self.read_all(ImageFile::Files)
    }

    /// `fdinfo-<files_id>.img`: one fd table.
    pub fn fdinfo(&self, files_id: u32) -> Result<Vec<pb::FdinfoEntry>> {
        self.read_all(ImageFile::Fdinfo(files_id.into()))
    }

    /// `seccomp.img`, if any.
    pub fn seccomp(&self) -> Result<Option<pb::SeccompEntry>> {
        self.read_one_if_exists(ImageFile::Seccomp)
    }

    /// `timens-<id>.img`, if any.
    pub fn timens(&self, id: u32) -> Result<Option<pb::TimensEntry>> {
        self.read_one_if_exists(ImageFile::Timens(id.into()))
    }

    /// `stats-dump`, if any.
    pub fn stats_dump(&self) -> Result<Option<pb::StatsEntry>> {
        self.read_one_if_exists(ImageFile::StatsDump)
    }
}
