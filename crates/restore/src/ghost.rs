//! Ghost files: an open file that had no name left at the dump is made
//! again from `ghost-file-<id>.img` (its mode, owner, times and bytes,
//! whole or in chunks; a FIFO or a directory by its mode, owner and
//! times), opened by the file entries that `remap-fpath.img`
//! ties to it, then unlinked, so that it is open and nameless as it was.
//!
//! The file is made at its old name when that is free (so that /proc
//! shows the same name, " (deleted)"), else beside it with a suffix. The
//! names go once every fd is open, or when the restore fails.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result};

/// The largest ghost file rcriu makes again (its bytes come from the
/// images; a bigger size is a corrupt image).
const MAX_GHOST: u64 = 1 << 40;

/// The ghosts of a restore, by remap id.
#[derive(Debug, Default)]
pub struct Ghosts {
    /// file id → ghost id, from remap-fpath.img.
    remaps: BTreeMap<u32, u32>,
    /// ghost id → the name it was made at, and whether it is a
    /// directory.
    made: BTreeMap<u32, (PathBuf, bool)>,
    /// ghost id → its device (the kernel's encoding) and inode at the
    /// dump, once read.
    inodes: BTreeMap<u32, (Option<u32>, Option<u64>)>,
}

impl Ghosts {
    /// Reads `remap-fpath.img`: which file entries are ghosts.
    pub fn load(dir: &ImageDir) -> Result<Ghosts> {
        let mut g = Ghosts::default();
        if !dir.exists(ImageFile::RemapFpath) {
            return Ok(g);
        }
        let name = ImageFile::RemapFpath.name();
        for r in dir.read_all::<pb::RemapFilePathEntry>(ImageFile::RemapFpath)? {
            match r.remap_type {
                Some(t) if t == pb::RemapType::Ghost as i32 => {
                    g.remaps.insert(r.orig_id, r.remap_id);
                }
                // Opened through their links ([`crate::link_remap`]), or
                // while a process stands for the ended one
                // ([`crate::proc_remap`]).
                Some(t) if t == pb::RemapType::Linked as i32 => {}
                Some(t) if t == pb::RemapType::Procfs as i32 => {}
                other => {
                    return Err(Error::unsupported(format!(
                        "{name}: file {} remapped as {other:?} (only ghosts, links and /proc directories are)",
                        r.orig_id
                    )));
                }
            }
        }
        Ok(g)
    }

    /// The path to open file entry `id` by: its ghost made again when it
    /// has one (`None` when it has none).
    pub fn path_of(&mut self, dir: &ImageDir, id: u32, name: &Path) -> Result<Option<PathBuf>> {
        let Some(&gid) = self.remaps.get(&id) else {
            return Ok(None);
        };
        if let Some((p, _)) = self.made.get(&gid) {
            return Ok(Some(p.clone()));
        }
        let (path, is_dir) = make(dir, gid, name)?;
        self.made.insert(gid, (path.clone(), is_dir));
        Ok(Some(path))
    }

    /// The path of the ghost that was the file of device `s_dev` (the
    /// kernel's encoding) and inode `ino` at the dump, made again (at
    /// the name `name_of` gives its first file entry) when there is one:
    /// what a watch on a file with no link left watches again, as CRIU
    /// finds it.
    pub fn path_by_inode(
        &mut self,
        dir: &ImageDir,
        s_dev: u32,
        ino: u64,
        name_of: impl Fn(u32) -> Option<PathBuf>,
    ) -> Result<Option<PathBuf>> {
        let remaps: Vec<(u32, u32)> = self.remaps.iter().map(|(&f, &g)| (f, g)).collect();
        for (fid, gid) in remaps {
            let inode = match self.inodes.get(&gid) {
                Some(i) => *i,
                None => {
                    let (_, g, _) = ghost_image(dir, gid)?;
                    self.inodes.insert(gid, (g.dev, g.ino));
                    (g.dev, g.ino)
                }
            };
            if inode != (Some(s_dev), Some(ino)) {
                continue;
            }
            let Some(name) = name_of(fid) else {
                continue;
            };
            return self.path_of(dir, fid, &name);
        }
        Ok(None)
    }

    /// The ghost id of file entry `id`, if it is a ghost.
    pub fn ghost_of(&self, id: u32) -> Option<u32> {
        self.remaps.get(&id).copied()
    }

    /// Removes the names the ghosts were made at.
    pub fn unlink_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        for (_, (p, is_dir)) in std::mem::take(&mut self.made) {
            let removed = match is_dir {
                true => std::fs::remove_dir(&p),
                false => std::fs::remove_file(&p),
            };
            if let Err(e) = removed
                && first.is_ok()
            {
                first = Err(Error::file("removing the ghost file", &p)(e));
            }
        }
        first
    }
}

impl Drop for Ghosts {
    fn drop(&mut self) {
        let _ = self.unlink_all();
    }
}

