//! CRIU's image format, byte for byte.
//!
//! - [`Kind`]: every kind of image, found from its magic;
//! - [`ImageReader`] / [`ImageWriter`]: the framing (magic words, then
//!   length-prefixed protobuf entries, some followed by raw payloads);
//! - [`ImageDir`] / [`ImageFile`]: a dump directory and its file names;
//! - [`pages`]: pagemap and raw pages files as streams;
//! - [`pb`]: the prost structs of every entry (and [`rpc`], CRIU's RPC);
//! - [`json`]: crit's JSON form, both ways.
//!
//! ```
//! use rcriu_images::{ImageDir, ImageFile, pb, pages::PE_PRESENT};
//!
//! # let tmp = std::env::temp_dir().join(format!("rcriu-doc-{}", std::process::id()));
//! let dir = ImageDir::create(&tmp)?; // mode 0700; every file 0600
//! dir.write_all(ImageFile::Pstree, &[pb::PstreeEntry { pid: 42, ppid: 0, pgid: 42, sid: 42, threads: vec![42], ..Default::default() }])?;
//! let mut pagemap = dir.create_pagemap(42, 1)?;
//! let mut pages = dir.create_pages(1)?;
//! pagemap.add(0x7f00_0000_0000, 1, PE_PRESENT)?;
//! pages.write_pages(&[0xaa; 4096])?; // or pages.splice_from(pipe, len)
//! pagemap.finish()?;
//!
//! assert_eq!(dir.pstree()?[0].threads, [42]);
//! let mut runs = dir.pagemap(42)?;
//! let run = runs.next_run()?.unwrap();
//! let mut buf = vec![0; run.len() as usize];
//! dir.pages(runs.pages_id())?.read_pages_at(&mut buf, run.pages_offset.unwrap())?;
//! assert_eq!(buf, [0xaa; 4096]);
//! # std::fs::remove_dir_all(&tmp).unwrap();
//! # Ok::<(), rcriu_images::Error>(())
//! ```
//!
//! rcriu's own additions to the format are fields and enum values
//! numbered from 1000 (`rcriu_*` in `proto/`), which CRIU's readers skip
//! or refuse, never misread: e.g. an io_uring instance is a `file_entry`
//! of type `IO_URING` (1000) holding `rcriu_io_uring` (1000), which
//! CRIU 4.2's restore refuses as an unknown file type;
//! `docs/state-inventory.md` lists each.
//!
//! In [`pb`] and [`rpc`], fields that the schema declares `string` are
//! `Vec<u8>`: CRIU stores names as the kernel gives them, which need not
//! be UTF-8, and the wire form of both types is the same.
#![forbid(unsafe_code)]

pub mod build_id;
pub mod crypt;
pub mod dedup;
mod dir;
mod error;
mod file;
mod framing;
pub mod json;
mod kind;
pub mod manifest;
pub mod pages;
pub mod vma;

pub use dir::{DIR_MODE, FILE_MODE, ImageDir, KEPT_MARK, open_image};
pub use error::{Error, Problem, Result};
pub use file::ImageFile;
pub use framing::{ImageReader, ImageWriter, MAX_ENTRY_SIZE};
pub use kind::{Head, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, Kind, Payload};

/// The image schema, as prost structs (`core_entry` is [`pb::CoreEntry`]).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/images/_.rs"));
}

/// CRIU's RPC schema, as prost structs.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/rpc/_.rs"));
}
