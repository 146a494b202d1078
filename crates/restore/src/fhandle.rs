//! Files named by a file handle (`name_to_handle_at`), as inotify and
//! fanotify marks show them in fdinfo: the handle kept in `fh_entry`
//! (its bytes in 64-bit words, as CRIU 4.2 keeps them), opened again
//! through a mount of the filesystem it belongs to. The dump uses it to
//! find a watched file's path, the restore when an image has no path.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rcriu_images::pb;

use crate::anon_sys;

/// The number of 64-bit words CRIU 4.2 always writes for a handle
/// (`FH_ENTRY_SIZES__min_entries`).
pub const WORDS: usize = 16;

/// A handle's bytes as `fh_entry.handle` keeps them: little-endian
/// words, zero-padded to [`WORDS`] (or more for a longer handle).
pub fn words(bytes: &[u8]) -> Vec<u64> {
    let mut w: Vec<u64> = bytes
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect();
    if w.len() < WORDS {
        w.resize(WORDS, 0);
    }
    w
}

/// The handle's bytes of an `fh_entry` (its `bytes` first bytes).
pub fn bytes(fh: &pb::FhEntry) -> Option<Vec<u8>> {
    let all: Vec<u8> = fh.handle.iter().flat_map(|w| w.to_le_bytes()).collect();
    let n = fh.bytes as usize;
    (n <= all.len() && n <= anon_sys::MAX_HANDLE_SZ).then(|| all[..n].to_vec())
}

/// A device number as the kernel prints it in fdinfo (`sdev`), split.
pub fn kernel_dev(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xf_ffff)
}

/// A device number in the kernel's encoding (fdinfo's `sdev`).
pub fn kernel_dev_of(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

/// Opens (`O_PATH`) the file of a handle of the filesystem of device
/// `dev` (fdinfo's encoding), through each of rcriu's mounts of it in
/// turn.
pub fn open(dev: u32, handle_type: i32, handle: &[u8]) -> io::Result<OwnedFd> {
    let (major, minor) = kernel_dev(dev);
    let text = std::fs::read("/proc/self/mountinfo")?;
    let mounts = rcriu_proc::parse_mountinfo(&text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut last = io::Error::from_raw_os_error(libc::ENODEV);
    for m in mounts
        .iter()
        .filter(|m| (m.dev_major, m.dev_minor) == (major, minor))
    {
        let mount = match std::fs::OpenOptions::new()
            .read(true)
            // A mount to open a handle from must be open for real, not
            // O_PATH.
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&m.mount_point)
        {
            Ok(f) => f,
            Err(e) => {
                last = e;
                continue;
            }
        };
        match anon_sys::open_by_handle(mount.as_fd(), handle_type, handle) {
            Ok(f) => return Ok(f),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The path of an open file, as rcriu's root sees it.
pub fn path_of(f: &OwnedFd) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_bytes() {
        let b = [0xa7, 0xc4, 3, 0, 0, 0, 0, 0, 0x11, 0x22];
        let w = words(&b);
        assert_eq!(w.len(), WORDS);
        assert_eq!(w[0], 0x3c4a7);
        assert_eq!(w[1], 0x2211);
        let fh = pb::FhEntry {
            bytes: b.len() as u32,
            r#type: 1,
            handle: w,
            path: None,
            mnt_id: None,
        };
        assert_eq!(bytes(&fh).unwrap(), b);
        let too_long = pb::FhEntry { bytes: 200, ..fh };
        assert!(bytes(&too_long).is_none());
    }

    #[test]
    fn a_handle_opens_the_file_again() {
        let path = std::env::temp_dir();
        let (handle_type, handle) = crate::anon_sys::name_to_handle(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        let dev = meta.dev();
        let kdev = ((libc::major(dev)) << 20) | libc::minor(dev);
        let f = open(kdev, handle_type, &handle).unwrap();
        assert_eq!(path_of(&f).unwrap(), path);
    }
}
