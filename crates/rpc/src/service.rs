//! CRIU's RPC service, as `criu swrk FD` and criu's service workers
//! serve it (`criu/cr-service.c`): one `criu_req` per SOCK_SEQPACKET
//! message in, one `criu_resp` out, no length prefix.
//!
//! - VERSION: the CRIU version whose images, options and RPC rcriu
//!   speaks (4.2), named "rcriu" in `name`.
//! - FEATURE_CHECK: `mem_track` true; `lazy_pages` true when the kernel
//!   gives a userfaultfd with the events a lazy restore follows;
//!   `pidfd_store` false until rcriu does it.
//! - CHECK, DUMP, RESTORE: done with the request's options (over the
//!   configuration files, then its `config_file`); the caller's fds
//!   (`images_dir_fd`, `work_dir_fd`, `status_fd`) are reached through
//!   `/proc/<caller>/fd/N`; the log goes to `log_file` in the work
//!   directory (`criu.log` by default). With `notify_scripts` each stage
//!   is sent to the caller, and waits for its ack.
//! - WAIT_PID: waits for a child of the worker.
//! - PRE_DUMP: pre-dumps (`run::pre_dump`) while PRE_DUMP requests come
//!   on the connection, then does the DUMP that ends them, as criu's
//!   `pre_dump_loop`; SINGLE_PRE_DUMP: one pre-dump.
//! - PAGE_SERVER, PAGE_SERVER_CHLD, CPUINFO_DUMP, CPUINFO_CHECK: answered
//!   with a failure saying they are not supported yet.
//! - Anything else: an EMPTY failure, "Invalid req".
//!
//! `keep_open` keeps the connection for another request after VERSION,
//! FEATURE_CHECK, PAGE_SERVER(_CHLD) and CPUINFO_*, as criu; asked after
//! any other, criu ends the connection without an answer, and so does
//! rcriu.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;
use rcriu_images::rpc::{
    CriuDumpResp, CriuFeatures, CriuNotify, CriuPageServerInfo, CriuReq, CriuReqType, CriuResp,
    CriuRestoreResp, CriuVersion,
};
use rcriu_opts::rpc::Peer;
use rcriu_opts::{Command, Face, Options};
use rustix::net::{RecvFlags, SendFlags};

use crate::scripts::{Actions, Notify};
use crate::{Error, Result, check, run};

/// The largest request taken (criu's requests are a few KiB).
const MAX_REQUEST: usize = 16 << 20;

/// `EBADRQC`: criu's errno for requests whose options it refuses.
const EBADRQC: i32 = 56;

/// One connection to a caller.
struct Conn {
    sk: Arc<OwnedFd>,
    peer: Peer,
}

impl Conn {
    /// The next request, or `None` when the caller has gone.
    fn recv(&self) -> Result<Option<CriuReq>> {
        recv_req(&self.sk)
    }

    fn send(&self, r: &CriuResp) -> Result<()> {
        send_resp(&self.sk, r)
    }
}

fn recv_req(sk: &OwnedFd) -> Result<Option<CriuReq>> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: rustix::io::Errno| Error::Io {
            what,
            source: e.into(),
        }
    };
    let (_, len) = rustix::net::recv(sk, &mut [] as &mut [u8], RecvFlags::PEEK | RecvFlags::TRUNC)
        .map_err(io("reading a request"))?;
    if len > MAX_REQUEST {
        return Err(Error::Protocol(format!(
            "a request of {len} bytes, over the {MAX_REQUEST}-byte limit"
        )));
    }
    let mut buf = vec![0u8; len];
    let (_, got) =
        rustix::net::recv(sk, &mut buf[..], RecvFlags::TRUNC).map_err(io("reading a request"))?;
    if got == 0 {
        log::info!("Client exited unexpectedly");
        return Ok(None);
    }
    buf.truncate(got.min(len));
    CriuReq::decode(buf.as_slice())
        .map(Some)
        .map_err(|e| Error::Protocol(format!("undecodable request of {got} bytes: {e}")))
}

