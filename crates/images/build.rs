//! Compiles the schema in `proto/` with protox (no `protoc` needed):
//! - `images.fds` / `rpc.fds`: the encoded descriptor sets, options
//!   included, for the JSON layer;
//! - `images/_.rs` / `rpc/_.rs`: prost structs for the engine, in which
//!   every `string` field is typed as bytes (CRIU stores kernel names,
//!   which need not be UTF-8, and never checks them).

use std::error::Error;
use std::path::{Path, PathBuf};

use prost::Message as _;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorSet};

const IMAGE_PROTOS: &[&str] = &[
    "opts.proto",
    "common.proto",
    "arch.proto",
    "task.proto",
    "memory.proto",
    "sockets.proto",
    "namespaces.proto",
    "files.proto",
    "service.proto",
];

/// The fields of `file_entry` that each hold one kind of file.
const FILE_KINDS: &[&str] = &[
    "reg",
    "isk",
    "nsf",
    "psk",
    "nlsk",
    "efd",
    "epfd",
    "sgfd",
    "tunf",
    "tfd",
    "ify",
    "ffy",
    "ext",
    "usk",
    "fifo",
    "pipe",
    "tty",
    "memfd",
    "bpf",
    "pidfd",
    "rcriu_io_uring",
];

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest.join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo::rerun-if-changed={}", proto_dir.display());
    compile(&proto_dir, IMAGE_PROTOS, &out, "images")?;
    compile(&proto_dir, &["rpc.proto"], &out, "rpc")?;
    Ok(())
}

fn compile(dir: &Path, files: &[&str], out: &Path, name: &str) -> Result<(), Box<dyn Error>> {
    for f in files {
        println!("cargo::rerun-if-changed={}", dir.join(f).display());
    }
    let mut compiler = protox::Compiler::new([dir])?;
    compiler.include_imports(true);
    compiler.include_source_info(false);
    compiler.open_files(files)?;
    std::fs::write(
        out.join(format!("{name}.fds")),
        compiler.encode_file_descriptor_set(),
    )?;

    let mut set = FileDescriptorSet::decode(compiler.encode_file_descriptor_set().as_slice())?;
    set.file.retain(|f| !f.name().starts_with("google/"));
    for file in &mut set.file {
        for msg in &mut file.message_type {
            strings_as_bytes(msg);
        }
    }
    let dest = out.join(name);
    std::fs::create_dir_all(&dest)?;
    let mut config = prost_build::Config::new();
    config.out_dir(&dest).enable_type_names();
    // A file entry holds one kind of the twenty it may: boxed, each is a
    // pointer, and an entry some 200 bytes rather than 2.5 KB (a dump of
    // ten thousand sockets moves and zeroes 24 MB less, twice).
    for kind in FILE_KINDS {
        config.boxed(format!(".file_entry.{kind}"));
    }
    config.compile_fds(set)?;
    Ok(())
}

fn strings_as_bytes(msg: &mut DescriptorProto) {
    for field in &mut msg.field {
        if field.r#type() == Type::String {
            field.set_type(Type::Bytes);
        }
    }
    for nested in &mut msg.nested_type {
        strings_as_bytes(nested);
    }
}
