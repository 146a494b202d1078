//! The `rcriu` command: criu's command line, read as criu 4.2 reads it
//! (getopt_long's rules, its configuration files, its messages and exit
//! statuses), over rcriu's engine; `rcriu swrk FD` serves CRIU's RPC.
//! Installed or linked under the name `criu` it is criu's command alone;
//! under its own name it also has crit's `decode`, `encode` and `show`.

mod archive;
mod decode;
mod encode;
mod show;
mod trust;
mod usage;

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use rcriu::opts::cli::{self, Env, Invocation, Outcome};
use rcriu::opts::{Command, Face, Options};
use rcriu::rpc::log as clog;
use rcriu::rpc::scripts::Actions;
use rcriu::rpc::{run, sys};

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

/// Exit statuses criu gives.
const FAILURE: u8 = 1;
/// criu's `return -1` from main.
const MINUS_ONE: u8 = 255;

fn main() -> ExitCode {
    let unprivileged = std::env::args_os().any(|a| a == "--unprivileged");
    if let Some(why) = trust::privileged_exec(unprivileged) {
        eprintln!("rcriu: {why}");
        return ExitCode::from(FAILURE);
    }
    // pycriu starts swrk with fds 0, 1 and 2 closed.
    sys::fill_standard_fds();
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let prog = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "criu".into());
    let as_criu = Path::new(&prog).file_name().is_some_and(|n| n == "criu");
    if !as_criu
        && let Some(name) = argv.get(1).and_then(|a| a.to_str())
        && matches!(name, "decode" | "encode" | "show")
    {
        let name = name.to_owned();
        clog::install();
        let _ = clog::open(None);
        return match crit_command(&name, argv.split_off(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rcriu: {e:#}");
                ExitCode::from(FAILURE)
            }
        };
    }
    clog::install();
    let shown = if as_criu { "criu" } else { "rcriu" };
    let status = criu(shown, as_criu, &argv[1.min(argv.len())..]);
    clog::flush_early();
    ExitCode::from(status)
}

/// criu's `main`: the exit status.
fn criu(prog: &str, as_criu: bool, args: &[OsString]) -> u8 {
    if args.is_empty() {
        clog::msg(&usage::short(prog));
        clog::msg("\nTry -h|--help for more info\n");
        return FAILURE;
    }
    // A caller that is not root names no configuration file through the
    // environment (its own command line names what it wants).
    let env = if rcriu::rpc::is_root() {
        Env::from_process()
    } else {
        Env {
            posixly_correct: std::env::var_os("POSIXLY_CORRECT").is_some(),
            ..Env::default()
        }
    };
    let inv = match cli::parse(args, &env) {
        Ok(Outcome::Run(i)) => i,
        Ok(Outcome::Help) => {
            clog::msg(&usage::long(prog, !as_criu));
            return 0;
        }
        Ok(Outcome::Version) => {
            clog::msg(&version());
            return 0;
        }
        Err(e) if e.shows_usage() => {
            // getopt's own message, as glibc prints it.
            eprintln!("{prog}: {e}");
            return usage_error(prog);
        }
        Err(e) => {
            log::error!("{e}");
            return FAILURE;
        }
    };
    let Invocation {
        mut options,
        operands,
        ..
    } = *inv;
    for &fd in &options.close_fds {
        log::info!("Closing fd {fd}");
        sys::close_inherited(fd);
    }
    let Some(name) = operands.first().map(|c| c.to_string_lossy().into_owned()) else {
        log::error!("command is required");
        return usage_error(prog);
    };
    clog::set_level(options.log_level);
    let rest = &operands[1..];
    let cmd = match name.as_str() {
        "dump" => Command::Dump,
        "pre-dump" => Command::PreDump,
        "restore" => Command::Restore,
        "lazy-pages" => Command::LazyPages,
        "check" => Command::Check,
        "page-server" => Command::PageServer,
        "service" => Command::Service,
        "dedup" => Command::Dedup,
        "swrk" => return swrk(&options, rest),
        // Checked for excess words first, as criu does.
        "exec" | "show" => Command::Check,
        "cpuinfo" => match rest.first().map(|s| s.to_string_lossy()).as_deref() {
            Some("dump") => Command::CpuinfoDump,
            Some("check") => Command::CpuinfoCheck,
            Some(sub) => {
                log::error!("unknown cpuinfo sub-command: {sub}");
                return usage_error(prog);
            }
            None => {
                log::error!("cpuinfo requires an action: dump or check");
                return usage_error(prog);
            }
        },
        _ => {
            log::error!("unknown command: {name}");
            return usage_error(prog);
        }
    };
    let rest = if matches!(cmd, Command::CpuinfoDump | Command::CpuinfoCheck) {
        &rest[1..]
    } else {
        rest
    };
    if let Err(e) = rcriu::rpc::require_privilege(&options, cmd) {
        log::error!("{e}");
        return FAILURE;
    }
    if options.exec_cmd {
        if rest.is_empty() {
            log::error!("--exec-cmd requires a command");
            return usage_error(prog);
        }
        if cmd != Command::Restore {
            log::error!("--exec-cmd is available for the restore command only");
            return usage_error(prog);
        }
        if options.restore_detached {
            log::error!("--restore-detached and --exec-cmd cannot be used together");
            return usage_error(prog);
        }
        options.exec_command = rest.to_vec();
    } else if !rest.is_empty() {
        log::error!(
            "excessive parameter{} for command {name}",
            if rest.len() > 1 { "s" } else { "" }
        );
        return usage_error(prog);
    }
    if name == "exec" {
        log::error!("The \"exec\" action is deprecated by the Compel library.");
        return MINUS_ONE;
    }
    if name == "show" {
        log::error!("The \"show\" action is deprecated by the CRIT utility.");
        log::error!("To view an image use the \"crit decode -i $name --pretty\" command.");
        return MINUS_ONE;
    }
    command(cmd, options)
}

