//! The page server, both sides, as CRIU users run it: `rcriu page-server`
//! listens on 127.0.0.1 (started by the test on a free port, ready when
//! its `--status-fd` says so), `rcriu dump --page-server` sends the pages
//! there as it dumps them, and the server's directory (pagemap and pages
//! images) is copied beside the dump's (every other image), as one does
//! after moving the pages to the machine that restores. The `bigmem`
//! workload checks every page of its memory from inside after the
//! restore.
//!
//! Negative control: a byte of the workload's memory changed in the
//! server's pages image is noticed by the workload. A page server that
//! goes away mid-dump makes the dump fail naming it, the target running
//! exactly as before. With `RCRIU_TEST_CRIU` naming CRIU 4.2's criu: rcriu
//! dumps to CRIU's page server (restored by rcriu), and CRIU dumps to
//! rcriu's page server (restored by CRIU).
//!
//! A pre-dump chain through the page server: the `rewriter` workload
//! (pages rewritten under a running checksum) pre-dumped twice and
//! dumped with `--track-mem --page-server`, a server per round, each
//! given `--prev-images-dir` of the round before; the rounds after the
//! first send the pages not written since as `PE_PARENT` runs, and the
//! process restored from the servers' chain of directories checks every
//! page. Negative control: the final round's `parent` link turned to the
//! first round (the second round's pages lost) restores stale pages,
//! which the workload notices; a round whose server was not given its
//! parent gets every page, and the chain goes on from it. With
//! `RCRIU_TEST_CRIU`: the chain sent
//! to CRIU's page servers, and rcriu's servers' chain restored by CRIU
//! (CRIU's own pre-dump needs soft-dirty bits, which this kernel may
//! lack: `criu check --feature mem_dirty_track`).
//!
//! `rcriu page-server -d --pidfile F` returns once its daemon (of its own
//! session, its standard fds on /dev/null) listens and F names it; an
//! existing F refuses it, no daemon left listening. With `--ps-socket`
//! on both sides (connections the caller made, as p.haul passes them),
//! a dump goes through and restores; an fd that is not open is refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use rcriu::images::ImageDir;
use rcriu::images::pages::{PE_PARENT, PE_PRESENT};
use rcriu_test_support::{ProcSnapshot, TempDir, Workload, require_root};

mod page_server_shared;
use page_server_shared::*;

/// bigmem through `dumper` and `server` engines, restored by `restorer`
/// (`None`: rcriu's library), optionally with a byte flipped.
fn through(dumper: &str, server: &str, restorer: Option<&str>, flip: bool) -> Result<(), String> {
    through_with(bigmem(16), dumper, server, restorer, flip)
}

fn through_with(
    w: Workload,
    dumper: &str,
    server: &str,
    restorer: Option<&str>,
    flip: bool,
) -> Result<(), String> {
    let ps_dir = TempDir::new("ps-server");
    let dump_dir = TempDir::new("ps-dump");
    let s = Server::start(server, ps_dir.path(), NONE);
    dump(dumper, w.pid, dump_dir.path(), s.port, NONE)?;
    let (status, _) = s.wait();
    assert_eq!(
        status,
        0,
        "the page server's session: {}",
        std::fs::read_to_string(ps_dir.path().join("ps.log")).unwrap_or_default()
    );
    assert!(
        !dump_dir
            .path()
            .join(format!("pagemap-{}.img", w.pid))
            .exists(),
        "the dump wrote the pagemap itself"
    );
    assert!(
        ps_dir
            .path()
            .join(format!("pagemap-{}.img", w.pid))
            .exists(),
        "the server wrote no pagemap"
    );
    // The process was killed by the dump.
    rcriu_test_support::wait_exit(w.pid).ok();
    if flip {
        flip_big_area_byte(ps_dir.path(), &w);
    }
    combine(ps_dir.path(), dump_dir.path());
    restore_with(restorer, dump_dir.path())?;
    w.verdict()
}

/// Runs of pages the process cannot read (written, then made
/// PROT_NONE) go through /proc/PID/mem between runs the parasite sends
/// in one go; the process gets every page back.
#[test]
fn unreadable_pages_between_others_go_through_the_page_server() {
    let _g = setup();
    let w = Workload::start("memory", &["prot", "guard"]);
    through_with(w, RCRIU, RCRIU, None, false).unwrap();
}

