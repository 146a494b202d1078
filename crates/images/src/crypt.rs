//! Encrypted images (`--encrypt`): rcriu's own format, not CRIU's.
//!
//! Every file of an encrypted dump, pages included, is
//!
//! ```text
//! header (4096 bytes): "RCRIUENC" | version 2 | scheme 1 (AES-256-GCM)
//!                      | 2 zero bytes | chunk size (u32 LE) | dump id (16 bytes)
//!                      | zeros to the end of the page
//! ciphertext: chunk 0 (chunk size bytes) | chunk 1 | ... | last chunk
//!             (0 to chunk size bytes), back to back
//! tags: chunk 0's (16 bytes) | chunk 1's | ... | the last chunk's
//! ```
//!
//! The ciphertext lies where the plaintext would, a page past the start:
//! a pages image is written in place into room reserved before the
//! freeze, as a plain dump's, and encrypted there ([`seal_in_place`]),
//! page-aligned, with no copy.
//!
//! Each file has its own AES-256-GCM key (`ring`'s AES-GCM, which uses
//! VAES and AVX2 where the CPU has them), derived from the dump's key,
//! the dump id and the file's name (keyed BLAKE3): a file renamed, or
//! carried into another dump, does not decrypt. Chunk `k`'s nonce is
//! `k` (8 bytes, little-endian) and whether it is the last chunk (4
//! bytes); the header is every chunk's associated data. A file cut at a
//! chunk boundary, chunks swapped or a header changed fail to decrypt.
//! An empty file is one empty last chunk (its tag alone).
//!
//! Chunks are independent: a file is sealed or opened by a worker per
//! CPU, each taking the next chunk.
//!
//! The manifest of an encrypted dump (see [`crate::manifest`]) names the
//! dump id and ends with a keyed BLAKE3 of its text, so that a file
//! removed, added or carried from another dump is refused before
//! anything starts. Its hash of each file is the BLAKE3 of the file's
//! header and chunk tags, in order ([`seal`] and [`open`] give it): the
//! tags already authenticate every byte, so neither the dump nor the
//! restore reads a file once more to hash it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use crate::error::{Error, Result};
use crate::manifest::Digest;

/// The first bytes of every encrypted file.
pub const MAGIC: &[u8; 8] = b"RCRIUENC";
const VERSION: u8 = 2;
/// AES-256-GCM.
const SCHEME_AES256GCM: u8 = 1;
/// Bytes of the header: a page, so that the ciphertext is page-aligned.
pub const HEADER_LEN: u64 = 4096;
/// The header's bytes that are not zeros.
const HEADER_USED: usize = 32;
/// Plaintext bytes of a chunk.
pub const CHUNK: u64 = 1 << 20;
const TAG: u64 = 16;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;

/// A dump's key: 32 bytes, from a key file or a descriptor.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

impl Key {
    /// A key from what a key file holds: 32 raw bytes, or 64 hex digits
    /// (with or without a final newline). `what` names the source.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Key> {
        let bad = |why: &str| Error::Key {
            what: what.to_owned(),
            why: why.to_owned(),
        };
        if bytes.len() == KEY_LEN {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(bytes);
            return Ok(Key(k));
        }
        let hex = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if hex.len() != 2 * KEY_LEN {
            return Err(bad(&format!(
                "has {} bytes: a key is {KEY_LEN} raw bytes or {} hex digits",
                bytes.len(),
                2 * KEY_LEN
            )));
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut k = [0u8; KEY_LEN];
        for (i, b) in k.iter_mut().enumerate() {
            let (Some(hi), Some(lo)) = (digit(hex[2 * i]), digit(hex[2 * i + 1])) else {
                return Err(bad("is neither 32 raw bytes nor 64 hex digits"));
            };
            *b = hi << 4 | lo;
        }
        Ok(Key(k))
    }

    /// The key in the file at `path` (a regular file, refused without
    /// blocking otherwise).
    pub fn read_file(path: &Path) -> Result<Key> {
        use std::io::Read;
        let f = crate::dir::open_plain(path)?;
        let mut bytes = Vec::new();
        f.take(4096)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading the key in", path, e))?;
        let k = Key::parse(&bytes, &path.display().to_string());
        bytes.fill(0);
        k
    }

