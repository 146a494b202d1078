//! CRIU's RPC as rcriu serves it, message by message: `rcriu swrk FD`
//! driven over a SOCK_SEQPACKET socket pair as runc and libcriu drive
//! criu, and the same service run inside this test's own process.
//!
//! PAGE_SERVER and PAGE_SERVER_CHLD start a page server listening on the
//! port they answer with (one the kernel picks); `rcriu dump
//! --page-server` sends a process's pages there, and the process
//! restored from the server's pagemap and pages images beside the dump's
//! checks its memory. PAGE_SERVER's server is a daemon of its own
//! session; PAGE_SERVER_CHLD's is the worker's child, which WAIT_PID
//! waits for. Negative control: a bad address is refused (the
//! connection kept, as criu keeps it), no server started.
//!
//! A RESTORE with `lazy_pages` restores lazily with `rcriu lazy-pages`
//! listening in its work directory (and FEATURE_CHECK says so); without
//! the daemon it is refused, naming the socket.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command};

use prost::Message;
use rcriu::images::rpc::{
    CriuFeatures, CriuOpts, CriuPageServerInfo, CriuReq, CriuReqType, CriuResp, CriuVersion,
};
use rcriu_test_support::{TempDir, wait_child, wait_exit};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

fn socketpair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

/// A client's end of a connection.
struct Client {
    sk: OwnedFd,
}

impl Client {
    fn send(&self, req: &CriuReq) {
        rustix::net::send(&self.sk, &req.encode_to_vec(), SendFlags::empty()).unwrap();
    }

    /// The next response, or `None` when the service closed.
    fn recv(&self) -> Option<CriuResp> {
        let mut buf = vec![0u8; 1 << 16];
        let (_, n) = rustix::net::recv(&self.sk, &mut buf[..], RecvFlags::empty()).unwrap();
        (n > 0).then(|| CriuResp::decode(&buf[..n]).unwrap())
    }

    fn call(&self, req: &CriuReq) -> CriuResp {
        self.send(req);
        self.recv().expect("a response")
    }

    /// Acks a notification (or refuses it).
    fn ack(&self, ok: bool) {
        self.send(&CriuReq {
            r#type: CriuReqType::Notify as i32,
            notify_success: Some(ok),
            ..Default::default()
        });
    }
}

/// `rcriu swrk FD` on a new socket pair.
fn swrk() -> (Client, Child) {
    let (ours, theirs) = socketpair();
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .env("HOME", "/nonexistent")
        .args(["swrk", &theirs.as_raw_fd().to_string()])
        .spawn()
        .unwrap();
    drop(theirs);
    (Client { sk: ours }, child)
}

fn req(t: CriuReqType) -> CriuReq {
    CriuReq {
        r#type: t as i32,
        ..Default::default()
    }
}

fn msg(r: &CriuResp) -> String {
    String::from_utf8_lossy(r.cr_errmsg.as_deref().unwrap_or_default()).into_owned()
}