fn send_resp(sk: &OwnedFd, r: &CriuResp) -> Result<()> {
    let bytes = r.encode_to_vec();
    rustix::net::send(sk, &bytes, SendFlags::NOSIGNAL)
        .map(drop)
        .map_err(|e| Error::Io {
            what: "sending a response".into(),
            source: e.into(),
        })
}

/// [`send_resp`], `fd` passed along (`SCM_RIGHTS`), as criu sends the
/// master of a container's new terminal.
fn send_resp_with_fd(sk: &OwnedFd, r: &CriuResp, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
    let bytes = r.encode_to_vec();
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Error::Protocol("no room for an fd in a response".into()));
    }
    rustix::net::sendmsg(
        sk,
        &[std::io::IoSlice::new(&bytes)],
        &mut anc,
        SendFlags::NOSIGNAL,
    )
    .map(drop)
    .map_err(|e| Error::Io {
        what: "sending a response with an fd".into(),
        source: e.into(),
    })
}

fn resp(t: CriuReqType, success: bool) -> CriuResp {
    CriuResp {
        r#type: t as i32,
        success,
        ..Default::default()
    }
}

/// The caller's notifications, over the connection.
struct RpcNotify {
    sk: Arc<OwnedFd>,
}

impl RpcNotify {
    fn ask(&self, script: &str, pid: Option<i32>) -> std::result::Result<CriuReq, String> {
        self.ask_with(script, pid, None)
    }

    /// [`RpcNotify::ask`], `fd` attached to the notification.
    fn ask_with(
        &self,
        script: &str,
        pid: Option<i32>,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> std::result::Result<CriuReq, String> {
        let mut r = resp(CriuReqType::Notify, true);
        r.notify = Some(CriuNotify {
            script: Some(script.as_bytes().to_vec()),
            pid,
        });
        match fd {
            None => send_resp(&self.sk, &r),
            Some(fd) => send_resp_with_fd(&self.sk, &r, fd),
        }
        .map_err(|e| crate::report(&e))?;
        let ack = recv_req(&self.sk)
            .map_err(|e| crate::report(&e))?
            .ok_or("the caller went away")?;
        if ack.r#type != CriuReqType::Notify as i32 || ack.notify_success != Some(true) {
            return Err("RPC client reported script error".into());
        }
        Ok(ack)
    }
}

impl Notify for RpcNotify {
    fn notify(&self, script: &str, pid: Option<i32>) -> std::result::Result<(), String> {
        self.ask(script, pid).map(drop)
    }