/// Opens ghost `gid`'s image: its reader past the entry, and the entry.
fn ghost_image(
    dir: &ImageDir,
    gid: u32,
) -> Result<(
    rcriu_images::ImageReader<std::io::BufReader<File>>,
    pb::GhostFileEntry,
    String,
)> {
    let img = ImageFile::GhostFile(gid.into());
    let iname = img.name();
    let mut r = dir.reader(img)?;
    let g: pb::GhostFileEntry = r.expect_next()?;
    let kind = g.mode & libc::S_IFMT;
    if ![
        libc::S_IFREG,
        libc::S_IFIFO,
        libc::S_IFDIR,
        libc::S_IFCHR,
        libc::S_IFLNK,
    ]
    .contains(&kind)
    {
        return Err(Error::unsupported(format!(
            "{iname}: a ghost of mode {:o} (only regular files, FIFOs, directories, character devices and symbolic links)",
            g.mode
        )));
    }
    if kind == libc::S_IFLNK && g.symlnk_target.is_none() {
        return Err(Error::invalid(iname, "a symbolic link without its target"));
    }
    if kind == libc::S_IFCHR && g.rdev.is_none() {
        return Err(Error::invalid(iname, "a character device without its rdev"));
    }
    Ok((r, g, iname))
}

/// Makes ghost `gid`, which was an unnamed temporary file (O_TMPFILE), as
/// one again in the directory of `name`: still linkable into a directory,
/// as it was. The open file description comes back with the access mode
/// and status flags of `flags`.
pub fn make_tmpfile(dir: &ImageDir, gid: u32, name: &Path, flags: i32) -> Result<File> {
    let (mut r, g, iname) = ghost_image(dir, gid)?;
    if g.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::invalid(
            iname,
            format!("an unnamed temporary file of mode {:o}", g.mode),
        ));
    }
    let parent = name.parent().unwrap_or(Path::new("/"));
    let access = if flags & libc::O_ACCMODE == libc::O_WRONLY {
        libc::O_WRONLY
    } else {
        libc::O_RDWR
    };
    let fd = rustix::fs::open(
        parent,
        rustix::fs::OFlags::from_bits_retain((libc::O_TMPFILE | access | libc::O_CLOEXEC) as u32),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| Error::file("making the temporary file in", parent)(e.into()))?;
    let mut file = File::from(fd);
    fill(&mut r, &g, &mut file, &iname, name)?;
    finish(&file, &g, name)?;
    let status = flags
        & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME | libc::O_ASYNC);
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::from_bits_retain(status as u32))
        .map_err(|e| Error::file("setting the flags of the temporary file", name)(e.into()))?;
    Ok(file)
}

/// Makes ghost `gid` at `name` (or beside it) and returns where, and
/// whether it is a directory.
fn make(dir: &ImageDir, gid: u32, name: &Path) -> Result<(PathBuf, bool)> {
    let (mut r, g, iname) = ghost_image(dir, gid)?;
    match g.mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFLNK => {
            return Ok((make_node(gid, &g, name)?, false));
        }
        libc::S_IFDIR => return Ok((make_node(gid, &g, name)?, true)),
        _ => {}
    }
    let create = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(p)
    };
    let mut path = name.to_owned();
    let mut file = match create(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut n: OsString = name.as_os_str().to_owned();
            n.push(format!(".rcriu-ghost.{gid:x}"));
            path = PathBuf::from(n);
            create(&path).map_err(Error::file("making the ghost file", &path))?
        }
        Err(e) => return Err(Error::file("making the ghost file", &path)(e)),
    };
    let filled = fill(&mut r, &g, &mut file, &iname, &path).and_then(|()| finish(&file, &g, &path));
    if let Err(e) = filled {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    log::debug!("ghost {gid:x} made at {}", path.display());
    Ok((path, false))
}

