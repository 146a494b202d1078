//! Whether a dump's images would restore here, answered without making
//! anything (no process, file, terminal or cgroup): every image read and
//! checked as the restore reads it, and the refusals of the restore's
//! plans that depend on the images alone (kinds of memory areas, of open
//! files and terminals, pages kept in parent dumps that are not there, registers this CPU
//! cannot hold, namespaces, the process tree).
//!
//! The dump runs it on what it wrote before it reports success (and
//! before it kills the process): a dump succeeds only for what its
//! restore can bring back.

use std::path::Path;

use rcriu_images::ImageDir;

use crate::{Result, core, files, load, mm};

/// Checks the images in `dir`.
pub fn check(dir: &Path) -> Result<()> {
    check_images(ImageDir::open(dir)?)
}

/// Checks the images of `dir` (as it serves them: an encrypted dump's
/// before they are sealed).
pub fn check_images(dir: ImageDir) -> Result<()> {
    check_images_with(dir, true)
}

/// [`check_images`]; without `pages`, the pagemaps are not looked at
/// (they are not in the directory: a page server writes them).
pub fn check_images_with(dir: ImageDir, pages: bool) -> Result<()> {
    let tree = load::load_tree(dir)?;
    let processes = tree.processes();
    crate::sessions(&tree)?;
    let mut seen = std::collections::HashSet::new();
    let ns = tree
        .procs
        .first()
        .map(|root| files::namespaces_of(root, &tree.procs))
        .unwrap_or_default();
    for img in &tree.procs {
        let pid = img.task.pid;
        for v in &img.task.mm.vmas {
            mm::check_kind(pid, v)?;
        }
        // Pages kept in parent dumps must be found there.
        if pages {
            crate::pages::resolve(&img.dir, pid)?;
        }
        core::plan(img)?;
        files::check_kinds(img, &processes, &ns, &mut seen)?;
    }
    Ok(())
}
