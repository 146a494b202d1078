//! `rcriu dump`.

use anyhow::Context;

use crate::opts::CriuOpts;

/// Runs a dump with the command line's options.
pub fn run(opts: &CriuOpts, images_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let pid = opts
        .tree
        .context("dump needs the process to dump: -t PID")?;
    let dir = images_dir.unwrap_or(std::path::Path::new("."));
    // Ctrl-C and friends abort the dump and leave the process as it was.
    rcriu::dump::abort_on_signals().context("setting up signal handling")?;
    let mut dump = rcriu::Dump::new(pid)
        .images_dir(dir)
        .leave_running(opts.leave_running)
        .shell_job(opts.shell_job)
        .ghost_limit(
            opts.ghost_limit
                .unwrap_or(rcriu::dump::files::DEFAULT_GHOST_LIMIT),
        );
    if let Some(cg) = &opts.freeze_cgroup {
        dump = dump.freeze_cgroup(cg);
    }
    let stats = dump
        .run()
        .with_context(|| format!("dumping process {pid} into {}", dir.display()))?;
    log::info!(
        "dump of {pid} done: frozen {} us, {} pages written",
        stats.frozen_time.as_micros(),
        stats.pages_written
    );
    Ok(())
}
