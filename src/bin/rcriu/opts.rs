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
}
