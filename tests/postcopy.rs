//! Post-copy from a lazy dump's page server: `rcriu dump --lazy-pages
//! --address A --port P` writes every image but the bytes of the lazy
//! pages (pagemap entries `PE_LAZY` alone, as CRIU 4.2 writes them),
//! kills the processes and serves those pages; `rcriu lazy-pages
//! --page-server --address A --port P` with `rcriu restore --lazy-pages`
//! brings the processes back, on the same machine with the same pids,
//! their memory coming from the dump as they fault and in the
//! background. A process holding a known pattern (lazymem) checks every
//! word itself after the restore: alone, and a tree of three processes
//! with threads of its own that fault first.
//!
//! Across CRIU 4.2 (when `RCRIU_TEST_CRIU` names its `criu`): rcriu's
//! lazy dump served to CRIU's `lazy-pages --page-server` and `restore
//! --lazy-pages`; CRIU's `dump --lazy-pages` served to rcriu's daemon
//! and restore (in a pid namespace of its own: CRIU holds the pids it
//! dumped until its session ends).
//!
//! Negative controls: a page changed in what the dump serves (its
//! memfd, after the dump) makes the process's check fail; the dump
//! killed while it serves gets the restored process killed (by the
//! daemon's guard), never left running with missing pages; a lazy dump
//! that cannot be served as asked (`--leave-running`, a port in use) is
//! refused before anything is written, the process running on.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcriu::images::pages::{PE_LAZY, PE_PRESENT};
use rcriu_test_support::{
    TempDir, Workload, become_subreaper, require_root, trace_lock, tree_pids, wait_exit,
};

mod lazy_common;
use lazy_common::{Daemon, RCRIU, Talk, killed, log, present_pages, rcriu};

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `program dump --lazy-pages` of `w` into `d` on `port`, once it
/// serves (its status byte: every image is written). The workload and
/// its children (ours as subreaper) are reaped when `reap`.
fn lazy_dump(program: &str, w: &mut Workload, d: &Path, port: u16, reap: bool) -> Daemon {
    lazy_dump_with(program, w, d, port, reap, &[])
}

/// [`lazy_dump`] with `extra` options.
fn lazy_dump_with(
    program: &str,
    w: &mut Workload,
    d: &Path,
    port: u16,
    reap: bool,
    extra: &[String],
) -> Daemon {
    let children = tree_pids(w.pid);
    let p = w.pid.to_string();
    let port = port.to_string();
    // CRIU's dump wants it made.
    std::fs::create_dir_all(d).unwrap();
    let mut args: Vec<&str> = vec![
        "dump",
        "--lazy-pages",
        "--address",
        "127.0.0.1",
        "--port",
        &port,
        "-t",
        &p,
        "-D",
        d.to_str().unwrap(),
        "--status-fd",
        "1",
        "-v4",
        "-o",
        "dump.log",
    ];
    args.extend(extra.iter().map(String::as_str));
    let dump = Daemon::start(program, &args)
        .unwrap_or_else(|o| panic!("the lazy dump: {o:?}\n{}", log(d, "dump.log")));
    if reap {
        let st = w.reap();
        assert!(killed(st), "the dumped process ended with {st:#x}");
        for c in children.into_iter().filter(|&c| c != w.pid) {
            wait_exit(c).unwrap();
        }
    }
    dump
}

/// `rcriu lazy-pages --page-server` on `d`, connected to `port`.
fn remote_daemon(d: &Path, port: u16) -> Daemon {
    remote_daemon_with(d, port, &[])
        .unwrap_or_else(|o| panic!("the daemon: {o:?}\n{}", log(d, "lazy-pages.log")))
}

/// [`remote_daemon`] with `extra` options; its output when it did not
/// say it listens.
fn remote_daemon_with(
    d: &Path,
    port: u16,
    extra: &[String],
) -> Result<Daemon, std::process::Output> {
    let port = port.to_string();
    let mut args = daemon_args(d.to_str().unwrap(), &port);
    args.extend(extra.iter().map(String::as_str));
    Daemon::start(RCRIU, &args)
}

/// `lazy-pages --page-server` on `dir`, connected to `port` on
/// loopback, saying on fd 1 when it listens, its log `lazy-pages.log`:
/// rcriu's and CRIU's daemons take the same words.
fn daemon_args<'a>(dir: &'a str, port: &'a str) -> Vec<&'a str> {
    vec![
        "lazy-pages",
        "--page-server",
        "--address",
        "127.0.0.1",
        "--port",
        port,
        "-D",
        dir,
        "--status-fd",
        "1",
        "-v4",
        "-o",
        "lazy-pages.log",
    ]
}

fn restore_lazily(d: &Path) -> Result<(), String> {
    rcriu(&["restore", "-D", d.to_str().unwrap(), "--lazy-pages", "-d"])
}

