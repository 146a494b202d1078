//! A container's tmpfs filled again from its `tmpfs-dev-<dev>.tar.gz.img`
//! (a gzip'd tar in GNU's format, as CRIU 4.2 and rcriu's dump write it),
//! in-process, where CRIU runs `tar --extract --gzip`.
//!
//! Each entry is made below the detached mount with the `*at` calls, its
//! parent directory opened beneath the mount's root without following a
//! symlink (an archive cannot reach outside): directories, files (runs
//! of zeros left as holes, so a sparse file stays sparse), hard links,
//! symlinks, device nodes and fifos, each given the owner, mode and mtime
//! recorded (a directory's mtime once everything in it is made, as GNU
//! tar does). A path that climbs out (`..`, absolute) or an entry of a
//! kind GNU tar would not make either is an error naming the image.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid};

use crate::{Error, Result};

/// The most a GNU long name or long link, or a pax header, may hold:
/// the tar crate reads each whole into memory, so one that claims more
/// (a name of gigabytes, from a small gzip'd archive) is refused first.
const MAX_EXTENSION: u64 = 64 << 10;

/// Goes through `tarball` (the image `image`) once without extracting,
/// refusing an extension header larger than [`MAX_EXTENSION`]; leaves
/// the file at its start.
fn check_extensions(tarball: &mut File, image: &str) -> Result<()> {
    let bad = |what: String| Error::invalid(image, what);
    let gz = flate2::read::MultiGzDecoder::new(BufReader::new(&mut *tarball));
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("reading the archive: {e}")))?
        .raw(true);
    for (n, entry) in entries.enumerate() {
        let entry = entry.map_err(|e| bad(format!("reading entry {n}: {e}")))?;
        let h = entry.header();
        let kind = h.entry_type();
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        let size = h.entry_size().unwrap_or(u64::MAX);
        if extension && size > MAX_EXTENSION {
            return Err(bad(format!(
                "entry {n} is an extension header ({kind:?}) of {size} bytes, more than {MAX_EXTENSION}"
            )));
        }
    }
    drop(archive);
    tarball
        .seek(SeekFrom::Start(0))
        .map_err(|e| bad(format!("reading the archive again: {e}")))?;
    Ok(())
}

/// [`fill`] for a tree in a user namespace of its own (`userns`, open):
/// GNU tar runs there as its root, so that the owners the archive names
/// are the tree's, as CRIU's.
pub(crate) fn fill_in_userns(
    tarball: File,
    image: &str,
    mount: &OwnedFd,
    mp: &str,
    userns: std::os::fd::BorrowedFd<'_>,
) -> Result<()> {
    use std::os::fd::AsFd;
    let dup = |f: std::os::fd::BorrowedFd<'_>| {
        f.try_clone_to_owned()
            .map_err(Error::host("duplicating an fd for tar"))
    };
    let mut cmd = std::process::Command::new("tar");
    crate::userns::exec_in_userns(
        &mut cmd,
        crate::userns::WorkDir::Fd(dup(mount.as_fd())?),
        dup(userns)?,
    );
    let status = cmd
        .args([
            "--extract",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--directory",
            ".",
        ])
        .stdin(std::process::Stdio::from(tarball))
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(Error::file("running tar to fill", image))?;
    if !status.success() {
        return Err(Error::invalid(
            image,
            format!("tar could not fill the tmpfs at {mp}: {status}"),
        ));
    }
    Ok(())
}

/// Fills the detached tmpfs whose root is `mount` (mounted at `mp`) from
/// `tarball`, the image `image`.
pub(crate) fn fill(mut tarball: File, image: &str, mount: &OwnedFd, mp: &str) -> Result<()> {
    check_extensions(&mut tarball, image)?;
    let root = rustix::fs::openat(
        mount,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening the tmpfs for {mp}"))(e.into()))?;
    let gz = flate2::read::MultiGzDecoder::new(BufReader::new(tarball));
    let mut archive = tar::Archive::new(gz);
    let bad = |what: String| Error::invalid(image, what);
    let mut dirs: Vec<(PathBuf, i64)> = Vec::new();
    let mut n = 0usize;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading entry {n}: {e}")))?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            // pax's defaults for what follows: nothing GNU tar's format uses.
            continue;
        }
        let raw = entry
            .path()
            .map_err(|e| bad(format!("the name of entry {n}: {e}")))?
            .into_owned();
        let rel = inside(&raw).ok_or_else(|| {
            bad(format!(
                "entry {n} ({}) is outside the tmpfs",
                raw.display()
            ))
        })?;
        make(&root, &rel, &mut entry, &mut dirs).map_err(|e| {
            bad(format!(
                "making {} in the tmpfs at {mp}: {e}",
                rel.display()
            ))
        })?;
        n += 1;
    }
    // Directories' times last, deepest first: making their entries
    // changed them.
    for (rel, mtime) in dirs.iter().rev() {
        let t = times(*mtime);
        let done = if rel.as_os_str().is_empty() {
            rustix::fs::futimens(&root, &t)
        } else {
            rustix::fs::utimensat(&root, rel, &t, AtFlags::SYMLINK_NOFOLLOW)
        };
        done.map_err(|e| {
            bad(format!(
                "setting the times of {} in the tmpfs at {mp}: {e}",
                rel.display()
            ))
        })?;
    }
    log::debug!("tmpfs at {mp}: {n} entries from {image}");
    Ok(())
}

