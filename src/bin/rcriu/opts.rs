//! criu's options for dump and restore. criu parses its whole line with
//! getopt_long, so an option may stand before or after the command: here
//! every one is global.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct CriuOpts {
    /// The process (tree) to dump.
    #[arg(short = 't', long = "tree", global = true, value_name = "PID")]
    pub tree: Option<i32>,
    /// Leave the tasks running after the dump.
    #[arg(short = 'R', long = "leave-running", global = true)]
    pub leave_running: bool,
    /// Allow a root task that is not a session leader (a shell job).
    #[arg(short = 'j', long = "shell-job", global = true)]
    pub shell_job: bool,
    /// Freeze this freezer cgroup (v1 or v2), which holds the process,
    /// while seizing it.
    #[arg(long = "freeze-cgroup", global = true, value_name = "PATH")]
    pub freeze_cgroup: Option<PathBuf>,
    /// Return once the restored tree runs, instead of waiting for it.
    #[arg(short = 'd', long = "restore-detached", global = true)]
    pub restore_detached: bool,
    /// Write the restored root task's pid to this file.
    #[arg(long = "pidfile", global = true, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// How mapped files are checked on restore: buildid (default) or
    /// filesize.
    #[arg(long = "file-validation", global = true, value_name = "METHOD")]
    pub file_validation: Option<String>,
    /// The largest deleted file saved in the images, in bytes (suffix K,
    /// M or G as criu's); 1M unless told.
    #[arg(long = "ghost-limit", global = true, value_name = "SIZE", value_parser = parse_size)]
    pub ghost_limit: Option<u64>,
}

/// A size as criu reads one: a number, times 1024, 1024² or 1024³ when a
/// K, M or G follows.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1),
        Some((i, 'K')) => (&s[..i], 1 << 10),
        Some((i, 'M')) => (&s[..i], 1 << 20),
        Some((i, 'G')) => (&s[..i], 1 << 30),
        Some(_) => return Err(format!("bad size {s:?} (a number, optionally K, M or G)")),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?} (a number, optionally K, M or G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_criu_reads_them() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
