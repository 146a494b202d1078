//! The `rcriu` command line. Its options follow criu's, so that scripts
//! written for criu work unchanged, also when installed under the name
//! `criu`.

mod args;
mod decode;
mod encode;
mod show;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The options every command takes, wherever they stand on the line
/// (criu parses with getopt_long, which accepts them before or after the
/// command).
#[derive(Debug, clap::Args)]
struct Global {
    /// Write the log to this file instead of stderr (relative to the work
    /// directory, as criu's).
    #[arg(short = 'o', long = "log-file", global = true)]
    log_file: Option<std::path::PathBuf>,
    /// The directory that holds the images.
    #[arg(short = 'D', long = "images-dir", global = true)]
    images_dir: Option<std::path::PathBuf>,
    /// The directory for logs and statistics (defaults to the images
    /// directory).
    #[arg(short = 'W', long = "work-dir", global = true)]
    work_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Parser)]
#[command(name = "rcriu", version, about = "Checkpoint/restore in userspace, in Rust")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode an image into crit's JSON.
    Decode(decode::Args),
    /// Encode crit's JSON back into an image.
    Encode(encode::Args),
    /// Show an image (crit's `show`) or summarise a whole dump directory.
    Show(show::Args),
}

fn main() -> ExitCode {
    let (verbosity, argv) = match args::take_verbosity(std::env::args_os()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("rcriu: {e}");
            return ExitCode::from(1);
        }
    };
    let cli = Cli::parse_from(argv);
    let log_path = cli.global.log_file.as_ref().map(|f| {
        match cli.global.work_dir.as_ref().or(cli.global.images_dir.as_ref()) {
            Some(dir) if f.is_relative() => dir.join(f),
            _ => f.clone(),
        }
    });
    if let Err(e) = rcriu::logging::init(verbosity, log_path.as_deref()) {
        eprintln!(
            "rcriu: cannot open log file {}: {e}",
            log_path.as_deref().unwrap_or(std::path::Path::new("")).display()
        );
        return ExitCode::from(1);
    }
    let result = match cli.command {
        Command::Decode(a) => decode::run(a),
        Command::Encode(a) => encode::run(a),
        Command::Show(a) => show::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            // Make sure the error is seen even when the log goes to a file.
            if log_path.is_some() || verbosity == 0 {
                eprintln!("rcriu: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}
