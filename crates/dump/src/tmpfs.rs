//! The contents of a container's tmpfs mounts: `tmpfs-dev-<dev>.tar.gz.img`,
//! a gzip'd tar in GNU's format, as CRIU 4.2 makes it with `tar --create
//! --gzip --one-file-system --numeric-owner --sparse` and extracts it with
//! `tar --extract --gzip`.
//!
//! The archive is written here, in-process, on a thread of its own (one
//! per tmpfs, side by side), instead of by a GNU tar and the gzip it
//! starts: a container's tmpfs mounts (`/dev`, the masked `/proc` and
//! `/sys` directories) hold a few nodes, and the two programs cost more
//! than the work. What GNU tar records is recorded the same way: each
//! entry's mode, numeric owner (no user or group names), mtime, its type
//! (directory, file, hard link to a file met before, symlink, character
//! or block device with its numbers, fifo); sockets are left out, as GNU
//! tar leaves them; a mount point below is recorded as the directory it
//! shows, its contents not (`--one-file-system`). A tmpfs holding a
//! sparse file is handed to GNU tar, whose `--sparse` keeps the holes.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use rcriu_proc::Pid;

use crate::{Error, Result};

/// One thing of the tmpfs, found by the walk.
struct Item {
    /// Its path below the tmpfs's root (empty for the root).
    rel: PathBuf,
    meta: Metadata,
}

/// Starts saving the tmpfs mounted at `mp` in process `pid`'s mount
/// namespace into `to` (named `image` in errors); [`Tar::wait`] ends it.
pub fn start(pid: Pid, mp: &Path, to: File, image: &str) -> Result<Tar> {
    let root = Path::new(&format!("/proc/{pid}/root")).join(mp.strip_prefix("/").unwrap_or(mp));
    let mp = mp.to_owned();
    let image = PathBuf::from(image);
    let handle = std::thread::Builder::new()
        .name("tmpfs".into())
        .spawn(move || save(pid, &root, to, &image))
        .map_err(Error::file(pid, &mp))?;
    Ok(Tar {
        pid,
        mp,
        how: How::Thread(handle),
    })
}

/// [`start`] for a tree in a user namespace of its own (`userns`, open):
/// GNU tar runs there as its root, on a copy of the mount alone, so that
/// the owners it records are the tree's and what binds cover (the device
/// nodes a container in a user namespace binds from the host) is the
/// tmpfs's own, as CRIU's tar sees it.
pub fn start_in_userns(pid: Pid, mp: &Path, to: File, userns: std::os::fd::OwnedFd) -> Result<Tar> {
    let p = format!("/proc/{pid}/ns/mnt");
    let mntns = File::open(&p).map_err(Error::file(pid, &p))?;
    let path = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()).map_err(|_| {
        Error::Inconsistent {
            pid,
            what: format!("a mount point with a NUL byte: {}", mp.display()),
        }
    })?;
    let mine = "/proc/thread-self/ns/mnt";
    let back = File::open(mine).map_err(Error::file(pid, mine))?;
    let at = rcriu_restore::userns::WorkDir::MountIn {
        mntns: mntns.into(),
        path,
        back: back.into(),
    };
    let mut cmd = Command::new("tar");
    rcriu_restore::userns::exec_in_userns(&mut cmd, at, userns);
    let child = cmd
        .args(GNU_TAR_CREATE)
        .args([".", "."])
        .stdin(Stdio::null())
        .stdout(to)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::file(pid, mp))?;
    Ok(Tar {
        pid,
        mp: mp.to_owned(),
        how: How::Gnu(child),
    })
}

/// A tmpfs being saved.
#[derive(Debug)]
pub struct Tar {
    pid: Pid,
    mp: PathBuf,
    how: How,
}

/// Who saves it.
#[derive(Debug)]
enum How {
    /// A thread of rcriu's.
    Thread(JoinHandle<Result<()>>),
    /// GNU tar, in the tree's user namespace.
    Gnu(std::process::Child),
}