/// Pages of `pid`'s pagemap in `d` flagged `PE_LAZY` alone, and those
/// with bytes in the pages image.
fn lazy_and_present(d: &Path, pid: i32) -> (u64, u64) {
    let dir = rcriu::images::ImageDir::open(d).unwrap();
    let mut runs = dir.pagemap(pid as u32).unwrap();
    let (mut lazy, mut present) = (0, 0);
    while let Some(r) = runs.next_run().unwrap() {
        if r.flags == PE_LAZY {
            lazy += r.nr_pages;
        }
        if r.flags & PE_PRESENT != 0 {
            present += r.nr_pages;
        }
    }
    (lazy, present)
}

fn start(mib: &str, nchild: &str, nthread: &str) -> (Workload, TempDir, PathBuf, u16) {
    let w = Workload::start("lazymem", &[mib, nchild, nthread]);
    let top = TempDir::new("postcopy");
    let d = top.path().join("d");
    (w, top, d, free_port())
}

#[test]
fn a_lazy_dump_is_restored_from_its_page_server() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (mut w, _top, d, port) = start("64", "0", "0");
    let dump = lazy_dump(RCRIU, &mut w, &d, port, true);
    // The original is gone (reaped above): its pid is free again.
    assert!(!Path::new(&format!("/proc/{}", w.pid)).exists());
    let (lazy, present) = lazy_and_present(&d, w.pid);
    assert!(lazy >= 64 * 256, "{lazy} pages PE_LAZY alone");
    let pages = std::fs::metadata(d.join("pages-1.img")).unwrap().len();
    assert_eq!(pages, present * 4096, "only the pages not lazy have bytes");
    let daemon = remote_daemon(&d, port);
    restore_lazily(&d).expect("the lazy restore");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'p'), b'p', "the restored process answers");
    let status = daemon.wait();
    let dlog = log(&d, "lazy-pages.log");
    assert_eq!(status, 0, "the daemon's exit status; its log:\n{dlog}");
    assert!(dlog.contains("every lazy page is in"), "{dlog}");
    assert_eq!(dump.wait(), 0, "the dump's status: {}", log(&d, "dump.log"));
    assert!(
        log(&d, "dump.log").contains("lazy pages transfer finished"),
        "{}",
        log(&d, "dump.log")
    );
    // Every page of the area came from the dump, untouched since.
    let (addr, len) = (w.fact_u64("addr"), w.fact_u64("len"));
    assert_eq!(present_pages(w.pid, addr, len), len / 4096);
    assert_eq!(t.ask(b'c'), b'P', "the process's own check of its memory");
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

#[test]
fn a_tree_with_threads_comes_from_the_page_server() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (mut w, _top, d, port) = start("32", "2", "3");
    let dump = lazy_dump(RCRIU, &mut w, &d, port, true);
    let daemon = remote_daemon(&d, port);
    restore_lazily(&d).expect("the lazy restore of the tree");
    let mut t = Talk::open(&w);
    // The threads and the children check first, faulting the pages in.
    assert_eq!(t.ask(b'c'), b'P', "every process's and thread's check");
    let status = daemon.wait();
    let dlog = log(&d, "lazy-pages.log");
    assert_eq!(status, 0, "{dlog}");
    assert!(
        dlog.contains("every lazy page is in: 3 processes"),
        "{dlog}"
    );
    assert_eq!(dump.wait(), 0, "{}", log(&d, "dump.log"));
    assert_eq!(
        std::fs::read_dir(format!("/proc/{}/task", w.pid))
            .unwrap()
            .count(),
        4,
        "the threads are back"
    );
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

/// The memfd in which dump `dump` holds the lazy pages of `pid`.
fn held_pages(dump: i32, pid: i32) -> PathBuf {
    let want = format!("/memfd:rcriu-lazy-{pid} (deleted)");
    for e in std::fs::read_dir(format!("/proc/{dump}/fd")).unwrap() {
        let p = e.unwrap().path();
        if std::fs::read_link(&p).is_ok_and(|l| l.to_str() == Some(&want)) {
            return p;
        }
    }
    panic!("dump {dump} holds no {want}");
}

#[test]
fn a_page_changed_on_the_servers_side_is_seen() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (mut w, _top, d, port) = start("32", "0", "0");
    let dump = lazy_dump(RCRIU, &mut w, &d, port, true);
    // A byte in the middle of what the dump serves (the area's pages
    // are most of it) changed after the dump.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(held_pages(dump.pid(), w.pid))
            .unwrap();
        let at = f.metadata().unwrap().len() / 2;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    }
    let daemon = remote_daemon(&d, port);
    restore_lazily(&d).expect("the lazy restore");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'c'), b'F', "the check must see the changed page");
    assert_eq!(daemon.wait(), 0);
    assert_eq!(dump.wait(), 0);
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