/// Makes ghost `gid`, a FIFO, a directory, a character device or a
/// symbolic link (to its target, as CRIU makes it), at
/// `name` (or beside it), with its mode, owner and times, and returns
/// where. A FIFO's bytes are the FIFO's (fifo-data.img), put in once it is
/// open.
fn make_node(gid: u32, g: &pb::GhostFileEntry, name: &Path) -> Result<PathBuf> {
    let kind = g.mode & libc::S_IFMT;
    let is_dir = kind == libc::S_IFDIR;
    let what = match kind {
        libc::S_IFDIR => "the ghost directory",
        libc::S_IFCHR => "the ghost device",
        libc::S_IFLNK => "the ghost symbolic link",
        _ => "the ghost FIFO",
    };
    let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
        g.symlnk_target.as_deref().unwrap_or_default(),
    );
    let mode = rustix::fs::Mode::from_raw_mode(0o700);
    let rdev = rustix::fs::Dev::from(g.rdev.unwrap_or(0));
    let make = |p: &Path| match kind {
        libc::S_IFDIR => rustix::fs::mkdir(p, mode),
        libc::S_IFLNK => rustix::fs::symlink(target, p),
        libc::S_IFCHR => rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            mode,
            rdev,
        ),
        _ => rustix::fs::mknodat(rustix::fs::CWD, p, rustix::fs::FileType::Fifo, mode, 0),
    };
    let mut path = name.to_owned();
    loop {
        match make(&path) {
            Ok(()) => break,
            Err(rustix::io::Errno::EXIST) => {
                let mut n: OsString = path.as_os_str().to_owned();
                n.push(format!(".rcriu-ghost.{gid:x}"));
                path = PathBuf::from(n);
                make(&path).map_err(|e| Error::file("making", &path)(e.into()))?;
                break;
            }
            // Its directory is gone too: one level up (as CRIU).
            Err(rustix::io::Errno::NOENT) => {
                let up = path
                    .parent()
                    .and_then(Path::parent)
                    .zip(path.file_name())
                    .map(|(gp, n)| gp.join(n));
                match up {
                    Some(p) if p != path => path = p,
                    _ => {
                        return Err(Error::file("making", &path)(
                            std::io::ErrorKind::NotFound.into(),
                        ));
                    }
                }
            }
            Err(e) => return Err(Error::file("making", &path)(e.into())),
        }
    }
    // By path: rcriu has just made it, and a FIFO opened to set them
    // would wait for a writer.
    let attrs = || -> std::io::Result<()> {
        std::os::unix::fs::lchown(&path, Some(g.uid), Some(g.gid))?;
        // A symbolic link's mode is always 0777 (nor can it be changed).
        if kind != libc::S_IFLNK {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(g.mode & 0o7777))?;
        }
        let ts = |t: Option<pb::Timeval>| match t {
            Some(t) => rustix::fs::Timespec {
                tv_sec: t.tv_sec as i64,
                tv_nsec: (t.tv_usec * 1000) as _,
            },
            None => rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &rustix::fs::Timestamps {
                last_access: ts(g.atim),
                last_modification: ts(g.mtim),
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    };
    if let Err(e) = attrs() {
        let _ = match is_dir {
            true => std::fs::remove_dir(&path),
            false => std::fs::remove_file(&path),
        };
        return Err(Error::file("setting the mode, owner and times of", &path)(
            e,
        ));
    }
    log::debug!("{what} {gid:x} made at {}", path.display());
    Ok(path)
}

/// Writes the ghost's bytes: each chunk at its offset, or everything after
/// the entry.
fn fill<R: std::io::Read>(
    r: &mut rcriu_images::ImageReader<R>,
    g: &pb::GhostFileEntry,
    file: &mut File,
    iname: &str,
    path: &Path,
) -> Result<()> {
    use std::io::Seek;
    if g.chunks == Some(true) {
        let size = g.size.unwrap_or(0);
        if size > MAX_GHOST {
            return Err(Error::invalid(iname, format!("a ghost of {size} bytes")));
        }
        while let Some(c) = r.read_next::<pb::GhostChunkEntry>()? {
            if c.off.checked_add(c.len).is_none_or(|end| end > size) {
                return Err(Error::invalid(
                    iname,
                    format!(
                        "a chunk of {} bytes at {} past the size {size}",
                        c.len, c.off
                    ),
                ));
            }
            file.seek(std::io::SeekFrom::Start(c.off))
                .map_err(Error::file("writing the ghost file", path))?;
            r.copy_payload(c.len, file)?;
        }
        file.set_len(size)
            .map_err(Error::file("sizing the ghost file", path))?;
    } else {
        let rest = r.read_rest()?;
        file.write_all(&rest)
            .map_err(Error::file("writing the ghost file", path))?;
    }
    Ok(())
}

/// Mode, owner and times as the ghost had them.
fn finish(file: &File, g: &pb::GhostFileEntry, path: &Path) -> Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(g.mode & 0o7777))
        .map_err(Error::file("setting the mode of the ghost file", path))?;
    rustix::fs::fchown(
        file,
        Some(rustix::fs::Uid::from_raw(g.uid)),
        Some(rustix::fs::Gid::from_raw(g.gid)),
    )
    .map_err(|e| Error::file("setting the owner of the ghost file", path)(e.into()))?;
    // chown drops set-id bits: the mode once more.
    file.set_permissions(std::fs::Permissions::from_mode(g.mode & 0o7777))
        .map_err(Error::file("setting the mode of the ghost file", path))?;
    let ts = |t: Option<pb::Timeval>| match t {
        Some(t) => rustix::fs::Timespec {
            tv_sec: t.tv_sec as i64,
            tv_nsec: (t.tv_usec * 1000) as _,
        },
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
    };
    rustix::fs::futimens(
        file,
        &rustix::fs::Timestamps {
            last_access: ts(g.atim),
            last_modification: ts(g.mtim),
        },
    )
    .map_err(|e| Error::file("setting the times of the ghost file", path)(e.into()))?;
    Ok(())
}
