//! A directory of images.
//!
//! Files in it are opened and created relative to the directory's own
//! descriptor, never through a symbolic link, and only ever what they
//! should be: an image that is a FIFO, a device or a symbolic link is
//! refused by name, without blocking. Images are created anew (whatever
//! had the name is unlinked first, then the file is made with `O_EXCL`):
//! a hard link someone planted under an image's name never receives it.
//! A directory written to must be the caller's alone: owned by the
//! caller and writable by nobody else, or sticky (as /tmp).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::{Message, Name};
use rustix::fs::{FileType, Mode, OFlags};

use crate::crypt::Key;
use crate::error::{Error, Problem, Result};
use crate::file::ImageFile;
use crate::framing::{ImageReader, ImageWriter};
use crate::pages::{PagemapReader, PagemapWriter, PagesReader, PagesRoom, PagesWriter};
use crate::pb;

/// Mode of every image file written.
pub const FILE_MODE: u32 = 0o600;
/// Mode of an images directory created here.
pub const DIR_MODE: u32 = 0o700;

/// What a file type is called in an error.
fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

/// A new empty file in memory (a memfd) that can be sealed.
pub(crate) fn memfd(name: &str) -> std::io::Result<File> {
    let fd = rustix::fs::memfd_create(
        name,
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?;
    Ok(File::from(fd))
}

/// Seals a memfd against any change.
fn seal_memfd(f: &File) -> std::io::Result<()> {
    rustix::fs::fcntl_add_seals(
        f,
        rustix::fs::SealFlags::SEAL
            | rustix::fs::SealFlags::SHRINK
            | rustix::fs::SealFlags::GROW
            | rustix::fs::SealFlags::WRITE,
    )?;
    Ok(())
}

/// A file in memory (a memfd, sealed against writes) holding `bytes`,
/// read from its start.
fn in_memory(name: &str, bytes: &[u8]) -> std::io::Result<File> {
    use std::io::{Seek, Write};
    let mut f = memfd(name)?;
    f.write_all(bytes)?;
    f.rewind()?;
    seal_memfd(&f)?;
    Ok(f)
}

/// A new open file of what `fd` is open on, read-only, from its start.
fn reopen(fd: &impl std::os::fd::AsRawFd, path: &Path) -> Result<File> {
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(
        proc.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| Error::io("opening", path, e.into()))
}

/// Opens `name` in directory `dir` (or `name` itself when `dir` is
/// `None`) for reading, without blocking (a FIFO would hang the open) and,
/// with `nofollow`, not through a symbolic link; anything but a regular
/// file is refused. `path` names it in errors.
fn open_regular(dir: Option<&OwnedFd>, name: &Path, path: &Path, nofollow: bool) -> Result<File> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match dir {
        Some(d) => rustix::fs::openat(d, name, flags, Mode::empty()),
        None => rustix::fs::open(name, flags, Mode::empty()),
    };
    let fd = fd.map_err(|e| match e {
        rustix::io::Errno::LOOP if nofollow => Error::NotRegular {
            path: path.to_owned(),
            what: "a symbolic link",
        },
        e => Error::io("opening", path, e.into()),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io("examining", path, e.into()))?;
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(Error::NotRegular {
            path: path.to_owned(),
            what: type_name(t),
        });
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())
        .map_err(|e| Error::io("opening", path, e.into()))?;
    Ok(File::from(fd))
}

