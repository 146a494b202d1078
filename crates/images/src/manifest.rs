//! The manifest: a strong hash (BLAKE3) of every file a dump wrote, in a
//! file beside the images that CRIU ignores, so that the images stay
//! CRIU's and a restore can tell, before anything starts, that they are
//! the ones the dump wrote.
//!
//! ```text
//! rcriu-manifest 1 blake3
//! <64 hex digits> <size> <file name>
//! ...
//! ```
//!
//! One line per file, sorted by name; names are plain file names of the
//! directory. A restore from a directory with a manifest opens every file
//! it names once, checks its size and hash, and from then on reads only
//! those open files, or for the small ones the bytes hashed, kept in
//! memory (a name swapped afterwards changes nothing; a dump of ten
//! thousand sockets does not need ten thousand image files open beside
//! them); a file the manifest does not name is refused. A directory without a manifest
//! (CRIU's dumps) restores as before.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::dir::ImageDir;
use crate::error::{Error, Problem, Result};

/// The manifest's file name.
pub const MANIFEST: &str = "rcriu-manifest";
const HEADER: &str = "rcriu-manifest 1 blake3";
/// The header of an encrypted dump's manifest goes on with the scheme
/// and the dump id; its last line is `mac <64 hex digits>`, a keyed
/// BLAKE3 of every line before it (see [`crate::crypt`]).
const ENCRYPTED: &str = " aes-256-gcm ";
const MAC: &str = "mac ";
/// Most lines a manifest may have (a dump writes a few per process).
const MAX_LINES: usize = 1 << 20;
/// Most bytes a manifest may have.
const MAX_BYTES: u64 = 64 << 20;

/// A file's size and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    pub hash: [u8; 32],
}

/// The files of a dump and their digests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    files: BTreeMap<String, Digest>,
    /// An encrypted dump's id.
    dump_id: Option<[u8; 16]>,
    /// As read: the text its MAC covers, and the MAC.
    signed: Option<(Vec<u8>, [u8; 32])>,
}

/// Hashes what `file` holds from its start.
pub fn digest(file: &File, path: &Path) -> Result<Digest> {
    digest_keeping(file, path, 0).map(|(d, _)| d)
}

/// Files of at least this many bytes are hashed by two threads, one half
/// each (a pages file of a GiB checked before a restore).
const SPLIT_AT: u64 = 32 << 20;

/// As [`digest`], also giving the file's bytes as they were hashed when
/// it holds at most `keep` of them.
pub fn digest_keeping(file: &File, path: &Path, keep: usize) -> Result<(Digest, Option<Vec<u8>>)> {
    let size = file
        .metadata()
        .map_err(|e| Error::io("hashing", path, e))?
        .len();
    if size >= SPLIT_AT && size > keep as u64 {
        return digest_split(file, path, size).map(|d| (d, None));
    }
    digest_read(file, path, keep)
}

/// BLAKE3 of the `size` bytes `file` should hold as two subtrees hashed
/// side by side (the left one the largest power of two of chunks below
/// half, as BLAKE3's tree cuts it), then joined: the same hash as one
/// pass. A file that holds less than `size` gives the bytes it holds
/// (its size then differs from the manifest's).
fn digest_split(file: &File, path: &Path, size: u64) -> Result<Digest> {
    use blake3::hazmat::{HasherExt, Mode, left_subtree_len, merge_subtrees_root};
    use std::os::unix::fs::FileExt;
    let left = left_subtree_len(size);
    // Hashes [from, to) with `h`: the bytes read.
    let part = |h: &mut blake3::Hasher, from: u64, to: u64| -> Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = from;
        while at < to {
            let want = (to - at).min(buf.len() as u64) as usize;
            let n = match file.read_at(&mut buf[..want], at) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("hashing", path, e)),
            };
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(at - from)
    };
    let (l, r) = std::thread::scope(|s| {
        let lh = s.spawn(|| {
            let mut h = blake3::Hasher::new();
            part(&mut h, 0, left).map(|n| (h, n))
        });
        let mut h = blake3::Hasher::new();
        h.set_input_offset(left);
        let r = part(&mut h, left, size).map(|n| (h, n));
        (
            lh.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            r,
        )
    });
    let ((lh, ln), (rh, rn)) = (l?, r?);
    let now = file
        .metadata()
        .map_err(|e| Error::io("hashing", path, e))?
        .len();
    if ln != left || rn != size - left || now != size {
        // It holds another size than it said: hash what it holds, in one
        // pass from its start.
        use std::io::Seek as _;
        (&*file)
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::io("hashing", path, e))?;
        return digest_read(file, path, 0).map(|(d, _)| d);
    }
    let (lcv, rcv) = (lh.finalize_non_root(), rh.finalize_non_root());
    Ok(Digest {
        size,
        hash: *merge_subtrees_root(&lcv, &rcv, Mode::Hash).as_bytes(),
    })
}