/// `path` of the archive as a path below the tmpfs's root (empty for the
/// root itself), or `None` when it would climb out.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(rel)
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The directory holding `rel`, opened beneath `root` without following
/// a symlink, and `rel`'s last name.
fn parent<'a>(root: &OwnedFd, rel: &'a Path) -> io::Result<(OwnedFd, &'a std::ffi::OsStr)> {
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let up = rel.parent().filter(|p| !p.as_os_str().is_empty());
    let fd = rustix::fs::openat2(
        root,
        up.unwrap_or(Path::new(".")),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?;
    Ok((fd, name))
}

/// Makes one entry at `rel` below `root`.
fn make<R: Read>(
    root: &OwnedFd,
    rel: &Path,
    entry: &mut tar::Entry<'_, R>,
    dirs: &mut Vec<(PathBuf, i64)>,
) -> io::Result<()> {
    let h = entry.header();
    let mode = Mode::from_raw_mode(h.mode()? & 0o7777);
    let uid = Uid::from_raw(u32::try_from(h.uid()?).map_err(|_| invalid("owner"))?);
    let gid = Gid::from_raw(u32::try_from(h.gid()?).map_err(|_| invalid("group"))?);
    let mtime = i64::try_from(h.mtime()?).unwrap_or(i64::MAX);
    let kind = h.entry_type();
    if rel.as_os_str().is_empty() {
        // The tmpfs's root: what it records is given to the mount's root.
        if !kind.is_dir() {
            return Err(invalid("the root that is not a directory"));
        }
        rustix::fs::fchown(root, Some(uid), Some(gid))?;
        rustix::fs::fchmod(root, mode)?;
        dirs.push((PathBuf::new(), mtime));
        return Ok(());
    }
    let (dir, name) = parent(root, rel)?;
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    match kind {
        tar::EntryType::Directory => {
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                Err(rustix::io::Errno::EXIST) => {
                    let st = rustix::fs::statat(&dir, name, nofollow)?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                        return Err(invalid("a directory over something else"));
                    }
                }
                r => r?,
            }
            rustix::fs::chownat(&dir, name, Some(uid), Some(gid), nofollow)?;
            rustix::fs::chmodat(&dir, name, mode, AtFlags::empty())?;
            dirs.push((rel.to_owned(), mtime));
            return Ok(());
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let fd = rustix::fs::openat(
                &dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut f = File::from(fd);
            copy_sparse(entry, &mut f)?;
            rustix::fs::fchown(&f, Some(uid), Some(gid))?;
            rustix::fs::fchmod(&f, mode)?;
            rustix::fs::futimens(&f, &times(mtime))?;
            return Ok(());
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()?
                .ok_or_else(|| invalid("a hard link without a target"))?;
            let target = inside(&target).ok_or_else(|| invalid("a hard link to outside"))?;
            let (tdir, tname) = parent(root, &target)?;
            rustix::fs::linkat(&tdir, tname, &dir, name, AtFlags::empty())?;
            return Ok(());
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()?
                .ok_or_else(|| invalid("a symlink without a target"))?;
            rustix::fs::symlinkat(target.as_ref(), &dir, name)?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let (ft, dev) = match kind {
                tar::EntryType::Char => (FileType::CharacterDevice, device(h)?),
                tar::EntryType::Block => (FileType::BlockDevice, device(h)?),
                _ => (FileType::Fifo, 0),
            };
            rustix::fs::mknodat(&dir, name, ft, Mode::from_raw_mode(0o600), dev)?;
            rustix::fs::chownat(&dir, name, Some(uid), Some(gid), nofollow)?;
            rustix::fs::chmodat(&dir, name, mode, AtFlags::empty())?;
        }
        _ => return Err(invalid("an entry of a kind tar does not extract")),
    }
    if kind == tar::EntryType::Symlink {
        rustix::fs::chownat(&dir, name, Some(uid), Some(gid), nofollow)?;
    }
    rustix::fs::utimensat(&dir, name, &times(mtime), nofollow)?;
    Ok(())
}

