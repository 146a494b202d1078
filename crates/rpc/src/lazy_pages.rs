//! criu's `lazy-pages` command: the daemon of a lazy restore
//! ([`rcriu_restore::lazy_pages`]), listening on `lazy-pages.socket` in
//! the work directory (`-W`, the images directory `-D` without it) for
//! `restore --lazy-pages`; `--status-fd` gets its zero byte once it
//! listens; `-d`/`--daemon` serves in the background, after
//! `--pidfile` names it. It ends once every lazy page is in.

use rcriu_opts::{Command, Face, Options};
use rcriu_restore::lazy_pages::{Daemon, Summary};

use crate::{Error, Result, run};

/// Runs the daemon of the command line.
pub fn run(o: &Options) -> Result<Summary> {
    run::admit(o, Command::LazyPages, Face::Cli)?;
    if o.page_server {
        return Err(Error::Refused(
            "lazy pages from a remote page server (lazy-pages --page-server, post-copy) is not supported yet"
                .into(),
        ));
    }
    let daemon = Daemon::listen(&o.images_dir(), &o.work_dir())?;
    if o.restore_detached && crate::page_server::daemonize(o)? {
        return Ok(Summary::default());
    }
    crate::listen::status_ready(o)?;
    Ok(daemon.serve()?)
}
