//! `criu service`: CRIU's RPC on a unix socket, a worker forked for each
//! connection ([`listen`]).

use rcriu_opts::Options;

use crate::scripts::Actions;
use crate::service::Service;
use crate::{Error, Result, run};

/// criu's service address when `--address` names none, in the work
/// directory.
pub const DEFAULT_ADDRESS: &str = "./criu_service.socket";

/// `criu service`: listens on the unix socket `--address` (mode 0666),
/// writes `--pidfile`, says it is ready (the status-ready action, then a
/// zero byte on `--status-fd`), and serves each connection in a worker of
/// its own, which starts from criu's defaults as criu's workers do (no
/// configuration file). Returns only on failure.
pub fn listen(o: &Options) -> Result<i32> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let io = |what: String| {
        move |e: rustix::io::Errno| Error::Io {
            what,
            source: e.into(),
        }
    };
    let addr = match &o.address {
        Some(a) => o.in_work_dir(std::path::Path::new(a)),
        None => {
            log::warn!("Binding to local dir address!");
            o.in_work_dir(std::path::Path::new(DEFAULT_ADDRESS))
        }
    };
    let sk = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
        .map_err(io("Can't initialize service socket".into()))?;
    let _ = std::fs::remove_file(&addr);
    let sa = SocketAddrUnix::new(&addr).map_err(io(format!("Can't bind {}", addr.display())))?;
    rustix::net::bind(&sk, &sa).map_err(io(format!("Can't bind {}", addr.display())))?;
    log::info!("The service socket is bound to {}", addr.display());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&addr, std::fs::Permissions::from_mode(0o666)).map_err(|e| {
        Error::Io {
            what: "Can't change permissions of the service socket".into(),
            source: e,
        }
    })?;
    rustix::net::listen(&sk, 16).map_err(io("Can't listen for socket connections".into()))?;
    if let Some(p) = &o.pidfile {
        run::write_pidfile(&o.in_work_dir(p), std::process::id() as i32).map_err(Error::Refused)?;
    }
    status_ready(o)?;
    loop {
        log::info!("Waiting for connection...");
        let conn = rustix::net::accept(&sk).map_err(io("Can't accept connection".into()))?;
        log::info!("Connected.");
        // Each worker is a fork, as criu's.
        match crate::sys::fork() {
            Ok(None) => {
                drop(sk);
                let status = Service {
                    options: Options::default(),
                    swrk: false,
                    own_signals: true,
                }
                .serve(conn);
                std::process::exit(i32::from(status != 0));
            }
            Ok(Some(pid)) => log::debug!("worker {pid} serves the connection"),
            Err(e) => log::error!("Can't fork a child: {e}"),
        }
        drop(conn);
        reap_workers();
    }
}

/// Reaps the workers that have ended (criu does so on SIGCHLD).
fn reap_workers() {
    use rustix::process::{WaitOptions, wait};
    while let Ok(Some((pid, status))) = wait(WaitOptions::NOHANG) {
        match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => {
                log::info!("Worker(pid {}) exited with {code}", pid.as_raw_nonzero())
            }
            (_, Some(sig)) => {
                log::info!("Worker(pid {}) was killed by {sig}", pid.as_raw_nonzero())
            }
            _ => {}
        }
    }
}

/// criu's `status_ready`: the status-ready scripts, then a zero byte on
/// `--status-fd`, which is closed.
pub(crate) fn status_ready(o: &Options) -> Result<()> {
    let actions = Actions::new(&o.action_scripts, &o.work_dir(), &o.images_dir());
    actions
        .run("status-ready", None, false)
        .map_err(Error::Refused)?;
    if let Some(fd) = o.status_fd {
        let f = crate::sys::adopt_fd(fd).ok_or_else(|| Error::Io {
            what: format!("Unable to write into the status fd {fd}"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        let mut f = std::fs::File::from(f);
        use std::io::Write;
        f.write_all(&[0]).map_err(|e| Error::Io {
            what: "Unable to write into the status fd".into(),
            source: e,
        })?;
    }
    Ok(())
}
