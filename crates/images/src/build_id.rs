//! The ELF build-id CRIU 4.2 stores with every mapped or open regular
//! file, for its restore to check it finds the same file
//! (`--file-validation buildid`, the default).
//!
//! Found as CRIU finds it: within the file's first MiB, the first note of
//! type `NT_GNU_BUILD_ID` in the first `PT_NOTE` segment that has one, of
//! 1 to 512 bytes; stored as little-endian u32 words, the last one padded
//! with zeros.

use std::io;

/// CRIU looks at most this far into a file.
const WINDOW: u64 = 1 << 20;
const NT_GNU_BUILD_ID: u32 = 3;
const PT_NOTE: u32 = 4;
const NHDR: u64 = 12;

/// Reads bytes of a file at an offset.
pub trait ReadAt {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, off)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let Some(src) = usize::try_from(off).ok().and_then(|o| self.get(o..)) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

/// The window of a file CRIU maps, read piece by piece.
struct Window<'a, R: ReadAt + ?Sized> {
    file: &'a R,
    len: u64,
}

impl<R: ReadAt + ?Sized> Window<'_, R> {
    /// `len` bytes at `off`, if they lie within the window.
    fn get(&self, off: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Ok(None);
        }
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = self.file.read_at(&mut buf[done..], off + done as u64)?;
            if n == 0 {
                // The file shrank under us: as if it had no build-id.
                return Ok(None);
            }
            done += n;
        }
        Ok(Some(buf))
    }

    fn u16(&self, off: u64) -> io::Result<Option<u64>> {
        Ok(self
            .get(off, 2)?
            .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]]))))
    }

    fn u32(&self, off: u64) -> io::Result<Option<u64>> {
        Ok(self
            .get(off, 4)?
            .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))))
    }

    fn u64(&self, off: u64) -> io::Result<Option<u64>> {
        Ok(self
            .get(off, 8)?
            .map(|b| u64::from_le_bytes(b.try_into().expect("get returned the 8 bytes asked"))))
    }
}

/// The layout of the ELF class's headers.
struct Class {
    ehdr: u64,
    phoff: (u64, bool),
    phnum: u64,
    phdr: u64,
    p_offset: (u64, bool),
    p_filesz: (u64, bool),
}

const ELF64: Class = Class {
    ehdr: 64,
    phoff: (32, true),
    phnum: 56,
    phdr: 56,
    p_offset: (8, true),
    p_filesz: (32, true),
};

const ELF32: Class = Class {
    ehdr: 52,
    phoff: (28, false),
    phnum: 44,
    phdr: 32,
    p_offset: (4, false),
    p_filesz: (16, false),
};

fn word<R: ReadAt + ?Sized>(
    w: &Window<'_, R>,
    at: (u64, bool),
    base: u64,
) -> io::Result<Option<u64>> {
    if at.1 {
        w.u64(base + at.0)
    } else {
        w.u32(base + at.0)
    }
}

fn align4(v: u64) -> u64 {
    (v + 3) & !3
}

/// The build-id of a file of `size` bytes, as CRIU stores it; `None` when
/// it has none (not ELF, no note, or anything malformed).
pub fn build_id<R: ReadAt + ?Sized>(file: &R, size: u64) -> io::Result<Option<Vec<u32>>> {
    // Too small to tell an ELF class.
    if size < 5 {
        return Ok(None);
    }
    let w = Window {
        file,
        len: size.min(WINDOW),
    };
    let Some(ident) = w.get(0, 5)? else {
        return Ok(None);
    };
    if ident[..4] != *b"\x7fELF" {
        return Ok(None);
    }
    let class = match ident[4] {
        1 => &ELF32,
        2 => &ELF64,
        _ => return Ok(None),
    };
    let Some(bytes) = find(&w, class)? else {
        return Ok(None);
    };
    Ok(Some(
        bytes
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(b)
            })
            .collect(),
    ))
}

