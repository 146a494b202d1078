//! The framing of entry images: magic words, then entries, each a
//! little-endian u32 length and that many bytes of protobuf, some
//! followed by a raw payload.

use std::io::{self, Read, Write};

use prost::{Message, Name};

use crate::error::{Error, Problem, Result};
use crate::kind::{Head, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, Kind};

/// The largest entry accepted, read or written. CRIU's biggest entries
/// (an `mm_entry` with every VMA of a process, a `cgroup_entry`) stay far
/// below it.
pub const MAX_ENTRY_SIZE: u64 = 64 << 20;

/// Reads the magic words of an image and returns its kind and the
/// number of bytes they took.
fn read_head(r: &mut impl Read, file: &str) -> Result<(Kind, u64)> {
    let first = read_word(r, file, 0, "magic")?
        .ok_or_else(|| Error::corrupt(file, 0, truncated("magic", 4, 4)))?;
    let (head, kind_magic, at) = match first {
        IMG_COMMON_MAGIC | IMG_SERVICE_MAGIC => {
            let second = read_word(r, file, 4, "magic")?
                .ok_or_else(|| Error::corrupt(file, 4, truncated("magic", 4, 4)))?;
            let head = if first == IMG_COMMON_MAGIC {
                Head::Common
            } else {
                Head::Service
            };
            (head, second, 4)
        }
        other => (Head::Bare, other, 0),
    };
    let kind = match Kind::from_magic(kind_magic) {
        Some(k) => k,
        None if kind_magic == 0 => {
            return Err(Error::corrupt(file, at, Problem::RawMagic(kind_magic)));
        }
        None => return Err(Error::corrupt(file, at, Problem::UnknownMagic(kind_magic))),
    };
    if kind.head() != head {
        let expected = kind.head().word().unwrap_or(kind.magic());
        return Err(Error::corrupt(
            file,
            0,
            Problem::BadWord {
                what: "first magic",
                value: first,
                expected,
            },
        ));
    }
    Ok((kind, at + 4))
}

fn truncated(what: &'static str, needed: u64, missing: u64) -> Problem {
    Problem::Truncated {
        what,
        needed,
        missing,
    }
}

/// Reads a little-endian u32; `None` at a clean end of file.
fn read_word(
    r: &mut impl Read,
    file: &str,
    offset: u64,
    what: &'static str,
) -> Result<Option<u32>> {
    let mut word = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut word[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading", file, e)),
        }
    }
    match got {
        0 => Ok(None),
        4 => Ok(Some(u32::from_le_bytes(word))),
        n => Err(Error::corrupt(
            file,
            offset,
            truncated(what, 4, 4 - n as u64),
        )),
    }
}

/// Reads exactly `len` bytes into `buf` (cleared first), growing it only
/// as bytes arrive.
fn read_exactly(
    r: &mut impl Read,
    len: u64,
    buf: &mut Vec<u8>,
    file: &str,
    offset: u64,
    what: &'static str,
) -> Result<()> {
    buf.clear();
    let got = r
        .take(len)
        .read_to_end(buf)
        .map_err(|e| Error::io("reading", file, e))? as u64;
    if got < len {
        return Err(Error::corrupt(
            file,
            offset,
            truncated(what, len, len - got),
        ));
    }
    Ok(())
}

/// Which messages an image of `kind` may hold besides its entry message.
fn accepts(kind: Kind, message: &str) -> bool {
    message == kind.entry_message()
        || matches!(
            (kind, message),
            (Kind::Pagemap, "pagemap_head")
                | (Kind::GhostFile, "ghost_chunk_entry")
                | (Kind::IpcnsMsg, "ipc_msg")
        )
}

/// Reads the entries of one image.
pub struct ImageReader<R> {
    inner: R,
    file: String,
    kind: Kind,
    offset: u64,
    left: Option<u64>,
    buf: Vec<u8>,
}

impl<R: Read> ImageReader<R> {
    /// Reads the magic words from `inner`; `file` names the image in
    /// errors.
    pub fn new(inner: R, file: impl Into<String>) -> Result<Self> {
        Self::start(inner, file.into(), None)
    }