#[test]
fn a_dump_killed_while_it_serves_takes_the_process_with_it() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (mut w, _top, d, port) = start("512", "0", "0");
    let mut dump = lazy_dump(RCRIU, &mut w, &d, port, true);
    let daemon = remote_daemon(&d, port);
    restore_lazily(&d).expect("the lazy restore");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'p'), b'p');
    dump.kill();
    let st = dump.wait();
    assert!(
        killed(st),
        "the dump ended before the kill ({st:#x}): nothing was tested"
    );
    let out = daemon.output();
    let dlog = log(&d, "lazy-pages.log");
    assert!(!out.status.success(), "the daemon succeeded: {dlog}");
    assert!(
        dlog.contains("page server"),
        "the daemon names its loss: {dlog}"
    );
    let end = wait_exit(w.pid).unwrap();
    assert!(
        killed(end),
        "the restored process ended with {end:#x}, not killed"
    );
}

/// The files in `d`, or none.
fn files_in(d: &Path) -> Vec<String> {
    std::fs::read_dir(d)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".img") || n == "rcriu-manifest")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_lazy_dump_that_cannot_be_served_is_refused_with_the_process_running() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let (mut w, top, _d, _) = start("8", "0", "0");
    let p = w.pid.to_string();
    let mut t = Talk::open(&w);
    // Running on while its pages are served: not yet.
    let d1 = top.path().join("running");
    let port = free_port().to_string();
    let err = rcriu(&[
        "dump",
        "--lazy-pages",
        "--leave-running",
        "--address",
        "127.0.0.1",
        "--port",
        &port,
        "-t",
        &p,
        "-D",
        d1.to_str().unwrap(),
    ])
    .expect_err("a lazy dump that leaves the process running");
    assert!(err.contains("--lazy-pages"), "{err}");
    assert!(files_in(&d1).is_empty(), "{:?}", files_in(&d1));
    assert_eq!(t.ask(b'p'), b'p', "the process runs on");
    // A port taken: refused before the process is touched.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let d2 = top.path().join("taken");
    let err = rcriu(&[
        "dump",
        "--lazy-pages",
        "--address",
        "127.0.0.1",
        "--port",
        &port,
        "-t",
        &p,
        "-D",
        d2.to_str().unwrap(),
    ])
    .expect_err("a lazy dump on a port in use");
    assert!(err.contains(&port), "{err}");
    assert!(files_in(&d2).is_empty(), "{:?}", files_in(&d2));
    assert_eq!(t.ask(b'c'), b'P', "the process runs on, its memory whole");
    // The control: the same dump on a free port is taken.
    drop(taken);
    let d3 = top.path().join("free");
    let dump = lazy_dump(RCRIU, &mut w, &d3, free_port(), true);
    drop(dump);
}

#[test]
fn lazy_pages_go_through_tls() {
    require_root();
    let _l = trace_lock();
    become_subreaper();
    let pki = rcriu_test_support::pki::Pki::new();
    let (mut w, _top, d, port) = start("32", "0", "0");
    // The dump serves: it is the TLS server here.
    let dump = lazy_dump_with(RCRIU, &mut w, &d, port, true, &pki.args("ca", "server"));
    // The control: a daemon with a certificate of another CA gets no
    // page (the dump refuses it, and ends).
    let refused = remote_daemon_with(&d, port, &pki.args("ca2", "stranger"));
    assert!(
        refused.is_err(),
        "a daemon the dump does not trust connected"
    );
    assert_ne!(dump.wait(), 0, "the dump served an untrusted daemon");
    // Again, with a daemon the dump trusts.
    let (mut w, _top2, d, port) = start("32", "0", "0");
    let dump = lazy_dump_with(RCRIU, &mut w, &d, port, true, &pki.args("ca", "server"));
    let daemon = remote_daemon_with(&d, port, &pki.args("ca", "client")).unwrap_or_else(|o| {
        panic!(
            "the daemon through TLS: {o:?}\n{}",
            log(&d, "lazy-pages.log")
        )
    });
    restore_lazily(&d).expect("the lazy restore through TLS");
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'c'), b'P', "the process's own check of its memory");
    assert_eq!(daemon.wait(), 0, "{}", log(&d, "lazy-pages.log"));
    assert_eq!(dump.wait(), 0, "{}", log(&d, "dump.log"));
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

/// CRIU 4.2's criu, when `RCRIU_TEST_CRIU` names it.
fn criu42() -> Option<String> {
    let c = std::env::var("RCRIU_TEST_CRIU")
        .ok()
        .filter(|c| !c.is_empty());
    if c.is_none() {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the post-copy test against CRIU 4.2");
    }
    c
}