/// [`digest_keeping`] in one pass, reading on from where `file` stands.
fn digest_read(mut file: &File, path: &Path, keep: usize) -> Result<(Digest, Option<Vec<u8>>)> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut kept = Some(Vec::new());
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("hashing", path, e)),
        };
        h.update(&buf[..n]);
        size += n as u64;
        kept = kept.filter(|k: &Vec<u8>| k.len() + n <= keep).map(|mut k| {
            k.extend_from_slice(&buf[..n]);
            k
        });
    }
    let digest = Digest {
        size,
        hash: *h.finalize().as_bytes(),
    };
    Ok((digest, kept))
}

/// The digest of what `file` holds, and of what it will hold once the
/// byte ranges `holes` (in order) are punched (read as zeroes), in one
/// pass: a file checked against its manifest and the digest it takes
/// after `dedup`, both from the same bytes.
pub fn digest_punched(
    mut file: &File,
    path: &Path,
    holes: &[(u64, u64)],
) -> Result<(Digest, Digest)> {
    use std::io::Seek as _;
    file.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| Error::io("hashing", path, e))?;
    let (mut was, mut will) = (blake3::Hasher::new(), blake3::Hasher::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    let mut next = 0usize;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("hashing", path, e)),
        };
        let chunk = &mut buf[..n];
        was.update(chunk);
        let end = at + n as u64;
        while let Some(&(a, b)) = holes.get(next) {
            if a >= end {
                break;
            }
            let (s, e) = (a.max(at), b.min(end));
            if s < e {
                chunk[(s - at) as usize..(e - at) as usize].fill(0);
            }
            if b > end {
                break;
            }
            next += 1;
        }
        will.update(chunk);
        at = end;
    }
    let d = |h: blake3::Hasher| Digest {
        size: at,
        hash: *h.finalize().as_bytes(),
    };
    Ok((d(was), d(will)))
}

/// Whether `name` is a plain file name (no directory, not `.` or `..`).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name != MANIFEST
}