fn device(h: &tar::Header) -> io::Result<u64> {
    let major = h
        .device_major()?
        .ok_or_else(|| invalid("a device without numbers"))?;
    let minor = h
        .device_minor()?
        .ok_or_else(|| invalid("a device without numbers"))?;
    Ok(rustix::fs::makedev(major, minor))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Copies the entry's bytes into `f`, leaving each block of zeros as a
/// hole.
fn copy_sparse<R: Read>(from: &mut R, f: &mut File) -> io::Result<()> {
    const BLOCK: usize = 64 * 1024;
    let mut buf = vec![0u8; BLOCK];
    let mut len = 0u64;
    loop {
        let mut got = 0;
        while got < BLOCK {
            match from.read(&mut buf[got..])? {
                0 => break,
                k => got += k,
            }
        }
        if got == 0 {
            break;
        }
        if buf[..got].iter().all(|&b| b == 0) {
            f.seek(SeekFrom::Current(got as i64))?;
        } else {
            f.write_all(&buf[..got])?;
        }
        len += got as u64;
        if got < BLOCK {
            break;
        }
    }
    f.set_len(len)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use rcriu_test_support::TempDir;

    use super::*;

    fn dir_fd(p: &Path) -> OwnedFd {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn a_gnu_tar_archive_is_made_again_as_the_tree_was() {
        let t = TempDir::new("tmpfs-fill");
        let (src, dst) = (t.0.join("src"), t.0.join("dst"));
        let long = rcriu_test_support::tmpfs_tree::make(&src, true);
        let tarball = t.0.join("a.tar.gz");
        // As CRIU 4.2 makes it.
        let made = Command::new("tar")
            .args([
                "--create",
                "--gzip",
                "--one-file-system",
                "--sparse",
                "--numeric-owner",
            ])
            .arg("--file")
            .arg(&tarball)
            .arg("--directory")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(made.success(), "GNU tar: {made}");
        std::fs::create_dir(&dst).unwrap();
        fill(
            File::open(&tarball).unwrap(),
            "a.tar.gz",
            &dir_fd(&dst),
            "/t",
        )
        .unwrap();
        assert_eq!(
            rcriu_test_support::tmpfs_tree::differences(&src, &dst, &long, true),
            Vec::<String>::new()
        );
        // Negative control: a difference is seen.
        std::fs::set_permissions(dst.join("null"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            rcriu_test_support::tmpfs_tree::differences(&src, &dst, &long, true),
            ["null"]
        );
    }

    #[test]
    fn a_long_name_of_megabytes_is_refused_naming_the_image() {
        let t = TempDir::new("tmpfs-longname");
        let dst = t.0.join("dst");
        std::fs::create_dir(&dst).unwrap();
        // A GNU long name of `len` bytes before a one-byte file.
        let archive = |len: usize| {
            let tarball = t.0.join(format!("b{len}.tar.gz"));
            let gz = flate2::write::GzEncoder::new(
                File::create(&tarball).unwrap(),
                flate2::Compression::fast(),
            );
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            h.set_size(len as u64);
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_cksum();
            let mut name = vec![b'n'; len];
            name[len - 1] = 0;
            b.append(&h, &name[..]).unwrap();
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..1].copy_from_slice(b"n");
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(1);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
            tarball
        };
        let big = archive(4 << 20);
        let e = fill(File::open(&big).unwrap(), "big.tar.gz", &dir_fd(&dst), "/t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("big.tar.gz") && e.contains("extension header"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 0);
        // Control: a long name of a name's length is made.
        let fine = archive(200);
        fill(
            File::open(&fine).unwrap(),
            "fine.tar.gz",
            &dir_fd(&dst),
            "/t",
        )
        .unwrap();
        assert!(dst.join("n".repeat(199)).exists());
    }

    #[test]
    fn an_entry_climbing_out_is_refused_naming_the_image() {
        let t = TempDir::new("tmpfs-out");
        let tarball = t.0.join("b.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&tarball).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..6].copy_from_slice(b"../esc");
        h.set_mode(0o644);
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
        let dst = t.0.join("dst");
        std::fs::create_dir(&dst).unwrap();
        let e = fill(
            File::open(&tarball).unwrap(),
            "b.tar.gz",
            &dir_fd(&dst),
            "/t",
        )
        .unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("b.tar.gz") && e.contains("outside the tmpfs"),
            "{e}"
        );
        assert!(!t.0.join("esc").exists());
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(inside(Path::new("./")), Some(PathBuf::new()));
        assert_eq!(inside(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(inside(Path::new("a/../../b")), None);
        assert_eq!(inside(Path::new("/etc/passwd")), None);
    }
}