fn reader_of(file: File, path: &Path) -> Result<ImageReader<BufReader<File>>> {
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

/// Opens a regular file for reading (refusing, without blocking, a FIFO
/// or a device).
pub(crate) fn open_plain(path: &Path) -> Result<File> {
    open_regular(None, path, path, false)
}

/// Opens an image file for reading entries (a regular file, never a FIFO
/// or a device: refused without blocking).
pub fn open_image(path: &Path) -> Result<ImageReader<BufReader<File>>> {
    let file = open_regular(None, path, path, false)?;
    reader_of(file, path)
}

/// Whether the directory open at `fd` is the caller's: owned by the
/// caller, and not writable by others unless sticky. A directory of
/// another user's is refused, saying why. One of the caller's own that
/// others can write (zdtm makes its dump directories 0777) is taken with
/// a warning: every image is created anew (never written through a file
/// planted there), and what the caller's own permissions let others do to
/// the images afterwards is the caller's choice, as with criu.
fn check_private(fd: &OwnedFd, path: &Path) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::io("examining", path, e.into()))?;
    let me = rustix::process::geteuid().as_raw();
    let mode = st.st_mode;
    let why = if st.st_uid != me {
        Some(format!(
            "it belongs to user {}, who could plant or swap files in it",
            st.st_uid
        ))
    } else {
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            log::warn!(
                "the images directory {} lets others write in it (mode {:o}, not sticky): \
                 they could swap the images before a restore",
                path.display(),
                mode & 0o7777
            );
        }
        None
    };
    match why {
        Some(why) => Err(Error::UnsafeDir {
            path: path.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// The link to the parent images, as criu names it.
pub const PARENT_LINK: &str = "parent";

/// The file that marks a `parent/` directory as rcriu's own, holding the
/// pages children share with their parents ([`ImageDir::kept`]).
pub const KEPT_MARK: &str = "rcriu-kept-pages";

/// A directory holding a dump's images, which knows their names.
#[derive(Clone, Debug)]
pub struct ImageDir {
    path: PathBuf,
    fd: Arc<OwnedFd>,
    /// With a manifest checked: the files it names, each open since it
    /// was hashed, or its bytes as hashed; no other file is read.
    verified: Option<Arc<std::collections::BTreeMap<String, Checked>>>,
    /// An encrypted dump's key and id.
    crypt: Option<Arc<Crypt>>,
    /// Its parent images once opened (and checked: once for all who ask).
    parent: Arc<std::sync::OnceLock<ImageDir>>,
    /// Of the files checked and held open: the file (device, inode) and
    /// its digest, for a parent's manifest naming the same file.
    held: Option<Arc<Held>>,
    /// Large pages images whose hashing is left to the caller (a lazy
    /// restore's daemon, [`ImageDir::open_checked_deferring`]): open
    /// unhashed, with the digest their manifest gives.
    deferred: Option<Arc<Vec<(String, crate::manifest::Digest)>>>,
    /// Whether large pages images are left unhashed (and so in parents).
    defer_pages: bool,
}

/// Files checked and held open, by name: (device, inode, digest).
type Held = std::collections::BTreeMap<String, (u64, u64, crate::manifest::Digest)>;

/// The key and id of an encrypted dump and, while it is written, its
/// files: in memory (memfds: never on disk in plain text) until
/// [`ImageDir::seal`] encrypts them into the directory.
#[derive(Debug)]
struct Crypt {
    key: Key,
    dump_id: [u8; 16],
    staged: std::sync::Mutex<std::collections::BTreeMap<String, File>>,
    /// Pages images written into room in the directory (unnamed until
    /// sealed), their plaintext from [`crate::crypt::HEADER_LEN`] on, to
    /// be encrypted where they lie.
    in_place: std::sync::Mutex<std::collections::BTreeMap<String, File>>,
    /// The digests of the files sealed (for the manifest).
    sealed: std::sync::Mutex<std::collections::BTreeMap<String, crate::manifest::Digest>>,
}

impl Crypt {
    fn new(key: Key, dump_id: [u8; 16]) -> Arc<Crypt> {
        Arc::new(Crypt {
            key,
            dump_id,
            staged: Default::default(),
            in_place: Default::default(),
            sealed: Default::default(),
        })
    }

    fn staged(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, File>> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What to add to a mismatch of `f` when it was written after the
/// manifest: another dump into the same directory (CRIU's, which leaves
/// rcriu's manifest where it was) is the likely cause, not corruption.
fn later_dump_hint(d: &ImageDir, f: &File) -> String {
    let mtime = |m: std::fs::Metadata| m.modified().ok();
    let manifest = std::fs::symlink_metadata(d.path.join(crate::manifest::MANIFEST))
        .ok()
        .and_then(mtime);
    match (f.metadata().ok().and_then(mtime), manifest) {
        (Some(file), Some(manifest)) if file > manifest => format!(
            "; it was written after {} was: if another dump (CRIU's?) went into {} since, \
             remove {} to restore it unchecked",
            crate::manifest::MANIFEST,
            d.path.display(),
            crate::manifest::MANIFEST
        ),
        _ => String::new(),
    }
}

/// A file checked against the manifest: kept open, or (a small one) its
/// bytes as they were hashed, so that the files kept open do not grow
/// with the number of small images (a tcp-stream image per connection).
enum Checked {
    Open(OwnedFd),
    Bytes(Vec<u8>),
    /// A large pages image of an encrypted dump, its header and tags
    /// checked, decrypted when read (see [`Deferred`]).
    Sealed(Deferred),
}

/// A large pages image of an encrypted dump, checked against the
/// manifest by its header and tags (which authenticate every byte), and
/// decrypted only when read, each chunk's tag checked before any of its
/// bytes is used: by the restore, chunk by chunk straight into the
/// process restored ([`ImageDir::sealed_pages`]), or else whole into
/// memory at its first open. A pages file changed since the dump is then
/// refused before the process it belongs to runs, no byte of it used.
struct Deferred {
    sealed: Arc<crate::crypt::Sealed>,
    plain: std::sync::Mutex<Option<File>>,
}

impl Deferred {
    /// The plaintext, decrypted into memory (once).
    fn plaintext(&self, path: &Path) -> Result<File> {
        let mut plain = self.plain.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &*plain {
            return reopen(f, path);
        }
        let f = memfd(self.sealed.name()).map_err(|e| Error::io("decrypting", path, e))?;
        self.sealed.decrypt_into(&f)?;
        seal_memfd(&f).map_err(|e| Error::io("decrypting", path, e))?;
        let r = reopen(&f, path);
        *plain = Some(f);
        r
    }
}

/// An encrypted dump's pages image of at least this many bytes is
/// decrypted when read rather than when checked (a restore's page helper
/// takes pages files from this size on).
const DEFER_PAGES: u64 = 64 << 20;

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checked::Open(fd) => write!(f, "Open({})", std::os::fd::AsRawFd::as_raw_fd(fd)),
            Checked::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Checked::Sealed(d) => write!(f, "{:?}", d.sealed),
        }
    }
}

/// A checked file of at most this many bytes is kept in memory...
const KEEP_FILE: usize = 64 << 10;
/// ...while all of those kept come to at most this many.
const KEEP_ALL: usize = 64 << 20;

impl ImageDir {
    /// An existing directory, to read from.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("opening", &path, e.into()))?;
        Ok(ImageDir {
            path,
            fd: Arc::new(fd),
            verified: None,
            crypt: None,
            parent: Arc::default(),
            held: None,
            deferred: None,
            defer_pages: false,
        })
    }

    /// An existing directory to restore from: when it has a manifest
    /// (`rcriu-manifest`, written by rcriu's dumps), every file it names
    /// is opened and checked against it now, and only those files, as
    /// they were when checked, are read from then on; a file it does not
    /// name is refused. Without a manifest (a dump by CRIU), as
    /// [`ImageDir::open`].
    pub fn open_checked(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open_checked_with(path, None)
    }

    /// As [`open_checked`](Self::open_checked), the images encrypted with
    /// `key` when there is one: the manifest must be an encrypted dump's
    /// that `key` authenticates, and every file is decrypted (each chunk
    /// checked) into memory now. Encrypted images without a key, a key
    /// for images that are not encrypted, or a manifest or file the key
    /// does not authenticate are refused by name.
    pub fn open_checked_with(path: impl Into<PathBuf>, key: Option<Key>) -> Result<Self> {
        Self::open_checked_knowing(path, key, None, false)
    }

    /// As [`open_checked`](Self::open_checked), but the large pages
    /// images (of a plain dump, and of its parents) are opened without
    /// being hashed: [`check_deferred`](Self::check_deferred) hashes them
    /// later. A lazy restore takes this, so that the process runs before
    /// a large pages image is read through; its daemon checks them while
    /// it serves.
    pub fn open_checked_deferring(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open_checked_knowing(path, None, None, true)
    }

    /// Hashes the pages images [`open_checked_deferring`] left (and those
    /// of the parents opened since), refusing one that differs from its
    /// manifest; the names checked.
    ///
    /// [`open_checked_deferring`]: Self::open_checked_deferring
    pub fn check_deferred(&self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut at = Some(self.clone());
        while let Some(d) = at {
            for (name, want) in d.deferred.iter().flat_map(|v| v.iter()) {
                let f = d.open_named(name)?;
                let path = d.path.join(name);
                let (have, _) = crate::manifest::digest_keeping(&f, &path, 0)?;
                if have.size != want.size {
                    return Err(Error::Tampered {
                        file: path.display().to_string(),
                        what: format!("has {} bytes, the dump wrote {}", have.size, want.size),
                    });
                }
                if have.hash != want.hash {
                    return Err(Error::Tampered {
                        file: path.display().to_string(),
                        what: "is not what the dump wrote (its hash differs)".into(),
                    });
                }
                done.push(path.display().to_string());
            }
            at = d.parent.get().cloned();
        }
        Ok(done)
    }

    /// As [`open_checked_with`](Self::open_checked_with); a file that
    /// `known` (a dump checked already) holds, the same file with the same
    /// digest in both manifests, is not hashed again (the pages image of
    /// a parent process linked into `parent/`, see [`kept`](Self::kept)).
    fn open_checked_knowing(
        path: impl Into<PathBuf>,
        key: Option<Key>,
        known: Option<&ImageDir>,
        defer_pages: bool,
    ) -> Result<Self> {
        let mut d = Self::open(path)?;
        crate::dedup::refuse_consumed(&d)?;
        d.defer_pages = defer_pages;
        let m = crate::manifest::Manifest::read(&d)?;
        let shown = d.path.display();
        let m = match (m, key) {
            (None, None) => {
                let inv = ImageFile::Inventory.name();
                if let Ok(f) = open_regular(Some(&d.fd), Path::new(&inv), &d.path.join(&inv), true)
                    && crate::crypt::is_encrypted(&f)
                {
                    return Err(Error::Encryption(format!(
                        "the images in {shown} are encrypted: restoring them needs their key \
                         (--encrypt-key-file or --encrypt-key-fd)"
                    )));
                }
                return Ok(d);
            }
            (None, Some(_)) => {
                return Err(Error::Encryption(format!(
                    "a key was given, but {shown} has no manifest of encrypted images: \
                     refusing images that cannot be authenticated"
                )));
            }
            (Some(m), None) if m.dump_id().is_some() => {
                return Err(Error::Encryption(format!(
                    "the images in {shown} are encrypted: restoring them needs their key \
                     (--encrypt-key-file or --encrypt-key-fd)"
                )));
            }
            (Some(m), Some(_)) if m.dump_id().is_none() => {
                return Err(Error::Encryption(format!(
                    "a key was given, but the images in {shown} are not encrypted: \
                     refusing images that cannot be authenticated"
                )));
            }
            (Some(m), Some(key)) => {
                if !m.authentic(&key) {
                    return Err(Error::Tampered {
                        file: crate::manifest::MANIFEST.into(),
                        what: "is not authenticated by the key given (the wrong key, \
                               or changed since the dump)"
                            .into(),
                    });
                }
                let dump_id = *m.dump_id().expect("matched as encrypted");
                d.crypt = Some(Crypt::new(key, dump_id));
                m
            }
            (Some(m), None) => m,
        };
        let mut fds = std::collections::BTreeMap::new();
        let mut held = std::collections::BTreeMap::new();
        let mut deferred = Vec::new();
        let mut kept = 0;
        let same_file = |f: &File| {
            use std::os::unix::fs::MetadataExt;
            f.metadata().ok().map(|m| (m.dev(), m.ino()))
        };
        for (name, want) in m.files() {
            let path = d.path.join(name);
            let f = match open_regular(Some(&d.fd), Path::new(name), &path, true) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::Tampered {
                        file: name.to_owned(),
                        what: "is missing (the manifest names it)".into(),
                    });
                }
                r => r?,
            };
            let keep = KEEP_FILE.min(KEEP_ALL - kept);
            let id = same_file(&f);
            if d.crypt.is_none()
                && let (Some((dev, ino)), Some(k)) = (id, known.and_then(|k| k.held.as_ref()))
                && k.get(name) == Some(&(dev, ino, *want))
            {
                held.insert(name.to_owned(), (dev, ino, *want));
                fds.insert(name.to_owned(), Checked::Open(OwnedFd::from(f)));
                continue;
            }
            // An encrypted file's digest comes as it is decrypted (a large
            // pages image's from its header and tags, decrypted later).
            let large = |f: &File| f.metadata().is_ok_and(|m| m.len() >= DEFER_PAGES);
            if defer_pages && d.crypt.is_none() && name.starts_with("pages-") && large(&f) {
                deferred.push((name.to_owned(), *want));
                fds.insert(name.to_owned(), Checked::Open(OwnedFd::from(f)));
                continue;
            }
            let mut deferred = None;
            let (have, bytes, plain) = match &d.crypt {
                Some(c) if name.starts_with("pages-") && large(&f) => {
                    let enc = f.try_clone().map_err(|e| Error::io("reading", &path, e))?;
                    let (sealed, have) =
                        crate::crypt::Sealed::check(&c.key, &c.dump_id, name, enc, &path)?;
                    deferred = Some(sealed);
                    (have, None, None)
                }
                Some(c) => {
                    let plain = memfd(name).map_err(|e| Error::io("decrypting", &path, e))?;
                    let (len, have) =
                        crate::crypt::open(&c.key, &c.dump_id, name, &f, &plain, &path)?;
                    (have, None, Some((plain, len)))
                }
                None => {
                    let (have, bytes) = crate::manifest::digest_keeping(&f, &path, keep)?;
                    (have, bytes, None)
                }
            };
            if have.size != want.size || have.hash != want.hash {
                let what = if have.size != want.size {
                    format!("has {} bytes, the dump wrote {}", have.size, want.size)
                } else {
                    "is not what the dump wrote (its hash differs)".into()
                };
                return Err(Error::Tampered {
                    file: name.to_owned(),
                    what: format!("{what}{}", later_dump_hint(&d, &f)),
                });
            }
            let checked = match (plain, bytes) {
                _ if deferred.is_some() => Checked::Sealed(Deferred {
                    sealed: Arc::new(deferred.take().expect("just matched")),
                    plain: Default::default(),
                }),
                (Some((plain, len)), _) => {
                    if len as usize <= keep {
                        let mut b = vec![0u8; len as usize];
                        std::os::unix::fs::FileExt::read_exact_at(&plain, &mut b, 0)
                            .map_err(|e| Error::io("decrypting", &path, e))?;
                        kept += b.len();
                        Checked::Bytes(b)
                    } else {
                        seal_memfd(&plain).map_err(|e| Error::io("decrypting", &path, e))?;
                        Checked::Open(OwnedFd::from(plain))
                    }
                }
                (None, Some(b)) => {
                    kept += b.len();
                    Checked::Bytes(b)
                }
                (None, None) => {
                    if let Some((dev, ino)) = id {
                        held.insert(name.to_owned(), (dev, ino, have));
                    }
                    Checked::Open(OwnedFd::from(f))
                }
            };
            fds.insert(name.to_owned(), checked);
        }
        log::info!(
            "the {} files of {} match their manifest{}",
            fds.len(),
            d.path.display(),
            if d.crypt.is_some() {
                " and decrypt"
            } else {
                ""
            }
        );
        if !deferred.is_empty() {
            log::info!(
                "{} large pages images of {} left to be hashed later",
                deferred.len(),
                d.path.display()
            );
        }
        d.verified = Some(Arc::new(fds));
        d.held = Some(Arc::new(held));
        d.deferred = Some(Arc::new(deferred));
        Ok(d)
    }

    /// Whether the files read come checked against a manifest.
    pub fn is_checked(&self) -> bool {
        self.verified.is_some()
    }

    /// A directory to write to, created mode 0700 when missing; refused
    /// when others could write in it (see the module's documentation).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| Error::io("setting the mode of", &path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
        let d = Self::open(path)?;
        d.check_private()?;
        Ok(d)
    }

    /// As [`create`](Self::create), for an encrypted dump with `key`:
    /// files written stay in memory until [`seal`](Self::seal) encrypts
    /// them into the directory.
    pub fn create_encrypted(path: impl Into<PathBuf>, key: Key) -> Result<Self> {
        let mut d = Self::create(path)?;
        d.crypt = Some(Crypt::new(key, crate::crypt::new_dump_id()?));
        Ok(d)
    }

    /// The key of an encrypted dump's images.
    pub fn key(&self) -> Option<&Key> {
        self.crypt.as_ref().map(|c| &c.key)
    }

    /// An encrypted dump's id.
    pub fn dump_id(&self) -> Option<[u8; 16]> {
        self.crypt.as_ref().map(|c| c.dump_id)
    }

    /// Whether the images are (to be) encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.crypt.is_some()
    }

    /// An encrypted dump's files written so far, encrypted into the
    /// directory (each created anew) and dropped from memory; their
    /// names. Nothing for a plain dump.
    pub fn seal(&self) -> Result<Vec<String>> {
        let Some(c) = &self.crypt else {
            return Ok(Vec::new());
        };
        let staged = std::mem::take(&mut *c.staged());
        let in_place = std::mem::take(&mut *c.in_place.lock().unwrap_or_else(|p| p.into_inner()));
        let mut names = Vec::with_capacity(staged.len() + in_place.len());
        for (name, plain) in staged {
            let path = self.path.join(&name);
            let len = plain
                .metadata()
                .map_err(|e| Error::io("examining the staged", &path, e))?
                .len();
            let out = self.create_on_disk(&name)?;
            let digest = crate::crypt::seal(&c.key, &c.dump_id, &name, &plain, len, &out, &path)?;
            c.sealed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), digest);
            names.push(name);
        }
        for (name, file) in in_place {
            let path = self.path.join(&name);
            let digest = crate::crypt::seal_in_place(&c.key, &c.dump_id, &name, &file, &path)?;
            self.link(&name, &file, &path)?;
            c.sealed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), digest);
            names.push(name);
        }
        Ok(names)
    }

    /// Pages image `name` of an encrypted dump checked but not decrypted
    /// yet (a large one): for the restore to decrypt chunk by chunk, each
    /// chunk's tag checked before its bytes are used.
    pub fn sealed_pages(&self, name: &str) -> Option<Arc<crate::crypt::Sealed>> {
        match self.verified.as_ref()?.get(name)? {
            Checked::Sealed(d) => Some(Arc::clone(&d.sealed)),
            _ => None,
        }
    }

    /// The digest of file `name` of an encrypted dump, sealed.
    pub(crate) fn sealed_digest(&self, name: &str) -> Option<crate::manifest::Digest> {
        let c = self.crypt.as_ref()?;
        let sealed = c.sealed.lock().unwrap_or_else(|p| p.into_inner());
        sealed.get(name).copied()
    }

    /// Room for a pages image ([`PagesRoom`]): in the directory, or for
    /// an encrypted dump not on tmpfs in memory (an encrypted dump's
    /// pages on tmpfs are encrypted where they lie, in memory too).
    pub fn reserve_room(&self, bytes: u64) -> Result<PagesRoom> {
        match &self.crypt {
            Some(_) if !crate::pages::on_tmpfs(&*self.fd) => PagesRoom::in_memory(bytes),
            // Its header first.
            Some(_) => PagesRoom::reserve(&self.path, bytes + crate::crypt::HEADER_LEN),
            None => PagesRoom::reserve(&self.path, bytes),
        }
    }

    /// Gives `room` the name `name`: linked into the directory in place
    /// of whatever had it, or staged for an encrypted dump (to be
    /// encrypted where it lies when it is in the directory). Gives the
    /// offset the pages start at.
    pub(crate) fn adopt(&self, name: &str, room: &PagesRoom, path: &Path) -> Result<u64> {
        let file = crate::pages::PagesWriter::room_file(room);
        let Some(c) = &self.crypt else {
            self.link(name, file, path)?;
            return Ok(0);
        };
        let f = file
            .try_clone()
            .map_err(|e| Error::io("creating", path, e))?;
        if room.is_in_memory() {
            c.staged().insert(name.to_owned(), f);
            return Ok(0);
        }
        c.in_place
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), f);
        Ok(crate::crypt::HEADER_LEN)
    }

    /// Links the unnamed `file` into the directory as `name`, in place of
    /// whatever had it.
    fn link(&self, name: &str, file: &File, path: &Path) -> Result<()> {
        use std::os::fd::AsRawFd;
        self.unlink(name, path)?;
        rustix::fs::linkat(
            rustix::fs::CWD,
            format!("/proc/self/fd/{}", file.as_raw_fd()),
            &*self.fd,
            name,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(|e| Error::io("creating", path, e.into()))
    }

    /// Refuses a directory others could write in (owned by another user,
    /// or writable by others and not sticky): files written there could
    /// be swapped or planted.
    pub fn check_private(&self) -> Result<()> {
        check_private(&self.fd, &self.path)
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens image file `file` as a plain file (a regular file, never a
    /// FIFO, a device or a symbolic link).
    pub fn open_raw(&self, file: ImageFile) -> Result<File> {
        self.open_named(&file.name())
    }

    /// Opens file `name` of the directory (see [`open_raw`](Self::open_raw);
    /// with a checked manifest, the file as it was checked).
    pub(crate) fn open_named(&self, name: &str) -> Result<File> {
        let path = self.path.join(name);
        if let Some(c) = &self.crypt
            && let Some(f) = c.staged().get(name)
        {
            return reopen(f, &path);
        }
        let Some(v) = &self.verified else {
            return open_regular(Some(&self.fd), Path::new(name), &path, true);
        };
        match v.get(name) {
            // A file in memory holding the bytes hashed.
            Some(Checked::Bytes(b)) => {
                in_memory(name, b).map_err(|e| Error::io("opening", &path, e))
            }
            // A new open file of the same file, from its start.
            Some(Checked::Open(fd)) => reopen(fd, &path),
            Some(Checked::Sealed(d)) => d.plaintext(&path),
            None if self.present(name) => Err(Error::Tampered {
                file: name.to_owned(),
                what: "is not in the manifest".into(),
            }),
            None => Err(Error::io(
                "opening",
                &path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        }
    }

    /// Opens image file `file` to punch holes in it (`dedup`): read and
    /// write, never through a symbolic link, a regular file only.
    pub fn open_for_punching(&self, file: ImageFile) -> Result<File> {
        let name = file.name();
        let path = self.path.join(&name);
        let fd = rustix::fs::openat(
            &*self.fd,
            name.as_str(),
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => Error::NotRegular {
                path: path.clone(),
                what: "a symbolic link",
            },
            e => Error::io("opening", &path, e.into()),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io("examining", &path, e.into()))?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::RegularFile {
            return Err(Error::NotRegular {
                path,
                what: type_name(t),
            });
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|e| Error::io("opening", &path, e.into()))?;
        Ok(File::from(fd))
    }

    /// Renames file `from` of the directory to `to`, over what has that
    /// name.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<()> {
        rustix::fs::renameat(&*self.fd, from, &*self.fd, to)
            .map_err(|e| Error::io("renaming", self.path.join(from), e.into()))
    }

    /// Whether something of that name is in the directory.
    fn present(&self, name: &str) -> bool {
        if let Some(c) = &self.crypt
            && c.staged().contains_key(name)
        {
            return true;
        }
        rustix::fs::statat(&*self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Creates image file `file` anew, mode 0600: whatever had its name
    /// goes first, and the file is made exclusively (never written
    /// through a link someone planted).
    pub fn create_raw(&self, file: ImageFile) -> Result<File> {
        self.create_named(&file.name())
    }

    /// Creates file `name` (see [`create_raw`](Self::create_raw)); for an
    /// encrypted dump, in memory until sealed.
    pub(crate) fn create_named(&self, name: &str) -> Result<File> {
        let Some(c) = &self.crypt else {
            return self.create_on_disk(name);
        };
        let path = self.path.join(name);
        let f = memfd(name).map_err(|e| Error::io("creating", &path, e))?;
        let staged = f.try_clone().map_err(|e| Error::io("creating", &path, e))?;
        c.staged().insert(name.to_owned(), staged);
        Ok(f)
    }

    /// Creates file `name` in the directory (see [`create_raw`](Self::create_raw)).
    pub(crate) fn create_on_disk(&self, name: &str) -> Result<File> {
        let path = self.path.join(name);
        self.check_private()?;
        self.unlink(name, &path)?;
        let fd = rustix::fs::openat(
            &*self.fd,
            name,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NOCTTY,
            Mode::from_raw_mode(FILE_MODE),
        )
        .map_err(|e| match e {
            rustix::io::Errno::EXIST => Error::UnsafeDir {
                path: path.clone(),
                why: "a file of that name appeared while it was being created".into(),
            },
            e => Error::io("creating", &path, e.into()),
        })?;
        let file = File::from(fd);
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| Error::io("setting the mode of", &path, e))?;
        Ok(file)
    }

    /// Removes `name` from the directory if it is there (not a directory).
    pub(crate) fn unlink(&self, name: &str, path: &Path) -> Result<()> {
        match rustix::fs::unlinkat(&*self.fd, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io("replacing", path, e.into())),
        }
    }

    /// Links the images of the dump before this one (criu's
    /// `--prev-images-dir`) as `parent`, the path as given (relative to
    /// this directory, as criu takes it), after checking that it leads
    /// to a readable directory. A `parent` already there is kept, as
    /// criu keeps it.
    pub fn link_parent(&self, parent: &Path) -> Result<()> {
        let path = self.path.join(PARENT_LINK);
        let dir = rustix::fs::openat(
            &*self.fd,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::io(
                "opening the parent images",
                self.path.join(parent),
                e.into(),
            )
        })?;
        drop(dir);
        match rustix::fs::symlinkat(parent, &*self.fd, PARENT_LINK) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(e) => Err(Error::io("linking", path, e.into())),
        }
    }

    /// Whether the directory at `path` may get a `parent/` of rcriu's for
    /// the pages children share with their parents ([`kept`](Self::kept)):
    /// it has no `parent` yet, or one a dump of rcriu made (a directory
    /// holding [`KEPT_MARK`]); never a link to a user's pre-dump.
    pub fn kept_possible(path: &Path) -> bool {
        let parent = path.join(PARENT_LINK);
        match std::fs::symlink_metadata(&parent) {
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            Ok(m) => {
                m.is_dir()
                    && std::fs::symlink_metadata(parent.join(KEPT_MARK)).is_ok_and(|m| m.is_file())
            }
        }
    }

    /// `parent/`, made (mode 0700, marked with [`KEPT_MARK`]) or reused,
    /// for the pages children share with their parents, laid out as a
    /// pre-dump's images: the `PE_PARENT` entries of a child's pagemap
    /// are looked up there, by CRIU's restore as by rcriu's. Returns it
    /// and whether it was made now.
    pub fn kept(&self) -> Result<(ImageDir, bool)> {
        let path = self.path.join(PARENT_LINK);
        let made = !path.exists();
        let d = Self::create(&path)?;
        d.create_on_disk(KEPT_MARK)?;
        Ok((d, made))
    }

    /// Links `from`'s `pages-<pages_id>.img` into this directory under
    /// the same name (the same file: written once, found from both).
    pub fn link_pages(&self, from: &ImageDir, pages_id: u32) -> Result<()> {
        let name = ImageFile::Pages(pages_id.into()).name();
        let path = self.path.join(&name);
        self.check_private()?;
        self.unlink(&name, &path)?;
        rustix::fs::linkat(
            &*from.fd,
            name.as_str(),
            &*self.fd,
            name.as_str(),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| Error::io("linking", path, e.into()))
    }

    /// The images of the dump before this one (its `parent` link), when
    /// there is one: opened as this one was (checked against their own
    /// manifest when this one was).
    pub fn parent(&self) -> Result<Option<ImageDir>> {
        if let Some(d) = self.parent.get() {
            return Ok(Some(d.clone()));
        }
        match rustix::fs::statat(
            &*self.fd,
            PARENT_LINK,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    "examining",
                    self.path.join(PARENT_LINK),
                    e.into(),
                ));
            }
            Ok(_) => {}
        }
        let path = self.path.join(PARENT_LINK);
        let d = if self.verified.is_some() {
            Self::open_checked_knowing(path, None, Some(self), self.defer_pages)?
        } else {
            Self::open(path)?
        };
        Ok(Some(self.parent.get_or_init(|| d).clone()))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of an image file in it.
    pub fn file_path(&self, file: ImageFile) -> PathBuf {
        self.path.join(file.name())
    }

    /// Whether the file exists (as anything: opening it says what it is;
    /// with a checked manifest, whether the manifest names it).
    pub fn exists(&self, file: ImageFile) -> bool {
        match &self.verified {
            Some(v) => v.contains_key(&file.name()),
            None => self.present(&file.name()),
        }
    }

    /// Opens an image for reading its entries.
    pub fn reader(&self, file: ImageFile) -> Result<ImageReader<BufReader<File>>> {
        let img = reader_of(self.open_raw(file)?, &self.file_path(file))?;
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
        let f = self.create_raw(file)?;
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
        let f = self.create_raw(file)?;
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
        let f = self.create_raw(file)?;
        PagemapWriter::new(BufWriter::with_capacity(64 << 10, f), pages_id, file.name())
    }

    /// Opens `pages-<id>.img`.
    pub fn pages(&self, pages_id: u32) -> Result<PagesReader> {
        let file = ImageFile::Pages(pages_id.into());
        PagesReader::new(self.open_raw(file)?, &self.file_path(file))
    }

    /// The bytes of `pages-<id>.img` (an encrypted dump's: of its
    /// plaintext, without decrypting it).
    pub fn pages_len(&self, pages_id: u32) -> Result<u64> {
        let file = ImageFile::Pages(pages_id.into());
        match self.sealed_pages(&file.name()) {
            Some(s) => Ok(s.len()),
            None => Ok(self.pages(pages_id)?.len()),
        }
    }

    /// Reads `buf.len()` bytes of `pages-<id>.img` from `offset` (an
    /// encrypted dump's large pages image: the chunks holding them alone
    /// decrypted, each checked).
    pub fn read_pages_at(&self, pages_id: u32, buf: &mut [u8], offset: u64) -> Result<()> {
        let file = ImageFile::Pages(pages_id.into());
        let Some(s) = self.sealed_pages(&file.name()) else {
            return self.pages(pages_id)?.read_pages_at(buf, offset);
        };
        let want = buf.len() as u64;
        let left = s.len().saturating_sub(offset);
        if want > left {
            return Err(Error::corrupt(
                &file.name(),
                offset,
                crate::error::Problem::Truncated {
                    what: "run of pages",
                    needed: want,
                    missing: want - left,
                },
            ));
        }
        let mut chunk = Vec::new();
        let mut done = 0u64;
        while done < want {
            let at = offset + done;
            let k = at / crate::crypt::CHUNK;
            s.open_chunk(k, &mut chunk)?;
            let from = (at - k * crate::crypt::CHUNK) as usize;
            let n = chunk.len().saturating_sub(from).min((want - done) as usize);
            if n == 0 {
                return Err(Error::io(
                    "reading",
                    self.file_path(file),
                    std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                ));
            }
            buf[done as usize..][..n].copy_from_slice(&chunk[from..][..n]);
            done += n as u64;
        }
        chunk.fill(0);
        Ok(())
    }

    /// Creates `pages-<id>.img`.
    pub fn create_pages(&self, pages_id: u32) -> Result<PagesWriter> {
        let file = ImageFile::Pages(pages_id.into());
        Ok(PagesWriter::new(
            self.create_raw(file)?,
            &self.file_path(file),
        ))
    }

    /// `pages-<id>.img`, filling `room` reserved for it.
    pub fn create_pages_in(&self, pages_id: u32, room: PagesRoom) -> Result<PagesWriter> {
        let file = ImageFile::Pages(pages_id.into());
        PagesWriter::create_in(room, self, &file.name(), &self.file_path(file))
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

#[cfg(test)]
mod checked {
    use super::*;
    use crate::manifest::Manifest;
    use std::io::Read;

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// Thousands of small checked images hold no fd each (a dump of ten
    /// thousand connections has a tcp-stream image per connection), and
    /// still read as they were checked; a large one is kept open.
    #[test]
    fn small_checked_files_are_kept_in_memory() {
        let t = tempfile::tempdir().unwrap();
        let d = ImageDir::create(t.path()).unwrap();
        let names: Vec<String> = (0..3000).map(|i| format!("small-{i}.img")).collect();
        for (i, n) in names.iter().enumerate() {
            std::fs::write(t.path().join(n), format!("entry {i}")).unwrap();
        }
        std::fs::write(t.path().join("big.img"), vec![7u8; KEEP_FILE + 1]).unwrap();
        let m = Manifest::build(&d, names.iter().map(String::as_str).chain(["big.img"])).unwrap();
        m.write(&d).unwrap();
        let before = open_fds();
        let c = ImageDir::open_checked(t.path()).unwrap();
        // The directory and the big file; the small ones in memory (other
        // tests of this binary may open a few meanwhile).
        assert!(
            open_fds() < before + 100,
            "{} fds more",
            open_fds() - before
        );
        // Replaced after the check: the bytes checked are read.
        std::fs::write(t.path().join("small-5.img"), "planted").unwrap();
        let mut s = String::new();
        c.open_named("small-5.img")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "entry 5");
        // Negative control: the directory opened unchecked reads the
        // planted file.
        let mut s = String::new();
        d.open_named("small-5.img")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "planted");
        // The memory file cannot be written.
        let f = c.open_named("small-6.img").unwrap();
        assert!(std::io::Write::write_all(&mut &f, b"x").is_err());
        let mut b = Vec::new();
        c.open_named("big.img")
            .unwrap()
            .read_to_end(&mut b)
            .unwrap();
        assert_eq!(b.len(), KEEP_FILE + 1);
    }
}
