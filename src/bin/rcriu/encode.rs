//! `rcriu encode`: crit's JSON (either form) back to an image (as
//! `crit encode`).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use rcriu::images;

/// `rcriu encode [-i JSON] [-o IMG]`.
#[derive(Debug, clap::Parser)]
#[command(name = "rcriu encode", about = "Encode crit's JSON back into an image")]
pub struct Args {
    /// The JSON (standard input when absent).
    #[arg(short = 'i', long = "in")]
    pub input: Option<PathBuf>,
    /// Where to write the image, mode 0600 (standard output when absent).
    #[arg(short = 'o', long = "out")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (text, name) = match &args.input {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_to_string(&mut s)
                .context("reading JSON from standard input")?;
            (s, "<stdin>".to_owned())
        }
    };
    let value = images::json::parse(&text, &name)?;
    let mut bytes = Vec::new();
    images::json::encode_image(&value, &name, &mut bytes)?;
    match &args.output {
        Some(path) => {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(images::FILE_MODE)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.set_permissions(std::fs::Permissions::from_mode(images::FILE_MODE))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
            f.write_all(&bytes)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => std::io::stdout()
            .lock()
            .write_all(&bytes)
            .context("writing to standard output")?,
    }
    Ok(())
}