#[test]
fn a_dump_through_rcriu_s_page_server_restores() {
    let _g = setup();
    through(RCRIU, RCRIU, None, false).unwrap();
    let e = through(RCRIU, RCRIU, None, true).expect_err("the negative control passes");
    assert!(e.contains("memory changed"), "{e}");
}

#[test]
fn criu_s_page_server_and_rcriu_s_interoperate() {
    let _g = setup();
    let Ok(criu) = std::env::var("RCRIU_TEST_CRIU") else {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the page servers across engines");
        return;
    };
    through(RCRIU, &criu, None, false).expect("rcriu's dump to CRIU's page server");
    through(&criu, RCRIU, Some(&criu), false).expect("CRIU's dump to rcriu's page server");
    let e = through(&criu, RCRIU, Some(&criu), true).expect_err("the negative control passes");
    assert!(e.contains("memory changed"), "{e}");
}

/// A page server that takes the session, some pages, then goes away.
fn vanishing_server(after: usize) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 32];
        s.read_exact(&mut req).unwrap();
        assert_eq!(req[0], 4, "PS_IOV_OPEN2 first");
        s.write_all(&[0]).unwrap();
        let mut left = after;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let n = s.read(&mut buf[..left.min(1 << 16)]).unwrap();
            if n == 0 {
                break;
            }
            left -= n;
        }
        // Gone with a reset, as a crashed machine's peer sees it.
        let _ = rustix::net::sockopt::set_socket_linger(&s, Some(std::time::Duration::ZERO));
        drop(s);
    });
    (port, t)
}

#[test]
fn a_page_server_going_away_mid_dump_fails_it_and_leaves_the_target() {
    let _g = setup();
    let w = bigmem(64);
    let before = ProcSnapshot::take(w.pid);
    let dir = TempDir::new("ps-gone");
    let (port, t) = vanishing_server(4 << 20);
    let e = dump(RCRIU, w.pid, dir.path(), port, NONE).expect_err("the dump succeeds");
    t.join().unwrap();
    assert!(
        e.contains("page server"),
        "the error names the page server: {e}"
    );
    assert!(e.contains(&format!("process {}", w.pid)), "{e}");
    let after = ProcSnapshot::settled(w.pid, &before);
    let diff = before.diff(&after);
    assert!(diff.is_empty(), "the target changed:\n{}", diff.join("\n"));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".img"))
        .collect();
    assert!(left.is_empty(), "images left: {left:?}");
    w.verdict().expect("the target is intact");
}

#[test]
fn no_page_server_no_dump() {
    let _g = setup();
    let w = bigmem(1);
    let dir = TempDir::new("ps-none");
    let e = dump(RCRIU, w.pid, dir.path(), free_port(), NONE).expect_err("the dump succeeds");
    assert!(
        e.contains("cannot connect to the page server at 127.0.0.1:"),
        "{e}"
    );
    w.verdict().expect("the target is intact");
}

/// A hostile client: requests rcriu's page server must refuse without
/// writing anywhere but its directory, and without crashing.
#[test]
fn a_hostile_client_is_refused() {
    require_root();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown pagemap", req(4, 0, 0, 0, (7 << 8) | 9)),
        ("PS_IOV_GET", req(7, 0, 1, 0x1000, (7 << 8) | 1)),
        (
            "not page aligned",
            [
                req(3, 0, 0, 0, (7 << 8) | 1),
                req(6, 4, 1, 0x1001, (7 << 8) | 1),
            ]
            .concat(),
        ),
        (
            "a run of",
            [
                req(3, 0, 0, 0, (7 << 8) | 1),
                req(6, 4, u64::MAX / 4096 + 1, 0, (7 << 8) | 1),
            ]
            .concat(),
        ),
        (
            "flags",
            [
                req(3, 0, 0, 0, (7 << 8) | 1),
                req(6, 0x40, 1, 0x1000, (7 << 8) | 1),
            ]
            .concat(),
        ),
        (
            "before the end of a run",
            [
                req(3, 0, 0, 0, (7 << 8) | 1),
                req(6, 4, 2, 0x1000, (7 << 8) | 1),
                vec![1; 100],
            ]
            .concat(),
        ),
        ("not flushed", req(3, 0, 0, 0, (7 << 8) | 1)),
        ("unknown command", req(0x77, 0, 0, 0, 0)),
    ];
    for (what, bytes) in cases {
        let dir = TempDir::new("ps-hostile");
        let s = Server::start(RCRIU, dir.path(), NONE);
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(&bytes).unwrap();
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
        let (status, _) = s.wait();
        let log = std::fs::read_to_string(dir.path().join("ps.log")).unwrap_or_default();
        assert_ne!(status, 0, "{what}: the server took it");
        assert!(log.contains(what), "{what}: {log}");
        let imgs: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".img"))
            .collect();
        assert!(imgs.is_empty(), "{what}: images left {imgs:?}");
    }
}

