//! The crate's error type.

use std::path::PathBuf;

/// What went wrong in an image file, at a given offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("unknown magic {0:#010x}")]
    UnknownMagic(u32),
    #[error("{0:#010x} is a raw image (pages, ifaddr, ...), not one of entries")]
    RawMagic(u32),
    #[error("expected a {expected} image, found {found}")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("{what} {value:#x} is not {expected:#x}")]
    BadWord {
        what: &'static str,
        value: u32,
        expected: u32,
    },
    #[error("file ends {missing} bytes short of a {needed}-byte {what}")]
    Truncated {
        what: &'static str,
        needed: u64,
        missing: u64,
    },
    #[error("entry of {len} bytes exceeds the {} MiB limit", limit >> 20)]
    EntryTooLarge { len: u64, limit: u64 },
    #[error("a {0} image holds no entries of its own")]
    NoEntries(&'static str),
    #[error("bad {message}: {detail}")]
    Protobuf { message: String, detail: String },
    #[error("{0}")]
    Other(String),
}

/// Errors of rcriu-images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The system refused an operation on a file.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image (or a file a dump names) is not a regular file.
    #[error("{}: {what}, not a regular file", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    /// A file of a dump is not the one its manifest says it wrote.
    #[error("the images are not the ones the dump wrote: {file} {what}")]
    Tampered { file: String, what: String },
    /// A key for encrypted images that cannot be used.
    #[error("the key {what} {why}")]
    Key { what: String, why: String },
    /// Encrypted images, and no key (or a key for plain ones).
    #[error("{0}")]
    Encryption(String),
    /// Images a restore with `--auto-dedup` read and punched out.
    #[error(
        "the images in {} were consumed by a restore with --auto-dedup (their pages punched out as read, rcriu-consumed): they cannot be restored again",
        path.display()
    )]
    Consumed { path: PathBuf },
    /// An image could not be encrypted.
    #[error("encrypting {file} failed")]
    Sealing { file: String },
    /// A directory others could write in, refused for writing images.
    #[error("refusing the images directory {}: {why}", path.display())]
    UnsafeDir { path: PathBuf, why: String },
    /// An image's bytes are not what the format allows.
    #[error("reading {file} at offset {offset}: {problem}")]
    Corrupt {
        file: String,
        offset: u64,
        problem: Problem,
    },
    /// Something cannot be written as an image.
    #[error("writing {file}: {problem}")]
    Unwritable { file: String, problem: Problem },
    /// A JSON document is not an image in crit's form.
    #[error("encoding {file}: {path}: {detail}")]
    Json {
        file: String,
        path: String,
        detail: String,
    },
    /// A JSON document that does not parse.
    #[error("parsing {file} as JSON")]
    JsonSyntax {
        file: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(file: &str, offset: u64, problem: Problem) -> Self {
        Error::Corrupt {
            file: file.to_owned(),
            offset,
            problem,
        }
    }

    /// The byte offset the error is about, when it is about one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Corrupt { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
