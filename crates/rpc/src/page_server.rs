//! criu's `page-server` command: listens on `--address`/`--port` (any
//! address, and a port the kernel picks, when not given), or takes the
//! connection of `--ps-socket`, serves one dump's session and ends, as
//! criu 4.2 does. `-d`/`--daemon` serves in the background, after
//! `--pidfile` names the server; `--status-fd` gets its zero byte once
//! the server listens. The images go to `-D` (`pagemap-*.img` and
//! `pages-*.img`, see [`rcriu_page_server::server`]), linked to
//! `--prev-images-dir` as `parent`, whose pagemaps the server tells a
//! dump about (the pages of a pre-dump chain's rounds kept there).
//! With `--tls`, the session goes through TLS, its handshake made as
//! soon as the connection is accepted (or given), the files of the
//! `--tls-*` options read before the server listens
//! ([`rcriu_page_server::tls`]).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{OwnedFd, RawFd};

use rcriu_images::ImageDir;
use rcriu_opts::{Command, Face, Options};
use rcriu_page_server::server::{Session, Summary};
use rcriu_page_server::tls::ServerTls;

use crate::{Error, Result, run};

/// Where a page server's session comes from, and its TLS (criu's
/// `--tls`: the handshake made as soon as the connection is there).
pub struct Source {
    conn: Conn,
    tls: Option<ServerTls>,
}

enum Conn {
    /// A socket listening for the dump's connection.
    Listener(TcpListener),
    /// The connection of `--ps-socket` (its fd number, for messages).
    Given(OwnedFd, i32),
}

/// The images directory of `o`'s page server (linked to its parent, a
/// pre-dump chain's round before) and its socket: the connection of
/// `--ps-socket`, or a socket listening on `--address`/`--port` (the
/// port it listens on, which the kernel picks without `--port`).
pub fn prepare(o: &Options) -> Result<(ImageDir, Source, u16)> {
    // The TLS files first: a setup that cannot be made is refused before
    // anything listens. The client's certificate must hold the name the
    // server listens on, as criu's server checks it.
    let tls = run::tls_options(o)
        .map(|t| ServerTls::new(&t, o.address.as_deref()))
        .transpose()
        .map_err(|e| Error::Refused(crate::report(&e)))?;
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
        let conn = Conn::Given(sk, fd);
        return Ok((dir, Source { conn, tls }, o.port));
    }
    let (listener, port) = listen(o.address.as_deref(), o.port)?;
    log::info!("Page server listening on port {port}");
    let conn = Conn::Listener(listener);
    Ok((dir, Source { conn, tls }, port))
}

/// Serves the session of `source` into `dir`.
pub fn serve_source(dir: &ImageDir, source: Source) -> Result<Summary> {
    let (sk, peer, wait_eof) = match source.conn {
        Conn::Given(sk, fd) => (sk, format!("the page server socket (fd {fd})"), false),
        Conn::Listener(listener) => {
            let (sock, peer) = listener.accept().map_err(|e| Error::Io {
                what: "Can't accept connection to server".into(),
                source: e,
            })?;
            drop(listener);
            log::info!("Accepted connection from {peer}");
            (OwnedFd::from(sock), peer.to_string(), true)
        }
    };
    serve(dir, sk, &peer, wait_eof, source.tls.as_ref())
}

/// Runs the page server of the command line.
pub fn run(o: &Options) -> Result<()> {
    run::admit(o, Command::PageServer, Face::Cli)?;
    let (dir, source, _) = prepare(o)?;
    if o.restore_detached && daemonize(o)? {
        return Ok(());
    }
    crate::listen::status_ready(o)?;
    serve_source(&dir, source).map(drop)
}