fn req(cmd: u32, flags: u32, nr_pages: u64, vaddr: u64, dst_id: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&((flags << 16) | cmd).to_ne_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&nr_pages.to_ne_bytes());
    b.extend_from_slice(&vaddr.to_ne_bytes());
    b.extend_from_slice(&dst_id.to_ne_bytes());
    b
}

/// The runs of the pagemap of `pid` in `dir`: (vaddr, pages, flags).
fn runs(dir: &Path, pid: i32) -> Vec<(u64, u64, u32)> {
    let d = ImageDir::open(dir).unwrap();
    let mut r = d.pagemap(pid as u32).expect("the server's pagemap");
    let mut v = Vec::new();
    while let Some(run) = r.next_run().unwrap() {
        v.push((run.vaddr, run.nr_pages, run.flags));
    }
    v
}

/// One round of a pre-dump chain by `dumper` (`pre-dump` or `dump`) of
/// `pid`, its pages to a page server of `server` writing to `ps`, the
/// other images to `local`; `parent` is the round before (`../N`, for
/// both).
fn round(
    dumper: &str,
    server: &str,
    cmd: &str,
    pid: i32,
    local: &Path,
    ps: &Path,
    parent: Option<&str>,
) {
    round_with(dumper, server, cmd, pid, local, ps, parent, false);
}

/// [`round`]; with `server_forgets`, the server is not told the parent.
#[allow(clippy::too_many_arguments)]
fn round_with(
    dumper: &str,
    server: &str,
    cmd: &str,
    pid: i32,
    local: &Path,
    ps: &Path,
    parent: Option<&str>,
    server_forgets: bool,
) {
    std::fs::create_dir_all(ps).unwrap();
    let prev: Vec<&str> = parent.map_or(vec![], |p| vec!["--prev-images-dir", p]);
    let s = Server::start(server, ps, if server_forgets { NONE } else { &prev });
    let r = run(Command::new(dumper)
        .args([cmd, "-t", &pid.to_string(), "-D"])
        .arg(local)
        .args(["--track-mem", "--page-server", "--address", "127.0.0.1"])
        .args(["--port", &s.port.to_string()])
        .args(&prev)
        .args(["-v4", "-o", "dump.log"]));
    if let Err(e) = r {
        panic!(
            "{dumper} {cmd}: {e}\nits log: {}\nthe server's log: {}",
            std::fs::read_to_string(local.join("dump.log")).unwrap_or_default(),
            std::fs::read_to_string(ps.join("ps.log")).unwrap_or_default()
        );
    }
    let (status, _) = s.wait();
    assert_eq!(
        status,
        0,
        "the page server's session: {}",
        std::fs::read_to_string(ps.join("ps.log")).unwrap_or_default()
    );
    assert!(
        !local.join(format!("pagemap-{pid}.img")).exists(),
        "{cmd} wrote the pagemap itself"
    );
}

