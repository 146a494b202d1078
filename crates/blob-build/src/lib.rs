//! Builds rcriu's `no_std` blobs (the parasite, the restorer) from a build
//! script, and turns each into a flat image the host can copy anywhere.
//!
//! A blob is an ordinary Rust binary crate of the `parasite/` workspace,
//! built for the host target by a nested `cargo build --release` with a
//! clean flags environment and these flags: position-independent code
//! linked as a static PIE with no start files and no C library, its entry
//! the head symbol. From the resulting ELF this crate takes:
//! - the loadable segments, laid out from address 0 as they are in memory
//!   (bss zero-filled): the **image**;
//! - `data_off`: where the writable part starts (page aligned), so the host
//!   can map the code read-only and executable and the rest writable;
//! - the dynamic relocations, which must all be `R_X86_64_RELATIVE` (an
//!   address computed from the load address): the host applies them when
//!   it knows where the blob lands. Anything else fails the build;
//! - the offsets of the named symbols (entry points).
//!
//! It writes `<name>.bin` and `<name>.rs` in `OUT_DIR`; the crate that
//! embeds the blob does `include!(concat!(env!("OUT_DIR"), "/<name>.rs"))`.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use goblin::elf::Elf;
use goblin::elf::program_header::{PF_W, PT_DYNAMIC, PT_INTERP, PT_LOAD, PT_TLS};

/// `R_X86_64_RELATIVE`.
const R_X86_64_RELATIVE: u32 = 8;
const PAGE: u64 = 4096;

/// A blob, flattened.
#[derive(Debug)]
pub struct Blob {
    /// The memory image from address 0.
    pub image: Vec<u8>,
    /// Where the writable part starts (page aligned).
    pub data_off: u64,
    /// `(offset, addend)`: the host stores `load address + addend` as a
    /// u64 at `offset`.
    pub relocs: Vec<(u64, i64)>,
    /// The requested symbols and their offsets.
    pub symbols: Vec<(String, u64)>,
}

/// What to build.
#[derive(Debug)]
pub struct Spec<'a> {
    /// The blob crate's directory (holding its Cargo.toml).
    pub crate_dir: &'a Path,
    /// The binary's name.
    pub bin: &'a str,
    /// The entry symbol (linked as the ELF entry; must be listed in
    /// `symbols` to be exported to the host).
    pub entry: &'a str,
    /// Symbols whose offsets the host needs.
    pub symbols: &'a [&'a str],
    /// The name of the generated files (`<name>.bin`, `<name>.rs`).
    pub name: &'a str,
}

/// Builds the blob, flattens it and writes the generated files into
/// `OUT_DIR`. Prints the `cargo:rerun-if-changed` lines. Meant to be
/// called from a build script; errors are for it to panic with.
pub fn build(spec: &Spec<'_>) -> Result<Blob, String> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    // The blobs' workspace: every blob, the runtime and the ABI crate.
    if let Some(ws) = spec.crate_dir.parent() {
        println!("cargo:rerun-if-changed={}", ws.display());
    }

    let elf_path = cargo_build(spec, &out_dir)?;
    let bytes = std::fs::read(&elf_path)
        .map_err(|e| format!("reading the blob ELF {}: {e}", elf_path.display()))?;
    let blob = flatten(&bytes, spec)?;

    let bin_path = out_dir.join(format!("{}.bin", spec.name));
    std::fs::write(&bin_path, &blob.image)
        .map_err(|e| format!("writing {}: {e}", bin_path.display()))?;
    let rs_path = out_dir.join(format!("{}.rs", spec.name));
    std::fs::write(&rs_path, generated_rust(&blob, spec.name))
        .map_err(|e| format!("writing {}: {e}", rs_path.display()))?;
    Ok(blob)
}

/// The flags every blob is built with.
fn rustflags(entry: &str) -> Vec<String> {
    [
        "-Crelocation-model=pie",
        "-Cpanic=abort",
        "-Cforce-unwind-tables=no",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-static-pie",
        "-Clink-arg=-Wl,--gc-sections",
        "-Clink-arg=-Wl,--build-id=none",
        "-Clink-arg=-Wl,-z,norelro",
        "-Clink-arg=-Wl,--no-dynamic-linker",
        "-Clink-arg=-Wl,-z,noexecstack",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("-Clink-arg=-Wl,-e,{entry}")])
    .collect()
}

