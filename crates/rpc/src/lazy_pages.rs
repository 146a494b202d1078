//! criu's `lazy-pages` command: the daemon of a lazy restore
//! ([`rcriu_restore::lazy_pages`]), listening on `lazy-pages.socket` in
//! the work directory (`-W`, the images directory `-D` without it) for
//! `restore --lazy-pages`; with `--page-server --address A --port P`
//! (and `--tls`), the lazy pages come from the lazy dump serving them
//! there (`dump --lazy-pages`), connected before the daemon says it
//! listens; `--status-fd` gets its zero byte once it
//! listens; `-d`/`--daemon` serves in the background, after
//! `--pidfile` names it. It ends once every lazy page is in.

use rcriu_opts::{Command, Face, Options};
use rcriu_restore::lazy_pages::{Daemon, Summary};

use crate::{Error, Result, run};

/// Runs the daemon of the command line.
pub fn run(o: &Options) -> Result<Summary> {
    run::admit(o, Command::LazyPages, Face::Cli)?;
    let mut daemon = Daemon::listen(&o.images_dir(), &o.work_dir())?;
    if o.page_server {
        daemon = daemon.page_server(connect(o)?);
    }
    if o.restore_detached && crate::page_server::daemonize(o)? {
        return Ok(Summary::default());
    }
    crate::listen::status_ready(o)?;
    Ok(daemon.serve()?)
}

/// The connection to the lazy dump's page server (`--address`,
/// `--port`, through TLS with `--tls`).
fn connect(o: &Options) -> Result<rcriu_page_server::Client> {
    if o.ps_socket.is_some() {
        return Err(Error::Refused(
            "--ps-socket with lazy-pages --page-server: the daemon connects to the dump itself (--address, --port)".into(),
        ));
    }
    let address = o
        .address
        .clone()
        .ok_or_else(|| Error::Refused("lazy-pages --page-server needs --address".into()))?;
    if o.port == 0 {
        return Err(Error::Refused(
            "lazy-pages --page-server needs --port".into(),
        ));
    }
    let tls = run::tls_options(o);
    rcriu_page_server::Client::connect(&address, o.port, tls.as_ref())
        .map_err(|e| Error::Refused(crate::report(&e)))
}
