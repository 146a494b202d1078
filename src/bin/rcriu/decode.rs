//! `rcriu decode`: an image to crit's JSON (as `crit decode`).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use rcriu::images::{self, ImageReader};

/// `rcriu decode [-i IMG] [-o JSON] [--pretty]`.
#[derive(Debug, clap::Parser)]
#[command(name = "rcriu decode", about = "Decode an image into crit's JSON")]
pub struct Args {
    /// The image (standard input when absent).
    #[arg(short = 'i', long = "in")]
    pub input: Option<PathBuf>,
    /// Where to write the JSON (standard output when absent).
    #[arg(short = 'o', long = "out")]
    pub output: Option<PathBuf>,
    /// Indented, with crit show's forms (hex, flag and value names, devices).
    #[arg(long)]
    pub pretty: bool,
}

/// Reads an image from a file or standard input and decodes it.
pub fn decode_from(
    input: Option<&std::path::Path>,
    pretty: bool,
) -> anyhow::Result<images::json::Value> {
    Ok(match input {
        Some(path) => {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some(f) = images::ImageFile::parse(name)
                && f.kind().is_none()
            {
                anyhow::bail!(
                    "{} is a raw image (no magic, no entries): nothing to decode",
                    path.display()
                );
            }
            images::json::decode_image(images::open_image(path)?, pretty)?
        }
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("reading the image from standard input")?;
            let r = ImageReader::with_len(bytes.as_slice(), "<stdin>", bytes.len() as u64)?;
            images::json::decode_image(r, pretty)?
        }
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let value = decode_from(args.input.as_deref(), args.pretty)?;
    let text = images::json::to_text(&value, args.pretty);
    match &args.output {
        // As crit: no newline at the end of a file, one on the terminal.
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").context("writing to standard output")?;
        }
    }
    Ok(())
}