    /// The key for the files of a dump: one per file name and dump id.
    fn file_key(&self, dump_id: &[u8; 16], name: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"rcriu file key\0");
        h.update(dump_id);
        h.update(name.as_bytes());
        *h.finalize().as_bytes()
    }

    /// The key authenticating a manifest.
    pub(crate) fn manifest_mac(&self, text: &[u8]) -> [u8; 32] {
        let mut k = blake3::Hasher::new_keyed(&self.0);
        k.update(b"rcriu manifest key\0");
        let key = *k.finalize().as_bytes();
        *blake3::keyed_hash(&key, text).as_bytes()
    }
}

/// A fresh dump id (random).
pub fn new_dump_id() -> Result<[u8; 16]> {
    use std::io::Read;
    let mut id = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| Error::io("reading", Path::new("/dev/urandom"), e))?;
    Ok(id)
}

fn header(dump_id: &[u8; 16]) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8] = VERSION;
    h[9] = SCHEME_AES256GCM;
    h[12..16].copy_from_slice(&(CHUNK as u32).to_le_bytes());
    h[16..HEADER_USED].copy_from_slice(dump_id);
    h
}

fn nonce(k: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&k.to_le_bytes());
    n[8..].copy_from_slice(&u32::from(last).to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The AES-256-GCM key of file `name` of dump `dump_id`.
fn cipher(key: &Key, dump_id: &[u8; 16], name: &str) -> LessSafeKey {
    let k = key.file_key(dump_id, name);
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).expect("AES-256-GCM takes 32-byte keys"))
}

/// Whether `file` starts as an encrypted image does.
pub fn is_encrypted(file: &File) -> bool {
    let mut m = [0u8; 8];
    file.read_exact_at(&mut m, 0).is_ok() && &m == MAGIC
}

/// The digest of a file of `size` bytes from its header and its tags.
fn digest_of(size: u64, head: &[u8], tags: &[[u8; 16]]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(head);
    for t in tags {
        h.update(t);
    }
    Digest {
        size,
        hash: *h.finalize().as_bytes(),
    }
}