/// criu's `start_page_server_req`: the page server of an RPC request
/// (PAGE_SERVER, or PAGE_SERVER_CHLD without `daemon`), listening once
/// this returns, serves in a process of its own: with `daemon`, in a
/// session of its own, its standard fds on /dev/null (criu's
/// `cr_daemon`), no child of the service; else a child of the service,
/// which WAIT_PID waits for. The server does not keep `service_sk`
/// (the service's connection: the caller sees it end with the service).
/// Returns its pid and port.
pub fn start(o: &Options, daemon: bool, service_sk: RawFd) -> Result<(i32, u16)> {
    run::admit(o, Command::PageServer, Face::Rpc)?;
    let (dir, source, port) = prepare(o)?;
    let io = |what: &'static str| {
        move |e: std::io::Error| Error::Io {
            what: what.into(),
            source: e,
        }
    };
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io("No start pipe")(e.into()))?;
    match crate::sys::fork().map_err(io("Can't start the page server"))? {
        Some(child) => {
            drop(wr);
            drop(source);
            if !daemon {
                log::debug!("Page server started (pid {child}, port {port})");
                return Ok((child, port));
            }
            let status = rustix::process::Pid::from_raw(child)
                .map(|p| rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()))
                .ok_or_else(|| Error::Refused(format!("Unable to wait {child}")))?
                .map_err(|e| io("Unable to wait the page server's starter")(e.into()))?;
            if status.and_then(|(_, s)| s.exit_status()) != Some(0) {
                return Err(Error::Refused("Child exited with an error".into()));
            }
            let mut b = [0u8; 4];
            let mut f = std::fs::File::from(rd);
            std::io::Read::read_exact(&mut f, &mut b)
                .map_err(io("reading the page server's pid"))?;
            let pid = i32::from_ne_bytes(b);
            log::debug!("Page server started (pid {pid}, port {port})");
            Ok((pid, port))
        }
        None => {
            drop(rd);
            // This process never returns to the service, whose owner of
            // the fd is never used again here.
            crate::sys::close_inherited(service_sk);
            let code = if daemon {
                match crate::sys::fork() {
                    Ok(Some(_)) => 0,
                    Ok(None) => {
                        // Its pid once it is a daemon.
                        detach();
                        let me = rustix::process::getpid().as_raw_nonzero().get();
                        let mut f = std::fs::File::from(wr);
                        match std::io::Write::write_all(&mut f, &me.to_ne_bytes()) {
                            Ok(()) => {
                                drop(f);
                                served(&dir, source)
                            }
                            Err(e) => {
                                log::error!("Can't send the page server's pid: {e}");
                                1
                            }
                        }
                    }
                    Err(e) => {
                        log::error!("Can't run the page server in the background: {e}");
                        1
                    }
                }
            } else {
                drop(wr);
                served(&dir, source)
            };
            crate::log::close();
            std::process::exit(code)
        }
    }
}

/// The exit status of a page server serving `source`.
fn served(dir: &ImageDir, source: Source) -> i32 {
    match serve_source(dir, source) {
        Ok(_) => 0,
        Err(e) => {
            log::error!("{}", crate::report(&e));
            1
        }
    }
}

/// The rest of criu's `cr_daemon` in the child: a session of its own,
/// the standard fds on /dev/null.
fn detach() {
    let _ = rustix::process::setsid();
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        Ok(null) => {
            let _ = rustix::stdio::dup2_stdin(&null);
            let _ = rustix::stdio::dup2_stdout(&null);
            let _ = rustix::stdio::dup2_stderr(&null);
        }
        Err(e) => log::warn!("opening /dev/null: {e}"),
    }
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

/// Serves one session on `sock` into `dir`, through TLS with `tls`.
pub fn serve(
    dir: &ImageDir,
    sock: OwnedFd,
    peer: &str,
    wait_eof: bool,
    tls: Option<&ServerTls>,
) -> Result<Summary> {
    let refused = |e: rcriu_page_server::Error| Error::Refused(crate::report(&e));
    let sock = std::fs::File::from(sock);
    let session = Session::new(dir, peer);
    match tls {
        None => {
            let mut s = sock;
            session.serve(&mut s, wait_eof).map_err(refused)
        }
        Some(t) => {
            let mut s = t.accept(sock, peer).map_err(refused)?;
            session.serve(&mut s, wait_eof).map_err(refused)
        }
    }
}

/// criu's `cr_daemon`: the server goes on in a child of its own session
/// with its standard fds on /dev/null; `true` in the parent (whose work
/// is done once the pidfile names the child).
pub(crate) fn daemonize(o: &Options) -> Result<bool> {
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
            detach();
            Ok(false)
        }
    }
}
