//! criu's log, so that what reads criu's logs reads rcriu's: the levels
//! of `-v` (0 messages only, 1 errors, 2 warnings, 3 information, 4 and
//! above debug), lines stamped `(SS.uuuuuu) ` with the time since the log
//! was opened from level 3 on (criu's 12 characters: past 99 seconds the
//! last digit goes), errors as `Error (FILE:LINE): message` and warnings
//! as `Warn  (FILE:LINE): message`; the file (`-o`) made anew when
//! opened (what was there is replaced, never written through), mode
//! 0600, `-` for standard output, standard error without one. What is logged before the log is opened waits, and goes to it
//! once opened (or to standard error at the end: [`flush_early`]).
//! Messages (criu's `pr_msg`, [`msg`]) go to standard output whatever the
//! level.
//!
//! The first error of a request is kept for the RPC's `cr_errmsg`
//! ([`keep_first_error`], [`first_error`]), as criu keeps it.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// criu's default level (`-v2`).
pub const DEFAULT_LEVEL: i32 = 2;
/// From this level on, lines are time-stamped.
const TIMESTAMPS: i32 = DEFAULT_LEVEL + 1;

enum Sink {
    Stderr,
    Stdout,
    File(File),
}

struct State {
    level: i32,
    /// When the log was opened; `None` until [`open`].
    start: Option<Instant>,
    sink: Option<Sink>,
    /// Lines logged before the log was opened: (level, text).
    early: Vec<(i32, String)>,
    keep_first: bool,
    first_error: Option<String>,
}

static STATE: Mutex<State> = Mutex::new(State {
    level: DEFAULT_LEVEL,
    start: None,
    sink: None,
    early: Vec::new(),
    keep_first: false,
    first_error: None,
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

struct Logger;

static LOGGER: Logger = Logger;

/// criu's level of a `log` record.
fn level_of(l: log::Level) -> i32 {
    match l {
        log::Level::Error => 1,
        log::Level::Warn => 2,
        log::Level::Info => 3,
        log::Level::Debug | log::Level::Trace => 4,
    }
}

/// criu's time stamp: `(SS.uuuuuu) `, 12 characters.
fn stamp(start: Instant) -> String {
    let t = start.elapsed();
    let mut s = format!("({:02}.{:06}", t.as_secs(), t.subsec_micros());
    s.truncate(10);
    s.push_str(") ");
    s
}

fn write_to(sink: &mut Sink, text: &str) {
    // A line that cannot be written is dropped: the log never makes a
    // dump or a restore fail.
    let _ = match sink {
        Sink::Stderr => std::io::stderr().write_all(text.as_bytes()),
        Sink::Stdout => std::io::stdout().write_all(text.as_bytes()),
        Sink::File(f) => f.write_all(text.as_bytes()),
    };
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        level_of(m.level()) <= state().level
    }

    fn log(&self, r: &log::Record<'_>) {
        let lvl = level_of(r.level());
        let at = || format!("({}:{})", r.file().unwrap_or("?"), r.line().unwrap_or(0));
        let text = match r.level() {
            log::Level::Error => format!("Error {}: {}\n", at(), r.args()),
            log::Level::Warn => format!("Warn  {}: {}\n", at(), r.args()),
            _ => format!("{}\n", r.args()),
        };
        let mut s = state();
        if lvl == 1 && s.keep_first && s.first_error.is_none() {
            s.first_error = Some(text.trim_end().to_owned());
        }
        let State {
            level,
            start,
            sink,
            early,
            ..
        } = &mut *s;
        match (sink, start) {
            (Some(sink), Some(start)) => {
                if lvl > *level {
                    return;
                }
                let line = if *level >= TIMESTAMPS {
                    format!("{}{text}", stamp(*start))
                } else {
                    text
                };
                write_to(sink, &line);
            }
            _ => {
                // Bounded, as criu's early buffer.
                if early.len() < 256 {
                    early.push((lvl, text));
                }
            }
        }
    }

    fn flush(&self) {
        let mut s = state();
        if let Some(Sink::File(f)) = &mut s.sink {
            let _ = f.flush();
        }
    }
}

/// The `log` crate's filter for criu's level.
fn filter(level: i32) -> log::LevelFilter {
    match level {
        i32::MIN..=0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        _ => log::LevelFilter::Trace,
    }
}

/// Whether this is the process's logger (an embedding program may have
/// its own).
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this the process's logger, unless the process has one.
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
        log::set_max_level(filter(level()));
    }
}