    /// As [`new`](Self::new), for a source of `len` bytes in all: lengths
    /// are then checked against the bytes really left.
    pub fn with_len(inner: R, file: impl Into<String>, len: u64) -> Result<Self> {
        Self::start(inner, file.into(), Some(len))
    }

    fn start(mut inner: R, file: String, len: Option<u64>) -> Result<Self> {
        let (kind, offset) = read_head(&mut inner, &file)?;
        Ok(ImageReader {
            inner,
            file,
            kind,
            offset,
            left: len.map(|l| l.saturating_sub(offset)),
            buf: Vec::new(),
        })
    }

    /// The kind, from the magic.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The name used in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The offset of the next byte to be read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn consumed(&mut self, n: u64) {
        self.offset += n;
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(n);
        }
    }

    fn check_len(&self, len: u64, what: &'static str) -> Result<()> {
        if let Some(left) = self.left
            && len > left
        {
            return Err(Error::corrupt(
                &self.file,
                self.offset,
                truncated(what, len, len - left),
            ));
        }
        Ok(())
    }

    /// The next entry's protobuf bytes and their offset, or `None` at the
    /// end of the image.
    pub fn next_raw(&mut self) -> Result<Option<(u64, &[u8])>> {
        let at = self.offset;
        let Some(len) = read_word(&mut self.inner, &self.file, at, "entry size")? else {
            return Ok(None);
        };
        self.consumed(4);
        let len = u64::from(len);
        if len > MAX_ENTRY_SIZE {
            return Err(Error::corrupt(
                &self.file,
                at,
                Problem::EntryTooLarge {
                    len,
                    limit: MAX_ENTRY_SIZE,
                },
            ));
        }
        self.check_len(len, "entry")?;
        let start = self.offset;
        read_exactly(
            &mut self.inner,
            len,
            &mut self.buf,
            &self.file,
            start,
            "entry",
        )?;
        self.consumed(len);
        Ok(Some((start, &self.buf)))
    }

    /// The next entry as `M`, or `None` at the end of the image.
    pub fn read_next<M: Message + Name + Default>(&mut self) -> Result<Option<M>> {
        if !accepts(self.kind, M::NAME) {
            return Err(Error::corrupt(
                &self.file,
                self.offset,
                Problem::WrongKind {
                    expected: self.kind.entry_message(),
                    found: M::NAME,
                },
            ));
        }
        let file = self.file.clone();
        let Some((at, bytes)) = self.next_raw()? else {
            return Ok(None);
        };
        M::decode(bytes).map(Some).map_err(|e| {
            Error::corrupt(
                &file,
                at,
                Problem::Protobuf {
                    message: M::NAME.to_owned(),
                    detail: e.to_string(),
                },
            )
        })
    }

    /// The next entry as `M`; the end of the image is an error.
    pub fn expect_next<M: Message + Name + Default>(&mut self) -> Result<M> {
        let at = self.offset;
        self.read_next()?
            .ok_or_else(|| Error::corrupt(&self.file, at, truncated("entry size", 4, 4)))
    }

    /// Reads `len` bytes of payload.
    pub fn read_payload(&mut self, len: u64) -> Result<Vec<u8>> {
        self.check_len(len, "payload")?;
        let mut out = Vec::new();
        read_exactly(
            &mut self.inner,
            len,
            &mut out,
            &self.file,
            self.offset,
            "payload",
        )?;
        self.consumed(len);
        Ok(out)
    }

    /// Copies `len` bytes of payload into `w`, without holding them all.
    pub fn copy_payload(&mut self, len: u64, w: &mut impl Write) -> Result<()> {
        self.check_len(len, "payload")?;
        let got = io::copy(&mut (&mut self.inner).take(len), w)
            .map_err(|e| Error::io("copying the payload of", &self.file, e))?;
        if got < len {
            return Err(Error::corrupt(
                &self.file,
                self.offset,
                truncated("payload", len, len - got),
            ));
        }
        self.consumed(len);
        Ok(())
    }

    /// Reads everything left (the data of a ghost file without chunks).
    pub fn read_rest(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let got = self
            .inner
            .read_to_end(&mut out)
            .map_err(|e| Error::io("reading", &self.file, e))?;
        self.consumed(got as u64);
        Ok(out)
    }

    /// Reads every remaining entry as `M`.
    pub fn read_all<M: Message + Name + Default>(&mut self) -> Result<Vec<M>> {
        let mut out = Vec::new();
        while let Some(m) = self.read_next()? {
            out.push(m);
        }
        Ok(out)
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl ImageWriter<std::io::BufWriter<std::fs::File>> {
    /// Moves up to `len` bytes from the pipe `pipe` to the image, after the
    /// entry just written, with `splice(2)` (pipes-data, fifo-data);
    /// returns how many moved (0 when the pipe's writers are gone).
    pub fn splice_payload(&mut self, pipe: impl std::os::fd::AsFd, len: usize) -> Result<usize> {
        self.inner
            .flush()
            .map_err(|e| Error::io("writing", &self.file, e))?;
        let moved = rustix::pipe::splice(
            pipe,
            None,
            self.inner.get_ref(),
            None,
            len,
            rustix::pipe::SpliceFlags::MOVE,
        )
        .map_err(|e| Error::io("splicing a payload into", &self.file, e.into()))?;
        self.offset += moved as u64;
        Ok(moved)
    }
}

/// Writes the entries of one image.
pub struct ImageWriter<W: Write> {
    inner: W,
    file: String,
    kind: Kind,
    offset: u64,
    buf: Vec<u8>,
}

impl<W: Write> ImageWriter<W> {
    /// Writes the magic words of `kind` to `inner`; `file` names the image
    /// in errors.
    pub fn new(mut inner: W, kind: Kind, file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        let mut head = Vec::with_capacity(8);
        if let Some(w) = kind.head().word() {
            head.extend_from_slice(&w.to_le_bytes());
        }
        head.extend_from_slice(&kind.magic().to_le_bytes());
        inner
            .write_all(&head)
            .map_err(|e| Error::io("writing", &file, e))?;
        Ok(ImageWriter {
            inner,
            file,
            kind,
            offset: head.len() as u64,
            buf: Vec::new(),
        })
    }

    /// The kind being written.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Writes one entry.
    pub fn write<M: Message + Name>(&mut self, m: &M) -> Result<()> {
        if !accepts(self.kind, M::NAME) {
            return Err(Error::Unwritable {
                file: self.file.clone(),
                problem: Problem::WrongKind {
                    expected: self.kind.entry_message(),
                    found: M::NAME,
                },
            });
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(m.encoded_len());
        // Encoding into a Vec cannot run out of room.
        let encoded = m.encode(&mut buf);
        let result = match encoded {
            Ok(()) => self.write_raw(&buf),
            Err(e) => Err(Error::Unwritable {
                file: self.file.clone(),
                problem: Problem::Other(e.to_string()),
            }),
        };
        self.buf = buf;
        result
    }

    /// Writes one entry from its protobuf bytes.
    pub fn write_raw(&mut self, entry: &[u8]) -> Result<()> {
        let len = entry.len() as u64;
        if len > MAX_ENTRY_SIZE {
            return Err(Error::Unwritable {
                file: self.file.clone(),
                problem: Problem::EntryTooLarge {
                    len,
                    limit: MAX_ENTRY_SIZE,
                },
            });
        }
        let size = (len as u32).to_le_bytes();
        self.put(&size)?;
        self.put(entry)
    }

    /// Writes raw payload bytes after an entry.
    pub fn write_payload(&mut self, bytes: &[u8]) -> Result<()> {
        self.put(bytes)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner
            .write_all(bytes)
            .map_err(|e| Error::io("writing", &self.file, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        self.inner
            .flush()
            .map_err(|e| Error::io("writing", &self.file, e))?;
        Ok(self.inner)
    }

    /// The underlying writer, for a payload written by other means
    /// (flush it first when it buffers); then tell [`written`](Self::written)
    /// how many bytes went in.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Accounts for `n` payload bytes written through
    /// [`get_mut`](Self::get_mut).
    pub fn written(&mut self, n: u64) {
        self.offset += n;
    }
}
