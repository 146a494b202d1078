//! `rcriu restore`.

use anyhow::Context;

use crate::opts::CriuOpts;

/// Runs a restore with the command line's options.
pub fn run(opts: &CriuOpts, images_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let dir = images_dir.unwrap_or(std::path::Path::new("."));
    let mut r = rcriu::Restore::new(dir)
        .detach(opts.restore_detached)
        .shell_job(opts.shell_job);
    if let Some(v) = &opts.file_validation {
        r = r.file_validation(v.parse().map_err(anyhow::Error::msg)?);
    }
    let restored = r.run()?;
    log::info!(
        "restored process {} in {} us ({} pages)",
        restored.pid,
        restored.restore_time_us,
        restored.pages_restored
    );
    if let Some(path) = &opts.pidfile {
        std::fs::write(path, format!("{}", restored.pid))
            .with_context(|| format!("writing the pid file {}", path.display()))?;
    }
    Ok(())
}