impl Manifest {
    /// The manifest of files `names` of `dir`, as they are now.
    pub fn build<'a>(dir: &ImageDir, names: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let names: Vec<&str> = names.into_iter().collect();
        if let Some(name) = names.iter().find(|n| !plain_name(n)) {
            return Err(Error::Unwritable {
                file: MANIFEST.into(),
                problem: Problem::Other(format!("{name:?} is not a file name")),
            });
        }
        // The files are hashed by as many workers as there are CPUs, each
        // taking the next file (a tree's dump has many large ones).
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || -> Result<Vec<(String, Digest)>> {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else {
                    return Ok(out);
                };
                // An encrypted file's, as sealed (see crate::crypt).
                if let Some(d) = dir.sealed_digest(name) {
                    out.push(((*name).to_owned(), d));
                    continue;
                }
                let f = dir.open_named(name)?;
                out.push(((*name).to_owned(), digest(&f, &dir.path().join(name))?));
            }
        };
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(names.len().max(1));
        let mut files = BTreeMap::new();
        std::thread::scope(|s| -> Result<()> {
            let helpers: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
            let mut all = vec![work()];
            for h in helpers {
                all.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            for part in all {
                files.extend(part?);
            }
            Ok(())
        })?;
        Ok(Manifest {
            files,
            dump_id: None,
            signed: None,
        })
    }

    /// The manifest with `name` added, of digest `digest` (a file hashed
    /// already: the same file linked into another directory).
    pub fn with(mut self, name: &str, digest: Digest) -> Self {
        self.files.insert(name.to_owned(), digest);
        self
    }

    /// The manifest of an encrypted dump of id `dump_id`.
    pub fn encrypted(mut self, dump_id: [u8; 16]) -> Self {
        self.dump_id = Some(dump_id);
        self
    }

    /// The id of the encrypted dump it is the manifest of, if it is one.
    pub fn dump_id(&self) -> Option<&[u8; 16]> {
        self.dump_id.as_ref()
    }

    /// Whether `key` authenticates the manifest as read (the manifest of
    /// an encrypted dump, by the dump's key).
    pub fn authentic(&self, key: &crate::crypt::Key) -> bool {
        self.signed
            .as_ref()
            .is_some_and(|(text, mac)| blake3::Hash::from(key.manifest_mac(text)) == *mac)
    }

    /// The files named, with their digests.
    pub fn files(&self) -> impl Iterator<Item = (&str, &Digest)> {
        self.files.iter().map(|(n, d)| (n.as_str(), d))
    }

    /// The digest of `name`, if the manifest names it.
    pub fn get(&self, name: &str) -> Option<&Digest> {
        self.files.get(name)
    }

    /// The manifest's text; an encrypted dump's ends with its MAC by `key`.
    pub fn to_text(&self, key: Option<&crate::crypt::Key>) -> String {
        let mut s = String::with_capacity(200 + self.files.len() * 100);
        s.push_str(HEADER);
        if let Some(id) = &self.dump_id {
            s.push_str(ENCRYPTED);
            push_hex(&mut s, id);
        }
        s.push('\n');
        for (name, d) in &self.files {
            for b in d.hash {
                let _ = write!(s, "{b:02x}");
            }
            let _ = writeln!(s, " {} {name}", d.size);
        }
        if let (Some(_), Some(key)) = (&self.dump_id, key) {
            let mac = key.manifest_mac(s.as_bytes());
            s.push_str(MAC);
            push_hex(&mut s, &mac);
            s.push('\n');
        }
        s
    }

    /// Parses a manifest's text (outside input: every line checked).
    pub fn parse(text: &[u8]) -> Result<Self> {
        let bad = |line: usize, what: String| Error::Corrupt {
            file: MANIFEST.into(),
            offset: line as u64,
            problem: Problem::Other(what),
        };
        let text = std::str::from_utf8(text).map_err(|e| bad(0, format!("not UTF-8: {e}")))?;
        let mut lines = text.split_terminator('\n');
        let first = lines.next().unwrap_or_default();
        let dump_id = match first.strip_prefix(HEADER) {
            Some("") => None,
            Some(rest) => {
                let id = rest
                    .strip_prefix(ENCRYPTED)
                    .and_then(parse_hex::<16>)
                    .ok_or_else(|| bad(1, format!("the first line {first:?} is not a header")))?;
                Some(id)
            }
            None => return Err(bad(1, format!("the first line is not {HEADER:?}"))),
        };
        // An encrypted dump's: the MAC last, covering what comes before.
        let mut body = lines.collect::<Vec<&str>>();
        let mut signed = None;
        if dump_id.is_some() {
            let mac = body
                .pop()
                .and_then(|l| l.strip_prefix(MAC))
                .and_then(parse_hex::<32>)
                .ok_or_else(|| bad(body.len() + 1, "the last line is not its MAC".into()))?;
            let len = text.rfind("\nmac ").map_or(0, |i| i + 1);
            signed = Some((text.as_bytes()[..len].to_vec(), mac));
        }
        let mut files = BTreeMap::new();
        for (i, line) in body.into_iter().enumerate() {
            let n = i + 2;
            if n > MAX_LINES {
                return Err(bad(n, format!("more than {MAX_LINES} lines")));
            }
            let mut parts = line.splitn(3, ' ');
            let (Some(hex), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(n, format!("line {n} is not 'hash size name'")));
            };
            // Lower case only: one text for one manifest.
            let hash = parse_hex::<32>(hex)
                .ok_or_else(|| bad(n, format!("line {n}: {hex:?} is not a BLAKE3 hash")))?;
            let size: u64 = size
                .parse()
                .ok()
                .filter(|v: &u64| v.to_string() == size)
                .ok_or_else(|| bad(n, format!("line {n}: {size:?} is not a size")))?;
            if !plain_name(name) {
                return Err(bad(n, format!("line {n}: {name:?} is not a file name")));
            }
            if files
                .insert(name.to_owned(), Digest { size, hash })
                .is_some()
            {
                return Err(bad(n, format!("line {n}: {name} is named twice")));
            }
        }
        Ok(Manifest {
            files,
            dump_id,
            signed,
        })
    }

    /// Writes the manifest into `dir` (anew, as every image); an
    /// encrypted dump's is authenticated by `dir`'s key.
    pub fn write(&self, dir: &ImageDir) -> Result<()> {
        use std::io::Write;
        let path = dir.path().join(MANIFEST);
        let mut f = dir.create_on_disk(MANIFEST)?;
        f.write_all(self.to_text(dir.key()).as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io("writing", &path, e))
    }

    /// Writes the manifest in place of `dir`'s (beside it first, then
    /// renamed over it: `dir` has one manifest or the other, never none).
    pub fn replace(&self, dir: &ImageDir) -> Result<()> {
        use std::io::Write;
        const NEW: &str = "rcriu-manifest.new";
        let path = dir.path().join(NEW);
        let mut f = dir.create_on_disk(NEW)?;
        f.write_all(self.to_text(dir.key()).as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io("writing", &path, e))?;
        dir.rename(NEW, MANIFEST)
    }

    /// The manifest of `dir`, if it has one.
    pub fn read(dir: &ImageDir) -> Result<Option<Self>> {
        let path = dir.path().join(MANIFEST);
        let f = match dir.open_named(MANIFEST) {
            Ok(f) => f,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut text = Vec::new();
        (&f).take(MAX_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| Error::io("reading", &path, e))?;
        if text.len() as u64 > MAX_BYTES {
            return Err(Error::Corrupt {
                file: MANIFEST.into(),
                offset: MAX_BYTES,
                problem: Problem::Other(format!("larger than {} MiB", MAX_BYTES >> 20)),
            });
        }
        Self::parse(&text).map(Some)
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

/// `N` bytes from exactly `2N` lower-case hex digits (one text for one
/// manifest).
fn parse_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != 2 * N || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (k, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-thread hash is BLAKE3's, at sizes around the tree's cuts.
    #[test]
    fn split_hash_is_blake3() {
        for size in [
            1025u64,
            2048,
            2049,
            4096 * 3 + 7,
            1 << 20,
            (1 << 20) + 1,
            3 << 20,
        ] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let f = tempfile_with(&bytes);
            let d = digest_split(&f, Path::new("t"), size).unwrap();
            assert_eq!(d.size, size);
            assert_eq!(d.hash, *blake3::hash(&bytes).as_bytes(), "size {size}");
            // A file that holds less than it said is hashed as it is.
            f.set_len(size - 1).unwrap();
            let d = digest_split(&f, Path::new("t"), size).unwrap();
            assert_eq!(d.size, size - 1);
            assert_eq!(
                d.hash,
                *blake3::hash(&bytes[..size as usize - 1]).as_bytes()
            );
        }
    }

    fn tempfile_with(bytes: &[u8]) -> File {
        use std::io::Write as _;
        let mut f =
            File::from(rustix::fs::memfd_create("split", rustix::fs::MemfdFlags::CLOEXEC).unwrap());
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn text_round_trips() {
        let mut m = Manifest::default();
        m.files.insert(
            "core-1.img".into(),
            Digest {
                size: 7,
                hash: [0xab; 32],
            },
        );
        m.files.insert(
            "pages-1.img".into(),
            Digest {
                size: 0,
                hash: [1; 32],
            },
        );
        let t = m.to_text(None);
        assert!(t.starts_with("rcriu-manifest 1 blake3\nabab"));
        assert_eq!(Manifest::parse(t.as_bytes()).unwrap(), m);
        // Encrypted: authenticated by its key alone, any change refused.
        let key = crate::crypt::Key::parse(&[5; 32], "k").unwrap();
        let m = m.encrypted([9; 16]);
        let t = m.to_text(Some(&key));
        let back = Manifest::parse(t.as_bytes()).unwrap();
        assert!(back.authentic(&key));
        assert_eq!(back.dump_id(), Some(&[9; 16]));
        let other = crate::crypt::Key::parse(&[6; 32], "k").unwrap();
        assert!(!back.authentic(&other));
        let forged = t.replace(" 7 core-1.img", " 8 core-1.img");
        assert!(!Manifest::parse(forged.as_bytes()).unwrap().authentic(&key));
        // Without its MAC line it is no manifest.
        let cut = &t[..t.rfind("mac ").unwrap()];
        assert!(Manifest::parse(cut.as_bytes()).is_err());
    }

    #[test]
    fn bad_manifests_are_refused() {
        let h = "ab".repeat(32);
        for bad in [
            String::new(),
            "rcriu-manifest 2 blake3\n".into(),
            format!("{HEADER}\n{h} 7\n"),
            format!("{HEADER}\n{h} x core-1.img\n"),
            format!("{HEADER}\n{} 7 core-1.img\n", "zz".repeat(32)),
            format!("{HEADER}\n{h} 7 ../core-1.img\n"),
            format!("{HEADER}\n{h} 7 .\n"),
            format!("{HEADER}\n{h} 7 {MANIFEST}\n"),
            format!("{HEADER}\n{h} 7 a\n{h} 8 a\n"),
            format!("{HEADER}\n{} 7 a\n", "AB".repeat(32)),
            format!("{HEADER}\n{h} 07 a\n"),
            format!("{HEADER}\n{h} +7 a\n"),
            format!("{HEADER}\n{h} 99999999999999999999999 a\n"),
        ] {
            assert!(Manifest::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(Manifest::parse(&[0xff, 0xfe]).is_err());
    }
}