/// Runs `work(k)` for chunks `0..n`, a worker per CPU taking the next;
/// the first error wins; gives each chunk's tag, in order.
fn each_chunk(
    n: u64,
    work: impl Fn(u64, &mut Vec<u8>) -> Result<[u8; 16]> + Sync,
) -> Result<Vec<[u8; 16]>> {
    let tags = std::sync::Mutex::new(vec![[0u8; 16]; usize::try_from(n).unwrap_or(0)]);
    let next = AtomicU64::new(0);
    let worker = || -> Result<()> {
        let mut buf = Vec::with_capacity(CHUNK as usize);
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= n {
                return Ok(());
            }
            match work(k, &mut buf) {
                Ok(tag) => {
                    let mut t = tags.lock().unwrap_or_else(|p| p.into_inner());
                    t[k as usize] = tag;
                }
                Err(e) => {
                    next.store(n, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |w| w.get())
        .min(usize::try_from(n).unwrap_or(usize::MAX))
        .max(1);
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..workers).map(|_| s.spawn(worker)).collect();
        let mut r = worker();
        for h in helpers {
            let hr = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            r = r.and(hr);
        }
        r
    })?;
    Ok(tags.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Where the tags of a file with `len` bytes of plaintext in `chunks`
/// chunks begin, and its size.
fn layout(len: u64, chunks: u64) -> (u64, u64) {
    let tags_at = HEADER_LEN + len;
    (tags_at, tags_at + chunks * TAG)
}

/// Encrypts what `plain` holds (its first `len` bytes) into `out`, a new
/// empty file, as file `name` of dump `dump_id`; gives its digest for the
/// manifest. `path` names `out` in errors.
pub fn seal(
    key: &Key,
    dump_id: &[u8; 16],
    name: &str,
    plain: &File,
    len: u64,
    out: &File,
    path: &Path,
) -> Result<Digest> {
    seal_from(key, dump_id, name, (plain, 0), len, out, path)
}

/// Encrypts file `name` of dump `dump_id` where it lies: `file` holds its
/// plaintext from [`HEADER_LEN`] to its end (a pages image written into
/// room reserved for it); its header and tags are added. Gives its
/// digest for the manifest; `path` names it in errors.
pub fn seal_in_place(
    key: &Key,
    dump_id: &[u8; 16],
    name: &str,
    file: &File,
    path: &Path,
) -> Result<Digest> {
    let size = file
        .metadata()
        .map_err(|e| Error::io("examining", path, e))?
        .len();
    let len = size.checked_sub(HEADER_LEN).ok_or_else(|| {
        Error::io(
            "encrypting",
            path,
            std::io::Error::other("the file is shorter than its header"),
        )
    })?;
    seal_from(key, dump_id, name, (file, HEADER_LEN), len, file, path)
}

/// Encrypts the `len` bytes of `src.0` from offset `src.1` into `out`
/// (which may be the same file, the plaintext then at [`HEADER_LEN`]).
fn seal_from(
    key: &Key,
    dump_id: &[u8; 16],
    name: &str,
    (src, src_at): (&File, u64),
    len: u64,
    out: &File,
    path: &Path,
) -> Result<Digest> {
    let head = header(dump_id);
    let cipher = cipher(key, dump_id, name);
    let chunks = len.div_ceil(CHUNK).max(1);
    let werr = |e| Error::io("writing", path, e);
    let (tags_at, size) = layout(len, chunks);
    out.set_len(size).map_err(werr)?;
    let tags = each_chunk(chunks, |k, buf| {
        let lo = k * CHUNK;
        let n = (len - lo).min(CHUNK) as usize;
        buf.resize(n, 0);
        src.read_exact_at(buf, src_at + lo)
            .map_err(|e| Error::io("reading the staged image", path, e))?;
        let tag = cipher
            .seal_in_place_separate_tag(nonce(k, k + 1 == chunks), Aad::from(&head), buf)
            .map_err(|_| Error::Sealing {
                file: name.to_owned(),
            })?;
        let r = out.write_all_at(buf, HEADER_LEN + lo);
        buf.fill(0);
        r.map_err(werr)?;
        let mut raw = [0u8; 16];
        raw.copy_from_slice(tag.as_ref());
        Ok(raw)
    })?;
    out.write_all_at(tags.as_flattened(), tags_at)
        .map_err(werr)?;
    out.write_all_at(&head, 0).map_err(werr)?;
    Ok(digest_of(size, &head, &tags))
}

/// Decrypts the encrypted file `enc`, file `name` of dump `dump_id`,
/// into `plain` (an empty file); returns the plaintext's length and the
/// file's digest. Every chunk is checked: a file changed in any way is
/// refused by name.
pub fn open(
    key: &Key,
    dump_id: &[u8; 16],
    name: &str,
    enc: &File,
    plain: &File,
    path: &Path,
) -> Result<(u64, Digest)> {
    let enc = enc.try_clone().map_err(|e| Error::io("reading", path, e))?;
    let (sealed, digest) = Sealed::check(key, dump_id, name, enc, path)?;
    sealed.decrypt_into(plain)?;
    Ok((sealed.len(), digest))
}

/// An encrypted file whose header and tags are checked (against the
/// digest its manifest gives, by the caller), its chunks decrypted on
/// demand: each chunk's tag is checked as it is decrypted, before any of
/// its bytes is given out. Its tags are held from the check on, so that
/// a chunk changed since does not decrypt.
pub struct Sealed {
    name: String,
    path: std::path::PathBuf,
    enc: File,
    head: [u8; HEADER_LEN as usize],
    len: u64,
    tags: Vec<[u8; 16]>,
    cipher: LessSafeKey,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({}, {} bytes)", self.name, self.len)
    }
}

impl Sealed {
    /// Checks the header and the layout of `enc`, file `name` of dump
    /// `dump_id`, and reads its tags; gives it with its digest (to
    /// compare with its manifest's). `path` names it in errors.
    pub fn check(
        key: &Key,
        dump_id: &[u8; 16],
        name: &str,
        enc: File,
        path: &Path,
    ) -> Result<(Sealed, Digest)> {
        let tampered = |what: &str| Error::Tampered {
            file: name.to_owned(),
            what: what.to_owned(),
        };
        let size = enc
            .metadata()
            .map_err(|e| Error::io("examining", path, e))?
            .len();
        let mut head = [0u8; HEADER_LEN as usize];
        if size < HEADER_LEN + TAG || enc.read_exact_at(&mut head, 0).is_err() {
            return Err(tampered("is too short for an encrypted image"));
        }
        if &head[..8] != MAGIC {
            return Err(tampered("is not encrypted (the dump was)"));
        }
        if head != header(dump_id) {
            return Err(tampered(
                "has a header of another version, scheme, chunk size or dump than its manifest",
            ));
        }
        // The body is the plaintext's length and a tag per chunk.
        let body = size - HEADER_LEN;
        let chunks = body.div_ceil(CHUNK + TAG);
        let len = body - chunks * TAG;
        if len.div_ceil(CHUNK).max(1) != chunks {
            return Err(tampered("has a length no sealed file has"));
        }
        let (tags_at, _) = layout(len, chunks);
        let mut tags = vec![[0u8; 16]; chunks as usize];
        enc.read_exact_at(tags.as_flattened_mut(), tags_at)
            .map_err(|e| Error::io("reading", path, e))?;
        let digest = digest_of(size, &head, &tags);
        let sealed = Sealed {
            name: name.to_owned(),
            path: path.to_owned(),
            enc,
            head,
            len,
            tags,
            cipher: cipher(key, dump_id, name),
        };
        Ok((sealed, digest))
    }

    /// The plaintext's bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's name in its dump.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Decrypts chunk `k` (plaintext bytes `k * CHUNK` on) into `buf`,
    /// its tag checked: `buf` holds its plaintext after, or nothing when
    /// the chunk does not decrypt.
    pub fn open_chunk(&self, k: u64, buf: &mut Vec<u8>) -> Result<()> {
        let chunks = self.tags.len() as u64;
        let (Some(tag), true) = (self.tags.get(k as usize), k < chunks) else {
            return Err(Error::io(
                "decrypting",
                &self.path,
                std::io::Error::other(format!("no chunk {k} (of {chunks})")),
            ));
        };
        let at = HEADER_LEN + k * CHUNK;
        let n = (self.len - k * CHUNK).min(CHUNK);
        buf.resize(n as usize, 0);
        self.enc
            .read_exact_at(buf, at)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        let r = self.cipher.open_in_place_separate_tag(
            nonce(k, k + 1 == chunks),
            Aad::from(&self.head),
            Tag::from(*tag),
            buf,
            0..,
        );
        if r.is_err() {
            buf.fill(0);
            buf.clear();
            return Err(Error::Tampered {
                file: self.name.clone(),
                what: format!(
                    "does not decrypt at chunk {k} (offset {at}): the wrong key, or changed since \
                     the dump"
                ),
            });
        }
        Ok(())
    }

    /// Decrypts the whole file into `plain` (an empty file), a worker
    /// per CPU, every chunk checked.
    pub fn decrypt_into(&self, plain: &File) -> Result<()> {
        plain
            .set_len(self.len)
            .map_err(|e| Error::io("decrypting", &self.path, e))?;
        each_chunk(self.tags.len() as u64, |k, buf| {
            self.open_chunk(k, buf)?;
            let r = plain.write_all_at(buf, k * CHUNK);
            buf.fill(0);
            r.map_err(|e| Error::io("decrypting", &self.path, e))?;
            Ok(self.tags[k as usize])
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd() -> File {
        File::from(rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap())
    }

    fn round(len: usize) -> (Key, [u8; 16], File, Vec<u8>) {
        let key = Key::parse(&[7u8; 32], "k").unwrap();
        let id = [3u8; 16];
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let plain = memfd();
        plain.write_all_at(&data, 0).unwrap();
        let out = memfd();
        seal(
            &key,
            &id,
            "pages-1.img",
            &plain,
            len as u64,
            &out,
            Path::new("o"),
        )
        .unwrap();
        (key, id, out, data)
    }

    fn back(key: &Key, id: &[u8; 16], name: &str, enc: &File) -> Result<Vec<u8>> {
        let p = memfd();
        let (n, _) = open(key, id, name, enc, &p, Path::new("o"))?;
        let mut v = vec![0u8; n as usize];
        p.read_exact_at(&mut v, 0).unwrap();
        Ok(v)
    }

    #[test]
    fn round_trips_at_every_size() {
        for len in [
            0,
            1,
            4095,
            CHUNK as usize,
            CHUNK as usize + 1,
            3 * CHUNK as usize + 17,
        ] {
            let (key, id, enc, data) = round(len);
            assert_eq!(back(&key, &id, "pages-1.img", &enc).unwrap(), data, "{len}");
        }
    }

    #[test]
    fn any_change_is_refused() {
        let (key, id, enc, _) = round(2 * CHUNK as usize + 5);
        // Another name, another dump, another key.
        assert!(back(&key, &id, "pages-2.img", &enc).is_err());
        assert!(back(&key, &[4u8; 16], "pages-1.img", &enc).is_err());
        let other = Key::parse(&[8u8; 32], "k").unwrap();
        assert!(back(&other, &id, "pages-1.img", &enc).is_err());
        // A flipped byte anywhere.
        let size = enc.metadata().unwrap().len();
        for at in [0, 9, 20, HEADER_LEN, HEADER_LEN + CHUNK + 3, size - 1] {
            let (key, id, enc, _) = round(2 * CHUNK as usize + 5);
            let mut b = [0u8];
            enc.read_exact_at(&mut b, at).unwrap();
            enc.write_all_at(&[b[0] ^ 1], at).unwrap();
            assert!(back(&key, &id, "pages-1.img", &enc).is_err(), "{at}");
        }
        // Cut at a chunk boundary, or inside one.
        for cut in [
            HEADER_LEN + CHUNK + TAG,
            HEADER_LEN + 2 * (CHUNK + TAG),
            size - 1,
        ] {
            let (key, id, enc, _) = round(2 * CHUNK as usize + 5);
            enc.set_len(cut).unwrap();
            assert!(back(&key, &id, "pages-1.img", &enc).is_err(), "{cut}");
        }
    }

    #[test]
    fn sealed_in_place_as_from_a_copy() {
        for len in [0usize, 5, CHUNK as usize, 2 * CHUNK as usize + 4097] {
            let (key, id, enc, data) = round(len);
            let file = memfd();
            file.write_all_at(&data, HEADER_LEN).unwrap();
            file.set_len(HEADER_LEN + len as u64).unwrap();
            let d = seal_in_place(&key, &id, "pages-1.img", &file, Path::new("o")).unwrap();
            let bytes = |f: &File| {
                let mut v = vec![0u8; f.metadata().unwrap().len() as usize];
                f.read_exact_at(&mut v, 0).unwrap();
                v
            };
            assert_eq!(bytes(&file), bytes(&enc), "{len}");
            let p = memfd();
            let (n, d2) = open(&key, &id, "pages-1.img", &file, &p, Path::new("o")).unwrap();
            assert_eq!((n, d.hash), (len as u64, d2.hash));
        }
    }

    #[test]
    fn swapped_chunks_or_tags_are_refused() {
        let swap = |a: u64, b: u64, n: usize| {
            let (key, id, enc, _) = round(3 * CHUNK as usize);
            let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
            enc.read_exact_at(&mut x, a).unwrap();
            enc.read_exact_at(&mut y, b).unwrap();
            enc.write_all_at(&y, a).unwrap();
            enc.write_all_at(&x, b).unwrap();
            back(&key, &id, "pages-1.img", &enc)
        };
        let c = CHUNK as usize;
        assert!(swap(HEADER_LEN, HEADER_LEN + CHUNK, c).is_err());
        let tags = HEADER_LEN + 3 * CHUNK;
        assert!(swap(tags, tags + TAG, TAG as usize).is_err());
        // The control: swapping a chunk with itself changes nothing.
        assert!(swap(HEADER_LEN, HEADER_LEN, c).is_ok());
    }

    #[test]
    fn keys_parse_raw_or_hex() {
        let hex = "00".repeat(31) + "ff\n";
        assert_eq!(Key::parse(hex.as_bytes(), "k").unwrap().0[31], 0xff);
        assert!(Key::parse(b"short", "k").is_err());
        assert!(Key::parse("zz".repeat(32).as_bytes(), "k").is_err());
    }
}