/// Sets the level (criu's `-v`).
pub fn set_level(level: i32) {
    state().level = level;
    if INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
        log::set_max_level(filter(level));
    }
}

/// The level.
pub fn level() -> i32 {
    state().level
}

/// Opens the log (criu's `log_init`): `output` is a file, `-` for
/// standard output, or `None` for standard error. What was logged before
/// goes to it first, then criu's version lines.
pub fn open(output: Option<&Path>) -> std::io::Result<()> {
    install();
    let sink = match output {
        Some(p) if p.as_os_str() == "-" => Sink::Stdout,
        Some(p) => {
            // Made anew, as the images are (criu truncates it): a file, or
            // a hard link someone planted, under that name is replaced,
            // never written into; O_EXCL: never through a symbolic link.
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            Sink::File(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    // As criu: O_APPEND, so that scripts sharing the fd
                    // append.
                    .custom_flags(libc::O_APPEND)
                    .mode(0o600)
                    .open(p)?,
            )
        }
        None => Sink::Stderr,
    };
    {
        let mut s = state();
        let start = Instant::now();
        let level = s.level;
        let mut sink = sink;
        for (lvl, text) in std::mem::take(&mut s.early) {
            if lvl <= level {
                let line = if level >= TIMESTAMPS {
                    format!("(00.000000) {text}")
                } else {
                    text
                };
                write_to(&mut sink, &line);
            }
        }
        s.start = Some(start);
        s.sink = Some(sink);
    }
    log::info!(
        "Version: {} (rcriu {})",
        crate::CRIU_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    log::info!("Running on {}", uname());
    Ok(())
}

/// Closes the log (criu's `log_fini`): what follows waits for the next
/// [`open`].
pub fn close() {
    let mut s = state();
    s.sink = None;
    s.start = None;
}

/// Writes what was logged before any log was opened to standard error
/// (criu does so as it exits).
pub fn flush_early() {
    let mut s = state();
    let level = s.level;
    for (lvl, text) in std::mem::take(&mut s.early) {
        if lvl <= level {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
}

/// A message for the user (criu's `pr_msg`): to standard output, at any
/// level.
pub fn msg(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Starts keeping the first error logged from now on.
pub fn keep_first_error() {
    let mut s = state();
    s.keep_first = true;
    s.first_error = None;
}

/// The first error logged since [`keep_first_error`], as its log line
/// (without the time stamp).
pub fn first_error() -> Option<String> {
    state().first_error.clone()
}

/// A copy of the log's fd, for the action scripts' output (standard
/// error when no file is open).
pub fn sink_fd() -> std::io::Result<OwnedFd> {
    let s = state();
    match &s.sink {
        Some(Sink::File(f)) => f.as_fd().try_clone_to_owned(),
        Some(Sink::Stdout) => std::io::stdout().as_fd().try_clone_to_owned(),
        _ => std::io::stderr().as_fd().try_clone_to_owned(),
    }
}

/// `nodename sysname release version machine`, as criu logs them.
fn uname() -> String {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "{} Linux {} {} {}",
        read("hostname"),
        read("osrelease"),
        read("version"),
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_made_anew() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // A symbolic link and a hard link planted under the log's name.
        let sym = d.path().join("sym.log");
        std::os::unix::fs::symlink(&victim, &sym).unwrap();
        let hard = d.path().join("hard.log");
        std::fs::hard_link(&victim, &hard).unwrap();
        for p in [&sym, &hard] {
            open(Some(p)).unwrap();
            log::error!("a line");
            close();
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
            let meta = std::fs::symlink_metadata(p).unwrap();
            assert!(meta.is_file(), "{}", p.display());
        }
    }

    #[test]
    fn stamps_are_twelve_characters() {
        let start = Instant::now();
        let s = stamp(start);
        assert_eq!(s.len(), 12, "{s:?}");
        assert!(s.starts_with("(00.") && s.ends_with(") "), "{s:?}");
        let long_ago = Instant::now() - std::time::Duration::from_secs(123);
        let s = stamp(long_ago);
        assert_eq!(s.len(), 12, "{s:?}");
        assert!(s.starts_with("(123.") && s.ends_with(") "), "{s:?}");
    }
}