fn cargo_build(spec: &Spec<'_>, out_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = out_dir.join(format!("{}-target", spec.name));
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--offline")
        .arg("--manifest-path")
        .arg(spec.crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--bin")
        .arg(spec.bin);
    // A clean flags environment: nothing of the outer build's flags,
    // wrappers (clippy's included) or target selection reaches the blob.
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_TARGET_")
            || k.starts_with("CARGO_ENCODED_")
            || matches!(
                k,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_INCREMENTAL"
                    | "CLIPPY_ARGS"
                    | "CLIPPY_CONF_DIR"
            )
        {
            cmd.env_remove(k);
        }
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        rustflags(spec.entry).join("\x1f"),
    );
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo for the {} blob: {e}", spec.name))?;
    if !status.success() {
        return Err(format!("building the {} blob failed: {status}", spec.name));
    }
    Ok(target_dir.join("release").join(spec.bin))
}

/// Flattens a blob's ELF (see the crate documentation).
pub fn flatten(bytes: &[u8], spec: &Spec<'_>) -> Result<Blob, String> {
    let elf = Elf::parse(bytes).map_err(|e| format!("parsing the blob ELF: {e}"))?;
    if elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err("the blob is not an x86_64 ELF".into());
    }
    if elf.header.e_type != goblin::elf::header::ET_DYN {
        return Err("the blob is not position independent (ET_DYN)".into());
    }
    let mut end = 0u64;
    let mut data_off = u64::MAX;
    let mut code_end = 0u64;
    for ph in &elf.program_headers {
        match ph.p_type {
            PT_INTERP => return Err("the blob asks for a dynamic linker".into()),
            PT_TLS => return Err("the blob has thread-local storage".into()),
            PT_LOAD => {
                end = end.max(ph.p_vaddr + ph.p_memsz);
                if ph.p_flags & PF_W != 0 {
                    data_off = data_off.min(ph.p_vaddr & !(PAGE - 1));
                } else {
                    code_end = code_end.max(ph.p_vaddr + ph.p_memsz);
                }
            }
            PT_DYNAMIC => {}
            _ => {}
        }
    }
    if end == 0 {
        return Err("the blob has no loadable segment".into());
    }
    if data_off == u64::MAX {
        data_off = end.next_multiple_of(PAGE);
    }
    if code_end > data_off {
        return Err(format!(
            "the blob's read-only part ends at {code_end:#x}, past the start of its writable part at {data_off:#x}"
        ));
    }
    if end > 64 << 20 {
        return Err(format!("the blob is {end} bytes in memory, too large"));
    }
    let mut image = vec![0u8; usize::try_from(end).map_err(|e| e.to_string())?];
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
        let (off, size) = (ph.p_offset as usize, ph.p_filesz as usize);
        let src = bytes
            .get(off..off + size)
            .ok_or("a segment lies outside the ELF file")?;
        let at = ph.p_vaddr as usize;
        image[at..at + size].copy_from_slice(src);
    }

    if !elf.pltrelocs.is_empty() {
        return Err("the blob has PLT relocations: it calls something it does not define".into());
    }
    let mut relocs = Vec::new();
    for r in elf.dynrelas.iter().chain(elf.dynrels.iter()) {
        if r.r_type != R_X86_64_RELATIVE {
            let name = elf
                .dynsyms
                .get(r.r_sym)
                .and_then(|s| elf.dynstrtab.get_at(s.st_name))
                .unwrap_or("?");
            return Err(format!(
                "the blob has a relocation of type {} at {:#x} (symbol {name}): only R_X86_64_RELATIVE can be applied",
                r.r_type, r.r_offset
            ));
        }
        if r.r_offset + 8 > end {
            return Err(format!(
                "a relocation at {:#x} lies outside the image",
                r.r_offset
            ));
        }
        relocs.push((r.r_offset, r.r_addend.unwrap_or(0)));
    }

    let mut symbols = Vec::new();
    for want in spec.symbols {
        let sym = elf
            .syms
            .iter()
            .find(|s| elf.strtab.get_at(s.st_name) == Some(*want))
            .ok_or_else(|| format!("the blob has no symbol {want}"))?;
        symbols.push((want.to_string(), sym.st_value));
    }
    Ok(Blob {
        image,
        data_off,
        relocs,
        symbols,
    })
}

fn generated_rust(blob: &Blob, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// Generated by rcriu-blob-build from the {name} blob: do not edit."
    );
    let _ = writeln!(
        s,
        "pub const IMAGE: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.bin\"));"
    );
    let _ = writeln!(s, "pub const DATA_OFF: usize = {:#x};", blob.data_off);
    let _ = writeln!(s, "pub const RELOCS: &[(usize, i64)] = &[");
    for (off, addend) in &blob.relocs {
        let _ = writeln!(s, "    ({off:#x}, {addend:#x}),");
    }
    let _ = writeln!(s, "];");
    for (sym, off) in &blob.symbols {
        let _ = writeln!(
            s,
            "pub const {}: usize = {off:#x};",
            sym.to_ascii_uppercase()
        );
    }
    s
}