impl Tar {
    /// Waits for it; an error when it failed.
    pub fn wait(self) -> Result<()> {
        let (pid, mp) = (self.pid, self.mp.display().to_string());
        match self.how {
            How::Thread(h) => h.join().unwrap_or_else(|_| {
                Err(Error::Inconsistent {
                    pid,
                    what: format!("saving the tmpfs at {mp} stopped short (its thread panicked)"),
                })
            }),
            How::Gnu(mut child) => {
                let status = child
                    .wait()
                    .map_err(Error::file(pid, format!("tar of {mp}")))?;
                if !status.success() {
                    return Err(Error::Inconsistent {
                        pid,
                        what: format!("tar of the tmpfs at {mp} failed: {status}"),
                    });
                }
                Ok(())
            }
        }
    }
}

fn save(pid: Pid, root: &Path, to: File, image: &Path) -> Result<()> {
    let items = walk(pid, root)?;
    if items
        .iter()
        .any(|i| i.meta.file_type().is_file() && i.meta.blocks() * 512 < i.meta.size())
    {
        log::debug!(
            "{}: a sparse file, left to GNU tar --sparse",
            root.display()
        );
        return gnu_tar(pid, root, to);
    }
    let written = archive(root, &items, to).map_err(|source| Error::ImageWrite {
        pid,
        path: image.to_owned(),
        source,
    })?;
    log::debug!(
        "{}: {} entries, {written} bytes of files, into {}",
        root.display(),
        items.len(),
        image.display()
    );
    Ok(())
}

/// Everything below `root` on its file system, each directory right
/// before what it holds, in the order the directory lists it (GNU tar's
/// order without `--sort`).
fn walk(pid: Pid, root: &Path) -> Result<Vec<Item>> {
    let meta = std::fs::symlink_metadata(root).map_err(Error::file(pid, root))?;
    let dev = meta.dev();
    let mut items = Vec::new();
    let mut todo = vec![Item {
        rel: PathBuf::new(),
        meta,
    }];
    while let Some(item) = todo.pop() {
        if item.meta.is_dir() && item.meta.dev() == dev {
            let dir = root.join(&item.rel);
            let mut found = Vec::new();
            for e in std::fs::read_dir(&dir).map_err(Error::file(pid, &dir))? {
                let e = e.map_err(Error::file(pid, &dir))?;
                let path = e.path();
                let meta = std::fs::symlink_metadata(&path).map_err(Error::file(pid, &path))?;
                found.push(Item {
                    rel: item.rel.join(e.file_name()),
                    meta,
                });
            }
            todo.extend(found.into_iter().rev());
        }
        items.push(item);
    }
    Ok(items)
}

fn archive(root: &Path, items: &[Item], to: File) -> io::Result<u64> {
    let gz = flate2::write::GzEncoder::new(BufWriter::new(to), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut bytes = 0;
    for item in items {
        let m = &item.meta;
        let ft = m.file_type();
        // GNU tar's names: `./`, `./dir/`, `./dir/file`.
        let mut name = b"./".to_vec();
        name.extend_from_slice(item.rel.as_os_str().as_bytes());
        if ft.is_dir() && !item.rel.as_os_str().is_empty() {
            name.push(b'/');
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(m.uid().into());
        h.set_gid(m.gid().into());
        h.set_mtime(u64::try_from(m.mtime()).unwrap_or(0));
        h.set_size(0);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            append(&mut tar, &mut h, &name, None, io::empty())?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    append(&mut tar, &mut h, &name, Some(first), io::empty())?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), name.clone());
            }
            let len = m.size();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(len);
            let f = File::open(root.join(&item.rel))?;
            // Exactly the size recorded, whatever the file does meanwhile.
            let data = f.take(len).chain(io::repeat(0)).take(len);
            append(&mut tar, &mut h, &name, None, data)?;
            bytes += len;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(root.join(&item.rel))?;
            h.set_entry_type(tar::EntryType::Symlink);
            let target = target.as_os_str().as_bytes();
            append(&mut tar, &mut h, &name, Some(target), io::empty())?;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = m.rdev();
            h.set_device_major(rustix::fs::major(rdev))?;
            h.set_device_minor(rustix::fs::minor(rdev))?;
            append(&mut tar, &mut h, &name, None, io::empty())?;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            append(&mut tar, &mut h, &name, None, io::empty())?;
        } else {
            // A socket: GNU tar ignores it.
            log::warn!("{}: socket ignored", root.join(&item.rel).display());
        }
    }
    let mut out = tar.into_inner()?.finish()?;
    out.flush()?;
    Ok(bytes)
}