#[test]
fn version_and_features_on_one_connection() {
    let _g = common::setup();
    let (c, child) = swrk();
    let mut r = req(CriuReqType::Version);
    r.keep_open = Some(true);
    let v = c.call(&r);
    assert!(v.success);
    assert_eq!(v.r#type, CriuReqType::Version as i32);
    let CriuVersion {
        major_number,
        minor_number,
        gitid,
        name,
        ..
    } = v.version.unwrap();
    // What podman (>= 31100) and runc compute: 40200, no gitid rounding.
    assert_eq!((major_number, minor_number), (4, 2));
    assert!(gitid.is_none());
    assert!(
        String::from_utf8(name.unwrap())
            .unwrap()
            .starts_with("rcriu")
    );
    let mut r = req(CriuReqType::FeatureCheck);
    r.keep_open = Some(true);
    r.features = Some(CriuFeatures {
        mem_track: Some(true),
        lazy_pages: Some(true),
        pidfd_store: Some(true),
    });
    let f = c.call(&r);
    assert!(f.success);
    assert_eq!(
        f.features.unwrap(),
        CriuFeatures {
            mem_track: Some(true),
            // A lazy restore works here (tests/lazy_pages.rs).
            lazy_pages: Some(true),
            pidfd_store: Some(false),
        }
    );
    // Requests that criu lets keep the connection, refused.
    let mut r = req(CriuReqType::CpuinfoDump);
    r.keep_open = Some(true);
    let cpu = c.call(&r);
    assert!(!cpu.success);
    assert_eq!(cpu.cr_errno, Some(libc::ENOTSUP));
    assert!(
        msg(&cpu).contains("cpuinfo is not supported yet"),
        "{}",
        msg(&cpu)
    );
    let mut r = req(CriuReqType::PageServerChld);
    r.keep_open = Some(true);
    let ps = c.call(&r);
    assert!(!ps.success);
    assert_eq!(ps.r#type, CriuReqType::PageServer as i32);
    assert!(
        msg(&ps).contains("Neither images_dir_fd nor images_dir"),
        "{}",
        msg(&ps)
    );
    // The last one, without keep_open: then the worker ends, status 0.
    assert!(c.call(&req(CriuReqType::Version)).success);
    assert!(c.recv().is_none());
    assert_eq!(wait_child(child).unwrap(), 0);
}

#[test]
fn requests_criu_refuses_as_criu_does() {
    let _g = common::setup();
    // An unknown type: EMPTY, failed, and the worker ends with 1.
    let (c, child) = swrk();
    let r = c.call(&req(CriuReqType::Empty));
    assert_eq!(r.r#type, CriuReqType::Empty as i32);
    assert!(!r.success);
    assert!(c.recv().is_none());
    assert_ne!(wait_child(child).unwrap(), 0);
    // keep_open on a dump: criu ends the connection without an answer.
    let (c, child) = swrk();
    let mut r = req(CriuReqType::Dump);
    r.keep_open = Some(true);
    c.send(&r);
    assert!(c.recv().is_none());
    assert_ne!(wait_child(child).unwrap(), 0);
    // Pre-dump without an images directory: refused, as criu refuses it.
    let (c, child) = swrk();
    let r = c.call(&req(CriuReqType::PreDump));
    assert_eq!(r.r#type, CriuReqType::PreDump as i32);
    assert!(!r.success);
    assert!(
        msg(&r).contains("Neither images_dir_fd nor images_dir"),
        "{}",
        msg(&r)
    );
    wait_child(child).unwrap();
    // WAIT_PID on what is not the worker's child.
    let (c, child) = swrk();
    let mut r = req(CriuReqType::WaitPid);
    r.pid = Some(1);
    let w = c.call(&r);
    assert!(!w.success);
    assert_eq!(w.cr_errno, Some(libc::ECHILD));
    wait_child(child).unwrap();
}

/// As runc's `checkpoint --pre-dump` and the final checkpoint: PRE_DUMP
/// requests on one connection, then the DUMP that ends them, each round
/// naming the one before as `parent_img`; the process, rewriting pages
/// under a checksum meanwhile, restores whole from the chain. Another
/// request after a PRE_DUMP is a bad sequence, as in criu.
#[test]
fn pre_dumps_then_a_dump_on_one_connection() {
    let _g = common::setup();
    let t = TempDir::new("rpc-predump");
    rpc_chain(t.path(), false);
    // Without auto_dedup, the parents' pages images are whole.
    for n in ["1", "2"] {
        assert!(!sparse(&t.path().join(n).join("pages-1.img")), "{n}");
    }
    pre_dump_then_another_request();
}

/// criu's `auto_dedup` on PRE_DUMP and DUMP requests: the pages each
/// round writes are punched out of the rounds before (the control is
/// the test above, whose parents stay whole); the chain restores whole.
#[test]
fn auto_dedup_over_the_rpc() {
    let _g = common::setup();
    let t = TempDir::new("rpc-predump-dedup");
    rpc_chain(t.path(), true);
    for n in ["1", "2"] {
        assert!(sparse(&t.path().join(n).join("pages-1.img")), "{n}");
    }
}

/// Whether a file takes fewer bytes on disk than it holds (has holes).
fn sparse(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    m.blocks() * 512 < m.len()
}

/// Two PRE_DUMPs and a DUMP of a rewriting process into `1`, `2`, `3`
/// of `top` (the later ones with `auto_dedup` when `dedup`), then the
/// restore from the chain, checked from inside.
fn rpc_chain(top: &std::path::Path, dedup: bool) {
    let mut w = rcriu_test_support::Workload::start("rewriter", &["32", "20"]);
    let dirs: Vec<OwnedFd> = ["1", "2", "3"]
        .iter()
        .map(|n| {
            std::fs::create_dir(top.join(n)).unwrap();
            open_dir(&top.join(n))
        })
        .collect();
    let round = |t: CriuReqType, dir: &OwnedFd, parent: Option<&str>| {
        let mut r = dump_req(w.pid, dir, false);
        r.r#type = t as i32;
        let o = r.opts.as_mut().unwrap();
        o.track_mem = Some(true);
        o.parent_img = parent.map(|p| p.as_bytes().to_vec());
        if dedup && parent.is_some() {
            o.auto_dedup = Some(true);
        }
        r
    };
    let (c, child) = swrk();
    let r = c.call(&round(CriuReqType::PreDump, &dirs[0], None));
    assert!(r.success, "{}", msg(&r));
    assert_eq!(r.r#type, CriuReqType::PreDump as i32);
    let r = c.call(&round(CriuReqType::PreDump, &dirs[1], Some("../1")));
    assert!(r.success, "{}", msg(&r));
    let r = c.call(&round(CriuReqType::Dump, &dirs[2], Some("../2")));
    assert!(r.success, "{}", msg(&r));
    assert_eq!(r.r#type, CriuReqType::Dump as i32);
    assert_eq!(wait_child(child).unwrap(), 0);
    w.reap();
    assert_eq!(
        std::fs::read_link(top.join("3/parent")).unwrap(),
        std::path::Path::new("../2")
    );
    rcriu::Restore::new(top.join("3"))
        .detach(true)
        .run()
        .expect("restoring from the chain");
    w.verdict().expect("the restored process");
}

/// Another request after a PRE_DUMP is a bad sequence, as in criu.
fn pre_dump_then_another_request() {
    let w = rcriu_test_support::Workload::start("rewriter", &["8", "20"]);
    let t = TempDir::new("rpc-predump-seq");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    let mut r = dump_req(w.pid, &dir, false);
    r.r#type = CriuReqType::PreDump as i32;
    assert!(c.call(&r).success);
    let r = c.call(&req(CriuReqType::Version));
    assert!(!r.success);
    assert!(msg(&r).contains("Bad req seq"), "{}", msg(&r));
    assert_ne!(wait_child(child).unwrap(), 0);
    // The tracking ends with the process.
    w.verdict().expect("the pre-dumped process");
}

/// A dump request of `pid` into `dir` (an fd in this process's table).
fn dump_req(pid: i32, dir: &OwnedFd, notify: bool) -> CriuReq {
    CriuReq {
        r#type: CriuReqType::Dump as i32,
        opts: Some(CriuOpts {
            images_dir_fd: dir.as_raw_fd(),
            pid: Some(pid),
            log_level: Some(4),
            log_file: Some(b"dump.log".to_vec()),
            notify_scripts: Some(notify),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restore_req(dir: &OwnedFd, notify: bool) -> CriuReq {
    CriuReq {
        r#type: CriuReqType::Restore as i32,
        opts: Some(CriuOpts {
            images_dir_fd: dir.as_raw_fd(),
            log_level: Some(4),
            log_file: Some(b"restore.log".to_vec()),
            notify_scripts: Some(notify),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn open_dir(p: &Path) -> OwnedFd {
    std::fs::File::open(p).unwrap().into()
}

/// Answers notifications until the final response; returns them and it.
fn converse(c: &Client, refuse: Option<&str>) -> (Vec<(String, Option<i32>)>, CriuResp) {
    let mut seen = Vec::new();
    loop {
        let r = c.recv().expect("a message");
        if r.r#type != CriuReqType::Notify as i32 {
            return (seen, r);
        }
        let n = r.notify.unwrap();
        let script = String::from_utf8(n.script.unwrap()).unwrap();
        let ok = refuse != Some(script.as_str());
        seen.push((script, n.pid));
        c.ack(ok);
    }
}

#[test]
fn dump_and_restore_with_notifications() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("rpc-notify");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    c.send(&dump_req(w.pid, &dir, true));
    let (seen, r) = converse(&c, None);
    assert!(r.success, "{}", msg(&r));
    assert_eq!(r.r#type, CriuReqType::Dump as i32);
    assert_eq!(r.dump.unwrap().restored, Some(false));
    assert_eq!(
        seen,
        [
            ("pre-dump".to_string(), None),
            ("query-ext-files".to_string(), None),
            ("post-dump".to_string(), None)
        ]
    );
    assert_eq!(wait_child(child).unwrap(), 0);
    w.reap();
    // The log went where asked, in criu's format.
    let log = std::fs::read_to_string(t.path().join("dump.log")).unwrap();
    assert!(log.starts_with("(00.0"), "{log}");

    let (c, child) = swrk();
    c.send(&restore_req(&dir, true));
    let (seen, r) = converse(&c, None);
    assert!(r.success, "{}", msg(&r));
    assert_eq!(r.restore.unwrap().pid, w.pid);
    let pid = Some(w.pid);
    assert_eq!(
        seen,
        [
            ("pre-restore".to_string(), None),
            ("post-restore".to_string(), pid),
            ("pre-resume".to_string(), None),
            ("post-resume".to_string(), None)
        ]
    );
    assert_eq!(wait_child(child).unwrap(), 0);
    w.verdict().expect("restored through the RPC, intact");
}

#[test]
fn a_refused_notification_fails_the_restore_and_leaves_nothing() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("rpc-nack");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    c.send(&dump_req(w.pid, &dir, false));
    let (seen, r) = converse(&c, None);
    assert!(r.success && seen.is_empty(), "{}", msg(&r));
    wait_child(child).unwrap();
    w.reap();
    let (c, child) = swrk();
    c.send(&restore_req(&dir, true));
    let (_, r) = converse(&c, Some("post-restore"));
    assert!(!r.success);
    assert_eq!(r.restore.unwrap().pid, -1);
    assert!(msg(&r).contains("script error"), "{}", msg(&r));
    assert_ne!(wait_child(child).unwrap(), 0);
    assert!(!Path::new(&format!("/proc/{}", w.pid)).exists());
    // Negative control: acked, the same images restore.
    let (c, child) = swrk();
    c.send(&restore_req(&dir, true));
    let (_, r) = converse(&c, None);
    assert!(r.success, "{}", msg(&r));
    wait_child(child).unwrap();
    w.verdict().unwrap();
}

#[test]
fn options_are_refused_by_their_rpc_names() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("rpc-refused");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    let mut r = dump_req(w.pid, &dir, false);
    let o = r.opts.as_mut().unwrap();
    o.leave_running = Some(true);
    o.timeout = Some(3);
    let resp = c.call(&r);
    assert!(!resp.success);
    assert!(
        msg(&resp).contains("option timeout (--timeout) is not supported yet"),
        "{}",
        msg(&resp)
    );
    assert_ne!(wait_child(child).unwrap(), 0);
    assert!(!t.path().join("inventory.img").exists());
    // The RPC's configuration file (runc sends /etc/criu/runc.conf) comes
    // over the request: one asking for the image streamer is refused...
    let conf = t.path().join("runc.conf");
    std::fs::write(&conf, "stream\n").unwrap();
    let (c, child) = swrk();
    let mut r = dump_req(w.pid, &dir, false);
    let o = r.opts.as_mut().unwrap();
    o.leave_running = Some(true);
    o.config_file = Some(conf.to_str().unwrap().as_bytes().to_vec());
    let resp = c.call(&r);
    assert!(msg(&resp).contains("--stream"), "{}", msg(&resp));
    wait_child(child).unwrap();
    // ...an absent one changes nothing, and what the file says of the log
    // wins over the request.
    std::fs::write(&conf, "log-file from-conf.log\n").unwrap();
    for config in [t.path().join("absent.conf"), conf] {
        let (c, child) = swrk();
        let mut r = dump_req(w.pid, &dir, false);
        let o = r.opts.as_mut().unwrap();
        o.leave_running = Some(true);
        o.config_file = Some(config.to_str().unwrap().as_bytes().to_vec());
        let resp = c.call(&r);
        assert!(resp.success, "{}", msg(&resp));
        wait_child(child).unwrap();
    }
    assert!(t.path().join("from-conf.log").exists());
    assert!(t.path().join("inventory.img").exists());
    w.verdict().expect("left running");
}

/// `rcriu::serve` on one end of a new socket pair, in a thread of this
/// process.
fn in_process() -> (Client, std::thread::JoinHandle<i32>) {
    let (ours, theirs) = socketpair();
    let service = std::thread::spawn(move || rcriu::serve(theirs, &rcriu::Options::default()));
    (Client { sk: ours }, service)
}

#[test]
fn the_service_runs_in_an_embedding_program() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("rpc-in-process");
    let dir = open_dir(t.path());
    // A child of this process: WAIT_PID waits for it, in-process (as
    // criu, WAIT_PID does not keep the connection).
    let (c, service) = in_process();
    let mut r = req(CriuReqType::Version);
    r.keep_open = Some(true);
    assert!(c.call(&r).success);
    let kid = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
    let mut r = req(CriuReqType::WaitPid);
    r.pid = Some(kid.id());
    let waited = c.call(&r);
    assert!(waited.success);
    assert_eq!(waited.status.map(|s| (s >> 8) & 0xff), Some(7));
    std::mem::forget(kid);
    assert_eq!(service.join().unwrap(), 0);
    // A dump, done by this process.
    let (c, service) = in_process();
    let mut r = dump_req(w.pid, &dir, false);
    r.opts.as_mut().unwrap().leave_running = Some(true);
    let resp = c.call(&r);
    assert!(resp.success, "{}", msg(&resp));
    assert_eq!(service.join().unwrap(), 0);
    assert!(t.path().join("inventory.img").exists());
    w.verdict().unwrap();
}

/// A PAGE_SERVER(_CHLD) request writing into `dir`, on `address`.
fn page_server_req(t: CriuReqType, dir: &OwnedFd, address: &str) -> CriuReq {
    CriuReq {
        r#type: t as i32,
        keep_open: Some(true),
        opts: Some(CriuOpts {
            images_dir_fd: dir.as_raw_fd(),
            log_level: Some(4),
            log_file: Some(b"ps.log".to_vec()),
            ps: Some(CriuPageServerInfo {
                address: Some(address.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Dumps bigmem's pages to the page server on `port`, its other images
/// in a directory of their own, and restores it from both: its verdict.
fn dump_to(port: i32, ps_dir: &Path) -> Result<(), String> {
    dump_to_with(port, ps_dir, &[])
}

/// As [`dump_to`], the dump given `extra` arguments.
fn dump_to_with(port: i32, ps_dir: &Path, extra: &[String]) -> Result<(), String> {
    let w = rcriu_test_support::Workload::start("bigmem", &["8"]);
    w.wait_in("sigsuspend");
    let t = TempDir::new("rpc-ps-dump");
    let out = Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(t.path())
        .args(["--page-server", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["-v4", "-o", "dump.log"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(t.path().join("dump.log")).unwrap_or_default()
    );
    rcriu_test_support::wait_exit(w.pid).ok();
    for e in std::fs::read_dir(ps_dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("pagemap-") || name.starts_with("pages-") {
            std::fs::copy(e.path(), t.path().join(&name)).unwrap();
        }
    }
    rcriu::Restore::new(t.path())
        .detach(true)
        .run()
        .map_err(|e| format!("restoring: {e}"))?;
    w.verdict()
}

#[test]
fn page_server_requests_start_a_page_server() {
    let _g = common::setup();
    // PAGE_SERVER: a daemon, not the worker's child.
    let t = TempDir::new("rpc-ps");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    let r = c.call(&page_server_req(CriuReqType::PageServer, &dir, "127.0.0.1"));
    assert!(r.success, "{}", msg(&r));
    assert_eq!(r.r#type, CriuReqType::PageServer as i32);
    let ps = r.ps.expect("the page server's pid and port");
    let (pid, port) = (ps.pid.unwrap(), ps.port.unwrap());
    assert!(pid > 0 && port > 0, "{pid} {port}");
    let sid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let sid: i32 = sid
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sid, pid, "the daemon leads a session of its own");
    // The connection stays open for more requests.
    assert!(c.call(&req(CriuReqType::Version)).success);
    assert!(
        c.recv().is_none(),
        "the server keeps the service's connection"
    );
    assert_eq!(wait_child(child).unwrap(), 0);
    dump_to(port, t.path()).expect("restored from PAGE_SERVER's images");
    // Reparented to this test (a subreaper) when its starter ended.
    assert_eq!(wait_exit(pid).unwrap(), 0, "the page server's status");

    // PAGE_SERVER_CHLD: the worker's child, waited for with WAIT_PID.
    let t = TempDir::new("rpc-ps-chld");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    let r = c.call(&page_server_req(
        CriuReqType::PageServerChld,
        &dir,
        "127.0.0.1",
    ));
    assert!(r.success, "{}", msg(&r));
    assert_eq!(
        r.r#type,
        CriuReqType::PageServer as i32,
        "criu answers PAGE_SERVER"
    );
    let ps = r.ps.expect("the page server's pid and port");
    let (pid, port) = (ps.pid.unwrap(), ps.port.unwrap());
    dump_to(port, t.path()).expect("restored from PAGE_SERVER_CHLD's images");
    let mut w = req(CriuReqType::WaitPid);
    w.pid = Some(pid as u32);
    let r = c.call(&w);
    assert!(r.success, "WAIT_PID of the page server: {}", msg(&r));
    assert_eq!(r.status, Some(0), "the page server's wait status");
    assert_eq!(wait_child(child).unwrap(), 0);

    // Negative control: a bad address, no server.
    let t = TempDir::new("rpc-ps-bad");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    let r = c.call(&page_server_req(
        CriuReqType::PageServer,
        &dir,
        "not an address",
    ));
    assert!(!r.success);
    assert!(r.ps.is_none());
    assert!(msg(&r).contains("Bad server address"), "{}", msg(&r));
    // The connection is kept, as criu keeps it.
    assert!(c.call(&req(CriuReqType::Version)).success);
    assert!(c.recv().is_none());
    assert_eq!(wait_child(child).unwrap(), 0);
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".img"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_page_server_request_through_tls() {
    let _g = common::setup();
    let pki = rcriu_test_support::pki::Pki::new();
    let tls_req = |dir: &OwnedFd, cert: &str| {
        let mut r = page_server_req(CriuReqType::PageServerChld, dir, "127.0.0.1");
        let o = r.opts.as_mut().unwrap();
        o.tls = Some(true);
        o.tls_cacert = Some(pki.path("ca.pem").into_bytes());
        o.tls_cert = Some(pki.path(&format!("{cert}.pem")).into_bytes());
        o.tls_key = Some(pki.path(&format!("{cert}.key")).into_bytes());
        r
    };
    let t = TempDir::new("rpc-ps-tls");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    let r = c.call(&tls_req(&dir, "server"));
    assert!(r.success, "{}", msg(&r));
    let ps = r.ps.expect("the page server's pid and port");
    let (pid, port) = (ps.pid.unwrap(), ps.port.unwrap());
    dump_to_with(port, t.path(), &pki.args("ca", "client"))
        .expect("restored from a TLS page server's images");
    let mut w = req(CriuReqType::WaitPid);
    w.pid = Some(pid as u32);
    let r = c.call(&w);
    assert!(r.success, "WAIT_PID of the page server: {}", msg(&r));
    assert_eq!(r.status, Some(0), "the page server's wait status");
    assert_eq!(wait_child(child).unwrap(), 0);

    // Negative control: a certificate that is not there, no server.
    let t = TempDir::new("rpc-ps-tls-bad");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    let r = c.call(&tls_req(&dir, "no-such-cert"));
    assert!(!r.success);
    assert!(r.ps.is_none());
    assert!(msg(&r).contains("no-such-cert.pem"), "{}", msg(&r));
    assert!(c.call(&req(CriuReqType::Version)).success);
    assert!(c.recv().is_none());
    assert_eq!(wait_child(child).unwrap(), 0);
}

#[test]
fn a_lazy_restore_over_the_rpc() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("rpc-lazy");
    let dir = open_dir(t.path());
    let (c, child) = swrk();
    c.send(&dump_req(w.pid, &dir, false));
    let r = c.recv().expect("the dump's answer");
    assert!(r.success, "{}", msg(&r));
    assert_eq!(wait_child(child).unwrap(), 0);
    w.reap();
    let lazy = |r: &mut CriuReq| r.opts.as_mut().unwrap().lazy_pages = Some(true);
    // No daemon: refused, naming its socket, nothing restored.
    let (c, child) = swrk();
    let mut r = restore_req(&dir, false);
    lazy(&mut r);
    c.send(&r);
    let r = c.recv().expect("the restore's answer");
    assert!(!r.success);
    assert!(msg(&r).contains("lazy-pages.socket"), "{}", msg(&r));
    let _ = wait_child(child);
    // With the daemon listening in the work directory (the images').
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(["lazy-pages", "-D", t.path().to_str().unwrap()])
        .args(["--status-fd", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = [1u8];
    std::io::Read::read_exact(&mut daemon.stdout.take().unwrap(), &mut b).unwrap();
    let (c, child) = swrk();
    let mut r = restore_req(&dir, false);
    lazy(&mut r);
    c.send(&r);
    let r = c.recv().expect("the restore's answer");
    assert!(r.success, "{}", msg(&r));
    assert_eq!(wait_child(child).unwrap(), 0);
    assert_eq!(
        wait_child(daemon).unwrap(),
        0,
        "the daemon ends, every page in"
    );
    w.verdict()
        .expect("restored lazily through the RPC, intact");
}