fn usage_error(prog: &str) -> u8 {
    clog::msg(&usage::short(prog));
    clog::msg("\nTry -h|--help for more info\n");
    FAILURE
}

/// The version lines: criu's first (what tools parse), then rcriu's.
fn version() -> String {
    format!(
        "Version: {}\nrcriu {} (CRIU {}'s images, options and RPC)\n",
        rcriu::rpc::CRIU_VERSION,
        env!("CARGO_PKG_VERSION"),
        rcriu::rpc::CRIU_VERSION
    )
}

/// `swrk FD`: CRIU's RPC on the caller's socket.
fn swrk(options: &Options, rest: &[OsString]) -> u8 {
    let [fd] = rest else {
        eprintln!("Usage: criu swrk <fd>");
        return FAILURE;
    };
    let n = rcriu::opts::options::atoi(&fd.to_string_lossy());
    let Some(sk) = sys::adopt_fd(n) else {
        log::error!("swrk: fd {n} is not open");
        return FAILURE;
    };
    let service = rcriu::rpc::Service {
        options: options.clone(),
        swrk: true,
        own_signals: true,
    };
    // criu's worker returns its status from main.
    match service.serve(sk) {
        0 => 0,
        s if s < 0 => MINUS_ONE,
        _ => FAILURE,
    }
}

/// A command that works on images: the directories, the log, then the
/// command itself.
fn command(cmd: Command, options: Options) -> u8 {
    let images = options.images_dir();
    let work = options.work_dir();
    // A dump makes its images directory (0700: images hold every secret
    // the process had); the others need it to exist, as criu does, but
    // for the service, which has none.
    if matches!(cmd, Command::Dump | Command::PreDump) {
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&images)
        {
            log::error!("Couldn't open image dir {}: {e}", images.display());
            return FAILURE;
        }
    } else if cmd != Command::Service && !images.is_dir() {
        log::error!("Couldn't open image dir {}", images.display());
        return FAILURE;
    }
    if !work.is_dir() {
        log::error!("Can't change directory to {}", work.display());
        return FAILURE;
    }
    let log_path: Option<PathBuf> = options.log_file.as_ref().map(|f| {
        if f.as_os_str() == "-" {
            f.clone()
        } else {
            options.in_work_dir(f)
        }
    });
    if let Err(e) = clog::open(log_path.as_deref()) {
        log::error!(
            "Can't create log file {}: {e}",
            log_path.as_deref().unwrap_or(Path::new("")).display()
        );
        return FAILURE;
    }
    if options.network_lock_given && cmd == Command::Restore {
        log::warn!("--network-lock will be ignored in restore command");
    }
    let result = match cmd {
        Command::Dump => dump(&options),
        Command::PreDump => pre_dump(&options),
        Command::Restore => restore(&options),
        Command::Check => {
            return match rcriu::rpc::run::admit(&options, cmd, Face::Cli) {
                Ok(()) => rcriu::rpc::check::run(
                    options.feature.as_deref(),
                    options.check_extra,
                    options.check_experimental,
                ) as u8,
                Err(e) => fail(&e, log_path.is_some()),
            };
        }
        Command::Service => rcriu::rpc::listen::listen(&options).map(drop),
        Command::PageServer => rcriu::rpc::page_server::run(&options),
        Command::LazyPages => rcriu::rpc::lazy_pages::run(&options).map(drop),
        Command::Dedup => run::dedup(&options, Face::Cli).map(drop),
        other => Err(rcriu::rpc::Error::Refused(format!(
            "{} is not supported yet",
            other.name()
        ))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => fail(&e, log_path.is_some()),
    }
}

/// Logs a failure; when the log is a file, the user sees it on standard
/// error too.
fn fail(e: &rcriu::rpc::Error, to_file: bool) -> u8 {
    let text = rcriu::rpc::report(e);
    log::error!("{text}");
    if to_file && clog::level() > 0 {
        eprintln!("rcriu: {text}");
    }
    FAILURE
}

fn dump(o: &Options) -> Result<(), rcriu::rpc::Error> {
    // Ctrl-C and friends abort the dump and leave the process as it was.
    rcriu::dump::abort_on_signals().map_err(|e| rcriu::rpc::Error::Io {
        what: "setting up signal handling".into(),
        source: e,
    })?;
    let actions = Actions::new(&o.action_scripts, &o.work_dir(), &o.images_dir());
    run::dump(o, Face::Cli, &actions).map(drop)
}

fn pre_dump(o: &Options) -> Result<(), rcriu::rpc::Error> {
    run::pre_dump(o, Face::Cli).map(drop)
}

fn restore(o: &Options) -> Result<(), rcriu::rpc::Error> {
    let actions = Actions::new(&o.action_scripts, &o.work_dir(), &o.images_dir());
    run::restore(o, Face::Cli, &actions, o.restore_detached)?;
    if !o.exec_command.is_empty() {
        return Err(run::exec_command(&o.exec_command));
    }
    Ok(())
}