/// The name and link fields of a GNU header.
const NAME_MAX: usize = 100;

/// Appends the entry `h` named `name` (and linking to `link`) with its
/// `data`, the names as given: a name or link longer than its field goes
/// first in a GNU long-name entry, as GNU tar writes it.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    if name.len() > NAME_MAX {
        long(tar, tar::EntryType::GNULongName, name)?;
    }
    let old = h.as_old_mut();
    let n = name.len().min(NAME_MAX);
    old.name[..n].copy_from_slice(&name[..n]);
    if let Some(link) = link {
        if link.len() > NAME_MAX {
            long(tar, tar::EntryType::GNULongLink, link)?;
        }
        let old = h.as_old_mut();
        let n = link.len().min(NAME_MAX);
        old.linkname[..n].copy_from_slice(&link[..n]);
    }
    h.set_cksum();
    tar.append(h, data)
}

/// A GNU long-name (or long-link) entry holding `bytes`.
fn long<W: Write>(tar: &mut tar::Builder<W>, kind: tar::EntryType, bytes: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    let field = b"././@LongLink";
    h.as_old_mut().name[..field.len()].copy_from_slice(field);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(bytes.len() as u64 + 1);
    h.set_entry_type(kind);
    h.set_cksum();
    tar.append(&h, bytes.chain(&[0u8][..]))
}

/// GNU tar's options as CRIU runs it to save a tmpfs, up to the
/// directory it is to read (and `.`, what of it).
const GNU_TAR_CREATE: [&str; 10] = [
    "--create",
    "--gzip",
    "--no-unquote",
    "--no-wildcards",
    "--one-file-system",
    "--check-links",
    "--preserve-permissions",
    "--sparse",
    "--numeric-owner",
    "--directory",
];

/// GNU tar, as CRIU runs it, for what the in-process archive leaves out.
fn gnu_tar(pid: Pid, root: &Path, to: File) -> Result<()> {
    let status = Command::new("tar")
        .args(GNU_TAR_CREATE)
        .arg(root)
        .arg(".")
        .stdin(Stdio::null())
        .stdout(to)
        .stderr(Stdio::inherit())
        .status()
        .map_err(Error::file(pid, root))?;
    if !status.success() {
        return Err(Error::Inconsistent {
            pid,
            what: format!("tar of the tmpfs at {} failed: {status}", root.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rcriu_test_support::TempDir;

    use super::*;

    #[test]
    fn gnu_tar_extracts_the_archive_as_the_tree_was() {
        let t = TempDir::new("tmpfs-archive");
        let (src, dst) = (t.0.join("src"), t.0.join("dst"));
        let long = rcriu_test_support::tmpfs_tree::make(&src, false);
        let items = walk(1, &src).unwrap();
        let out = t.0.join("a.tar.gz");
        archive(&src, &items, File::create(&out).unwrap()).unwrap();
        std::fs::create_dir(&dst).unwrap();
        let x = Command::new("tar")
            .args(["--extract", "--gzip", "--file"])
            .arg(&out)
            .arg("--directory")
            .arg(&dst)
            .status()
            .unwrap();
        assert!(x.success(), "GNU tar could not extract it: {x}");
        assert_eq!(
            rcriu_test_support::tmpfs_tree::differences(&src, &dst, &long, false),
            Vec::<String>::new()
        );
        // Negative control: a difference is seen.
        std::fs::set_permissions(dst.join("d/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            rcriu_test_support::tmpfs_tree::differences(&src, &dst, &long, false),
            ["d/f", "d/h"]
        );
    }
}
