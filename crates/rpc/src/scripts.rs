//! criu's action scripts (`--action-script FILE`) and, over RPC, the
//! caller's notifications (`notify_scripts`): at each stage of a dump or
//! a restore, criu tells the caller and waits; a failure aborts what the
//! stage allows to abort.
//!
//! A script runs with `CRTOOLS_SCRIPT_ACTION` set to the stage's name,
//! `CRTOOLS_IMAGE_DIR` to the images directory (as
//! `/proc/<rcriu's pid>/fd/N`) and, once the root task's pid is known,
//! `CRTOOLS_INIT_PID`; in the work directory, its output going to the
//! log, standard input empty and no other fd inherited. As in criu, the
//! scripts run last given first, every one of them, and the stage fails
//! if any exits with a status other than 0. Over RPC the caller is told
//! first, then the scripts (from a configuration file) run.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// Tells the RPC caller of a stage and waits for its answer.
pub trait Notify: Send + Sync {
    /// Sends notification `script` (with the root task's pid when criu
    /// sends one) and waits for the ack; `Err` says why it failed.
    fn notify(&self, script: &str, pid: Option<i32>) -> Result<(), String>;

    /// Asks the caller for external files (criu's `query-ext-files`):
    /// the `external` entries of its answer.
    fn query_ext_files(&self) -> Result<Vec<String>, String>;

    /// Sends notification `script` with `fd` attached (`SCM_RIGHTS`) and
    /// waits for the ack (criu's `orphan-pts-master`).
    fn notify_fd(&self, script: &str, fd: BorrowedFd<'_>) -> Result<(), String>;
}

/// The stage names criu uses.
pub mod stage {
    pub const PRE_DUMP: &str = "pre-dump";
    pub const POST_DUMP: &str = "post-dump";
    pub const PRE_RESTORE: &str = "pre-restore";
    pub const POST_RESTORE: &str = "post-restore";
    pub const PRE_RESUME: &str = "pre-resume";
    pub const POST_RESUME: &str = "post-resume";
    pub const QUERY_EXT_FILES: &str = "query-ext-files";
    pub const ORPHAN_PTS_MASTER: &str = "orphan-pts-master";
}

/// Where a command's stages are announced.
#[derive(Clone, Default)]
pub struct Actions {
    /// In the order given.
    scripts: Vec<PathBuf>,
    work_dir: PathBuf,
    /// The images directory, held open for `CRTOOLS_IMAGE_DIR`.
    images_dir: Option<Arc<OwnedFd>>,
    notify: Option<Arc<dyn Notify>>,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field("scripts", &self.scripts)
            .field("work_dir", &self.work_dir)
            .field("notify", &self.notify.is_some())
            .finish()
    }
}

impl Actions {
    /// The scripts of `--action-script`, run in `work_dir`, with the
    /// images directory `images_dir` (opened now, when there are
    /// scripts).
    pub fn new(scripts: &[PathBuf], work_dir: &Path, images_dir: &Path) -> Actions {
        let images_dir = if scripts.is_empty() {
            None
        } else {
            std::fs::File::open(images_dir)
                .map(|f| Arc::new(OwnedFd::from(f)))
                .inspect_err(|e| {
                    log::warn!(
                        "cannot open {} for the action scripts: {e}",
                        images_dir.display()
                    )
                })
                .ok()
        };
        Actions {
            scripts: scripts.to_vec(),
            work_dir: work_dir.to_owned(),
            images_dir,
            notify: None,
        }
    }

    /// Also tells the RPC caller, before the scripts.
    pub fn with_notify(mut self, n: Arc<dyn Notify>) -> Actions {
        self.notify = Some(n);
        self
    }

    /// Whether anything listens.
    pub fn any(&self) -> bool {
        self.notify.is_some() || !self.scripts.is_empty()
    }

    /// Announces `action`; `pid` is the root task's once known;
    /// `send_pid` when criu's notification carries it.
    pub fn run(&self, action: &str, pid: Option<i32>, send_pid: bool) -> Result<(), String> {
        log::debug!("Running {action} scripts");
        if let Some(n) = &self.notify {
            log::debug!("\tRPC");
            n.notify(action, if send_pid { pid } else { None })
                .map_err(|e| format!("the caller's {action} notification failed: {e}"))?;
        }
        let mut failed = Vec::new();
        // criu keeps its scripts in a list it adds to at the head.
        for script in self.scripts.iter().rev() {
            log::debug!("\t[{}]", script.display());
            if let Err(e) = self.run_one(script, action, pid) {
                log::error!("{e}");
                failed.push(e);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            log::error!("One of more action scripts failed");
            Err(failed.join("; "))
        }
    }

    /// Hands `fd` to the RPC caller with notification `action`; `false`
    /// when there is no caller to hand it to (scripts take no fd).
    pub fn send_fd(&self, action: &str, fd: BorrowedFd<'_>) -> Result<bool, String> {
        let Some(n) = &self.notify else {
            return Ok(false);
        };
        log::debug!("Sending {action} with fd {} to the caller", fd.as_raw_fd());
        n.notify_fd(action, fd)
            .map_err(|e| format!("the caller's {action} notification failed: {e}"))?;
        Ok(true)
    }

    /// External files the RPC caller names (criu's `query-ext-files`).
    pub fn query_ext_files(&self) -> Result<Vec<String>, String> {
        match &self.notify {
            Some(n) => n.query_ext_files(),
            None => Ok(Vec::new()),
        }
    }

    fn run_one(&self, script: &Path, action: &str, pid: Option<i32>) -> Result<(), String> {
        // As criu, which runs it from the work directory: a relative path
        // with a slash is the work directory's, a bare name is looked for
        // in $PATH.
        let program = if script.is_relative() && script.components().count() > 1 {
            self.work_dir.join(script)
        } else {
            script.to_owned()
        };
        let mut cmd = Command::new(&program);
        cmd.current_dir(&self.work_dir)
            .env("CRTOOLS_SCRIPT_ACTION", action)
            .stdin(Stdio::null());
        if let Some(d) = &self.images_dir {
            cmd.env(
                "CRTOOLS_IMAGE_DIR",
                format!("/proc/{}/fd/{}", std::process::id(), d.as_raw_fd()),
            );
        }
        if let Some(pid) = pid {
            cmd.env("CRTOOLS_INIT_PID", pid.to_string());
        }
        if let Ok(out) = crate::log::sink_fd() {
            if let Ok(err) = out.try_clone() {
                cmd.stderr(err);
            }
            cmd.stdout(out);
        }
        crate::sys::close_from_in_child(&mut cmd, 3);
        let status = cmd
            .status()
            .map_err(|e| format!("Script {} cannot run: {e}", script.display()))?;
        match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(format!("Script {} exited with {code}", script.display())),
            (None, Some(sig)) => Err(format!(
                "Script {} was killed by signal {sig}",
                script.display()
            )),
            (None, None) => Err(format!("Script {} failed: {status}", script.display())),
        }
    }
}
