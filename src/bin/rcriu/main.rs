//! The `rcriu` command line. Its options follow criu's, so that scripts
//! written for criu work unchanged, also when installed under the name
//! `criu`.

mod args;
mod decode;
mod dump;
mod encode;
mod opts;
mod restore;
mod show;

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
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
#[command(
    name = "rcriu",
    version,
    about = "Checkpoint/restore in userspace, in Rust"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(flatten)]
    criu: opts::CriuOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode an image into crit's JSON (-i IMG, -o JSON, --pretty).
    Decode(CritArgs),
    /// Encode crit's JSON back into an image (-i JSON, -o IMG).
    Encode(CritArgs),
    /// Show an image (crit's `show`) or summarise a whole dump directory.
    Show(CritArgs),
    /// Checkpoint a process (-t PID) into an images directory (-D DIR).
    Dump,
    /// Restore a process from an images directory (-D DIR).
    Restore,
}

/// The arguments of crit's commands, which parse their own line: their
/// `-o` names the output, as crit's does, not the log file.
#[derive(Debug, clap::Args)]
struct CritArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// Runs one of crit's commands (`decode`, `encode`, `show`) on its own
/// arguments.
fn crit_command(name: &str, args: impl IntoIterator<Item = OsString>) -> anyhow::Result<()> {
    let argv = std::iter::once(OsString::from(format!("rcriu {name}"))).chain(args);
    match name {
        "decode" => decode::run(decode::Args::parse_from(argv)),
        "encode" => encode::run(encode::Args::parse_from(argv)),
        _ => show::run(show::Args::parse_from(argv)),
    }
}

fn main() -> ExitCode {
    let (verbosity, argv) = match args::take_verbosity(std::env::args_os()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("rcriu: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(name) = argv.get(1).and_then(|a| a.to_str())
        && matches!(name, "decode" | "encode" | "show")
    {
        let name = name.to_owned();
        if let Err(e) = rcriu::logging::init(verbosity, None) {
            eprintln!("rcriu: cannot set up logging: {e}");
        }
        return match crit_command(&name, argv.into_iter().skip(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rcriu: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let cli = Cli::parse_from(argv);
    // A dump makes its images directory (0700: images hold every secret
    // the process had), so that the log can go there from the start.
    if let (Command::Dump, Some(dir)) = (&cli.command, &cli.global.images_dir)
        && let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    {
        eprintln!(
            "rcriu: cannot create the images directory {}: {e}",
            dir.display()
        );
        return ExitCode::from(1);
    }
    let log_path = cli.global.log_file.as_ref().map(|f| {
        match cli
            .global
            .work_dir
            .as_ref()
            .or(cli.global.images_dir.as_ref())
        {
            Some(dir) if f.is_relative() => dir.join(f),
            _ => f.clone(),
        }
    });
    if let Err(e) = rcriu::logging::init(verbosity, log_path.as_deref()) {
        eprintln!(
            "rcriu: cannot open log file {}: {e}",
            log_path
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
        return ExitCode::from(1);
    }
    let result = match cli.command {
        Command::Decode(a) => crit_command("decode", a.args),
        Command::Encode(a) => crit_command("encode", a.args),
        Command::Show(a) => crit_command("show", a.args),
        Command::Dump => dump::run(&cli.criu, cli.global.images_dir.as_deref()),
        Command::Restore => restore::run(&cli.criu, cli.global.images_dir.as_deref()),
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
