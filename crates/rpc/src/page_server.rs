//! criu's `page-server` command: listens on `--address`/`--port` (any
//! address, and a port the kernel picks, when not given), or takes the
//! connection of `--ps-socket`, serves one dump's session and ends, as
//! criu 4.2 does. `-d`/`--daemon` serves in the background, after
//! `--pidfile` names the server; `--status-fd` gets its zero byte once
//! the server listens. The images go to `-D` (`pagemap-*.img` and
//! `pages-*.img`, see [`rcriu_page_server::server`]), linked to
//! `--prev-images-dir` as `parent`, whose pagemaps the server tells a
//! dump about (the pages of a pre-dump chain's rounds kept there).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use rcriu_images::ImageDir;
use rcriu_opts::{Command, Face, Options};
use rcriu_page_server::server::{Session, Summary};

use crate::{Error, Result, run};

/// Runs the page server of the command line.
pub fn run(o: &Options) -> Result<()> {
    run::admit(o, Command::PageServer, Face::Cli)?;
    let dir = ImageDir::create(o.images_dir())?;
    // A round of a pre-dump chain: the parent's pagemaps are in the
    // directory linked as `parent`, as criu's page server links it.
    if let Some(p) = &o.prev_images_dir {
        dir.link_parent(p)?;
    }
    if let Some(fd) = o.ps_socket {
        let sk = crate::sys::adopt_fd(fd).ok_or_else(|| {
            Error::Refused(format!(
                "the page server socket (--ps-socket {fd}) is not open"
            ))
        })?;
        log::info!("Reusing ps socket {fd}");
        if o.restore_detached && daemonize(o)? {
            return Ok(());
        }
        crate::listen::status_ready(o)?;
        return serve(
            &dir,
            sk,
            &format!("the page server socket (fd {fd})"),
            false,
        )
        .map(drop);
    }
    let (listener, port) = listen(o.address.as_deref(), o.port)?;
    log::info!("Page server listening on port {port}");
    if o.restore_detached && daemonize(o)? {
        return Ok(());
    }
    crate::listen::status_ready(o)?;
    let (sock, peer) = listener.accept().map_err(|e| Error::Io {
        what: "Can't accept connection to server".into(),
        source: e,
    })?;
    drop(listener);
    log::info!("Accepted connection from {peer}");
    serve(&dir, OwnedFd::from(sock), &peer.to_string(), true).map(drop)
}

/// A listening socket on `address` (any IPv4 address when none, as
/// criu's) and `port` (0: one the kernel picks); its port.
pub fn listen(address: Option<&str>, port: u16) -> Result<(TcpListener, u16)> {
    let ip = match address {
        None => Ipv4Addr::UNSPECIFIED.into(),
        Some(a) => a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| Error::Refused(format!("Bad server address: {a}")))?,
    };
    let l = TcpListener::bind(SocketAddr::new(ip, port)).map_err(|e| Error::Io {
        what: format!("Can't bind page server on port {port}"),
        source: e,
    })?;
    let port = l.local_addr().map(|a| a.port()).unwrap_or(port);
    Ok((l, port))
}

/// Serves one session on `sock` into `dir`.
pub fn serve(dir: &ImageDir, sock: OwnedFd, peer: &str, wait_eof: bool) -> Result<Summary> {
    let mut f = std::fs::File::from(sock);
    Session::new(dir, peer)
        .serve(&mut f, wait_eof)
        .map_err(|e| Error::Refused(crate::report(&e)))
}

/// criu's `cr_daemon`: the server goes on in a child of its own session
/// with its standard fds on /dev/null; `true` in the parent (whose work
/// is done once the pidfile names the child).
fn daemonize(o: &Options) -> Result<bool> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Io { what, source }
    };
    match crate::sys::fork().map_err(io("Can't run in the background"))? {
        Some(pid) => {
            if let Some(p) = &o.pidfile
                && let Err(e) = run::write_pidfile(&o.in_work_dir(p), pid)
            {
                if let Some(child) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
                    let _ = rustix::process::waitpid(
                        Some(child),
                        rustix::process::WaitOptions::empty(),
                    );
                }
                return Err(Error::Refused(format!("Can't write pidfile: {e}")));
            }
            Ok(true)
        }
        None => {
            let _ = rustix::process::setsid();
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(io("opening /dev/null"))?;
            let _ = rustix::stdio::dup2_stdin(&null);
            let _ = rustix::stdio::dup2_stdout(&null);
            let _ = rustix::stdio::dup2_stderr(&null);
            Ok(false)
        }
    }
}