    fn notify_fd(
        &self,
        script: &str,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> std::result::Result<(), String> {
        self.ask_with(script, None, Some(fd)).map(drop)
    }

    fn query_ext_files(&self) -> std::result::Result<Vec<String>, String> {
        let ack = self.ask(crate::scripts::stage::QUERY_EXT_FILES, None)?;
        let ext: Vec<String> = ack
            .opts
            .map(|o| {
                o.external
                    .iter()
                    .map(|e| String::from_utf8_lossy(e).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for e in &ext {
            log::info!("Adding external object: {e}");
        }
        Ok(ext)
    }
}

/// How requests are served.
#[derive(Debug, Clone, Default)]
pub struct Service {
    /// The options of the configuration files (and of the worker's
    /// command line), under each request's.
    pub options: Options,
    /// The caller started this worker for itself (`criu swrk FD`), which
    /// allows `rst_sibling` and `inherit_fd`.
    pub swrk: bool,
    /// SIGINT, SIGTERM and SIGHUP abort a dump in progress (for a
    /// program that owns its signals, such as rcriu's own binary).
    pub own_signals: bool,
}

/// Serves requests on `sk` as `criu swrk` does, with `options` under the
/// requests' own: see [`Service::serve`].
pub fn serve(sk: OwnedFd, options: &Options) -> i32 {
    Service {
        options: options.clone(),
        swrk: true,
        own_signals: false,
    }
    .serve(sk)
}

impl Service {
    /// Serves requests on `sk` until one does not keep it open: criu's
    /// `cr_service_work`. Returns the exit status criu's worker would
    /// have.
    pub fn serve(&self, sk: OwnedFd) -> i32 {
        serve_on(sk, self)
    }
}

fn serve_on(sk: OwnedFd, svc: &Service) -> i32 {
    let (base, swrk) = (&svc.options, svc.swrk);
    let cred = match rustix::net::sockopt::socket_peercred(&sk) {
        Ok(c) => c,
        Err(e) => {
            log::error!("Can't get socket options: {e}");
            return 1;
        }
    };
    let conn = Conn {
        sk: Arc::new(sk),
        peer: Peer {
            pid: cred.pid.as_raw_nonzero().get(),
            swrk,
        },
    };
    loop {
        let req = match conn.recv() {
            Ok(Some(r)) => r,
            Ok(None) => return 1,
            Err(e) => {
                log::error!("Can't recv request: {}", crate::report(&e));
                return 1;
            }
        };
        let t = CriuReqType::try_from(req.r#type).ok();
        let keep_open = req.keep_open == Some(true);
        if keep_open
            && !matches!(
                t,
                Some(
                    CriuReqType::PageServer
                        | CriuReqType::PageServerChld
                        | CriuReqType::CpuinfoDump
                        | CriuReqType::CpuinfoCheck
                        | CriuReqType::FeatureCheck
                        | CriuReqType::Version
                )
            )
        {
            // criu's chk_keepopen_req: no answer.
            log::error!("keep_open is not allowed with request type {}", req.r#type);
            return 1;
        }
        let status = handle(&conn, base, t, &req, svc.own_signals);
        if status != 0 || !keep_open {
            return status;
        }
    }
}

/// Answers one request; the worker's exit status for it.
fn handle(
    conn: &Conn,
    base: &Options,
    t: Option<CriuReqType>,
    req: &CriuReq,
    own_signals: bool,
) -> i32 {
    let sent = |r: &CriuResp| match conn.send(r) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("Can't send response: {}", crate::report(&e));
            1
        }
    };
    let not_yet = |t: CriuReqType, what: &str, errno: Option<i32>| {
        crate::log::keep_first_error();
        log::error!("{what} is not supported yet");
        let mut r = resp(t, false);
        r.cr_errno = errno;
        r.cr_errmsg = crate::log::first_error().map(String::into_bytes);
        sent(&r)
    };
    match t {
        Some(CriuReqType::Version) => {
            let mut r = resp(CriuReqType::Version, true);
            r.version = Some(CriuVersion {
                major_number: crate::CRIU_VERSION_MAJOR,
                minor_number: crate::CRIU_VERSION_MINOR,
                gitid: None,
                sublevel: None,
                extra: None,
                name: Some(format!("rcriu {}", env!("CARGO_PKG_VERSION")).into_bytes()),
            });
            sent(&r)
        }
        Some(CriuReqType::FeatureCheck) => {
            let mut r = resp(CriuReqType::FeatureCheck, true);
            // Asked or not, each answer is there: memory tracking (on
            // userfaultfd write-protection), lazy pages when this kernel
            // gives a userfaultfd with the events they follow, no pidfd
            // store yet.
            r.features = Some(CriuFeatures {
                mem_track: Some(true),
                lazy_pages: Some(rcriu_restore::uffd::available().is_ok()),
                pidfd_store: Some(false),
            });
            sent(&r)
        }
        Some(CriuReqType::Check) => {
            let mut r = resp(CriuReqType::Check, false);
            crate::log::keep_first_error();
            let ok = match setup(conn, base, Command::Check, req) {
                Ok(o) => check::run(None, o.check_extra, o.check_experimental) == 0,
                Err(e) => {
                    log::error!("{}", crate::report(&e));
                    false
                }
            };
            r.success = ok;
            r.cr_errmsg = crate::log::first_error().map(String::into_bytes);
            let s = sent(&r);
            crate::log::close();
            s
        }
        Some(CriuReqType::Dump) => {
            if own_signals && let Err(e) = rcriu_dump::abort_on_signals() {
                log::warn!("cannot set up the signal handlers: {e}");
            }
            dump(conn, base, req)
        }
        Some(CriuReqType::Restore) => restore(conn, base, req),
        Some(CriuReqType::PreDump) => pre_dump_loop(conn, base, req),
        Some(CriuReqType::SinglePreDump) => pre_dump(conn, base, req, true),
        Some(t @ (CriuReqType::PageServer | CriuReqType::PageServerChld)) => {
            page_server(conn, base, req, t == CriuReqType::PageServer)
        }
        Some(t @ (CriuReqType::CpuinfoDump | CriuReqType::CpuinfoCheck)) => {
            not_yet(t, "cpuinfo", Some(libc::ENOTSUP))
        }
        Some(CriuReqType::WaitPid) => {
            let mut r = resp(CriuReqType::WaitPid, false);
            let pid = req
                .pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw);
            match pid
                .map(|p| rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()))
            {
                Some(Ok(Some((_, status)))) => {
                    r.success = true;
                    r.status = Some(status.as_raw());
                }
                Some(Err(e)) => {
                    log::error!("Unable to wait {}: {e}", req.pid.unwrap_or(0));
                    r.cr_errno = Some(e.raw_os_error());
                }
                _ => r.cr_errno = Some(libc::ECHILD),
            }
            sent(&r)
        }
        _ => {
            log::error!("RPC error: Invalid req");
            crate::log::keep_first_error();
            let r = resp(CriuReqType::Empty, false);
            sent(&r);
            1
        }
    }
}

/// The options of a request: the configuration files', the request's,
/// then its `config_file`; the images and work directories resolved and
/// the log opened in the work directory. criu's `setup_opts_from_req`.
fn setup(conn: &Conn, base: &Options, cmd: Command, req: &CriuReq) -> Result<Options> {
    let mut o = base.clone();
    let empty = rcriu_images::rpc::CriuOpts::default();
    let r = req.opts.as_ref().unwrap_or(&empty);
    let peer = conn.peer;
    crate::log::keep_first_error();
    // CHECK needs a log file only when it is asked for one.
    let check_log =
        cmd != Command::Check || (r.log_file.is_some() && r.log_to_stderr != Some(true));
    rcriu_opts::rpc::apply(r, peer, &mut o)?;
    // The RPC's configuration file overrides everything; what it says of
    // the log and the directories wins over the request.
    let (mut log_by_conf, mut work_by_conf, mut imgs_by_conf) = (false, false, false);
    if let Some(cfg) = &r.config_file {
        let path = PathBuf::from(std::ffi::OsString::from(
            String::from_utf8_lossy(cfg).into_owned(),
        ));
        let (log_was, work_was) = (o.log_file.take(), o.work_dir.take());
        o.images_dir = None;
        log::debug!(
            "Would overwrite RPC settings with values from {}",
            path.display()
        );
        rcriu_opts::cli::apply_config(&path, &mut o)?;
        log_by_conf = o.log_file.is_some();
        work_by_conf = o.work_dir.is_some();
        imgs_by_conf = o.images_dir.is_some();
        if !log_by_conf {
            o.log_file = log_was;
        }
        if !work_by_conf {
            o.work_dir = work_was;
        }
    }
    if !imgs_by_conf {
        o.images_dir = rcriu_opts::rpc::images_dir(r, peer);
    }
    if o.images_dir.is_none() && cmd != Command::Check {
        return Err(Error::Refused(
            "Neither images_dir_fd nor images_dir was passed by RPC client.".into(),
        ));
    }
    if let Some(d) = &o.images_dir
        && !d.is_dir()
    {
        return Err(Error::Io {
            what: format!("Can't open images directory {}", d.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    if !work_by_conf && let Some(w) = rcriu_opts::rpc::work_dir(r, peer) {
        o.work_dir = Some(w);
    }
    if let Some(fd) = r.status_fd {
        log::warn!("status_fd is obsoleted; use status-ready notification instead");
        let p = peer.fd_path(fd);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| Error::Io {
                what: format!("Can't reopen status fd {}", p.display()),
                source: e,
            })?;
    }
    // The log, in the work directory.
    if !log_by_conf {
        if let Some(f) = &r.log_file {
            if f.contains(&b'/') {
                return Err(Error::Refused(
                    "No subdirs are allowed in log_file name".into(),
                ));
            }
            o.log_file = Some(PathBuf::from(String::from_utf8_lossy(f).into_owned()));
        } else if r.log_to_stderr == Some(true) {
            o.log_file = None;
        } else if o.log_file.is_none() {
            o.log_file = Some(PathBuf::from(crate::DEFAULT_LOG_FILE));
        }
    }
    o.log_level = r
        .log_level
        .unwrap_or(rcriu_opts::options::DEFAULT_LOG_LEVEL);
    crate::log::set_level(o.log_level);
    if check_log {
        if o.images_dir.is_none() && o.work_dir.is_none() && o.log_file.is_some() {
            return Err(Error::Refused(
                "images-dir or work-dir is required when using log file".into(),
            ));
        }
        let out = o.log_file.as_ref().map(|f| {
            if f.as_os_str() == "-" {
                f.clone()
            } else {
                o.in_work_dir(f)
            }
        });
        crate::log::open(out.as_deref()).map_err(|e| Error::Io {
            what: format!(
                "Can't initiate log {}",
                out.as_deref().unwrap_or("stderr".as_ref()).display()
            ),
            source: e,
        })?;
    }
    crate::require_privilege(&o, cmd)?;
    rcriu_opts::support::validate(&o, cmd)?;
    Ok(o)
}

/// The errno criu reports for `e`, when it reports one.
fn errno_of(e: &Error) -> Option<i32> {
    match e {
        Error::Options(_) | Error::Refused(_) => Some(EBADRQC),
        Error::NoProcess(_) => Some(libc::ESRCH),
        Error::Restore(rcriu_restore::Error::PidTaken { .. }) => Some(libc::EEXIST),
        _ => None,
    }
}

fn actions_for(o: &Options, conn: &Conn, req: &CriuReq) -> Actions {
    let a = Actions::new(&o.action_scripts, &o.work_dir(), &o.images_dir());
    let notify = req.opts.as_ref().and_then(|r| r.notify_scripts) == Some(true);
    if notify {
        a.with_notify(Arc::new(RpcNotify {
            sk: conn.sk.clone(),
        }))
    } else {
        a
    }
}

/// PAGE_SERVER (`daemon`) and PAGE_SERVER_CHLD: a page server started
/// ([`crate::page_server::start`]), answered, as criu answers both, with
/// a PAGE_SERVER response naming its pid and port.
fn page_server(conn: &Conn, base: &Options, req: &CriuReq, daemon: bool) -> i32 {
    let result = setup(conn, base, Command::PageServer, req)
        .and_then(|o| crate::page_server::start(&o, daemon, conn.sk.as_raw_fd()));
    let mut r = resp(CriuReqType::PageServer, result.is_ok());
    match &result {
        Ok((pid, port)) => {
            r.ps = Some(CriuPageServerInfo {
                pid: Some(*pid),
                port: Some(i32::from(*port)),
                ..Default::default()
            });
        }
        Err(e) => {
            log::error!("{}", crate::report(e));
            r.cr_errno = errno_of(e);
        }
    }
    r.cr_errmsg = crate::log::first_error().map(String::into_bytes);
    // A failure answered keeps the connection (`keep_open`), as criu's.
    let status = match conn.send(&r) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("Can't send response: {}", crate::report(&e));
            1
        }
    };
    crate::log::close();
    status
}

fn dump(conn: &Conn, base: &Options, req: &CriuReq) -> i32 {
    let self_dump = req.opts.as_ref().is_none_or(|o| o.pid.is_none());
    let leave_running = req.opts.as_ref().and_then(|o| o.leave_running) == Some(true);
    let result = setup(conn, base, Command::Dump, req)
        .and_then(|o| run::dump(&o, Face::Rpc, &actions_for(&o, conn, req)));
    let mut r = resp(CriuReqType::Dump, result.is_ok());
    r.dump = Some(CriuDumpResp {
        restored: Some(false),
    });
    if let Err(e) = &result {
        log::error!("{}", crate::report(e));
        r.cr_errno = errno_of(e);
    }
    r.cr_errmsg = crate::log::first_error().map(String::into_bytes);
    // A caller that dumped itself, killed, hears nothing.
    let status = if leave_running || !self_dump || result.is_err() {
        match conn.send(&r) {
            Ok(()) => i32::from(result.is_err()),
            Err(e) => {
                log::error!("Can't send response: {}", crate::report(&e));
                1
            }
        }
    } else {
        0
    };
    crate::log::close();
    status
}

/// One pre-dump, answered as `SINGLE_PRE_DUMP` when `single`, else as
/// `PRE_DUMP`; the worker's status.
fn pre_dump(conn: &Conn, base: &Options, req: &CriuReq, single: bool) -> i32 {
    crate::log::keep_first_error();
    let result =
        setup(conn, base, Command::PreDump, req).and_then(|o| run::pre_dump(&o, Face::Rpc));
    let t = if single {
        CriuReqType::SinglePreDump
    } else {
        CriuReqType::PreDump
    };
    let mut r = resp(t, result.is_ok());
    if let Err(e) = &result {
        log::error!("{}", crate::report(e));
        r.cr_errno = errno_of(e);
    }
    r.cr_errmsg = crate::log::first_error().map(String::into_bytes);
    let status = match conn.send(&r) {
        Ok(()) => i32::from(result.is_err()),
        Err(e) => {
            log::error!("Can't send response: {}", crate::report(&e));
            1
        }
    };
    crate::log::close();
    status
}

/// criu's `pre_dump_loop`: pre-dumps while PRE_DUMP requests come, then
/// the DUMP that ends them (anything else is a bad sequence).
fn pre_dump_loop(conn: &Conn, base: &Options, first: &CriuReq) -> i32 {
    let mut req = first.clone();
    loop {
        let status = pre_dump(conn, base, &req, false);
        if status != 0 {
            return status;
        }
        req = match conn.recv() {
            Ok(Some(r)) => r,
            Ok(None) => return 1,
            Err(e) => {
                log::error!("Can't recv request: {}", crate::report(&e));
                return 1;
            }
        };
        match CriuReqType::try_from(req.r#type).ok() {
            Some(CriuReqType::PreDump) => {}
            Some(CriuReqType::Dump) => return dump(conn, base, &req),
            _ => {
                log::error!("Bad req seq");
                let mut r = resp(CriuReqType::Empty, false);
                r.cr_errmsg = Some(b"Bad req seq".to_vec());
                let _ = conn.send(&r);
                return 1;
            }
        }
    }
}

fn restore(conn: &Conn, base: &Options, req: &CriuReq) -> i32 {
    let mut exec = Vec::new();
    // As criu's service, which forces a detached restore.
    let base = Options {
        restore_detached: true,
        ..base.clone()
    };
    let result = setup(conn, &base, Command::Restore, req).and_then(|o| {
        exec = o.exec_command.clone();
        // The service always detaches: the process is not its to wait for.
        run::restore(&o, Face::Rpc, &actions_for(&o, conn, req), true)
    });
    let mut r = resp(CriuReqType::Restore, result.is_ok());
    r.restore = Some(CriuRestoreResp {
        pid: result.as_ref().map_or(-1, |rs| rs.pid),
    });
    if let Err(e) = &result {
        log::error!("{}", crate::report(e));
        r.cr_errno = errno_of(e);
    }
    r.cr_errmsg = crate::log::first_error().map(String::into_bytes);
    let mut status = match conn.send(&r) {
        Ok(()) => i32::from(result.is_err()),
        Err(e) => {
            log::error!("Can't send response: {}", crate::report(&e));
            1
        }
    };
    if status == 0 && !exec.is_empty() {
        // As criu: the command's output goes to the log.
        if let Ok(fd) = crate::log::sink_fd() {
            let _ = rustix::stdio::dup2_stdout(fd.as_fd());
            let _ = rustix::stdio::dup2_stderr(fd.as_fd());
        }
        let e = run::exec_command(&exec);
        log::error!("{}", crate::report(&e));
        status = 1;
    }
    crate::log::close();
    status
}