/// A pre-dump chain of `rewriter` through page servers of `server`,
/// dumped by `dumper`; with `stale`, the final round's parent is turned
/// to the first. The workload's verdict after the restore by `restorer`
/// (`None`: rcriu's library).
fn chain(dumper: &str, server: &str, restorer: Option<&str>, stale: bool) -> Result<(), String> {
    // 32 MiB, a page rewritten every 20 us.
    let mut w = Workload::start("rewriter", &["32", "20"]);
    let pid = w.pid;
    let top = TempDir::new("ps-chain");
    let local = |n: &str| top.path().join("local").join(n);
    let ps = |n: &str| top.path().join("ps").join(n);
    round(dumper, server, "pre-dump", pid, &local("1"), &ps("1"), None);
    round(
        dumper,
        server,
        "pre-dump",
        pid,
        &local("2"),
        &ps("2"),
        Some("../1"),
    );
    round(
        dumper,
        server,
        "dump",
        pid,
        &local("3"),
        &ps("3"),
        Some("../2"),
    );
    w.reap();
    let first = runs(&ps("1"), pid);
    assert!(
        !first.iter().any(|r| r.2 & PE_PARENT != 0),
        "the first round has no parent: {first:?}"
    );
    for n in ["2", "3"] {
        let r = runs(&ps(n), pid);
        assert!(
            r.iter().any(|&(_, _, f)| f == PE_PARENT),
            "round {n} keeps no page in its parent: {r:?}"
        );
        assert!(r.iter().any(|&(_, _, f)| f & PE_PRESENT != 0));
    }
    let bytes = |n: &str| -> u64 {
        std::fs::read_dir(ps(n))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    assert!(
        bytes("3") < bytes("1"),
        "the final round sent {} bytes of pages, the first {}",
        bytes("3"),
        bytes("1")
    );
    // The dump's other images beside the server's last round, which is
    // restored with its parents.
    for e in std::fs::read_dir(local("3")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && !ps("3").join(e.file_name()).exists() {
            std::fs::copy(e.path(), ps("3").join(e.file_name())).unwrap();
        }
    }
    if stale {
        std::fs::remove_file(ps("3").join("parent")).unwrap();
        std::os::unix::fs::symlink("../1", ps("3").join("parent")).unwrap();
    }
    match restorer {
        None => {
            rcriu::Restore::new(ps("3"))
                .detach(true)
                .run()
                .map_err(|e| format!("restoring: {e}"))?;
        }
        Some(criu) => run(Command::new(criu)
            .args(["restore", "-d", "-v4", "-o", "restore.log", "-D"])
            .arg(ps("3")))
        .map_err(|e| format!("CRIU's restore: {e}"))?,
    }
    w.verdict()
}

#[test]
fn a_pre_dump_chain_through_rcriu_s_page_server_restores() {
    let _g = setup();
    chain(RCRIU, RCRIU, None, false).unwrap();
    let e = chain(RCRIU, RCRIU, None, true).expect_err("the negative control passes");
    assert!(e.contains("disagrees with its checksum"), "{e}");
}

#[test]
fn a_pre_dump_chain_and_criu_interoperate() {
    let _g = setup();
    let Ok(criu) = std::env::var("RCRIU_TEST_CRIU") else {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the pre-dump chain to CRIU's page server");
        return;
    };
    chain(RCRIU, &criu, None, false).expect("rcriu's chain to CRIU's page servers");
    chain(RCRIU, RCRIU, Some(&criu), false).expect("CRIU's restore of rcriu's servers' chain");
    let e = chain(RCRIU, RCRIU, Some(&criu), true).expect_err("the negative control passes");
    assert!(e.contains("disagrees with its checksum"), "{e}");
}

/// bigmem dumped by rcriu with `how` (the page server's arguments),
/// the server's images in `ps`; the workload's verdict after the
/// restore.
fn dump_with(
    w: Workload,
    dump_dir: &Path,
    ps: &Path,
    how: &mut dyn FnMut(&mut Command),
) -> Result<(), String> {
    let mut cmd = Command::new(RCRIU);
    cmd.args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(dump_dir)
        .args(["--page-server", "-v4", "-o", "dump.log"]);
    how(&mut cmd);
    run(&mut cmd).map_err(|e| {
        format!(
            "{e}\nits log: {}",
            std::fs::read_to_string(dump_dir.join("dump.log")).unwrap_or_default()
        )
    })?;
    rcriu_test_support::wait_exit(w.pid).ok();
    combine(ps, dump_dir);
    rcriu::Restore::new(dump_dir)
        .detach(true)
        .run()
        .map_err(|e| format!("restoring: {e}"))?;
    w.verdict()
}

/// The session of `pid` (field 6 of its stat).
fn session_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    after.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn page_server_daemon_and_pidfile() {
    let _g = setup();
    let ps = TempDir::new("ps-daemon");
    let dump_dir = TempDir::new("ps-daemon-dump");
    let port = free_port();
    let pidfile = ps.path().join("ps.pid");
    let start = |pidfile: &Path| {
        Command::new(RCRIU)
            .args(["page-server", "-d", "--address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("-D")
            .arg(ps.path())
            .arg("--pidfile")
            .arg(pidfile)
            .args(["-v4", "-o", "ps.log"])
            .output()
            .expect("starting the page server")
    };
    let out = start(&pidfile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .parse()
        .expect("the pidfile names the daemon");
    assert_eq!(
        session_of(pid),
        pid,
        "the daemon leads a session of its own"
    );
    for fd in 0..3 {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(),
            Path::new("/dev/null"),
            "the daemon's fd {fd}"
        );
    }
    // Negative control: the pidfile is there already; the daemon it
    // started is killed, its port free again.
    let other = TempDir::new("ps-daemon-2");
    let taken = ps.path().join("taken.pid");
    std::fs::write(&taken, "1").unwrap();
    let port2 = free_port();
    let out = Command::new(RCRIU)
        .args(["page-server", "-d", "--address", "127.0.0.1", "--port"])
        .arg(port2.to_string())
        .arg("-D")
        .arg(other.path())
        .arg("--pidfile")
        .arg(&taken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an existing pidfile was taken");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Can't write pidfile"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "1");
    TcpListener::bind(("127.0.0.1", port2)).expect("the refused daemon still listens");
    // The daemon serves the dump, then ends (reparented to this test, a
    // subreaper).
    dump_with(bigmem(8), dump_dir.path(), ps.path(), &mut |c| {
        c.args(["--address", "127.0.0.1", "--port", &port.to_string()]);
    })
    .expect("restored from the daemon's images");
    assert_eq!(
        rcriu_test_support::wait_exit(pid).unwrap(),
        0,
        "the daemon's status: {}",
        std::fs::read_to_string(ps.path().join("ps.log")).unwrap_or_default()
    );
}

/// The fd of `s` inherited by children.
fn inherited(s: &TcpStream) -> String {
    rustix::io::fcntl_setfd(s, rustix::io::FdFlags::empty()).unwrap();
    s.as_raw_fd().to_string()
}

#[test]
fn page_server_on_given_sockets() {
    let _g = setup();
    let ps = TempDir::new("ps-socket");
    let dump_dir = TempDir::new("ps-socket-dump");
    // A connection made by the caller, one end for each side.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (theirs, _) = l.accept().unwrap();
    drop(l);
    let mut server = Command::new(RCRIU)
        .args(["page-server", "--ps-socket", &inherited(&theirs), "-D"])
        .arg(ps.path())
        .args(["-v4", "-o", "ps.log"])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting the page server");
    drop(theirs);
    let w = bigmem(8);
    let fd = inherited(&ours);
    let r = dump_with(w, dump_dir.path(), ps.path(), &mut |c| {
        c.args(["--ps-socket", &fd]);
    });
    drop(ours);
    let status = server.wait().unwrap();
    assert!(
        status.success(),
        "the page server: {}",
        std::fs::read_to_string(ps.path().join("ps.log")).unwrap_or_default()
    );
    r.expect("restored from the images sent on the given sockets");
    // Negative control: an fd that is not open.
    let out = Command::new(RCRIU)
        .args(["page-server", "--ps-socket", "77", "-D"])
        .arg(ps.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(--ps-socket 77) is not open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A round whose page server has no parent (not given
/// `--prev-images-dir`) gets every page, as CRIU's dump sends them then;
/// the chain goes on from it and restores.
#[test]
fn a_page_server_without_the_parent_gets_every_page() {
    let _g = setup();
    let mut w = Workload::start("rewriter", &["16", "20"]);
    let pid = w.pid;
    let top = TempDir::new("ps-noparent");
    let local = |n: &str| top.path().join("local").join(n);
    let ps = |n: &str| top.path().join("ps").join(n);
    round(RCRIU, RCRIU, "pre-dump", pid, &local("1"), &ps("1"), None);
    let (l2, p2) = (local("2"), ps("2"));
    round_with(RCRIU, RCRIU, "pre-dump", pid, &l2, &p2, Some("../1"), true);
    let r = runs(&p2, pid);
    assert!(
        !r.iter().any(|&(_, _, f)| f & PE_PARENT != 0),
        "a page kept in a parent the server does not have: {r:?}"
    );
    let log = std::fs::read_to_string(l2.join("dump.log")).unwrap();
    assert!(log.contains("has no parent pagemap"), "{log}");
    round(
        RCRIU,
        RCRIU,
        "dump",
        pid,
        &local("3"),
        &ps("3"),
        Some("../2"),
    );
    w.reap();
    let r = runs(&ps("3"), pid);
    assert!(r.iter().any(|&(_, _, f)| f == PE_PARENT), "{r:?}");
    for e in std::fs::read_dir(local("3")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && !ps("3").join(e.file_name()).exists() {
            std::fs::copy(e.path(), ps("3").join(e.file_name())).unwrap();
        }
    }
    rcriu::Restore::new(ps("3"))
        .detach(true)
        .run()
        .expect("restoring");
    w.verdict().expect("the restored process");
}
