//! Logging in criu's manner: levels `-v0` .. `-v4`, lines stamped with the
//! time since start, to stderr or to a file (`-o FILE`).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// criu's verbosity levels (`-vN`): 0 messages only, 1 errors, 2 warnings
/// (criu's default), 3 information, 4 debug.
pub fn level_filter(verbosity: u8) -> log::LevelFilter {
    match verbosity {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    }
}

/// The default verbosity, as criu's.
pub const DEFAULT_VERBOSITY: u8 = 2;

enum Sink {
    Stderr,
    File(File),
}

struct Logger {
    start: Instant,
    level: log::LevelFilter,
    sink: Mutex<Sink>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let prefix = match record.level() {
            log::Level::Error => "Error: ",
            log::Level::Warn => "Warn: ",
            _ => "",
        };
        let line = format!(
            "({:02}.{:06}) {}{}\n",
            t.as_secs(),
            t.subsec_micros(),
            prefix,
            record.args()
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // A log line that cannot be written is dropped: logging must never
        // make a dump or a restore fail.
        let _ = match &mut *sink {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::File(f) => f.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match &mut *sink {
            Sink::Stderr => std::io::stderr().flush(),
            Sink::File(f) => f.flush(),
        };
    }
}

/// Installs the process-wide logger. `file`, when given, receives the log
/// instead of stderr (criu's `-o`). Errors are only those of opening the file.
pub fn init(verbosity: u8, file: Option<&std::path::Path>) -> std::io::Result<()> {
    let sink = match file {
        Some(path) => {
            // Made anew, as the images are: a file (or a hard link someone
            // planted) under that name is replaced, never written into.
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            Sink::File(
                std::fs::OpenOptions::new()
                    .write(true)
                    // O_EXCL: never through a symbolic link either.
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?,
            )
        }
        None => Sink::Stderr,
    };
    let level = level_filter(verbosity);
    let logger = Logger {
        start: Instant::now(),
        level,
        sink: Mutex::new(sink),
    };
    // A second init (tests calling in one process) keeps the first logger.
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}
