//! A tree with what a container's tmpfs may hold, for the tests of its
//! archive at the dump and its extraction at the restore: a directory
//! (0751) holding a file (0604, an mtime of 2001) and a hard link to it,
//! a file with a 150-byte name, a symlink with a 200-byte target and a
//! fifo (0640); with `devices`, a character device (`/dev/null`'s
//! numbers) and an 8 MiB file with one byte at its end (a hole before).

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn c(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("a path without NUL")
}

/// Makes the tree in `src`; returns the long name.
pub fn make(src: &Path, devices: bool) -> String {
    let long = "n".repeat(150);
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), "hello").unwrap();
    std::fs::set_permissions(src.join("d/f"), std::fs::Permissions::from_mode(0o604)).unwrap();
    std::fs::hard_link(src.join("d/f"), src.join("d/h")).unwrap();
    std::fs::write(src.join(&long), "long").unwrap();
    std::os::unix::fs::symlink("x".repeat(200), src.join("l")).unwrap();
    // SAFETY: mkfifo and mknod read a NUL-terminated path alive across
    // the call.
    unsafe {
        assert_eq!(libc::mkfifo(c(&src.join("p")).as_ptr(), 0o640), 0);
        if devices {
            let null = libc::makedev(1, 3);
            let p = c(&src.join("null"));
            assert_eq!(libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o666, null), 0);
        }
    }
    // Modes are given again: the umask took its part.
    std::fs::set_permissions(src.join("p"), std::fs::Permissions::from_mode(0o640)).unwrap();
    if devices {
        std::fs::set_permissions(src.join("null"), std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut sparse = std::fs::File::create(src.join("s")).unwrap();
        sparse.seek(SeekFrom::Start(8 << 20)).unwrap();
        sparse.write_all(b"y").unwrap();
    }
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(981_173_106);
    std::fs::File::options()
        .write(true)
        .open(src.join("d/f"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::set_permissions(src.join("d"), std::fs::Permissions::from_mode(0o751)).unwrap();
    long
}

/// What differs between the trees at `a` and `b` (none: empty).
pub fn differences(a: &Path, b: &Path, long: &str, devices: bool) -> Vec<String> {
    let mut out = Vec::new();
    let meta = |p: &Path| std::fs::symlink_metadata(p).ok();
    let mut names = vec!["d", "d/f", "d/h", long, "l", "p"];
    if devices {
        names.extend(["null", "s"]);
    }
    for name in names {
        let same = match (meta(&a.join(name)), meta(&b.join(name))) {
            (Some(x), Some(y)) => {
                x.mode() == y.mode()
                    && x.uid() == y.uid()
                    && x.nlink() == y.nlink()
                    && x.size() == y.size()
                    && x.rdev() == y.rdev()
                    && (x.is_dir() || x.file_type().is_symlink() || x.mtime() == y.mtime())
            }
            _ => false,
        };
        if !same {
            out.push(name.to_owned());
        }
    }
    if std::fs::read_link(a.join("l")).ok() != std::fs::read_link(b.join("l")).ok() {
        out.push("l's target".into());
    }
    let mut contents = vec![long, "d/h"];
    if devices {
        contents.push("s");
    }
    for name in contents {
        if std::fs::read(a.join(name)).ok() != std::fs::read(b.join(name)).ok() {
            out.push(format!("{name}'s contents"));
        }
    }
    if devices && meta(&b.join("s")).is_none_or(|m| m.blocks() > 64) {
        out.push("the hole of s".into());
    }
    let ino = |p: &Path| meta(p).map(|m| m.ino());
    if ino(&b.join("d/f")) != ino(&b.join("d/h")) {
        out.push("the hard link".into());
    }
    if !meta(&b.join("p")).is_some_and(|m| m.file_type().is_fifo()) {
        out.push("the fifo".into());
    }
    out
}