fn find<R: ReadAt + ?Sized>(w: &Window<'_, R>, c: &Class) -> io::Result<Option<Vec<u8>>> {
    if c.ehdr > w.len {
        return Ok(None);
    }
    let (Some(phoff), Some(phnum)) = (word(w, c.phoff, 0)?, w.u16(c.phnum)?) else {
        return Ok(None);
    };
    if phnum == 0 || phoff == 0 {
        return Ok(None);
    }
    let Some(ph_last) = w.len.checked_sub(c.phdr) else {
        return Ok(None);
    };
    let Some(nhdr_last) = w.len.checked_sub(NHDR) else {
        return Ok(None);
    };
    let mut found = None;
    for i in 0..phnum {
        let ph = phoff.saturating_add(i * c.phdr);
        if ph > ph_last {
            break;
        }
        if w.u32(ph)? != Some(u64::from(PT_NOTE)) {
            continue;
        }
        let (Some(off), Some(filesz)) = (word(w, c.p_offset, ph)?, word(w, c.p_filesz, ph)?) else {
            continue;
        };
        if off == 0 {
            continue;
        }
        // As CRIU: notes are walked while a whole header fits before the
        // segment's end (or the window's).
        let end = off.saturating_add(filesz).min(nhdr_last);
        let mut note = off;
        let mut hit = None;
        while note <= end {
            let (Some(namesz), Some(descsz), Some(kind)) =
                (w.u32(note)?, w.u32(note + 4)?, w.u32(note + 8)?)
            else {
                break;
            };
            if kind == u64::from(NT_GNU_BUILD_ID) {
                hit = Some((note, namesz, descsz));
                break;
            }
            note = note
                .saturating_add(NHDR)
                .saturating_add(align4(namesz))
                .saturating_add(align4(descsz));
        }
        if hit.is_some() {
            found = hit;
            break;
        }
    }
    let Some((note, namesz, descsz)) = found else {
        return Ok(None);
    };
    if descsz == 0 || descsz > 512 {
        return Ok(None);
    }
    let desc = note + NHDR + align4(namesz);
    w.get(desc, descsz)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`.
    fn elf64(notes: &[(u32, &[u8], &[u8])]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56 * 2];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        // Phdr 0: PT_LOAD; phdr 1: PT_NOTE.
        f[64..68].copy_from_slice(&1u32.to_le_bytes());
        let note_off = f.len() as u64;
        let mut n = Vec::new();
        for (kind, name, desc) in notes {
            n.extend_from_slice(&(name.len() as u32).to_le_bytes());
            n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            n.extend_from_slice(&kind.to_le_bytes());
            n.extend_from_slice(name);
            n.resize(align4(n.len() as u64) as usize, 0);
            n.extend_from_slice(desc);
            n.resize(align4(n.len() as u64) as usize, 0);
        }
        let ph = 64 + 56;
        f[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&note_off.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(n.len() as u64).to_le_bytes());
        f.extend_from_slice(&n);
        f
    }

    #[test]
    fn finds_the_gnu_build_id_note() {
        let id = [
            0x53u8, 0x7e, 0x7f, 0x53, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ];
        let f = elf64(&[(1, b"GNU\0", &[0; 16]), (3, b"GNU\0", &id)]);
        let got = build_id(&f[..], f.len() as u64).unwrap().unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], u32::from_le_bytes([0x53, 0x7e, 0x7f, 0x53]));
        // The last word is padded with zeros.
        assert_eq!(got[4], u32::from_le_bytes([13, 14, 15, 0]));
    }

    #[test]
    fn none_without_a_note_or_for_other_files() {
        let f = elf64(&[(1, b"GNU\0", &[0; 16])]);
        assert_eq!(build_id(&f[..], f.len() as u64).unwrap(), None);
        assert_eq!(build_id(&b"#!/bin/sh\n"[..], 10).unwrap(), None);
        assert_eq!(build_id(&b"\x7fEL"[..], 3).unwrap(), None);
        let mut f = elf64(&[(3, b"GNU\0", &[1; 600])]);
        assert_eq!(build_id(&f[..], f.len() as u64).unwrap(), None, "too long");
        // Truncated within the note: nothing, and no panic.
        let n = f.len() - 100;
        f.truncate(n);
        assert_eq!(build_id(&f[..], n as u64).unwrap(), None);
    }

    #[test]
    fn real_binaries_have_one() {
        let me = std::fs::File::open("/proc/self/exe").unwrap();
        let size = me.metadata().unwrap().len();
        let id = build_id(&me, size).unwrap();
        assert!(
            id.is_some_and(|v| !v.is_empty()),
            "rustc links a build-id note"
        );
    }
}