#[test]
fn rcriu_s_lazy_dump_is_served_to_criu_s_daemon() {
    require_root();
    let Some(criu) = criu42() else { return };
    let _l = trace_lock();
    become_subreaper();
    let (mut w, _top, d, port) = start("32", "0", "0");
    let dump = lazy_dump(RCRIU, &mut w, &d, port, true);
    let port = port.to_string();
    let dd = d.to_str().unwrap();
    let daemon = Daemon::start(&criu, &daemon_args(dd, &port))
        .unwrap_or_else(|o| panic!("CRIU's daemon: {o:?}\n{}", log(&d, "lazy-pages.log")));
    let out = std::process::Command::new(&criu)
        .args([
            "restore",
            "-D",
            dd,
            "--lazy-pages",
            "-d",
            "-v4",
            "-o",
            "restore.log",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CRIU's lazy restore of rcriu's lazy dump: {}",
        log(&d, "restore.log")
    );
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'c'), b'P', "the process's own check of its memory");
    assert_eq!(daemon.wait(), 0, "{}", log(&d, "lazy-pages.log"));
    assert_eq!(dump.wait(), 0, "{}", log(&d, "dump.log"));
    t.to.write_all(b"x").unwrap();
    assert_eq!(wait_exit(w.pid).unwrap(), 0);
}

/// Another "machine" for a restore beside a dump that holds the pids it
/// dumped: a pid namespace with its own mount namespace and /proc, its
/// init a shell; rcriu runs there through nsenter.
struct Node {
    holder: std::process::Child,
    init: i32,
}

impl Node {
    fn start() -> Node {
        use std::io::BufRead;
        let mut holder = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
            .args(["--propagation", "private", "sh", "-c"])
            .arg("echo ready; exec sleep infinity")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the node's init");
        let u = holder.id();
        let kids = std::fs::read_to_string(format!("/proc/{u}/task/{u}/children")).unwrap();
        let init = kids.split_whitespace().next().unwrap().parse().unwrap();
        Node { holder, init }
    }

    /// `nsenter` into the node, then `args`.
    fn args<'a>(&self, init: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["-t", init, "-p", "-m", "--"];
        v.extend_from_slice(args);
        v
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn criu_s_lazy_dump_is_restored_by_rcriu() {
    require_root();
    let Some(criu) = criu42() else { return };
    // CRIU 4.2's lazy dump sizes the pipe it skips pages through to
    // 819 pages, ignores its failure (pipe-max-size, without
    // CAP_SYS_RESOURCE), and then fails every PS_IOV_GET that does not
    // start a page pipe buffer ("splice: Bad file descriptor").
    let max: u64 = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    if max < 819 * 4096 && !has_cap_sys_resource() {
        eprintln!(
            "fs.pipe-max-size is {max} and rcriu's tests lack CAP_SYS_RESOURCE: CRIU 4.2's lazy dump cannot serve its pages here; skipping"
        );
        return;
    }
    let _l = trace_lock();
    become_subreaper();
    let (mut w, _top, d, port) = start("32", "0", "0");
    // CRIU keeps the processes it dumped (frozen, then dead but not
    // reaped) until its session ends, and kills them then: the restore
    // goes to another pid namespace, as to another machine.
    let dump = lazy_dump(&criu, &mut w, &d, port, false);
    let (lazy, _) = lazy_and_present(&d, w.pid);
    assert!(
        lazy >= 32 * 256,
        "{lazy} pages PE_LAZY alone in CRIU's pagemap"
    );
    let node = Node::start();
    let init = node.init.to_string();
    let port = port.to_string();
    let dd = d.to_str().unwrap();
    let mut argv = vec![RCRIU];
    argv.extend(daemon_args(dd, &port));
    let daemon = Daemon::start("nsenter", &node.args(&init, &argv))
        .unwrap_or_else(|o| panic!("the daemon: {o:?}\n{}", log(&d, "lazy-pages.log")));
    let out = std::process::Command::new("nsenter")
        .args(node.args(&init, &[RCRIU, "restore", "-D", dd, "--lazy-pages", "-d"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rcriu's lazy restore of CRIU's lazy dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = Talk::open(&w);
    assert_eq!(t.ask(b'c'), b'P', "the process's own check of its memory");
    let status = daemon.wait();
    let dlog = log(&d, "lazy-pages.log");
    assert_eq!(status, 0, "{dlog}");
    assert!(dlog.contains("every lazy page is in"), "{dlog}");
    assert_eq!(dump.wait(), 0, "CRIU's dump: {}", log(&d, "dump.log"));
    w.reap();
    t.to.write_all(b"x").unwrap();
    drop(node);
}

/// Whether this process has CAP_SYS_RESOURCE (bit 24 of CapEff).
fn has_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
        })
        .is_some_and(|c| c & (1 << 24) != 0)
}
