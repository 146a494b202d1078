//! `/proc/PID/mountinfo`: the mounts of a task's mount namespace.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::ParseResult;
use crate::text::{self, bad, num};

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MountInfo {
    pub mount_id: i32,
    pub parent_id: i32,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// The mount's root within its filesystem (octal escapes undone).
    pub root: PathBuf,
    /// Where it is mounted (octal escapes undone).
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub mount_options: String,
    /// Propagation: `shared:N`.
    pub shared: Option<u32>,
    /// `master:N`.
    pub master: Option<u32>,
    /// `propagate_from:N`.
    pub propagate_from: Option<u32>,
    /// `unbindable`.
    pub unbindable: bool,
    pub fs_type: String,
    /// The mount source (octal escapes undone).
    pub source: Vec<u8>,
    /// Per-superblock options.
    pub super_options: String,
}

fn path(v: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(text::unescape_octal(v)))
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Parses the text of a mountinfo file.
pub fn parse_mountinfo(text: &[u8]) -> ParseResult<Vec<MountInfo>> {
    let mut out = Vec::new();
    for (off, line) in text::lines(text) {
        if line.is_empty() {
            continue;
        }
        let mut f = text::fields(line);
        let mut next =
            |what: &'static str| f.next().map(|(_, v)| v).ok_or_else(|| bad(off, what, line));
        let mut m = MountInfo {
            mount_id: num(text::dec_i32, next("mount id")?, off, "mount id")?,
            parent_id: num(text::dec_i32, next("parent id")?, off, "parent id")?,
            ..MountInfo::default()
        };
        let dev = next("device")?;
        let colon = memchr::memchr(b':', dev).ok_or_else(|| bad(off, "device", dev))?;
        m.dev_major = num(text::dec_u32, &dev[..colon], off, "device major")?;
        m.dev_minor = num(text::dec_u32, &dev[colon + 1..], off, "device minor")?;
        m.root = path(next("root")?);
        m.mount_point = path(next("mount point")?);
        m.mount_options = lossy(next("mount options")?);
        loop {
            let opt = next("optional field or '-'")?;
            if opt == b"-" {
                break;
            }
            let (k, v) = match memchr::memchr(b':', opt) {
                Some(c) => (&opt[..c], &opt[c + 1..]),
                None => (opt, &b""[..]),
            };
            match k {
                b"shared" => m.shared = Some(num(text::dec_u32, v, off, "shared")?),
                b"master" => m.master = Some(num(text::dec_u32, v, off, "master")?),
                b"propagate_from" => {
                    m.propagate_from = Some(num(text::dec_u32, v, off, "propagate_from")?)
                }
                b"unbindable" => m.unbindable = true,
                _ => {}
            }
        }
        m.fs_type = lossy(next("filesystem type")?);
        m.source = text::unescape_octal(next("source")?);
        m.super_options = lossy(next("super options")?);
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let v = parse_mountinfo(b"22 27 0:21 / /proc rw,relatime - proc proc rw\n36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n40 22 0:30 / /x ro unbindable propagate_from:4 - tmpfs none\\011a rw\n").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            (
                v[0].mount_id,
                v[0].parent_id,
                v[0].dev_major,
                v[0].dev_minor
            ),
            (22, 27, 0, 21)
        );
        assert_eq!(v[0].mount_point, PathBuf::from("/proc"));
        assert_eq!(v[0].fs_type, "proc");
        assert_eq!(v[1].root, PathBuf::from("/mnt1"));
        assert_eq!(v[1].mount_point, PathBuf::from("/mnt two"));
        assert_eq!((v[1].master, v[1].shared), (Some(1), Some(7)));
        assert_eq!(v[1].super_options, "rw,errors=continue");
        assert!(v[2].unbindable);
        assert_eq!(v[2].propagate_from, Some(4));
        assert_eq!(v[2].source, b"none\ta");
        assert!(parse_mountinfo(b"22 27 0:21 / /proc rw,relatime proc proc rw\n").is_err());
        assert!(parse_mountinfo(b"22 27 021 / /proc rw - proc proc rw\n").is_err());
    }
}
